"""Runs: every run with its status and stage timeline; start a recipe in the background, stop it, follow it.

The list follows the run store by itself (a run started from a terminal appears, a killed one turns
"interrupted"). Stop ends the run's whole process group and reaps the process this app started, so no
zombie stays behind; a run that ends by itself is reaped on the next tick.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from workbench import launcher
from workbench.errors import WorkbenchError
from workbench.recipe import load_recipe
from workbench.store import list_runs, short_key

from ..attempt import FINISHED_STEP_STATUSES, latest_attempt
from ..context import UNREADABLE, AppContext, Refresh

RUN_COLUMNS = ["name", "status", "stages finished", "last update"]
TIMELINE_COLUMNS = ["step", "kind", "key", "status", "seconds"]


def _format_time(timestamp: Any) -> str:
    try:
        return datetime.fromtimestamp(float(timestamp)).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def runs_frame(ctx: AppContext) -> pd.DataFrame:
    """The runs list: name, status, ``finished/total`` steps, last event time."""
    rows = []
    for store in list_runs(ctx.runs):
        row = {"name": store.name, "status": "unreadable", "stages finished": "", "last update": ""}
        try:
            steps = store.manifest().get("steps", [])
            done = sum(1 for s in steps if s.get("status") in FINISHED_STEP_STATUSES)
            row["stages finished"] = f"{done}/{len(steps)}"
            row["status"] = store.status()
            times = [e["time"] for e in store.events() if isinstance(e.get("time"), int | float)]
            row["last update"] = _format_time(max(times)) if times else ""
        except UNREADABLE:
            pass
        rows.append(row)
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def timeline_frame(ctx: AppContext, name: str | None) -> pd.DataFrame:
    """The run's steps in order: step, kind, short key, status, seconds."""
    run = ctx.run(name)
    rows = []
    try:
        steps = run.manifest().get("steps", []) if run else []
    except UNREADABLE:
        steps = []
    for step in steps:
        seconds = step.get("seconds")
        ok = isinstance(seconds, int | float) and math.isfinite(seconds)
        rows.append({"step": step.get("id", ""), "kind": step.get("kind", ""),
                     "key": short_key(str(step.get("key") or "")), "status": step.get("status", ""),
                     "seconds": round(float(seconds), 1) if ok else ""})
    return pd.DataFrame(rows, columns=TIMELINE_COLUMNS)


def describe(ctx: AppContext, name: str | None) -> str:
    run = ctx.run(name)
    if run is None:
        return "No run selected." if not name else f"No run `{name}` in this workspace."
    try:
        manifest = run.manifest()
    except UNREADABLE as error:
        return f"### {run.name}\n\nCould not read this run: {error}"
    versions = manifest.get("versions") or {}
    lines = [f"### {run.name}", f"status **{run.status()}** · device `{manifest.get('device', '?')}`"
             f" · seed `{manifest.get('seed', '?')}`"]
    banner = latest_attempt(run).banner()
    if banner:
        lines.append(banner)
    if versions:
        lines.append("versions: " + ", ".join(f"{k} `{v}`" for k, v in versions.items()))
    return "\n\n".join(lines)


def job_view(ctx: AppContext) -> tuple[str, str]:
    """(status line, log tail) of the workspace's background run."""
    state = launcher.status(ctx.root)
    job = state["job"]
    if job is None:
        busy = launcher.machine_busy()
        return ("Nothing started from this app." + (" A run started elsewhere holds this machine." if busy else ""),
                "")
    started = _format_time(job.started)
    if state["running"]:
        return f"**running** `{job.recipe}` (pid {job.pid}, started {started})", state["log"]
    return f"last run `{job.recipe}` (started {started}) has ended", state["log"]


def reap(pid: int, wait: float = 0.0) -> bool:
    """Collect the exit of ``pid`` if this process started it, killing first what is left of its process group.

    While the leader is an unreaped zombie its pid, and so its process group id, cannot be reused, so the
    group's stragglers are killed before the leader is reaped, never after. ``wait``: seconds to wait for a
    leader that still runs. False when ``pid`` is not (or no longer) a child of this process."""
    deadline = time.monotonic() + wait
    while True:
        try:  # WNOWAIT: look without reaping
            exited = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        if exited is not None or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if exited is None:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        return False
    return True


def stop_run(ctx: AppContext) -> str:
    """Stop the background run (SIGTERM to its process group, SIGKILL after a grace period) and reap it."""
    job = launcher.current(ctx.root)
    message = launcher.stop(ctx.root)
    if job is not None:
        reap(job.pid, wait=5.0)
    return message


