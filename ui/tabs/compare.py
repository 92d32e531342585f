"""Compare: one source sentence, every model's output side by side with sentence chrF++ and detector flags.

Sentences come from the evaluation set (the stored translations of every scored model) or are typed,
in which case every model of the run translates it now (base, each stage, each adapter), one after the
other, the outputs appearing as they come; Cancel stops it between two models. Loaded models stay in
memory for the next call (:class:`ui.models.ModelCache`). The set can be ordered by where the models
disagree most (spread of sentence chrF++, then differing flags). Below the table, each output against the
reference, word by word. Every text is shown escaped.
"""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Iterator
from typing import Any

import gradio as gr
import pandas as pd
import regex

from workbench import inference
from workbench.errors import WorkbenchError
from workbench.evaluate.detectors import flags, load_identifier
from workbench.evaluate.scorer import calibration_pairs, mt_split
from workbench.models import pick_device
from workbench.text import WORD_PATTERN

from ..context import UNREADABLE, AppContext, Refresh, escape

OUTPUT_COLUMNS = ["system", "output", "chrF++", "flags"]
COLUMN_WIDTHS = ["16%", "56%", "9%", "19%"]  # metric and flags stay in a 1400 px window; outputs wrap
ORDERS = ("evaluation order", "most disagreement first")
MAX_TYPED = 2000
_TOKEN = regex.compile(WORD_PATTERN + r"|\S")  # a word, or one other visible character
DIFF_STYLES = {"del": "background:#fde2e2; color:#991b1b", "ins": "background:#dcfce7; color:#166534",
               None: ""}
DIFF_LEGEND = (f'<p style="font-size:0.9em">Each output against the reference: '
               f'<del style="{DIFF_STYLES["del"]}">reference words it lacks</del> · '
               f'<ins style="{DIFF_STYLES["ins"]}">words the reference lacks</ins></p>')
log = logging.getLogger("workbench.ui")


def _flags(row: dict[str, Any]) -> str:
    raised = [name.removeprefix("flag_").replace("_", " ") for name, value in row.items()
              if name.startswith("flag_") and value is True]
    return ", ".join(raised) or "-"


def directions(ctx: AppContext, name: str | None) -> list[str]:
    run = ctx.run(name)
    try:
        return run.directions() if run is not None else []
    except UNREADABLE:
        return []


def sentence_choices(ctx: AppContext, name: str | None, direction: str | None, order: str) -> list[tuple[str, int]]:
    """(label, index) of every evaluation sentence, in set order or by disagreement."""
    run = ctx.run(name)
    if run is None or not direction:
        return []
    frame = run.translations(direction)
    if frame.empty:
        return []
    first = frame[frame.system == frame.system.iloc[0]].set_index("index")["source"]
    indices = list(first.index)
    if order == ORDERS[1]:
        spread = frame.groupby("index")["chrf"].agg(lambda s: s.max() - s.min())
        patterns = frame.assign(pattern=frame.apply(_flags, axis=1)).groupby("index")["pattern"].nunique()
        indices = sorted(indices, key=lambda i: (-spread.get(i, 0.0), -patterns.get(i, 0), i))
    return [(f"#{i} · {first[i][:90]}", int(i)) for i in indices]


def outputs(ctx: AppContext, name: str | None, direction: str | None,
            index: Any) -> tuple[str, pd.DataFrame, str]:
    """(source and reference, one row per model, each output's diff against the reference) for one evaluation
    sentence; the texts are escaped."""
    run = ctx.run(name)
    if run is None or not direction or index in (None, ""):
        return "Pick a direction and a sentence.", pd.DataFrame(columns=OUTPUT_COLUMNS), ""
    frame = run.translations(direction)
    rows = frame[frame["index"] == int(index)]
    if rows.empty:
        return f"No sentence #{escape(index)} in {escape(direction)}.", pd.DataFrame(columns=OUTPUT_COLUMNS), ""
    head = rows.iloc[0]
    table = pd.DataFrame([{"system": r["system"], "output": r["hypothesis"], "chrF++": round(float(r["chrf"]), 2)
                           if r["chrf"] is not None else None, "flags": _flags(r)}
                          for r in rows.to_dict("records")], columns=OUTPUT_COLUMNS)
    spread = table["chrF++"].max() - table["chrF++"].min()
    header = (f"<p><b>source</b> ({escape(direction.split('-')[0])}): {escape(head['source'])}</p>"
              f"<p><b>reference</b>: {escape(head['reference'])}</p>"
              f"<p>chrF++ spread across models: <b>{spread:.1f}</b></p>")
    return header, table, diff_view(rows)


