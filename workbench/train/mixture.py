"""Language mixtures stated in tokens: budgets per language, replay shares, temperature, epochs.

A budget says how many training tokens each language contributes. Documents are drawn from a
language's corpus in seeded shuffled passes until its budget is met; a budget larger than the
corpus means repeated passes, which are counted (``epochs``) and capped by the caller.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Document:
    """One training document: its token ids and language."""

    ids: list[int]
    language: str


@dataclass
class Mixture:
    """The documents drawn for a phase and what went into them."""

    documents: list[Document]
    tokens: dict[str, int] = field(default_factory=dict)  # realised tokens per language
    counts: dict[str, int] = field(default_factory=dict)  # documents drawn per language
    epochs: dict[str, float] = field(default_factory=dict)  # passes over each language's corpus


def split_exactly(total: int, weights: dict[str, float]) -> dict[str, int]:
    """``total`` split in proportion to ``weights`` (largest remainders, so the parts sum to ``total``)."""
    norm = sum(weights.values())
    if norm <= 0:
        raise ValueError("mixture weights must not all be zero")
    raw = {k: total * w / norm for k, w in weights.items()}
    parts = {k: int(v) for k, v in raw.items()}
    for key in sorted(raw, key=lambda k: (parts[k] - raw[k], k))[: total - sum(parts.values())]:
        parts[key] += 1
    return parts


def temperature_weights(sizes: dict[str, int], temperature: float) -> dict[str, float]:
    """p_i ∝ n_i^(1/T): T=1 follows corpus sizes, larger T flattens towards uniform (XLM-R style)."""
    return {code: max(size, 1) ** (1.0 / temperature) for code, size in sizes.items()}


def token_budgets(total: int, target: str, replay: list[str], *, ratio: float | None = 0.2,
                  budgets: dict[str, int] | None = None, temperature: float | None = None,
                  sizes: dict[str, int] | None = None) -> dict[str, int]:
    """Tokens per language for a phase of ``total`` tokens.

    - ``budgets``: explicit replay tokens per language; the target gets the rest;
    - ``ratio``: replay gets ``ratio * total``, split evenly over ``replay`` or, with ``temperature``,
      by corpus ``sizes`` ** (1/T);
    - ``ratio=None`` with ``temperature``: every language (target included) by sizes ** (1/T).
    """
    if budgets:
        rest = total - sum(budgets.values())
        if rest <= 0:
            raise ValueError(f"replay budgets ({sum(budgets.values())} tokens) leave nothing of {total} for {target}")
        return {target: rest, **budgets}
    if ratio is None:
        if temperature is None or sizes is None:
            return {target: total}
        languages = [target, *replay]
        return split_exactly(total, temperature_weights({c: sizes.get(c, 0) for c in languages}, temperature))
    if not replay or ratio == 0:
        return {target: total}
    replay_total = round(total * ratio)
    weights = ({code: 1.0 for code in replay} if temperature is None or sizes is None
               else temperature_weights({c: sizes.get(c, 0) for c in replay}, temperature))
    return {target: total - replay_total, **split_exactly(replay_total, weights)}


def encode_documents(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Each document as ids: BOS (if the tokenizer has one) + text + EOS as the document end."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    encoded = tokenizer(texts, add_special_tokens=False, verbose=False).input_ids if texts else []
    return [bos + ids + eos for ids in encoded if ids]


def sample_documents(docs: list[list[int]], budget: int, rng: random.Random) -> tuple[list[list[int]], float]:
    """Documents in shuffled passes until ``budget`` tokens are reached; returns them and the epochs used."""
    if not docs or budget <= 0:
        return [], 0.0
    corpus_tokens = sum(len(d) for d in docs)
    chosen, taken = [], 0
    while taken < budget:
        order = list(range(len(docs)))
        rng.shuffle(order)
        for index in order:
            chosen.append(docs[index])
            taken += len(docs[index])
            if taken >= budget:
                break
    return chosen, taken / corpus_tokens


def build_mixture(docs_by_language: dict[str, list[list[int]]], budgets: dict[str, int], seed: int) -> Mixture:
    """Sample each language to its budget and shuffle the documents together (deterministic for ``seed``)."""
    rng = random.Random(seed)
    mixture = Mixture(documents=[])
    for code, budget in budgets.items():
        chosen, epochs = sample_documents(docs_by_language.get(code, []), budget, rng)
        mixture.documents.extend(Document(ids, code) for ids in chosen)
        mixture.tokens[code] = sum(len(d) for d in chosen)
        mixture.counts[code] = len(chosen)
        mixture.epochs[code] = round(epochs, 3)
    rng.shuffle(mixture.documents)
    return mixture
