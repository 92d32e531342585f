"""Language-model scoring: bits per byte of held-out text, comparable across tokenizers.

Each text is scored on its own, after one prefix token that stands for "start of a document":

- ``"bos"``: the tokenizer's BOS token, prepended exactly once (the text is tokenized without special
  tokens), so it is never doubled and BOS -> BOS is never scored;
- ``"eos"``: no BOS, so the EOS token serves as the document separator (e.g. ``<|endoftext|>``);
- ``"none (first token unscored)"``: neither exists; the first token of each text has no context and is
  left out of the sums (its bytes still count, which slightly flatters bits per byte).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

POLICY_NONE = "none (first token unscored)"
_LN2 = math.log(2.0)


@dataclass
class LMScore:
    """Sums over a set of texts; ``bits`` is Σ −log₂ p over the ``tokens`` scored."""

    bits: float
    bytes: int
    chars: int
    tokens: int
    n: int
    prefix_policy: str

    @property
    def bits_per_byte(self) -> float:
        """Bits per UTF-8 byte of text: the tokenizer-independent number to compare models with."""
        return self.bits / self.bytes if self.bytes else math.nan

    @property
    def bits_per_char(self) -> float:
        """Bits per Unicode character (code point)."""
        return self.bits / self.chars if self.chars else math.nan

    @property
    def token_perplexity(self) -> float:
        """2 ** (bits per token). Tokenizer-dependent: only compare models that share a tokenizer."""
        return 2.0 ** (self.bits / self.tokens) if self.tokens else math.nan


@dataclass(frozen=True)
class ScoredIds:
    """One forward input: ``ids``, of which the last ``n_scored`` tokens are scored."""

    ids: list[int]
    n_scored: int


def prefix_policy(tokenizer) -> tuple[str, int | None]:
    """The prefix policy for ``tokenizer`` and the prefix token id (``None`` for no prefix)."""
    if tokenizer.bos_token_id is not None:
        return "bos", tokenizer.bos_token_id
    if tokenizer.eos_token_id is not None:
        return "eos", tokenizer.eos_token_id
    return POLICY_NONE, None


def encode_for_scoring(tokenizer, texts: Sequence[str]) -> tuple[list[list[int]], str]:
    """Token ids of each text as scored (prefix token included) and the prefix policy.

    Position 0 of each sequence is context only; every later position is scored.
    """
    policy, prefix = prefix_policy(tokenizer)
    if not texts:
        return [], policy
    encoded = tokenizer(list(texts), add_special_tokens=False, split_special_tokens=True, verbose=False)
    encoded = encoded["input_ids"]
    head = [prefix] if prefix is not None else []
    return [head + list(ids) for ids in encoded], policy


def _windows(seq: list[int], max_length: int, stride: int) -> list[ScoredIds]:
    """Split a sequence so that each position >= 1 is scored exactly once, with left context."""
    if len(seq) < 2:
        return []
    chunks, begin, scored_until = [], 0, 1
    while True:
        end = min(begin + max_length, len(seq))
        chunks.append(ScoredIds(seq[begin:end], end - scored_until))
        scored_until = end
        if end == len(seq):
            return chunks
        begin += stride


def _default_max_length(model) -> int:
    value = getattr(model.config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 1 else 2048


def row_bits(model, batch: list[ScoredIds], pad_id: int) -> list[float]:
    """Σ −log₂ p of the last ``n_scored`` tokens of each sequence, run as one right-padded batch
    (padding never enters the sums; log-softmax in float32)."""
    width = max(len(c.ids) for c in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, chunk in enumerate(batch):
        ids[row, : len(chunk.ids)] = torch.tensor(chunk.ids)
        mask[row, : len(chunk.ids)] = 1
    logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
    bits = []
    for row, chunk in enumerate(batch):
        length, k = len(chunk.ids), chunk.n_scored
        row_logits = logits[row, length - 1 - k : length - 1].float()
        targets = ids[row, length - k : length].to(row_logits.device)
        logp = torch.log_softmax(row_logits, dim=-1).gather(-1, targets[:, None])
        bits.append(-logp.double().sum().item() / _LN2)
    return bits


def score_each(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    batch_size: int = 16,
    max_length: int | None = None,
    stride: int | None = None,
    progress: bool = False,
) -> list[LMScore]:
    """One :class:`LMScore` per text, each text scored on its own after a prefix token (see the module
    docstring), all windows of all texts batched together, longest first.

    Texts longer than ``max_length`` tokens (default: the model's maximum positions) are scored with
    sliding windows moved by ``stride`` (default ``max_length // 2``): every token is scored once, with
    up to ``max_length - 1`` tokens of left context.
    """
    max_length = max_length or _default_max_length(model)
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    stride = min(stride or max(1, max_length // 2), max_length - 1)
    sequences, policy = encode_for_scoring(tokenizer, texts)
    chunks = [(i, c) for i, seq in enumerate(sequences) for c in _windows(seq, max_length, stride)]
    chunks.sort(key=lambda item: len(item[1].ids), reverse=True)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches = [chunks[i : i + batch_size] for i in range(0, len(chunks), batch_size)]
    bits, tokens = [0.0] * len(texts), [0] * len(texts)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in tqdm(batches, desc="scoring", unit="batch", disable=not progress, leave=False):
                values = row_bits(model, [c for _, c in batch], pad_id)
                for (index, chunk), value in zip(batch, values, strict=True):
                    bits[index] += value
                    tokens[index] += chunk.n_scored
    finally:
        model.train(was_training)
    return [
        LMScore(bits=bits[i], bytes=len(text.encode("utf-8")), chars=len(text), tokens=tokens[i], n=1,
                prefix_policy=policy)
        for i, text in enumerate(texts)
    ]


def total(scores: Sequence[LMScore], prefix_policy: str) -> LMScore:
    """The sums of per-text scores (an empty list gives zeros: NaN rates)."""
    return LMScore(
        bits=math.fsum(s.bits for s in scores), bytes=sum(s.bytes for s in scores),
        chars=sum(s.chars for s in scores), tokens=sum(s.tokens for s in scores),
        n=sum(s.n for s in scores), prefix_policy=prefix_policy,
    )


def score_texts(model, tokenizer, texts: Sequence[str], **options: Any) -> LMScore:
    """The summed :func:`score_each` of ``texts`` (``options``: its ``batch_size``, ``max_length``, ``stride``,
    ``progress``): bits per byte of the set is Σ bits / Σ bytes."""
    return total(score_each(model, tokenizer, texts, **options), prefix_policy(tokenizer)[0])
