"""Quick checks on any model: translate a few sentences, score some text in bits per byte.

Models are given as recipes give them (``hf:<repo>``, a local directory, ``gguf:<file>``,
``smollm2-135m``, ``gemma3-270m``), optionally with a peft adapter, or as an already loaded
``(model, tokenizer)`` pair. The last model loaded is kept in memory so repeated calls in a notebook
do not reload it (:func:`clear_model_cache` frees it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import DataError
from .evaluate.datasets import load_texts
from .evaluate.lm import prefix_policy, score_each, total
from .evaluate.mt import translate as generate
from .languages import check_code
from .models import pick_device
from .publish import recorded_base
from .tasks import load_for_scoring

ModelLike = str | Path | tuple[Any, Any]

_CACHE: dict[tuple[str, str | None, str, str], tuple[Any, Any]] = {}


def load(model: ModelLike | None, adapter: str | Path | None = None, device: str | None = None,
         dtype: str = "auto") -> tuple[Any, Any]:
    """``(model, tokenizer)`` for a model source (and adapter, merged into a copy of the model), on the best
    available device unless told; an already loaded pair is returned as is. ``model=None`` with an
    adapter loads the base model recorded in the adapter's ``metadata.json``. ``dtype``: ``auto`` (bfloat16
    where the device has it natively, see :func:`workbench.models.pick_dtype`), ``float32``, ``bfloat16``...

    >>> model, tokenizer = wb.load(MODEL, device="cpu")
    >>> model.device.type
    'cpu'
    """
    if model is None:
        if adapter is None:
            raise DataError("give a model source, or an adapter whose metadata.json records its base model")
        model = recorded_base({Path(adapter).name: Path(adapter)})
    if isinstance(model, tuple):
        if adapter is not None:
            raise DataError("pass the adapter with a model source, not with an already loaded (model, tokenizer)")
        return model

    device = pick_device(device)
    key = (str(model), str(adapter) if adapter else None, device, dtype)
    if key not in _CACHE:
        clear_model_cache()
        _CACHE[key] = load_for_scoring(model, adapter=adapter, device=device, dtype=dtype)
    return _CACHE[key]


def clear_model_cache() -> None:
    """Forget the model kept by :func:`load` (frees its memory).

    >>> wb.clear_model_cache()
    """
    _CACHE.clear()


def _texts(texts: str | Sequence[str] | Path, language: str, split: str) -> list[str]:
    """A list of texts, one string, or an evaluation set (FLORES folder, .tsv, .jsonl, hf:id) read for
    ``language``."""
    if isinstance(texts, Path) or (isinstance(texts, str) and (Path(texts).exists() or texts.startswith("hf:"))):
        return load_texts(texts, language, split)
    if isinstance(texts, str):
        return [texts]
    return [str(t) for t in texts]


def translate(model: ModelLike | None, texts: str | Sequence[str], src: str, tgt: str, *,
              adapter: str | Path | None = None, exemplars: Sequence[tuple[str, str]] = (), prompt: str = "auto",
              max_new_tokens: int | None = None, calibration: Sequence[tuple[str, str]] | None = None,
              batch_size: int = 8, device: str | None = None,
              dtype: str = "auto") -> list[str]:
    """Greedy translations of ``texts`` from ``src`` to ``tgt`` (FLORES codes), one per text, with the
    same prompts the scorer uses (the chat template of instruct models, else plain few-shot with
    ``exemplars``). Each text's token budget follows its length in characters, through the length ratio
    and the tokenizer's tokens per target character measured on ``calibration`` pairs (default: the
    exemplars; see :func:`workbench.evaluate.mt.length_model`), at most ``max_new_tokens`` when given.

    >>> wb.translate(MODEL, ["Good morning."], "eng_Latn", "srd_Latn", max_new_tokens=8)  # doctest: +ELLIPSIS
    [...]
    """
    check_code(src)
    check_code(tgt)
    loaded, tokenizer = load(model, adapter, device, dtype)
    return generate(loaded, tokenizer, _texts(texts, src, "dev"), src, tgt, exemplars=exemplars,
                    calibration=calibration, batch_size=batch_size, max_new_tokens=max_new_tokens, prompt=prompt)


def score_text(model: ModelLike | None, texts: str | Sequence[str] | Path, language: str, *,
               adapter: str | Path | None = None, split: str = "dev", max_texts: int | None = None,
               batch_size: int = 16, device: str | None = None, dtype: str = "auto") -> pd.DataFrame:
    """Bits per byte and per character of each text under ``model`` (the scorer's tokenizer-independent
    measure), one row per text; ``frame.attrs`` holds the totals (Σ bits / Σ bytes, not a mean of rows).
    ``texts`` may also be an evaluation set, read for ``language``.

    >>> frame = wb.score_text(MODEL, ["Su sardu est una limba romanza."], "srd_Latn")
    >>> bool(abs(frame.attrs["bits_per_byte"] - frame.bits.sum() / frame.bytes.sum()) < 1e-9)
    True
    """
    check_code(language)
    items = _texts(texts, language, split)[:max_texts]
    if not items:
        raise DataError(f"no texts to score for {language}")
    loaded, tokenizer = load(model, adapter, device, dtype)
    each = score_each(loaded, tokenizer, items, batch_size=batch_size)
    rows = [{"language": language, "text": text, "bits": s.bits, "bytes": s.bytes, "chars": s.chars,
             "tokens": s.tokens, "bits_per_byte": s.bits_per_byte, "bits_per_char": s.bits_per_char}
            for text, s in zip(items, each, strict=True)]
    frame = pd.DataFrame(rows)
    summary = total(each, prefix_policy(tokenizer)[0])
    frame.attrs.update({"language": language, "bits_per_byte": summary.bits_per_byte,
                        "bits_per_char": summary.bits_per_char, "texts": len(items),
                        "prefix_policy": summary.prefix_policy})
    return frame


__all__ = ["clear_model_cache", "load", "score_text", "translate"]
