"""What a crawl shard does to its documents: extract the text, identify the language of every line, keep the
spans in the wanted languages, apply the quality filters (:mod:`workbench.crawl.filters`), and write the kept
records (each with what deduplication needs of it, ``MERGE_FIELD``) into one JSONL file per language.

Units: ``too_short``, ``other_language``, ``low_confidence`` and ``weak_evidence`` count segments (non-empty
lines of a document); ``no_text``, ``prefilter`` and ``quality:<rule>`` count documents.

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
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ..errors import DataError
from ..text import nfkc
from ..text import words as unicode_words
from .dedup import ExactDeduplicator, NearDeduplicator, normalize_for_dedup
from .extract import make_extractor
from .filters import QualityConfig, count_words, judge_many
from .langid import EvidenceRules, LanguageIdentifier, Prediction, dominant_scripts, predict_batch
from .readers import CrawlStats, RawDocument
from .segments import (
    TOO_SHORT,
    WEAK_EVIDENCE,
    Span,
    cut_at_space,
    group_spans,
    label_prediction,
    paragraph_chunks,
    split_segments,
)

MIN_SCORE = 0.5
"""Default language-ID score a segment needs to be kept (crawl stage ``min_score``, ``lid-eval --min-score``)."""
MERGE_FIELD = "_merge"  # in a shard's candidate records only: {"key", "words"[, "minhash"]} (see ShardProcessor)


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
                labels[i] = (WEAK_EVIDENCE, labels[i][1])
        identified = sum(1 for label, _ in labels if label != TOO_SHORT)
        needed = min(settings.rare_doc_lines, math.ceil(settings.rare_doc_share * identified))
        support = Counter(labels[i][0] for i in rows)
        for i in rows:
            if labels[i][0] != WEAK_EVIDENCE and support[labels[i][0]] < needed:
                labels[i] = (WEAK_EVIDENCE, labels[i][1])

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
