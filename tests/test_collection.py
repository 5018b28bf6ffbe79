"""The Collection API with the real bundled model."""

from __future__ import annotations

import json
import shutil

import pytest

from neartext import Collection, Record
from neartext.encoders import EncoderSettings, load_encoder
from neartext.errors import CollectionExists, CollectionNotFound, InputError, ModelMismatch


def test_search_finds_paraphrases_first(demo_collection):
    with Collection.open(demo_collection) as col:
        res = col.search("I paid twice for the annual subscription", k=5)
    assert len(res) == 5
    assert {res[0].id, res[1].id} == {"fb-0066", "fb-0067"}  # the two double-charge texts
    assert res[0].score >= res[1].score >= res[4].score
    assert res[0].metadata["topic"] == "billing"
    assert res[0].metadata["link"].startswith("https://")


def test_threshold_filters_low_scores(demo_collection):
    with Collection.open(demo_collection) as col:
        all5 = col.search("sync problems between devices", k=5)
        some = col.search("sync problems between devices", k=5, threshold=all5[2].score)
        none = col.search("sync problems between devices", k=5, threshold=0.99)
    assert [r.id for r in some] == [r.id for r in all5[:3]]
    assert none == []


def test_metadata_filters_combine_with_and(demo_collection):
    with Collection.open(demo_collection) as col:
        res = col.search("the app crashes", k=50, where=["year>=2024", "topic=crash"])
        assert res and all(r.metadata["year"] >= 2024 and r.metadata["topic"] == "crash"
                           for r in res)
        everything = col.search("the app crashes", k=500)
        expected = {r.id for r in everything
                    if r.metadata["year"] >= 2024 and r.metadata["topic"] == "crash"}
        assert {r.id for r in res} == expected
        with pytest.raises(InputError, match="unknown metadata field 'yaer'"):
            col.search("x", where="yaer>2000")


def test_only_a_filter_naming_fields_reads_the_fields_in_use(demo_copy, monkeypatch):
    """The check of a filter's fields reads which fields are in use (a query of the store, and
    on Milvus a round trip for its generation): a search without a filter, or with words only,
    does not (before: every search read them). (A copy: its hybrid search makes the word
    index, which the session's demo collection must not have.)"""
    with Collection.open(demo_copy) as col:
        reads: list[int] = []
        fields = type(col.store).metadata_fields
        monkeypatch.setattr(type(col.store), "metadata_fields",
                            lambda store: reads.append(1) or fields(store))
        col.search("the app crashes", k=3)
        col.search("the app crashes", k=3, mode="hybrid", contains=["crash"])
        assert reads == []
        assert col.search("the app crashes", k=3, where="topic=crash")
        assert reads == [1]


def test_keyword_filter(demo_collection):
    with Collection.open(demo_collection) as col:
        res = col.search("problem with my account", k=10, contains=["password"])
    assert res and all("password" in r.text.lower() for r in res)


def test_search_many_matches_single(demo_collection):
    with Collection.open(demo_collection) as col:
        many = col.search_many(["dark theme please", "refund"], k=3)
        assert [r.id for r in many[0]] == [r.id for r in col.search("dark theme please", k=3)]
        assert [r.id for r in many[1]] == [r.id for r in col.search("refund", k=3)]


@pytest.mark.parametrize("k", [0, -1])
def test_bad_k(demo_collection, k):
    with Collection.open(demo_collection) as col, pytest.raises(InputError, match="k must be"):
        col.search("x", k=k)


@pytest.mark.parametrize("t", [-1.5, 1.01])
def test_bad_threshold(demo_collection, t):
    with Collection.open(demo_collection) as col, pytest.raises(InputError, match="threshold"):
        col.search("x", threshold=t)


def test_open_missing_collection(tmp_path):
    with pytest.raises(CollectionNotFound, match="no collection"):
        Collection.open(tmp_path / "nothing")


def test_create_refuses_existing(demo_copy, encoder):
    with pytest.raises(CollectionExists):
        Collection.create(demo_copy, model=encoder)


