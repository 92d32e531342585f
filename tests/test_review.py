"""What the app stores and computes outside the browser: ratings and agreement, marks, segmentations,
background runs, the workspace sandbox and the exposure rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import krippendorff
import numpy as np
import pandas as pd
import pytest
from transformers import AutoTokenizer

from workbench import launcher, marks, review
from workbench.errors import DataError, RunError
from workbench.tokenize.segmentation import counts, segment, to_html
from workbench_ui.app import ExposedWithoutCredentials, launch
from workbench_ui.context import AppContext, OutsideWorkspace
from workbench_ui.tabs import recipe as recipe_tab

ROOT = Path(__file__).resolve().parents[1]
STORIES = ROOT / "tests" / "fixtures" / "stories260K"


def _items(n: int = 6) -> list[review.Item]:
    return [review.Item("eng_Latn-srd_Latn", i // 2, f"finetune/v{i % 2}", f"src {i}", f"ref {i}", f"hyp {i}")
            for i in range(n)]


def _scores(adequacy: int = 4, invented: bool = False) -> dict:
    return {"adequacy": adequacy, "fluency": 5, "orthography": 3, "invented": invented}


def test_blind_order_is_per_reviewer_and_skips_rated_items(tmp_path: Path) -> None:
    items = _items()
    anna, bruno = review.blind_order(items, "Anna"), review.blind_order(items, "Bruno")
    assert sorted(i.key for i in anna) == sorted(i.key for i in items)
    assert anna == review.blind_order(items, " Anna ") and anna != bruno  # stable, and personal
    first = review.next_item(items, "Anna", [])
    assert first == anna[0]
    review.add_rating(tmp_path, review.rating_record(first, "Anna", _scores()))
    ratings = review.load_ratings(tmp_path)
    assert review.next_item(items, "Anna", ratings) == anna[1]
    with pytest.raises(DataError, match="adequacy: give a whole number from 1 to 5"):
        review.rating_record(first, "Anna", _scores(adequacy=7))
    with pytest.raises(DataError, match="reviewer"):
        review.rating_record(first, "  ", _scores())


def test_overlap_gives_every_item_k_independent_ratings(tmp_path: Path) -> None:
    """Item 5: an item someone rated goes to the next reviewer first, until it has k ratings."""
    items = _items(8)
    for k in (2, 3):
        ratings: list[dict] = []
        reviewers = ["Anna", "Bruno", "Carla", "Dario"]
        while True:  # reviewers take turns, one item each, until nobody has anything left
            given = [(who, review.next_item(items, who, ratings, ratings_per_item=k)) for who in reviewers]
            given = [(who, item) for who, item in given if item is not None]
            if not given:
                break
            who, item = given[0]
            ratings.append(review.rating_record(item, who, _scores()))
            reviewers = reviewers[1:] + reviewers[:1]
        counts = review.rating_counts(ratings)
        assert all(counts[item.key] == k for item in items), counts  # k each, never more
        progress = review.progress(items, "Anna", ratings, k)
        assert progress["complete"] == progress["total"] == 8 and progress["ratings_per_item"] == k
    # Bruno's first item is the one Anna has started, not one of his own order
    started = review.next_item(items, "Anna", [])
    assert review.next_item(items, "Bruno", [review.rating_record(started, "Anna", _scores())]) == started


def test_item_ids_sent_to_the_browser_are_opaque(tmp_path: Path) -> None:
    """Item 3: the browser sees an id that names neither system nor sentence; the mapping is on the server."""
    items = _items()
    mapping = review.by_opaque_id(tmp_path, items)
    assert set(mapping.values()) == set(items)
    for opaque, item in mapping.items():
        assert len(opaque) == 16 and item.system not in opaque and "|" not in opaque
    assert review.by_opaque_id(tmp_path, items) == mapping  # stable: the secret is stored once
    assert oct((tmp_path / review.SECRET_FILE).stat().st_mode & 0o777) == "0o600"
    other = tmp_path / "other"
    other.mkdir()
    assert set(review.by_opaque_id(other, items)) != set(mapping)  # another run, other ids


def test_two_windows_of_one_reviewer_never_silently_replace_a_rating(tmp_path: Path) -> None:
    """Item 4: the first save wins; a second window's save of the same item is refused with a notice;
    editing the rating one opened on works."""
    item = _items()[0]
    first = review.save_rating(tmp_path, review.rating_record(item, "Anna", _scores(2)), based_on=None)
    with pytest.raises(review.RatingConflict, match="already rated this output"):
        review.save_rating(tmp_path, review.rating_record(item, "Anna", _scores(5)), based_on=None)
    assert review.load_ratings(tmp_path)[0]["adequacy"] == 2
    edited = review.save_rating(tmp_path, review.rating_record(item, "Anna", _scores(4)), based_on=first["time"])
    with pytest.raises(review.RatingConflict):  # a window still showing the first version is refused too
        review.save_rating(tmp_path, review.rating_record(item, "Anna", _scores(1)), based_on=first["time"])
    (rating,) = review.load_ratings(tmp_path)
    assert rating["adequacy"] == 4 and rating["time"] == edited["time"]
    review.save_rating(tmp_path, review.rating_record(item, "Bruno", _scores(1)), based_on=None)  # others: own


def test_review_settings_per_run(tmp_path: Path) -> None:
    assert review.load_settings(tmp_path)["ratings_per_item"] == review.DEFAULT_RATINGS_PER_ITEM >= 2
    review.save_settings(tmp_path, 3, "Rate the **meaning** first.")
    assert review.load_settings(tmp_path) == {"ratings_per_item": 3, "guidelines": "Rate the **meaning** first."}
    for bad in (1, 11, 2.5, None):
        with pytest.raises(DataError, match="ratings per item"):
            review.save_settings(tmp_path, bad, "")


def test_exported_ratings_carry_the_texts_and_the_system(tmp_path: Path) -> None:
    """Item 6: the owner's export: direction, item, source, reference, hypothesis, system, reviewer,
    criteria, comment."""
    items = _items()
    review.add_rating(tmp_path, review.rating_record(items[1], "<img src=x>", _scores(5, True), "good, <b>"))
    (row,) = review.export_rows(tmp_path, items)
    assert tuple(row) == review.EXPORT_FIELDS
    assert row["direction"] == "eng_Latn-srd_Latn" and row["system"] == "finetune/v1"
    assert (row["source"], row["reference"], row["hypothesis"]) == ("src 1", "ref 1", "hyp 1")
    assert row["reviewer"] == "<img src=x>" and row["comment"] == "good, <b>"  # raw data; the app escapes it
    assert row["adequacy"] == 5 and row["invented"] is True
    assert row["item"] == review.opaque_id(review.run_secret(tmp_path), items[1].key)


def test_a_later_rating_replaces_the_earlier_one_and_torn_lines_are_skipped(tmp_path: Path) -> None:
    item = _items()[0]
    for adequacy in (2, 5):
        review.add_rating(tmp_path, review.rating_record(item, "Anna", {"adequacy": adequacy, "fluency": 3,
                                                                        "orthography": 3, "invented": True}))
    with open(tmp_path / review.REVIEWS_FILE, "a") as handle:
        handle.write('{"reviewer": "Anna", "item": ')  # killed mid-write
    ratings = review.load_ratings(tmp_path)
    assert len(ratings) == 1 and ratings[0]["adequacy"] == 5
    summary = review.summary(ratings)
    assert summary.loc[0, "adequacy"] == 5 and summary.loc[0, "invented_rate"] == 1.0
    records = review.records(ratings)
    assert {"stage": "finetune", "variant": "v0", "kind": "human", "direction": "eng_Latn-srd_Latn",
            "metric": "human_adequacy", "value": 5.0, "n": 1} in records


def test_agreement_equals_krippendorffs_alpha_on_the_same_ratings(tmp_path: Path) -> None:
    items = _items()
    table = {"Anna": [1, 2, 3, 4, 5, 3], "Bruno": [1, 2, 4, 4, 5, 2], "Carla": [2, 2, 3, None, 5, 3]}
    for reviewer, values in table.items():
        for item, value in zip(items, values, strict=True):
            if value is not None:
                review.add_rating(tmp_path, review.rating_record(
                    item, reviewer, {"adequacy": value, "fluency": 3, "orthography": value, "invented": value > 3}))
    frame = review.agreement(review.load_ratings(tmp_path)).set_index("criterion")
    data = np.array([[np.nan if v is None else v for v in values] for values in table.values()], dtype=float)
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal")
    assert frame.loc["adequacy", "alpha"] == pytest.approx(expected)
    assert frame.loc["adequacy", "items"] == 6 and frame.loc["adequacy", "reviewers"] == 3
    pairs = equal = 0  # exact agreement by hand: every pair of reviewers on every item
    for j in range(6):
        values = [row[j] for row in table.values() if row[j] is not None]
        for a in range(len(values)):
            for b in range(a + 1, len(values)):
                pairs, equal = pairs + 1, equal + (values[a] == values[b])
    assert frame.loc["adequacy", "exact_agreement"] == pytest.approx(equal / pairs)
    assert pd.isna(frame.loc["fluency", "alpha"])  # every rating 3: alpha undefined, not a fake number


def test_marks_are_added_to_every_crawl_stage_of_the_recipe(tmp_path: Path) -> None:
    from workbench.engine import build_steps
    from workbench.recipe import load_recipe

    from .conftest import tiny_recipe, write_recipe

    recipe = load_recipe(write_recipe(tmp_path / "tiny.yaml", tiny_recipe()))
    run_root = tmp_path / "runs" / "tiny"
    run_root.mkdir(parents=True)
    assert marks.with_marks(recipe, run_root) is recipe
    before = {s.id: s.key for s in build_steps(recipe)}
    marks.mark_bad(run_root, {"text": "Unu testu malu.", "language": "srd_Latn", "source": "x.txt", "offset": 3},
                   reason="machine translated", reviewer="Anna")
    marked = marks.with_marks(recipe, run_root)
    crawl = next(s for s in marked.stages if s.kind == "crawl")
    assert crawl.config.exclude == [marks.marks_path(run_root).resolve()]
    after = {s.id: s.key for s in build_steps(marked)}
    assert after["crawl"] != before["crawl"] and after["cpt"] != before["cpt"]  # the next run re-crawls
    assert marks.load_marks(run_root)[0]["reason"] == "machine translated"
    with pytest.raises(DataError, match="no text"):
        marks.mark_bad(run_root, {"text": " "}, reason="")


def test_a_mark_can_be_taken_back_and_the_crawl_key_returns(tmp_path: Path) -> None:
    """Item 2: unmarking rewrites the exclusion list without the mark and logs who took it back."""
    from workbench.engine import build_steps
    from workbench.recipe import load_recipe

    from .conftest import tiny_recipe, write_recipe

    recipe = load_recipe(write_recipe(tmp_path / "tiny.yaml", tiny_recipe()))
    run_root = tmp_path / "runs" / "tiny"
    run_root.mkdir(parents=True)
    unmarked_key = {s.id: s.key for s in build_steps(recipe)}["crawl"]
    first = marks.mark_bad(run_root, {"text": "Unu.", "language": "srd_Latn"}, reason="boilerplate", reviewer="A")
    second = marks.mark_bad(run_root, {"text": "Duos.", "language": "srd_Latn"}, reason="mt", reviewer="B")
    assert first["id"] != second["id"]
    marks.unmark(run_root, first["id"], reviewer="C")
    assert [m["text"] for m in marks.load_marks(run_root)] == ["Duos."]
    marks.unmark(run_root, marks.mark_id(second), reviewer="C")
    assert not marks.marks_path(run_root).exists()
    assert {s.id: s.key for s in build_steps(marks.with_marks(recipe, run_root))}["crawl"] == unmarked_key
    removed = [json.loads(line) for line in (run_root / marks.REMOVED_FILE).read_text().splitlines()]
    assert [r["mark"]["text"] for r in removed] == ["Unu.", "Duos."] and removed[0]["reviewer"] == "C"
    with pytest.raises(DataError, match="no mark"):
        marks.unmark(run_root, "nope")


def test_segmentation_pieces_rebuild_the_text_and_mark_byte_fallbacks() -> None:
    tokenizer = AutoTokenizer.from_pretrained(STORIES)  # SentencePiece-style with byte fallback
    text = "Su sardu ሰላም"
    pieces = segment(tokenizer, text)
    assert b"".join(p.data for p in pieces).decode("utf-8").strip() == text
    fallback = [p for p in pieces if p.byte_fallback]
    assert len(fallback) == len("ሰላም".encode())  # every Ethiopic byte is its own <0xNN> piece
    assert fallback[0].text == "<E1>"
    assert counts(pieces, text)["byte_fallback"] == 9
    assert to_html(pieces).count('class="wb-byte-fallback"') == 9


def test_the_workspace_sandbox(tmp_path: Path) -> None:
    ctx = AppContext.create(tmp_path)
    assert ctx.inside("recipes/a.yaml") == (tmp_path / "recipes" / "a.yaml").resolve()
    for bad in ("../x.yaml", "/etc/passwd", "recipes/../../x.yaml", "", "a\x00b"):
        with pytest.raises(OutsideWorkspace):
            ctx.inside(bad)
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(OutsideWorkspace):
        ctx.inside("link/passwd")  # a symlink out of the workspace is outside too
    with pytest.raises(OutsideWorkspace, match="not a recipe file"):
        ctx.recipe_path("runs/manifest.json")
    with pytest.raises(OutsideWorkspace):
        ctx.safe_name("../up", "output folder")
    with pytest.raises(OutsideWorkspace):
        AppContext.create(tmp_path / "a", runs=tmp_path / "b")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"x" * (ctx.max_upload_bytes + 1))
    assert "larger than" in recipe_tab.upload(ctx, str(big))[1]


def test_a_recipe_symlink_out_of_the_workspace_is_skipped_with_a_warning(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Item 12: listing recipes never follows a link out of the workspace (and does not crash)."""
    workspace, outside = tmp_path / "ws", tmp_path / "outside"
    (workspace / "recipes").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.yaml").write_text("name: x\n")
    (workspace / "recipes" / "good.yaml").write_text("name: good\n")
    (workspace / "recipes" / "escape.yaml").symlink_to(outside / "secret.yaml")
    (workspace / "recipes" / "inside.yaml").symlink_to(workspace / "recipes" / "good.yaml")
    ctx = AppContext.create(workspace)
    with caplog.at_level("WARNING", logger="workbench.ui"):
        assert ctx.recipe_files() == ["recipes/good.yaml", "recipes/inside.yaml"]
    assert "escape.yaml" in caplog.text and "outside the workspace" in caplog.text
    from workbench_ui.app import build_app

    build_app(ctx)  # the app starts


