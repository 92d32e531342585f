"""Corpus: the data card per language, documents with provenance and language score, and marking bad ones.

Marked documents go to the run's exclusion list (``<run>/marked-bad.jsonl``), which the next
``workbench run`` of the recipe honours (see :mod:`workbench.marks`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr
import pandas as pd

from workbench.errors import WorkbenchError
from workbench.marks import load_marks, mark_bad

from ..context import UNREADABLE, AppContext

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DOC_COLUMNS = ["line", "score", "source", "offset", "url", "text"]
MARK_COLUMNS = ["language", "reason", "reviewer", "source", "offset", "text"]
MAX_RESULTS = 50
EXCERPT = 300


def card_view(ctx: AppContext, name: str | None) -> tuple[pd.DataFrame, pd.DataFrame, Figure, list[str], str]:
    """(sizes per language, drops by reason, language-score histograms, languages, message)."""
    run = ctx.run(name)
    empty = pd.DataFrame(columns=["language", "documents", "bytes", "chars", "words"])
    if run is None:
        return empty, pd.DataFrame(columns=["reason", "documents"]), histogram_plot({}), [], "No run selected."
    try:
        card = run.corpus_card()
    except UNREADABLE as error:
        return empty, pd.DataFrame(columns=["reason", "documents"]), histogram_plot({}), [], str(error)
    dropped = card.dropped[card.dropped.documents > 0].reset_index(drop=True)
    total = int(card.languages.documents.sum())
    target = run.recipe().get("languages", {}).get("target")
    codes = sorted(card.languages.language, key=lambda code: (code != target, code))  # the target first
    return (card.languages, dropped, histogram_plot(card.histograms), codes,
            f"{total:,} documents kept in {len(card.languages)} languages; {int(dropped.documents.sum()):,} dropped.")


def histogram_plot(histograms: dict[str, dict[str, list[float]]]) -> Figure:
    """Language-identification scores of the kept documents, one bar series per language."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set(title="language-identification score of kept documents", xlabel="score", ylabel="documents")
    if not histograms:
        axes.text(0.5, 0.5, "no corpus", ha="center", va="center", transform=axes.transAxes)
        return figure
    width = 0.1 / max(1, len(histograms))
    for i, (language, hist) in enumerate(histograms.items()):
        lefts = [b + i * width for b in hist["bins"][:-1]]
        axes.bar(lefts, hist["counts"], width=width, align="edge", label=language)
    axes.legend()
    return figure


def search(ctx: AppContext, name: str | None, language: str | None, query: str) -> tuple[pd.DataFrame, str]:
    """The first documents of ``language`` containing ``query`` (case-insensitive; empty: the first ones)."""
    run = ctx.run(name)
    if run is None or not language:
        return pd.DataFrame(columns=DOC_COLUMNS), "Pick a run and a language."
    needle = (query or "").strip().casefold()
    rows, matches = [], 0
    try:
        for document in run.corpus_card().documents(language):
            if needle and needle not in document["text"].casefold():
                continue
            matches += 1
            if len(rows) < MAX_RESULTS:
                text = document["text"]
                rows.append({"line": document["line"], "score": document.get("score"),
                             "source": document.get("url") or document.get("source"), "offset": document.get("offset"),
                             "url": document.get("url"),
                             "text": text if len(text) <= EXCERPT else text[:EXCERPT] + " …"})
    except UNREADABLE as error:
        return pd.DataFrame(columns=DOC_COLUMNS), str(error)
    shown = f"showing the first {len(rows)}" if matches > len(rows) else f"{matches} shown"
    return pd.DataFrame(rows, columns=DOC_COLUMNS), f"{matches:,} documents match ({shown})."


def marks_frame(ctx: AppContext, name: str | None) -> pd.DataFrame:
    run = ctx.run(name)
    marks = load_marks(run.root) if run is not None else []
    rows = [{**{k: m.get(k) for k in MARK_COLUMNS}, "text": (m.get("text") or "")[:EXCERPT]} for m in marks]
    return pd.DataFrame(rows, columns=MARK_COLUMNS)


