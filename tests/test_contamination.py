"""Eval-set contamination by word n-gram overlap (workbench.evaluate.contamination)."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest

from workbench.errors import DataError
from workbench.evaluate import contamination
from workbench.evaluate.contamination import ContaminationIndex, normalise_words

ROOT = Path(__file__).resolve().parent.parent
FLORES = ROOT / "tests" / "fixtures" / "flores200" / "dev"
TEXT = ROOT / "tests" / "fixtures" / "text"
SET = "srd_Latn.dev"

VERBATIM, PARAGRAPH, SHORT = 7, 20, 12  # SHORT has 11 words (< n = 13)


def flores(code: str) -> list[str]:
    return (FLORES / f"{code}.dev").read_text(encoding="utf-8").splitlines()


def clean_lines() -> list[str]:
    return [line for path in sorted(TEXT.glob("*.txt")) for line in path.read_text(encoding="utf-8").splitlines()]


def planted_lines() -> list[str]:
    """Clean training text with three FLORES sentences planted in it."""
    srd = flores("srd_Latn")
    lines = clean_lines()
    disguised = srd[PARAGRAPH].upper().replace(",", "").replace(".", " !").replace(" ", "  ")
    paragraph = f"{lines[10]} {disguised} {lines[11]}"
    return [*lines[:100], srd[VERBATIM], *lines[100:300], paragraph, *lines[300:500], srd[SHORT], *lines[500:]]


@pytest.fixture
def index() -> ContaminationIndex:
    return ContaminationIndex({SET: flores("srd_Latn"), "eng_Latn.dev": flores("eng_Latn")})


def test_normalise_words():
    assert normalise_words("S’ISCOLA, de  Stanford! ﬁ 2024") == ["s", "iscola", "de", "stanford", "fi", "2024"]
    assert normalise_words("नमस्ते दुनिया") == ["नमस्ते", "दुनिया"]  # combining vowel signs stay in the word


def test_planted_sentences_are_flagged_exactly(index):
    index.scan(planted_lines())
    assert index.flagged(SET) == {VERBATIM, PARAGRAPH, SHORT}
    assert index.flagged("eng_Latn.dev") == set()
    report = index.report()["sets"][SET]
    assert report["indices"] == sorted([VERBATIM, PARAGRAPH, SHORT])
    assert report["flagged"] == 3 and report["sentences"] == 60 and report["rate"] == pytest.approx(3 / 60)
    assert report["coverage"] == {VERBATIM: 1.0, SHORT: 1.0, PARAGRAPH: 1.0}


def test_clean_text_flags_nothing(index):
    index.scan(clean_lines())
    assert index.flagged(SET) == set() and index.flagged("eng_Latn.dev") == set()
    report = index.report()
    assert report["words_scanned"] > 10_000 and report["sets"][SET]["rate"] == 0.0


def test_partial_overlap_below_n_is_not_flagged():
    srd = flores("srd_Latn")
    words = srd[VERBATIM].split()
    fragment = " ".join(words[:8])  # 8 words of a long sentence
    short_fragment = " ".join(srd[SHORT].split()[:-2])  # a short sentence, not whole
    index = ContaminationIndex({SET: srd})
    index.scan(["Unu testu diversu.", fragment, "E gai sighende.", short_fragment])
    assert index.flagged(SET) == set()
    index5 = ContaminationIndex({SET: srd}, n=5)
    index5.scan([fragment])
    assert VERBATIM in index5.flagged(SET) and index5.report()["n"] == 5
    assert 0 < index5.coverage(SET, VERBATIM) < 1


def test_sentence_wrapped_over_lines_is_found():
    srd = flores("srd_Latn")
    words = srd[VERBATIM].split()
    index = ContaminationIndex({SET: srd})
    index.scan([" ".join(words[:10]), " ".join(words[10:])])
    assert index.flagged(SET) == {VERBATIM}


def test_chunk_boundaries(monkeypatch):
    monkeypatch.setattr(contamination, "_CHUNK_WORDS", 7)
    monkeypatch.setattr(contamination, "_SLICE_CHARS", 50)
    index = ContaminationIndex({SET: flores("srd_Latn")})
    index.scan(planted_lines()[:600])
    assert index.flagged(SET) == {VERBATIM, PARAGRAPH, SHORT}
    single = ContaminationIndex({SET: flores("srd_Latn")})
    single.scan([" ".join(planted_lines()[90:320])])  # one long text, sliced
    assert single.flagged(SET) == {VERBATIM, PARAGRAPH}


def test_too_short_eval_sentences_are_skipped():
    index = ContaminationIndex({"tiny": ["Eja.", "Emmo, gia est beru.", "Sa domo est manna meda."]}, min_words=4)
    index.scan(["eja emmo gia est beru", "Sa domo est manna meda"])
    assert index.flagged("tiny") == {1, 2}
    assert index.report()["sets"]["tiny"]["skipped"] == [0]
    with pytest.raises(KeyError):
        index.flagged("nope")
    with pytest.raises(ValueError):
        ContaminationIndex({"tiny": []}, n=0)


def test_scan_files(tmp_path):
    srd = flores("srd_Latn")
    (tmp_path / "a.txt").write_text("\n".join([*clean_lines()[:50], srd[VERBATIM]]) + "\n", encoding="utf-8")
    with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"text": "Unu testu.\n" + srd[SHORT], "url": "x"}) + "\n")
        handle.write("not json\n\n")
        handle.write(json.dumps({"id": 3}) + "\n")
    (tmp_path / "c.jsonl").write_text(json.dumps({"text": srd[PARAGRAPH].lower()}) + "\n", encoding="utf-8")
    index = ContaminationIndex({SET: srd})
    index.scan_files([tmp_path / "a.txt", tmp_path / "b.jsonl.gz", str(tmp_path / "c.jsonl")], progress=False)
    assert index.flagged(SET) == {VERBATIM, SHORT, PARAGRAPH}
    assert index.report()["bad_lines"] == 1
    # any line-based text file (FLORES .dev, .tsv) and instruction records without a "text" field
    (tmp_path / "e.dev").write_text(srd[0] + "\n", encoding="utf-8")
    (tmp_path / "f.jsonl").write_text(json.dumps({"prompt": "Translate", "completion": srd[1]}) + "\n",
                                      encoding="utf-8")
    other = ContaminationIndex({SET: srd})
    other.scan_files([tmp_path / "e.dev", tmp_path / "f.jsonl"], progress=False)
    assert {0, 1} <= other.flagged(SET)
    with pytest.raises(DataError, match="no such file"):
        index.scan_files([tmp_path / "missing.txt"], progress=False)


def test_one_megabyte_scan_is_fast():
    text = "\n".join(clean_lines())
    corpus = (text * (1_000_000 // len(text) + 1))[:1_000_000]
    index = ContaminationIndex({SET: flores("srd_Latn"), "eng_Latn.dev": flores("eng_Latn")})
    start = time.perf_counter()
    index.scan(corpus.splitlines())
    assert time.perf_counter() - start < 3.0
    assert index.report()["words_scanned"] > 100_000
