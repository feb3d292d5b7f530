"""The product's recommender on Last.fm (HetRec 2011) beside standard baselines, one run.

    nice -n 5 .venv/bin/python benchmarks/recsys_eval.py                 # test split
    nice -n 5 .venv/bin/python benchmarks/recsys_eval.py --validation    # development
    .venv/bin/python benchmarks/recsys_eval.py --data other.tsv --models popular,product

Protocol (../shared/data/lastfm-2k/README.md): binarised listener-item pairs; listeners with
at least 5 items; 20% of each listener's items held out at random (seed 0); every model
ranks all items not in the listener's training set; Recall@10 (hits / min(10, held out)),
NDCG@10 and coverage@10 (share of all items shown to some listener). Hyper-parameters are
chosen on a validation split carved from the training part (seed 1); --validation reports
on that split instead of the test split, for development without touching the test set.

--data takes any tab-separated listener, item, count file (header optional). The product
goes through train_recommender, fed the pairs as listens with the count as repetition and
the items as its catalogue (no content columns exist in these files).
"""

from __future__ import annotations

import argparse
import os

# implicit's ALS warns (and can stall) when OpenBLAS runs its own thread pool.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tunelytics.domain.recommend import (  # noqa: E402
    Catalogue,
    Following,
    ListeningHistory,
    RecommenderConfig,
    train_recommender,
)
from tunelytics.domain.recommend.metrics import ranking_metrics  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "lastfm-2k" / "user_artists.dat"
DEFAULT_FOLLOWING = DEFAULT_DATA.with_name("user_friends.dat")
K = 10
Scorer = Callable[[np.ndarray], torch.Tensor]  # listener rows -> (rows, items) scores


def load(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], list[str]]:
    """Listener index, item index, count per pair; header row skipped when not numeric."""
    listeners, items, counts = [], [], []
    with path.open() as f:
        for n, line in enumerate(f):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2:
                continue
            try:
                count = float(parts[2]) if len(parts) > 2 and parts[2] else 1.0
            except ValueError:
                if n == 0:
                    continue
                raise
            listeners.append(parts[0])
            items.append(parts[1])
            counts.append(count)
    lid, l_idx = np.unique(np.array(listeners), return_inverse=True)
    iid, i_idx = np.unique(np.array(items), return_inverse=True)
    return l_idx, i_idx, np.array(counts), lid.tolist(), iid.tolist()


def load_following(path: Path, listener_ids: list[str]) -> Following:
    """Tab-separated follower, followed pairs (header optional) as the product's Following,
    in the evaluation's listener names (u<row>); pairs naming other listeners are dropped."""
    row = {lid: f"u{r}" for r, lid in enumerate(listener_ids)}
    pairs = []
    with path.open() as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2 and parts[0] in row and parts[1] in row:
                pairs.append((row[parts[0]], row[parts[1]]))
    return Following(
        np.array([a for a, _ in pairs], dtype=str), np.array([b for _, b in pairs], dtype=str)
    )


def holdout(
    matrix: sp.csr_matrix, fraction: float, seed: int
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Per listener, hold out round(fraction * n) of their items at random."""
    rng = np.random.default_rng(seed)
    coo = matrix.tocoo()
    held = np.zeros(coo.nnz, dtype=bool)
    for row in range(matrix.shape[0]):
        lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
        n = hi - lo
        n_held = int(np.round(n * fraction))
        if n >= 2 and n_held:
            held[lo + rng.choice(n, n_held, replace=False)] = True
    train = sp.csr_matrix((coo.data[~held], (coo.row[~held], coo.col[~held])), shape=matrix.shape)
    test = sp.csr_matrix((coo.data[held], (coo.row[held], coo.col[held])), shape=matrix.shape)
    return train, test


def evaluate(scorer: Scorer, train: sp.csr_matrix, test: sp.csr_matrix) -> dict[str, float]:
    rows = np.flatnonzero(np.diff(test.indptr) > 0)
    tops = []
    for lo in range(0, len(rows), 256):
        chunk = rows[lo : lo + 256]
        scores = scorer(chunk).clone()
        seen = train[chunk].tocoo()
        scores[
            torch.from_numpy(seen.row.astype(np.int64)), torch.from_numpy(seen.col.astype(np.int64))
        ] = -torch.inf
        tops.append(torch.topk(scores, K, dim=1).indices.numpy())
    return ranking_metrics(np.concatenate(tops), test, rows, train.shape[1], K)


# --- baselines ------------------------------------------------------------------------


def most_popular(train: sp.csr_matrix) -> Scorer:
    pop = torch.from_numpy(np.asarray((train > 0).sum(0), dtype=np.float32).ravel())
    return lambda rows: pop.expand(len(rows), -1)


def item_knn(train: sp.csr_matrix) -> Scorer:
    """Cosine item-item similarity over all neighbours: x_u S with S = D^-1/2 X'X D^-1/2,
    evaluated as ((x_u D^-1/2) X') (X D^-1/2) so the item x item matrix is never formed."""
    x = (train > 0).astype(np.float32).tocsr()
    norms = np.sqrt(np.asarray(x.sum(0)).ravel())
    inv = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-9), 0.0).astype(np.float32)
    xn = (x @ sp.diags(inv)).tocsr()
    xn_dense = torch.from_numpy(xn.toarray())

    def score(rows: np.ndarray) -> torch.Tensor:
        user = torch.from_numpy((xn[rows] @ x.T).toarray())  # (rows, listeners)
        return user @ xn_dense

    return score


