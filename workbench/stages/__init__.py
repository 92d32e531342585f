"""Stage kinds, in the order a recipe runs them. Each module defines one ``Stage`` subclass."""

from __future__ import annotations

from .base import Stage
from .cpt import CPTStage
from .crawl import CrawlStage
from .finetune import FinetuneStage
from .tokenizer import TokenizerStage

STAGES: dict[str, type[Stage]] = {
    stage.kind: stage for stage in (CrawlStage, TokenizerStage, CPTStage, FinetuneStage)
}

__all__ = ["STAGES", "Stage"]
