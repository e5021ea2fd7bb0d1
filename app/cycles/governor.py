"""The rater-load governor: no customer rates more than ``cap`` suppliers in a cycle.

Pure: pairs in, pairs out, no database. A customer at or under the cap rates everyone
they serve with. A customer over it rates a subset of exactly ``cap``, chosen so that:

1. as many suppliers as the matrix allows reach ``target`` raters (k + 2: k for
   results to show, two to spare for those who do not answer). This is a b-matching:
   a maximum flow from the over-cap customers (capacity ``cap`` each) through their
   links (1 each) to the suppliers (capacity: what each still lacks after the
   customers who keep all their links). The flow's value is the most shortfall any
   choice can make up, so no supplier falls short unless the matrix forces it;
2. the customers' remaining places go to the suppliers with the fewest raters so far
   (water-filling), so every supplier keeps as many raters as possible;
3. ties are broken by a seeded shuffle: the same matrix and seed always give the same
   subsets, and different seeds spread the load differently.

scipy's Dinic maximum flow does step 1 in C; the counting is vectorised. The whole
choice takes about 2 s on the 50,000-employee benchmark company's matrix (cap 12).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow

DEFAULT_CAP = 12
CAP_LIMITS = (1, 100)
# Coverage each supplier should keep: k raters for results to show, plus two for the
# customers who will not answer.
SPARE_RATERS = 2


@dataclass(frozen=True)
class Governed:
    """What the cap takes out of a matrix (everything else is kept)."""

    dropped: list[tuple[int, int]]  # (supplier, customer), sorted
    # supplier -> (raters kept, raters in the matrix) for suppliers whose kept raters
    # fall below ``min(target, raters in the matrix)``: the matrix forced it
    short: dict[int, tuple[int, int]]
    capped_customers: int


def kept_pairs(pairs: Iterable[tuple[int, int]], governed: Governed) -> list[tuple[int, int]]:
    """The pairs a cycle launches with, sorted."""
    dropped = set(governed.dropped)
    return sorted(p for p in pairs if p not in dropped)


def govern(pairs: Iterable[tuple[int, int]], *, cap: int, target: int, seed: int) -> Governed:
    """Keep at most ``cap`` suppliers per customer, covering suppliers as described above."""
    matrix = np.array(list(pairs), dtype=np.int64).reshape(-1, 2)
    # Counting is vectorised (a 50,000-employee matrix has 450,000 pairs); only the
    # capped customers' links (a fifth of that) are handled one by one.
    customer_ids, customer_at, customer_sizes = np.unique(
        matrix[:, 1], return_inverse=True, return_counts=True
    )
    supplier_ids, supplier_at = np.unique(matrix[:, 0], return_inverse=True)
    over_mask = customer_sizes[customer_at] > cap
    if not over_mask.any():
        return Governed(dropped=[], short={}, capped_customers=0)
    degree = np.bincount(supplier_at, minlength=len(supplier_ids))
    kept_count = np.bincount(supplier_at[~over_mask], minlength=len(supplier_ids)).tolist()

    suppliers_of: dict[int, list[int]] = defaultdict(list)
    order = np.lexsort((supplier_at[over_mask], customer_at[over_mask]))
    for c, s in zip(
        customer_at[over_mask][order].tolist(), supplier_at[over_mask][order].tolist(), strict=True
    ):
        suppliers_of[c].append(s)  # customer index -> supplier indices, ascending
    rng = random.Random(seed)
    over = sorted(suppliers_of)
    rng.shuffle(over)
    chosen: dict[int, set[int]] = {c: set() for c in over}
    _cover_shortfall(over, suppliers_of, kept_count, chosen, cap=cap, target=target, rng=rng)
    _fill_with_fewest_first(over, suppliers_of, kept_count, chosen, cap=cap, rng=rng)

    sup_ids, cus_ids = supplier_ids.tolist(), customer_ids.tolist()
    dropped = sorted(
        (sup_ids[s], cus_ids[c]) for c in over for s in suppliers_of[c] if s not in chosen[c]
    )
    kept = np.array(kept_count)
    short_at = np.nonzero(kept < np.minimum(target, degree))[0].tolist()
    short = {sup_ids[i]: (int(kept[i]), int(degree[i])) for i in short_at}
    return Governed(dropped=dropped, short=short, capped_customers=len(over))


def _cover_shortfall(
    over: list[int],
    suppliers_of: dict[int, list[int]],
    kept_count: list[int],
    chosen: dict[int, set[int]],
    *,
    cap: int,
    target: int,
    rng: random.Random,
) -> None:
    """Step 1: a maximum flow source -> over-cap customer -> lacking supplier -> sink."""
    lacking = {s for c in over for s in suppliers_of[c] if kept_count[s] < target}
    if not lacking:
        return
    supplier_order = sorted(lacking)
    rng.shuffle(supplier_order)
    node_of = {s: 1 + len(over) + i for i, s in enumerate(supplier_order)}
    sink = 1 + len(over) + len(supplier_order)
    rows: list[int] = []
    cols: list[int] = []
    caps: list[int] = []
    for i, customer in enumerate(over):
        rows.append(0)
        cols.append(1 + i)
        caps.append(cap)
        for s in suppliers_of[customer]:
            if s in node_of:
                rows.append(1 + i)
                cols.append(node_of[s])
                caps.append(1)
    for s, node in node_of.items():
        rows.append(node)
        cols.append(sink)
        caps.append(target - kept_count[s])
    graph = csr_matrix(
        (np.array(caps, dtype=np.int32), (np.array(rows), np.array(cols))),
        shape=(sink + 1, sink + 1),
    )
    flow = maximum_flow(graph, 0, sink, method="dinic").flow.tocoo()
    supplier_at = {node: s for s, node in node_of.items()}
    for u, v, f in zip(flow.row.tolist(), flow.col.tolist(), flow.data.tolist(), strict=True):
        if f > 0 and 1 <= u <= len(over) and v in supplier_at:
            customer, s = over[u - 1], supplier_at[v]
            chosen[customer].add(s)
            kept_count[s] += 1


def _fill_with_fewest_first(
    over: list[int],
    suppliers_of: dict[int, list[int]],
    kept_count: list[int],
    chosen: dict[int, set[int]],
    *,
    cap: int,
    rng: random.Random,
) -> None:
    """Step 2: each over-cap customer's remaining places, to the least-rated suppliers."""
    for customer in over:
        places = cap - len(chosen[customer])
        if places <= 0:
            continue
        candidates = [s for s in suppliers_of[customer] if s not in chosen[customer]]
        rng.shuffle(candidates)
        candidates.sort(key=lambda s: kept_count[s])  # stable: the shuffle breaks ties
        for s in candidates[:places]:
            chosen[customer].add(s)
            kept_count[s] += 1


