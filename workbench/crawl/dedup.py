"""Exact deduplication by a hash of normalised text."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence

import numpy as np
import regex

from ..text import is_collapsed, nfkc

_WORD_CHAR = r"\p{L}\p{M}\p{N}_"  # letters with their combining marks, digits, underscore
_PUNCTUATION = regex.compile(rf"[^{_WORD_CHAR}\s]")
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier (golden ratio) for combining word hashes


def normalize_for_dedup(text: str, ignore_punctuation: bool = False) -> str:
    """NFKC, casefolded, whitespace collapsed (and punctuation removed if asked)."""
    text = nfkc(text).casefold()
    if ignore_punctuation:
        text = _PUNCTUATION.sub(" ", text)
    else:  # the usual case, a crawled span (lines of single spaces, joined by line breaks): no word split out
        lines_joined = text.replace("\n\n", "\n").replace("\n", " ")
        if is_collapsed(lines_joined):
            return lines_joined
    return " ".join(text.split())  # the same as collapsing \s+ (both use str.isspace), in C


_SIGNATURE_ROWS = 4096  # shingles per block of the MinHash product (4096 x 128 permutations: 2 MB)
_MAX_HASH32 = np.uint32(0xFFFFFFFF)
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))


def _fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser (as datasketch applies it before its ``affine32`` permutations)."""
    s1, m1, s2, m2, s3 = _FMIX32
    with np.errstate(over="ignore"):
        values = values ^ (values >> s1)
        values = values * m1
        values = values ^ (values >> s2)
        values = values * m2
        return values ^ (values >> s3)


_BASE = np.uint64(0x100000001B3)  # odd (the FNV prime): invertible modulo 2**64
_BASE_INVERSE = np.uint64(pow(int(_BASE), -1, 2**64))
_POWERS: dict[str, np.ndarray] = {}


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``_BASE**i`` and ``_BASE_INVERSE**i`` modulo 2**64 for i < n (cached, grown by doubling)."""
    if len(_POWERS.get("up", ())) < n:
        size = max(n, 2 * len(_POWERS.get("up", ())), 4096)
        with np.errstate(over="ignore"):
            for name, base in (("up", _BASE), ("down", _BASE_INVERSE)):
                values = np.full(size, base, dtype=np.uint64)
                values[0] = 1
                _POWERS[name] = np.cumprod(values, dtype=np.uint64)
    return _POWERS["up"][:n], _POWERS["down"][:n]


_WORD_CHARS: np.ndarray | None = None  # code point (BMP) -> True if it is a word character (``_WORD_CHAR``)


def _is_word_char(codes: np.ndarray) -> np.ndarray:
    """True where a code point is a word character (a letter, combining mark, digit or underscore: what
    ``_PUNCTUATION`` keeps besides spaces); the table covers the Basic Multilingual Plane, other code points are
    tested one by one."""
    global _WORD_CHARS
    if _WORD_CHARS is None:
        chars = "".join(map(chr, range(1, 0x10000)))
        marked = regex.sub(rf"[^{_WORD_CHAR}]", "\x00", chars).encode("utf-32-le", "surrogatepass")
        _WORD_CHARS = np.concatenate(([False], np.frombuffer(marked, dtype=np.uint32) != 0))
    astral = codes >= 0x10000
    if not astral.any():
        return _WORD_CHARS[codes]
    out = np.zeros(len(codes), dtype=bool)
    out[~astral] = _WORD_CHARS[codes[~astral]]
    distinct, inverse = np.unique(codes[astral], return_inverse=True)
    word_char = regex.compile(rf"[{_WORD_CHAR}]")
    out[astral] = np.array([bool(word_char.match(chr(c))) for c in distinct.tolist()], dtype=bool)[inverse]
    return out


def _word_hashes(norm: str) -> tuple[np.ndarray, np.ndarray]:
    """A 64-bit hash of every word of ``norm`` (a run of word characters: spaces and punctuation separate
    words), in order: the polynomial ``sum(c_j * B**j)`` of the word's code points, from one prefix sum over the
    whole text; and where each word starts."""
    if not norm:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    codes = np.frombuffer(norm.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    edges = np.diff(_is_word_char(codes).view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    return run_hashes(codes, starts, np.flatnonzero(edges == -1)), starts


def run_hashes(codes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each run ``codes[start:end]`` of code points (equal runs, equal hashes, wherever they
    are): the polynomial ``sum(c_j * B**j)`` of the run, from one prefix sum over all the code points."""
    n = len(codes)
    up, down = _powers(n + 1)
    with np.errstate(over="ignore"):
        prefix = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum(codes.astype(np.uint64) * up[:n], dtype=np.uint64, out=prefix[1:])
        hashes = (prefix[ends] - prefix[starts]) * down[starts]  # the run's sum shifted to start at B**0
        hashes ^= hashes >> np.uint64(31)
        hashes *= _MIX
        hashes ^= hashes >> np.uint64(29)
    return hashes


