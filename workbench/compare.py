"""Comparing adapters: what BLEU says, what the detectors see, what it cost, and whether it is significant.

Two ways in, one :class:`Comparison` out:

- :func:`compare_run` reads a finished run's store: the scoreboard, each variant's translations
  (``translations.jsonl``) and the stage's artifact record (trainable parameters, time, peak memory);
- :func:`compare_adapters` scores a base model and any adapters on evaluation sets now (notebooks).

Significance is sacrebleu's paired bootstrap resampling (``PairedTest``, ``test_type="bs"``) of every
system against a baseline on the same sentences.
"""

from __future__ import annotations

import html
import io
import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest
from safetensors import safe_open

from .errors import DataError, RunError
from .evaluate.detector_names import SENTENCE_FLAGS, rate_metric
from .io import atomic_write_bytes
from .models import pick_device, resolve_model
from .publish import recorded_base
from .recipe import eval_config_from_options
from .stages.base import ModelRef
from .store import SCORE_STEP, TRANSLATIONS_FILE, RunStore, is_scoring_step, scored_system, scoring_step_id
from .tasks import load_and_score

MT_METRICS = ("chrf++", "bleu", "spbleu")
DETECTORS = tuple(rate_metric(name) for name in SENTENCE_FLAGS)
COST_COLUMNS = ("trainable_parameters", "train_seconds", "peak_memory_mb")


