"""New vocabularies for a base tokenizer, in its own family: replace, extend or trim.

Every mode returns a :class:`VocabPlan`: the new ``tokenizer.json`` and, for each embedding row of the
new model, the base row it keeps (matched on byte sequences, see :mod:`.pieces`) or the piece whose row
must be initialized. New pieces are always ordinary BPE vocabulary entries with their merges, never
``added_tokens`` (which pre-split all text and change how existing words tokenize).

- **replace**: a vocabulary trained on the target corpus with a copy of the base pipeline (normalizer,
  pre-tokenizer, decoder, byte-level alphabet or byte fallback, digit splitting), plus every special and
  added token of the base.
- **extend**: BPE training *continued from the base segmentation*: words of the target corpus start as
  the base tokenizer's pieces and new merges join adjacent pieces, so every new token is reachable
  (appending independently trained merges leaves most of them unreachable). Pairs seen in protected
  text (English, replay languages) are never merged, so that text tokenizes exactly as before. When the base
  pre-tokenizer cuts combining marks off their letters (GPT-2/Llama-3 regexes: every Devanagari vowel sign a
  word of its own), the target script's marks are let back into their words first (:func:`join_marks`), which
  changes no id of text without them, nor of the protected text (checked).
- **trim**: only the base entries the given corpora use (with the intermediate pieces of the merge path
  the base takes to build them, the byte alphabet and the specials), renumbered densely; the corpora
  tokenize exactly as before. Frequent-word lists (:mod:`.wordlists`) extend that to a language's
  common words beyond the corpora; a row budget (``max_rows``) is filled with the pieces a frequency-weighted
  word list uses most.
"""

from __future__ import annotations

import heapq
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import regex
from tokenizers import Tokenizer, pre_tokenizers
from tokenizers.trainers import BpeTrainer

from ..text import char_script
from ..text.scripts import SCRIPT_ALIASES
from .pieces import byte_token, is_byte_level_spec, piece_bytes, vocabulary_keys


@dataclass
class VocabPlan:
    """A new vocabulary and where each row of the new embedding matrices comes from."""

    mode: str
    spec: dict[str, Any]
    sources: list[int | None]
    """Per new row: the base row it keeps, or None (initialized: a new piece, or padding)."""
    pieces: dict[int, str]
    """New rows to initialize from a piece, spelled in the family's alphabet (``Ġsardu``, ``▁sardu``)."""
    stats: dict[str, Any] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    """Added tokens of the base left out on purpose (reserved placeholders)."""

    @property
    def rows(self) -> int:
        return len(self.sources)

    def id_map(self) -> dict[int, int]:
        """Base id -> new id, for every kept row."""
        return {source: new for new, source in enumerate(self.sources) if source is not None}

    def pad_to_multiple(self, multiple: int | None) -> None:
        """Append uninitialized rows so the row count is a multiple of ``multiple`` (tensor-core friendly)."""
        if multiple and len(self.sources) % multiple:
            extra = multiple - len(self.sources) % multiple
            self.sources.extend([None] * extra)
            self.stats["padding_rows"] = extra


# ---------------------------------------------------------------------------------------- the base


def load_backend(model_dir: Path, hf_tokenizer: Any) -> dict[str, Any]:
    """The base tokenizer's pipeline as ``tokenizer.json`` data: the one the loaded tokenizer runs.

    That is the fast backend when there is one, not the file on disk: transformers rebuilds the pipeline of
    some classes (Llama, Gemma) from the vocabulary, so a file written by an older converter (``Prepend``
    normalizer) can tokenize differently from what the model is used with (`` the`` as ``▁ ▁the``).
    """
    path = Path(model_dir) / "tokenizer.json"
    backend = getattr(hf_tokenizer, "backend_tokenizer", None)
    if backend is not None:
        text = backend.to_str()
    elif path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        raise ValueError(f"{model_dir}: no tokenizer.json and the tokenizer has no fast backend; "
                         "convert it with transformers (AutoTokenizer.from_pretrained(..., use_fast=True))")
    spec = json.loads(text)
    spec["truncation"] = spec["padding"] = None  # call-time settings, not part of the vocabulary
    kind = spec.get("model", {}).get("type")
    if kind != "BPE":
        raise ValueError(f"{path}: the transplant needs a BPE tokenizer (byte-level or SentencePiece-style "
                         f"BPE); this one is {kind}")
    return spec


