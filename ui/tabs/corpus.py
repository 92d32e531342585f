"""Corpus: the data card per language, documents with provenance and language score, and marking bad ones.

Marked documents go to the run's exclusion list (``<run>/marked-bad.jsonl``), which the next
``workbench run`` of the recipe honours (see :mod:`workbench.marks`). Marking needs an explicit
choice: click a document's row (its full text is shown), press "Mark bad", then confirm. The marks
list says who marked what, why and when; a mark can be taken back ("Unmark").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import gradio as gr
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from workbench.errors import WorkbenchError
from workbench.languages import language_name
from workbench.marks import load_marks, mark_bad, mark_id, unmark

from ..context import UNREADABLE, AppContext, Refresh, escape

DOC_COLUMNS = ["line", "score", "source", "offset", "url", "text"]
MARK_COLUMNS = ["when", "reviewer", "reason", "language", "source", "offset", "text", "id"]
MAX_RESULTS = 50
EXCERPT = 300
NOTHING_SELECTED = "<p>No document selected: click a row of the search results.</p>"


def named(code: str) -> str:
    """``srd_Latn · Sardinian``: the code with its language's name beside it."""
    return f"{code} · {language_name(code)}"


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
    sizes = card.languages.assign(name=[language_name(c) for c in card.languages.language])
    sizes = sizes[["language", "name", *[c for c in card.languages.columns if c != "language"]]]
    return (sizes, dropped, histogram_plot(card.histograms), codes,
            f"{total:,} documents kept in {len(card.languages)} languages; {int(dropped.documents.sum()):,} dropped.")


def histogram_plot(histograms: dict[str, dict[str, list[float]]]) -> Figure:
    """Language-identification scores of the kept documents, one bar series per language."""
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
        axes.bar(lefts, hist["counts"], width=width, align="edge", label=named(language))
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


def _when(timestamp: Any) -> str:
    try:
        return datetime.fromtimestamp(float(timestamp)).strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def marks_frame(ctx: AppContext, name: str | None) -> pd.DataFrame:
    """The run's marks: who marked what, why and when (click a row to select it for Unmark)."""
    run = ctx.run(name)
    marks = load_marks(run.root) if run is not None else []
    rows = [{**{k: m.get(k) for k in MARK_COLUMNS}, "when": _when(m.get("time")), "id": mark_id(m),
             "text": (m.get("text") or "")[:EXCERPT]} for m in marks]
    return pd.DataFrame(rows, columns=MARK_COLUMNS)


def find_document(ctx: AppContext, name: str | None, language: str | None, line: Any) -> dict[str, Any] | None:
    """The corpus document on ``line`` of ``language`` (None if there is none)."""
    run = ctx.run(name)
    if run is None or not language or line in (None, ""):
        return None
    number = int(line)
    return next((d for d in run.corpus_card().documents(language) if d["line"] == number), None)


def document_view(document: dict[str, Any] | None, language: str | None) -> tuple[str, str]:
    """(provenance, full text) of the selected document, escaped."""
    if document is None:
        return NOTHING_SELECTED, ""
    source = document.get("url") or document.get("source") or "?"
    return (f"<p><b>line {document['line']}</b> of {escape(named(language or ''))} · source {escape(source)}"
            f" · offset {escape(document.get('offset'))} · language score {escape(document.get('score'))}"
            f" · {len(document['text']):,} characters</p>", document["text"])


def select(ctx: AppContext, name: str | None, language: str | None, line: Any) -> tuple[Any, str, str]:
    """(selected line, provenance, full text) for a clicked row."""
    try:
        document = find_document(ctx, name, language, line)
    except UNREADABLE as error:
        return None, f"<p>Could not read the document: {escape(error)}</p>", ""
    return (document["line"] if document else None, *document_view(document, language))


def ask(ctx: AppContext, name: str | None, language: str | None, line: Any) -> tuple[str, Any]:
    """(message, confirmation panel): "Mark bad" only asks; nothing is marked without a selection."""
    if line in (None, ""):
        return "Select a document first: click its row in the search results.", gr.Group(visible=False)
    return "", gr.Group(visible=True)


def confirm_text(language: str | None, line: Any) -> str:
    if line in (None, ""):
        return ""
    return (f"<p><b>Mark line {int(line)} of {escape(named(language or ''))} bad?</b> The next "
            "<code>workbench run</code> of this recipe crawls without it (the full text is above).</p>")


def mark(ctx: AppContext, name: str | None, language: str | None, line: Any, reason: str,
         reviewer: str) -> tuple[str, pd.DataFrame]:
    """Mark document ``line`` of ``language`` bad (after the reader confirmed)."""
    run = ctx.run(name)
    if run is None or not language or line in (None, ""):
        return "Select a document first: click its row in the search results.", marks_frame(ctx, name)
    try:
        document = find_document(ctx, name, language, line)
        if document is None:
            return f"No document on line {int(line)} of {language}.", marks_frame(ctx, name)
        mark_bad(run.root, document, reason=reason or "marked bad", reviewer=reviewer)
    except (WorkbenchError, ValueError) as error:
        return f"Not marked: {escape(error)}", marks_frame(ctx, name)
    return (f"Marked line {int(line)} of {escape(language)} bad. The next <code>workbench run</code> of this recipe "
            "crawls without it.", marks_frame(ctx, name))


