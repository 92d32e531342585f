"""The notebook API on the session's finished tiny run: DataFrames equal the run store's records,
significance equals sacrebleu's own paired bootstrap, quick checks equal independent computations,
the docstring examples run, and the example notebook executes (nbclient)."""

from __future__ import annotations

import doctest
import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

import workbench as wb
from workbench.errors import DataError, RunError
from workbench.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
SETS = ROOT / "tests" / "fixtures" / "flores200" / "dev"
STORIES = ROOT / "tests" / "fixtures" / "stories260K"
DIRECTION = "eng_Latn-srd_Latn"


@pytest.fixture(scope="module")
def run(finished_run) -> wb.Run:
    _, workspace, _ = finished_run
    return wb.load_run(workspace / "tiny")


def _stored(run: wb.Run, system: str) -> list[dict]:
    path = run.step(f"score:{system}")["path"] / "translations.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_scoreboard_frame_is_the_stored_records(run: wb.Run) -> None:
    records = RunStore(run.root.parent, run.name).scoreboard()
    frame = run.scoreboard()
    assert len(frame) == len(records)
    as_stored = {(r["stage"], r.get("variant"), r.get("language"), r.get("direction"), r["metric"]): r["value"]
                 for r in records}
    for row in frame.itertuples():
        key = (row.stage, None if pd.isna(row.variant) else row.variant,
               None if pd.isna(row.language) else row.language, None if pd.isna(row.direction) else row.direction,
               row.metric)
        stored = as_stored[key]
        assert stored == row.value or (stored is None and pd.isna(row.value))  # a skipped metric has no value


def test_translations_frame_is_every_stored_sentence(run: wb.Run) -> None:
    frame = run.translations(DIRECTION)
    assert list(frame["system"].unique()) == run.systems()
    for system in ("cpt", "finetune/lora-r4"):
        stored = _stored(run, system)
        mine = frame[frame.system == system].sort_values("index")
        assert list(mine["hypothesis"]) == [r["hypothesis"] for r in stored]
        assert list(mine["chrf"]) == [r["chrf"] for r in stored]
        assert list(mine["flag_repetition"]) == [r["flags"]["repetition"] for r in stored]
    with pytest.raises(RunError, match="no direction 'srd_Latn-fra_Latn'"):
        run.translations("srd_Latn-fra_Latn")


def test_corpus_card_and_curves_are_the_stage_files(run: wb.Run) -> None:
    crawl = run.step("crawl")["path"] / "corpus"
    stats = json.loads((crawl / "stats.json").read_text())
    card = run.corpus_card()
    by_language = card.languages.set_index("language")
    for code, info in stats["languages"].items():
        assert by_language.loc[code, "documents"] == info["docs"] and by_language.loc[code, "bytes"] == info["bytes"]
    assert dict(zip(card.dropped.reason, card.dropped.documents, strict=True)) == stats["dropped"]
    documents = list(card.documents("srd_Latn"))
    assert len(documents) == stats["languages"]["srd_Latn"]["docs"] and {"text", "score", "source"} <= set(documents[0])
    points = json.loads((run.step("cpt")["path"] / "curves.json").read_text())["points"]
    curves = run.curves()
    assert len(curves) == sum(len(p["bpb"]) for p in points)
    last = points[-1]
    got = curves[(curves.step == last["step"]) & (curves.language == "srd_Latn")]["bits_per_byte"].item()
    assert got == last["bpb"]["srd_Latn"]
    assert run.fertility().set_index(["language", "when"]).loc[("srd_Latn", "after"), "tokens_per_word"] > 0


def test_plots_are_figures_with_content(run: wb.Run) -> None:
    for figure in (run.plot_lm(), run.plot_mt(), run.plot_curves(), run.compare(n_samples=50).plot()):
        axes = figure.get_axes()
        assert axes and any(ax.lines or ax.patches or ax.collections for ax in axes)
    assert "<table" in run._repr_html_() and "tiny" in run._repr_html_()


@pytest.fixture(scope="module")
def fresh(run: wb.Run) -> wb.Comparison:
    """The run's adapters scored again with the run's own evaluation settings."""
    mt = run.recipe()["eval"]["mt"]
    return wb.compare_adapters(None, run.adapters(), mt["sets"], [DIRECTION], max_sentences=mt["max_sentences"],
                               shots=mt["shots"], max_new_tokens=mt["max_new_tokens"], lid_seed=mt["lid_seed"],
                               n_samples=200, progress=False, device="cpu")


