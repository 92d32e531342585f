"""The seed model: multinomial naive Bayes over character 1-4-grams, trained from seed texts, with a numpy hash
index of its n-grams."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse

from ...errors import DataError
from .base import Prediction, codepoints
from .ngrams import (
    MAX_ALPHABET,
    SLOT_BITS,
    dense_ngrams,
    lookup_table,
    ngram_keys,
    normalize_for_ngrams,
    packed_ngrams,
    train_alphabet,
)

_CALIBRATION_GRID = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0)
_DIRECT_TABLE_MAX = 1 << 20  # entries of a table of every possible n-gram of an alphabet (8 MB)


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
        self._table = lookup_table(self.alphabet)
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
        alphabet = train_alphabet(usable.values())
        table = lookup_table(alphabet)
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
            ids = table[codepoints("\x00".join(texts[code]))]  # \x00 (id 0) separates lines
            per_language.append(np.unique(ngram_keys(ids, orders)[0], return_counts=True))
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
        keys, total = ngram_keys(self._table[codepoints(norm)], self.orders)
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
        ids = self._table[codepoints("\x00".join(norms))].astype(np.uint64)  # \x00 (id 0): no n-gram across
        owner = np.repeat(np.arange(len(norms)), lengths + 1)[: len(ids)]
        found, owners = [], []
        for n in self.orders:
            m = len(ids) - n + 1
            if m <= 0:
                continue
            direct = self._direct_table(n)
            if direct is not None:  # a table of every possible n-gram: one lookup, no hashing
                index, valid = dense_ngrams(ids, n, m, len(self.alphabet) + 1)
                found.append(direct[index[valid]])
            else:
                key, valid = packed_ngrams(ids, n, m)
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
        """Position of each known ``n``-gram in :attr:`keys` by its dense index (:func:`dense_ngrams`; -1: not
        known), if the alphabet is small enough for a table of every possible ``n``-gram (built when first used)."""
        tables = self._direct
        if n not in tables:
            size = (len(self.alphabet) + 1) ** n
            tables[n] = None
            if size <= _DIRECT_TABLE_MAX:
                slots = (self.keys[:, None] >> (np.uint64(SLOT_BITS) * np.arange(3, -1, -1, dtype=np.uint64))) \
                    & np.uint64(MAX_ALPHABET)
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
