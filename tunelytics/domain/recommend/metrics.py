"""Top-k ranking metrics on held-out tracks (the definitions benchmarks/recsys_eval.py uses)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def ranking_metrics(
    top: np.ndarray, targets: sp.csr_matrix, rows: np.ndarray, n_items: int, k: int = 10
) -> dict[str, float]:
    """Recall@k (hits over min(k, |held out|)), NDCG@k and coverage@k (share of the
    catalogue that appears in some list). ``top`` is (len(rows), >= k) track indices."""
    top = top[:, :k]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recalls, ndcgs = [], []
    for r, ranked in zip(rows, top, strict=True):
        held = targets.indices[targets.indptr[r] : targets.indptr[r + 1]]
        if len(held) == 0:
            continue
        hits = np.isin(ranked, held)
        n_rel = min(k, len(held))
        recalls.append(hits.sum() / n_rel)
        ndcgs.append((hits * discounts).sum() / discounts[:n_rel].sum())
    return {
        f"recall@{k}": float(np.mean(recalls)) if recalls else 0.0,
        f"ndcg@{k}": float(np.mean(ndcgs)) if ndcgs else 0.0,
        f"coverage@{k}": float(len(np.unique(top)) / max(n_items, 1)),
        "evaluated_listeners": float(len(recalls)),
    }


def top_k_excluding(
    scores: torch.Tensor, seen: sp.csr_matrix, rows: np.ndarray, k: int
) -> np.ndarray:
    """Top-k per row of a (len(rows), tracks) score matrix, skipping each row's seen tracks."""
    scores = scores.clone()
    sub = seen[rows].tocoo()
    if sub.nnz:
        scores[
            torch.from_numpy(sub.row.astype(np.int64)), torch.from_numpy(sub.col.astype(np.int64))
        ] = -torch.inf
    return torch.topk(scores, min(k, scores.shape[1]), dim=1).indices.numpy()
