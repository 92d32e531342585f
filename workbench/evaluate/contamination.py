"""Evaluation-set contamination: word n-gram overlap between training corpora and eval sentences.

Text is normalised (NFKC, casefold) and split into words (runs of letters, marks and digits), so
casing and punctuation do not hide a copy. Every word n-gram (default ``n`` = 13) of every eval
sentence is indexed; a sentence shorter than ``n`` words (but at least ``min_words``) is indexed as
one n-gram of its own length. An eval sentence is *flagged* when any of its n-grams occurs in the
scanned training text.

N-grams are hashed to 64 bits: each word by blake2b, an n-gram by a polynomial over its words'
hashes (mod 2**64), computed with numpy over chunks of the training stream. Words that occur in no
eval sentence cannot be part of a match and break the stream there, so memory is bounded by the
chunk size and the eval sets, whatever the size of the training corpus. The texts given to
:meth:`ContaminationIndex.scan` are one continuous word stream, so a sentence wrapped over two lines
is still found.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..errors import DataError
from ..text import nfkc
from ..text import words as unicode_words
from .scorer import eval_sentence_sets

_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the polynomial n-gram hash
_CHUNK_WORDS = 200_000  # words hashed per numpy pass
_SLICE_CHARS = 1 << 20  # a longer text is normalised and split piece by piece


def normalise_words(text: str) -> list[str]:
    """NFKC + casefold, then the words of :mod:`workbench.text` (each character of a script written without
    spaces is a word); punctuation is dropped."""
    return unicode_words(nfkc(text), casefold=True)


def _word_hash(word: str) -> int:
    value = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
    return value or 1  # 0 marks "not an eval word"


def _ngram_hashes(ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Polynomial hashes of every window of ``n`` ids, and whether the window holds no 0 id."""
    m = len(ids) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=bool)
    out = ids[:m].copy()
    with np.errstate(over="ignore"):
        for j in range(1, n):
            out = out * _BASE + ids[j : j + m]
    zeros = np.concatenate([[0], np.cumsum(ids == 0)])
    return out, zeros[n : n + m] == zeros[:m]