def test_workspace_means_the_run_store_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 13: ``workbench ui --workspace`` is the run store (as for ``workbench run``); the sandbox is
    ``--root`` or the current directory, never widened to the run store's parent; one way to start."""
    from click.testing import CliRunner

    from workbench import cli

    calls = []
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("workbench_ui.app.launch", lambda root, runs, **kw: calls.append((Path(root), Path(runs))))
    assert runner.invoke(cli.cli, ["ui", "--workspace", "store"]).exit_code == 0
    assert runner.invoke(cli.cli, ["ui", "--workspace", "p/runs", "--root", "p"]).exit_code == 0
    assert calls == [(tmp_path, Path("store")), (Path("p"), Path("p/runs"))]
    with pytest.raises(OutsideWorkspace, match="must be inside the project folder"):
        AppContext.create(tmp_path / "project", tmp_path / "elsewhere" / "runs")
    done = subprocess.run([sys.executable, "-m", "workbench_ui.app"], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "workbench ui" in done.stderr


def test_exposing_the_app_needs_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKBENCH_UI_AUTH", raising=False)
    for kwargs in ({"host": "0.0.0.0"}, {"share": True}):
        with pytest.raises(ExposedWithoutCredentials, match="needs credentials"):
            launch(tmp_path, **kwargs)
    done = subprocess.run([sys.executable, "-m", "workbench.cli", "ui", "--workspace", str(tmp_path / "runs"),
                           "--host", "0.0.0.0"], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "WORKBENCH_UI_AUTH"})
    assert done.returncode != 0 and "needs credentials" in done.stderr and "Traceback" not in done.stderr


