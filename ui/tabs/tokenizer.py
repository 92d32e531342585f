"""Tokenizer: one sentence cut by the base tokenizer and by the transplanted one, side by side.

Pieces alternate colours; byte-fallback pieces (raw bytes, not whole characters) are red and dashed.
Below, the tokenizer stage's fertility report per language (tokens per word and per character).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from transformers import AutoTokenizer

from workbench.evaluate.datasets import load_texts
from workbench.tokenize.segmentation import counts, segment, to_html

from ..context import UNREADABLE, AppContext, Refresh

MAX_SENTENCES = 30


@lru_cache(maxsize=8)
def _tokenizer(path: str) -> Any:
    return AutoTokenizer.from_pretrained(path)


def tokenizers(ctx: AppContext, name: str | None) -> dict[str, Path]:
    """``{"base": dir, "<tokenizer stage>": dir}`` of the run (base first)."""
    run = ctx.run(name)
    if run is None:
        return {}
    models = run.models()
    kinds = {s["id"]: s.get("kind") for s in run.steps()}
    out = {"base": models["base"][0]} if "base" in models else {}
    out |= {system: path for system, (path, _) in models.items() if kinds.get(system) == "tokenizer"}
    return out


def languages(ctx: AppContext, name: str | None) -> list[str]:
    run = ctx.run(name)
    if run is None:
        return []
    lm = (run.recipe().get("eval") or {}).get("lm") or {}
    recipe_languages = run.recipe().get("languages", {})
    codes = lm.get("languages") or [recipe_languages.get("target"), *recipe_languages.get("replay", [])]
    return [c for c in codes if c]


def sentences(ctx: AppContext, name: str | None, language: str | None) -> list[str]:
    """The first sentences of the run's LM evaluation set in ``language``."""
    run = ctx.run(name)
    if run is None or not language:
        return []
    lm = (run.recipe().get("eval") or {}).get("lm") or {}
    if not lm.get("sets"):
        return []

    try:
        return load_texts(lm["sets"], language, lm.get("split", "dev"))[:MAX_SENTENCES]
    except UNREADABLE:
        return []


def segmentations(ctx: AppContext, name: str | None, text: str) -> tuple[str, pd.DataFrame]:
    """(HTML of every tokenizer's pieces, counts per tokenizer)."""
    text = (text or "").strip()
    found = tokenizers(ctx, name)
    if not text or not found:
        return "<p>Pick or type a sentence.</p>" if found else "<p>No run selected.</p>", pd.DataFrame()
    blocks, rows = [], []
    for label, path in found.items():
        try:
            pieces = segment(_tokenizer(str(path)), text)
        except (OSError, ValueError) as error:
            blocks.append(f"<h4>{label}</h4><p>could not load the tokenizer: {error}</p>")
            continue
        stats = counts(pieces, text)
        rows.append({"tokenizer": label, **stats})
        blocks.append(f'<div class="wb-tokenizer" data-tokenizer="{label}"><h4>{label}: {stats["tokens"]} tokens'
                      f'{", " + str(stats["byte_fallback"]) + " byte-fallback" if stats["byte_fallback"] else ""}'
                      f"</h4>{to_html(pieces)}</div>")
    return "".join(blocks), pd.DataFrame(rows).round(3)


def fertility(ctx: AppContext, name: str | None) -> pd.DataFrame:
    run = ctx.run(name)
    try:
        frame = run.fertility() if run is not None else pd.DataFrame()
    except UNREADABLE:
        return pd.DataFrame()
    return frame.round(3)


def build(ctx: AppContext, run_picker: gr.Dropdown) -> Refresh:
    codes = languages(ctx, run_picker.value)
    first = codes[0] if codes else None
    options = sentences(ctx, run_picker.value, first)
    with gr.Row(equal_height=True):
        language = gr.Dropdown(choices=codes, value=first, label="language", scale=1, elem_id="tok-language")
        pick = gr.Dropdown(choices=options, value=None, label="sentence from the evaluation set", scale=4,
                           elem_id="tok-sentence")
    text = gr.Textbox(label="or type a sentence", lines=2, elem_id="tok-text")
    show = gr.Button("Segment", variant="primary", elem_id="tok-segment")
    pieces = gr.HTML(elem_id="tok-pieces")
    stats = gr.Dataframe(label="this sentence", interactive=False, elem_id="tok-counts")
    report = gr.Dataframe(value=fertility(ctx, run_picker.value), label="fertility per language (tokenizer stage)",
                          interactive=False, elem_id="tok-fertility")

    def on_language(name: str | None, code: str | None) -> Any:
        return gr.Dropdown(choices=sentences(ctx, name, code), value=None)

    def on_run(name: str | None, chosen: str | None) -> tuple[Any, ...]:
        choices = languages(ctx, name)
        keep = chosen if chosen in choices else (choices[0] if choices else None)
        return gr.Dropdown(choices=choices, value=keep), fertility(ctx, name)

    language.change(on_language, inputs=[run_picker, language], outputs=pick)
    pick.input(lambda s: s or "", inputs=pick, outputs=text).then(
        lambda n, t: segmentations(ctx, n, t), inputs=[run_picker, text], outputs=[pieces, stats])
    for trigger in (show.click, text.submit):
        trigger(lambda n, t: segmentations(ctx, n, t), inputs=[run_picker, text], outputs=[pieces, stats])
    return Refresh(on_run, [run_picker, language], [language, report])
