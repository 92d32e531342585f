"""Parallel-sentence surprisal on the real tiny model (stories260K) and FLORES fixture lines."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tokenizers import Tokenizer, pre_tokenizers

from workbench.evaluate import read_lines
from workbench.evaluate.surprisal import continuation_ids, encode_halves, parallel_surprisal, split_halves

from .recipes import FIXTURES, STORIES

MODEL_DIR = STORIES
FLORES = FIXTURES / "flores200" / "dev"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lm(stories_lm):
    return stories_lm


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    return [
        *read_lines(FLORES, "eng_Latn", "dev")[:3],
        *read_lines(FLORES, "srd_Latn", "dev")[:3],
        read_lines(FLORES, "amh_Ethi", "dev")[0],
        "Once upon a time, there was a little girl named Lily.",
        "Lily",
    ]


def test_split_halves():
    assert split_halves("ab cd") == ("ab", " cd")
    assert split_halves("one two three four") == ("one two", " three four")  # middle 9: spaces at 3, 7, 13
    assert split_halves("a bb ccc dddd") == ("a bb ccc", " dddd")  # middle 6.5: space 8 beats space 4
    assert split_halves("ab cd ef") == ("ab cd", " ef")  # middle 4: space 5 (1 away) beats space 2
    assert split_halves("Lily") == ("Li", "ly")  # one word: middle character
    assert split_halves("abc") == ("a", "bc")  # tie between cuts 1 and 2: the earlier
    assert split_halves("这是一个句子") == ("这是一", "个句子")  # no spaces
    assert split_halves("xe\u0301y") == ("x", "e\u0301y")  # middle 2 is a combining mark: cut 1 or 3
    assert split_halves("a") == ("", "a")
    assert split_halves(" word  ") == (" wo", "rd  ")  # outer spaces are not split points
    assert split_halves("x\ty") == ("x", "\ty")
    with pytest.raises(ValueError, match="blank"):
        split_halves("  ")


def test_continuation_ids_add_no_space(lm):
    _, tokenizer = lm
    texts = [" upon a time", "ly", "e little girl"]
    pieces = ["".join(tokenizer.convert_ids_to_tokens(ids)) for ids in continuation_ids(tokenizer, texts)]
    assert pieces == ["▁upon▁a▁time", "ly", "e▁little▁girl"]
    plain = tokenizer("ly", add_special_tokens=False).input_ids
    assert tokenizer.convert_ids_to_tokens(plain)[0].startswith("▁")  # what the anchor avoids


def test_long_context_is_cut_from_the_left(lm):
    _, tokenizer = lm
    halves = [("Once upon a time", " there was a girl")]
    (full,), policy = encode_halves(tokenizer, halves, 512)
    cont = continuation_ids(tokenizer, [" there was a girl"])[0]
    assert policy == "bos" and full.ids[0] == tokenizer.bos_token_id and full.ids[-len(cont):] == cont
    (cut,), _ = encode_halves(tokenizer, halves, len(cont) + 2)
    assert cut.ids == full.ids[-len(cont) - 2 :] and cut.n_scored == full.n_scored == len(cont)
    with pytest.raises(ValueError, match="second half"):
        encode_halves(tokenizer, halves, len(cont))


def _no_prefix_backend(tokenizer) -> Tokenizer:
    """The fast tokenizer with its Metaspace dummy prefix switched off: tokens of text that continues."""
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    assert json.loads(backend.to_str())["pre_tokenizer"]["prepend_scheme"] == "always"
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=False)
    return backend


def _reference(model, tokenizer, sentence: str) -> tuple[float, int]:
    """Independent: one plain forward of BOS + first-half ids + second-half ids, summed by hand."""
    first, second = split_halves(sentence)
    head = [tokenizer.bos_token_id, *tokenizer(first, add_special_tokens=False).input_ids]
    ids = head + _no_prefix_backend(tokenizer).encode(second, add_special_tokens=False).ids
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    bits = -sum(logp[i - 1, ids[i]].item() for i in range(len(head), len(ids))) / math.log(2)
    return bits, len(second.encode("utf-8"))


def test_equals_independent_computation(lm, sentences):
    model, tokenizer = lm
    score = parallel_surprisal(model, tokenizer, sentences, batch_size=4)
    reference = [_reference(model, tokenizer, s) for s in sentences]
    assert score.n == len(sentences) and score.prefix_policy == "bos"
    mean_bits = math.fsum(b for b, _ in reference) / len(reference)
    bits_per_byte = math.fsum(b for b, _ in reference) / sum(n for _, n in reference)
    # float32 log-softmax (as asked) vs float64 here: ~1e-8 relative on sums of up to ~7000 bits
    assert score.mean_bits == pytest.approx(mean_bits, rel=1e-6)
    assert score.bits_per_byte == pytest.approx(bits_per_byte, abs=1e-6)
    assert score.bits_per_byte > 0 and math.isfinite(score.bits_per_byte)


def test_batch_size_does_not_change_scores(lm, sentences):
    model, tokenizer = lm
    one = parallel_surprisal(model, tokenizer, sentences, batch_size=1)
    five = parallel_surprisal(model, tokenizer, sentences, batch_size=5)
    assert one.n == five.n == len(sentences)
    assert one.mean_bits == pytest.approx(five.mean_bits, rel=1e-6)  # float32 sums of ~1000 bits
    assert one.bits_per_byte == pytest.approx(five.bits_per_byte, abs=1e-6)
    empty = parallel_surprisal(model, tokenizer, [])
    assert empty.n == 0 and math.isnan(empty.mean_bits)
