"""The MLflow pyfunc model: save, load, predict with params, and `mlflow models serve`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed: "
                                             "pip install 'neartext[mlflow]'")

import pandas as pd  # noqa: E402

from neartext.cli import main  # noqa: E402

QUERY = "I was charged twice"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, demo_collection):
    out = tmp_path_factory.mktemp("mlflow") / "feedback_model"
    assert main(["export", "mlflow", str(demo_collection), "-o", str(out), "-q"]) == 0
    return out


def test_load_and_predict(exported, demo_collection):
    import pandas as pd

    from neartext import Collection

    model = mlflow.pyfunc.load_model(str(exported))
    got = model.predict([QUERY], params={"top_k": 3})
    with Collection.open(demo_collection) as col:
        want = col.search(QUERY, k=3)
    assert list(got["id"]) == [r.id for r in want] and list(got["rank"]) == [1, 2, 3][:len(want)]
    assert got["metadata"][0]["topic"] == "billing"  # an object, not a JSON string
    two = model.predict([QUERY, "dark mode please"], params={"top_k": 1})
    assert list(two["query"]) == [QUERY, "dark mode please"]
    assert model.predict(pd.DataFrame({"anything": [QUERY]})).iloc[0]["id"] == got.iloc[0]["id"]
    # defaults from the signature: top_k 10, no threshold, mode search, the tuned ranking
    assert len(model.predict([QUERY])) == 10
    para = model.predict(["Please add a dark mode."],
                         params={"mode": "paraphrases", "similarity_threshold": 0.6})
    assert "Please add a dark mode." not in set(para["text"])  # the text itself is left out
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        empty = model.predict(["quantum chromodynamics"], params={"similarity_threshold": 0.95})
    assert empty.empty and any("no result scored 0.95" in str(x.message) for x in w)


def test_every_form_of_queries_a_caller_sends_is_taken(exported):
    """The seed's ``{"query": ...}``, a list, a string, a one-column DataFrame of any name, a
    Series, an array: the same queries, the same results (the dict and the DataFrame of another
    column name were refused before, by MLflow's input schema)."""
    import numpy as np
    import pandas as pd

    model = mlflow.pyfunc.load_model(str(exported))
    want = list(model.predict([QUERY], params={"top_k": 3})["id"])
    forms = [{"query": QUERY}, {"query": [QUERY]}, QUERY, pd.DataFrame({"text": [QUERY]}),
             pd.DataFrame({"query": [QUERY]}), pd.Series([QUERY]), np.array([QUERY])]
    for form in forms:
        assert list(model.predict(form, params={"top_k": 3})["id"]) == want, form
    # the seed's documented call, word for word
    got = model.predict({"query": "Space exploration is fascinating."},
                        params={"similarity_threshold": 0.65})
    assert set(got["query"]) <= {"Space exploration is fascinating."}
    two = model.predict({"query": [QUERY, "dark mode please"]}, params={"top_k": 1})
    assert list(two["query"]) == [QUERY, "dark mode please"]


def test_the_model_describes_itself(exported):
    """A signature with the params (no input schema: MLflow's would refuse all forms but one;
    the forms are in the metadata), an input example, metadata, neartext in the model and
    pinned requirements from the registry (no neartext==, which no registry has)."""
    info = mlflow.models.get_model_info(str(exported))
    assert info.signature.inputs is None
    assert "one column (any name)" in info.metadata["neartext_input"]
    assert {p.name: p.default for p in info.signature.params} == {
        "top_k": 10, "similarity_threshold": -1.0, "mode": "search", "ranking": "tuned"}
    assert info.metadata["neartext_documents"] == 247
    example = json.loads((exported / "serving_input_example.json").read_text())
    assert isinstance(example["inputs"][0], str) and example["params"]["mode"] == "search"
    assert (exported / "code" / "neartext" / "export" / "mlflow_model.py").is_file()
    assert not list((exported / "code").rglob("__pycache__"))
    reqs = (exported / "requirements.txt").read_text().split()
    assert "torch==2.13.0" in reqs and any(r.startswith("sentence-transformers==") for r in reqs)
    assert any(r.startswith("onnxruntime==") for r in reqs)  # for the model's ONNX twin
    assert not any(r.startswith("neartext") for r in reqs)
    assert info.metadata["neartext_encodes_with"] == "onnx"


def test_the_loaded_model_answers_without_torch_through_the_twin_it_carries(
        exported, demo_collection, encoder, tmp_path):
    """The model's ONNX twin travels in the model (issue 36): a process that loads and serves it
    never imports torch (it did: about 6 s of start-up on 2 cores), even with an empty cache of
    its own, and answers as the collection with the model itself (ids; scores within 1e-5)."""
    from neartext import Collection
    from neartext.engine.analysis import paraphrases

    assert list((exported / "artifacts").rglob("neartext_onnx.json"))
    script = (
        "import json, sys, mlflow.pyfunc\n"
        f"m = mlflow.pyfunc.load_model({str(exported)!r})\n"
        f"out = m.predict([{QUERY!r}], params={{'top_k': 5}})\n"
        "para = m.predict(['Please add a dark mode.'], params={'mode': 'paraphrases', "
        "'similarity_threshold': 0.6})\n"
        "print(json.dumps({'ids': list(out['id']), 'scores': [float(x) for x in out['score']],"
        " 'para': list(para['id']), 'torch': 'torch' in sys.modules}))\n")
    env = {**os.environ, "NEARTEXT_CACHE_DIR": str(tmp_path / "empty-cache")}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["torch"] is False
    # loading said nothing of MLflow's type-hint validation (it warned, in red, at every load)
    assert "Type hint" not in run.stderr, run.stderr[-3000:]
    with Collection.open(demo_collection, model=encoder) as col:  # the model itself
        want = col.search(QUERY, k=5)
        para, _ = paraphrases(col, "Please add a dark mode.", 0.6, top_k=10)
    assert got["ids"] == [r.id for r in want]
    assert max(abs(a - r.score) for a, r in zip(got["scores"], want)) < 1e-5
    assert got["para"] == [r.id for r in para]


def test_export_mode_sets_the_default_and_the_paraphrase_finder_leaves_the_query_out(
        tmp_path, demo_collection):
    from neartext import Collection

    with Collection.open(demo_collection) as col:
        doc = col.store.get(["fb-0066"])[0]
    out = tmp_path / "finder"
    assert main(["export", "mlflow", str(demo_collection), "-o", str(out), "--mode",
                 "paraphrases", "-q"]) == 0
    finder = mlflow.pyfunc.load_model(str(out))
    assert finder.metadata.metadata["neartext_default_mode"] == "paraphrases"
    found = finder.predict([doc.text], params={"similarity_threshold": 0.3})
    assert len(found) and doc.text not in set(found["text"]) and "fb-0066" not in set(found["id"])
    searched = finder.predict([doc.text], params={"mode": "search"})
    assert searched.iloc[0]["id"] == "fb-0066" and searched.iloc[0]["score"] > 0.999


@pytest.mark.parametrize("bad,params,message", [
    ({"query": "x", "k": 3}, None, "a dict input needs exactly one key of query texts"),
    ({"query": 3}, None, "query 1: a query must be a non-empty string; got 3"),
    ({}, None, "got keys: none"),
    (pd.DataFrame({"a": ["x"], "b": ["y"]}), None,
     "a DataFrame input needs exactly one column of query texts; got 2: a, b"),
    (3.5, None, "unsupported input type float"),
    ([""], None, "query 1: a query must be a non-empty string"),
    ([QUERY], {"mode": "nope"}, "mode must be one of"),
    ([QUERY], {"top_k": 0}, "k must be a whole number"),
    ([QUERY], {"threshold": 0.9}, "unknown parameter threshold; known: top_k, "
                                  "similarity_threshold, mode, ranking"),
    ([QUERY], {"ranking": "bm25"}, "ranking must be one of tuned, semantic, keyword, chars, hybrid"),
    ([QUERY], {"ranking": "hybrid", "similarity_threshold": 0.5},
     "a threshold applies to cosine scores: use it with the semantic mode, not hybrid"),
])
def test_bad_input_is_a_clear_error(exported, bad, params, message):
    from mlflow.exceptions import MlflowException

    model = mlflow.pyfunc.load_model(str(exported))
    with pytest.raises(MlflowException, match=message):
        model.predict(bad, params=params)
    assert len(model.predict([QUERY], params={"top_k": 1})) == 1  # nothing left behind


def test_another_models_unknown_params_keep_mlflows_behaviour(exported, tmp_path):
    """The unknown-parameter check applies to neartext's models only."""

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input: list[str], params: dict | None = None) -> list[str]:
            return model_input

    mlflow.pyfunc.load_model(str(exported))  # installs the check
    mlflow.pyfunc.save_model(str(tmp_path / "echo"), python_model=Echo(),
                             input_example=(["x"], {"k": 1}))
    assert mlflow.pyfunc.load_model(str(tmp_path / "echo")).predict(
        ["a"], params={"nope": 1}) == ["a"]