def ease(train: sp.csr_matrix, lam: float) -> Scorer:
    """EASE (Steck 2019), exact: B = I - P / diag(P), P = (X'X + lambda I)^-1. With fewer
    listeners than items, Woodbury gives P = (I - X' (XX' + lambda I)^-1 X) / lambda, so
    scores x_u B = x_u - (x_u P) / diag(P) need no items x items matrix (float64)."""
    x = (train > 0).astype(np.float64).tocsr()
    if x.shape[0] > x.shape[1]:
        raise SystemExit("EASE here assumes fewer listeners than items")
    dense = torch.from_numpy(x.toarray())
    kernel = torch.from_numpy((x @ x.T).toarray())
    kernel.diagonal().add_(lam)
    solved = torch.linalg.solve(kernel, dense)  # (XX' + lambda I)^-1 X
    diag_p = (1.0 - (dense * solved).sum(0)) / lam

    def score(rows: np.ndarray) -> torch.Tensor:
        xb = dense[torch.from_numpy(rows.astype(np.int64))]
        xp = (xb - (xb @ dense.T) @ solved) / lam
        return (xb - xp / diag_p).float()

    return score


def implicit_als(train: sp.csr_matrix, factors: int, reg: float, alpha: float) -> Scorer:
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=factors,
        regularization=reg,
        alpha=alpha,
        iterations=15,
        random_state=0,
        num_threads=2,
        calculate_training_loss=False,
    )
    model.fit((train > 0).astype(np.float32).tocsr(), show_progress=False)
    users = torch.from_numpy(np.asarray(model.user_factors))
    items = torch.from_numpy(np.asarray(model.item_factors))
    return lambda rows: users[torch.from_numpy(rows.astype(np.int64))] @ items.T


def product(
    train: sp.csr_matrix,
    item_ids: list[str],
    config: RecommenderConfig,
    following: Following | None = None,
) -> Scorer:
    """train_recommender on the training pairs (count = repetition) and, when given, who
    follows whom; served by recommend()."""
    coo = train.tocoo()
    history = ListeningHistory(
        listener_ids=np.array([f"u{r}" for r in coo.row]),
        track_ids=np.array([item_ids[c] for c in coo.col]),
        plays=coo.data,
    )
    catalogue = Catalogue(track_ids=np.array(item_ids), artist_ids=np.array(item_ids))
    model = train_recommender(history, catalogue, config, following=following)
    product.last_model = model  # type: ignore[attr-defined]
    index = {t: i for i, t in enumerate(item_ids)}

    def score(rows: np.ndarray) -> torch.Tensor:
        # Through the serving path: top-K per listener, turned into a rank-based score.
        recs = model.recommend([f"u{r}" for r in rows], K, exclude_listened=True)
        out = torch.full((len(rows), len(item_ids)), -1e9)
        for b, rec in enumerate(recs):
            for rank, r in enumerate(rec or []):
                out[b, index[r.track_id]] = float(K - rank)
        return out

    return score


# --- tuning on the validation split ----------------------------------------------------