def test_upsert_reembeds_only_new_or_changed(demo_copy, counting):
    with Collection.open(demo_copy, model=counting) as col:
        before = len(col)
        old = col.get(["fb-0001"])[0]
        records = [
            Record("fb-0001", old.text, {**old.metadata, "rating": 5}),   # metadata only
            Record("fb-0002", "The editor lost my paragraph again today."),  # text changed
            Record("new-1", "Please add a calendar week view."),            # new
            Record("fb-0003", col.get(["fb-0003"])[0].text, col.get(["fb-0003"])[0].metadata),
        ]
        rep = col.upsert(records)
        assert counting.encoded == ["Please add a calendar week view.",
                                    "The editor lost my paragraph again today."] or \
            sorted(counting.encoded) == sorted(["Please add a calendar week view.",
                                                "The editor lost my paragraph again today."])
        assert (rep.added, rep.updated, rep.unchanged, rep.texts_embedded) == (1, 2, 1, 2)
        assert len(col) == before + 1
        assert col.get(["fb-0001"])[0].metadata["rating"] == 5
        assert col.search("calendar week view", k=1)[0].id == "new-1"
        assert col.search("editor lost my paragraph", k=1)[0].id == "fb-0002"


def test_reindex_unchanged_file_embeds_nothing(demo_copy, counting):
    from conftest import DEMO

    with Collection.open(demo_copy, model=counting) as col:
        rep = col.index_file(DEMO, sync=True)
    assert counting.encoded == []
    assert (rep.unchanged, rep.added, rep.removed, rep.texts_embedded) == (247, 0, 0, 0)


def test_reindex_sync_removes_missing_and_reuses_vectors(demo_copy, counting, tmp_path):
    from conftest import DEMO

    lines = DEMO.read_text(encoding="utf-8").splitlines()
    # drop 10 rows, move one text to a new id (its vector is reused, not recomputed)
    moved = lines[1].split(",", 1)  # a dropped row
    kept = lines[:1] + lines[11:] + ["moved-1," + moved[1]]
    f = tmp_path / "smaller.csv"
    f.write_text("\n".join(kept) + "\n", encoding="utf-8")
    with Collection.open(demo_copy, model=counting) as col:
        rep = col.index_file(f, sync=True)
        assert rep.removed == 10 and rep.added == 1 and rep.texts_embedded == 0
        assert rep.vectors_reused == 1 and counting.encoded == []
        assert len(col) == 247 - 10 + 1


def test_delete(demo_copy):
    with Collection.open(demo_copy) as col:
        top = col.search("dark mode", k=1)[0]
        assert col.delete([top.id, "no-such-id"]) == 1
        assert top.id not in [r.id for r in col.search("dark mode", k=10)]
        assert len(col) == 246
    with Collection.open(demo_copy) as col:  # persisted
        assert len(col) == 246 and col.get([top.id]) == []


def test_index_rebuilt_when_cache_missing_or_stale(demo_copy):
    with Collection.open(demo_copy) as col:
        want = [r.id for r in col.search("login problems", k=5)]
    (demo_copy / "index.bin").unlink()
    with Collection.open(demo_copy) as col:
        assert [r.id for r in col.search("login problems", k=5)] == want
    (demo_copy / "index.bin").write_bytes(b"garbage")  # damaged: rebuilt
    with Collection.open(demo_copy) as col:
        assert [r.id for r in col.search("login problems", k=5)] == want
        assert col.info().index["file"]["current"]


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_ann_indexes_agree_with_exact_and_support_writes(tmp_path, encoder, kind):
    from conftest import DEMO

    exact, _ = Collection.from_file(tmp_path / "flat", DEMO, ["text"], "id", model=encoder)
    ann, _ = Collection.from_file(tmp_path / kind, DEMO, ["text"], "id", model=encoder, index=kind)
    assert ann.info().index["kind"] == kind
    for q in ["app crashes on startup", "refund", "dark mode please", "password reset email"]:
        assert ann.search(q, k=1)[0].id == exact.search(q, k=1)[0].id
    gone = ann.search("refund", k=1)[0].id
    ann.delete([gone])
    ann.upsert([Record("n1", "I would like my money returned")])
    assert gone not in [r.id for r in ann.search("refund", k=5)]
    assert ann.search("I would like my money returned", k=1)[0].id == "n1"
    exact.close()
    ann.close()


