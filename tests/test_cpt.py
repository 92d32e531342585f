"""The cpt building blocks on real models: mixtures, document-aware packing, chunked loss,
embedding rows, EMA, curves, QLoRA."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from workbench.train.curves import CurveTracker, HeldOut, split_held_out
from workbench.train.ema import EMA
from workbench.train.loop import LoopSettings, autocast, precision_name, train
from workbench.train.loss import IGNORE, causal_lm_loss_sum
from workbench.train.mixture import Document, build_mixture, split_exactly, token_budgets
from workbench.train.packing import pack
from workbench.train.trainable import AdapterSettings, load_base, prepare, save_standalone

from .conftest import STORIES


def _stories(**kwargs):
    return AutoModelForCausalLM.from_pretrained(STORIES, **kwargs).eval()


# ------------------------------------------------------------------------------------------ mixtures


def test_budgets_by_ratio_explicit_and_temperature() -> None:
    assert token_budgets(1000, "srd_Latn", ["eng_Latn", "ita_Latn"], ratio=0.2) == {
        "srd_Latn": 800, "eng_Latn": 100, "ita_Latn": 100}
    assert token_budgets(1000, "srd_Latn", ["eng_Latn"], budgets={"eng_Latn": 300}) == {
        "srd_Latn": 700, "eng_Latn": 300}
    sizes = {"srd_Latn": 100, "eng_Latn": 8000, "ita_Latn": 1000}
    by_size = token_budgets(1001, "srd_Latn", ["eng_Latn", "ita_Latn"], ratio=0.3, temperature=1.0, sizes=sizes)
    assert by_size["srd_Latn"] == 701 and sum(by_size.values()) == 1001
    assert by_size["eng_Latn"] == pytest.approx(300 * 8 / 9, abs=1)
    flat = token_budgets(1001, "srd_Latn", ["eng_Latn", "ita_Latn"], ratio=0.3, temperature=100.0, sizes=sizes)
    assert abs(flat["eng_Latn"] - flat["ita_Latn"]) < 10  # high temperature: nearly uniform
    everyone = token_budgets(900, "srd_Latn", ["eng_Latn", "ita_Latn"], ratio=None, temperature=2.0, sizes=sizes)
    expected = {k: 900 * v**0.5 / sum(s**0.5 for s in sizes.values()) for k, v in sizes.items()}
    assert all(abs(everyone[k] - expected[k]) <= 1 for k in sizes) and sum(everyone.values()) == 900
    assert split_exactly(10, {"a": 1, "b": 1, "c": 1}) in ({"a": 4, "b": 3, "c": 3}, {"a": 3, "b": 4, "c": 3},
                                                           {"a": 3, "b": 3, "c": 4})
    with pytest.raises(ValueError, match="leave nothing"):
        token_budgets(100, "srd_Latn", ["eng_Latn"], budgets={"eng_Latn": 100})


def test_mixture_is_deterministic_and_counts_repeated_passes() -> None:
    docs = {"srd_Latn": [[1] * 30, [2] * 50], "eng_Latn": [[3] * 40]}
    first = build_mixture(docs, {"srd_Latn": 200, "eng_Latn": 40}, seed=3)
    again = build_mixture(docs, {"srd_Latn": 200, "eng_Latn": 40}, seed=3)
    assert [d.ids for d in first.documents] == [d.ids for d in again.documents]
    assert first.tokens["srd_Latn"] >= 200 and first.epochs["srd_Latn"] >= 2.5
    assert first.tokens["eng_Latn"] == 40 and first.counts["eng_Latn"] == 1


# ------------------------------------------------------------------------------------------- packing


def _docs(lengths: list[int], seed: int = 0) -> list[Document]:
    rng = random.Random(seed)
    return [Document([rng.randrange(3, 500) for _ in range(n)], "srd_Latn") for n in lengths]


@pytest.mark.parametrize("strategy", ["best-fit", "stream"])
def test_packing_restarts_positions_and_never_predicts_across_documents(strategy: str) -> None:
    docs = _docs([5, 17, 9, 40, 3, 22, 11, 64, 2, 30])
    blocks = pack(docs, 32, strategy=strategy, pad_id=0, seed=1)
    assert blocks.input_ids.shape[1] == 32
    starts = blocks.position_ids == 0
    assert np.all(blocks.labels[starts] == IGNORE)  # the first token of a segment is not a target
    inside = ~starts
    assert np.all(blocks.position_ids[inside] == np.roll(blocks.position_ids, 1, axis=1)[inside] + 1)
    if strategy == "best-fit":  # every document is whole unless longer than a block
        assert blocks.split_documents == sum(len(d.ids) > 32 for d in docs) == 2
        assert blocks.tokens == sum(len(d.ids) for d in docs)
        assert blocks.efficiency == blocks.tokens / blocks.input_ids.size
    else:
        assert blocks.efficiency == 1.0 and blocks.split_documents >= 2


def test_best_fit_fills_blocks_tightly() -> None:
    docs = _docs([random.Random(i).randrange(5, 120) for i in range(400)])
    blocks = pack(docs, 128, strategy="best-fit")
    assert blocks.efficiency > 0.97
    assert len(blocks) <= -(-sum(len(d.ids) for d in docs) // 128) + 3


def test_a_tokens_loss_does_not_change_when_another_document_is_packed_before_it() -> None:
    model = _stories()
    rng = random.Random(0)
    unrelated = [rng.randrange(3, 500) for _ in range(20)]
    doc = [1, *(rng.randrange(3, 500) for _ in range(15))]
    alone = pack([Document(doc, "x")], 40, pad_id=0)
    packed = pack([Document(unrelated, "x"), Document(doc, "x"), Document([7] * 4, "x")], 40, strategy="stream")

    def doc_loss(blocks, offset: int, isolate: bool) -> float:
        ids = torch.from_numpy(blocks.input_ids[:1])
        labels = torch.full_like(ids, IGNORE)
        labels[0, offset + 1:offset + len(doc)] = torch.tensor(doc[1:])
        with torch.no_grad():
            if isolate:
                return float(causal_lm_loss_sum(model, ids, None, labels,
                                                position_ids=torch.from_numpy(blocks.position_ids[:1])))
            return float(causal_lm_loss_sum(model, ids, torch.ones_like(ids), labels))

    reference = doc_loss(alone, 0, isolate=True)
    assert doc_loss(packed, len(unrelated), isolate=True) == pytest.approx(reference, rel=1e-5)
    # the control: plain causal attention over the block lets the unrelated document change the loss
    assert doc_loss(packed, len(unrelated), isolate=False) != pytest.approx(reference, rel=1e-3)


# ---------------------------------------------------------------------------------------------- loss


def test_chunked_loss_gradient_equals_the_full_logits_gradient() -> None:
    ours, plain = _stories(), _stories()
    ids = torch.randint(3, 500, (2, 24), generator=torch.Generator().manual_seed(0))
    loss = causal_lm_loss_sum(ours, ids, None, ids, chunk_size=7)
    loss.backward()
    logits = plain(input_ids=ids).logits[:, :-1]
    reference = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="sum")
    reference.backward()
    assert float(loss.detach()) == pytest.approx(float(reference.detach()), rel=1e-5)
    for (name, a), (_, b) in zip(ours.named_parameters(), plain.named_parameters(), strict=True):
        assert float((a.grad - b.grad).abs().max()) <= 1e-5 * float(b.grad.abs().max()) + 1e-8, name


def test_a_second_backward_through_the_fused_loss_is_refused_not_wrong() -> None:
    model = _stories().train()
    ids = torch.randint(3, 500, (2, 16), generator=torch.Generator().manual_seed(0))
    loss = causal_lm_loss_sum(model, ids, None, ids)
    loss.backward(retain_graph=True)  # its gradients are scaled in place, once
    with pytest.raises(RuntimeError, match="run backward once per forward"):
        loss.backward()


@pytest.mark.parametrize("block_logits", [None, 1000])
def test_mixed_precision_loss_and_gradients_follow_float32(monkeypatch, block_logits: int | None) -> None:
    """Under bf16 autocast (float32 weights) the fused loss and every gradient follow the float32 ones, with
    the vocabulary in one block or in many (1,000 logits: blocks of 5 columns, targets in every block)."""
    if block_logits is not None:
        monkeypatch.setattr("workbench.train.loss.CHUNK_LOGIT_ELEMENTS", block_logits)
    mixed, exact = _stories(), _stories()
    ids = torch.randint(3, 500, (4, 48), generator=torch.Generator().manual_seed(0))
    with autocast("cpu", torch.bfloat16):
        loss = causal_lm_loss_sum(mixed, ids, None, ids, chunk_size=16)
    loss.backward()
    reference = causal_lm_loss_sum(exact, ids, None, ids, chunk_size=16)
    reference.backward()
    assert loss.dtype == torch.float32 and float(loss.detach()) != float(reference.detach())  # it ran in bf16
    assert float(loss.detach()) == pytest.approx(float(reference.detach()), rel=1e-2)
    for (name, a), (_, b) in zip(mixed.named_parameters(), exact.named_parameters(), strict=True):
        assert a.dtype == a.grad.dtype == torch.float32, name
        assert float(torch.nn.functional.cosine_similarity(a.grad.flatten(), b.grad.flatten(), dim=0)) > 0.99, name


def test_the_loop_trains_float32_weights_under_autocast_like_float32() -> None:
    ids = torch.randint(3, 500, (4, 32), generator=torch.Generator().manual_seed(2))

    def batch_for(step, micro):
        return {"input_ids": ids, "labels": ids, "attention_mask": torch.ones_like(ids)}

    losses = {}
    for precision in (None, torch.bfloat16):
        model = _stories()
        before = model.lm_head.weight.detach().clone()
        state = train(model, batch_for, LoopSettings(steps=6, lr=3e-3, warmup_ratio=0.0, autocast=precision),
                      progress=False)
        assert model.lm_head.weight.dtype == torch.float32
        assert not torch.equal(model.lm_head.weight.detach(), before)
        losses[precision] = state["losses"]
    assert losses[torch.bfloat16][-1] < losses[torch.bfloat16][0]  # it learns
    assert losses[torch.bfloat16] != losses[None]
    assert losses[torch.bfloat16] == pytest.approx(losses[None], rel=0.02)
    assert precision_name(model, torch.bfloat16) == "float32+autocast:bfloat16"


# ------------------------------------------------------------------------------------ embedding rows


def _train_steps(model, groups, steps: int = 4):
    ids = torch.randint(3, 500, (2, 16), generator=torch.Generator().manual_seed(1))
    ids[:, 3:3 + len(NEW)] = torch.tensor(NEW)  # the new rows appear in the input too

    def batch_for(step, micro):
        return {"input_ids": ids, "labels": ids, "attention_mask": torch.ones_like(ids)}

    train(model, batch_for, LoopSettings(steps=steps, lr=1e-2, warmup_ratio=0.0), param_groups=groups,
          progress=False)


NEW = [5, 7, 9, 300]


@pytest.mark.parametrize("method", ["full", "lora", "dora"])
@pytest.mark.parametrize("tied", [True, False])
def test_new_rows_train_and_survive_saving_and_merging(tmp_path: Path, method: str, tied: bool) -> None:
    base_dir = tmp_path / "base"
    _stories(tie_word_embeddings=tied).save_pretrained(base_dir)
    AutoTokenizer.from_pretrained(STORIES).save_pretrained(base_dir)
    model, _ = load_base(base_dir, device="cpu")
    before_in = model.get_input_embeddings().weight.detach().clone()
    before_out = model.get_output_embeddings().weight.detach().clone()
    trained = prepare(model, method=method, adapter=AdapterSettings(method=method, r=4), embeddings="new-rows",
                      new_ids=NEW, lr=1e-2, embedding_lr=5e-2)
    assert {g["name"]: g["lr"] for g in trained.param_groups}["embeddings"] == 5e-2
    _train_steps(trained.model, trained.param_groups)
    save_standalone(trained, base_dir, tmp_path / "out", work=tmp_path / "work", device="cpu")
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    for weight, before in ((saved.get_input_embeddings().weight, before_in),
                           (saved.get_output_embeddings().weight, before_out)):
        moved = (weight.detach() - before).abs().sum(1) > 0
        assert moved[NEW].all(), "the new rows did not train, or were lost on saving"
        assert not moved[[i for i in range(weight.shape[0]) if i not in NEW]].any(), "other rows moved"
    same = saved.get_input_embeddings().weight.data_ptr() == saved.get_output_embeddings().weight.data_ptr()
    assert same == tied


def test_full_embeddings_with_an_adapter_stay_tied(tmp_path: Path) -> None:
    model, _ = load_base(STORIES, device="cpu")
    before = model.get_input_embeddings().weight.detach().clone()
    trained = prepare(model, method="rslora", adapter=AdapterSettings(method="rslora", r=4), embeddings="full",
                      new_ids=[], lr=1e-2)
    _train_steps(trained.model, trained.param_groups)
    save_standalone(trained, STORIES, tmp_path / "out", work=tmp_path / "work", device="cpu")
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert (saved.get_input_embeddings().weight - before).abs().sum(1).gt(0).float().mean() > 0.5
    assert torch.equal(saved.get_input_embeddings().weight, saved.get_output_embeddings().weight)


def test_bad_embedding_requests_are_explained() -> None:
    with pytest.raises(ValueError, match="new-rows needs the rows a tokenizer stage added"):
        prepare(_stories(), method="lora", embeddings="new-rows", new_ids=[], lr=1e-3)
    with pytest.raises(ValueError, match="nothing to train"):
        prepare(_stories(), method="embeddings", embeddings="frozen", lr=1e-3)


# ----------------------------------------------------------------------------------------- EMA, curves


def test_ema_follows_the_weights_as_defined() -> None:
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.5)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # d_1 = min(0.5, 2/11)
    d = 2 / 11
    assert torch.allclose(ema.shadow["weight"], d * start + (1 - d) * model.weight.detach())
    with ema.swapped_in(model):
        assert torch.allclose(model.weight, ema.shadow["weight"])
    assert torch.allclose(model.weight, start + 1.0)  # live weights are back


def test_curves_score_held_out_text_like_the_scorer() -> None:
    from workbench.evaluate.lm import score_texts

    model, tokenizer = _stories(), AutoTokenizer.from_pretrained(STORIES)
    texts = ["Once upon a time there was a cat.", "Tim saw a big red ball in the park."]
    tracker = CurveTracker(tokenizer, {"eng_Latn": HeldOut(texts, "eval")}, every=2, total_steps=5)
    for step in range(1, 6):
        tracker.on_step(step, model, {"tokens": step * 10})
    assert [p["step"] for p in tracker.points] == [2, 4, 5]
    expected = score_texts(model, tokenizer, texts, max_length=1024, stride=1023).bits_per_byte
    assert tracker.points[-1]["bpb"]["eng_Latn"] == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("packed", [True, False])
def test_curve_windows_packed_or_padded_score_like_the_scorer(packed: bool) -> None:
    """Many windows (max_length 16) of uneven texts, packed into rows with restarting positions or
    one per padded row, give the scorer's bits per byte."""
    from workbench.evaluate.lm import score_texts

    model, tokenizer = _stories(), AutoTokenizer.from_pretrained(STORIES)
    rng = random.Random(0)
    words = ["once", "upon", "a", "time", "there", "was", "cat", "dog", "ball", "park", "big", "red", "girl"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 60))) for _ in range(23)]
    tracker = CurveTracker(tokenizer, {"eng_Latn": HeldOut(texts, "eval")}, every=1, total_steps=1, max_length=16,
                           batch_size=3)
    tracker._packed = packed
    expected = score_texts(model, tokenizer, texts, max_length=16, stride=15).bits_per_byte
    assert tracker.measure(0, model, 0)["bpb"]["eng_Latn"] == pytest.approx(expected, abs=1e-5)


