"""The run store: the one module that knows the on-disk layout of a run.

::

    <workspace>/<run name>/
        manifest.json          recipe as resolved, artifact keys, versions, seeds, timings, device
        events.jsonl           what happened when (one JSON object per line)
        scoreboard.json        flat list of score records (see ``SCORE_FIELDS``)
        stages/<id>-<key>/     finished artifacts (renamed into place atomically)
        stages/.partial-<id>-<key>/   work in progress (checkpoints survive a crash)
        scores/<step>-<key>/   what a scoring step wrote: scores.json, per-sentence files, its report

A stage's step id is its recipe id (``cpt``, ``finetune-2``); a scoring step's is
``<kind>:<subject>[/<variant>]`` (``score:finetune/lora-r8``, see :func:`scoring_step_id`), written
with ``-`` for ``:`` and ``/`` in its folder name.

The CLI, the Gradio app and the notebook API all read runs through this module.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RunError
from .io import atomic_write_json, read_jsonl

DEFAULT_WORKSPACE = Path("runs")
KEY_CHARS = 16
STAGES_DIR = "stages"  # finished stage artifacts
SCORES_DIR = "scores"  # finished scoring steps
PARTIAL_PREFIX = ".partial-"  # a step's folder while it runs
SCORE_STEP = "score"  # the kind of the step that scores one model: its id is score:<stage>[/<variant>]
ARTIFACT_FILE = "artifact.json"
# files of a scored step (scores/<step>-<key>/)
SCORES_FILE = "scores.json"  # its score records
LM_SENTENCES_FILE = "lm_sentences.jsonl"  # bits, bytes, characters and tokens of every LM sentence
TRANSLATIONS_FILE = "translations.jsonl"  # every translation with its flags
GATE_FILE = "gate.json"  # a stage's quality gate against the model it started from
CONTAMINATION_FILE = "contamination.json"  # a contamination check's report
SCORE_FIELDS = ("stage", "variant", "kind", "language", "direction", "metric", "value", "n")


ADAPTERS_DIR = "adapters"  # published adapters, beside the run store: adapters/<run>/<variant>/


def adapters_home(workspace: Path) -> Path:
    """Where the runs of the run store ``workspace`` publish their adapters: ``adapters/`` in the folder that
    holds the run store (the project folder)."""
    return Path(workspace).resolve().parent / ADAPTERS_DIR


def short_key(key: str) -> str:
    return key[:KEY_CHARS]


def scoring_step_id(kind: str, subject: str, variant: str | None = None) -> str:
    """The id of a step of ``kind`` that scores or checks the step ``subject``: ``<kind>:<subject>[/<variant>]``
    (``subject`` may name a variant already: ``score:finetune/lora-r8``)."""
    return f"{kind}:{subject}" + (f"/{variant}" if variant else "")


def scored_system(step_id: str) -> tuple[str | None, str]:
    """``(kind, system)`` of a scoring step's id, the system as ``stage`` or ``stage/variant``
    (``score:finetune/lora-r8`` -> ``("score", "finetune/lora-r8")``); ``(None, step_id)`` for a stage's id."""
    kind, sep, system = step_id.partition(":")
    return (kind, system) if sep else (None, step_id)


def is_scoring_step(step_id: str) -> bool:
    """Whether ``step_id`` names a scoring step (``<kind>:<subject>``) rather than the base model or a stage."""
    return scored_system(step_id)[0] is not None


def step_folder(step_id: str, key: str) -> str:
    """A step's folder name: its id (``:`` and ``/`` as ``-``) and its short key."""
    return f"{step_id.replace(':', '-').replace('/', '-')}-{short_key(key)}"


