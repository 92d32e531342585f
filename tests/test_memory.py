"""`workbench plan`'s memory estimator: counts from configs alone, shipped configs, and the estimate
against measured peak memory of real CPU training runs."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoModelForCausalLM

from workbench.train.memory import SHIPPED_CONFIGS, TrainSetup, estimate, load_config, model_shape

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


# Measured as the live peak (what CUDA's max_memory_allocated reports, and what the estimate is for): the
# libraries are imported before the baseline is taken (peft alone is ~200 MB of code), and the process runs
# with LIVE_PEAK_ENV, so freed tensors do not stay in the resident set.
MEASURE = """
import json, sys, torch
import peft, transformers.models.llama.modeling_llama  # noqa: F401 (imported before the baseline)
from workbench.modeling import resident_memory_mb, peak_memory_mb, reset_peak_memory
from workbench.models import resolve_model
from workbench.train.loop import LoopSettings, train
from workbench.train.trainable import AdapterSettings, load_base, prepare
spec = json.loads(sys.argv[1])
path = resolve_model("smollm2-135m").path
before = resident_memory_mb()
model, _ = load_base(path, device="cpu", gradient_checkpointing=spec["gc"])
reset_peak_memory("cpu")
method = spec["method"]
trained = prepare(model, method=method, adapter=AdapterSettings(method=method, r=8, dropout=spec["dropout"]),
                  embeddings="full" if method == "full" else "frozen", lr=1e-4)
ids = torch.randint(100, 40000, (spec["batch"], spec["seq"]), generator=torch.Generator().manual_seed(0))
train(trained.model, lambda s, m: {"input_ids": ids, "labels": ids, "attention_mask": None},
      LoopSettings(steps=2, lr=1e-4, warmup_ratio=0.0), param_groups=trained.param_groups, progress=False)
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
