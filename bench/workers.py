"""One benchmark configuration per subprocess, so that peak memory is measured per configuration.

A bench script calls :func:`run_worker` with a JSON-able spec; the child runs the script with
``--worker SPEC``, and :func:`serve_worker` prints the result as one ``RESULT {...}`` line. With
``live_peak=True`` the worker runs with :data:`workbench.modeling.LIVE_PEAK_ENV`, so its peak resident
memory is the live peak (what a CUDA allocator reports); that costs time (every large allocation is a
fresh mapping), so timings come from workers run without it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable

PREFIX = "RESULT "


def serve_worker(spec_json: str, worker: Callable[[dict], dict]) -> None:
    print(PREFIX + json.dumps(worker(json.loads(spec_json))))


def parse_or_serve(parser: argparse.ArgumentParser, worker: Callable[[dict], dict]) -> argparse.Namespace:
    """A benchmark's parsed arguments; called as ``--worker SPEC`` (by :func:`run_worker`), it runs ``worker``
    on the spec, prints its result and exits instead."""
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        serve_worker(args.worker, worker)
        raise SystemExit(0)
    return args


def run_worker(script: str, spec: dict, label: str, *, live_peak: bool = False) -> dict:
    """Run ``script --worker spec`` in a fresh interpreter and return its result (exit with its
    stderr tail when it produced none)."""
    from workbench.modeling import LIVE_PEAK_ENV

    env = {**os.environ, **(LIVE_PEAK_ENV if live_peak else {})}
    proc = subprocess.run([sys.executable, script, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          env=env)
    line = next((x for x in proc.stdout.splitlines() if x.startswith(PREFIX)), None)
    if line is None:
        print(proc.stderr[-3000:])
        raise SystemExit(f"{label} failed")
    return json.loads(line[len(PREFIX):])