def test_compare_adapters_reproduces_the_runs_translations(run: wb.Run, fresh: wb.Comparison) -> None:
    """The base recorded in the adapters' metadata is the cpt model: same sentences, same outputs."""
    assert fresh.systems == ["base", "lora-r4", "rslora-r4", "dora-r4"]
    pairs = {"base": "cpt", **{v: f"finetune/{v}" for v in fresh.variants}}
    for mine, stored in pairs.items():
        expected = [r["hypothesis"] for r in _stored(run, stored)]
        assert [r["hypothesis"] for r in fresh.translations[mine][DIRECTION]] == expected
    table = fresh.table
    chrf = table[(table.adapter == "lora-r4") & (table.metric == "chrf++")]["value"].item()
    board = run.scoreboard()
    assert chrf == pytest.approx(board[(board.variant == "lora-r4") & (board.metric == "chrf++")]["value"].item())
    assert table[table.adapter == "dora-r4"]["trainable_parameters"].iloc[0] > 0


def test_significance_is_sacrebleus_paired_bootstrap(fresh: wb.Comparison) -> None:
    frame = fresh.significance(baseline="lora-r4")
    rows = fresh.translations
    order = ["lora-r4", "base", "rslora-r4", "dora-r4"]
    systems = [(name, [r["hypothesis"] for r in rows[name][DIRECTION]]) for name in order]
    refs = [[r["reference"] for r in rows["lora-r4"][DIRECTION]]]
    _, results = PairedTest(systems, {"bleu": BLEU(), "chrf++": CHRF(word_order=2)}, refs, test_type="bs",
                            n_samples=200)()
    keys = {m: next(k for k in results if k.lower().startswith(m[:4])) for m in ("bleu", "chrf++")}
    for position, name in enumerate(results["System"]):
        mine = frame[frame.system == name].iloc[0]
        for metric, key in keys.items():
            theirs = results[key][position]
            assert mine[metric] == pytest.approx(theirs.score)
            assert mine[f"{metric}_ci"] == pytest.approx(theirs.ci)
            if mine["identical_to_baseline"]:
                assert mine[f"{metric}_p"] == 1.0  # sacrebleu would say 1/(n+1) for the same outputs
            else:
                assert (pd.isna(mine[f"{metric}_p"]) and theirs.p_value is None) or \
                    mine[f"{metric}_p"] == theirs.p_value
    with pytest.raises(RunError, match="unknown baseline 'nope'"):
        fresh.significance(baseline="nope")


def test_identical_outputs_are_not_significant() -> None:
    """sacrebleu's bs test gives identical systems p = 1/(n+1); ours says p = 1 and flags them."""
    from workbench.compare import paired_significance

    refs = ["Su sardu est una limba.", "Oe faghet bellu tempus.", "Ue est sa domo?", "Bae a domo."]
    hyps = ["Su sardu est limba.", "Oe faghet tempus.", "Ue est domo?", "Bae a sa domo."]
    rows = lambda hs: {"d": [{"index": i, "reference": r, "hypothesis": h}  # noqa: E731
                             for i, (r, h) in enumerate(zip(refs, hs, strict=True))]}
    translations = {"a": rows(hyps), "copy": rows(hyps), "other": rows(["x"] * 4)}
    _, raw = PairedTest([("a", hyps), ("copy", hyps)], {"chrf++": CHRF(word_order=2)}, [refs], test_type="bs",
                        n_samples=100)()
    assert raw[next(k for k in raw if k != "System")][1].p_value == pytest.approx(1 / 101)
    result = {r["system"]: r for r in paired_significance(translations, "a", n_samples=100)}
    assert result["copy"]["identical_to_baseline"] and result["copy"]["chrf++_p"] == 1.0
    assert not result["other"]["identical_to_baseline"] and result["other"]["chrf++_p"] < 0.05


def test_disagreements_rank_by_the_spread_of_sentence_chrf(fresh: wb.Comparison) -> None:
    spreads = []
    for index in range(len(fresh.translations["base"][DIRECTION])):
        scores = [fresh.translations[s][DIRECTION][index]["chrf"] for s in fresh.systems]
        spreads.append(max(scores) - min(scores))
    top = fresh.disagreements(3)
    assert list(top["chrf_spread"]) == pytest.approx(sorted(spreads, reverse=True)[:3])
    assert all(f"{s}: hypothesis" in top.columns for s in fresh.systems)