def _slices(text: str, size: int = _SLICE_CHARS) -> Iterator[str]:
    """``text`` in pieces of about ``size`` characters, cut at whitespace when possible."""
    start = 0
    while len(text) - start > size:
        cut = text.rfind(" ", start + size // 2, start + size)
        cut = start + size if cut < 0 else cut
        yield text[start:cut]
        start = cut
    yield text[start:]


class ContaminationIndex:
    """Index of the n-grams of evaluation sentences, to scan training text against.

    ``eval_sentences`` maps a set name (e.g. ``"srd_Latn.dev"``) to its sentences; sentences with
    fewer than ``min_words`` words are not indexed (too short to say anything).
    """

    def __init__(self, eval_sentences: dict[str, list[str]], n: int = 13, *, min_words: int = 4) -> None:
        if n < 1 or min_words < 1:
            raise ValueError(f"n and min_words must be >= 1, got n={n}, min_words={min_words}")
        self.n = n
        self.min_words = min_words
        self.sizes = {name: len(sentences) for name, sentences in eval_sentences.items()}
        self.skipped: dict[str, list[int]] = {name: [] for name in eval_sentences}
        self._vocab: dict[str, int] = {}
        self._owners: dict[int, list[tuple[str, int]]] = {}  # n-gram hash -> eval sentences holding it
        self._ngrams: dict[tuple[str, int], set[int]] = {}  # eval sentence -> its n-gram hashes
        by_length: dict[int, set[int]] = {}
        for name, sentences in eval_sentences.items():
            for index, sentence in enumerate(sentences):
                words = normalise_words(sentence)
                if len(words) < min_words:
                    self.skipped[name].append(index)
                    continue
                ids = np.array([self._vocab.setdefault(w, _word_hash(w)) for w in words], dtype=np.uint64)
                length = min(n, len(ids))
                hashes = {int(h) for h in _ngram_hashes(ids, length)[0]}
                by_length.setdefault(length, set()).update(hashes)
                self._ngrams[(name, index)] = hashes
                for h in hashes:
                    self._owners.setdefault(h, []).append((name, index))
        self._tables = {length: np.array(sorted(hs), dtype=np.uint64) for length, hs in sorted(by_length.items())}
        self._carry = max(self._tables, default=1) - 1
        self._seen: set[int] = set()
        self._flagged: dict[str, set[int]] = {name: set() for name in eval_sentences}
        self.words_scanned = 0
        self.texts_scanned = 0
        self.bad_lines = 0

    # ---- scanning
    def scan(self, texts: Iterable[str]) -> None:
        """Stream training ``texts`` (any number, any length) through the index; can be called again."""
        buffer: list[int] = []
        for text in texts:
            self.texts_scanned += 1
            for piece in _slices(text):
                words = normalise_words(piece)
                self.words_scanned += len(words)
                vocab = self._vocab
                buffer.extend(vocab.get(w, 0) for w in words)
                if len(buffer) >= _CHUNK_WORDS:
                    self._match(buffer)
                    buffer = buffer[len(buffer) - self._carry :] if self._carry else []
        if buffer:
            self._match(buffer)  # the carried-over words are matched again: harmless, matches are sets

    def _match(self, buffer: list[int]) -> None:
        ids = np.array(buffer, dtype=np.uint64)
        if not ids.any():
            return
        for length, table in self._tables.items():
            hashes, valid = _ngram_hashes(ids, length)
            hashes = hashes[valid]
            if not len(hashes):
                continue
            pos = np.minimum(np.searchsorted(table, hashes), len(table) - 1)
            for h in np.unique(hashes[table[pos] == hashes]).tolist():
                if h not in self._seen:
                    self._seen.add(h)
                    for name, index in self._owners[h]:
                        self._flagged[name].add(index)

    def scan_files(self, paths: Iterable[Path | str], *, progress: bool = True) -> None:
        """Scan text corpora (every line) and ``.jsonl`` files (field ``text``), optionally gzipped."""
        for path in map(Path, paths):
            self.scan(self._read_texts(path, progress))

    def _read_texts(self, path: Path, progress: bool) -> Iterator[str]:
        """Texts of a ``.jsonl[.gz]`` file (field ``text``, else every string field) or of any other text
        file (one per line: .txt, FLORES .dev/.devtest, .tsv), with a bar; JSONL lines that are not JSON
        objects are counted in ``bad_lines`` and skipped."""
        name = path.name.lower().removesuffix(".gz")
        if not path.is_file():
            raise DataError(f"cannot scan '{path}': no such file")
        is_jsonl = name.endswith(".jsonl")
        gzipped = path.name.lower().endswith(".gz")
        bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"scanning {path.name}",
                   disable=not progress, leave=False)
        with open(path, "rb") as raw, gzip.open(raw) if gzipped else nullcontext(raw) as stream, bar:
            last = 0
            for line in io.TextIOWrapper(stream, encoding="utf-8", errors="replace"):
                if raw.tell() != last:
                    bar.update(raw.tell() - last)
                    last = raw.tell()
                if not is_jsonl:
                    yield line
                    continue
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    self.bad_lines += 1
                    continue
                if not isinstance(row, dict):
                    self.bad_lines += 1
                elif isinstance(row.get("text"), str):
                    yield row["text"]
                else:  # instruction or pair records: every string field (chat messages included)
                    yield from _strings(row)

    # ---- results
    def flagged(self, set_name: str) -> set[int]:
        """Indices of the sentences of ``set_name`` with an n-gram seen in the scanned text."""
        if set_name not in self._flagged:
            raise KeyError(f"unknown eval set '{set_name}'; known: {sorted(self._flagged)}")
        return set(self._flagged[set_name])

    def coverage(self, set_name: str, index: int) -> float:
        """Share of the n-grams of one eval sentence seen in the scanned text (0 if not indexed)."""
        hashes = self._ngrams.get((set_name, index))
        return len(hashes & self._seen) / len(hashes) if hashes else 0.0

    def report(self) -> dict[str, Any]:
        """``{"n", "min_words", "words_scanned", "texts_scanned", "bad_lines", "sets": {name: {"sentences",
        "checked", "flagged", "rate", "indices", "coverage", "skipped"}}}``; ``rate`` = flagged /
        sentences, ``coverage`` = share of each flagged sentence's n-grams seen."""
        sets = {}
        for name, size in self.sizes.items():
            indices = sorted(self._flagged[name])
            sets[name] = {
                "sentences": size,
                "checked": size - len(self.skipped[name]),
                "flagged": len(indices),
                "rate": len(indices) / size if size else 0.0,
                "indices": indices,
                "coverage": {i: round(self.coverage(name, i), 4) for i in indices},
                "skipped": list(self.skipped[name]),
            }
        return {"n": self.n, "min_words": self.min_words, "words_scanned": self.words_scanned,
                "texts_scanned": self.texts_scanned, "bad_lines": self.bad_lines, "sets": sets}



# ---- the check of a run's training data


def check_contamination(eval_cfg: Any, files: list[Path], cfg: Any, *, stage: str,
                        progress: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Scan a stage's training ``files`` for the sentences the scorer scores; returns the report
    (:meth:`ContaminationIndex.report` plus the files) and scoreboard records of kind ``contamination``:
    ``overlap_rate`` per LM language, ``source_overlap_rate`` / ``reference_overlap_rate`` per direction."""
    index = ContaminationIndex(eval_sentence_sets(eval_cfg), cfg.n, min_words=cfg.min_words)
    index.scan_files([p for p in files if Path(p).is_file()], progress=progress)
    report = {**index.report(), "stage": stage, "files": [str(p) for p in files]}
    records = []
    for name, entry in report["sets"].items():
        kind, *rest = name.split(":")
        column = {"language": rest[0]} if kind == "lm" else {"direction": rest[0]}
        metric = "overlap_rate" if kind == "lm" else f"{rest[1]}_overlap_rate"
        records.append({"stage": stage, "variant": None, "kind": "contamination", **column, "metric": metric,
                        "value": float(entry["rate"]), "n": entry["checked"], "flagged": entry["flagged"],
                        "ngram": cfg.n})
    return report, records


def flagged_sentences(report_paths: Iterable[Path]) -> dict[str, set[int]]:
    """The union of flagged sentence indices per eval set over contamination reports (JSON files)."""
    out: dict[str, set[int]] = {}
    for path in report_paths:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        for name, entry in report["sets"].items():
            out.setdefault(name, set()).update(entry["indices"])
    return out


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
