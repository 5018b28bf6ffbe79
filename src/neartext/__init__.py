"""neartext: find what texts mean in your own corpus.

Example:
    >>> from neartext import Collection
    >>> col = Collection.open("feedback/")                                # doctest: +SKIP
    >>> col.search("the app crashes at startup", k=5, where="year>=2023")  # doctest: +SKIP
"""

from __future__ import annotations

import os

# Offline by design: no model or data set is fetched from a hub (read by huggingface_hub and
# transformers when they load, so set before anything imports them)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from neartext.collection import Collection
from neartext.data.cleaning import CleaningOptions
from neartext.data.corpus import Record, read_corpus
from neartext.data.results import IndexReport, SearchResult
from neartext.encoders import EncoderSettings, load_encoder
from neartext.errors import NeartextError
from neartext.version import __version__

__all__ = [
    "CleaningOptions", "Collection", "EncoderSettings", "IndexReport", "NeartextError", "Record",
    "SearchResult", "__version__", "load_encoder", "read_corpus",
]  # fmt: skip
