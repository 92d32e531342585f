"""Review: blind rating of outputs by named reviewers; ratings saved in the run store.

- Blind: the browser only ever gets an output's text and an opaque id; which system wrote it, and the
  item's key, stay on the server (the current item is held in a server-side ``gr.State``).
- Each item starts with an empty form; "your ratings" reopens an earlier rating to edit it.
- Overlap: items are handed out until each has k ratings from different reviewers (k and the
  guidelines are per run, under "review settings"), so agreement per criterion can be measured.
- Two windows of one reviewer: a save is refused, with a notice, when the reviewer's rating of that
  item changed since the form was opened (:func:`workbench.review.save_rating`).
- Keys: 1-5 rate adequacy, then fluency, then orthography; X ticks "invented facts"; Ctrl+Enter submits.
- The run's owner sees every rating unblinded and exports them (CSV, JSONL) under ``exports/``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import gradio as gr
import pandas as pd

from workbench import review
from workbench.errors import WorkbenchError
from workbench.io import atomic_write_text

from ..context import UNREADABLE, AppContext, Refresh, escape

ALL = "all directions"
SCORES = ["1", "2", "3", "4", "5"]
EXCERPT = 70
EMPTY_FORM = (None, None, None, False, "")
NOT_OWNER = "Only the run's owner (the first login) sees unblinded ratings and edits the settings."
SHORTCUTS = """<script>
/* Review tab keys: 1-5 rate the criterion in focus, else the first one still empty; X toggles
   "invented facts"; Ctrl+Enter submits. Keys typed into a text field are left alone. */
document.addEventListener("keydown", (event) => {
  const first = document.getElementById("rev-adequacy");
  if (!first || first.offsetParent === null) return;
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    document.querySelector("#rev-submit")?.click();
    event.preventDefault();
    return;
  }
  const typing = event.target.closest("textarea, input[type=text], input[type=number], [contenteditable=true]");
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  const groups = ["rev-adequacy", "rev-fluency", "rev-orthography"].map((id) => document.getElementById(id));
  if (/^[1-5]$/.test(event.key)) {
    const group = groups.find((g) => g.contains(document.activeElement))
      || groups.find((g) => !g.querySelector("input:checked"));
    group?.querySelector(`input[value="${event.key}"]`)?.click();
    document.activeElement?.blur?.();
    event.preventDefault();
  } else if (event.key === "x" || event.key === "X") {
    document.querySelector("#rev-invented input")?.click();
    event.preventDefault();
  }
});
</script>"""


def run_items(ctx: AppContext, name: str | None, direction: str | None = ALL) -> list[review.Item]:
    run = ctx.run(name)
    if run is None:
        return []
    try:
        frame = run.translations(None if direction in (None, ALL) else direction)
    except UNREADABLE:
        return []
    return review.items(frame)


def _progress(who: str, counts: dict[str, int]) -> str:
    k = counts["ratings_per_item"]
    return (f"<b>{escape(who)}</b>: you rated <b>{counts['mine']} of {counts['total']}</b> outputs · "
            f"{counts['complete']} of {counts['total']} have their {k} ratings")


def _context(item: review.Item) -> str:
    src, tgt = item.direction.split("-")
    return (f"<p><b>source</b> ({escape(src)}): {escape(item.source)}</p>"
            f"<p><b>reference</b> ({escape(tgt)}): {escape(item.reference)}</p>")


def history(ctx: AppContext, name: str | None, reviewer: str, direction: str | None) -> list[tuple[str, str]]:
    """(label, opaque id) of the reviewer's own ratings, oldest first: what "your ratings" offers."""
    run = ctx.run(name)
    try:
        who = review.check_reviewer(reviewer)
    except WorkbenchError:
        return []
    if run is None:
        return []
    mapping = review.by_opaque_id(run.root, run_items(ctx, name, direction))
    ids = {item.key: opaque for opaque, item in mapping.items()}
    by_key = {item.key: item for item in mapping.values()}
    mine = sorted((r for r in review.load_ratings(run.root) if r["reviewer"] == who and r["item"] in ids),
                  key=lambda r: r.get("time", 0))
    return [(f"{n}. {by_key[r['item']].hypothesis[:EXCERPT]}", ids[r["item"]]) for n, r in enumerate(mine, 1)]


