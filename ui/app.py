"""The workbench Gradio app: browse the runs of a workspace, their scoreboards and stage timelines.

The app holds no state of its own: every page load, run selection and Refresh reads the run store
again through :mod:`workbench.store` and :mod:`workbench.scoreboard`. Run names coming from the
browser are only accepted if they name a run listed in the workspace, so nothing outside the
workspace is ever read (the app writes nothing).
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no network

import argparse
import math
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import pandas as pd

from workbench import scoreboard
from workbench.errors import RunError
from workbench.store import DEFAULT_WORKSPACE, RunStore, list_runs, short_key

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
FINISHED_STEP_STATUSES = frozenset({"ran", "cached", "base"})  # engine step statuses
RUN_COLUMNS = ["name", "status", "stages finished", "last update"]
TIMELINE_COLUMNS = ["step", "kind", "key", "status", "seconds"]
UNREADABLE = (RunError, OSError, ValueError, KeyError, TypeError)

RunView = tuple[str, pd.DataFrame, "Figure", pd.DataFrame]


# -- reading the store ---------------------------------------------------------------------------------
def _format_time(timestamp: Any) -> str:
    try:
        return datetime.fromtimestamp(float(timestamp)).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def _last_update(store: RunStore) -> float | None:
    times = [e.get("time") for e in store.events() if isinstance(e.get("time"), int | float)]
    return max(times) if times else None


def run_summary(store: RunStore) -> dict[str, Any]:
    """One row of the runs list: name, status, ``finished/total`` steps, last event time."""
    row = {"name": store.name, "status": "unreadable", "stages finished": "", "last update": ""}
    try:
        steps = store.manifest().get("steps", [])
        done = sum(1 for s in steps if s.get("status") in FINISHED_STEP_STATUSES)
        row["stages finished"] = f"{done}/{len(steps)}"
        row["status"] = store.status()
        row["last update"] = _format_time(_last_update(store))
    except UNREADABLE:
        pass
    return row


def runs_frame(workspace: Path) -> pd.DataFrame:
    """The runs list of a workspace (sorted by name)."""
    return pd.DataFrame([run_summary(s) for s in list_runs(workspace)], columns=RUN_COLUMNS)


def find_run(workspace: Path, name: str | None) -> RunStore | None:
    """The run called ``name`` if the workspace lists it (never a path built from user input)."""
    if not name:
        return None
    return next((s for s in list_runs(workspace) if s.name == name), None)


def default_run(workspace: Path) -> str | None:
    """The most recently updated run (by last event), or None if the workspace has no runs."""
    runs = list_runs(workspace)
    if not runs:
        return None

    def updated(store: RunStore) -> float:
        try:
            return _last_update(store) or 0.0
        except UNREADABLE:
            return 0.0

    return max(runs, key=updated).name


def timeline_frame(manifest: dict[str, Any]) -> pd.DataFrame:
    """The manifest's steps in order: step id, kind, short key, status, seconds."""
    rows = []
    for step in manifest.get("steps", []):
        seconds = step.get("seconds")
        ok = isinstance(seconds, int | float) and math.isfinite(seconds)
        rows.append(
            {
                "step": step.get("id", ""),
                "kind": step.get("kind", ""),
                "key": short_key(str(step.get("key") or "")),
                "status": step.get("status", ""),
                "seconds": round(float(seconds), 1) if ok else "",
            }
        )
    return pd.DataFrame(rows, columns=TIMELINE_COLUMNS)


def _describe(store: RunStore, manifest: dict[str, Any]) -> str:
    versions = manifest.get("versions") or {}
    lines = [
        f"### {store.name}",
        f"status **{store.status()}** · device `{manifest.get('device', '?')}`"
        f" · seed `{manifest.get('seed', '?')}`",
    ]
    if versions:
        lines.append("versions: " + ", ".join(f"{k} `{v}`" for k, v in versions.items()))
    return "\n\n".join(lines)


def run_view(workspace: Path, name: str | None) -> RunView:
    """What the app shows for one run: description, scoreboard with deltas, bpb plot, timeline."""
    empty_scores = pd.DataFrame(columns=["stage", "variant", "metric"])
    store = find_run(workspace, name)
    if store is None:
        message = "No run selected." if not name else f"No run `{name}` in this workspace."
        return message, empty_scores, scoreboard.plot_lm([]), timeline_frame({})
    try:
        manifest = store.manifest()
        records = store.scoreboard()
        return (
            _describe(store, manifest),
            scoreboard.pivot_with_deltas(records),
            scoreboard.plot_lm(records),
            timeline_frame(manifest),
        )
    except UNREADABLE as error:
        message = f"### {store.name}\n\nCould not read this run: {error}"
        return message, empty_scores, scoreboard.plot_lm([]), timeline_frame({})


# -- the app ---------------------------------------------------------------------------------------------
def build_app(workspace: Path) -> gr.Blocks:
    """A Blocks app over ``workspace``: runs list, run picker, scoreboard, bpb plot, timeline."""
    workspace = Path(workspace)

    def refresh(selected: str | None) -> tuple[Any, ...]:
        runs = runs_frame(workspace)
        names = list(runs["name"])
        name = selected if selected in names else default_run(workspace)
        return (runs, gr.Dropdown(choices=names, value=name), *run_view(workspace, name))

    def select(name: str | None) -> RunView:
        return run_view(workspace, name)

    # Initial values are a first read so the page (and /config) is complete before the load event.
    initial_runs = runs_frame(workspace)
    initial_name = default_run(workspace)
    description, scores, figure, timeline = run_view(workspace, initial_name)

    with gr.Blocks(title="workbench runs", analytics_enabled=False) as app:
        gr.Markdown(f"# workbench runs\nWorkspace: `{workspace}`")
        with gr.Row(equal_height=True):
            picker = gr.Dropdown(
                choices=list(initial_runs["name"]), value=initial_name, label="run", scale=4, interactive=True
            )
            refresh_button = gr.Button("Refresh", scale=1)
        runs_table = gr.Dataframe(value=initial_runs, label="runs", interactive=False)
        summary = gr.Markdown(description)
        scores_table = gr.Dataframe(
            value=scores, label="scoreboard: value (Δ vs base)", interactive=False, wrap=True
        )
        plot = gr.Plot(value=figure, label="bits per byte per language across stages")
        timeline_table = gr.Dataframe(value=timeline, label="stage timeline", interactive=False)

        view_outputs = [summary, scores_table, plot, timeline_table]
        all_outputs = [runs_table, picker, *view_outputs]
        picker.input(select, inputs=picker, outputs=view_outputs)
        refresh_button.click(refresh, inputs=picker, outputs=all_outputs)
        app.load(refresh, inputs=picker, outputs=all_outputs)
    return app


def launch(workspace: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, share: bool = False) -> None:
    """Serve :func:`build_app` on ``host:port`` (loopback only unless told otherwise); blocks."""
    build_app(Path(workspace)).launch(
        server_name=host, server_port=port, share=share, ssr_mode=False, show_error=True
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m workbench_ui.app [--workspace runs] [--host 127.0.0.1] [--port 7860]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=DEFAULT_WORKSPACE)
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--share", action="store_true")
    args = parser.parse_args(argv)
    launch(args.workspace, host=args.host, port=args.port, share=args.share)


if __name__ == "__main__":
    main()


__all__ = ["build_app", "launch", "run_view", "runs_frame"]
