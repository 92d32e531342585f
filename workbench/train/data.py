"""Token-budgeted mixtures of languages, packed into fixed-length blocks."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Mixture:
    """Packed training blocks and what went into them."""

    blocks: list[list[int]]
    tokens: dict[str, int] = field(default_factory=dict)  # realised tokens per language
    documents: dict[str, int] = field(default_factory=dict)
    epochs: dict[str, float] = field(default_factory=dict)  # passes over each language's corpus


def token_budgets(total: int, target: str, replay: list[str], replay_ratio: float) -> dict[str, int]:
    """Split a token budget: ``1 - replay_ratio`` for the target, the rest evenly over replay languages."""
    if not replay or replay_ratio == 0:
        return {target: total}
    per_replay = int(total * replay_ratio / len(replay))
    return {target: total - per_replay * len(replay), **{code: per_replay for code in replay}}


def encode_documents(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Each document as ids: BOS (if the tokenizer has one) + text + EOS as the document separator."""
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


def build_mixture(docs_by_language: dict[str, list[list[int]]], budgets: dict[str, int], block_size: int,
                  seed: int) -> Mixture:
    """Sample each language to its budget, shuffle documents together and pack them into blocks."""
    rng = random.Random(seed)
    mixture = Mixture(blocks=[])
    tagged: list[list[int]] = []
    for code, budget in budgets.items():
        chosen, epochs = sample_documents(docs_by_language.get(code, []), budget, rng)
        tagged.extend(chosen)
        mixture.tokens[code] = sum(len(d) for d in chosen)
        mixture.documents[code] = len(chosen)
        mixture.epochs[code] = round(epochs, 3)
    rng.shuffle(tagged)
    stream = [token for doc in tagged for token in doc]
    mixture.blocks = [stream[i:i + block_size] for i in range(0, len(stream) - block_size + 1, block_size)]
    return mixture
