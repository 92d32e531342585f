"""Stage kinds, in the order a recipe runs them. Each module defines one ``Stage`` subclass.

The registry imports a stage's module when a recipe uses that kind, so that a recipe without a crawl (and
``plan``, ``eval``, ``scores``, the notebook API) works without the crawl's compiled libraries (fastwarc,
resiliparse); a kind whose optional dependencies are missing fails with one message naming the extra.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from ..errors import missing_dependency
from .base import Stage

STAGE_CLASSES = {"crawl": "crawl:CrawlStage", "tokenizer": "tokenizer:TokenizerStage", "cpt": "cpt:CPTStage",
                 "finetune": "finetune:FinetuneStage"}
"""Each kind's ``module:class``, in run order."""


class StageRegistry(Mapping[str, type[Stage]]):
    """``kind -> Stage`` class, importing a stage's module on first use."""

    def __getitem__(self, kind: str) -> type[Stage]:
        module, name = STAGE_CLASSES[kind].split(":")
        try:
            loaded = importlib.import_module(f"{__name__}.{module}")
        except ImportError as exc:
            missing = missing_dependency(f"the {kind} stage", exc)
            if missing is None:
                raise
            raise missing from exc
        return getattr(loaded, name)

    def __contains__(self, kind: object) -> bool:
        return kind in STAGE_CLASSES  # without importing the stage

    def __iter__(self) -> Iterator[str]:
        return iter(STAGE_CLASSES)

    def __len__(self) -> int:
        return len(STAGE_CLASSES)


STAGES = StageRegistry()

__all__ = ["STAGES", "Stage"]
