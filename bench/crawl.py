"""Benchmark: the crawl stage against a UnifiedCrawl-style baseline on the same WARC file and cores.

ours:      fastwarc reading + resiliparse extraction + language identification (paragraph chunks first,
           single lines where a chunk is uncertain) + quality filters + exact and MinHash near dedup
           (``run_crawl``, the code path of the recipe's crawl step), in 1 process, and in 2 (this process and
           a worker, the file cut into 4 byte ranges that whichever process is free takes);
baseline:  warcio reading + ``trafilatura.extract`` per document + the *same* identification, filters
           and dedup (the workbench's own code, so only reading and extraction differ).

Run:  python bench/crawl.py [--warc ../shared/data/warc/bench-webpages.warc.gz] [--limit N] [--repeat K]
                            [--scaling-copies C]
Scaling is also measured on a bigger input, ``C`` copies of the file end to end (default 4; 0: skip), where
the workers' start-up weighs less (the copies' documents are exact duplicates: the dedup pass drops them;
skipped with --limit).
Writes bench/results/crawl.json (docs/s, MB/s of .warc.gz, ratio, peak memory, 1 -> 2 process scaling, and
CPU seconds: on a shared machine wall time depends on the load, CPU time less so). Imports happen before timing;
each pipeline runs ``--repeat`` times (default 3) from scratch, the pipelines in turns (ours, ours on 2 processes,
the baseline, then again), and its fastest run counts; all runs are recorded.
The input is benchmark-only data (real web pages) and is never shipped.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workbench.crawl.card import CardBuilder  # noqa: E402
from workbench.crawl.dedup import NearDeduplicator  # noqa: E402
from workbench.crawl.filters import QualityConfig  # noqa: E402
from workbench.crawl.langid import train_identifier  # noqa: E402
from workbench.crawl.pipeline import CrawlSettings, ShardProcessor, _JsonlSinks, _Merge, run_crawl  # noqa: E402
from workbench.crawl.readers import RawDocument  # noqa: E402
from workbench.crawl.shards import Shard, ShardResult  # noqa: E402
from workbench.io import atomic_write_json  # noqa: E402

LANGUAGES = ["deu_Latn", "eng_Latn", "fra_Latn", "pol_Latn", "zho_Hans", "rus_Cyrl", "nld_Latn", "srd_Latn"]


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


def baseline(warc: Path, identifier, out: Path, limit: int | None) -> dict:
    """warcio + trafilatura.extract per page, then the workbench's identification, filters and dedup."""
    import trafilatura
    from warcio.archiveiterator import ArchiveIterator

    near = NearDeduplicator()
    settings = CrawlSettings(tuple(LANGUAGES), quality=QualityConfig(), near_dedup=near.hashing)
    shard_dir = out / "shard"
    shard_dir.mkdir(parents=True)
    processor = ShardProcessor(settings, identifier, shard_dir)
    # the page's bytes, as UnifiedCrawl passes them (trafilatura finds the charset itself)
    processor.extract = lambda html, charset: trafilatura.extract(html) or ""
    docs = 0
    with open(warc, "rb") as handle:
        for record in ArchiveIterator(handle):
            if record.rec_type != "response" or "html" not in (record.http_headers.get_header("Content-Type") or ""):
                continue
            docs += 1
            processor.process(RawDocument(source=str(warc), offset=docs, url=record.rec_headers.get_header(
                "WARC-Target-URI"), html=record.content_stream().read()))
            if limit and docs >= limit:
                break
    processor.close()
    from workbench.crawl.readers import CrawlStats

    result = ShardResult(Shard(str(warc)), shard_dir, processor.stats(Shard(str(warc)), CrawlStats()))
    merge = _Merge(LANGUAGES, near, frozenset(), CardBuilder())
    sinks = _JsonlSinks(out, LANGUAGES)
    start = time.perf_counter()
    merge.run([result], sinks)
    sinks.commit()
    seconds = processor.seconds
    seconds["dedup"] += time.perf_counter() - start  # (digests and signatures were computed with the shard)
    phases = {k: round(v, 2) for k, v in seconds.items()}
    return {"documents": docs, "kept": sum(v["docs"] for v in merge.per_language.values()), "phase_seconds": phases}


