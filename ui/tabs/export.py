"""Export: merge an adapter into a standalone model directory; download the scoreboard and translations.

Everything is written under ``<workspace>/exports/`` (names are plain names, never paths). A merged
model gets a Hugging Face model card (``README.md``: base model, languages, data card summary, the
scoreboard, licence) and the adapter's metadata (``adapter_metadata.json``). An existing export is
replaced only when "replace" is ticked.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import gradio as gr

from workbench import scoreboard
from workbench.errors import WorkbenchError
from workbench.io import atomic_write_text
from workbench.languages import language_name
from workbench.publish import merge_adapter

from ..attempt import latest_attempt
from ..context import UNREADABLE, AppContext, Refresh


def adapters(ctx: AppContext, name: str | None) -> dict[str, Path]:
    """The run's adapters that live inside the workspace."""
    run = ctx.run(name)
    if run is None:
        return {}
    found = run.adapters(home=ctx.adapters_dir)
    return {k: v for k, v in found.items() if v.resolve().is_relative_to(ctx.root)}


def merge(ctx: AppContext, name: str | None, variant: str | None, out_name: str, replace: bool = False) -> str:
    found = adapters(ctx, name)
    if not variant or variant not in found:
        return "Pick an adapter."
    try:
        folder = ctx.safe_name(out_name or f"{name}-{variant}", "output folder")
        out = ctx.inside(ctx.exports_dir / folder)
        if out.exists() and not replace:
            return (f"`{ctx.relative(out)}` exists already: tick *replace an existing export* to overwrite it, "
                    "or choose another name.")
        out.parent.mkdir(parents=True, exist_ok=True)

        merge_adapter(found[variant], out)
        metadata = found[variant] / "metadata.json"
        if metadata.is_file():
            shutil.copyfile(metadata, out / "adapter_metadata.json")
        atomic_write_text(out / "README.md", model_card(ctx, name, variant, found[variant]))
    except (WorkbenchError, OSError, ValueError) as error:
        return f"Not merged: {error}"
    return (f"Merged `{variant}` into `{ctx.relative(out)}`: a plain Hugging Face model directory "
            "(`AutoModelForCausalLM.from_pretrained`) with a model card (README.md) and the adapter's metadata.")


def model_card(ctx: AppContext, name: str | None, variant: str, adapter: Path) -> str:
    """A Hugging Face model card: front matter, base model, languages, data card, scoreboard, licence."""
    run = ctx.run(name)
    recipe = run.recipe() if run is not None else {}
    meta_path = adapter / "metadata.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    base = meta.get("base_model") or (recipe.get("base") or {}).get("model", "?")
    languages = recipe.get("languages") or {}
    codes = [c for c in [languages.get("target"), *languages.get("replay", [])] if c]
    iso = sorted({c.split("_")[0] for c in codes})
    front = ["---", "library_name: transformers", f"base_model: {json.dumps(str(base))}",
             "language:", *[f"- {c}" for c in iso], "tags:", "- workbench", "- low-resource", "---", ""]
    lines = [f"# {name}-{variant}", "",
             f"`{base}` adapted by the workbench run `{name}` and merged with its `{variant}` adapter.", "",
             "## Languages", "", *[f"- {language_name(c)} (`{c}`)" + (" — target" if i == 0 else "")
                                   for i, c in enumerate(codes)], "",
             "## Training data (data card summary)", "", _data_card(run), "",
             "## Scores", "", _scores(run, variant), "",
             "## Licence", "",
             f"The base model's licence applies (see `{base}`); the training data keeps the licences of its "
             "sources (see the run's data card). Check both before redistributing.", ""]
    return "\n".join(front + lines)


def _data_card(run: Any) -> str:
    try:
        return run.corpus_card().languages.to_markdown(index=False) if run is not None else "no run"
    except (*UNREADABLE, ImportError):
        return "no corpus card in this run"


def _scores(run: Any, variant: str) -> str:
    """The scoreboard rows of the base model and of this variant."""
    if run is None:
        return "no scores"
    rows = [r for r in run.records() if r.get("stage") == "base" or r.get("variant") == variant]
    if not rows:
        return "no scores"
    columns = ["stage", "variant", "kind", "language", "direction", "metric", "value", "n"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = [f"{r[c]:.4f}" if c == "value" and isinstance(r.get(c), float) else str(r.get(c) or "")
                 for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scoreboard_csv(ctx: AppContext, name: str | None) -> str | None:
    """The scores of the run's latest attempt as CSV (an unfinished run: only what it measured)."""
    run = ctx.run(name)
    if run is None:
        return None
    path = ctx.exports_dir / f"{run.name}-scoreboard.csv"
    atomic_write_text(path, scoreboard.to_csv(latest_attempt(run).records))
    return str(path)


def translations_csv(ctx: AppContext, name: str | None) -> str | None:
    run = ctx.run(name)
    if run is None:
        return None
    path = ctx.exports_dir / f"{run.name}-translations.csv"
    atomic_write_text(path, run.translations().to_csv(index=False))
    return str(path)


def build(ctx: AppContext, run_picker: gr.Dropdown) -> Refresh:
    names = list(adapters(ctx, run_picker.value))
    with gr.Row(equal_height=True):
        variant = gr.Dropdown(choices=names, value=names[0] if names else None, label="adapter", scale=2,
                              elem_id="exp-adapter")
        out_name = gr.Textbox(label="output folder name (under exports/)", scale=2, elem_id="exp-out")
        replace = gr.Checkbox(label="replace an existing export", scale=1, elem_id="exp-replace")
        merge_button = gr.Button("Merge into a standalone model", scale=1, elem_id="exp-merge")
    merged = gr.Markdown(elem_id="exp-merged")
    with gr.Row():
        board = gr.Button("Scoreboard (CSV)", elem_id="exp-scoreboard")
        sentences = gr.Button("Translations (CSV)", elem_id="exp-translations")
    download = gr.File(label="download", interactive=False, elem_id="exp-file")

    def on_run(name: str | None, chosen: str | None) -> Any:
        found = list(adapters(ctx, name))
        return gr.Dropdown(choices=found, value=chosen if chosen in found else (found[0] if found else None))

    merge_button.click(lambda n, v, o, r: merge(ctx, n, v, o, r), inputs=[run_picker, variant, out_name, replace],
                       outputs=merged)
    board.click(lambda n: scoreboard_csv(ctx, n), inputs=run_picker, outputs=download)
    sentences.click(lambda n: translations_csv(ctx, n), inputs=run_picker, outputs=download)
    return Refresh(on_run, [run_picker, variant], [variant])
