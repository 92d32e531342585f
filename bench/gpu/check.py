"""The device check: everything a first GPU run depends on, in one command of at most 6 minutes on one CUDA GPU
with no network. Writes bench/results/gpu.json and prints a summary table.

    python bench/gpu/check.py            # on the GPU machine (about 5 minutes)
    python bench/gpu/check.py --smoke    # the same code on CPU with tiny shapes (under 3 minutes; the tests run it)

Parts, each in its own subprocess under its own time limit, so that one failure (an out-of-memory error, a hang)
does not hide the others:

- ``plan``: `workbench plan`'s estimate against the measured peaks (allocator and device) for LLiMba's finetune
  variants and its cpt setting (recipes/llimba-sardinian.yaml), on a randomly initialised Qwen2.5-3B-Instruct
  built from the config shipped with the package, trained a few steps through the stages' own code (load_base,
  prepare, the training loop); QLoRA when bitsandbytes imports. Each variant in a fresh process;
- ``trainer``: the cpt training loop against a plain Hugging Face Trainer (bf16, the same documents, packing
  and steps): tokens/s and peak memory, for a SmolLM2-135M-shaped and a Gemma-3-270M-shaped (262k vocabulary)
  random model;
- ``run``: `workbench run --device cuda` of the tests' tiny recipe (stories260K) through every stage kind;
- ``ema``: a run with an EMA interrupted after a checkpoint and resumed on the device: the EMA lands beside the
  weights and matches an uninterrupted run.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "gpu.json"
LLIMBA = ROOT / "recipes" / "llimba-sardinian.yaml"
MIB = 2**20


@dataclass(frozen=True)
class Mode:
    """What the check runs on, and how big."""

    name: str  # cuda | smoke
    device: str
    limits: dict[str, int]  # seconds per part
    variant_limit: int  # seconds per plan variant
    isolate: bool  # each measured run in its own process (clean peaks); smoke runs them in the part's process
    plan_steps: int
    plan_shrink: bool  # a tiny model of the same architecture instead of the 3B one
    plan_tokens: tuple[int, int] | None  # (batch, length) instead of the recipe's (smoke)
    plan_variants: tuple[str, ...]  # LLiMba's training runs to measure, in order
    trainer_models: tuple[str, ...]
    trainer_steps: int
    trainer_batch: int
    trainer_block: int
    precision: str  # the trainer comparison's mixed precision: bfloat16 | float32


TRAINER_MODELS = ("smollm2-135m-shaped", "gemma3-270m-shaped")
LLIMBA_RUNS = ("finetune/lora-r64", "finetune/rslora-r128", "finetune/rslora-r256", "finetune/dora-r256", "cpt",
               "finetune/qlora-r64", "finetune/full")
SMOKE_RUNS = ("finetune/lora-r64", "cpt", "finetune/full", "finetune/qlora-r64")  # one of each code path
CUDA = Mode("cuda", "cuda", {"plan": 180, "trainer": 60, "run": 90, "ema": 20}, variant_limit=45, isolate=True,
            plan_steps=2, plan_shrink=False, plan_tokens=None, plan_variants=LLIMBA_RUNS,
            trainer_models=TRAINER_MODELS, trainer_steps=10,
            trainer_batch=8, trainer_block=1024, precision="bfloat16")
SMOKE = Mode("smoke", "cpu", {"plan": 75, "trainer": 45, "run": 150, "ema": 30}, variant_limit=30, isolate=False,
             plan_steps=2, plan_shrink=True, plan_tokens=(2, 64), plan_variants=SMOKE_RUNS,
             trainer_models=TRAINER_MODELS, trainer_steps=2,
             trainer_batch=2, trainer_block=64, precision="float32")
SMOKE_ISOLATED = replace(SMOKE, name="smoke-isolated", isolate=True,  # the GPU run's processes, rehearsed on CPU
                         limits={"plan": 150, "trainer": 120, "run": 150, "ema": 60}, variant_limit=60)
MODES = {"cuda": CUDA, "smoke": SMOKE, "smoke-isolated": SMOKE_ISOLATED}


# ------------------------------------------------------------------------------------------------ measuring


class PeakMeter:
    """Peak memory of what runs between :meth:`start` and :meth:`read`: on CUDA the allocator's peaks and the
    device total (reserved peak plus the CUDA context); on CPU the live resident peak over a baseline."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.baseline_mb = 0.0

    def start(self, resident_weights_mb: float = 0.0) -> None:
        """Measure from now; on CPU the baseline leaves ``resident_weights_mb`` (already loaded) in the peak."""
        from workbench.modeling import reset_peak_memory, resident_memory_mb

        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)
        else:
            self.baseline_mb = (resident_memory_mb() or 0.0) - resident_weights_mb
        reset_peak_memory(self.device)

    def read(self) -> dict[str, float | None]:
        from workbench.modeling import peak_memory_mb, peak_reserved_mb

        if not self.device.startswith("cuda"):
            return {"allocated_mb": round(peak_memory_mb(self.device) - self.baseline_mb, 1), "reserved_mb": None,
                    "context_mb": None, "device_mb": None}
        import torch

        torch.cuda.synchronize(self.device)
        free, total = torch.cuda.mem_get_info(self.device)
        reserved_now = torch.cuda.memory_reserved(self.device)
        context = (total - free - reserved_now) / MIB  # what the GPU holds beyond the allocator's blocks
        reserved = peak_reserved_mb(self.device) or 0.0
        return {"allocated_mb": round(peak_memory_mb(self.device), 1), "reserved_mb": round(reserved, 1),
                "context_mb": round(context, 1), "device_mb": round(reserved + context, 1)}


