"""Evaluation on a real tiny model (stories260K) and real FLORES-200 lines; no mocks."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from transformers import AutoTokenizer

from workbench.errors import DataError
from workbench.evaluate import (
    clean_hypothesis,
    mt_metrics,
    read_lines,
    read_parallel,
    read_parallel_files,
    score_model,
    score_texts,
    sentence_chrf,
    translate,
    translation_completion,
    translation_prompt,
)
from workbench.evaluate.lm import encode_for_scoring
from workbench.evaluate.scorer import rescore_directory, split_exemplars
from workbench.recipe import EvalConfig, LMEvalConfig, MTEvalConfig

from .recipes import FIXTURES, STORIES

MODEL_DIR = STORIES
FLORES = FIXTURES / "flores200" / "dev"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lm(stories_lm):
    return stories_lm


@pytest.fixture(scope="module")
def texts() -> list[str]:
    eng = read_lines(FLORES, "eng_Latn", "dev")[:6]
    srd = read_lines(FLORES, "srd_Latn", "dev")[:6]
    return [*eng, *srd, "Once upon a time, there was a little girl named Lily.", "a <s> b"]


def _reference_bits(model, tokenizer, texts: list[str]) -> tuple[float, int]:
    """Independent computation: one plain forward per text, BOS from the tokenizer, float64 sums."""
    bits, tokens = 0.0, 0
    for text in texts:
        ids = tokenizer(text, split_special_tokens=True).input_ids
        assert ids[0] == tokenizer.bos_token_id
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double()
        logp = torch.log_softmax(logits, dim=-1)
        bits -= sum(logp[i, ids[i + 1]].item() for i in range(len(ids) - 1)) / math.log(2)
        tokens += len(ids) - 1
    return bits, tokens


class _FedIds:
    """Records the input_ids and attention masks the model is called with."""

    def __init__(self, model):
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.handle = model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        self.calls.append((kwargs["input_ids"].cpu(), kwargs["attention_mask"].cpu()))

    def rows(self) -> list[list[int]]:
        return [ids[r][mask[r].bool()].tolist() for ids, mask in self.calls for r in range(len(ids))]


# -- LM scoring ------------------------------------------------------------------------------------


def test_bits_per_byte_matches_independent_computation(lm, texts):
    model, tokenizer = lm
    score = score_texts(model, tokenizer, texts, batch_size=4)
    bits, tokens = _reference_bits(model, tokenizer, texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    assert score.prefix_policy == "bos"
    assert score.tokens == tokens
    assert score.bytes == n_bytes and score.chars == sum(map(len, texts)) and score.n == len(texts)
    assert score.bits_per_byte == pytest.approx(bits / n_bytes, abs=1e-6)
    assert score.token_perplexity == pytest.approx(2 ** (bits / tokens), rel=1e-6)


def test_padding_never_enters_the_sums(lm, texts):
    model, tokenizer = lm
    one = score_texts(model, tokenizer, texts, batch_size=1)
    seven = score_texts(model, tokenizer, texts, batch_size=7)
    assert one.tokens == seven.tokens
    assert one.bits_per_byte == pytest.approx(seven.bits_per_byte, abs=1e-6)


def test_bos_is_fed_exactly_once(lm, texts):
    model, tokenizer = lm
    fed = _FedIds(model)
    try:
        score_texts(model, tokenizer, texts, batch_size=5)
    finally:
        fed.handle.remove()
    rows = fed.rows()
    assert sorted(map(tuple, rows)) == sorted(map(tuple, encode_for_scoring(tokenizer, texts)[0]))
    for row in rows:
        assert row[0] == tokenizer.bos_token_id and row.count(tokenizer.bos_token_id) == 1


def test_sliding_windows_score_each_token_once(lm, texts):
    model, tokenizer = lm
    full = score_texts(model, tokenizer, texts)
    fed = _FedIds(model)
    try:
        windowed = score_texts(model, tokenizer, texts, max_length=24, batch_size=8)
    finally:
        fed.handle.remove()
    assert max(len(row) for row in fed.rows()) == 24
    assert len(fed.rows()) > len(texts)
    assert windowed.tokens == full.tokens
    assert math.isfinite(windowed.bits)
    assert windowed.bits_per_byte == pytest.approx(full.bits_per_byte, rel=0.1)


def test_prefix_policy_without_bos(lm):
    model, _ = lm
    tokenizer = AutoTokenizer.from_pretrained(MODEL_DIR)
    texts = ["Once upon a time", "Lily smiled."]
    tokenizer.bos_token = None
    sequences, policy = encode_for_scoring(tokenizer, texts)
    assert policy == "eos" and all(s[0] == tokenizer.eos_token_id for s in sequences)
    tokenizer.eos_token = None
    sequences, policy = encode_for_scoring(tokenizer, texts)
    score = score_texts(model, tokenizer, texts)
    assert policy == score.prefix_policy == "none (first token unscored)"
    assert score.tokens == sum(len(s) - 1 for s in sequences)


def test_empty_input_scores_nothing(lm):
    model, tokenizer = lm
    score = score_texts(model, tokenizer, [])
    assert (score.n, score.tokens, score.bytes) == (0, 0, 0) and math.isnan(score.bits_per_byte)


# -- MT ----------------------------------------------------------------------------------------------


def test_mt_metrics_equal_sacrebleu_cli(tmp_path):
    references = read_lines(FLORES, "srd_Latn", "dev")[:20]
    hypotheses = read_lines(FLORES, "ita_Latn", "dev")[:20]  # a real, partly overlapping "translation"
    (tmp_path / "ref.txt").write_text("\n".join(references) + "\n", encoding="utf-8")
    (tmp_path / "hyp.txt").write_text("\n".join(hypotheses) + "\n", encoding="utf-8")
    command = [sys.executable, "-m", "sacrebleu", "ref.txt", "-i", "hyp.txt", "-m", "bleu", "chrf",
               "--chrf-word-order", "2", "-w", "4"]
    scores = json.loads(subprocess.run([*command, "-b"], cwd=tmp_path, capture_output=True, text=True,
                                       check=True).stdout)
    full = json.loads(subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                                     check=True).stdout)
    ours = mt_metrics(hypotheses, references)
    assert ours["bleu"][0] == pytest.approx(scores[0], abs=1e-4)
    assert ours["chrf++"][0] == pytest.approx(scores[1], abs=1e-4)
    assert (ours["bleu"][1], ours["chrf++"][1]) == (full[0]["signature"], full[1]["signature"])
    assert full[1]["name"] == "chrF2++"
    assert 0 < sentence_chrf(hypotheses[0], references[0]) < 100
    assert sentence_chrf(references[0], references[0]) == pytest.approx(100)


def test_translate_is_batch_invariant_and_ordered(lm):
    model, tokenizer = lm
    sources = [*read_lines(FLORES, "eng_Latn", "dev")[:3], "Once upon a time", "Lily had a big red ball."]
    padding_side = tokenizer.padding_side
    one = translate(model, tokenizer, sources, "eng_Latn", "srd_Latn", batch_size=1, max_new_tokens=24)
    three = translate(model, tokenizer, sources, "eng_Latn", "srd_Latn", batch_size=3, max_new_tokens=24)
    reverse = translate(model, tokenizer, sources[::-1], "eng_Latn", "srd_Latn", batch_size=3,
                        max_new_tokens=24)
    assert one == three == reverse[::-1]
    assert len(one) == len(sources) and len(set(one)) > 1
    assert all(isinstance(h, str) and "\n" not in h for h in one)
    assert tokenizer.padding_side == padding_side
    assert translate(model, tokenizer, [], "eng_Latn", "srd_Latn") == []


def test_prompt_format_and_cleaning():
    prompt = translation_prompt("Hello.", "eng_Latn", "srd_Latn", [("Good day.", "Bona die.")])
    assert prompt == "English: Good day.\nSardinian: Bona die.\n\nEnglish: Hello.\nSardinian:"
    assert translation_prompt("Hi", "srd_Latn", "amh_Ethi") == "Sardinian: Hi\nAmharic:"
    assert translation_completion("Salude.") == " Salude.\n"
    assert clean_hypothesis(" Salude a totus.\nEnglish: more", "srd_Latn") == "Salude a totus."
    assert clean_hypothesis("Sardinian: Salude.", "srd_Latn") == "Salude."
    assert clean_hypothesis("\nanything", "srd_Latn") == ""


# -- data --------------------------------------------------------------------------------------------


def test_read_parallel_fixture():
    pairs = read_parallel(FLORES, "eng_Latn", "srd_Latn", "dev")
    assert len(pairs) == 60 and pairs.skipped == 0
    assert pairs[0][1].startswith("Lunis, iscientziados")


def test_missing_code_lists_codes_present():
    with pytest.raises(DataError, match=r"fur_Latn\.dev.*amh_Ethi, eng_Latn, ita_Latn, srd_Latn"):
        read_lines(FLORES, "fur_Latn", "dev")
    with pytest.raises(DataError, match="not a FLORES-style code"):
        read_lines(FLORES, "sardinian", "dev")


def test_empty_and_misaligned_files(tmp_path):
    (tmp_path / "eng_Latn.dev").write_text("one\ntwo\nthree\n", encoding="utf-8")
    (tmp_path / "srd_Latn.dev").write_text("unu\nduos\n", encoding="utf-8")
    (tmp_path / "ita_Latn.dev").write_text("\n \n", encoding="utf-8")
    with pytest.raises(DataError, match=r"eng_Latn\.dev has 3 lines but .*srd_Latn\.dev has 2"):
        read_parallel(tmp_path, "eng_Latn", "srd_Latn", "dev")
    with pytest.raises(DataError, match=r"ita_Latn\.dev: the file is empty"):
        read_lines(tmp_path, "ita_Latn", "dev")
    with pytest.raises(DataError, match=r"srd_Latn\.dev has 2;"):
        read_parallel_files(tmp_path / "eng_Latn.dev", tmp_path / "srd_Latn.dev")


def test_read_parallel_files_skips_blank_pairs(tmp_path):
    (tmp_path / "eng_Latn.txt").write_text("one\n\nthree\nfour\r\n", encoding="utf-8")
    (tmp_path / "srd_Latn.txt").write_text("unu\nduos\n  \nbator\r\n", encoding="utf-8")
    pairs = read_parallel_files(tmp_path / "eng_Latn.txt", tmp_path / "srd_Latn.txt")
    assert list(pairs) == [("one", "unu"), ("four", "bator")] and pairs.skipped == 2


# -- score_model ---------------------------------------------------------------------------------------


def _eval_config(**mt) -> EvalConfig:
    return EvalConfig(
        lm=LMEvalConfig(sets=FLORES, languages=["eng_Latn", "srd_Latn"], max_sentences=5, batch_size=4),
        mt=MTEvalConfig(sets=FLORES, directions=["eng_Latn-srd_Latn", "srd_Latn-eng_Latn"],
                        max_sentences=3, shots=1, max_new_tokens=12, batch_size=2, **mt),
    )


def test_score_model_records_and_translations(lm, tmp_path):
    model, tokenizer = lm
    records = score_model(model, tokenizer, _eval_config(), stage="base", variant=None, out_dir=tmp_path,
                          progress=False)
    lm_keys = {"stage", "variant", "kind", "language", "metric", "value", "n", "prefix_policy"}
    mt_keys = {"stage", "variant", "kind", "direction", "metric", "value", "n", "signature", "prompt"}
    lm_records = [r for r in records if r["kind"] == "lm"]
    mt_records = [r for r in records if r["kind"] == "mt" and r["value"] is not None]
    skipped = [r for r in records if r["kind"] == "mt" and r["value"] is None]
    detector_records = [r for r in records if r["kind"] == "detector"]
    assert len(lm_records) == 8 and len(mt_records) == 4
    # spBLEU is skipped offline: a record per direction with its reason
    assert [(r["metric"], r["n"]) for r in skipped] == [("spbleu", 3)] * 2 and all(r["skipped"] for r in skipped)
    assert len(records) == 14 + len(detector_records)
    # without lid_seed the off-target detector is off; the four others (and truncation) judge every sentence,
    # and the four are calibrated on the references (their false-alarm rates)
    detectors = ("empty", "script_leak", "copy", "repetition")
    assert {r["metric"] for r in detector_records} == {
        "truncated_rate", *(f"{d}_rate" for d in detectors), *(f"{d}_ref_rate" for d in detectors)}
    assert all(r["n"] == 3 and 0 <= r["value"] <= 1 for r in detector_records)
    assert all(r["value"] == 0.0 for r in detector_records if r["metric"].endswith("_ref_rate"))
    assert all(set(r) == lm_keys and r["n"] == 5 and r["prefix_policy"] == "bos" for r in lm_records)
    assert all(set(r) == mt_keys and r["n"] == 3 for r in mt_records)
    assert {(r["language"], r["metric"]) for r in lm_records} == {
        (code, metric)
        for code in ("eng_Latn", "srd_Latn")
        for metric in ("bits_per_byte", "bits_per_char", "token_perplexity", "surprisal_bits")
    }
    assert all(r["prompt"] == "plain, 1-shot" for r in mt_records)  # stories260K has no chat template
    assert {(r["direction"], r["metric"]) for r in mt_records} == {
        (d, m) for d in ("eng_Latn-srd_Latn", "srd_Latn-eng_Latn") for m in ("chrf++", "bleu")
    }
    assert all(r["stage"] == "base" and r["variant"] is None for r in records)
    assert all(isinstance(r["value"], float) and math.isfinite(r["value"]) for r in records if r not in skipped)
    bpb = {r["language"]: r["value"] for r in lm_records if r["metric"] == "bits_per_byte"}
    assert bpb["eng_Latn"] < bpb["srd_Latn"]  # an English model, not yet adapted

    lines = (tmp_path / "translations.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 3 * 2
    assert set(rows[0]) == {"direction", "index", "source", "reference", "hypothesis", "chrf", "flags", "prompt",
                            "budget_tokens", "cut_character", "reference_flags", "off_target_tolerated"}
    assert rows[0]["reference_flags"] == {"empty": False, "script_leak": False, "copy": False, "repetition": False,
                                          "off_target": None}
    assert rows[0]["flags"]["off_target"] is None and rows[0]["flags"]["empty"] in (True, False)
    eng = read_lines(FLORES, "eng_Latn", "dev")
    forward = [r for r in rows if r["direction"] == "eng_Latn-srd_Latn"]
    assert [r["source"] for r in forward] == eng[:3] and [r["index"] for r in forward] == [0, 1, 2]
    assert all(r["source"] != eng[-1] for r in rows)  # the exemplar (last line) is never scored

    # the per-sentence files give back exactly the same records
    sentences = [json.loads(line) for line in (tmp_path / "lm_sentences.jsonl").read_text().splitlines()]
    assert len(sentences) == 10 and {r["language"] for r in sentences} == {"eng_Latn", "srd_Latn"}
    assert rescore_directory(_eval_config(), {"stage": "base", "variant": None}, tmp_path, None) == records


def test_exemplars_are_disjoint_from_scored_sentences():
    pairs = read_parallel(FLORES, "eng_Latn", "srd_Latn", "dev")
    scored, exemplars = split_exemplars(pairs, 10, 3, "fixture")
    assert scored == pairs[:10] and exemplars == pairs[-3:]
    assert not set(scored) & set(exemplars)
    assert split_exemplars(pairs, 57, 3, "fixture")[1] == pairs[57:]
    with pytest.raises(DataError, match="at most 57"):
        split_exemplars(pairs, 58, 3, "fixture")


def test_score_model_rejects_overlapping_exemplars(lm, tmp_path):
    model, tokenizer = lm
    cfg = EvalConfig(mt=MTEvalConfig(sets=FLORES, directions=["eng_Latn-srd_Latn"], max_sentences=60))
    with pytest.raises(DataError, match="never scored"):
        score_model(model, tokenizer, cfg, stage="base", variant=None, out_dir=tmp_path, progress=False)
    assert score_model(model, tokenizer, EvalConfig(), stage="base", variant=None, out_dir=tmp_path) == []
    assert not (tmp_path / "translations.jsonl").exists()
