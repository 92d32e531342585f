"""Generated web pages in legacy code pages, with no charset declared (for tests/test_charset.py and
bench/charset.py).

Each page holds 10 lines of real text of one language (``fixtures/charset/lines.json``: FLORES-200 dev
sentences, and for the Central European, Baltic and Turkish code pages CLDR territory names; see the README
there), chosen at random (seeded) among the lines its code page can encode, wrapped in minimal HTML with no
``<meta charset>``, and encoded in that code page.
"""

from __future__ import annotations

import json
import random
import unicodedata
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

LINES_FILE = Path(__file__).parent / "fixtures" / "charset" / "lines.json"
LINES_PER_PAGE = 10
# the code pages each language's pages are written in
PLAN = {
    "srd_Latn": ("cp1252", "iso8859-15"), "fur_Latn": ("cp1252", "iso8859-15"), "cat_Latn": ("cp1252", "iso8859-1"),
    "ita_Latn": ("cp1252", "iso8859-1"), "spa_Latn": ("cp1252", "iso8859-15"), "oci_Latn": ("cp1252",),
    "lij_Latn": ("cp1252",), "scn_Latn": ("cp1252",), "vec_Latn": ("cp1252",), "vie_Latn": ("cp1258",),
    "ces_Latn": ("cp1250", "iso8859-2"), "pol_Latn": ("cp1250", "iso8859-2"), "hun_Latn": ("cp1250", "iso8859-2"),
    "slk_Latn": ("cp1250",), "slv_Latn": ("cp1250",), "hrv_Latn": ("cp1250",),
    "lit_Latn": ("cp1257", "iso8859-13"), "lav_Latn": ("cp1257", "iso8859-13"), "est_Latn": ("cp1257",),
    "tur_Latn": ("cp1254",), "rus_Cyrl": ("cp1251", "koi8-r"),
}


@dataclass(frozen=True)
class Page:
    language: str
    codec: str
    text: str  # the page as a string (what decoding should give)
    html: bytes  # the page in its code page


def load_lines() -> dict[str, list[str]]:
    return json.loads(LINES_FILE.read_text(encoding="utf-8"))


def encode(text: str, codec: str) -> bytes:
    """``text`` in ``codec``; for Windows-1258 (Vietnamese), a letter it has no precomposed form for is written
    as the longest precomposed start it has plus combining tone marks, as Vietnamese Windows software does."""
    if codec != "cp1258":
        return text.encode(codec)
    return b"".join(_cp1258_letter(c) for c in text)


def _cp1258_letter(letter: str) -> bytes:
    try:
        return letter.encode("cp1258")
    except UnicodeEncodeError:
        pass
    base, *marks = unicodedata.normalize("NFD", letter)
    for size in range(len(marks), -1, -1):  # as many marks precomposed with the base as the code page allows
        for kept in combinations(range(len(marks)), size):
            start = unicodedata.normalize("NFC", base + "".join(marks[i] for i in kept))
            rest = "".join(mark for i, mark in enumerate(marks) if i not in kept)
            try:
                return start.encode("cp1258") + rest.encode("cp1258")
            except UnicodeEncodeError:
                continue
    return letter.encode("cp1258")  # (raises: not Vietnamese)


def encodable(line: str, codec: str) -> bool:
    try:
        encode(line, codec)
    except UnicodeEncodeError:
        return False
    return True


def html_page(lines: list[str]) -> str:
    """Minimal HTML with no charset declared: a title and one paragraph per line."""
    title = " ".join(lines[0].split()[:5])
    body = "\n".join(f"<p>{line}</p>" for line in lines)
    head = f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n"
    return f"{head}<body>\n<h1>{title}</h1>\n{body}\n</body></html>\n"


def generate_pages(pages_per_pair: int, seed: int = 0) -> list[Page]:
    """``pages_per_pair`` pages for every (language, code page) of :data:`PLAN`."""
    rng = random.Random(seed)
    all_lines = load_lines()
    pages = []
    for language, codecs in PLAN.items():
        for codec in codecs:
            lines = [line for line in all_lines[language] if encodable(line, codec)]
            assert len(lines) >= LINES_PER_PAGE, (language, codec, len(lines))
            for _ in range(pages_per_pair):
                text = html_page(rng.sample(lines, LINES_PER_PAGE))
                pages.append(Page(language, codec, text, encode(text, codec)))
    return pages