def test_chunking_maps_passages_to_parent(tmp_path, encoder):
    long_a = ("The quarterly report covers revenue growth in three regions. " * 3 +
              "Separately, the office coffee machine is broken and leaks water on the floor. " +
              "Sales teams hired new staff in the spring. " * 3)
    long_b = "Our hiking club meets every Sunday in the mountains. " * 6
    f = tmp_path / "docs.jsonl"
    f.write_text("\n".join(json.dumps({"id": i, "text": t})
                           for i, t in [("a", long_a), ("b", long_b)]), encoding="utf-8")
    col, rep = Collection.from_file(tmp_path / "c", f, id_column="id", model=encoder,
                                    chunk=12, overlap=3)
    assert col.info().passages > 2
    res = col.search("the coffee machine leaks", k=5)
    assert [r.id for r in res] == ["a", "b"]  # one hit per document
    assert "coffee machine" in res[0].passage and res[0].text == long_a
    col.close()


def test_long_texts_are_counted(tmp_path, encoder):
    f = tmp_path / "long.txt"
    f.write_text("short one\n" + "word " * 400 + "\n", encoding="utf-8")
    col, rep = Collection.from_file(tmp_path / "c", f, model=encoder)
    assert rep.truncated == 1 and "truncated" in rep.summary()
    col.close()


def test_model_mismatch_is_refused(demo_collection, tiny_model_dir):
    with pytest.raises(ModelMismatch, match="built with model 'all-MiniLM-L6-v2'"):
        Collection.open(demo_collection, model=str(tiny_model_dir))
    other = load_encoder(EncoderSettings(model="default", pooling="cls"))
    with pytest.raises(ModelMismatch):
        Collection.open(demo_collection, model=other)


def test_manifest_describes_collection(demo_collection):
    m = json.loads((demo_collection / "manifest.json").read_text())
    assert m["model"]["name"] == "all-MiniLM-L6-v2" and len(m["model"]["fingerprint"]) == 24
    assert m["dim"] == 384 and m["metric"] == "cosine" and m["neartext_version"]
    assert m["source"] == {"text": ["text"], "id": "id"} and "created" in m


def test_local_model_with_e5_prefixes(tmp_path, tiny_model_dir):
    model = tmp_path / "my-e5-small"
    shutil.copytree(tiny_model_dir, model)
    enc = load_encoder(str(model))
    assert (enc.settings.query_prefix, enc.settings.document_prefix) == ("query: ", "passage: ")
    assert (enc.encode(["x"], "query") != enc.encode(["x"], "document")).any()
    plain = load_encoder(str(tiny_model_dir))  # 'tiny-e5-model' also counts as e5
    custom = load_encoder(EncoderSettings(model=str(tiny_model_dir), query_prefix="",
                                          document_prefix=""))
    assert plain.fingerprint != custom.fingerprint
    f = tmp_path / "c.txt"
    f.write_text("alpha\nbeta\n")
    col, _ = Collection.from_file(tmp_path / "col", f, model=enc)
    assert col.info().prefixes == {"query": "query: ", "document": "passage: "}
    assert len(col.search("alpha", k=2)) == 2
    col.close()
    with Collection.open(tmp_path / "col") as reopened:  # loads the model by its recorded path
        assert reopened.encoder.fingerprint == enc.fingerprint


def test_pooling_and_max_length_options(encoder):
    cls_enc = load_encoder(EncoderSettings(pooling="cls", max_seq_length=16))
    assert cls_enc.max_tokens == 16 and cls_enc.fingerprint != encoder.fingerprint
    v1, v2 = cls_enc.encode(["hello world"]), encoder.encode(["hello world"])
    assert v1.shape == v2.shape and (abs(v1 - v2).max() > 1e-3)
    with pytest.raises(ValueError, match="Unknown pooling 'avg'; choose one of: mean, cls, max"):
        EncoderSettings(pooling="avg")
