"""cpt: continued pretraining on the target language with a token-budgeted replay share."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ..errors import DataError
from ..recipe import LanguageCode, StrictModel, TrainingConfig
from .base import Artifact, Stage, StageContext
from .crawl import corpus_files, corpus_texts


class ReplayConfig(StrictModel):
    ratio: float = Field(0.2, ge=0.0, lt=1.0, description="share of the token budget given to replay text")
    languages: list[LanguageCode] | None = Field(None, description="replay languages (default: recipe's replay)")


class CPTConfig(TrainingConfig):
    tokens: int = Field(gt=0, description="training tokens in total (target + replay)")
    replay: ReplayConfig = ReplayConfig()
    block_size: int = Field(128, ge=8)
    train: Literal["full", "embeddings"] = Field("full", description="full model, or input/output embeddings only")
    checkpoint_every: int = Field(20, ge=0, description="optimizer steps between resumable checkpoints (0: none)")


class CPTStage(Stage):
    kind = "cpt"
    version = "1"
    Config = CPTConfig
    requires = ("crawl",)
    produces_model = True
    trains_on_data = True

    def training_data(self, artifact: Artifact, upstream: list[Artifact]) -> list[Path]:
        """The crawl corpora of the languages in the mixture (a superset of the blocks trained on)."""
        crawl = next(a for a in reversed(upstream) if a.kind == "crawl")
        return corpus_files(crawl, list(artifact.record.get("stats", {}).get("budgets", {})))

    def run(self, ctx: StageContext) -> dict[str, Any]:
        import torch

        from ..models import load_model
        from ..train.data import build_mixture, encode_documents, token_budgets
        from ..train.loop import LoopSettings, train

        cfg = self.config
        source = ctx.latest_model()
        model, tokenizer = load_model(source.path, device=ctx.device, dtype="float32")
        crawl = ctx.artifact("crawl")
        target = ctx.recipe.languages.target
        replay = cfg.replay.languages if cfg.replay.languages is not None else ctx.recipe.languages.replay
        budgets = token_budgets(cfg.tokens, target, replay, cfg.replay.ratio)
        docs = {code: encode_documents(tokenizer, corpus_texts(crawl.path, crawl.record, code)) for code in budgets}
        if not docs[target]:
            raise DataError(f"the crawl found no '{target}' text: nothing to continue pretraining on")
        mixture = build_mixture(docs, budgets, cfg.block_size, ctx.seed)
        per_step = cfg.batch_size * cfg.grad_accum
        steps = len(mixture.blocks) // per_step
        if steps == 0:
            raise DataError(f"cpt.tokens={cfg.tokens} gives {len(mixture.blocks)} blocks of {cfg.block_size}: "
                             f"fewer than one step of batch_size x grad_accum = {per_step}; raise tokens")
        blocks = torch.tensor(np.array(mixture.blocks[: steps * per_step]), dtype=torch.long)
        _select_trainable(model, cfg.train)

        def batch_for(step: int, micro: int) -> dict[str, torch.Tensor]:
            start = (step * cfg.grad_accum + micro) * cfg.batch_size
            ids = blocks[start:start + cfg.batch_size]
            return {"input_ids": ids, "labels": ids, "attention_mask": torch.ones_like(ids)}

        settings = LoopSettings(steps=steps, lr=cfg.lr, warmup_ratio=cfg.warmup_ratio, schedule=cfg.schedule,
                                weight_decay=cfg.weight_decay, grad_accum=cfg.grad_accum,
                                checkpoint_every=cfg.checkpoint_every)
        ctx.log("cpt_data", tokens=mixture.tokens, epochs=mixture.epochs, steps=steps)
        state = train(model, batch_for, settings, checkpoint_dir=ctx.out_dir / "checkpoints", log=ctx.log,
                      progress=ctx.progress, desc="cpt")
        out = ctx.out_dir / "model"
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        _drop_checkpoints(ctx)
        ctx.write_json("curves.json", {"loss": state["losses"]})
        stats = {"steps": steps, "budgets": budgets, "tokens": mixture.tokens, "documents": mixture.documents,
                 "epochs": mixture.epochs, "final_loss": state["losses"][-1], "train_tokens": state["tokens"],
                 "tokens_per_second": round(state["tokens"] / max(state["seconds"], 1e-9), 1)}
        return {"models": [{"path": "model", "variant": None}], "outputs": {"curves": "curves.json"},
                "stats": stats}


def _select_trainable(model: Any, mode: str) -> None:
    for param in model.parameters():
        param.requires_grad = mode == "full"
    if mode == "embeddings":
        model.get_input_embeddings().weight.requires_grad = True
        model.get_output_embeddings().weight.requires_grad = True


def _drop_checkpoints(ctx: StageContext) -> None:
    import shutil

    shutil.rmtree(ctx.out_dir / "checkpoints", ignore_errors=True)
