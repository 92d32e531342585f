"""Common Crawl index selection over a local columnar index, byte-range fetch from a local mirror, and
the crawl reading what was fetched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from workbench.crawl.ccindex import fetch_records, select_records
from workbench.crawl.readers import CrawlStats, iter_documents
from workbench.errors import DataError

WARC = FIXTURES / "warc" / "cc-main-2020-34-excerpt.warc.gz"


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A columnar index (CC's column names) of the fixture's response records, with invented labels."""
    duckdb = pytest.importorskip("duckdb")
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    with open(WARC, "rb") as handle:
        offsets = [(r.stream_pos, r.headers.get("WARC-Target-URI"), r.record_type)
                   for r in ArchiveIterator(handle, parse_http=False)]
    size = WARC.stat().st_size
    rows = []
    for i, (offset, url, kind) in enumerate(offsets):
        if kind != WarcRecordType.response:
            continue
        end = offsets[i + 1][0] if i + 1 < len(offsets) else size
        host = url.split("/")[2]
        languages = ["ita,eng", "deu", None, "rus", "ita"][len(rows) % 5]
        rows.append({"url": url, "url_host_tld": host.rsplit(".", 1)[-1], "content_languages": languages,
                     "content_mime_detected": "text/html", "fetch_status": 200, "subset": "warc",
                     "warc_filename": WARC.name, "warc_record_offset": offset, "warc_record_length": end - offset})
    path = tmp_path_factory.mktemp("index") / "part-00000.parquet"
    con = duckdb.connect()
    con.execute("CREATE TABLE idx AS SELECT * FROM read_json_auto(?)", [str(_jsonl(path.parent / "rows.jsonl", rows))])
    con.execute(f"COPY idx TO '{path}' (FORMAT parquet)")
    return path, rows


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_selection_is_recall_oriented(index):
    path, rows = index
    italian_or_unknown = select_records(str(path), candidates=["ita_Latn"], unknown=True)
    expected = [r["url"] for r in rows if r["content_languages"] is None or "ita" in (r["content_languages"] or "")]
    assert sorted(r["url"] for r in italian_or_unknown) == sorted(expected) and expected
    by_tld = select_records(str(path), unknown=False, tlds=[rows[0]["url_host_tld"]])
    assert by_tld and all(r["url"].split("/")[2].endswith(rows[0]["url_host_tld"]) for r in by_tld)
    with pytest.raises(DataError, match="give candidate languages"):
        select_records(str(path), unknown=False)


def test_fetched_ranges_are_the_selected_records(index, tmp_path):
    path, _ = index
    selection = select_records(str(path), candidates=["ita_Latn", "deu_Latn"], unknown=False)
    out = tmp_path / "selected.warc.gz"
    report = fetch_records(selection, out, base=str(WARC.parent))
    assert report == {"fetched": len(selection), "failed": 0, "failures": [], "out": str(out)}
    stats = CrawlStats()
    docs = list(iter_documents(out, stats))
    assert sorted(d.url for d in docs) == sorted(r["url"] for r in selection)
    assert stats.bad_input_total == 0


def test_cli_select_then_fetch_offline_is_one_message(index, tmp_path):
    path, _ = index
    selection = tmp_path / "sel.jsonl"
    command = [sys.executable, "-m", "workbench.cli"]
    chosen = subprocess.run([*command, "cc-select", "--index", str(path), "--candidates", "ita", "--out",
                             str(selection)], capture_output=True, text=True, timeout=120)
    assert chosen.returncode == 0, chosen.stderr
    assert "records selected" in chosen.stdout and selection.read_text().count("\n") > 0
    fetch = [*command, "cc-fetch", "--selection", str(selection), "--out", str(tmp_path / "x.warc.gz"),
             "--base", "https://data.commoncrawl.invalid/"]
    fetched = subprocess.run(fetch, capture_output=True, text=True, timeout=120)
    assert fetched.returncode == 2 and "Traceback" not in fetched.stderr
    assert "cannot reach https://data.commoncrawl.invalid/" in fetched.stderr and "offline?" in fetched.stderr
