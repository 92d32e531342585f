"""Damaged WARC/WET files: reading resumes at the next record after bad gzip data, garbage, a broken header
or a cut, and every damaged stretch is counted with its exact size in bytes (issue 29, item 2)."""

from __future__ import annotations

import gzip
import json
import random
import zlib
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest
from fastwarc.warc import ArchiveIterator

from workbench.crawl import CharNgramIdentifier, CrawlStats, iter_documents, run_crawl
from workbench.crawl.readers import record_ranges_possible

from .conftest import FIXTURES, ROOT

RECORDS = 16
SEED = ROOT / "corpora" / "lid-seed"
CC_WARC = FIXTURES / "warc" / "cc-main-2020-34-excerpt.warc.gz"
GZIP_MAGIC = b"\x1f\x8b\x08"


def sardinian_lines() -> list[str]:
    return [line for line in (SEED / "srd_Latn.txt").read_text(encoding="utf-8").splitlines() if line.strip()]


def page_text(index: int) -> str:
    """A few Sardinian sentences, different for every record and of varying length."""
    lines = sardinian_lines()
    return "\n".join(lines[(index * 5 + k) % len(lines)] for k in range(2 + index % 4))


def warc_record(index: int, kind: str) -> bytes:
    """A WARC ``response`` record holding an HTML page (``kind`` warc) or a WET ``conversion`` record."""
    text = page_text(index).encode()
    if kind == "wet":
        warc_type, content_type, block = "conversion", "text/plain", text
    else:
        html = b"<html><body><p>" + text.replace(b"\n", b"</p><p>") + b"</p></body></html>"
        warc_type, content_type = "response", "application/http; msgtype=response"
        block = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html
    head = (f"WARC/1.0\r\nWARC-Type: {warc_type}\r\nWARC-Target-URI: http://example.org/{index}\r\n"
            f"WARC-Record-ID: <urn:uuid:{index:032x}>\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(block)}\r\n\r\n").encode()
    return head + block + b"\r\n\r\n"


@dataclass
class Archive:
    """Sixteen records, each a gzip member of its own (``pieces``) or uncompressed, and where each starts."""

    kind: str
    pieces: list[bytes]

    @property
    def data(self) -> bytes:
        return b"".join(self.pieces)

    def start(self, index: int) -> int:
        return sum(len(piece) for piece in self.pieces[:index])

    def write(self, directory: Path, data: bytes, name: str = "damaged") -> Path:
        compressed = self.pieces[0][:2] == GZIP_MAGIC[:2]
        path = directory / f"{name}.{self.kind}{'.gz' if compressed else ''}"
        path.write_bytes(data)
        return path


def build(kind: str, compressed: bool = True) -> Archive:
    records = [warc_record(index, kind) for index in range(RECORDS)]
    return Archive(kind, [gzip.compress(record, mtime=0) for record in records] if compressed else records)


def garbage(size: int = 4096) -> bytes:
    """Random bytes holding no gzip member start and no WARC header line."""
    data = random.Random(size).randbytes(size)
    assert GZIP_MAGIC not in data and b"WARC/" not in data
    return data


def read(path: Path, byte_range: tuple[int, int] | None = None,
         stats: CrawlStats | None = None) -> tuple[list[tuple], CrawlStats]:
    stats = CrawlStats() if stats is None else stats
    docs = [(doc.url, doc.text or doc.html) for doc in iter_documents(path, stats, byte_range)]
    return docs, stats


def urls(docs: list[tuple]) -> list[str]:
    return [url for url, _ in docs]


def all_but(*lost: int) -> list[str]:
    return [f"http://example.org/{index}" for index in range(RECORDS) if index not in lost]


@pytest.fixture(params=["warc", "wet"])
def archive(request) -> Archive:
    return build(request.param)


# --------------------------------------------------------------------------- gzipped WARC and WET

