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
