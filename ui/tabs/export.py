"""Export: merge an adapter into a standalone model directory; download the scoreboard and translations.

Everything is written under ``<workspace>/exports/`` (names are plain names, never paths).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from workbench import scoreboard
from workbench.errors import WorkbenchError
from workbench.io import atomic_write_text

from ..context import AppContext


def adapters(ctx: AppContext, name: str | None) -> dict[str, Path]:
    """The run's adapters that live inside the workspace."""
    run = ctx.run(name)
    if run is None:
        return {}
    found = run.adapters(home=ctx.adapters_dir)
    return {k: v for k, v in found.items() if v.resolve().is_relative_to(ctx.root)}


def merge(ctx: AppContext, name: str | None, variant: str | None, out_name: str) -> str:
    found = adapters(ctx, name)
    if not variant or variant not in found:
        return "Pick an adapter."
    try:
        folder = ctx.safe_name(out_name or f"{name}-{variant}", "output folder")
        out = ctx.inside(ctx.exports_dir / folder)
        out.parent.mkdir(parents=True, exist_ok=True)
        from workbench.publish import merge_adapter

        merge_adapter(found[variant], out)
    except (WorkbenchError, OSError, ValueError) as error:
        return f"Not merged: {error}"
    return (f"Merged `{variant}` into `{ctx.relative(out)}`: a plain Hugging Face model directory "
            "(`AutoModelForCausalLM.from_pretrained`).")


def scoreboard_csv(ctx: AppContext, name: str | None) -> str | None:
    run = ctx.run(name)
    if run is None:
        return None
    path = ctx.exports_dir / f"{run.name}-scoreboard.csv"
    atomic_write_text(path, scoreboard.to_csv(run.records()))
    return str(path)


def translations_csv(ctx: AppContext, name: str | None) -> str | None:
    run = ctx.run(name)
    if run is None:
        return None
    path = ctx.exports_dir / f"{run.name}-translations.csv"
    atomic_write_text(path, run.translations().to_csv(index=False))
    return str(path)


def build(ctx: AppContext, run_picker: gr.Dropdown) -> None:
    names = list(adapters(ctx, run_picker.value))
    with gr.Row(equal_height=True):
        variant = gr.Dropdown(choices=names, value=names[0] if names else None, label="adapter", scale=2,
                              elem_id="exp-adapter")
        out_name = gr.Textbox(label="output folder name (under exports/)", scale=2, elem_id="exp-out")
        merge_button = gr.Button("Merge into a standalone model", scale=1, elem_id="exp-merge")
    merged = gr.Markdown(elem_id="exp-merged")
    with gr.Row():
        board = gr.Button("Scoreboard (CSV)", elem_id="exp-scoreboard")
        sentences = gr.Button("Translations (CSV)", elem_id="exp-translations")
    download = gr.File(label="download", interactive=False, elem_id="exp-file")

    def on_run(name: str | None) -> Any:
        found = list(adapters(ctx, name))
        return gr.Dropdown(choices=found, value=found[0] if found else None)

    run_picker.change(on_run, inputs=run_picker, outputs=variant)
    merge_button.click(lambda n, v, o: merge(ctx, n, v, o), inputs=[run_picker, variant, out_name], outputs=merged)
    board.click(lambda n: scoreboard_csv(ctx, n), inputs=run_picker, outputs=download)
    sentences.click(lambda n: translations_csv(ctx, n), inputs=run_picker, outputs=download)
