"""Crawl library on real data: a Common Crawl WARC excerpt, UDHR/NLLB seed text, FLORES sentences."""

from __future__ import annotations

import gzip
import importlib.util
import json
from itertools import pairwise
from pathlib import Path

import pytest
import regex

from workbench.crawl import (
    CharNgramIdentifier,
    CrawlStats,
    ExactDeduplicator,
    FastTextIdentifier,
    TargetAwareIdentifier,
    dominant_script,
    fasttext_label_to_code,
    html_to_text,
    iter_documents,
    read_seed_dir,
    run_crawl,
    split_segments,
)
from workbench.crawl.langid import combine
from workbench.crawl.pipeline import (
    DROP_REASONS,
    RECORD_FIELDS,
    CrawlSettings,
    ShardProcessor,
    cut_at_space,
    paragraph_chunks,
)
from workbench.errors import DataError
from workbench.text import is_collapsed

from .conftest import FIXTURES, ROOT

WARC = FIXTURES / "warc" / "cc-main-2020-34-excerpt.warc.gz"
LID = FIXTURES / "lid"
SEED = ROOT / "corpora" / "lid-seed"
HELD_OUT = 10  # last lines of every seed file, never used for training in these tests
WARC_LANGUAGES = ["rus_Cyrl", "zho_Hans", "deu_Latn", "nld_Latn"]


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def seed_split() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    texts = read_seed_dir(SEED)
    return ({c: lines[:-HELD_OUT] for c, lines in texts.items()},
            {c: lines[-HELD_OUT:] for c, lines in texts.items()})


@pytest.fixture(scope="module")
def char_model(seed_split) -> CharNgramIdentifier:
    return CharNgramIdentifier.train(seed_split[0])


@pytest.fixture(scope="module")
def identifier(char_model, seed_split) -> TargetAwareIdentifier:
    return combine(seed_split[0], char_model, FastTextIdentifier())


@pytest.fixture(scope="module")
def warc_docs() -> list:
    stats = CrawlStats()
    docs = list(iter_documents(WARC, stats))
    assert stats.bad_input_total == 0
    return docs


def flores(code: str) -> list[str]:
    return (LID / f"flores200-dev-{code}.txt").read_text(encoding="utf-8").splitlines()


def read_docs(path: Path) -> tuple[list, CrawlStats]:
    stats = CrawlStats()
    return list(iter_documents(path, stats)), stats


def warc_record(warc_type: str, uri: str, content_type: str, block: bytes) -> bytes:
    head = (f"WARC/1.0\r\nWARC-Type: {warc_type}\r\nWARC-Target-URI: {uri}\r\n"
            f"WARC-Record-ID: <urn:uuid:{abs(hash((uri, warc_type))):032x}>\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(block)}\r\n\r\n")
    return head.encode() + block + b"\r\n\r\n"


def http_response(headers: str, body: bytes) -> bytes:
    return ("HTTP/1.1 200 OK\r\n" + headers + "\r\n").encode() + body


# --------------------------------------------------------------------------- readers + extraction

def test_warc_excerpt_yields_every_html_response_with_text(warc_docs) -> None:
    assert len(warc_docs) == 16
    assert [d.offset for d in warc_docs] == sorted(d.offset for d in warc_docs)
    for doc in warc_docs:
        assert doc.html and doc.text is None and doc.url.startswith("http")
        assert html_to_text(doc.html, doc.charset).strip()


def test_warc_charsets_decode_without_mojibake(warc_docs) -> None:
    by_url = {d.url: d for d in warc_docs}
    ru = by_url["http://01spb.ru/company/"]
    assert ru.charset == "windows-1251"
    text = html_to_text(ru.html, ru.charset)
    assert "Стратегия пожарной безопасности" in text
    assert not any(bad in text for bad in ("\ufffd", "Ð", "Ñ", "Ã"))
    declared_gb2312 = by_url["http://0760.jxtdw.com/area/sanxiang/"]
    undeclared_gbk = by_url["http://041696.com/15477/list_6_4.html"]
    assert declared_gb2312.charset == "gb2312" and undeclared_gbk.charset is None
    assert "中山英才网" in html_to_text(declared_gb2312.html, declared_gb2312.charset)
    gbk_text = html_to_text(undeclared_gbk.html, None)
    assert "企业公告" in gbk_text and "\ufffd" not in gbk_text


def test_wrong_http_charset_falls_back_to_detection() -> None:
    sentence = "Привет! Это тестовая страница на русском языке, и она закодирована в cp1251. "
    body = "<p>" + sentence * 5 + "</p>"
    html = f"<html><body>{body}</body></html>".encode("cp1251")
    assert "тестовая страница" in html_to_text(html, "utf-8")


@pytest.mark.parametrize("html", [
    b"<p>Su sardu est una limba romanza.</p>",
    "\ufeff<p>Cun BOM: àèìòù ☃ 😀</p>".encode(),
    "\ufeff\ufeff<p>two BOMs</p>".encode(),
    "<p>a literal \ufffd and \ud7ff</p>".encode(),
    b"<p>caf\xe9 au lait, encoded in Latin-1 but declared UTF-8</p>",
    b"<p>a surrogate \xed\xa0\x80 is not UTF-8</p>",
    ("<p>" + "Привет, мир! " * 40 + "</p>").encode("cp1251"),
])
def test_pages_declared_utf8_decode_as_resiliparse_decodes_them(html: bytes) -> None:
    """Declared UTF-8, a page is decoded without detecting its encoding when it is valid UTF-8; the text is the
    one ``bytes_to_str`` gives with the detected encoding as fallback (the path taken for every other page)."""
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    from workbench.crawl.extract import decode_html, python_codec

    detected = python_codec(detect_encoding(html, from_html_meta=True)) or "utf-8"
    fallbacks = tuple(dict.fromkeys(c for c in (detected, "utf-8") if c != "utf-8"))
    assert decode_html(html, "UTF-8") == bytes_to_str(html, "utf-8", errors="replace", fallback_encodings=fallbacks)


