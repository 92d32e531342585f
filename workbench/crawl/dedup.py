"""Exact deduplication by a hash of normalised text."""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib

_PUNCTUATION = re.compile(r"[^\w\s]")
_SPACES = re.compile(r"\s+")


def normalize_for_dedup(text: str, ignore_punctuation: bool = False) -> str:
    """NFKC, casefolded, whitespace collapsed (and punctuation removed if asked)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    if ignore_punctuation:
        text = _PUNCTUATION.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


class ExactDeduplicator:
    """Remembers a 16-byte digest per distinct normalised text (bounded memory per document)."""

    def __init__(self, ignore_punctuation: bool = False) -> None:
        self.ignore_punctuation = ignore_punctuation
        self._seen: set[bytes] = set()

    def key(self, text: str) -> bytes:
        """Digest of the normalised text."""
        norm = normalize_for_dedup(text, self.ignore_punctuation)
        return hashlib.blake2b(norm.encode("utf-8"), digest_size=16).digest()

    def seen(self, text: str) -> bool:
        """True if an equivalent text was seen before; otherwise remember it and return False."""
        key = self.key(text)
        if key in self._seen:
            return True
        self._seen.add(key)
        return False

    def __len__(self) -> int:
        return len(self._seen)


class NearDeduplicator:
    """Streaming near-duplicate detection with MinHash-LSH (datasketch), one index per language.

    A document's shingles are its word ``shingle``-grams (character 5-grams for documents of fewer
    words), normalised as for exact dedup. The first document of a cluster is kept; a later one whose
    estimated Jaccard similarity with a kept one reaches ``threshold`` is a near duplicate, and the kept
    document's cluster size grows. Memory: one MinHash signature per kept document.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle: int = 5, seed: int = 1) -> None:
        from datasketch import MinHashLSH

        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"near-dedup threshold must be in (0, 1], got {threshold}")
        self.threshold, self.num_perm, self.shingle, self.seed = threshold, num_perm, shingle, seed
        self._lsh: dict[str, MinHashLSH] = {}
        first = MinHashLSH(threshold=threshold, num_perm=num_perm)
        params = (first.b, first.r)  # bands and rows: computed once (it integrates numerically)
        self._make_lsh = lambda: MinHashLSH(num_perm=num_perm, params=params)
        self.cluster_sizes: dict[str, int] = {}  # kept document id -> documents in its cluster
        self._count = 0

    def shingles(self, text: str) -> set[bytes]:
        norm = normalize_for_dedup(text, ignore_punctuation=True)
        words = norm.split()
        if len(words) >= self.shingle:
            grams = (" ".join(words[i:i + self.shingle]) for i in range(len(words) - self.shingle + 1))
        else:
            grams = (norm[i:i + 5] for i in range(max(1, len(norm) - 4)))
        return {g.encode("utf-8") for g in grams}

    def signature(self, text: str):
        from datasketch import MinHash

        minhash = MinHash(num_perm=self.num_perm, seed=self.seed, hashfunc=zlib.crc32)  # C speed, deterministic
        minhash.update_batch(list(self.shingles(text)))
        return minhash

    def duplicate_of(self, text: str, language: str = "") -> str | None:
        """The id of a kept near-duplicate of ``text`` (its cluster grows), or ``None`` after keeping
        ``text`` as a new cluster."""
        lsh = self._lsh.get(language)
        if lsh is None:
            lsh = self._lsh[language] = self._make_lsh()
        minhash = self.signature(text)
        matches = lsh.query(minhash)
        if matches:
            first = min(matches, key=lambda key: int(key.split(":", 1)[1]))
            self.cluster_sizes[first] += 1
            return first
        key = f"{language}:{self._count}"
        self._count += 1
        lsh.insert(key, minhash)
        self.cluster_sizes[key] = 1
        return None

    def cluster_histogram(self) -> dict[str, int]:
        """``{cluster size: number of clusters}`` over the kept documents."""
        histogram: dict[str, int] = {}
        for size in self.cluster_sizes.values():
            histogram[str(size)] = histogram.get(str(size), 0) + 1
        return dict(sorted(histogram.items(), key=lambda kv: int(kv[0])))
