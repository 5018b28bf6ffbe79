"""Making a collection's ONNX query encoder (read by :mod:`neartext.engine.query_encoder`).

After a search that had to load the collection's model, the CLI calls
:func:`prepare_query_encoder`: the model is exported to ONNX (fp32) in the collection's cache
and kept only if its query vectors are the model's within 1e-5 on a fixed, mixed set of texts;
from then on a search in a new process encodes its queries without torch. It runs once per model:
a model that cannot be exported faithfully is marked so and never tried again. Two processes
preparing at once each write their own temporary directory; the first renamed into place wins.

Example::

    note = prepare_query_encoder(col.encoder, col.path)   # a line to show, or None
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from neartext.encoders import Encoder, backend_of, load_encoder
from neartext.encoders.base import EncoderSettings
from neartext.encoders.registry import ONNX_META
from neartext.engine.query_encoder import (
    MAX_DIFFERENCE,
    SOURCE_KEY,
    cache_dir,
    enabled,
    export_dir,
    failed_marker,
)
from neartext.errors import MissingExtra, NeartextError
from neartext.util.atomic import fsync_dir
from neartext.util.optional import optional


def prepare_query_encoder(encoder: Encoder, state: Path) -> str | None:
    """Export ``encoder`` (a collection's model, loaded) as the collection's ONNX query encoder
    under ``state`` (its local state directory). Returns a line saying what was done, or None
    when there was nothing to do (turned off, not a sentence-transformers model, made already,
    marked as not exportable, or the cache is not writable). Never raises for the export's
    own failures: the search it follows has succeeded. One export at a time in a process."""
    fingerprint = encoder.fingerprint
    out = export_dir(state, fingerprint)
    if (not enabled() or backend_of(encoder.settings.model) != "sbert" or out.exists()
            or failed_marker(state, fingerprint).exists()):
        return None
    cache = cache_dir(state)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(cache, os.W_OK):
        return None
    try:  # torch is loaded already: the model was
        onnx = optional("neartext.export.onnx", "onnx", "onnx (for the fast query encoder)")
    except MissingExtra:
        return None
    tmp = cache / f".{fingerprint}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial"
    try:
        onnx.export_onnx(encoder.settings.model, tmp, encoder=encoder,
                         meta_extra={SOURCE_KEY: fingerprint})
        worst = _largest_difference(encoder, tmp, onnx.PARITY_TEXTS)
        if worst > MAX_DIFFERENCE:
            return _give_up(state, fingerprint, f"its query vectors differ from the model's by up "
                                                f"to {worst:.2g} (more than {MAX_DIFFERENCE:g})")
        try:
            os.rename(tmp, out)  # another process's export of the same model may be there first
        except OSError:
            return None
        fsync_dir(cache)
    except NeartextError as e:
        return _give_up(state, fingerprint, str(e))
    except OSError as e:  # a full disk, a removed directory: another search tries again
        return f"no fast query encoder was made ({e.strerror or e}); searches load the model"
    except Exception as e:  # torch's exporter raises many types for a model it cannot trace
        return _give_up(state, fingerprint, f"the export failed ({type(e).__name__}: {e})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _remove_others(cache, fingerprint)
    return (f"later searches start fast: the model was exported to ONNX for queries ({out}, "
            "once)")


def _largest_difference(encoder: Encoder, export: Path, texts: list[str]) -> float:
    """The largest difference of one element between the model's query vectors and the
    export's, over texts of several languages and lengths, one at a time and batched."""
    onnx = load_encoder(EncoderSettings(model=str(export), normalize=encoder.settings.normalize,
                                        batch_size=encoder.settings.batch_size))
    want = encoder.encode(texts, kind="query")
    batched = onnx.encode(texts, kind="query")
    single = np.concatenate([onnx.encode([t], kind="query") for t in texts])
    return max(float(np.abs(batched - want).max()), float(np.abs(single - want).max()))


def _give_up(state: Path, fingerprint: str, why: str) -> str:
    """Mark the model as not exportable (so that no later search tries) and say so."""
    marker = failed_marker(state, fingerprint)
    with contextlib.suppress(OSError):  # a read-only cache: the next search asks again
        marker.write_text(json.dumps({"reason": why}) + "\n", encoding="utf-8")
    return f"no fast query encoder can be made for this model: {why}; searches load the model"


def _remove_others(cache: Path, keep: str) -> None:
    """Exports and marks of other models (earlier versions'; a rollback makes its own anew),
    and what killed preparations left."""
    for p in cache.iterdir():
        if p.name.startswith("."):
            if p.name.endswith(".partial") and not _running(p.name):
                shutil.rmtree(p, ignore_errors=True)
            continue
        if p.name.startswith(keep):
            continue
        if p.is_dir() and (p / ONNX_META).exists():
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.endswith(".failed"):
            p.unlink(missing_ok=True)


def _running(partial: str) -> bool:
    """Whether the process that named a temporary directory ``.FP.PID-HEX.partial`` runs."""
    try:
        pid = int(partial.split(".")[2].split("-")[0])
        os.kill(pid, 0)
    except (IndexError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