@dataclass
class RunStore:
    """Paths and records of one run (``<workspace>/<name>``)."""

    workspace: Path
    name: str

    def __post_init__(self) -> None:
        self.workspace = Path(self.workspace)

    @property
    def root(self) -> Path:
        return self.workspace / self.name

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def events_path(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def scoreboard_path(self) -> Path:
        return self.root / "scoreboard.json"

    # -- artifacts ---------------------------------------------------------------------------
    def step_dir(self, step_id: str, key: str, *, scores: bool = False) -> Path:
        """A finished step's folder: under ``scores/`` for a scoring step, else under ``stages/``."""
        return self.root / (SCORES_DIR if scores else STAGES_DIR) / step_folder(step_id, key)

    def partial_step_dir(self, step_id: str, key: str, *, scores: bool = False) -> Path:
        """The folder a step writes into while it runs (renamed to :meth:`step_dir` by :meth:`commit`)."""
        return self.root / (SCORES_DIR if scores else STAGES_DIR) / (PARTIAL_PREFIX + step_folder(step_id, key))

    @staticmethod
    def drop_stale_partials(final: Path) -> None:
        """Remove the partial folders of the same step under other keys (attempts of an earlier config)."""
        prefix = f"{PARTIAL_PREFIX}{final.name.rsplit('-', 1)[0]}-"
        for stale in final.parent.glob(prefix + "*"):
            shutil.rmtree(stale, ignore_errors=True)

    @staticmethod
    def is_complete(directory: Path) -> bool:
        """A directory is a finished artifact only if it was renamed into place with its record."""
        return (directory / ARTIFACT_FILE).is_file()

    @staticmethod
    def commit(partial: Path, final: Path, record: dict[str, Any]) -> None:
        """Write the artifact record into ``partial`` and rename it to ``final`` (atomic)."""
        atomic_write_json(partial / ARTIFACT_FILE, record)
        if final.exists():  # a stale incomplete directory with the final name cannot exist, but be safe
            shutil.rmtree(final)
        os.replace(partial, final)

    @staticmethod
    def read_artifact(directory: Path) -> dict[str, Any]:
        return json.loads((directory / ARTIFACT_FILE).read_text(encoding="utf-8"))

    # -- manifest, events, scores ----------------------------------------------------------------
    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_json(self.manifest_path, manifest)

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            raise RunError(f"{self.root}: no manifest.json; is this a workbench run directory?")
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def steps(self) -> list[dict[str, Any]]:
        """The manifest's steps, each with its directory resolved inside this run (``path``)."""
        return [{**step, "path": self._step_path(step)} for step in self.manifest().get("steps", [])]

    def _step_path(self, step: dict[str, Any]) -> Path | None:
        """A step's directory; a run copied or moved elsewhere still finds its own directories."""
        raw = step.get("path")
        if not raw:
            return None
        path = Path(raw)
        if step.get("kind") == "base" or path.exists():
            return path
        moved = self.root / path.parent.name / path.name
        return moved if moved.exists() else path

    def log_event(self, event: str, **fields: Any) -> None:
        """Append one event line (flushed and synced: it survives a SIGKILL right after)."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"time": time.time(), "event": event, **fields}, ensure_ascii=False, default=str)
        with open(self.events_path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def events(self) -> list[dict[str, Any]]:
        return read_jsonl(self.events_path) if self.events_path.exists() else []

    def write_scoreboard(self, records: list[dict[str, Any]]) -> None:
        atomic_write_json(self.scoreboard_path, records)

    def scoreboard(self) -> list[dict[str, Any]]:
        if not self.scoreboard_path.exists():
            return []
        return json.loads(self.scoreboard_path.read_text(encoding="utf-8"))

    def status(self) -> str:
        """``finished``, ``failed``, ``running`` (or killed while running) or ``new``."""
        events = self.events()
        for event in reversed(events):
            if event["event"] == "run_finished":
                return "finished"
            if event["event"] == "run_failed":
                return "failed"
            if event["event"] == "run_started":
                return "running" if self.is_locked() else "interrupted"
        return "new"

    # -- locking -----------------------------------------------------------------------------------
    def lock(self) -> RunLock:
        return RunLock(self.root / ".lock")

    def is_locked(self) -> bool:
        path = self.root / ".lock"
        return path.exists() and lock_held(path)


def lock_held(path: Path) -> bool:
    """Whether some process holds an exclusive flock on ``path`` (the file is created if missing)."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


class RunLock:
    """An exclusive advisory lock on a run directory (released automatically if the process dies)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._handle.close()
            raise RunError(
                f"{self.path.parent}: another workbench process is running this recipe; "
                "wait for it to finish or stop it first"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()


def list_runs(workspace: Path = DEFAULT_WORKSPACE) -> list[RunStore]:
    """All runs under a workspace (directories holding a manifest), sorted by name."""
    workspace = Path(workspace)
    if not workspace.is_dir():
        return []
    return [RunStore(workspace, p.parent.name) for p in sorted(workspace.glob("*/manifest.json"))]


def open_run(path_or_name: str | Path, workspace: Path = DEFAULT_WORKSPACE) -> RunStore:
    """A run given as a directory path or as a name inside ``workspace``."""
    path = Path(path_or_name)
    if (path / "manifest.json").exists():
        return RunStore(path.parent, path.name)
    candidate = Path(workspace) / str(path_or_name)
    if (candidate / "manifest.json").exists():
        return RunStore(Path(workspace), str(path_or_name))
    known = ", ".join(r.name for r in list_runs(workspace)) or "none"
    raise RunError(f"no run '{path_or_name}' (looked in {path} and {candidate}); runs in {workspace}: {known}")
