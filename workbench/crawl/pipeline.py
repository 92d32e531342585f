"""The crawl pipeline: read inputs, extract text, identify the language of every paragraph or
line, keep the spans in the wanted languages, apply the quality filters
(:mod:`workbench.crawl.filters`), then drop excluded documents, exact and near duplicates
(MinHash-LSH), write one JSONL file per language and a data card (:mod:`workbench.crawl.card`).

The first part runs per shard (:mod:`workbench.crawl.shards`: in-process, local processes or Ray), and so
does the costly part of deduplication: each candidate record carries its normalised-text digest, its MinHash
signature and its word count (``MERGE_FIELD``). Deduplication itself (comparing those) runs over the shards'
outputs in order, so the result does not depend on the executor, and that serial pass stays light.

Units: ``too_short``, ``other_language``, ``low_confidence`` and ``weak_evidence`` count segments (non-empty
lines of a document); ``no_text``, ``duplicate``, ``quality:<rule>``, ``near_duplicate`` and
``excluded`` (listed in the exclusion file) count documents. A short segment between
two kept segments of the same language stays in the span (headings, list items); elsewhere
it is dropped. Consecutive kept segments of one language form one output document.

A line labelled a *rare* language (a seed language the general identifier does not know, e.g. the target:
``rare_languages``) needs more than a top score, because on the web such lines are few among many of other
languages: a line identified on its own needs the identifier's evidence rules (letters, a margin over the
runner-up), and its document needs a few lines of that language (``rare_doc_lines``, or ``rare_doc_share`` of
its identified lines); otherwise the line is dropped as ``weak_evidence``.

Identification is chunk first: the long lines of one paragraph (one script, at most ``chunk_chars``
characters) are identified together, and only a chunk that is not clearly one language (top score below
``chunk_score`` or its language's threshold) is identified again line by line, so a paragraph that mixes
languages still yields its target-language lines. Paragraphs are never merged: a Sardinian paragraph in an
Italian page is always identified on its own. Text without blank lines (WET records, trafilatura output,
one-paragraph-per-line files) has no paragraph structure, so there every line is identified on its own.
A line identified on its own that is longer than ``prefix_chars`` is identified on its beginning first, and
again on the whole line only if the beginning is not clear by the same test: the identifiers' cost grows with
the characters they read, and a sentence or two settles the language of most lines. Chunks are always read
whole, so a paragraph whose later lines change language is still caught. Documents are identified in
batches of ``batch_docs``, so the identifiers' per-call work is shared.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
from tqdm import tqdm

from ..errors import DataError
from ..io import atomic_write_json
from ..languages import check_code
from ..text import is_collapsed, lines_collapsed, nfkc
from ..text import words as unicode_words
from .card import CardBuilder
from .dedup import ExactDeduplicator, NearDeduplicator, normalize_for_dedup
from .extract import make_extractor
from .filters import QualityConfig, count_words, judge_many
from .langid import EvidenceRules, LanguageIdentifier, Prediction, dominant_scripts, predict_batch
from .readers import CrawlStats, RawDocument, input_format
from .shards import (
    DEFAULT_SHARD_BYTES,
    ShardResult,
    frozen_heap,
    iter_shards,
    merge_bad_input,
    merge_counters,
    plan_shards,
)

DROP_REASONS = ("no_text", "prefilter", "too_short", "other_language", "low_confidence", "weak_evidence",
                "duplicate", "excluded", "near_duplicate")
RECORD_FIELDS = ("text", "language", "score", "source", "offset", "url")
MERGE_FIELD = "_merge"  # in a shard's candidate records only: {"key", "words"[, "minhash"]} (see the docstring)
_BLANK_LINE = re.compile(r"\n[ \t\u00a0\r\f\v]*\n")
_SHORT, _OTHER, _LOW, _WEAK = "too_short", "other_language", "low_confidence", "weak_evidence"


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
    if lines_collapsed(text):  # the usual case: blank lines are empty lines, the others are as they should be
        for block in text.split("\n\n"):
            separator = "\n\n"
            for line in block.split("\n"):
                if line:
                    out.append((separator, line))
                    separator = "\n"
        return out
    for block in _BLANK_LINE.split(text):
        separator = "\n\n"
        for line in block.split("\n"):
            if line and not line.isspace():
                if not is_collapsed(line):
                    line = " ".join(line.split())
                out.append((separator, line))
                separator = "\n"
    return out


def paragraph_chunks(segments: list[tuple[str, str]], long: list[int], scripts: dict[int, str | None],
                     max_chars: int) -> list[list[int]]:
    """Runs of two or more indices in ``long`` (segments to identify) of one paragraph, with one script, at
    most ``max_chars`` characters together (joined by spaces). A paragraph starts at a ``"\\n\\n"`` separator."""
    chunks: list[list[int]] = []
    current: list[int] = []
    size, paragraph, paragraph_of = 0, -1, []
    for sep, _ in segments:
        paragraph += sep == "\n\n"
        paragraph_of.append(paragraph)
    for i in long:
        length = len(segments[i][1])
        if current and (paragraph_of[i] != paragraph_of[current[-1]] or scripts[i] != scripts[current[-1]]
                        or size + 1 + length > max_chars):
            chunks.append(current)
            current, size = [], 0
        if length <= max_chars:
            current.append(i)
            size += length + (1 if size else 0)
    if current:
        chunks.append(current)
    return [chunk for chunk in chunks if len(chunk) > 1]


def cut_at_space(text: str, limit: int) -> str:
    """The first ``limit`` characters of ``text``, shortened to the last space in their final quarter (no
    broken word at the end); text without such a space (Chinese, Thai...) is cut at ``limit``."""
    space = text.rfind(" ", limit * 3 // 4, limit + 1)
    return text[:space] if space > 0 else text[:limit]


def label_prediction(text: str, prediction: list[tuple[str, float]] | None, languages: frozenset[str],
                     min_chars: int, min_score: float,
                     min_scores: dict[str, float] | None = None) -> tuple[str, float, str | None]:
    """``(label, score, top_code)`` of a segment from the identifier's prediction (``None``: not identified):
    label is a kept language code or a drop reason. A segment shorter than ``min_chars`` is not identified
    (too little evidence); ``min_scores`` overrides ``min_score`` per language."""
    if len(text) < min_chars:
        return _SHORT, 0.0, None
    if not prediction:
        return _LOW, 0.0, None
    code, score = prediction[0]
    if code not in languages:
        return _OTHER, score, code
    if score < (min_scores or {}).get(code, min_score):
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
            current = None if label in (_OTHER, _LOW, _WEAK) else Span(label)
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


def record_line(record: dict) -> str:
    """A record's line in a shard's or the corpus's JSONL file (UTF-8 text, not escaped to ASCII)."""
    return json.dumps(record, ensure_ascii=False) + "\n"


