"""Training: format detection, every loss path on the real bundled model, output, Ctrl-C, resume."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest

from neartext import load_encoder
from neartext.cli import main
from neartext.encoders import EncoderSettings
from neartext.errors import InputError
from neartext.training import TrainConfig, TrainingInterrupted, load_training_data, train
from neartext.training.batch_size import cap_for_rows, find_batch_size
from neartext.training.trainer import build_loss

PAIRS = [
    ("my card was charged twice", "I was billed two times for one order"),
    ("the app crashes when I open a note", "opening any note makes the application close"),
    ("sync does not work on my phone", "notes never reach my mobile"),
    ("I cannot log in after the update", "since updating, the sign-in fails"),
    ("dark mode is too bright", "the dark theme hurts my eyes at night"),
    ("please add a way to export to PDF", "I want to save notes as PDF files"),
    ("search never finds old notes", "older notes are missing from search results"),
    ("the widget shows nothing", "home screen widget is blank"),
    ("how do I cancel my subscription", "where can I stop the monthly plan"),
    ("images are blurry after upload", "photos lose quality when attached"),
    ("reminders arrive late", "notifications come hours after the set time"),
    ("the keyboard covers the text", "I cannot see what I type because of the keyboard"),
    ("my notes disappeared", "all my entries are gone"),
    ("it drains the battery", "the app uses too much power"),
    ("font is too small", "text is hard to read, it is tiny"),
    ("tags cannot be renamed", "there is no option to change a tag name"),
    ("the price went up without notice", "you raised the fee and did not tell me"),
    ("attachments fail to open", "files added to notes will not open"),
    ("I love the new editor", "the updated editor is great"),
    ("offline mode loses my edits", "changes made without internet vanish"),
    ("sharing a note sends a broken link", "shared links do not work"),
    ("the app is slow to start", "launching takes a long time"),
    ("I want a desktop version", "please make an app for my computer"),
    ("checklists reset by themselves", "ticked items become unticked"),
]
LONG = "the quick brown fox jumps over the lazy dog near the river bank " * 3


def write_csv(path: Path, header: str, rows: list[tuple]) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header.split(","))
        w.writerows(rows)
    return path


@pytest.fixture
def pairs_csv(tmp_path) -> Path:
    return write_csv(tmp_path / "pairs.csv", "query,description", PAIRS)


@pytest.fixture
def scored_csv(tmp_path) -> Path:
    rows = [(a, b, 5.0) for a, b in PAIRS[:12]] + [
        (PAIRS[i][0], PAIRS[(i + 7) % 24][1], 0.4) for i in range(12)]
    return write_csv(tmp_path / "scored.csv", "sentence1,sentence2,score", rows)


@pytest.fixture
def labeled_csv(tmp_path) -> Path:
    # Negatives close to their first text: the hard pairs online contrastive learns from.
    rows = [(a, b, 1) for a, b in PAIRS[:16]] + [
        (PAIRS[i][0], PAIRS[i][0] + ", said nobody", 0) for i in range(8)]
    return write_csv(tmp_path / "labeled.csv", "text1,text2,label", rows)


# --- format detection ------------------------------------------------------------------------

def test_pairs_by_name(pairs_csv):
    d = load_training_data(pairs_csv)
    assert d.format == "pairs" and len(d) == 24 and d.columns == ("query", "description")
    assert d.texts["positive"][0] == PAIRS[0][1]


def test_triplets_by_position_without_header(tmp_path):
    f = tmp_path / "t.tsv"
    f.write_text("".join(f"{a}\t{b}\t{PAIRS[(i + 3) % 24][1]}\n" for i, (a, b) in enumerate(PAIRS)))
    d = load_training_data(f)
    assert d.format == "triplets" and d.texts["negative"][0] == PAIRS[3][1]


def test_scores_0_to_5_are_scaled(scored_csv):
    d = load_training_data(scored_csv)
    assert d.format == "scored" and d.score_scale == 5.0
    assert d.values is not None and d.values.max() == 1.0 and d.values.min() == pytest.approx(0.08)


def test_labels(labeled_csv):
    d = load_training_data(labeled_csv)
    assert d.format == "labeled" and sorted(set(d.values)) == [0, 1]
    assert len(d.positive_pairs()) == 16


def test_all_positive_labels_read_as_pairs(tmp_path):
    f = write_csv(tmp_path / "q.csv", "question1,question2,is_duplicate", [(a, b, 1) for a, b in PAIRS])
    d = load_training_data(f)
    assert d.format == "pairs" and "read as (anchor, positive) pairs" in d.notes[0]


@pytest.mark.parametrize("header,rows,message", [
    ("a,b,c,d", [("x", "y", "z", "w")], "fit no known training format. Known formats: pairs"),
    ("text", [("only one column",)], "fit no known training format"),
    ("sentence1,sentence2,score", [("a", "b", 3.0), ("c", "d", 7.5)], "line 3: score 7.5"),
    ("sentence1,sentence2,score", [("a", "b", 3.0), ("c", "d", -1)], "out of range"),
    ("text1,text2,label", [("a", "b", 1), ("c", "d", 2)], "line 3: label 2 in 'label' is not 0 or 1"),
    ("sentence1,sentence2,score", [("a", "b", 3.0), ("c", "d", "high")], "line 3: 'score' is not a number"),
    ("query,description", [("a", "b"), ("", "d")], "line 3: empty text in column 'query'"),
])
def test_bad_training_files(tmp_path, header, rows, message):
    f = write_csv(tmp_path / "bad.csv", header, rows)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        load_training_data(f)
    assert str(f) in str(e.value)


def test_split_keeps_queries_on_one_side(tmp_path):
    rows = [(f"query {i % 10}", f"passage {i}") for i in range(40)]
    d = load_training_data(write_csv(tmp_path / "p.csv", "anchor,positive", rows))
    train_part, held = d.split(0.2, seed=1)
    assert len(train_part) + len(held) == 40
    assert not set(train_part.texts["anchor"]) & set(held.texts["anchor"])
    assert len(set(held.texts["anchor"])) == 2


def test_balanced(labeled_csv):
    d = load_training_data(labeled_csv).balanced()
    assert len(d) == 32 and int(d.values.sum()) == 16


# --- training on the real model ----------------------------------------------------------------

def pair_similarity(model_dir: str, a: list[str], b: list[str]) -> np.ndarray:
    enc = load_encoder(EncoderSettings(model=model_dir))
    va, vb = enc.encode(a), enc.encode(b)
    return np.einsum("ij,ij->i", va, vb)


@pytest.mark.slow
@pytest.mark.parametrize("fixture,loss,expect_format", [
    ("pairs_csv", None, "pairs"),
    ("pairs_csv", "cached-mnrl", "pairs"),
    ("scored_csv", None, "scored"),
    ("scored_csv", "cosine", "scored"),
    ("labeled_csv", None, "labeled"),
    ("labeled_csv", "mnrl", "pairs"),
])
@pytest.mark.slow
def test_each_loss_path_changes_embeddings(request, tmp_path, fixture, loss, expect_format,
                                           tiny_model_dir):
    """Each format's loss trains (on the tiny model: the mechanics; what training gains on the
    real model is measured by test_output_directory_and_metrics)."""
    f = request.getfixturevalue(fixture)
    out = tmp_path / "model"
    res = train(f, TrainConfig(output=str(out), base=str(tiny_model_dir), loss=loss,
                               batch_size=8, learning_rate=1e-3, epochs=2, eval_split=0,
                               mini_batch_size=4))
    t = res.metrics["train"]
    assert t["loss"] == (loss or {"pairs": "mnrl", "scored": "cosent", "labeled": "online-contrastive"}[
        expect_format]) and t["format"] == expect_format and t["steps"] >= 2
    a, b = [p[0] for p in PAIRS[:8]], [p[1] for p in PAIRS[:8]]
    before = pair_similarity(str(tiny_model_dir), a, b)
    after = pair_similarity(str(out), a, b)
    assert np.abs(after - before).max() > 1e-3
    # Every one of these trains the gold pairs (score 5 / label 1 / positives) closer together
    # than mismatched ones: the gap between them grows.
    other = b[1:] + b[:1]

    def gap(model: str, sims: np.ndarray) -> float:
        return float(sims.mean() - pair_similarity(model, a, other).mean())

    assert gap(str(out), after) > gap(str(tiny_model_dir), before)


@pytest.mark.slow
def test_triplets_and_mined_negatives(tmp_path, pairs_csv, tiny_model_dir):
    f = tmp_path / "t.csv"
    write_csv(f, "anchor,positive,negative",
              [(a, b, PAIRS[(i + 3) % 24][1]) for i, (a, b) in enumerate(PAIRS)])
    tiny = str(tiny_model_dir)  # the mechanics: which format, which negatives
    res = train(f, TrainConfig(output=str(tmp_path / "t"), base=tiny, batch_size=8,
                               eval_split=0))
    assert res.metrics["train"]["format"] == "triplets"
    res = train(pairs_csv, TrainConfig(output=str(tmp_path / "m"), base=tiny, batch_size=8,
                                       eval_split=0, mine_hard_negatives=True))
    assert res.metrics["train"]["format"] == "triplets"
    assert any("hard negatives mined for" in n for n in res.notes)
    with pytest.raises(InputError, match="--mine-hard-negatives adds negatives"):
        train(f, TrainConfig(output=str(tmp_path / "x"), batch_size=8, mine_hard_negatives=True))


@pytest.mark.slow
def test_output_directory_and_metrics(tmp_path, pairs_csv, tiny_model_dir):
    """What a training run leaves and reports (the mechanics: the tiny model; what training on
    the real model gains is tests/test_tuning.py's improve --full and bench_training's)."""
    heldout = write_csv(tmp_path / "held.csv", "anchor,positive", PAIRS[16:])
    train_file = write_csv(tmp_path / "train.csv", "anchor,positive", PAIRS[:16])
    out = tmp_path / "v1"
    res = train(train_file, TrainConfig(output=str(out), base=str(tiny_model_dir), batch_size=8,
                                        epochs=2, eval_file=str(heldout)))
    assert {p.name for p in out.iterdir()} >= {"README.md", "config.json", "metrics.json",
                                               "model.safetensors", "training_config.json"}
    metrics = json.loads((out / "metrics.json").read_text())
    ev = metrics["eval"]
    assert ev["primary"] == "mrr@10" and set(ev["before"]) == set(ev["after"])
    assert [round(e["epoch"]) for e in ev["per_epoch"]] == [1, 2]
    assert ev["best_checkpoint"].startswith("checkpoint-")
    best = max(e["mrr@10"] for e in ev["per_epoch"])
    assert ev["after"]["mrr@10"] == pytest.approx(best, abs=1e-6)  # the best epoch was kept
    config = json.loads((out / "training_config.json").read_text())
    assert config["format"] == "pairs" and config["loss_resolved"] == "mnrl"
    card = (out / "README.md").read_text()
    assert "| mrr@10 (primary) |" in card and "MultipleNegativesRankingLoss" in card
    assert not out.with_name("v1.partial").exists()
    assert res.metrics["train"]["pairs_per_second"] > 0
    # Continue from it: --base takes the trained model.
    res2 = train(train_file, TrainConfig(output=str(tmp_path / "v2"), base=str(out), batch_size=8,
                                         eval_split=0))
    assert json.loads((tmp_path / "v2" / "training_config.json").read_text())["base"] == str(out)
    assert res2.output.is_dir()


def test_refusals(tmp_path, pairs_csv):
    out = tmp_path / "m"
    with pytest.raises(InputError, match="24 training rows are fewer than one batch of 64"):
        train(pairs_csv, TrainConfig(output=str(out), batch_size=64, eval_split=0))
    with pytest.raises(InputError, match="loss 'cosent' needs scored or labeled"):
        train(pairs_csv, TrainConfig(output=str(out), loss="cosent"))
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="exists and is not empty"):
        train(pairs_csv, TrainConfig(output=str(out), batch_size=8, eval_split=0))
    assert (out / "keep.txt").read_text() == "mine"
    with pytest.raises(InputError, match="nothing to resume"):
        train(pairs_csv, TrainConfig(output=str(tmp_path / "new"), batch_size=8), resume=True)


@pytest.mark.slow
def test_prefixes_travel_with_the_trained_model(tmp_path, tiny_model_dir, pairs_csv):
    """An e5-style base gets 'query: '/'passage: ' by its name; the trained copy keeps them."""
    out = tmp_path / "tuned"
    train(pairs_csv, TrainConfig(output=str(out), base=str(tiny_model_dir), batch_size=8, eval_split=0))
    s = load_encoder(EncoderSettings(model=str(out))).settings
    assert (s.query_prefix, s.document_prefix) == ("query: ", "passage: ")


@pytest.mark.slow
def test_batch_size_auto(tmp_path, pairs_csv, tiny_model_dir):
    """The probe's mechanics, on the tiny model."""
    data = load_training_data(pairs_csv)
    model = load_encoder(EncoderSettings(model=str(tiny_model_dir))).model
    loss = build_loss("mnrl", model)
    weights = next(model.parameters()).detach().clone()
    probe = find_batch_size(model, loss, data, budget_bytes=1, start=2)
    assert probe.batch_size == 2 and "memory budget" in probe.reason  # the smallest, nothing fits
    probe = find_batch_size(model, loss, data, budget_bytes=8 * 2**30, start=2)
    # 24 rows: 24 // 8 = 3 rows per step is below the smallest batch, so the floor of 4 applies
    assert probe.batch_size == cap_for_rows(24) == 4 and "steps per epoch" in probe.reason
    assert cap_for_rows(1000) == 64 and cap_for_rows(10**6) == 512
    assert torch_equal(weights, next(model.parameters()))  # trials never change the weights
    res = train(pairs_csv, TrainConfig(output=str(tmp_path / "a"), base=str(tiny_model_dir),
                                       batch_size="auto", eval_split=0))
    assert res.metrics["train"]["batch_probe"]["trials"]
    assert res.metrics["train"]["batch_size"] == res.metrics["train"]["batch_probe"]["batch_size"]


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b.detach()))