def test_intact_archive_reads_every_record_and_skips_nothing(archive, tmp_path) -> None:
    docs, stats = read(archive.write(tmp_path, archive.data, "intact"))
    assert urls(docs) == all_but() and stats.bad_input_total == 0 and stats.skipped_bytes == 0


def test_garbage_between_two_members_is_skipped_and_counted(archive, tmp_path) -> None:
    data = archive.data
    at = archive.start(8)
    docs, stats = read(archive.write(tmp_path, data[:at] + garbage() + data[at:]))
    intact, _ = read(archive.write(tmp_path, data, "intact"))
    assert docs == intact  # every record, the same documents
    assert stats.bad_input_by_kind == {"corrupt_record": 1} and stats.skipped_bytes == 4096
    assert stats.bad_input[0]["offset"] == at and "4096 bytes skipped" in stats.bad_input[0]["detail"]


def test_garbage_inside_a_member_loses_only_that_record(archive, tmp_path) -> None:
    """The issue's case: 4 KB in the middle of the file, inside a member; the 15 intact records are read."""
    data = archive.data
    at = archive.start(8) + len(archive.pieces[8]) // 2
    docs, stats = read(archive.write(tmp_path, data[:at] + garbage() + data[at:]))
    assert urls(docs) == all_but(8)
    assert stats.bad_input_by_kind == {"corrupt_record": 1}
    assert stats.skipped_bytes == len(archive.pieces[8]) + 4096  # the damaged member, garbage included
    assert stats.bad_input[0]["offset"] == archive.start(8)


@pytest.mark.parametrize("where", ["compressed data", "checksum"])
def test_a_member_with_flipped_bytes_loses_only_that_record(archive, tmp_path, where) -> None:
    data = bytearray(archive.data)
    member_start, member_end = archive.start(8), archive.start(9)
    flipped = range(member_start + 20, member_start + 52) if where == "compressed data" else range(
        member_end - 8, member_end - 4)
    for position in flipped:
        data[position] ^= 0xFF
    docs, stats = read(archive.write(tmp_path, bytes(data)))
    assert urls(docs) == all_but(8)
    assert stats.bad_input_by_kind == {"corrupt_record": 1} and stats.skipped_bytes == len(archive.pieces[8])


def test_two_damaged_stretches_are_counted_apart(archive, tmp_path) -> None:
    data = bytearray(archive.data)
    for position in range(archive.start(3) + 20, archive.start(3) + 40):
        data[position] ^= 0xFF
    at = archive.start(11)
    damaged = bytes(data[:at]) + garbage(1000) + bytes(data[at:])
    docs, stats = read(archive.write(tmp_path, damaged))
    assert urls(docs) == all_but(3)
    assert stats.bad_input_by_kind == {"corrupt_record": 2}
    assert stats.skipped_bytes == len(archive.pieces[3]) + 1000


def test_a_file_cut_anywhere_in_a_record_keeps_the_complete_records_and_counts_the_cut_one(archive, tmp_path) -> None:
    """Cut at every byte of record 12's gzip member: records 0-11 are read and the cut one is counted, with its
    bytes; only when the cut leaves the record's whole block (it takes part of the gzip trailer) is it read too,
    with nothing skipped."""
    start, member = archive.start(12), archive.pieces[12]
    record = gzip.decompress(member)
    docs, stats = read(archive.write(tmp_path, archive.data[:start]))
    assert urls(docs) == all_but(*range(12, RECORDS)) and stats.bad_input_total == 0
    for cut in range(start + 1, start + len(member)):
        docs, stats = read(archive.write(tmp_path, archive.data[:cut]))
        whole = len(zlib.decompressobj(31).decompress(member[: cut - start])) >= len(record) - 4  # without CRLF CRLF
        assert urls(docs) == all_but(*range(13 if whole else 12, RECORDS)), cut
        assert stats.bad_input_by_kind == {"truncated_file": 1}, cut
        assert stats.skipped_bytes == (0 if whole else cut - start), cut
        assert whole or stats.bad_input[0]["offset"] == start


