"""The EMA follows the model's device: a checkpoint is read onto the CPU, and a resumed EMA must land beside
the weights it averages (on a GPU, the first update after a resume would otherwise mix devices). Checked
without a GPU by resuming into a model on the ``meta`` device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from workbench.train.ema import EMA
from workbench.train.loop import LoopSettings, _load_checkpoint, train


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Embedding(32, 8), torch.nn.Linear(8, 32))


def _loss(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: object, labels: torch.Tensor,
          position_ids: object = None) -> torch.Tensor:
    logits = model(input_ids)
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 32), labels[:, 1:].reshape(-1),
                                             reduction="sum")


def _checkpointed_ema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The EMA state of a real checkpoint written by the training loop (on the CPU)."""
    model = _model()
    ids = torch.randint(0, 32, (2, 6), generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr("workbench.train.loop.causal_lm_loss_sum", _loss)  # a plain module's loss, on logits
    train(model, lambda step, micro: {"input_ids": ids, "labels": ids}, LoopSettings(
        steps=3, lr=1e-2, warmup_ratio=0.0, checkpoint_every=2), checkpoint_dir=tmp_path, progress=False,
        callbacks={"ema": EMA(model, 0.9)})
    payload = _load_checkpoint(tmp_path)
    assert payload is not None
    return payload["callbacks"]["ema"]


def test_a_resumed_ema_lands_on_the_models_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = _checkpointed_ema(tmp_path, monkeypatch)
    assert {v.device.type for v in saved["shadow"].values()} == {"cpu"}  # checkpoints are read onto the CPU
    with torch.device("meta"):
        model = _model()
    ema = EMA(model, 0.9)
    ema.load_state_dict(saved)
    assert {v.device.type for v in ema.shadow.values()} == {"meta"}
    assert ema.updates == saved["updates"] == 2
    ema.update(model)  # mixing devices would raise here
    assert {v.device.type for v in ema.shadow.values()} == {"meta"}


def test_an_ema_follows_a_model_that_moved() -> None:
    model = _model()
    ema = EMA(model, 0.9)
    model.to("meta")
    ema.update(model)
    assert {v.device.type for v in ema.shadow.values()} == {"meta"}