def hit_rate(text: str, wordlist: frozenset[str]) -> float:
    """Share of the words of ``text`` (NFKC, casefolded; see :mod:`workbench.text`) that are in ``wordlist``."""
    words = unicode_words(nfkc(text), casefold=True)
    return sum(1 for w in words if w in wordlist) / len(words) if words else 0.0


def read_wordlist(path: Path, limit: int | None = None) -> frozenset[str]:
    """Words of a wordlist file: one word (optionally followed by a count) per line, casefolded."""
    words = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if parts:
            words.append(nfkc(parts[0]).casefold())
    return frozenset(words[:limit] if limit else words)


class _JsonlSinks:
    """One temporary JSONL file per language, renamed into place on commit."""

    def __init__(self, out_dir: Path, languages: Iterable[str]) -> None:
        self.out_dir = out_dir
        self.handles: dict[str, tuple[str, IO[str]]] = {}
        for code in languages:
            fd, tmp = tempfile.mkstemp(prefix=f".{code}.jsonl.", suffix=".tmp", dir=out_dir)
            self.handles[code] = (tmp, os.fdopen(fd, "w", encoding="utf-8"))

    def write(self, record: dict) -> None:
        self.handles[record["language"]][1].write(record_line(record))

    def write_line(self, language: str, line: str) -> None:
        """Write a record already encoded (:meth:`write`'s line)."""
        self.handles[language][1].write(line)

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


MIN_SCORE = 0.5
"""Default language-ID score a segment needs to be kept (crawl stage ``min_score``, ``lid-eval --min-score``)."""


