"""Streamed, bounded-memory document readers for crawl inputs.

Formats (chosen by file name): ``.warc[.gz]`` / ``.wet[.gz]`` (fastwarc), ``.txt[.gz]`` (one
document per paragraph, or per line if the file has no blank line), ``.jsonl[.gz]`` (field
``text``, optional ``url`` and ``id``), ``.xml[.bz2]`` Wikipedia dumps (one document per article,
markup stripped: :mod:`workbench.crawl.wikipedia`). Bad input never stops a crawl: it is counted and
logged with its location in :class:`CrawlStats` and skipped.

A gzipped WARC/WET file written one gzip member per record (as Common Crawl's are) can be read by byte
range: the records that *start* inside ``[start, end)``, found by moving from ``start`` to the next gzip
member that holds a WARC record (:func:`record_ranges_possible`, :func:`iter_documents` ``byte_range``).
Every range reads only its own part of the file, so big files split into ranges cost one read in total.

A damaged WARC/WET file (a bad gzip member, garbage between records, a broken header, a cut) is read past
the damage: reading resumes at the next record (the next gzip member holding one, or the next ``WARC/1.``
header line of an uncompressed file), and every damaged stretch is counted (``corrupt_record``, or
``truncated_file`` when it runs to the end of the file) with its bytes (:attr:`CrawlStats.skipped_bytes`).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import xml.etree.ElementTree as ET
import zlib
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice
from pathlib import Path
from typing import BinaryIO

from fastwarc.stream_io import BrotliReader, ChunkedReader, GzipReader, ZstdReader
from fastwarc.warc import ArchiveIterator, WarcRecord, WarcRecordType
from resiliparse.parse.encoding import detect_mime

from ..errors import DataError
from .wikipedia import iter_articles, wiki_to_text

WARC_SUFFIXES = (".warc", ".warc.gz", ".wet", ".wet.gz")
TEXT_SUFFIXES = (".txt", ".txt.gz")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
WIKI_SUFFIXES = (".xml.bz2", ".xml")
SUPPORTED_SUFFIXES = WARC_SUFFIXES + TEXT_SUFFIXES + JSONL_SUFFIXES + WIKI_SUFFIXES

MAX_RECORD_BYTES = 16 * 1024 * 1024  # larger WARC payloads are skipped (bounded memory)
MAX_DOCUMENT_CHARS = 1024 * 1024  # longer text paragraphs are cut into pieces of this size
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


@dataclass
class RawDocument:
    """One document as read: HTML bytes (+ HTTP charset) or text. ``offset`` is the record's
    byte offset for WARC/WET, the (1-based) line number for text and JSONL files."""

    source: str
    offset: int
    url: str | None = None
    html: bytes | None = None
    text: str | None = None
    charset: str | None = None
    id: str | None = None


@dataclass
class CrawlStats:
    """Counters for a crawl: documents read per input and bad input with locations."""

    max_logged: int = 100
    docs_read: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    bad_input: list[dict] = field(default_factory=list)
    bad_input_total: int = 0
    bad_input_by_kind: Counter = field(default_factory=Counter)
    skipped_bytes: int = 0  # bytes of damaged WARC/WET data passed over to reach the next readable record

    def bad(self, kind: str, source: str | Path, offset: int | None, detail: str = "") -> None:
        """Count one piece of bad input; the first ``max_logged`` are kept with their location."""
        self.bad_input_total += 1
        self.bad_input_by_kind[kind] += 1
        if len(self.bad_input) < self.max_logged:
            entry = {"kind": kind, "source": str(source), "offset": offset, "detail": detail[:300]}
            self.bad_input.append(entry)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "total": self.bad_input_total,
            "by_kind": dict(sorted(self.bad_input_by_kind.items())),
            "locations": list(self.bad_input),
            "locations_truncated": self.bad_input_total > len(self.bad_input),
            "skipped_bytes": self.skipped_bytes,
        }


def input_format(path: Path) -> str:
    """``warc``, ``text``, ``jsonl`` or ``wiki`` by file name; :class:`DataError` for anything else."""
    name = Path(path).name.lower()
    for suffixes, kind in ((WARC_SUFFIXES, "warc"), (TEXT_SUFFIXES, "text"), (JSONL_SUFFIXES, "jsonl"),
                           (WIKI_SUFFIXES, "wiki")):
        if name.endswith(suffixes):
            return kind
    expected = ", ".join(SUPPORTED_SUFFIXES)
    raise DataError(f"input '{path}' has an unsupported type; expected one of {expected}")


def iter_documents(path: Path, stats: CrawlStats,
                   byte_range: tuple[int, int] | None = None) -> Iterator[RawDocument]:
    """Stream the documents of one input file; bad input is counted in ``stats`` and skipped.
    ``byte_range``: only the records starting in ``[start, end)`` (gzipped WARC/WET files for which
    :func:`record_ranges_possible` holds)."""
    path = Path(path)
    kind = input_format(path)
    source = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        stats.bad("unreadable_file", source, None, str(exc))
        return
    if size == 0:
        stats.bad("empty_file", source, 0, "file is empty")
        return
    if byte_range is not None and kind != "warc":
        raise ValueError(f"{path}: only WARC/WET files are read by byte range")
    reader = {"warc": _iter_warc, "text": _iter_text, "jsonl": _iter_jsonl, "wiki": _iter_wiki}[kind]
    documents = reader(path, stats) if byte_range is None else _iter_warc(path, stats, byte_range)
    bad_before, count = stats.bad_input_total, 0
    for doc in documents:
        count += 1
        stats.docs_read[source] += 1
        yield doc
    if kind != "warc" and count == 0 and stats.bad_input_total == bad_before:
        stats.bad("empty_file", source, 0, "no text in file")


# --------------------------------------------------------------------------- Wikipedia dumps

def _iter_wiki(path: Path, stats: CrawlStats) -> Iterator[RawDocument]:
    source, number = str(path), 0
    try:
        for number, title, markup, url in iter_articles(path):
            try:
                text = wiki_to_text(markup)
            except Exception as exc:  # a page the markup parser cannot handle: skip it, keep going
                stats.bad("bad_markup", source, number, f"{title}: {type(exc).__name__}: {exc}")
                continue
            if text:
                yield RawDocument(source=source, offset=number, url=url, text=text, id=title)
    except (OSError, EOFError, ET.ParseError) as exc:
        stats.bad("truncated_file", source, number, f"dump ends or breaks after page {number}: {exc}")


# --------------------------------------------------------------------------- WARC / WET

def _iter_warc(path: Path, stats: CrawlStats, byte_range: tuple[int, int] | None = None) -> Iterator[RawDocument]:
    """The documents of a WARC/WET file (or of the records starting in ``byte_range``). A damaged stretch
    (bad gzip data, garbage, a broken header, a cut) is skipped: reading resumes at the next record start
    (:func:`next_record_member`), and the stretch is counted once, with its bytes: by the range it starts in, or,
    for garbage right after a range's last record, by that range (the next range's reader starts past it)."""
    source = str(path)
    start, end = byte_range or (0, None)
    with open(path, "rb") as handle:
        archive = _Archive(handle, path.name)
        position = start if start == 0 else next_record_member(handle, start, end)
        records = 0
        while position is not None:
            run = yield from _read_run(handle, position, end, source, stats)
            records += run.records
            if run.range_done:
                return
            damage = _damage_start(archive, run, position, end)
            if damage is None:
                return
            position = archive.next_record(damage + 1)  # the record at ``damage`` failed: never retried
            _count_damage(stats, source, archive, damage, position, run, nothing_read=records == 0 and start == 0)
            if end is not None and position is not None and position >= end:
                return  # the next range's reader starts at this same record


@dataclass
class _Run:
    """How one pass of fastwarc's iterator, from one record start on, ended."""

    records: int = 0  # records the iterator gave
    last: int | None = None  # start of the last record read (its document made or skipped)
    broken: int | None = None  # start of the record whose reading failed
    failure: str = ""  # why reading stopped before the end of the file ("" when it did not, as far as it knows)
    unreadable: bool = False  # stopped by an error (bad data), not by data that ends early
    range_done: bool = False  # reached a record that starts in the next byte range


