"""`workbench plan` and the start of `workbench run` find bad fine-tuning data and model sources before any
work: one message naming the recipe file, the field and the data file, exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import FIXTURES, tiny_recipe, write_recipe


def _workbench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def _recipe_with_data(tmp_path: Path, data: dict) -> Path:
    recipe = tiny_recipe()
    recipe["stages"][3]["finetune"]["data"] = {"directions": ["eng_Latn-srd_Latn"], "max_pairs": 80,
                                               "held_out": 8, **data}
    return write_recipe(tmp_path / "bad.yaml", recipe)


def _parallel(tmp_path: Path, eng: list[str], srd: list[str]) -> Path:
    folder = tmp_path / "pairs"
    folder.mkdir()
    (folder / "eng_Latn.txt").write_text("\n".join(eng) + "\n", encoding="utf-8")
    (folder / "srd_Latn.txt").write_text("\n".join(srd) + "\n", encoding="utf-8")
    return folder


def _lines(code: str, n: int) -> list[str]:
    return (FIXTURES / "parallel" / f"{code}.txt").read_text(encoding="utf-8").splitlines()[:n]


def test_misaligned_parallel_files_stop_plan_and_run_before_any_work(tmp_path: Path) -> None:
    folder = _parallel(tmp_path, _lines("eng_Latn", 40), _lines("srd_Latn", 39))
    recipe = _recipe_with_data(tmp_path, {"parallel": str(folder)})
    planned = _workbench("plan", str(recipe), "--workspace", str(tmp_path / "runs"), "--no-memory")
    assert planned.returncode == 2 and "Traceback" not in planned.stderr
    assert str(recipe) in planned.stderr and "stages[3].finetune" in planned.stderr and "eng_Latn" in planned.stderr
    ran = _workbench("run", str(recipe), "--workspace", str(tmp_path / "runs"), "--no-progress")
    assert ran.returncode == 2 and "stages[3].finetune" in ran.stderr
    assert not list((tmp_path / "runs").glob("*/stages/crawl-*")), "the crawl ran before the data was checked"


def test_an_empty_side_and_a_tsv_without_the_column_are_refused(tmp_path: Path) -> None:
    folder = _parallel(tmp_path, _lines("eng_Latn", 40), [""] * 40)
    empty = _workbench("plan", str(_recipe_with_data(tmp_path, {"parallel": str(folder)})), "--no-memory",
                       "--workspace", str(tmp_path / "runs"))
    assert empty.returncode == 2 and "srd_Latn.txt: the file is empty" in empty.stderr
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("eng_Latn\tita_Latn\n" + "".join(f"{e}\tx\n" for e in _lines("eng_Latn", 40)), encoding="utf-8")
    missing = _workbench("plan", str(_recipe_with_data(tmp_path, {"parallel": str(tsv)})), "--no-memory",
                         "--workspace", str(tmp_path / "runs"))
    assert missing.returncode == 2 and "srd_Latn" in missing.stderr and "Traceback" not in missing.stderr


def test_broken_instruction_lines_are_a_warning_at_plan_time(tmp_path: Path) -> None:
    lines = [json.dumps({"prompt": f"say {i}", "completion": f"{i}"}) for i in range(30)] + ["{not json"]
    (tmp_path / "inst.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    recipe = _recipe_with_data(tmp_path, {"parallel": str(FIXTURES / "parallel"),
                                          "instructions": str(tmp_path / "inst.jsonl")})
    planned = _workbench("plan", str(recipe), "--no-memory", "--workspace", str(tmp_path / "runs"))
    assert planned.returncode == 0, planned.stderr
    assert "1 lines are not instruction examples" in " ".join(planned.stdout.split())


def test_model_sources_are_checked_without_loading(tmp_path: Path) -> None:
    unknown = write_recipe(tmp_path / "unknown.yaml", tiny_recipe(base={"model": "smollm-9000"}))
    planned = _workbench("plan", str(unknown), "--no-memory", "--workspace", str(tmp_path / "runs"))
    assert planned.returncode == 2 and f"{unknown}: base.model: unknown model 'smollm-9000'" in planned.stderr
    hub = write_recipe(tmp_path / "hub.yaml", tiny_recipe(base={"model": "hf:nobody/not-cached-model"}))
    offline = _workbench("plan", str(hub), "--no-memory", "--workspace", str(tmp_path / "runs"),
                         env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert offline.returncode == 2 and "base.model" in offline.stderr and "offline" in offline.stderr
