"""A collection as an MLflow pyfunc model: its encoder and its stored vectors and documents.

The corpus is never re-encoded: loading opens the copied collection, and ``predict`` encodes only
the queries. Input: ``{"query": str}``, ``{"queries": [str, ...]}``, a pandas DataFrame with exactly
one column, a list of strings or one string. Parameters (declared in the signature, with defaults):
``top_k`` (10), ``similarity_threshold`` (0.5), ``mode`` (``search`` or ``paraphrases``). Output: a
DataFrame with one row per result: ``query, rank, id, score, text, metadata`` (JSON).

Example::

    export_mlflow("feedback/", "feedback_model")             # or log=True: the tracking store
    model = mlflow.pyfunc.load_model("feedback_model")
    model.predict({"query": "refund"}, params={"top_k": 3})
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..atomic import staged_dir
from ..errors import InputError, MissingExtra
from ..results import MlflowExport
from ..searching import SearchOptions
from ..tables import check_output_dir
from ..validate import check_text

PARAMS = {"top_k": 10, "similarity_threshold": 0.5, "mode": "search"}
MODES = ("search", "paraphrases")
COLUMNS = ["query", "rank", "id", "score", "text", "metadata"]


def queries_of(model_input: Any) -> list[str]:
    """The query texts in any accepted input shape; a clear ``InputError`` otherwise."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - MLflow brings pandas
        pd = None
    if pd is not None and isinstance(model_input, pd.DataFrame):
        if model_input.shape[1] != 1:
            raise InputError(f"a DataFrame input needs exactly one column of query texts; got "
                             f"{model_input.shape[1]}: {', '.join(map(str, model_input.columns))}")
        values = model_input.iloc[:, 0].tolist()
    elif isinstance(model_input, dict):
        # MLflow's scoring server hands JSON values over as numpy arrays
        plain = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in model_input.items()}
        if "query" in plain:
            q = plain["query"]
            values = q if isinstance(q, list) else [q]
        elif "queries" in plain:
            values = plain["queries"]
            if not isinstance(values, list):
                raise InputError("'queries' must be a list of strings")
        else:
            raise InputError(f"a dict input needs 'query' or 'queries'; got keys: "
                             f"{', '.join(map(str, model_input)) or 'none'}")
    elif isinstance(model_input, str):
        values = [model_input]
    elif isinstance(model_input, list) or hasattr(model_input, "tolist"):
        values = model_input if isinstance(model_input, list) else model_input.tolist()
        values = values if isinstance(values, list) else [values]
    else:
        raise InputError(f"unsupported input type {type(model_input).__name__}: give a dict with "
                         "'query' or 'queries', a one-column DataFrame or a list of strings")
    bad = [v for v in values if not isinstance(v, str) or not v.strip()]
    if bad or not values:
        raise InputError(f"queries must be non-empty strings; got {bad[:3] if bad else 'none'}")
    for i, v in enumerate(values):
        check_text(v, f"query {i + 1}")
    return [str(v) for v in values]


def check_params(params: dict[str, Any] | None) -> dict[str, Any]:
    p = {**PARAMS, **(params or {})}
    unknown = set(p) - set(PARAMS)
    if unknown:
        raise InputError(f"unknown parameters: {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(PARAMS)}")
    if p["mode"] not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}; got {p['mode']!r}")
    try:
        p["options"] = SearchOptions(k=int(p["top_k"]),
                                     threshold=float(p["similarity_threshold"]))
    except (InputError, TypeError, ValueError) as e:
        raise InputError(f"{e} (parameters top_k and similarity_threshold)") from None
    return p


try:
    import mlflow.pyfunc

    _Base: Any = mlflow.pyfunc.PythonModel
except ImportError:  # the class is still importable for its helpers
    _Base = object


