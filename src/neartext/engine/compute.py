"""Compute on a Ray cluster: the one home of neartext's Ray wiring (``neartext[ray]``).

``ray_session`` connects (a cluster's address, ``auto`` for the one ``RAY_ADDRESS`` or a running
``ray start`` names, or a Ray started here), ``embed_on_ray`` embeds texts with encoder actors
(each loads the model once) through Ray Data's ``map_batches``. Ray schedules, retries and moves
the data; neartext only says what to compute.

Example::

    with ray_session("local", cpus=2):
        vectors = embed_on_ray(texts, EncoderSettings(model="default"), actors=2)
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
import socket
import sys
import warnings
from collections.abc import Generator, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from neartext.algo.mining import join_cells
from neartext.data.cleaning import CleaningOptions
from neartext.data.cleaning import normalize as normalized
from neartext.data.corpus import Record, check_unique_ids, corpus_files, read_corpus
from neartext.data.hashing import text_hash
from neartext.encoders import EncoderSettings, load_encoder
from neartext.errors import CorpusFileNotFound, InputError, MissingExtra, ServerUnreachable
from neartext.util.optional import optional
from neartext.util.progress import progress_bar

if TYPE_CHECKING:
    from neartext.algo.mining import CellPlan, Triples
    from neartext.data.cleaning import CleaningOptions
    from neartext.data.corpus import Record

LOCAL = "local"
REACH_TIMEOUT_S = 5.0


def _ray() -> Any:
    """Ray, with Ray Data (``neartext[ray]``; imported when a command runs on Ray)."""
    optional("ray.data", "ray")
    return optional("ray", "ray")


def _check_reachable(address: str) -> None:
    """One line at once when a ``ray://host:port`` (or ``host:port``) address does not answer,
    rather than Ray's retries."""
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    if not parsed.hostname or not parsed.port:
        raise InputError(f"--ray {address}: give 'local', 'auto' or an address like "
                         "ray://HOST:10001")
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=REACH_TIMEOUT_S):
            pass
    except OSError as e:
        raise ServerUnreachable(f"--ray {address}: no Ray cluster answers there "
                                f"({e.strerror or e})") from None


@contextlib.contextmanager
def ray_session(address: str = LOCAL, *, cpus: int | None = None) -> Iterator[Any]:
    """Connected to Ray for the block: ``local`` starts Ray in this process' machine with
    ``cpus`` CPUs (default: all), ``auto`` joins the cluster ``ray start`` or ``RAY_ADDRESS``
    names, anything else is a cluster address. Yields the ``ray`` module.

    A process connected already (its own ``ray.init``, a notebook's, or an enclosing session)
    keeps its connection for ``local`` and ``auto``: nothing is started, and the block leaves it
    open; another address is refused in one line (Ray has one connection per process)."""
    ray = _ray()
    # a corpus of fewer blocks than actors leaves actors idle: true, and nothing to act on
    warnings.filterwarnings("ignore", message="The minimum number of concurrent actors",
                            category=UserWarning)
    for name in ("ray", "ray.data"):  # Ray's progress lines; its warnings and errors stay
        logging.getLogger(name).setLevel(logging.WARNING)
    if address not in (LOCAL, "auto"):
        _check_reachable(address)
    started = not ray.is_initialized()
    if not started and address not in (LOCAL, "auto"):
        raise InputError(f"--ray {address}: this process is connected to a Ray cluster already "
                         "(ray.init); use --ray auto for that one, or ray.shutdown() first")
    if started:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": False}
        if address == LOCAL:
            kwargs["num_cpus"] = cpus or os.cpu_count() or 1
        else:
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except ConnectionError as e:
            raise ServerUnreachable(f"--ray {address}: could not join the cluster ({e})") from None
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        with _ray_errors_logged(), _ray_data_errors_raised():
            yield ray
    finally:
        if started:
            ray.shutdown()


log = logging.getLogger("neartext.ray")


def _quiet(record: logging.LogRecord) -> bool:
    """Ray Data's records a command shows: warnings (an actor pool that cannot be scheduled),
    not the notice that its progress bars are off (neartext shows its own) and not its errors
    (each is raised to the caller, who reports it in one line)."""
    return (record.levelno < logging.ERROR
            and not record.getMessage().startswith("Progress bars disabled"))


