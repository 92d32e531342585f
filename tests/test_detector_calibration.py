"""The detectors on human references in many scripts (false alarms <= 5%), partial copies, loops, the
off-target calibration, BLEU's tokenizer per script, and skipped metrics as records."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from workbench import scoreboard
from workbench.evaluate import mt
from workbench.evaluate.detectors import (
    MAX_FALSE_ALARM,
    calibrate,
    detect_copy,
    detect_repetition,
    load_identifier,
    reference_rates,
    reference_records,
)
from workbench.evaluate.scorer import records_from_sentences
from workbench.recipe import EvalConfig, MTEvalConfig

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "tests" / "fixtures" / "flores200" / "scripts"  # first 100 FLORES dev lines, 44 languages
LID_SEED = ROOT / "corpora" / "lid-seed"
ENGLISH = "eng_Latn"
TARGETS = sorted(p.stem for p in SCRIPTS.glob("*.dev") if p.stem != ENGLISH)
# at least eight scripts, and those the issue names
NAMED = ["hin_Deva", "ben_Beng", "arb_Arab", "amh_Ethi", "tha_Thai", "mya_Mymr", "bod_Tibt", "zho_Hans",
         "jpn_Jpan", "vie_Latn", "khm_Khmr", "kor_Hang"]


def flores(code: str) -> list[str]:
    return (SCRIPTS / f"{code}.dev").read_text(encoding="utf-8").splitlines()


def pairs(src: str, tgt: str) -> list[tuple[str, str]]:
    return list(zip(flores(src), flores(tgt), strict=True))


def test_the_fixture_covers_the_named_scripts():
    assert set(NAMED) <= set(TARGETS) and len({code.split("_")[1] for code in TARGETS}) >= 20


# --------------------------------------------------------------------------- false alarms on references
@pytest.mark.parametrize("target", TARGETS)
def test_detectors_rarely_flag_human_references(target):
    """Every detector but off-target (no identifier here), both directions: <= 5% of references flagged."""
    for src, tgt in ((ENGLISH, target), (target, ENGLISH)):
        calibration = calibrate(pairs(src, tgt), src, tgt)
        rates = {name: (rate, n) for name, rate, n in reference_rates(calibration.reference_flags)}
        assert set(rates) == {"empty", "script_leak", "copy", "repetition"}
        assert all(n == 100 for _, n in rates.values())
        over = {name: rate for name, (rate, _) in rates.items() if rate > MAX_FALSE_ALARM}
        assert not over, f"{src}-{tgt}: {over}"
        assert calibration.warnings() == []


@pytest.mark.parametrize("target", ["srd_Latn", "ita_Latn", "spa_Latn", "cat_Latn", "fur_Latn", "vec_Latn",
                                    "lij_Latn", "oci_Latn"])
def test_related_latin_languages_are_not_copies(target):
    """Romance references of an Italian source share names, numbers and words, yet are not copies."""
    source = "spa_Latn" if target == "ita_Latn" else "ita_Latn"
    calibration = calibrate(pairs(source, target), source, target)
    rates = dict((name, rate) for name, rate, _ in reference_rates(calibration.reference_flags))
    assert rates["copy"] <= MAX_FALSE_ALARM


@pytest.fixture(scope="module")
def demo_identifier():
    return load_identifier(LID_SEED)


@pytest.mark.parametrize("target", ["srd_Latn", "ita_Latn", "spa_Latn", "cat_Latn", "fur_Latn", "lij_Latn",
                                    "lmo_Latn", "scn_Latn", "vec_Latn", "oci_Latn", "quy_Latn", "yor_Latn"])
def test_off_target_with_the_demo_identifier_on_the_languages_it_knows(target, demo_identifier):
    """At most 5% false alarms on the references; where the identifier itself mistakes more of them for a
    neighbour, that neighbour is tolerated and the calibration says so."""
    for src, tgt in ((ENGLISH, target), (target, ENGLISH)):
        calibration = calibrate(pairs(src, tgt), src, tgt, demo_identifier)
        off = dict((name, rate) for name, rate, _ in reference_rates(calibration.reference_flags))["off_target"]
        assert off <= MAX_FALSE_ALARM
        if calibration.raw_off_target_rate > MAX_FALSE_ALARM:
            assert calibration.tolerated and any("tolerated" in note for note in calibration.warnings())
        if "srd_Latn" in (src, tgt):  # the demo's own target: no neighbour needs tolerating
            assert calibration.raw_off_target_rate <= MAX_FALSE_ALARM and calibration.tolerated == ()


SEED_GROUPS = {  # a seed identifier trained on FLORES lines 50-99 of a script's languages and English
    "Deva": ["hin_Deva", "mai_Deva", "npi_Deva", "mar_Deva"],
    "Beng": ["ben_Beng", "asm_Beng", "mni_Beng"],
    "Arab": ["arb_Arab", "pes_Arab", "urd_Arab", "pbt_Arab"],
    "Ethi": ["amh_Ethi", "tir_Ethi"],
    "unspaced": ["tha_Thai", "lao_Laoo", "khm_Khmr", "mya_Mymr", "bod_Tibt", "zho_Hans", "jpn_Jpan"],
}


@pytest.mark.parametrize("group", sorted(SEED_GROUPS))
def test_off_target_with_a_seed_identifier_on_held_out_references(group, tmp_path):
    from workbench.crawl.langid import train_identifier

    for code in [*SEED_GROUPS[group], ENGLISH]:
        (tmp_path / f"{code}.txt").write_text("\n".join(flores(code)[50:]) + "\n", encoding="utf-8")
    identifier = train_identifier(tmp_path, use_fasttext=False)
    for target in SEED_GROUPS[group]:
        calibration = calibrate(pairs(ENGLISH, target)[:50], ENGLISH, target, identifier)
        off = dict((name, rate) for name, rate, _ in reference_rates(calibration.reference_flags))["off_target"]
        assert calibration.raw_off_target_rate <= MAX_FALSE_ALARM and off <= MAX_FALSE_ALARM, target
        english = [calibration.flags(s, s)["off_target"] for s, _ in pairs(ENGLISH, target)[:50]]
        assert sum(map(bool, english)) >= 45  # an English copy is off-target


class ScriptIdentifier:
    """An identifier that calls all Devanagari text Hindi (as fastText does for Maithili) and the rest English."""

    def predict(self, text):
        devanagari = any("\u0900" <= c <= "\u097f" for c in text)
        return [("hin_Deva", 0.95)] if devanagari else [("eng_Latn", 0.99)]


def test_an_identifier_blind_to_the_target_is_calibrated_and_said_loudly(caplog):
    target = "mai_Deva"
    with caplog.at_level(logging.WARNING, logger="workbench"):
        calibration = calibrate(pairs(ENGLISH, target), ENGLISH, target, ScriptIdentifier())
    assert calibration.raw_off_target_rate == 1.0 and calibration.tolerated == ("hin_Deva",)
    assert any("hin_Deva" in r.getMessage() and "100%" in r.getMessage() for r in caplog.records)
    rows = [{"direction": f"{ENGLISH}-{target}", "reference_flags": flags, "off_target_tolerated": ["hin_Deva"]}
            for flags in calibration.reference_flags]
    records = {r["metric"]: r for r in reference_records(rows, stage="base", variant=None,
                                                         direction=f"{ENGLISH}-{target}")}
    assert records["off_target_ref_rate"]["value"] == 0.0 and "hin_Deva" in records["off_target_ref_rate"]["warning"]
    source = flores(ENGLISH)[0]
    assert calibration.flags(source, source)["off_target"] is True  # English still caught
    assert calibration.flags(source, flores("hin_Deva")[0])["off_target"] is False  # Hindi no longer can be


def test_a_detector_above_the_limit_warns_in_its_records():
    direction = f"{ENGLISH}-hin_Deva"
    rows = [{"direction": direction, "reference_flags": {"copy": i < 10, "empty": False}} for i in range(100)]
    records = {r["metric"]: r for r in reference_records(rows, stage="base", variant=None, direction=direction)}
    assert records["copy_ref_rate"]["value"] == 0.1 and "10%" in records["copy_ref_rate"]["warning"]
    assert "warning" not in records["empty_ref_rate"]


# --------------------------------------------------------------------------- copies
def cut(text: str, share: float) -> str:
    """The first ``share`` of the text's characters, cut at a space when there is one."""
    head = text[: max(1, int(len(text) * share))]
    return head.rsplit(" ", 1)[0] if " " in head else head


