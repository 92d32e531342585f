"""The ``workbench`` command as a user runs it: real subprocesses against a finished run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from workbench.scoreboard import from_csv


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200"})


def test_scores_in_three_formats(finished_run) -> None:
    _, workspace, result = finished_run
    as_json = _cli("scores", "tiny", "--workspace", str(workspace), "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == result.scoreboard
    as_csv = _cli("scores", str(workspace / "tiny"), "--format", "csv")
    rows = from_csv(as_csv.stdout)
    assert len(rows) == len(result.scoreboard)
    assert [r["value"] for r in rows] == [r["value"] for r in result.scoreboard]
    table = _cli("scores", "tiny", "--workspace", str(workspace)).stdout
    for label in ("base", "tokenizer", "cpt", "finetune", "lora-r4", "srd_Latn", "eng_Latn-srd_Latn",
                  "bits_per_byte", "chrf++"):
        assert label in table


def test_scores_of_unknown_run_is_one_message(tmp_path: Path) -> None:
    proc = _cli("scores", "nope", "--workspace", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no run 'nope'" in proc.stderr


def test_plan_after_a_run_shows_everything_cached(finished_run) -> None:
    path, workspace, _ = finished_run
    proc = _cli("plan", str(path), "--workspace", str(workspace))
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "score:" in line or "crawl" in line]
    assert lines and all("cached" in line for line in lines)
    fresh = _cli("plan", str(path), "--workspace", str(workspace.parent / "empty")).stdout
    assert "cached" not in fresh and fresh.count(" run ") >= 10


def test_models_lists_registry_sources() -> None:
    proc = _cli("models")
    assert proc.returncode == 0, proc.stderr
    assert "smollm2-135m" in proc.stdout and "gemma3-270m" in proc.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ui_command_serves_the_runs(finished_run) -> None:
    _, workspace, _ = finished_run
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "ui", "--workspace", str(workspace),
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    try:
        deadline = time.time() + 90
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.TransportError:
                assert time.time() < deadline and proc.poll() is None, "the app did not start"
                time.sleep(0.3)
        assert page.status_code == 200 and "gradio" in page.text.lower()
        config = httpx.get(f"http://127.0.0.1:{port}/config", timeout=10).text
        assert '"tiny"' in config
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_run_with_an_unreachable_hub_model_is_one_message(tmp_path: Path) -> None:
    from .conftest import tiny_recipe, write_recipe

    recipe = write_recipe(tmp_path / "hub.yaml", tiny_recipe(base={"model": "hf:Qwen/Qwen2.5-0.5B"}))
    proc = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "run", str(recipe), "--workspace", str(tmp_path / "runs"),
         "--no-progress"], capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "hf:Qwen/Qwen2.5-0.5B" in proc.stderr and "hf download Qwen/Qwen2.5-0.5B" in proc.stderr
    events = (tmp_path / "runs" / "tiny" / "events.jsonl").read_text()
    assert '"run_failed"' in events
