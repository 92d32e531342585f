"""The Gradio app in a real browser (Debian's Chromium driven by Playwright) on a real finished run.

The app is served by ``workbench ui`` in a subprocess over a workspace of its own (recipes/, runs/,
adapters/), so what the browser changes (reviews, marks, saved recipes) touches nothing else.
Screenshots of every tab go to ``$WORKBENCH_SCREENSHOTS`` (default: ``<pytest basetemp>/app-screenshots``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import tiny_recipe, write_recipe

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TABS = ("Runs", "Recipe", "Corpus", "Tokenizer", "Scores", "Compare", "Review", "Export")
VARIANTS = ("lora-r4", "rslora-r4", "dora-r4")
DIRECTION = "eng_Latn-srd_Latn"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium: apt-get install chromium")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with one finished tiny run and its published adapters."""
    from workbench.engine import run_recipe
    from workbench.recipe import load_recipe

    folder = tmp_path_factory.mktemp("app-workspace")
    (folder / "recipes").mkdir()
    recipe = tiny_recipe()
    recipe["stages"][1]["tokenizer"]["gate"] = {"action": "warn"}  # the app is under test, not the transplant
    path = write_recipe(folder / "recipes" / "tiny.yaml", recipe)
    run_recipe(load_recipe(path), folder / "runs", device="cpu", progress=False, echo=lambda _: None)
    return folder


