"""cpt: continued pretraining on the target language with replay, stated in tokens.

The data is a token-budgeted mixture of the target corpus and replay corpora (a ratio, explicit
budgets, or temperature sampling), optionally as a curriculum of phases, packed into blocks with
attention kept inside each document. What trains is the whole model or a LoRA-family adapter
(QLoRA on a 4-bit base), with the embeddings frozen, their new rows only, or in full. Held-out
bits per byte of the target, each replay language and English are measured while it trains.
Under ``accelerate launch``/``torchrun`` it trains data-parallel with replicated weights (``ddp``) or
with torch's FSDP2 (``distributed: {strategy: fsdp}``, or ``accelerate launch --use_fsdp``).
"""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pydantic import Field, model_validator

from ..distributed import World
from ..errors import DataError
from ..evaluate.scorer import lm_texts
from ..io import atomic_write_bytes
from ..modeling import peak_memory_record, reset_peak_memory
from ..schema import ADAPTER_METHODS, AdapterConfig, AdapterMethod, LanguageCode, Quantize, StrictModel, TrainingConfig
from ..train import loop
from ..train.curves import CurveTracker, HeldOut, split_held_out
from ..train.ema import EMA
from ..train.loop import LoopSettings, mixed_precision, precision_name
from ..train.loss import attention_stays_in_documents
from ..train.memory import TrainSetup, trains_under_autocast
from ..train.mixture import build_mixture, encode_documents, token_budgets
from ..train.packing import pack
from ..train.sharding import check_fsdp_support, full_state_dict, resolve_strategy
from ..train.trainable import load_base, prepare, save_standalone
from .base import Artifact, Stage, StageContext
from .corpus import corpus_files, corpus_texts

ENGLISH = "eng_Latn"


class ReplayConfig(StrictModel):
    ratio: float | None = Field(0.2, ge=0.0, lt=1.0, description="share of the token budget given to replay text")
    budgets: dict[LanguageCode, int] | None = Field(
        None, description="replay tokens per language (instead of ratio); the target gets the rest")
    languages: list[LanguageCode] | None = Field(None, description="replay languages (default: the recipe's replay)")
    temperature: float | None = Field(
        None, gt=0, description="split by corpus size^(1/T) (with ratio: across replay languages; "
                                "ratio null: across all languages); default: evenly")


class PhaseConfig(StrictModel):
    name: str | None = None
    tokens: int = Field(gt=0, description="training tokens of this phase (target + replay)")
    replay: ReplayConfig = ReplayConfig()


class EmbeddingsConfig(StrictModel):
    train: Literal["auto", "frozen", "new-rows", "full"] = Field(
        "auto", description="auto: full with train: full or embeddings; with an adapter, new-rows if a tokenizer "
                            "stage added rows, else frozen")
    lr: float | None = Field(None, gt=0, description="learning rate of the embedding rows (default: lr)")


class HeldOutConfig(StrictModel):
    documents: int = Field(32, ge=0, description="documents per language kept out of training for the curves")
    max_bytes: int = Field(30_000, ge=1, description="held-out bytes per language at most")


class DistributedConfig(StrictModel):
    strategy: Literal["auto", "ddp", "fsdp"] = Field(
        "auto", description="with several processes: ddp (replicated weights), fsdp (torch FSDP2: weights, "
                            "gradients and optimizer state sharded); auto: fsdp under accelerate launch --use_fsdp")


