"""From listens to a weighted listener x track matrix, and the hold-out split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from tunelytics.domain.recommend.data import ListeningHistory, RecommenderConfig


@dataclass
class Interactions:
    """Positive evidence (weighted) and negative evidence (skip-dominated pairs)."""

    positive: sp.csr_matrix  # listeners x tracks, float32 weights > 0
    negative: sp.csr_matrix  # listeners x tracks, float32 strength of the negative evidence

    @property
    def shape(self) -> tuple[int, int]:
        return self.positive.shape


def listen_strength(history: ListeningHistory, config: RecommenderConfig) -> np.ndarray:
    """Signed evidence per row: heard fraction of each listen, minus a penalty per skip."""
    plays = history.plays if history.plays is not None else np.ones(len(history))
    completion = history.completion_ratio()
    # A listen cut short before min_completion is weak evidence, not a full listen.
    heard = np.where(completion >= config.min_completion, completion, 0.25 * completion)
    skipped = history.skipped if history.skipped is not None else np.zeros(len(history), bool)
    return np.where(skipped, -config.skip_penalty, heard) * plays


def aggregate(
    listener_index: np.ndarray,
    track_index: np.ndarray,
    strength: np.ndarray,
    shape: tuple[int, int],
    config: RecommenderConfig,
) -> Interactions:
    """Sum the evidence per pair; repeats count on a log scale (1 = one full listen)."""
    positive_part = np.maximum(strength, 0.0)
    negative_part = np.maximum(-strength, 0.0)
    pos = sp.coo_matrix((positive_part, (listener_index, track_index)), shape=shape).tocsr()
    neg = sp.coo_matrix((negative_part, (listener_index, track_index)), shape=shape).tocsr()
    pos.sum_duplicates()
    neg.sum_duplicates()
    net = (pos - neg).tocsr()
    net.eliminate_zeros()
    values = net.data
    weight = np.where(
        values >= 1.0,
        1.0 + config.repetition_weight * np.log2(np.maximum(values, 1.0)),
        values,
    )
    signed = sp.csr_matrix((weight, net.indices, net.indptr), shape=shape)
    positive = signed.maximum(0).astype(np.float32).tocsr()
    negative = (-signed).maximum(0).astype(np.float32).tocsr()
    positive.eliminate_zeros()
    negative.eliminate_zeros()
    return Interactions(positive, negative)


@dataclass
class Split:
    train: Interactions
    valid: sp.csr_matrix  # binary: tracks each listener discovered in the hold-out
    kind: str  # "time" or "random"
    cutoff: float | None


def split_holdout(
    listener_index: np.ndarray,
    track_index: np.ndarray,
    strength: np.ndarray,
    played_at: np.ndarray | None,
    shape: tuple[int, int],
    config: RecommenderConfig,
) -> Split:
    """Time-based when the listens carry distinct times: the latest fraction of listens is
    held out and the tracks a listener first played there are the validation targets.
    Without times, a random fraction of each listener's tracks (seeded)."""
    if played_at is not None and np.ptp(played_at) > 0:
        cutoff = float(np.quantile(played_at, 1.0 - config.holdout_fraction))
        before = played_at < cutoff
        train = aggregate(
            listener_index[before], track_index[before], strength[before], shape, config
        )
        later = aggregate(
            listener_index[~before], track_index[~before], strength[~before], shape, config
        )
        seen = (train.positive + train.negative) > 0
        valid = later.positive.astype(bool).astype(np.float32) - seen.multiply(
            later.positive.astype(bool)
        ).astype(np.float32)
        valid = sp.csr_matrix(valid)
        valid.eliminate_zeros()
        return Split(train, valid, "time", cutoff)
    full = aggregate(listener_index, track_index, strength, shape, config)
    rng = np.random.default_rng(config.seed)
    coo = full.positive.tocoo()
    held = np.zeros(coo.nnz, dtype=bool)
    counts = np.diff(full.positive.indptr)
    starts = full.positive.indptr[:-1]
    for row in np.flatnonzero(counts >= 3):
        n_held = int(np.round(counts[row] * config.holdout_fraction))
        if n_held:
            held[starts[row] + rng.choice(counts[row], n_held, replace=False)] = True
    # csr -> coo keeps the row-major order, so positions line up with the csr data.
    keep = ~held
    positive = sp.csr_matrix(
        (coo.data[keep], (coo.row[keep], coo.col[keep])), shape=shape, dtype=np.float32
    )
    valid = sp.csr_matrix(
        (np.ones(int(held.sum()), np.float32), (coo.row[held], coo.col[held])), shape=shape
    )
    return Split(Interactions(positive, full.negative), valid, "random", None)


def confidence_weighted(data: Interactions, config: RecommenderConfig) -> Interactions:
    """BM25 weighting of the evidence (Robertson's saturation and length norm, with the
    track's inverse listener frequency): a pair with a rarely played track says more about a
    listener's taste than one with a track everybody plays, and a listener with thousands
    of tracks says less per track. The collaborative models learn from these weights; with
    ``confidence_weighting="plain"`` they see the evidence as aggregated."""
    if config.confidence_weighting == "plain" or not data.positive.nnz:
        return data
    if config.confidence_weighting != "bm25":
        raise ValueError(f"unknown confidence_weighting {config.confidence_weighting!r}")
    n_listeners, n_tracks = data.shape
    evidence = (data.positive + data.negative).tocsr()
    listeners_per_track = np.bincount(evidence.indices, minlength=n_tracks)
    idf = np.log(max(n_listeners, 2)) - np.log1p(listeners_per_track)
    idf = np.maximum(idf, 0.05 * np.log(max(n_listeners, 2))).astype(np.float32)
    length = np.asarray(evidence.sum(1), dtype=np.float64).ravel()
    norm = (1.0 - config.bm25_b) + config.bm25_b * length / max(float(length.mean()), 1e-9)
    k1 = config.bm25_k1

    def weigh(matrix: sp.csr_matrix) -> sp.csr_matrix:
        coo = matrix.tocoo()
        values = coo.data * (k1 + 1.0) / (k1 * norm[coo.row] + coo.data) * idf[coo.col]
        out = sp.csr_matrix((values.astype(np.float32), (coo.row, coo.col)), shape=matrix.shape)
        out.eliminate_zeros()
        return out

    return Interactions(weigh(data.positive), weigh(data.negative))