def _merge_pairs(merges: list[Any]) -> list[tuple[str, str]]:
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]


def _write_merges(model: dict[str, Any], pairs: Sequence[tuple[str, str]]) -> None:
    as_lists = not model["merges"] or isinstance(model["merges"][0], list)
    model["merges"] = [list(p) for p in pairs] if as_lists else [" ".join(p) for p in pairs]


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
    base = Tokenizer.from_str(json.dumps(spec)).pre_tokenizer  # e.g. Metaspace(split=False): spaces become ▁
    parts = [base] if base is not None else []
    parts.append(pre_tokenizers.Split("▁", behavior="merged_with_next"))
    if splits_digits(spec):
        parts.append(pre_tokenizers.Digits(individual_digits=True))
    return pre_tokenizers.Sequence(parts)


def base_model_tokenizer(base_spec: dict[str, Any]) -> Tokenizer:
    """The base BPE model alone (no normalizer or pre-tokenizer): it splits a piece, spelled in the
    model's own alphabet, into base pieces covering exactly the same bytes."""
    return Tokenizer.from_str(json.dumps(
        {"version": "1.0", "model": base_spec["model"], "added_tokens": [], "normalizer": None,
         "pre_tokenizer": None, "post_processor": None, "decoder": None, "truncation": None, "padding": None}))


def decompose(base: Tokenizer, piece: str) -> list[int]:
    """Ids the base BPE model gives a piece (byte-level and byte-fallback aware)."""
    return [token.id for token in base.model.tokenize(piece)]


def words(spec: dict[str, Any], texts: Iterable[str]) -> Counter[str]:
    """Pre-tokenized words of ``texts`` in the model's alphabet (``Ġsardu``, ``▁sardu``), with counts."""
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    pre = _training_pre_tokenizer(spec) or tokenizer.pre_tokenizer
    counts: Counter[str] = Counter()
    for text in texts:
        normalized = tokenizer.normalizer.normalize_str(text) if tokenizer.normalizer else text
        pieces = [p for p, _ in pre.pre_tokenize_str(normalized)] if pre is not None else [normalized]
        counts.update(p for p in pieces if p)
    return counts


# ---------------------------------------------------------------------------------------- replace


