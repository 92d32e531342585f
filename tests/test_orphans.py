"""A crawl's worker processes end when the crawl's process is killed (no orphans holding memory)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

from .conftest import FIXTURES, ROOT

CRAWL = textwrap.dedent("""
    import sys
    from pathlib import Path
    from workbench.crawl.langid import train_identifier
    from workbench.crawl.pipeline import run_crawl

    inputs = sorted(Path(sys.argv[1]).glob("*.txt"))
    identifier = train_identifier(Path(sys.argv[3]), ["srd_Latn", "eng_Latn", "ita_Latn"], use_fasttext=False)
    run_crawl(inputs, ["srd_Latn", "eng_Latn"], identifier, Path(sys.argv[2]), executor="local", processes=3,
              progress=False)
""")


def test_workers_end_when_the_crawl_process_is_killed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    text = (FIXTURES / "text" / "srd_sample.txt").read_text(encoding="utf-8")
    for i in range(40):  # enough shards to keep three processes busy for a while
        (data / f"part-{i:02d}.txt").write_text(text * 20, encoding="utf-8")
    crawl = subprocess.Popen([sys.executable, "-c", CRAWL, str(data), str(tmp_path / "out"),
                              str(ROOT / "corpora" / "lid-seed")], cwd=ROOT)
    parent = psutil.Process(crawl.pid)
    deadline = time.monotonic() + 120
    workers: list[psutil.Process] = []
    while time.monotonic() < deadline and crawl.poll() is None:
        workers = [p for p in parent.children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]
        if len(workers) >= 2:
            break
        time.sleep(0.2)
    assert len(workers) >= 2, "the crawl finished or failed before its workers started"
    children = parent.children(recursive=True)  # the workers and multiprocessing's resource tracker
    os.kill(crawl.pid, signal.SIGKILL)
    crawl.wait()
    time.sleep(5)
    alive = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [" ".join(p.cmdline()) for p in alive]