@contextlib.contextmanager
def _ray_data_errors_raised() -> Iterator[None]:
    handlers = [h for name in ("ray", "ray.data") for h in logging.getLogger(name).handlers]
    for h in handlers:
        h.addFilter(_quiet)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(_quiet)


@contextlib.contextmanager
def _ray_errors_logged() -> Iterator[None]:
    """The cluster's error messages (a task retried, an actor restarted, each with a traceback)
    to the ``neartext.ray`` log rather than this process' stdout, which carries a command's
    output (``--json``): what failed for good reaches the caller as one error line. Ray prints
    them from a thread of the driver through ``ray._private.worker.print_to_stdstream``; if a
    Ray version has no such function, nothing changes."""
    try:
        worker = optional("ray._private.worker", "ray")
    except MissingExtra:
        yield
        return
    original = getattr(worker, "print_to_stdstream", None)
    if original is None:
        yield
        return

    def to_log(data: dict[str, Any], ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet":
            original(data, ignore_prefix)
            return
        for message in data.get("lines", []):
            first = next((ln for ln in str(message).splitlines() if ln.strip()), "")
            log.info("Ray: %s", first)
            log.debug("Ray: %s", message)

    setattr(worker, "print_to_stdstream", to_log)  # noqa: B010
    try:
        yield
    finally:
        setattr(worker, "print_to_stdstream", original)  # noqa: B010


_RAISED = re.compile(r"^([\w.]+): (.+)$")  # "module.Error: message" lines of a traceback


def failure(e: BaseException) -> str:
    """The line that says what failed in a task or actor, out of Ray's wrapped exception: the
    first exception a traceback in it names that is not Ray's own wrapper (a neartext error's
    message without its class name), else the last line."""
    texts: list[str] = []
    x: BaseException | None = e
    seen = 0
    while x is not None and seen < 10:  # Ray chains its wrappers through __cause__/__context__
        texts.append(str(x))
        x, seen = x.__cause__ or x.__context__, seen + 1
    lines = [ln.strip() for t in texts for ln in t.splitlines() if ln.strip()]
    for ln in lines:
        m = _RAISED.match(ln)
        if m and not m.group(1).startswith("ray.") and m.group(1)[0] != "[" and \
                m.group(1).split(".")[-1][0].isupper():
            name, message = m.groups()
            return (message if name.startswith("neartext.") else f"{name}: {message}")[:400]
    return (lines[-1] if lines else type(e).__name__)[:400]


class _Embedder:
    """A Ray actor's state: the model, loaded once per actor."""

    def __init__(self, settings: dict[str, Any]) -> None:
        os.environ["OMP_NUM_THREADS"] = "1"  # an actor is given one CPU (the model's ONNX twin)
        self.encoder = load_encoder(EncoderSettings(**settings), deferred=True)
        torch = sys.modules.get("torch")  # (loaded with a sentence-transformers model)
        if torch is not None:
            torch.set_num_threads(1)  # an actor is given one CPU

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.encoder.encode([str(t) for t in batch["text"]], kind="document")
        return {**{k: v for k, v in batch.items() if k not in ("text", "where")},
                "vector": vectors,
                # which model made them: every node must load the same one
                "fingerprint": np.full(len(vectors), self.encoder.fingerprint)}


def check_fingerprint(batch: dict[str, np.ndarray], expected: str, model: str) -> None:
    """One line when an actor's model is not the one expected (a node whose copy of ``model``
    differs): its vectors would not be comparable with the rest."""
    other = {str(f) for f in batch["fingerprint"]} - {expected}
    if other:
        raise InputError(f"model '{model}': an encoder actor loaded a different model there "
                         f"(fingerprint {sorted(other)[0][:12]} against {expected[:12]}); "
                         "every Ray node must hold the same copy")


@dataclass(frozen=True)
class RayCompute:
    """A collection's compute on Ray (set with ``Collection.compute``), inside a
    :func:`ray_session`: a corpus read by Ray tasks (:meth:`read`), new texts embedded by
    ``actors`` encoder actors, ``batch_size`` texts per call (:meth:`embed`); mining's cell
    self-joins as Ray tasks (:meth:`join_cells`)."""

    actors: int = 2
    batch_size: int = 256
    gpus_per_actor: float = 0.0
    # the corpus as Ray's tasks read it (:meth:`read`): its new texts are embedded from there
    rows: Any = None

    def read(self, path: str | Path, text: Sequence[str] | None, id_column: str | None, *,
             encoding: str = "utf-8", cleaning: CleaningOptions | None = None,
             part: Sequence[tuple[int, Path]] | None = None
             ) -> tuple[list[Record], RayCompute]:
        """The corpus (or a ``part`` of its files) read by Ray tasks (:func:`read_on_ray`,
        texts normalized as ``cleaning`` says), as records in the corpus' order (the order
        reading in one process gives), and this compute with the rows kept on the cluster, so
        that :meth:`embed` sends the actors the texts from there rather than from here."""

        ds, _ = read_on_ray(path, list(text) if text else None, id_column, encoding=encoding,
                            normalize=cleaning, records=True, part=part)
        keyed: list[tuple[int, int, Record]] = []
        columns = ["id", "text", "metadata", "file", "row", "source"]
        for b in ds.select_columns(columns).iter_batches(batch_format="numpy",
                                                         batch_size=8192):
            for i, t, m, f, r, s in zip(*(b[c].tolist() for c in columns)):
                keyed.append((f, r, Record(i, t, pickle.loads(m), r, source=s)))
        keyed.sort(key=lambda k: (k[0], k[1]))
        return [k[2] for k in keyed], replace(self, rows=ds)

    def embed(self, texts: dict[str, str], order: Sequence[str], settings: EncoderSettings,
              fingerprint: str, *, rows: bool = False
              ) -> Generator[tuple[list[str], np.ndarray], None, None]:
        """``(hashes, vectors)`` of ``texts`` (content hash to text, in ``order``) as the
        encoder actors finish them. With ``rows`` (each text is a whole row of the corpus
        :meth:`read` kept on the cluster), the actors take them from there: this process sends
        only the hashes wanted; else the texts go from here. Each hash once; a batch of
        another model is one error (:func:`check_fingerprint`)."""
        if not (rows and self.rows is not None):
            stream = embed_stream([texts[h] for h in order], settings, actors=self.actors,
                                  batch_size=self.batch_size,
                                  gpus_per_actor=self.gpus_per_actor, fingerprint=fingerprint)
            with contextlib.closing(stream):
                for found, vecs in stream:
                    yield [order[int(r)] for r in found], vecs
            return
        ray = _ray()
        try:
            wanted = self.rows.select_columns(["hash", "text"]).map_batches(
                _rows_wanted, fn_kwargs={"wanted": ray.put(np.array(list(order)))},
                batch_format="numpy").materialize()  # before the actors take the CPUs
        except Exception as e:  # Ray wraps what failed in the tasks
            raise InputError(f"a Ray task failed: {failure(e)}") from None
        seen: set[str] = set()
        batches = embed_rows_on_ray(wanted, settings, actors=self.actors,
                                    batch_size=self.batch_size,
                                    gpus_per_actor=self.gpus_per_actor)
        with contextlib.closing(batches):
            for b in batches:
                check_fingerprint(b, fingerprint, settings.model)
                keep = []  # each hash once: rows of the same text all pass the filter
                for j, h in enumerate(b["hash"].tolist()):
                    if h in texts and h not in seen:
                        seen.add(h)
                        keep.append(j)
                if keep:
                    yield [str(b["hash"][j]) for j in keep], \
                        np.asarray(b["vector"][keep], dtype=np.float32)

    def join_cells(self, v: np.ndarray, plan: CellPlan, threshold: float, top_k: int,
                   progress: bool = False) -> Triples:
        """:func:`neartext.algo.mining.join_cells` over every cell of ``plan``, the cells split into
        tasks of about equal work: the same pairs as the loop in one process."""
        return join_cells_on_ray(v, plan, threshold, top_k, progress=progress)


TASKS_PER_CPU = 4  # more tasks than CPUs: a slow or retried task holds up less of the join


def _cell_chunks(plan: CellPlan, chunks: int) -> list[np.ndarray]:
    """The cells split into at most ``chunks`` runs of about equal work (members x candidates
    is a cell's matrix product; members alone is a good enough proxy)."""
    sizes = plan.sizes().astype(np.float64)
    cum = np.cumsum(sizes)
    total = float(cum[-1]) if len(cum) else 0.0
    if total == 0:
        return []
    edges = np.searchsorted(cum, np.linspace(0, total, chunks + 1)[1:-1], side="right")
    return [c for c in np.split(np.arange(plan.nlist), edges) if len(c)]


def join_cells_on_ray(v: np.ndarray, plan: CellPlan, threshold: float, top_k: int, *,
                      progress: bool = False) -> Triples:
    """Mining's cell self-joins as Ray tasks (1 CPU each) of the current Ray session; the
    vectors and the plan are put in Ray's object store once and shared by every task."""

    ray = _ray()
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    task = ray.remote(num_cpus=1, max_retries=3)(join_cells)
    v_ref, plan_ref = ray.put(np.ascontiguousarray(v, dtype=np.float32)), ray.put(plan)
    chunks = _cell_chunks(plan, cpus * TASKS_PER_CPU)
    work = {task.remote(v_ref, plan_ref, cells, threshold, top_k):
            int(plan.sizes()[cells].sum()) for cells in chunks}
    parts: list[Triples] = []
    pending = list(work)
    with progress_bar(len(v), "mining (approx, Ray)", "text", enabled=progress) as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                parts.append(ray.get(done[0]))
            except Exception as e:  # Ray wraps what failed in the task
                raise InputError(f"a mining task failed on Ray: {failure(e)}") from None
            bar.update(work[done[0]])
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]))


