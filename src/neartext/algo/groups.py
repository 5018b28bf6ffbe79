"""Duplicate groups from mined pairs: connected components, or communities that do not chain.

Example:
    >>> import numpy as np
    >>> g = duplicate_groups(5, np.array([0, 1, 3]), np.array([1, 2, 4]), np.array([.95, .93, .9]))
    >>> [x.members.tolist() for x in g]
    [[0, 1, 2], [3, 4]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neartext.errors import InputError

GROUPINGS = ("components", "community")
REPRESENTATIVES = ("central", "first")


@dataclass
class Group:
    """Rows that are near-duplicates of each other; ``representative`` is one of ``members``."""

    members: np.ndarray
    representative: int


def duplicate_groups(
    n: int,
    i: np.ndarray,
    j: np.ndarray,
    score: np.ndarray,
    *,
    method: str = "components",
    representative: str = "central",
    vectors: np.ndarray | None = None,
) -> list[Group]:
    """Groups of rows linked by pairs ``(i, j)``, largest first.

    ``components``: rows connected through any chain of pairs form one group (a ~ b ~ c groups
    a with c even if a and c are not close). ``community``: greedy community detection as in
    sentence-transformers: the row with most neighbours becomes a centre and takes its not yet
    grouped neighbours, so every member is close to its group's centre.

    Representative: ``central`` (the member closest to the group's mean vector; the centre for
    communities) or ``first`` (the lowest row, i.e. first seen).
    """
    if method not in GROUPINGS:
        raise InputError(f"Unknown grouping '{method}'; choose one of: {', '.join(GROUPINGS)}")
    if representative not in REPRESENTATIVES:
        raise InputError(f"Unknown representative '{representative}'; choose one of: "
                         f"{', '.join(REPRESENTATIVES)}")
    if method == "components":
        groups: list[tuple[np.ndarray, int | None]] = [(m, None) for m in _components(n, i, j)]
    else:
        groups = list(communities(n, i, j))
    out = []
    for members, centre in groups:
        if representative == "first":
            rep = int(members.min())
        elif centre is not None:
            rep = centre
        elif vectors is not None:
            sub = vectors[members]
            rep = int(members[np.argmax(sub @ sub.sum(axis=0))])  # max mean similarity
        else:
            rep = int(members.min())
        out.append(Group(np.sort(members), rep))
    out.sort(key=lambda g: (-len(g.members), int(g.members[0])))
    return out


def _components(n: int, i: np.ndarray, j: np.ndarray) -> list[np.ndarray]:
    parent = np.arange(n)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for a, b in zip(i.tolist(), j.tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(x) for x in range(n)])
    linked = np.unique(np.concatenate([i, j])) if len(i) else np.zeros(0, dtype=np.int64)
    by_root: dict[int, list[int]] = {}
    for x in linked.tolist():
        by_root.setdefault(int(roots[x]), []).append(x)
    return [np.array(v) for v in by_root.values() if len(v) > 1]


def communities(n: int, i: np.ndarray, j: np.ndarray, min_size: int = 2
                ) -> list[tuple[np.ndarray, int]]:
    """Greedy communities of rows linked by pairs ``(i, j)``: the row with most neighbours is a
    centre and takes its neighbours not yet taken; a would-be community under ``min_size``
    takes nobody (its rows stay free for later centres). Returns ``(members, centre)``."""
    neighbours: dict[int, list[int]] = {}
    for a, b in zip(i.tolist(), j.tolist()):
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    order = sorted(neighbours, key=lambda x: (-len(neighbours[x]), x))
    taken = np.zeros(n, dtype=bool)
    out = []
    for centre in order:
        if taken[centre]:
            continue
        members = [centre] + [x for x in neighbours[centre] if not taken[x]]
        if len(members) >= max(2, min_size):
            taken[members] = True
            out.append((np.array(members), centre))
    return out


def size_summary(groups: list[Group]) -> dict[int, int]:
    """``{group size: number of groups}``."""
    sizes: dict[int, int] = {}
    for g in groups:
        sizes[len(g.members)] = sizes.get(len(g.members), 0) + 1
    return dict(sorted(sizes.items()))