class ExactDeduplicator:
    """Remembers a 16-byte digest per distinct normalised text (bounded memory per document)."""

    def __init__(self, ignore_punctuation: bool = False) -> None:
        self.ignore_punctuation = ignore_punctuation
        self._seen: set[bytes] = set()

    def key(self, text: str, normalized: bool = False) -> bytes:
        """Digest of the normalised text (``normalized``: ``text`` is :func:`normalize_for_dedup` output for
        this deduplicator already)."""
        norm = text if normalized else normalize_for_dedup(text, self.ignore_punctuation)
        return hashlib.blake2b(norm.encode("utf-8"), digest_size=16).digest()

    def seen(self, text: str, normalized: bool = False) -> bool:
        """True if an equivalent text was seen before; otherwise remember it and return False
        (``normalized``: ``text`` is :func:`normalize_for_dedup` output for this deduplicator)."""
        return self.seen_key(self.key(text, normalized))

    def seen_key(self, key: bytes) -> bool:
        """:meth:`seen` for a digest computed by :meth:`key` (e.g. by a shard worker)."""
        if key in self._seen:
            return True
        self._seen.add(key)
        return False

    def __len__(self) -> int:
        return len(self._seen)


def affine32_permutations(num_perm: int, seed: int) -> np.ndarray:
    """``[a, b]`` (uint32) of datasketch's ``affine32`` MinHash scheme for ``num_perm`` and ``seed``: odd
    multipliers ``a`` and offsets ``b`` drawn as ``datasketch.MinHash(num_perm, seed, scheme="affine32")``
    draws them (``MinHash.permutations``; a test checks that they are equal)."""
    generator = np.random.RandomState(seed)
    a = generator.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = generator.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return np.array([a, b])