class _ShortRecord(Exception):
    """A record's payload ends before its declared length."""


def _read_run(handle: BinaryIO, position: int, end: int | None, source: str,
              stats: CrawlStats) -> Generator[RawDocument, None, _Run]:
    """The documents of the records from ``position`` on, until the file or range ends or reading fails;
    returns how it ended. Nothing here costs more than reading when the file is intact."""
    run = _Run()
    handle.seek(position)
    try:
        for record in ArchiveIterator(handle, parse_http=False):
            if end is not None and record.stream_pos >= end:
                run.range_done = True
                return run
            run.records, run.broken = run.records + 1, record.stream_pos
            doc = _record_document(record, source, stats)
            run.last, run.broken = record.stream_pos, None
            if doc is not None:
                yield doc
    except _ShortRecord as exc:
        run.failure = str(exc)
    except (OSError, ValueError) as exc:
        run.failure, run.unreadable = f"unreadable WARC data: {exc}", True
    return run


def _damage_start(archive: _Archive, run: _Run, position: int, end: int | None) -> int | None:
    """Where the damage that ended ``run`` (which started at ``position``) begins; None when the run ended with
    the file, or when what stopped it is a record of the next byte range (whose reader counts it)."""
    if run.broken is not None:
        return run.broken
    if run.last is None:
        return position
    if not archive.is_record_start(run.last):  # records in one gzip stream: no offset to check the end against
        return run.last if run.failure else None
    after = archive.record_end(run.last)
    if after == _FILE_ENDS_INSIDE:  # the file ends inside the record's gzip member: after its block (e.g. in the
        # gzip trailer: nothing of the record is lost), or inside the record (it is lost, although fastwarc gave it);
        # after an error, the member's end is damaged (its data runs on into what follows)
        complete = not run.failure and _gzip_block_complete(archive.handle, run.last)
        return archive.size if complete else run.last
    if after is None:  # the last record read is itself damaged (e.g. a bad checksum)
        return run.last
    if not run.failure and after == archive.size:
        return None
    if end is not None and after >= end and archive.holds_record(after):
        return None
    return after


