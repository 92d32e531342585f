"""Character n-gram floor: proper probabilities, a hand-computed score, language separation, JSON round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from workbench.evaluate import read_lines
from workbench.evaluate.ngram import CHAR_SPACE, END, CharNgramModel

FIXTURES = Path(__file__).parent / "fixtures"
FLORES = FIXTURES / "flores200" / "dev"


@pytest.fixture(scope="module")
def srd_model() -> CharNgramModel:
    lines = (FIXTURES / "text" / "srd_sample.txt").read_text(encoding="utf-8").splitlines()
    return CharNgramModel(3).fit(lines)


def _total_mass(model: CharNgramModel, context: str) -> float:
    """Σ p over the seen characters, the end symbol and every unseen character of the character space."""
    unseen = model.prob(context, "\U0001f600")
    assert unseen == model.prob(context, "中") > 0  # one uniform base for every unseen character
    known = [model.prob(context, char) for char in model.vocab]
    return math.fsum([*known, model.prob(context, END), (CHAR_SPACE - len(model.vocab)) * unseen])


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_probabilities_sum_to_one(order, srd_model):
    lines = (FIXTURES / "text" / "srd_sample.txt").read_text(encoding="utf-8").splitlines()[:80]
    model = srd_model if order == 3 else CharNgramModel(order).fit(lines)
    contexts = ["", "S", "su ", "Sa limba", "de sa ", "qqxq", "中文", "è", "the end of a long context. "]
    for context in contexts:
        assert _total_mass(model, context) == pytest.approx(1.0, abs=1e-9), context
    empty = CharNgramModel(order)
    assert empty.vocab == [] and empty.prob("ab", "c") == 1 / (CHAR_SPACE + 1)
    assert _total_mass(empty, "ab") == pytest.approx(1.0, abs=1e-9)


def test_bits_match_hand_computation():
    model = CharNgramModel(2).fit(["abab", "aab"])
    # Bigram events (B = begin, E = end): "abab" -> Ba ab ba ab bE; "aab" -> Ba aa ab bE.
    # Raw counts c1(h w): B: {a: 2}; a: {b: 3, a: 1}; b: {a: 1, E: 2}.
    # Count-of-counts n1 = 2 (aa, ba), n2 = 2 (Ba, bE)  ->  D1 = 2 / (2 + 2*2) = 1/3.
    # Continuation counts c0(w) = #distinct left neighbours: a: {B, a, b} = 3, b: {a} = 1, E: {b} = 1;
    # total 5, 3 types. n1 = 2, n2 = 0 -> 2 / 2 = 1, clipped to D0 = 0.9.
    assert model.discounts == pytest.approx([0.9, 1 / 3])
    assert model.vocab == ["a", "b"]
    u = 1 / (1_112_064 + 1)  # uniform base over all Unicode scalar values + the end symbol
    p0_a = (3 - 0.9 + 0.9 * 3 * u) / 5
    p0_b = (1 - 0.9 + 0.9 * 3 * u) / 5
    p0_end = (1 - 0.9 + 0.9 * 3 * u) / 5
    p0_z = (0 + 0.9 * 3 * u) / 5
    d1 = 1 / 3
    p_b_after_begin = (0 + d1 * 1 * p0_b) / 2  # history B: total 2, 1 type, c(B b) = 0
    p_a_after_b = (1 - d1 + d1 * 2 * p0_a) / 3  # history b: total 3, 2 types, c(b a) = 1
    p_end_after_a = (0 + d1 * 2 * p0_end) / 4  # history a: total 4, 2 types, c(a E) = 0
    p_z_after_b = (0 + d1 * 2 * p0_z) / 3  # z never seen
    p_end_after_z = p0_end  # history z never seen: the lower order passes through
    expected = -sum(
        math.log2(p)
        for p in (p_b_after_begin, p_a_after_b, p_end_after_a, p_b_after_begin, p_z_after_b, p_end_after_z)
    )
    score = model.score(["ba", "bz"])
    assert score.bits == pytest.approx(expected, rel=1e-12)
    assert (score.tokens, score.bytes, score.chars, score.n) == (6, 4, 4, 2)
    assert score.prefix_policy == "char-ngram order 2"
    assert model.prob("", "b") == pytest.approx(p_b_after_begin, rel=1e-12)
    assert model.prob("xyzb", "a") == pytest.approx(p_a_after_b, rel=1e-12)
    assert model.prob("z", END) == pytest.approx(p_end_after_z, rel=1e-12)


def test_sardinian_model_prefers_sardinian(srd_model):
    srd = srd_model.score(read_lines(FLORES, "srd_Latn", "dev"))
    eng = srd_model.score(read_lines(FLORES, "eng_Latn", "dev"))
    assert srd.n == eng.n == 60
    assert srd.tokens == sum(map(len, read_lines(FLORES, "srd_Latn", "dev"))) + 60
    assert 1.0 < srd.bits_per_byte < eng.bits_per_byte < 8.0
    amh = srd_model.score(read_lines(FLORES, "amh_Ethi", "dev"))  # unseen script: finite, and far worse
    assert math.isfinite(amh.bits) and amh.bits_per_char > 2 * eng.bits_per_char


def test_save_load_round_trip(srd_model, tmp_path):
    path = tmp_path / "srd.json"
    srd_model.save(path)
    assert json.loads(path.read_text(encoding="utf-8"))["order"] == 3
    loaded = CharNgramModel.load(path)
    texts = [*read_lines(FLORES, "srd_Latn", "dev")[:10], "中文 and 😀"]
    assert loaded.score(texts) == srd_model.score(texts)
    assert loaded.discounts == srd_model.discounts and loaded.vocab == srd_model.vocab
    fixed = CharNgramModel(4, discount=0.75).fit(texts)
    fixed.save(path)
    assert CharNgramModel.load(path).score(texts) == fixed.score(texts)


def test_nfc_and_edge_texts(srd_model):
    composed, decomposed = srd_model.score(["sa cità"]), srd_model.score(["sa cita\u0300"])
    assert composed.bits == decomposed.bits and composed.tokens == decomposed.tokens == 8
    assert decomposed.bytes == composed.bytes + 1 and decomposed.chars == composed.chars + 1
    empty = srd_model.score([""])
    assert empty.tokens == 1 and empty.bytes == 0 and math.isfinite(empty.bits)
    with pytest.raises(ValueError, match="surrogate"):
        srd_model.score(["bad \ud800 text"])
    with pytest.raises(ValueError, match="one character"):
        srd_model.prob("sa", "ab")
    with pytest.raises(ValueError, match="order"):
        CharNgramModel(0)
