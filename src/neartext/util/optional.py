"""Optional packages, loaded when a feature first needs them: the one place that imports them
lazily and turns a missing one into a line naming the extra that installs it.

A module whose every use needs a package imports it at its top (``neartext.encoders.sbert``
imports sentence-transformers); one that needs it for a single feature asks here, so importing
the module stays cheap and works without the extra (UMAP takes seconds to import, Ray more).

Example:
    >>> optional("json", "core").dumps([1])
    '[1]'
    >>> optional("no_such_package", "viz")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    neartext.errors.MissingExtra: no_such_package is not installed; install it with: ...
"""

from __future__ import annotations

import importlib
from types import ModuleType

from neartext.errors import MissingExtra


def optional(module: str, extra: str, what: str | None = None) -> ModuleType:
    """``module`` imported (once: Python keeps it), or :class:`MissingExtra` naming ``what``
    (default: the module) and ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if e.name and e.name.startswith("neartext"):
            raise
        raise MissingExtra(what or module, extra) from None


def pyplot() -> ModuleType:
    """matplotlib's pyplot, drawing off-screen (no display is needed)."""
    optional("matplotlib", "viz").use("Agg")
    return optional("matplotlib.pyplot", "viz")


def parquet() -> ModuleType:
    """``pyarrow.parquet``."""
    return optional("pyarrow.parquet", "parquet", "pyarrow (needed for .parquet)")


def arrow() -> ModuleType:
    """``pyarrow``."""
    return optional("pyarrow", "parquet", "pyarrow (needed for .parquet)")
