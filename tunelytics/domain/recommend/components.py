"""The scoring components of the hybrid, each a factorised score ``user . item``.

Every component has item vectors, user vectors for the listeners it was trained on, and a
fold-in matrix ``query`` so that any history row ``x`` (an anonymous session, a listener
who arrived after training) gets a user vector ``x @ query`` without retraining.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from tunelytics.domain.recommend.interactions import Interactions


@dataclass
class Component:
    name: str
    users: torch.Tensor  # (listeners, d)
    items: torch.Tensor  # (tracks, d)
    query: torch.Tensor | None  # (tracks, d); None: the user vector is constant (ones)

    def fold_in(self, rows: torch.Tensor) -> torch.Tensor:
        """User vectors for dense history rows (batch, tracks)."""
        if self.query is None:
            return torch.ones(rows.shape[0], self.items.shape[1])
        return rows @ self.query


def to_torch(matrix: sp.spmatrix) -> torch.Tensor:
    coo = sp.coo_matrix(matrix)
    index = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float32))
    return torch.sparse_coo_tensor(index, values, coo.shape).coalesce()


# --- collaborative: implicit ALS --------------------------------------------------------


def _scatter_rows(rows: np.ndarray, n: int) -> sp.csr_matrix:
    """(n, nnz) 0/1 matrix summing pair values into their rows (scipy: single-threaded and
    fast for this; torch's index_add_ stalls when the cores are shared)."""
    return sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, np.arange(len(rows)))), shape=(n, len(rows))
    )


def _als_half_step(
    current: torch.Tensor,
    fixed: torch.Tensor,
    rows: np.ndarray,
    cols: np.ndarray,
    extra_confidence: torch.Tensor,
    preference: torch.Tensor,
    regularization: float,
    cg_steps: int = 3,
) -> torch.Tensor:
    """Solve every row's weighted least squares by a few conjugate-gradient steps (warm
    started), as in Takacs et al.; only the observed pairs are touched, O(nnz * d)."""
    gram = fixed.T @ fixed + regularization * torch.eye(fixed.shape[1])
    fixed_at = fixed[torch.from_numpy(cols)]
    rows_t = torch.from_numpy(rows)
    scatter = _scatter_rows(rows, current.shape[0])

    def gather(values: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(scatter @ values.numpy(), dtype=np.float32))

    def apply(x: torch.Tensor) -> torch.Tensor:
        inner = (fixed_at * x[rows_t]).sum(1) * extra_confidence
        return x @ gram + gather(inner[:, None] * fixed_at)

    target = gather(((1.0 + extra_confidence) * preference)[:, None] * fixed_at)
    x = current.clone()
    residual = target - apply(x)
    direction = residual.clone()
    rs_old = (residual * residual).sum(1)
    for _ in range(cg_steps):
        a_dir = apply(direction)
        alpha = rs_old / (direction * a_dir).sum(1).clamp_min(1e-20)
        x += alpha[:, None] * direction
        residual -= alpha[:, None] * a_dir
        rs_new = (residual * residual).sum(1)
        direction = residual + (rs_new / rs_old.clamp_min(1e-20))[:, None] * direction
        rs_old = rs_new
    return x


def fit_als(
    data: Interactions,
    factors: int,
    iterations: int,
    regularization: float,
    alpha: float,
    seed: int,
) -> Component:
    """Implicit-feedback matrix factorisation (Hu, Koren, Volinsky 2008): preference 1 with
    confidence 1 + alpha * weight for listened tracks, preference 0 with confidence
    1 + alpha * strength for skip-dominated ones (negative evidence), 0 elsewhere."""
    n_users, n_items = data.shape
    pos = data.positive.tocoo()
    neg = data.negative.tocoo()
    rows = np.concatenate([pos.row, neg.row]).astype(np.int64)
    cols = np.concatenate([pos.col, neg.col]).astype(np.int64)
    confidence = torch.from_numpy(np.concatenate([pos.data, neg.data]).astype(np.float32))
    # alpha is the extra confidence of an average pair, whatever the weighting's scale.
    mean_weight = float(pos.data.mean()) if pos.nnz else 1.0
    confidence = confidence * (alpha / max(mean_weight, 1e-6))
    preference = torch.cat([torch.ones(pos.nnz), torch.zeros(neg.nnz)])
    generator = torch.Generator().manual_seed(seed)
    users = torch.randn(n_users, factors, generator=generator) * 0.01
    items = torch.randn(n_items, factors, generator=generator) * 0.01
    # Regularisation scales with the data so one setting fits small and large tenants.
    reg = regularization * alpha
    for _ in range(iterations):
        users = _als_half_step(users, items, rows, cols, confidence, preference, reg)
        items = _als_half_step(items, users, cols, rows, confidence, preference, reg)
    # Fold-in for unseen histories: the unweighted least-squares solution x @ Y (Y'Y+rI)^-1.
    query = items @ torch.linalg.inv(items.T @ items + reg * torch.eye(factors))
    return Component("als", users, items, query)


