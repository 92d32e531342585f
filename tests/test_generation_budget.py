"""Generation budgets in characters, truncation counted, no half characters: on the real stories260K
model (an English tokenizer with byte fallback, so non-Latin text costs ~3 tokens a character) and
real FLORES-200 dev lines in many scripts."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from workbench.evaluate import read_lines, score_model
from workbench.evaluate.mt import (
    REPLACEMENT,
    Translation,
    complete_characters,
    length_model,
    translate,
    translate_each,
    truncation_warning,
)
from workbench.evaluate.prompts import translation_completion, translation_prompt
from workbench.evaluate.scorer import calibration_pairs, rescore_directory
from workbench.recipe import EvalConfig, MTEvalConfig

from .recipes import FIXTURES, STORIES

MODEL_DIR = STORIES
FLORES = FIXTURES / "flores200" / "dev"
SCRIPTS = FIXTURES / "flores200" / "scripts"  # 100 dev lines of many languages, line-aligned
TARGETS = ("hin_Deva", "tha_Thai", "mya_Mymr", "amh_Ethi", "jpn_Jpan", "arb_Arab", "bod_Tibt", "vie_Latn",
           "srd_Latn")
SCORED, HELD_OUT = slice(0, 80), slice(84, 100)  # budgets are measured on lines never scored

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(MODEL_DIR)


@pytest.fixture(scope="module")
def model():
    return AutoModelForCausalLM.from_pretrained(MODEL_DIR)


def _pairs(src: str, tgt: str, lines: slice) -> list[tuple[str, str]]:
    return list(zip(read_lines(SCRIPTS, src, "dev"), read_lines(SCRIPTS, tgt, "dev"), strict=True))[lines]


def _tokens(tokenizer, text: str) -> int:
    return len(tokenizer(f" {text}", add_special_tokens=False, verbose=False)["input_ids"])


@pytest.mark.parametrize("tgt", TARGETS)
def test_budgets_leave_room_for_the_reference_in_every_script(tokenizer, tgt):
    """A perfect system is not cut: the budget of (nearly) every source covers its reference's tokens."""
    lengths = length_model(tokenizer, _pairs("eng_Latn", tgt, HELD_OUT))
    scored = _pairs("eng_Latn", tgt, SCORED)
    covered = sum(lengths.budget(source) >= _tokens(tokenizer, reference) for source, reference in scored)
    assert covered / len(scored) >= 0.95, (tgt, covered, lengths)


