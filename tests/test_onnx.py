"""ONNX export and the torch-free runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'neartext[onnx]'")

from conftest import DEMO, ROOT  # noqa: E402

from neartext import Collection, load_encoder  # noqa: E402
from neartext.cli import main  # noqa: E402
from neartext.encoders import backend_of  # noqa: E402

TEXTS = ["The app crashes every time I open a note with a picture in it.",
         "I was charged twice for my yearly subscription.", "Please add a dark mode.", "ok"]


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "minilm-onnx"
    assert main(["export", "onnx", "-o", str(out), "-q"]) == 0
    return out


def test_fp32_export_matches_torch(onnx_dir, encoder):
    meta = json.loads((onnx_dir / "neartext_onnx.json").read_text())
    assert meta["parity"]["fp32"]["min_cosine"] >= 0.9999 and meta["file"] == "model.onnx"
    assert backend_of(str(onnx_dir)) == "onnx"
    enc = load_encoder(str(onnx_dir))
    for kind in ("query", "document"):
        a, b = enc.encode(TEXTS, kind=kind), encoder.encode(TEXTS, kind=kind)
        assert float(np.min(np.sum(a * b, axis=1))) > 0.9999
    assert enc.dim == 384 and enc.count_truncated(["word " * 400, "short"]) == 1


def test_a_collection_with_the_onnx_model(onnx_dir, tmp_path, capsys):
    col = tmp_path / "col"
    assert main(["index", str(DEMO), "-c", str(col), "--id", "id", "--model", str(onnx_dir), "-q"]) == 0
    capsys.readouterr()
    with Collection.open(col) as c:
        hits = c.search("the app crashes when I attach a photo", k=3)
        assert hits[0].id in {"fb-0007", "fb-0008", "fb-0009"}


@pytest.mark.slow
def test_int8_export_and_refusals(onnx_dir, tmp_path, capsys, tiny_model_dir):
    out = tmp_path / "int8"
    assert main(["export", "onnx", "-o", str(out), "--quantize", "int8", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["parity"]["int8"]["mean_cosine"] >= 0.98
    assert json.loads((out / "neartext_onnx.json").read_text())["file"] == "model_int8.onnx"
    assert (out / "model_int8.onnx").stat().st_size < (out / "model.onnx").stat().st_size
    enc = load_encoder(str(out))
    ref = load_encoder("default").encode(TEXTS)
    assert float(np.mean(np.sum(enc.encode(TEXTS) * ref, axis=1))) > 0.98
    assert main(["export", "onnx", "-o", str(onnx_dir)]) == 1
    assert "exists; choose another path or pass --force" in capsys.readouterr().err
    assert main(["export", "onnx", "--model", str(onnx_dir), "-o", str(tmp_path / "x")]) == 1
    assert "not a sentence-transformers" in capsys.readouterr().err
    assert main(["export", "onnx", "--model", str(tmp_path / "none"), "-o", str(tmp_path / "y")]) == 1
    assert "no such directory" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y.partial").exists()


def test_a_damaged_onnx_model_is_one_line(onnx_dir, tmp_path, capsys):
    """A model file onnxruntime cannot parse: one line naming the directory (a traceback of
    onnxruntime's own InvalidProtobuf before)."""
    import shutil

    damaged = shutil.copytree(onnx_dir, tmp_path / "damaged")
    (damaged / "model.onnx").write_bytes(b"not a model")
    assert main(["embed", str(DEMO), "-o", str(tmp_path / "v.parquet"), "--id", "id",
                 "--model", str(damaged), "-q"]) == 1
    err = capsys.readouterr().err
    assert f"cannot load {damaged}" in err and "INVALID_PROTOBUF" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "v.parquet").exists()