# --- collaborative: EASE through a thin SVD ---------------------------------------------


@dataclass
class EaseBasis:
    """The thin SVD of the training matrix, from which EASE follows for any lambda."""

    right: torch.Tensor  # (tracks, r) right singular vectors W
    squared: torch.Tensor  # (r,) squared singular values
    user_coords: torch.Tensor  # (listeners, r) = X W
    scale: float  # mean squared entry of X: lambda is relative to it


def ease_basis(matrix: sp.csr_matrix, rank: int) -> EaseBasis:
    x = matrix.astype(np.float32)
    n_users, n_items = x.shape
    if min(n_users, n_items) <= max(2 * rank, 4000):
        # Exact: eigen-decompose the smaller Gram matrix.
        if n_users <= n_items:
            gram = torch.from_numpy((x @ x.T).toarray())
            squared, left = torch.linalg.eigh(gram)
            keep = torch.argsort(squared, descending=True)[:rank]
            squared, left = squared[keep], left[:, keep]
            keep_pos = squared > 1e-8 * float(squared.max().clamp_min(1e-12))
            squared, left = squared[keep_pos], left[:, keep_pos]
            right = torch.from_numpy(x.T @ left.numpy()) / squared.sqrt()
        else:
            gram = torch.from_numpy((x.T @ x).toarray())
            squared, right = torch.linalg.eigh(gram)
            keep = torch.argsort(squared, descending=True)[:rank]
            squared, right = squared[keep], right[:, keep]
            keep_pos = squared > 1e-8 * float(squared.max().clamp_min(1e-12))
            squared, right = squared[keep_pos], right[:, keep_pos]
    else:
        tensor = to_torch(matrix).double()
        _, values, right = torch.svd_lowrank(tensor, q=min(rank, n_users, n_items), niter=4)
        squared = values**2
        keep = squared > 1e-8 * float(squared.max().clamp_min(1e-12))
        squared, right = squared[keep], right[:, keep]
    right = right.float()
    squared = squared.float()
    user_coords = torch.from_numpy(matrix.astype(np.float32) @ right.numpy())
    scale = float(np.mean(matrix.data.astype(np.float64) ** 2)) if matrix.nnz else 1.0
    return EaseBasis(right, squared, user_coords, scale)


def ease_component(basis: EaseBasis, lam: float) -> Component:
    """EASE (Steck 2019), B = I - P / diag(P) with P = (X'X + lambda I)^-1. With X = U S W',
    P = (I - W diag(s^2/(s^2+lambda)) W') / lambda, so off the listener's own tracks the
    scores x B are (x W) . (W_i f / (1 - sum_k W_ik^2 f_k)) with f = s^2/(s^2+lambda):
    exact at full rank, a low-rank approximation below it."""
    # lambda is given for 0/1 data; weighted listens scale it by their mean square.
    shrink = basis.squared / (basis.squared + lam * basis.scale)
    diag = 1.0 - (basis.right**2 @ shrink)
    items = basis.right * shrink / diag.clamp_min(1e-6)[:, None]
    return Component("ease", basis.user_coords, items, basis.right)


# --- social: the listeners one follows ---------------------------------------------------


