"""The scoreboard functions, and the app's Runs and Scores tabs on a hand-written store."""

from __future__ import annotations

import inspect
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # until the package is installed
    sys.path.insert(0, str(REPO_ROOT))

from workbench import scoreboard  # noqa: E402
from workbench.store import SCORE_FIELDS, RunStore  # noqa: E402
from workbench_ui import app as ui_app  # noqa: E402
from workbench_ui.context import AppContext  # noqa: E402
from workbench_ui.tabs import runs as runs_tab  # noqa: E402
from workbench_ui.tabs import scores as scores_tab  # noqa: E402

RUN = "srd-gemma-demo"
OTHER_RUN = "srd-gemma-interrupted"
LANGS = ("srd_Latn", "eng_Latn")
DIRECTION = "eng_Latn-srd_Latn"
SIGNATURE = "nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:2.4.3"

# bits per byte per (stage/variant, language): the numbers the hand-computed checks below use.
BPB = {
    "base": {"srd_Latn": 1.48, "eng_Latn": 0.82},
    "tokenizer": {"srd_Latn": 1.41, "eng_Latn": 0.85},
    "cpt": {"srd_Latn": 1.12, "eng_Latn": 0.86},
    "finetune/lora-r8": {"srd_Latn": 1.05, "eng_Latn": 0.88},
    "finetune/rslora-r8": {"srd_Latn": 1.02, "eng_Latn": 0.87},
    "finetune/dora-r8": {"srd_Latn": 1.04, "eng_Latn": 0.91},
}
CHRF = {
    "base": 18.4,
    "cpt": 27.9,
    "finetune/lora-r8": 35.2,
    "finetune/rslora-r8": 36.1,
    "finetune/dora-r8": 34.0,
}
BLEU = {"base": 2.1, "cpt": 5.6, "finetune/lora-r8": 9.8, "finetune/rslora-r8": 10.4, "finetune/dora-r8": 9.1}


def _split(row: str) -> tuple[str, str | None]:
    stage, _, variant = row.partition("/")
    return stage, variant or None


def make_records() -> list[dict[str, Any]]:
    """Realistic scoreboard records: lm per language, mt per direction, in pipeline order."""
    records: list[dict[str, Any]] = []
    for row, per_language in BPB.items():
        stage, variant = _split(row)
        for language, bpb in per_language.items():
            common = {"stage": stage, "variant": variant, "kind": "lm", "language": language, "n": 400}
            records.append({**common, "metric": "bits_per_byte", "value": bpb, "prefix_policy": "bos"})
            records.append(
                {**common, "metric": "bits_per_char", "value": round(bpb * 1.07, 4), "prefix_policy": "bos"}
            )
            if stage != "tokenizer":  # token perplexity is not comparable across tokenizers
                ppl = round(2 ** (bpb * 3.1), 3)
                records.append({**common, "metric": "token_perplexity", "value": ppl, "prefix_policy": "bos"})
        if row in CHRF:
            common = {"stage": stage, "variant": variant, "kind": "mt", "direction": DIRECTION, "n": 200}
            records.append({**common, "metric": "chrf++", "value": CHRF[row], "signature": SIGNATURE})
            records.append({**common, "metric": "bleu", "value": BLEU[row], "signature": SIGNATURE})
    return records


def write_run(workspace: Path, name: str, records: list[dict[str, Any]], finished: bool) -> RunStore:
    """A run directory written through the store API: manifest, events and scoreboard."""
    store = RunStore(workspace, name)
    steps = [
        {"id": "tokenizer", "kind": "tokenizer", "key": "a3f9" * 16, "status": "ran", "seconds": 41.7},
        {"id": "cpt", "kind": "cpt", "key": "7c21" * 16, "status": "ran", "seconds": 1835.2},
        {"id": "finetune", "kind": "finetune", "key": "e0d4" * 16, "status": "ran", "seconds": 912.4},
        {"id": "score", "kind": "score", "key": "19bb" * 16, "status": "ran", "seconds": 305.0},
    ]
    if not finished:
        steps[2:] = [{**s, "status": "pending", "seconds": None} for s in steps[2:]]
    store.write_manifest(
        {
            "name": name,
            "recipe": {"name": name, "base_model": "gemma-3-270m", "language": "srd_Latn", "seed": 1234},
            "steps": steps,
            "device": "cpu",
            "versions": {"workbench": "0.1.0", "torch": "2.13.0", "transformers": "4.56.0"},
            "seed": 1234,
        }
    )
    store.log_event("run_started", recipe=name)
    for step in steps:
        if step["status"] == "ran":
            store.log_event("step_started", step=step["id"])
            store.log_event("step_finished", step=step["id"], seconds=step["seconds"])
    if finished:
        store.log_event("run_finished")
    store.write_scoreboard(records)
    return store


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return make_records()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, records: list[dict[str, Any]]) -> Path:
    root = tmp_path_factory.mktemp("workspace")
    write_run(root, OTHER_RUN, records[:8], finished=False)
    write_run(root, RUN, records, finished=True)  # written last: the most recent run
    return root