def _count_damage(stats: CrawlStats, source: str, archive: _Archive, damage: int, resume: int | None,
                  run: _Run, nothing_read: bool) -> None:
    """Count the stretch ``[damage, resume)`` (to the end of the file when ``resume`` is None) as skipped."""
    stop = archive.size if resume is None else resume
    stats.skipped_bytes += stop - damage
    if resume is not None:
        kind, where = "corrupt_record", f"reading resumes at byte {resume}"
    elif _file_cut_at(archive, damage, run):
        kind, where = "truncated_file", "the file ends inside this record"
    else:
        kind = "corrupt_file" if nothing_read else "corrupt_record"
        where = "no WARC record found" if nothing_read else "no record follows"
    detail = f"{stop - damage} bytes skipped, {where}" + (f": {run.failure}" if run.failure else "")
    stats.bad(kind, source, damage, detail)


def _file_cut_at(archive: _Archive, damage: int, run: _Run) -> bool:
    """Whether a damaged stretch running to the end of the file is a record cut by it (intact up to there):
    decided by the data, as fastwarc may stop with an error or without one on a cut record."""
    cut = archive.ends_inside_record(damage)
    return not run.unreadable if cut is None else cut


class _Archive:
    """An open WARC/WET file seen as a sequence of records, for finding where a record ends and where the
    next one starts after damage. Used only when reading stops early, and once at the end of a file."""

    def __init__(self, handle: BinaryIO, name: str):
        self.handle = handle
        self.name = name.lower()

    @cached_property
    def size(self) -> int:
        return os.fstat(self.handle.fileno()).st_size

    @cached_property
    def compressed(self) -> bool:
        """Gzipped (by its first bytes; by its name when they are damaged)."""
        self.handle.seek(0)
        head = self.handle.read(len(_GZIP_MAGIC))
        return head[:2] == _GZIP_MAGIC[:2] or (self.name.endswith(".gz") and not head.startswith(b"WARC/"))

    def is_record_start(self, position: int) -> bool:
        """Whether fastwarc's ``stream_pos`` is where a record starts in the file (not so for records inside one
        gzip stream, whose positions are those of the compressed data read so far)."""
        if not self.compressed:
            return True
        self.handle.seek(position)
        return self.handle.read(2) == _GZIP_MAGIC[:2]

    def record_end(self, position: int) -> int | None:
        """Where the record (gzip member) starting at ``position`` ends; None if it is damaged or incomplete,
        :data:`_FILE_ENDS_INSIDE` if the file ends inside a gzip member whose data is intact so far."""
        if self.compressed:
            return _gzip_member_end(self.handle, position)
        return _plain_record_end(self.handle, position, self.size)

    def ends_inside_record(self, position: int) -> bool | None:
        """Whether the file ends inside a record starting at ``position``, intact up to there (None: unknown, for
        a position inside one gzip stream)."""
        if position >= self.size:
            return True
        if self.compressed:
            return self.record_end(position) == _FILE_ENDS_INSIDE if self.is_record_start(position) else None
        return _plain_record_cut(self.handle, position, self.size)

    def holds_record(self, position: int) -> bool:
        """Whether a record (a gzip member holding one) starts at ``position``."""
        if self.compressed:
            return _holds_warc_record(self.handle, position)
        return _holds_plain_record(self.handle, position)

    def next_record(self, position: int) -> int | None:
        """The first record start at or after ``position``, or None."""
        if self.compressed:
            return next_record_member(self.handle, position)
        return _find_record_start(self.handle, position, None, _PLAIN_MARKER, _holds_plain_record)