class CPTConfig(TrainingConfig):
    tokens: int | None = Field(None, gt=0, description="training tokens in total (target + replay); or phases")
    replay: ReplayConfig = ReplayConfig()
    phases: list[PhaseConfig] | None = Field(None, min_length=1, description="a curriculum: phases in order")
    max_epochs: float = Field(10.0, gt=0, description="passes over a language's corpus a budget may take")
    block_size: int = Field(128, ge=8)
    packing: Literal["best-fit", "stream"] = "best-fit"
    train: Literal["full", "embeddings", AdapterMethod] = Field(
        "full", description="full model; embeddings only; or a peft adapter on the transformer")
    adapter: AdapterConfig = AdapterConfig()
    quantize: Quantize = "none"
    embeddings: EmbeddingsConfig = EmbeddingsConfig()
    gradient_checkpointing: bool = False
    ema: float | None = Field(None, gt=0, lt=1, description="EMA decay of the trainable weights (scored as 'ema')")
    eval_every: int = Field(0, ge=0, description="steps between curve points (0: before and after only)")
    held_out: HeldOutConfig = HeldOutConfig()
    checkpoint_every: int = Field(20, ge=0, description="optimizer steps between resumable checkpoints (0: none)")
    distributed: DistributedConfig = DistributedConfig()

    @model_validator(mode="after")
    def _budget(self) -> CPTConfig:
        if (self.tokens is None) == (self.phases is None):
            raise ValueError("give either tokens (one phase) or phases (a curriculum)")
        if self.quantize == "4bit" and self.train not in ADAPTER_METHODS:
            raise ValueError("quantize: 4bit trains an adapter on a frozen 4-bit base: use train: lora|rslora|dora")
        return self

    def phase_list(self) -> list[PhaseConfig]:
        return self.phases or [PhaseConfig(tokens=self.tokens, replay=self.replay)]

    def embedding_mode(self, has_new_rows: bool) -> str:
        """What the embeddings do: ``embeddings.train``; for ``auto``, full when the whole model or the embeddings
        train, and with an adapter their new rows if a tokenizer stage added rows, else frozen."""
        if self.embeddings.train != "auto":
            return self.embeddings.train
        if self.train in ("full", "embeddings"):
            return "full"
        return "new-rows" if has_new_rows else "frozen"

    def training_setups(self, *, dtype: str, new_rows: int) -> list[tuple[str | None, TrainSetup]]:
        """What this stage trains, for the memory plan: one run, in ``dtype``, after a tokenizer stage that adds
        ``new_rows`` embedding rows."""
        return [(None, TrainSetup(
            method=self.train, r=self.adapter.r, targets=self.adapter.targets, quantize=self.quantize, dtype=dtype,
            batch_size=self.batch_size, seq_len=self.block_size, gradient_checkpointing=self.gradient_checkpointing,
            embeddings=self.embedding_mode(bool(new_rows)), new_rows=new_rows,
            dropout=self.adapter.dropout if self.train != "full" else 0.0, grad_accum=self.grad_accum,
            ema=bool(self.ema), autocast=trains_under_autocast(self.train, dtype)))]


