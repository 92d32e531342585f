"""The floor of the scoreboard: a character n-gram model per language, trained on the run's corpora.

Scored on the same held-out sentences as the neural models, it makes "the model is worse than a
character trigram on this language" visible (see :mod:`workbench.evaluate.ngram` for the model).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..stages.corpus import corpus_texts
from .ngram import CharNgramModel


def _capped(texts: Sequence[str], max_chars: int) -> Iterator[str]:
    """The texts in order until ``max_chars`` characters have been given (the last one cut)."""
    left = max_chars
    for text in texts:
        if left <= 0:
            return
        yield text[:left]
        left -= len(text)


def train_floor_models(crawl: Any, languages: Sequence[str], cfg: Any, out_dir: Path, *,
                       progress: bool = False) -> tuple[dict[str, CharNgramModel], dict[str, int]]:
    """One character n-gram model per language that the crawl artifact has text for, saved as
    ``out_dir/<code>.json``; returns the models and the training characters used per language."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    models, sizes = {}, {}
    for code in tqdm(languages, desc="n-gram floor", disable=not progress, leave=False):
        texts = corpus_texts(crawl.path, crawl.record, code)
        if not texts:
            continue
        used = list(_capped(texts, cfg.max_chars))
        models[code] = CharNgramModel(cfg.order).fit(used)
        models[code].save(out_dir / f"{code}.json")
        sizes[code] = sum(map(len, used))
    return models, sizes