_GZIP_MAGIC = b"\x1f\x8b\x08"
_FILE_ENDS_INSIDE = -1  # a gzip member cut by the end of the file, intact up to there
_HEADER_LIMIT = 64 * 1024  # a WARC header must end within this many bytes
_PLAIN_MARKER = b"WARC/1."
_WARC_VERSION_LINE = re.compile(rb"WARC/1\.[01]\r?\n")
_CONTENT_LENGTH = re.compile(rb"(?im)^content-length:[ \t]*(\d+)")


def _holds_warc_record(handle: BinaryIO, position: int) -> bool:
    """Whether a gzip member starting at ``position`` decompresses to the beginning of a WARC record."""
    handle.seek(position)
    try:
        head = zlib.decompressobj(31).decompress(handle.read(16 * 1024), 16)
    except zlib.error:
        return False
    return head.startswith(b"WARC/")


def next_record_member(handle: BinaryIO, start: int, end: int | None = None) -> int | None:
    """The offset of the first gzip member at or after ``start`` (and before ``end``) that holds a WARC record,
    or None. The gzip magic bytes can occur inside compressed data too: each candidate is checked."""
    return _find_record_start(handle, start, end, _GZIP_MAGIC, _holds_warc_record)


def _find_record_start(handle: BinaryIO, start: int, end: int | None, marker: bytes,
                       holds_record: Callable[[BinaryIO, int], bool]) -> int | None:
    """The first offset in ``[start, end)`` where ``marker`` occurs and ``holds_record`` accepts, or None."""
    window, position = 1 << 20, start
    while end is None or position < end:
        handle.seek(position)
        chunk = handle.read(window + len(marker) - 1)
        if len(chunk) < len(marker):
            return None
        found = chunk.find(marker)
        while 0 <= found < window:
            candidate = position + found
            if end is not None and candidate >= end:
                return None
            if holds_record(handle, candidate):
                return candidate
            found = chunk.find(marker, found + 1)
        position += window
    return None