def tune(
    name: str,
    build: Callable[..., Scorer],
    grid: list[dict[str, float]],
    train: sp.csr_matrix,
    valid: sp.csr_matrix,
) -> dict[str, float]:
    best, best_params = -1.0, grid[0]
    for params in grid:
        ndcg = evaluate(build(train, **params), train, valid)["ndcg@10"]
        print(f"  tune {name} {params}: validation NDCG@10 {ndcg:.4f}", flush=True)
        if ndcg > best:
            best, best_params = ndcg, params
    return best_params


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--models", default="popular,itemknn,ease,als,product")
    parser.add_argument(
        "--following",
        type=Path,
        help="tab-separated follower, followed listener pairs for the product (default: "
        "user_friends.dat beside the default data; 'none' for listens alone)",
    )
    parser.add_argument("--validation", action="store_true", help="report on the validation split")
    parser.add_argument("--min-items", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-tune", action="store_true", help="README settings, no grid")
    parser.add_argument(
        "--product-config",
        default="factors=128,als_alpha=20,blend_listeners=4000,blend_top=300",
        help="RecommenderConfig overrides (default: the ones chosen with --validation on Last.fm)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = args.models.split(",")

    l_idx, i_idx, counts, listener_ids, item_ids = load(args.data)
    matrix = sp.csr_matrix((counts, (l_idx, i_idx)), shape=(l_idx.max() + 1, i_idx.max() + 1))
    matrix.sum_duplicates()
    keep = np.flatnonzero(np.diff(matrix.indptr) >= args.min_items)
    matrix = matrix[keep].tocsr()
    following_path = args.following
    if following_path is None and args.data == DEFAULT_DATA and DEFAULT_FOLLOWING.exists():
        following_path = DEFAULT_FOLLOWING
    following = None
    if following_path is not None and str(following_path) != "none":
        following = load_following(following_path, [listener_ids[k] for k in keep])
        print(f"{following_path.name}: {len(following)} follower-followed pairs", flush=True)
    train, test = holdout(matrix, 0.2, seed=0)
    fit_train, valid = holdout(train, 0.2, seed=1)
    if args.validation:
        train, test = fit_train, valid
        fit_train, valid = holdout(train, 0.2, seed=2)
    print(
        f"{args.data.name}: {matrix.shape[0]} listeners, {matrix.shape[1]} items, "
        f"{matrix.nnz} pairs; {'validation' if args.validation else 'test'} split: "
        f"{int((np.diff(test.indptr) > 0).sum())} listeners, {test.nnz} held-out pairs",
        flush=True,
    )

    results: list[tuple[str, dict[str, float], float]] = []

    def run(label: str, build: Callable[[], Scorer]) -> None:
        t0 = time.perf_counter()
        scorer = build()
        metrics = evaluate(scorer, train, test)
        seconds = time.perf_counter() - t0
        results.append((label, metrics, seconds))
        print(f"{label}: NDCG@10 {metrics['ndcg@10']:.4f} ({seconds:.0f} s)", flush=True)

    if "popular" in models:
        run("most popular", lambda: most_popular(train))
    if "itemknn" in models:
        run("item-kNN (cosine)", lambda: item_knn(train))
    if "ease" in models:
        grid = [
            {"lam": v} for v in ([100.0] if args.no_tune else [50.0, 100.0, 200.0, 400.0, 800.0])
        ]
        p = tune("EASE", ease, grid, fit_train, valid)
        run(f"EASE (lambda {p['lam']:g})", lambda: ease(train, **p))
    if "als" in models:
        if args.no_tune:
            grid = [{"factors": 256, "reg": 50.0, "alpha": 10.0}]
        else:
            grid = [
                {"factors": f, "reg": r, "alpha": 10.0} for f in (128, 256) for r in (10.0, 50.0)
            ]
        p = tune("ALS", implicit_als, grid, fit_train, valid)
        run(
            f"implicit ALS ({p['factors']:g} factors, reg {p['reg']:g}, alpha {p['alpha']:g})",
            lambda: implicit_als(train, int(p["factors"]), p["reg"], p["alpha"]),
        )
    if "product" in models:
        overrides = dict(kv.split("=") for kv in args.product_config.split(",") if kv)
        config = RecommenderConfig(
            **{k: type(getattr(RecommenderConfig(), k))(v) for k, v in overrides.items()}
        )
        label = "tunelytics hybrid (train_recommender" + (", following)" if following else ")")
        run(label, lambda: product(train, item_ids, config, following))
        model = product.last_model  # type: ignore[attr-defined]
        weights = ", ".join(f"{k} {v:.2f}" for k, v in model.blend_weights.items())
        print(f"  learned blend: {weights}; EASE lambda {model.parameters['ease_lambda']:g}")
        print(f"  internal hold-out: NDCG@10 {model.metrics.get('ndcg@10', 0):.4f}")

    print()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {args.threads} threads")
    print("| model | Recall@10 | NDCG@10 | coverage@10 | time (s) |")
    print("|---|--:|--:|--:|--:|")
    for label, m, seconds in results:
        print(
            f"| {label} | {m['recall@10']:.3f} | {m['ndcg@10']:.3f} | {m['coverage@10']:.3f} "
            f"| {seconds:.0f} |"
        )
    baselines = [m["ndcg@10"] for label, m, _ in results if not label.startswith("tunelytics")]
    ours = [m["ndcg@10"] for label, m, _ in results if label.startswith("tunelytics")]
    if baselines and ours:
        print(f"\nproduct vs best baseline: {100 * (ours[0] / max(baselines) - 1):+.1f}% NDCG@10")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
