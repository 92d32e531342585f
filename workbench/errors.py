"""Errors the workbench reports to users as one readable message (never a traceback).

Exit statuses of the ``workbench`` command: 0 success; 1 an internal failure (a bug: the traceback is shown);
2 a user's mistake (recipe, data, model source, unknown run or workspace, a locked run); 3 a quality gate
stopped the run (the stage worked, the result is worse than allowed); 130 interrupted.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base class: the message is meant for a person and names the file, field and fix."""

    exit_code = 2


class RecipeError(WorkbenchError):
    """A recipe file is invalid (unknown key, wrong type, missing file, unknown language...)."""


class ModelSourceError(WorkbenchError):
    """A model source cannot be resolved or loaded (offline and not cached, bad path...)."""


class DataError(WorkbenchError):
    """An input data set is unusable (misaligned files, empty file, unknown language code...)."""


class RunError(WorkbenchError):
    """A run cannot proceed (workspace locked, unknown run...)."""


class GateError(WorkbenchError):
    """A stage's quality gate failed (e.g. a transplant made English or a replay language worse)."""

    exit_code = 3
