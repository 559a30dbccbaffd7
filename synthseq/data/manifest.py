"""Transitional re-export: the dataset-layout code lives in :mod:`synthseq.data.layout`."""

from .layout import SEQUENCE_KEYS, Subject, load_subjects, read_manifest_csv, scan_phantom_layout, split_subjects

__all__ = ["SEQUENCE_KEYS", "Subject", "load_subjects", "read_manifest_csv", "scan_phantom_layout",
           "split_subjects"]