def open_item(ctx: AppContext, name: str | None, reviewer: str, direction: str | None,
              item_id: str | None = None) -> tuple[Any, ...]:
    """The form for the reviewer's next item (empty), or for ``item_id`` with their earlier rating in it.

    Returns (state, progress, context, output, adequacy, fluency, orthography, invented, comment, history).
    The state ({"id", "based_on"}) stays on the server; the browser gets texts and the opaque id only.
    """
    run = ctx.run(name)
    if run is None:
        return ({}, "Pick a run.", "", "", *EMPTY_FORM, gr.Dropdown(choices=[], value=None))
    try:
        who = review.check_reviewer(reviewer)
    except WorkbenchError as error:
        return ({}, escape(error), "", "", *EMPTY_FORM, gr.Dropdown(choices=[], value=None))
    all_items = run_items(ctx, name, direction)
    settings = review.load_settings(run.root)
    ratings = review.load_ratings(run.root)
    mapping = review.by_opaque_id(run.root, all_items)
    counts = review.progress(all_items, who, ratings, settings["ratings_per_item"])
    choices = gr.Dropdown(choices=history(ctx, name, who, direction), value=item_id)
    item = mapping.get(item_id or "") or (None if item_id else review.next_item(
        all_items, who, ratings, settings["ratings_per_item"]))
    if item is None:
        done = (f"{_progress(who, counts)}<p>Nothing left for you: every output has its ratings or yours. "
                "Thank you!</p>")
        return ({}, done, "", "", *EMPTY_FORM, choices)
    earlier = review.own_rating(ratings, who, item.key)
    state = {"id": review.opaque_id(review.run_secret(run.root), item.key),
             "based_on": earlier.get("time") if earlier else None}
    heading = _progress(who, counts) + ("<p><i>Editing your earlier rating of this output.</i></p>" if earlier
                                        else "")
    if earlier is None:
        form = EMPTY_FORM
    else:
        form = (*(str(earlier[scale]) for scale in review.SCALES), bool(earlier["invented"]),
                earlier.get("comment", ""))
    return (state, heading, _context(item), item.hypothesis, *form, choices)


def submit(ctx: AppContext, name: str | None, reviewer: str, direction: str | None, state: dict[str, Any],
           adequacy: str | None, fluency: str | None, orthography: str | None, invented: bool,
           comment: str) -> tuple[Any, ...]:
    """Save the rating of the current item, then open the next one; a refused save keeps the form as it is.

    Returns (message, *the outputs of :func:`open_item`).
    """
    keep = (gr.skip(),) * 10
    run = ctx.run(name)
    if run is None or not state or not state.get("id"):
        return ("Nothing to rate: press Next output.", *keep)
    chosen = {"adequacy": adequacy, "fluency": fluency, "orthography": orthography}
    missing = [scale for scale, value in chosen.items() if value in (None, "")]
    if missing:
        return (f"Not saved: rate {', '.join(missing)} first (keys 1-5).", *keep)
    item = review.by_opaque_id(run.root, run_items(ctx, name, ALL)).get(state["id"])
    if item is None:
        return ("That output is no longer in this run: press Next output.", *keep)
    try:
        scores = {scale: int(value) for scale, value in chosen.items()} | {"invented": bool(invented)}
        record = review.rating_record(item, reviewer, scores, comment)
        review.save_rating(run.root, record, state.get("based_on"))
    except review.RatingConflict as error:
        return (f"<b>Not saved</b>: {escape(error)}", *keep)
    except (WorkbenchError, ValueError) as error:
        return (f"Not saved: {escape(error)}", *keep)
    return ("Saved.", *open_item(ctx, name, reviewer, direction))


def stamped(result: tuple[Any, ...]) -> tuple[Any, ...]:
    """The submit message with the time: a second "Saved." is visibly a new one."""
    return (f"{time.strftime('%H:%M:%S')} · {result[0]}", *result[1:])