def mark(ctx: AppContext, name: str | None, language: str | None, line: Any, reason: str,
         reviewer: str) -> tuple[str, pd.DataFrame]:
    """Mark document ``line`` of ``language`` bad (by its line in the corpus file)."""
    run = ctx.run(name)
    if run is None or not language or line in (None, ""):
        return "Pick a document first (click its row).", marks_frame(ctx, name)
    try:
        number = int(line)
        document = next((d for d in run.corpus_card().documents(language) if d["line"] == number), None)
        if document is None:
            return f"No document on line {number} of {language}.", marks_frame(ctx, name)
        mark_bad(run.root, document, reason=reason or "marked bad", reviewer=reviewer)
    except (WorkbenchError, ValueError) as error:
        return f"Not marked: {error}", marks_frame(ctx, name)
    return (f"Marked line {number} of {language} bad. The next `workbench run` of this recipe crawls without it.",
            marks_frame(ctx, name))


def build(ctx: AppContext, run_picker: gr.Dropdown) -> None:
    languages, dropped, figure, codes, message = card_view(ctx, run_picker.value)
    summary = gr.Markdown(message, elem_id="corpus-summary")
    with gr.Row():
        sizes = gr.Dataframe(value=languages, label="kept per language", interactive=False, elem_id="corpus-sizes")
        drops = gr.Dataframe(value=dropped, label="dropped by reason", interactive=False, elem_id="corpus-drops")
    histogram = gr.Plot(value=figure, label="language scores")
    with gr.Row(equal_height=True):
        language = gr.Dropdown(choices=codes, value=codes[0] if codes else None, label="language", scale=1,
                               elem_id="corpus-language")
        query = gr.Textbox(label="search documents", placeholder="a word or phrase", scale=3, elem_id="corpus-query")
        find = gr.Button("Search", scale=1, elem_id="corpus-search")
    found = gr.Markdown(elem_id="corpus-found")
    documents = gr.Dataframe(label="documents (click a row to select it)", interactive=False, wrap=True,
                             elem_id="corpus-documents")
    with gr.Row(equal_height=True):
        line = gr.Number(value=None, label="selected line", precision=0, scale=1, elem_id="corpus-line")
        reason = gr.Textbox(label="why is it bad?", placeholder="machine translated, wrong variety, boilerplate…",
                            scale=3, elem_id="corpus-reason")
        who = gr.Textbox(label="your name", scale=1, elem_id="corpus-reviewer")
        flag = gr.Button("Mark bad", variant="stop", scale=1, elem_id="corpus-mark")
    marked = gr.Markdown(elem_id="corpus-marked")
    marks = gr.Dataframe(value=marks_frame(ctx, run_picker.value), label="marked bad (excluded from the next crawl)",
                         interactive=False, wrap=True, elem_id="corpus-marks")

    def pick(frame: pd.DataFrame, event: gr.SelectData) -> Any:
        row = event.index[0] if isinstance(event.index, list | tuple) else event.index
        return int(frame.iloc[row]["line"]) if 0 <= row < len(frame) else gr.skip()

    def refresh(name: str | None) -> tuple[Any, ...]:
        sizes_value, drops_value, plot, choices, text = card_view(ctx, name)
        return (text, sizes_value, drops_value, plot, gr.Dropdown(choices=choices, value=choices[0] if choices
                else None), marks_frame(ctx, name))

    run_picker.change(refresh, inputs=run_picker, outputs=[summary, sizes, drops, histogram, language, marks])
    for trigger in (find.click, query.submit):
        trigger(lambda n, lang, q: search(ctx, n, lang, q), inputs=[run_picker, language, query],
                outputs=[documents, found])
    documents.select(pick, inputs=documents, outputs=line)
    flag.click(lambda n, lang, ln, r, w: mark(ctx, n, lang, ln, r, w), inputs=[run_picker, language, line, reason, who],
               outputs=[marked, marks])
