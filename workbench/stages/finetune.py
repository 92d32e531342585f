"""finetune: LoRA / rsLoRA / DoRA adapters trained on a translation task under matched conditions.

Every variant starts from the same upstream model and sees the same examples in the same order
for the same number of steps with the same schedule and seed; only the adapter differs.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ..errors import DataError
from ..recipe import Direction, ExistingPath, StrictModel, TrainingConfig
from .base import Artifact, Stage, StageContext

Example = tuple[str, str, str, str]  # (src code, tgt code, source sentence, target sentence)


class VariantConfig(StrictModel):
    method: Literal["lora", "rslora", "dora"]
    r: int = Field(8, ge=1)
    alpha: float | None = Field(None, gt=0, description="lora_alpha (default: 2 x r; rsLoRA scales by alpha/sqrt(r))")
    dropout: float = Field(0.05, ge=0, lt=1)
    targets: list[str] | Literal["all-linear"] = "all-linear"
    lr: float | None = Field(None, gt=0, description="overrides the block's lr for this variant")


class ParallelData(StrictModel):
    parallel: ExistingPath = Field(description="folder of line-aligned <code>.txt files (NLLB-Seed layout)")
    directions: list[Direction] = Field(min_length=1)
    max_pairs: int = Field(2000, ge=1, description="sentence pairs used per direction")
    held_out: int = Field(50, ge=0, description="pairs per direction kept out of training (validation loss)")
    prompt: Literal["auto", "plain", "chat"] = Field(
        "auto", description="auto: the chat template if the tokenizer has one (as the scorer does), else plain")


class FinetuneConfig(TrainingConfig):
    data: ParallelData
    variants: dict[str, VariantConfig] = Field(min_length=1)
    steps: int = Field(50, ge=1)
    lr: float = Field(2e-4, gt=0)
    max_length: int = Field(160, ge=16, description="prompt + completion tokens; longer examples are dropped")

    @model_validator(mode="after")
    def _variant_names(self) -> FinetuneConfig:
        for name in self.variants:
            if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
                raise ValueError(f"variant name '{name}' must use letters, digits, '-', '_' or '.'")
        return self


class FinetuneStage(Stage):
    kind = "finetune"
    version = "2"  # 2: prompts encoded as the scorer encodes them (chat template for instruct models)
    Config = FinetuneConfig
    produces_model = True
    trains_on_data = True

    def training_data(self, artifact: Artifact, upstream: list[Artifact]) -> list[Path]:
        folder = Path(self.config.data.parallel)
        codes = sorted({code for d in self.config.data.directions for code in d.split("-")})
        return [folder / f"{code}.txt" for code in codes if (folder / f"{code}.txt").is_file()]

    def model_variants(self) -> list[str | None]:
        return list(self.config.variants)

    def input_fingerprints(self) -> dict[str, str]:
        from ..io import file_fingerprint

        folder = Path(self.config.data.parallel)
        return {str(p): file_fingerprint(p) for p in sorted(folder.glob("*.txt"))}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from ..modeling import relpath

        base = ctx.latest_model()
        train_pairs, held_out = self._examples(ctx)
        done_dir = ctx.out_dir / "checkpoints" / "variants"  # finished variants survive a crash
        models, stats = [], {"examples": len(train_pairs), "held_out": len(held_out), "variants": {}}
        for name, variant in self.config.variants.items():
            if not (done_dir / name / "metadata.json").is_file():
                self._train_variant(ctx, base.path, name, variant, train_pairs, held_out, done_dir / name)
            else:
                ctx.log("variant_cached", variant=name)
            shutil.copytree(done_dir / name, ctx.out_dir / "adapters" / name)
            stats["variants"][name] = ctx.read_json(f"adapters/{name}/metadata.json")
            models.append({"path": relpath(base.path, ctx.out_dir), "adapter": f"adapters/{name}", "variant": name})
        shutil.rmtree(ctx.out_dir / "checkpoints", ignore_errors=True)
        return {"models": models, "outputs": {"adapters": "adapters"}, "stats": stats}

    def _examples(self, ctx: StageContext) -> tuple[list[Example], list[Example]]:
        """(src, tgt, source, target) for every direction, the training part shuffled once with the stage seed."""
        from ..evaluate.datasets import read_parallel_files

        data = self.config.data
        train, held_out = [], []
        for direction in data.directions:
            src, tgt = direction.split("-")
            pairs = read_parallel_files(Path(data.parallel) / f"{src}.txt", Path(data.parallel) / f"{tgt}.txt")
            examples = [(src, tgt, s, t) for s, t in pairs[: data.max_pairs + data.held_out]]
            held_out += examples[: data.held_out]
            train += examples[data.held_out:]
        random.Random(ctx.seed).shuffle(train)
        return train, held_out

    def _train_variant(self, ctx: StageContext, base_path: Path, name: str, variant: VariantConfig,
                       train_pairs: list[Example], held_out: list[Example], out: Path) -> None:
        import torch
        from peft import LoraConfig, get_peft_model

        from ..evaluate.prompts import prompt_style
        from ..io import atomic_write_json
        from ..modeling import count_parameters, peak_memory_mb, reset_peak_memory, seed_everything
        from ..models import load_model
        from ..train.loop import LoopSettings, train

        seed_everything(ctx.seed)  # matched conditions: identical init noise and dropout per variant
        model, tokenizer = load_model(base_path, device=ctx.device, dtype="float32")
        style = prompt_style(tokenizer, self.config.data.prompt)
        encoded = _encode(tokenizer, style, train_pairs, self.config.max_length)
        lora = LoraConfig(
            r=variant.r, lora_alpha=variant.alpha or 2 * variant.r, lora_dropout=variant.dropout,
            target_modules=variant.targets, use_rslora=variant.method == "rslora",
            use_dora=variant.method == "dora", task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
        trainable, total = count_parameters(model)
        cfg = self.config
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

        def batch_for(step: int, micro: int) -> dict[str, torch.Tensor]:
            start = ((step * cfg.grad_accum + micro) * cfg.batch_size) % len(encoded)
            rows = [encoded[(start + i) % len(encoded)] for i in range(cfg.batch_size)]
            return _collate(rows, pad)

        settings = LoopSettings(steps=cfg.steps, lr=variant.lr or cfg.lr, warmup_ratio=cfg.warmup_ratio,
                                schedule=cfg.schedule, grad_accum=cfg.grad_accum, weight_decay=cfg.weight_decay)
        reset_peak_memory(ctx.device)
        started = time.time()
        state = train(model, batch_for, settings, log=ctx.log, progress=ctx.progress, desc=f"finetune {name}")
        seconds = time.time() - started
        held = _held_out_loss(model, _encode(tokenizer, style, held_out, cfg.max_length), pad) if held_out else None
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        atomic_write_json(tmp / "metadata.json", {
            "variant": name, "config": variant.model_dump(), "base_model": str(base_path),
            "trainable_parameters": trainable, "total_parameters": total, "steps": cfg.steps,
            "train_seconds": round(seconds, 2), "peak_memory_mb": round(peak_memory_mb(ctx.device), 1),
            "final_loss": state["losses"][-1], "held_out_loss": held, "train_tokens": state["tokens"],
            "prompt": style,
        })
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        ctx.log("variant_trained", variant=name, trainable=trainable, seconds=round(seconds, 2), held_out_loss=held)


def _encode(tokenizer: Any, style: str, examples: list[Example], max_length: int) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) with the loss on the completion only, prompts encoded exactly as the scorer
    encodes them (see :mod:`workbench.evaluate.prompts`); over-long examples are dropped."""
    from ..evaluate.prompts import encode_completion, encode_prompt, render_completion, render_prompt

    out = []
    for src, tgt, source, target in examples:
        prompt = render_prompt(tokenizer, style, source, src, tgt)
        p = encode_prompt(tokenizer, style, prompt)
        c = encode_completion(tokenizer, style, render_completion(tokenizer, style, target))
        if len(p) + len(c) <= max_length:
            out.append((p + c, [-100] * len(p) + c))
    if not out and examples:
        raise DataError(f"every fine-tuning example is longer than max_length={max_length} tokens")
    return out


def _collate(rows: list[tuple[list[int], list[int]]], pad: int) -> dict[str, Any]:
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row_ids, row_labels) in enumerate(rows):
        ids[i, : len(row_ids)] = torch.tensor(row_ids)
        labels[i, : len(row_labels)] = torch.tensor(row_labels)
        mask[i, : len(row_ids)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def _held_out_loss(model: Any, encoded: list[tuple[list[int], list[int]]], pad: int) -> float | None:
    """Mean completion-token loss on held-out pairs."""
    import torch

    from ..train.loss import causal_lm_loss_sum

    if not encoded:
        return None
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(encoded), 8):
            batch = {k: v.to(model.device) for k, v in _collate(encoded[start:start + 8], pad).items()}
            total += float(causal_lm_loss_sum(model, **batch))
            count += int((batch["labels"][:, 1:] != -100).sum())
    return round(total / max(count, 1), 6)
