"""Adapters, tune, versions and rollback: with the bundled model on the demo collection."""

from __future__ import annotations

import csv
import json
import random
import shutil
import sys
import time

import numpy as np
import pytest
from conftest import DEMO, ROOT, TEMPLATE

import neartext.ops.tune as tuning
from neartext import Collection
from neartext.algo.adapters import Adapter, train_adapter
from neartext.algo.ranker import fit_linear, fit_ranker, from_text, load_ranker, score
from neartext.cli import main
from neartext.data.corpus import Record
from neartext.data.lexical import terms
from neartext.engine.feedback import FeedbackStore
from neartext.errors import CorruptCollection, InputError, ModelMismatch
from neartext.ops.learning import without_known
from neartext.ops.tune import tune
from neartext.ops.versions import list_versions, rollback, version_view


def rotated(n: int = 300, dim: int = 16, angle: float = 1.2, seed: int = 0):
    rng = np.random.default_rng(seed)
    docs = rng.standard_normal((n, dim)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.kron(np.eye(dim // 2), [[c, -s], [s, c]]).astype(np.float32)
    return docs, docs @ rotation.T, rotation


@pytest.mark.parametrize("kind", ["linear", "lowrank", "residual-mlp"])
def test_an_adapter_learns_a_known_rotation(kind):
    docs, queries, rotation = rotated()
    rows = np.arange(len(docs))
    # a large rotation (cos 1.2 = 0.36): a larger step than the default for real data
    res = train_adapter(queries, rows, docs, groups=rows, base_fingerprint="f", kind=kind,
                        lr=3e-3)
    assert res.before["mrr@10"] < 0.5 and res.after["mrr@10"] > 0.95, (res.before, res.after)
    # queries are moved towards their documents: the matrix undoes much of the rotation
    cos_before = float(np.mean(np.sum(queries * docs, axis=1)))  # cos 1.2 = 0.36
    cos_after = float(np.mean(np.sum(res.adapter.apply(queries) * docs, axis=1)))
    assert cos_after > cos_before + 0.3, (cos_before, cos_after)
    assert res.best_epoch >= 1 and res.train_pairs + res.held_out_pairs == len(docs)


def test_a_both_side_adapter_is_kept_only_invertible_and_its_condition_asked_only_then(
        monkeypatch):
    """The condition number (an SVD of the matrix) is computed for the epochs that would be
    kept, not for every epoch; with a bound no matrix but the identity meets, nothing is."""
    import neartext.algo.adapters as adapters

    docs, queries, _ = rotated()
    rows = np.arange(len(docs))
    asked: list[float] = []
    cond = np.linalg.cond

    def counted(m):
        asked.append(float(cond(m)))
        return asked[-1]

    monkeypatch.setattr(adapters.np.linalg, "cond", counted)
    res = train_adapter(queries, rows, docs, groups=rows, base_fingerprint="f", side="both",
                        lr=3e-3, epochs=12)
    assert res.best_epoch >= 1 and 1 <= len(asked) < len(res.history)
    asked.clear()
    monkeypatch.setattr(adapters, "MAX_CONDITION", 1.0)
    res = train_adapter(queries, rows, docs, groups=rows, base_fingerprint="f", side="both",
                        lr=3e-3, epochs=12)
    assert res.best_epoch == 0 and asked and min(asked) >= 1.0


def test_the_gold_mask_of_a_batch_is_each_candidates_membership_of_its_querys_gold():
    """An oracle (the membership test it replaced, candidate by candidate)."""
    from neartext.algo.adapters import _gold_mask

    rng = np.random.default_rng(0)
    for _ in range(200):
        groups = [int(g) for g in rng.integers(0, 10, rng.integers(1, 40))]
        gold = {g: {int(x) for x in rng.integers(0, 30, rng.integers(1, 4))} for g in groups}
        batch = rng.integers(0, len(groups), rng.integers(1, 20))
        cand = rng.integers(0, 30, rng.integers(1, 60))  # with repeats, as batches have
        want = [[c in gold[groups[i]] for c in cand.tolist()] for i in batch.tolist()]
        assert _gold_mask(batch, cand, groups, gold).tolist() == want


def test_an_adapter_trains_on_one_torch_thread_and_gives_the_pool_back(monkeypatch):
    """Its small updates run on one torch thread (a second one only costs: 0.65 s against
    1.85 s for the demo's adapter on 2 cores); the thread count is restored afterwards, also
    when training fails, and by the last of two trainings running at once."""
    import threading

    import torch

    docs, queries, _ = rotated()
    rows = np.arange(len(docs))
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the setting of a 2-core machine, wherever the test runs
    seen: list[int] = []
    fail: list[bool] = []
    step = torch.optim.Adam.step

    def counted(self, *a, **k):
        seen.append(torch.get_num_threads())
        if fail:
            raise RuntimeError("a step failed")
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", counted)
    try:
        train_adapter(queries, rows, docs, groups=rows, base_fingerprint="f", epochs=2)
        assert set(seen) == {1} and torch.get_num_threads() == 2
        fail.append(True)
        with pytest.raises(RuntimeError, match="a step failed"):
            train_adapter(queries, rows, docs, groups=rows, base_fingerprint="f")
        assert torch.get_num_threads() == 2
        fail.clear()
        ts = [threading.Thread(target=train_adapter, args=(queries, rows, docs),
                               kwargs={"groups": rows, "base_fingerprint": "f", "epochs": 2})
              for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_residual_mlp_fits_a_map_no_matrix_can(tmp_path):
    """Queries rotated one way or the other by the sign of their first coordinate: no single
    matrix undoes both, the residual MLP's non-linear correction does better; its file
    round-trips to the same vectors."""
    docs, _, _ = rotated(n=1000, angle=0.8)
    _, plus, _ = rotated(n=1000, angle=0.8)
    _, minus, _ = rotated(n=1000, angle=-0.8)
    queries = np.where(docs[:, :1] > 0, plus, minus).astype(np.float32)
    rows = np.arange(len(docs))
    gains = {kind: train_adapter(queries, rows, docs, groups=rows, base_fingerprint="f",
                                 kind=kind, lr=3e-3) for kind in ("linear", "residual-mlp")}
    assert gains["residual-mlp"].gain() > gains["linear"].gain() + 0.03, \
        {k: (r.before, r.after) for k, r in gains.items()}
    mlp = gains["residual-mlp"].adapter
    assert mlp.mlp is not None and mlp.kind == "residual-mlp"
    mlp.save(tmp_path / "mlp.npz")
    back = Adapter.load(tmp_path / "mlp.npz", "f")
    assert np.allclose(back.apply(queries[:50]), mlp.apply(queries[:50]), atol=1e-6)
    with np.load(tmp_path / "mlp.npz") as z:
        parts = dict(z)
    parts["out"] = parts["out"][:, :3]  # a hidden layer that does not fit
    np.savez(tmp_path / "bad.npz", **parts)
    with pytest.raises(InputError, match="bad.npz: the adapter does not load"):
        Adapter.load(tmp_path / "bad.npz")


def test_a_diagonal_adapter_cannot_undo_a_rotation_and_says_so_by_its_metrics():
    docs, queries, _ = rotated()
    rows = np.arange(len(docs))
    res = train_adapter(queries, rows, docs, groups=rows, base_fingerprint="f", kind="diagonal",
                        lr=3e-3)
    assert res.gain() < 0.05


def test_adapter_file_round_trip_and_refusals(tmp_path):
    docs, queries, _ = rotated(n=100, dim=8)
    rows = np.arange(100)
    res = train_adapter(queries, rows, docs, groups=rows, base_fingerprint="abc", kind="lowrank")
    path = tmp_path / "a.npz"
    res.adapter.save(path)
    back = Adapter.load(path, "abc")
    assert np.array_equal(back.matrix, res.adapter.matrix) and back.kind == "lowrank"
    with pytest.raises(ModelMismatch, match="trained on vectors of model abc"):
        Adapter.load(path, "xyz")
    path.write_bytes(b"not an adapter")
    with pytest.raises(InputError, match="a.npz: the adapter does not load"):
        Adapter.load(path)
    with pytest.raises(InputError, match="3 \\(query, document\\) pairs are too few"):
        train_adapter(queries[:3], rows[:3], docs, groups=rows[:3], base_fingerprint="abc")
    with pytest.raises(InputError, match="unknown adapter kind 'mlp'"):
        train_adapter(queries, rows, docs, groups=rows, base_fingerprint="abc", kind="mlp")


def test_every_passage_of_a_gold_document_is_gold_to_an_adapter_none_a_negative():
    """Documents of two passages, each query the second passage's vector, its given target the
    first: measured with ``passages``, the document ranks first for every query (its other
    passage is as good an answer); without, the first passage is the only right answer."""
    from neartext.algo.adapters import PassageRows, _gold_mask

    rng = np.random.default_rng(0)
    docs = rng.standard_normal((200, 16)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries, first = docs[1::2], np.arange(0, 200, 2)
    passages = PassageRows([f"d{i // 2}" for i in range(200)])
    kw = dict(groups=np.arange(100), base_fingerprint="f", epochs=1)
    assert train_adapter(queries, first, docs, passages=passages, **kw).before["mrr@10"] == 1.0
    assert train_adapter(queries, first, docs, **kw).before["mrr@10"] < 0.5
    gold = {g: set(passages.siblings(int(p)).tolist()) for g, p in enumerate(first)}
    assert gold[3] == {6, 7}
    mask = _gold_mask(np.array([3]), np.array([6, 7, 8]), list(range(100)), gold)
    assert mask.tolist() == [[True, True, False]]  # neither passage of d3 a negative of it


def _texts(col: Collection) -> list[tuple[str, str]]:
    ids = list(col.store.document_hashes())
    return [(d.id, d.text) for d in col.store.get(ids)]


def _templated(docs) -> list[tuple[str, str]]:
    return [(TEMPLATE + " ".join(t.split()[:4]), d) for d, t in docs]


def _write_pairs(path, rows) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["query", "passage"])
        w.writerows(rows)


def test_tune_refuses_an_adapter_that_does_not_help_and_changes_nothing(demo_copy, tmp_path):
    """Each query is its document's own text: search is already right for every held-out
    query, an adapter can only do as well or worse, so nothing is promoted, the manifest and
    the searches are unchanged. The adapter learned nothing (no epoch beat the identity): the
    report says so and keeps no "candidate" (before: an identity matrix kept and reported as a
    trained linear adapter)."""
    with Collection.open(demo_copy) as col:
        docs = _texts(col)
        _write_pairs(tmp_path / "self.csv", [(t, t) for _, t in docs[:150]])
        before = [(r.id, round(r.score, 6)) for r in col.search("refund my money", k=5)]
        manifest = (demo_copy / "manifest.json").read_text()
        report = tune(col, tmp_path / "self.csv")
        assert report.before["mrr@10"] > 0.95
        assert not report.promoted and "not promoted" in report.reason, report.reason
        assert report.from_file == 150 and report.version == 1
        assert not report.adapter_learned and "linear adapter learned nothing" in report.summary()
        assert report.columns == ["query", "passage"] and "(columns query, passage)" in \
            report.summary()
        assert all(c["adapter"] == "current" for c in report.candidates)
        assert "no adapter to keep" in report.reason
        # "chosen" only for what was promoted: here the best candidate, named so
        assert "  held-out       current     best" in report.summary().splitlines()
        assert not (demo_copy / "adapters" / "candidate.npz").exists()
        assert (demo_copy / "manifest.json").read_text() == manifest
        assert [(r.id, round(r.score, 6)) for r in col.search("refund my money", k=5)] == before


@pytest.mark.slow
def test_tune_searches_each_query_once_per_depth(demo_copy, tmp_path, monkeypatch):
    """tune measures a dozen rankings of the same queries with two adapters; the store is asked
    for each query's keyword and chars hits once per depth (10 and the fusion's 50), not per
    ranking, and for each candidate's vectors once: on 100,000 documents the repeated searches
    were four fifths of its time (counted here: 12 keyword searches of a query at depth 50
    before); the vectors were read once per query and ranking (here, before: 18,525 reads of
    247 documents, up to 451 of one; chars hits twice a query)."""
    from collections import Counter

    from neartext.store.local import LocalStore

    asked: Counter[tuple[str, str, int]] = Counter()
    read: Counter[str] = Counter()

    def counting(name):
        real = getattr(LocalStore, name)

        def count(self, queries, k, flt=None):
            asked.update((name, q, k) for q in queries)
            return real(self, queries, k, flt)
        return count

    real_vectors = LocalStore.doc_vectors

    def reading(self, doc_ids):
        read.update(doc_ids)
        return real_vectors(self, doc_ids)

    for name in ("keyword_search", "chars_search"):
        monkeypatch.setattr(LocalStore, name, counting(name))
    monkeypatch.setattr(LocalStore, "doc_vectors", reading)
    with Collection.open(demo_copy) as col:
        docs = _texts(col)
        _write_pairs(tmp_path / "pairs.csv", _templated(docs[:120]))
        report = tune(col, tmp_path / "pairs.csv")
    assert report.adapter_learned and len(report.candidates) >= 13
    assert {n for n, _, _ in asked} == {"keyword_search", "chars_search"}
    assert max(asked.values()) == 1, asked.most_common(1)
    assert read and max(read.values()) == 1, read.most_common(1)


def test_the_gate_needs_a_gain_beyond_the_luck_of_the_split():
    from neartext.algo.adapters import paired_gain

    steady = paired_gain(np.zeros(40), np.full(40, 0.1))
    assert steady[0] == pytest.approx(0.1) and steady[1] > 0.09
    lucky = paired_gain(np.zeros(40), np.r_[1.0, np.zeros(39)])  # one query, by chance
    assert lucky[0] == pytest.approx(0.025) and lucky[1] <= 0


@pytest.mark.slow
def test_promote_then_rollback_restores_exactly_the_previous_results(demo_copy, tmp_path,
                                                                     encoder):
    with Collection.open(demo_copy, model=encoder) as col:
        docs = _texts(col)
        # queries are documents' first three words, answered by the document: an adapter
        # learns from them (held-out MRR@10 0.77 -> 0.91 measured)
        _write_pairs(tmp_path / "pairs.csv", [(" ".join(t.split()[:3]), t) for _, t in docs])
        queries = ["refund my money", "the app crashes when I open it", "dark mode please"]
        before = [[(r.id, r.score) for r in col.search(q, k=5)] for q in queries]
        report = tune(col, tmp_path / "pairs.csv", force=True)
        assert report.promoted and report.version == 2 and report.from_file == len(docs)
        assert col.adapter is not None and col.adapter.info["best_epoch"] > 0
        after = [[(r.id, r.score) for r in col.search(q, k=5)] for q in queries]
        # the adapter (and the ranking chosen with it) applies to every search
        assert all(abs(a[0][1] - b[0][1]) > 1e-3 for a, b in zip(after, before))
    with Collection.open(demo_copy, model=encoder) as col:  # survives reopening
        assert col.manifest.version == 2 and col.adapter is not None
        assert [[(r.id, r.score) for r in col.search(q, k=5)] for q in queries] == after
        assert [v["version"] for v in list_versions(col)] == [1, 2]
        with pytest.raises(InputError, match="there is no version 7; versions: 1, 2"):
            rollback(col, 7)
        assert rollback(col)["version"] == 1
        assert [[(r.id, r.score) for r in col.search(q, k=5)] for q in queries] == before
        assert [v["version"] for v in list_versions(col) if v["current"]] == [1]
        assert rollback(col, 2)["version"] == 2  # and forward again
        assert [[(r.id, r.score) for r in col.search(q, k=5)] for q in queries] == after


def test_tune_learns_from_ratings_and_names_what_it_cannot_use(demo_copy, tmp_path):
    with Collection.open(demo_copy) as col:
        docs = _texts(col)
    fb = FeedbackStore(demo_copy)
    for i, (doc, text) in enumerate(docs[:40]):
        fb.add(" ".join(text.split()[:4]), doc, True)
        fb.add(" ".join(text.split()[:4]), docs[-1 - i][0], False)  # a 👎 next to the 👍
    fb.add("a rated document that was deleted", "no-such-doc", True)
    fb.close()
    _write_pairs(tmp_path / "few.csv", [("q1", "a passage no document has")] + [
        (f"q{i}", t) for i, (_, t) in enumerate(docs[:5])])
    with Collection.open(demo_copy) as col:
        with pytest.raises(InputError, match="5 usable \\(query, document\\) pairs \\(5 from the "
                                             "file, 0 👍 ratings\\); at least 20"):
            tune(col, tmp_path / "few.csv")
        report = tune(col, tmp_path / "few.csv", feedback=True, force=True)
        assert report.from_feedback == 40 and report.hard_negatives == 40
        assert any("1 pairs of" in n and "a passage no document has" in n for n in report.notes)
        assert any("1 ratings name documents no longer in the collection" in n
                   for n in report.notes)


@pytest.mark.slow
def test_cli_tune_shows_its_progress(demo_copy, tmp_path, capsys, monkeypatch):
    """tune says how far it is in measuring the rankings (a log line when not on a terminal;
    none with -q: test_a_both_side_adapter_maps_the_stored_vectors_and_rollback_maps_them_back
    runs its tune with -q)."""
    with Collection.open(demo_copy) as col:
        docs = _texts(col)
    _write_pairs(tmp_path / "pairs.csv", _templated(docs))
    monkeypatch.setenv("NEARTEXT_PROGRESS_SECONDS", "0")  # a progress line at every step
    assert main(["tune", str(demo_copy), "--pairs", str(tmp_path / "pairs.csv")]) == 0
    err = capsys.readouterr().err
    assert "measuring rankings on 45 held-out queries: 17/17 rankings (100%)" in err, err


@pytest.mark.slow
def test_cli_tune_versions_rollback(demo_copy, tmp_path, capsys, monkeypatch):
    with Collection.open(demo_copy) as col:
        docs = _texts(col)
    _write_pairs(tmp_path / "pairs.csv", _templated(docs))
    monkeypatch.setenv("NEARTEXT_PROGRESS_SECONDS", "0")  # a progress line at every step
    assert main(["tune", str(demo_copy), "--pairs", str(tmp_path / "pairs.csv"), "--force",
                 "--kind", "lowrank", "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["promoted"] and out["version"] == 2 and out["kind"] == "lowrank"
    assert "measuring rankings" not in captured.err  # --json: no progress
    assert main(["versions", str(demo_copy)]) == 0
    listing = capsys.readouterr().out
    assert "*   2" in listing and "lowrank adapter" in listing
    assert main(["rollback", str(demo_copy), "--to", "5"]) == 1
    assert "there is no version 5" in capsys.readouterr().err
    assert main(["rollback", str(demo_copy)]) == 0
    assert "version 1 is current" in capsys.readouterr().out
    assert main(["tune", str(demo_copy)]) == 1
    assert "give training pairs" in capsys.readouterr().err
    # an adapter trained on another model's vectors is refused when the collection opens it
    shutil.copy(demo_copy / "adapters" / "v2.npz", tmp_path / "keep.npz")
    assert main(["rollback", str(demo_copy), "--to", "2"]) == 0
    capsys.readouterr()
    a = Adapter.load(tmp_path / "keep.npz")
    a.base_fingerprint = "0" * 64
    a.save(demo_copy / "adapters" / "v2.npz")
    assert main(["search", str(demo_copy), "refund"]) == 1
    assert "trained on vectors of model 000000000000" in capsys.readouterr().err


def test_tune_chooses_the_ranking_too_and_search_uses_it_when_no_mode_is_named(tmp_path,
                                                                               encoder):
    """Made-up names carry the signal (keyword matching finds them, meaning does not): the
    ranking chosen is never worse on the held-out queries than semantic or keyword alone, and
    searches that name no mode use it (a named mode or a cosine threshold wins)."""
    from neartext.ops.evaluation import evaluate_collection

    rng = random.Random(1)
    syllables = ["qor", "vex", "blin", "tam", "zur", "pok", "lim", "dra", "fen", "mul", "sak"]
    names = list(dict.fromkeys("".join(rng.sample(syllables, 3)) for _ in range(400)))[:200]
    says = ["reported that the app is slow", "asked for a refund of the last invoice",
            "cannot log in since the update", "wants a dark mode", "found a crash on startup"]
    corpus = tmp_path / "tickets.csv"
    _write_rows(corpus, ["id", "text"], [(f"t{i}", f"Customer {n} {says[i % 5]}.")
                                         for i, n in enumerate(names)])
    col, _ = Collection.from_file(tmp_path / "col", corpus, ["text"], "id", model=encoder)
    with col:
        _write_pairs(tmp_path / "names.csv", [(n, f"t{i}") for i, n in enumerate(names)])
        report = tune(col, tmp_path / "names.csv")
        by = {(c["adapter"], c["ranking"]): c["mrr@10"] for c in report.candidates}
        best_single = max(by[("current", "semantic")], by[("current", "keyword")])
        assert by[("current", "keyword")] > by[("current", "semantic")] + 0.1
        assert report.after["mrr@10"] >= best_single - 1e-9
        assert report.promoted and report.ranking != "semantic", report.summary()
        # what a person reads: every candidate in a table of rankings by adapter, one marked
        lines = report.summary().splitlines()
        head = next(i for i, line in enumerate(lines) if line.startswith("  held-out MRR@10"))
        adapters = list(dict.fromkeys(c["adapter"] for c in report.candidates))
        assert lines[head].split()[2:] == [w for a in adapters for w in (a, "adapter")]
        names = list(dict.fromkeys(c["ranking"] for c in report.candidates))
        marked = []
        for line, name in zip(lines[head + 1:], names):
            cells = line[2 + len(name):].split()
            assert line[2:].startswith(name + "  ") and len(cells) == len(adapters), line
            for adapter, cell in zip(adapters, cells):
                value = by.get((adapter, name))
                assert cell.rstrip("*") == ("-" if value is None else f"{value:.4f}"), line
                marked += [(adapter, name)] * cell.endswith("*")
        assert marked == [(report.chosen["adapter"], report.ranking)]
        assert lines[head + 1 + len(names)] == "  (* the candidate chosen)"
        for learned in ("hybrid learned", "hybrid learned linear"):  # the ranker, the weights
            assert {"current", "new"} <= {c["adapter"] for c in report.candidates
                                          if c["ranking"] == learned}, learned
        tuned = col.search_options(5)
        assert tuned.mode == col.manifest.search.mode != "semantic"
        # each name answers one document and no other name: remembering the names would teach
        # a ranker nothing, and what it recalled for a new name would be another's answer
        assert tuned.ranker and tuned.known is None and "known_max" not in tuned.features
        assert col.search_options(5, mode="semantic").mode == "semantic"
        assert col.search_options(5, threshold=0.3).mode == "semantic"  # a cosine threshold
        _write_rows(tmp_path / "gold.csv", ["query", "id"], [(n, f"t{i}") for i, n in
                                                               enumerate(names)])
        measured = evaluate_collection(col, tmp_path / "gold.csv", gold_id="id")
        assert measured["mode"] == tuned.mode
        assert measured["ranking"] == col.manifest.search.describe()
        assert rollback(col)["search"] is None and col.search_options(5).mode == "semantic"


def test_tune_chooses_the_learned_ranking_unless_a_fixed_one_is_better_beyond_the_noise():
    """Of a dozen fixed rankings about as good as the learned one on the held-out queries, the
    luckiest tops it by a query or two: the learned ranking is chosen all the same (the best of
    all, as tune chose before, would be the lucky fixed one), and the report says why; a fixed
    ranking better beyond the noise is chosen; with one kind measured, its best."""
    from neartext.data.ranking import Ranking
    from neartext.ops.learning import against_fixed, best_row, choose_row
    from neartext.ops.tune import TuneReport

    learned_rr = np.random.default_rng(0).choice([1.0, 0.5, 0.0], 300)
    fixed = []
    for i, a in enumerate((0.3, 0.5, 0.7, 0.9) * 3):
        rr = learned_rr.copy()
        rr[[i, i + 20]] = learned_rr[[i + 20, i]]  # other queries right, as many
        if i == 5:  # and one ranks one query more first
            rr[np.flatnonzero(rr == 0)[0]] = 1.0
        fixed.append(("current" if i % 2 else "new", Ranking("hybrid", "blend", alpha=a), {},
                      rr))
    learned = ("new", Ranking("hybrid", "learned", weights=(1.0,) + (0.0,) * 5), {},
               learned_rr)
    rows = [*fixed, learned]
    lucky = best_row(rows, range(len(fixed)))
    assert rows[lucky][3].mean() > learned_rr.mean()  # the old rule would take it
    assert best_row(rows, range(len(rows))) == lucky
    assert choose_row(rows) == len(fixed)
    over = against_fixed(rows, len(fixed))
    assert over["gain"] < 0 and over["gain_lower_95"] < 0
    m = {"mrr@10": 0.5, "ndcg@10": 0.5, "recall@1": 0.5, "recall@10": 0.5}
    report = TuneReport("col", 10, 10, 10, 0, m, m, False, 1, "not promoted",
                        ranking="hybrid learned linear", over_fixed=over)
    assert "within the noise, so the learned ranking is chosen" in report.summary()
    better = ("current", Ranking("keyword"), {}, np.minimum(learned_rr + 0.5, 1.0))
    assert choose_row([*rows, better]) == len(rows)
    assert choose_row(fixed) == lucky and choose_row([learned]) == 0


def test_the_linear_ranking_is_the_pairwise_logistic_fit_tune_made_before():
    """fit_linear (scipy's L-BFGS on the pairwise logistic loss) against the Newton fit tune
    shipped before the LightGBM ranker (bench/baselines.py, the oracle): the same weights up to
    the solvers' tolerance, hence the same rankings; None without a query of both kinds."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from baselines import fit_pairwise
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(3)
    truth = np.array([2.0, -1.0, 0.5, 0.0])
    rows, labels = [], []
    for _ in range(80):
        x = rng.normal(size=(30, 4))
        s = x @ truth + rng.gumbel(size=30)
        rows.append(x)
        labels.append((s == s.max()).astype(float))
    mine, before = fit_linear(rows, labels, seed=0), fit_pairwise(rows, labels, seed=0)
    assert mine is not None and mine[-1] == 0.0
    assert np.allclose(mine, before, atol=1e-4), (mine, before)
    assert np.corrcoef(mine[:-1], truth)[0, 1] > 0.95
    assert fit_linear([rows[0]], [np.zeros(30)]) is None


def test_a_ranker_scores_as_lightgbms_own_booster_does():
    """A ranker is applied through LightGBM's C API, not its Python package (a cold search
    would import scipy.sparse with it): the scores equal lightgbm.Booster's on the same model
    (the oracle), bit for bit, on rows it never saw, one row and none; a width other than the
    model's is refused naming both."""
    import lightgbm

    rng = np.random.default_rng(5)
    rows = [rng.random((25, 6)) for _ in range(60)]
    labels = [(r[:, 0] + 0.4 * r[:, 3] == (r[:, 0] + 0.4 * r[:, 3]).max()).astype(float)
              for r in rows]
    fitted = fit_ranker(rows, labels, seed=0)
    mine, theirs = from_text(fitted.text), lightgbm.Booster(model_str=fitted.text)
    test = rng.random((500, 6))
    assert fitted.rounds > 1 and mine.num_feature() == theirs.num_feature() == 6
    assert np.array_equal(score(mine, test), theirs.predict(test))
    assert np.array_equal(score(mine, test[:1].astype(np.float32)), theirs.predict(test[:1]))
    assert score(mine, np.zeros((0, 6))).shape == (0,)
    with pytest.raises(CorruptCollection, match="weighs 6 features.*computed 5"):
        score(mine, test[:, :5])


def _write_rows(path, header, rows) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_improve_runs_only_on_new_ratings_and_the_bots_ratings_reach_it(demo_copy, capsys):
    """The bot's 👍/👎 (its backend, as Telegram drives it) land in the collection's ratings;
    `improve` tunes when ratings came in since the current version learned, and says so
    when none did."""
    import asyncio

    from neartext.bot.core import LocalBackend

    assert main(["improve", str(demo_copy)]) == 0
    assert "0 new ratings since version 1" in capsys.readouterr().out
    backend = LocalBackend(demo_copy)
    docs = _texts(backend.collection)

    async def rate_all() -> None:
        for i, (doc, text) in enumerate(docs[:40]):
            await backend.rate(" ".join(text.split()[:4]), doc, True)
            await backend.rate(" ".join(text.split()[:4]), docs[-1 - i][0], False)

    asyncio.run(rate_all())
    backend.close()
    assert main(["improve", str(demo_copy), "--force", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["promoted"] and out["from_feedback"] == 40 and out["hard_negatives"] == 40
    assert main(["improve", str(demo_copy)]) == 0  # nothing new since version 2
    assert "0 new ratings since version 2 (80 in all)" in capsys.readouterr().out
    fb = FeedbackStore(demo_copy)
    fb.add("one more query", docs[0][0], True)
    fb.close()
    assert main(["improve", str(demo_copy), "--min-new", "2"]) == 0
    assert "1 new ratings since version 2" in capsys.readouterr().out
    assert main(["improve", str(demo_copy), "--min-new", "0"]) == 1
    assert "--min-new must be at least 1" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_compares_versions_and_adapters_side_by_side(demo_copy, tmp_path, capsys):
    """``eval collection --model`` ranks as any version or adapter file without making it
    current; ``eval retrieval --model MODEL+ADAPTER`` / ``COLLECTION@vN`` the same on a corpus
    file: the same adapter gives the same metrics every way it is named."""
    with Collection.open(demo_copy) as col:
        docs = _texts(col)
    pairs = [(" ".join(t.split()[:3]), t) for _, t in docs]  # an adapter learns from these
    _write_pairs(tmp_path / "pairs.csv", pairs)
    assert main(["tune", str(demo_copy), "--pairs", str(tmp_path / "pairs.csv"), "--force",
                 "--json"]) == 0
    capsys.readouterr()
    held = tmp_path / "held.csv"
    _write_pairs(held, pairs[:60])
    manifest = (demo_copy / "manifest.json").read_text()
    assert main(["eval", "collection", str(demo_copy), "--pairs", str(held), "--model", "v1",
                 "--model", "v2", "--model", "base", "--model", "adapters/v2.npz",
                 "--model", "current", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)["results"]
    assert list(res) == ["v1", "v2 (current)", "base model", "v2.npz"]  # current = v2
    assert res["v1"]["mrr@10"] == res["base model"]["mrr@10"]
    assert res["v2 (current)"]["mrr@10"] == res["v2.npz"]["mrr@10"] != res["v1"]["mrr@10"]
    assert (demo_copy / "manifest.json").read_text() == manifest  # nothing made current
    assert main(["eval", "collection", str(demo_copy), "--pairs", str(held), "--model", "v1",
                 "--model", "v2"]) == 0
    table = capsys.readouterr().out
    assert "v1" in table and "v2 (current)" in table and "mrr@10" in table
    assert main(["eval", "collection", str(demo_copy), "--pairs", str(held), "--model",
                 "v9"]) == 1
    assert "there is no version 9; versions: 1, 2" in capsys.readouterr().err
    assert main(["eval", "collection", str(demo_copy), "--pairs", str(held), "--model",
                 "notes.txt"]) == 1
    assert "give 'current', 'base', a version number" in capsys.readouterr().err
    # a corpus file: the collection's model with v2's adapter, named two ways, vs none
    adapter = demo_copy / "adapters" / "v2.npz"
    assert main(["eval", "retrieval", "--pairs", str(held), "--model", "default",
                 "--model", f"default+{adapter}", "--model", f"{demo_copy}@v2", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)["results"]
    with_adapter = r[f"default+{adapter}"]["mrr@10"]
    assert with_adapter == r[f"{demo_copy}@v2"]["mrr@10"] != r["default"]["mrr@10"]
    a = Adapter.load(adapter)
    a.base_fingerprint = "0" * 64
    a.save(tmp_path / "other.npz")
    assert main(["eval", "retrieval", "--pairs", str(held), "--model",
                 f"default+{tmp_path / 'other.npz'}"]) == 1
    assert "trained on vectors of model 000000000000" in capsys.readouterr().err




def test_the_learned_fusion_ranks_by_its_weights_and_needs_them(demo_copy):
    """A version whose learned weights count the cosine alone ranks as semantic search does
    (the oracle); the learned fusion without weights is refused with the reason."""
    from neartext.data.ranking import SearchOptions
    from neartext.ops.versions import promote

    with pytest.raises(InputError, match="weights 'neartext tune' fits"):
        SearchOptions(mode="hybrid", fusion="learned")
    queries = ["refund my money", "the app crashes when I open it", "dark mode please"]
    with Collection.open(demo_copy) as col:
        semantic = [[r.id for r in col.search(q, k=10)] for q in queries]
        with pytest.raises(InputError, match="this version has none"):
            col.search(queries[0], mode="hybrid", fusion="learned")
        promote(col, None, {}, search={"mode": "hybrid", "fusion": "learned",
                                       "weights": [1.0, 0, 0, 0, 0, 0]})
        assert col.search_options(10).fusion == "learned"
        assert [[r.id for r in col.search(q, k=10)] for q in queries] == semantic
        promote(col, None, {}, search={"mode": "hybrid", "fusion": "learned",
                                       "weights": [0, 0, 0, 1.0, 0, 0]})  # keyword rank
        assert [r.id for r in col.search(queries[0], k=5)] == \
            [r.id for r in col.search(queries[0], k=5, mode="keyword")]


def test_the_linear_weighing_can_weigh_the_most_alike_sentence(tmp_path, encoder):
    """tune's linear weighing weighs the likeness of a document's most alike sentence too: a
    version that weighs it alone puts the document holding the query as one of its sentences
    before one holding the query's words spread over its sentences (which the words' and the
    grams' coverage score alike), and ranks every candidate by it (the oracle:
    chars_columns over their texts). A version naming it was refused before."""
    from neartext.engine.hybrid import chars_columns
    from neartext.ops.versions import promote

    texts = {"one": "The printer is out of paper. Cats fall off tables. Call us any time.",
             "spread": "Cats sleep all day. The tables fall over. Call us any time.",
             "other": "Dogs bark at night. Nothing falls."}
    col = Collection.create(tmp_path / "col", model=encoder)
    with col:
        col.upsert([Record(k, v, {}) for k, v in texts.items()])
        promote(col, None, {}, search={"mode": "hybrid", "fusion": "learned",
                                       "features": ["sentence_chars"], "weights": [1.0, 0.0]})
        hits = col.search("cats fall off tables", k=3)
        alike = chars_columns("cats fall off tables", [texts[h.id] for h in hits],
                              ["sentence_chars"])["sentence_chars"]
        assert [h.id for h in hits][:2] == ["one", "spread"]
        assert [h.score for h in hits] == pytest.approx(alike.tolist())
        assert list(alike) == sorted(alike, reverse=True)


def test_candidates_a_learned_ranking_scores_alike_come_in_the_default_blends_order(
        demo_copy, monkeypatch):
    """A learned ranking that scores candidates alike (a ranker whose trees put them in the same
    leaves, for a query unlike those it was trained on; here weights that weigh nothing, and a
    ranker whose scores are made equal) gives them in the order of the default hybrid blend.
    Before: in the order of their ids (for "refund my money", crash reports first: seen after a
    tune on pairs of each document's first three words)."""
    from conftest import promote_a_learned_ranker

    import neartext.engine.searching as searching
    from neartext.ops.versions import promote

    queries = ["refund my money", "the app crashes when I open it", "dark mode please"]
    with Collection.open(demo_copy) as col:
        want = [[r.id for r in col.search(q, k=5, mode="hybrid")] for q in queries]
        promote(col, None, {}, search={"mode": "hybrid", "fusion": "learned",
                                       "weights": [0, 0, 0, 0, 0, 0]})
        assert [[r.id for r in col.search(q, k=5)] for q in queries] == want
        promote_a_learned_ranker(col)
        monkeypatch.setattr(searching, "rank_scores", lambda booster, rows: np.zeros(len(rows)))
        assert [[r.id for r in col.search(q, k=5)] for q in queries] == want


def _memes(tmp_path, n: int = 150):
    """``n`` memes (title, description) whose descriptions name three other memes' titles, and
    (title, id) pairs: only a meme's first line tells it from those that mention it."""
    rng = random.Random(3)
    syl = ["qor", "vex", "blin", "tam", "zur", "pok", "lim", "dra", "fen", "mul", "sak", "tor",
           "gub", "nel"]
    titles = list(dict.fromkeys(f"{''.join(rng.sample(syl, 2))} {''.join(rng.sample(syl, 2))}"
                                for _ in range(3 * n)))[:n]
    assert len(titles) == n
    rows = []
    for i, t in enumerate(titles):
        others = rng.sample([x for x in titles if x != t], 3)
        rows.append((f"m{i}", t, f"A meme people post when plans fall apart. Often confused "
                                 f"with {others[0]}; fans of {others[1]} and {others[2]} share "
                                 f"it too. Not {others[0]}."))
    _write_rows(tmp_path / "memes.csv", ["id", "title", "description"], rows)
    _write_rows(tmp_path / "titles.csv", ["query", "id"], [(t, f"m{i}")
                                                           for i, t in enumerate(titles)])
    return titles


@pytest.mark.slow
def test_the_learned_fusion_learns_the_title_of_a_collection_built_from_two_columns(
        tmp_path, encoder):
    """Queries that are titles, in a collection of (title, description) rows whose
    descriptions name other titles: the learned ranker (LightGBM over every channel's
    features) ranks every held-out title first, where the fixed rankings do not; the version
    keeps the features' names and its ranker file, and searches after a reopen use them."""
    from neartext.data.ranking import RANKER_FEATURES
    from neartext.ops.evaluation import evaluate_collection

    titles = _memes(tmp_path)
    col, _ = Collection.from_file(tmp_path / "col", tmp_path / "memes.csv",
                                  ["title", "description"], "id", model=encoder)
    ids = [f"m{i}" for i in range(len(titles))]
    with col:
        report = tune(col, tmp_path / "titles.csv")
        assert report.promoted and report.ranking == "hybrid learned", report.summary()
        assert report.after["mrr@10"] == 1.0
        fixed = max(c["mrr@10"] for c in report.candidates
                    if not c["ranking"].startswith("hybrid learned"))
        assert fixed < 0.9
        # the report says what the learning adds over what a person could set by hand
        over = report.over_fixed
        assert over["mrr@10"] == fixed and over["gain"] == pytest.approx(1.0 - fixed, abs=1e-4)
        assert over["gain_lower_95"] > 0
        assert (f"hybrid learned against the best fixed ranking ({over['adapter']} adapter + "
                f"{over['ranking']}, {fixed:.4f}): MRR@10 {1.0 - fixed:+.4f}") in report.summary()
        # (one query per document: nothing to remember, learning.answered_again)
        assert col.manifest.search.features == without_known(RANKER_FEATURES)
        ranker = col.path / col.manifest.search.ranker
        assert ranker.is_file() and ranker.parent.name == "rankers"
        # eval collection names the ranking it measured, and no blend weight it did not weigh
        measured = evaluate_collection(col, tmp_path / "titles.csv", gold_id="id")
        assert measured["ranking"] == "hybrid learned" and measured["fusion"] == "learned"
        assert measured["alpha"] is None and measured["mrr@10"] == 1.0
    with Collection.open(tmp_path / "col", model=encoder) as col:
        assert col.search_options(5).features == without_known(RANKER_FEATURES)
        assert [col.search(t, k=1)[0].id for t in titles] == ids
        # a document written after training is ranked too (its features computed at search)
        col.upsert([Record("late", "Кот-прыгун\nA meme of a cat that jumps on tables", {})])
        assert col.search("Кот-прыгун", k=1)[0].id == "late"
    # a damaged ranker file: one line naming it, and no search ranks with something else
    ranker.write_text(ranker.read_text().replace("tree", "tre", 1))
    load_ranker.cache_clear()
    with Collection.open(tmp_path / "col", model=encoder) as col, pytest.raises(
            CorruptCollection, match="ranker file was changed or damaged"):
        col.search(titles[0], k=1)


def test_the_learned_fusion_weighs_the_cosine_before_the_query_adapter(demo_copy, encoder):
    """A version with a query-side adapter whose learned weights count only the cosine before
    the adapter: its hybrid searches rank the candidates (the adapted semantic hits and the
    keyword hits) by the model's own cosine, computed here with numpy from the stored
    vectors (the oracle); with weights on the adapted cosine they rank by that instead."""
    from neartext.ops.versions import promote

    rng = np.random.default_rng(0)
    matrix = np.eye(384, dtype=np.float32) + 0.4 * rng.standard_normal((384, 384)).astype(
        np.float32) / np.sqrt(384)
    adapter = Adapter("linear", "query", matrix, encoder.fingerprint)
    queries = ["refund my money", "the app crashes when I open it", "dark mode please"]
    with Collection.open(demo_copy, model=encoder) as col:
        vectors = _vectors(col)
        for features, weights, adapted in ((["model_cosine"], [1.0, 0.0], False),
                                           (["cosine", "model_cosine"], [1.0, 0.0, 0.0], True)):
            promote(col, adapter, {}, search={"mode": "hybrid", "fusion": "learned",
                                              "features": features, "weights": weights})
            for q in queries:
                base = encoder.encode([q], kind="query")[0]
                moved = adapter.apply(base[None])[0]
                cands = {h.doc_id for h in col.store.search(moved[None], 50)[0]} | \
                    {h.doc_id for h in col.store.keyword_search([q], 50)[0]}
                by = moved if adapted else base
                oracle = sorted(cands, key=lambda d: (-float(vectors[d] @ by), d))[:5]
                got = col.search(q, k=5)
                assert [r.id for r in got] == oracle, (features, q)
                assert [round(r.score, 4) for r in got] == \
                    [round(float(vectors[d] @ by), 4) for d in oracle]


@pytest.mark.slow
def test_improve_full_weighs_the_learned_fusion_too(tmp_path, tiny_model_dir):
    """improve --full chooses the new version's ranking among the same settings as tune,
    the learned fusion included: on title queries it is the one kept, with its features.
    (On the tiny model: which ranking is chosen, not what fine-tuning gains.)"""
    from neartext.data.ranking import RANKER_FEATURES
    from neartext.ops.finetune import improve_full

    _memes(tmp_path, 220)
    col, _ = Collection.from_file(tmp_path / "col", tmp_path / "memes.csv",
                                  ["title", "description"], "id", model=str(tiny_model_dir))
    col.close()
    report = improve_full(tmp_path / "col", tmp_path / "titles.csv", feedback=False,
                          epochs=0.1, force=True)
    assert report.promoted and report.ranking == "hybrid learned", report.summary()
    assert report.after["mrr@10"] > 0.95
    with Collection.open(tmp_path / "col") as col:
        # (one query per document: nothing to remember, learning.answered_again)
        assert col.manifest.search.features == without_known(RANKER_FEATURES)
        assert (col.path / col.manifest.search.ranker).is_file()
        assert col.search("x", k=1)  # ranks with the ranker file the new version names


def test_a_ranker_trained_before_a_feature_was_added_ranks_as_it_was_trained(demo_copy,
                                                                             encoder):
    """A version whose ranker weighs the features of the neartext that tuned it (before
    ``sentence_chars`` and the neighbour features): searches compute those columns only, in
    their order, and rank by the booster's scores of them (the oracle: the booster applied here
    to fusion_features' rows). The newer columns are each candidate's own: from its stored text,
    and from its stored vectors as a loop computes them."""
    from neartext.algo.ranker import save_ranker
    from neartext.data.ranking import DEFAULT_ALPHA, NEIGHBOUR_FEATURES, RANKER_FEATURES
    from neartext.engine.searching import fusion_features
    from neartext.ops.versions import promote

    before = [n for n in RANKER_FEATURES if n not in ("sentence_chars", *NEIGHBOUR_FEATURES)]
    assert len(before) == len(RANKER_FEATURES) - 3
    with Collection.open(demo_copy, model=encoder) as col:
        queries = [r.text for r in col.store.get([f"fb-{i:04d}" for i in range(1, 90, 3)])]
        vectors = encoder.encode(queries, kind="query")
        rows = fusion_features(col.store, vectors, queries, names=before)
        length = before.index("length")
        ys = [(x[:, length] == x[:, length].max()).astype(float) for _, x in rows]
        fitted = fit_ranker([x for _, x in rows], ys, seed=0)
        promote(col, None, {}, search={"mode": "hybrid", "fusion": "learned",
                                       "features": before,
                                       "ranker": save_ranker(col.path, fitted.text)})
        booster = from_text(fitted.text)
        for q, (docs, x) in zip(queries[:8], rows[:8]):
            scores = score(booster, x)
            top = max(scores)
            hits = col.search(q, k=3)
            assert len(hits) == 3
            assert scores[docs.index(hits[0].id)] == pytest.approx(top)
        # the column the newer rankers weigh: each candidate's own, from its stored text
        from neartext.engine.hybrid import chars_columns

        col_at = RANKER_FEATURES.index("sentence_chars")
        for q, (docs, x) in zip(queries[:5], fusion_features(col.store, vectors[:5],
                                                            queries[:5],
                                                            names=RANKER_FEATURES)):
            texts = [d.text for d in col.store.get(docs)]
            assert x[:, col_at].tolist() == pytest.approx(
                chars_columns(q, texts, ["sentence_chars"])["sentence_chars"].tolist())
            assert x[:, col_at].max() > 0
            vecs = col.store.doc_vectors(docs)
            units = [vecs[d].mean(axis=0) / np.linalg.norm(vecs[d].mean(axis=0)) for d in docs]
            tie = (DEFAULT_ALPHA * x[:, RANKER_FEATURES.index("cosine")]  # the default blend
                   + (1 - DEFAULT_ALPHA) * x[:, RANKER_FEATURES.index("coverage")])
            best = sorted(range(len(docs)), key=lambda i: (-tie[i], i))[:5]
            for i in range(len(docs)):
                alike = [float(units[i] @ units[j]) for j in best if j != i]
                assert x[i, RANKER_FEATURES.index("neighbour_mean")] == pytest.approx(
                    np.mean(alike), abs=1e-6)
                assert x[i, RANKER_FEATURES.index("neighbour_max")] == pytest.approx(
                    max(alike), abs=1e-6)


def test_a_learned_version_naming_an_unknown_feature_is_refused_in_one_line(demo_copy):
    """A version tuned by a newer neartext (a feature this one does not compute): searches
    that would use it are refused with the reason, others still work."""
    from neartext.ops.versions import promote

    with Collection.open(demo_copy) as col:
        promote(col, None, {}, search={"mode": "hybrid", "fusion": "learned",
                                       "features": ["cosine", "title_bm25"],
                                       "weights": [1.0, 0.5, 0.0]})
        with pytest.raises(InputError, match=r"does not know \('title_bm25'\)"):
            col.search("refund", k=3)
        assert len(col.search("refund", k=3, mode="semantic")) == 3
        # a ranker version: the same for its features; a ranker that weighs another number of
        # features than the version names is refused as damaged, nothing ranked without it
        from neartext.algo.ranker import fit_ranker, save_ranker
        from neartext.data.ranking import RANKER_FEATURES

        promote(col, None, {}, search={"mode": "hybrid", "fusion": "learned",
                                       "features": ["cosine", "title_bm25"],
                                       "ranker": "rankers/x.txt"})
        with pytest.raises(InputError, match=r"ranker of this version weighs a feature this "
                                             r"neartext does not know \('title_bm25'\)"):
            col.search("refund", k=3)
        rng = np.random.default_rng(0)
        rows = [rng.random((20, 3)) for _ in range(30)]
        two = save_ranker(col.path, fit_ranker(
            rows, [(r[:, 0] == r[:, 0].max()).astype(float) for r in rows]).text)
        promote(col, None, {}, search={"mode": "hybrid", "fusion": "learned",
                                       "features": list(RANKER_FEATURES), "ranker": two})
        with pytest.raises(CorruptCollection, match="the ranker weighs 3 features; the search "
                                                    f"computed {len(RANKER_FEATURES)}"):
            col.search("refund", k=3)
        assert len(col.search("refund", k=3, mode="chars")) == 3


def _vectors(col: Collection) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for ids, vecs in col.store.iter_vectors():
        out.update(zip(ids, vecs))
    return out


@pytest.mark.slow
def test_a_both_side_adapter_maps_the_stored_vectors_and_rollback_maps_them_back(
        demo_copy, tmp_path, encoder, capsys, monkeypatch):
    """``--side both``: promoting maps every stored vector by the adapter (the encoder does not
    run), new documents are mapped as they come, paraphrases compare in the new space; going
    back maps them back (vectors within 1e-5, the same results), and forward again. (Run with
    ``-q``: no progress line, even where one would be due at every step.)"""
    with Collection.open(demo_copy, model=encoder) as col:
        docs = _texts(col)
        col.update_manifest(lambda m: setattr(m, "threshold", 0.8))
        _write_pairs(tmp_path / "pairs.csv", [(" ".join(t.split()[:3]), t) for _, t in docs])
        base = _vectors(col)
        queries = ["refund my money", "the app crashes when I open it", "dark mode please"]
        before = [[(r.id, r.score) for r in col.search(q, k=5)] for q in queries]
    monkeypatch.setenv("NEARTEXT_PROGRESS_SECONDS", "0")  # a progress line at every step
    assert main(["tune", str(demo_copy), "--pairs", str(tmp_path / "pairs.csv"), "--side",
                 "both", "--force", "-q"]) == 0
    out, err = capsys.readouterr()
    assert "measuring rankings" not in err, err
    assert "(both side)" in out and "were mapped into the new version's space" in out, out
    assert "threshold 0.8000 belonged to the old space" in out
    with Collection.open(demo_copy, model=encoder) as col:
        adapter = col.adapter
        assert adapter is not None and adapter.side == "both" and col.manifest.version == 2
        assert col.manifest.threshold is None
        mapped = _vectors(col)
        assert mapped.keys() == base.keys()
        ids = list(base)
        want = adapter.apply(np.stack([base[i] for i in ids]))
        assert np.abs(np.stack([mapped[i] for i in ids]) - want).max() < 1e-5
        # a search ranks adapted queries against the mapped documents
        q = adapter.apply(encoder.encode([queries[0]], kind="query"))[0]
        exact = sorted(ids, key=lambda i: -float(mapped[i] @ q))[:5]
        assert [r.id for r in col.search(queries[0], k=5, mode="semantic")] == exact
        # a new document is mapped as it is stored; paraphrases compare in the new space
        text = "My card was charged twice for one order, please refund the second charge"
        col.upsert([Record("new-1", text, {})])
        got = _vectors(col)["new-1"]
        assert np.abs(got - adapter.apply(encoder.encode([text], kind="document"))[0]).max() \
            < 1e-5
        found, _ = col.paraphrases(text + "!", threshold=-1.0, top_k=3)
        assert found[0].id == "new-1"
        v = adapter.apply(encoder.encode([text + "!"], kind="document"))[0]
        assert found[0].score == pytest.approx(float(got @ v), abs=1e-5)
        # exported vectors are the model's (the mapping undone): what --vectors reads back
        from neartext.ops.vectors import export_vectors

        export_vectors(col, tmp_path / "v.parquet")
        import pyarrow.parquet as pq

        table = pq.read_table(tmp_path / "v.parquet").to_pylist()
        exported = {r["id"]: np.array(r["vector"]) for r in table}
        assert max(float(np.abs(exported[i] - base[i]).max()) for i in ids) < 1e-5
        # another version's space cannot be searched in place: one line
        with pytest.raises(InputError, match="version 1 ranks documents by vectors in another"):
            version_view(col, "v1")
        assert rollback(col)["version"] == 1  # maps back; the collection is opened again
        assert col.manifest.threshold == 0.8 and col.adapter is None
        back = _vectors(col)
        assert np.abs(np.stack([back[i] for i in ids]) - np.stack([base[i] for i in ids])
                      ).max() < 1e-5
        assert np.abs(back["new-1"] - encoder.encode([text], kind="document")[0]).max() < 1e-5
        col.delete(["new-1"])
        again = [[(r.id, r.score) for r in col.search(q, k=5)] for q in queries]
        assert [[i for i, _ in row] for row in again] == [[i for i, _ in row] for row in before]
        assert np.allclose([s for row in again for _, s in row],
                           [s for row in before for _, s in row], atol=1e-5)
        assert rollback(col, 2)["version"] == 2  # and forward again
        assert np.abs(np.stack([_vectors(col)[i] for i in ids]) - want).max() < 1e-5


def test_a_both_side_adapter_must_be_invertible_and_nothing_changes_when_refused(
        demo_copy, tmp_path, capsys):
    with Collection.open(demo_copy) as col:
        _write_pairs(tmp_path / "pairs.csv",
                     [(" ".join(t.split()[:3]), t) for _, t in _texts(col)])
    manifest = (demo_copy / "manifest.json").read_text()
    assert main(["tune", str(demo_copy), "--pairs", str(tmp_path / "pairs.csv"), "--side",
                 "both", "--kind", "residual-mlp"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a residual-mlp adapter cannot be both-side" in err[0], err
    assert (demo_copy / "manifest.json").read_text() == manifest
    assert not (demo_copy / "adapters").exists()


def test_writes_landing_during_the_mapping_are_caught_up_and_mapped(demo_copy, encoder,
                                                                    monkeypatch):
    """A document another writer adds while the stored vectors are being mapped is in the new
    version, encoded and mapped by its adapter; one it deletes is gone."""
    from neartext.ops import reindex as reindex_module
    from neartext.ops.versions import promote

    rng = np.random.default_rng(0)
    with Collection.open(demo_copy, model=encoder) as col:
        dim = col.manifest.dim
        m = np.eye(dim, dtype=np.float32) + 0.2 * rng.standard_normal((dim, dim)).astype(
            np.float32)
        adapter = Adapter("linear", "both", m, col.manifest.model.fingerprint)
        other = Collection.open(demo_copy, model=encoder)
        from neartext.store.local import LocalStore

        export = LocalStore.export
        done = []

        def export_then_write(self, batch_size=1024):
            yield from export(self, batch_size)
            if not done:  # after the copy: another writer's change, committed
                done.append(1)
                other.upsert([Record("late-1", "A late ticket about a refund", {})])
                other.delete(["fb-0001"])

        monkeypatch.setattr(LocalStore, "export", export_then_write)
        sets = []

        def counted_set(*a):
            sets.append(1)
            return set(*a)

        # the catch-up's deletions are one lookup set, not one per document (a set built per
        # document took the rollback of a 200,000-document collection past 20 minutes)
        monkeypatch.setattr(reindex_module, "set", counted_set, raising=False)
        promote(col, adapter, {})
        assert len(sets) < 10, len(sets)
        other.close()
        got = _vectors(col)
        assert "fb-0001" not in got and col.store.get(["fb-0001"]) == []
        want = adapter.apply(encoder.encode(["A late ticket about a refund"], kind="document"))
        assert np.abs(got["late-1"] - want[0]).max() < 1e-5


def test_a_process_holding_the_old_version_cannot_write_its_manifest_over_the_new(demo_copy):
    """A version swapped in by another process (a both-side promotion, or reindex) is not
    overwritten by the manifest write of a process that still has the old one open."""
    from neartext.errors import CollectionReplaced
    from neartext.ops.versions import promote

    stale = Collection.open(demo_copy)
    with Collection.open(demo_copy) as col:
        m = np.eye(col.manifest.dim, dtype=np.float32) * 1.5
        promote(col, Adapter("diagonal", "both", m, col.manifest.model.fingerprint), {})
    assert not stale.refresh() and stale.manifest.version == 1  # another database's manifest
    with pytest.raises(CollectionReplaced, match="the manifest was not written"):
        stale.update_manifest(lambda m: setattr(m, "threshold", 0.5))
    stale.close()
    with Collection.open(demo_copy) as col:
        assert col.manifest.version == 2 and col.manifest.adapter.side == "both"
        assert col.manifest.threshold is None


@pytest.mark.slow
def test_improve_full_fine_tunes_reembeds_and_promotes_only_through_the_gate(
        tiny_demo_copy, tiny_model_dir, tmp_path, capsys):
    """``improve --full``: the model is fine-tuned on the training queries, the documents are
    re-embedded beside the collection and the held-out queries measured there. Refused by the
    gate: nothing changes, the model is kept as the candidate. Forced: the new version uses the
    fine-tuned model (inside the collection) for documents and queries; rollback re-embeds
    with the version's model, both ways. The mechanics, on the tiny model (what fine-tuning
    gains is measured on the real one by the test above and in the service's test)."""
    demo_copy = tiny_demo_copy
    from neartext.encoders import load_encoder

    with Collection.open(demo_copy) as col:
        docs = _texts(col)
        FeedbackStore(demo_copy).add("refund my money", docs[0][0], True)
        base = _vectors(col)
        before = [(r.id, r.score) for r in col.search("refund my money", k=5)]
    _write_pairs(tmp_path / "pairs.csv", [(" ".join(t.split()[:3]), t) for _, t in docs])
    manifest = (demo_copy / "manifest.json").read_text()
    args = ["improve", str(demo_copy), "--pairs", str(tmp_path / "pairs.csv"), "--full",
            "--epochs", "0.5"]
    assert main([*args, "--margin", "1.0"]) == 0
    out = capsys.readouterr().out
    assert "not promoted" in out and "below the margin 1.0" in out, out
    assert (demo_copy / "manifest.json").read_text() == manifest
    assert (demo_copy / "models" / "candidate" / "config.json").is_file()
    assert not (demo_copy.parent / "feedback.reindex").exists()
    assert main([*args, "--force", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["promoted"] and report["version"] == 2 and report["from_feedback"] == 1
    assert report["pairs"] == len(docs) + 1
    assert report["reason"].startswith("promoted as version 2: the fine-tuned model with")
    with Collection.open(demo_copy) as col:
        m = col.manifest
        assert m.version == 2 and m.model.name == str((demo_copy / "models" / "v2").resolve())
        assert m.search.details["fine_tuned"]["train_pairs"] > 150
        tuned = load_encoder(m.encoder_settings())
        assert col.encoder.fingerprint == tuned.fingerprint == m.model.fingerprint
        stored = _vectors(col)
        want = tuned.encode([t for _, t in docs], kind="document")
        assert np.abs(np.stack([stored[i] for i, _ in docs]) - want).max() < 1e-5
        hits = col.search("refund my money", k=3, mode="semantic")
        q = tuned.encode(["refund my money"], kind="query")[0]
        exact = sorted(stored, key=lambda i: -float(stored[i] @ q))[:3]
        assert [h.id for h in hits] == exact
        assert FeedbackStore(demo_copy).count() == 1  # ratings go along
    assert main(["versions", str(demo_copy)]) == 0
    listing = capsys.readouterr().out
    assert "*   2" in listing and "fine-tuned model" in listing, listing
    # nothing new since version 2: says so
    assert main([*args[:4], "--full"]) == 0
    assert "0 new ratings since version 2" in capsys.readouterr().out
    # a both-side adapter on the fine-tuned version: the model (inside) goes along the swap
    assert main(["tune", str(demo_copy), "--pairs", str(tmp_path / "pairs.csv"), "--side",
                 "both", "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 3
    with Collection.open(demo_copy) as col:
        assert col.encoder.fingerprint == tuned.fingerprint and col.search("refund", k=1)
        # back to version 1: the documents re-embedded with its model, its results again
        assert rollback(col, 1)["version"] == 1
        assert col.manifest.model.name == str(tiny_model_dir) and col.adapter is None
        assert [v["version"] for v in list_versions(col)] == [1, 2, 3]
        assert np.abs(np.stack([_vectors(col)[i] for i, _ in docs]) -
                      np.stack([base[i] for i, _ in docs])).max() < 1e-5
        assert [(r.id, round(r.score, 5)) for r in col.search("refund my money", k=5)] == \
            [(i, round(s, 5)) for i, s in before]
        assert rollback(col, 2)["version"] == 2  # and to the fine-tuned one, from models/v2
        assert col.encoder.fingerprint == tuned.fingerprint
        assert np.abs(np.stack([_vectors(col)[i] for i, _ in docs]) - want).max() < 1e-5


def test_improve_full_refuses_what_it_cannot_do_in_one_line(demo_copy, tmp_path, capsys):
    with Collection.open(demo_copy) as col:
        docs = _texts(col)
        FeedbackStore(demo_copy).add("refund my money", docs[0][0], True)
    _write_pairs(tmp_path / "few.csv", [(" ".join(t.split()[:3]), t) for _, t in docs[:50]])
    manifest = (demo_copy / "manifest.json").read_text()
    for extra, message in ((["--pairs", str(tmp_path / "few.csv")],
                            "51 usable (query, document) pairs (50 from the file, 1 👍 ratings); "
                            "at least 200 are needed to fine-tune"),
                           (["--side", "both"], "--kind and --side shape an adapter")):
        assert main(["improve", str(demo_copy), "--full", *extra]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert (demo_copy / "manifest.json").read_text() == manifest
    assert not (demo_copy / "models").exists()


@pytest.mark.slow
def test_tune_both_sides_while_another_writer_adds_and_deletes(demo_copy, tmp_path,
                                                             monkeypatch):
    """Tuning reads the pairs, then the stored vectors, then searches: documents written or
    deleted in between by another writer (seen as a 500 of the service's improve while its
    upserts ran) are measured as they are found or left out, with a note; nothing fails."""
    with Collection.open(demo_copy) as col:
        docs = _texts(col)
        late, gone = docs[0], docs[1]
        # a query whose words find the late document by keyword, answered by another one
        pairs = [(" ".join(t.split()[:3]), t) for _, t in docs[2:]]
        pairs.append((" ".join(late[1].split()[:4]), docs[2][1]))
        pairs.append((" ".join(gone[1].split()[:3]), gone[1]))
        _write_pairs(tmp_path / "pairs.csv", pairs)
        real = col.store.iter_vectors

        def as_if_written_later(batch_size=8192):
            for ids, vecs in real(batch_size):
                keep = [i for i, d in enumerate(ids) if d not in (late[0], gone[0])]
                yield [ids[i] for i in keep], vecs[keep]

        monkeypatch.setattr(col.store, "iter_vectors", as_if_written_later)
        report = tune(col, tmp_path / "pairs.csv", side="both", force=True)
        assert report.promoted and report.pairs == len(pairs) - 1
        assert any("1 pairs name documents deleted while tuning" in n for n in report.notes)


def test_a_file_that_is_not_a_pairs_file_is_refused_naming_its_columns(demo_copy, capsys):
    """Before: tune took the first two columns of the demo corpus (id, text) as query and
    passage, "trained" at MRR 0.003 and exited 0."""

    manifest = (demo_copy / "manifest.json").read_text()
    assert main(["tune", str(demo_copy), "--pairs", str(DEMO)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{DEMO}: no query column (columns: id, text, topic" in err[0], err
    assert "or give --query COL and --passage COL (a document's text or id; --gold-id COL: " \
        "ids only); is this a pairs file?" in err[0]
    assert (demo_copy / "manifest.json").read_text() == manifest


def test_a_gold_column_named_like_an_id_is_recognised(tmp_path):
    """A memes user's pairs (situation, meme_id) were refused as having no passage column; one
    column named like an id of what is found is now taken as the gold, and two are not guessed
    between (nor a query's id)."""
    from neartext.data.evaldata import load_retrieval_pairs

    path = tmp_path / "pairs.csv"
    path.write_text("query_id,situation,meme_id\nq1,когда пятница,m7\nq2,кот упал,m9\n",
                    encoding="utf-8")
    data = load_retrieval_pairs(path)
    assert sorted(data.corpus.values()) == ["m7", "m9"]
    assert sorted(data.queries.values()) == ["когда пятница", "кот упал"]
    path.write_text("situation,meme_id,author_id\nкогда пятница,m7,a1\n", encoding="utf-8")
    with pytest.raises(InputError, match="no passage column .*--gold-id COL: ids only"):
        load_retrieval_pairs(path)


@pytest.mark.slow
def test_gold_ids_have_one_spelling_in_tune_and_eval_collection(demo_copy, tmp_path, capsys):
    """--gold-id COL (ids only) in tune, improve and eval collection; --passage COL takes a
    document's text or id in all three (eval collection took texts only, tune had no
    --gold-id)."""
    with Collection.open(demo_copy) as col:
        docs = _texts(col)
    rows = _templated(docs)
    with (tmp_path / "ids.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["question", "doc"])
        w.writerows(rows)
    held = tmp_path / "held.csv"
    with held.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("query", "doc"), *((TEMPLATE + t.split()[0], d)
                                                     for d, t in docs[:30])])
    assert main(["tune", str(demo_copy), "--pairs", str(tmp_path / "ids.csv"), "--gold-id",
                 "doc", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["from_file"] == 247 and out["columns"] == ["question", "doc"]
    results = []
    for option in ("--gold-id", "--passage"):
        assert main(["eval", "collection", str(demo_copy), "--pairs", str(held), option, "doc",
                     "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0]["mrr@10"] == results[1]["mrr@10"]
    assert results[0]["queries"] == results[1]["queries"] >= 25
    assert main(["tune", str(demo_copy), "--pairs", str(tmp_path / "ids.csv"), "--gold-id",
                 "doc", "--passage", "doc"]) == 1
    assert "give --passage (a document's text or id) or --gold-id (its id), not both" in \
        capsys.readouterr().err


def test_a_pairs_column_named_like_a_field_names_documents_by_that_field(tmp_path, capsys):
    """Memes indexed from (title, link, description) with no id column: pairs that name each
    meme by its title (``--passage title``) or its link find it in tune and eval collection
    (before: "0 usable pairs", the title alone being no document's whole text); a title no
    meme has is left out and said so; a column named like no field matches as before."""
    from neartext.ops.tune import gather

    rows = [(f"Meme {i}: {w} at work", f"https://memes.example/{i}",
             f"When the {w} breaks again on a Monday morning ({i})")
            for i, w in enumerate(["printer", "coffee machine", "build", "wifi", "elevator",
                                   "badge reader", "vpn", "laptop", "projector", "fridge",
                                   "kettle", "scanner", "phone", "chair", "heater"])]
    _write_rows(tmp_path / "memes.csv", ["title", "link", "description"], rows)
    col_path = tmp_path / "memes"
    assert main(["index", str(tmp_path / "memes.csv"), "-c", str(col_path), "--text",
                 "title,description", "-q"]) == 0
    capsys.readouterr()
    by_title, by_link = tmp_path / "titles.csv", tmp_path / "links.csv"
    _write_rows(by_title, ["query", "title"],
                [(d.split(" (")[0], t) for t, _, d in rows] + [("nothing", "Meme 99: none")])
    _write_rows(by_link, ["query", "link"], [(d.split(" (")[0], u) for _, u, d in rows])
    with Collection.open(col_path) as col:
        data = gather(col, by_title, False, None, "title")
        assert data.from_file == len(rows) and data.columns == ["query", "title"]
        assert len(set(data.doc_ids)) == len(rows)
        assert any("document's 'title'" in n and "Meme 99" in n for n in data.notes), data.notes
        assert gather(col, by_link, False, None, "link").doc_ids == data.doc_ids
        _write_rows(tmp_path / "other.csv", ["query", "headline"],
                    [(d, t) for t, _, d in rows])
        assert gather(col, tmp_path / "other.csv", False, None, "headline").from_file == 0
    for pairs, column in ((by_title, "title"), (by_link, "link")):
        assert main(["eval", "collection", str(col_path), "--pairs", str(pairs), "--passage",
                     column, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["queries"] == len(rows) and out["mrr@10"] > 0.5, out


def test_queries_needed_for_a_gain_like_the_one_measured():
    from neartext.algo.adapters import paired_gain, queries_needed

    before, after = np.zeros(12), np.r_[np.full(7, 0.5), np.full(5, -0.3)]
    gain, low = paired_gain(before, after)
    assert gain > 0 and low <= 0  # too few to tell from luck
    needed = queries_needed(before, after)
    assert needed is not None and needed > 12
    many = np.tile(after, int(np.ceil(needed / 12)) + 1)
    assert paired_gain(np.zeros(len(many)), many)[1] > 0  # that many would do
    assert queries_needed(np.ones(5), np.zeros(5)) is None


def test_confusions_are_the_fused_rankings_wrong_answers_above_the_depth(demo_copy, encoder):
    """The adapter's mined hard negatives are exactly the documents a hybrid blend search ranks
    in its top 3 that are none of the query's documents (the search itself is the oracle), for
    every pair of that query."""
    from neartext.ops.learning import CONFUSED, confusions

    queries = ["the app crashes when I open it", "refund please", "the app crashes when I open it"]
    gold = ["fb-0007", "fb-0073", "fb-0008"]
    with Collection.open(demo_copy) as col:
        col.store.ensure_lexical()
        vecs = encoder.encode(queries, kind="query")
        mined = confusions(col.store, False, vecs, queries, gold)
        expect = []
        for i, q in enumerate(queries):
            top = [r.id for r in col.search(q, k=CONFUSED, mode="hybrid", fusion="blend",
                                            alpha=0.5)]
            mine = {g for t, g in zip(queries, gold) if t == q}
            expect += [(i, d) for d in top if d not in mine]
    assert mined == expect and mined
    assert all(d not in {"fb-0007", "fb-0008"} for i, d in mined if i != 1)


def test_confusions_are_mined_on_a_collection_no_keyword_search_has_touched(tmp_path, encoder):
    """`index` then `tune`, the memes user's order: the keyword index is built by the first
    keyword search, and mining ran before any. It skipped the mining ("0 mined from the fused
    ranking") until a keyword search had run once, so the same data tuned differently after an
    `eval --mode keyword`. Now the mining search builds the index it needs."""
    from neartext.ops.learning import CONFUSED, confusions

    with DEMO.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    _write_rows(tmp_path / "part.csv", rows[0], rows[1:81])
    queries = ["the app crashes when I open it", "refund please"]
    gold = ["fb-0007", "fb-0073"]
    col, _ = Collection.from_file(tmp_path / "c", tmp_path / "part.csv", ["text"], "id",
                                  model=encoder)
    with col:
        assert not col.store.has_keyword_index()
        mined = confusions(col.store, False, encoder.encode(queries, kind="query"), queries,
                           gold)
        expect = [(i, r.id) for i, q in enumerate(queries)
                  for r in col.search(q, k=CONFUSED, mode="hybrid", fusion="blend", alpha=0.5)
                  if r.id != gold[i]]
    assert mined == expect and len(mined) >= 4


def test_crossfit_gives_each_training_query_an_adapter_not_trained_on_it(monkeypatch):
    """The ranker's training features come from adapters that never saw the query's own pairs
    (an adapter's cosines on its own training queries are better than on new ones)."""
    import neartext.ops.learning as tune_mod

    seen: dict[int, set[str]] = {}

    def fake(q, pos, docs, *, groups, **kw):
        marker = Adapter("linear", "query", np.eye(4, dtype=np.float32) * (len(seen) + 2), "f")
        seen[id(marker)] = set(groups)
        return type("R", (), {"adapter": marker})()

    monkeypatch.setattr(tune_mod, "train_adapter", fake)
    groups = [f"q{i // 2}" for i in range(200)]  # 100 queries, two pairs each
    train = np.array([int(g[1:]) % 5 != 0 for g in groups])  # every fifth query held out
    out = tune_mod.crossfit(np.zeros((200, 4), np.float32), np.zeros(200, np.int64),
                            np.zeros((10, 4), np.float32), groups, train, [], "linear", 0, "f")
    assert set(out) == {g for g, t in zip(groups, train) if t}  # the training queries only
    assert len(seen) == 2
    for query, adapter in out.items():
        assert adapter is not None and query not in seen[id(adapter)]
    assert not any(g in trained for g, t in zip(groups, train) if not t
                   for trained in seen.values())  # held-out queries trained nothing


def test_crossfits_adapters_stop_early_on_a_share_of_their_queries_not_on_one(monkeypatch):
    """The training queries crossfit gets are those tune's held-out split left (seed 0, 0.2):
    each adapter it trains holds out about a fifth of its own queries to stop early. With the
    gate's seed, its split would draw as the gate's did, and hold out none of them but the
    one it must (1 query of about 40)."""
    import neartext.ops.learning as learning
    from neartext.algo.adapters import split_groups

    inner: list[float] = []

    def fake(q, pos, docs, *, groups, seed, **kw):
        inner.append(float(split_groups(groups, 0.2, seed).mean()))
        return type("R", (), {"adapter": None})()

    monkeypatch.setattr(learning, "train_adapter", fake)
    groups = [f"a question about topic {i}" for i in range(100)]
    train = ~split_groups(groups, 0.2, 0)
    learning.crossfit(np.zeros((100, 4), np.float32), np.zeros(100, np.int64),
                      np.zeros((10, 4), np.float32), groups, train, [], "linear", 0, "f")
    assert len(inner) == 2 and all(0.08 < share < 0.35 for share in inner), inner


def test_two_both_side_promotions_at_once_one_maps_the_other_is_refused(demo_copy, encoder,
                                                                        monkeypatch):
    """Two handles promote both-side adapters at the same moment (the service's improve and a
    cron job's tune): one maps the stored vectors into version 2, the other is refused in one
    line before it touches anything, and every document keeps the winner's mapped vector. (A
    Milvus run of the same race failed: the second took the first's copy, still being built,
    for one a killed run left, and removed it.)"""
    import threading

    from neartext.errors import CollectionBusy
    from neartext.ops import reindex as reindex_module
    from neartext.ops.versions import promote

    rng = np.random.default_rng(0)
    m = np.eye(encoder.dim, dtype=np.float32) + 0.02 * rng.standard_normal(
        (encoder.dim, encoder.dim)).astype(np.float32)
    adapters = [Adapter("linear", "both", a, encoder.fingerprint) for a in (m, m.T.copy())]
    with Collection.open(demo_copy, model=encoder) as col:
        base = _vectors(col)
    created = threading.Event()
    real = reindex_module.create_store

    def slow_create(*a, **k):  # the first copy is being built when the second run starts
        store = real(*a, **k)
        created.set()
        time.sleep(1.0)
        return store

    monkeypatch.setattr(reindex_module, "create_store", slow_create)
    outcome: dict[int, object] = {}

    def run(i: int) -> None:
        with Collection.open(demo_copy, model=encoder) as c:
            if i == 1:
                created.wait(30)
            try:
                outcome[i] = promote(c, adapters[i], {})
            except CollectionBusy as e:
                outcome[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcome.get(0) == 2, outcome
    lost = outcome.get(1)
    assert isinstance(lost, CollectionBusy) and "already under way" in str(lost), outcome
    assert "\n" not in str(lost)
    with Collection.open(demo_copy, model=encoder) as col:
        assert col.manifest.version == 2 and len(col) == 247
        mapped = _vectors(col)
    ids = list(base)
    want = adapters[0].apply(np.stack([base[i] for i in ids]))
    assert np.abs(np.stack([mapped[i] for i in ids]) - want).max() < 1e-5


def test_a_chunked_documents_passage_nearest_the_query_is_what_the_adapter_learns_toward(
        tmp_path, encoder, monkeypatch):
    """In a collection built in passages, each document opens with the same unrelated words (its
    first passage) and the query is about its later text: tune trains the adapter toward the
    document's passage nearest the query, and none of the document's passages is one of its
    negatives. Before, a document's first passage stood for it: every pair's target was the
    unrelated opening, and the passage the query is about counted against it."""
    filler = "an opening line of words shared by every text"  # 9 words: one passage of its own
    rows = list(csv.DictReader(DEMO.open(encoding="utf-8")))
    corpus = tmp_path / "long.csv"
    _write_rows(corpus, ["id", "text"], [(r["id"], f"{filler} {r['text']}") for r in rows])
    col, _ = Collection.from_file(tmp_path / "col", corpus, ["text"], "id", model=encoder,
                                  chunk=9)
    pairs = tmp_path / "pairs.csv"
    _write_rows(pairs, ["query", "doc_id"], [(TEMPLATE + " ".join(r["text"].split()[:4]),
                                              r["id"]) for r in rows[:120]])
    seen: dict = {}
    train = tuning.train_adapter

    def spy(q, positives, docs, **kw):
        seen.update(positives=np.asarray(positives), passages=kw.get("passages"))
        return train(q, positives, docs, **kw)

    monkeypatch.setattr(tuning, "train_adapter", spy)
    with col:
        first = {}  # each document's first passage's row, in the store's order
        for row, d in enumerate(d for ids, _ in col.store.iter_vectors() for d in ids):
            first.setdefault(d, row)
        report = tune(col, pairs)
    assert report.columns == ["query", "doc_id"] and report.from_file == 120
    positives, passages = seen["positives"], seen["passages"]
    assert len(positives) == 120
    assert not set(positives.tolist()) & set(first.values())  # never the shared opening
    assert passages is not None and passages.chunked
    # each target is a passage of its own document, and all of them are gold, none negative
    for (r, p) in zip(rows[:120], positives.tolist()):
        assert p in passages.rows_of(r["id"]).tolist() and len(passages.rows_of(r["id"])) >= 2
        assert set(passages.siblings(p).tolist()) == set(passages.rows_of(r["id"]).tolist())


def test_a_query_tune_trained_on_is_never_held_out_by_a_later_run(demo_copy, tmp_path,
                                                                   monkeypatch):
    """tune on 100 pairs, then on those and 100 more (a pairs file that grows, as ratings do
    between two improve runs): no query the first run trained on is among the second run's
    held-out queries, where the version the first run made is measured against the new
    candidates. Before, each run drew its held-out queries from all of its pairs anew: about
    30% of the second run's held-out queries were ones the first had trained on, and the
    version trained on them looked better there than it is."""
    seen: list[list[str]] = []
    measure = tuning.evaluate_setting

    def spy(col, queries, *a, **k):
        seen.append(list(queries))
        return measure(col, queries, *a, **k)

    monkeypatch.setattr(tuning, "evaluate_setting", spy)
    with Collection.open(demo_copy) as col:
        rows = _templated(_texts(col))[:200]
        held = []
        for n in (100, 200):
            _write_pairs(tmp_path / "pairs.csv", rows[:n])
            seen.clear()
            tune(col, tmp_path / "pairs.csv", force=True)
            held.append(set(seen[0]))
    trained_first = {q for q, _ in rows[:100]} - held[0]
    assert held[0] and held[1] and not held[1] & trained_first
    assert held[0] == held[1] & {q for q, _ in rows[:100]}  # each kept its side


def test_tune_counts_each_querys_words_once_while_another_writer_writes(demo_copy, tmp_path,
                                                                        monkeypatch):
    """A store counts a query's words again after any write (each search sees the writes). Under
    a writer that writes between any two of ``tune``'s searches (here: a new generation at every
    look), ``tune`` keeps each query's word weights for the run, as it keeps its keyword hits:
    its words are counted about once (before: again for every setting measured; on Milvus Lite
    under a service's writes, most of an improve's 30-40 s)."""
    from neartext.store.local.store import LocalStore

    with Collection.open(demo_copy) as col:
        rows = _templated(_texts(col))[:120]
        _write_pairs(tmp_path / "pairs.csv", rows)
        words: list[str] = []
        count = LocalStore._document_frequencies
        ticks = iter(range(10**9))
        monkeypatch.setattr(type(col.store), "generation", lambda self: next(ticks))
        monkeypatch.setattr(type(col.store), "_document_frequencies",
                            lambda self, w: (words.extend(w), count(self, w))[1])
        report = tune(col, tmp_path / "pairs.csv", force=True)
    distinct = {w for q, _ in rows for w in dict.fromkeys(terms(q))}
    assert report.promoted and distinct <= set(words)
    assert len(words) <= 3 * len(distinct), (len(words), len(distinct))
