"""What every language identifier shares: the prediction type, the protocol, batched prediction, and two small
helpers of the identifiers' inner loops."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

Prediction = list[tuple[str, float]]


@runtime_checkable
class LanguageIdentifier(Protocol):
    """Anything that ranks languages for a text."""

    def predict(self, text: str) -> Prediction:
        """``[(flores_code, score), ...]`` sorted by score, descending."""
        ...


def predict_batch(identifier: LanguageIdentifier, texts: Sequence[str],
                  scripts: Sequence[str | None] | None = None) -> list[Prediction]:
    """``identifier.predict`` of every text, batched when the identifier can: its
    ``predict_batch(texts, scripts)`` (``scripts``: the texts' dominant scripts, or None to detect them)."""
    batch = getattr(identifier, "predict_batch", None)
    if batch is None:
        return [identifier.predict(text) for text in texts]
    return batch(texts, scripts)


class Memo(dict):
    """``key -> compute(key)``, computed the first time a key is met (a ``str.translate`` table, a cache read once
    per identified line: a plain dict lookup, cheaper than ``lru_cache``)."""

    def __init__(self, compute) -> None:
        super().__init__()
        self.compute = compute

    def __missing__(self, key):
        value = self[key] = self.compute(key)
        return value


def codepoints(text: str) -> np.ndarray:
    """The code points of ``text`` as a uint32 array."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
