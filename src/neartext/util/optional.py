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

import ctypes
import importlib
import importlib.util
import sys
import threading
from collections.abc import Sequence
from functools import cache
from importlib.machinery import ModuleSpec
from pathlib import Path
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


def lightgbm() -> ModuleType:
    """LightGBM (the learned ranker), imported without its scikit-learn and pandas bridges.

    LightGBM's ``compat`` module imports scikit-learn and pandas whenever they are installed
    (``neartext[all]`` has both), for its scikit-learn estimators and DataFrame input, which
    neartext does not use (``lgb.train`` and ``Booster`` on numpy arrays). A cold CLI search
    of a tuned collection took 2.4 s with them, 1.0 s without (``import lightgbm``: 1.29 s,
    0.19 s without them). Packages imported before are used as usual; the refusal holds only for
    imports made by this thread while LightGBM loads, so another thread importing them
    meanwhile is not affected, nor is any later import.
    """
    loaded = sys.modules.get("lightgbm")
    if loaded is not None:
        return loaded
    refused = _Refuse(("sklearn", "pandas"), threading.get_ident())
    sys.meta_path.insert(0, refused)
    try:
        return optional("lightgbm", "core", "lightgbm (the learned ranker)")
    finally:
        sys.meta_path.remove(refused)


@cache
def lightgbm_library() -> ctypes.CDLL:
    """LightGBM's compiled library (``lib_lightgbm``) without its Python package, for
    predicting with a saved model through LightGBM's C API: importing the package takes
    scipy.sparse and narwhals with it, 0.1–0.2 s that a cold search of a tuned collection
    would wait for. Loaded once (the system keeps one copy of the library even when the
    package loads it too, as ``tune`` does)."""
    spec = importlib.util.find_spec("lightgbm")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtra("lightgbm (the learned ranker)", "core")
    found = [p for d in spec.submodule_search_locations for sub in ("lib", ".")
             for p in sorted((Path(d) / sub).glob("lib_lightgbm.*"))
             if p.suffix in (".so", ".dylib", ".dll")]
    if not found:
        raise MissingExtra("lightgbm's library (lib_lightgbm)", "core")
    lib = ctypes.CDLL(str(found[0]))
    lib.LGBM_GetLastError.restype = ctypes.c_char_p
    return lib


class _Refuse:
    """A finder that makes the import of ``packages`` fail on one thread (as if they were
    not installed): what optional bridges of a package are kept from loading with."""

    def __init__(self, packages: Sequence[str], thread: int) -> None:
        self.packages, self.thread = set(packages), thread

    def find_spec(self, name: str, path: object = None, target: object = None
                  ) -> ModuleSpec | None:
        if name.partition(".")[0] in self.packages and threading.get_ident() == self.thread:
            raise ImportError(f"{name} is not loaded with lightgbm", name=name)
        return None