def run_child(args: list[str], timeout: float, env: dict[str, str] | None = None,
              own_group: bool = False) -> dict[str, Any]:
    """Run this script with ``args`` in a subprocess that writes its result as JSON; a failure or a timeout
    becomes a record with the error's last lines. ``own_group``: the child and everything it starts form a process
    group, killed together at the timeout (a part's own subprocesses must not outlive it and hold the GPU)."""
    import signal

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        started = time.time()
        process = subprocess.Popen([sys.executable, __file__, *args, "--result", str(out)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, cwd=ROOT,
                                   start_new_session=own_group)
        try:
            stdout, stderr = process.communicate(timeout=max(timeout, 1))
        except subprocess.TimeoutExpired:
            if own_group:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
            stdout, stderr = process.communicate()
            return {"status": "timeout", "seconds": round(time.time() - started, 1), "limit_s": round(timeout),
                    "error": (stderr or stdout or "")[-1500:]}
        seconds = round(time.time() - started, 1)
        if process.returncode != 0 or not out.is_file():
            return {"status": "failed", "seconds": seconds, "error": (stderr or stdout)[-1500:]}
        return {"status": "ok", "seconds": seconds, **json.loads(out.read_text(encoding="utf-8"))}


def _sync(device: str) -> None:
    """Wait for the GPU's queued work, so that a time read after it is the work's."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def _live_peak_env(mode: Mode) -> dict[str, str]:
    from workbench.modeling import LIVE_PEAK_ENV

    return {} if mode.device.startswith("cuda") else dict(LIVE_PEAK_ENV)


# ------------------------------------------------------------------------------------------------ plan part


@functools.cache
def llimba_setups() -> dict[str, Any]:
    """LLiMba's training runs as the plan sees them (name -> TrainSetup), QLoRA added as a LoRA r64 variant."""
    from workbench.recipe import load_recipe
    from workbench.train.memory import recipe_setups

    setups = dict(recipe_setups(load_recipe(LLIMBA)))
    setups["finetune/qlora-r64"] = replace(setups["finetune/lora-r64"], quantize="4bit")
    return setups


def plan_config(mode: Mode) -> Any:
    """Qwen2.5-3B-Instruct's shipped config, or (smoke) the same architecture shrunk to a few MB."""
    from transformers import AutoConfig

    from workbench.train.memory import load_config

    config, _ = load_config("hf:Qwen/Qwen2.5-3B-Instruct")
    if not mode.plan_shrink:
        return config
    values = {k: v for k, v in config.to_dict().items() if k not in ("layer_types", "transformers_version")}
    values.update(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=2048)
    return AutoConfig.for_model(values.pop("model_type"), **values)


def make_random_model(config: Any, out: Path, device: str) -> Path:
    """A randomly initialised model saved as a plain directory (bf16 safetensors, with stories260K's tokenizer
    files: the token ids are random, so any tokenizer loads)."""
    import torch
    from transformers import AutoModelForCausalLM

    from tests.recipes import STORIES

    torch.manual_seed(0)
    build_on = device if device.startswith("cuda") else "cpu"
    with torch.device(build_on):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model"):
        if (STORIES / name).is_file():
            shutil.copy(STORIES / name, out / name)
    del model
    return out


def _planned_device_mib(name: str, mode: Mode) -> float:
    """The plan's device total for LLiMba's run ``name`` on this check's model."""
    from workbench.train.memory import estimate, model_shape

    return estimate(model_shape(plan_config(mode)), _check_setup(name, mode)).total / MIB


def _check_setup(name: str, mode: Mode) -> Any:
    """LLiMba's setup ``name`` as this check trains it: two micro-batches at most (the peak is the same for any
    accumulation above one: the gradients are resident from the second micro-batch on), on the check's device."""
    setup = replace(llimba_setups()[name], device=mode.device)
    setup = replace(setup, grad_accum=min(setup.grad_accum, 2))
    if mode.plan_tokens:
        setup = replace(setup, batch_size=mode.plan_tokens[0], seq_len=mode.plan_tokens[1])
    if not mode.device.startswith("cuda") and setup.quantize == "4bit":
        setup = replace(setup, dtype="float32")  # bitsandbytes on CPU: float32 compute
    return setup


def measure_setup(model_dir: Path, name: str, mode: Mode) -> dict[str, Any]:
    """Train ``name``'s setup for a few steps through the stages' code and compare its peaks with the plan."""
    import torch
    from transformers import AutoConfig

    from workbench.train.ema import EMA
    from workbench.train.loop import LoopSettings, train
    from workbench.train.memory import estimate, model_shape
    from workbench.train.trainable import AdapterSettings, load_base, prepare

    setup = _check_setup(name, mode)
    full = setup.method in ("full", "embeddings")
    meter = PeakMeter(mode.device)
    model, _ = load_base(model_dir, device=mode.device, quantize=setup.quantize,
                         dtype="float32" if full else setup.dtype, gradient_checkpointing=setup.gradient_checkpointing)
    if not mode.device.startswith("cuda"):
        for weight in model.parameters():
            weight.detach().sum()  # every page of the weights resident before the baseline
    meter.start(sum(p.numel() * p.element_size() for p in model.parameters()) / MIB)
    adapter = AdapterSettings(method=setup.method, r=setup.r, dropout=setup.dropout, targets=setup.targets)
    trained = prepare(model, method=setup.method, adapter=adapter, embeddings=setup.embeddings, lr=1e-4)
    vocab = model.get_input_embeddings().weight.shape[0]
    ids = torch.randint(3, vocab, (setup.batch_size, setup.seq_len), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "labels": ids.clone()}
    if setup.padded:  # finetuning's batches carry an attention mask: one row ends in padding, so the mask is used
        mask = torch.ones_like(ids)
        mask[0, -8:] = 0
        batch["labels"][0, -8:] = -100
        batch["attention_mask"] = mask
    else:  # cpt's packed blocks carry position ids
        batch["position_ids"] = torch.arange(setup.seq_len).expand(setup.batch_size, -1).contiguous()
    callbacks = {"ema": EMA(trained.model, 0.999)} if setup.ema else None
    settings = LoopSettings(steps=mode.plan_steps, lr=1e-4, warmup_ratio=0.0, grad_accum=setup.grad_accum,
                            autocast=torch.bfloat16 if setup.autocast else None)
    started = time.time()
    state = train(trained.model, lambda step, micro: batch, settings, param_groups=trained.param_groups,
                  progress=False, callbacks=callbacks)
    measured = meter.read()
    planned = estimate(model_shape(AutoConfig.from_pretrained(model_dir)), setup)
    row = {"variant": name, "setup": {k: v for k, v in asdict(setup).items() if not isinstance(v, list)},
           "seconds_per_step": round((time.time() - started) / mode.plan_steps, 2), "final_loss": state["losses"][-1],
           "estimated_allocator_mb": round(planned.allocator / MIB, 1),
           "estimated_device_mb": round(planned.total / MIB, 1), "estimated_parts_gib": planned.gib(), **measured}
    row["allocator_ratio"] = round(planned.allocator / MIB / max(measured["allocated_mb"], 1e-9), 3)
    if measured["device_mb"]:
        row["device_ratio"] = round(planned.total / MIB / measured["device_mb"], 3)
    row["fits_24gib"] = planned.fits(24)
    return row


def part_plan(mode: Mode) -> dict[str, Any]:
    """Every LLiMba training run: the plan's estimate against the measured peaks."""
    import importlib.util

    deadline = time.time() + mode.limits["plan"] - 5
    names = list(mode.plan_variants)
    skipped = {}
    if importlib.util.find_spec("bitsandbytes") is None:
        skipped["finetune/qlora-r64"] = "bitsandbytes is not installed"
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        return _plan_rows(mode, names, skipped, work / "model", deadline)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the 3B model: 6 GB


def _plan_rows(mode: Mode, names: list[str], skipped: dict[str, str], model_dir: Path,
               deadline: float) -> dict[str, Any]:
    if mode.isolate:  # this process stays off the GPU: its context would count in the variants' device totals
        made = run_child(["--make-model", str(model_dir), "--mode", mode.name], timeout=deadline - time.time())
        if made["status"] != "ok":
            raise RuntimeError(f"building the random model failed: {made.get('error')}")
    else:
        make_random_model(plan_config(mode), model_dir, mode.device)
    gpu_mib = gpu_info().get("gpu_memory_mib")
    rows = []
    for name in names:
        if name in skipped:
            continue
        if gpu_mib and _planned_device_mib(name, mode) > 0.95 * gpu_mib:
            skipped[name] = f"the plan says it does not fit in this GPU's {gpu_mib / 1024:.0f} GiB"
            continue
        left = deadline - time.time()
        if left < 10:
            skipped[name] = "the part's time limit was reached"
            continue
        print(f"  {name} ...", flush=True)
        if mode.isolate:
            row = run_child(["--measure", name, "--model-dir", str(model_dir), "--mode", mode.name],
                            timeout=min(mode.variant_limit, left), env=_live_peak_env(mode))
        else:
            try:
                row = {"status": "ok", **measure_setup(model_dir, name, mode)}
            except Exception as exc:  # one variant's failure is its row, not the part's
                row = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[-1500:]}
        rows.append({"variant": name, **row})
    return {"model": "Qwen2.5-3B-Instruct (random init, shipped config)" + (" shrunk" if mode.plan_shrink else ""),
            "rows": rows, "skipped": skipped}