# -- scoreboard.py --------------------------------------------------------------------------------------
def test_to_frame_columns_rows_and_stage_order(records: list[dict[str, Any]]) -> None:
    shuffled = records[::2] + records[1::2]  # interleave stages: grouping must follow first appearance
    frame = scoreboard.to_frame(shuffled)
    for column in (
        "stage",
        "variant",
        "kind",
        "language",
        "direction",
        "metric",
        "value",
        "n",
        "column",
        "row",
    ):
        assert column in frame.columns
    assert len(frame) == len(records)
    assert list(dict.fromkeys(frame["row"])) == list(BPB)
    assert list(dict.fromkeys(frame["stage"])) == ["base", "tokenizer", "cpt", "finetune"]
    mt = frame[frame["kind"] == "mt"]
    assert set(mt["column"]) == {DIRECTION}
    assert set(frame.loc[frame["kind"] == "lm", "column"]) == set(LANGS)


def test_pivot_values_equal_records(records: list[dict[str, Any]]) -> None:
    table = scoreboard.pivot(records)
    assert list(table.columns) == [*LANGS, DIRECTION]
    assert [row for row, _ in table.index][:3] == ["base"] * 3
    for record in records:
        row = scoreboard.row_label(record)
        column = record.get("language") or record["direction"]
        assert table.loc[(row, record["metric"]), column] == record["value"]
    assert table.loc[("cpt", "bits_per_byte"), "srd_Latn"] == 1.12
    assert table.loc[("finetune/dora-r8", "chrf++"), DIRECTION] == 34.0
    assert math.isnan(table.loc[("cpt", "chrf++"), "srd_Latn"])
    lm = scoreboard.pivot(records, kind="lm")
    assert list(lm.columns) == list(LANGS)
    assert set(lm.index.get_level_values("metric")) == {"bits_per_byte", "bits_per_char", "token_perplexity"}


def test_delta_vs_base_hand_computed(records: list[dict[str, Any]]) -> None:
    delta = scoreboard.delta_vs_base(records)
    assert delta.shape == scoreboard.pivot(records).shape
    assert delta.loc[("cpt", "bits_per_byte"), "srd_Latn"] == pytest.approx(1.12 - 1.48)
    assert delta.loc[("tokenizer", "bits_per_byte"), "eng_Latn"] == pytest.approx(0.85 - 0.82)
    assert delta.loc[("finetune/rslora-r8", "bits_per_byte"), "srd_Latn"] == pytest.approx(-0.46)
    assert delta.loc[("finetune/lora-r8", "chrf++"), DIRECTION] == pytest.approx(35.2 - 18.4)
    assert delta.loc[("finetune/dora-r8", "bleu"), DIRECTION] == pytest.approx(7.0)
    assert delta.loc["base"].isna().all().all()


def test_rich_table_cells_signs_and_colours(records: list[dict[str, Any]]) -> None:
    from rich.console import Console

    table = scoreboard.render_table(records)
    headers = [str(c.header) for c in table.columns]
    assert headers == ["stage", "variant", "metric", *LANGS, DIRECTION]
    stages = [str(c) for c in table.columns[0].cells if str(c)]
    assert stages == ["base", "tokenizer", "cpt", "finetune"]  # each stage name shown once
    rows = list(zip(*(list(c.cells) for c in table.columns), strict=True))
    cpt_bpb = next(r for r in rows if str(r[2]) == "bits_per_byte" and str(r[0]) == "cpt")
    assert str(cpt_bpb[3]) == "1.120 (-0.360)" and cpt_bpb[3].style == "green"  # lower is better
    assert str(cpt_bpb[4]) == "0.860 (+0.040)" and cpt_bpb[4].style == "red"
    chrf = [r for r in rows if str(r[2]) == "chrf++"]
    assert str(chrf[1][5]) == "27.90 (+9.50)" and chrf[1][5].style == "green"  # higher is better
    console = Console(record=True, width=200, color_system=None)
    scoreboard.print_scoreboard(records, console)
    text = console.export_text()
    assert "1.020 (-0.460)" in text and "rslora-r8" in text