def test_translate_with_an_adapter_equals_the_stored_translation(run: wb.Run) -> None:
    adapter = run.adapters()["rslora-r4"]
    stored = _stored(run, "finetune/rslora-r4")
    mt = run.recipe()["eval"]["mt"]
    from workbench.evaluate.datasets import load_pairs
    from workbench.evaluate.scorer import calibration_pairs
    from workbench.recipe import MTEvalConfig

    pairs = load_pairs(mt["sets"], "eng_Latn", "srd_Latn", "dev")
    calibration = calibration_pairs(MTEvalConfig.model_validate(mt), "eng_Latn-srd_Latn")  # the scorer's budgets
    hypotheses = wb.translate(None, [r["source"] for r in stored[:3]], "eng_Latn", "srd_Latn", adapter=adapter,
                              exemplars=pairs[-1:], max_new_tokens=mt["max_new_tokens"], calibration=calibration,
                              device="cpu")
    assert hypotheses == [r["hypothesis"] for r in stored[:3]]
    with pytest.raises(DataError, match="records no base model"):
        wb.translate(None, ["x"], "eng_Latn", "srd_Latn", adapter=STORIES, device="cpu")


def test_score_text_equals_an_independent_computation() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    texts = ["Once upon a time there was a cat.", "Su sardu est una limba romanza."]
    frame = wb.score_text(STORIES, texts, "eng_Latn", device="cpu", dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(STORIES)
    model = AutoModelForCausalLM.from_pretrained(STORIES, dtype=torch.float32).eval()
    total_bits = total_bytes = 0.0
    for text, row in zip(texts, frame.itertuples(), strict=True):
        ids = [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, :-1].float()
        nats = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="sum").item()
        bits = nats / math.log(2)
        assert row.bits == pytest.approx(bits, rel=1e-4)
        assert row.bytes == len(text.encode("utf-8"))
        total_bits, total_bytes = total_bits + bits, total_bytes + row.bytes
    assert frame.attrs["bits_per_byte"] == pytest.approx(total_bits / total_bytes, rel=1e-4)
    bf16 = wb.score_text(STORIES, texts, "eng_Latn", device="cpu", dtype="bfloat16")  # what auto gives on bf16 hw
    assert bf16.attrs["bits_per_byte"] == pytest.approx(total_bits / total_bytes, rel=0.02)
    assert bf16.attrs["bits_per_byte"] != frame.attrs["bits_per_byte"]  # it did run in the other precision
    from_set = wb.score_text(STORIES, SETS, "srd_Latn", max_texts=3, device="cpu")
    assert len(from_set) == 3 and from_set.attrs["language"] == "srd_Latn"
    with pytest.raises(Exception, match="srd_latn"):
        wb.score_text(STORIES, texts, "srd_latn")


def test_errors_name_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no run"):
        wb.load_run(tmp_path / "missing")
    with pytest.raises(DataError, match="no adapter here"):
        wb.compare_adapters(STORIES, tmp_path, SETS, [DIRECTION])


def _public_docstrings() -> list[tuple[str, str]]:
    return [(name, getattr(wb, name).__doc__ or "") for name in wb.__all__ if name != "__version__"]


def test_docstring_examples_run(run: wb.Run) -> None:
    """Every ``>>>`` example in the public API's docstrings (functions and methods) runs on the fixture run."""
    globs = {"wb": wb, "RUN_DIR": run.root, "ADAPTERS_DIR": next(iter(run.adapters().values())).parent,
             "SETS": SETS, "MODEL": STORIES}
    finder = doctest.DocTestFinder(recurse=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    examples = 0
    for name in ("load_run", "Run", "CorpusCard", "compare_run", "compare_adapters", "Comparison", "translate",
                 "score_text", "load", "clear_model_cache"):
        for test in finder.find(getattr(wb, name), name, globs=dict(globs)):
            examples += len(test.examples)
            runner.run(test)
    assert examples >= 25
    assert runner.failures == 0, f"{runner.failures} docstring example(s) failed (see the output above)"


def test_api_doc_lists_every_public_name() -> None:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    for name in wb.__all__:
        if name != "__version__":
            assert f"`wb.{name}" in text, f"docs/api.md does not document wb.{name}"


@pytest.mark.slow
def test_example_notebook_executes_on_the_fixture_run(run: wb.Run, tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(ROOT / "examples" / "compare_adapters.ipynb", as_version=4)
    env = {"WORKBENCH_RUN": str(run.root), "WORKBENCH_SENTENCES": "4"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
                       ).execute()
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    nbformat.write(notebook, tmp_path / "executed.ipynb")
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # lm, mt, curves, stored comparison, fresh comparison
    html_text = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    for variant in ("lora-r4", "rslora-r4", "dora-r4"):
        assert variant in html_text
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "bits per byte over 4 texts" in printed
