"""A collection as a self-contained MLflow pyfunc model: neartext's code, the encoder's files and
the stored vectors and documents, with pinned requirements from the package registry.

The corpus is never re-encoded: loading opens the copied collection, and ``predict`` encodes only
the queries, through the model's ONNX twin when it travels in the model (``onnx`` artifact,
sentence-transformers models: made at export when this machine has none; the served model then
starts without importing torch), else the model itself. The model carries neartext itself
(MLflow's ``code_paths``: ``code/neartext``), so ``mlflow models serve -m MODEL`` builds its
environment from the model alone (``--env-manager virtualenv`` or ``uv``, or ``local`` where
neartext is installed).

Input: query texts in any form a caller sends (``INPUT_FORMS``): a list of strings (MLflow's
``{"inputs": ["..."]}``), ``{"query": "..."}`` (the seed's form) or a list under that key, a
DataFrame of one column of any name (``dataframe_split``, ``dataframe_records``). MLflow's
signature cannot say "one of these", so it declares the parameters and no input schema (with one,
MLflow refuses every form but one before ``predict`` sees it); the accepted forms are in the
model's metadata (``neartext_input``) and its input example is the list form.
Parameters (declared in the signature, with these defaults):

- ``top_k`` (10);
- ``mode``: ``search`` (the best documents, a query that is itself in the corpus comes back
  first) or ``paraphrases`` (other texts meaning the same: the query and its exact copies left
  out); the default is chosen at export (``--mode``);
- ``ranking`` (search mode): ``tuned`` (the collection's promoted version ranks as it was tuned:
  its adapter and its semantic, keyword or hybrid settings, as ``neartext search`` without
  ``--mode``), or ``semantic``, ``keyword``, ``hybrid``;
- ``similarity_threshold``: a cosine cut; the default, -1, cuts nothing in search (every cosine
  is at least -1) and means the collection's threshold (calibrated, else 0.75) for paraphrases,
  as the CLI without ``--threshold``. A threshold with ``ranking`` ``tuned`` ranks semantically
  (it is a cosine); with ``keyword`` or ``hybrid`` it is refused.

An unknown parameter is refused (MLflow itself would drop it with a log line). Output: a
DataFrame with one row per result: ``query, rank, id, score, text, metadata`` (an object).

Example::

    export_mlflow("feedback/", "feedback_model", mode="paraphrases")
    model = mlflow.pyfunc.load_model("feedback_model")
    model.predict(["I was charged twice"], params={"top_k": 3})
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # none in our output

import mlflow
import mlflow.pyfunc
import pandas as pd  # predict's return type: MLflow reads the hints at run time
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from packaging.requirements import Requirement
from packaging.version import Version

from neartext.collection import Collection
from neartext.data.address import parse_address
from neartext.data.ranking import SearchOptions
from neartext.data.results import MlflowExport
from neartext.encoders import backend_of, load_encoder, resolve_model_path
from neartext.encoders.registry import RUNTIME_PACKAGES, with_export
from neartext.encoders.twin import made_twin
from neartext.engine.analysis import paraphrases, resolve_threshold
from neartext.engine.records import VERSION_FILES
from neartext.errors import InputError, MissingExtra
from neartext.export.query_encoder import needs_twin, prepare_model_twin
from neartext.store.factory import kind_of
from neartext.util.atomic import staged_dir
from neartext.util.tables import check_output_dir
from neartext.util.validate import check_text

if TYPE_CHECKING:
    from neartext.collection import Collection

Mode = Literal["search", "paraphrases"]
MODES: tuple[Mode, ...] = ("search", "paraphrases")
RankingName = Literal["tuned", "semantic", "keyword", "chars", "hybrid"]  # the "ranking" parameter
RANKINGS: tuple[RankingName, ...] = ("tuned", "semantic", "keyword", "chars", "hybrid")
NO_THRESHOLD = -1.0  # every cosine is at least -1: the default cuts nothing
PARAMS: dict[str, Any] = {"top_k": 10, "similarity_threshold": NO_THRESHOLD, "mode": "search",
                          "ranking": "tuned"}
COLUMNS = ["query", "rank", "id", "score", "text", "metadata"]


INPUT_FORMS = ('query texts: a list of strings, {"query": TEXT or [TEXTS]}, or a DataFrame of one '
               'column (any name); over HTTP "inputs", "instances", "dataframe_split" or '
               '"dataframe_records"')


def _texts(values: Any) -> list[Any]:
    """A flat list of the values of a string, a list, an array or a Series (MLflow's HTTP
    parser gives numpy arrays, 0-d for a single string)."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    return values if isinstance(values, list) else [values]


