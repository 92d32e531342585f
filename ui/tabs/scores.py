"""Scores: stages x languages/directions with deltas against the base model, the plots, and human ratings.

Human ratings from the Review tab appear as ``human_*`` rows (kind ``human``) beside the automatic
metrics, with the reviewers' agreement below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr
import pandas as pd

from workbench import review, scoreboard
from workbench.run import plot_curves

from ..context import UNREADABLE, AppContext, Refresh

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def records(ctx: AppContext, name: str | None) -> list[dict[str, Any]]:
    """The run's scoreboard plus the human-rating records."""
    run = ctx.run(name)
    if run is None:
        return []
    return [*run.records(), *review.records(review.load_ratings(run.root))]


KINDS = ("all", "lm", "mt", "detector", "human", "tokenizer", "corpus")


def table(ctx: AppContext, name: str | None, kind: str = "all") -> pd.DataFrame:
    """The scores of one kind (or all) as (stage, variant, metric) x language/direction, with deltas."""
    try:
        frame = scoreboard.pivot_with_deltas(records(ctx, name), kind=None if kind in (None, "all") else kind)
    except UNREADABLE:
        return pd.DataFrame()
    if frame.empty:
        return pd.DataFrame(columns=["stage", "metric"])
    return frame.reset_index(drop=isinstance(frame.index, pd.RangeIndex))


def plots(ctx: AppContext, name: str | None) -> tuple[Figure, Figure, Figure]:
    run = ctx.run(name)
    board = run.records() if run is not None else []
    curves = run.curves() if run is not None else pd.DataFrame(columns=["stage", "language"])
    return scoreboard.plot_lm(board), plot_curves(curves), scoreboard.plot_mt(board)


def human(ctx: AppContext, name: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    run = ctx.run(name)
    ratings = review.load_ratings(run.root) if run is not None else []
    return review.summary(ratings).round(2), review.agreement(ratings).round(3)


def build(ctx: AppContext, run_picker: gr.Dropdown) -> Refresh:
    with gr.Row(equal_height=True):
        kind = gr.Radio(list(KINDS), value="all", label="show", scale=4, elem_id="scores-kind")
        refresh = gr.Button("Refresh", scale=1, elem_id="scores-refresh")
    board = gr.Dataframe(value=table(ctx, run_picker.value), label="scores: value (Δ vs base)", interactive=False,
                         wrap=True, max_height=900, elem_id="scores-table")
    lm, curves, mt = plots(ctx, run_picker.value)
    with gr.Row():
        lm_plot = gr.Plot(value=lm, label="bits per byte across stages")
        curves_plot = gr.Plot(value=curves, label="CPT curves")
    mt_plot = gr.Plot(value=mt, label="translation metrics and detector rates")
    ratings, agreement = human(ctx, run_picker.value)
    human_table = gr.Dataframe(value=ratings, label="human ratings per system (Review tab)", interactive=False,
                               elem_id="scores-human")
    agreement_table = gr.Dataframe(value=agreement, label="agreement between reviewers (Krippendorff's alpha)",
                                   interactive=False, elem_id="scores-agreement")

    def update(name: str | None, which: str) -> tuple[Any, ...]:
        return (table(ctx, name, which), *plots(ctx, name), *human(ctx, name))

    outputs = [board, lm_plot, curves_plot, mt_plot, human_table, agreement_table]
    refresh.click(update, inputs=[run_picker, kind], outputs=outputs)
    kind.change(lambda n, k: table(ctx, n, k), inputs=[run_picker, kind], outputs=board)
    return Refresh(update, [run_picker, kind], outputs)
