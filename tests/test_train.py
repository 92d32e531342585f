"""Training building blocks on the real stories260K model."""

from __future__ import annotations

import itertools

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from workbench.train.loop import LoopSettings, lr_factor
from workbench.train.loss import causal_lm_loss_sum, supports_fast_loss

from .conftest import STORIES


@pytest.fixture(scope="module")
def model_and_tokenizer():
    return AutoModelForCausalLM.from_pretrained(STORIES).eval(), AutoTokenizer.from_pretrained(STORIES)


def _batch(tokenizer):
    texts = ["Once upon a time there was a cat.", "Lily liked to play in the park with her big red ball."]
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    labels = enc.input_ids.clone()
    labels[enc.attention_mask == 0] = -100
    labels[0, :4] = -100  # a "prompt" without loss
    return enc.input_ids, enc.attention_mask, labels


@pytest.mark.parametrize("wrap_lora", [False, True])
def test_fast_loss_equals_the_models_own_loss(model_and_tokenizer, wrap_lora: bool) -> None:
    model, tokenizer = model_and_tokenizer
    tokenizer.pad_token = tokenizer.eos_token
    if wrap_lora:
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(STORIES).eval(),
                               LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    assert supports_fast_loss(model)
    ids, mask, labels = _batch(tokenizer)
    with torch.no_grad():
        ours = causal_lm_loss_sum(model, ids, mask, labels, chunk_size=5)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].double()
        targets = labels[:, 1:]
        keep = targets != -100
        expected = -torch.log_softmax(logits, -1)[keep].gather(1, targets[keep][:, None]).sum()
    assert float(ours) == pytest.approx(float(expected), rel=1e-5)


def test_schedule_warms_up_then_decays() -> None:
    settings = LoopSettings(steps=10, lr=1.0, warmup_ratio=0.2)
    factors = [lr_factor(s, settings) for s in range(10)]
    assert factors[0] == 0.5 and factors[1] == 1.0 and factors[2] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(factors[2:])) and factors[-1] < 0.05