def agreement(ctx: AppContext, name: str | None) -> pd.DataFrame:
    """Krippendorff's alpha per criterion with the number of items rated by two or more reviewers."""
    run = ctx.run(name)
    frame = review.agreement(review.load_ratings(run.root) if run else []).round(3)
    return frame.rename(columns={"items": "items rated twice or more"})


def settings_view(ctx: AppContext, name: str | None) -> tuple[str, Any, str]:
    """(guidelines shown above the form, k, guidelines text to edit)."""
    run = ctx.run(name)
    settings = review.load_settings(run.root) if run else {"ratings_per_item": review.DEFAULT_RATINGS_PER_ITEM,
                                                           "guidelines": ""}
    return guidelines_html(settings["guidelines"]), settings["ratings_per_item"], settings["guidelines"]


def guidelines_html(text: str) -> str:
    """The guidelines as escaped text, one paragraph per line (no markup from the text is interpreted)."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return "".join(f"<p>{escape(line)}</p>" for line in lines) or "<p>No guidelines for this run.</p>"


def save_settings(ctx: AppContext, name: str | None, k: Any, text: str, request: gr.Request | None = None) -> str:
    run = ctx.run(name)
    if run is None:
        return "Pick a run."
    if not ctx.is_owner(getattr(request, "username", None)):
        return NOT_OWNER
    try:
        settings = review.save_settings(run.root, k, text)
    except WorkbenchError as error:
        return f"Not saved: {escape(error)}"
    return f"Saved: {settings['ratings_per_item']} ratings per output."


def ratings_table(ctx: AppContext, name: str | None, request: gr.Request | None = None) -> tuple[pd.DataFrame, str]:
    """Every rating unblinded (system, texts, reviewer, comment) for the run's owner."""
    run = ctx.run(name)
    columns = list(review.EXPORT_FIELDS)
    if run is None:
        return pd.DataFrame(columns=columns), "Pick a run."
    if not ctx.is_owner(getattr(request, "username", None)):
        return pd.DataFrame(columns=columns), NOT_OWNER
    rows = review.export_rows(run.root, run_items(ctx, name, ALL))
    return pd.DataFrame(rows, columns=columns), f"{len(rows)} ratings, unblinded."


def export_ratings(ctx: AppContext, name: str | None, fmt: str, request: gr.Request | None = None) -> str | None:
    """Write the unblinded ratings to ``exports/<run>-ratings.csv`` or ``.jsonl``; the path to download."""
    run = ctx.run(name)
    if run is None or not ctx.is_owner(getattr(request, "username", None)):
        return None
    rows = review.export_rows(run.root, run_items(ctx, name, ALL))
    path = ctx.exports_dir / f"{run.name}-ratings.{fmt}"
    if fmt == "csv":
        text = pd.DataFrame(rows, columns=list(review.EXPORT_FIELDS)).to_csv(index=False)
    else:
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    atomic_write_text(path, text)
    return str(path)