@pytest.mark.slow
def test_torch_free_environment_opens_searches_and_is_small(onnx_dir, tmp_path):
    """`pip install 'neartext[lite]'` in a fresh venv: no torch; the ONNX collection opens,
    searches and is served (the app, through FastAPI's test client)."""
    col = tmp_path / "col"
    assert main(["index", str(DEMO), "-c", str(col), "--id", "id", "--model", str(onnx_dir), "-q"]) == 0
    venv = tmp_path / "lite"
    # a venv without its own pip, which this pip installs into (--python), and no bytecode
    # compiled: 11 s instead of 27 s (a venv with pip, then its pip compiling every module);
    # what gets installed is the same
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet",
                    "--no-compile", f"{ROOT}[lite]"], check=True, timeout=900)
    script = textwrap.dedent(f"""
        import importlib.util, json
        from neartext import Collection
        assert importlib.util.find_spec("torch") is None, "torch is installed"
        with Collection.open({str(col)!r}) as c:
            hits = c.search("I was charged twice", k=2)
        from fastapi.testclient import TestClient
        from neartext.serve import ServeSettings, create_app
        with TestClient(create_app(ServeSettings.from_args([{str(col)!r}]))) as client:
            r = client.post("/collections/col/search", json={{"query": "dark mode", "k": 1}})
            assert r.status_code == 200 and r.json()["results"][0], r.text
        import sys
        print(json.dumps({{"ids": [h.id for h in hits], "torch_loaded": "torch" in sys.modules}}))
    """)
    out = subprocess.run([str(py), "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["ids"][0] in {"fb-0066", "fb-0067"} and res["torch_loaded"] is False

    def size(env: Path) -> int:
        """What the packages installed take, without bytecode (compiled on first import, or
        not at all, by the installer's choice) and without pip itself."""
        site = next((env / "lib").glob("python3*/site-packages"))
        return sum(f.stat().st_size for f in site.rglob("*") if f.is_file()
                   and "__pycache__" not in f.parts and not f.relative_to(site).parts[0]
                   .startswith("pip"))

    lite, full = size(venv), size(Path(sys.prefix))
    ratio = lite / full
    print(f"installed size: lite {lite / 2**20:.0f} MB, full {full / 2**20:.0f} MB ({ratio:.1%})")
    assert ratio <= 0.25
    if os.environ.get("NEARTEXT_SIZE_REPORT"):
        Path(os.environ["NEARTEXT_SIZE_REPORT"]).write_text(json.dumps(
            {"lite_mb": lite / 2**20, "full_mb": full / 2**20, "ratio": ratio}))


def test_bench_encoders_recommends_within_tolerance(tmp_path, tiny_model_dir, capsys):
    sts = tmp_path / "sts.csv"
    rows = [("A cat sits on the mat.", "A cat is sitting on a mat.", 4.8),
            ("A man plays guitar.", "Someone plays a guitar.", 4.2),
            ("The market fell today.", "Stocks dropped sharply.", 3.5),
            ("A dog runs in a park.", "The weather is cold.", 0.2),
            ("She reads a book.", "A woman is reading.", 3.9),
            ("Kids play football.", "The bank raised rates.", 0.0)] * 3
    sts.write_text("sentence1,sentence2,score\n" + "\n".join(f'"{a}","{b}",{s}' for a, b, s in rows))
    keep = tmp_path / "backends"
    assert main(["bench-encoders", "--model", str(tiny_model_dir), "--sts", str(sts), "--keep",
                 str(keep), "--rounds", "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["results"]) == {"torch", "onnx", "onnx-int8", "static"}
    torch_q = res["results"]["torch"]["quality"]
    assert abs(res["results"]["onnx"]["quality"] - torch_q) < 0.01  # same vectors
    best = res["recommended"]
    assert res["results"][best]["quality"] >= torch_q - 1.0
    assert all(res["results"][b]["texts_per_s"] <= res["results"][best]["texts_per_s"]
               for b, r in res["results"].items() if r["quality"] >= torch_q - 1.0)
    assert (keep / "onnx" / "model.onnx").is_file() and (keep / "static" / "config.json").is_file()
    assert main(["bench-encoders", "--model", str(tiny_model_dir)]) == 1
    assert "give --sts FILE or --pairs FILE" in capsys.readouterr().err