class NearDeduplicator:
    """Streaming near-duplicate detection with MinHash-LSH (datasketch's scheme), one index per language.

    A document's shingles are its word ``shingle``-grams (character 5-grams for documents of fewer
    words), normalised as for exact dedup. The first document of a cluster is kept; a later one whose
    estimated Jaccard similarity with a kept one reaches ``threshold`` is a near duplicate, and the kept
    document's cluster size grows. Memory: one MinHash signature per kept document.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle: int = 5, seed: int = 1) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"near-dedup threshold must be in (0, 1], got {threshold}")
        self.threshold, self.num_perm, self.shingle, self.seed = threshold, num_perm, shingle, seed
        self._buckets: dict[str, list[dict[bytes, int]]] = {}  # language -> per band: band values -> kept doc
        self._bands_rows: tuple[int, int] | None = None  # found when first needed (it integrates numerically)
        self._permutations = affine32_permutations(num_perm, seed)  # drawn once, not per document
        self._scheme = "affine32"
        self._a, self._b = self._permutations
        self._b_column = self._b[:, None]
        self.cluster_sizes: dict[str, int] = {}  # kept document id -> documents in its cluster
        self._count = 0

    @property
    def bands_rows(self) -> tuple[int, int]:
        """``(bands, rows)`` of the LSH: datasketch's choice for :attr:`threshold` and :attr:`num_perm` (the
        split that minimises false positives and negatives, equally weighted). datasketch is imported here, when
        first needed: a shard worker only computes signatures and is spared its import (about 0.15 s)."""
        if self._bands_rows is None:
            from datasketch import MinHashLSH  # lazy: see above

            lsh = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm)
            self._bands_rows = (lsh.b, lsh.r)
        return self._bands_rows

    @property
    def hashing(self) -> tuple[int, int, int]:
        """``(num_perm, shingle, seed)``: what a signature depends on (a shard worker computing signatures for
        this deduplicator needs the same; the threshold only matters when signatures are compared)."""
        return self.num_perm, self.shingle, self.seed

    def shingle_hashes(self, text: str, normalized: bool = False) -> np.ndarray:
        """32-bit hashes of the distinct shingles of ``text`` (normalised as for exact dedup, punctuation
        removed; ``normalized``: ``text`` is :func:`normalize_for_dedup` output already): a word
        ``shingle``-gram is hashed from polynomial hashes of its words, all computed in numpy (no string per
        word or shingle is built); a character 5-gram (texts of fewer words) is its crc32."""
        norm = text if normalized else normalize_for_dedup(text)
        return np.unique(self._shingles([norm])[0])

    def _shingles(self, norms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The shingle hashes of normalised texts (a shingle met twice in a text hashed twice: a minimum needs no
        ``unique``) and the text of each, in text order; the word shingles of all texts from one numpy pass."""
        lengths = np.fromiter(map(len, norms), dtype=np.int64, count=len(norms))
        begins = np.cumsum(lengths + 1) - lengths - 1
        ids, starts = _word_hashes("\x00".join(norms))  # (NUL is no word character: no word spans two texts)
        word_text = np.searchsorted(begins, starts, side="right") - 1
        m = len(ids) - self.shingle + 1
        keys, key_text = np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
        if m > 0:
            keys = ids[:m].copy()
            with np.errstate(over="ignore"):
                for j in range(1, self.shingle):
                    keys = keys * _MIX + ids[j:j + m]
                keys ^= keys >> np.uint64(29)
                keys *= _MIX
                keys ^= keys >> np.uint64(32)
            within = word_text[:m] == word_text[self.shingle - 1:]  # the shingle's words are in one text
            keys, key_text = keys[within] & np.uint64(0xFFFFFFFF), word_text[:m][within]
        short = np.flatnonzero(np.bincount(word_text, minlength=len(norms)) < self.shingle).tolist()
        if short:  # texts of fewer words: their character 5-grams
            grams = [self._char_grams(norms[t]) for t in short]
            keys = np.concatenate([keys, *grams])
            key_text = np.concatenate([key_text, *[np.full(len(g), t) for t, g in zip(short, grams, strict=True)]])
            order = np.argsort(key_text, kind="stable")
            keys, key_text = keys[order], key_text[order]
        return keys, key_text

    @staticmethod
    def _char_grams(norm: str) -> np.ndarray:
        norm = " ".join(_PUNCTUATION.sub(" ", norm).split())
        grams = {norm[i:i + 5] for i in range(max(1, len(norm) - 4))}
        return np.fromiter((zlib.crc32(g.encode("utf-8")) for g in grams), dtype=np.uint64, count=len(grams))

    def signature(self, text: str, normalized: bool = False):
        """The MinHash (datasketch) of ``text``'s shingles (see :meth:`shingle_hashes`)."""
        from datasketch import MinHash  # lazy: a shard worker computes signature values only

        return MinHash(num_perm=self.num_perm, seed=self.seed, hashvalues=self.signature_values(text, normalized),
                       permutations=self._permutations, scheme=self._scheme)

    def signature_values(self, text: str, normalized: bool = False) -> np.ndarray:
        """The ``hashvalues`` (uint32) of :meth:`signature`: datasketch's ``affine32`` MinHash of the shingle
        hashes (MurmurHash3 finaliser, then ``a * h + b`` modulo 2**32 per permutation, minimum over shingles),
        computed here in numpy without building a Python list of the hashes."""
        return self.signature_values_many([text], normalized)[0]

    def signature_values_many(self, texts: Sequence[str], normalized: bool = False) -> np.ndarray:
        """:meth:`signature_values` of many texts, as rows: their shingles, and the products of blocks of about
        ``_SIGNATURE_ROWS`` shingles (of one text or several) with the permutations, in numpy passes over all of
        them (the per-text cost of numpy calls is paid once per block)."""
        norms = texts if normalized else [normalize_for_dedup(text) for text in texts]
        keys, key_text = self._shingles(norms)
        hashes = _fmix32(keys.astype(np.uint32))
        values = np.full((len(norms), self.num_perm), _MAX_HASH32, dtype=np.uint32)
        with np.errstate(over="ignore"):
            for start in range(0, len(hashes), _SIGNATURE_ROWS):  # bounded memory for very long texts
                end = min(start + _SIGNATURE_ROWS, len(hashes))
                block = np.multiply.outer(self._a, hashes[start:end])  # one row per permutation
                block += self._b_column
                owners = key_text[start:end]
                firsts = np.flatnonzero(np.diff(owners, prepend=-1))  # where each text's shingles start in the block
                minima = np.minimum.reduceat(block, firsts, axis=1).T
                rows = owners[firsts]
                values[rows] = np.minimum(values[rows], minima)  # (a text split between blocks: its minimum)
        return values

    def duplicate_of(self, text: str, language: str = "", normalized: bool = False) -> str | None:
        """The id of a kept near-duplicate of ``text`` (its cluster grows), or ``None`` after keeping
        ``text`` as a new cluster (``normalized``: ``text`` is :func:`normalize_for_dedup` output)."""
        return self.duplicate_of_signature(self.signature_values(text, normalized), language)

    def duplicate_of_signature(self, signature, language: str = "") -> str | None:
        """:meth:`duplicate_of` for a text's :meth:`signature`, or its ``hashvalues`` array (computed
        elsewhere, e.g. by a shard worker, with the same :attr:`hashing`).

        The LSH is datasketch's ``MinHashLSH`` scheme, in plain dicts: a candidate shares all the values of one
        band with a kept document. A near duplicate is never indexed, so each bucket holds one kept document, and
        the first kept document (the cluster) is found with one dict lookup per band."""
        values = signature if isinstance(signature, np.ndarray) else signature.hashvalues
        if len(values) != self.num_perm:
            raise ValueError(f"a signature of {len(values)} values, this deduplicator uses {self.num_perm}")
        raw = np.ascontiguousarray(values, dtype="<u4").tobytes()  # (MinHash values are below 2**32)
        bands, rows = self.bands_rows
        width = 4 * rows
        keys = [raw[i:i + width] for i in range(0, bands * width, width)]
        buckets = self._buckets.get(language)
        if buckets is None:
            buckets = self._buckets[language] = [{} for _ in range(bands)]
        found = [kept for bucket, key in zip(buckets, keys, strict=True) if (kept := bucket.get(key)) is not None]
        if found:
            first = f"{language}:{min(found)}"
            self.cluster_sizes[first] += 1
            return first
        number, self._count = self._count, self._count + 1
        for bucket, key in zip(buckets, keys, strict=True):
            bucket[key] = number
        self.cluster_sizes[f"{language}:{number}"] = 1
        return None

    def cluster_histogram(self) -> dict[str, int]:
        """``{cluster size: number of clusters}`` over the kept documents."""
        histogram: dict[str, int] = {}
        for size in self.cluster_sizes.values():
            histogram[str(size)] = histogram.get(str(size), 0) + 1
        return dict(sorted(histogram.items(), key=lambda kv: int(kv[0])))
