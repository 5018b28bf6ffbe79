"""Static (model2vec) models: distilled from a local sentence-transformers model, used by path."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("model2vec", reason="the static extra is not installed: pip install 'neartext[static]'")

from neartext import Collection, Record, load_encoder  # noqa: E402
from neartext.cli import main  # noqa: E402
from neartext.encoders import backend_of  # noqa: E402

# one worker distills the module's model (11 s) for every test of it, not each worker its own
pytestmark = pytest.mark.xdist_group("static")


@pytest.fixture(scope="module")
def static_dir(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("static") / "tiny-static"
    assert main(["distill", "--model", str(tiny_model_dir), "-o", str(out), "--pca-dims", "16",
                 "-q"]) == 0
    return out


def test_distilled_model_works_by_path(static_dir, tmp_path):
    assert backend_of(str(static_dir)) == "static"
    enc = load_encoder(str(static_dir))
    v = enc.encode(["the app crashes", "refund my payment", "the app crashes"])
    assert v.shape == (3, 16) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5) and np.allclose(v[0], v[2])
    assert load_encoder(str(static_dir)).fingerprint == enc.fingerprint
    col = Collection.create(tmp_path / "c", model=str(static_dir))
    col.upsert([Record("a", "the app crashes on start", {}), Record("b", "refund my payment", {})])
    assert col.search("the app crashes on start", k=1)[0].id == "a"
    assert col.info().dim == 16
    col.close()


def test_distill_refusals_and_training(static_dir, tiny_model_dir, tmp_path, capsys):
    assert main(["distill", "--model", str(tiny_model_dir), "-o", str(static_dir)]) == 1
    assert "exists; choose another path or pass --force" in capsys.readouterr().err
    assert main(["distill", "--model", str(static_dir), "-o", str(tmp_path / "x")]) == 1
    assert "not a transformer model" in capsys.readouterr().err
    assert main(["distill", "--model", str(tmp_path / "none"), "-o", str(tmp_path / "y")]) == 1
    assert "no such directory" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y.partial").exists()
    pairs = tmp_path / "p.csv"
    pairs.write_text("anchor,positive\na,b\nc,d\n")
    assert main(["train", str(pairs), "--base", str(static_dir), "-o", str(tmp_path / "m")]) == 1
    assert "cannot be fine-tuned" in capsys.readouterr().err


@pytest.mark.slow
def test_distilled_minilm_finds_paraphrases(tmp_path, capsys):
    out = tmp_path / "minilm-static"
    assert main(["distill", "-o", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["dim"] == 256 and res["vocabulary"] > 20000
    enc = load_encoder(str(out))
    v = enc.encode(["I was charged twice for my subscription", "My card was billed two times",
                    "Please add a dark mode"])
    assert v[0] @ v[1] > v[0] @ v[2]
