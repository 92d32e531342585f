"""`workbench plan`'s memory estimator: counts from configs alone, shipped configs, and the estimate
against measured peak memory of real CPU training runs."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoModelForCausalLM

from workbench.train.memory import (
    CUDA_CONTEXT,
    NF4_BYTES,
    SHIPPED_CONFIGS,
    TrainSetup,
    estimate,
    load_config,
    model_shape,
)

from .conftest import ROOT, STORIES


def test_counts_from_the_config_equal_the_real_model() -> None:
    shape = model_shape(AutoConfig.from_pretrained(STORIES))
    model = AutoModelForCausalLM.from_pretrained(STORIES)
    assert shape.params == sum(p.numel() for p in model.parameters())
    assert shape.tied and shape.vocab == model.get_input_embeddings().weight.shape[0]
    lora = estimate(shape, TrainSetup(method="lora", r=8))
    assert lora.trainable == sum(8 * (i + o) for _, i, o in shape.linear)


@pytest.mark.parametrize(("repo", "billions"), [("Qwen/Qwen2.5-3B-Instruct", 3.09), ("meta-llama/Llama-3.2-3B-Instruct",
                                                3.21), ("google/gemma-3-1b-it", 1.0), ("google/gemma-3-4b-it", 3.88)])
def test_shipped_configs_of_common_bases(repo: str, billions: float) -> None:
    assert (SHIPPED_CONFIGS / f"{repo.replace('/', '__')}.json").is_file()
    config, _ = load_config(f"hf:{repo}")
    shape = model_shape(config)
    assert shape.params / 1e9 == pytest.approx(billions, abs=0.01)
    small, big = (estimate(shape, TrainSetup(method=m, r=64, quantize=q, seq_len=1024, batch_size=4,
                                             gradient_checkpointing=True))
                  for m, q in (("lora", "4bit"), ("full", "none")))
    assert small.total < big.total and small.parts["weights"] < shape.params  # 4-bit: under a byte per parameter


def test_plan_shows_which_llimba_variants_fit_offline(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    recipe = ROOT / "recipes" / "llimba-sardinian.yaml"
    done = subprocess.run([sys.executable, "-m", "workbench.cli", "plan", str(recipe), "--workspace",
                           str(tmp_path / "runs")], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "shipped config Qwen__Qwen2.5-3B-Instruct.json" in out and "will it fit in 24 GiB" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 10}
    assert {"cpt", "finetune/lora-r64", "finetune/rslora-r128", "finetune/rslora-r256", "finetune/dora-r256",
            "finetune/full"} <= rows.keys()
    assert "yes" in rows["finetune/lora-r64"].split("│")[-2] and "no" in rows["finetune/full"].split("│")[-2]
    for term in ("bf16", "allocator", "context", "device", "overlap"):  # every term the total adds, shown
        assert term in out


def _qwen3b() -> object:
    return model_shape(load_config("hf:Qwen/Qwen2.5-3B-Instruct")[0])


def test_each_term_of_the_plan_is_what_it_says() -> None:
    """Accumulation, EMA, autocast, QLoRA and the CUDA context, term by term on Qwen2.5-3B."""
    shape = _qwen3b()
    linear = sum(i * o for _, i, o in shape.linear)
    lora = TrainSetup(method="rslora", r=256, batch_size=8, seq_len=512, gradient_checkpointing=True, padded=True)
    one, two = estimate(shape, lora), estimate(shape, replace(lora, grad_accum=2))
    # with accumulation the gradients stay resident during the next forward: nothing overlaps any more
    assert two.overlap == 0 and two.allocator - one.allocator == one.overlap > 0
    full = TrainSetup(method="full", embeddings="full", batch_size=8, seq_len=512, gradient_checkpointing=True)
    plain, ema = estimate(shape, full), estimate(shape, replace(full, ema=True))
    assert ema.parts["ema"] == shape.params * 4 and ema.allocator - plain.allocator == shape.params * 4
    mixed = estimate(shape, replace(full, autocast=True))
    assert mixed.parts["weight_cache"] == linear * 2  # bf16 copies of the linear weights, saved for backward
    assert mixed.parts["activations"] < plain.parts["activations"]  # bf16 activations, float32 residual stream
    qlora = estimate(shape, TrainSetup(method="lora", r=64, quantize="4bit", batch_size=8, seq_len=512))
    assert qlora.parts["upcast"] == (shape.params - linear) * 2  # bf16 -> fp32 embeddings and norms
    assert qlora.total - qlora.allocator == CUDA_CONTEXT  # two figures: the allocator's peak, the device total
    on_cpu = estimate(shape, TrainSetup(method="lora", r=64, device="cpu"))
    assert on_cpu.total == on_cpu.allocator


def test_qlora_terms_match_a_4bit_model() -> None:
    """QLoRA on a real 4-bit model (bitsandbytes on CPU, stories260K): the NF4 weights, the float32 upcast of
    everything else, and activations kept in float32 although the compute dtype is bf16, measured as the bytes
    autograd saves for the backward pass (a measured peak of a 4-bit run takes minutes on this CPU)."""
    import torch

    from workbench.train.loss import causal_lm_loss_sum
    from workbench.train.trainable import AdapterSettings, load_base, prepare

    model, _ = load_base(STORIES, device="cpu", quantize="4bit", dtype="bfloat16")
    shape = model_shape(AutoConfig.from_pretrained(STORIES))
    setup = TrainSetup(method="lora", r=8, quantize="4bit", dtype="bfloat16", batch_size=4, seq_len=64, device="cpu")
    planned = estimate(shape, setup)
    nf4_planned = sum(i * o for _, i, o in shape.linear) * NF4_BYTES
    nf4 = sum(p.numel() * p.element_size() for p in model.parameters() if p.dtype == torch.uint8)
    upcast = sum(p.numel() * 4 for p in model.parameters() if p.dtype == torch.float32)
    assert nf4 == pytest.approx(nf4_planned, rel=0.05)
    assert upcast == planned.parts["weights"] - nf4_planned + planned.parts["upcast"]
    trained = prepare(model, method="lora", adapter=AdapterSettings(method="lora", r=8), embeddings="frozen", lr=1e-4)
    ids = torch.randint(3, 500, (4, 64), generator=torch.Generator().manual_seed(0))
    saved: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        saved[tensor.data_ptr()] = tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        causal_lm_loss_sum(trained.model, ids, None, ids)
    assert sum(saved.values()) == pytest.approx(planned.parts["activations"], rel=0.2)


# Measured as the live peak (what CUDA's max_memory_allocated reports, and what the estimate is for): the
# libraries are imported before the baseline is taken (peft alone is ~200 MB of code), and the process runs
# with LIVE_PEAK_ENV, so freed tensors do not stay in the resident set. The baseline is the resident memory
# after loading less the weights, read once so that every page of them is resident: a checkpoint mapped from
# disk is paged in as it is read, and a 4-bit load leaves the float checkpoint's pages mapped (~350 MB here),
# neither of which is training memory.
MEASURE = """
import json, sys, torch
import peft, transformers.models.llama.modeling_llama  # noqa: F401 (imported before the baseline)
from workbench.modeling import resident_memory_mb, peak_memory_mb, reset_peak_memory
from workbench.models import resolve_model
from workbench.train.ema import EMA
from workbench.train.loop import LoopSettings, train
from workbench.train.trainable import AdapterSettings, load_base, prepare
spec = {"accum": 1, "ema": False, "autocast": False, "quantize": "none", **json.loads(sys.argv[1])}
path = resolve_model("smollm2-135m").path
model, _ = load_base(path, device="cpu", gradient_checkpointing=spec["gc"], quantize=spec["quantize"])
for weight in model.parameters():
    weight.detach().sum()  # every page of the weights resident (a checkpoint mapped from disk is read lazily)
weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
before = resident_memory_mb() - weights_mb  # the weights, all paged in, count; what loading left behind does not
reset_peak_memory("cpu")
method = spec["method"]
trained = prepare(model, method=method, adapter=AdapterSettings(method=method, r=8, dropout=spec["dropout"]),
                  embeddings="full" if method == "full" else "frozen", lr=1e-4)
ids = torch.randint(100, 40000, (spec["batch"], spec["seq"]), generator=torch.Generator().manual_seed(0))
callbacks = {"ema": EMA(trained.model, 0.99)} if spec["ema"] else None
settings = LoopSettings(steps=2, lr=1e-4, warmup_ratio=0.0, grad_accum=spec["accum"],
                        autocast=torch.bfloat16 if spec["autocast"] else None)
train(trained.model, lambda s, m: {"input_ids": ids, "labels": ids, "attention_mask": None}, settings,
      param_groups=trained.param_groups, progress=False, callbacks=callbacks)
print("MB", peak_memory_mb("cpu") - before)
"""


@functools.cache
def _measured_mb(spec_json: str) -> float:
    """Peak training memory (MB) of the MEASURE script for a JSON spec (each spec runs once per session)."""
    from workbench.modeling import LIVE_PEAK_ENV

    env = {**os.environ, **LIVE_PEAK_ENV}
    done = subprocess.run([sys.executable, "-c", MEASURE, spec_json], capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return float(next(line for line in done.stdout.splitlines() if line.startswith("MB")).split()[1])


@pytest.mark.slow
@pytest.mark.parametrize(("method", "gc", "dropout"), [("lora", False, 0.0), ("lora", True, 0.0), ("dora", False, 0.05),
                                                       ("dora", True, 0.05), ("full", False, 0.0)])
def test_estimate_is_within_25_percent_of_a_measured_cpu_run(method: str, gc: bool, dropout: float) -> None:
    from workbench.models import resolve_model

    spec = {"method": method, "batch": 4, "seq": 256, "gc": gc, "dropout": dropout}
    measured = _measured_mb(json.dumps(spec, sort_keys=True))
    shape = model_shape(AutoConfig.from_pretrained(resolve_model("smollm2-135m").path))
    estimated = estimate(shape, TrainSetup(method=method, r=8, dtype="float32", batch_size=4, seq_len=256,
                                           gradient_checkpointing=gc, dropout=dropout,
                                           embeddings="full" if method == "full" else "frozen",
                                           device="cpu")).total / 2**20
    assert estimated == pytest.approx(measured, rel=0.25), f"estimated {estimated:.0f} MB, measured {measured:.0f} MB"


@pytest.mark.slow
def test_checkpointing_saves_what_the_estimate_says() -> None:
    """The activation memory gradient checkpointing saves, measured, is within 25% of the estimate's."""
    from workbench.models import resolve_model

    spec = {"method": "lora", "batch": 4, "seq": 256, "dropout": 0.0}
    saved = (_measured_mb(json.dumps({**spec, "gc": False}, sort_keys=True))
             - _measured_mb(json.dumps({**spec, "gc": True}, sort_keys=True)))
    shape = model_shape(AutoConfig.from_pretrained(resolve_model("smollm2-135m").path))
    plain, checkpointed = (estimate(shape, TrainSetup(method="lora", r=8, dtype="float32", batch_size=4, seq_len=256,
                                                      gradient_checkpointing=gc, device="cpu")).total / 2**20
                           for gc in (False, True))
    assert saved > 100  # MB: checkpointing really saves memory here
    assert plain - checkpointed == pytest.approx(saved, rel=0.25)