@dataclass(frozen=True)
class CrawlSettings:
    """What a shard worker needs besides the identifier (picklable)."""

    languages: tuple[str, ...]
    min_chars: int = 20
    min_score: float = MIN_SCORE
    quality: QualityConfig | None = None
    extractor: str = "resiliparse"
    extract_timeout: float = 10.0
    dropped_samples: int = 2
    min_scores: dict[str, float] = field(default_factory=dict)
    wordlist: frozenset[str] = frozenset()  # target words for the hit-rate prefilter (empty: no prefilter)
    min_hit_rate: float = 0.0
    chunk_score: float = 0.9  # a paragraph chunk this sure stands for its lines (1.0: every line on its own)
    chunk_chars: int = 1000  # longest chunk (characters); fastText reads at most 1,000
    prefix_chars: int = 160  # a longer line is identified on its beginning first (0: always whole)
    batch_docs: int = 64  # documents identified together (the identifier's per-call work is shared) ...
    batch_chars: int = 500_000  # ... or fewer, once their text reaches this many characters
    near_dedup: tuple[int, int, int] | None = None  # signatures to compute: NearDeduplicator.hashing (None: none)
    # rare languages (seed languages the general identifier does not know, e.g. the target): a line labelled one
    # needs the evidence rules and the support of its document (see ShardProcessor.check_rare)
    rare_languages: frozenset[str] = frozenset()
    evidence: EvidenceRules = field(default_factory=EvidenceRules)
    rare_doc_lines: int = 2  # lines of a rare language a document needs (fewer if it has few identified lines)
    rare_doc_share: float = 0.2  # ... or this share of its identified lines, whichever is fewer