@dataclass
class Comparison:
    """Adapters (``variants``) against the model they started from (``reference``), on the same sentences.

    ``rows``, ``retention``, ``costs`` and ``paired`` are plain records (what ``workbench compare --format
    json`` prints); :attr:`table`, :meth:`significance`, :meth:`disagreements` and :meth:`plot` are the
    notebook views of them.
    """

    stage: str
    reference: str  # the model every variant started from
    variants: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per system x direction
    retention: list[dict[str, Any]] = field(default_factory=list)  # one per system x language
    costs: dict[str, dict[str, Any]] = field(default_factory=dict)  # per variant
    paired: list[dict[str, Any]] = field(default_factory=list)  # paired bootstrap against ``baseline``
    baseline: str | None = None
    n_samples: int = 1000
    translations: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict, repr=False)

    @property
    def systems(self) -> list[str]:
        return [self.reference, *self.variants]

    @property
    def table(self) -> pd.DataFrame:
        """Tidy: one row per system x direction x metric (translation metrics and detector rates), with the
        system's trainable parameters, training time and peak memory.

        >>> table = wb.load_run(RUN_DIR).compare(n_samples=50).table
        >>> list(table.columns[:4])
        ['adapter', 'direction', 'metric', 'value']
        """
        out = []
        for row in self.rows:
            cost = self.costs.get(row["system"], {})
            for metric in (*MT_METRICS, *DETECTORS):
                if row.get(metric) is not None:
                    out.append({"adapter": row["system"], "direction": row["direction"], "metric": metric,
                                "value": row[metric], **{k: cost.get(k) for k in COST_COLUMNS}})
        return pd.DataFrame(out, columns=["adapter", "direction", "metric", "value", *COST_COLUMNS])

    def significance(self, baseline: str | None = None, n_samples: int | None = None) -> pd.DataFrame:
        """BLEU and chrF++ of every system with sacrebleu's paired bootstrap p-value and 95% confidence
        interval against ``baseline`` (default: the comparison's baseline); one row per system x direction.

        >>> comparison = wb.load_run(RUN_DIR).compare(n_samples=50)
        >>> frame = comparison.significance(baseline=comparison.variants[0])
        >>> {"chrf++", "chrf++_ci", "chrf++_p", "bleu", "bleu_p"} <= set(frame.columns)
        True
        """
        baseline = baseline or self.baseline or self.reference
        if baseline not in self.systems:
            raise RunError(f"unknown baseline '{baseline}': use one of {', '.join(self.systems)}")
        samples = n_samples or self.n_samples
        if baseline == self.baseline and samples == self.n_samples and self.paired:
            rows = self.paired
        else:
            rows = paired_significance(self.translations, baseline, n_samples=samples)
        return pd.DataFrame(rows)

    def disagreements(self, n: int = 10, direction: str | None = None) -> pd.DataFrame:
        """The ``n`` sentences where the systems differ most: spread (max - min) of sentence chrF++,
        ties broken by how many detector flags differ. One row per sentence, a hypothesis and chrF++
        column per system.

        >>> top = wb.load_run(RUN_DIR).compare(n_samples=50).disagreements(2)
        >>> len(top), bool(top["chrf_spread"].is_monotonic_decreasing)
        (2, True)
        """
        rows = []
        for name in self.directions() if direction is None else [direction]:
            per_system = {s: {r["index"]: r for r in self.translations.get(s, {}).get(name, [])}
                          for s in self.systems}
            shared = set.intersection(*(set(v) for v in per_system.values())) if per_system else set()
            for index in sorted(shared):
                first = per_system[self.systems[0]][index]
                row: dict[str, Any] = {"direction": name, "index": index, "source": first["source"],
                                       "reference": first["reference"]}
                scores, flag_sets = [], set()
                for system in self.systems:
                    r = per_system[system][index]
                    row[f"{system}: hypothesis"] = r["hypothesis"]
                    row[f"{system}: chrf"] = r.get("chrf")
                    scores.append(r.get("chrf") or 0.0)
                    flag_sets.add(tuple(sorted(k for k, v in (r.get("flags") or {}).items() if v)))
                row["chrf_spread"] = max(scores) - min(scores)
                row["flag_patterns"] = len(flag_sets)
                rows.append(row)
        frame = pd.DataFrame(rows)
        if frame.empty:
            return frame
        frame = frame.sort_values(["chrf_spread", "flag_patterns"], ascending=False, kind="stable")
        return frame.head(n).reset_index(drop=True)

    def directions(self) -> list[str]:
        return sorted({r["direction"] for r in self.rows})

    def plot(self, metric: str = "chrf++") -> Figure:
        """Bars of ``metric`` per direction and system with 95% bootstrap confidence intervals (left), and
        the mean over directions against trainable parameters with the Pareto front (right).

        >>> figure = wb.load_run(RUN_DIR).compare(n_samples=50).plot()
        >>> len(figure.axes)
        2
        """
        return plot_comparison(self, metric)

    def _repr_html_(self) -> str:
        wide = self.table.pivot_table(index=["adapter"], columns=["direction", "metric"], values="value",
                                      sort=False)
        return (f"<h4>{html.escape(self.stage)}: {len(self.variants)} adapters against "
                f"{html.escape(self.reference)}</h4>{wide.round(3).to_html()}")


def compare_run(store: RunStore, *, stage: str | None = None, baseline: str | None = None,
                n_samples: int = 1000) -> Comparison:
    """Tables of every variant of ``stage`` (default: the last stage with variants); significance of
    BLEU and chrF++ against ``baseline`` (a variant name, or the reference model by default).

    >>> comparison = wb.compare_run(wb.load_run(RUN_DIR).store, n_samples=50)
    >>> comparison.reference in comparison.systems
    True
    """
    steps = store.steps()  # directories resolved inside the run, even if it was moved
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
    translations = {names[v]: _translations(steps, s, v) for s, v in systems}
    comparison.translations = translations
    comparison.n_samples = n_samples
    comparison.paired = paired_significance(translations, comparison.baseline, n_samples=n_samples)
    return comparison


def _stage_with_variants(steps: list[dict[str, Any]], store: RunStore) -> str:
    for step in reversed(steps):
        if step["kind"] != "base" and not is_scoring_step(step["id"]) and step.get("path"):
            record = RunStore.read_artifact(Path(step["path"]))
            if any(m.get("variant") for m in record.get("models", [])):
                return step["id"]
    raise RunError(f"{store.root}: no stage with variants (a finetune stage) in this run")


