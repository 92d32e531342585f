"""A full disk is one message (the file, the space left, that nothing finished is lost), and the run resumes
once there is space again. Needs a small file system: a tmpfs mount (root on Linux), else skipped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import tiny_recipe, write_recipe


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_is_one_message_and_the_run_resumes(tmp_path: Path, small_disk: Path) -> None:
    recipe = tiny_recipe(name="full", stages=tiny_recipe()["stages"][:1])
    recipe["eval"].pop("mt")
    path = write_recipe(tmp_path / "full.yaml", recipe)
    command = [sys.executable, "-m", "workbench.cli", "run", str(path), "--workspace", str(small_disk / "runs"),
               "--no-progress"]
    failed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert failed.returncode == 2, failed.stderr[-2000:]
    assert "Traceback" not in failed.stderr and failed.stderr.count("error:") == 1
    assert "no space left on the device" in failed.stderr and "Nothing that finished is lost" in failed.stderr
    subprocess.run(["mount", "-o", "remount,size=200m", str(small_disk)], check=True)
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (small_disk / "runs" / "full" / "scoreboard.json").is_file()
