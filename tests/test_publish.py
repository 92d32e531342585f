"""Adapters of two workspaces in one folder never overwrite each other."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.publish import publish_adapters


def _artifact(tmp_path: Path, tag: str) -> tuple[str, Path, dict]:
    directory = tmp_path / f"artifact-{tag}"
    (directory / "variants" / "lora-r8").mkdir(parents=True)
    (directory / "variants" / "lora-r8" / "adapter_config.json").write_text(json.dumps({"tag": tag}))
    record = {"stats": {"variants": {"lora-r8": {"r": 8, "tag": tag}}},
              "models": [{"variant": "lora-r8", "adapter": "variants/lora-r8"}]}
    return "finetune", directory, record


def test_two_workspaces_publish_a_run_of_the_same_name_apart(tmp_path: Path) -> None:
    home = tmp_path / "adapters"
    first = publish_adapters("demo", [_artifact(tmp_path, "a")], [], home, owner=tmp_path / "runs-a" / "demo")
    second = publish_adapters("demo", [_artifact(tmp_path, "b")], [], home, owner=tmp_path / "runs-b" / "demo")
    assert first == [home / "demo" / "lora-r8"] and second[0] != first[0] and second[0].parent.name.startswith("demo@")
    assert json.loads((first[0] / "metadata.json").read_text())["tag"] == "a"
    assert json.loads((second[0] / "metadata.json").read_text())["tag"] == "b"
    again = publish_adapters("demo", [_artifact(tmp_path, "a2")], [], home, owner=tmp_path / "runs-a" / "demo")
    assert again == first and json.loads((first[0] / "metadata.json").read_text())["tag"] == "a2"
