"""Without the crawl's compiled libraries (fastwarc, resiliparse), everything but the crawl works: a recipe
with no crawl stage plans, and a recipe with one fails with one message naming the extra to install. The
libraries are blocked in a subprocess by an import hook, as on a machine where they were never installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import tiny_recipe, write_recipe

BLOCKED = ("fastwarc", "resiliparse")
RUN_BLOCKED = f"""
import sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"No module named {{name!r}} (blocked by the test)", name=name)

sys.meta_path.insert(0, Blocked())
from workbench.cli import main
main(sys.argv[1:])
"""
IMPORT_BLOCKED = RUN_BLOCKED.replace("from workbench.cli import main\nmain(sys.argv[1:])", """
import importlib, pkgutil
import workbench, workbench.evaluate
# the notebook API, the commands' modules (plan, eval, scores) and every stage but the crawl
for name in ("run", "compare", "inference", "engine", "scoreboard", "stages.cpt", "stages.finetune",
             "stages.tokenizer", "crawl.langid"):
    importlib.import_module(f"workbench.{name}")
for module in pkgutil.iter_modules(workbench.evaluate.__path__, "workbench.evaluate."):
    importlib.import_module(module.name)
assert workbench.load_run and workbench.compare_run and workbench.translate
print("imported")
""")


def _blocked(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def test_the_library_imports_without_the_crawls_libraries(tmp_path: Path) -> None:
    done = _blocked(IMPORT_BLOCKED, cwd=tmp_path)
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr[-2000:]


def test_plan_without_a_crawl_stage_needs_no_crawl_libraries(tmp_path: Path) -> None:
    recipe = tiny_recipe()
    recipe["stages"] = [stage for stage in recipe["stages"] if "finetune" in stage]
    path = write_recipe(tmp_path / "finetune-only.yaml", recipe)
    done = _blocked(RUN_BLOCKED, "plan", str(path), "--workspace", str(tmp_path / "runs"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "finetune/lora-r4" in done.stdout


def test_a_crawl_stage_without_its_libraries_is_one_message_naming_the_extra(tmp_path: Path) -> None:
    path = write_recipe(tmp_path / "tiny.yaml", tiny_recipe())
    done = _blocked(RUN_BLOCKED, "plan", str(path), "--workspace", str(tmp_path / "runs"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'workbench[crawl]'" in lines[0] and "crawl stage" in lines[0]
