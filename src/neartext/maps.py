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

import hashlib
import html
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .atomic import staged_file
from .errors import InputError, MissingExtra

if TYPE_CHECKING:
    from .collection import Collection

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
                      "seed": seed}, sort_keys=True)
    return col.path / "cache" / f"projection-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def project(col: Collection, *, sample: int | None = None, seed: int = 42,
            neighbours: int = 15, progress: bool = False) -> Projection:
    """UMAP of the collection's documents (or a random ``sample`` of them), cached."""
    from .clustering import document_matrix

    t0 = time.perf_counter()
    path = _cache_path(col, sample, seed)
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return Projection([str(x) for x in z["ids"]], z["xy"], True,
                              time.perf_counter() - t0, sample)
    ids, vectors = document_matrix(col)
    if len(ids) < 3:
        raise InputError(f"a map needs a collection of at least 3 documents (this one has {len(ids)})")
    if sample is not None:
        if sample < 3:
            raise InputError(f"--sample must be at least 3 (got {sample})")
        if sample < len(ids):
            keep = np.sort(np.random.default_rng(seed).choice(len(ids), sample, replace=False))
            ids, vectors = [ids[i] for i in keep], vectors[keep]
    try:
        import umap
    except ImportError:
        raise MissingExtra("umap-learn (for maps)", "clusters") from None
    reducer = umap.UMAP(n_components=2, metric="cosine", n_neighbors=min(neighbours, len(ids) - 1),
                        min_dist=0.1, random_state=seed, n_jobs=1, verbose=progress,
                        low_memory=True)
    xy = np.asarray(reducer.fit_transform(vectors), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)  # a Milvus collection's state dir may be new
    with staged_file(path, ".npz") as tmp:
        np.savez(tmp, ids=np.array(ids), xy=xy)
    for old in path.parent.glob("projection-*.npz"):  # older generations are of no use
        if old != path and old.stat().st_mtime < path.stat().st_mtime - 1:
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


def check_color_by(col: Collection, color_by: str | None) -> None:
    """``cluster``, a metadata field of the collection, or None; an :class:`InputError` listing
    the fields otherwise (asked before the projection is computed)."""
    if color_by is None or color_by == "cluster":
        return
    known = col.store.metadata_fields()
    if color_by not in known:
        raise InputError(f"unknown metadata column '{color_by}' for --color-by; columns: "
                         f"{', '.join(sorted(known)) or 'none'} (or 'cluster')")


def map_clusters(col: Collection, n: int, method: str, *, threshold: float | None = None,
                 k: int | None = None, min_size: int = 3, seed: int = 42, central: int = 3,
                 progress: bool = False) -> Any:
    """Clusters for colouring a map of ``n`` points; k-means without ``k`` makes about
    sqrt(n/2) clusters (2 to 20), what a map can show in distinct colours."""
    if method == "kmeans" and k is None:
        k = max(2, min(20, round((n / 2) ** 0.5)))
    return col.cluster(method, threshold=threshold, k=k, min_size=min_size, seed=seed,
                       central=central, progress=progress)


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
    ranked = sorted((n for n in counts if n != "none"), key=lambda n: (-counts[n], n))
    colours = {n: PALETTE[i] if i < len(PALETTE) else NOISE_COLOUR for i, n in enumerate(ranked)}
    colours["none"] = NOISE_COLOUR
    return names, colours


def draw(col: Collection, proj: Projection, path: str | Path, *, color_by: str | None = None,
         clusters: Any = None, title: str | None = None, query: str | None = None) -> Path:
    """Write the map to ``path`` (.png or .html, atomically)."""
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
            _png(tmp, proj, names, colours, title, qxy, query)
        else:
            texts = {d.id: d.text for d in col.get(proj.ids)}
            _html(tmp, proj, names, colours, texts, title, qxy, query)
    return p


def _centres(proj: Projection, names: list[str], colours: dict[str, str]) -> dict[str, np.ndarray]:
    arr = np.array(names)
    return {n: np.median(proj.xy[arr == n], axis=0) for n in colours
            if n != "none" and colours[n] != NOISE_COLOUR and (arr == n).any()}


def _png(path: Path, proj: Projection, names: list[str], colours: dict[str, str], title: str,
         qxy: np.ndarray | None, query: str | None) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtra("matplotlib (for PNG maps)", "viz") from None
    fig, ax = plt.subplots(figsize=(10, 8), dpi=110)
    point = max(3.0, min(40.0, 6000 / max(len(names), 1)))
    arr = np.array(names)
    for n in sorted(colours, key=lambda n: colours[n] != NOISE_COLOUR):  # grey first, below
        sel = arr == n
        if sel.any():
            ax.scatter(proj.xy[sel, 0], proj.xy[sel, 1], s=point, c=colours[n], alpha=0.75,
                       linewidths=0)
    for n, c in _centres(proj, names, colours).items():
        ax.text(c[0], c[1], n[:40], fontsize=8, ha="center", va="center",
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.7, "lw": 0})
    if qxy is not None:
        ax.scatter([qxy[0]], [qxy[1]], marker="*", s=300, c="black")
        right = qxy[0] > float(np.median(proj.xy[:, 0]))  # write towards the middle
        ax.annotate(f"query: {query}"[:60], (float(qxy[0]), float(qxy[1])),
                    textcoords="offset points", xytext=(-10, 10) if right else (10, 10),
                    ha="right" if right else "left", fontsize=9,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.8, "lw": 0})
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def map_payload(proj: Projection, names: list[str], colours: dict[str, str],
                texts: dict[str, str]) -> dict[str, Any]:
    """What the HTML map and the service's map view draw: points, colours and label positions."""
    groups = sorted(colours, key=lambda n: (colours[n] == NOISE_COLOUR, n))
    index = {n: i for i, n in enumerate(groups)}
    return {
        "points": [[round(float(x), 4), round(float(y), 4), index[n], d, texts.get(d, "")[:300]]
                   for (x, y), n, d in zip(proj.xy.tolist(), names, proj.ids)],
        "groups": [{"name": n, "colour": colours[n]} for n in groups],
        "labels": [{"name": n[:40], "x": float(c[0]), "y": float(c[1])}
                   for n, c in _centres(proj, names, colours).items()],
    }


def _html(path: Path, proj: Projection, names: list[str], colours: dict[str, str],
          texts: dict[str, str], title: str, qxy: np.ndarray | None, query: str | None) -> None:
    data = map_payload(proj, names, colours, texts)
    if qxy is not None:
        data["query"] = {"x": float(qxy[0]), "y": float(qxy[1]), "text": query}
    script = (Path(__file__).parent / "serve" / "static" / "map.js").read_text(encoding="utf-8")
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1rem}}canvas{{border:1px solid #ddd;max-width:100%}}
#tip{{position:fixed;pointer-events:none;background:#fff;border:1px solid #999;padding:4px 6px;
max-width:360px;font-size:13px;display:none}}#legend span{{margin-right:12px;font-size:13px}}</style>
</head><body><h1 style="font-size:1.2rem">{html.escape(title)}</h1>
<canvas id="map" width="1000" height="720"></canvas><div id="legend"></div><div id="tip"></div>
<script id="map-data" type="application/json">{payload}</script>
<script>{script}
drawMap(document.getElementById("map"), JSON.parse(document.getElementById("map-data").textContent),
        document.getElementById("tip"), document.getElementById("legend"));</script>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
