"""neartext: find what texts mean in your own corpus.

Example:
    >>> from neartext import Collection
    >>> col = Collection.open("feedback/")                                # doctest: +SKIP
    >>> col.search("the app crashes at startup", k=5, where="year>=2023")  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from .cleaning import CleaningOptions  # noqa: E402
from .collection import Collection  # noqa: E402
from .corpus import Record, read_corpus  # noqa: E402
from .encoders import EncoderSettings, load_encoder  # noqa: E402
from .errors import NeartextError  # noqa: E402
from .results import IndexReport, SearchResult  # noqa: E402

__all__ = [
    "CleaningOptions", "Collection", "EncoderSettings", "IndexReport", "NeartextError", "Record",
    "SearchResult", "__version__", "load_encoder", "read_corpus",
]  # fmt: skip