def _reference_stage(steps: list[dict[str, Any]], index: int) -> str:
    scored = {system for kind, system in map(scored_system, (s["id"] for s in steps))
              if kind == SCORE_STEP and "/" not in system}
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


def _translations(steps: list[dict[str, Any]], stage: str,
                  variant: str | None) -> dict[str, list[dict[str, Any]]]:
    step_id = scoring_step_id(SCORE_STEP, stage, variant)
    step = next((s for s in steps if s["id"] == step_id and s.get("path")), None)
    return _read_translations(Path(step["path"]) / TRANSLATIONS_FILE) if step else {}


def paired_significance(translations: dict[str, dict[str, list[dict[str, Any]]]], baseline: str, *,
                        n_samples: int = 1000) -> list[dict[str, Any]]:
    """Per direction and system: BLEU and chrF++ with sacrebleu's paired bootstrap p-value and 95%
    confidence interval against ``baseline`` (``translations``: system -> direction -> rows).

    One correction: a system whose outputs are *identical* to the baseline's gets p = 1 and
    ``identical_to_baseline: True``. sacrebleu's ``bs`` test counts resampled differences strictly
    greater than the observed one, so for identical outputs (every difference 0) it reports the
    smallest possible p, 1/(n_samples+1): "significant" for the same translations.
    """
    out = []
    base = translations.get(baseline, {})
    for direction, base_rows in sorted(base.items()):
        order = [r["index"] for r in base_rows]
        refs = [r["reference"] for r in base_rows]
        systems = [(baseline, [r["hypothesis"] for r in base_rows])]
        identical: dict[str, bool] = {}
        for name, rows in translations.items():
            if name == baseline or direction not in rows:
                continue
            by_index = {r["index"]: r["hypothesis"] for r in rows[direction]}
            if set(by_index) != set(order):
                continue  # not scored on the same sentences: no paired test
            systems.append((name, [by_index[i] for i in order]))
            identical[name] = systems[-1][1] == systems[0][1]
        if len(systems) < 2:
            continue
        test = PairedTest(systems, {"bleu": BLEU(), "chrf++": CHRF(word_order=2)}, [refs], test_type="bs",
                          n_samples=n_samples)
        signatures, results = test()
        metric_keys = [k for k in results if k != "System"]
        for position, name in enumerate(results["System"]):
            same = identical.get(name, False)
            row: dict[str, Any] = {"system": name, "direction": direction, "baseline": baseline,
                                   "identical_to_baseline": same}
            for key in metric_keys:
                metric = "bleu" if key.lower().startswith("bleu") else "chrf++"
                result = results[key][position]
                row[metric] = float(result.score)
                row[f"{metric}_ci"] = float(result.ci) if result.ci is not None else None
                p_value = None if result.p_value is None else (1.0 if same else float(result.p_value))
                row[f"{metric}_p"] = p_value
                row[f"{metric}_signature"] = str(signatures[key])
            out.append(row)
    return out


