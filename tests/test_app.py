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
    path = write_recipe(folder / "recipes" / "tiny.yaml", tiny_recipe())
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
    assert str(srd) in _text(page, "corpus-sizes") and "other_language" in _text(page, "corpus-drops")
    _fill(page, "corpus-query", "limba")
    page.locator("#corpus-search").click()
    assert page.locator("#corpus-language input").input_value() == "srd_Latn"  # the target comes first
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
    board = _wait_for_text(page, "scores-table", "cpt")
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


def test_a_review_submitted_in_the_browser_appears_in_scores(page, root: Path) -> None:
    _open(page, "Review")
    _fill(page, "rev-name", "Maria")
    page.locator("#rev-next").click()
    _wait_for_text(page, "rev-progress", "Maria")
    page.locator("#rev-adequacy input[type=number]").fill("4")
    page.locator("#rev-adequacy input[type=number]").press("Enter")
    page.locator("#rev-invented input").check()
    page.locator("#rev-submit").click()
    _wait_for_text(page, "rev-saved", "Saved.")
    _wait_for_text(page, "rev-progress", "1 of")
    ratings = [json.loads(line) for line in (root / "runs" / "tiny" / "reviews.jsonl").read_text().splitlines()]
    mine = [r for r in ratings if r["reviewer"] == "Maria"]
    assert len(mine) == 1 and mine[0]["adequacy"] == 4 and mine[0]["invented"] is True
    _open(page, "Scores")
    page.locator("#scores-refresh").click()
    human = _wait_for_text(page, "scores-human", mine[0]["system"])
    assert "1" in human
    page.get_by_label("human", exact=True).check()
    assert "4.000" in _wait_for_text(page, "scores-table", "human_adequacy")


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
    assert "[finetune]" in log
    _wait_for_text(page, "runs-job", "has ended", timeout=120)


def test_a_document_marked_bad_leaves_the_next_crawl(page, root: Path) -> None:
    from workbench.engine import run_recipe
    from workbench.recipe import load_recipe
    from workbench.run import load_run

    _open(page, "Corpus")
    page.locator("#corpus-search").click()
    _wait_for_text(page, "corpus-found", "documents match")
    page.locator('#corpus-documents [data-testid="cell-1-5"]').click()  # the second document's text
    deadline = time.monotonic() + 10
    while page.locator("#corpus-line input").input_value() in ("", "0"):
        assert time.monotonic() < deadline, "clicking a row did not select its line"
        page.wait_for_timeout(200)
    line = int(page.locator("#corpus-line input").input_value())
    _fill(page, "corpus-reason", "machine translated")
    page.locator("#corpus-mark").click()
    _wait_for_text(page, "corpus-marked", "Marked line")
    run = load_run(root / "runs" / "tiny")
    language = "srd_Latn"
    text = next(d["text"] for d in run.corpus_card().documents(language) if d["line"] == line)
    assert "machine translated" in _text(page, "corpus-marks")

    run_recipe(load_recipe(root / "recipes" / "tiny.yaml"), root / "runs", device="cpu", progress=False,
               echo=lambda _: None)
    card = load_run(root / "runs" / "tiny").corpus_card()
    assert text not in {d["text"] for d in card.documents(language)}
    assert dict(zip(card.dropped.reason, card.dropped.documents, strict=True))["excluded"] == 1
