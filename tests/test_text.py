"""Letters, words and scripts over every script of the FLORES fixture (44 languages in 22 scripts): the one
definition in ``workbench.text`` and the crawl code that relies on it (quality filters, the identifier's
normaliser, dedup normalisation, the word-list prefilter)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
import regex

from workbench.crawl.dedup import _word_hashes, normalize_for_dedup
from workbench.crawl.filters import FilterThresholds, check_many, measure
from workbench.crawl.langid import dominant_script, normalize_for_ngrams
from workbench.crawl.pipeline import hit_rate
from workbench.text import (
    WORD_CHAR_CLASS,
    WORD_PATTERN,
    char_script,
    code_script,
    is_letter,
    letter_count,
    target_scripts,
    words,
    writing_system,
)

SCRIPTS = Path(__file__).parent / "fixtures" / "flores200" / "scripts"
CODES = sorted(path.stem for path in SCRIPTS.glob("*.dev"))
# at least one language of each script that breaks Latin-shaped code
REQUIRED = {"hin_Deva", "ben_Beng", "arb_Arab", "amh_Ethi", "tha_Thai", "mya_Mymr", "bod_Tibt", "jpn_Jpan",
            "zho_Hans", "vie_Latn", "yor_Latn", "khm_Khmr", "tam_Taml", "heb_Hebr", "tzm_Tfng"}


def sentences(code: str) -> list[str]:
    return (SCRIPTS / f"{code}.dev").read_text(encoding="utf-8").splitlines()


def test_fixture_covers_the_scripts_that_break_latin_shaped_code():
    assert set(CODES) >= REQUIRED
    assert len({code_script(code) for code in CODES}) >= 20


@pytest.mark.parametrize("code", CODES)
def test_quality_filters_keep_clean_sentences_of_every_script(code):
    """A clean, human-written sentence is not low quality in any script: >= 95% of FLORES sentences pass the
    default rules (the letter-ratio rule once dropped 63% of Hindi: vowel signs were not counted as letters)."""
    lines = sentences(code)
    verdicts = check_many(lines, [FilterThresholds()] * len(lines))
    kept = sum(verdict is None for verdict in verdicts)
    assert kept >= 0.95 * len(lines), (code, [v for v in verdicts if v])


@pytest.mark.parametrize("code", CODES)
def test_letters_include_combining_marks(code):
    found = measure(sentences(code))
    expected = [sum(unicodedata.category(c)[0] in "LM" for c in line) for line in sentences(code)]
    assert found.letters == expected
    assert [letter_count(line) for line in sentences(code)] == expected


def test_devanagari_letter_ratio_counts_vowel_signs():
    text = "भोजपुरी भाषा"  # 9 of its 12 characters are letters, 3 are vowel signs (Mc/Mn)
    assert letter_count(text) == 11
    assert all(is_letter(c) for c in text if c != " ")


@pytest.mark.parametrize("code", CODES)
def test_words_never_start_with_a_combining_mark(code):
    """A mark belongs to the letter before it, in spaced and unspaced scripts alike (a stray mark after a
    punctuation sign, a typo the data has, starts a word of its own)."""
    for line in sentences(code):
        for match in regex.finditer(WORD_PATTERN, line):
            if unicodedata.category(match.group()[0]).startswith("M") and match.start():
                assert not regex.match(rf"[{WORD_CHAR_CLASS}]", line[match.start() - 1]), (code, match.group())


@pytest.mark.parametrize("code", CODES)
def test_words_cover_every_letter_mark_and_digit(code):
    for line in sentences(code):
        joined = "".join(words(line))
        assert joined == "".join(regex.findall(r"[\p{L}\p{M}\p{N}\u200c\u200d]", line)), code


def test_unspaced_scripts_split_into_characters_with_their_marks():
    assert words("ไม่มี") == ["ไ", "ม่", "มี"]
    assert words("日本語です") == ["日", "本", "語", "で", "す"]
    assert words("हिन्दी भाषा") == ["हिन्दी", "भाषा"]
    assert words("Ὀδυσσεύς s'òmine") == ["Ὀδυσσεύς", "s", "òmine"]


@pytest.mark.parametrize("code", CODES)
def test_identifier_normaliser_keeps_every_letter_and_mark(code):
    """The n-gram identifier sees letters with their marks (it once turned ``भोजपुरी भाषा`` into ``भ जप र भ ष``)."""
    for line in sentences(code):
        normalized = normalize_for_ngrams(line)
        expected = [c for c in unicodedata.normalize("NFKC", line).lower() if unicodedata.category(c)[0] in "LM"]
        assert [c for c in normalized if unicodedata.category(c)[0] in "LM"] == expected, code


@pytest.mark.parametrize("code", CODES)
def test_dominant_script_is_the_code_script(code):
    expected = code_script(code)
    found = [dominant_script(line) for line in sentences(code)]
    assert sum(script == expected for script in found) >= 0.95 * len(found), (code, set(found))


def test_char_script_and_writing_system():
    assert char_script("क") == "Deva" and char_script("ि") is None  # a mark takes its letter's script
    assert char_script("か") == "Hira" and writing_system("Hira") == "Jpan" and writing_system("Latn") == "Latn"
    assert target_scripts("jpn_Jpan") == {"Hani", "Hira", "Kana"} and target_scripts("hin_Deva") == {"Deva"}


def test_dedup_normalisation_keeps_vowel_signs():
    """Two Devanagari sentences that differ only in vowel signs are different texts, for exact and near dedup."""
    a, b = "किताब मेरी है", "कताब मर ह"
    assert normalize_for_dedup(a, ignore_punctuation=True) != normalize_for_dedup(b, ignore_punctuation=True)
    hashes_a, starts_a = _word_hashes(normalize_for_dedup(a))
    hashes_b, _ = _word_hashes(normalize_for_dedup(b))
    assert len(starts_a) == 3  # three words, not split at every vowel sign
    assert set(hashes_a.tolist()).isdisjoint(hashes_b.tolist())


@pytest.mark.parametrize("code", ["hin_Deva", "tha_Thai", "amh_Ethi", "vie_Latn", "mya_Mymr"])
def test_wordlist_prefilter_counts_words_with_marks(code):
    """A sentence made only of list words scores 1.0 (it once scored 0.0 in Devanagari: marks split words)."""
    line = sentences(code)[0]
    listed = frozenset(words(unicodedata.normalize("NFKC", line), casefold=True))
    assert hit_rate(line, listed) == 1.0
