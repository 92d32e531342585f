"""finetune: LoRA / rsLoRA / DoRA adapters trained on a translation task under matched conditions.

Every variant starts from the same upstream model and sees the same examples in the same order
for the same number of steps with the same schedule and seed; only the adapter differs.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from transformers import AutoTokenizer

from ..errors import DataError
from ..evaluate.datasets import load_pairs
from ..evaluate.prompts import encode_completion, encode_prompt, prompt_style, render_completion, render_prompt
from ..io import atomic_write_json, file_fingerprint, stable_hash, tree_fingerprint
from ..modeling import peak_memory_record, relpath, reset_peak_memory, seed_everything
from ..models import local_fingerprint
from ..publish import TrainedVariant, recorded_variants
from ..schema import (
    AdapterConfig,
    AdapterMethod,
    Direction,
    EvalSource,
    ExistingPath,
    Quantize,
    StrictModel,
    TrainingConfig,
)
from ..train import loop
from ..train.loop import LoopSettings, mixed_precision, precision_name
from ..train.loss import causal_lm_loss_sum
from ..train.memory import TrainSetup, trains_under_autocast
from ..train.trainable import load_base, prepare, save_standalone
from .base import Artifact, Stage, StageContext

Example = tuple[str, str, str, str]  # (src code, tgt code, source sentence, target sentence)
Row = tuple[list[int], list[int]]  # (input ids, labels)

DROPPED_WARNING_SHARE = 0.02  # warn when more of the training examples than this are dropped
logger = logging.getLogger("workbench")


@dataclass
class EncodedExamples:
    """Examples as training rows, with the token length of every example (kept or not) and the dropped ones
    counted by reason."""

    rows: list[Row] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)


class VariantConfig(AdapterConfig):
    """One variant (named by its key under ``variants``): the adapter it trains, or the whole model
    (``method: full``), with its own learning rate and base precision.

    The adapter defaults are a task adapter's, lower than :class:`AdapterConfig`'s (continued pretraining's): rank 8
    is ample for one task, and dropout 0.05 guards a small set of pairs seen many times against overfitting.
    """

    method: Literal[AdapterMethod, "full"]
    r: int = Field(8, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    lr: float | None = Field(None, gt=0, description="overrides the block's lr for this variant")
    quantize: Quantize = "none"

    @model_validator(mode="after")
    def _quantized_adapter(self) -> VariantConfig:
        if self.quantize == "4bit" and self.method == "full":
            raise ValueError("quantize: 4bit trains an adapter on a frozen 4-bit base; method full cannot")
        return self

    def embedding_mode(self) -> str:
        """The embeddings train with the whole model and stay frozen under an adapter."""
        return "full" if self.method == "full" else "frozen"


class ParallelData(StrictModel):
    parallel: EvalSource | None = Field(
        None, description="translation pairs: a folder of line-aligned <code>.txt files (NLLB-Seed), a FLORES-layout "
                          "folder, a .tsv with a column per language code, a .jsonl with a key per code, or hf:<id>")
    split: str = Field("dev", description="split of a FLORES-layout or hub source")
    instructions: ExistingPath | None = Field(
        None, description="general instruction JSONL: {prompt|instruction[, input], completion|output|response} "
                          "or {messages: [{role, content}, ...]} per line")
    directions: list[Direction] = Field(default_factory=list)
    max_pairs: int = Field(2000, ge=1, description="sentence pairs used per direction")
    held_out: int = Field(50, ge=0, description="pairs per direction kept out of training (validation loss)")
    prompt: Literal["auto", "plain", "chat"] = Field(
        "auto", description="auto: the chat template if the tokenizer has one (as the scorer does), else plain")


class FinetuneConfig(TrainingConfig):
    data: ParallelData
    variants: dict[str, VariantConfig] = Field(min_length=1)
    steps: int = Field(50, ge=1)
    lr: float = Field(2e-4, gt=0)
    max_length: int = Field(160, ge=16, description="prompt + completion tokens; longer examples are dropped "
                                                    "(counted in the stage's stats, with a suggested value)")
    gradient_checkpointing: bool = False
    checkpoint_every: int = Field(20, ge=0, description="optimizer steps between resumable checkpoints of the "
                                                        "variant in training (0: none)")

    @model_validator(mode="after")
    def _variant_names(self) -> FinetuneConfig:
        if self.data.parallel is None and self.data.instructions is None:
            raise ValueError("data needs parallel (translation pairs) or instructions (instruction JSONL)")
        if self.data.parallel is not None and not self.data.directions:
            raise ValueError("data.directions: give the translation directions to train on, e.g. [eng_Latn-srd_Latn]")
        for name in self.variants:
            if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
                raise ValueError(f"variant name '{name}' must use letters, digits, '-', '_' or '.'")
        return self

    def training_setups(self, *, dtype: str, new_rows: int) -> list[tuple[str | None, TrainSetup]]:
        """What this stage trains, for the memory plan: one run per variant, in ``dtype`` (``new_rows`` makes no
        difference: a variant's embeddings train in full or not at all)."""
        return [(name, TrainSetup(
            method=variant.method, r=variant.r, targets=variant.targets, quantize=variant.quantize, dtype=dtype,
            batch_size=self.batch_size, seq_len=self.max_length, gradient_checkpointing=self.gradient_checkpointing,
            embeddings=variant.embedding_mode(), padded=True,
            dropout=variant.dropout if variant.method != "full" else 0.0, grad_accum=self.grad_accum,
            autocast=trains_under_autocast(variant.method, dtype))) for name, variant in self.variants.items()]


class FinetuneStage(Stage):
    kind = "finetune"
    version = "5"  # bump when the adapters or stats change for the same config: covers full and 4-bit variants,
    # bf16 where native, the dropped-example counts and resuming inside a variant
    Config = FinetuneConfig
    key_exclude = frozenset({"checkpoint_every"})  # a resumed variant trains what an uninterrupted one trains
    produces_model = True
    trains_on_data = True

    def training_data(self, artifact: Artifact, upstream: list[Artifact]) -> list[Path]:
        data = self.config.data
        files = [Path(data.instructions)] if data.instructions else []
        if data.parallel is None or str(data.parallel).startswith("hf:"):
            return files
        source = Path(data.parallel)
        if source.is_file():
            return [source, *files]
        codes = sorted({code for d in data.directions for code in d.split("-")})
        candidates = [source / f"{c}.txt" for c in codes] + [
            p for c in codes for p in (source / f"{c}.{data.split}", source / data.split / f"{c}.{data.split}")]
        return [p for p in candidates if p.is_file()] + files

    def model_variants(self) -> list[str | None]:
        return list(self.config.variants)

    def trained_variants(self, artifact: Artifact) -> list[TrainedVariant]:
        return recorded_variants(artifact.step_id, artifact.path, artifact.record)

    def input_fingerprints(self) -> dict[str, str]:
        out = {}
        for value in (self.config.data.parallel, self.config.data.instructions):
            if value is None or str(value).startswith("hf:"):
                continue
            path = Path(value)
            out[str(path)] = file_fingerprint(path) if path.is_file() else tree_fingerprint(path)
        return out

    def preflight(self) -> list[str]:
        """Read the training pairs and instructions now: misaligned parallel files, a missing TSV/JSONL column, a
        direction without pairs or an unreadable instruction file stop the run before the earlier stages."""
        data, warnings = self.config.data, []
        for direction in data.directions:
            src, tgt = direction.split("-")
            if str(data.parallel).startswith("hf:"):
                continue  # read from the hub when the stage runs
            pairs = load_pairs(data.parallel, src, tgt, data.split)
            if len(pairs) <= data.held_out:
                raise DataError(f"{data.parallel}: {len(pairs)} {direction} pairs with text on both sides "
                                f"(held_out is {data.held_out}): nothing to train on")
            skipped = getattr(pairs, "skipped", 0)
            if skipped:
                warnings.append(f"{data.parallel}: {skipped} {direction} pairs have an empty side and are skipped")
        if data.instructions:
            _, unreadable = instruction_pairs(Path(data.instructions))
            if unreadable:
                warnings.append(f"{data.instructions}: {unreadable} lines are not instruction examples and are "
                                "skipped (each line must be a JSON object with a prompt and a completion)")
        return warnings

    def run(self, ctx: StageContext) -> dict[str, Any]:
        base = ctx.latest_model()
        train_pairs, held_out, unreadable = self._examples(ctx)
        tokenizer = AutoTokenizer.from_pretrained(base.path)
        style = prompt_style(tokenizer, self.config.data.prompt)
        encoded = _encode_examples(tokenizer, style, train_pairs, self.config.max_length)
        encoded_held_out = _encode_examples(tokenizer, style, held_out, self.config.max_length)
        if not encoded.rows:
            raise DataError(f"every fine-tuning example is longer than max_length={self.config.max_length} tokens "
                            f"({_length_summary(encoded.lengths)}): raise finetune.max_length")
        done_dir = ctx.out_dir / "checkpoints" / "variants"  # finished variants survive a crash
        models = []
        stats = {**_example_stats(encoded, encoded_held_out, unreadable, self.config.max_length, ctx.log),
                 "variants": {}}
        hashes: dict[str, str] = {}
        for name, variant in self.config.variants.items():
            if not (done_dir / name / "metadata.json").is_file():
                hashes = hashes or _fingerprints(base.path, train_pairs)
                self._train_variant(ctx, base.path, name, variant, encoded.rows, encoded_held_out.rows,
                                    done_dir / name, hashes)
            else:
                ctx.log("variant_cached", variant=name)
            shutil.copytree(done_dir / name, ctx.out_dir / "adapters" / name)
            stats["variants"][name] = ctx.read_json(f"adapters/{name}/metadata.json")
            if variant.method == "full":  # a whole model, not an adapter
                models.append({"path": f"adapters/{name}", "variant": name})
            else:
                models.append({"path": relpath(base.path, ctx.out_dir), "adapter": f"adapters/{name}",
                               "variant": name})
        shutil.rmtree(ctx.out_dir / "checkpoints", ignore_errors=True)
        return {"models": models, "outputs": {"adapters": "adapters"}, "stats": stats}

    def _examples(self, ctx: StageContext) -> tuple[list[Example], list[Example], int]:
        """(src, tgt, source, target) for every direction, the training part shuffled once with the stage seed;
        and the number of instruction lines skipped as unreadable."""
        data = self.config.data
        train, held_out, unreadable = [], [], 0
        for direction in data.directions:
            src, tgt = direction.split("-")
            pairs = list(load_pairs(data.parallel, src, tgt, data.split))
            examples = [(src, tgt, s, t) for s, t in pairs[: data.max_pairs + data.held_out]]
            held_out += examples[: data.held_out]
            train += examples[data.held_out:]
        if data.instructions:
            pairs, unreadable = instruction_pairs(Path(data.instructions))
            examples = [("", "", p, c) for p, c in pairs][: data.max_pairs + data.held_out]
            held_out += examples[: data.held_out]
            train += examples[data.held_out:]
        random.Random(ctx.seed).shuffle(train)
        return train, held_out, unreadable

    def _train_variant(self, ctx: StageContext, base_path: Path, name: str, variant: VariantConfig,
                       encoded: list[Row], held_out: list[Row], out: Path, hashes: dict[str, str]) -> None:
        """Train one variant from the stage seed, resuming from its checkpoints under ``checkpoints/training/``;
        the finished variant is written to ``out``."""
        seed_everything(ctx.seed)  # matched conditions: identical init noise and dropout per variant
        model, tokenizer = load_base(base_path, device=ctx.device, quantize=variant.quantize,
                                     dtype="float32" if variant.method == "full" else ctx.dtype,
                                     gradient_checkpointing=self.config.gradient_checkpointing)
        style = prompt_style(tokenizer, self.config.data.prompt)
        trained = prepare(model, method=variant.method, adapter=variant, embeddings=variant.embedding_mode(),
                          lr=variant.lr or self.config.lr, weight_decay=self.config.weight_decay)
        model = trained.model
        trainable, total = trained.trainable, trained.total
        cfg = self.config
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

        def batch_for(step: int, micro: int) -> dict[str, torch.Tensor]:
            start = ((step * cfg.grad_accum + micro) * cfg.batch_size) % len(encoded)
            rows = [encoded[(start + i) % len(encoded)] for i in range(cfg.batch_size)]
            return _collate(rows, pad)

        settings = LoopSettings(steps=cfg.steps, lr=variant.lr or cfg.lr, warmup_ratio=cfg.warmup_ratio,
                                schedule=cfg.schedule, grad_accum=cfg.grad_accum, weight_decay=cfg.weight_decay,
                                checkpoint_every=cfg.checkpoint_every,
                                autocast=mixed_precision(ctx.device, ctx.dtype) if variant.method == "full" else None)
        checkpoints = out.parent.parent / "training" / name  # checkpoints/training/<name>, beside .../variants/
        reset_peak_memory(ctx.device)
        started = time.time()
        state = loop.train(model, batch_for, settings, param_groups=trained.param_groups, checkpoint_dir=checkpoints,
                      log=lambda event, **f: ctx.log(event, variant=name, **f), progress=ctx.progress,
                      desc=f"finetune {name}")
        seconds = time.time() - started
        held = _held_out_loss(model, held_out, pad) if held_out else None
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        if variant.method == "full":
            save_standalone(trained, base_path, tmp, work=out.parent, device=ctx.device)
            tokenizer.save_pretrained(tmp)
        else:
            model.save_pretrained(tmp)
        atomic_write_json(tmp / "metadata.json", {
            "variant": name, "config": variant.model_dump(), "base_model": str(base_path),
            "trainable_parameters": trainable, "total_parameters": total, "steps": cfg.steps,
            "train_seconds": round(seconds, 2), **peak_memory_record(ctx.device),
            "final_loss": state["losses"][-1], "held_out_loss": held, "train_tokens": state["tokens"],
            "prompt": style, "precision": precision_name(model, settings.autocast), **hashes,
        })
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        shutil.rmtree(checkpoints, ignore_errors=True)  # the finished variant replaces its checkpoints
        ctx.log("variant_trained", variant=name, trainable=trainable, seconds=round(seconds, 2), held_out_loss=held)


def _fingerprints(base_path: Path, examples: list[Example]) -> dict[str, str]:
    """Hashes that say what a variant was trained from: base weights, tokenizer, training examples
    (computed once per stage: every variant shares them)."""
    tokenizer_files = sorted(p for p in base_path.glob("tokenizer*") if p.is_file())
    return {"base_model_hash": local_fingerprint(base_path),
            "tokenizer_hash": stable_hash({p.name: file_fingerprint(p) for p in tokenizer_files}),
            "data_hash": stable_hash(examples)}


def _encode(tokenizer: Any, style: str, examples: list[Example], max_length: int) -> list[Row]:
    """(input ids, labels) with the loss on the completion only, prompts encoded exactly as the scorer
    encodes them (see :mod:`workbench.evaluate.prompts`); over-long examples are dropped."""
    encoded = _encode_examples(tokenizer, style, examples, max_length)
    if not encoded.rows and examples:
        raise DataError(f"every fine-tuning example is longer than max_length={max_length} tokens")
    return encoded.rows


def _encode_examples(tokenizer: Any, style: str, examples: list[Example], max_length: int) -> EncodedExamples:
    """:func:`_encode`'s rows, with every example's length and the dropped ones counted."""
    out = EncodedExamples()
    for src, tgt, source, target in examples:
        prompt = render_prompt(tokenizer, style, source, src, tgt) if src else render_instruction(tokenizer, style,
                                                                                                  source)
        p = encode_prompt(tokenizer, style, prompt)
        c = encode_completion(tokenizer, style, render_completion(tokenizer, style, target))
        out.lengths.append(len(p) + len(c))
        if len(p) + len(c) <= max_length:
            out.rows.append((p + c, [-100] * len(p) + c))
        else:
            out.dropped["longer_than_max_length"] = out.dropped.get("longer_than_max_length", 0) + 1
    return out


def _example_stats(train: EncodedExamples, held_out: EncodedExamples, unreadable_lines: int, max_length: int,
                   log: Any) -> dict[str, Any]:
    """The stage's honest example counts: kept, dropped by reason, token lengths; a warning (naming max_length and
    a value that keeps 99% of the examples) when more than ``DROPPED_WARNING_SHARE`` of the training ones are
    dropped."""
    read = len(train.lengths)
    dropped = sum(train.dropped.values())
    stats = {"examples": len(train.rows), "examples_read": read, "dropped": dict(train.dropped),
             "held_out": len(held_out.rows), "held_out_dropped": dict(held_out.dropped),
             "instruction_lines_skipped": unreadable_lines, "max_length": max_length,
             "example_tokens": _length_percentiles(train.lengths)}
    if read and dropped / read > DROPPED_WARNING_SHARE:
        suggested = _round_up(stats["example_tokens"]["p99"], 8)
        message = (f"finetune: {dropped} of {read} training examples ({dropped / read:.1%}) are longer than "
                   f"max_length={max_length} tokens and were dropped ({_length_summary(train.lengths)}); "
                   f"max_length: {suggested} would keep 99% of them")
        logger.warning(message)
        log("examples_dropped", level="warning", message=message, dropped=dropped, examples_read=read,
            max_length=max_length, suggested_max_length=suggested)
    return stats


def _length_percentiles(lengths: list[int]) -> dict[str, int]:
    """Nearest-rank percentiles of example lengths in tokens (prompt + completion)."""
    ordered = sorted(lengths)
    if not ordered:
        return {}
    rank = {name: ordered[max(0, math.ceil(q * len(ordered)) - 1)] for name, q in
            (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))}
    return {**rank, "max": ordered[-1]}


def _length_summary(lengths: list[int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in _length_percentiles(lengths).items()) + " tokens"


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def read_instructions(path: Path) -> list[tuple[str, str]]:
    """(prompt, completion) pairs of an instruction JSONL file (see :func:`instruction_pairs`)."""
    return instruction_pairs(path)[0]


def instruction_pairs(path: Path) -> tuple[list[tuple[str, str]], int]:
    """(prompt, completion) pairs of an instruction JSONL file and the number of lines skipped: a line that is
    not a usable example is counted and skipped (a file with none is an error naming the accepted fields)."""
    pairs, skipped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            skipped += 1
            continue
        pair = _instruction_pair(row) if isinstance(row, dict) else None
        if pair is None:
            skipped += 1
        else:
            pairs.append(pair)
    if not pairs:
        raise DataError(f"{path}: no instruction examples ({skipped} lines skipped); each line must be a JSON object "
                        "with prompt|instruction (+ optional input) and completion|output|response, or messages: "
                        "[{role, content}, ...] ending with an assistant turn")
    return pairs, skipped


def _instruction_pair(row: dict[str, Any]) -> tuple[str, str] | None:
    messages = row.get("messages")
    if isinstance(messages, list) and len(messages) >= 2 and isinstance(messages[-1], dict) and (
            messages[-1].get("role") == "assistant"):
        turns = [m.get("content", "") for m in messages[:-1] if isinstance(m, dict) and m.get("role") != "system"]
        return ("\n\n".join(t for t in turns if t), messages[-1].get("content", "")) if turns else None
    prompt = row.get("prompt") or row.get("instruction")
    completion = row.get("completion") or row.get("output") or row.get("response")
    if not isinstance(prompt, str) or not isinstance(completion, str) or not prompt.strip() or not completion.strip():
        return None
    extra = row.get("input")
    return (f"{prompt}\n\n{extra}" if isinstance(extra, str) and extra.strip() else prompt), completion


def render_instruction(tokenizer: Any, style: str, prompt: str) -> str:
    """An instruction prompt: the chat template's user turn, or plain text ending with a newline."""
    if style == "plain":
        return f"{prompt.strip()}\n"
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)


def _collate(rows: list[Row], pad: int) -> dict[str, Any]:
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row_ids, row_labels) in enumerate(rows):
        ids[i, : len(row_ids)] = torch.tensor(row_ids)
        labels[i, : len(row_labels)] = torch.tensor(row_labels)
        mask[i, : len(row_ids)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def _held_out_loss(model: Any, encoded: list[Row], pad: int) -> float | None:
    """Mean completion-token loss on held-out pairs."""
    if not encoded:
        return None
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(encoded), 8):
            batch = {k: v.to(model.device) for k, v in _collate(encoded[start:start + 8], pad).items()}
            total += float(causal_lm_loss_sum(model, **batch))
            count += int((batch["labels"][:, 1:] != -100).sum())
    return round(total / max(count, 1), 6)