@dataclass
class _Member:
    """What decompressing one gzip member found."""

    end: int | None  # the offset just after it; None if it is damaged or cut by the end of the file
    cut: bool  # the file ends inside it, its data intact up to there
    head: bytes  # the beginning of its data (the WARC header)
    size: int  # bytes of data


def _inflate_member(handle: BinaryIO, position: int) -> _Member:
    """Decompress the gzip member starting at ``position`` (checksum included) in bounded pieces, keeping only
    the first :data:`_HEADER_LIMIT` bytes."""
    handle.seek(position)
    inflate, offset, head, size = zlib.decompressobj(31), position, b"", 0
    try:
        while chunk := handle.read(1 << 20):
            pending = chunk
            while pending:
                data = inflate.decompress(pending, 1 << 20)
                head += data[: max(_HEADER_LIMIT - len(head), 0)]
                size += len(data)
                if inflate.eof:
                    return _Member(offset + len(chunk) - len(inflate.unused_data), False, head, size)
                pending = inflate.unconsumed_tail
            offset += len(chunk)
    except zlib.error:
        return _Member(None, False, head, size)
    return _Member(None, True, head, size)


def _gzip_member_end(handle: BinaryIO, position: int) -> int | None:
    """The offset just after the gzip member starting at ``position``: None if there is no intact member there,
    :data:`_FILE_ENDS_INSIDE` if the file ends inside it."""
    member = _inflate_member(handle, position)
    return _FILE_ENDS_INSIDE if member.cut else member.end


def _gzip_block_complete(handle: BinaryIO, position: int) -> bool:
    """Whether the gzip member at ``position`` (cut by the end of the file) holds a whole WARC header and block."""
    member = _inflate_member(handle, position)
    header = _warc_header(member.head)
    return member.cut and header is not None and member.size >= sum(header)


def _plain_header(handle: BinaryIO, position: int) -> tuple[int, int] | None:
    """``(header length, content length)`` of the uncompressed WARC record at ``position``, or None."""
    handle.seek(position)
    return _warc_header(handle.read(_HEADER_LIMIT))


def _warc_header(head: bytes) -> tuple[int, int] | None:
    """``(header length, content length)`` of the WARC record that ``head`` starts with, or None."""
    header_end = head.find(b"\r\n\r\n")
    match = _CONTENT_LENGTH.search(head, 0, max(header_end, 0))
    if header_end < 0 or match is None or not _WARC_VERSION_LINE.match(head):
        return None
    return header_end + 4, int(match.group(1))


def _holds_plain_record(handle: BinaryIO, position: int) -> bool:
    """Whether an uncompressed WARC record header (version line, ..., Content-Length, blank line) starts at
    ``position``. Not necessarily at the start of a line: garbage before a record need not end with one."""
    return _plain_header(handle, position) is not None


def _plain_record_cut(handle: BinaryIO, position: int, size: int) -> bool:
    """Whether the file ends inside an uncompressed WARC record starting at ``position`` (in its header or block)."""
    handle.seek(position)
    head = handle.read(_HEADER_LIMIT)
    if not (head.startswith(_PLAIN_MARKER) or _PLAIN_MARKER.startswith(head)):
        return False
    header = _warc_header(head)
    if header is None:  # a header that never ends was cut; one that ends unreadable is damaged
        return b"\r\n\r\n" not in head and position + len(head) == size
    return position + sum(header) > size