class ShardProcessor:
    """Extraction, language identification and quality filtering of documents, into per-language files."""

    def __init__(self, settings: CrawlSettings, identifier: LanguageIdentifier, out_dir: Path) -> None:
        self.settings, self.identifier, self.out_dir = settings, identifier, Path(out_dir)
        self.languages = frozenset(settings.languages)
        self.extract = make_extractor(settings.extractor, settings.extract_timeout)
        self.bad = CrawlStats()  # problems with documents this shard owns (reader problems are counted apart)
        self.dropped: Counter = Counter()
        self.identified: Counter = Counter()
        self.read = 0
        self.samples: dict[str, list[str]] = {}
        self._handles: dict[str, IO[str]] = {}
        self._pending: list[tuple[tuple[str, int, str | None], str]] = []  # ((source, offset, url), text)
        self._pending_chars = 0
        self.seconds: Counter = Counter()  # time spent per phase: extract, identify, filter (and write), dedup
        self.exact = ExactDeduplicator()
        self.near = None
        if settings.near_dedup is not None:
            num_perm, shingle, seed = settings.near_dedup
            self.near = NearDeduplicator(num_perm=num_perm, shingle=shingle, seed=seed)

    def document_text(self, doc: RawDocument) -> str | None:
        if doc.html is None:
            return doc.text
        try:
            return self.extract(doc.html, doc.charset)
        except DataError as exc:
            kind = "extraction_timeout" if "timed out" in str(exc) else "undecodable"
            self.bad.bad(kind, doc.source, doc.offset, str(exc))
        except (ValueError, RuntimeError, UnicodeError) as exc:
            self.bad.bad("extraction_failed", doc.source, doc.offset, str(exc))
        return None

    def spans(self, text: str) -> list[Span]:
        """The kept-language spans of one document's text."""
        return self.spans_many([text])[0]

    def spans_many(self, texts: list[str]) -> list[list[Span]]:
        """:meth:`spans` of several documents, their segments identified in one batch."""
        documents = [split_segments(text) for text in texts]
        out = []
        languages, settings, tops, rare = self.languages, self.settings, [], self.settings.rare_languages
        chunked: list[set[int]] = [set() for _ in documents]
        for segments, predictions, in_chunk in zip(documents, self.identify_many(documents, chunked), chunked,
                                                   strict=True):
            labels, rare_rows = [], []
            for i, (_, segment) in enumerate(segments):
                label, score, top = label_prediction(segment, predictions.get(i), languages, settings.min_chars,
                                                     settings.min_score, settings.min_scores)
                tops.append(top)
                labels.append((label, score))
                if label in rare:
                    rare_rows.append(i)
            if rare_rows:
                self.check_rare(segments, predictions, in_chunk, labels, rare_rows)
            out.append(group_spans(segments, labels, self.dropped))
        self.identified.update(top for top in tops if top is not None)
        return out

    def check_rare(self, segments: list[tuple[str, str]], predictions: dict[int, Prediction], in_chunk: set[int],
                   labels: list[tuple[str, float]], rows: list[int]) -> None:
        """Relabel ``weak_evidence`` (in ``labels``) the ``rows`` labelled a rare language without enough evidence:
        a line identified on its own needs :class:`EvidenceRules` (a chunk's lines had them checked on the chunk,
        :meth:`chunk_is_clear`), and a rare language needs ``rare_doc_lines`` lines of the document (or
        ``rare_doc_share`` of its identified lines, whichever is fewer): on the web a lone target line in a page of
        another language is far more often a name, an address or a neighbour's sentence than the target."""
        settings = self.settings
        for i in rows:
            if i not in in_chunk and not settings.evidence.holds(segments[i][1], predictions[i]):
                labels[i] = (_WEAK, labels[i][1])
        identified = sum(1 for label, _ in labels if label != _SHORT)
        needed = min(settings.rare_doc_lines, math.ceil(settings.rare_doc_share * identified))
        support = Counter(labels[i][0] for i in rows)
        for i in rows:
            if labels[i][0] != _WEAK and support[labels[i][0]] < needed:
                labels[i] = (_WEAK, labels[i][1])

    def identify(self, segments: list[tuple[str, str]]) -> dict[int, Prediction]:
        """The prediction of every segment of at least ``min_chars`` characters, by index, chunk first: the
        long lines of a paragraph (up to ``chunk_chars`` characters, all in one script) are identified together,
        and a chunk whose top language scores at least ``chunk_score`` (and its language's own threshold)
        gives its prediction to each of its lines. The lines of an uncertain chunk, a paragraph that mixes
        scripts, single-line paragraphs and every line of a text without blank lines are identified one by one
        (a line longer than ``prefix_chars`` on its beginning first, see the module docstring)."""
        return self.identify_many([segments])[0]

    def identify_many(self, documents: list[list[tuple[str, str]]],
                      chunked: list[set[int]] | None = None) -> list[dict[int, Prediction]]:
        """:meth:`identify` of several documents' segments: the chunks of all of them go to the identifier in
        one call, then the lines still unidentified in another (the identifier's per-call work is shared).
        ``chunked``: one set per document, filled with the indices of lines labelled by their chunk."""
        longs = [[i for i, (_, segment) in enumerate(segments) if len(segment) >= self.settings.min_chars]
                 for segments in documents]
        found = iter(dominant_scripts([documents[d][i][1] for d, long in enumerate(longs) for i in long]))
        scripts = [{i: next(found) for i in long} for long in longs]
        predictions: list[dict[int, Prediction]] = [{} for _ in documents]
        self._identify_chunks(documents, longs, scripts, predictions)
        if chunked is not None:
            for d, found_here in enumerate(predictions):
                chunked[d].update(found_here)
        rest = [(d, i) for d, long in enumerate(longs) for i in long if i not in predictions[d]]
        lines = self._identify_lines([documents[d][i][1] for d, i in rest], [scripts[d][i] for d, i in rest])
        for (d, i), prediction in zip(rest, lines, strict=True):
            predictions[d][i] = prediction
        return predictions

    def _identify_chunks(self, documents: list[list[tuple[str, str]]], longs: list[list[int]],
                         scripts: list[dict[int, str | None]], predictions: list[dict[int, Prediction]]) -> None:
        """Give each line of a clear paragraph chunk the chunk's prediction (into ``predictions``)."""
        if self.settings.chunk_score >= 1:
            return
        chunks: list[tuple[int, list[int]]] = []
        for d, segments in enumerate(documents):
            # without any blank line (WET, trafilatura, one-paragraph-per-line text) a line is the only
            # paragraph evidence there is: every line is identified on its own
            if any(sep == "\n\n" for sep, _ in segments[1:]):
                chunks += [(d, chunk) for chunk in paragraph_chunks(segments, longs[d], scripts[d],
                                                                    self.settings.chunk_chars)]
        texts = [" ".join(documents[d][i][1] for i in chunk) for d, chunk in chunks]
        chunk_scripts = [scripts[d][chunk[0]] for d, chunk in chunks]
        for (d, chunk), text, prediction in zip(chunks, texts, self._predict(texts, chunk_scripts), strict=True):
            if self.chunk_is_clear(prediction, text):
                predictions[d].update(dict.fromkeys(chunk, prediction))

    def _identify_lines(self, texts: list[str], scripts: list[str | None]) -> list[Prediction]:
        """Each line on its own; one longer than ``prefix_chars`` on its beginning first, and again whole only
        if its beginning is not clear (:meth:`chunk_is_clear`)."""
        prefix = self.settings.prefix_chars
        cut = [bool(prefix) and len(text) > prefix for text in texts]
        heads = [cut_at_space(text, prefix) if long else text for text, long in zip(texts, cut, strict=True)]
        out = self._predict(heads, scripts)
        unclear = [k for k, (long, head, prediction) in enumerate(zip(cut, heads, out, strict=True))
                   if long and not self.chunk_is_clear(prediction, head)]
        again = self._predict([texts[k] for k in unclear], [scripts[k] for k in unclear])
        for k, prediction in zip(unclear, again, strict=True):
            out[k] = prediction
        return out

    def _predict(self, texts: list[str], scripts: list[str | None]) -> list[Prediction]:
        """The identifier's predictions of ``texts``, each distinct text asked about once (a batch of pages
        repeats its sites' menus, footers and cookie notices); a repeat gets the same prediction object."""
        wanted = list(zip(texts, scripts, strict=True))
        distinct = list(dict.fromkeys(wanted))
        if len(distinct) == len(wanted):
            return predict_batch(self.identifier, texts, scripts)
        found = dict(zip(distinct, predict_batch(self.identifier, [text for text, _ in distinct],
                                                 [script for _, script in distinct]), strict=True))
        return [found[key] for key in wanted]

    def chunk_is_clear(self, prediction: Prediction, text: str | None = None) -> bool:
        """True if a chunk's prediction is confident enough to stand for each of its lines (a rare language's also
        needs :class:`EvidenceRules` on the chunk's ``text``, when given)."""
        if not prediction:
            return False
        code, score = prediction[0]
        bar = self.settings.min_scores.get(code, self.settings.min_score) if code in self.languages else 0.0
        if score < max(self.settings.chunk_score, bar):
            return False
        return text is None or code not in self.settings.rare_languages or self.settings.evidence.holds(text,
                                                                                                         prediction)

    def process(self, doc: RawDocument) -> None:
        """Extract ``doc`` now; identify and filter it with the next batch (:meth:`flush`, :meth:`close`)."""
        self.read += 1
        start = time.perf_counter()
        text = self.document_text(doc)
        self.seconds["extract"] += time.perf_counter() - start
        if not text or not text.strip():
            self.dropped["no_text"] += 1
            return
        if self.settings.wordlist and hit_rate(text, self.settings.wordlist) < self.settings.min_hit_rate:
            self.dropped["prefilter"] += 1  # too few target words to be worth identifying line by line
            return
        self._pending.append(((doc.source, doc.offset, doc.url), text))
        self._pending_chars += len(text)
        if len(self._pending) >= self.settings.batch_docs or self._pending_chars >= self.settings.batch_chars:
            self.flush()

    def flush(self) -> None:
        """Identify, filter and write the documents waiting for a batch, in the order they came."""
        pending, self._pending, self._pending_chars = self._pending, [], 0
        if not pending:
            return
        quality = self.settings.quality
        start = time.perf_counter()
        batch = self.spans_many([text for _, text in pending])
        self.seconds["identify"] += time.perf_counter() - start
        start = time.perf_counter()
        found = [(where, span, span.text) for (where, _), spans in zip(pending, batch, strict=True) for span in spans]
        texts = [text for _, _, text in found]
        judged = (judge_many(texts, [quality.for_language(span.language) for _, span, _ in found])
                  if quality is not None else [(None, count_words(text)) for text in texts])
        kept = []
        for ((source, offset, url), span, span_text), (rule, words) in zip(found, judged, strict=True):
            if rule is not None:
                reason = f"quality:{rule}"
                self.dropped[reason] += 1
                samples = self.samples.setdefault(f"{span.language}|{reason}", [])
                if len(samples) < self.settings.dropped_samples:
                    samples.append(span_text[:400])
                continue
            kept.append(({"text": span_text, "language": span.language, "score": round(span.score, 4),
                          "source": source, "offset": offset, "url": url}, words))
        self.seconds["filter"] += time.perf_counter() - start
        start = time.perf_counter()
        hashes = self.merge_hashes_many([record["text"] for record, _ in kept], [words for _, words in kept])
        for (record, _), merge in zip(kept, hashes, strict=True):
            record[MERGE_FIELD] = merge
        self.seconds["dedup"] += time.perf_counter() - start
        start = time.perf_counter()
        for record, _ in kept:
            self._sink(record["language"]).write(record_line(record))
        self.seconds["filter"] += time.perf_counter() - start

    def merge_hashes(self, text: str, words: int) -> dict:
        """What the deduplication pass needs of a kept text, computed here, in parallel with other shards:
        the digest of its normalised text, its MinHash signature (base64 of little-endian uint32 values; if
        near dedup is on) and its word count."""
        return self.merge_hashes_many([text], [words])[0]

    def merge_hashes_many(self, texts: list[str], words: list[int]) -> list[dict]:
        """:meth:`merge_hashes` of many texts (their signatures computed together)."""
        norms = [normalize_for_dedup(text) for text in texts]
        out = [{"key": self.exact.key(norm, normalized=True).hex(), "words": count}
               for norm, count in zip(norms, words, strict=True)]
        if self.near is not None:
            signatures = self.near.signature_values_many(norms, normalized=True).astype("<u4")
            for entry, values in zip(out, signatures, strict=True):
                entry["minhash"] = base64.b64encode(values.tobytes()).decode("ascii")
        return out

    def _sink(self, code: str) -> IO[str]:
        if code not in self._handles:
            self._handles[code] = open(self.out_dir / f"{code}.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        return self._handles[code]

    def close(self) -> None:
        """Process the last batch, then close the output files and the extractor."""
        try:
            self.flush()
        finally:
            self._close_files()

    def _close_files(self) -> None:
        for handle in self._handles.values():
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        self._handles = {}
        close = getattr(self.extract, "close", None)
        if close is not None:
            close()

    def stats(self, shard, reader: CrawlStats) -> dict:
        """Counters of this shard; problems found while reading the file are reported by part 0 only when
        every part reads all of it (interleaved parts), by each part when parts are byte ranges."""
        own_reader = shard.part == 0 or shard.ranged
        parts = ([reader] if own_reader else []) + [self.bad]
        by_kind: Counter = Counter()
        for part in parts:
            by_kind.update(part.bad_input_by_kind)
        total = sum(part.bad_input_total for part in parts)
        locations = [entry for part in parts for entry in part.bad_input][: self.bad.max_logged]
        bad = {"total": total, "by_kind": dict(sorted(by_kind.items())), "locations": locations,
               "locations_truncated": total > len(locations),
               "skipped_bytes": sum(part.skipped_bytes for part in parts)}
        skipped = dict(reader.skipped) if own_reader else {}
        decoding = getattr(self.extract, "decoding", None)  # (an extractor swapped in may count nothing)
        return {"source": shard.path, "part": shard.part, "parts": shard.parts, "documents_read": self.read,
                "dropped": dict(self.dropped), "identified": dict(self.identified), "skipped": skipped,
                "bad_input": bad, "dropped_samples": self.samples,
                "charset_guessed": dict(decoding.charset_guessed) if decoding else {},
                "replacement_characters": dict(decoding.replacement_characters) if decoding else {},
                "seconds": {phase: round(value, 3) for phase, value in self.seconds.items()}}


_MERGE_MEMBER = f', "{MERGE_FIELD}": {{'


def _without_merge_field(line: str) -> str | None:
    """A shard's line of a record (:func:`record_line` of it, ``MERGE_FIELD`` its last member) without that member:
    the line :func:`record_line` gives the record once it is popped (no string in the line can hold the member's
    opening, whose quotes would be escaped); None if the line does not end so."""
    cut = line.rfind(_MERGE_MEMBER)
    return line[:cut] + "}\n" if cut > 0 and line.endswith("}}\n") else None


@dataclass
class _Merge:
    """The deduplication pass over every shard's candidate records, in shard order."""

    languages: list[str]
    near: NearDeduplicator | None
    excluded: frozenset[bytes]
    card: CardBuilder
    dedup: ExactDeduplicator = field(default_factory=ExactDeduplicator)
    dropped: Counter = field(default_factory=Counter)
    per_language: dict = field(default_factory=dict)
    kept_per_input: Counter = field(default_factory=Counter)

    def run(self, results: list[ShardResult], sinks: _JsonlSinks) -> None:
        for result in results:
            for key, texts in result.stats.get("dropped_samples", {}).items():
                code, reason = key.split("|", 1)
                for text in texts:
                    self.card.drop(code, reason, text)
            for code in self.languages:
                for line, record in result.record_lines(code):
                    self.add(record, sinks, line)

    def add(self, record: dict, sinks: _JsonlSinks, line: str | None = None) -> None:
        """Keep ``record`` (a shard's candidate; ``line``: its JSON line, if read from one) or count its drop."""
        text, code = record["text"], record["language"]
        hashes = record.pop(MERGE_FIELD, None)
        reason = self.drop_reason(text, code, hashes)
        if reason is not None:
            self.dropped[reason] += 1
            self.card.drop(code, reason, text)
            return
        kept_line = _without_merge_field(line) if line is not None and hashes is not None else None
        if kept_line is not None:
            sinks.write_line(code, kept_line)
        else:
            sinks.write(record)
        self.card.keep(record)
        entry = self.per_language.setdefault(code, {"docs": 0, "chars": 0, "bytes": 0, "words": 0})
        entry["docs"] += 1
        entry["chars"] += len(text)
        entry["bytes"] += len(text.encode("utf-8"))
        entry["words"] += hashes["words"] if hashes is not None else count_words(text)
        self.kept_per_input[record["source"]] += 1

    def drop_reason(self, text: str, language: str, hashes: dict | None = None) -> str | None:
        """Why a candidate is not kept (exclusion list, exact duplicate, near duplicate), or None; ``hashes``:
        its digest and signature computed by the shard worker (:meth:`ShardProcessor.merge_hashes`), if any."""
        norm = None
        if hashes is not None and not self.dedup.ignore_punctuation:
            key = bytes.fromhex(hashes["key"])
        else:
            norm = normalize_for_dedup(text, self.dedup.ignore_punctuation)  # once, for all three checks
            key = self.dedup.key(norm, normalized=True)
        if self.excluded and key in self.excluded:
            return "excluded"
        if self.dedup.seen_key(key):
            return "duplicate"
        if self.near is None:
            return None
        encoded = hashes.get("minhash") if hashes is not None else None
        values = np.frombuffer(base64.b64decode(encoded), dtype="<u4") if encoded is not None else None
        if values is not None and len(values) == self.near.num_perm:
            duplicate = self.near.duplicate_of_signature(values.astype(np.uint32), language)
        else:
            norm = norm if norm is not None else normalize_for_dedup(text, self.dedup.ignore_punctuation)
            duplicate = self.near.duplicate_of(norm, language, normalized=True)
        return "near_duplicate" if duplicate is not None else None


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
    min_score: float = MIN_SCORE,
    quality: QualityConfig | None = None,
    near_dedup: NearDeduplicator | None = None,
    exclude: Iterable[str] = (),
    extractor: str = "resiliparse",
    extract_timeout: float = 10.0,
    min_scores: dict[str, float] | None = None,
    prefilter: tuple[frozenset[str], float] | None = None,
    executor: str = "serial",
    processes: int | None = 1,
    shard_dir: Path | None = None,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
    seed: int = 0,
    progress: bool = True,
    chunk_score: float = 0.9,
    parquet: bool = False,
    target: str | None = None,
) -> dict:
    """Crawl ``inputs`` into ``out_dir/<code>.jsonl`` (one per code in ``languages``, possibly
    empty), ``out_dir/stats.json`` and the data card ``out_dir/card.{json,md}``; returns the stats.

    Input languages are never guessed from file names: every segment goes through ``identifier``.
    ``exclude``: texts (e.g. documents a linguist marked bad) never to keep, matched after normalisation
    as for exact dedup. Shards run on ``executor``: ``serial``, ``local`` (``processes`` processes; None: the CPU
    count, at most one per shard) or ``ray``; with ``shard_dir`` their outputs survive a crash and finished
    shards are not redone.
    ``chunk_score``: how sure the identifier must be of a paragraph for its lines not to be identified one
    by one (1.0: every line on its own). ``parquet``: also write ``out_dir/<code>.parquet``, the same records
    (:mod:`workbench.crawl.parquet`). ``target``: the language the crawl is for; the data card warns when another
    language's corpus comes mostly from the target's own input files.
    """
    inputs = [Path(p) for p in inputs]
    _check_arguments(inputs, languages, min_chars, min_score)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = CrawlSettings(tuple(languages), min_chars, min_score, quality, extractor, extract_timeout,
                             min_scores=dict(min_scores or {}),
                             wordlist=prefilter[0] if prefilter else frozenset(),
                             min_hit_rate=prefilter[1] if prefilter else 0.0, chunk_score=chunk_score,
                             near_dedup=near_dedup.hashing if near_dedup is not None else None,
                             rare_languages=frozenset(getattr(identifier, "rare", ())) & frozenset(languages))
    shards = plan_shards(inputs, max_shard_bytes)
    if processes is None:
        processes = max(1, min(os.cpu_count() or 1, len(shards)))
    shard_root = Path(shard_dir) if shard_dir is not None else out_dir / ".shards"
    merge = _Merge(sorted(set(languages)), near_dedup, frozenset(ExactDeduplicator().key(t) for t in exclude),
                   CardBuilder(seed=seed, target=target))
    sinks = _JsonlSinks(out_dir, sorted(set(languages)))
    results: list[ShardResult] = []
    dedup_seconds = 0.0
    try:
        with tqdm(total=len(shards), desc="crawl", unit="shard", disable=not progress) as bar, frozen_heap():
            for result in iter_shards(shards, settings, identifier, shard_root, executor=executor,
                                      processes=processes, on_done=lambda _: bar.update()):
                start = time.perf_counter()  # deduplicated in shard order, while later shards still run
                merge.run([result], sinks)
                dedup_seconds += time.perf_counter() - start
                results.append(result)
        sinks.commit()
    finally:
        sinks.abort()
    for code in sorted(set(languages)):
        if parquet:
            from .parquet import jsonl_to_parquet

            jsonl_to_parquet(out_dir / f"{code}.jsonl", out_dir / f"{code}.parquet")
        else:  # a copy from an earlier run would no longer hold the corpus just written
            (out_dir / f"{code}.parquet").unlink(missing_ok=True)
    stats = _stats(settings, identifier, merge, results, inputs, executor, processes, dedup_seconds)
    stats["warnings"] = merge.card.source_warnings()
    atomic_write_json(out_dir / "stats.json", stats)
    merge.card.write(out_dir, stats)
    if shard_dir is None:
        shutil.rmtree(shard_root, ignore_errors=True)
    return stats