# --------------------------------------------------------------------------------------------- trainer part


def trainer_config(name: str, mode: Mode) -> Any:
    """A random model's config: SmolLM2-135M's or Gemma-3-270M's shape (smoke: tiny, the vocabulary scaled)."""
    from transformers import AutoConfig

    if name.startswith("smollm2"):
        values = {"model_type": "llama", "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
                  "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64,
                  "tie_word_embeddings": True, "max_position_embeddings": 8192, "rope_theta": 100000.0,
                  "rms_norm_eps": 1e-5, "hidden_act": "silu"}
    else:
        values = {"model_type": "gemma3_text", "vocab_size": 262144, "hidden_size": 640, "intermediate_size": 2048,
                  "num_hidden_layers": 18, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256,
                  "tie_word_embeddings": True, "max_position_embeddings": 32768, "sliding_window": 512,
                  "rms_norm_eps": 1e-6, "query_pre_attn_scalar": 256}
    if mode.plan_shrink:  # smoke: two thin layers, the vocabularies' ratio kept
        values.update(vocab_size=values["vocab_size"] // 64, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=32)
        if "query_pre_attn_scalar" in values:
            values["query_pre_attn_scalar"] = 32
    model_type = values.pop("model_type")
    return AutoConfig.for_model(model_type, **values)


def documents(vocab: int, tokens: int, seed: int = 0) -> list[list[int]]:
    """Random documents (50 to 1,500 tokens) adding up to about ``tokens``: the same for both runners."""
    import numpy as np

    rng = np.random.default_rng(seed)
    docs, total = [], 0
    while total < tokens:
        length = int(rng.integers(50, 1500))
        docs.append(rng.integers(3, vocab, length).tolist())
        total += length
    return docs


def _random_model(name: str, mode: Mode) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = trainer_config(name, mode)
    config._attn_implementation = "sdpa"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # float32 weights, bf16 autocast
    model.config.use_cache = False
    return model.to(mode.device)


def run_ours(name: str, mode: Mode) -> dict[str, Any]:
    """The cpt stage's loop: best-fit document-aware packing (position ids restart per document), the fused
    output-layer loss, float32 weights under bf16 autocast."""
    import torch

    from workbench.train.loop import LoopSettings, train
    from workbench.train.mixture import Document
    from workbench.train.packing import pack

    model = _random_model(name, mode)
    meter = PeakMeter(mode.device)
    vocab = model.config.vocab_size
    docs = documents(vocab, mode.trainer_steps * mode.trainer_batch * mode.trainer_block * 2)
    blocks = pack([Document(ids=d, language="und") for d in docs], mode.trainer_block, strategy="best-fit", pad_id=0,
                  seed=0)
    arrays = {"input_ids": blocks.input_ids, "position_ids": blocks.position_ids, "labels": blocks.labels}

    def batch_for(step: int, micro: int) -> dict[str, torch.Tensor]:
        rows = slice(step * mode.trainer_batch, (step + 1) * mode.trainer_batch)
        return {k: torch.from_numpy(v[rows]) for k, v in arrays.items()}

    precision = torch.bfloat16 if mode.precision == "bfloat16" else None
    settings = LoopSettings(steps=mode.trainer_steps, lr=1e-4, warmup_ratio=0.1, autocast=precision)
    meter.start()
    started = time.time()
    state = train(model, batch_for, settings, progress=False)
    _sync(mode.device)
    seconds = time.time() - started
    return {"tokens": state["tokens"], "seconds": round(seconds, 3), "final_loss": state["losses"][-1],
            "packing_efficiency": round(blocks.efficiency, 4), **meter.read()}


def run_trainer(name: str, mode: Mode) -> dict[str, Any]:
    """A plain Hugging Face Trainer with run_clm.py's group_texts packing of the same documents."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments, default_data_collator

    model = _random_model(name, mode)
    meter = PeakMeter(mode.device)
    docs = documents(model.config.vocab_size, mode.trainer_steps * mode.trainer_batch * mode.trainer_block * 2)
    block = mode.trainer_block
    flat = [token for doc in docs for token in doc]
    rows = [flat[i:i + block] for i in range(0, len(flat) // block * block, block)]
    dataset = Dataset.from_dict({"input_ids": rows, "labels": rows})
    out = tempfile.mkdtemp(prefix="gpu-check-trainer-")
    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=mode.trainer_batch, max_steps=mode.trainer_steps,
        learning_rate=1e-4, warmup_steps=max(1, mode.trainer_steps // 10), lr_scheduler_type="cosine",
        max_grad_norm=1.0, logging_steps=mode.trainer_steps, save_strategy="no", report_to=[],
        use_cpu=not mode.device.startswith("cuda"), dataloader_num_workers=0, seed=0, disable_tqdm=True,
        bf16=mode.precision == "bfloat16")
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=default_data_collator)
    meter.start()
    started = time.time()
    result = trainer.train()
    _sync(mode.device)
    seconds = time.time() - started
    return {"tokens": mode.trainer_steps * mode.trainer_batch * block, "seconds": round(seconds, 3),
            "final_loss": result.training_loss, "packing_efficiency": 1.0, **meter.read()}


RUNNERS = {"ours": run_ours, "trainer": run_trainer}


def part_trainer(mode: Mode) -> dict[str, Any]:
    """Tokens/s and peak memory of the cpt loop and the Trainer, and their ratios (ours / Trainer)."""
    deadline = time.time() + mode.limits["trainer"] - 3
    rows = []
    for model in mode.trainer_models:
        for runner in ("trainer", "ours"):
            left = deadline - time.time()
            if left < 5:
                rows.append({"model": model, "runner": runner, "status": "skipped: the part's time limit"})
                continue
            if mode.isolate:
                row = run_child(["--runner", runner, "--trainer-model", model, "--mode", mode.name], timeout=left,
                                env=_live_peak_env(mode))
            else:
                try:
                    row = {"status": "ok", **RUNNERS[runner](model, mode)}
                except Exception as exc:
                    row = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[-1500:]}
            if row.get("status") == "ok":
                row["tokens_per_second"] = round(row["tokens"] / max(row["seconds"], 1e-9), 1)
            rows.append({"model": model, "runner": runner, **row})
    ratios = {}
    for model in mode.trainer_models:
        by_runner = {r["runner"]: r for r in rows if r["model"] == model and r.get("status") == "ok"}
        if {"ours", "trainer"} <= by_runner.keys():
            ours, base = by_runner["ours"], by_runner["trainer"]
            ratios[model] = {"speed_ratio": round(ours["tokens_per_second"] / base["tokens_per_second"], 3),
                             "memory_ratio": round(ours["allocated_mb"] / max(base["allocated_mb"], 1e-9), 3)}
    return {"precision": mode.precision, "steps": mode.trainer_steps, "batch": mode.trainer_batch,
            "block": mode.trainer_block, "rows": rows, "ratios": ratios}


# ------------------------------------------------------------------------------------------------- run part


def part_run(mode: Mode) -> dict[str, Any]:
    """`workbench run --device <device>` of the tests' tiny recipe: every stage kind, then the scoreboard."""
    work = Path(tempfile.mkdtemp(prefix="gpu-check-run-"))
    try:
        return _run_tiny(mode, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_tiny(mode: Mode, work: Path) -> dict[str, Any]:
    from tests.recipes import tiny_recipe, write_recipe

    recipe = tiny_recipe()
    tokenizer = next(s for s in recipe["stages"] if "tokenizer" in s)["tokenizer"]
    tokenizer["gate"] = {"action": "warn"}  # this checks that every stage runs on the device, not their quality
    if mode.plan_shrink:  # smoke: the same stages, less of each; no translation scoring (the tests run it)
        recipe["eval"].pop("mt")
        cpt = next(s for s in recipe["stages"] if "cpt" in s)["cpt"]
        cpt.update({"tokens": 3000, "checkpoint_every": 0})
        finetune = next(s for s in recipe["stages"] if "finetune" in s)["finetune"]
        finetune.update({"steps": 2, "variants": {"lora-r4": {"method": "lora", "r": 4}}})
        finetune["data"]["max_pairs"] = 16
    path = write_recipe(work / "tiny.yaml", recipe)
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "workbench.cli", "run", str(path), "--workspace", str(work / "runs"),
                           "--device", mode.device, "--no-progress", "--executor", "serial"],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = round(time.time() - started, 1)
    if done.returncode != 0:
        raise RuntimeError(f"workbench run exited {done.returncode}: {(done.stderr or done.stdout)[-1500:]}")
    kinds = [next(iter(stage)) for stage in recipe["stages"]]
    summary = next((line for line in done.stdout.splitlines() if "step(s) ran" in line), "")
    trained = _training_records(work / "runs")
    if mode.device.startswith("cuda") and not all(r.get("peak_reserved_mb") for r in trained.values()):
        raise RuntimeError(f"a training stage did not record its reserved peak on CUDA: {trained}")
    return {"device": mode.device, "stages": kinds, "seconds": seconds, "summary": summary.strip(),
            "training": trained}


def _training_records(workspace: Path) -> dict[str, dict[str, Any]]:
    """What the cpt stage and each finetune variant recorded about their training: precision and peaks."""
    keys = ("precision", "peak_memory_mb", "peak_reserved_mb", "tokens_per_second", "train_seconds")
    records = {}
    for artifact in workspace.glob("*/stages/cpt-*/artifact.json"):
        stats = json.loads(artifact.read_text(encoding="utf-8")).get("stats", {})
        records["cpt"] = {k: stats[k] for k in keys if k in stats}
    for metadata in workspace.glob("*/stages/finetune-*/adapters/*/metadata.json"):
        values = json.loads(metadata.read_text(encoding="utf-8"))
        records[f"finetune/{metadata.parent.name}"] = {k: values[k] for k in keys if k in values}
    return records


# ------------------------------------------------------------------------------------------------- ema part


def part_ema(mode: Mode) -> dict[str, Any]:
    """An EMA run interrupted after its step-2 checkpoint and resumed on the device, against an uninterrupted
    run: the resumed EMA must live on the device and end where the uninterrupted one does."""
    import torch

    from workbench.train.ema import EMA
    from workbench.train.loop import LoopSettings, train

    config = trainer_config("smollm2-135m-shaped", SMOKE)  # a tiny model: this is about devices, not speed
    vocab = config.vocab_size
    ids = torch.randint(3, vocab, (2, 32), generator=torch.Generator().manual_seed(0))
    settings = LoopSettings(steps=4, lr=1e-3, warmup_ratio=0.0, checkpoint_every=2)

    def fresh() -> tuple[Any, EMA]:
        from transformers import AutoModelForCausalLM

        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).to(mode.device)
        return model, EMA(model, 0.9)

    def batch_for(step: int, micro: int) -> dict[str, torch.Tensor]:
        return {"input_ids": ids.roll(step, 1), "labels": ids.roll(step, 1)}

    model, uninterrupted = fresh()
    train(model, batch_for, settings, progress=False, callbacks={"ema": uninterrupted})

    class Interrupt(Exception):
        pass

    class StopAfter:
        def on_step(self, step: int, model: Any, state: dict) -> None:
            if step == 3:  # after the step-2 checkpoint, before the end
                raise Interrupt

        def state_dict(self) -> dict:
            return {}

        def load_state_dict(self, state: dict) -> None:
            pass

    work = Path(tempfile.mkdtemp(prefix="gpu-check-ema-"))
    model, ema = fresh()
    with contextlib.suppress(Interrupt):
        train(model, batch_for, settings, progress=False, checkpoint_dir=work,
              callbacks={"ema": ema, "stop": StopAfter()})
    model, resumed = fresh()
    train(model, batch_for, settings, progress=False, checkpoint_dir=work, callbacks={"ema": resumed})
    devices = sorted({str(v.device) for v in resumed.shadow.values()})
    difference = max(float((resumed.shadow[n] - uninterrupted.shadow[n].to(resumed.shadow[n].device)).abs().max())
                     for n in uninterrupted.shadow)
    expected = torch.device(mode.device).type
    if any(torch.device(d).type != expected for d in devices):
        raise AssertionError(f"the resumed EMA lives on {devices}, the model on {mode.device}")
    if difference > 1e-3:
        raise AssertionError(f"the resumed EMA differs from the uninterrupted one by {difference:.2e}")
    return {"ema_devices": devices, "updates": resumed.updates, "max_difference": difference}