def test_csv_and_json_round_trip(records: list[dict[str, Any]]) -> None:
    text = scoreboard.to_csv(records)
    frame = pd.read_csv(io.StringIO(text))
    assert len(frame) == len(records)
    assert {"stage", "variant", "metric", "value", "n", "column", "row"} <= set(frame.columns)
    # every score field comes back (None when empty), extras (signature, prefix_policy) when set
    expected = [
        {**{f: r.get(f) for f in SCORE_FIELDS}, **{k: r[k] for k in r if k not in SCORE_FIELDS}}
        for r in records
    ]
    assert scoreboard.from_csv(text) == expected
    assert json.loads(scoreboard.to_json(records)) == records


def test_plot_lm_one_line_per_language(records: list[dict[str, Any]]) -> None:
    figure = scoreboard.plot_lm(records)
    (axes,) = figure.axes
    lines = {line.get_label(): list(line.get_ydata()) for line in axes.get_lines()}
    assert set(lines) == set(LANGS)
    for language in LANGS:
        assert lines[language] == [BPB[row][language] for row in BPB]
    assert [t.get_text() for t in axes.get_xticklabels()] == list(BPB)
    assert axes.get_title() and axes.get_xlabel() == "stage" and "bits per byte" in axes.get_ylabel()
    assert scoreboard.plot_lm([]).axes[0].get_lines() == []


# -- the app's tab functions on the same store ------------------------------------------------------------
def test_runs_tab_and_scores_tab_read_the_store(workspace: Path) -> None:
    ctx = AppContext.create(workspace.parent, workspace)
    frame = runs_tab.runs_frame(ctx)
    assert list(frame["name"]) == sorted([RUN, OTHER_RUN])
    by_name = frame.set_index("name")
    assert by_name.loc[RUN, "status"] == "finished" and by_name.loc[RUN, "stages finished"] == "4/4"
    assert by_name.loc[OTHER_RUN, "status"] == "interrupted"
    assert by_name.loc[OTHER_RUN, "stages finished"] == "2/4"
    assert by_name.loc[RUN, "last update"]
    assert ctx.latest_run() == RUN
    description = runs_tab.describe(ctx, RUN)
    assert RUN in description and "finished" in description
    timeline = runs_tab.timeline_frame(ctx, RUN)
    assert list(timeline["step"]) == ["tokenizer", "cpt", "finetune", "score"]
    assert list(timeline["seconds"]) == [41.7, 1835.2, 912.4, 305.0]
    table = scores_tab.table(ctx, RUN)
    cpt = table[(table["stage"] == "cpt") & (table["metric"] == "bits_per_byte")]
    assert cpt["srd_Latn"].item() == "1.120 (-0.360)"
    for bad in ("../" + workspace.name + "/" + RUN, "/etc", "", None):  # only names the store lists
        assert ctx.run(bad) is None and runs_tab.timeline_frame(ctx, bad).empty
    assert inspect.signature(ui_app.launch).parameters["host"].default == "127.0.0.1"


def test_bits_per_byte_is_labelled_as_a_within_language_number() -> None:
    """UTF-8 costs 3 bytes per Devanagari character: the table says bits per byte compares stages, not languages,
    with each language's bytes per character (bits per character over bits per byte)."""
    from rich.console import Console

    def lm(language: str, metric: str, value: float) -> dict[str, Any]:
        return {"stage": "base", "variant": None, "kind": "lm", "language": language, "metric": metric,
                "value": value, "n": 5}

    records = [lm("hin_Deva", "bits_per_byte", 1.78), lm("hin_Deva", "bits_per_char", 4.50),
               lm("eng_Latn", "bits_per_byte", 1.33), lm("eng_Latn", "bits_per_char", 1.33)]
    ratios = scoreboard.bytes_per_char(records)
    assert ratios["hin_Deva"] == pytest.approx(4.50 / 1.78) and ratios["eng_Latn"] == pytest.approx(1.0)
    console = Console(width=200, record=True)
    scoreboard.print_scoreboard(records, console)
    assert "compares stages of one language" in console.export_text()
    figure = scoreboard.plot_lm(records)
    assert any("bits_per_char" in text.get_text() for text in figure.texts)