def test_the_issue_case_4_kb_of_garbage_in_the_middle_of_a_common_crawl_file(tmp_path) -> None:
    """16 pages, 4 KB of garbage in the middle of the file (inside one page's gzip member): the other 15 pages
    are read, and the damaged member plus the garbage are skipped and counted."""
    raw = CC_WARC.read_bytes()
    with open(CC_WARC, "rb") as handle:
        starts = [record.stream_pos for record in ArchiveIterator(handle, parse_http=False)] + [len(raw)]
    middle = len(raw) // 2
    member_start, member_end = max(s for s in starts if s <= middle), min(s for s in starts if s > middle)
    intact, _ = read(CC_WARC)
    path = tmp_path / "damaged.warc.gz"
    path.write_bytes(raw[:middle] + garbage() + raw[middle:])
    docs, stats = read(path)
    assert len(intact) == 16 and len(docs) == 15 and set(docs) < set(intact)
    assert stats.bad_input_by_kind == {"corrupt_record": 1}
    assert stats.skipped_bytes == member_end - member_start + 4096
    assert stats.bad_input[0]["offset"] == member_start


def test_garbage_at_the_start_of_a_file(archive, tmp_path) -> None:
    docs, stats = read(archive.write(tmp_path, garbage(300) + archive.data))
    assert urls(docs) == all_but()
    assert stats.bad_input_by_kind == {"corrupt_record": 1} and stats.skipped_bytes == 300


def test_records_in_one_gzip_stream_are_not_reported_as_cut(tmp_path) -> None:
    """A file compressed as one gzip stream (not one member per record) is read whole, with nothing counted."""
    archive = build("warc", compressed=False)
    docs, stats = read(build("warc").write(tmp_path, gzip.compress(archive.data), "one-stream"))
    assert urls(docs) == all_but() and stats.bad_input_total == 0 and stats.skipped_bytes == 0


# --------------------------------------------------------------------------- uncompressed WARC

def test_uncompressed_warc_resumes_after_garbage_and_a_broken_header(tmp_path) -> None:
    archive = build("warc", compressed=False)
    data = archive.data
    at = archive.start(4)
    docs, stats = read(archive.write(tmp_path, data[:at] + garbage() + data[at:], "garbage"))
    assert urls(docs) == all_but()
    assert stats.bad_input_by_kind == {"corrupt_record": 1} and stats.skipped_bytes == 4096
    broken = data[: archive.start(8)] + b"XXXX" + data[archive.start(8) + 4:]
    docs, stats = read(archive.write(tmp_path, broken, "broken-header"))
    assert urls(docs) == all_but(8)
    assert stats.bad_input_by_kind == {"corrupt_record": 1} and stats.skipped_bytes == len(archive.pieces[8])


def test_uncompressed_warc_cut_anywhere_in_a_record(tmp_path) -> None:
    """Cut at every byte of record 12: records 0-11 are read and the cut one is counted with its bytes (a cut in
    the blank line that ends the record loses nothing)."""
    archive = build("warc", compressed=False)
    start, record = archive.start(12), archive.pieces[12]
    for cut in range(start + 1, start + len(record)):
        docs, stats = read(archive.write(tmp_path, archive.data[:cut], "cut"))
        if cut >= start + len(record) - 4:
            assert urls(docs) == all_but(*range(13, RECORDS)) and stats.bad_input_total == 0, cut
            continue
        assert urls(docs) == all_but(*range(12, RECORDS)), cut
        assert stats.bad_input_by_kind == {"truncated_file": 1}, cut
        assert stats.skipped_bytes == cut - start and stats.bad_input[0]["offset"] == start, cut


# --------------------------------------------------------------------------- byte ranges (shards)