def test_budgets_follow_characters_and_the_targets_cost(tokenizer):
    english = length_model(tokenizer, _pairs("hin_Deva", "eng_Latn", HELD_OUT))
    hindi = length_model(tokenizer, _pairs("eng_Latn", "hin_Deva", HELD_OUT))
    assert hindi.tokens_per_char > 2 * english.tokens_per_char  # byte fallback: 3 bytes a Devanagari letter
    source = read_lines(SCRIPTS, "eng_Latn", "dev")[0]
    assert hindi.budget(source) > 2 * english.budget(source)  # the same English sentence, into Hindi
    assert hindi.budget(source) > hindi.budget(source[: len(source) // 2]) > hindi.budget("")
    # the user's max_new_tokens and half the model's positions are hard caps
    capped = length_model(tokenizer, _pairs("eng_Latn", "hin_Deva", HELD_OUT), max_new_tokens=40, positions=512)
    assert capped.budget(source) == 40
    assert length_model(tokenizer, _pairs("eng_Latn", "hin_Deva", HELD_OUT), positions=512).budget(source) == 256


def test_budgets_without_pairs(tokenizer):
    """No target text: a target in the source's script costs what the sources cost; else a generous default."""
    hindi = read_lines(SCRIPTS, "hin_Deva", "dev")[:4]
    same_script = length_model(tokenizer, [], same_script_texts=hindi)
    unknown = length_model(tokenizer, [])
    assert same_script.chars_ratio == unknown.chars_ratio == 2.0
    assert same_script.tokens_per_char == pytest.approx(sum(_tokens(tokenizer, t) for t in hindi)
                                                        / sum(len(t) for t in hindi))
    assert unknown.tokens_per_char == 3.0


@pytest.mark.parametrize("code", ["hin_Deva", "tha_Thai", "mya_Mymr", "jpn_Jpan", "amh_Ethi", "bod_Tibt"])
def test_no_cut_leaves_half_a_character(tokenizer, code):
    """Cut after every token: the text never ends in U+FFFD, is a prefix of the whole, and only grows."""
    sentence = read_lines(SCRIPTS, code, "dev")[0][:60]
    ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
    whole = tokenizer.decode(ids)
    longest, cuts = "", 0
    for end in range(1, len(ids) + 1):
        text, cut = complete_characters(tokenizer, ids[:end])
        assert not text.endswith(REPLACEMENT) and whole.startswith(text)
        assert len(text) >= len(longest)
        longest, cuts = text, cuts + cut
    assert longest == whole and cuts > 0  # byte fallback really cuts characters


@pytest.fixture(scope="module")
def hindi_model():
    """stories260K taught one Hindi translation, so that it really writes Devanagari (byte tokens)."""
    taught = AutoModelForCausalLM.from_pretrained(MODEL_DIR)
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
    reference = read_lines(SCRIPTS, "hin_Deva", "dev")[0][:16]
    text = translation_prompt("On Monday", "eng_Latn", "hin_Deva") + translation_completion(reference)
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(taught.parameters(), lr=3e-3)
    for _ in range(80):
        taught(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return taught.eval(), tokenizer, reference


def test_truncated_hindi_ends_on_a_whole_character(hindi_model, caplog):
    model, tokenizer, reference = hindi_model
    full = translate_each(model, tokenizer, ["On Monday"], "eng_Latn", "hin_Deva", max_new_tokens=200)[0]
    assert full.text == reference and not full.truncated  # the whole line fits its budget
    cut_seen = 0
    with caplog.at_level(logging.WARNING, logger="workbench"):
        for cap in range(4, 20):
            out = translate_each(model, tokenizer, ["On Monday"], "eng_Latn", "hin_Deva", max_new_tokens=cap)[0]
            assert out.truncated and out.budget == cap
            assert not out.text.endswith(REPLACEMENT) and reference.startswith(out.text)
            cut_seen += out.cut_character
    assert cut_seen >= 8  # 2 of every 3 budgets end inside a 3-byte letter
    assert "eng_Latn-hin_Deva: 1 of 1 translations used their whole token budget" in caplog.text


def test_truncation_warning_threshold():
    fine = [*[Translation("a", 10, False)] * 19, Translation("b", 10, True)]
    assert truncation_warning("eng_Latn-hin_Deva", fine) is None  # 5%: not above a few percent
    assert "2 of 20" in truncation_warning("eng_Latn-hin_Deva", [*fine[1:], Translation("c", 10, True)])


def test_budgets_are_batch_invariant(model, tokenizer):
    """Each row stops at its own budget, so a translation does not depend on its batch."""
    sources = [s for s, _ in _pairs("hin_Deva", "eng_Latn", slice(0, 4))] + ["Lily had a ball."]
    calibration = _pairs("hin_Deva", "eng_Latn", HELD_OUT)
    one = translate(model, tokenizer, sources, "hin_Deva", "eng_Latn", calibration=calibration, batch_size=1,
                    max_new_tokens=48)
    many = translate(model, tokenizer, sources, "hin_Deva", "eng_Latn", calibration=calibration, batch_size=5,
                     max_new_tokens=48)
    assert one == many


def test_truncation_is_counted_in_rows_and_records(model, tokenizer, tmp_path):
    cfg = EvalConfig(mt=MTEvalConfig(sets=FLORES, directions=["eng_Latn-srd_Latn"], max_sentences=4, shots=1,
                                     max_new_tokens=4, batch_size=2))
    records = score_model(model, tokenizer, cfg, stage="base", variant=None, out_dir=tmp_path, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "translations.jsonl").read_text().splitlines()]
    assert all(r["flags"]["truncated"] and r["budget_tokens"] == 4 for r in rows)
    truncated = [r for r in records if r["metric"] == "truncated_rate"]
    assert [(r["kind"], r["direction"], r["value"], r["n"]) for r in truncated] == [
        ("detector", "eng_Latn-srd_Latn", 1.0, 4)]
    assert rescore_directory(cfg, {"stage": "base", "variant": None}, tmp_path, None) == records


def test_scorer_budgets_come_from_unscored_pairs():
    cfg = MTEvalConfig(sets=FLORES, directions=["eng_Latn-srd_Latn"], max_sentences=20, shots=1)
    pairs = list(zip(read_lines(FLORES, "eng_Latn", "dev"), read_lines(FLORES, "srd_Latn", "dev"), strict=True))
    held_out = calibration_pairs(cfg, "eng_Latn-srd_Latn")
    assert held_out == pairs[-16:] and not set(held_out) & set(pairs[:20])
    assert MTEvalConfig(sets=FLORES, directions=["eng_Latn-srd_Latn"]).max_new_tokens is None  # no fixed cap
