"""Compare: one source sentence, every model's output side by side with sentence chrF++ and detector flags.

Sentences come from the evaluation set (the stored translations of every scored model) or are typed,
in which case every model of the run translates it now (base, each stage, each adapter). The set can
be ordered by where the models disagree most (spread of sentence chrF++, then differing flags).
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from workbench.errors import WorkbenchError

from ..context import UNREADABLE, AppContext, Refresh

OUTPUT_COLUMNS = ["system", "output", "chrF++", "flags"]
ORDERS = ("evaluation order", "most disagreement first")


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
        flags = frame.assign(pattern=frame.apply(_flags, axis=1)).groupby("index")["pattern"].nunique()
        indices = sorted(indices, key=lambda i: (-spread.get(i, 0.0), -flags.get(i, 0), i))
    return [(f"#{i} · {first[i][:90]}", int(i)) for i in indices]


def outputs(ctx: AppContext, name: str | None, direction: str | None, index: Any) -> tuple[str, pd.DataFrame]:
    """(source and reference, one row per model) for one evaluation sentence."""
    run = ctx.run(name)
    if run is None or not direction or index in (None, ""):
        return "Pick a direction and a sentence.", pd.DataFrame(columns=OUTPUT_COLUMNS)
    frame = run.translations(direction)
    rows = frame[frame["index"] == int(index)]
    if rows.empty:
        return f"No sentence #{index} in {direction}.", pd.DataFrame(columns=OUTPUT_COLUMNS)
    head = rows.iloc[0]
    table = pd.DataFrame([{"system": r["system"], "output": r["hypothesis"], "chrF++": round(float(r["chrf"]), 2)
                           if r["chrf"] is not None else None, "flags": _flags(r)}
                          for r in rows.to_dict("records")], columns=OUTPUT_COLUMNS)
    spread = table["chrF++"].max() - table["chrF++"].min()
    return (f"**source** ({direction.split('-')[0]}): {head['source']}\n\n**reference**: {head['reference']}\n\n"
            f"chrF++ spread across models: **{spread:.1f}**", table)


def translate_typed(ctx: AppContext, name: str | None, direction: str | None, text: str) -> tuple[str, pd.DataFrame]:
    """Every scored model of the run translates ``text`` now (same prompt and exemplars as the scorer)."""
    run = ctx.run(name)
    text = (text or "").strip()
    if run is None or not direction or not text:
        return "Pick a direction and type a sentence.", pd.DataFrame(columns=OUTPUT_COLUMNS)
    if len(text) > 2000:
        return "Type at most 2000 characters.", pd.DataFrame(columns=OUTPUT_COLUMNS)
    from workbench import inference
    from workbench.evaluate.detectors import flags, load_identifier
    from workbench.evaluate.scorer import calibration_pairs, mt_split
    from workbench.recipe import MTEvalConfig

    src, tgt = direction.split("-")
    mt = run.recipe()["eval"]["mt"]
    try:
        cfg = MTEvalConfig.model_validate({**mt, "directions": [direction]})
        _, exemplars = mt_split(cfg, direction)
        calibration = calibration_pairs(cfg, direction)  # the scorer's budgets for a typed sentence too
        identifier = load_identifier(cfg.lid_seed) if cfg.lid_seed else None
        models = run.models()
        rows = []
        for system in run.systems():
            if system not in models:
                continue
            path, adapter = models[system]
            hypothesis = inference.translate(str(path), [text], src, tgt, adapter=adapter, exemplars=exemplars,
                                             prompt=cfg.prompt, max_new_tokens=cfg.max_new_tokens,
                                             calibration=calibration)[0]
            raised = {f"flag_{k}": v for k, v in flags(text, hypothesis, src, tgt, identifier).items()}
            rows.append({"system": system, "output": hypothesis, "chrF++": None, "flags": _flags(raised)})
    except (WorkbenchError, OSError, ValueError) as error:
        return f"Could not translate: {error}", pd.DataFrame(columns=OUTPUT_COLUMNS)
    finally:
        inference.clear_model_cache()
    return f"**typed source** ({src}): {text}\n\n(no reference: no chrF++)", pd.DataFrame(rows, columns=OUTPUT_COLUMNS)


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
    header = gr.Markdown(elem_id="cmp-header")
    table = gr.Dataframe(headers=OUTPUT_COLUMNS, label="outputs", interactive=False, wrap=True, elem_id="cmp-outputs")

    def choices(name: str | None, code: str | None, how: str) -> Any:
        return gr.Dropdown(choices=sentence_choices(ctx, name, code, how), value=None)

    def on_run(name: str | None, chosen: str | None) -> Any:
        found = directions(ctx, name)
        return gr.Dropdown(choices=found, value=chosen if chosen in found else (found[0] if found else None))

    direction.change(choices, inputs=[run_picker, direction, order], outputs=sentence)
    order.change(choices, inputs=[run_picker, direction, order], outputs=sentence)
    sentence.change(lambda n, d, i: outputs(ctx, n, d, i), inputs=[run_picker, direction, sentence],
                    outputs=[header, table])
    go.click(lambda n, d, t: translate_typed(ctx, n, d, t), inputs=[run_picker, direction, typed],
             outputs=[header, table])
    return Refresh(on_run, [run_picker, direction], [direction])