def embed_stream(texts: Sequence[str], settings: EncoderSettings, *, actors: int = 2,
                 batch_size: int = 256, gpus_per_actor: float = 0.0,
                 fingerprint: str | None = None
                 ) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
    """``(rows, vectors)`` of ``texts`` as Ray's encoder actors finish them (rows index
    ``texts``): the caller keeps each batch as it comes (a killed job keeps what was done).
    A model the workers cannot load, or load as another model than ``settings`` gives here
    (``fingerprint``), is named in one line."""
    ray = _ray()  # with ray.data imported
    # longest first, as one process' encoder does: each actor's batch pads little
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    ds = ray.data.from_items([{"row": i, "text": texts[i]} for i in order])
    mapped = ds.map_batches(
        _Embedder, fn_constructor_kwargs={"settings": settings.to_dict()},
        batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1, num_gpus=gpus_per_actor or None, batch_format="numpy")
    try:
        for batch in mapped.iter_batches(batch_format="numpy", batch_size=batch_size):
            if fingerprint is not None:
                check_fingerprint(batch, fingerprint, settings.model)
            yield (np.asarray(batch["row"], dtype=np.int64),
                   np.asarray(batch["vector"], dtype=np.float32))
    except InputError:
        raise
    except Exception as e:  # Ray wraps what failed in the actors
        raise InputError(f"the encoder actors failed: {failure(e)}") from None


