"""Downstream tasks: what the injury classifiers and outcome models predict, registered by name.

A :class:`Task` is a 0/1 column of the cohort table (``cohort.csv``): a **finding** (an imaging label that the
classifiers predict from images, optionally read straight from a measured image feature by the utility
benchmark) or an **outcome** (what the outcome models predict from clinical variables and image features).
Configs name tasks (``classifier.labels``, ``outcome.target``, ``outcome_targets``); only registered ones are
accepted, so adding one is one call:

>>> register_task(Task("vertebral_fracture_any", "finding", description="..."))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("finding", "outcome")


@dataclass(frozen=True)
class Task:
    """A 0/1 cohort column to predict.

    Attributes:
        name: the column of ``cohort.csv``.
        kind: ``"finding"`` | ``"outcome"``.
        feature: a finding's image feature (:data:`synthseq.downstream.features.FEATURE_NAMES`) that reads it
            without training, for the utility benchmark's feature-level rows; None: none.
        description: one line for reports.
    """

    name: str
    kind: str
    feature: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")


_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Register ``task`` (the same definition twice is a no-op; a different one under a taken name is an error)."""
    old = _TASKS.get(task.name)
    if old is not None and old != task:
        raise ValueError(f"task {task.name!r} is already registered as {old}")
    _TASKS[task.name] = task
    return task


def unregister_task(name: str) -> None:
    _TASKS.pop(name, None)


def list_tasks(kind: str | None = None) -> list[Task]:
    """Registered tasks in registration order (of one kind if given)."""
    return [t for t in _TASKS.values() if kind is None or t.kind == kind]


def task_names(kind: str) -> tuple[str, ...]:
    return tuple(t.name for t in list_tasks(kind))


def finding_features() -> dict[str, str]:
    """``{finding: image feature}`` of the findings an image feature reads directly."""
    return {t.name: t.feature for t in list_tasks("finding") if t.feature}


for _task in (
    Task("fracture", "finding", "marrow_edema_ml", "bone-marrow edema / fracture (read from the marrow-edema volume)"),
    Task("plc_injury", "finding", "plc_signal", "posterior ligamentous complex injury (read from the PLC signal ratio)"),
    Task("cord_edema", "finding", "cord_edema_ml", "cord edema (read from the cord-edema volume)"),
    Task("cord_hemorrhage", "finding", None, "cord hemorrhage"),
    Task("prevertebral_edema", "finding", None, "prevertebral soft-tissue edema"),
    Task("disc_injury", "finding", None, "traumatic disc injury"),
    Task("canal_compression", "finding", None, "spinal canal compression"),
    Task("ambulation_discharge", "outcome", None, "independent ambulation at discharge"),
    Task("ais_improvement", "outcome", None, "AIS grade improvement by discharge"),
):
    register_task(_task)

__all__ = ["KINDS", "Task", "finding_features", "list_tasks", "register_task", "task_names", "unregister_task"]
