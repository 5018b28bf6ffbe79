"""The MLflow pyfunc model: save, load, predict with params, and `mlflow models serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed: "
                                             "pip install 'neartext[mlflow]'")

from neartext.cli import main  # noqa: E402

QUERY = "I was charged twice"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, demo_collection):
    out = tmp_path_factory.mktemp("mlflow") / "feedback_model"
    assert main(["export", "mlflow", str(demo_collection), "-o", str(out), "-q"]) == 0
    return out


def test_load_and_predict_every_input_shape(exported, demo_collection):
    import pandas as pd

    from neartext import Collection

    model = mlflow.pyfunc.load_model(str(exported))
    got = model.predict({"query": QUERY}, params={"top_k": 3})
    with Collection.open(demo_collection) as col:
        want = col.search(QUERY, k=3, threshold=0.5)
    assert list(got["id"]) == [r.id for r in want] and list(got["rank"]) == [1, 2, 3][:len(want)]
    assert json.loads(got["metadata"][0])["topic"] == "billing"
    two = model.predict({"queries": [QUERY, "dark mode please"]}, params={"top_k": 1})
    assert list(two["query"]) == [QUERY, "dark mode please"]
    assert model.predict(pd.DataFrame({"anything": [QUERY]})).iloc[0]["id"] == got.iloc[0]["id"]
    assert len(model.predict([QUERY, "refund"], params={"top_k": 2})) == 4
    # defaults from the signature: top_k 10, threshold 0.5
    assert 1 <= len(model.predict(QUERY)) <= 10
    para = model.predict({"query": "Please add a dark mode."},
                         params={"mode": "paraphrases", "similarity_threshold": 0.6})
    assert "Please add a dark mode." not in set(para["text"])  # the text itself is left out
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        empty = model.predict({"query": "quantum chromodynamics"}, params={"similarity_threshold": 0.95})
    assert empty.empty and any("no result scored 0.95" in str(x.message) for x in w)


@pytest.mark.parametrize("bad,message", [
    ("two columns", "exactly one column"),
    ({"q": "x"}, "needs 'query' or 'queries'"),
    (42, "unsupported input type int"),
    ({"queries": "x"}, "'queries' must be a list"),
    ([""], "non-empty strings"),
])
def test_bad_input_is_a_clear_error(exported, bad, message):
    import pandas as pd

    model = mlflow.pyfunc.load_model(str(exported))
    if bad == "two columns":
        bad = pd.DataFrame({"a": ["x"], "b": ["y"]})
    with pytest.raises(ValueError, match=message):
        model.predict(bad)
    with pytest.raises(ValueError, match="mode must be one of"):
        model.predict(QUERY, params={"mode": "nope"})


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
    assert model.predict({"query": QUERY}, params={"top_k": 1}).iloc[0]["id"] == "fb-0066"


@pytest.mark.slow
def test_mlflow_models_serve_answers_invocations(exported):
    from serving import free_port

    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    proc = subprocess.Popen([str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", str(exported),
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(base + "/ping", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(proc.stderr.read()[-2000:]) from None
                time.sleep(0.5)

        def invoke(body: dict) -> tuple[int, dict]:
            req = urllib.request.Request(base + "/invocations", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        status, out = invoke({"inputs": {"query": QUERY}, "params": {"top_k": 2}})
        assert status == 200 and [p["id"] for p in out["predictions"]] == ["fb-0066", "fb-0067"]
        status, out = invoke({"inputs": {"queries": ["dark mode", "refund"]},
                              "params": {"top_k": 1, "mode": "paraphrases",
                                         "similarity_threshold": 0.6}})
        assert status == 200 and len(out["predictions"]) == 2
        status, out = invoke({"inputs": {"q": "x"}})
        assert status == 400
    finally:
        proc.terminate()
        proc.wait(30)
