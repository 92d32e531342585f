"""Step kinds: the stages a recipe lists, in the order a recipe runs them, and the scoring steps the engine adds
after each step they apply to. Each module defines one class with the contract of :mod:`.base`.

The registry imports a step's module when a recipe uses that kind, so that a recipe without a crawl (and
``plan``, ``eval``, ``scores``, the notebook API) works without the crawl's compiled libraries (fastwarc,
resiliparse); a kind whose optional dependencies are missing fails with one message naming the extra.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from ..optional import missing_dependency
from .base import ScoringStep, Stage

STAGE_CLASSES: dict[str, str | type[Stage]] = {
    "crawl": "crawl:CrawlStage", "tokenizer": "tokenizer:TokenizerStage", "cpt": "cpt:CPTStage",
    "finetune": "finetune:FinetuneStage"}
"""Each recipe stage kind's ``module:class`` (or the class itself), in run order."""

SCORING_CLASSES: dict[str, str | type[Stage]] = {
    "contamination": "contamination:ContaminationStep", "floor": "floor:FloorStep", "score": "score:ScoreStep"}
"""Each scoring step kind's ``module:class`` (or the class itself), in the order they follow a step."""


class StepRegistry(Mapping[str, type[Stage]]):
    """``kind -> step class`` over tables of ``module:class`` entries, importing a step's module on first use."""

    def __init__(self, *tables: dict[str, str | type[Stage]]) -> None:
        self._tables = tables

    def __getitem__(self, kind: str) -> type[Stage]:
        for table in self._tables:
            if kind in table:
                return _load(kind, table[kind])
        raise KeyError(kind)

    def __contains__(self, kind: object) -> bool:
        return any(kind in table for table in self._tables)  # without importing the step's module

    def __iter__(self) -> Iterator[str]:
        return (kind for table in self._tables for kind in table)

    def __len__(self) -> int:
        return sum(len(table) for table in self._tables)


def _load(kind: str, entry: str | type[Stage]) -> type[Stage]:
    if not isinstance(entry, str):
        return entry
    module, name = entry.split(":")
    try:
        loaded = importlib.import_module(f"{__name__}.{module}")
    except ImportError as exc:
        missing = missing_dependency(f"the {kind} stage", exc)
        if missing is None:
            raise
        raise missing from exc
    return getattr(loaded, name)


def register(step: type[Stage]) -> type[Stage]:
    """Add a step kind (usable as a class decorator): a :class:`ScoringStep` follows the steps it applies to,
    after the scoring kinds registered before it; any other :class:`Stage` becomes a recipe stage kind, last in
    the run order."""
    table = SCORING_CLASSES if issubclass(step, ScoringStep) else STAGE_CLASSES
    table[step.kind] = step
    return step


STEPS = StepRegistry(STAGE_CLASSES, SCORING_CLASSES)
"""Every step kind."""
STAGES = StepRegistry(STAGE_CLASSES)
"""The kinds a recipe's ``stages:`` may list, in run order."""
SCORING = StepRegistry(SCORING_CLASSES)
"""The kinds the engine adds after the steps they apply to."""

__all__ = ["SCORING", "STAGES", "STEPS", "ScoringStep", "Stage", "register"]