def embed_on_ray(texts: Sequence[str], settings: EncoderSettings, *, actors: int = 2,
                 batch_size: int = 256, gpus_per_actor: float = 0.0) -> np.ndarray:
    """Vectors of ``texts`` (in order) embedded by ``actors`` encoder actors of the current
    Ray session (:func:`ray_session`), ``batch_size`` texts per call."""
    out: np.ndarray | None = None
    for rows, vecs in embed_stream(texts, settings, actors=actors, batch_size=batch_size,
                                   gpus_per_actor=gpus_per_actor):
        if out is None:
            out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
        out[rows] = vecs
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def _read_rows(item: dict[str, Any], text: list[str] | None, id_column: str | None,
               encoding: str, normalize: dict[str, Any] | None, records: bool
               ) -> list[dict[str, Any]]:
    """A Ray task: one corpus file read by neartext's own reader (the same checks and the same
    row-numbered errors as without Ray), as rows to embed: texts normalized as ``normalize``
    (:class:`neartext.data.cleaning.CleaningOptions`) says; with ``records``, what a
    :class:`neartext.data.corpus.Record` needs too (its metadata, file and row)."""

    rows = read_corpus(item["path"], text, id_column, encoding=encoding)
    if normalize:
        options = CleaningOptions(**normalize)
        for r in rows:
            r.text = normalized(r.text, options)
    # longest first, as one process' encoder orders its batches: a batch pads to its longest
    rows.sort(key=lambda r: -len(r.text))
    source = item["source"]
    out = [{"id": r.id, "text": r.text, "hash": text_hash(r.text), "length": len(r.text),
            "where": f"{source}:{r.row}" if source else str(r.row)} for r in rows]
    if records:
        for o, r in zip(out, rows):
            o.update(file=item["file"], row=r.row, source=source,
                     metadata=pickle.dumps(r.metadata))
    return out


