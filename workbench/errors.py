"""Errors the workbench reports to users as one readable message (never a traceback)."""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class: the message is meant for a person and names the file, field and fix."""

    exit_code = 1


class RecipeError(WorkbenchError):
    """A recipe file is invalid (unknown key, wrong type, missing file, unknown language...)."""

    exit_code = 2


class ModelSourceError(WorkbenchError):
    """A model source cannot be resolved or loaded (offline and not cached, bad path...)."""


class DataError(WorkbenchError):
    """An input data set is unusable (misaligned files, empty file, unknown language code...)."""


class RunError(WorkbenchError):
    """A run cannot proceed (workspace locked, unknown run...)."""


class GateError(WorkbenchError):
    """A stage's quality gate failed (e.g. a transplant made English or a replay language worse)."""
