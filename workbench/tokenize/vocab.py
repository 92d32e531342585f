"""Train a target vocabulary in the base tokenizer's own family and extend the base with it.

The new tokenizer is trained on a copy of the base pipeline (same normalizer, pre-tokenizer,
decoder, byte-level alphabet or byte fallback), so its pieces are spelled exactly like the base's.
Extension appends the new pieces to the BPE model's vocabulary together with the merges that build
them: they are ordinary vocabulary entries, never ``added_tokens`` (which pre-split all text).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, pre_tokenizers
from tokenizers.trainers import BpeTrainer


@dataclass
class Extension:
    """Result of extending a BPE tokenizer: the new tokenizer JSON and the added (id, piece) pairs."""

    tokenizer_json: dict[str, Any]
    added: list[tuple[int, str]]


def load_backend(model_dir: Path, hf_tokenizer: Any) -> dict[str, Any]:
    """The base tokenizer's ``tokenizer.json`` (from disk when present, else from the loaded tokenizer)."""
    path = Path(model_dir) / "tokenizer.json"
    text = path.read_text(encoding="utf-8") if path.is_file() else hf_tokenizer.backend_tokenizer.to_str()
    spec = json.loads(text)
    if spec.get("model", {}).get("type") != "BPE":
        raise ValueError(f"{path}: only BPE tokenizers can be extended (found {spec['model'].get('type')})")
    return spec


def _merge_pairs(merges: list[Any]) -> list[tuple[str, str]]:
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]


def splits_digits(spec: dict[str, Any]) -> bool:
    """True when the base tokenizer cuts numbers into single digits (then new pieces must too)."""
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    tokens = tokenizer.encode("1234567 2024 89", add_special_tokens=False).tokens
    return all(len(re.findall(r"\d", t)) <= 1 for t in tokens)


def needs_word_splitting(spec: dict[str, Any]) -> bool:
    """True for SentencePiece-style pipelines whose pre-tokenizer leaves several ``▁``-words together.

    Their vocabularies only hold pieces that start a word with ``▁``; trained on whole sentences,
    BPE would learn pieces spanning words (``"e▁s"``) that the base never has.
    """
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    text = tokenizer.normalizer.normalize_str("a b c") if tokenizer.normalizer else "a b c"
    pieces = [p for p, _ in tokenizer.pre_tokenizer.pre_tokenize_str(text)] if tokenizer.pre_tokenizer else [text]
    return any("▁" in piece[1:] for piece in pieces)


def _training_pre_tokenizer(spec: dict[str, Any]) -> Any | None:
    """A pre-tokenizer used for training only, when the base pipeline does not split words itself."""
    if not needs_word_splitting(spec):
        return None
    parts = [pre_tokenizers.Split("▁", behavior="merged_with_next")]
    if splits_digits(spec):
        parts.append(pre_tokenizers.Digits(individual_digits=True))
    return pre_tokenizers.Sequence(parts)


def train_like(spec: dict[str, Any], texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> dict:
    """Train a BPE vocabulary on ``texts`` with the base tokenizer's pipeline; returns its JSON spec."""
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    training_pre = _training_pre_tokenizer(spec)
    if training_pre is not None:
        tokenizer.pre_tokenizer = training_pre
    byte_level = "ByteLevel" in json.dumps(spec.get("pre_tokenizer"))
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if byte_level else [],
        special_tokens=[],
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    trained = json.loads(tokenizer.to_str())
    return trained


def extend(spec: dict[str, Any], trained: dict[str, Any], *, first_id: int,
           max_new_tokens: int | None = None) -> Extension:
    """Append the trained vocabulary's new pieces (and the merges building them) to the base BPE."""
    spec = json.loads(json.dumps(spec))  # deep copy
    model = spec["model"]
    vocab: dict[str, int] = model["vocab"]
    pairs = _merge_pairs(model["merges"])
    as_lists = bool(model["merges"]) and isinstance(model["merges"][0], list)
    added: list[tuple[int, str]] = []
    next_id = first_id

    def add(piece: str) -> None:
        nonlocal next_id
        vocab[piece] = next_id
        added.append((next_id, piece))
        next_id += 1

    budget = max_new_tokens if max_new_tokens is not None else float("inf")
    if model.get("byte_fallback"):  # characters the base only reached through byte fallback
        for piece in trained["model"]["vocab"]:
            if len(piece) == 1 and piece not in vocab and len(added) < budget:
                add(piece)
    split_digits = splits_digits(spec)  # keep numbers segmented the way the base does
    word_start_only = needs_word_splitting(spec)  # "▁" may only start a piece
    for left, right in _merge_pairs(trained["model"]["merges"]):
        if len(added) >= budget:
            break
        piece = left + right
        if piece in vocab or left not in vocab or right not in vocab:
            continue
        if (split_digits and re.search(r"\d\d", piece)) or (word_start_only and "▁" in piece[1:]):
            continue
        add(piece)
        pairs.append((left, right))
    model["merges"] = [list(p) for p in pairs] if as_lists else [" ".join(p) for p in pairs]
    return Extension(spec, added)


def base_model_tokenizer(base_spec: dict[str, Any]) -> Tokenizer:
    """The base BPE model alone (no normalizer or pre-tokenizer): it splits a piece, spelled in the
    model's own alphabet, into base pieces covering exactly the same bytes."""
    return Tokenizer.from_str(json.dumps(
        {"version": "1.0", "model": base_spec["model"], "added_tokens": [], "normalizer": None,
         "pre_tokenizer": None, "post_processor": None, "decoder": None, "truncation": None, "padding": None}))


def decompose(base: Tokenizer, piece: str) -> list[int]:
    """Ids the base BPE model gives a piece (byte-level and byte-fallback aware)."""
    return [token.id for token in base.model.tokenize(piece)]
