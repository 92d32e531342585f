"""Evaluation: bits per byte of held-out text (``lm``), few-shot translation chrF++/BLEU (``mt``).

``score_model`` runs what a recipe's ``eval:`` section asks for and returns scoreboard records.
Names are imported lazily, so ``from workbench.evaluate.prompts import ...`` or reading data does not
import torch/transformers.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ParallelPairs": ".datasets",
    "read_lines": ".datasets",
    "read_parallel": ".datasets",
    "read_parallel_files": ".datasets",
    "LMScore": ".lm",
    "score_texts": ".lm",
    "translation_prompt": ".prompts",
    "translation_completion": ".prompts",
    "clean_hypothesis": ".prompts",
    "translate": ".mt",
    "mt_metrics": ".mt",
    "sentence_chrf": ".mt",
    "score_model": ".scorer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)


def __dir__() -> list[str]:
    return __all__
