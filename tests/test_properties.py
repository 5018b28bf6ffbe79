"""Properties of library pieces under generated input (hypothesis): what a user may type or
load never ends in anything but a clear neartext error, and round trips are exact."""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from neartext import Collection  # noqa: E402
from neartext.algo.adapters import HIDDEN, Adapter  # noqa: E402
from neartext.data.ranking import BASE_FEATURES  # noqa: E402
from neartext.engine.hybrid import features, learned  # noqa: E402
from neartext.errors import NeartextError  # noqa: E402
from neartext.store.local.sqlite import SCHEMA, connect, passage_vectors  # noqa: E402

FAST = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(kind=st.sampled_from(["linear", "lowrank", "diagonal", "residual-mlp"]),
       dim=st.integers(2, 24), seed=st.integers(0, 2**16))
def test_an_adapter_file_round_trips_and_gives_unit_vectors(tmp_path_factory, kind, dim, seed):
    rng = np.random.default_rng(seed)
    mlp = None
    if kind == "residual-mlp":
        mlp = (rng.standard_normal((dim, HIDDEN)).astype(np.float32),
               rng.standard_normal(HIDDEN).astype(np.float32),
               rng.standard_normal((HIDDEN, dim)).astype(np.float32) * 0.01)
    a = Adapter(kind, "query", np.eye(dim, dtype=np.float32)
                + 0.1 * rng.standard_normal((dim, dim)).astype(np.float32), "fp", {"x": 1}, mlp)
    path = tmp_path_factory.mktemp("a") / "a.npz"
    a.save(path)
    b = Adapter.load(path, "fp")
    x = rng.standard_normal((5, dim)).astype(np.float32)
    assert np.array_equal(a.apply(x), b.apply(x))
    assert np.allclose(np.linalg.norm(b.apply(x), axis=1), 1, atol=1e-5)


@FAST
@given(data=st.binary(max_size=2000))
def test_any_bytes_as_an_adapter_file_are_refused_in_one_line(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("b") / "x.npz"
    path.write_bytes(data)
    with pytest.raises(NeartextError, match="x.npz: the adapter does not load"):
        Adapter.load(path)


@pytest.fixture(scope="module")
def col(demo_collection):
    with Collection.open(demo_collection) as c:
        yield c


@FAST
@given(spec=st.one_of(st.text(max_size=30), st.from_regex(r"v?[0-9]{1,3}", fullmatch=True),
                      st.just("current"), st.just("base"), st.just("a.npz")))
@example(spec="v²")  # a digit to str.isdigit that int() cannot read: a traceback before
@example(spec="٣")  # an Arabic-Indic 3: a decimal int() reads
def test_any_version_named_is_found_or_refused_in_one_line(col, spec):
    from neartext.ops.versions import version_view

    try:
        label, manifest, adapter = version_view(col, spec)
    except NeartextError as e:
        assert "\n" not in str(e)
    else:
        assert label and manifest.dim == col.manifest.dim


@FAST
@given(n=st.integers(1, 30), seed=st.integers(0, 2**16))
def test_the_learned_fusion_with_cosine_alone_orders_by_cosine(n, seed):
    rng = np.random.default_rng(seed)
    docs = [f"d{i}" for i in range(n)]
    cosine = {d: float(c) for d, c in zip(docs, rng.uniform(-1, 1, n))}
    sem = sorted(docs, key=lambda d: -cosine[d])[: max(1, n // 2)]
    kw = list(rng.permutation(docs))[: max(1, n // 3)]
    bm25 = {d: float(rng.uniform(0, 10)) for d in kw}
    names, rows = features(sem, kw, cosine, bm25, norm=8.0)
    assert rows.shape == (len(set(sem) | set(kw)), len(BASE_FEATURES))
    assert ((rows[:, 1] >= 0) & (rows[:, 1] <= 1)).all()
    ranked = learned(names, rows, [1.0, 0, 0, 0, 0, 0.3], k=n)
    assert [d for d, _ in ranked] == sorted(names, key=lambda d: (-cosine[d], d))


@FAST
@given(n=st.integers(0, 12), seed=st.integers(0, 2**16), missing=st.integers(-1, 11))
def test_the_neighbour_features_are_each_candidates_likeness_to_the_best_others(n, seed, missing):
    """The oracle, a loop: each candidate's mean and highest cosine with the best five by
    score, itself left out; a candidate without a vector is alike to none (0); 0 for a query's
    only candidate."""
    from neartext.engine.hybrid import NEIGHBOURS, neighbour_columns

    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, 4))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    units = [None if i == missing else v for i, v in enumerate(vecs)]
    score = rng.integers(0, 4, n).astype(float)  # ties: the first in order wins
    cols = neighbour_columns(score, units)
    best = sorted(range(n), key=lambda i: (-score[i], i))[:NEIGHBOURS]
    for i in range(n):
        alike = [0.0 if units[i] is None or units[j] is None else float(vecs[i] @ vecs[j])
                 for j in best if j != i]
        assert cols["neighbour_mean"][i] == pytest.approx(np.mean(alike) if alike else 0.0)
        assert cols["neighbour_max"][i] == pytest.approx(max(alike) if alike else 0.0)
    assert all(len(c) == n and np.isfinite(c).all() for c in cols.values())


@FAST
@given(rows=st.dictionaries(st.integers(-2**63, 2**63 - 1), st.binary(min_size=3, max_size=3),
                            max_size=40),
       chunk=st.integers(1, 50), encoding=st.sampled_from(["UTF-8", "UTF-16le"]))
@example(rows={5: b"\x00\x00\x00", -1: b"\xff\xfe\x80", 2: b"\xc3(\x00"}, chunk=2,
         encoding="UTF-8")
def test_vectors_read_a_chunk_at_a_time_are_the_stored_bytes_in_pid_order(tmp_path_factory,
                                                                          rows, chunk, encoding):
    """SQLite joins a chunk's vectors as text: any bytes (NULs, invalid UTF-8) come back
    unchanged, paired with their pids, every passage once, in ascending pid order (and so from
    a database whose text is UTF-16, read row by row)."""
    conn = connect(tmp_path_factory.mktemp("v") / "data.sqlite")
    conn.execute(f"PRAGMA encoding = '{encoding}'")
    conn.executescript(SCHEMA)
    assert conn.execute("PRAGMA encoding").fetchone()[0] == encoding
    conn.executemany("INSERT INTO passages VALUES (?, 'd', 0, 1, 'h', ?)", rows.items())
    got = list(passage_vectors(conn, 3, chunk))
    assert all(0 < len(p) <= chunk and len(raw) == 3 * len(p) for p, raw in got)
    pids = [int(p) for part, _ in got for p in part]
    joined = b"".join(raw for _, raw in got)
    assert pids == sorted(rows)
    assert joined == b"".join(rows[p] for p in pids)