def _rows_wanted(batch: dict[str, np.ndarray], wanted: Any) -> dict[str, np.ndarray]:
    """A Ray task: the rows of ``batch`` whose hash is ``wanted`` (an array, or its object
    reference)."""
    if not isinstance(wanted, np.ndarray):
        wanted = _ray().get(wanted)
    keep = np.isin(batch["hash"], wanted)
    return {k: v[keep] for k, v in batch.items()}


ROWS_PER_BLOCK = 512  # rows of a block the actors share out (a few batches: an even share)


def read_on_ray(path: str | Path, text: list[str] | None = None, id_column: str | None = None,
                *, encoding: str = "utf-8", rows_per_block: int = ROWS_PER_BLOCK,
                normalize: CleaningOptions | None = None, records: bool = False,
                part: Sequence[tuple[int, Path]] | None = None) -> tuple[Any, int]:
    """A corpus file or directory read by Ray tasks, a file per task (its rows longest text
    first), split into blocks of ``rows_per_block`` rows held in Ray's object store (not this
    process' memory): ``(dataset, rows)``. Every node must see the files at the same path. A
    bad row, or an id given twice across files, is one error naming the file and row, before
    any embedding. ``normalize`` and ``records``: see :func:`_read_rows`. ``part``: only these
    files of the directory (with their positions in it), a part of a corpus read in parts;
    ids are then checked within the part (the caller checks them across parts)."""

    ray = _ray()
    p = Path(path)
    if not p.exists():
        raise CorpusFileNotFound(f"{p}: no such file")
    files = part if part is not None else list(enumerate(corpus_files(p) if p.is_dir()
                                                         else [p]))
    items = [{"path": str(f.resolve()), "file": n,
              "source": f.relative_to(p).as_posix() if p.is_dir() else ""}
             for n, f in files]
    shaping = None
    if normalize is not None and normalize.enabled and normalize.normalizes:
        shaping = asdict(normalize)
    ds = ray.data.from_items(items, override_num_blocks=len(items)).flat_map(
        _read_rows, fn_kwargs={"text": text, "id_column": id_column, "encoding": encoding,
                               "normalize": shaping, "records": records}
    ).repartition(target_num_rows_per_block=rows_per_block)
    try:
        ds = ds.materialize()
        rows = ds.count()
        if id_column and p.is_dir():
            _check_ids_across_files(p, ds)
    except InputError:
        raise
    except Exception as e:  # Ray wraps what failed in a reading task
        raise InputError(failure(e)) from None
    return ds, rows


def _check_ids_across_files(directory: Path, ds: Any) -> None:

    batches = ds.select_columns(["id", "where"]).iter_batches(batch_format="numpy",
                                                             batch_size=65536)
    check_unique_ids(directory, ((i, w) for b in batches
                                 for i, w in zip(b["id"].tolist(), b["where"].tolist())))


def embed_rows_on_ray(ds: Any, settings: EncoderSettings, *, actors: int = 2,
                      batch_size: int = 256, gpus_per_actor: float = 0.0
                      ) -> Generator[dict[str, np.ndarray], None, None]:
    """Batches of ``ds`` (rows of :func:`read_on_ray`, materialized: no task runs beside the
    actors, which hold the CPUs) with a ``vector`` column, embedded by encoder actors, yielded
    as they finish; the texts themselves stay on the cluster."""
    ray = _ray()
    try:
        mapped = ds.map_batches(
            _Embedder, fn_constructor_kwargs={"settings": settings.to_dict()},
            batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=1, num_gpus=gpus_per_actor or None, batch_format="numpy")
        yield from mapped.iter_batches(batch_format="numpy", batch_size=batch_size)
    except Exception as e:  # Ray wraps what failed in the actors
        raise InputError(f"the encoder actors failed: {failure(e)}") from None
