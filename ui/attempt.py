"""What the latest attempt of a run produced: how it ended, where it stopped, and the scores it measured.

``scoreboard.json`` is written when a run finishes or fails. A run killed meanwhile (``kill -9``, Stop in the
Runs tab, a machine that went down) or still running leaves the previous attempt's scoreboard in place, with
numbers of steps that this attempt has not (re)computed, e.g. after the recipe was edited. The app never shows
those as current: for such a run the scores are read from the directories of the steps this attempt finished
(what the engine would write as its partial scoreboard), and the run is labelled with its status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from workbench.evaluate.contamination import flagged_sentences
from workbench.evaluate.scorer import rescore_directory
from workbench.recipe import EvalConfig
from workbench.run import Run
from workbench.scoreboard import ordered
from workbench.store import CONTAMINATION_FILE, SCORES_FILE, RunStore

from .context import UNREADABLE

FINISHED_STEP_STATUSES = frozenset({"ran", "cached", "base"})
RESCORED_KINDS = ("score", "floor")  # scored per sentence: rescored without contaminated sentences if asked
UNFINISHED = frozenset({"interrupted", "failed", "running"})


@dataclass(frozen=True)
class Attempt:
    """The latest attempt of a run: ``status`` (finished, running, interrupted, failed, new), when it started,
    the steps it finished and the first it did not, the error of a failure, and its scores."""

    status: str
    started: float | None = None
    finished_steps: list[str] = field(default_factory=list)
    pending_steps: list[str] = field(default_factory=list)
    error: str | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    refused: bool = False  # the last start failed its checks before any step ran: the store is the previous one

    @property
    def stopped_at(self) -> str | None:
        """The step the attempt was in (or would have run next) when it stopped."""
        return self.pending_steps[0] if self.pending_steps else None

    def banner(self) -> str:
        """One Markdown line that says how far the numbers shown reach (empty for a finished run)."""
        if self.status not in UNFINISHED:
            return ""
        when = _format_time(self.started)
        done, left = len(self.finished_steps), len(self.pending_steps)
        where = f" in step `{self.stopped_at}`" if self.stopped_at else ""
        if self.status == "running":
            return (f"**running** since {when}: the scores of the {done} steps finished so far; "
                    f"{left} steps are still to come.")
        cause = f" ({self.error})" if self.error else ""
        if self.refused:
            return (f"⚠ **the last start failed** before any step ran{cause}. Shown: the scores of the previous "
                    "attempt, which finished.")
        return (f"⚠ **{self.status}**{where}{cause}: the attempt started {when} did not finish. Shown: the scores "
                f"of the {done} steps it finished; {left} steps have no current scores (an earlier attempt's "
                "numbers are not shown). Start the recipe again to resume it.")


def _format_time(timestamp: Any) -> str:
    try:
        return datetime.fromtimestamp(float(timestamp)).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def _last_start(events: list[dict[str, Any]]) -> tuple[float | None, str | None, bool]:
    """(time of the last ``run_started``, error of a ``run_failed`` after it, whether that failure came after
    the attempt had finished: a start refused by the checks that run before anything is logged as started)."""
    started, error, finished, refused = None, None, False, False
    for event in events:
        if event.get("event") == "run_started":
            started, error, finished, refused = event.get("time"), None, False, False
        elif event.get("event") == "run_finished":
            finished = True
        elif event.get("event") == "run_failed":
            error, refused = str(event.get("error") or "failed"), finished
    return started, error, refused


def latest_attempt(run: Run) -> Attempt:
    """How the run's latest attempt stands, with the scores that are current for it."""
    try:
        status = run.status()
        steps = run.steps()
        events = run.store.events()
    except UNREADABLE:
        return Attempt("unreadable")
    started, error, refused = _last_start(events)
    finished = [s["id"] for s in steps if s.get("status") in FINISHED_STEP_STATUSES]
    pending = [s["id"] for s in steps if s.get("status") not in FINISHED_STEP_STATUSES]
    failed = status == "failed"
    records = run.records() if failed and refused else current_records(run, status, started, steps)
    return Attempt(status, started, finished, pending, error if failed else None, records, failed and refused)


def current_records(run: Run, status: str, started: float | None, steps: list[dict[str, Any]]) -> list[dict]:
    """The scoreboard when it belongs to the latest attempt; otherwise the scores of the steps it finished."""
    board = run.store.scoreboard_path
    try:
        written_by_this_attempt = board.is_file() and (started is None or board.stat().st_mtime >= started)
    except OSError:
        written_by_this_attempt = False
    if status not in UNFINISHED or (status == "failed" and written_by_this_attempt):
        return run.records()
    return finished_step_records(run, steps)


def finished_step_records(run: Run, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The score records of every finished step, read from its directory as the engine assembles a scoreboard
    (models rescored without contaminated sentences where the recipe asks for it)."""
    done = [s for s in steps if s.get("status") in FINISHED_STEP_STATUSES and s.get("kind") != "base"
            and s.get("path") is not None and s["path"].is_dir()]
    evaluation = run.recipe().get("eval") or {}
    eval_cfg, exclusion = None, None
    if (evaluation.get("contamination") or {}).get("exclude"):
        eval_cfg = EvalConfig.model_validate(evaluation)
        exclusion = flagged_sentences(s["path"] / CONTAMINATION_FILE for s in done
                                      if s["kind"] == "contamination" and (s["path"] / CONTAMINATION_FILE).is_file())
    records: list[dict[str, Any]] = []
    for step in done:
        path = step["path"]
        try:
            record = RunStore.read_artifact(path)
            if eval_cfg is not None and exclusion is not None and step["kind"] in RESCORED_KINDS:
                head = {"stage": record["stage"], "variant": record["variant"]}
                records.extend(rescore_directory(eval_cfg, head, path, exclusion, floor=step["kind"] == "floor"))
                continue
            # a step's records are in the file its record names (older scoring steps: scores.json)
            name = record.get("scores") or (SCORES_FILE if (path / SCORES_FILE).is_file() else None)
            if name:
                records.extend(json.loads((path / name).read_text(encoding="utf-8")))
        except UNREADABLE:
            continue
    return ordered(records)