class CPTStage(Stage):
    kind = "cpt"
    version = "3"  # bump when the trained weights change for the same config: covers document-aware packing,
    # phases, adapters, embedding modes, curves, EMA and bf16 autocast
    Config = CPTConfig
    requires = ("crawl",)
    produces_model = True
    trains_on_data = True
    distributed = True
    key_exclude = frozenset({"distributed"})  # ddp and fsdp train the same model

    def model_variants(self) -> list[str | None]:
        return [None, "ema"] if self.config.ema else [None]

    def training_data(self, artifact: Artifact, upstream: list[Artifact]) -> list[Path]:
        """The crawl corpora of the languages in the mixture (a superset of the blocks trained on)."""
        crawl = next(a for a in reversed(upstream) if a.kind == "crawl")
        return corpus_files(crawl, list(artifact.record.get("stats", {}).get("languages", [])))

    def run(self, ctx: StageContext) -> dict[str, Any]:
        cfg, world = self.config, World.current()
        source = ctx.latest_model()
        quantized = cfg.quantize == "4bit"
        float_weights = cfg.train in ("full", "embeddings")  # trained in float32 (autocast where bf16 is native)
        precision = mixed_precision(ctx.device, ctx.dtype) if float_weights else None  # (4-bit needs an adapter)
        model, tokenizer = load_base(source.path, device=ctx.device, quantize=cfg.quantize,
                                     dtype="float32" if float_weights else ctx.dtype,
                                     gradient_checkpointing=cfg.gradient_checkpointing)
        data = self._data(ctx, tokenizer)
        new_ids = _new_token_ids(ctx)
        embeddings = cfg.embedding_mode(bool(new_ids))
        trained = prepare(model, method=cfg.train, adapter=cfg.adapter, embeddings=embeddings, new_ids=new_ids,
                          lr=cfg.lr, embedding_lr=cfg.embeddings.lr, weight_decay=cfg.weight_decay)

        isolated = attention_stays_in_documents(trained.model)
        if not isolated:
            ctx.log("packing_not_isolated", attention=str(getattr(model.config, "_attn_implementation", "?")),
                    hint="this attention implementation ignores packed position ids: documents in a block "
                         "attend to each other")
        strategy = resolve_strategy(cfg.distributed.strategy, world.size)
        if strategy == "fsdp":
            check_fsdp_support(trained.model, is_peft=trained.is_peft, quantized=quantized, ema=bool(cfg.ema),
                               new_rows_mask=embeddings == "new-rows")
        callbacks, curves = self._callbacks(ctx, tokenizer, data, trained.model, precision)
        settings = LoopSettings(steps=data.steps, lr=cfg.lr, warmup_ratio=cfg.warmup_ratio, schedule=cfg.schedule,
                                weight_decay=cfg.weight_decay, grad_accum=cfg.grad_accum,
                                checkpoint_every=cfg.checkpoint_every, strategy=cfg.distributed.strategy,
                                autocast=precision)
        ctx.log("cpt_data", steps=data.steps, packing_efficiency=round(data.efficiency, 4), embeddings=embeddings,
                trainable=trained.trainable, **{f"tokens_{k}": v for k, v in data.realised.items()})
        reset_peak_memory(ctx.device)
        started = time.time()
        state = loop.train(trained.model, data.batch_for, settings, param_groups=trained.param_groups,
                      checkpoint_dir=ctx.out_dir / "checkpoints", log=ctx.log, progress=ctx.progress, desc="cpt",
                      callbacks=callbacks)
        seconds = time.time() - started
        models = [{"path": "model", "variant": None}]
        full = full_state_dict(trained.model) if strategy == "fsdp" else None  # a collective: every process
        if world.main:
            work = ctx.out_dir / "checkpoints"
            save_standalone(trained, source.path, ctx.out_dir / "model", work=work, device=ctx.device,
                            state_dict=full)
            if "ema" in callbacks:
                ema: EMA = callbacks["ema"]  # type: ignore[assignment]
                with ema.swapped_in(trained.model):
                    save_standalone(trained, source.path, ctx.out_dir / "model-ema", work=work, device=ctx.device)
                models.append({"path": "model-ema", "variant": "ema"})
            for name in ("model", "model-ema"):
                if (ctx.out_dir / name).is_dir():
                    tokenizer.save_pretrained(ctx.out_dir / name)
            ctx.write_json("curves.json", {"loss": state["losses"], **(curves.summary() if curves else {})})
            if curves:
                _plot_curves(ctx.out_dir / "curves.png", state["losses"], curves.points)
        world.barrier()
        if world.main:
            _drop_checkpoints(ctx)
        stats = {
            "steps": data.steps, "languages": sorted(data.languages), "phases": data.phases,
            "tokens": data.realised, "packing_efficiency": round(data.efficiency, 4),
            "final_loss": state["losses"][-1], "train_tokens": state["tokens"], "target_tokens": state["targets"],
            "tokens_per_second": round(state["tokens"] / max(state["seconds"], 1e-9), 1),
            "seconds": round(seconds, 2), **peak_memory_record(ctx.device),
            "trainable_parameters": trained.trainable, "total_parameters": trained.total, "train": cfg.train,
            "embeddings": embeddings, "new_rows": len(new_ids), "quantized": quantized,
            "processes": world.size, "strategy": strategy, "document_isolation": isolated,
            "precision": precision_name(trained.model, precision),
            "curve_change": curves.summary()["change"] if curves else {},
        }
        outputs = {"curves": "curves.json"} | ({"curves_plot": "curves.png"} if curves else {})
        return {"models": models, "outputs": outputs, "stats": stats}

    def _data(self, ctx: StageContext, tokenizer: Any) -> TrainingData:
        cfg = self.config
        crawl = ctx.artifact("crawl")
        target = ctx.recipe.languages.target
        languages = [target]
        for phase in cfg.phase_list():
            replay = _replay_languages(phase.replay, ctx)
            languages += [code for code in replay if code not in languages]
        texts = {code: corpus_texts(crawl.path, crawl.record, code) for code in languages}
        if not texts[target]:
            raise DataError(f"the crawl found no '{target}' text: nothing to continue pretraining on")
        held_out: dict[str, list[str]] = {}
        for code in languages:
            texts[code], held_out[code] = _split(texts[code], cfg.held_out, ctx.seed)

        docs = {code: encode_documents(tokenizer, texts[code]) for code in languages}
        data = TrainingData.build(cfg, ctx, docs, target, pad_id=_pad_id(tokenizer))
        data.held_out = held_out
        return data

    def _callbacks(self, ctx: StageContext, tokenizer: Any, data: TrainingData, model: Any,
                   precision: Any = None) -> tuple[dict, Any]:
        callbacks: dict[str, Any] = {}
        sets = _curve_sets(ctx, data.held_out)
        curves = None
        if sets:
            curves = CurveTracker(tokenizer, sets, every=self.config.eval_every, total_steps=data.steps,
                                  max_length=max(self.config.block_size, 256), log=ctx.log, precision=precision)
            callbacks["curves"] = curves
        if self.config.ema:
            callbacks["ema"] = EMA(model, self.config.ema)
        return callbacks, curves


