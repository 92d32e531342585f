"""Exact deduplication by a hash of normalised text."""

from __future__ import annotations

import hashlib
import re
import unicodedata

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