def test_held_out_split_is_seeded_bounded_and_disjoint() -> None:
    texts = [f"document {i} " * (i + 1) for i in range(100)]
    train_part, held = split_held_out(texts, documents=20, max_bytes=2000, seed=4)
    assert 0 < len(held) <= 10 and sum(len(t) for t in held) <= 2000
    assert set(train_part).isdisjoint(held) and len(train_part) + len(held) == 100
    assert split_held_out(texts, 20, 2000, seed=4) == (train_part, held)
    assert split_held_out(texts[:5], 20, 2000, seed=4) == (texts[:5], [])  # too small to spare a tenth


# --------------------------------------------------------------------------------------------- QLoRA


@pytest.mark.slow
def test_qlora_trains_new_rows_on_a_4bit_base(tmp_path: Path) -> None:
    from workbench.models import resolve_model

    path = resolve_model("smollm2-135m").path
    model, tokenizer = load_base(path, device="cpu", quantize="4bit")
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    trained = prepare(model, method="lora", adapter=AdapterSettings(method="lora", r=4), embeddings="new-rows",
                      new_ids=[100, 200], lr=1e-2)
    ids = tokenizer(["Su sardu est una limba romanza."] * 2, return_tensors="pt").input_ids
    ids[:, 2] = 100
    losses = []
    train(trained.model, lambda s, m: {"input_ids": ids, "labels": ids, "attention_mask": torch.ones_like(ids)},
          LoopSettings(steps=3, lr=1e-2, warmup_ratio=0.0), param_groups=trained.param_groups, progress=False,
          callbacks={"l": _Record(losses)})
    save_standalone(trained, path, tmp_path / "out", work=tmp_path / "work", device="cpu")
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    base = AutoModelForCausalLM.from_pretrained(path)
    moved = (saved.get_input_embeddings().weight - base.get_input_embeddings().weight).abs().sum(1) > 0
    assert moved.nonzero().flatten().tolist() == [100, 200]
    assert losses[-1] < losses[0]


