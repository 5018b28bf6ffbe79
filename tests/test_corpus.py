from __future__ import annotations

import json

import pytest

from neartext.data.corpus import generated_id, read_corpus
from neartext.errors import CorpusFileNotFound, InputError


def test_txt_one_text_per_line(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("first line\nsecond line\n", encoding="utf-8")
    recs = read_corpus(f)
    assert [r.text for r in recs] == ["first line", "second line"]
    assert [r.row for r in recs] == [1, 2]
    assert recs[0].id == generated_id("first line")


def test_csv_several_text_columns_id_and_metadata(tmp_path):
    f = tmp_path / "memes.csv"
    f.write_text("link,header,meaning,year\nhttp://x/1,Shocked cat,When the exam moved,2022\n"
                 "http://x/2,Dog,Happy,007\n", encoding="utf-8")
    recs = read_corpus(f, ["header", "meaning"], "link")
    assert recs[0].id == "http://x/1"
    assert recs[0].text == "Shocked cat\nWhen the exam moved"
    # each text column is also a field of its own (shown, filtered); the text is their join
    assert recs[0].metadata == {"header": "Shocked cat", "meaning": "When the exam moved",
                                "year": 2022}
    assert recs[1].metadata["year"] == "007"  # leading zeros are not numbers


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_csv_delimiter_detected(tmp_path, sep):
    f = tmp_path / "a.csv"
    f.write_text(f"text{sep}topic\nhello there{sep}greeting\nbye now{sep}farewell\n")
    recs = read_corpus(f, ["text"])
    assert [(r.text, r.metadata["topic"]) for r in recs] == [
        ("hello there", "greeting"), ("bye now", "farewell")]


def test_tsv_and_quoted_multiline_rows(tmp_path):
    f = tmp_path / "a.tsv"
    f.write_text('text\tn\n"two\nlines"\t1\nnext\t2\n')
    recs = read_corpus(f)
    assert [r.text for r in recs] == ["two\nlines", "next"]
    assert [r.row for r in recs] == [2, 4]


def test_jsonl_objects_and_strings(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text(json.dumps({"body": "x y", "tags": ["a"]}) + "\n\n" + json.dumps("plain") + "\n")
    recs = read_corpus(f, ["body"])
    assert recs[0].text == "x y" and recs[0].metadata == {"tags": ["a"]}
    assert recs[1].text == "" and recs[1].row == 3  # a string row has no 'body'


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="pyarrow (neartext[parquet]) not installed")
    import pyarrow.parquet as pq

    f = tmp_path / "a.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["one", "two"], "n": [1, 2]}), f)
    recs = read_corpus(f, id_column="id")
    assert [(r.id, r.text, r.metadata) for r in recs] == [("a", "one", {"n": 1}), ("b", "two", {"n": 2})]


def test_missing_file(tmp_path):
    with pytest.raises(CorpusFileNotFound, match="no such file"):
        read_corpus(tmp_path / "nope.csv")


def test_unknown_column_lists_available(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("title,body\nx,y\n")
    with pytest.raises(InputError, match=r"unknown text column 'text'; available columns: title, body"):
        read_corpus(f, ["text"])
    with pytest.raises(InputError, match="unknown id column 'uid'"):
        read_corpus(f, ["body"], "uid")


def test_undecodable_bytes_name_line_and_suggest_encoding(tmp_path):
    f = tmp_path / "a.csv"
    f.write_bytes("text\nпривет\n".encode("cp1251"))
    with pytest.raises(InputError, match=r"a\.csv: line 2: .*--encoding"):
        read_corpus(f)
    assert read_corpus(f, encoding="cp1251")[0].text == "привет"


def test_malformed_json_line_number(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"text": "ok"}\n{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(InputError, match=r"a\.jsonl: line 3: malformed JSON"):
        read_corpus(f)


def test_duplicate_ids_listed(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("id,text\n1,a\n2,b\n1,c\n2,d\n")
    with pytest.raises(InputError, match=r"duplicate ids: '1' \(rows 2 and 4\), '2' \(rows 3 and 5\)"):
        read_corpus(f, id_column="id")


def test_unknown_format(tmp_path):
    f = tmp_path / "a.docx"
    f.write_text("x")
    with pytest.raises(InputError, match=r"unknown corpus format '\.docx'; use one of: .*parquet$"):
        read_corpus(f)
    sheet = tmp_path / "memes.xlsx"  # a spreadsheet: what to do with it, in the same line
    sheet.write_bytes(b"PK\x03\x04")
    with pytest.raises(InputError, match=r"'\.xlsx'; .*; save the sheet as CSV UTF-8"):
        read_corpus(sheet)


def test_too_many_fields_names_line(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("text,n\nok,1\nbad,2,3\n")
    with pytest.raises(InputError, match="line 3: 3 fields"):
        read_corpus(f)


def test_a_directory_of_files_is_one_corpus_in_path_order(tmp_path):
    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    (d / ".cache").mkdir()
    (d / "b.csv").write_text("id,text,kind\nb1,second file,x\n", encoding="utf-8")
    (d / "a.jsonl").write_text('{"id": "a1", "text": "first file"}\n', encoding="utf-8")
    (d / "sub" / "c.csv").write_text("id,text\nc1,nested\n", encoding="utf-8")
    (d / ".cache" / "junk.csv").write_text("id,text\nz,hidden\n", encoding="utf-8")
    (d / "notes.md").write_text("not a corpus file", encoding="utf-8")
    recs = read_corpus(d, id_column="id")
    assert [(r.id, r.text, r.where) for r in recs] == [
        ("a1", "first file", "a.jsonl:1"), ("b1", "second file", "b.csv:2"),
        ("c1", "nested", "sub/c.csv:2")]
    assert recs[1].metadata == {"kind": "x"}
    (d / "sub" / "d.csv").write_text("id,text\nb1,same id as in b.csv\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"duplicate ids: 'b1' \(rows b.csv:2 and sub/d.csv:2\)"):
        read_corpus(d, id_column="id")
    (d / "sub" / "d.csv").write_text("id,txt\nd1,wrong column\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"sub/d.csv: unknown text column 'text'"):
        read_corpus(d, text=["text"], id_column="id")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.md").write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="no corpus files in the directory"):
        read_corpus(empty)