def test_export_refusals_and_force(tmp_path, demo_collection, capsys):
    out = tmp_path / "m"
    out.mkdir()
    assert main(["export", "mlflow", str(demo_collection), "-o", str(out)]) == 1
    assert "exists; choose another path or pass --force" in capsys.readouterr().err
    assert main(["export", "mlflow", str(tmp_path / "none"), "-o", str(tmp_path / "x")]) == 1
    assert "no collection here" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()
    assert main(["export", "mlflow", str(demo_collection), "-o", str(out), "--force", "-q"]) == 0
    assert (out / "MLmodel").is_file() and not (tmp_path / "m.partial").exists()


def test_log_to_a_tracking_store(tmp_path, demo_collection, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # artifacts go next to the tracking database
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert main(["export", "mlflow", str(demo_collection), "--log", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    model = mlflow.pyfunc.load_model(res["model_uri"])
    assert model.predict([QUERY], params={"top_k": 1}).iloc[0]["id"] == "fb-0066"


@pytest.mark.slow
def test_mlflow_models_serve_builds_its_environment_from_the_model_alone(exported):
    """`mlflow models serve` with MLflow's virtualenv manager: a new environment from the
    model's requirements (the registry) and neartext from the model's code; minutes the first
    time, MLflow keeps the environment for the next run."""
    import shutil

    from serving import free_port

    if shutil.which("pyenv") is None and not os.environ.get("CI"):
        pytest.skip("MLflow's virtualenv manager needs pyenv")
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    log = exported.parent / "serve.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([str(Path(bin_dir) / "mlflow"), "models", "serve", "-m",
                                 str(exported), "--env-manager", "virtualenv", "-h", "127.0.0.1",
                                 "-p", str(port)], env=env, stdout=err, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1800):
            try:
                with urllib.request.urlopen(base + "/ping", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(log.read_text()[-3000:]) from None
                time.sleep(0.5)

        def invoke(body: dict) -> tuple[int, dict]:
            req = urllib.request.Request(base + "/invocations", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        status, out = invoke({"inputs": [QUERY], "params": {"top_k": 2}})
        assert status == 200, out
        assert [p["id"] for p in out["predictions"]] == ["fb-0066", "fb-0067"]
        assert out["predictions"][0]["metadata"]["topic"] == "billing"
        status, out = invoke({"inputs": ["dark mode", "refund"],
                              "params": {"top_k": 1, "mode": "paraphrases",
                                         "similarity_threshold": 0.6}})
        assert status == 200 and len(out["predictions"]) == 2
        status, out = invoke({"inputs": [QUERY], "params": {"threshold": 0.9}})
        assert status == 400 and "unknown parameter threshold; known:" in out["message"]
        forms = [{"inputs": {"query": QUERY}}, {"instances": [QUERY]},
                 {"instances": [{"query": QUERY}]}, {"inputs": QUERY},
                 {"dataframe_split": {"columns": ["text"], "data": [[QUERY]]}},
                 {"dataframe_records": [{"q": QUERY}]}]
        for form in forms:  # each form of MLflow's scoring protocol, the same answer
            status, out = invoke({**form, "params": {"top_k": 2}})
            assert status == 200 and [p["id"] for p in out["predictions"]] == [
                "fb-0066", "fb-0067"], (form, out)
        status, out = invoke({"dataframe_split": {"columns": ["a", "b"], "data": [["x", "y"]]}})
        assert status == 400 and "exactly one column of query texts; got 2" in out["message"]
        status, out = invoke({"inputs": [" "]})
        assert status == 400 and "query 1: a query must be a non-empty string" in out["message"]
        # the environment is MLflow's own, without neartext installed: it came from the model
        used = re.search(r"Creating a new environment in (\S+)|Environment (\S+) already exists",
                         log.read_text())
        assert used, log.read_text()[-2000:]
        site = Path(used[1] or used[2]) / "lib"
        assert not list(site.glob("python*/site-packages/neartext*"))
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_model_searches_with_the_collections_current_adapter(tmp_path, demo_copy):
    """A promoted adapter (issue 19) travels with the export and is applied to the queries;
    the version's tuned ranking (hybrid here) is the model's default, as in ``search``."""
    import numpy as np

    from neartext import Collection
    from neartext.algo.adapters import Adapter
    from neartext.ops.versions import promote

    with Collection.open(demo_copy) as col:
        rng = np.random.default_rng(0)
        m = np.eye(col.manifest.dim, dtype=np.float32) + 0.3 * rng.standard_normal(
            (col.manifest.dim, col.manifest.dim)).astype(np.float32)
        promote(col, Adapter("linear", "query", m, col.manifest.model.fingerprint), {},
                search={"mode": "hybrid", "fusion": "blend", "alpha": 0.3})
        tuned = [(r.id, r.score) for r in col.search(QUERY, k=5)]
        semantic = [(r.id, r.score) for r in col.search(QUERY, k=5, mode="semantic")]
        cut = [r.id for r in col.search(QUERY, k=5, threshold=0.4)]
        keyword = [r.id for r in col.search("dark mode", k=5, mode="keyword")]
        chars = [r.id for r in col.search("drak mod", k=5, mode="chars")]
    assert [i for i, _ in tuned] != [i for i, _ in semantic]  # the test tells them apart
    out = tmp_path / "adapted"
    assert main(["export", "mlflow", str(demo_copy), "-o", str(out), "-q"]) == 0
    model = mlflow.pyfunc.load_model(str(out))
    for params, want in (({"top_k": 5}, tuned), ({"top_k": 5, "ranking": "semantic"}, semantic)):
        got = model.predict([QUERY], params=params)
        assert list(got["id"]) == [i for i, _ in want]
        assert np.allclose(got["score"], [s for _, s in want], atol=1e-5)
    assert list(model.predict([QUERY], params={"top_k": 5, "similarity_threshold": 0.4})[
        "id"]) == cut  # a cosine cut ranks semantically, as search does
    assert list(model.predict(["dark mode"], params={"top_k": 5, "ranking": "keyword"})[
        "id"]) == keyword
    assert list(model.predict(["drak mod"], params={"top_k": 5, "ranking": "chars"})[
        "id"]) == chars


def test_the_model_ranks_with_the_versions_learned_ranker(tmp_path, demo_copy):
    """A version whose learned ranker (a LightGBM file in the state directory) ranks the
    longest candidate first, a ranking no fixed mode gives: the export carries the ranker
    file and ranks as the collection does."""
    import numpy as np
    from conftest import promote_a_learned_ranker

    from neartext import Collection

    with Collection.open(demo_copy) as col:
        promote_a_learned_ranker(col)
        tuned = [(r.id, r.score) for r in col.search(QUERY, k=5)]
        blend = [r.id for r in col.search(QUERY, k=5, mode="hybrid", fusion="blend")]
    assert [i for i, _ in tuned] != blend
    out = tmp_path / "ranked"
    assert main(["export", "mlflow", str(demo_copy), "-o", str(out), "-q"]) == 0
    got = mlflow.pyfunc.load_model(str(out)).predict([QUERY], params={"top_k": 5})
    assert list(got["id"]) == [i for i, _ in tuned]
    assert np.allclose(got["score"], [s for _, s in tuned], atol=1e-6)