@pytest.mark.slow
@pytest.mark.parametrize("extra", [{"accum": 2}, {"ema": True}, {"autocast": True},
                                   {"method": "lora", "quantize": "4bit"}],
                         ids=["accumulation", "ema", "autocast", "qlora"])
def test_estimate_is_within_20_percent_with_accumulation_ema_autocast_and_qlora(extra: dict) -> None:
    """Full training (where gradients, the EMA and the bf16 weight cache are big) with gradient accumulation, with
    an EMA and under bf16 autocast, and LoRA on a 4-bit base: the estimate within 20% of the measured peak."""
    from workbench.models import resolve_model

    spec = {"method": "full", "batch": 2, "seq": 128, "gc": False, "dropout": 0.0, **extra}
    measured = _measured_mb(json.dumps(spec, sort_keys=True))
    shape = model_shape(AutoConfig.from_pretrained(resolve_model("smollm2-135m").path))
    estimated = estimate(shape, TrainSetup(method=spec["method"], r=8, quantize=spec.get("quantize", "none"),
                                           dtype="float32", batch_size=2, seq_len=128,
                                           embeddings="full" if spec["method"] == "full" else "frozen", device="cpu",
                                           grad_accum=spec.get("accum", 1), ema=spec.get("ema", False),
                                           autocast=spec.get("autocast", False))).total / 2**20
    assert estimated == pytest.approx(measured, rel=0.2), f"estimated {estimated:.0f} MB, measured {measured:.0f} MB"