PARTS = {"plan": part_plan, "trainer": part_trainer, "run": part_run, "ema": part_ema}


# ------------------------------------------------------------------------------------------------ reporting


@functools.cache
def gpu_info() -> dict[str, Any]:
    """The GPU's name and memory from nvidia-smi (empty without one): asking torch would start a CUDA context in
    this process, and a context held here counts in every measured process's device total."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                               "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if done.returncode != 0 or not done.stdout.strip():
        return {}
    name, memory, driver = (field.strip() for field in done.stdout.splitlines()[0].split(","))
    return {"gpu": name, "gpu_memory_mib": float(memory), "driver": driver}


def machine(mode: Mode) -> dict[str, Any]:
    import platform

    import torch

    info = {"mode": mode.name, "device": mode.device, "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "cpus": os.cpu_count()}
    return info | (gpu_info() if mode.device.startswith("cuda") else {})


def report(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=170)
    parts = Table(title=f"device check ({results['machine']['mode']}: {results['machine'].get('gpu', 'cpu')})")
    for column in ("part", "status", "seconds", "limit s"):
        parts.add_column(column)
    for name, part in results["parts"].items():
        parts.add_row(name, part["status"], f"{part.get('seconds', 0):.0f}", str(part.get("limit_s", "")))
    console.print(parts)
    plan = results["parts"].get("plan", {})
    if plan.get("rows"):
        table = Table(title=f"plan vs measured peaks, MiB ({plan.get('model')})")
        for column in ("variant", "status", "estimated allocator", "measured allocated", "× estimate",
                       "measured reserved", "estimated device", "measured device", "× estimate", "s/step"):
            table.add_column(column, justify="left" if column in ("variant", "status") else "right")
        for row in plan["rows"]:
            table.add_row(row["variant"], row.get("status", ""), _num(row.get("estimated_allocator_mb")),
                          _num(row.get("allocated_mb")), _num(row.get("allocator_ratio"), 2),
                          _num(row.get("reserved_mb")), _num(row.get("estimated_device_mb")),
                          _num(row.get("device_mb")), _num(row.get("device_ratio"), 2),
                          _num(row.get("seconds_per_step"), 2))
        console.print(table)
    trainer = results["parts"].get("trainer", {})
    if trainer.get("rows"):
        table = Table(title=f"cpt loop vs Trainer ({trainer.get('precision')}, {trainer.get('batch')} x "
                            f"{trainer.get('block')} tokens, {trainer.get('steps')} steps)")
        for column in ("model", "runner", "status", "tokens/s", "peak allocated MiB", "speed × Trainer",
                       "memory × Trainer"):
            table.add_column(column)
        for row in trainer["rows"]:
            ratio = trainer.get("ratios", {}).get(row["model"], {}) if row["runner"] == "ours" else {}
            table.add_row(row["model"], row["runner"], row.get("status", ""), _num(row.get("tokens_per_second")),
                          _num(row.get("allocated_mb")), _num(ratio.get("speed_ratio"), 2),
                          _num(ratio.get("memory_ratio"), 2))
        console.print(table)
    for name, part in results["parts"].items():
        if part["status"] != "ok":
            console.print(f"[red]{name}[/]: {part.get('error', '')[-600:]}", markup=True, highlight=False)


def _num(value: Any, digits: int = 0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


class PartTimeout(BaseException):  # not an Exception: a part's own error handling must not swallow it
    """A part ran past its time limit (smoke mode, where the parts share one process)."""


@contextlib.contextmanager
def time_limit(seconds: int) -> Any:
    """Raise :class:`PartTimeout` in this (main) thread after ``seconds``."""
    import signal

    def expire(signum: int, frame: Any) -> None:
        raise PartTimeout(f"ran past its limit of {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_parts_inline(mode: Mode, names: list[str]) -> dict[str, Any]:
    """Every part in this process, each under its own time limit (smoke: one start-up instead of one per part)."""
    # the libraries' import time is not a part's
    import peft  # noqa: F401
    import transformers.models.gemma3.modeling_gemma3
    import transformers.models.llama.modeling_llama
    import transformers.models.qwen2.modeling_qwen2  # noqa: F401

    results = {}
    for name in names:
        print(f"part {name} (limit {mode.limits[name]} s) ...", flush=True)
        started = time.time()
        try:
            with time_limit(mode.limits[name]):
                part = {"status": "ok", **PARTS[name](mode)}
        except PartTimeout as exc:
            part = {"status": "timeout", "error": str(exc)}
        except Exception as exc:  # a part's failure is its record, not the check's
            part = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[-1500:]}
        results[name] = {"limit_s": mode.limits[name], "seconds": round(time.time() - started, 1), **part}
    return results


def run_all(mode: Mode, out: Path, only: list[str]) -> dict[str, Any]:
    """Each part in its own process under its own limit (smoke: all in one process, each under its own limit)."""
    results: dict[str, Any] = {"machine": machine(mode), "parts": {}}
    if not mode.isolate:
        results["parts"] = run_parts_inline(mode, only)
    for name in only if mode.isolate else []:
        print(f"part {name} (limit {mode.limits[name]} s) ...", flush=True)
        part = run_child(["--part", name, "--mode", mode.name], timeout=mode.limits[name], own_group=True)
        results["parts"][name] = {"limit_s": mode.limits[name], **part}
    from workbench.io import atomic_write_json

    atomic_write_json(out, results)
    report(results)
    print(f"wrote {out}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shapes: checks the check (under 3 minutes)")
    parser.add_argument("--out", type=Path, help=f"results file (default {RESULTS.relative_to(ROOT)}; smoke: a "
                                                 "temporary file)")
    parser.add_argument("--isolate", action="store_true",
                        help="with --smoke: every part, variant and runner in its own process, as on the GPU")
    parser.add_argument("--parts", default=",".join(PARTS), help="parts to run, comma-separated")
    parser.add_argument("--mode", choices=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--part", choices=list(PARTS), help=argparse.SUPPRESS)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--make-model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--runner", choices=list(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--trainer-model", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    mode = MODES[args.mode or (("smoke-isolated" if args.isolate else "smoke") if args.smoke else "cuda")]
    if args.part or args.measure or args.runner or args.make_model:  # a child: one piece of work, its result as JSON
        if args.part:
            result = PARTS[args.part](mode)
        elif args.make_model:
            result = {"model_dir": str(make_random_model(plan_config(mode), args.make_model, mode.device))}
        elif args.measure:
            result = measure_setup(args.model_dir, args.measure, mode)
        else:
            result = RUNNERS[args.runner](args.trainer_model, mode)
        args.result.write_text(json.dumps(result), encoding="utf-8")
        return
    if mode.name == "cuda" and not gpu_info():
        parser.error("no CUDA GPU (nvidia-smi finds none): run with --smoke to check the check on CPU")
    out = args.out or (RESULTS if mode.name == "cuda" else Path(tempfile.mkdtemp(prefix="gpu-smoke-")) / "gpu.json")
    results = run_all(mode, out, [p for p in args.parts.split(",") if p])
    sys.exit(0 if all(p["status"] == "ok" for p in results["parts"].values()) else 1)


if __name__ == "__main__":
    main()