class TrainingData:
    """The packed blocks of every phase in order, and ``batch_for(step, micro)`` over them."""

    def __init__(self, arrays: dict[str, Any], steps: int, per_step: int, batch_size: int, grad_accum: int) -> None:
        self.arrays, self.steps, self.per_step = arrays, steps, per_step
        self.batch_size, self.grad_accum = batch_size, grad_accum
        self.phases: list[dict[str, Any]] = []
        self.realised: dict[str, int] = {}
        self.languages: set[str] = set()
        self.efficiency = 0.0
        self.held_out: dict[str, list[str]] = {}

    @classmethod
    def build(cls, cfg: CPTConfig, ctx: StageContext, docs: dict[str, list[list[int]]], target: str,
              pad_id: int) -> TrainingData:
        per_step = cfg.batch_size * cfg.grad_accum
        sizes = {code: sum(len(d) for d in docs_) for code, docs_ in docs.items()}
        parts, phases, realised, placed, slots = [], [], {}, 0, 0
        for index, phase in enumerate(cfg.phase_list()):
            replay = _replay_languages(phase.replay, ctx)
            try:
                budgets = token_budgets(phase.tokens, target, replay, ratio=phase.replay.ratio,
                                        budgets=phase.replay.budgets, temperature=phase.replay.temperature,
                                        sizes=sizes)
            except ValueError as exc:
                raise DataError(f"cpt phase {index + 1}: {exc}") from exc
            _check_budgets(budgets, sizes, cfg.max_epochs, index)
            mixture = build_mixture(docs, budgets, ctx.seed + index)
            blocks = pack(mixture.documents, cfg.block_size, strategy=cfg.packing, pad_id=pad_id,
                          seed=ctx.seed + index)
            steps = len(blocks) // per_step
            if steps == 0:
                raise DataError(f"cpt phase {index + 1}: {phase.tokens} tokens give {len(blocks)} blocks of "
                                f"{cfg.block_size}: fewer than one step of batch_size x grad_accum = {per_step}; "
                                f"raise tokens")
            keep = steps * per_step
            parts.append((blocks.input_ids[:keep], blocks.position_ids[:keep], blocks.labels[:keep]))
            placed += blocks.tokens
            slots += blocks.input_ids.size
            for code, count in mixture.tokens.items():
                realised[code] = realised.get(code, 0) + count
            phases.append({"name": phase.name or f"phase-{index + 1}", "budgets": budgets, "tokens": mixture.tokens,
                           "documents": mixture.counts, "epochs": mixture.epochs, "blocks": len(blocks),
                           "steps": steps, "dropped_blocks": len(blocks) - keep,
                           "packing_efficiency": round(blocks.efficiency, 4),
                           "split_documents": blocks.split_documents})
        arrays = {name: np.concatenate([p[i] for p in parts]) for i, name in
                  enumerate(("input_ids", "position_ids", "labels"))}
        data = cls(arrays, sum(p["steps"] for p in phases), per_step, cfg.batch_size, cfg.grad_accum)
        data.phases, data.realised = phases, realised
        data.languages = {code for p in phases for code in p["budgets"]}
        data.efficiency = placed / max(slots, 1)
        return data

    def batch_for(self, step: int, micro: int) -> dict[str, Any]:
        start = (step * self.grad_accum + micro) * self.batch_size
        rows = slice(start, start + self.batch_size)
        return {name: torch.from_numpy(array[rows]) for name, array in self.arrays.items()}