def store_state(ctx: AppContext) -> list[Any]:
    """What changes when a run appears, goes, writes its manifest or events, or its process goes away."""
    state = []
    for store in list_runs(ctx.runs):
        try:
            files = [(p.stat().st_mtime_ns if p.exists() else 0) for p in (store.manifest_path, store.events_path)]
            state.append([store.name, *files, store.is_locked()])
        except OSError:
            state.append([store.name])
    return state


def start_run(ctx: AppContext, recipe: str | None) -> str:
    if not recipe:
        return "Pick a recipe first."
    previous = launcher.current(ctx.root)
    if previous is not None and not previous.alive():
        reap(previous.pid)
    try:
        path = ctx.recipe_path(recipe)

        load_recipe(path)  # refuse an invalid recipe before anything runs
        job = launcher.start(path, ctx.root, ctx.runs)
    except WorkbenchError as error:
        return f"Not started: {error}"
    return f"Started `{ctx.relative(path)}` (pid {job.pid}). Progress and log follow below."


def show_command(ctx: AppContext, recipe: str | None) -> str:
    if not recipe:
        return ""
    try:
        path = ctx.recipe_path(recipe)
    except WorkbenchError as error:
        return str(error)
    return f"cd {ctx.root} && " + launcher.shell_line(path.relative_to(ctx.root), ctx.runs.relative_to(ctx.root))


def build(ctx: AppContext, run_picker: gr.Dropdown) -> Refresh:
    gr.Markdown("Every run of this workspace. Start a recipe here (one at a time per machine); "
                "a stopped run resumes from its last finished stage when started again.")
    runs_table = gr.Dataframe(value=runs_frame(ctx), label="runs", interactive=False, elem_id="runs-table")
    summary = gr.Markdown(describe(ctx, run_picker.value), elem_id="run-summary")
    timeline = gr.Dataframe(value=timeline_frame(ctx, run_picker.value), label="stage timeline",
                            interactive=False, elem_id="run-timeline")
    with gr.Row(equal_height=True):
        recipe = gr.Dropdown(choices=ctx.recipe_files(), value=None, label="recipe", scale=3, elem_id="runs-recipe")
        start = gr.Button("Start", variant="primary", scale=1, elem_id="runs-start")
        stop = gr.Button("Stop", variant="stop", scale=1, elem_id="runs-stop")
        command = gr.Button("Show command", scale=1, elem_id="runs-show-command")
    message = gr.Markdown(elem_id="runs-message")
    command_line = gr.Textbox(label="equivalent command", interactive=False, elem_id="runs-command")
    job_status, log_text = job_view(ctx)
    job = gr.Markdown(job_status, elem_id="runs-job")
    log = gr.Textbox(value=log_text, label="log (live)", lines=12, max_lines=12, interactive=False,
                     autoscroll=True, elem_id="runs-log")
    timer = gr.Timer(2.0)
    seen = gr.State(store_state(ctx))

    def follow(name: str | None) -> tuple[Any, ...]:
        return (runs_frame(ctx), describe(ctx, name), timeline_frame(ctx, name), *job_view(ctx), store_state(ctx))

    def tick(name: str | None, before: list[Any]) -> tuple[Any, ...]:
        """Every 2 s: everything while a job of this app runs (or just ended); else the tables only when the
        run store changed. A job that ended is reaped."""
        job = launcher.current(ctx.root)
        if job is not None and not job.alive():
            reap(job.pid)
        try:
            following = job is not None and (job.alive() or time.time() - Path(job.log).stat().st_mtime <= 10)
        except OSError:
            following = False
        if following or store_state(ctx) != before:
            return follow(name)
        return (gr.skip(),) * len(outputs)

    outputs = [runs_table, summary, timeline, job, log, seen]
    timer.tick(tick, inputs=[run_picker, seen], outputs=outputs, show_progress="hidden")
    start.click(lambda r: start_run(ctx, r), inputs=recipe, outputs=message).then(
        follow, inputs=run_picker, outputs=outputs)
    stop.click(lambda: stop_run(ctx), outputs=message).then(follow, inputs=run_picker, outputs=outputs)
    command.click(lambda r: show_command(ctx, r), inputs=recipe, outputs=command_line)

    def refresh(name: str | None) -> tuple[Any, ...]:
        """The tables, the job, and the recipes as they are now (one saved since the server started too)."""
        return (*follow(name), gr.update(choices=ctx.recipe_files()))  # the choice made is left alone

    return Refresh(refresh, [run_picker], [*outputs, recipe])
