"""HTML to main-content plain text (resiliparse), with charset handling."""

from __future__ import annotations

import codecs
import multiprocessing
import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import bytes_to_str, detect_encoding, map_encoding_to_html5

from ..errors import DataError
from ..lifetime import exit_with_parent
from ..optional import require
from .charset import SINGLE_BYTE, guess_single_byte

MAX_REPLACEMENT_RATIO = 0.01  # more U+FFFD than this (and > 20 of them): the page is undecodable
_SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "euc-cn": "gb18030"}
META_SCAN_BYTES = 4096  # a <meta> charset is looked for in the page's first bytes
_META_CHARSET = re.compile(rb"<meta[^>]{0,200}?charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.IGNORECASE)
_MANY_NEWLINES = re.compile("\n\n\n+")  # (a literal start: the regex engine skips ahead to it, 10x faster than \n{3,})


def python_codec(charset: str | None) -> str | None:
    """A Python codec name for an HTTP/HTML charset label (WHATWG aliases applied), or None."""
    if not charset:
        return None
    label = charset.strip().strip("\"'").lower()
    mapped = map_encoding_to_html5(label, fallback_utf8=False) or label
    try:
        name = codecs.lookup(mapped).name
    except LookupError:
        return None
    return _SUPERSETS.get(name, name)


def _valid_utf8(html: bytes) -> str | None:
    """``html`` decoded as UTF-8 (a leading BOM stripped), or None if it is not valid UTF-8: for a page declared
    UTF-8 that is, what ``bytes_to_str`` gives, without detecting an encoding for fallbacks it would not use."""
    try:
        text = html.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text[1:] if text.startswith("\ufeff") else text


@dataclass(frozen=True)
class DecodedPage:
    """A page's text, the codec that decoded it, whether that codec was guessed (no charset declared, in HTTP
    or a meta tag, and the page is not UTF-8: :func:`~workbench.crawl.charset.guess_single_byte` chose it)
    and how many U+FFFD replacement characters the text holds."""

    text: str
    codec: str
    guessed: bool = False
    replacements: int = 0


def decode_html(html: bytes, charset: str | None = None) -> str:
    """Decode HTML bytes: the HTTP charset if valid, else meta tag / statistical detection; a page that
    declares no charset and is not UTF-8 in the single-byte code page whose text is the most plausible.

    Raises :class:`DataError` if the result is mostly replacement characters.
    """
    return decode_page(html, charset).text


def decode_page(html: bytes, charset: str | None = None) -> DecodedPage:
    """:func:`decode_html`, with the codec used and what decoding found (a :class:`DecodedPage`)."""
    declared = python_codec(charset)
    text = _valid_utf8(html) if declared == "utf-8" else None
    if text is not None:  # valid UTF-8 (a one-character search of the text is 4x faster than the bytes')
        primary, bad = "utf-8", text.count("\ufffd") if "\ufffd" in text else 0
        return _checked(DecodedPage(text, primary, replacements=bad))
    detected = python_codec(detect_encoding(html, from_html_meta=True)) or "utf-8"
    if declared is None and (detected == "utf-8" or detected in SINGLE_BYTE):  # a statistical guess, or none
        text = _valid_utf8(html)
        if text is not None:
            return _checked(DecodedPage(text, "utf-8", replacements=text.count("\ufffd")))
        if _meta_charset(html) is None:  # nothing declared: chosen by what the text becomes
            return _checked(_guessed_page(html, detected))
    primary = declared or detected
    fallbacks = tuple(dict.fromkeys(c for c in (detected, "utf-8") if c != primary))
    text = bytes_to_str(html, primary, errors="replace", fallback_encodings=fallbacks)
    return _checked(DecodedPage(text, primary, replacements=text.count("\ufffd")))


def _guessed_page(html: bytes, detected: str) -> DecodedPage:
    """A page with no declared charset that is not UTF-8, in the most plausible single-byte code page (or in
    UTF-8 with replacement characters, if it is UTF-8 but for a few bytes)."""
    codec = guess_single_byte(html, detected)
    text = html.decode(codec, errors="replace")
    if codec == "cp1258":  # Vietnamese code page: tone marks are separate characters, composed here
        text = unicodedata.normalize("NFC", text)
    return DecodedPage(text, codec, guessed=True, replacements=text.count("\ufffd"))


def _meta_charset(html: bytes) -> str | None:
    """The charset a ``<meta>`` tag near the start of the page declares, if any."""
    found = _META_CHARSET.search(html, 0, META_SCAN_BYTES)
    return found.group(1).decode("ascii") if found else None


def _checked(page: DecodedPage) -> DecodedPage:
    """``page``, or :class:`DataError` if it holds more replacement characters than a page may."""
    if page.replacements > 20 and page.replacements > MAX_REPLACEMENT_RATIO * len(page.text):
        raise DataError(f"page does not decode as {page.codec} ({page.replacements} replacement characters)")
    return page


def html_to_text(html: bytes, charset: str | None = None) -> str:
    """Main-content plain text of an HTML page; paragraphs are separated by blank lines."""
    return main_text(decode_html(html, charset))


def main_text(page: str) -> str:
    """Main-content plain text of a decoded HTML page; paragraphs are separated by blank lines."""
    text = extract_plain_text(
        page,
        preserve_formatting=True,
        main_content=True,
        list_bullets=False,
        alt_texts=False,
        links=False,
        form_fields=False,
        noscript=False,
    )
    return tidy_lines(text)


def tidy_lines(text: str) -> str:
    """Text without carriage returns and BOMs, spaces, tabs and no-break spaces at the end of lines, or more than
    one blank line in a row, stripped."""
    text = text.replace("\r", "").replace("\ufeff", "")
    if " \n" in text or "\t\n" in text or "\xa0\n" in text:  # (a substring test is cheaper than a regex scan)
        text = "\n".join([line.rstrip(" \t\xa0") for line in text.split("\n")])  # (7x faster than a regex)
    if "\n\n\n" in text:
        text = _MANY_NEWLINES.sub("\n\n", text)
    return text.strip()


@dataclass
class DecodingCounts:
    """What decoding found over a crawl's pages: guessed code pages (by codec) and pages left with U+FFFD."""

    charset_guessed: Counter = field(default_factory=Counter)
    replacement_characters: Counter = field(default_factory=Counter)  # pages, characters

    def add(self, page: DecodedPage) -> None:
        if page.guessed:
            self.charset_guessed[page.codec] += 1
        if page.replacements:  # never kept silently: counted in the crawl's stats and data card
            self.replacement_characters["pages"] += 1
            self.replacement_characters["characters"] += page.replacements


# --------------------------------------------------------------------------- extractors

EXTRACTORS = ("resiliparse", "trafilatura")


def make_extractor(name: str = "resiliparse", timeout: float = 10.0):
    """``extract(html, charset) -> text``: resiliparse (fast, default) or trafilatura (precision) in a
    worker process with a per-document ``timeout`` (a pathological page cannot stall a crawl). Either counts
    what decoding found in its ``decoding`` (:class:`DecodingCounts`)."""
    if name == "resiliparse":
        return ResiliparseExtractor()
    if name == "trafilatura":
        return TrafilaturaExtractor(timeout)
    raise DataError(f"unknown HTML extractor '{name}'; allowed: {', '.join(EXTRACTORS)}")


class ResiliparseExtractor:
    """:func:`html_to_text`, counting what decoding found in ``decoding``."""

    def __init__(self) -> None:
        self.decoding = DecodingCounts()

    def __call__(self, html: bytes, charset: str | None = None) -> str:
        page = decode_page(html, charset)
        self.decoding.add(page)
        return main_text(page.text)


def _trafilatura_worker(connection, parent_pid: int) -> None:
    """Child process: receive (html text) and answer with trafilatura's main text (or an error); it ends with
    its parent."""
    trafilatura = require("trafilatura", "extractor 'trafilatura'")
    exit_with_parent(parent_pid)

    while True:
        try:
            html = connection.recv()
        except EOFError:
            return
        if html is None:
            return
        try:
            text = trafilatura.extract(html, include_comments=False, include_tables=False, favor_precision=True,
                                       deduplicate=False) or ""
            connection.send(("ok", text))
        except Exception as exc:  # report, keep serving
            connection.send(("error", f"{type(exc).__name__}: {exc}"))


class TrafilaturaExtractor:
    """trafilatura ≥ 2 in a persistent child process; a page that takes longer than ``timeout``
    seconds kills the child (it is restarted for the next page) and raises :class:`DataError`."""

    def __init__(self, timeout: float = 10.0) -> None:
        require("trafilatura", "extractor 'trafilatura'")
        self.timeout = timeout
        self.decoding = DecodingCounts()
        self._process = None
        self._connection = None

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_trafilatura_worker, args=(child, os.getpid()), daemon=True)
        self._process.start()
        child.close()

    def __call__(self, html: bytes, charset: str | None = None) -> str:
        page = decode_page(html, charset)
        self.decoding.add(page)
        text = page.text
        if self._process is None or not self._process.is_alive():
            self._start()
        self._connection.send(text)
        if not self._connection.poll(self.timeout):
            self._kill()
            raise DataError(f"trafilatura timed out after {self.timeout:g}s on this page")
        status, value = self._connection.recv()
        if status != "ok":
            raise ValueError(value)
        return _MANY_NEWLINES.sub("\n\n", value.replace("\r", "")).strip()

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(5)
        self._process = self._connection = None

    def close(self) -> None:
        if self._process is not None and self._process.is_alive():
            try:
                self._connection.send(None)
                self._process.join(2)
            except (BrokenPipeError, OSError):
                pass
        self._kill()