def _plain_record_end(handle: BinaryIO, position: int, size: int) -> int | None:
    """Where the uncompressed WARC record at ``position`` ends, with the blank lines after it; None if it is
    incomplete or its header is unreadable."""
    header = _plain_header(handle, position)
    if header is None or position + sum(header) > size:
        return None
    end = position + sum(header)
    handle.seek(end)
    while chunk := handle.read(4096):
        rest = chunk.lstrip(b"\r\n")
        end += len(chunk) - len(rest)
        if rest:
            break
    return end


def record_ranges_possible(path: Path) -> bool:
    """Whether ``path`` is a gzipped WARC/WET file with one gzip member per record (the second record starts
    a member of its own), so that it can be read by byte range."""
    path = Path(path)
    if input_format(path) != "warc" or not path.name.lower().endswith(".gz"):
        return False
    try:
        with open(path, "rb") as handle:
            starts = [record.stream_pos for record in islice(ArchiveIterator(handle, parse_http=False), 2)]
            return len(starts) == 2 and _holds_warc_record(handle, starts[1])
    except (OSError, ValueError):
        return False


def _record_document(record: WarcRecord, source: str, stats: CrawlStats) -> RawDocument | None:
    """The document in a ``response``/``resource`` (HTML) or ``conversion`` (text) record; :class:`_ShortRecord`
    if its payload is cut short."""
    rtype = record.record_type
    if rtype not in (WarcRecordType.response, WarcRecordType.conversion, WarcRecordType.resource):
        return None
    if record.content_length == 0 and not record.headers.get("Content-Length"):
        raise _ShortRecord("WARC header without Content-Length (cut or damaged)")  # fastwarc gives such a record
    pos, url = record.stream_pos, record.headers.get("WARC-Target-URI")
    warc_content_type = record.headers.get("Content-Type", "")
    if rtype == WarcRecordType.response and warc_content_type.startswith("application/http"):
        record.parse_http(auto_decode="none")
    http = record.http_headers if record.is_http and record.is_http_parsed else None
    content_type = _content_type(record, http)
    reason = None if rtype == WarcRecordType.conversion else _skip_reason(http, content_type)
    if reason is None and record.content_length > MAX_RECORD_BYTES:
        reason = "too_large"
    if reason is not None:
        stats.skipped[reason] += 1
        return None
    declared = record.content_length
    payload = record.reader.read(declared)
    if len(payload) < declared:
        raise _ShortRecord(f"record payload has {len(payload)} of {declared} bytes")
    if rtype == WarcRecordType.conversion:
        return _conversion_document(payload, source, pos, url, stats)
    return _html_document(record, http, content_type, payload, source, pos, url, stats)


def _content_type(record: WarcRecord, http) -> str | None:
    if http is not None:
        return record.http_content_type
    return (record.headers.get("Content-Type") or "").split(";")[0].strip().lower() or None


def _skip_reason(http, content_type: str | None) -> str | None:
    if http is not None and not 200 <= (http.status_code or 0) < 300:
        return "http_status"
    if content_type is not None and content_type not in HTML_TYPES:
        return "not_html"
    return None


def _conversion_document(payload: bytes, source: str, pos: int, url: str | None,
                         stats: CrawlStats) -> RawDocument | None:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        stats.bad("undecodable", source, pos, f"WET text is not UTF-8: {exc}")
        return None
    return RawDocument(source=source, offset=pos, url=url, text=text)


def _html_document(record: WarcRecord, http, content_type: str | None, payload: bytes, source: str,
                   pos: int, url: str | None, stats: CrawlStats) -> RawDocument | None:
    try:
        body = _decode_http_body(payload, http)
    except (OSError, ValueError) as exc:
        stats.bad("undecodable", source, pos, f"cannot decode HTTP body: {exc}")
        return None
    if content_type is None and detect_mime(body[:4096]) not in HTML_TYPES:
        stats.skipped["not_html"] += 1
        return None
    charset = record.http_charset if http is not None else None
    return RawDocument(source=source, offset=pos, url=url, html=body, charset=charset)