def train_like(spec: dict[str, Any], texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> dict:
    """Train a BPE vocabulary on ``texts`` with the base tokenizer's pipeline; returns its JSON spec."""
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    training_pre = _training_pre_tokenizer(spec)
    if training_pre is not None:
        tokenizer.pre_tokenizer = training_pre
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if is_byte_level_spec(spec) else [],
        special_tokens=[],
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return json.loads(tokenizer.to_str())


def replace_vocab(spec: dict[str, Any], texts: Sequence[str], vocab_size: int, min_frequency: int = 2, *,
                  keep: Sequence[str] = (), fresh: bool = False, drop: Iterable[str] = (),
                  protect: Sequence[str] = (), join_scripts: Sequence[str] = ()) -> VocabPlan:
    """A vocabulary of about ``vocab_size`` entries for ``texts`` (plus the base pieces ``keep`` needs), with
    every special token.

    By default it is grown from the base: the base pieces ``texts`` use plus merges continued on top of
    them (:func:`extend_vocab`), then everything the corpora no longer use is dropped (:func:`trim_vocab`),
    so most rows are trained base rows. When the target already uses ``vocab_size`` base entries or more
    (large multilingual bases), nothing is added: the result is the trimmed base. ``fresh=True`` trains a
    BPE vocabulary from characters instead. Added tokens in ``drop`` are left out; ``protect`` text (e.g. the
    chat template's) keeps its base segmentation (grown vocabularies only); ``join_scripts``: see
    :func:`extend_vocab`.
    """
    dropped = sorted({t["content"] for t in spec.get("added_tokens", [])} & set(drop))
    if dropped:
        spec = _without_added(spec, set(dropped))
    if not fresh:
        used = trim_vocab(spec, texts).rows  # base entries the target needs; keep's pieces come on top
        first_id = max([*spec["model"]["vocab"].values(), *(t["id"] for t in spec.get("added_tokens", []))]) + 1
        grown = extend_vocab(spec, texts, max_new_tokens=max(vocab_size - used, 0), first_id=first_id,
                             min_frequency=min_frequency, protect=protect, join_scripts=join_scripts)
        plan = compose(grown, trim_vocab(grown.spec, [*texts, *keep]))
        plan.mode = "replace"
    else:
        plan = _fresh_vocab(spec, texts, vocab_size, min_frequency)
    plan.dropped = dropped
    plan.stats["reserved_dropped"] = len(dropped)
    return plan


def _without_added(spec: dict[str, Any], drop: set[str]) -> dict[str, Any]:
    """``spec`` without the added tokens in ``drop`` (nor their vocabulary entries)."""
    new = dict(spec, added_tokens=[t for t in spec.get("added_tokens", []) if t["content"] not in drop])
    new["model"] = dict(spec["model"], vocab={p: i for p, i in spec["model"]["vocab"].items() if p not in drop})
    return new


def compose(first: VocabPlan, second: VocabPlan) -> VocabPlan:
    """The plan of applying ``second`` (planned on ``first``'s vocabulary) after ``first``."""
    sources = [first.sources[s] if s is not None and s < len(first.sources) else None for s in second.sources]
    pieces = {new: first.pieces[s] for new, s in enumerate(second.sources) if s is not None and s in first.pieces}
    pieces.update(second.pieces)
    stats = {**first.stats, **second.stats, "kept_rows": sum(s is not None for s in sources), "new_rows": len(pieces)}
    return VocabPlan(second.mode, second.spec, sources, pieces, stats)


def _fresh_vocab(spec: dict[str, Any], texts: Sequence[str], vocab_size: int, min_frequency: int) -> VocabPlan:
    trained = train_like(spec, texts, vocab_size, min_frequency)
    split_digits, word_start_only = splits_digits(spec), needs_word_splitting(spec)
    new = json.loads(json.dumps(spec))
    model = new["model"]
    vocab: dict[str, int] = {}
    for token in sorted(spec.get("added_tokens", []), key=lambda t: t["id"]):
        vocab.setdefault(token["content"], len(vocab))
    if spec["model"].get("byte_fallback"):
        for byte in range(256):
            vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    unk = spec["model"].get("unk_token")
    if unk:
        vocab.setdefault(unk, len(vocab))
    for piece in sorted(trained["model"]["vocab"], key=trained["model"]["vocab"].get):
        vocab.setdefault(piece, len(vocab))
    pairs = []
    for left, right in _merge_pairs(trained["model"]["merges"]):
        piece = left + right
        if (split_digits and re.search(r"\d\d", piece)) or (word_start_only and "▁" in piece[1:]):
            continue
        if left in vocab and right in vocab and piece in vocab:
            pairs.append((left, right))
    model["vocab"] = vocab
    _write_merges(model, pairs)
    _renumber_added_tokens(new, vocab)
    return _plan_by_keys("replace", spec, new, stats={"trained_vocab": len(trained["model"]["vocab"]), "fresh": True})


def _plan_by_keys(mode: str, base: dict[str, Any], new: dict[str, Any], stats: dict[str, Any]) -> VocabPlan:
    """Sources for every new id whose byte sequence (or special content) the base vocabulary has."""
    base_keys = vocabulary_keys(base)
    new_keys = vocabulary_keys(new)
    rows = max(new_keys.values()) + 1
    sources: list[int | None] = [None] * rows
    pieces: dict[int, str] = {}
    by_id = {token_id: piece for piece, token_id in new["model"]["vocab"].items()}
    for key, token_id in new_keys.items():
        sources[token_id] = base_keys.get(key)
        if sources[token_id] is None:
            pieces[token_id] = by_id.get(token_id, key[1] if isinstance(key[1], str) else "")
    stats = {**stats, "kept_rows": sum(s is not None for s in sources), "new_rows": len(pieces)}
    return VocabPlan(mode, new, sources, pieces, stats)


def _renumber_added_tokens(spec: dict[str, Any], vocab: dict[str, int]) -> None:
    """Point added tokens and the post-processor's special tokens at their ids in ``vocab``."""
    for token in spec.get("added_tokens", []):
        token["id"] = vocab[token["content"]]

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            specials = node.get("special_tokens")
            if isinstance(specials, dict):
                for entry in specials.values():
                    if isinstance(entry, dict) and "tokens" in entry:
                        entry["ids"] = [vocab[t] for t in entry["tokens"]]
            for key, value in node.items():
                if key == "special_tokens":
                    continue
                if key in ("sep", "cls") and isinstance(value, list) and len(value) == 2:
                    node[key] = [value[0], vocab[value[0]]]  # RobertaProcessing / BertProcessing
                else:
                    visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(spec.get("post_processor"))


# ---------------------------------------------------------------------------------------- marks

GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
r"""The split ``ByteLevel(use_regex=True)`` runs (GPT-2's): ``\p{L}+`` leaves combining marks out of words."""
JOINERS = "\u200c\u200d"
"""Zero-width non-joiner and joiner (category Cf): inside Indic and Arabic-script words, kept with them too."""


def text_scripts(texts: Iterable[str], share: float = 0.1, sample: int = 2000) -> list[str]:
    """Unicode scripts (ISO 15924) of at least ``share`` of the letters of ``texts`` (the first ``sample``)."""
    counts: Counter[str] = Counter()
    for text in list(texts)[:sample]:
        counts.update(script for script in map(char_script, text) if script is not None)
    total = sum(counts.values())
    return sorted(code for code, n in counts.items() if n >= share * total) if total else []


def join_marks(spec: dict[str, Any], scripts: Sequence[str]) -> dict[str, Any] | None:
    r"""A copy of ``spec`` whose pre-tokenizer keeps the combining marks of ``scripts`` (and inherited marks,
    ZWJ/ZWNJ) in the word of the letter they follow; ``None`` when its pre-tokenizer does not split words
    with a ``\p{L}+`` regex (SentencePiece-style pipelines keep marks in words already).

    GPT-2-style splits (``ByteLevel(use_regex=True)``, Llama-3's ``Split``) make every vowel sign a word of its
    own (``हिन्दी`` -> ``ह ि न ् द ी``), so no piece can span a syllable. Only ``\p{L}+`` becomes
    ``[\p{L}<marks>]+``: text without those marks is split exactly as before.
    """
    codes = [code for script in scripts for code in sorted(_unicode_scripts(script))]
    if not codes:
        return None
    own = "".join(f"\\p{{{code}}}" for code in codes)
    # a letter or a mark of the scripts; an inherited mark (Arabic harakat, Latin combining accents) or ZWJ/ZWNJ
    # only right after one of their characters (or another inherited one), so other scripts' words stay as they were
    letters = (f"(?:[\\p{{L}}[\\p{{M}}&&[{own}]]]|(?<=[{own}\\p{{Zinh}}])[[\\p{{M}}&&\\p{{Zinh}}]{JOINERS}])+")
    changed = False

    def rewrite(node: Any) -> Any:
        nonlocal changed
        if not isinstance(node, dict):
            return node
        kind = node.get("type")
        if kind == "Sequence":
            return dict(node, pretokenizers=[rewrite(n) for n in node.get("pretokenizers", [])])
        if kind == "ByteLevel" and node.get("use_regex", True):
            changed = True
            split = {"type": "Split", "pattern": {"Regex": GPT2_PATTERN.replace("\\p{L}+", letters)},
                     "behavior": "Isolated", "invert": False}
            return {"type": "Sequence", "pretokenizers": [split, dict(node, use_regex=False)]}
        pattern = node.get("pattern", {}).get("Regex") if kind == "Split" else None
        if pattern and "\\p{L}+" in pattern:
            changed = True
            return dict(node, pattern={"Regex": pattern.replace("\\p{L}+", letters)})
        return node

    new = json.loads(json.dumps(spec))
    new["pre_tokenizer"] = rewrite(new.get("pre_tokenizer"))
    return new if changed else None


def _unicode_scripts(script: str) -> frozenset[str]:
    return SCRIPT_ALIASES.get(script, frozenset({script}))


def same_ids(first: dict[str, Any], second: dict[str, Any], texts: Sequence[str]) -> bool:
    """True if both pipelines give every text the same ids."""
    a, b = Tokenizer.from_str(json.dumps(first)), Tokenizer.from_str(json.dumps(second))
    for start in range(0, len(texts), 2048):
        batch = list(texts[start:start + 2048])
        left = a.encode_batch(batch, add_special_tokens=False)
        right = b.encode_batch(batch, add_special_tokens=False)
        if any(x.ids != y.ids for x, y in zip(left, right, strict=True)):
            return False
    return True


# ---------------------------------------------------------------------------------------- extend


def extend_vocab(spec: dict[str, Any], texts: Sequence[str], *, max_new_tokens: int, first_id: int,
                 min_frequency: int = 2, protect: Sequence[str] = (),
                 join_scripts: Sequence[str] = ()) -> VocabPlan:
    """The base vocabulary plus up to ``max_new_tokens`` pieces learned by continuing BPE on ``texts``.

    Words start as their base segmentation; new merges join adjacent base (or new) pieces, so each new
    piece is produced on the text it was learned from. Pairs that occur in the ``protect`` texts are
    never merged: those texts tokenize exactly as with the base.

    ``join_scripts``: scripts whose combining marks stay in their letter's word (:func:`join_marks`), so new
    pieces can span syllables. The new pre-tokenizer is kept only if every ``protect`` text still gets the
    base's ids with it (stats ``join_marks``): marks change words only in text that has them, and the base's
    own merges never span a letter and a mark they never saw in one word (checked, not assumed).
    """
    joined = join_marks(spec, join_scripts) if join_scripts else None
    join_state = "off" if not join_scripts else "not needed" if joined is None else "on"
    if joined is not None and protect and not same_ids(spec, joined, protect):
        joined, join_state = None, "off: it would change protected text"
    if joined is not None:
        spec = joined
    new = json.loads(json.dumps(spec))
    model = new["model"]
    vocab: dict[str, int] = model["vocab"]
    base = base_model_tokenizer(spec)
    target_words = words(spec, texts)
    protected_chars = {c for text in protect for c in text}  # a new character would re-segment protected text
    new_chars = [c for c in _new_characters(base, target_words, min_frequency, max_new_tokens)
                 if c not in protected_chars] if spec["model"].get("byte_fallback") else []
    known = set(new_chars)
    units = [_segment(base, word, known) for word in target_words]
    protected = _protected(base, spec, protect, known)
    allowed = _merge_rule(spec, set(vocab), protected)
    merges = continue_bpe(units, list(target_words.values()), budget=max_new_tokens - len(new_chars),
                          min_frequency=min_frequency, allowed=allowed)
    added: dict[int, str] = {}
    for piece in new_chars + [a + b for a, b in merges]:
        if piece not in vocab:
            vocab[piece] = first_id + len(added)
            added[vocab[piece]] = piece
    _write_merges(model, _merge_pairs(model["merges"]) + merges)
    rows = first_id + len(added)
    sources: list[int | None] = [i if i < first_id else None for i in range(rows)]
    stats = {"new_characters": len(new_chars), "new_merges": len(merges), "protected_pairs": len(protected),
             "join_marks": join_state, "join_scripts": list(join_scripts)}
    return VocabPlan("extend", new, sources, added, {**stats, "kept_rows": first_id, "new_rows": len(added)})


def protection_cost(spec: dict[str, Any], texts: Sequence[str], protect: Sequence[str], *,
                    join_scripts: Sequence[str] = ()) -> float:
    """Share of the target's adjacent-piece pairs (occurrences, in the words :func:`extend_vocab` would train
    on) that protecting ``protect`` would forbid merging: near 1 when ``protect`` is a language in the target's
    script with most of its syllables (Hindi for a Devanagari target), so protecting it leaves nothing to add."""
    joined = join_marks(spec, join_scripts) if join_scripts else None
    if joined is not None and not same_ids(spec, joined, protect):
        joined = None
    spec = joined or spec
    base = base_model_tokenizer(spec)
    forbidden = _protected(base, spec, protect, set())
    total = blocked = 0
    for word, count in words(spec, texts).items():
        for pair in pairwise(_segment(base, word, set())):
            total += count
            blocked += count * (pair in forbidden)
    return blocked / total if total else 0.0


def _new_characters(base: Tokenizer, target_words: Counter[str], min_frequency: int, budget: int) -> list[str]:
    """Characters the base reaches only through byte fallback, frequent enough to get their own piece."""
    counts: Counter[str] = Counter()
    for word, count in target_words.items():
        for char in word:
            counts[char] += count
    unknown = {c for c in counts if any(byte_token(t.value) is not None for t in base.model.tokenize(c))}
    counts = Counter({c: n for c, n in counts.items() if c in unknown})
    chosen = [c for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_frequency]
    return chosen[:budget]


def _segment(base: Tokenizer, word: str, new_chars: set[str]) -> list[str]:
    """The base pieces of ``word``; characters in ``new_chars`` become one unit instead of their bytes."""
    if not new_chars or not any(c in new_chars for c in word):
        return [t.value for t in base.model.tokenize(word)]
    units: list[str] = []
    run = ""
    for char in word + "\0":
        if char in new_chars or char == "\0":
            if run:
                units.extend(t.value for t in base.model.tokenize(run))
                run = ""
            if char != "\0":
                units.append(char)
        else:
            run += char
    return units


def _protected(base: Tokenizer, spec: dict[str, Any], texts: Sequence[str], new_chars: set[str]) -> set:
    """Adjacent piece pairs (and, for ``ignore_merges`` tokenizers, whole words) of protected text."""
    protected: set = set()
    ignore_merges = bool(spec["model"].get("ignore_merges"))
    for word in words(spec, texts):
        units = _segment(base, word, new_chars)
        protected.update(pairwise(units))
        if ignore_merges:
            protected.add(word)
    return protected


def _merge_rule(spec: dict[str, Any], base_vocab: set[str], protected: set) -> Callable[[str, str], bool]:
    split_digits, word_start_only = splits_digits(spec), needs_word_splitting(spec)

    def allowed(left: str, right: str) -> bool:
        piece = left + right
        if piece in base_vocab or (left, right) in protected or piece in protected:
            return False
        if byte_token(left) is not None or byte_token(right) is not None:
            return False  # byte-fallback units are not pieces the BPE model can merge
        if split_digits and re.search(r"\d\d", piece):
            return False
        return not (word_start_only and "▁" in piece[1:])

    return allowed


def continue_bpe(units: list[list[str]], counts: Sequence[int], *, budget: int, min_frequency: int,
                 allowed: Callable[[str, str], bool]) -> list[tuple[str, str]]:
    """Greedy BPE merges over words given as unit sequences (modified in place), most frequent pair first.

    Ties break on the pair itself, so the result is deterministic. Stops at ``budget`` merges or when
    no allowed pair occurs ``min_frequency`` times.
    """
    pair_counts: dict[tuple[str, str], int] = defaultdict(int)
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for index, seq in enumerate(units):
        for pair in pairwise(seq):
            pair_counts[pair] += counts[index]
            where[pair].add(index)
    verdict: dict[tuple[str, str], bool] = {}

    def ok(pair: tuple[str, str]) -> bool:
        if pair not in verdict:
            verdict[pair] = allowed(*pair)
        return verdict[pair]

    heap = [(-n, pair) for pair, n in pair_counts.items() if n >= min_frequency and ok(pair)]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while heap and len(merges) < budget:
        negative, pair = heapq.heappop(heap)
        current = pair_counts.get(pair, 0)
        if current != -negative:
            if current >= min_frequency:
                heapq.heappush(heap, (-current, pair))
            continue
        merges.append(pair)
        for index in list(where.pop(pair, ())):
            _merge_word(units, index, pair, counts[index], pair_counts, where, heap, ok, min_frequency)
        pair_counts.pop(pair, None)
    return merges


def _merge_word(units: list[list[str]], index: int, pair: tuple[str, str], count: int,
                pair_counts: dict, where: dict, heap: list, ok: Callable, min_frequency: int) -> None:
    seq = units[index]
    old_pairs = list(pairwise(seq))
    merged: list[str] = []
    i = 0
    while i < len(seq):
        if i + 1 < len(seq) and (seq[i], seq[i + 1]) == pair:
            merged.append(seq[i] + seq[i + 1])
            i += 2
        else:
            merged.append(seq[i])
            i += 1
    units[index] = merged
    for p in old_pairs:
        pair_counts[p] -= count
    for p in set(old_pairs):
        if p != pair:
            where[p].discard(index)
    new_pairs = list(pairwise(merged))
    for p in new_pairs:
        pair_counts[p] += count
        where[p].add(index)
    for p in set(new_pairs) - set(old_pairs):
        if pair_counts[p] >= min_frequency and ok(p):
            heapq.heappush(heap, (-pair_counts[p], p))


# ---------------------------------------------------------------------------------------- trim


def trim_vocab(spec: dict[str, Any], texts: Iterable[str], *, keep_pieces: Iterable[str] = (),
               drop: Iterable[str] = (), fill: Mapping[str, float] | None = None,
               max_rows: int | None = None) -> VocabPlan:
    """The base entries ``texts`` use (and ``keep_pieces``), the pieces on the merge path that builds them
    (:meth:`MergePaths.closure`), the byte alphabet (or byte-fallback tokens) and every special/added token
    except those in ``drop`` (see :func:`reserved_placeholders`), renumbered in base order.

    ``texts`` tokenize exactly as with the base; other text may take more pieces. With ``max_rows``, the
    vocabulary is then filled up to that many rows with the base pieces ``fill`` uses most (text -> weight,
    e.g. word forms weighted by frequency: :func:`~.wordlists.word_weights`), see :func:`fill_by_weight`;
    when ``texts`` alone need more rows than ``max_rows``, they are all kept (stats ``over_budget``).
    """
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    vocab: dict[str, int] = spec["model"]["vocab"]
    dropped = {t["content"] for t in spec.get("added_tokens", [])} & set(drop)
    pieces_of = {token_id: piece for piece, token_id in vocab.items() if piece not in dropped}
    used: set[str] = set(keep_pieces)
    batch: list[str] = []
    for text in [*texts, None]:
        if text is not None:
            batch.append(text)
        if batch and (text is None or len(batch) >= 2048):
            for encoding in tokenizer.encode_batch(batch, add_special_tokens=False):
                used.update(pieces_of[i] for i in encoding.ids if i in pieces_of)
            batch = []
    used.update(t["content"] for t in spec.get("added_tokens", []) if t["content"] in vocab)
    used.update(_alphabet(spec))
    paths = MergePaths(spec)
    keep = paths.closure(p for p in used if p in vocab) - dropped
    floor = len(keep)
    extra_rows = sum(1 for t in spec.get("added_tokens", [])
                     if t["content"] not in vocab and t["content"] not in dropped)
    if max_rows is not None:  # added tokens outside the model vocabulary take rows too
        keep = fill_by_weight(spec, keep, fill or {}, max_rows - extra_rows, paths, tokenizer) - dropped
    kept = sorted(keep, key=vocab.get)
    new = json.loads(json.dumps(spec))
    new["added_tokens"] = [t for t in new.get("added_tokens", []) if t["content"] not in dropped]
    new_vocab = {piece: index for index, piece in enumerate(kept)}
    for token in sorted(new.get("added_tokens", []), key=lambda t: t["id"]):
        new_vocab.setdefault(token["content"], len(new_vocab))  # added tokens outside the model vocab
    new["model"]["vocab"] = new_vocab
    _write_merges(new["model"], [(a, b) for a, b in _merge_pairs(spec["model"]["merges"])
                                 if a + b in keep and a in keep and b in keep])
    _renumber_added_tokens(new, new_vocab)
    base_ids = {**vocab, **{t["content"]: t["id"] for t in spec.get("added_tokens", [])}}
    sources: list[int | None] = [base_ids[piece] for piece in sorted(new_vocab, key=new_vocab.get)]
    stats = {"kept_rows": len(sources), "new_rows": 0, "base_entries": len(vocab),
             "used_by_corpora": len((used - dropped) & set(vocab)), "reserved_dropped": len(dropped)}
    if max_rows is not None:
        stats.update(max_rows=max_rows, filled_rows=len(keep) - floor, over_budget=floor + extra_rows > max_rows)
    return VocabPlan("trim", new, sources, {}, stats, dropped=sorted(dropped))


def row_budget(rows: float | None, base_rows: int) -> int | None:
    """A trim row budget as a count: ``rows`` <= 1 is a share of ``base_rows``, above 1 a number of rows."""
    if rows is None:
        return None
    if rows <= 0:
        raise ValueError(f"a trim row budget must be positive (got {rows})")
    return max(1, round(rows * base_rows)) if rows <= 1 else int(rows)


FILL_SYMBOLS = regex.compile(r"[\p{P}\p{S}\p{N}\p{Zs}]")
"""Single characters a row budget keeps first (below U+3000): punctuation, symbols, digits and spaces no word
list contains, whose loss would send ``[`` or ``%`` to byte fallback."""


def fill_by_weight(spec: dict[str, Any], keep: set[str], fill: Mapping[str, float], max_pieces: int,
                   paths: MergePaths | None = None, tokenizer: Tokenizer | None = None) -> set[str]:
    """``keep`` grown to at most ``max_pieces`` base entries: first the single-character punctuation, symbols
    and digits (:data:`FILL_SYMBOLS`), then the pieces with the largest usage mass, where a piece's mass is
    the summed weight of the ``fill`` texts whose base tokenization contains it (once per occurrence). Each
    piece comes with its merge path (:class:`MergePaths`); a piece whose path would pass the budget is skipped.

    Pieces rather than whole words: a subword shared by many rare words (``paul`` in *tarpaulin*,
    *Pauline*...) counts for all of them, so held-out text needs fewer pieces than with the whole
    most-frequent words at the same number of rows (tested on SmolLM2).
    """
    paths = paths or MergePaths(spec)
    vocab: dict[str, int] = spec["model"]["vocab"]
    keep = set(keep)
    mass: Counter = Counter()
    tokenizer = tokenizer or Tokenizer.from_str(json.dumps(spec))  # the base's own segmentation
    texts, weights = list(fill), list(fill.values())
    for start in range(0, len(texts), 8192):
        encodings = tokenizer.encode_batch(texts[start:start + 8192], add_special_tokens=False)
        for encoding, weight in zip(encodings, weights[start:start + 8192], strict=True):
            for piece in encoding.tokens:
                mass[piece] += weight
    symbols = [p for p in vocab if len(p) == 1 and ord(p) < 0x3000 and FILL_SYMBOLS.fullmatch(p)]
    order = [*sorted(symbols, key=vocab.get), *(piece for piece, _ in mass.most_common() if piece in vocab)]
    for piece in order:
        if len(keep) >= max_pieces:
            break
        if piece not in keep:
            path = paths.closure([piece]) - keep
            if len(keep) + len(path) <= max_pieces:
                keep |= path
    return keep


RESERVED_PLACEHOLDER = re.compile(r"<unused\d+>|\[unused\d+\]|<\|reserved_special_token_\d+\|>|<\|reserved_\d+\|>")
"""Names of added tokens that only hold a place for later use: Gemma ``<unused12>``, BERT ``[unused5]``,
Llama-3 ``<|reserved_special_token_3|>``."""


def reserved_placeholders(spec: dict[str, Any], needed: str = "") -> set[str]:
    """The base's reserved placeholder tokens (:data:`RESERVED_PLACEHOLDER`): rows no text produces and no
    role uses, which trim and replace can drop (Gemma-3: 6,242 rows). Those named in ``needed`` (e.g. a chat
    template that gave one a role) are not listed.
    """
    return {t["content"] for t in spec.get("added_tokens", [])
            if RESERVED_PLACEHOLDER.fullmatch(t["content"]) and t["content"] not in needed}


class MergePaths:
    """The merge paths of a BPE vocabulary (the merge ranks are indexed once, for many lookups)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.vocab: dict[str, int] = spec["model"]["vocab"]
        self.ranks = {pair: rank for rank, pair in reversed(list(enumerate(_merge_pairs(spec["model"]["merges"]))))}
        self.atomic = {t["content"] for t in spec.get("added_tokens", [])}  # specials are never built by merges

    def closure(self, pieces: Iterable[str]) -> set[str]:
        """``pieces`` plus every intermediate piece the base BPE forms on its way to each of them.

        A piece that ends up a token inside a word was built by the same merges, in the same order, as when the
        piece is tokenized alone, so this path is what the trimmed tokenizer needs. SentencePiece conversions
        list several merges with the same result (Gemma: 515k merges for 262k entries); only the path the
        lowest-ranked merges take counts, not whichever pair happens to spell the piece.
        """
        keep: set[str] = set()
        for piece in pieces:
            if piece in keep:
                continue
            keep.add(piece)
            if piece in self.atomic or byte_token(piece) is not None:
                continue
            units = list(piece)
            keep.update(u for u in units if u in self.vocab)
            while len(units) > 1:
                _, at = min(((self.ranks[pair], i) for i, pair in enumerate(pairwise(units)) if pair in self.ranks),
                            default=(None, None))
                if at is None:
                    break
                units[at:at + 2] = [units[at] + units[at + 1]]
                keep.add(units[at])
        return keep


def _alphabet(spec: dict[str, Any]) -> set[str]:
    """Entries that keep every text encodable: the 256 byte-level characters or byte-fallback tokens, unk."""
    vocab = spec["model"]["vocab"]
    keep = {p for p in vocab if byte_token(p) is not None}
    if is_byte_level_spec(spec):
        keep |= {p for p in vocab if len(piece_bytes(p, True)) == 1 and len(p) == 1}
    if spec["model"].get("unk_token"):
        keep.add(spec["model"]["unk_token"])
    return keep