@pytest.mark.parametrize("text", [
    "a \nb\t\n\nc\xa0 \t\n\n\n\nd  ", "\r\n x\r\n\r\n\r\n\r\ny \ufeff", "\n\n\n", "", "  \n \n", "one line ",
    "a\u2003\nb",  # an em space at the end of a line stays (only spaces, tabs and no-break spaces go)
])
def test_extracted_text_is_tidied_as_the_regexes_define(text: str) -> None:
    import re

    from workbench.crawl.extract import tidy_lines

    expected = re.sub(r"[ \t\u00a0]+\n", "\n", text.replace("\r", "").replace("\ufeff", ""))
    assert tidy_lines(text) == re.sub(r"\n{3,}", "\n\n", expected).strip()


def test_a_page_of_replacement_characters_is_undecodable_even_when_it_is_valid_utf8() -> None:
    from workbench.crawl.extract import decode_html

    written = ("<p>" + "\ufffd" * 30 + " ok</p>").encode()  # valid UTF-8 that holds U+FFFD itself
    with pytest.raises(DataError, match="30 replacement characters"):
        decode_html(written, "utf-8")
    assert decode_html(("<p>" + "\ufffd" * 3 + " " + "ok " * 200 + "</p>").encode(), "utf-8").count("\ufffd") == 3


def test_warc_pages_are_labelled_by_language(warc_docs, identifier) -> None:
    for doc in warc_docs:
        top = identifier.predict(html_to_text(doc.html, doc.charset))[0][0]
        if ".ru/" in doc.url:
            assert top == "rus_Cyrl"
        elif ".nl/" in doc.url:
            assert top == "nld_Latn"
        elif "live-radsport.ch" in doc.url:
            assert top == "deu_Latn"
        elif "037426.cn" in doc.url:  # an English company page on a .cn site
            assert top == "eng_Latn"
        else:
            assert top == "zho_Hans", doc.url


@pytest.mark.parametrize("member", [7, 10])
def test_truncated_warc_gz_keeps_records_before_the_cut(tmp_path, warc_docs, member) -> None:
    cut = warc_docs[member].offset + (500 if member == 10 else -10)  # inside a response / before one
    path = tmp_path / "cut.warc.gz"
    path.write_bytes(WARC.read_bytes()[:cut])
    docs, stats = read_docs(path)
    assert [(d.offset, d.html) for d in docs] == [(d.offset, d.html) for d in warc_docs[:member]]
    assert stats.bad_input_by_kind == {"truncated_file": 1}
    assert stats.bad_input[0]["source"] == str(path) and stats.bad_input[0]["offset"] is not None


def read_by_ranges(path: Path, cuts: list[int]) -> tuple[list, CrawlStats]:
    """The documents of ``path`` read range by range, ``cuts`` the range boundaries, and the ranges' stats."""
    stats, docs = CrawlStats(), []
    bounds = [0, *cuts, path.stat().st_size]
    for start, end in pairwise(bounds):
        docs += list(iter_documents(path, stats, (start, end)))
    return docs, stats