def test_a_served_app_with_credentials_asks_for_them(tmp_path: Path) -> None:
    import httpx

    from .test_app import _free_port

    port = _free_port()
    env = {**os.environ, "WORKBENCH_UI_AUTH": "anna:s3cret", "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen([sys.executable, "-m", "workbench.cli", "ui", "--workspace", str(tmp_path / "runs"),
                                "--port", str(port)], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                httpx.get(url + "/", trust_env=False, timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.3)
        assert httpx.get(url + "/config", trust_env=False, timeout=10).status_code == 401
        with httpx.Client(trust_env=False, timeout=10) as client:
            assert client.post(url + "/login", data={"username": "anna", "password": "wrong"}).status_code == 400
            assert client.post(url + "/login", data={"username": "anna", "password": "s3cret"}).status_code == 200
            assert client.get(url + "/config").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_background_runs_one_at_a_time_and_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert launcher.shell_line(Path("recipes/demo.yaml"), Path("runs")) == \
        "workbench run recipes/demo.yaml --workspace runs --no-progress"
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    sleeper = [sys.executable, "-c", "import time; print('working', flush=True); time.sleep(120)"]
    monkeypatch.setattr(launcher, "command", lambda *args, **kwargs: sleeper)
    job = launcher.start(tmp_path / "r.yaml", tmp_path, tmp_path / "runs")
    try:
        assert launcher.machine_busy() and launcher.status(tmp_path)["running"]
        with pytest.raises(RunError, match="already running"):
            launcher.start(tmp_path / "r.yaml", tmp_path, tmp_path / "runs")
        deadline = time.monotonic() + 30
        while "working" not in launcher.status(tmp_path)["log"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        message = launcher.stop(tmp_path, grace=5)
    assert "stopped" in message and not job.alive()
    assert not launcher.machine_busy()  # the lock died with the run
    assert launcher.stop(tmp_path) == "nothing is running"
