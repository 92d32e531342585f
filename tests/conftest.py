"""Shared fixtures: a tiny real recipe on the trained stories260K model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .recipes import FIXTURES, ROOT, STORIES, tiny_recipe, write_recipe  # noqa: F401 (shared with the tests)

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="module")
def one_torch_thread():
    """A 260K-parameter model runs far faster on one thread (and is not slowed by a busy machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def stories_lm():
    """The real stories260K model and its tokenizer, loaded once per test module."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(STORIES), AutoTokenizer.from_pretrained(STORIES)


@pytest.fixture
def recipe_file(tmp_path: Path) -> Path:
    return write_recipe(tmp_path / "tiny.yaml", tiny_recipe())


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory):
    """The tiny recipe run once per session (in-process); returns (recipe path, workspace, result)."""
    from workbench.engine import run_recipe
    from workbench.recipe import load_recipe

    base = tmp_path_factory.mktemp("run")
    path = write_recipe(base / "tiny.yaml", tiny_recipe())
    workspace = base / "runs"
    result = run_recipe(load_recipe(path), workspace, device="cpu", progress=False, echo=lambda _: None)
    return path, workspace, result