def diff_tokens(text: str) -> list[tuple[str, bool]]:
    """``(token, space before it)`` for each word (:data:`workbench.text.WORD_PATTERN`) and other visible
    character of ``text``: what the diff compares, and enough to write the text back with its spacing."""
    out, end = [], 0
    for match in _TOKEN.finditer(text):  # what lies between two tokens is white space
        out.append((match.group(), match.start() > end))
        end = match.end()
    return out


def diff_html(reference: str, hypothesis: str) -> str:
    """The output against the reference word by word, as escaped HTML: words of the reference the output lacks
    struck through (``<del>``), words of the output the reference lacks underlined (``<ins>``). Each token keeps
    the space before it inside its own element, so the text without the ``<del>`` elements is the output."""
    ref, hyp = diff_tokens(reference), diff_tokens(hypothesis)
    matcher = difflib.SequenceMatcher(a=[t for t, _ in ref], b=[t for t, _ in hyp], autojunk=False)
    parts: list[str] = []

    def add(tokens: list[tuple[str, bool]], tag: str | None, style: str = "") -> None:
        text = "".join((" " if space and (i or parts) else "") + escape(token)
                       for i, (token, space) in enumerate(tokens))
        parts.append(f'<{tag} style="{DIFF_STYLES[tag]}{style}">{text}</{tag}>' if tag else text)

    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            add(hyp[b0:b1], None)
        if op in ("delete", "replace"):
            add(ref[a0:a1], "del")
        if op in ("insert", "replace"):
            apart = op == "replace" and not hyp[b0][1]  # never glued to the words it replaces
            add(hyp[b0:b1], "ins", "; margin-left:0.3em" if apart else "")
    return "".join(parts)


def diff_view(rows: pd.DataFrame) -> str:
    """Every model's output against the reference (HTML, every text escaped)."""
    if rows.empty:
        return ""
    lines = [f'<div class="wb-diff-row" style="margin:0.35em 0; overflow-wrap:anywhere">'
             f"<b>{escape(r['system'])}</b>: {diff_html(r['reference'], r['hypothesis'])}</div>"
             for r in rows.to_dict("records")]
    return DIFF_LEGEND + "".join(lines)


def _typed_header(src: str, text: str, done: int, total: int, loaded: int, seconds: float, state: str) -> str:
    return (f"<p><b>typed source</b> ({escape(src)}): {escape(text)}</p><p>{state}: <b>{done} of {total} models</b> "
            f"in {seconds:.1f} s ({loaded} loaded now, {done - loaded} already in memory). "
            "No reference: no chrF++ and no diff.</p>")


def translate_each(ctx: AppContext, name: str | None, direction: str | None, text: str,
                   session: str = "") -> Iterator[tuple[str, pd.DataFrame, str]]:
    """Every scored model of the run translates ``text`` now (same prompt and exemplars as the scorer), one
    model after the other: yields (header, outputs so far, diff) after each. Models stay loaded for the next
    call (:class:`ui.models.ModelCache`); Cancel (or a closed page) stops it between two models."""
    run = ctx.run(name)
    text = (text or "").strip()
    if run is None or not direction or not text:
        yield "Pick a direction and type a sentence.", pd.DataFrame(columns=OUTPUT_COLUMNS), ""
        return
    if len(text) > MAX_TYPED:
        yield f"Type at most {MAX_TYPED} characters.", pd.DataFrame(columns=OUTPUT_COLUMNS), ""
        return
    src, tgt = direction.split("-")
    try:
        cfg = run.mt_eval().model_copy(update={"directions": [direction]})
        _, exemplars = mt_split(cfg, direction)
        calibration = calibration_pairs(cfg, direction)  # the scorer's budgets for a typed sentence too
        identifier = load_identifier(cfg.lid_seed) if cfg.lid_seed else None
        models = run.models()
        systems = [s for s in run.systems() if s in models]
        dtype = str((run.recipe().get("base") or {}).get("dtype") or "auto")
        device = pick_device(None)
    except (WorkbenchError, OSError, ValueError, KeyError) as error:
        yield f"Could not translate: {escape(error)}", pd.DataFrame(columns=OUTPUT_COLUMNS), ""
        return
    job = ctx.jobs.begin(session, len(systems))
    rows: list[dict[str, Any]] = []
    loaded, started = 0, time.monotonic()
    try:
        for system in systems:
            if job.stop.is_set():
                break
            path, adapter = models[system]
            model, tokenizer, fresh = ctx.models.get(path, adapter, device, dtype)
            loaded += fresh
            hypothesis = inference.translate((model, tokenizer), [text], src, tgt, exemplars=exemplars,
                                             prompt=cfg.prompt, max_new_tokens=cfg.max_new_tokens,
                                             calibration=calibration)[0]
            raised = {f"flag_{k}": v for k, v in flags(text, hypothesis, src, tgt, identifier).items()}
            rows.append({"system": system, "output": hypothesis, "chrF++": None, "flags": _flags(raised)})
            job.done = len(rows)
            state = "translated" if len(rows) == len(systems) else "translating"
            header = _typed_header(src, text, len(rows), len(systems), loaded, time.monotonic() - started, state)
            yield header, pd.DataFrame(rows, columns=OUTPUT_COLUMNS), ""
    except (WorkbenchError, OSError, ValueError) as error:
        yield f"Could not translate: {escape(error)}", pd.DataFrame(rows, columns=OUTPUT_COLUMNS), ""
    finally:  # also when the page is closed or Cancel closes this generator
        log.info("typed translation %s after %d of %d models", "stopped" if job.stop.is_set() else "ended",
                 job.done, job.total)
        ctx.jobs.end(session, job)


