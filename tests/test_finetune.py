"""The finetune stage's data sources and variants on stories260K, published adapters and merging."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from workbench.engine import run_recipe
from workbench.errors import DataError
from workbench.recipe import load_recipe
from workbench.stages.finetune import read_instructions

from .conftest import FIXTURES, tiny_recipe, write_recipe


def test_instruction_jsonl_reads_every_accepted_shape_and_counts_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "instructions.jsonl"
    path.write_text("\n".join([
        json.dumps({"instruction": "Translate to Sardinian", "input": "Good morning", "output": "Bona die"}),
        json.dumps({"prompt": "Say hello", "completion": "Salude"}),
        json.dumps({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hi"},
                                 {"role": "assistant", "content": "Ciao"}]}),
        "not json", json.dumps({"prompt": "no answer"}), "",
    ]), encoding="utf-8")
    assert read_instructions(path) == [("Translate to Sardinian\n\nGood morning", "Bona die"),
                                       ("Say hello", "Salude"), ("Hi", "Ciao")]
    path.write_text("not json\n", encoding="utf-8")
    with pytest.raises(DataError, match="no instruction examples"):
        read_instructions(path)


@pytest.fixture(scope="module")
def variants_run(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("ft")
    instructions = base / "instructions.jsonl"
    instructions.write_text("\n".join(json.dumps({"prompt": f"Count to {i}", "completion": " ".join(
        str(k) for k in range(i))}) for i in range(2, 30)), encoding="utf-8")
    recipe = tiny_recipe(eval={"mt": {"sets": str(FIXTURES / "flores200" / "dev"), "directions": [
        "eng_Latn-srd_Latn"], "max_sentences": 4, "shots": 0, "max_new_tokens": 8}})
    recipe["stages"] = [recipe["stages"][0], {"finetune": {
        "data": {"parallel": str(FIXTURES / "flores200" / "dev"), "split": "dev",
                 "directions": ["eng_Latn-srd_Latn", "srd_Latn-eng_Latn"], "max_pairs": 40, "held_out": 4,
                 "instructions": str(instructions)},
        "steps": 3, "batch_size": 4, "lr": 1e-3,
        "variants": {"lora-r4": {"method": "lora", "r": 4}, "full": {"method": "full", "lr": 1e-4}}}}]
    path = write_recipe(base / "ft.yaml", recipe)
    result = run_recipe(load_recipe(path), base / "runs", device="cpu", progress=False, echo=lambda _: None)
    return base, result


def test_full_and_adapter_variants_are_trained_scored_and_published(variants_run) -> None:
    base, result = variants_run
    ids = [s["id"] for s in result.steps]
    assert "score:finetune/full" in ids and "score:finetune/lora-r4" in ids
    stage = Path(next(s["path"] for s in result.steps if s["id"] == "finetune"))
    record = json.loads((stage / "artifact.json").read_text())
    assert record["stats"]["examples"] == 2 * 40 + 24  # max_pairs per direction + the instruction examples
    full = AutoModelForCausalLM.from_pretrained(stage / "adapters" / "full")  # a whole model
    assert full.config.vocab_size > 0
    published = base / "adapters" / "tiny"
    meta = json.loads((published / "lora-r4" / "metadata.json").read_text())
    assert (published / "lora-r4" / "adapter_config.json").is_file()
    assert {"base_model_hash", "tokenizer_hash", "data_hash", "trainable_parameters", "train_seconds",
            "peak_memory_mb", "config"} <= meta.keys()
    assert any(s["metric"] == "chrf++" and s["direction"] == "eng_Latn-srd_Latn" for s in meta["scores"])
    assert json.loads((published / "full" / "metadata.json").read_text())["config"]["method"] == "full"


def test_merge_cli_writes_a_model_equal_to_base_plus_adapter(variants_run, tmp_path: Path) -> None:
    from peft import PeftModel

    base, _ = variants_run
    adapter = base / "adapters" / "tiny" / "lora-r4"
    done = subprocess.run([sys.executable, "-m", "workbench.cli", "merge", "--adapter", str(adapter), "--out",
                           str(tmp_path / "merged"), "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    meta = json.loads((adapter / "metadata.json").read_text())
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(meta["base_model"]), str(adapter))
    ids = torch.tensor([[1, 20, 30, 40, 50]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, reference(ids).logits, atol=1e-5)
    full = subprocess.run([sys.executable, "-m", "workbench.cli", "merge", "--adapter", str(adapter.parent / "full"),
                           "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=300)
    assert full.returncode != 0 and "already a standalone model" in full.stderr
