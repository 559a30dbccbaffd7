"""Code tables: complete, fixed numbering, every code that occurs in a mask is in the table."""

import numpy as np

from synthseq.phantom import LESIONS, TISSUES, body_mask
from synthseq.phantom.anatomy import CLASS_LABEL, N_CLASSES


def test_tables_match_the_documented_interface():
    expected = ["background", "skin", "subcutaneous_fat", "muscle", "prevertebral_soft_tissue", "airway",
                "vertebral_cortex", "vertebral_marrow", "disc_annulus", "disc_nucleus", "csf", "cord",
                "epidural_fat", "longitudinal_ligament", "ligamentum_flavum", "interspinous_ligament",
                "posterior_elements", "skull_base", "brain"]
    assert [TISSUES[i] for i in range(len(expected))] == expected
    assert [LESIONS[i] for i in range(11)] == ["none", "marrow_edema", "plc_injury", "cord_edema", "cord_hemorrhage",
                                              "prevertebral_edema", "disc_injury", "canal_compression",
                                              "modic2_fatty", "hemangioma", "modic1"]
    assert sorted(TISSUES) == list(range(len(TISSUES)))  # appended, never renumbered


def test_render_classes_map_to_known_labels():
    assert CLASS_LABEL.shape == (N_CLASSES,)
    assert set(CLASS_LABEL.tolist()) <= set(TISSUES)


def test_every_code_in_the_masks_is_in_the_tables(tiny_subjects):
    seen_labels, seen_lesions = set(), set()
    for rec in tiny_subjects:
        seen_labels |= set(np.unique(rec.labels.data).tolist())
        seen_lesions |= set(np.unique(rec.lesions.data).tolist())
    assert seen_labels <= set(TISSUES)
    assert seen_lesions <= set(LESIONS)
    # the anatomy really contains the listed tissues, and every lesion type occurs in 40 subjects
    assert set(range(19)) - seen_labels == set()
    assert seen_lesions == set(LESIONS)


def test_lesions_lie_in_their_tissues(tiny_subjects):
    where = {1: {7}, 3: {11}, 4: {11}, 2: {14, 15}, 5: {4}, 6: {8, 9}, 8: {7}, 9: {7}, 10: {7}}
    for rec in tiny_subjects:
        lab, les = rec.labels.data, rec.lesions.data
        for code, tissues in where.items():
            assert set(np.unique(lab[les == code]).tolist()) <= tissues, (rec.subject_id, code)


def test_body_mask_excludes_background_and_airway():
    labels = np.array([[0, 1, 5], [3, 11, 18]], np.uint8)
    assert body_mask(labels).tolist() == [[False, True, False], [True, True, True]]