_CONTENT_DECODERS = {
    "gzip": lambda raw: GzipReader(raw),
    "x-gzip": lambda raw: GzipReader(raw),
    "deflate": lambda raw: GzipReader(raw, zlib=True),
    "br": lambda raw: BrotliReader(raw),
    "zstd": lambda raw: ZstdReader(raw),
}


def _decode_http_body(payload: bytes, http) -> bytes:
    """Undo chunked transfer encoding and gzip/deflate/br/zstd content encoding."""
    if http is None:
        return payload
    transfer = (http.get("Transfer-Encoding") or "").lower()
    if "chunked" in transfer:
        payload = _read_all(ChunkedReader(io.BytesIO(payload)))
    encoding = (http.get("Content-Encoding") or "identity").strip().lower()
    if encoding in ("identity", "none", ""):
        return payload
    decoder = _CONTENT_DECODERS.get(encoding)
    if decoder is None:
        raise ValueError(f"unsupported Content-Encoding '{encoding}'")
    return _read_all(decoder(io.BytesIO(payload)))


def _read_all(reader) -> bytes:
    data = reader.read(MAX_RECORD_BYTES + 1)
    if len(data) > MAX_RECORD_BYTES:
        raise ValueError(f"decoded body larger than {MAX_RECORD_BYTES} bytes")
    return data


# --------------------------------------------------------------------------- text / JSONL

def _open_lines(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _iter_lines(path: Path, stats: CrawlStats) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` with bad lines and truncation/corruption counted in ``stats``."""
    source, number = str(path), 0
    try:
        with _open_lines(path) as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    yield number, raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as exc:
                    stats.bad("undecodable", source, number, f"line is not UTF-8: {exc}")
    except EOFError as exc:
        stats.bad("truncated_file", source, number, f"compressed file ends early: {exc}")
    except (OSError, zlib.error) as exc:
        kind = "truncated_file" if number else "corrupt_file"
        stats.bad(kind, source, number, f"cannot read: {exc}")


def _has_blank_separator(path: Path) -> bool:
    """Whether a blank line separates two non-blank lines anywhere in the file (a first pass;
    problems are counted by the second)."""
    seen_text = pending_blank = False
    for _, line in _iter_lines(path, CrawlStats()):
        if not line.strip():
            pending_blank = seen_text
        elif pending_blank:
            return True
        else:
            seen_text = True
    return False


def _iter_text(path: Path, stats: CrawlStats) -> Iterator[RawDocument]:
    source = str(path)
    if not _has_blank_separator(path):
        for number, line in _iter_lines(path, stats):
            if line.strip():
                yield RawDocument(source=source, offset=number, text=line)
        return
    lines: list[str] = []
    start, size = 0, 0
    for number, line in _iter_lines(path, stats):
        if line.strip():
            start = start or number
            lines.append(line)
            size += len(line) + 1
        if lines and (not line.strip() or size >= MAX_DOCUMENT_CHARS):
            yield RawDocument(source=source, offset=start, text="\n".join(lines))
            lines, start, size = [], 0, 0
    if lines:
        yield RawDocument(source=source, offset=start, text="\n".join(lines))


def _iter_jsonl(path: Path, stats: CrawlStats) -> Iterator[RawDocument]:
    source = str(path)
    for number, line in _iter_lines(path, stats):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            stats.bad("malformed_json", source, number, str(exc))
            continue
        text = obj.get("text") if isinstance(obj, dict) else None
        if not isinstance(text, str):
            stats.bad("missing_text", source, number, "JSON line has no string field 'text'")
            continue
        if _has_surrogates(text):
            stats.bad("undecodable", source, number, "text has unpaired surrogate escapes")
            continue
        url, doc_id = obj.get("url"), obj.get("id")
        yield RawDocument(
            source=source,
            offset=number,
            url=url if isinstance(url, str) else None,
            text=text,
            id=None if doc_id is None else str(doc_id),
        )


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
