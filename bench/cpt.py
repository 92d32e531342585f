"""Continued-pretraining throughput and memory: this stage's training path against a plain Hugging Face
``Trainer`` with the usual ``group_texts`` block packing, same model, data and hyperparameters.

    python bench/cpt.py                                 # smollm2-135m (speed) and gemma3-270m (memory)
    python bench/cpt.py --models smollm2-135m --steps 6  # quick look
    python bench/cpt.py --precision bfloat16            # both runners under bf16 autocast (Trainer: bf16=True)

Ours = best-fit document-aware packing (position ids restart per document, no cross-document
attention), the chunked, recomputed output-layer loss, and per-language held-out bits-per-byte
curves measured during the run (their time is included). Every run is a fresh subprocess, so peak
resident memory (ru_maxrss) is per run. ``ours+trim`` first trims the vocabulary to the rows the
Sardinian + English corpora use (the tokenizer stage's trim mode). Data: the shipped NLLB-Seed
Sardinian (80%) and English (20%) sentences, ten lines per document. Writes bench/results/cpt.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from itertools import chain
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from workers import parse_or_serve, run_worker  # noqa: E402

from workbench.modeling import resident_memory_mb  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "cpt.json"
CORPUS = ROOT / "corpora" / "nllb_seed"
LINES_PER_DOC = 10


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def documents(path: Path, lines_per_doc: int = LINES_PER_DOC) -> list[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [" ".join(lines[i:i + lines_per_doc]) for i in range(0, len(lines), lines_per_doc)]


def load(model_name: str, trim: bool):
    from workbench.models import load_model, resolve_model

    path = resolve_model(model_name).path
    model, tokenizer = load_model(path, device="cpu", dtype="float32")
    if not trim:
        return model, tokenizer
    from workbench.tokenize.transplant import TransplantConfig, save_model_dir, transplant
    from workbench.tokenize.vocab import load_backend

    srd, eng = documents(CORPUS / "srd_Latn.txt"), documents(CORPUS / "eng_Latn.txt")
    plan, _ = transplant(model, load_backend(Path(path), tokenizer), srd, TransplantConfig(mode="trim"),
                         keep=eng)
    out = Path(tempfile.mkdtemp()) / "trimmed"
    save_model_dir(model, tokenizer, plan.spec, out)
    del model
    return load_model(out, device="cpu", dtype="float32")


def mixture(tokenizer, tokens: int, held_out: int):
    from workbench.train.mixture import build_mixture, encode_documents, token_budgets

    texts = {"srd_Latn": documents(CORPUS / "srd_Latn.txt"), "eng_Latn": documents(CORPUS / "eng_Latn.txt")}
    held = {code: t[-held_out:] for code, t in texts.items()}
    docs = {code: encode_documents(tokenizer, t[:-held_out]) for code, t in texts.items()}
    budgets = token_budgets(tokens, "srd_Latn", ["eng_Latn"], ratio=0.2)
    return build_mixture(docs, budgets, seed=0), held


def run_ours(model, tokenizer, args) -> dict:
    import torch

    from workbench.train.curves import CurveTracker, HeldOut
    from workbench.train.loop import LoopSettings, train
    from workbench.train.packing import pack

    mix, held = mixture(tokenizer, args.steps * args.batch * args.block * 2, args.held_out)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    blocks = pack(mix.documents, args.block, strategy="best-fit", pad_id=pad, seed=0)
    arrays = {"input_ids": blocks.input_ids, "position_ids": blocks.position_ids, "labels": blocks.labels}

    def batch_for(step: int, micro: int) -> dict:
        rows = slice(step * args.batch, (step + 1) * args.batch)
        return {k: torch.from_numpy(v[rows]) for k, v in arrays.items()}

    precision = torch.bfloat16 if args.precision == "bfloat16" else None
    curves = CurveTracker(tokenizer, {c: HeldOut(t, "crawl") for c, t in held.items()}, every=args.eval_every,
                          total_steps=args.steps, max_length=args.block, precision=precision)
    settings = LoopSettings(steps=args.steps, lr=args.lr, warmup_ratio=0.1, schedule="cosine", autocast=precision)
    loaded = resident_memory_mb()
    started = time.time()
    curves.measure(0, model, 0)
    state = train(model, batch_for, settings, progress=False, callbacks={"curves": curves})
    seconds = time.time() - started
    return {"seconds": seconds, "step_seconds": round(state["seconds"], 2),
            "curve_seconds": round(seconds - state["seconds"], 2), "tokens": state["tokens"],
            "final_loss": state["losses"][-1], "loaded_mb": loaded,
            "packing_efficiency": round(blocks.efficiency, 4), "curve_points": len(curves.points)}


def run_trainer(model, tokenizer, args) -> dict:
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments, default_data_collator

    mix, _ = mixture(tokenizer, args.steps * args.batch * args.block * 2, args.held_out)
    block = args.block

    def group_texts(examples: dict) -> dict:  # the usual run_clm.py packing
        concatenated = {k: list(chain(*examples[k])) for k in examples}
        total = (len(concatenated["input_ids"]) // block) * block
        result = {k: [t[i:i + block] for i in range(0, total, block)] for k, t in concatenated.items()}
        result["labels"] = result["input_ids"].copy()
        return result

    dataset = Dataset.from_dict({"input_ids": [d.ids for d in mix.documents]}).map(
        group_texts, batched=True, batch_size=1000)
    out = tempfile.mkdtemp()
    training = TrainingArguments(
        output_dir=out, per_device_train_batch_size=args.batch, max_steps=args.steps, learning_rate=args.lr,
        warmup_steps=int(args.steps * 0.1), lr_scheduler_type="cosine", weight_decay=0.0, max_grad_norm=1.0,
        logging_steps=args.steps, save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0,
        seed=0, disable_tqdm=True, bf16=args.precision == "bfloat16")
    trainer = Trainer(model=model, args=training, train_dataset=dataset, data_collator=default_data_collator)
    loaded = resident_memory_mb()
    started = time.time()
    result = trainer.train()
    seconds = time.time() - started
    return {"seconds": seconds, "tokens": args.steps * args.batch * block, "final_loss": result.training_loss,
            "loaded_mb": loaded, "packing_efficiency": 1.0, "curve_points": 0}


def worker(spec: dict) -> dict:
    import torch

    torch.manual_seed(0)
    args = argparse.Namespace(**spec)
    model, tokenizer = load(args.model, trim=args.runner == "ours+trim")
    run = run_trainer if args.runner == "trainer" else run_ours
    row = run(model, tokenizer, args)
    row.update(model=args.model, runner=args.runner, vocab=model.get_input_embeddings().weight.shape[0],
               peak_mb=round(rss_mb(), 1), tokens_per_second=round(row["tokens"] / row["seconds"], 1),
               block=args.block, batch=args.batch, steps=args.steps, precision=args.precision)
    row["training_peak_mb"] = round(row["peak_mb"] - row.pop("loaded_mb"), 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--memory-steps", type=int, default=2, help="steps of the memory runs (gemma3-270m)")
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--memory-block", type=int, default=512)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--eval-every", type=int, default=6)
    parser.add_argument("--held-out", type=int, default=3, help="held-out documents per language")
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                        help="both runners: float32, or float32 weights under bf16 autocast (mixed precision)")
    args = parse_or_serve(parser, worker)
    rows = []
    for model in args.models.split(","):
        memory = model.startswith("gemma")
        runners = ["trainer", "ours", "ours+trim"] if memory else ["trainer", "ours"]
        for runner in runners:
            spec = {"model": model, "runner": runner, "steps": args.memory_steps if memory else args.steps,
                    "block": args.memory_block if memory else args.block, "batch": args.batch, "lr": args.lr,
                    "eval_every": args.eval_every, "held_out": args.held_out, "precision": args.precision}
            print(f"running {model} / {runner} ...", flush=True)
            rows.append(run_worker(__file__, spec, f"{model} / {runner}"))
    if RESULTS.is_file():  # keep the rows of models not re-run
        done = {_setting(r) for r in rows}
        rows = [r for r in json.loads(RESULTS.read_text())["rows"] if _setting(r) not in done] + rows
    report(rows)


def report(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="cpt: ours vs plain Trainer + group_texts (same model, data, hyperparameters)")
    for column in ("model", "precision", "runner", "vocab", "block x batch", "tokens/s", "× trainer", "steps only",
                   "peak MB", "× trainer", "train MB", "final loss", "packing"):
        table.add_column(column, justify="left" if column in ("model", "precision", "runner") else "right")
    summary = {}
    for row in rows:
        base = next(r for r in rows if _setting(r) == _setting(row) and r["runner"] == "trainer")
        row["speed_ratio"] = round(row["tokens_per_second"] / base["tokens_per_second"], 3)
        row["memory_ratio"] = round(row["peak_mb"] / base["peak_mb"], 3)
        row["training_memory_ratio"] = round(row["training_peak_mb"] / max(base["training_peak_mb"], 1e-9), 3)
        row["step_speed_ratio"] = round(base["seconds"] / row.get("step_seconds", row["seconds"]), 3)
        name = "/".join([row["model"], *([] if _setting(row)[1] == "float32" else ["bf16"]), row["runner"]])
        summary[name] = {k: row[k] for k in ("speed_ratio", "step_speed_ratio", "memory_ratio",
                                             "training_memory_ratio")}
        table.add_row(row["model"], _setting(row)[1], row["runner"], str(row["vocab"]),
                      f"{row['block']} x {row['batch']}",
                      f"{row['tokens_per_second']:.0f}", f"{row['speed_ratio']:.2f}",
                      f"{row['step_speed_ratio']:.2f}", f"{row['peak_mb']:.0f}",
                      f"{row['memory_ratio']:.2f}", f"{row['training_peak_mb']:.0f}", f"{row['final_loss']:.3f}",
                      f"{row['packing_efficiency']:.3f}")
    Console(width=170).print(table)
    from workbench.io import atomic_write_json

    atomic_write_json(RESULTS, {"rows": rows, "ratios": summary, "machine": _machine()})
    print(f"wrote {RESULTS.relative_to(ROOT)}")


def _setting(row: dict) -> tuple[str, str]:
    return row["model"], row.get("precision", "float32")


def _machine() -> dict:
    import os
    import platform

    import torch

    return {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()}


if __name__ == "__main__":
    main()