def pareto_plot(comparison: Comparison, path: Path, metric: str = "chrf++") -> Path:
    """Quality (``metric`` averaged over directions) against trainable parameters, training time and
    peak memory, one point per variant; the Pareto-optimal ones joined. Written as PNG."""
    quality = _mean_quality(comparison, metric)
    axes_spec = [("trainable_parameters", "trainable parameters"), ("train_seconds", "training time (s)"),
                 ("peak_memory_mb", "peak memory (MB)")]
    fig = Figure(figsize=(13, 3.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    for ax, (key, label) in zip(axes, axes_spec, strict=True):
        points = [(comparison.costs[v][key], quality[v], v) for v in quality if comparison.costs[v].get(key)]
        _scatter_with_front(ax, points, log_x=key == "trainable_parameters")
        ax.set(xlabel=label, ylabel=f"{metric} (mean over directions)")
    fig.suptitle(f"{comparison.stage}: quality against cost")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _mean_quality(comparison: Comparison, metric: str) -> dict[str, float]:
    """``metric`` of each variant averaged over directions (variants without it left out)."""
    quality = {}
    for variant in comparison.variants:
        values = [r[metric] for r in comparison.rows if r["system"] == variant and r.get(metric) is not None]
        if values:
            quality[variant] = sum(values) / len(values)
    return quality


def _scatter_with_front(ax: Any, points: list[tuple[float, float, str]], *, log_x: bool) -> None:
    """Labelled points (cost, quality, name), the Pareto front dashed; a log cost axis over a 10x range."""
    for x, y, name in points:
        ax.scatter(x, y, s=40)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    front = _pareto_front([(x, y) for x, y, _ in points])
    if len(front) > 1:
        ax.plot(*zip(*front, strict=True), linestyle="--", color="0.5")
    xs = [x for x, _, _ in points]
    if log_x and xs and max(xs) > 10 * min(xs):
        ax.set_xscale("log")


def _pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both lower cost and higher quality, by cost."""
    front, best = [], float("-inf")
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def plot_comparison(comparison: Comparison, metric: str = "chrf++") -> Figure:
    """See :meth:`Comparison.plot`."""
    figure = Figure(figsize=(12, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    bars, pareto = figure.subplots(1, 2, width_ratios=[3, 2])
    paired = {(r["system"], r["direction"]): r for r in comparison.paired}
    directions = comparison.directions()
    width = 0.8 / max(1, len(comparison.systems))
    for i, system in enumerate(comparison.systems):
        values, errors = [], []
        for direction in directions:
            row = next((r for r in comparison.rows if r["system"] == system and r["direction"] == direction), {})
            sig = paired.get((system, direction), {})
            values.append(sig.get(metric, row.get(metric)) or 0.0)
            errors.append(sig.get(f"{metric}_ci") or 0.0)
        bars.bar([x + i * width for x in range(len(directions))], values, width=width, yerr=errors, capsize=3,
                 label=system)
    bars.set_xticks([x + 0.4 - width / 2 for x in range(len(directions))], directions, rotation=15, ha="right")
    bars.set(title=f"{metric} per direction (95% bootstrap CI)", ylabel=metric)
    bars.grid(True, axis="y", alpha=0.3)
    bars.legend(fontsize=8)
    quality = _mean_quality(comparison, metric)
    points = [(comparison.costs.get(v, {}).get("trainable_parameters"), quality[v], v) for v in quality]
    _scatter_with_front(pareto, [p for p in points if p[0]], log_x=True)
    pareto.set(title="quality against trainable parameters", xlabel="trainable parameters",
               ylabel=f"{metric} (mean over directions)")
    pareto.grid(True, alpha=0.3)
    return figure


# -- comparing adapters outside a run ---------------------------------------------------------------------
def compare_adapters(
    base: str | Path | None,
    adapters: Mapping[str, str | Path] | Sequence[str | Path] | str | Path,
    sets: str | Path,
    directions: Sequence[str],
    *,
    lm_sets: str | Path | None = None,
    languages: Sequence[str] = (),
    split: str = "dev",
    max_sentences: int | None = 100,
    shots: int = 1,
    prompt: str = "auto",
    max_new_tokens: int | None = None,
    lid_seed: str | Path | None = None,
    baseline: str | None = None,
    n_samples: int = 1000,
    device: str | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> Comparison:
    """Translate ``sets`` in every direction with ``base`` and with each adapter applied to it, and
    compare them: metrics and detector rates, significance against ``baseline`` (default: the base),
    LM retention on ``lm_sets``/``languages`` when given, trainable parameters.

    ``base``: any model source recipes accept (``hf:<repo>``, a directory, ``smollm2-135m``...), or
    ``None`` for the base recorded in the adapters' ``metadata.json``. ``adapters``: ``{name: dir}``, a
    list of adapter directories (named by their folder), or one folder holding adapter folders
    (``adapters/<run>``). Per-sentence files are written to ``out_dir/<system>/`` when given.
    ``max_new_tokens``: a hard cap on every sentence's token budget (which follows its length in characters).

    >>> comparison = wb.compare_adapters(None, ADAPTERS_DIR, SETS, ["eng_Latn-srd_Latn"],
    ...                                  max_sentences=4, max_new_tokens=8, n_samples=50, progress=False)
    >>> comparison.table["adapter"].iloc[0]
    'base'
    """
    named = _adapter_dirs(adapters)
    base_source = str(base) if base is not None else recorded_base(named)
    cfg = eval_config_from_options(
        lm_sets=str(lm_sets) if lm_sets else None, mt_sets=str(sets), languages=list(languages),
        directions=list(directions), split=split, max_sentences=max_sentences, shots=shots, prompt=prompt,
        lid_seed=str(lid_seed) if lid_seed else None)
    cfg = cfg.model_copy(update={"mt": cfg.mt.model_copy(update={"max_new_tokens": max_new_tokens})})
    device = pick_device(device)
    path = resolve_model(base_source).path
    scratch = None if out_dir is not None else tempfile.TemporaryDirectory(prefix="workbench-compare-")
    root = Path(out_dir) if out_dir is not None else Path(scratch.name)
    try:
        board: list[dict[str, Any]] = []
        translations: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for name, adapter in [("base", None), *named.items()]:
            stage, variant = ("base", None) if adapter is None else ("adapter", name)
            board += load_and_score(ModelRef(path, adapter), cfg, root / name, stage=stage, variant=variant,
                                    device=device, progress=progress)
            translations[name] = _read_translations(root / name / TRANSLATIONS_FILE)
    finally:
        if scratch is not None:
            scratch.cleanup()
    comparison = Comparison("adapters", "base", list(named))
    systems = [("base", None)] + [("adapter", v) for v in named]
    comparison.rows = _metric_rows(board, systems)
    comparison.retention = _retention(board, systems)
    comparison.costs = {name: _adapter_cost(directory) for name, directory in named.items()}
    comparison.translations = translations
    comparison.baseline = baseline or "base"
    if comparison.baseline not in comparison.systems:
        raise RunError(f"unknown baseline '{baseline}': use one of {', '.join(comparison.systems)}")
    comparison.n_samples = n_samples
    comparison.paired = paired_significance(translations, comparison.baseline, n_samples=n_samples)
    return comparison


def _adapter_dirs(adapters: Mapping[str, str | Path] | Sequence[str | Path] | str | Path) -> dict[str, Path]:
    if isinstance(adapters, str | Path):
        folder = Path(adapters)
        if (folder / "adapter_config.json").is_file():
            named = {folder.name: folder}
        else:
            named = {p.parent.name: p.parent for p in sorted(folder.glob("*/adapter_config.json"))}
            if not named:
                raise DataError(f"{folder}: no adapter here (no adapter_config.json in it or its sub-folders)")
    elif isinstance(adapters, Mapping):
        named = {str(k): Path(v) for k, v in adapters.items()}
    else:
        named = {Path(v).name: Path(v) for v in adapters}
    for name, directory in named.items():
        if not (directory / "adapter_config.json").is_file():
            raise DataError(f"adapter '{name}': {directory} has no adapter_config.json; give a peft adapter folder")
        if name == "base":
            raise DataError("an adapter may not be called 'base' (the name of the model without adapter)")
    return named


def _adapter_cost(directory: Path) -> dict[str, Any]:
    """Trainable parameters (the adapter's tensors), time and memory from its metadata when recorded."""
    meta_path = directory / "metadata.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    cost = _cost(meta)
    if not cost.get("trainable_parameters"):
        weights = directory / "adapter_model.safetensors"
        if weights.is_file():
            with safe_open(str(weights), "pt") as handle:
                cost["trainable_parameters"] = sum(_numel(handle.get_slice(k).get_shape()) for k in handle.keys())  # noqa: SIM118
    return cost


def _numel(shape: Sequence[int]) -> int:
    total = 1
    for size in shape:
        total *= int(size)
    return total


def _read_translations(path: Path) -> dict[str, list[dict[str, Any]]]:
    by_direction: dict[str, list[dict[str, Any]]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                by_direction.setdefault(row["direction"], []).append(row)
    return by_direction