class NeartextModel(_Base):  # type: ignore[misc]
    """The pyfunc model; see the module docs."""

    def load_context(self, context):  # type: ignore[no-untyped-def]
        from ..collection import Collection
        from ..encoders import load_encoder

        col = Collection.open(Path(context.artifacts["collection"]))
        # the model's files travel as an artifact: load them from there
        col.use_encoder(load_encoder(col.manifest.encoder_settings(context.artifacts.get("model"))))
        self.collection = col

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        # no type hints: MLflow would treat them as an input schema
        import pandas as pd

        from ..analysis import paraphrases

        queries = queries_of(model_input)
        p = check_params(params)
        opts = p["options"]
        k, t = opts.k, opts.threshold
        rows = []
        if p["mode"] == "search":
            results = self.collection.search_many(queries, options=opts)
        else:
            results = [paraphrases(self.collection, q, t, top_k=k)[0] for q in queries]
        for q, hits in zip(queries, results):
            for rank, h in enumerate(hits, 1):
                rows.append({"query": q, "rank": rank, "id": h.id, "score": float(h.score),
                             "text": h.text, "metadata": json.dumps(h.metadata, ensure_ascii=False)})
        if not rows:
            warnings.warn(f"no result scored {t} or more for {len(queries)} quer"
                          f"{'y' if len(queries) == 1 else 'ies'}; lower similarity_threshold",
                          stacklevel=2)
        return pd.DataFrame(rows, columns=COLUMNS)


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """MLflow's advice about type hints and input examples does not apply to this model (its
    input is free-form on purpose and validated in ``predict``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(type hint|input example|input_example).*")
        yield


def export_mlflow(collection: str | Path, output: str | Path | None = None, *, log: bool = False,
                  force: bool = False) -> MlflowExport:
    """Save the collection as an MLflow model in ``output`` (atomically), or log it to the
    tracking store (``log=True``; ``MLFLOW_TRACKING_URI``, else MLflow's default)."""
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        import mlflow
        from mlflow.models import ModelSignature
        from mlflow.types.schema import ParamSchema, ParamSpec
    except ImportError:
        raise MissingExtra("mlflow", "mlflow") from None
    from .. import __version__
    from ..address import parse_address
    from ..collection import Collection
    from ..encoders import backend_of, resolve_model_path
    from ..store.factory import kind_of

    address = parse_address(collection)
    out = Path(output) if output else None
    if out is None and not log:
        raise InputError("give -o DIR to save the model, or --log to log it to MLflow")
    if out is not None:
        check_output_dir(out, force)
    with Collection.open(address) as col:
        name = col.manifest.model.name
        documents = len(col)
    signature = ModelSignature(inputs=None, params=ParamSchema(
        [ParamSpec("top_k", "long", PARAMS["top_k"]),
         ParamSpec("similarity_threshold", "double", PARAMS["similarity_threshold"]),
         ParamSpec("mode", "string", PARAMS["mode"])]))
    code = str(Path(__file__).with_name("mlflow_entry.py"))
    with tempfile.TemporaryDirectory(prefix="neartext-mlflow-") as tmp:
        # a consistent local copy (from Milvus: the same vectors, nothing re-embedded)
        artifacts = {"collection": str(kind_of(address).copy_to_directory(address, Path(tmp)))}
        if backend_of(name) == "sbert":
            artifacts["model"] = str(resolve_model_path(name))
        kw = {"python_model": code, "artifacts": artifacts, "signature": signature,
              "pip_requirements": [f"neartext=={__version__}"]}
        if log:
            with mlflow.start_run() as run, _quiet_mlflow():
                info = mlflow.pyfunc.log_model(name="neartext", **kw)
            return MlflowExport(documents, name, logged=True, run_id=run.info.run_id,
                                model_uri=info.model_uri)
        assert out is not None
        with staged_dir(out, make=False) as staged, _quiet_mlflow():
            mlflow.pyfunc.save_model(str(staged), **kw)
    return MlflowExport(documents, name, output=str(out))
