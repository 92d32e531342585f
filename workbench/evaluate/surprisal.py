"""Parallel-sentence surprisal (Goldfish-style): bits of each sentence's second half given its first half.

On a multi-way parallel set (FLORES) every language carries the same content, so the mean surprisal
of the second halves compares how well a model predicts each language.

- **Split** (:func:`split_halves`): at the whitespace nearest the middle of the sentence (the second
  half keeps that whitespace); a sentence without inner whitespace (scripts written without spaces,
  a single word) is split at the character boundary nearest the middle that does not separate a
  combining mark from its base. Ties go to the earlier cut.
- **Tokens**: ``prefix + ids(first half) + ids(second half)``, the halves tokenized separately so
  that the token boundary falls exactly at the split. ``prefix`` is the scoring prefix of
  :func:`workbench.evaluate.lm.prefix_policy` (BOS, else EOS as separator, else none) and the first
  half is tokenized as a text of its own, as :func:`score_texts` does. The second half, leading
  space included, is tokenized as a *continuation*: ids of ``"\\n" + second half`` with the ids of
  ``"\\n"`` removed from the front, so SentencePiece-style tokenizers neither add their dummy-prefix
  space (which would insert a space into a word cut in the middle) nor double the leading space. If
  a tokenizer merges the newline with what follows, the second half is tokenized alone.
- **Scored**: the continuation tokens only. ``mean_bits`` is the mean over sentences of
  Σ −log₂ p (bits); ``bits_per_byte`` is Σ bits / Σ UTF-8 bytes of the second halves (leading
  whitespace included). A context too long for the model's maximum positions is cut from the left
  (the second half is always scored whole).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .lm import ScoredIds, prefix_policy, row_bits

_ANCHOR = "\n"


@dataclass(frozen=True)
class SurprisalScore:
    """Mean surprisal (bits) of the second halves, bits per byte of them, sentences, prefix policy, and
    each sentence's bits and second-half bytes (in input order)."""

    mean_bits: float
    bits_per_byte: float
    n: int
    prefix_policy: str
    sentence_bits: tuple[float, ...] = ()
    sentence_bytes: tuple[int, ...] = ()


def split_halves(text: str) -> tuple[str, str]:
    """``(first, second)`` with ``first + second == text`` (see the module docstring for the rule)."""
    stripped = text.strip()
    if not stripped:
        raise ValueError("cannot split a blank sentence into halves")
    start = len(text) - len(text.lstrip())
    end = start + len(stripped)
    cuts = [i for i in range(start + 1, end) if text[i].isspace()]
    if not cuts:
        cuts = [i for i in range(1, len(text)) if not unicodedata.category(text[i]).startswith("M")] or [0]
    middle = len(text) / 2
    cut = min(cuts, key=lambda i: (abs(i - middle), i))
    return text[:cut], text[cut:]


def _ids(tokenizer, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    encoded = tokenizer(texts, add_special_tokens=False, split_special_tokens=True, verbose=False)
    return [list(ids) for ids in encoded["input_ids"]]


def continuation_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text as the continuation of earlier text (no dummy-prefix space added)."""
    anchor = _ids(tokenizer, [_ANCHOR])[0]
    anchored = _ids(tokenizer, [_ANCHOR + text for text in texts])
    return [
        ids[len(anchor):] if ids[: len(anchor)] == anchor else _ids(tokenizer, [text])[0]
        for text, ids in zip(texts, anchored, strict=True)
    ]


def _max_length(model) -> int:
    value = getattr(model.config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 1 else 2048


def encode_halves(tokenizer, halves: list[tuple[str, str]], max_length: int) -> tuple[list[ScoredIds], str]:
    """The fed sequence of each ``(first, second)`` pair and the prefix policy."""
    policy, prefix = prefix_policy(tokenizer)
    head = [prefix] if prefix is not None else []
    firsts = _ids(tokenizer, [first for first, _ in halves])
    seconds = continuation_ids(tokenizer, [second for _, second in halves])
    items = []
    for index, (first, second) in enumerate(zip(firsts, seconds, strict=True)):
        room = max_length - len(second)
        if room < 1:
            raise ValueError(f"sentence {index}: its second half is {len(second)} tokens, the model takes "
                             f"at most {max_length} positions")
        ids = (head + first)[-room:] + second
        items.append(ScoredIds(ids, min(len(second), len(ids) - 1)))
    return items, policy


def parallel_surprisal(model, tokenizer, sentences: Sequence[str], *, batch_size: int = 16) -> SurprisalScore:
    """Surprisal of each sentence's second half given its first half (see the module docstring)."""
    halves = [split_halves(sentence) for sentence in sentences]
    items, policy = encode_halves(tokenizer, halves, _max_length(model))
    order = sorted(range(len(items)), key=lambda i: len(items[i].ids), reverse=True)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    bits = [0.0] * len(items)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for begin in range(0, len(order), batch_size):
                rows = [i for i in order[begin : begin + batch_size] if items[i].n_scored > 0]
                if rows:
                    for i, value in zip(rows, row_bits(model, [items[i] for i in rows], pad_id), strict=True):
                        bits[i] = value
    finally:
        model.train(was_training)
    sizes = [len(second.encode("utf-8")) for _, second in halves]
    total, n_bytes = math.fsum(bits), sum(sizes)
    return SurprisalScore(
        mean_bits=total / len(items) if items else math.nan,
        bits_per_byte=total / n_bytes if n_bytes else math.nan,
        n=len(items),
        prefix_policy=policy,
        sentence_bits=tuple(bits),
        sentence_bytes=tuple(sizes),
    )