def following_matrix(
    follower_idx: np.ndarray, followed_idx: np.ndarray, n_listeners: int
) -> sp.csr_matrix:
    """(listeners, listeners) row-stochastic: each follower's row averages over the distinct
    listeners they follow (themselves excluded); rows of listeners following nobody are 0."""
    keep = follower_idx != followed_idx
    m = sp.csr_matrix(
        (np.ones(int(keep.sum()), np.float32), (follower_idx[keep], followed_idx[keep])),
        shape=(n_listeners, n_listeners),
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    counts = np.diff(m.indptr)
    m.data /= np.repeat(np.maximum(counts, 1), counts).astype(np.float32)
    return m


def following_component(follows: sp.csr_matrix, taste: Component) -> Component:
    """The taste of the listeners one follows: the mean of their listener vectors in a
    collaborative component's space, scored against that component's tracks (the same item
    matrix). Someone who follows nobody, and an anonymous session, get nothing from it."""
    users = follows @ taste.users.numpy()
    return Component(
        "following", torch.from_numpy(np.asarray(users, np.float32)), taste.items, None
    )


# --- content ----------------------------------------------------------------------------


def _token_vectors(tokens: Sequence[str], dims: int, salt: str) -> np.ndarray:
    """A fixed pseudo-random unit vector per token (stable across runs and machines), so
    thousands of artists or genres fit in a few dims with near-orthogonal codes."""
    out = np.empty((len(tokens), dims), dtype=np.float32)
    for i, token in enumerate(tokens):
        seed = zlib.crc32(f"{salt}:{token}".encode())
        v = np.random.default_rng(seed).standard_normal(dims).astype(np.float32)
        out[i] = v / np.linalg.norm(v)
    return out


def _normalise_rows(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.where(norms > 0, m / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


def content_item_vectors(
    kind: str,
    genres: Sequence[Sequence[str]] | None,
    artist_index: np.ndarray,
    n_artists: int,
    audio: np.ndarray | None,
    dims: int,
    audio_dims: int,
) -> np.ndarray | None:
    """Unit item vectors for one content view; None when the catalogue lacks it."""
    n = len(artist_index)
    if kind == "genre":
        if genres is None:
            return None
        vocab = sorted({g for gs in genres for g in gs})
        if not vocab:
            return None
        where = {g: i for i, g in enumerate(vocab)}
        rows = [i for i, gs in enumerate(genres) for _ in gs]
        cols = [where[g] for gs in genres for g in gs]
        incidence = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, len(vocab)))
        # Rare genres say more about a track than "pop" does.
        idf = np.log((1.0 + n) / (1.0 + np.asarray(incidence.sum(0)).ravel())) + 1.0
        weighted = incidence.multiply(idf[None, :]).tocsr()
        if len(vocab) <= dims:
            return _normalise_rows(weighted.toarray())
        return _normalise_rows(weighted @ _token_vectors(vocab, dims, "genre"))
    if kind == "artist":
        if n_artists < 2 or n_artists >= n:  # one artist per track says nothing
            return None
        codes = _token_vectors([str(a) for a in range(n_artists)], dims, "artist")
        return codes[artist_index]
    if kind == "audio":
        if audio is None:
            return None
        emb = audio.astype(np.float32)
        present = np.abs(emb).sum(1) > 0
        if present.sum() < 2:
            return None
        emb = emb - emb[present].mean(0)
        emb[~present] = 0.0
        if emb.shape[1] > audio_dims:
            # Keep the main directions so serving stays a small matmul.
            _, _, vt = np.linalg.svd(emb[present], full_matrices=False)
            emb = emb @ vt[:audio_dims].T
        return _normalise_rows(emb)
    raise ValueError(f"unknown content kind {kind!r}")


def content_component(kind: str, items: np.ndarray, matrix: sp.csr_matrix) -> Component:
    """Score = similarity of a track to the listener's weighted profile of played tracks."""
    item_t = torch.from_numpy(items)
    users = torch.from_numpy(np.asarray(matrix.astype(np.float32) @ items, dtype=np.float32))
    return Component(kind, users, item_t, item_t)


def popularity_component(matrix: sp.csr_matrix, prior: np.ndarray | None) -> Component:
    listeners = np.asarray((matrix > 0).sum(0), dtype=np.float64).ravel()
    if prior is not None:
        listeners = listeners + np.maximum(prior, 0.0)
    score = np.log1p(listeners).astype(np.float32)
    n_users = matrix.shape[0]
    return Component("popularity", torch.ones(n_users, 1), torch.from_numpy(score)[:, None], None)