@pytest.mark.slow
def test_ctrl_c_keeps_a_checkpoint_and_resume_finishes(tmp_path, pairs_csv, tiny_model_dir):
    from transformers import TrainerCallback

    class CtrlCAtStep2(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == 2:
                os.kill(os.getpid(), signal.SIGINT)

    out = tmp_path / "m"
    config = TrainConfig(output=str(out), base=str(tiny_model_dir), batch_size=4, epochs=1,
                         eval_split=0)
    with pytest.raises(TrainingInterrupted, match="stopped at step 3 of 6") as e:
        train(pairs_csv, config, callbacks=[CtrlCAtStep2()])
    assert "--resume" in str(e.value)
    assert not out.exists()
    partial = tmp_path / "m.partial"
    assert (partial / "checkpoints" / "checkpoint-3").is_dir()
    kept = load_encoder(EncoderSettings(model=str(partial / "interrupted")))
    assert kept.encode(["still usable"]).shape == (1, 32)
    with pytest.raises(InputError, match="other settings \\(learning_rate\\)"):
        train(pairs_csv, TrainConfig(output=str(out), base=str(tiny_model_dir), batch_size=4,
                                     eval_split=0, learning_rate=1e-3), resume=True)
    res = train(pairs_csv, config, resume=True)
    assert res.metrics["train"]["steps"] == 6 and out.is_dir() and not partial.exists()


# --- CLI -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_train(tmp_path, pairs_csv, capsys, tiny_model_dir):
    out = tmp_path / "cli-model"
    assert main(["train", str(pairs_csv), "-o", str(out), "--base", str(tiny_model_dir),
                 "--batch-size", "8", "--eval-split", "0.25", "--epochs", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["output"] == str(out) and result["eval"]["primary"] == "mrr@10"
    assert main(["eval", "retrieval", "--pairs", str(pairs_csv), "--model", "default",
                 "--model", str(out), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)["results"]
    assert set(table) == {"default", str(out)}


@pytest.mark.parametrize("argv,message", [
    (["--batch-size", "big"], "batch size must be a number or 'auto'"),
    (["--epochs", "0"], "epochs must be > 0"),
    (["--eval-split", "0.2", "--eval", "x.csv"], "not both"),
])
def test_cli_train_bad_options(tmp_path, pairs_csv, capsys, argv, message):
    assert main(["train", str(pairs_csv), "-o", str(tmp_path / "m"), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("neartext train: error:") and message in err
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.partial").exists()


@pytest.mark.slow
def test_cli_train_redirected_logs_progress_and_warns_of_a_small_held_out_set(
        tmp_path, pairs_csv, capsys, monkeypatch, tiny_model_dir):
    """stderr is not a terminal here (as in `neartext train ... 2> log`): progress comes as
    lines with rate and time left, for the baseline evaluation too; 6 held-out queries are far
    too few to trust, and the run says how many would be."""
    monkeypatch.setenv("NEARTEXT_PROGRESS_SECONDS", "0")
    out = tmp_path / "logged"
    assert main(["train", str(pairs_csv), "-o", str(out), "--base", str(tiny_model_dir),
                 "--batch-size", "8", "--eval-split", "0.25", "--epochs", "1"]) == 0
    captured = capsys.readouterr()
    err = captured.err
    assert "\r" not in err
    speed = r"([\d.,]+ (texts|steps)/s|[\d.,]+ s/(text|step))"
    assert re.search(rf"^evaluating \(baseline\): \d+/\d+ texts \(\d+%\), {speed}", err, re.M)
    assert re.search(rf"^training: \d/\d steps \(\d+%\), {speed}, .*(left|in all)", err, re.M)
    assert re.search(r"^warning: the held-out data is small: on 6 queries a change of up to "
                     r"±0\.4 in mrr@10 can be chance \(95%\); about 385 queries are needed", err, re.M)
    assert "note: the held-out data is small" in captured.out
    assert re.search(r"peak memory [\d.]+ GB", captured.out)


@pytest.mark.slow
def test_long_texts_train_with_the_gradient_cache_within_the_memory_budget(tmp_path,
                                                                           tiny_model_dir):
    """A step over the budget switches MNRL to its gradient-cached form (same loss and
    gradients, memory per mini-batch); naming the loss keeps it. On the tiny model: the
    mechanics."""
    from neartext.training.batch_size import _reset_peak

    if not _reset_peak():
        pytest.skip("peak memory cannot be measured here (/proc/self/clear_refs)")
    rows = [(a, f"{b}. {LONG}") for a, b in PAIRS]
    data = write_csv(tmp_path / "long.csv", "anchor,positive", rows)
    tiny = str(tiny_model_dir)
    res = train(data, TrainConfig(output=str(tmp_path / "cached"), base=tiny, batch_size=8,
                                  eval_split=0, memory_budget_gb=0.001))
    assert res.metrics["train"]["loss"] == "cached-mnrl"
    assert any("gradient cache" in n and "mini-batches of 2" in n for n in res.notes)
    config = json.loads((tmp_path / "cached" / "training_config.json").read_text())
    assert config["loss_resolved"] == "cached-mnrl"
    assert res.metrics["train"]["peak_memory_gb"] > 0.1
    kept = train(data, TrainConfig(output=str(tmp_path / "plain"), base=tiny, batch_size=8,
                                   eval_split=0, memory_budget_gb=0.001, loss="mnrl"))
    assert kept.metrics["train"]["loss"] == "mnrl"
