"""What every tab shares: the workspace folder (the sandbox), the runs in it, and the path guard.

The workspace is the project folder: ``runs/`` (the run store), ``recipes/``, ``adapters/`` (published
adapters) and ``exports/`` (merged models, downloads). Every path that comes from the browser is
resolved and must stay inside it (:meth:`AppContext.inside`); run names are accepted only if they
name a run listed in the run store. The context is immutable: the app keeps no state of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.run import Run
from workbench.store import list_runs

RECIPE_SUFFIXES = (".yaml", ".yml")
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
UNREADABLE = (WorkbenchError, OSError, ValueError, KeyError, TypeError)


class OutsideWorkspace(WorkbenchError):
    """A path from the browser that leaves the workspace."""


@dataclass(frozen=True)
class AppContext:
    root: Path  # the workspace folder: nothing outside it is read or written on a browser's request
    runs: Path  # the run store (``root/runs`` by default)
    max_upload_bytes: int = 1_000_000

    @classmethod
    def create(cls, root: Path, runs: Path | None = None, max_upload_bytes: int = 1_000_000) -> AppContext:
        root = Path(root).resolve()
        runs = (Path(runs) if runs is not None else root / "runs").resolve()
        if not runs.is_relative_to(root):
            raise OutsideWorkspace(f"the run store {runs} must be inside the workspace {root}")
        return cls(root, runs, max_upload_bytes)

    # -- paths ---------------------------------------------------------------------------------------------
    @property
    def recipes_dir(self) -> Path:
        return self.root / "recipes"

    @property
    def adapters_dir(self) -> Path:
        return self.root / "adapters"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    def inside(self, path: str | Path) -> Path:
        """``path`` (relative paths from the workspace) resolved; :class:`OutsideWorkspace` if it leaves it."""
        text = str(path or "").strip()
        if not text or "\x00" in text:
            raise OutsideWorkspace("give a path inside the workspace")
        candidate = Path(text)
        resolved = (candidate if candidate.is_absolute() else self.root / candidate).resolve()
        if not resolved.is_relative_to(self.root):
            raise OutsideWorkspace(f"refused: '{text}' is outside the workspace ({self.root})")
        return resolved

    def relative(self, path: Path) -> str:
        return str(Path(path).resolve().relative_to(self.root))

    def safe_name(self, name: str, what: str) -> str:
        """A plain file or folder name (letters, digits, ``._-``), never a path."""
        name = (name or "").strip()
        if not SAFE_NAME.fullmatch(name) or ".." in name:
            raise OutsideWorkspace(f"{what}: use a plain name of letters, digits, '.', '_' or '-' (got '{name}')")
        return name

    # -- recipes -------------------------------------------------------------------------------------------
    def recipe_files(self) -> list[str]:
        """Recipe files of the workspace (``recipes/`` and the top folder), relative to it."""
        found = []
        for folder in (self.root, self.recipes_dir):
            if folder.is_dir():
                found += [p for p in sorted(folder.iterdir()) if p.suffix in RECIPE_SUFFIXES and p.is_file()]
        return [self.relative(p) for p in found]

    def recipe_path(self, name: str) -> Path:
        """A recipe file given by the browser: inside the workspace and named ``*.yaml``/``*.yml``."""
        path = self.inside(name)
        if path.suffix not in RECIPE_SUFFIXES:
            raise OutsideWorkspace(f"refused: '{name}' is not a recipe file (.yaml or .yml)")
        return path

    # -- runs ------------------------------------------------------------------------------------------------
    def run_names(self) -> list[str]:
        return [store.name for store in list_runs(self.runs)]

    def run(self, name: str | None) -> Run | None:
        """The run called ``name`` if the store lists it (never a path built from user input)."""
        if not name:
            return None
        store = next((s for s in list_runs(self.runs) if s.name == name), None)
        return Run(store) if store is not None else None

    def latest_run(self) -> str | None:
        """The most recently updated run."""
        best, when = None, -1.0
        for store in list_runs(self.runs):
            try:
                times = [e["time"] for e in store.events() if isinstance(e.get("time"), int | float)]
            except UNREADABLE:
                times = []
            if (max(times) if times else 0.0) > when:
                best, when = store.name, max(times) if times else 0.0
        return best