def queries_of(model_input: Any) -> list[str]:
    """The query texts of any form a caller of the seed or of MLflow sends (``INPUT_FORMS``);
    ``InputError`` naming the form otherwise.

    >>> queries_of({"query": "I was charged twice"}), queries_of(["a", "b"])
    (['I was charged twice'], ['a', 'b'])
    """
    if isinstance(model_input, pd.DataFrame):
        if model_input.shape[1] != 1:
            raise InputError(f"a DataFrame input needs exactly one column of query texts; got "
                             f"{model_input.shape[1]}: {', '.join(map(str, model_input.columns))}")
        values = model_input.iloc[:, 0].tolist()
    elif isinstance(model_input, dict):
        if len(model_input) != 1:
            keys = ", ".join(map(str, model_input)) or "none"
            raise InputError(f"a dict input needs exactly one key of query texts, e.g. "
                             f"{{\"query\": \"...\"}}; got keys: {keys}")
        values = _texts(next(iter(model_input.values())))
    elif isinstance(model_input, str | list) or hasattr(model_input, "tolist"):
        values = _texts(model_input)
    else:
        raise InputError(f"unsupported input type {type(model_input).__name__}; give "
                         f"{INPUT_FORMS}")
    if not values:
        raise InputError("no queries: give a list of one or more query texts")
    for i, v in enumerate(values):
        if not isinstance(v, str) or not v.strip():
            raise InputError(f"query {i + 1}: a query must be a non-empty string; got {v!r}"[:200])
        check_text(v, f"query {i + 1}")
    return [str(v) for v in values]


@dataclass(frozen=True)
class Request:
    """What a caller asked for: the mode, ``k``, the cosine threshold (None: the default) and
    the ranking (``tuned``: the promoted version's)."""

    mode: Mode
    k: int
    threshold: float | None
    ranking: RankingName

    def options(self, col: Collection) -> SearchOptions:
        """The search options on ``col`` (its tuned ranking unless another is named)."""
        try:
            return col.search_options(self.k, self.threshold,
                                      None if self.ranking == "tuned" else self.ranking)
        except InputError as e:
            raise InputError(f"{e} (parameters similarity_threshold and ranking)") from None


def check_params(params: dict[str, Any] | None) -> Request:
    """The request of ``params`` (defaults filled in), checked; ``InputError`` otherwise.

    >>> check_params({"top_k": 3}).k, check_params(None).threshold
    (3, None)
    """
    p = {**PARAMS, **{k: v for k, v in (params or {}).items() if v is not None}}
    unknown = set(p) - set(PARAMS)
    if unknown:
        raise InputError(f"unknown parameter{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(sorted(unknown))}; known: {', '.join(PARAMS)}")
    mode, ranking = p["mode"], p["ranking"]
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    if ranking not in RANKINGS:
        raise InputError(f"ranking must be one of {', '.join(RANKINGS)}; got {ranking!r}")
    try:
        k, threshold = int(p["top_k"]), float(p["similarity_threshold"])
        SearchOptions(k=k, threshold=None if threshold <= NO_THRESHOLD else threshold)
    except (InputError, TypeError, ValueError) as e:
        raise InputError(f"{e} (parameters top_k and similarity_threshold)") from None
    return Request(mode, k, None if threshold <= NO_THRESHOLD else threshold, ranking)