@pytest.mark.parametrize("code", NAMED)
def test_a_prefix_or_partial_copy_is_a_copy(code):
    line = 9  # a sentence of words, not only names and numbers (those are kept as they are by translators)
    for source, reference, src, tgt in ((flores(ENGLISH)[line], flores(code)[line], ENGLISH, code),
                                        (flores(code)[line], flores(ENGLISH)[line], code, ENGLISH)):
        assert detect_copy(source, cut(source, 0.4), src, tgt).flag is True  # copied, then stopped
        assert detect_copy(source, source[len(source) // 3:], src, tgt).flag is True  # a chunk of the middle on
        partial = cut(reference, 0.3) + " " + source[len(source) // 3:]  # starts translating, then copies
        assert detect_copy(source, partial, src, tgt).flag is True
        assert detect_copy(source, reference, src, tgt).flag is False


def test_a_copy_cut_short_was_missed_by_similarity_alone():
    source = flores(ENGLISH)[0]
    prefix = cut(source, 0.4)
    copy = detect_copy(source, prefix, ENGLISH, "srd_Latn")
    assert copy.flag is True and copy.value == 1.0  # difflib similarity alone: about 0.57


# --------------------------------------------------------------------------- repetition
@pytest.mark.parametrize("code", [*NAMED, "eng_Latn", "srd_Latn"])
def test_degenerate_repetitions_are_caught(code):
    sentence = flores(code)[5]
    words = sentence.split()
    assert detect_repetition(sentence + " " + sentence).flag is True  # the sentence said twice
    phrase = " ".join(words[:4]) if len(words) >= 4 else sentence[:12]
    assert detect_repetition(" ".join([phrase] * 5)).flag is True  # a phrase looped
    assert detect_repetition(sentence[:20] + sentence[8:14] * 6).flag is True  # characters looped, no spaces
    assert detect_repetition(sentence).flag is False


def test_unspaced_scripts_loop_by_characters():
    assert detect_repetition("我们我们我们我们我们").flag is True
    assert detect_repetition("การประท้วงการประท้วงการประท้วงการประท้วง").flag is True
    assert detect_repetition("ကျွန်တော်ကျွန်တော်ကျွန်တော်ကျွန်တော်").flag is True


# --------------------------------------------------------------------------- BLEU tokenizer
def test_bleu_tokenizer_suits_the_script():
    chosen = {code: mt.bleu_tokenizer(code) for code in ("srd_Latn", "rus_Cyrl", "hin_Deva", "ben_Beng", "amh_Ethi",
                                                         "arb_Arab", "tha_Thai", "mya_Mymr", "bod_Tibt", "khm_Khmr",
                                                         "zho_Hans", "jpn_Jpan")}
    assert chosen["srd_Latn"] == chosen["rus_Cyrl"] == "13a" and mt.bleu_tokenizer(None) == "13a"
    assert {chosen[c] for c in ("hin_Deva", "ben_Beng", "amh_Ethi", "arb_Arab")} == {"intl"}
    assert {chosen[c] for c in ("tha_Thai", "mya_Mymr", "bod_Tibt", "khm_Khmr")} == {"char"}
    assert chosen["zho_Hans"] == "zh" and chosen["jpn_Jpan"] in ("ja-mecab", "char")


@pytest.mark.parametrize("code", ["hin_Deva", "ben_Beng", "amh_Ethi"])
def test_a_full_stop_for_the_danda_costs_little_bleu(code):
    references = flores(code)
    dotted = [re.sub("[।॥።]", ".", line) for line in references]
    assert dotted != references
    ours, signature = mt.mt_metrics(dotted, references, target=code)["bleu"]
    plain = mt.mt_metrics(dotted, references)["bleu"][0]  # 13a: the danda stays glued to its word
    assert "tok:intl" in signature
    assert 100 - ours < 0.6 * (100 - plain)
    spaced = [re.sub("([।॥።])", r" \1", line) for line in references]  # the danda as a token of its own
    assert mt.mt_metrics(spaced, references, target=code)["bleu"][0] == pytest.approx(100)


# --------------------------------------------------------------------------- skipped metrics
@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers (a network that drops packets)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    stop = threading.Event()

    def serve():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/flores200sacrebleuspm"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def offline_spbleu(monkeypatch, tmp_path, url):
    from sacrebleu.tokenizers import tokenizer_spm

    monkeypatch.setattr(tokenizer_spm, "SACREBLEU_DIR", str(tmp_path / "sacrebleu"))
    monkeypatch.setattr(mt, "SPBLEU_MODEL_URL", url)
    monkeypatch.setattr(mt, "SPBLEU_DOWNLOAD_TIMEOUT", 0.3)
    monkeypatch.setattr(mt, "_spbleu_state", {})


def test_a_stalled_spbleu_download_times_out_once(tmp_path, monkeypatch, caplog, silent_server):
    offline_spbleu(monkeypatch, tmp_path, silent_server)
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="workbench"):
        for _ in range(3):
            assert set(mt.mt_metrics(["a b c"], ["a b d"], spbleu=True)) == {"bleu", "chrf++"}
            reason = mt.skipped_metrics(spbleu=True)["spbleu"]
    assert time.monotonic() - start < 5
    assert "flores200sacrebleuspm" in reason and ("timed out" in reason or "did not finish" in reason)
    assert sum("spBLEU skipped" in r.getMessage() for r in caplog.records) == 1
    assert not list((tmp_path / "sacrebleu" / "models").glob("flores200sacrebleuspm*"))  # no half file left
    assert mt.skipped_metrics(spbleu=False) == {}


def translation_rows(direction: str) -> list[dict]:
    src, tgt = direction.split("-")
    return [{"direction": direction, "index": i, "source": s, "reference": r, "hypothesis": r, "chrf": 100.0,
             "flags": {"empty": False, "copy": False}, "reference_flags": {"empty": False, "copy": i == 0},
             "off_target_tolerated": [], "prompt": "plain, 1-shot"}
            for i, (s, r) in enumerate(pairs(src, tgt)[:10])]


def test_a_skipped_metric_is_a_record_shown_in_tables_and_exports(tmp_path, monkeypatch):
    offline_spbleu(monkeypatch, tmp_path, "http://127.0.0.1:9/flores200sacrebleuspm")  # refused at once
    direction = f"{ENGLISH}-hin_Deva"
    cfg = EvalConfig(mt=MTEvalConfig(sets=SCRIPTS.parent, directions=[direction]), contamination=None)
    records = records_from_sentences(cfg, {"stage": "base", "variant": None}, [], translation_rows(direction))
    by_metric = {r["metric"]: r for r in records}
    skipped = by_metric["spbleu"]
    assert skipped["value"] is None and "flores200sacrebleuspm" in skipped["skipped"] and skipped["n"] == 10
    assert "tok:intl" in by_metric["bleu"]["signature"] and by_metric["bleu"]["value"] == pytest.approx(100)
    assert by_metric["copy_ref_rate"]["value"] == pytest.approx(0.1) and "warning" in by_metric["copy_ref_rate"]
    assert "warning" in by_metric["copy_rate"] and "warning" not in by_metric["empty_rate"]

    table = scoreboard.pivot_with_deltas(records, kind="mt")
    assert table.loc[table["metric"] == "spbleu", direction].item() == "skipped"
    back = scoreboard.from_csv(scoreboard.to_csv(records))
    assert next(r for r in back if r["metric"] == "spbleu")["skipped"] == skipped["skipped"]
    assert '"value": null' in scoreboard.to_json(records)
    from rich.console import Console

    console = Console(width=200, record=True)
    scoreboard.print_scoreboard(records, console)
    text = console.export_text()
    assert "spbleu skipped" in text and "WARNING copy_ref_rate" in text
    scoreboard.plot_mt(records)  # a None value does not break the app's plot