def _general_name(identifier: LanguageIdentifier) -> str | None:
    """The identifier's general model in words (``none (...)`` says why there is none), if it combines one."""
    describe = getattr(identifier, "describe", None)
    return describe() if describe is not None else None


def _stats(settings: CrawlSettings, identifier: LanguageIdentifier, merge: _Merge, results: list[ShardResult],
           inputs: list[Path], executor: str, processes: int, dedup_seconds: float) -> dict:
    empty = {"docs": 0, "chars": 0, "bytes": 0, "words": 0}
    read: Counter = Counter()
    for result in results:
        read[result.shard.path] += result.stats.get("documents_read", 0)
    dropped = merge_counters(results, "dropped") + merge.dropped
    seconds = merge_counters(results, "seconds")
    seconds["dedup"] += dedup_seconds  # the shards' share (digests, signatures) and the deduplication pass
    return {
        "settings": {"languages": list(settings.languages), "min_chars": settings.min_chars,
                     "min_score": settings.min_score, "min_scores": settings.min_scores,
                     "chunk_score": settings.chunk_score,
                     "identifier": type(identifier).__name__,
                     "general_identifier": _general_name(identifier),
                     "rare_languages": sorted(settings.rare_languages),
                     "extractor": settings.extractor, "executor": executor, "shards": len(results),
                     "processes": 1 if executor == "serial" else processes},
        "inputs": {str(p): {"documents_read": read[str(p)], "documents_kept": merge.kept_per_input[str(p)]}
                   for p in inputs},
        "documents_read": sum(read.values()),
        "languages": {code: dict(merge.per_language.get(code, empty)) for code in sorted(set(settings.languages))},
        "dropped": {**{reason: dropped[reason] for reason in DROP_REASONS},
                    **{r: n for r, n in sorted(dropped.items()) if r not in DROP_REASONS}},
        "near_dedup": ({"threshold": merge.near.threshold, "num_perm": merge.near.num_perm,
                        "cluster_sizes": merge.near.cluster_histogram()} if merge.near is not None else None),
        "identified": dict(merge_counters(results, "identified").most_common()),
        "skipped_records": dict(sorted(merge_counters(results, "skipped").items())),
        "bad_input": merge_bad_input(results),
        # pages that declared no charset and were not UTF-8, by the code page chosen; pages left with U+FFFD
        "charset_guessed": dict(sorted(merge_counters(results, "charset_guessed").items())),
        "replacement_characters": {"pages": 0, "characters": 0, **merge_counters(results, "replacement_characters")},
        # where the time went, summed over shards (a reused shard reports the time it took when it ran)
        "seconds": {phase: round(value, 2) for phase, value in seconds.items()},
    }