@pytest.fixture(scope="module")
def server(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    scratch = tmp_path_factory.mktemp("app-server")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "NO_PROXY": "127.0.0.1",
           "no_proxy": "127.0.0.1", "GRADIO_TEMP_DIR": str(scratch / "gradio"), "MPLCONFIGDIR": str(scratch / "mpl")}
    log = open(scratch / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "workbench.cli", "ui", "--workspace", str(root / "runs"),
                                "--port", str(port)], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (scratch / "server.log").read_text()
            try:
                if httpx.get(url + "/", trust_env=False, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the app did not answer in 120 s"
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    tab.goto(server + "/")
    tab.wait_for_selector("#run-picker")
    yield tab
    context.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("WORKBENCH_SCREENSHOTS") or tmp_path_factory.getbasetemp() / "app-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _open(page, tab: str) -> None:
    page.get_by_role("tab", name=tab, exact=True).click()


def _choose(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option).first.click()


def _fill(page, elem_id: str, text: str) -> None:
    page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(text)


def _text(page, elem_id: str) -> str:
    """What an element shows; for a text box, its value (a textarea's text is not in inner_text)."""
    box = page.locator(f"#{elem_id} textarea")
    if box.count() == 1:
        return box.input_value()
    return page.locator(f"#{elem_id}").inner_text()


def _wait_for_text(page, elem_id: str, needle: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = _text(page, elem_id)
        if needle in text:
            return text
        assert time.monotonic() < deadline, f"#{elem_id} never showed {needle!r}; it shows:\n{text[:2000]}"
        page.wait_for_timeout(250)


def _edit(page, elem_id: str, text: str) -> None:
    page.locator(f"#{elem_id} .cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text)


def _stored(root: Path, system: str) -> list[dict]:
    from workbench.run import load_run

    run = load_run(root / "runs" / "tiny")
    path = run.step(f"score:{system}")["path"] / "translations.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_tab_shows_its_real_content(page, root: Path, screenshots: Path) -> None:
    from workbench.run import load_run

    run = load_run(root / "runs" / "tiny")
    runs = _wait_for_text(page, "runs-table", "finished")
    assert "tiny" in runs and f"{len(run.steps())}/{len(run.steps())}" in runs
    assert "finetune" in _text(page, "run-timeline")
    page.screenshot(path=str(screenshots / "runs.png"), full_page=True)

    _open(page, "Recipe")
    _choose(page, "recipe-file", "recipes/tiny.yaml")
    assert "Valid." in _wait_for_text(page, "recipe-messages", "Valid.")
    assert "stories260K" in _text(page, "recipe-editor")
    page.screenshot(path=str(screenshots / "recipe.png"), full_page=True)

    _open(page, "Corpus")
    card = run.corpus_card()
    srd = int(card.languages.set_index("language").loc["srd_Latn", "documents"])
    sizes = _wait_for_text(page, "corpus-sizes", "Sardinian")  # language names beside the codes (item 10)
    assert str(srd) in sizes and "other_language" in _text(page, "corpus-drops")
    _fill(page, "corpus-query", "limba")
    page.locator("#corpus-search").click()
    assert page.locator("#corpus-language input").input_value() == "srd_Latn · Sardinian"  # the target first
    expected = sum("limba" in d["text"].casefold() for d in card.documents("srd_Latn"))
    assert expected > 0
    assert f"{expected:,} documents match" in _wait_for_text(page, "corpus-found", "documents match")
    page.screenshot(path=str(screenshots / "corpus.png"), full_page=True)

    _open(page, "Tokenizer")
    _fill(page, "tok-text", "Su sardu est una limba romanza ሰላም")
    page.locator("#tok-segment").click()
    pieces = _wait_for_text(page, "tok-pieces", "tokens")
    assert "base:" in pieces and "tokenizer:" in pieces
    assert page.locator("#tok-pieces .wb-byte-fallback").count() > 0  # Ethiopic falls back to bytes
    assert "tokens_per_word" in _text(page, "tok-fertility")
    page.screenshot(path=str(screenshots / "tokenizer.png"), full_page=True)

    _open(page, "Scores")
    page.get_by_label("lm", exact=True).check()
    board = _wait_for_kind(page, "cpt", other="chrf++")
    cpt_bpb = next(r["value"] for r in run.records() if r["stage"] == "cpt" and r.get("language") == "srd_Latn"
                   and r["metric"] == "bits_per_byte")
    assert f"{cpt_bpb:.3f}" in board
    page.get_by_label("mt", exact=True).check()
    assert "chrf++" in _wait_for_text(page, "scores-table", "chrf++")
    page.screenshot(path=str(screenshots / "scores.png"), full_page=True)

    _open(page, "Compare")
    _choose(page, "cmp-sentence", "#0 ")
    _wait_for_text(page, "cmp-outputs", "finetune/dora-r4")
    page.screenshot(path=str(screenshots / "compare.png"), full_page=True)

    _open(page, "Review")
    _fill(page, "rev-name", "screenshot")
    page.locator("#rev-next").click()
    _wait_for_text(page, "rev-progress", "0 of")
    page.screenshot(path=str(screenshots / "review.png"), full_page=True)

    _open(page, "Export")
    assert page.locator("#exp-adapter input").input_value() in VARIANTS
    page.locator("#exp-scoreboard").click()
    _wait_for_text(page, "exp-file", "tiny-scoreboard")
    assert (root / "exports" / "tiny-scoreboard.csv").read_text().startswith("stage,")
    _fill(page, "exp-out", "tiny-merged")
    page.locator("#exp-merge").click()
    _wait_for_text(page, "exp-merged", "Merged", timeout=120)
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(root / "exports" / "tiny-merged").config.vocab_size > 0
    card = (root / "exports" / "tiny-merged" / "README.md").read_text()  # item 14: a model card
    assert card.startswith("---\nlibrary_name: transformers") and "base_model:" in card and "- srd" in card
    for section in ("## Languages", "Sardinian (`srd_Latn`)", "## Training data", "## Scores", "## Licence"):
        assert section in card
    assert (root / "exports" / "tiny-merged" / "adapter_metadata.json").is_file()
    page.locator("#exp-merge").click()  # overwriting asks first
    _wait_for_text(page, "exp-merged", "exists already")
    page.screenshot(path=str(screenshots / "export.png"), full_page=True)
    assert {p.stem for p in screenshots.glob("*.png")} >= {t.lower() for t in TABS}


def test_a_comparison_shows_every_variants_output(page, root: Path) -> None:
    _open(page, "Compare")
    page.get_by_label("most disagreement first").check()
    _choose(page, "cmp-sentence", "#2 ")
    shown = _wait_for_text(page, "cmp-outputs", "finetune/dora-r4")
    for system in ("base", "cpt", *(f"finetune/{v}" for v in VARIANTS)):
        row = next(r for r in _stored(root, system) if r["index"] == 2)
        assert system in shown
        assert row["hypothesis"].strip()[:20] in shown, f"{system}'s output is not shown"
    assert "reference" in _text(page, "cmp-header")


# -- scores (item 8) and compare (item 9) ---------------------------------------------------------------------
GREEN, RED = "rgb(21, 128, 61)", "rgb(185, 28, 28)"


def _percentile_bootstrap(metric, hypotheses: list[str], references: list[str]) -> tuple[float, float]:
    """The interval computed another way: every resample rescored from its sentences with sacrebleu's public API."""
    import numpy as np

    n = len(hypotheses)
    picks = np.random.default_rng(12345).integers(0, n, size=(1000, n))
    scores = [metric.corpus_score([hypotheses[i] for i in pick], [[references[i] for i in pick]]).score
              for pick in picks]
    low, high = np.percentile(scores, [2.5, 97.5])
    return float(low), float(high)


def _wait_for_kind(page, needle: str, other: str) -> str:
    """The scores table once it shows the kind chosen: ``needle`` of it, and not ``other`` of another kind (the
    table of all kinds is taller than the window, so only its first rows are drawn)."""
    deadline = time.monotonic() + 30
    while not (needle in (board := _text(page, "scores-table")) and other not in board):
        assert time.monotonic() < deadline, f"#scores-table never showed {needle!r} alone:\n{board}"
        page.wait_for_timeout(250)
    return board


def test_scores_show_intervals_colours_the_floor_and_the_tokenizer_note(page, root: Path) -> None:
    """Item 8: chrF++/BLEU with n and a 95% bootstrap interval that contains the score and equals an independent
    computation; cells coloured better/worse than base as in the terminal; token perplexity's note; the floor a
    dashed line per language, not a stage."""
    from sacrebleu.metrics import BLEU, CHRF

    from workbench import scoreboard
    from workbench.evaluate.mt import bleu_tokenizer
    from workbench.run import load_run
    from workbench_ui.tabs import scores as scores_tab

    run = load_run(root / "runs" / "tiny")
    board = run.records()
    _open(page, "Scores")
    page.get_by_label("mt", exact=True).check()
    shown = _wait_for_kind(page, "95% CI", other="bits_per_byte")
    mt = {(scoreboard.row_label(r), r["metric"]): r for r in board if r["kind"] == "mt" and r["value"] is not None}
    base_chrf = mt[("base", "chrf++")]["value"]
    independent = {("base", "chrf++"), ("base", "bleu"), (run.systems()[-1], "chrf++")}  # each 1000 rescorings
    for system in run.systems():
        rows = sorted((r for r in _stored(root, system) if r["direction"] == DIRECTION), key=lambda r: r["index"])
        hypotheses, references = [r["hypothesis"] for r in rows], [r["reference"] for r in rows]
        metrics = {"chrf++": CHRF(word_order=2), "bleu": BLEU(tokenize=bleu_tokenizer(DIRECTION.split("-")[1]))}
        for name, metric in metrics.items():
            record = mt[(system, name)]
            low, high = scores_tab.bootstrap_interval(metric, hypotheses, references)
            assert low <= record["value"] <= high, (system, name)
            assert f"95% CI {low:.2f}–{high:.2f} · n={record['n']}" in shown and record["n"] == len(rows)
            if (system, name) in independent:
                again = _percentile_bootstrap(metric, hypotheses, references)
                assert abs(again[0] - low) < 1e-9 and abs(again[1] - high) < 1e-9, (system, name)
                independent.remove((system, name))
        if system != "base":  # green where better than base, red where worse (chrF++: higher is better)
            delta = mt[(system, "chrf++")]["value"] - base_chrf
            cell = page.locator('#scores-table [role="gridcell"]',
                                has_text=f"{mt[(system, 'chrf++')]['value']:.2f} ({delta:+.2f})").first
            assert cell.evaluate("e => getComputedStyle(e).color") == (GREEN if delta > 0 else RED), system
    assert not independent

    page.get_by_label("lm", exact=True).check()
    assert "token_perplexity (depends on the tokenizer)" in _wait_for_kind(page, "depends on the", other="95% CI")
    assert "token_perplexity depends on the tokenizer" in _text(page, "scores-notes")
    assert page.locator("#scores-lm-plot img").count() == 1
    figure = scores_tab.plot_lm(board)  # what the tab draws
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == [s for s in run.systems()]  # no "floor" stage
    colours = {line.get_label(): line.get_color() for line in axes.get_lines()}
    floors = [r for r in board if r["stage"] == "floor" and r["metric"] == "bits_per_byte"]
    assert floors
    for record in floors:
        (line,) = [ln for ln in axes.get_lines() if ln.get_label().startswith(f"{record['language']} floor")]
        assert line.get_linestyle() == "--" and list(line.get_ydata()) == [record["value"]] * 2
        assert line.get_color() == colours[record["language"]]


def test_compare_fits_the_window_wraps_and_diffs_against_the_reference(page, root: Path) -> None:
    """Item 9: in a 1400 px window the metric and flag columns are visible without scrolling sideways, long
    outputs wrap, and each output is shown against the reference word by word (escaped)."""
    from workbench_ui.tabs.compare import diff_html

    _open(page, "Compare")
    _choose(page, "cmp-sentence", "#2 ")
    _wait_for_text(page, "cmp-outputs", "finetune/dora-r4")
    for header in ("chrF++", "flags"):
        box = page.locator("#cmp-outputs th", has_text=header).first.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1400, (header, box)
    widths = page.locator("#cmp-outputs .virtual-table-viewport").evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert widths[0] <= widths[1], f"the table scrolls sideways: {widths}"
    outputs = page.locator('#cmp-outputs [role="gridcell"]:nth-child(2) span')  # the output column's texts
    assert outputs.count() == len(_stored_systems(root))
    for i in range(outputs.count()):  # long outputs wrap inside their cell
        wraps, width, room = outputs.nth(i).evaluate("e => [getComputedStyle(e).whiteSpace, e.scrollWidth,"
                                                     " e.parentElement.clientWidth]")
        assert wraps in ("normal", "pre-wrap", "pre-line", "break-spaces") and width <= room

    _wait_for_text(page, "cmp-diff", "finetune/dora-r4")
    rows = page.locator("#cmp-diff .wb-diff-row")
    assert rows.count() == len(_stored_systems(root))
    for i in range(rows.count()):  # without the struck words a row is the output; without the added ones, the reference
        system, output, reference = rows.nth(i).evaluate(
            "e => { const text = (drop) => { const c = e.cloneNode(true); c.querySelectorAll(drop).forEach("
            "d => d.remove()); return c.textContent.split(/: (.*)/s)[1]; };"
            " return [e.querySelector('b').textContent, text('del'), text('ins')]; }")
        row = next(r for r in _stored(root, system) if r["index"] == 2)
        assert output == row["hypothesis"]
        assert "".join(reference.split()) == "".join(row["reference"].split())
    assert page.locator("#cmp-diff del").count() > 0
    escaped = diff_html("<img src=x> su sardu", "<img src=x> su sardu <b>")
    assert "<img" not in escaped and "<b>" not in escaped and "&lt;b&gt;" in escaped


def _stored_systems(root: Path) -> list[str]:
    from workbench.run import load_run

    return load_run(root / "runs" / "tiny").systems()


def _typed_translation(page, text: str, *, done: str, timeout: float = 30.0) -> str:
    """Type ``text``, translate it with every model and wait until the header says ``done`` about this text."""
    _fill(page, "cmp-typed", text)
    page.locator("#cmp-translate").click()
    deadline = time.monotonic() + timeout
    while True:
        header = _text(page, "cmp-header")
        if text in header and done in header:
            return header
        assert time.monotonic() < deadline, f"#cmp-header never showed {done!r} for {text!r}:\n{header}"
        page.wait_for_timeout(250)


def test_translating_with_every_model_reuses_loaded_models_and_cancel_stops_it(page, root: Path) -> None:
    """Item 9: a second "translate with every model" loads nothing again; Cancel stops the server's work between
    two models, and no output follows."""
    import re

    total = len(_stored_systems(root))
    _open(page, "Compare")
    first = _typed_translation(page, "<i>The cat</i> sits on the mat.", done=f"{total} of {total} models",
                               timeout=300)
    assert page.locator("#cmp-header i").count() == 0  # typed text is shown as typed
    loaded, reused = map(int, re.search(r"(\d+) loaded now, (\d+) already in memory", first).groups())
    assert loaded + reused == total
    second = _typed_translation(page, "The dog sleeps under the table.", done=f"{total} of {total} models",
                                timeout=120)
    assert f"0 loaded now, {total} already in memory" in second
    table = _text(page, "cmp-outputs")
    assert all(system in table for system in _stored_systems(root))

    _typed_translation(page, " ".join(["A long sentence about the sea, the mountains and the island."] * 3),
                       done="translating:", timeout=120)
    page.locator("#cmp-cancel").click()
    stopped = _wait_for_text(page, "cmp-header", "Cancelled", timeout=120)  # said once the work has stopped
    done = int(re.search(r"stopped after (\d+) of (\d+) models", stopped).group(1))
    assert 1 <= done < total
    assert page.locator("#cmp-outputs .virtual-row").count() <= done


def test_the_recipe_tab_rejects_an_invalid_recipe_naming_the_field(page, root: Path) -> None:
    _open(page, "Recipe")
    _choose(page, "recipe-file", "recipes/tiny.yaml")
    _wait_for_text(page, "recipe-messages", "Valid.")
    original = (root / "recipes" / "tiny.yaml").read_text()
    broken = original.replace("lr: 0.001", "learning_rate: 0.001", 1)
    assert broken != original
    _edit(page, "recipe-editor", broken)
    page.locator("#recipe-validate").click()
    message = _wait_for_text(page, "recipe-messages", "Invalid recipe")
    assert "learning_rate: unknown key" in message and "stages[2].cpt" in message
    page.locator("#recipe-save").click()
    _wait_for_text(page, "recipe-messages", "Not saved")
    assert (root / "recipes" / "tiny.yaml").read_text() == original


def test_a_path_outside_the_workspace_is_refused(page, root: Path, server: str) -> None:
    outside = root.parent / "escape.yaml"
    _open(page, "Recipe")
    for name in ("../escape.yaml", str(outside), "/etc/passwd"):
        page.locator("#recipe-file input").fill(name)
        page.locator("#recipe-file input").press("Enter")
        page.locator("#recipe-open").click()
        assert "Refused" in _wait_for_text(page, "recipe-messages", "Refused")
    _edit(page, "recipe-editor", (root / "recipes" / "tiny.yaml").read_text())
    page.locator("#recipe-file input").fill("../escape.yaml")
    page.locator("#recipe-file input").press("Enter")
    page.locator("#recipe-save").click()
    assert "outside the workspace" in _wait_for_text(page, "recipe-messages", "outside the workspace")
    assert not outside.exists()
    for target in ("/etc/passwd", str(root / "runs" / "tiny" / "manifest.json")):
        assert httpx.get(f"{server}/gradio_api/file={target}", trust_env=False, timeout=10).status_code == 403


def test_the_runs_tab_starts_a_recipe_in_the_background_and_follows_it(page, root: Path) -> None:
    _choose(page, "runs-recipe", "recipes/tiny.yaml")
    page.locator("#runs-show-command").click()
    _wait_for_text(page, "runs-command", "workbench run recipes/tiny.yaml --workspace runs --no-progress")
    page.locator("#runs-start").click()
    assert "Started" in _wait_for_text(page, "runs-message", "Started")
    log = _wait_for_text(page, "runs-log", "cached", timeout=120)  # every step is already done
    assert "finetune" in log  # the log is a tail: the step line or its scoring
    _wait_for_text(page, "runs-job", "has ended", timeout=120)


# -- review (issue 32, items 1 and 3-6) ---------------------------------------------------------------------


def _ratings(root: Path) -> list[dict]:
    from workbench import review

    return review.load_ratings(root / "runs" / "tiny")


def _items(root: Path) -> list:
    from workbench import review
    from workbench.run import load_run

    return review.items(load_run(root / "runs" / "tiny").translations())


def _start_review(page, reviewer: str) -> str:
    """Open the Review tab as ``reviewer`` and take the next output; returns the output shown."""
    _open(page, "Review")
    _fill(page, "rev-name", reviewer)
    page.locator("#rev-next").click()
    _wait_for_text(page, "rev-progress", f"{reviewer}: you rated")  # this reviewer's item, not the last one's
    return _wait_for_output(page)


def _wait_for_value(page, elem_id: str, timeout: float = 30.0) -> str:
    """The value of the input inside ``elem_id`` once it has one (a dropdown filled by a refresh)."""
    deadline = time.monotonic() + timeout
    while not (value := page.locator(f"#{elem_id} input").first.input_value()):
        assert time.monotonic() < deadline, f"#{elem_id} stayed empty"
        page.wait_for_timeout(200)
    return value


def _wait_for_output(page, other_than: str | None = None) -> str:
    deadline = time.monotonic() + 30
    while True:
        shown = page.locator("#rev-output textarea").input_value()
        if shown and shown != other_than and "Editing" not in (other_than or ""):
            return shown
        assert time.monotonic() < deadline, "no output to rate appeared"
        page.wait_for_timeout(200)


def _rate(page, criterion: str, value: int) -> None:
    page.locator(f"#rev-{criterion} label").filter(has_text=str(value)).first.click()


def _checked(page, criterion: str) -> str | None:
    chosen = page.locator(f"#rev-{criterion} input:checked")
    return chosen.get_attribute("value") if chosen.count() else None


def _submit(page, expect: str, by_keyboard: bool = False) -> str:
    """Submit (the button, or Ctrl+Enter) and wait for a new message (each is stamped with the time)."""
    before = _text(page, "rev-saved")
    if expect in before:
        page.wait_for_timeout(1100)  # the next stamp differs
    if by_keyboard:
        page.keyboard.press("Control+Enter")
    else:
        page.locator("#rev-submit").click()
    deadline = time.monotonic() + 30
    while True:
        shown = _text(page, "rev-saved")
        if expect in shown and shown != before:
            return shown
        assert time.monotonic() < deadline, f"#rev-saved never showed a new {expect!r}; it shows:\n{shown}"
        page.wait_for_timeout(200)


def test_each_item_starts_empty_and_an_earlier_rating_can_be_edited(page, root: Path) -> None:
    """Item 1: after Submit the next item has no ratings, tick or comment; "your ratings" reopens one."""
    first = _start_review(page, "Rosa")
    assert "Not saved: rate adequacy, fluency, orthography first" in _submit(page, "Not saved")
    for criterion, value in (("adequacy", 4), ("fluency", 2), ("orthography", 5)):
        _rate(page, criterion, value)
    page.locator("#rev-invented input").check()
    _fill(page, "rev-comment", "first comment")
    _submit(page, "Saved.")
    _wait_for_text(page, "rev-progress", "you rated 1 of")
    assert [_checked(page, c) for c in ("adequacy", "fluency", "orthography")] == [None, None, None]
    assert not page.locator("#rev-invented input").is_checked()
    assert page.locator("#rev-comment textarea, #rev-comment input").first.input_value() == ""
    assert "Not saved" in _submit(page, "Not saved")  # two clicks do not rate the new item with old values
    (mine,) = [r for r in _ratings(root) if r["reviewer"] == "Rosa"]

    _choose(page, "rev-history", "1. ")  # back to the first rating
    _wait_for_text(page, "rev-progress", "Editing your earlier rating")
    assert page.locator("#rev-output textarea").input_value() == first
    assert [_checked(page, c) for c in ("adequacy", "fluency", "orthography")] == ["4", "2", "5"]
    assert page.locator("#rev-invented input").is_checked()
    assert page.locator("#rev-comment textarea, #rev-comment input").first.input_value() == "first comment"
    _rate(page, "adequacy", 1)
    _submit(page, "Saved.")
    (edited,) = [r for r in _ratings(root) if r["reviewer"] == "Rosa"]
    assert edited["item"] == mine["item"] and edited["adequacy"] == 1 and edited["fluency"] == 2


def test_the_browser_never_learns_which_system_wrote_an_output(page, root: Path) -> None:
    """Item 3: what the Review tab sends (its outputs) and shows is free of system names and item keys."""
    from workbench_ui.context import AppContext
    from workbench_ui.tabs import review as review_tab

    shown = _start_review(page, "Blinda")
    for criterion in ("adequacy", "fluency", "orthography"):
        _rate(page, criterion, 3)
    _submit(page, "Saved.")
    _wait_for_output(page)
    page.get_by_text("All ratings, unblinded").wait_for()
    html = page.locator("#tab-review").inner_html()
    assert page.locator("#rev-output textarea").input_value() != shown  # the next output is up
    ctx = AppContext.create(root)
    sent = repr(review_tab.open_item(ctx, "tiny", "Blinda", review_tab.ALL))  # every value the browser gets
    keys = [item.key for item in _items(root)]  # e.g. "eng_Latn-srd_Latn|4|cpt"
    assert any("finetune/" in key for key in keys)
    for secret in ("finetune/", f"{DIRECTION}|", "'system'", '"system"', *keys):
        assert secret not in html, f"the page was told {secret!r}"
        assert secret not in sent, f"the review's outputs carry {secret!r}"


def test_two_windows_of_one_reviewer_do_not_overwrite_each_other(browser, server: str, root: Path) -> None:
    """Item 4: the first save wins; the second window is told and nothing is replaced."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    windows = []
    for _ in range(2):
        window = context.new_page()
        window.set_default_timeout(30_000)
        window.goto(server + "/")
        window.wait_for_selector("#run-picker")
        windows.append(window)
    shown = [_start_review(window, "Gemma") for window in windows]
    assert shown[0] == shown[1]  # both windows opened the same next output
    for window, value in zip(windows, (5, 1), strict=True):
        for criterion in ("adequacy", "fluency", "orthography"):
            _rate(window, criterion, value)
    _submit(windows[0], "Saved.")
    refused = _submit(windows[1], "Not saved")
    context.close()
    assert "already rated this output" in refused and "your ratings" in refused
    (rating,) = [r for r in _ratings(root) if r["reviewer"] == "Gemma"]
    assert rating["adequacy"] == 5


def test_overlap_keys_guidelines_and_agreement(page, root: Path) -> None:
    """Item 5: guidelines per run above the form; keys 1-5, X, Ctrl+Enter; an output someone rated goes
    to the next reviewer; alpha per criterion with the number of doubly rated items; progress."""
    _open(page, "Review")
    page.get_by_text("Review settings (run owner)").click()
    page.locator("#rev-k input").fill("2")
    _fill(page, "rev-guidelines-edit", "Judge the <b>meaning</b> first.\nThen the spelling.")
    page.locator("#rev-settings-save").click()
    _wait_for_text(page, "rev-settings-message", "Saved: 2 ratings per output")
    assert "Judge the <b>meaning</b> first." in _wait_for_text(page, "rev-guidelines", "Judge the")
    assert page.locator("#rev-guidelines b").count() == 0  # shown as typed, not as markup

    from workbench import review

    def expected_next(reviewer: str) -> review.Item:
        """The item the overlap rule gives ``reviewer``: one someone has started, if any needs ratings."""
        ratings = _ratings(root)
        chosen = review.next_item(_items(root), reviewer, ratings, 2)
        started = {key for key, n in review.rating_counts(ratings).items() if n == 1}
        assert not started or chosen.key in started
        return chosen

    expected = expected_next("Keya")
    shown = _start_review(page, "Keya")
    assert shown == expected.hypothesis
    total = len(_items(root))
    assert f"you rated 0 of {total}" in _text(page, "rev-progress")
    page.locator("#rev-output").click()  # focus outside any text field
    for key in ("4", "3", "5", "x"):
        page.keyboard.press(key)
    assert [_checked(page, c) for c in ("adequacy", "fluency", "orthography")] == ["4", "3", "5"]
    _submit(page, "Saved.", by_keyboard=True)
    (keyed,) = [r for r in _ratings(root) if r["reviewer"] == "Keya"]
    assert (keyed["adequacy"], keyed["fluency"], keyed["orthography"], keyed["invented"]) == (4, 3, 5, True)
    assert next(i for i in _items(root) if i.key == keyed["item"]).hypothesis == shown

    expected = expected_next("Sergio")
    assert _start_review(page, "Sergio") == expected.hypothesis
    for key in ("2", "3", "5"):
        page.keyboard.press(key)
    _submit(page, "Saved.", by_keyboard=True)
    agreement = _wait_for_text(page, "rev-agreement", "adequacy")
    doubly = review.agreement(_ratings(root)).set_index("criterion").loc["adequacy", "items"]
    assert doubly >= 1 and "items rated twice or more" in agreement and str(doubly) in agreement


def test_reviewer_text_is_escaped_and_the_owner_exports_ratings(page, root: Path) -> None:
    """Item 6: a name with <img> or a link is shown as typed; the owner sees every rating unblinded and
    exports CSV and JSONL with the texts, the system, reviewer, criteria and comment; Scores shows them."""
    name = '<img src=x id=evil-img>[link](http://example.com)'
    _start_review(page, name)
    assert name in _text(page, "rev-progress")
    assert page.locator("img#evil-img").count() == 0 and page.locator("#rev-progress a").count() == 0
    for criterion in ("adequacy", "fluency", "orthography"):
        _rate(page, criterion, 4)
    _fill(page, "rev-comment", "<b>bold?</b>")
    _submit(page, "Saved.")
    page.get_by_text("All ratings, unblinded").click()
    page.locator("#rev-unblind").click()
    table = _wait_for_text(page, "rev-ratings", "bold?")
    assert name in table and "<b>bold?</b>" in table
    assert page.locator("img#evil-img").count() == 0
    page.locator("#rev-export-csv").click()
    _wait_for_text(page, "rev-file", "tiny-ratings")
    import pandas as pd

    exported = pd.read_csv(root / "exports" / "tiny-ratings.csv")
    assert list(exported.columns) == ["direction", "item", "index", "source", "reference", "hypothesis", "system",
                                      "reviewer", "adequacy", "fluency", "orthography", "invented", "comment",
                                      "time"]
    mine = exported[exported.reviewer == name].iloc[0]
    assert mine.comment == "<b>bold?</b>" and mine.system in {i.system for i in _items(root)}
    page.locator("#rev-export-jsonl").click()
    _wait_for_text(page, "rev-file", ".jsonl")
    lines = (root / "exports" / "tiny-ratings.jsonl").read_text().splitlines()
    assert len(lines) == len(exported) == len(_ratings(root))
    _open(page, "Scores")
    page.get_by_label("human", exact=True).check()
    _wait_for_text(page, "scores-table", "human_adequacy")


# -- corpus marks (item 2), views that stay true (items 7, 11) ----------------------------------------------
def test_marking_bad_needs_a_selection_a_confirmation_and_can_be_undone(page, root: Path) -> None:
    from workbench.engine import run_recipe
    from workbench.marks import marks_path
    from workbench.recipe import load_recipe
    from workbench.run import load_run

    run_root = root / "runs" / "tiny"
    _open(page, "Corpus")
    _wait_for_value(page, "corpus-language")  # the page's first refresh has filled the languages
    page.locator("#corpus-search").click()
    _wait_for_text(page, "corpus-found", "documents match")
    page.locator("#corpus-mark").click()  # nothing selected: nothing is marked
    _wait_for_text(page, "corpus-marked", "Select a document first")
    assert not marks_path(run_root).exists() and not page.locator("#corpus-confirm").is_visible()

    page.locator('#corpus-documents [data-testid="cell-1-5"]').click()  # the second document's text
    deadline = time.monotonic() + 10
    while page.locator("#corpus-line input").input_value() in ("",):
        assert time.monotonic() < deadline, "clicking a row did not select its line"
        page.wait_for_timeout(200)
    line = int(page.locator("#corpus-line input").input_value())
    language = "srd_Latn"
    text = next(d["text"] for d in load_run(run_root).corpus_card().documents(language) if d["line"] == line)
    assert page.locator("#corpus-document textarea").input_value() == text  # the full document
    _fill(page, "corpus-reason", "machine translated <img src=x id=evil-reason>")
    _fill(page, "corpus-reviewer", "Lia")
    page.locator("#corpus-mark").click()
    assert f"Mark line {line} of srd_Latn" in _wait_for_text(page, "corpus-confirm-text", "Mark line")
    page.locator("#corpus-cancel").click()
    page.wait_for_timeout(500)
    assert not marks_path(run_root).exists()
    page.locator("#corpus-mark").click()
    page.locator("#corpus-confirm").click()
    _wait_for_text(page, "corpus-marked", "Marked line")
    marks_list = _wait_for_text(page, "corpus-marks", "machine translated")
    assert "Lia" in marks_list and time.strftime("%Y-%m-%d") in marks_list and "<img src=x" in marks_list
    assert page.locator("img#evil-reason").count() == 0

    run_recipe(load_recipe(root / "recipes" / "tiny.yaml"), root / "runs", device="cpu", progress=False,
               echo=lambda _: None)
    card = load_run(run_root).corpus_card()
    assert text not in {d["text"] for d in card.documents(language)}
    assert dict(zip(card.dropped.reason, card.dropped.documents, strict=True))["excluded"] == 1

    page.locator('#corpus-marks [data-testid="cell-0-1"]').click()
    page.locator("#corpus-unmark").click()
    _wait_for_text(page, "corpus-marked", "Unmarked")
    assert not marks_path(run_root).exists()


def test_views_stay_true_without_restarting_the_server(page, root: Path) -> None:
    """Item 7/11: a recipe saved in the app is offered by Runs at once; an open Scores tab shows ratings saved
    meanwhile by itself, and so does it after a reload."""
    from workbench import review

    _open(page, "Recipe")
    page.wait_for_timeout(1000)  # the tab's list refresh on opening
    page.locator("#recipe-file input").fill("recipes/saved-later.yaml")
    page.locator("#recipe-file input").press("Enter")
    _edit(page, "recipe-editor", (root / "recipes" / "tiny.yaml").read_text())
    page.locator("#recipe-save").click()
    _wait_for_text(page, "recipe-messages", "Saved")
    _open(page, "Runs")
    _choose(page, "runs-recipe", "recipes/saved-later.yaml")
    (root / "recipes" / "saved-later.yaml").unlink()

    _open(page, "Scores")
    item = next(i for i in _items(root) if i.system == "base")
    for reviewer in ("Offline Reviewer", "Second Offline Reviewer"):  # the second is shown by the tab's own timer
        record = review.rating_record(item, reviewer, {"adequacy": 1, "fluency": 1, "orthography": 1,
                                                       "invented": False})
        review.save_rating(root / "runs" / "tiny", record, based_on=None)
        after = review.summary(_ratings(root)).set_index(["system", "direction"])
        expected = int(after.loc[("base", item.direction), "ratings"])
        _wait_for_base_ratings(page, expected)  # the open tab follows the run's files by itself
    page.reload()
    page.wait_for_selector("#run-picker")
    _open(page, "Scores")
    _wait_for_base_ratings(page, expected)


def _wait_for_base_ratings(page, expected: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        cells = [c.strip() for c in _text(page, "scores-human").splitlines() if c.strip()]
        if "base" in cells and cells[cells.index("base") + 2] == str(expected):  # system, direction, ratings
            return
        assert time.monotonic() < deadline, f"Scores did not show {expected} ratings of base: {cells}"
        page.wait_for_timeout(300)


# -- a stopped run (items 7 and 11); last: the run it makes becomes the newest, which pages then open --------
def _processes() -> dict[int, tuple[int, int, str]]:
    """``{pid: (parent pid, process group, state)}`` of every process, from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(stat.parent.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return found


def _events(run_root: Path) -> list[dict]:
    return [json.loads(line) for line in (run_root / "events.jsonl").read_text().splitlines() if line.strip()]


def test_stop_leaves_no_process_and_the_interrupted_run_shows_only_its_own_scores(page, root: Path) -> None:
    """Item 11: Stop ends the run's process group and reaps it (no process of it left, no zombie child of the
    app). Item 7: the new run appears by itself; stopped, it reads "interrupted" in Runs and Scores, which show
    the scores of the steps this attempt finished, never the earlier attempt's numbers of the steps it did not."""
    import yaml

    from workbench import launcher, scoreboard
    from workbench.run import load_run

    copy = root / "runs" / "tiny-stop"
    staging = root / "tiny-stop-staging"
    shutil.copytree(root / "runs" / "tiny", staging, ignore=shutil.ignore_patterns(".lock", "*.jsonl.lock"))
    staging.rename(copy)  # a finished run under another name, arriving at once
    assert "tiny-stop" in _wait_for_text(page, "runs-table", "tiny-stop")  # the list follows the store by itself
    stale = {(scoreboard.row_label(r), r["metric"], scoreboard.column_label(r)): r["value"]
             for r in load_run(copy).records() if r["kind"] == "lm"}
    recipe = yaml.safe_load((root / "recipes" / "tiny.yaml").read_text())
    recipe["name"] = "tiny-stop"
    recipe["stages"][2]["cpt"]["lr"] = 2e-3  # cpt and what follows run again; what precedes it is cached
    write_recipe(root / "recipes" / "tiny-stop.yaml", recipe)

    _open(page, "Recipe")
    _open(page, "Runs")  # opening the tab offers the recipe saved meanwhile
    _choose(page, "runs-recipe", "recipes/tiny-stop.yaml")
    earlier = len(_events(copy))  # the copied run's own events, its cpt step's included
    page.locator("#runs-start").click()
    _wait_for_text(page, "runs-message", "Started")
    job = launcher.current(root)
    deadline = time.monotonic() + 180
    while not any(e["event"] == "step_started" and e.get("step") == "cpt" for e in _events(copy)[earlier:]):
        assert job.alive(), (Path(job.log).read_text()[-3000:])
        assert time.monotonic() < deadline, "the run never started its cpt stage"
        time.sleep(0.2)
    assert _processes().get(job.pid, (0, 0, "Z"))[2] != "Z"
    page.locator("#runs-stop").click()
    assert "stopped" in _wait_for_text(page, "runs-message", "stopped", timeout=60)
    processes = _processes()
    left = [pid for pid, (_, group, _) in processes.items() if group == job.pid]
    assert not left, f"processes of the stopped run remain: {left}"
    (server,) = [pid for pid, (parent, _, _) in processes.items() if parent == os.getpid()
                 and "workbench.cli" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")]
    children = {pid: state for pid, (parent, _, state) in processes.items() if parent == server}
    assert job.pid not in children and "Z" not in children.values(), f"the app's children: {children}"

    assert "interrupted" in _wait_for_text(page, "runs-table", "interrupted")
    _choose(page, "run-picker", "tiny-stop")
    assert "in step cpt" in _wait_for_text(page, "run-summary", "interrupted")
    _open(page, "Scores")
    page.get_by_label("lm", exact=True).check()
    status = _wait_for_text(page, "scores-status", "interrupted")
    assert "in step cpt" in status and "not shown" in status
    board = _wait_for_kind(page, "bits_per_byte", other="documents")
    rows = page.locator('#scores-table .virtual-row [role="gridcell"]:first-child')
    stages = {rows.nth(i).inner_text().strip() for i in range(rows.count())}
    assert "base" in stages and "tokenizer" in stages  # what this attempt finished (cached) is shown
    assert not stages & {"cpt", "finetune"}, f"an earlier attempt's numbers are shown: {stages}"
    assert f"{stale[('base', 'bits_per_byte', 'srd_Latn')]:.3f}" in board
