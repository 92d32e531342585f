"""Vocabulary extension and embedding initialization on a real SentencePiece-style tokenizer."""

from __future__ import annotations

import re

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from workbench.tokenize.transplant import first_free_id, init_new_rows, save_tokenizer
from workbench.tokenize.vocab import (
    base_model_tokenizer,
    decompose,
    extend,
    load_backend,
    needs_word_splitting,
    splits_digits,
    train_like,
)

from .conftest import FIXTURES, STORIES

SRD = (FIXTURES / "text" / "srd_sample.txt").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def transplant(tmp_path_factory):
    tokenizer = AutoTokenizer.from_pretrained(STORIES)
    model = AutoModelForCausalLM.from_pretrained(STORIES)
    base_rows = model.get_input_embeddings().weight.detach().clone()
    spec = load_backend(STORIES, tokenizer)
    extension = extend(spec, train_like(spec, SRD, 1200), first_id=first_free_id(model, spec))
    init_new_rows(model, spec, extension)
    out = tmp_path_factory.mktemp("tok") / "model"
    save_tokenizer(tokenizer, extension.tokenizer_json, out)
    model.save_pretrained(out)
    return spec, extension, base_rows, out


def test_pipeline_facts_of_the_base() -> None:
    spec = load_backend(STORIES, AutoTokenizer.from_pretrained(STORIES))
    assert needs_word_splitting(spec) and splits_digits(spec)


def test_new_pieces_follow_the_base_conventions(transplant) -> None:
    _, extension, _, _ = transplant
    pieces = [p for _, p in extension.added]
    assert len(pieces) > 300
    assert not [p for p in pieces if "▁" in p[1:]]  # "▁" only starts a word, as in the base
    assert not [p for p in pieces if re.search(r"\d\d", p)]  # numbers stay digit by digit


def test_extended_tokenizer_round_trips_and_is_shorter(transplant) -> None:
    _, _, _, out = transplant
    new, old = AutoTokenizer.from_pretrained(out), AutoTokenizer.from_pretrained(STORIES)
    for text in ("Sa limba sarda est una limba romanza de sa Sardigna.", "Once upon a time, 1234 cats ran."):
        assert new.decode(new(text).input_ids, skip_special_tokens=True) == text
    assert sum(len(new(t).input_ids) for t in SRD[:50]) < 0.9 * sum(len(old(t).input_ids) for t in SRD[:50])
    assert not new.added_tokens_decoder.keys() - old.added_tokens_decoder.keys()  # never add_tokens


def test_new_rows_are_means_of_their_byte_exact_decomposition(transplant) -> None:
    spec, extension, base_rows, out = transplant
    rows = AutoModelForCausalLM.from_pretrained(out).get_input_embeddings().weight.detach()
    assert torch.equal(rows[: base_rows.shape[0]], base_rows)
    base = base_model_tokenizer(spec)
    for token_id, piece in extension.added[:50]:
        parts = decompose(base, piece)
        assert torch.allclose(rows[token_id], base_rows[parts].mean(0), atol=1e-6)
    # characters the base only reached through byte fallback get their own bytes' rows, not one shared row
    accented = [(i, p) for i, p in extension.added if len(p) == 1 and ord(p) > 127]
    assert len(accented) >= 2
    assert len({tuple(decompose(base, p)) for _, p in accented}) == len(accented)
    assert len({tuple(rows[i].tolist()) for i, _ in accented}) == len(accented)


def test_fertility_counts_byte_fallback_in_both_tokenizer_families():
    from workbench.models import resolve_model
    from workbench.tokenize.fertility import fertility, is_byte_fallback, is_byte_level

    spm = AutoTokenizer.from_pretrained(STORIES)
    assert not is_byte_level(spm)
    # "ሰላም": the SentencePiece vocabulary has no Ethiopic: '▁' + 9 byte tokens (3 characters x 3 bytes)
    amharic = fertility(spm, ["ሰላም"])
    assert (amharic["tokens"], amharic["words"], amharic["chars"]) == (10, 1, 3)
    assert amharic["byte_fallback_rate"] == pytest.approx(9 / 10)
    assert amharic["tokens_per_char"] == pytest.approx(10 / 3)
    assert fertility(spm, ["Once upon a time"])["byte_fallback_rate"] == 0
    # byte-level BPE: a token is byte fallback when its bytes are not whole UTF-8 characters
    assert is_byte_fallback("Ġthe", byte_level=True) is False
    assert is_byte_fallback("á", byte_level=True) is True  # the byte 0xE1 alone: the start of a 3-byte character
    smol = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m").path)  # installed by the test command
    assert is_byte_level(smol) and fertility(smol, ["ሰላም ለሁላችሁ"])["byte_fallback_rate"] > 0.5
    assert fertility(smol, ["Once upon a time"])["byte_fallback_rate"] == 0


def test_tokenizer_stage_reports_fertility_before_and_after(finished_run):
    _, _, result = finished_run
    records = {(r["stage"], r["language"], r["metric"]): r["value"] for r in result.scoreboard
               if r["kind"] == "tokenizer"}
    assert records[("tokenizer", "srd_Latn", "tokens_per_word")] < records[("base", "srd_Latn", "tokens_per_word")]
    assert {lang for _, lang, _ in records} == {"srd_Latn", "eng_Latn"}  # the recipe's LM languages
    assert all(0 <= records[(s, c, "byte_fallback_rate")] <= 1 for s in ("base", "tokenizer")
               for c in ("srd_Latn", "eng_Latn"))