def ours(warc: Path, identifier, out: Path, processes: int, limit: int | None) -> dict:
    source = warc
    if limit:  # the same first pages as the baseline
        source = out.parent / f"first-{limit}.warc.gz"
        if not source.exists():
            _first_records(warc, source, limit)
    size = source.stat().st_size
    stats = run_crawl([source], LANGUAGES, identifier, out, quality=QualityConfig(), near_dedup=NearDeduplicator(),
                      executor="local" if processes > 1 else "serial", processes=processes,
                      max_shard_bytes=size // (2 * processes) + 1 if processes > 1 else size + 1,  # 2 parts a process
                      progress=False)
    return {"documents": stats["documents_read"], "kept": sum(v["docs"] for v in stats["languages"].values()),
            "phase_seconds": stats["seconds"]}


def _first_records(warc: Path, out: Path, limit: int) -> None:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    with open(warc, "rb") as handle:
        records = [(r.stream_pos, r.record_type) for r in ArchiveIterator(handle, parse_http=False)]
    responses = [i for i, (_, kind) in enumerate(records) if kind == WarcRecordType.response]
    end_index = responses[limit] if len(responses) > limit else None
    end = records[end_index][0] if end_index is not None else warc.stat().st_size
    with open(warc, "rb") as src, open(out, "wb") as dst:
        dst.write(src.read(end))


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn, repeat: int = 1):
    """Run ``fn`` ``repeat`` times; the fastest run's result, CPU seconds and wall seconds (the fastest run is
    the one least disturbed by other work on the machine; every run's seconds are kept as ``runs``)."""
    return timed_rounds({"only": fn}, repeat)["only"]


