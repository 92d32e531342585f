"""Errors the workbench reports to users as one readable message (never a traceback).

Exit statuses of the ``workbench`` command: 0 success; 1 an internal failure (a bug: the traceback is shown);
2 a user's mistake (recipe, data, model source, unknown run or workspace, a locked run); 3 a quality gate
stopped the run (the stage worked, the result is worse than allowed); 130 interrupted.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path


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


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def disk_full(error: BaseException) -> str | None:
    """One message for a full disk anywhere in ``error``'s chain of causes (None if the disk is not the cause):
    the file being written, the space left on its file system, and that what finished is kept."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _NO_SPACE:
            return _disk_full_message(current)
        current = current.__cause__ or current.__context__
    return None


def _disk_full_message(error: OSError) -> str:
    name = error.filename or error.filename2
    where = f" writing '{name}'" if name else ""
    free = ""
    if name:
        folder = next((p for p in Path(name).absolute().parents if p.exists()), None)
        if folder is not None:
            free = f" ({shutil.disk_usage(folder).free / 2**20:,.0f} MiB free on that file system)"
    return (f"no space left on the device{where}{free}. Nothing that finished is lost: every finished stage, "
            f"shard and checkpoint was written atomically. Free some space and run the same command again to resume.")


class MissingDependencyError(WorkbenchError):
    """A feature needs an optional package that is not installed; the message names the extra that installs it."""