class _Record:
    def __init__(self, losses: list[float]) -> None:
        self.losses = losses

    def on_step(self, step, model, state) -> None:
        self.losses.append(state["losses"][-1])

    def state_dict(self):
        return {}

    def load_state_dict(self, state) -> None:
        pass


# ------------------------------------------------------------------------------------ data parallel


def _cpt_result(workspace: Path) -> tuple[dict, dict]:

    stage = next((workspace / "tiny" / "stages").glob("cpt-*"))
    return (json.loads((stage / "artifact.json").read_text())["stats"],
            json.loads((stage / "curves.json").read_text()))


def _parallel_run(tmp_path: Path, processes: int, workspace: str, **cpt: Any) -> list[str]:
    """The command that runs the tiny recipe's crawl, tokenizer and cpt (float32: exact, no bf16 rounding;
    global batch 4 x 2 accumulation steps) on ``processes`` gloo processes; ``cpt`` adds settings."""
    from .conftest import tiny_recipe, write_recipe

    recipe = tiny_recipe(eval={}, base={"model": str(STORIES), "dtype": "float32"})
    recipe["stages"] = recipe["stages"][:3]
    recipe["stages"][2]["cpt"].update(batch_size=4, grad_accum=2, eval_every=3, **cpt)
    path = write_recipe(tmp_path / f"tiny-{workspace}.yaml", recipe)
    run = ["-m", "workbench.cli", "run", str(path), "--device", "cpu", "--no-progress", "--workspace",
           str(tmp_path / workspace)]
    if processes == 1:
        return [sys.executable, *run]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--standalone", *run]