def test_byte_ranges_of_a_warc_gz_read_every_record_once(tmp_path, warc_docs) -> None:
    """Ranges cut anywhere (on a member start, one byte after it, inside a payload, in the gzip magic of a
    member) give the file's documents once each, in order; a truncated file is reported once, by the range
    that reaches its end. Only per-record gzip files are read by range."""
    import random

    from workbench.crawl.readers import record_ranges_possible

    expected = [(d.offset, d.html) for d in warc_docs]
    starts = [d.offset for d in warc_docs]
    size = WARC.stat().st_size
    cut_sets = [[starts[3]], [starts[3] + 1], [starts[5] - 1, starts[5] + 2], [size // 3, 2 * size // 3],
                sorted(random.Random(1).sample(range(1, size), 12)), [1, 2, 3]]
    for cuts in cut_sets:
        docs, stats = read_by_ranges(WARC, cuts)
        assert [(d.offset, d.html) for d in docs] == expected, cuts
        assert stats.bad_input_total == 0 and stats.docs_read[str(WARC)] == len(expected)
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(WARC.read_bytes()[: starts[10] + 500])
    docs, stats = read_by_ranges(cut, [starts[4] + 7, starts[8] + 1])
    assert [(d.offset, d.html) for d in docs] == expected[:10]
    assert stats.bad_input_by_kind == {"truncated_file": 1}
    assert record_ranges_possible(WARC)
    single = tmp_path / "one-member.warc.gz"  # one gzip stream for the whole file: not splittable
    single.write_bytes(gzip.compress(gzip.decompress(WARC.read_bytes())))
    assert not record_ranges_possible(single) and not record_ranges_possible(tmp_path / "x.txt")


def test_truncated_uncompressed_warc(tmp_path, warc_docs) -> None:
    plain = gzip.decompress(WARC.read_bytes())
    path = tmp_path / "cut.warc"
    path.write_bytes(plain[: len(plain) // 2])
    docs, stats = read_docs(path)
    assert 0 < len(docs) < 16
    assert [d.html for d in docs] == [d.html for d in warc_docs[: len(docs)]]
    assert stats.bad_input_by_kind["truncated_file"] == 1


def test_empty_and_garbage_files_are_counted_not_fatal(tmp_path) -> None:
    (tmp_path / "empty.warc.gz").write_bytes(b"")
    (tmp_path / "garbage.warc.gz").write_bytes(bytes(range(256)) * 20)
    (tmp_path / "empty.txt.gz").write_bytes(gzip.compress(b"\n\n"))
    for name, kind in [("empty.warc.gz", "empty_file"), ("garbage.warc.gz", "corrupt_file"),
                       ("empty.txt.gz", "empty_file")]:
        docs, stats = read_docs(tmp_path / name)
        assert docs == [] and stats.bad_input_by_kind == {kind: 1}, name
    stats = run_crawl([tmp_path / "empty.warc.gz", tmp_path / "garbage.warc.gz"], ["srd_Latn"],
                      CharNgramIdentifier.train({"srd_Latn": ["su sardu"], "ita_Latn": ["l'italiano"]}),
                      tmp_path / "out", progress=False)
    assert stats["bad_input"]["by_kind"] == {"corrupt_file": 1, "empty_file": 1}
    assert (tmp_path / "out" / "srd_Latn.jsonl").read_text() == ""


def test_unsupported_or_missing_input_is_a_data_error(tmp_path) -> None:
    (tmp_path / "x.pdf").write_bytes(b"%PDF")
    model = CharNgramIdentifier.train({"srd_Latn": ["su sardu"], "ita_Latn": ["l'italiano"]})
    with pytest.raises(DataError, match="unsupported type"):
        run_crawl([tmp_path / "x.pdf"], ["srd_Latn"], model, tmp_path / "out", progress=False)
    with pytest.raises(DataError, match="does not exist"):
        run_crawl([tmp_path / "missing.txt"], ["srd_Latn"], model, tmp_path / "out", progress=False)
    with pytest.raises(DataError, match="ISO 639-3"):
        run_crawl([], ["xx_Latn"], model, tmp_path / "out", progress=False)


def test_jsonl_reader_skips_malformed_lines(tmp_path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "uno", "url": "http://a", "id": 7}\n{not json\n[1, 2]\n\n{"text": "duos"}\n',
                    encoding="utf-8")
    docs, stats = read_docs(path)
    assert [(d.text, d.url, d.id, d.offset) for d in docs] == [("uno", "http://a", "7", 1),
                                                                ("duos", None, None, 5)]
    assert stats.bad_input_by_kind == {"malformed_json": 1, "missing_text": 1}
    assert [(b["kind"], b["offset"]) for b in stats.bad_input] == [("malformed_json", 2), ("missing_text", 3)]


def test_text_reader_paragraph_and_line_modes(tmp_path) -> None:
    paragraphs = tmp_path / "p.txt"
    paragraphs.write_text("a b\nc d\n\n\ne f\n", encoding="utf-8")
    docs, _ = read_docs(paragraphs)
    assert [(d.text, d.offset) for d in docs] == [("a b\nc d", 1), ("e f", 5)]
    lines = tmp_path / "l.txt.gz"
    lines.write_bytes(gzip.compress(b"uno\ndos\n\xff\xfe\ntres\n\n"))
    docs, stats = read_docs(lines)
    assert [(d.text, d.offset) for d in docs] == [("uno", 1), ("dos", 2), ("tres", 4)]
    assert [(b["kind"], b["offset"]) for b in stats.bad_input] == [("undecodable", 3)]
    broken = tmp_path / "b.txt.gz"
    broken.write_bytes(gzip.compress(("riga de testu\n" * 5000).encode())[:-8])
    docs, stats = read_docs(broken)
    assert docs and stats.bad_input_by_kind == {"truncated_file": 1}


def test_wet_conversion_and_encoded_http_bodies(tmp_path) -> None:
    html = b"<html><body><p>Su sardu est una limba romanza faeddada in Sardigna.</p></body></html>"
    pieces = [html[i : i + 20] for i in range(0, len(html), 20)]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    records = (
        warc_record("response", "http://a/", "application/http; msgtype=response",
                    http_response("Content-Type: text/html; charset=utf-8\r\nContent-Encoding: gzip\r\n",
                                  gzip.compress(html)))
        + warc_record("response", "http://b/", "application/http; msgtype=response",
                      http_response("Content-Type: text/html\r\nTransfer-Encoding: chunked\r\n", chunked))
        + warc_record("response", "http://c/", "application/http; msgtype=response",
                      http_response("Content-Type: image/png\r\n", b"\x89PNG"))
    )
    path = tmp_path / "enc.warc"
    path.write_bytes(records)
    docs, stats = read_docs(path)
    assert [d.url for d in docs] == ["http://a/", "http://b/"] and all(d.html == html for d in docs)
    assert stats.skipped["not_html"] == 1 and stats.bad_input_total == 0
    wet = tmp_path / "x.wet.gz"
    wet.write_bytes(gzip.compress(warc_record("conversion", "http://d/", "text/plain", b"Unu testu.")))
    docs, stats = read_docs(wet)
    assert [(d.text, d.url, d.html) for d in docs] == [("Unu testu.", "http://d/", None)]


# --------------------------------------------------------------------------- language identification

def test_char_ngram_separates_sardinian_from_neighbours(char_model, seed_split) -> None:
    srd = flores("srd_Latn")
    recall = sum(char_model.predict(s)[0][0] == "srd_Latn" for s in srd) / len(srd)
    assert recall >= 0.9
    others = flores("ita_Latn") + flores("cat_Latn") + flores("spa_Latn") + seed_split[1]["cos_Latn"]
    false_srd = sum(char_model.predict(s)[0][0] == "srd_Latn" for s in others) / len(others)
    assert false_srd <= 0.02


def test_target_aware_identifier_keeps_sardinian_recall(identifier) -> None:
    srd = flores("srd_Latn")
    hits = [p[0] for p in map(identifier.predict, srd)]
    assert sum(c == "srd_Latn" and s >= 0.5 for c, s in hits) / len(srd) >= 0.9
    german = "Das ist ein ganz normaler deutscher Satz über das Wetter in Berlin."
    assert identifier.predict(german)[0][0] == "deu_Latn"
    assert identifier.predict("Это обычное предложение на русском языке.")[0][0] == "rus_Cyrl"


def test_save_load_round_trip(tmp_path, char_model, identifier) -> None:
    char_model.save(tmp_path / "model.npz")
    loaded = CharNgramIdentifier.load(tmp_path / "model.npz")
    sentences = flores("srd_Latn")[:40] + flores("ita_Latn")[:40] + ["", "1234 !!", "s'òmine"]
    assert [loaded.predict(s) for s in sentences] == [char_model.predict(s) for s in sentences]
    identifier.save(tmp_path / "lid")
    again = TargetAwareIdentifier.load(tmp_path / "lid")
    assert again.confusable == identifier.confusable and again.rare == identifier.rare
    assert [again.predict(s) for s in sentences[:10]] == [identifier.predict(s) for s in sentences[:10]]
    (tmp_path / "bad.npz").write_bytes(b"not a model")
    with pytest.raises(DataError):
        CharNgramIdentifier.load(tmp_path / "bad.npz")


def test_fasttext_labels_map_to_flores_codes() -> None:
    assert fasttext_label_to_code("ru") == "rus_Cyrl"
    assert fasttext_label_to_code("zh", "Hant") == "zho_Hant"
    assert fasttext_label_to_code("sc") == "srd_Latn"
    assert fasttext_label_to_code("sr", "Latn") == "srp_Latn"
    assert fasttext_label_to_code("__label__vec") == "vec_Latn"
    assert fasttext_label_to_code("xx") is None
    assert dominant_script("Привет, мир") == "Cyrl"
    assert dominant_script("这是中文") == "Hans" and dominant_script("這是中文") == "Hant"
    assert dominant_script("これは日本語です") == "Jpan" and dominant_script("123 !") is None
    assert FastTextIdentifier().predict("这是一个关于天气的中文句子。")[0][0] == "zho_Hans"


def test_fasttext_labels_of_other_scripts_are_dropped_and_the_rest_renormalised() -> None:
    """fastText's top labels become FLORES codes: labels of languages not written in the text's script are
    dropped and the kept ones share their mass, labels of one code add up (the rule, written out here)."""
    import random

    from workbench.crawl.langid import SCRIPT_LANGUAGE as _SCRIPT_LANGUAGE
    from workbench.crawl.langid import _merge_labels
    from workbench.crawl.langid import scripts_of as _scripts_of

    def by_rule(pairs, script):
        merged, dropped = {}, 0.0
        for raw, label in pairs:
            score, code = min(1.0, float(raw)), fasttext_label_to_code(label, script)
            if code is not None and script is not None and script not in _scripts_of(code.split("_")[0]):
                code = None
            if code is None:
                dropped += score
            else:
                merged[code] = merged.get(code, 0.0) + score
        kept = sum(merged.values())
        if dropped and kept:
            merged = {code: score / kept * min(1.0, kept + dropped) for code, score in merged.items()}
        elif dropped and script in _SCRIPT_LANGUAGE:
            merged = {_SCRIPT_LANGUAGE[script]: min(1.0, dropped)}
        return sorted(merged.items(), key=lambda kv: -kv[1])

    assert _merge_labels([(0.8, "__label__de"), (0.15, "__label__ru"), (0.05, "__label__en")], "Latn") == \
        [("deu_Latn", pytest.approx(0.8 / 0.85 * 1.0)), ("eng_Latn", pytest.approx(0.05 / 0.85))]
    rng = random.Random(3)
    codes = ["en", "de", "ru", "zh", "ja", "sh", "hr", "bs", "sr", "it", "sc", "co", "ar", "fa", "xx", "yue", "wuu"]
    labels = [f"__label__{code}" for code in codes]
    for _ in range(5000):
        scores = sorted((rng.choice([0.0, 1.00001, rng.random()]) for _ in range(rng.randint(1, 5))), reverse=True)
        pairs = [(score, rng.choice(labels)) for score in scores]
        script = rng.choice(["Latn", "Cyrl", "Hans", "Arab", "Jpan", None])
        assert _merge_labels(pairs, script) == by_rule(pairs, script), (pairs, script)


def test_seed_model_text_is_letters_and_apostrophes_between_single_spaces() -> None:
    import unicodedata

    import regex

    from workbench.crawl.langid import normalize_for_ngrams

    apostrophes = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u02bc": "'", "\u00b4": "'"})

    def by_regex(text):  # the definition: every run of non-letters (digits and _ included) is one space; combining
        # marks are letters (Python's \w misses them: it once turned "भोजपुरी भाषा" into "भ जप र भ ष")
        text = unicodedata.normalize("NFKC", text).translate(apostrophes).lower()
        return " " + regex.sub(r"[^\p{L}\p{M}']+", " ", text).strip() + " "

    samples = ["S'ARRÈXINI 2024: sa_limba\tsarda!", "  l’òmine, d`oe\u00a0e cras\n", "Ｆｕｌｌ ｗｉｄｔｈ ①②",
               "Привет,\u2003мир 42", "中文，日本語。𠀀 x\x00y", "é (e\u0301) ﬁn", "", "123 ...", "🙂 emoji 🙂",
               "ΟΔΟΣ’ ΟΔΟΣ` ΟΔΟΣʼ ΟΔΟΣ´ΑΒ ΟΔΟΣ'", "Σ’Σ", "भोजपुरी भाषा", "ไม่มี ๑๒"]
    for text in samples:
        assert normalize_for_ngrams(text) == by_regex(text), repr(text)


def test_fasttext_reads_text_with_its_whitespace_collapsed() -> None:
    fasttext = FastTextIdentifier()
    text = "Su sardu est una limba romanza faeddada in Sardigna"
    messy = [f"  {text}", f"{text}\t", text.replace(" ", "  "), text.replace(" ", "\u00a0"), text.replace(" ", "\n")]
    assert all(not is_collapsed(variant) for variant in messy) and is_collapsed(text)
    assert fasttext.predict_batch(messy) == [fasttext.predict(text)] * len(messy)


def test_dominant_script_counts_letters_and_breaks_ties_by_first_script() -> None:
    assert dominant_script("Hello, world") == "Latn" and dominant_script("ab αβγ") == "Grek"
    assert dominant_script("αβ ab") == "Grek" and dominant_script("ab αβ") == "Latn"  # tie: the first met
    assert dominant_script("Über Привет мир") == "Cyrl"
    assert dominant_script("𠀀𠀁 ab") == "Hans"  # CJK extension B is Han
    assert dominant_script("ሰላም ለዓለም") == "Ethi" and dominant_script("١٢٣ !") is None
    assert dominant_script("x" * 5 + "я" * 10, sample=5) == "Latn"  # only the first `sample` letters count


def _reference_script(text: str, sample: int = 400) -> str | None:
    """dominant_script spelled out with unicodedata, one character at a time (no script table, no numpy)."""
    from collections import Counter

    from workbench.crawl.langid import _char_script, _han_variant

    text = text[: sample * 10]
    letters = [s for s in map(_char_script, text) if s][:sample]
    counts = Counter(letters)
    if counts["Jpan"] and counts["Jpan"] >= 0.1 * (counts["Jpan"] + counts["Hani"]):
        letters = ["Jpan" if s == "Hani" else s for s in letters]
        counts = Counter(letters)
    if not letters:
        return None
    code = next(s for s in letters if counts[s] == max(counts.values()))  # ties: the script met first
    return _han_variant(text) if code == "Hani" else code


def test_dominant_scripts_batch_equals_one_by_one() -> None:
    import random

    from workbench.crawl.langid import dominant_scripts

    rng = random.Random(0)
    pools = ["abcxyzé", "жзи", "这们个漢字", "這們個", "かなカナ", "ሰላም", "مرحبا", "नमस्ते", "αβγ", "한국",
             " 12.,!", "𠀀"]
    texts = ["", "123 !!", "x" * 5 + "я" * 10, *flores("srd_Latn")[:20]]
    for _ in range(1500):  # mixed scripts, ties, texts longer than the letter sample
        pool = "".join(rng.sample(pools, rng.randint(1, 4)))
        texts.append("".join(rng.choice(pool) for _ in range(rng.choice([1, 3, 10, 50, 500, 4500]))))
    assert dominant_scripts(texts) == [dominant_script(t) for t in texts]
    assert dominant_scripts(texts, sample=5) == [dominant_script(t, sample=5) for t in texts]
    assert dominant_scripts(texts) == [_reference_script(t) for t in texts]
    assert dominant_scripts(texts, sample=5) == [_reference_script(t, sample=5) for t in texts]


def test_seed_model_batch_equals_one_by_one(char_model) -> None:
    texts = flores("srd_Latn")[:30] + flores("ita_Latn")[:30] + ["", "1234 !!", "s'òmine", "Привет", "x"]
    one = [char_model.predict(t) for t in texts]
    assert char_model.predict_batch(texts) == one
    assert char_model.predict_batch(texts, max_chars=300) == one  # split into several numpy passes
    assert one[0][0][0] == "srd_Latn" and one[30][0][0] == "ita_Latn"


def test_seed_model_direct_ngram_tables_equal_the_hash_index(char_model, monkeypatch) -> None:
    """Short n-grams of a small alphabet are looked up in tables of every possible n-gram; the predictions are
    those of the hash index alone, to the last bit."""
    import workbench.crawl.langid.charngram as langid

    texts = flores("srd_Latn")[:40] + flores("cat_Latn")[:40] + ["", "Привет", "x", "ÿ ñ ç"]
    fast = char_model.predict_batch(texts)
    assert any(table is not None for table in char_model._direct.values())  # the tables were used
    monkeypatch.setattr(langid, "_DIRECT_TABLE_MAX", 0)
    model = langid.CharNgramIdentifier(char_model.languages, char_model.alphabet, char_model.keys,
                                       char_model.log_prob, temperature=char_model.temperature,
                                       orders=char_model.orders, full_length=char_model.full_length)
    hashed = model.predict_batch(texts)
    assert all(table is None for table in model._direct.values())
    assert hashed == fast


def test_seed_model_key_index_finds_exactly_the_known_ngrams() -> None:
    """The hash table the seed model looks n-grams up in agrees with a binary search of the sorted keys, for
    keys it holds, keys it does not hold and keys that had to move away from their home slot."""
    import numpy as np

    from workbench.crawl.langid import _KeyIndex

    rng = np.random.default_rng(0)
    keys = np.unique(np.concatenate([rng.integers(0, 2**63, 20_000, dtype=np.uint64) * np.uint64(2),
                                     np.arange(300, dtype=np.uint64)]))
    queries = np.concatenate([keys, keys + np.uint64(1), rng.integers(0, 2**64 - 1, 5_000, dtype=np.uint64)])
    rng.shuffle(queries)
    position = np.minimum(np.searchsorted(keys, queries), len(keys) - 1)
    expected = np.where(keys[position] == queries, position, -1)
    index = _KeyIndex(keys)
    assert index.probes > 2  # slots were contended: some keys sit past their home slot
    assert np.array_equal(index.find(queries), expected)
    assert np.array_equal(_KeyIndex(keys[:0]).find(queries[:10]), np.full(10, -1))


class CountingIdentifier:
    """Passes through to an identifier, remembering how many texts it was asked about."""

    def __init__(self, inner) -> None:
        self.inner, self.texts = inner, []

    def predict(self, text):
        return self.predict_batch([text])[0]

    def predict_batch(self, texts, scripts=None):
        self.texts += list(texts)
        return self.inner.predict_batch(texts, scripts)


def processor(identifier, tmp_path, languages=("srd_Latn",), **settings) -> ShardProcessor:
    return ShardProcessor(CrawlSettings(tuple(languages), **settings), identifier, tmp_path)


def test_paragraph_chunks_stay_in_one_paragraph_script_and_size() -> None:
    lines = ["a" * 30, "b" * 30, "short", "c" * 30, "d" * 30, "Привет " * 5, "e" * 30, "f" * 60, "g" * 30]
    segments = [("\n\n", lines[0]), ("\n", lines[1]), ("\n", lines[2]), ("\n", lines[3]),
                ("\n\n", lines[4]), ("\n", lines[5]), ("\n", lines[6]), ("\n", lines[7]), ("\n", lines[8])]
    long = [i for i, (_, text) in enumerate(segments) if len(text) >= 20]
    scripts = {i: dominant_script(segments[i][1]) for i in long}
    # paragraph 1: lines 0, 1, 3 (the short line 2 is not identified); paragraph 2: 4 alone (then Cyrillic),
    # 5 alone (then Latin), 6 + 7 (91 characters with the space), 8 alone (it would make 122 > 100)
    assert paragraph_chunks(segments, long, scripts, 100) == [[0, 1, 3], [6, 7]]
    assert paragraph_chunks(segments, long, scripts, 61) == [[0, 1]]  # 0 + 1 is 61; 6 + 7 would be 91


def test_clear_paragraph_is_identified_once_with_the_line_level_language(tmp_path, identifier) -> None:
    srd = flores("srd_Latn")[20:25]
    segments = split_segments("\n".join(srd) + "\n\nArtìculu 3")  # a paragraph, then a heading
    chunked, lines = CountingIdentifier(identifier), CountingIdentifier(identifier)
    by_chunk = processor(chunked, tmp_path).identify(segments)
    by_line = processor(lines, tmp_path, chunk_score=1.0).identify(segments)
    assert len(chunked.texts) == 1 and len(lines.texts) == 5  # one chunk instead of five lines
    assert {p[0][0] for p in by_chunk.values()} == {p[0][0] for p in by_line.values()} == {"srd_Latn"}
    assert by_chunk[0][0][1] >= 0.9
    spans = processor(identifier, tmp_path).spans("\n".join(srd) + "\n\nArtìculu 3")
    assert [span.text for span in spans] == ["\n".join(srd)]
    no_blank_lines = CountingIdentifier(identifier)  # WET-like: no paragraph structure, so no chunks
    processor(no_blank_lines, tmp_path).identify(split_segments("\n".join(srd)))
    assert len(no_blank_lines.texts) == 5


def test_mixed_paragraph_drops_to_lines_and_keeps_the_sardinian_ones(tmp_path, identifier) -> None:
    ita, srd = flores("ita_Latn"), flores("srd_Latn")
    text = "\n".join([ita[0], srd[0], ita[10], srd[10]]) + "\n\nArtìculu 3"  # a paragraph with two languages
    counting = CountingIdentifier(identifier)
    spans = processor(counting, tmp_path, prefix_chars=0).spans(text)
    assert len(counting.texts) == 1 + 4  # the chunk was uncertain: each line on its own
    assert [(span.language, span.text) for span in spans] == [("srd_Latn", srd[0]), ("srd_Latn", srd[10])]
    line_level = processor(identifier, tmp_path, chunk_score=1.0).spans(text)
    assert [span.text for span in line_level] == [span.text for span in spans]


class UnsureOnShortText:
    """Italian at 0.6 for texts of at most 160 characters, at 0.95 for longer ones."""

    def predict(self, text):
        return [("ita_Latn", 0.6 if len(text) <= 160 else 0.95)]

    def predict_batch(self, texts, scripts=None):
        return [self.predict(text) for text in texts]


def test_long_lines_are_identified_on_their_beginning_first_and_chunks_whole(tmp_path, identifier) -> None:
    english = " ".join((ROOT / "corpora" / "flores200" / "dev" / "eng_Latn.dev").read_text().splitlines()[:4])
    srd = flores("srd_Latn")
    counting = CountingIdentifier(identifier)
    found = processor(counting, tmp_path, prefix_chars=160).identify(split_segments(english))
    head = cut_at_space(english, 160)
    assert len(english) > 400 and 120 <= len(head) <= 160 and english.startswith(head + " ")
    assert counting.texts == [head] and found[0][0] == ("eng_Latn", found[0][0][1])  # its beginning settled it
    assert found[0][0][1] >= 0.9
    # an unclear beginning: the whole line is identified again, and that verdict counts
    unsure = CountingIdentifier(UnsureOnShortText())
    again = processor(unsure, tmp_path, prefix_chars=160).identify(split_segments(english))
    assert unsure.texts == [head, english] and again[0] == [("ita_Latn", 0.95)]
    whole = CountingIdentifier(identifier)
    processor(whole, tmp_path, prefix_chars=0).identify(split_segments(english))
    assert whole.texts == [english]
    # a chunk (the lines of one paragraph) is read whole: its later lines can change the verdict
    chunked = CountingIdentifier(identifier)
    processor(chunked, tmp_path, prefix_chars=160).identify(split_segments("\n".join(srd[:3]) + "\n\nx"))
    assert chunked.texts[0] == " ".join(srd[:3]) and len(chunked.texts[0]) > 160


# --------------------------------------------------------------------------- dedup + pipeline

def test_exact_dedup_normalises_case_width_and_spaces() -> None:
    dedup = ExactDeduplicator()
    assert not dedup.seen("Su sardu est una limba.")
    assert dedup.seen("  SU  sardu\nest una limba. ")
    assert dedup.seen("Ｓｕ sardu est una limba.")  # full-width letters (NFKC)
    assert not dedup.seen("Su sardu est una limba!")
    assert ExactDeduplicator(ignore_punctuation=True).key("a, b!") == ExactDeduplicator(True).key("a b")
    assert len(dedup) == 2


def test_split_segments_keeps_paragraph_structure() -> None:
    assert split_segments("a  b\nc\n \n\nd\n") == [("\n\n", "a b"), ("\n", "c"), ("\n\n", "d")]


def test_split_segments_collapses_every_kind_of_whitespace() -> None:
    spaces = ["\t", "\v", "\f", "\r", "\x1c", "\x85", "\xa0", "\u1680", "\u2003", "\u2028", "\u202f", "\u3000"]
    for space in spaces:  # inside, around and doubled: each line reads as its words joined by single spaces
        for line in (f"a{space}b", f"{space}a b", f"a b{space}", f"a {space}b", space):
            expected = " ".join(line.split())
            assert split_segments(f"x\n{line}\n\ny") == [("\n\n", "x")] + ([("\n", expected)] if expected else []) + [
                ("\n\n", "y")], repr(line)


def test_split_segments_reads_tidy_and_untidy_text_by_one_rule() -> None:
    """Text whose lines are tidy already (the usual extractor output) is split without looking at each line; the
    segments are those of the rule: non-empty lines, whitespace collapsed, "\\n\\n" where a blank line was."""
    import random
    import re

    def by_rule(text):
        out = []
        for block in re.split(r"\n[ \t\u00a0\r\f\v]*\n", text):
            separator = "\n\n"
            for line in block.split("\n"):
                if line.split():
                    out.append((separator, " ".join(line.split())))
                    separator = "\n"
        return out

    srd = flores("srd_Latn")
    rng = random.Random(2)
    texts = ["\n".join(srd[:5]), "\n\n".join(srd[:5]), "\n\n\n".join(srd[:3]), "a\n\n\n\nb", "a\n \nb", "a \nb",
             "a\n b", " a", "a ", "a  b", "a\tb", "a\u00a0b", "\na\n", "", "\n\n"]
    texts += ["".join(rng.choice(["a", "b", " ", "\n", "\n\n", "\t", "\u2003"]) for _ in range(30)) for _ in range(500)]
    for text in texts:
        assert split_segments(text) == by_rule(text), repr(text)


def test_a_line_repeated_in_a_batch_is_identified_once(tmp_path, identifier) -> None:
    srd, ita = flores("srd_Latn"), flores("ita_Latn")
    footer = "Custu situ impreat sos cookies pro megiorare s'esperièntzia de navigatzione"
    pages = [f"{srd[i]}\n\n{footer}\n\n{ita[i]}" for i in range(4)]
    counting = CountingIdentifier(identifier)
    batched = processor(counting, tmp_path, chunk_score=1.0, prefix_chars=0).spans_many(pages)
    assert counting.texts.count(footer) == 1 and len(counting.texts) == 4 * 2 + 1
    one_by_one = [processor(identifier, tmp_path, chunk_score=1.0, prefix_chars=0).spans(page) for page in pages]
    assert [[(s.language, s.text, s.score) for s in spans] for spans in batched] == [
        [(s.language, s.text, s.score) for s in spans] for spans in one_by_one]
    assert all(spans[0].language == "srd_Latn" for spans in batched)


def test_mixed_document_yields_the_sardinian_span(tmp_path, identifier, seed_split) -> None:
    held = seed_split[1]
    italian = " ".join(held["ita_Latn"][-3:])
    sardinian = "\n".join(held["srd_Latn"][-4:])
    doc = {"text": f"{italian}\n\n{sardinian}\n\nArtìculu 3\n\n{italian}", "url": "http://x/"}
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps(doc, ensure_ascii=False) + "\n", encoding="utf-8")
    stats = run_crawl([path], ["srd_Latn"], identifier, tmp_path / "out", progress=False)
    records = [json.loads(line) for line in (tmp_path / "out" / "srd_Latn.jsonl").read_text().splitlines()]
    assert [r["text"] for r in records] == [sardinian]
    assert records[0]["offset"] == 1 and records[0]["url"] == "http://x/" and records[0]["score"] >= 0.5
    assert stats["dropped"]["other_language"] == 2 and stats["dropped"]["too_short"] == 1


def test_parquet_copies_hold_the_same_records_as_the_jsonl_corpora(tmp_path, identifier) -> None:
    import pyarrow.parquet as pq

    from workbench.crawl.parquet import jsonl_to_parquet

    texts = tmp_path / "docs.jsonl"  # a text input: its records have no URL (a null in Parquet)
    texts.write_text(json.dumps({"text": flores("srd_Latn")[5]}, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    languages = ["srd_Latn", *WARC_LANGUAGES]
    run_crawl([WARC, texts], languages, identifier, out, progress=False, parquet=True)
    rows = 0
    for code in languages:
        records = [json.loads(x) for x in (out / f"{code}.jsonl").read_text(encoding="utf-8").splitlines()]
        table = pq.read_table(out / f"{code}.parquet")
        assert table.column_names == list(RECORD_FIELDS)
        assert table.to_pylist() == records, code
        rows += len(records)
    assert rows > 5 and pq.read_table(out / "srd_Latn.parquet").column("url").to_pylist() == [None]
    # row groups bound the memory of big corpora; a torn JSONL line is an error that names the file and line
    jsonl_to_parquet(out / "deu_Latn.jsonl", tmp_path / "small-groups.parquet", rows_per_group=2)
    assert pq.ParquetFile(tmp_path / "small-groups.parquet").metadata.num_row_groups > 1
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "a"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken.jsonl, line 2"):
        jsonl_to_parquet(broken, tmp_path / "broken.parquet")
    assert not list(tmp_path.glob("*broken.parquet*"))  # nothing half-written left behind
    run_crawl([texts], languages, identifier, out, progress=False)  # no copies asked: none left from before
    assert not list(out.glob("*.parquet"))


def test_pipeline_outputs_and_stats_schema(tmp_path, identifier, seed_split) -> None:
    srd = seed_split[1]["srd_Latn"]
    lines = [{"text": srd[0], "id": 1}, {"text": srd[0].upper()}, {"text": "  " + srd[0] + " "},
             {"text": srd[1]}, {"text": "short"}]
    jsonl = tmp_path / "docs.jsonl"
    body = "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines) + "{oops\n"
    jsonl.write_text(body, encoding="utf-8")
    out = tmp_path / "out"
    languages = ["srd_Latn", *WARC_LANGUAGES]
    stats = run_crawl([WARC, jsonl], languages, identifier, out, progress=False)

    assert stats == json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert set(stats) >= {"settings", "inputs", "documents_read", "languages", "dropped", "identified",
                          "skipped_records", "bad_input"}
    assert stats["inputs"][str(WARC)]["documents_read"] == 16
    assert stats["inputs"][str(jsonl)]["documents_read"] == 5
    assert stats["documents_read"] == 21
    assert set(stats["dropped"]) == set(DROP_REASONS) and stats["dropped"]["duplicate"] == 2
    assert stats["bad_input"]["by_kind"] == {"malformed_json": 1}
    assert stats["bad_input"]["locations"] == [{"kind": "malformed_json", "source": str(jsonl), "offset": 6,
                                               "detail": stats["bad_input"]["locations"][0]["detail"]}]
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{c}.jsonl" for c in languages]
                                                          + ["card.json", "card.md", "stats.json"])
    for code in languages:
        records = [json.loads(x) for x in (out / f"{code}.jsonl").read_text(encoding="utf-8").splitlines()]
        assert records, code
        for record in records:
            assert tuple(record) == RECORD_FIELDS and record["language"] == code
            assert 0.5 <= record["score"] <= 1.0 and isinstance(record["offset"], int)
        counts = stats["languages"][code]
        assert counts["docs"] == len(records)
        assert counts["chars"] == sum(len(r["text"]) for r in records)
        assert counts["bytes"] == sum(len(r["text"].encode()) for r in records)
        assert counts["words"] > 0
    srd_records = [json.loads(x) for x in (out / "srd_Latn.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in srd_records] == [srd[0], srd[1]]
    # Unicode words, as the quality filters count them (an independent count with the regex module)
    words = sum(len(regex.findall(r"[\p{L}\p{M}\p{N}]+", r["text"])) for r in srd_records)
    assert stats["languages"]["srd_Latn"]["words"] == words


def test_build_lid_seed_reads_udhr_paragraphs(tmp_path) -> None:
    script = ROOT / "corpora" / "scripts" / "build_lid_seed.py"
    spec = importlib.util.spec_from_file_location("build_lid_seed", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    xml = tmp_path / "udhr_src.xml"
    xml.write_text("<?xml version='1.0' encoding='UTF-8'?><udhr xmlns='http://efele.net/udhr'>"
                   "<title>T</title><article number='1'><title>Artìculu 1</title>"
                   "<para>Totu sos èsseres\n  umanos.</para><orderedlist><listitem><para>Onzi pessone.</para>"
                   "</listitem></orderedlist></article></udhr>", encoding="utf-8")
    assert module.udhr_paragraphs(xml) == ["Totu sos èsseres umanos.", "Onzi pessone."]
    assert module.UDHR_CODES["src"] == "srd_Latn" and module.UDHR_CODES["lnc"] == "oci_Latn"
    sizes = {p.stem: p.stat().st_size for p in SEED.glob("*.txt")}
    assert sum(sizes.values()) < 2_000_000 and {"srd_Latn", "ita_Latn", "cos_Latn"} <= set(sizes)