def _replay_languages(replay: ReplayConfig, ctx: StageContext) -> list[str]:
    if replay.budgets:
        return list(replay.budgets)
    return list(replay.languages if replay.languages is not None else ctx.recipe.languages.replay)


def _check_budgets(budgets: dict[str, int], sizes: dict[str, int], max_epochs: float, index: int) -> None:
    for code, budget in budgets.items():
        if budget and not sizes.get(code):
            raise DataError(f"cpt phase {index + 1}: {budget} tokens of '{code}' asked for, but the crawl has no "
                            f"'{code}' text (add its inputs to the crawl stage, or drop it from replay)")
        passes = budget / sizes[code] if sizes.get(code) else 0.0
        if passes > max_epochs:
            raise DataError(f"cpt phase {index + 1}: '{code}' needs {passes:.1f} passes over its {sizes[code]:,}-token "
                            f"corpus for {budget:,} tokens; max_epochs is {max_epochs:g} (raise it to accept the "
                            f"repetition, or lower the budget)")


def _split(texts: list[str], cfg: HeldOutConfig, seed: int) -> tuple[list[str], list[str]]:
    return split_held_out(texts, cfg.documents, cfg.max_bytes, seed)


def _curve_sets(ctx: StageContext, held_out: dict[str, list[str]]) -> dict[str, Any]:
    """Held-out crawl documents per language; for a curve language the crawl lacks (English, say),
    the recipe's LM evaluation sentences."""
    languages = [ctx.recipe.languages.target, *ctx.recipe.languages.replay, ENGLISH]
    sets: dict[str, Any] = {}
    lm = ctx.recipe.eval.lm
    for code in dict.fromkeys(languages):
        if held_out.get(code):
            sets[code] = HeldOut(held_out[code], "crawl")
        elif lm is not None and code in lm.languages:
            sets[code] = HeldOut(lm_texts(lm, code), "eval")
        else:
            ctx.log("curve_skipped", language=code, reason="no held-out crawl text and not in eval.lm")
    return sets


def _new_token_ids(ctx: StageContext) -> list[int]:
    """Ids of the rows the tokenizer stage added (empty without one, or in trim mode)."""
    try:
        artifact = ctx.artifact("tokenizer")
    except RuntimeError:
        return []
    rel = artifact.record.get("outputs", {}).get("new_tokens")
    if not rel or not (artifact.path / rel).is_file():
        return []

    return [entry["id"] for entry in json.loads((artifact.path / rel).read_text(encoding="utf-8"))]


def _pad_id(tokenizer: Any) -> int:
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    return 0


def _plot_curves(path: Path, losses: list[float], points: list[dict[str, Any]]) -> None:
    fig = Figure(figsize=(10, 3.6))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    left.plot(range(1, len(losses) + 1), losses, color="0.3")
    left.set(title="training loss", xlabel="step", ylabel="nats / token")
    for code in points[0]["bpb"] if points else []:
        right.plot([p["step"] for p in points], [p["bpb"][code] for p in points], marker="o", label=code)
    right.set(title="held-out bits per byte", xlabel="step", ylabel="bits / byte")
    right.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(path, buffer.getvalue())


def _drop_checkpoints(ctx: StageContext) -> None:
    shutil.rmtree(ctx.out_dir / "checkpoints", ignore_errors=True)