def _one_thread_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference for the data-parallel tests: the workspace of the tiny cpt run in one process."""

    tmp_path = tmp_path_factory.mktemp("one-process")
    one = subprocess.run(_parallel_run(tmp_path, 1, "one"), capture_output=True, text=True, env=_one_thread_env(),
                         timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    return tmp_path / "one"


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path: Path, one_process: Path) -> None:
    """`workbench run` under a launcher (torchrun; `accelerate launch --multi_gpu` starts the same) with 2
    gloo processes trains what one process trains on the same global batch."""
    two = subprocess.run(_parallel_run(tmp_path, 2, "two"), capture_output=True, text=True, env=_one_thread_env(),
                         timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    (single, single_curves), (double, double_curves) = _cpt_result(one_process), _cpt_result(tmp_path / "two")
    assert single["processes"] == 1 and double["processes"] == 2
    assert double["steps"] == single["steps"] and double["train_tokens"] == single["train_tokens"]
    assert double["final_loss"] == pytest.approx(single["final_loss"], rel=1e-4)
    assert double_curves["loss"] == pytest.approx(single_curves["loss"], rel=1e-4)
    for a, b in zip(single_curves["points"], double_curves["points"], strict=True):
        assert a["bpb"] == pytest.approx(b["bpb"], rel=1e-4)


@pytest.mark.slow
def test_fsdp_on_two_processes_matches_one_and_resumes_after_sigkill(tmp_path: Path, one_process: Path) -> None:
    """`distributed: {strategy: fsdp}` on 2 gloo processes (torch FSDP2): killed after a checkpoint and
    started again, it trains the steps, losses, curves and final model of one process on the same global
    batch, and saves a plain model directory."""
    env = _one_thread_env()
    two = _parallel_run(tmp_path, 2, "two", checkpoint_every=2, distributed={"strategy": "fsdp"})
    proc = subprocess.Popen(two, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    events, deadline = tmp_path / "two" / "tiny" / "events.jsonl", time.time() + 600
    while not (events.is_file() and '"checkpoint_saved"' in events.read_text()):
        assert proc.poll() is None and time.time() < deadline, "the fsdp run ended before it could be killed"
        time.sleep(0.05)
    for pid in [proc.pid, *_descendants(proc.pid)]:  # the launcher and its workers (their own sessions)
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    again = subprocess.run(two, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = [json.loads(line) for line in events.read_text().splitlines() if '"resumed"' in line]
    assert resumed and resumed[-1]["from_step"] >= 2
    (single, single_curves), (double, double_curves) = _cpt_result(one_process), _cpt_result(tmp_path / "two")
    assert single["processes"] == 1 and double["processes"] == 2 and double["strategy"] == "fsdp"
    assert double["steps"] == single["steps"] and double["train_tokens"] == single["train_tokens"]
    assert double_curves["loss"] == pytest.approx(single_curves["loss"], rel=1e-4)
    for a, b in zip(single_curves["points"], double_curves["points"], strict=True):
        assert a["bpb"] == pytest.approx(b["bpb"], rel=1e-4)
    stages = one_process / "tiny" / "stages"
    start = AutoModelForCausalLM.from_pretrained(next(stages.glob("tokenizer-*")) / "model").state_dict()
    weights = [AutoModelForCausalLM.from_pretrained(next((workspace / "tiny" / "stages").glob("cpt-*")) / "model")
               .state_dict() for workspace in (one_process, tmp_path / "two")]
    assert weights[0].keys() == weights[1].keys()
    # The same update, up to summation order: Adam divides by sqrt(v), so rows whose gradients are tiny (new
    # embedding rows seen once) amplify float noise to ~1e-4 absolute, but every tensor's difference stays
    # under 1% of what training changed in it (a lost or doubled shard would be ~50-100%).
    for name, value in weights[0].items():
        change = (value - start[name]).norm()
        assert (value - weights[1][name]).norm() <= 0.01 * change + 1e-6, name


@pytest.mark.slow
def test_fsdp_trains_a_lora_adapter_with_new_rows_like_one_process(tmp_path: Path) -> None:
    """peft under FSDP: LoRA plus trainable_token_indices rows, sharded with the blocks, merged and saved."""

    from .conftest import tiny_recipe, write_recipe

    recipe = tiny_recipe(eval={}, base={"model": str(STORIES), "dtype": "float32"})  # exact: no bf16 rounding
    recipe["stages"] = recipe["stages"][:3]
    recipe["stages"][2]["cpt"].update(batch_size=4, grad_accum=2, train="lora", adapter={"r": 4}, lr=1e-2,
                                      distributed={"strategy": "fsdp"})
    path = write_recipe(tmp_path / "tiny.yaml", recipe)
    run = ["-m", "workbench.cli", "run", str(path), "--device", "cpu", "--no-progress", "--workspace"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name, launcher in (("one", []), ("two", ["-m", "torch.distributed.run", "--nproc_per_node", "2",
                                                 "--standalone"])):
        done = subprocess.run([sys.executable, *launcher, *run, str(tmp_path / name)], capture_output=True,
                              text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    (single, single_curves), (double, double_curves) = _cpt_result(tmp_path / "one"), _cpt_result(tmp_path / "two")
    assert double["strategy"] == "fsdp" and double["embeddings"] == single["embeddings"] == "new-rows"
    assert double_curves["loss"] == pytest.approx(single_curves["loss"], rel=1e-4)
    models = [AutoModelForCausalLM.from_pretrained(next((tmp_path / run / "tiny" / "stages").glob("cpt-*")) / "model")
              for run in ("one", "two")]
    weights = [m.state_dict() for m in models]
    for name, value in weights[0].items():  # Adam (lr 1e-2) magnifies reduction-order noise on a few
        difference = (value - weights[1][name]).abs()  # near-zero gradients of new rows: bound the mean
        assert float(difference.max()) < 2e-2 and float(difference.mean()) < 1e-5, name


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def test_the_isolation_check_sees_whether_packing_isolates_documents() -> None:
    from workbench.train.loss import attention_stays_in_documents

    model = _stories()
    assert attention_stays_in_documents(model)
    original = model.get_decoder().forward

    def ignoring_positions(*args, position_ids=None, **kwargs):  # what a packing-unaware model does
        kwargs["attention_mask"] = torch.ones_like(kwargs["input_ids"])
        return original(*args, **kwargs)

    model.get_decoder().forward = ignoring_positions
    assert not attention_stays_in_documents(model)


def test_gradient_checkpointing_trains_the_same_steps() -> None:
    losses = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model, _ = load_base(STORIES, device="cpu", gradient_checkpointing=checkpointing)
        assert model.is_gradient_checkpointing == checkpointing
        trained = prepare(model, method="lora", adapter=AdapterSettings(method="lora", r=4), embeddings="frozen",
                          lr=1e-2)
        ids = torch.randint(3, 500, (2, 32), generator=torch.Generator().manual_seed(2))
        state = train(trained.model, lambda s, m, ids=ids: {"input_ids": ids, "labels": ids, "attention_mask": None},
                      LoopSettings(steps=3, lr=1e-2, warmup_ratio=0.0), param_groups=trained.param_groups,
                      progress=False)
        losses.append(state["losses"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_fsdp_is_chosen_by_the_recipe_or_accelerate_and_explains_what_it_cannot_shard(monkeypatch) -> None:
    from workbench.train.sharding import check_fsdp_support, resolve_strategy

    assert resolve_strategy("fsdp", 1) == "none" and resolve_strategy("auto", 2) == "ddp"
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch --use_fsdp` sets
    assert resolve_strategy("auto", 2) == "fsdp" and resolve_strategy("ddp", 2) == "ddp"
    for kwargs, fix in (({"quantized": True}, "strategy: ddp"), ({"ema": True}, "drop ema"),
                        ({"new_rows_mask": True}, "train: lora")):
        options = {"is_peft": False, "quantized": False, "ema": False, "new_rows_mask": False} | kwargs
        with pytest.raises(ValueError, match=fix):
            check_fsdp_support(None, **options)
