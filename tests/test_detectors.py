"""Per-sentence translation failure detectors (workbench.evaluate.detectors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.evaluate.detectors import (
    DETECTORS,
    DetectorConfig,
    char_script,
    detect,
    detect_copy,
    detect_empty,
    detect_off_target,
    detect_repetition,
    detect_script_leak,
    detector_records,
    flags,
    load_identifier,
    longest_run,
    target_scripts,
    words,
)

ROOT = Path(__file__).resolve().parent.parent
FLORES = ROOT / "tests" / "fixtures" / "flores200" / "dev"
LID_SEED = ROOT / "corpora" / "lid-seed"


def flores(code: str) -> list[str]:
    return (FLORES / f"{code}.dev").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def identifier():
    return load_identifier(LID_SEED)


class FixedIdentifier:
    def __init__(self, prediction):
        self.prediction = prediction

    def predict(self, text):
        return self.prediction


# --------------------------------------------------------------------------- empty
@pytest.mark.parametrize("hyp", ["", "   \n\t", "...", " «—» !? ", "\u200b"])
def test_empty_flags_outputs_without_letters_or_digits(hyp):
    assert detect_empty(hyp) == (True, 0.0, None)


@pytest.mark.parametrize("hyp", ["a", " 42 ", "ሰ።", "你"])
def test_empty_passes_any_letter_or_digit(hyp):
    assert detect_empty(hyp).flag is False


# --------------------------------------------------------------------------- scripts
def test_char_script_uses_unicode_script_property():
    assert [char_script(c) for c in "aሰ这あア한μжא"] == [
        "Latn", "Ethi", "Hani", "Hira", "Kana", "Hang", "Grek", "Cyrl", "Hebr"]
    assert [char_script(c) for c in "1٣.,-ـー\u0301 "] == [None] * 9  # digits, punctuation, Common/Inherited


def test_target_scripts():
    assert target_scripts("zho_Hans") == target_scripts("zho_Hant") == {"Hani"}
    assert target_scripts("jpn_Jpan") == {"Hani", "Hira", "Kana"}
    assert target_scripts("kor_Hang") == {"Hang", "Hani"}
    assert target_scripts("amh_Ethi") == {"Ethi"}
    assert target_scripts("xxx_Zxxx") is None


def test_script_leak_amharic_with_latin():
    leak = detect_script_leak("ሰኞ እለት፣ Stanford University announced a new tool", "amh_Ethi")
    assert leak.flag is True and leak.label == "Latn" and leak.value > 0.5


def test_script_leak_clean_ethiopic():
    first, second = flores("amh_Ethi")[:2]
    assert detect_script_leak(first, "amh_Ethi") == (False, 0.0, None)
    clean = detect_script_leak(second, "amh_Ethi")  # "HIV" in Latin among ~100 Ethiopic letters
    assert clean.flag is False and 0 < clean.value < 0.1


def test_script_leak_sardinian_with_cyrillic_and_greek():
    cyrillic = detect_script_leak("Su pilota est arribbadu нашем городе вчера вечером", "srd_Latn")
    assert cyrillic.flag is True and cyrillic.label == "Cyrl"
    greek = detect_script_leak("Sa domo est manna καὶ ἡ θάλασσα μεγάλη", "srd_Latn")
    assert greek.flag is True and greek.label == "Grek"
    assert detect_script_leak(flores("srd_Latn")[0], "srd_Latn") == (False, 0.0, None)
    assert detect_script_leak("Sa temperadura fiat de 5 μm", "srd_Latn").flag is False  # 1 of 5 words


def test_script_leak_counts_words_not_letters():
    # a Latin name in a Chinese sentence: 3 Latin letters but 1 word among 12
    assert detect_script_leak("当地时间上午左右 JAS 战斗机撞上跑道", "zho_Hans").flag is False
    assert detect_script_leak("The fighter jet crashed into the runway 跑道", "zho_Hans").flag is True


def test_script_leak_cjk():
    assert detect_script_leak("这是一个测试，数字123和标点。", "zho_Hans") == (False, 0.0, None)
    assert detect_script_leak("これは日本語のテストです。", "jpn_Jpan").flag is False
    assert detect_script_leak("한국어 문장과 漢字", "kor_Hang").flag is False
    assert detect_script_leak("这是 a test of the system", "zho_Hans").flag is True


def test_script_leak_not_judged_without_letters_or_known_script():
    assert detect_script_leak("123 ...", "srd_Latn") == (None, None, None)
    assert detect_script_leak("abc", "xxx_Zxxx").flag is None


def test_script_leak_threshold_is_configurable():
    hyp = "Sa domo est manna μ"  # 1 Greek word of 5
    assert detect_script_leak(hyp, "srd_Latn").flag is False
    assert detect_script_leak(hyp, "srd_Latn", threshold=0.1).flag is True


# --------------------------------------------------------------------------- copy
def test_copy_exact_after_normalisation():
    source = flores("eng_Latn")[0]
    copy = detect_copy(source, "  " + source.upper().replace(" ", "  ") + " ", "eng_Latn", "srd_Latn")
    assert copy == (True, 1.0, None)


def test_copy_near_exact():
    source = "The quick brown fox jumps over the lazy dog near the river bank."
    copy = detect_copy(source, "The quick brown fox jumps over the lazy dog near sa riva.", "eng_Latn", "srd_Latn")
    assert copy.flag is True and 0.8 <= copy.value < 1.0


def test_copy_real_translation_is_not_a_copy():
    for source, reference in zip(flores("eng_Latn")[:10], flores("srd_Latn")[:10], strict=True):
        assert detect_copy(source, reference, "eng_Latn", "srd_Latn").flag is False


def test_copy_not_judged_for_same_language_or_empty():
    assert detect_copy("Sa domo", "Sa domo", "srd_Latn", "srd_Latn").flag is None
    assert detect_copy("Sa domo", "", "eng_Latn", "srd_Latn").flag is None


# --------------------------------------------------------------------------- repetition
def test_longest_run():
    assert longest_run([]) == 0
    assert longest_run(words("a b c")) == 1
    assert longest_run(words("a a a a")) == 4
    assert longest_run(words("x a b a b a b y")) == 3
    assert longest_run(words("su su de su su de su su de su su de")) == 4


def test_repetition_degenerate_output():
    degenerate = detect_repetition("Su su de su su de su su de su su de su su de su su de")
    assert degenerate.flag is True and degenerate.value >= 4
    assert detect_repetition("sa, sa; sa... sa!").flag is True  # punctuation does not hide it
    assert detect_repetition("的的的的的的").flag is True  # scripts without spaces: per character


def test_repetition_low_distinct_trigrams():
    # a 6-word loop: no 1-4-gram 4 times in a row, but only 6 distinct 3-grams out of 16
    hyp = "the cat and the dog and the cat and the dog and the cat and the dog and"
    assert longest_run(hyp.split()) < 4
    assert detect_repetition(hyp).flag is True


def test_repetition_normal_sentences_pass():
    for line in flores("srd_Latn")[:20] + flores("amh_Ethi")[:5]:
        assert detect_repetition(line).flag is False
    assert detect_repetition("Very very good.").flag is False


# --------------------------------------------------------------------------- off target
def test_off_target_english_for_sardinian(identifier):
    hyp = "The research team announced a new diagnostic tool that can sort cells by type."
    result = detect_off_target(hyp, "srd_Latn", identifier)
    assert result.flag is True and result.label == "eng_Latn" and result.value >= 0.5


def test_off_target_sardinian_is_on_target(identifier):
    for line in flores("srd_Latn")[:5]:
        assert detect_off_target(line, "srd_Latn", identifier).flag is False


def test_off_target_short_or_without_identifier_is_not_judged(identifier):
    assert detect_off_target("Hello", "srd_Latn", identifier) == (None, None, None)
    assert detect_off_target(flores("eng_Latn")[0], "srd_Latn", None).flag is None
    assert detect_off_target("1234567890 1234567890 !!", "srd_Latn", FixedIdentifier([])).flag is None


def test_off_target_needs_a_confident_other_language():
    hyp = "a sentence long enough to be identified"
    assert detect_off_target(hyp, "srd_Latn", FixedIdentifier([("ita_Latn", 0.4), ("srd_Latn", 0.3)])).flag is False
    assert detect_off_target(hyp, "srd_Latn", FixedIdentifier([("ita_Latn", 0.5)])).flag is True
    assert detect_off_target(hyp, "srd_Latn", FixedIdentifier([("srd_Latn", 0.9)])).flag is False


def test_off_target_needs_a_low_score_for_the_target():
    hyp = "a sentence long enough to be identified"
    unsure = FixedIdentifier([("ita_Latn", 0.6), ("srd_Latn", 0.35)])  # the identifier hesitates between them
    assert detect_off_target(hyp, "srd_Latn", unsure).flag is False
    sure = FixedIdentifier([("ita_Latn", 0.9), ("srd_Latn", 0.05)])
    assert detect_off_target(hyp, "srd_Latn", sure).flag is True
    assert detect_off_target(hyp, "srd_Latn", sure, tolerated=["ita_Latn"]).flag is False


def test_load_identifier_is_cached(identifier):
    assert load_identifier(LID_SEED) is identifier


# --------------------------------------------------------------------------- flags + rates
def test_flags_all_detectors(identifier):
    source = flores("eng_Latn")[0]
    assert flags(source, flores("srd_Latn")[0], "eng_Latn", "srd_Latn", identifier) == dict.fromkeys(DETECTORS, False)
    copied = flags(source, source, "eng_Latn", "srd_Latn", identifier)
    assert copied == {"empty": False, "script_leak": False, "copy": True, "repetition": False, "off_target": True}
    empty = flags(source, "", "eng_Latn", "srd_Latn", identifier)
    assert empty == {"empty": True, "script_leak": None, "copy": None, "repetition": False, "off_target": None}
    assert list(detect(source, "x", "eng_Latn", "srd_Latn")) == list(DETECTORS)


def test_flags_config():
    config = DetectorConfig(copy_similarity=0.99, copy_coverage=1.01)
    source = "The quick brown fox jumps over the lazy dog near the river bank."
    near = "The quick brown fox jumps over the lazy dog near sa riva."
    assert flags(source, near, "eng_Latn", "srd_Latn", config=config)["copy"] is False
    assert flags(source, near, "eng_Latn", "srd_Latn")["copy"] is True


def test_detector_records_hand_computed():
    direction = "eng_Latn-srd_Latn"
    rows = [
        {"direction": direction, "flags": {"empty": False, "copy": True, "off_target": None}},
        {"direction": direction, "flags": {"empty": True, "copy": None, "off_target": None}},
        {"direction": direction, "flags": {"empty": False, "copy": False, "off_target": None}},
        {"direction": direction, "flags": {"empty": False, "copy": True, "off_target": None}},
        {"direction": "srd_Latn-eng_Latn", "flags": {"empty": True, "copy": True, "off_target": True}},
        {"direction": direction},  # no flags: ignored
    ]
    records = detector_records(rows, stage="cpt", variant=None, direction=direction)
    head = {"stage": "cpt", "variant": None, "kind": "detector", "direction": direction}
    assert records == [
        {**head, "metric": "empty_rate", "value": 0.25, "n": 4},  # 1 of 4
        {**head, "metric": "copy_rate", "value": 2 / 3, "n": 3},  # 2 of the 3 judged
    ]  # off_target judged nothing: no record


def test_detector_records_from_real_flags(identifier):
    src, tgt = "eng_Latn", "srd_Latn"
    sources, refs = flores(src)[:4], flores(tgt)[:4]
    hyps = [refs[0], sources[1], "", "su su su su"]  # the last too short to identify
    rows = [{"direction": f"{src}-{tgt}", "flags": flags(s, h, src, tgt, identifier)}
            for s, h in zip(sources, hyps, strict=True)]
    values = {r["metric"]: (r["value"], r["n"]) for r in
              detector_records(rows, stage="base", variant=None, direction=f"{src}-{tgt}")}
    assert values["empty_rate"] == (0.25, 4)
    assert values["copy_rate"] == (1 / 3, 3)
    assert values["repetition_rate"] == (0.25, 4)
    assert values["script_leak_rate"] == (0.0, 3)
    assert values["off_target_rate"] == (0.5, 2)  # the English copy of 2 judged
