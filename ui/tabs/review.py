"""Review: blind rating of outputs by a named reviewer; ratings saved in the run store.

The reviewer never sees which model produced an output; items come in an order of their own. Means
per model, and the agreement between reviewers, appear in the Scores tab.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from workbench import review
from workbench.errors import WorkbenchError

from ..context import AppContext

ALL = "all directions"


def _items(ctx: AppContext, name: str | None, direction: str | None) -> list[review.Item]:
    run = ctx.run(name)
    if run is None:
        return []
    frame = run.translations(None if direction in (None, ALL) else direction)
    return review.items(frame)


def next_view(ctx: AppContext, name: str | None, reviewer: str, direction: str | None) -> tuple[str, str, str, str]:
    """(item key, progress, source and reference, output) of the reviewer's next unrated item."""
    run = ctx.run(name)
    if run is None:
        return "", "Pick a run.", "", ""
    try:
        who = review.check_reviewer(reviewer)
    except WorkbenchError as error:
        return "", str(error), "", ""
    items = _items(ctx, name, direction)
    ratings = [r for r in review.load_ratings(run.root) if r["reviewer"] == who]
    keys = {i.key for i in items}
    done = sum(1 for r in ratings if r["item"] in keys)
    item = review.next_item(items, who, ratings)
    if item is None:
        return "", f"**{who}**: all {len(items)} outputs rated. Thank you!", "", ""
    src, tgt = item.direction.split("-")
    context = f"**source** ({src}): {item.source}\n\n**reference** ({tgt}): {item.reference}"
    return item.key, f"**{who}**: {done} of {len(items)} rated", context, item.hypothesis


def submit(ctx: AppContext, name: str | None, reviewer: str, key: str, adequacy: float, fluency: float,
           orthography: float, invented: bool, comment: str) -> str:
    """Save one rating of the item ``key`` (looked up among the run's items, never trusted as given)."""
    run = ctx.run(name)
    if run is None or not key:
        return "Nothing to rate: press Next."
    item = next((i for i in _items(ctx, name, ALL) if i.key == key), None)
    if item is None:
        return "That output is no longer in this run."
    try:
        record = review.rating_record(item, reviewer, {"adequacy": adequacy, "fluency": fluency,
                                                       "orthography": orthography, "invented": bool(invented)},
                                      comment)
    except WorkbenchError as error:
        return f"Not saved: {error}"
    review.add_rating(run.root, record)
    return "Saved."


def agreement(ctx: AppContext, name: str | None) -> pd.DataFrame:
    run = ctx.run(name)
    return review.agreement(review.load_ratings(run.root) if run else []).round(3)


def build(ctx: AppContext, run_picker: gr.Dropdown) -> None:
    run = ctx.run(run_picker.value)
    codes = run.directions() if run is not None else []
    gr.Markdown("Rate outputs without knowing which model wrote them. Your ratings are saved under your name; "
                "rating an output again replaces your earlier rating.")
    with gr.Row(equal_height=True):
        reviewer = gr.Textbox(label="your name", scale=2, elem_id="rev-name")
        direction = gr.Dropdown(choices=[ALL, *codes], value=ALL, label="direction", scale=2, elem_id="rev-direction")
        start = gr.Button("Next output", scale=1, elem_id="rev-next")
    key = gr.Textbox(visible=False, elem_id="rev-key")
    progress = gr.Markdown(elem_id="rev-progress")
    context = gr.Markdown(elem_id="rev-context")
    output = gr.Textbox(label="output to rate", interactive=False, lines=3, elem_id="rev-output")
    with gr.Row():
        adequacy = gr.Slider(1, 5, value=3, step=1, label="adequacy (meaning kept)", elem_id="rev-adequacy")
        fluency = gr.Slider(1, 5, value=3, step=1, label="fluency", elem_id="rev-fluency")
        orthography = gr.Slider(1, 5, value=3, step=1, label="orthography / variety", elem_id="rev-orthography")
    invented = gr.Checkbox(label="contains invented facts", elem_id="rev-invented")
    comment = gr.Textbox(label="comment (optional)", elem_id="rev-comment")
    send = gr.Button("Submit rating", variant="primary", elem_id="rev-submit")
    saved = gr.Markdown(elem_id="rev-saved")
    agree = gr.Dataframe(value=agreement(ctx, run_picker.value), label="agreement between reviewers",
                         interactive=False, elem_id="rev-agreement")

    view = [key, progress, context, output]
    start.click(lambda n, r, d: next_view(ctx, n, r, d), inputs=[run_picker, reviewer, direction], outputs=view)
    send.click(lambda n, r, k, a, f, o, i, c: submit(ctx, n, r, k, a, f, o, i, c),
               inputs=[run_picker, reviewer, key, adequacy, fluency, orthography, invented, comment],
               outputs=saved).then(lambda n, r, d: next_view(ctx, n, r, d), inputs=[run_picker, reviewer, direction],
                                   outputs=view).then(lambda n: agreement(ctx, n), inputs=run_picker, outputs=agree)
    run_picker.change(lambda n: ("", "", "", "", agreement(ctx, n)), inputs=run_picker, outputs=[*view, agree])
