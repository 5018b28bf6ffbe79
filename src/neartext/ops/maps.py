"""A 2-D map of a collection: UMAP (cosine) over the stored vectors, drawn as PNG or offline HTML.

The projection is cached in the collection (``cache/projection-*.npz``, keyed by the collection's
write generation, the sample and the seed), so redrawing or recolouring is instant and a write
makes the next map recompute. A query is placed on the map at the similarity-weighted mean
position of its nearest documents (UMAP itself is not refitted).

Example:
    >>> from neartext import Collection
    >>> col = Collection.open("demo/feedback")                               # doctest: +SKIP
    >>> proj = project(col)                                                  # doctest: +SKIP
    >>> draw(col, proj, "map.png", color_by="cluster")                       # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import math
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neartext.engine.clustering import (
    DEFAULT_METHOD,
    check_cluster_args,
    check_method_options,
    cluster_vectors,
    describe,
    document_matrix,
)
from neartext.engine.records import vector_space
from neartext.errors import InputError
from neartext.util.atomic import staged_file
from neartext.util.optional import optional, pyplot
from neartext.util.progress import on_terminal

if TYPE_CHECKING:
    from neartext.collection import Collection

MAP_FORMATS = (".png", ".html")
NOISE_COLOUR = "#c8c8c8"
# 20 distinguishable colours (Tableau-like, written out here)
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
           "#f7b6d2", "#dbdb8d", "#9edae5", "#393b79"]


@dataclass
class Projection:
    """2-D positions of documents (``ids[i]`` at ``xy[i]``), and how they were made."""

    ids: list[str]
    xy: np.ndarray
    cached: bool
    seconds: float
    sample: int | None


def _cache_path(col: Collection, sample: int | None, seed: int) -> Path:
    gen = col.store.generation()

    key = json.dumps({"gen": gen, "fp": col.manifest.model.fingerprint, "sample": sample,
                      "seed": seed, "space": vector_space(col.manifest.adapter)}, sort_keys=True)
    return col.path / "cache" / f"projection-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


_computing: dict[Path, threading.Lock] = {}
_computing_lock = threading.Lock()


def project(col: Collection, *, sample: int | None = None, seed: int = 42,
            neighbours: int = 15, progress: bool = False) -> Projection:
    """UMAP of the collection's documents (or a random ``sample`` of them), cached. Threads
    asking for the same projection at once (the service's map requests) compute it once."""
    t0 = time.perf_counter()
    path = _cache_path(col, sample, seed)
    with _computing_lock:
        lock = _computing.setdefault(path, threading.Lock())
    with lock:
        try:
            cached = _cached(path, sample, t0)
            if cached is not None:
                return cached
            return _project(col, path, sample, seed, neighbours, progress, t0)
        finally:
            with _computing_lock:
                _computing.pop(path, None)


_UMAP_CACHED = threading.Lock()
_umap_cached = False  # umap's functions have their disk cache (once per process)
UMAP_MODULES = ("umap_", "utils", "layouts", "distances", "spectral")


def _umap() -> Any:
    """umap-learn, its numba functions kept compiled on disk once compiled on this machine.

    Most of them are compiled without numba's on-disk cache, so each process compiled them
    again: 14 of the 15 s of a map of the 247 demo documents (kNN 5.5 s, smoothing 5.1 s,
    membership 2.6 s, layout 1.3 s). With the cache (in umap's ``__pycache__``, or numba's
    user-wide cache where that is read-only) a later process's projection took 0.4 s, 2.5-3 s
    with the import of umap. A function that cannot be cached is left as it is."""
    global _umap_cached
    umap = optional("umap", "clusters", "umap-learn (for maps)")
    with _UMAP_CACHED:
        if not _umap_cached:
            for name in UMAP_MODULES:
                for fn in vars(getattr(umap, name, None) or object).values():
                    if hasattr(fn, "enable_caching") and hasattr(fn, "py_func"):
                        with contextlib.suppress(RuntimeError):  # no cache location
                            fn.enable_caching()
            _umap_cached = True
    return umap


def _cached(path: Path, sample: int | None, t0: float) -> Projection | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return Projection([str(x) for x in z["ids"]], z["xy"], True,
                              time.perf_counter() - t0, sample)
    except FileNotFoundError:
        return None


def _project(col: Collection, path: Path, sample: int | None, seed: int, neighbours: int,
             progress: bool, t0: float) -> Projection:

    ids, vectors = document_matrix(col)
    if len(ids) < 3:
        raise InputError(f"a map needs a collection of at least 3 documents (this one has {len(ids)})")
    if sample is not None:
        if sample < 3:
            raise InputError(f"--sample must be at least 3 (got {sample})")
        if sample < len(ids):
            keep = np.sort(np.random.default_rng(seed).choice(len(ids), sample, replace=False))
            ids, vectors = [ids[i] for i in keep], vectors[keep]
    umap = _umap()
    # UMAP's spectral start needs more points than dimensions + 1 (3 points failed with a
    # TypeError from scipy); so few points start from random positions
    reducer = umap.UMAP(n_components=2, metric="cosine", n_neighbors=min(neighbours, len(ids) - 1),
                        init="spectral" if len(ids) > 3 else "random",
                        min_dist=0.1, random_state=seed, n_jobs=1,
                        verbose=progress and on_terminal(),
                        low_memory=True)
    xy = np.asarray(reducer.fit_transform(vectors), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)  # a Milvus collection's state dir may be new
    with staged_file(path, ".npz") as tmp:
        np.savez(tmp, ids=np.array(ids), xy=xy)
    made = path.stat().st_mtime
    for old in path.parent.glob("projection-*.npz"):  # older generations are of no use
        with contextlib.suppress(FileNotFoundError):  # (another thread's clean-up)
            if old != path and old.stat().st_mtime < made - 1:
                old.unlink(missing_ok=True)
    return Projection(ids, xy, False, time.perf_counter() - t0, sample)


def place(col: Collection, proj: Projection, queries: list[str], k: int = 10) -> np.ndarray:
    """Map positions of ``queries``: the similarity-weighted mean of the positions of their
    ``k`` nearest documents that are on the map."""
    pos = {d: i for i, d in enumerate(proj.ids)}
    out = np.zeros((len(queries), 2), dtype=np.float32)
    for qi, hits in enumerate(col.search_many(queries, k=max(k, 1) * 3)):
        on_map = [(pos[h.id], max(h.score, 0.0)) for h in hits if h.id in pos][:k]
        if not on_map:
            out[qi] = proj.xy.mean(axis=0)
            continue
        rows, w = zip(*on_map)
        weights = np.array(w) + 1e-6
        out[qi] = (proj.xy[list(rows)] * weights[:, None]).sum(axis=0) / weights.sum()
    return out


def check_color_by(col: Collection, color_by: str | None, option: str = "--color-by") -> None:
    """``cluster``, a metadata field of the collection, or None; an :class:`InputError` listing
    the fields otherwise (asked before the projection is computed)."""
    if color_by is None or (color_by == "cluster" and option == "--color-by"):
        return
    known = col.store.metadata_fields()
    if color_by not in known:
        extra = " (or 'cluster')" if option == "--color-by" else ""
        raise InputError(f"unknown metadata column '{color_by}' for {option}; columns: "
                         f"{', '.join(sorted(known)) or 'none'}{extra}")


def map_clusters(col: Collection, proj: Projection, method: str, *,
                 threshold: float | None = None, k: int | None = None, min_size: int = 3,
                 seed: int = 42, central: int = 3, progress: bool = False) -> Any:
    """Clusters for colouring a map. ``kmeans`` and ``hdbscan`` cluster the map's own 2-D
    positions (BERTopic's recipe: reduce with UMAP, then cluster the reduced points), so each
    colour is one region of the map; clustering the full vectors and drawing them in 2-D makes
    colours interleave. ``community`` links texts by cosine similarity (a threshold on the
    vectors), so it stays on the vectors. K-means without ``k`` makes about sqrt(n/2) clusters
    (2 to 20), what a map can show in distinct colours."""

    n = len(proj.ids)
    k = map_k(n, method, k)
    if method == "community":
        return col.cluster(method, threshold=threshold, k=k, min_size=min_size, seed=seed,
                           central=central, progress=progress)
    t0 = time.perf_counter()
    assignment = cluster_vectors(proj.xy, method, k=k, min_size=min_size, seed=seed,
                                 spherical=False)
    ids, vectors = document_matrix(col)
    row = {d: i for i, d in enumerate(ids)}
    params = {"k": k, "seed": seed} if method == "kmeans" else {"min_size": min_size}
    return describe(col, proj.ids, vectors[[row[d] for d in proj.ids]], assignment, method,
                    {**params, "space": "map"}, central=central, started=t0)


def map_k(n: int, method: str, k: int | None) -> int | None:
    """K-means' clusters on a map of ``n`` points: ``k``, else about sqrt(n/2) (2 to 20)."""
    if method == "kmeans" and k is None:
        return max(2, min(20, round(math.sqrt(n / 2))))
    return k


def projected(col: Collection, *, color_by: str | None = None, sample: int | None = None,
              seed: int = 42, method: str = DEFAULT_METHOD, threshold: float | None = None,
              k: int | None = None, min_size: int = 3, progress: bool = False
              ) -> tuple[Projection, Any]:
    """The projection and, for ``color_by="cluster"``, the clusters to colour it: what the
    ``map`` command and the service's map view draw. Options are checked before the
    projection is computed (it takes a while)."""

    check_color_by(col, color_by)
    if k is not None and k < 2:
        raise InputError(f"k must be at least 2 (got {k})")
    if color_by == "cluster":
        check_method_options(method, threshold=threshold, k=k)
        n = len(col) if sample is None else min(sample, len(col))
        check_cluster_args(method, n, k=map_k(n, method, k),  # (k-means has no minimum size)
                           min_size=2 if method == "kmeans" else min_size,
                           threshold=0.0 if threshold is None else threshold)
    proj = project(col, sample=sample, seed=seed, progress=progress)
    clusters = (map_clusters(col, proj, method, threshold=threshold, k=k, min_size=min_size,
                             seed=seed, progress=progress) if color_by == "cluster" else None)
    return proj, clusters


def colour_groups(col: Collection, proj: Projection, color_by: str | None,
                  clusters: Any = None) -> tuple[list[str], dict[str, str]]:
    """A group name per point (cluster label or metadata value) and a colour per group; the
    20 largest groups get colours, the rest and noise are grey."""
    if color_by is None:
        return ["all"] * len(proj.ids), {"all": PALETTE[0]}
    if color_by == "cluster":
        if clusters is None:
            raise InputError("--color-by cluster needs clusters")
        label = {c["cluster"]: f"{c['cluster']}: {c['label']}" for c in clusters.clusters}
        of = dict(zip(clusters.ids, clusters.assignment.tolist()))
        names = [label.get(of.get(d, -1), "none") for d in proj.ids]
    else:
        check_color_by(col, color_by)
        meta = {d.id: d.metadata for d in col.get(proj.ids)}
        names = [str(meta.get(d, {}).get(color_by, "none")) for d in proj.ids]
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    ranked = sorted((n for n in counts if n != "none"), key=lambda n: (-counts[n], natural_key(n)))
    if color_by == "cluster":  # clusters are numbered by size: keep their numbers in order
        ranked.sort(key=natural_key)
    colours = {n: PALETTE[i] if i < len(PALETTE) else NOISE_COLOUR for i, n in enumerate(ranked)}
    colours["none"] = NOISE_COLOUR
    return names, colours


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key reading runs of digits as numbers: ``2: b`` before ``10: a``.

    >>> sorted(["10: a", "1: c", "2: b", "none"], key=natural_key)
    ['1: c', '2: b', '10: a', 'none']
    """

    return tuple(int(part) if part.isdecimal() else part.lower()
                 for part in re.split(r"(\d+)", name))


def legend_order(colours: dict[str, str]) -> list[str]:
    """Groups in the order a legend lists them: coloured ones as ranked, grey ones last."""
    return sorted(colours, key=lambda n: colours[n] == NOISE_COLOUR)


def hover_texts(col: Collection, ids: list[str], hover: str | None) -> dict[str, str]:
    """What a point shows on hover: its text, or the metadata field ``hover`` (a title, a
    link) followed by the text."""
    if hover is not None:
        check_color_by(col, hover, option="--hover")
    out = {}
    for d in col.get(ids):
        text = " ".join(d.text.split())
        value = d.metadata.get(hover) if hover else None
        out[d.id] = f"{value} — {text}" if value not in (None, "") else text
    return out


@dataclass
class Drawn:
    """A map written to ``path``; for a PNG, each label's box in the figure's pixels
    (``x0, y0, x1, y1``, origin bottom left) and the plotting area's box, to check the layout."""

    path: Path
    labels: list[tuple[str, tuple[float, float, float, float]]]
    area: tuple[float, float, float, float] | None


def draw(col: Collection, proj: Projection, path: str | Path, *, color_by: str | None = None,
         clusters: Any = None, title: str | None = None, query: str | None = None,
         hover: str | None = None) -> Drawn:
    """Write the map to ``path`` (.png or .html, atomically). ``hover``: a metadata field the
    HTML map shows (before the text) when the pointer is on a point."""
    p = Path(path)
    if p.suffix.lower() not in MAP_FORMATS:
        raise InputError(f"{p}: a map is written as .png or .html")
    if not p.parent.is_dir():
        raise InputError(f"{p}: the folder {p.parent} does not exist")
    names, colours = colour_groups(col, proj, color_by, clusters)
    title = title or f"{col.path.name}: {len(proj.ids)} documents"
    qxy = place(col, proj, [query])[0] if query else None
    with staged_file(p, p.suffix) as tmp:
        if p.suffix.lower() == ".png":
            boxes, area = _png(tmp, proj, names, colours, title, qxy, query,
                               legend=color_by is not None)
            return Drawn(p, boxes, area)
        _html(tmp, proj, names, colours, hover_texts(col, proj.ids, hover), title, qxy, query)
    return Drawn(p, [], None)


def _centres(proj: Projection, names: list[str], colours: dict[str, str]) -> dict[str, np.ndarray]:
    """Where each coloured group's label belongs: its medoid-like centre (the median point),
    largest groups first."""
    arr = np.array(names)
    out = {}
    for n in legend_order(colours):
        sel = arr == n
        if n != "none" and colours[n] != NOISE_COLOUR and sel.any():
            out[n] = np.median(proj.xy[sel], axis=0)
    return out


def _candidates(step: float, rings: int = 12) -> list[tuple[float, float]]:
    """Offsets (pixels) to try for a label, nearest first: the spot itself, then rings of 16."""
    out = [(0.0, 0.0)]
    for r in range(1, rings + 1):
        for a in range(16):
            angle = 2 * np.pi * a / 16
            out.append((r * step * 1.6 * float(np.cos(angle)), r * step * float(np.sin(angle))))
    return out


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(ax: Any, renderer: Any, labels: dict[str, np.ndarray], *, pad: float = 3.0,
                 fontsize: float = 8, avoid: Sequence[tuple[float, float, float, float]] = ()
                 ) -> list[tuple[str, tuple[float, float, float, float]]]:
    """Put each label at its group's centre, or, where that would overlap a label already
    placed, a box in ``avoid`` (the query's) or leave the plotting area, at the nearest free
    spot around it with a leader line; a label with no free spot is left to the legend.
    Returns the boxes drawn (pixels)."""
    area = ax.get_window_extent(renderer)
    inside = (area.x0 + pad, area.y0 + pad, area.x1 - pad, area.y1 - pad)
    placed: list[tuple[str, tuple[float, float, float, float]]] = []
    taken = list(avoid)
    to_data = ax.transData.inverted()
    for name, centre in labels.items():
        anchor = ax.transData.transform(centre)
        text = ax.text(float(centre[0]), float(centre[1]), name, fontsize=fontsize, ha="center",
                       va="center", zorder=5,
                       bbox={"boxstyle": "round,pad=0.25", "fc": "white", "alpha": 0.85, "lw": 0})
        box = text.get_window_extent(renderer)
        w, h = box.width + 2 * pad, box.height + 2 * pad
        spot = None
        for dx, dy in _candidates(h):
            cx, cy = anchor[0] + dx, anchor[1] + dy
            cand = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            if (cand[0] >= inside[0] and cand[1] >= inside[1] and cand[2] <= inside[2]
                    and cand[3] <= inside[3]
                    and not any(_overlaps(cand, other) for _, other in placed)
                    and not any(_overlaps(cand, other) for other in taken)):
                spot = (cx, cy, cand)
                break
        if spot is None:
            text.remove()
            continue
        cx, cy, cand = spot
        text.set_position(tuple(to_data.transform((cx, cy))))
        if (cx, cy) != (anchor[0], anchor[1]):
            ax.annotate("", xy=(float(centre[0]), float(centre[1])),
                        xytext=tuple(to_data.transform((cx, cy))), zorder=4,
                        arrowprops={"arrowstyle": "-", "lw": 0.6, "color": "#555"})
        placed.append((name, cand))
    return placed


def _png(path: Path, proj: Projection, names: list[str], colours: dict[str, str], title: str,
         qxy: np.ndarray | None, query: str | None, *, legend: bool
         ) -> tuple[list[tuple[str, tuple[float, float, float, float]]],
                    tuple[float, float, float, float]]:
    plt = pyplot()
    Line2D = plt.Line2D
    fig, ax = plt.subplots(figsize=(13, 8) if legend else (10, 8), dpi=110)
    point = max(4.0, min(40.0, 12000 / max(len(names), 1)))
    arr = np.array(names)
    for n in sorted(colours, key=lambda n: colours[n] != NOISE_COLOUR):  # grey first, below
        sel = arr == n
        if sel.any():
            ax.scatter(proj.xy[sel, 0], proj.xy[sel, 1], s=point, c=colours[n], alpha=0.75,
                       linewidths=0)
    lo, hi = proj.xy.min(axis=0), proj.xy.max(axis=0)
    margin = (hi - lo) * 0.04 + 1e-6
    ax.set_xlim(lo[0] - margin[0], hi[0] + margin[0])
    ax.set_ylim(lo[1] - margin[1], hi[1] + margin[1])
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    if legend:
        shown = [n for n in legend_order(colours) if (arr == n).any()]
        handles = [Line2D([], [], marker="o", ls="", color=colours[n], markersize=7,
                          label=(n if len(n) <= 48 else n[:47] + "…")) for n in shown[:21]]
        if len(shown) > 21:
            handles.append(Line2D([], [], ls="", label=f"… {len(shown) - 21} more (grey)"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                  frameon=False, borderaxespad=0)
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg has it
    avoid = []
    if qxy is not None:
        ax.scatter([qxy[0]], [qxy[1]], marker="*", s=300, c="black", zorder=6)
        right = qxy[0] > float(np.median(proj.xy[:, 0]))  # write towards the middle
        note = ax.annotate(f"query: {query}"[:60], (float(qxy[0]), float(qxy[1])),
                           textcoords="offset points", xytext=(-10, 10) if right else (10, 10),
                           ha="right" if right else "left", fontsize=9, zorder=6,
                           bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.8,
                                 "lw": 0})
        b = note.get_window_extent(renderer)
        sx, sy = ax.transData.transform((float(qxy[0]), float(qxy[1])))
        avoid += [(b.x0, b.y0, b.x1, b.y1), (sx - 14, sy - 14, sx + 14, sy + 14)]  # the star
    labels = {n: c for n, c in _centres(proj, names, colours).items()}
    boxes = place_labels(ax, renderer, {(n if len(n) <= 40 else n[:39] + "…"): c
                                        for n, c in labels.items()}, avoid=avoid)
    extent = ax.get_window_extent(renderer)
    fig.savefig(path, format="png")
    plt.close(fig)
    return boxes, (extent.x0, extent.y0, extent.x1, extent.y1)


def map_payload(proj: Projection, names: list[str], colours: dict[str, str],
                texts: dict[str, str]) -> dict[str, Any]:
    """What the HTML map and the service's map view draw: points (x, y, group, id, hover text),
    groups in legend order, and where each label belongs (the page places them)."""
    groups = legend_order(colours)
    index = {n: i for i, n in enumerate(groups)}
    return {
        "points": [[round(float(x), 4), round(float(y), 4), index[n], d, texts.get(d, "")[:300]]
                   for (x, y), n, d in zip(proj.xy.tolist(), names, proj.ids)],
        "groups": [{"name": n, "colour": colours[n]} for n in groups],
        "labels": [{"name": n if len(n) <= 40 else n[:39] + "…", "x": float(c[0]),
                    "y": float(c[1])} for n, c in _centres(proj, names, colours).items()],
    }


def _html(path: Path, proj: Projection, names: list[str], colours: dict[str, str],
          texts: dict[str, str], title: str, qxy: np.ndarray | None, query: str | None) -> None:
    data = map_payload(proj, names, colours, texts)
    if qxy is not None:
        data["query"] = {"x": float(qxy[0]), "y": float(qxy[1]), "text": query}
    script = (Path(__file__).parents[1] / "serve" / "static" / "map.js").read_text(encoding="utf-8")
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1rem}}canvas{{border:1px solid #ddd;max-width:100%}}
#tip{{position:fixed;pointer-events:none;background:#fff;border:1px solid #999;padding:4px 6px;
max-width:360px;font-size:13px;display:none}}#legend span{{margin-right:12px;font-size:13px;
white-space:nowrap;display:inline-block}}</style>
</head><body><h1 style="font-size:1.2rem">{html.escape(title)}</h1>
<canvas id="map" width="1000" height="720"></canvas><div id="legend"></div><div id="tip"></div>
<script id="map-data" type="application/json">{payload}</script>
<script>{script}
window.neartextMap = drawMap(document.getElementById("map"),
  JSON.parse(document.getElementById("map-data").textContent),
  document.getElementById("tip"), document.getElementById("legend"));</script>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