def cancel_translation(ctx: AppContext, session: str) -> str:
    """Stop the session's running translation and wait until it has stopped; say how far it got."""
    job = ctx.jobs.cancel(session)
    if job is None:
        return "Nothing was translating."
    if not job.ended.is_set():
        return f"Cancelling: {job.done} of {job.total} models translated so far; it stops after the current one."
    return (f"<p><b>Cancelled</b>: stopped after {job.done} of {job.total} models; nothing more is translated "
            "(the outputs so far stay below).</p>")


def build(ctx: AppContext, run_picker: gr.Dropdown) -> Refresh:
    codes = directions(ctx, run_picker.value)
    first = codes[0] if codes else None
    with gr.Row(equal_height=True):
        direction = gr.Dropdown(choices=codes, value=first, label="direction", scale=1, elem_id="cmp-direction")
        order = gr.Radio(list(ORDERS), value=ORDERS[0], label="order", scale=2, elem_id="cmp-order")
    sentence = gr.Dropdown(choices=sentence_choices(ctx, run_picker.value, first, ORDERS[0]), value=None,
                           label="evaluation sentence", elem_id="cmp-sentence")
    with gr.Row(equal_height=True):
        typed = gr.Textbox(label="or type a source sentence", scale=4, elem_id="cmp-typed")
        go = gr.Button("Translate with every model", scale=1, elem_id="cmp-translate")
        cancel = gr.Button("Cancel", variant="stop", scale=1, elem_id="cmp-cancel")
    header = gr.HTML(elem_id="cmp-header")
    table = gr.Dataframe(headers=OUTPUT_COLUMNS, label="outputs", interactive=False, wrap=True,
                         column_widths=COLUMN_WIDTHS, max_height=900, elem_id="cmp-outputs")
    diff = gr.HTML(elem_id="cmp-diff")

    def choices(name: str | None, code: str | None, how: str) -> Any:
        return gr.Dropdown(choices=sentence_choices(ctx, name, code, how), value=None)

    def on_run(name: str | None, chosen: str | None) -> Any:
        found = directions(ctx, name)
        return gr.Dropdown(choices=found, value=chosen if chosen in found else (found[0] if found else None))

    def translate(name: str | None, code: str | None, text: str,
                  request: gr.Request) -> Iterator[tuple[str, pd.DataFrame, str]]:
        yield from translate_each(ctx, name, code, text, request.session_hash or "")

    direction.change(choices, inputs=[run_picker, direction, order], outputs=sentence)
    order.change(choices, inputs=[run_picker, direction, order], outputs=sentence)
    sentence.change(lambda n, d, i: outputs(ctx, n, d, i), inputs=[run_picker, direction, sentence],
                    outputs=[header, table, diff])
    running = go.click(translate, inputs=[run_picker, direction, typed], outputs=[header, table, diff],
                       show_progress="minimal")
    def stop(request: gr.Request) -> str:
        return cancel_translation(ctx, request.session_hash or "")

    cancel.click(stop, outputs=header, cancels=[running])
    return Refresh(on_run, [run_picker, direction], [direction])