def badly_damaged(archive: Archive) -> tuple[bytes, list[int]]:
    """Garbage between members 2 and 3, flipped bytes in member 6, garbage inside member 10, a cut in member 14;
    and offsets worth cutting ranges at: every start and end of damage, one byte either side."""
    data = bytearray(archive.data)
    for position in range(archive.start(6) + 20, archive.start(6) + 40):
        data[position] ^= 0xFF
    inside = archive.start(10) + len(archive.pieces[10]) // 2
    cut = archive.start(14) + len(archive.pieces[14]) // 2
    between = archive.start(3)
    damaged = (bytes(data[:between]) + garbage(700) + bytes(data[between:inside]) + garbage(900)
               + bytes(data[inside:cut]))
    marks = [between, between + 700, archive.start(6) + 700, archive.start(7) + 700, archive.start(10) + 700,
             inside + 700, inside + 1600, archive.start(11) + 1600, archive.start(14) + 1600]
    return damaged, sorted({mark + step for mark in marks for step in (-1, 0, 1)})


def test_damaged_file_read_by_byte_ranges_gives_the_serial_documents_and_counts(archive, tmp_path) -> None:
    damaged, marks = badly_damaged(archive)
    path = archive.write(tmp_path, damaged)
    assert record_ranges_possible(path)
    serial_docs, serial = read(path)
    assert urls(serial_docs) == all_but(6, 10, *range(14, RECORDS))
    assert serial.bad_input_by_kind == {"corrupt_record": 3, "truncated_file": 1}
    assert serial.skipped_bytes == (700 + len(archive.pieces[6]) + len(archive.pieces[10]) + 900
                                    + len(archive.pieces[14]) // 2)
    size = len(damaged)
    cut_sets = [[mark] for mark in marks] + [marks[::2], marks[1::3]]
    cut_sets += [sorted(random.Random(seed).sample(range(1, size), 9)) for seed in range(6)]
    cut_sets += [list(range(step, size, step)) for step in (97, 1500)]
    for cuts in cut_sets:
        stats, docs = CrawlStats(), []
        for start, end in pairwise([0, *cuts, size]):
            docs += read(path, (start, end), stats)[0]
        assert docs == serial_docs, cuts
        assert (stats.bad_input_by_kind, stats.skipped_bytes) == (serial.bad_input_by_kind, serial.skipped_bytes), cuts


def test_crawl_of_a_damaged_file_in_shards_equals_the_serial_crawl(tmp_path) -> None:
    """The counts reach stats.json, and a crawl cut into byte-range shards keeps what the one-shard crawl keeps."""
    archive = build("wet")
    damaged, _ = badly_damaged(archive)
    path = archive.write(tmp_path, damaged)
    lines = sardinian_lines()
    italian = (SEED / "ita_Latn.txt").read_text(encoding="utf-8").splitlines()
    identifier = CharNgramIdentifier.train({"srd_Latn": lines, "ita_Latn": italian})
    results = []
    for name, shard_bytes in (("serial", 1 << 30), ("sharded", len(damaged) // 7)):
        stats = run_crawl([path], ["srd_Latn"], identifier, tmp_path / name, progress=False,
                          max_shard_bytes=shard_bytes)
        on_disk = json.loads((tmp_path / name / "stats.json").read_text(encoding="utf-8"))
        assert on_disk["bad_input"]["skipped_bytes"] == stats["bad_input"]["skipped_bytes"]
        kept = (tmp_path / name / "srd_Latn.jsonl").read_text(encoding="utf-8").splitlines()
        results.append((stats["settings"]["shards"], stats["documents_read"], stats["bad_input"]["by_kind"],
                        stats["bad_input"]["skipped_bytes"], sorted(json.loads(line)["text"] for line in kept)))
    (serial_shards, *serial), (sharded_shards, *sharded) = results
    assert serial_shards == 1 and sharded_shards >= 7
    assert sharded == serial
    assert serial[0] == RECORDS - 4 and serial[1] == {"corrupt_record": 3, "truncated_file": 1}
    assert serial[2] > 0 and serial[3]  # bytes were skipped, Sardinian text kept