# --- what a rater is asked ---------------------------------------------------------------

# An estimate for the launch preview: reading a competency's indicators once, then a
# click per colleague, averages about 10 s; an optional comment, where offered, about
# 20 s per colleague (most raters leave most of them empty).
SECONDS_PER_QUESTION = 10
SECONDS_PER_COMMENT = 20


@dataclass(frozen=True)
class Load:
    """Questions per rater over a cycle's customers."""

    raters: int
    mean: float
    median: float
    p90: int
    max: int
    mean_minutes: float
    max_minutes: float
    # (questions, raters asked that many), ascending
    histogram: list[tuple[int, int]]


def rater_load(
    suppliers_per_customer: Iterable[int], *, questions_per_supplier: int, comments: bool
) -> Load:
    """The distribution of questions per rater and the minutes it should take."""
    counts = sorted(suppliers_per_customer)
    if not counts:
        return Load(0, 0.0, 0.0, 0, 0, 0.0, 0.0, [])
    questions = [n * questions_per_supplier for n in counts]
    per_supplier_seconds = questions_per_supplier * SECONDS_PER_QUESTION + (
        SECONDS_PER_COMMENT if comments else 0
    )
    histogram: dict[int, int] = defaultdict(int)
    for q in questions:
        histogram[q] += 1
    n = len(questions)
    mid = n // 2
    median = questions[mid] if n % 2 else (questions[mid - 1] + questions[mid]) / 2
    return Load(
        raters=n,
        mean=sum(questions) / n,
        median=float(median),
        p90=questions[min(n - 1, int(0.9 * n))],
        max=questions[-1],
        mean_minutes=sum(counts) / n * per_supplier_seconds / 60,
        max_minutes=counts[-1] * per_supplier_seconds / 60,
        histogram=sorted(histogram.items()),
    )