class _RefuseUnknownParams(logging.Filter):
    """MLflow drops parameters its signature does not declare, with only a log line on the
    server (``mlflow.models.utils._enforce_params_schema``), so a misspelt ``threshold`` would
    silently give the default's results. This filter turns that log line, for this model's
    parameter set only, into the error the caller sees (raised inside MLflow's check, before
    ``predict``: a 400 with the message over HTTP)."""

    PATTERN = re.compile(r"Unrecognized params \[(?P<given>[^\]]*)\].*?Supported params are: "
                         r"\{(?P<known>[^}]*)\}", re.S)

    def filter(self, record: logging.LogRecord) -> bool:
        m = self.PATTERN.search(record.getMessage())
        if m is None:
            return True
        known = set(re.findall(r"'([^']*)'", m["known"]))
        if known != set(PARAMS):  # another model's parameters: MLflow's own behaviour
            return True
        given = re.findall(r"'([^']*)'", m["given"])
        raise MlflowException.invalid_parameter_value(
            f"unknown parameter{'s' if len(given) > 1 else ''} {', '.join(sorted(given))}; "
            f"known: {', '.join(PARAMS)}")


def _install_param_check() -> None:
    log = logging.getLogger("mlflow.models.utils")
    if not any(isinstance(f, _RefuseUnknownParams) for f in log.filters):
        log.addFilter(_RefuseUnknownParams())


class NeartextModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """The pyfunc model; see the module docs."""

    def load_context(self, context: Any) -> None:

        col = Collection.open(Path(context.artifacts["collection"]))
        # the model's files travel as an artifact: load them from there, and only when needed
        # if its ONNX twin travels too (texts go through onnxruntime; torch is not imported)
        settings = col.manifest.encoder_settings(context.artifacts.get("model"))
        onnx = context.artifacts.get("onnx")
        fast = onnx and with_export(settings, col.manifest.model.fingerprint, Path(onnx))
        col.use_encoder(fast or load_encoder(settings))
        self.collection = col
        _install_param_check()

    # model_input: a DataFrame as MLflow passes it after the signature (queries_of takes the
    # other forms too); the hint is one MLflow's type-hint validation leaves alone (with Any it
    # warned at every import of this module, in red)
    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        """One row per result (see the module docs); neartext's message as MLflow's error."""
        try:
            return self._predict(model_input, params)
        except InputError as e:
            raise MlflowException.invalid_parameter_value(str(e)) from None

    def _predict(self, model_input: Any, params: dict[str, Any] | None) -> pd.DataFrame:

        queries = queries_of(model_input)
        request = check_params(params)
        col = self.collection
        if request.mode == "search":
            results = col.search_many(queries, options=request.options(col))
            cut = request.threshold
        else:
            cut = resolve_threshold(col, request.threshold, "paraphrases")
            results = [paraphrases(col, q, cut, top_k=request.k)[0] for q in queries]
        rows = [{"query": q, "rank": rank, "id": h.id, "score": float(h.score), "text": h.text,
                 "metadata": dict(h.metadata)}
                for q, hits in zip(queries, results) for rank, h in enumerate(hits, 1)]
        if not rows:
            asked = f"{len(queries)} quer{'y' if len(queries) == 1 else 'ies'}"
            warnings.warn(f"no result for {asked}" if cut is None else
                          f"no result scored {cut} or more for {asked}; lower "
                          "similarity_threshold", stacklevel=3)
        return pd.DataFrame(rows, columns=COLUMNS)


def pip_requirements(backend: str, onnx: bool = False) -> list[str]:
    """Pinned requirements (this environment's versions, public part) for serving a model of
    ``backend``: neartext's own dependencies and the backend's run-time packages (``onnx``:
    also onnxruntime's, for the model's ONNX twin); neartext itself travels in the model.
    MLflow adds its own pin.

    >>> any(r.startswith("numpy==") for r in pip_requirements("sbert"))
    True
    """


    try:
        core = [Requirement(r) for r in requires("neartext") or []]
    except PackageNotFoundError:
        raise InputError("neartext is not installed as a package (pip install -e .), so its "
                         "requirements are unknown") from None
    names = [r.name for r in core if r.marker is None]
    names += [*RUNTIME_PACKAGES.get(backend, ()), *(RUNTIME_PACKAGES["onnx"] if onnx else ()),
              "pandas"]
    pins = []
    for name in dict.fromkeys(names):
        try:
            pins.append(f"{name}=={Version(version(name)).public}")
        except PackageNotFoundError:
            raise MissingExtra(f"{name} (needed to serve a {backend} model)", "mlflow") from None
    return pins


