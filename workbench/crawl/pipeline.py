"""The crawl pipeline: read inputs, extract text, identify the language of every paragraph or
line, keep the spans in the wanted languages, apply the quality filters
(:mod:`workbench.crawl.filters`), then drop excluded documents, exact and near duplicates
(MinHash-LSH), write one JSONL file per language and a data card (:mod:`workbench.crawl.card`).

The first part runs per shard (:mod:`workbench.crawl.shards`: in-process, local processes or Ray; what a shard
does to its documents is :class:`~workbench.crawl.processor.ShardProcessor`), and so does the costly part of
deduplication: each candidate record carries its normalised-text digest, its MinHash signature and its word count
(``MERGE_FIELD``). Deduplication itself (comparing those) runs over the shards' outputs in order, so the result
does not depend on the executor, and that serial pass stays light.

Units: segment drops (``too_short``, ``other_language``, ``low_confidence``, ``weak_evidence``) and the shards'
document drops are described in :mod:`workbench.crawl.processor`; ``duplicate``, ``near_duplicate`` and
``excluded`` (listed in the exclusion file) count documents. Consecutive kept segments of one language form one
output document (:mod:`workbench.crawl.segments`).

One crawl's settings are one :class:`CrawlJob`: the :class:`CrawlSettings` every shard applies and how the whole
runs. :func:`run_crawl` takes it (the crawl stage builds it from its config), or the same settings as keywords.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
from tqdm import tqdm

from ..errors import DataError
from ..io import atomic_write_json
from ..languages import check_code
from .card import CardBuilder
from .dedup import ExactDeduplicator, NearDeduplicator, normalize_for_dedup
from .filters import count_words
from .langid import LanguageIdentifier
from .parquet import jsonl_to_parquet
from .processor import (
    MERGE_FIELD,
    MIN_SCORE,
    CrawlSettings,
    ShardProcessor,
    hit_rate,
    read_wordlist,
    record_line,
)
from .readers import input_format
from .segments import cut_at_space, paragraph_chunks, split_segments
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
# the shard worker's names are importable from here too (the crawl stage, the CLI and the benchmarks use them)
__all__ = [
    "DROP_REASONS", "MERGE_FIELD", "MIN_SCORE", "RECORD_FIELDS", "CrawlJob", "CrawlSettings", "ShardProcessor",
    "cut_at_space", "hit_rate", "paragraph_chunks", "read_wordlist", "run_crawl", "split_segments",
]


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



@dataclass(frozen=True)
class CrawlJob:
    """One crawl's settings besides its inputs, identifier and output folder: what every shard applies
    (``shard``: the languages, thresholds, filters and prefilter a worker gets; its ``near_dedup`` hashing and
    ``rare_languages`` are filled in by :func:`run_crawl` from ``near_dedup`` and the identifier), and how the whole
    crawl runs.

    ``near_dedup``: the near-duplicate detector of the merge (None: exact dedup only); ``exclude``: texts (e.g.
    documents a linguist marked bad) never to keep, matched after normalisation as for exact dedup. Shards run on
    ``executor``: ``serial``, ``local`` (``processes`` processes; None: the CPU count, at most one per shard) or
    ``ray``; with ``shard_dir`` their outputs survive a crash and finished shards are not redone.
    ``parquet``: also write ``<code>.parquet``, the same records (:mod:`workbench.crawl.parquet`). ``target``: the
    language the crawl is for; the data card warns when another language's corpus comes mostly from the target's
    own input files.
    """

    shard: CrawlSettings
    near_dedup: NearDeduplicator | None = None
    exclude: tuple[str, ...] = ()
    executor: str = "serial"
    processes: int | None = 1
    shard_dir: Path | None = None
    max_shard_bytes: int = DEFAULT_SHARD_BYTES
    seed: int = 0
    progress: bool = True
    parquet: bool = False
    target: str | None = None

    @classmethod
    def from_keywords(cls, languages: Sequence[str], *, min_scores: dict[str, float] | None = None,
                      prefilter: tuple[frozenset[str], float] | None = None, **keywords: Any) -> CrawlJob:
        """The job of :func:`run_crawl`'s keyword form: this class's fields and :class:`CrawlSettings` fields by name;
        ``prefilter``: ``(wordlist, min_hit_rate)`` (None: no prefilter)."""
        own = {f.name for f in fields(cls)} - {"shard"}
        shard = {name: value for name, value in keywords.items() if name not in own}
        if prefilter:
            shard.update(wordlist=prefilter[0], min_hit_rate=prefilter[1])
        settings = CrawlSettings(tuple(languages), min_scores=dict(min_scores or {}), **shard)
        return cls(settings, **{name: value for name, value in keywords.items() if name in own})


def run_crawl(inputs: list[Path], job: CrawlJob | Sequence[str], identifier: LanguageIdentifier, out_dir: Path,
              **keywords: Any) -> dict:
    """Crawl ``inputs`` into ``out_dir/<code>.jsonl`` (one per language of the job, possibly empty),
    ``out_dir/stats.json`` and the data card ``out_dir/card.{json,md}``; returns the stats.

    ``job``: the crawl's settings (:class:`CrawlJob`); or the languages to keep, with the other settings as
    ``keywords`` (:meth:`CrawlJob.from_keywords`: ``min_chars=5, near_dedup=NearDeduplicator(), executor="local"``...).
    Input languages are never guessed from file names: every segment goes through ``identifier``.
    """
    if not isinstance(job, CrawlJob):
        job = CrawlJob.from_keywords(job, **keywords)
    elif keywords:
        raise TypeError(f"run_crawl takes a CrawlJob or keyword settings, not both (got {sorted(keywords)})")
    inputs = [Path(p) for p in inputs]
    languages = list(job.shard.languages)
    _check_arguments(inputs, languages, job.shard.min_chars, job.shard.min_score)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = replace(job.shard, near_dedup=job.near_dedup.hashing if job.near_dedup is not None else None,
                       rare_languages=frozenset(getattr(identifier, "rare", ())) & frozenset(languages))
    shards = plan_shards(inputs, job.max_shard_bytes)
    processes = job.processes
    if processes is None:
        processes = max(1, min(os.cpu_count() or 1, len(shards)))
    shard_root = Path(job.shard_dir) if job.shard_dir is not None else out_dir / ".shards"
    merge = _Merge(sorted(set(languages)), job.near_dedup, frozenset(ExactDeduplicator().key(t) for t in job.exclude),
                   CardBuilder(seed=job.seed, target=job.target))
    sinks = _JsonlSinks(out_dir, sorted(set(languages)))
    results: list[ShardResult] = []
    dedup_seconds = 0.0
    try:
        with tqdm(total=len(shards), desc="crawl", unit="shard", disable=not job.progress) as bar, frozen_heap():
            for result in iter_shards(shards, settings, identifier, shard_root, executor=job.executor,
                                      processes=processes, on_done=lambda _: bar.update()):
                start = time.perf_counter()  # deduplicated in shard order, while later shards still run
                merge.run([result], sinks)
                dedup_seconds += time.perf_counter() - start
                results.append(result)
        sinks.commit()
    finally:
        sinks.abort()
    for code in sorted(set(languages)):
        if job.parquet:
            jsonl_to_parquet(out_dir / f"{code}.jsonl", out_dir / f"{code}.parquet")
        else:  # a copy from an earlier run would no longer hold the corpus just written
            (out_dir / f"{code}.parquet").unlink(missing_ok=True)
    stats = _stats(settings, identifier, merge, results, inputs, job.executor, processes, dedup_seconds)
    stats["warnings"] = merge.card.source_warnings()
    atomic_write_json(out_dir / "stats.json", stats)
    merge.card.write(out_dir, stats)
    if job.shard_dir is None:
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
