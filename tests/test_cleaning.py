from __future__ import annotations

import pytest

from neartext.data.cleaning import CleaningOptions, chunk_spans, clean, normalize
from neartext.data.corpus import Record


def recs(*texts):
    return [Record(f"r{i}", t, {}, i + 2) for i, t in enumerate(texts)]


def test_drops_empty_junk_and_duplicates_with_report():
    kept, rep = clean(recs("good", "", "   ", "N/A", "null", "good", "other"))
    assert [r.text for r in kept] == ["good", "other"]
    assert rep.dropped == {"empty": 2, "junk value": 2, "duplicate text": 1}
    assert rep.examples["empty"] == [3, 4]
    assert rep.read == 7 and rep.kept == 2


def test_custom_junk_and_keep_duplicates():
    opts = CleaningOptions(junk_values=("xxx",), drop_duplicates=False)
    kept, rep = clean(recs("xxx", "N/A", "a", "a"), opts)
    assert [r.text for r in kept] == ["N/A", "a", "a"]
    assert rep.dropped == {"junk value": 1}


def test_disabled_keeps_everything():
    kept, rep = clean(recs("", "a", "a"), CleaningOptions(enabled=False))
    assert len(kept) == 3 and rep.dropped == {}


def test_normalization_html_urls_whitespace():
    opts = CleaningOptions(strip_html=True, strip_urls=True)
    assert normalize("<p>Hello&nbsp;<b>world</b></p> see https://x.org/a?b=1  now", opts) == \
        "Hello world see now"
    assert normalize("a \n\t b", CleaningOptions(collapse_whitespace=True)) == "a b"
    assert normalize("a \n b", CleaningOptions()) == "a \n b"


def test_chunk_spans_cover_text_with_overlap():
    text = "one two three four five six seven"
    spans = chunk_spans(text, 3, 1)
    assert [text[s:e] for s, e in spans] == [
        "one two three", "three four five", "five six seven"]
    assert chunk_spans("short text", 5) == [(0, 10)]
    with pytest.raises(ValueError):
        chunk_spans(text, 3, 3)