@contextlib.contextmanager
def _saving() -> Iterator[None]:
    """Quiet while MLflow saves: its note that a DataFrame output has no inferred schema, and
    the example's empty answer (MLflow runs the input example through ``predict``), are not the
    user's concern."""
    log = logging.getLogger("mlflow.models.signature")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="no result scored")
            yield
    finally:
        log.setLevel(level)


def _twin(col: Collection) -> Path | None:
    """The ONNX twin of the collection's model (:mod:`neartext.encoders.twin`), made now if this
    machine has none yet (the model loads once), or None when the model cannot have one."""
    fingerprint = col.manifest.model.fingerprint
    if needs_twin(fingerprint):
        prepare_model_twin(load_encoder(col.manifest.encoder_settings()))
    return made_twin(fingerprint)


def export_mlflow(collection: str | Path, output: str | Path | None = None, *, log: bool = False,
                  force: bool = False, mode: Mode = "search") -> MlflowExport:
    """Save the collection as an MLflow model in ``output`` (atomically), or log it to the
    tracking store (``log=True``; ``MLFLOW_TRACKING_URI``, else MLflow's default). ``mode`` is
    the model's default mode (``search`` or ``paraphrases``)."""
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    address = parse_address(collection)
    out = Path(output) if output else None
    if out is None and not log:
        raise InputError("give -o DIR to save the model, or --log to log it to MLflow")
    if out is not None:
        check_output_dir(out, force)
    with Collection.open(address) as col:
        name = col.manifest.model.name
        documents = len(col)
        example = next(col.store.iter_texts(batch_size=1), None)
        backend = backend_of(name)
        twin = _twin(col) if backend == "sbert" else None
    requirements = pip_requirements(backend, onnx=twin is not None)
    # an example query: the start of a stored text; the params give the signature its defaults
    query = (example or "")[:80].strip() or "an example query"
    params = {**PARAMS, "mode": mode}
    package = str(Path(__file__).resolve().parents[1])
    code = str(Path(__file__).with_name("mlflow_entry.py"))
    with tempfile.TemporaryDirectory(prefix="neartext-mlflow-") as tmp:
        # a consistent local copy (from Milvus: the same vectors, nothing re-embedded)
        copied = kind_of(address).copy_to_directory(address, Path(tmp))
        for folder in VERSION_FILES:  # the versions' adapters and rankers travel with it
            if (address.state_dir() / folder).is_dir() and not (copied / folder).exists():
                shutil.copytree(address.state_dir() / folder, copied / folder)
        artifacts = {"collection": str(copied)}
        if backend != "use":  # use-multilingual's files come with its package
            artifacts["model"] = str(resolve_model_path(name))
        if twin is not None:  # the served model starts without torch
            artifacts["onnx"] = str(twin)
        kw: dict[str, Any] = {
            "python_model": code, "artifacts": artifacts, "code_paths": [package],
            "pip_requirements": requirements, "input_example": ([query], params),
            "signature": infer_signature(params=params),  # parameters, no input schema
            "metadata": {"neartext_documents": documents, "neartext_model": name,
                         "neartext_input": INPUT_FORMS,
                         "neartext_encodes_with": "onnx" if twin else backend,
                         "neartext_default_mode": mode}}
        if log:
            with mlflow.start_run() as run, _saving():
                info = mlflow.pyfunc.log_model(name="neartext", **kw)
            return MlflowExport(documents, name, logged=True, run_id=run.info.run_id,
                                model_uri=info.model_uri, mode=mode)
        assert out is not None
        with staged_dir(out, make=False) as staged, _saving():
            mlflow.pyfunc.save_model(str(staged), **kw)
    return MlflowExport(documents, name, output=str(out), mode=mode)
