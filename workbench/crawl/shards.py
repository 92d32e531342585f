"""Crawl shards and the engines that run them: in-process, local processes, or Ray.

A **shard** is one input file, or one of ``parts`` pieces of a big file: a **byte range** of a gzipped
WARC/WET file written one gzip member per record (the records starting in it; each range reads only its
own bytes), else an interleaved slice (the documents whose index ``i`` has ``i % parts == part``: every
slice reads the file, and extracts and identifies only its own documents). Processing a shard is one pure
function (:func:`process_shard`: shard + settings + identifier → candidate records per language +
stats, by a :class:`~workbench.crawl.processor.ShardProcessor`) whose output directory is renamed into place
when complete, so a re-run skips finished shards.
Deduplication compares every shard's records with those of the shards before it, so it runs in
shard order, on each shard as soon as it and all earlier ones are done, while later shards still run (see
:func:`iter_shards` and :func:`workbench.crawl.pipeline.run_crawl`).

Executors: ``serial`` (this process), ``local`` (this process and ``processes - 1`` worker processes) and ``ray``
(tasks on a Ray cluster: ``ray.init()`` joins the cluster named by ``RAY_ADDRESS``, or starts a local
instance with ``processes`` CPUs). The workbench never runs a cluster of its own.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import multiprocessing
import os
import queue
import shutil
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..io import atomic_write_json, stable_hash
from ..lifetime import exit_with_parent
from ..optional import require
from .langid import LanguageIdentifier, TargetAwareIdentifier
from .processor import CrawlSettings, ShardProcessor
from .readers import CrawlStats, iter_documents, record_ranges_possible

EXECUTORS = ("serial", "local", "ray")
SHARD_STATS = "stats.json"
IDENTIFIER_DIR = "identifier"
DEFAULT_SHARD_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Shard:
    """Part ``part`` of ``parts`` of one input file: its byte range (``ranged``) or its documents
    ``i % parts == part``."""

    path: str
    part: int = 0
    parts: int = 1
    ranged: bool = False

    @property
    def key(self) -> str:
        """A directory name unique to the file (path, size, modification time) and the part."""
        stat = Path(self.path).stat()
        digest = hashlib.sha256(f"{Path(self.path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
        return f"{Path(self.path).name}-{digest[:12]}-{self.part}of{self.parts}{'-bytes' if self.ranged else ''}"

    @property
    def byte_range(self) -> tuple[int, int] | None:
        """``[start, end)`` of a ranged shard (None for the others)."""
        if not self.ranged:
            return None
        size = Path(self.path).stat().st_size
        return self.part * size // self.parts, (self.part + 1) * size // self.parts

    def owns(self, index: int) -> bool:
        """Whether the ``index``-th document read (of the range, or of the whole file) is this shard's."""
        return self.ranged or index % self.parts == self.part


