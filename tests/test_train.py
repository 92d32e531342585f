"""Training building blocks on the real stories260K model."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from workbench.train.loop import LoopSettings, lr_factor, train
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


# ------------------------------------------------------------------------------------ checkpoints

CHECKPOINTED = LoopSettings(steps=8, lr=3e-3, warmup_ratio=0.25, checkpoint_every=2)


class _Crash(Exception):
    """Stands in for a kill: training stops between two steps."""


class _CrashAt:
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, step, model, state) -> None:
        if step == self.step:
            raise _Crash

    def state_dict(self):
        return {}

    def load_state_dict(self, state) -> None:
        pass


class _RunsOnLoad:
    """A pickle that creates a directory when unpickled: what a planted checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _random_batch(step: int, micro: int) -> dict[str, torch.Tensor]:
    """A batch drawn from the global torch, numpy and python RNGs: equal runs need their states restored."""
    offset = int(np.random.randint(0, 50)) + random.randrange(50)
    ids = torch.randint(3, 400, (2, 12)) + offset
    return {"input_ids": ids, "labels": ids, "attention_mask": torch.ones_like(ids)}


def _train_checkpointed(directory: Path | None, crash_at: int | None = None,
                        events: list[dict] | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """Train stories260K for CHECKPOINTED.steps from the same seed; returns (loop state, weights)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(STORIES)
    callbacks = {"crash": _CrashAt(crash_at)} if crash_at else {}

    def log(event, **fields):
        if events is not None:
            events.append({"event": event, **fields})

    state = train(model, _random_batch, CHECKPOINTED, checkpoint_dir=directory, progress=False,
                  callbacks=callbacks, log=log)
    return state, {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.fixture(scope="module")
def uninterrupted() -> tuple[dict, dict[str, torch.Tensor]]:
    return _train_checkpointed(None)


def _crashed(directory: Path, at: int = 7) -> None:
    with pytest.raises(_Crash):
        _train_checkpointed(directory, crash_at=at)


def _assert_same_run(resumed, uninterrupted) -> None:
    (state, weights), (clean_state, clean_weights) = resumed, uninterrupted
    assert state["step"] == clean_state["step"]
    assert state["losses"] == pytest.approx(clean_state["losses"], rel=1e-6)
    for name, value in clean_weights.items():
        assert torch.allclose(weights[name], value, atol=1e-6), name


def test_a_resumed_run_equals_an_uninterrupted_one_and_keeps_the_last_two_checkpoints(tmp_path: Path,
                                                                                      uninterrupted) -> None:
    _crashed(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-00000004.json", "step-00000004.pt", "step-00000006.json", "step-00000006.pt"]
    assert torch.load(tmp_path / "step-00000006.pt", weights_only=True)["state"]["step"] == 6  # plain data
    events: list[dict] = []
    resumed = _train_checkpointed(tmp_path, events=events)
    assert [e["from_step"] for e in events if e["event"] == "resumed"] == [6]
    _assert_same_run(resumed, uninterrupted)


def test_a_truncated_newest_checkpoint_is_named_and_the_previous_one_used(tmp_path: Path, uninterrupted,
                                                                          caplog) -> None:
    _crashed(tmp_path)
    newest = tmp_path / "step-00000006.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    events: list[dict] = []
    resumed = _train_checkpointed(tmp_path, events=events)
    rejected = [e for e in events if e["event"] == "checkpoint_rejected"]
    assert [e["checkpoint"] for e in rejected] == [str(newest)] and "truncated" in rejected[0]["reason"]
    assert str(newest) in caplog.text
    assert [e["from_step"] for e in events if e["event"] == "resumed"] == [4]
    _assert_same_run(resumed, uninterrupted)


def test_with_no_usable_checkpoint_training_starts_over_with_a_warning(tmp_path: Path, uninterrupted) -> None:
    _crashed(tmp_path)
    for checkpoint in tmp_path.glob("step-*.pt"):
        checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    events: list[dict] = []
    resumed = _train_checkpointed(tmp_path, events=events)
    assert [e["event"] for e in events][:3] == ["checkpoint_rejected", "checkpoint_rejected", "checkpoints_unusable"]
    assert not any(e["event"] == "resumed" for e in events)
    _assert_same_run(resumed, uninterrupted)


@pytest.mark.parametrize("with_sidecar", [True, False])
def test_a_planted_pickle_checkpoint_never_runs(tmp_path: Path, uninterrupted, with_sidecar: bool) -> None:
    marker = tmp_path / "payload-ran"
    checkpoints = tmp_path / "checkpoints"
    _crashed(checkpoints)
    planted = checkpoints / "step-00000007.pt"
    torch.save({"model": _RunsOnLoad(marker)}, planted)
    torch.load(planted, weights_only=False)  # the payload is live: an unsafe load runs it ...
    assert marker.is_dir()
    marker.rmdir()
    if with_sidecar:  # ... even with a sidecar that matches, as an attacker could write one
        (checkpoints / "step-00000007.json").write_text(json.dumps({
            "format": 2, "file": planted.name, "step": 7, "bytes": planted.stat().st_size,
            "sha256": hashlib.sha256(planted.read_bytes()).hexdigest()}))
    events: list[dict] = []
    resumed = _train_checkpointed(checkpoints, events=events)
    assert not marker.exists()
    rejected = next(e for e in events if e["event"] == "checkpoint_rejected")
    assert rejected["checkpoint"] == str(planted)
    assert ("not a plain-tensor checkpoint" if with_sidecar else "sidecar") in rejected["reason"]
    assert [e["from_step"] for e in events if e["event"] == "resumed"] == [6]
    _assert_same_run(resumed, uninterrupted)