def take_back(ctx: AppContext, name: str | None, identifier: str | None, reviewer: str) -> tuple[str, pd.DataFrame]:
    """Unmark the selected mark (logged with who and when)."""
    run = ctx.run(name)
    if run is None or not identifier:
        return "Select a mark first: click its row in the marks list.", marks_frame(ctx, name)
    try:
        removed = unmark(run.root, identifier, reviewer=reviewer)
    except (WorkbenchError, OSError) as error:
        return f"Not unmarked: {escape(error)}", marks_frame(ctx, name)
    return (f"Unmarked a document of {escape(removed.get('language'))}: the next crawl keeps it again.",
            marks_frame(ctx, name))


def build(ctx: AppContext, run_picker: gr.Dropdown) -> Refresh:
    summary = gr.Markdown(elem_id="corpus-summary")
    with gr.Row():
        sizes = gr.Dataframe(label="kept per language", interactive=False, elem_id="corpus-sizes")
        drops = gr.Dataframe(label="dropped by reason", interactive=False, elem_id="corpus-drops")
    histogram = gr.Plot(label="language scores")
    with gr.Row(equal_height=True):
        language = gr.Dropdown(choices=[], value=None, label="language", scale=1, elem_id="corpus-language")
        query = gr.Textbox(label="search documents", placeholder="a word or phrase", scale=3, elem_id="corpus-query")
        find = gr.Button("Search", scale=1, elem_id="corpus-search")
    found = gr.Markdown(elem_id="corpus-found")
    documents = gr.Dataframe(label="documents (click a row to select it; its full text appears below)",
                             interactive=False, wrap=True, elem_id="corpus-documents")
    line = gr.Number(value=None, label="selected line", precision=0, interactive=False, elem_id="corpus-line")
    provenance = gr.HTML(NOTHING_SELECTED, elem_id="corpus-provenance")
    full_text = gr.Textbox(label="selected document (full text)", lines=8, max_lines=30, interactive=False,
                           elem_id="corpus-document")
    with gr.Row(equal_height=True):
        reason = gr.Textbox(label="why is it bad?", placeholder="machine translated, wrong variety, boilerplate…",
                            scale=3, elem_id="corpus-reason")
        who = gr.Textbox(label="your name", scale=1, elem_id="corpus-reviewer")
        flag = gr.Button("Mark bad…", variant="stop", scale=1, elem_id="corpus-mark")
    with gr.Group(visible=False) as confirmation:
        question = gr.HTML(elem_id="corpus-confirm-text")
        with gr.Row():
            yes = gr.Button("Yes, mark it bad", variant="stop", elem_id="corpus-confirm")
            no = gr.Button("Cancel", elem_id="corpus-cancel")
    marked = gr.HTML(elem_id="corpus-marked")
    marks = gr.Dataframe(label="marked bad (excluded from the next crawl); click a row, then Unmark",
                         interactive=False, wrap=True, elem_id="corpus-marks")
    chosen_mark = gr.State(None)
    take_back_button = gr.Button("Unmark the selected document", elem_id="corpus-unmark")

    def pick(frame: pd.DataFrame, name: str | None, code: str | None, event: gr.SelectData) -> Any:
        row = event.index[0] if isinstance(event.index, list | tuple) else event.index
        if not 0 <= row < len(frame):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return (*select(ctx, name, code, frame.iloc[row]["line"]), gr.Group(visible=False))

    def pick_mark(frame: pd.DataFrame, event: gr.SelectData) -> Any:
        row = event.index[0] if isinstance(event.index, list | tuple) else event.index
        return str(frame.iloc[row]["id"]) if 0 <= row < len(frame) else None

    def refresh(name: str | None, chosen: str | None) -> tuple[Any, ...]:
        sizes_value, drops_value, plot, codes, text = card_view(ctx, name)
        keep = chosen if chosen in codes else (codes[0] if codes else None)
        return (text, sizes_value, drops_value, plot,
                gr.Dropdown(choices=[(named(c), c) for c in codes], value=keep), marks_frame(ctx, name))

    def clear() -> tuple[Any, ...]:
        return None, NOTHING_SELECTED, "", gr.Group(visible=False)

    for trigger in (find.click, query.submit):
        trigger(lambda n, lang, q: search(ctx, n, lang, q), inputs=[run_picker, language, query],
                outputs=[documents, found]).then(clear, outputs=[line, provenance, full_text, confirmation])
    language.input(clear, outputs=[line, provenance, full_text, confirmation])
    documents.select(pick, inputs=[documents, run_picker, language], outputs=[line, provenance, full_text,
                                                                              confirmation])
    flag.click(lambda n, lang, ln: ask(ctx, n, lang, ln), inputs=[run_picker, language, line],
               outputs=[marked, confirmation]).then(confirm_text, inputs=[language, line], outputs=question)
    yes.click(lambda n, lang, ln, r, w: mark(ctx, n, lang, ln, r, w), inputs=[run_picker, language, line, reason, who],
              outputs=[marked, marks]).then(clear, outputs=[line, provenance, full_text, confirmation])
    no.click(lambda: gr.Group(visible=False), outputs=confirmation)
    marks.select(pick_mark, inputs=marks, outputs=chosen_mark)
    take_back_button.click(lambda n, i, w: take_back(ctx, n, i, w), inputs=[run_picker, chosen_mark, who],
                           outputs=[marked, marks]).then(lambda: None, outputs=chosen_mark)
    return Refresh(refresh, [run_picker, language], [summary, sizes, drops, histogram, language, marks])
