"""train_recommender: fit the components, learn the blend on a hold-out, refit, package."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from tunelytics.domain.recommend.components import (
    Component,
    EaseBasis,
    content_component,
    content_item_vectors,
    ease_basis,
    ease_component,
    fit_als,
    following_component,
    following_matrix,
    popularity_component,
)
from tunelytics.domain.recommend.data import (
    Catalogue,
    Following,
    ListeningHistory,
    RecommenderConfig,
)
from tunelytics.domain.recommend.interactions import (
    Interactions,
    aggregate,
    confidence_weighted,
    listen_strength,
    split_holdout,
)
from tunelytics.domain.recommend.metrics import ranking_metrics, top_k_excluding
from tunelytics.domain.recommend.model import ComponentState, Recommender, user_scale

Progress = Callable[[float, str], None]
CONTENT_KINDS = ("genre", "artist", "audio")


def _report_step(report: Progress, fraction: float, step: str, message: str) -> None:
    report(fraction, f"{step}: {message}")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


class _Content:
    """Content item vectors, computed once (they do not depend on the listens)."""

    def __init__(
        self,
        catalogue: Catalogue,
        n_tracks: int,
        track_artist: np.ndarray,
        n_artists: int,
        config: RecommenderConfig,
    ) -> None:
        genres: list[list[str]] | None = None
        if catalogue.genres is not None:
            genres = [list(g) for g in catalogue.genres] + [[]] * (n_tracks - len(catalogue))
        audio = None
        if catalogue.audio_embeddings is not None:
            audio = np.zeros((n_tracks, catalogue.audio_embeddings.shape[1]), np.float32)
            audio[: len(catalogue)] = catalogue.audio_embeddings
        self.vectors: dict[str, np.ndarray] = {}
        for kind in CONTENT_KINDS:
            if kind not in config.components:
                continue
            v = content_item_vectors(
                kind,
                genres,
                track_artist,
                n_artists,
                audio,
                config.content_dims,
                config.audio_dims,
            )
            if v is not None:
                self.vectors[kind] = v


def _fit_components(
    data: Interactions,
    content: _Content,
    prior: np.ndarray | None,
    follows: sp.csr_matrix | None,
    config: RecommenderConfig,
    ease_lambda: float | None,
    report: Callable[[str], None],
) -> tuple[list[Component], EaseBasis | None]:
    comps: list[Component] = []
    basis = None
    weighted = confidence_weighted(data, config)
    if "als" in config.components and data.positive.nnz:
        report("collaborative model (ALS)")
        comps.append(
            fit_als(
                weighted,
                config.factors,
                config.als_iterations,
                config.als_regularization,
                config.als_alpha,
                config.seed,
            )
        )
    if "ease" in config.components and data.positive.nnz:
        report("collaborative model (EASE)")
        basis = ease_basis(weighted.positive, config.ease_rank)
        if len(basis.squared):
            comps.append(ease_component(basis, ease_lambda or config.ease_lambdas[0]))
        else:
            basis = None
    # Followed listeners' tastes in EASE's space (better on Last.fm than ALS's: validation
    # NDCG@10 0.1960 against 0.1930), ALS's when EASE is off.
    taste = next((c for name in ("ease", "als") for c in comps if c.name == name), None)
    if "following" in config.components and follows is not None and follows.nnz and taste:
        comps.append(following_component(follows, taste))
    for kind, vectors in content.vectors.items():
        comps.append(content_component(kind, vectors, data.positive))
    if "popularity" in config.components:
        comps.append(popularity_component(data.positive, prior))
    return comps, basis


def _standardised(c: Component, rows: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    items = c.items
    mean = items.mean(0)
    centred = items - mean
    cov = centred.T @ centred / max(items.shape[0], 1)
    users = c.users[rows]
    return (users * user_scale(users, cov)[:, None]) @ centred[cand].T


BlendCandidates = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _blend_candidates(
    comps: list[Component],
    train: sp.csr_matrix,
    valid: sp.csr_matrix,
    rows: np.ndarray,
    config: RecommenderConfig,
) -> BlendCandidates:
    """Each listener's candidates: the union of every component's top tracks (unseen in
    training), with the standardised component scores (C, B, M), the held-out targets
    (B, M), the padding mask (B, M) and the dense held-out rows (B, tracks)."""
    n_tracks = train.shape[1]
    row_t = torch.from_numpy(rows.astype(np.int64))
    all_items = torch.arange(n_tracks)
    seen_rows = train[rows].tocoo()
    seen_at = (
        torch.from_numpy(seen_rows.row.astype(np.int64)),
        torch.from_numpy(seen_rows.col.astype(np.int64)),
    )
    n_top = min(config.blend_top, n_tracks)
    tops = []
    for c in comps:
        scores = _standardised(c, row_t, all_items)
        scores[seen_at] = -torch.inf
        tops.append(torch.topk(scores, n_top, dim=1).indices)
    cand, _ = torch.sort(torch.cat(tops, 1), dim=1)
    duplicate = torch.zeros_like(cand, dtype=torch.bool)
    duplicate[:, 1:] = cand[:, 1:] == cand[:, :-1]
    stacked = torch.stack(
        [torch.gather(_standardised(c, row_t, all_items), 1, cand) for c in comps]
    )  # (C, B, M)
    valid_dense = torch.from_numpy(valid[rows].toarray() > 0)
    target = torch.gather(valid_dense, 1, cand).float().masked_fill(duplicate, 0.0)
    return stacked, target, duplicate, valid_dense


def _concat_candidates(parts: list[BlendCandidates]) -> BlendCandidates:
    """Listeners of several hold-out folds as one set (candidate lists padded)."""
    width = max(p[0].shape[2] for p in parts)

    def pad(t: torch.Tensor, value: float | bool) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[-1]), value=value)

    return (
        torch.cat([pad(p[0], 0.0) for p in parts], 1),
        torch.cat([pad(p[1], 0.0) for p in parts], 0),
        torch.cat([pad(p[2], True) for p in parts], 0),
        torch.cat([p[3] for p in parts], 0),
    )


def _fit_blend(
    names: list[str], candidates: BlendCandidates, config: RecommenderConfig
) -> dict[str, float]:
    """Weights of the standardised component scores that maximise the likelihood of the
    held-out tracks under a softmax over each listener's candidates. Fitting on the head
    of the lists, not on all tracks, is what makes the blend good at top-k ranking
    (listwise, convex)."""
    stacked, target, duplicate, valid_dense = candidates
    seen = duplicate
    # Newton's method on the convex listwise loss; gradient and Hessian in closed form
    # (softmax expectations and covariances of the component scores).
    stacked = stacked.masked_fill(seen[None], 0.0).double()
    mask = (~seen).double()
    per_row = target.double().sum(1)
    total = per_row.sum().clamp_min(1.0)
    ridge = 1e-3
    weights = torch.ones(len(names), dtype=torch.float64)

    def loss_of(w: torch.Tensor) -> torch.Tensor:
        logits = torch.einsum("c,cbn->bn", w, stacked).masked_fill(seen, -torch.inf)
        logp = torch.log_softmax(logits, 1).masked_fill(seen, 0.0)
        return -(logp * target).sum() / total + ridge * (w**2).sum()

    current = loss_of(weights)
    for _ in range(config.blend_steps):
        logits = torch.einsum("c,cbn->bn", weights, stacked).masked_fill(seen, -torch.inf)
        p = torch.softmax(logits, 1) * mask
        mean = torch.einsum("bn,cbn->cb", p, stacked)  # E_p[S_c] per listener
        observed = torch.einsum("bn,cbn->cb", target.double(), stacked)
        grad = -(observed - mean * per_row).sum(1) / total + 2 * ridge * weights
        second = torch.einsum("bn,cbn,dbn->cdb", p, stacked, stacked)
        cov = second - mean[:, None, :] * mean[None, :, :]
        hessian = (cov * per_row).sum(2) / total + 2 * ridge * torch.eye(len(names))
        step = torch.linalg.solve(hessian, grad)
        scale = 1.0
        while scale > 1e-4:
            candidate = weights - scale * step
            value = loss_of(candidate)
            if value <= current:
                break
            scale *= 0.5
        else:
            break
        improvement = float(current - value)
        weights, current = candidate, value
        if improvement < 1e-7:
            break
    weights = _refine_for_ndcg(weights.float(), stacked.float(), target, duplicate, valid_dense)
    return {n: float(w) for n, w in zip(names, weights, strict=True)}


def _refine_for_ndcg(
    weights: torch.Tensor,
    stacked: torch.Tensor,
    target: torch.Tensor,
    padding: torch.Tensor,
    valid_dense: torch.Tensor,
    k: int = 10,
    rounds: int = 2,
) -> torch.Tensor:
    """The likelihood fit is smooth but not what the lists are judged by: coordinate search
    around it for the weights with the best NDCG@k of the re-ranked candidates."""
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2).float())
    n_rel = valid_dense.sum(1).clamp(max=k)
    ideal = torch.stack([discounts[: int(n)].sum() for n in n_rel.tolist()]).clamp_min(1e-9)
    active = n_rel > 0

    def ndcg(w: torch.Tensor) -> float:
        logits = torch.einsum("c,cbn->bn", w, stacked).masked_fill(padding, -torch.inf)
        top = torch.topk(logits, min(k, logits.shape[1]), dim=1).indices
        gains = torch.gather(target, 1, top)
        dcg = (gains * discounts[: gains.shape[1]]).sum(1)
        return float((dcg / ideal)[active].mean()) if bool(active.any()) else 0.0

    best, best_w = ndcg(weights), weights.clone()
    for _ in range(rounds):
        for c in range(len(weights)):
            for factor in (0.0, 0.25, 0.5, 0.75, 1.5, 2.0, 4.0, -0.5):
                trial = best_w.clone()
                trial[c] = best_w[c] * factor if best_w[c] != 0 else factor * 0.1
                value = ndcg(trial)
                if value > best + 1e-6:
                    best, best_w = value, trial
    return best_w


def _blended_scores(
    comps: list[Component], weights: dict[str, float], rows: torch.Tensor
) -> torch.Tensor:
    all_items = torch.arange(comps[0].items.shape[0])
    total = torch.zeros(len(rows), len(all_items))
    for c in comps:
        if weights.get(c.name, 0.0):
            total += weights[c.name] * _standardised(c, rows, all_items)
    return total


def _evaluate(
    comps: list[Component],
    weights: dict[str, float],
    train: sp.csr_matrix,
    valid: sp.csr_matrix,
    rows: np.ndarray,
    k: int = 10,
) -> dict[str, float]:
    seen = train.copy()
    tops = []
    for lo in range(0, len(rows), 512):
        chunk = rows[lo : lo + 512]
        scores = _blended_scores(comps, weights, torch.from_numpy(chunk.astype(np.int64)))
        tops.append(top_k_excluding(scores, seen, chunk, k))
    top = np.concatenate(tops) if tops else np.zeros((0, k), np.int64)
    return ranking_metrics(top, valid, rows, train.shape[1], k)


def train_recommender(
    history: ListeningHistory,
    catalogue: Catalogue,
    config: RecommenderConfig | None = None,
    progress: Progress | None = None,
    following: Following | None = None,
) -> Recommender:
    """Train the hybrid; see the package docstring."""
    config = config or RecommenderConfig()
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(min(max(fraction, 0.0), 1.0), message)

    report(0.0, "indexing listens")
    if len(history) == 0:
        raise ValueError("the listening history is empty")
    cat_tracks = catalogue.track_ids.tolist()
    extra = sorted(set(np.unique(history.track_ids).tolist()) - set(cat_tracks))
    track_ids = cat_tracks + extra
    track_index = {t: i for i, t in enumerate(track_ids)}
    artist_ids = sorted(set(catalogue.artist_ids.tolist()) | ({""} if extra else set()))
    artist_index = {a: i for i, a in enumerate(artist_ids)}
    track_artist = np.array(
        [artist_index[a] for a in catalogue.artist_ids.tolist()]
        + [artist_index.get("", 0)] * len(extra),
        dtype=np.int64,
    )
    listener_ids, listener_idx = np.unique(history.listener_ids, return_inverse=True)
    track_idx = np.array([track_index[t] for t in history.track_ids.tolist()], dtype=np.int64)
    shape = (len(listener_ids), len(track_ids))
    follows = None
    if following is not None and len(following):
        # Only listeners with a history have a taste to follow or to be given one
        # (listener_ids is sorted: np.unique).
        ends = []
        for ids in (following.follower_ids, following.followed_ids):
            at = np.minimum(np.searchsorted(listener_ids, ids), len(listener_ids) - 1)
            ends.append((at, listener_ids[at] == ids))
        (follower_at, known_follower), (followed_at, known_followed) = ends
        known = known_follower & known_followed
        follows = following_matrix(follower_at[known], followed_at[known], len(listener_ids))
    strength = listen_strength(history, config)
    prior = None
    if catalogue.popularity is not None:
        prior = np.zeros(len(track_ids))
        prior[: len(catalogue)] = catalogue.popularity
    content = _Content(catalogue, len(track_ids), track_artist, len(artist_ids), config)
    timings["index_s"] = time.perf_counter() - started

    report(0.05, "splitting off the hold-out")
    split = split_holdout(listener_idx, track_idx, strength, history.played_at, shape, config)
    has_train = np.diff(split.train.positive.indptr) > 0
    has_valid = np.diff(split.valid.indptr) > 0
    valid_rows = np.flatnonzero(has_train & has_valid)

    t0 = time.perf_counter()
    comps, basis = _fit_components(
        split.train,
        content,
        prior,
        follows,
        config,
        None,
        lambda m: report(0.15, f"validation fit: {m}"),
    )
    weights: dict[str, float] = {c.name: 1.0 for c in comps}
    metrics: dict[str, Any] = {"validation_listeners": len(valid_rows), "split": split.kind}
    ease_lambda = config.ease_lambdas[0]
    if len(valid_rows):
        rng = np.random.default_rng(config.seed)
        blend_rows = valid_rows
        if len(blend_rows) > config.blend_listeners:
            blend_rows = np.sort(rng.choice(valid_rows, config.blend_listeners, replace=False))
        if basis is not None and len(config.ease_lambdas) > 1:
            report(0.4, "choosing the EASE regularisation")
            best = -1.0
            for lam in config.ease_lambdas:
                c = ease_component(basis, lam)
                ndcg = _evaluate([c], {"ease": 1.0}, split.train.positive, split.valid, blend_rows)[
                    "ndcg@10"
                ]
                if ndcg > best:
                    best, ease_lambda = ndcg, lam
            ease = ease_component(basis, ease_lambda)
            refitted = {"ease": ease}
            if follows is not None:  # following is scored against EASE's tracks
                refitted["following"] = following_component(follows, ease)
            comps = [refitted.get(c.name, c) for c in comps]
        report(0.5, "learning the blend weights")
        parts = [_blend_candidates(comps, split.train.positive, split.valid, blend_rows, config)]
        # More random hold-out folds (their own split and component fits) for the blend to
        # learn from: one fold's weights are noisy. A time split has only one fold.
        for fold in range(1, config.blend_folds if split.kind == "random" else 1):
            fold_report = functools.partial(_report_step, report, 0.5, f"blend fold {fold + 1}")
            fold_config = replace(config, seed=config.seed + fold)
            fold_split = split_holdout(
                listener_idx, track_idx, strength, history.played_at, shape, fold_config
            )
            fold_rows = np.flatnonzero(
                (np.diff(fold_split.train.positive.indptr) > 0)
                & (np.diff(fold_split.valid.indptr) > 0)
            )
            if len(fold_rows) > config.blend_listeners:
                fold_rows = np.sort(rng.choice(fold_rows, config.blend_listeners, replace=False))
            fold_comps, _ = _fit_components(
                fold_split.train,
                content,
                prior,
                follows,
                fold_config,
                ease_lambda,
                fold_report,
            )
            parts.append(
                _blend_candidates(
                    fold_comps, fold_split.train.positive, fold_split.valid, fold_rows, config
                )
            )
        candidates = parts[0] if len(parts) == 1 else _concat_candidates(parts)
        weights = _fit_blend([c.name for c in comps], candidates, config)
        report(0.6, "evaluating on the hold-out")
        metrics.update(_evaluate(comps, weights, split.train.positive, split.valid, valid_rows))
        for c in comps:
            part = _evaluate([c], {c.name: 1.0}, split.train.positive, split.valid, valid_rows)
            metrics[f"{c.name}.ndcg@10"] = part["ndcg@10"]
    timings["validation_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    full = aggregate(listener_idx, track_idx, strength, shape, config)
    if config.refit:
        comps, _ = _fit_components(
            full,
            content,
            prior,
            follows,
            config,
            ease_lambda,
            lambda m: report(0.75, f"final fit: {m}"),
        )
    else:
        # Keep the validation-time components but let them see every listener's history.
        comps = [c for c in comps if c.name in weights]
    timings["final_fit_s"] = time.perf_counter() - t0

    report(0.95, "packaging the model")
    # The served history holds every track the listener heard, skipped ones included (weight
    # 0: excluded from results, never cited as the reason for one).
    pos, neg = full.positive.tocoo(), full.negative.tocoo()
    positive = sp.csr_matrix(
        (
            np.concatenate([pos.data, np.zeros(neg.nnz, np.float32)]),
            (np.concatenate([pos.row, neg.row]), np.concatenate([pos.col, neg.col])),
        ),
        shape=shape,
    )
    positive.sort_indices()
    states = [
        ComponentState(
            c.name,
            c.users.float(),
            c.items.float(),
            None if c.query is None else c.query.float(),
            weights.get(c.name, 0.0),
        )
        for c in comps
    ]
    window: dict[str, Any] = {
        "listens": len(history),
        "listeners": len(listener_ids),
        "tracks": len(track_ids),
        "split": split.kind,
    }
    if history.played_at is not None and len(history):
        window["start"] = _iso(float(history.played_at.min()))
        window["end"] = _iso(float(history.played_at.max()))
        if split.cutoff is not None:
            window["holdout_from"] = _iso(split.cutoff)
    timings["total_s"] = time.perf_counter() - started
    parameters: dict[str, Any] = {
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
        "ease_lambda": ease_lambda,
        "blend_weights": weights,
        "timings": timings,
    }
    model = Recommender(
        listener_ids=listener_ids.tolist(),
        track_ids=track_ids,
        artist_ids=artist_ids,
        track_artist=torch.from_numpy(track_artist),
        history_indptr=torch.from_numpy(positive.indptr.astype(np.int64)),
        history_tracks=torch.from_numpy(positive.indices.astype(np.int64)),
        history_weights=torch.from_numpy(positive.data.astype(np.float32)),
        components=states,
        metrics=metrics,
        data_window=window,
        parameters=parameters,
    )
    report(1.0, "done")
    return model
