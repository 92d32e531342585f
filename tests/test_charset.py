"""Pages that declare no charset and are not UTF-8: the code page is chosen by what the text becomes, every
guess is counted (``charset_guessed``), and a page left with U+FFFD is never kept silently."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter

import pytest

from workbench.crawl.charset import guess_single_byte
from workbench.crawl.extract import decode_page, html_to_text, make_extractor
from workbench.crawl.langid import CharNgramIdentifier
from workbench.crawl.pipeline import run_crawl

from .charset_pages import PLAN, encodable, generate_pages, html_page, load_lines

PAGES_PER_PAIR = 8


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def lines_in(language: str, codec: str, count: int = 10) -> list[str]:
    """The first ``count`` fixture lines of ``language`` that ``codec`` can encode."""
    return [line for line in load_lines()[language] if encodable(line, codec)][:count]


def test_generated_pages_cover_six_latin_languages_and_four_code_pages() -> None:
    latin = {language for language in PLAN if language.endswith("_Latn")}
    codecs = {codec for pair in PLAN.values() for codec in pair}
    assert len(latin) >= 6 and len(codecs) >= 4


def test_pages_without_a_charset_decode_exactly() -> None:
    pages = generate_pages(PAGES_PER_PAIR, seed=1)
    wrong = Counter()
    for page in pages:
        decoded = decode_page(page.html)
        assert decoded.guessed and not decoded.replacements
        if decoded.text != nfc(page.text):
            wrong[(page.language, page.codec, decoded.codec)] += 1
    exact = 1 - sum(wrong.values()) / len(pages)
    assert exact >= 0.99, f"{exact:.3f} decoded exactly; wrong: {wrong.most_common(10)}"


def test_extracted_text_equals_the_text_of_the_utf8_page() -> None:
    for page in generate_pages(1, seed=2):
        assert html_to_text(page.html) == html_to_text(nfc(page.text).encode()), (page.language, page.codec)


def test_windows_1252_sardinian_is_not_read_as_windows_1258() -> None:
    """The issue's example: resiliparse's statistics say Windows-1258, which turns "famìlia" into "faḿlia"."""
    text = html_page(["Sa famìlia de s'òmine est in Tortolì, sa cummissària at pòdere de nàrrere."] * 10)
    page = decode_page(text.encode("cp1252"))
    assert page.text == text and page.codec == "cp1252" and page.guessed
    assert guess_single_byte(text.encode("cp1252"), "cp1258") == "cp1252"


@pytest.mark.parametrize("codec", ["cp1251", "koi8-r"])
def test_cyrillic_code_pages_are_told_apart_by_letter_case(codec: str) -> None:
    text = html_page(load_lines()["rus_Cyrl"][:10])
    assert decode_page(text.encode(codec)).text == text


def test_a_utf8_page_with_one_bad_byte_stays_utf8_and_its_replacement_character_is_counted() -> None:
    text = html_page(load_lines()["srd_Latn"][:10])
    html = text.encode() + b"<p>un byte \xff solu</p>"
    extract = make_extractor("resiliparse")
    assert "\ufffd" in extract(html)
    assert extract.decoding.charset_guessed == {"utf-8": 1}
    assert extract.decoding.replacement_characters == {"pages": 1, "characters": 1}


def test_a_declared_page_keeps_its_charset_and_valid_utf8_is_never_guessed() -> None:
    text = html_page(lines_in("ces_Latn", "cp1250"))
    declared = decode_page(text.encode("cp1250"), "windows-1250")
    assert (declared.text, declared.codec, declared.guessed) == (text, "cp1250", False)
    meta = text.replace("<head>", '<head><meta charset="windows-1250">').encode("cp1250")
    assert not decode_page(meta).guessed
    utf8 = decode_page(text.encode())
    assert (utf8.text, utf8.codec, utf8.guessed) == (text, "utf-8", False)


def test_guessed_charsets_and_replacement_characters_reach_the_stats_and_the_card(tmp_path) -> None:
    from .test_crawl import http_response, warc_record

    lines = load_lines()
    pages = [html_page(lines["srd_Latn"][i : i + 10]).encode("cp1252") for i in range(0, 10, 5)]
    pages.append(html_page(lines_in("ces_Latn", "cp1250")).encode("cp1250"))
    pages.append(html_page(lines["srd_Latn"][10:20]).replace("ù", "\ufffd").encode())  # holds U+FFFD itself
    records = b"".join(warc_record("response", f"http://s{i}/", "application/http; msgtype=response",
                                   http_response("Content-Type: text/html\r\n", page))
                       for i, page in enumerate(pages))
    (tmp_path / "pages.warc").write_bytes(records)
    identifier = CharNgramIdentifier.train({"srd_Latn": lines["srd_Latn"], "ita_Latn": lines["ita_Latn"],
                                            "ces_Latn": lines["ces_Latn"]})
    stats = run_crawl([tmp_path / "pages.warc"], ["srd_Latn"], identifier, tmp_path / "out", progress=False)
    assert stats["charset_guessed"] == {"cp1250": 1, "cp1252": 2}
    assert stats["replacement_characters"]["pages"] == 1
    on_disk = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert on_disk["charset_guessed"] == stats["charset_guessed"]
    card = json.loads((tmp_path / "out" / "card.json").read_text())
    assert card["charset_guessed"] == {"cp1250": 1, "cp1252": 2} and card["replacement_characters"]["pages"] == 1
    markdown = (tmp_path / "out" / "card.md").read_text()
    assert "cp1252: 2" in markdown and "pages with U+FFFD replacement characters: 1" in markdown
    kept = (tmp_path / "out" / "srd_Latn.jsonl").read_text(encoding="utf-8")
    assert "famìlia" in kept or "à" in kept