def plan_shards(inputs: Sequence[Path], max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> list[Shard]:
    """One shard per input file; a file above ``max_shard_bytes`` is cut into that many parts: byte ranges if
    it can be read by range (:func:`~workbench.crawl.readers.record_ranges_possible`), else interleaved."""
    shards = []
    for path in inputs:
        size = Path(path).stat().st_size if Path(path).exists() else 0
        parts = max(1, math.ceil(size / max_shard_bytes))
        ranged = parts > 1 and record_ranges_possible(Path(path))
        shards += [Shard(str(path), part, parts, ranged) for part in range(parts)]
    return shards


@dataclass
class ShardResult:
    """What one shard produced: counters (JSON-ready) and where its candidate records are."""

    shard: Shard
    directory: Path
    stats: dict[str, Any] = field(default_factory=dict)

    def record_lines(self, language: str) -> Iterator[tuple[str, dict]]:
        """The shard's candidate records of one language, streamed, each with its JSON line as the shard wrote it."""
        path = self.directory / f"{language}.jsonl"
        if not path.exists():
            return
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield line, json.loads(line)


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Leave the objects that exist now (models, modules) out of garbage collection until the block ends.

    A shard allocates millions of short-lived tuples and lists, which makes Python run full collections
    that rescan every long-lived object each time; frozen objects are not rescanned (``gc.freeze``). On
    exit they are unfrozen, so any of them that became garbage is collected as usual. Inside an already
    frozen heap (an outer block, or the application's own ``gc.freeze``) this does nothing."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def process_shard(shard: Shard, settings: CrawlSettings, identifier: LanguageIdentifier,
                  out_root: Path) -> dict[str, Any]:
    """Extract, identify and filter the documents of one shard into ``out_root/<shard key>/``.

    Writes ``<code>.jsonl`` (candidate records, before deduplication) and ``stats.json`` into a temporary
    directory renamed into place at the end; a shard already done is not redone. Returns the stats.
    """
    final = Path(out_root) / shard.key
    if (final / SHARD_STATS).is_file():
        return json.loads((final / SHARD_STATS).read_text(encoding="utf-8"))
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    processor = ShardProcessor(settings, identifier, tmp)
    stats = CrawlStats()
    try:
        with frozen_heap():
            for index, doc in enumerate(iter_documents(Path(shard.path), stats, shard.byte_range)):
                if shard.owns(index):
                    processor.process(doc)
            processor.flush()
    finally:
        processor.close()
    result = processor.stats(shard, stats)
    atomic_write_json(tmp / SHARD_STATS, result)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return result


_LOADED: dict[str, LanguageIdentifier] = {}


def process_shard_from_disk(shard: Shard, settings: CrawlSettings, identifier_dir: str,
                            out_root: str) -> dict[str, Any]:
    """:func:`process_shard` for a worker process: the identifier is loaded once per process from disk."""
    if identifier_dir not in _LOADED:
        _LOADED[identifier_dir] = TargetAwareIdentifier.load(Path(identifier_dir))
    return process_shard(shard, settings, _LOADED[identifier_dir], Path(out_root))


def iter_shards(shards: Sequence[Shard], settings: CrawlSettings, identifier: LanguageIdentifier, out_root: Path, *,
                executor: str = "serial", processes: int = 1,
                on_done: Callable[[Shard], None] | None = None) -> Iterator[ShardResult]:
    """Process every shard (finished ones are reused) with the chosen executor. Results come in shard order,
    each as soon as it and every shard before it are done: the caller can work on shard ``k`` (deduplicate it)
    while later shards are still running."""
    if executor not in EXECUTORS:
        raise DataError(f"unknown crawl executor '{executor}'; allowed: {', '.join(EXECUTORS)}")
    out_root = Path(out_root) / settings_key(settings)  # other settings never reuse these shards
    out_root.mkdir(parents=True, exist_ok=True)
    pending = [shard for shard in shards if not (out_root / shard.key / SHARD_STATS).is_file()]
    if executor == "serial" or (executor == "local" and (processes <= 1 or len(pending) <= 1)):
        finished = ((shard, process_shard(shard, settings, identifier, out_root)) for shard in shards)
    else:
        identifier_dir = _save_identifier(identifier, out_root)
        finished = (_run_local(shards, settings, identifier, identifier_dir, out_root, processes)
                    if executor == "local" else _run_ray(shards, settings, identifier_dir, out_root, processes))
    for shard, stats in in_shard_order(shards, finished, on_done):
        yield ShardResult(shard, out_root / shard.key, stats)


def in_shard_order(shards: Sequence[Shard], finished: Iterable[tuple[Shard, dict]],
                   on_done: Callable[[Shard], None] | None = None) -> Iterator[tuple[Shard, dict]]:
    """``(shard, stats)`` pairs that finish in any order, given back in the order of ``shards``: each as soon as
    it and every shard before it have finished (``on_done`` is called as each finishes)."""
    stats: dict[Shard, dict] = {}
    position = 0
    for shard, result in finished:
        stats[shard] = result
        if on_done is not None:
            on_done(shard)
        while position < len(shards) and shards[position] in stats:
            yield shards[position], stats.pop(shards[position])
            position += 1


def _save_identifier(identifier: LanguageIdentifier, out_root: Path) -> str:
    if not hasattr(identifier, "save"):
        raise DataError("the local and ray crawl executors need an identifier that can be saved "
                        "(the workbench's own); use executor: serial with a custom identifier")
    directory = out_root / IDENTIFIER_DIR
    shutil.rmtree(directory, ignore_errors=True)
    identifier.save(directory)
    return str(directory)


def _run_local(shards, settings, identifier, identifier_dir, out_root, processes):
    """``processes - 1`` worker processes and this one; whoever is free takes the first shard nobody has taken.
    This process starts at once (workers first start up and load the identifier) and takes the earliest
    shards, whose results the caller can use first; a worker is given its next shard the moment it finishes
    one, even while this process is busy."""
    context = multiprocessing.get_context("spawn")  # no forked copies of torch/tokenizer threads
    waiting = deque(shards)
    finished: queue.SimpleQueue = queue.SimpleQueue()  # (shard, future) of each shard a worker finished
    with ProcessPoolExecutor(max_workers=processes - 1, mp_context=context, initializer=exit_with_parent,
                             initargs=(os.getpid(),)) as pool:

        def feed() -> None:  # a worker is free (runs in the pool's thread when a worker finishes)
            try:
                shard = waiting.popleft()
                future = pool.submit(process_shard_from_disk, shard, settings, identifier_dir, str(out_root))
            except (IndexError, RuntimeError):  # nothing left, or the pool is shutting down after an error
                return
            future.add_done_callback(lambda f: (finished.put((shard, f)), feed()))

        try:
            for _ in range(processes - 1):
                feed()
            given = 0
            while given < len(shards):
                try:
                    mine = waiting.popleft()
                except IndexError:
                    mine = None
                if mine is not None:
                    yield mine, process_shard(mine, settings, identifier, out_root)
                    given += 1
                block = mine is None  # nothing left to take: wait for a worker
                while given < len(shards):
                    try:
                        shard, future = finished.get(block=block)
                    except queue.Empty:
                        break
                    block = False
                    yield shard, future.result()
                    given += 1
        finally:
            waiting.clear()  # after an error, no worker starts another shard


def _run_ray(shards, settings, identifier_dir, out_root, processes):
    ray = require("ray", "executor 'ray'")
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        kwargs = {} if address else {"num_cpus": processes, "include_dashboard": False}
        ray.init(address=address, log_to_driver=False, configure_logging=False, **kwargs)
    task = ray.remote(process_shard_from_disk)
    pending = {task.remote(s, settings, identifier_dir, str(out_root)): s for s in shards}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            yield pending.pop(ref), ray.get(ref)


def merge_counters(results: Sequence[ShardResult], key: str) -> Counter:
    total: Counter = Counter()
    for result in results:
        total.update(result.stats.get(key, {}))
    return total


def merge_bad_input(results: Sequence[ShardResult], max_logged: int = 100) -> dict[str, Any]:
    """The bad-input reports of every shard as one (the same JSON shape as :meth:`CrawlStats.to_dict`)."""
    by_kind: Counter = Counter()
    locations: list[dict] = []
    total = skipped_bytes = 0
    for result in results:
        bad = result.stats.get("bad_input", {})
        total += bad.get("total", 0)
        skipped_bytes += bad.get("skipped_bytes", 0)
        by_kind.update(bad.get("by_kind", {}))
        locations += bad.get("locations", [])
    return {"total": total, "by_kind": dict(sorted(by_kind.items())), "locations": locations[:max_logged],
            "locations_truncated": total > min(len(locations), max_logged), "skipped_bytes": skipped_bytes}


def settings_key(settings: CrawlSettings) -> str:
    """A short, process-independent hash of the shard settings."""
    fields = {k: sorted(v) if isinstance(v, frozenset | set) else v for k, v in asdict(settings).items()}
    return stable_hash(fields)[:12]