def build(ctx: AppContext, run_picker: gr.Dropdown) -> Refresh:
    gr.Markdown("Rate outputs without knowing which model wrote them. Each output goes to several reviewers "
                "(so agreement can be measured). **Keys**: 1-5 rate adequacy, then fluency, then orthography; "
                "X ticks invented facts; Ctrl+Enter submits.")
    guidelines = gr.HTML(elem_id="rev-guidelines")
    with gr.Row(equal_height=True):
        reviewer = gr.Textbox(label="your name", scale=2, elem_id="rev-name")
        direction = gr.Dropdown(choices=[ALL], value=ALL, label="direction", scale=2, elem_id="rev-direction")
        start = gr.Button("Next output", scale=1, elem_id="rev-next")
        earlier = gr.Dropdown(choices=[], value=None, label="your ratings (pick one to edit it)", scale=3,
                              elem_id="rev-history")
    current = gr.State({})
    progress = gr.HTML(elem_id="rev-progress")
    context = gr.HTML(elem_id="rev-context")
    output = gr.Textbox(label="output to rate", interactive=False, lines=3, elem_id="rev-output")
    with gr.Row():
        adequacy = gr.Radio(SCORES, value=None, label="adequacy (meaning kept)", elem_id="rev-adequacy")
        fluency = gr.Radio(SCORES, value=None, label="fluency", elem_id="rev-fluency")
        orthography = gr.Radio(SCORES, value=None, label="orthography / variety", elem_id="rev-orthography")
    invented = gr.Checkbox(label="contains invented facts", elem_id="rev-invented")
    comment = gr.Textbox(label="comment (optional)", elem_id="rev-comment")
    send = gr.Button("Submit rating", variant="primary", elem_id="rev-submit")
    saved = gr.HTML(elem_id="rev-saved")
    agree = gr.Dataframe(label="agreement between reviewers (Krippendorff's alpha)", interactive=False,
                         elem_id="rev-agreement")
    with gr.Accordion("Review settings (run owner)", open=False):
        k = gr.Number(label="ratings per output (k, 2-10)", precision=0, elem_id="rev-k")
        guidelines_text = gr.Textbox(label="guidelines shown above the form", lines=6, elem_id="rev-guidelines-edit")
        save_button = gr.Button("Save settings", elem_id="rev-settings-save")
        settings_message = gr.Markdown(elem_id="rev-settings-message")
    with gr.Accordion("All ratings, unblinded (run owner; not for reviewers' eyes)", open=False):
        with gr.Row():
            unblind = gr.Button("Show ratings", elem_id="rev-unblind")
            as_csv = gr.Button("Export CSV", elem_id="rev-export-csv")
            as_jsonl = gr.Button("Export JSONL", elem_id="rev-export-jsonl")
        unblind_message = gr.Markdown(elem_id="rev-unblind-message")
        everything = gr.Dataframe(interactive=False, wrap=True, elem_id="rev-ratings")
        download = gr.File(label="download", interactive=False, elem_id="rev-file")

    form = [current, progress, context, output, adequacy, fluency, orthography, invented, comment, earlier]
    who = [run_picker, reviewer, direction]
    start.click(lambda n, r, d: open_item(ctx, n, r, d), inputs=who, outputs=form)
    earlier.input(lambda n, r, d, i: open_item(ctx, n, r, d, i), inputs=[*who, earlier], outputs=form)
    rate = [*who, current, adequacy, fluency, orthography, invented, comment]
    send.click(lambda n, r, d, s, a, f, o, i, c: stamped(submit(ctx, n, r, d, s, a, f, o, i, c)), inputs=rate,
               outputs=[saved, *form]).then(lambda n: agreement(ctx, n), inputs=run_picker, outputs=agree)
    def store_settings(name: str | None, ratings_per_item: Any, text: str, request: gr.Request) -> str:
        return save_settings(ctx, name, ratings_per_item, text, request)

    def show_ratings(name: str | None, request: gr.Request) -> tuple[pd.DataFrame, str]:
        return ratings_table(ctx, name, request)

    def to_csv(name: str | None, request: gr.Request) -> str | None:
        return export_ratings(ctx, name, "csv", request)

    def to_jsonl(name: str | None, request: gr.Request) -> str | None:
        return export_ratings(ctx, name, "jsonl", request)

    save_button.click(store_settings, inputs=[run_picker, k, guidelines_text], outputs=settings_message).then(
        lambda n: settings_view(ctx, n), inputs=run_picker, outputs=[guidelines, k, guidelines_text])
    unblind.click(show_ratings, inputs=run_picker, outputs=[everything, unblind_message])
    as_csv.click(to_csv, inputs=run_picker, outputs=download)
    as_jsonl.click(to_jsonl, inputs=run_picker, outputs=download)

    def refresh(name: str | None, chosen: str | None) -> tuple[Any, ...]:
        run = ctx.run(name)
        codes = run.directions() if run is not None else []
        keep = chosen if chosen in codes else ALL
        return (gr.Dropdown(choices=[ALL, *codes], value=keep), agreement(ctx, name), *settings_view(ctx, name))

    return Refresh(refresh, [run_picker, direction], [direction, agree, guidelines, k, guidelines_text])
