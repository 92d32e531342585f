"""The crawl pipeline: read inputs, extract text, identify the language of every paragraph or
line, keep the spans in the wanted languages, deduplicate, write one JSONL file per language.

Units: ``too_short``, ``other_language`` and ``low_confidence`` count segments (non-empty
lines of a document); ``duplicate`` and ``no_text`` count documents. A short segment between
two kept segments of the same language stays in the span (headings, list items); elsewhere
it is dropped. Consecutive kept segments of one language form one output document.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tqdm import tqdm

from ..errors import DataError
from ..io import atomic_write_json
from ..languages import check_code
from .dedup import ExactDeduplicator
from .extract import html_to_text
from .langid import LanguageIdentifier
from .readers import CrawlStats, RawDocument, input_format, iter_documents

DROP_REASONS = ("no_text", "too_short", "other_language", "low_confidence", "duplicate")
RECORD_FIELDS = ("text", "language", "score", "source", "offset", "url")
_WORDS = re.compile(r"\w+", re.UNICODE)
_SHORT, _OTHER, _LOW = "too_short", "other_language", "low_confidence"


@dataclass
class Span:
    """Consecutive segments of one language, to become one output document."""

    language: str
    parts: list[tuple[str, str]] = field(default_factory=list)  # (separator before, text)
    weighted: float = 0.0
    scored_chars: int = 0

    @property
    def text(self) -> str:
        return "".join(sep + text for sep, text in self.parts).lstrip("\n")

    @property
    def score(self) -> float:
        return self.weighted / self.scored_chars if self.scored_chars else 0.0


def split_segments(text: str) -> list[tuple[str, str]]:
    """Non-empty lines with whitespace collapsed, each with the separator that preceded it:
    ``"\\n\\n"`` at a paragraph break, ``"\\n"`` inside a paragraph."""
    out: list[tuple[str, str]] = []
    for block in re.split(r"\n[ \t\u00a0\r\f\v]*\n", text):
        first = True
        for line in block.split("\n"):
            line = " ".join(line.split())
            if line:
                out.append(("\n\n" if first else "\n", line))
                first = False
    return out


def label_segment(text: str, identifier: LanguageIdentifier, languages: frozenset[str],
                  min_chars: int, min_score: float) -> tuple[str, float, str | None]:
    """``(label, score, top_code)``: label is a kept language code or a drop reason."""
    if len(text) < min_chars:
        return _SHORT, 0.0, None
    prediction = identifier.predict(text)
    if not prediction:
        return _LOW, 0.0, None
    code, score = prediction[0]
    if code not in languages:
        return _OTHER, score, code
    if score < min_score:
        return _LOW, score, code
    return code, score, code


def group_spans(segments: list[tuple[str, str]], labels: list[tuple[str, float]],
                dropped: Counter) -> list[Span]:
    """Join consecutive kept segments of one language (short ones in between stay)."""
    spans: list[Span] = []
    current: Span | None = None
    pending: list[tuple[str, str]] = []
    for (sep, text), (label, score) in zip(segments, labels, strict=True):
        if label == _SHORT:
            if current is not None:
                pending.append((sep, text))
            else:
                dropped[_SHORT] += 1
            continue
        if current is not None and label == current.language:
            current.parts.extend(pending)
        else:
            dropped[_SHORT] += len(pending)
            current = None if label in (_OTHER, _LOW) else Span(label)
            if current is None:
                dropped[label] += 1
            else:
                spans.append(current)
        pending = []
        if current is not None:
            current.parts.append((sep, text))
            current.weighted += score * len(text)
            current.scored_chars += len(text)
    dropped[_SHORT] += len(pending)
    return spans


class _JsonlSinks:
    """One temporary JSONL file per language, renamed into place on commit."""

    def __init__(self, out_dir: Path, languages: Iterable[str]) -> None:
        self.out_dir = out_dir
        self.handles: dict[str, tuple[str, IO[str]]] = {}
        for code in languages:
            fd, tmp = tempfile.mkstemp(prefix=f".{code}.jsonl.", suffix=".tmp", dir=out_dir)
            self.handles[code] = (tmp, os.fdopen(fd, "w", encoding="utf-8"))

    def write(self, record: dict) -> None:
        self.handles[record["language"]][1].write(json.dumps(record, ensure_ascii=False) + "\n")

    def commit(self) -> None:
        for code, (tmp, handle) in self.handles.items():
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.replace(tmp, self.out_dir / f"{code}.jsonl")
        self.handles = {}

    def abort(self) -> None:
        for tmp, handle in self.handles.values():
            handle.close()
            Path(tmp).unlink(missing_ok=True)
        self.handles = {}


@dataclass
class _Run:
    languages: frozenset[str]
    identifier: LanguageIdentifier
    min_chars: int
    min_score: float
    stats: CrawlStats = field(default_factory=CrawlStats)
    dedup: ExactDeduplicator = field(default_factory=ExactDeduplicator)
    dropped: Counter = field(default_factory=Counter)
    identified: Counter = field(default_factory=Counter)
    per_language: dict = field(default_factory=dict)
    kept_per_input: Counter = field(default_factory=Counter)

    def document_text(self, doc: RawDocument) -> str | None:
        if doc.html is None:
            return doc.text
        try:
            return html_to_text(doc.html, doc.charset)
        except DataError as exc:
            self.stats.bad("undecodable", doc.source, doc.offset, str(exc))
        except (ValueError, RuntimeError, UnicodeError) as exc:
            self.stats.bad("extraction_failed", doc.source, doc.offset, str(exc))
        return None

    def spans(self, text: str) -> list[Span]:
        segments = split_segments(text)
        labels = []
        for _, segment in segments:
            label, score, top = label_segment(segment, self.identifier, self.languages,
                                              self.min_chars, self.min_score)
            if top is not None:
                self.identified[top] += 1
            labels.append((label, score))
        return group_spans(segments, labels, self.dropped)

    def process(self, doc: RawDocument, sinks: _JsonlSinks) -> None:
        text = self.document_text(doc)
        if not text or not text.strip():
            self.dropped["no_text"] += 1
            return
        for span in self.spans(text):
            span_text = span.text
            if self.dedup.seen(span_text):
                self.dropped["duplicate"] += 1
                continue
            sinks.write({"text": span_text, "language": span.language, "score": round(span.score, 4),
                         "source": doc.source, "offset": doc.offset, "url": doc.url})
            self.count(span.language, span_text)
            self.kept_per_input[doc.source] += 1

    def count(self, code: str, text: str) -> None:
        entry = self.per_language.setdefault(code, {"docs": 0, "chars": 0, "bytes": 0, "words": 0})
        entry["docs"] += 1
        entry["chars"] += len(text)
        entry["bytes"] += len(text.encode("utf-8"))
        entry["words"] += len(_WORDS.findall(text))


def _check_arguments(inputs: list[Path], languages: list[str], min_chars: int, min_score: float) -> None:
    if not languages:
        raise DataError("crawl needs at least one language to keep")
    for code in languages:
        try:
            check_code(code)
        except ValueError as exc:
            raise DataError(f"crawl language: {exc}") from None
    for path in inputs:
        input_format(path)
        if not Path(path).exists():
            raise DataError(f"crawl input '{path}' does not exist")
    if min_chars < 1 or not 0.0 <= min_score <= 1.0:
        raise DataError(f"crawl needs min_chars >= 1 and 0 <= min_score <= 1 (got {min_chars}, {min_score})")


def run_crawl(
    inputs: list[Path],
    languages: list[str],
    identifier: LanguageIdentifier,
    out_dir: Path,
    *,
    min_chars: int = 20,
    min_score: float = 0.5,
    progress: bool = True,
) -> dict:
    """Crawl ``inputs`` into ``out_dir/<code>.jsonl`` (one per code in ``languages``, possibly
    empty) and ``out_dir/stats.json``; returns the stats. Input languages are never guessed
    from file names: every segment goes through ``identifier``.
    """
    inputs = [Path(p) for p in inputs]
    _check_arguments(inputs, languages, min_chars, min_score)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(frozenset(languages), identifier, min_chars, min_score)
    sinks = _JsonlSinks(out_dir, sorted(set(languages)))
    try:
        for path in tqdm(inputs, desc="crawl", unit="file", disable=not progress):
            for doc in iter_documents(path, run.stats):
                run.process(doc, sinks)
        sinks.commit()
    finally:
        sinks.abort()
    stats = _stats(run, inputs, languages)
    atomic_write_json(out_dir / "stats.json", stats)
    return stats


def _stats(run: _Run, inputs: list[Path], languages: list[str]) -> dict:
    empty = {"docs": 0, "chars": 0, "bytes": 0, "words": 0}
    return {
        "settings": {"languages": list(languages), "min_chars": run.min_chars, "min_score": run.min_score,
                     "identifier": type(run.identifier).__name__},
        "inputs": {str(p): {"documents_read": run.stats.docs_read[str(p)],
                            "documents_kept": run.kept_per_input[str(p)]} for p in inputs},
        "documents_read": sum(run.stats.docs_read.values()),
        "languages": {code: dict(run.per_language.get(code, empty)) for code in sorted(set(languages))},
        "dropped": {reason: run.dropped[reason] for reason in DROP_REASONS},
        "identified": dict(run.identified.most_common()),
        "skipped_records": dict(sorted(run.stats.skipped.items())),
        "bad_input": run.stats.to_dict(),
    }