def timed_rounds(pipelines: dict, repeat: int) -> dict:
    """:func:`timed` of several pipelines, run in turns (round 1: each once, round 2: each again...): on a shared
    machine whose speed drifts, every pipeline's fastest run then comes from the same stretch of time, and a slow
    minute cannot land on one pipeline only. ``{name: (result, seconds)}``."""
    best: dict = {}
    runs: dict = {name: [] for name in pipelines}
    for _ in range(repeat):
        for name, fn in pipelines.items():
            start, cpu = time.perf_counter(), cpu_seconds()
            value = fn()
            seconds = time.perf_counter() - start
            runs[name].append(round(seconds, 2))
            if name not in best or seconds < best[name][1]:
                best[name] = ({**value, "cpu_seconds": round(cpu_seconds() - cpu, 2)}, seconds)
    return {name: ({**best[name][0], "runs": runs[name]}, best[name][1]) for name in pipelines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = ROOT.parent / "shared" / "data" / "warc" / "bench-webpages.warc.gz"
    parser.add_argument("--warc", type=Path, default=default)
    parser.add_argument("--limit", type=int, default=None, help="only the first N HTML responses")
    parser.add_argument("--scaling-copies", type=int, default=4, help="input copies for the second scaling run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each pipeline; the fastest counts")
    args = parser.parse_args()
    if not args.warc.is_file():
        sys.exit(f"benchmark input not found: {args.warc}")
    identifier = train_identifier(ROOT / "corpora" / "lid-seed")
    import datasketch  # noqa: F401  imported before timing: neither pipeline pays for imports
    import trafilatura  # noqa: F401
    import warcio  # noqa: F401
    work = Path(tempfile.mkdtemp(prefix="bench-crawl-"))
    try:
        size_mb = args.warc.stat().st_size / 2**20
        def fresh(name: str) -> Path:  # every run starts from nothing (no finished shards to reuse)
            shutil.rmtree(work / name, ignore_errors=True)
            return work / name

        timings = timed_rounds({
            "ours-1": lambda: ours(args.warc, identifier, fresh("ours-1"), 1, args.limit),
            "ours-2": lambda: ours(args.warc, identifier, fresh("ours-2"), 2, args.limit),
            "baseline": lambda: baseline(args.warc, identifier, fresh("baseline"), args.limit),
        }, args.repeat)
        (one, one_s), (two, two_s), (base, base_s) = timings["ours-1"], timings["ours-2"], timings["baseline"]
        big = None
        if args.scaling_copies > 1 and not args.limit:
            bigger = work / f"copies-{args.scaling_copies}.warc.gz"
            data = args.warc.read_bytes()
            with open(bigger, "wb") as handle:  # gzip members end to end: one .warc.gz (one copy in memory at most)
                for _ in range(args.scaling_copies):
                    handle.write(data)
            del data
            big_one, big_one_s = timed(lambda: ours(bigger, identifier, fresh("big-1"), 1, None))
            big_two, big_two_s = timed(lambda: ours(bigger, identifier, fresh("big-2"), 2, None))
            big = {"copies": args.scaling_copies, "warc_gz_mb": round(bigger.stat().st_size / 2**20, 2),
                   "documents": big_one["documents"], "seconds_1_process": round(big_one_s, 2),
                   "seconds_2_processes": round(big_two_s, 2), "scaling_1_to_2": round(big_one_s / big_two_s, 2),
                   "cpu_seconds_1_process": big_one["cpu_seconds"], "cpu_seconds_2_processes": big_two["cpu_seconds"]}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.limit:
        size_mb *= one["documents"] / 1048  # approximate share of the file
    rows = [("ours, 1 process", one, one_s), ("ours, 2 processes", two, two_s), ("baseline (warcio+trafilatura)",
                                                                                 base, base_s)]
    print(f"{'pipeline':<32}{'docs':>7}{'kept':>7}{'seconds':>9}{'docs/s':>9}{'MB/s':>8}{'CPU s':>8}")
    for name, result, seconds in rows:
        print(f"{name:<32}{result['documents']:>7}{result['kept']:>7}{seconds:>9.1f}"
              f"{result['documents'] / seconds:>9.1f}{size_mb / seconds:>8.2f}{result['cpu_seconds']:>8.1f}")
    phases = ("extract", "identify", "filter", "dedup")
    print(f"\nwhere the time goes (seconds; extract is HTML to text, reading the archive is in no phase)\n"
          f"{'pipeline':<32}" + "".join(f"{p:>10}" for p in phases))
    for name, result in (("ours, 1 process", one), ("baseline (warcio+trafilatura)", base)):
        print(f"{name:<32}" + "".join(f"{result['phase_seconds'].get(p, 0.0):>10.2f}" for p in phases))
    ratio, scaling = base_s / one_s, one_s / two_s
    cpu_ratio = base["cpu_seconds"] / one["cpu_seconds"]
    print(f"ours vs baseline (1 process each): {ratio:.1f}x (CPU time: {cpu_ratio:.1f}x); "
          f"ours 1 -> 2 processes: {scaling:.2f}x; peak RSS {peak_rss_mb()} MB; load average {os.getloadavg()[0]:.1f}")
    if big is not None:
        print(f"on {big['copies']} copies of the file ({big['warc_gz_mb']} MB, {big['documents']} pages, 1 run each): "
              f"ours 1 process {big['seconds_1_process']:.1f} s, 2 processes {big['seconds_2_processes']:.1f} s: "
              f"{big['scaling_1_to_2']:.2f}x")
    atomic_write_json(ROOT / "bench" / "results" / "crawl.json", {
        "input": str(args.warc), "warc_gz_mb": round(size_mb, 2), "limit": args.limit,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "ours_1_process": {**one, "seconds": round(one_s, 2), "docs_per_s": round(one["documents"] / one_s, 2),
                           "mb_per_s": round(size_mb / one_s, 3)},
        "ours_2_processes": {**two, "seconds": round(two_s, 2), "docs_per_s": round(two["documents"] / two_s, 2),
                             "mb_per_s": round(size_mb / two_s, 3)},
        "baseline": {**base, "seconds": round(base_s, 2), "docs_per_s": round(base["documents"] / base_s, 2),
                     "mb_per_s": round(size_mb / base_s, 3)},
        "ratio_vs_baseline": round(ratio, 2), "cpu_ratio_vs_baseline": round(cpu_ratio, 2),
        "scaling_1_to_2": round(scaling, 2), "scaling_bigger_input": big, "peak_rss_mb": peak_rss_mb(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    })


if __name__ == "__main__":
    main()
