"""Comparing a fine-tuning stage's variants: what BLEU says, what the detectors see, what it cost.

Reads the run store only: the scoreboard, each variant's translations (``translations.jsonl``) and
the stage's artifact record (trainable parameters, training time, peak memory). Significance is
sacrebleu's paired bootstrap resampling (``PairedTest``, ``test_type="bs"``) of every variant
against a baseline on the same sentences.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RunError
from .store import RunStore

MT_METRICS = ("chrf++", "bleu", "spbleu")
DETECTORS = ("off_target_rate", "script_leak_rate", "copy_rate", "repetition_rate", "empty_rate")


@dataclass
class Comparison:
    """The variants of one stage against the model they started from (``reference``)."""

    stage: str
    reference: str  # the upstream stage whose model every variant started from
    variants: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per system x direction
    retention: list[dict[str, Any]] = field(default_factory=list)  # one per system x language
    costs: dict[str, dict[str, Any]] = field(default_factory=dict)  # per variant
    significance: list[dict[str, Any]] = field(default_factory=list)
    baseline: str | None = None


def compare_run(store: RunStore, *, stage: str | None = None, baseline: str | None = None,
                n_samples: int = 1000) -> Comparison:
    """Tables of every variant of ``stage`` (default: the last stage with variants); significance of
    BLEU and chrF++ against ``baseline`` (a variant name, or the reference model by default)."""
    manifest = store.manifest()
    if not manifest:
        raise RunError(f"{store.root}: no manifest; run the recipe first")
    steps = manifest["steps"]
    stage = stage or _stage_with_variants(steps, store)
    index = next((i for i, s in enumerate(steps) if s["id"] == stage), None)
    if index is None:
        raise RunError(f"{store.root}: no stage '{stage}' in this run")
    record = RunStore.read_artifact(Path(steps[index]["path"]))
    variants = [m["variant"] for m in record.get("models", []) if m.get("variant")]
    if not variants:
        raise RunError(f"stage '{stage}' has no variants to compare")
    reference = _reference_stage(steps, index)
    comparison = Comparison(stage, reference, variants)
    board = store.scoreboard()
    systems = [(reference, None)] + [(stage, v) for v in variants]
    comparison.rows = _metric_rows(board, systems)
    comparison.retention = _retention(board, systems)
    comparison.costs = {v: _cost(record.get("stats", {}).get("variants", {}).get(v, {})) for v in variants}
    names = {None: reference} | {v: v for v in variants}
    comparison.baseline = baseline or reference
    if comparison.baseline not in names.values():
        raise RunError(f"unknown baseline '{baseline}': use one of {', '.join(names.values())}")
    translations = {names[v]: _translations(manifest, s, v) for s, v in systems}
    comparison.significance = paired_significance(translations, comparison.baseline, n_samples=n_samples)
    return comparison


def _stage_with_variants(steps: list[dict[str, Any]], store: RunStore) -> str:
    for step in reversed(steps):
        if step["kind"] not in ("score", "contamination", "floor", "base") and step.get("path"):
            record = RunStore.read_artifact(Path(step["path"]))
            if any(m.get("variant") for m in record.get("models", [])):
                return step["id"]
    raise RunError(f"{store.root}: no stage with variants (a finetune stage) in this run")


def _reference_stage(steps: list[dict[str, Any]], index: int) -> str:
    scored = {s["id"].removeprefix("score:") for s in steps if s["id"].startswith("score:") and "/" not in s["id"]}
    for step in reversed(steps[:index]):
        if step["id"] in scored:
            return step["id"]
    return "base"


def _metric_rows(board: list[dict[str, Any]], systems: list[tuple[str, str | None]]) -> list[dict[str, Any]]:
    rows = []
    for stage, variant in systems:
        mine = [r for r in board if r["stage"] == stage and r.get("variant") == variant and "direction" in r]
        for direction in sorted({r["direction"] for r in mine}):
            row: dict[str, Any] = {"system": variant or stage, "direction": direction}
            for r in mine:
                if r["direction"] == direction and r["metric"] in (*MT_METRICS, *DETECTORS):
                    row[r["metric"]] = r["value"]
            rows.append(row)
    return rows


def _retention(board: list[dict[str, Any]], systems: list[tuple[str, str | None]]) -> list[dict[str, Any]]:
    """Bits per byte per language and its change against the reference (the first system)."""
    def bpb(stage: str, variant: str | None) -> dict[str, float]:
        return {r["language"]: r["value"] for r in board if r["stage"] == stage and r.get("variant") == variant
                and r["kind"] == "lm" and r["metric"] == "bits_per_byte"}

    reference = bpb(*systems[0])
    rows = []
    for stage, variant in systems:
        for language, value in sorted(bpb(stage, variant).items()):
            before = reference.get(language)
            rows.append({"system": variant or stage, "language": language, "bits_per_byte": value,
                         "delta": None if before is None else value - before})
    return rows


def _cost(meta: dict[str, Any]) -> dict[str, Any]:
    return {"trainable_parameters": meta.get("trainable_parameters"), "train_seconds": meta.get("train_seconds"),
            "peak_memory_mb": meta.get("peak_memory_mb"), "method": meta.get("config", {}).get("method"),
            "r": meta.get("config", {}).get("r")}


def _translations(manifest: dict[str, Any], stage: str,
                  variant: str | None) -> dict[str, list[dict[str, Any]]]:
    step_id = f"score:{stage}" + (f"/{variant}" if variant else "")
    step = next((s for s in manifest["steps"] if s["id"] == step_id and s.get("path")), None)
    path = Path(step["path"]) / "translations.jsonl" if step else None
    if path is None or not path.is_file():
        return {}
    by_direction: dict[str, list[dict[str, Any]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        by_direction.setdefault(row["direction"], []).append(row)
    return by_direction


def paired_significance(translations: dict[str, dict[str, list[dict[str, Any]]]], baseline: str, *,
                        n_samples: int = 1000) -> list[dict[str, Any]]:
    """Per direction and system: BLEU and chrF++ with sacrebleu's paired bootstrap p-value and 95%
    confidence interval against ``baseline`` (``translations``: system -> direction -> rows)."""
    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.significance import PairedTest

    out = []
    base = translations.get(baseline, {})
    for direction, base_rows in sorted(base.items()):
        order = [r["index"] for r in base_rows]
        refs = [r["reference"] for r in base_rows]
        systems = [(baseline, [r["hypothesis"] for r in base_rows])]
        for name, rows in translations.items():
            if name == baseline or direction not in rows:
                continue
            by_index = {r["index"]: r["hypothesis"] for r in rows[direction]}
            if set(by_index) != set(order):
                continue  # not scored on the same sentences: no paired test
            systems.append((name, [by_index[i] for i in order]))
        if len(systems) < 2:
            continue
        test = PairedTest(systems, {"bleu": BLEU(), "chrf++": CHRF(word_order=2)}, [refs], test_type="bs",
                          n_samples=n_samples)
        signatures, results = test()
        metric_keys = [k for k in results if k != "System"]
        for position, name in enumerate(results["System"]):
            row: dict[str, Any] = {"system": name, "direction": direction, "baseline": baseline}
            for key in metric_keys:
                metric = "bleu" if key.lower().startswith("bleu") else "chrf++"
                result = results[key][position]
                row[metric] = float(result.score)
                row[f"{metric}_ci"] = float(result.ci) if result.ci is not None else None
                row[f"{metric}_p"] = None if result.p_value is None else float(result.p_value)
                row[f"{metric}_signature"] = str(signatures[key])
            out.append(row)
    return out


def pareto_plot(comparison: Comparison, path: Path, metric: str = "chrf++") -> Path:
    """Quality (``metric`` averaged over directions) against trainable parameters, training time and
    peak memory, one point per variant; the Pareto-optimal ones joined. Written as PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_write_bytes

    quality = {}
    for variant in comparison.variants:
        values = [r[metric] for r in comparison.rows if r["system"] == variant and metric in r]
        if values:
            quality[variant] = sum(values) / len(values)
    axes_spec = [("trainable_parameters", "trainable parameters"), ("train_seconds", "training time (s)"),
                 ("peak_memory_mb", "peak memory (MB)")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (key, label) in zip(axes, axes_spec, strict=True):
        points = [(comparison.costs[v][key], quality[v], v) for v in quality if comparison.costs[v].get(key)]
        for x, y, name in points:
            ax.scatter(x, y, s=40)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        front = _pareto_front([(x, y) for x, y, _ in points])
        if len(front) > 1:
            ax.plot(*zip(*front, strict=True), linestyle="--", color="0.5")
        ax.set(xlabel=label, ylabel=f"{metric} (mean over directions)")
        xs = [x for x, _, _ in points]
        if key == "trainable_parameters" and xs and max(xs) > 10 * min(xs):
            ax.set_xscale("log")
    fig.suptitle(f"{comparison.stage}: quality against cost")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both lower cost and higher quality, by cost."""
    front, best = [], float("-inf")
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front
