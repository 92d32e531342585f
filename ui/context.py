"""What every tab shares: the workspace folder (the sandbox), the runs in it, and the path guard.

The workspace is the project folder: ``runs/`` (the run store), ``recipes/``, ``adapters/`` (published
adapters) and ``exports/`` (merged models, downloads). Every path that comes from the browser is
resolved and must stay inside it (:meth:`AppContext.inside`); run names are accepted only if they
name a run listed in the run store. The context keeps no state of the runs: besides the paths it holds
only the models loaded for translation (kept for the next call) and the translations running now (to
cancel them).

Text that people type (reviewer names, comments, reasons) and text from the data (documents, outputs)
is shown through :func:`escape` or in plain-text components, never as HTML or Markdown.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.run import Run
from workbench.store import adapters_home, list_runs

from .models import Jobs, ModelCache

RECIPE_SUFFIXES = (".yaml", ".yml")
RECIPES_DIR = "recipes"  # the project folder's recipes, runnable from the app
EXPORTS_DIR = "exports"  # the only folder the app serves files from
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
UNREADABLE = (WorkbenchError, OSError, ValueError, KeyError, TypeError)
log = logging.getLogger("workbench.ui")


def escape(text: Any) -> str:
    """``text`` safe inside HTML (gr.HTML): markup, links and entities shown as typed."""
    return html.escape("" if text is None else str(text), quote=True)


class OutsideWorkspace(WorkbenchError):
    """A path from the browser that leaves the workspace."""


@dataclass(frozen=True)
class Refresh:
    """How a tab shows its run afresh: ``fn(*inputs) -> outputs`` (the app wires it to load, run, tab)."""

    fn: Callable[..., Any]
    inputs: list[Any]
    outputs: list[Any]
    queue: str | None = None  # events of the tab that write the same outputs share it: they run in trigger order


@dataclass(frozen=True)
class AppContext:
    root: Path  # the workspace folder: nothing outside it is read or written on a browser's request
    runs: Path  # the run store (``root/runs`` by default)
    max_upload_bytes: int = 1_000_000
    owner: str | None = None  # with logins: the user who may unblind ratings and edit review settings
    models: ModelCache = field(default_factory=ModelCache, compare=False, repr=False)  # kept between translations
    jobs: Jobs = field(default_factory=Jobs, compare=False, repr=False)  # translations running, per session

    @classmethod
    def create(cls, root: Path, runs: Path | None = None, max_upload_bytes: int = 1_000_000,
               owner: str | None = None) -> AppContext:
        root = Path(root).resolve()
        runs = (Path(runs) if runs is not None else root / "runs").resolve()
        if not runs.is_relative_to(root):
            raise OutsideWorkspace(f"the run store {runs} must be inside the project folder {root} "
                                   "(start the app from the project folder, or pass --root)")
        return cls(root, runs, max_upload_bytes, owner)

    def is_owner(self, username: str | None) -> bool:
        """Without logins (loopback, one user) everyone is the owner; with logins, only :attr:`owner`."""
        return self.owner is None or username == self.owner

    # -- paths ---------------------------------------------------------------------------------------------
    @property
    def recipes_dir(self) -> Path:
        return self.root / RECIPES_DIR

    @property
    def adapters_dir(self) -> Path:
        """Where the engine publishes the adapters of this run store's runs."""
        return adapters_home(self.runs)

    @property
    def exports_dir(self) -> Path:
        return self.root / EXPORTS_DIR

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
        """Recipe files of the workspace (``recipes/`` and the top folder), relative to it.

        A symlink that resolves outside the workspace is skipped with a warning (never followed).
        """
        found = []
        for folder in (self.root, self.recipes_dir):
            if folder.is_dir():
                found += [p for p in sorted(folder.iterdir()) if p.suffix in RECIPE_SUFFIXES and p.is_file()]
        names = []
        for path in found:
            if not path.resolve().is_relative_to(self.root):
                log.warning("skipped recipe %s: it links outside the workspace (%s)", path, path.resolve())
                continue
            names.append(str(path.relative_to(self.root)))
        return names

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
