"""The recommender's inputs and outputs: columnar listening history, catalogue, results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def _column(values: object, n: int, what: str, dtype: type | str) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    if array.shape != (n,):
        raise ValueError(f"{what} must have one value per listen ({n}), got shape {array.shape}")
    return array


@dataclass
class ListeningHistory:
    """One row per listen (or per listener-track pair with a play count in ``plays``).

    ``played_at`` is datetime64 or float seconds (None: no time order, the hold-out is then
    random). Completion comes from ``completion`` (0..1) or ``ms_played / duration_ms``;
    when neither is given every listen counts as complete. ``skipped`` marks skips, which
    count as negative evidence. ``plays`` repeats a row (aggregated data such as Last.fm).
    """

    listener_ids: np.ndarray
    track_ids: np.ndarray
    played_at: np.ndarray | None = None
    ms_played: np.ndarray | None = None
    duration_ms: np.ndarray | None = None
    completion: np.ndarray | None = None
    skipped: np.ndarray | None = None
    plays: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.listener_ids = np.asarray(self.listener_ids).astype(str)
        self.track_ids = np.asarray(self.track_ids).astype(str)
        n = len(self.listener_ids)
        if self.track_ids.shape != (n,):
            raise ValueError("listener_ids and track_ids must have the same length")
        if self.played_at is not None:
            at = np.asarray(self.played_at)
            if np.issubdtype(at.dtype, np.datetime64):
                at = at.astype("datetime64[ms]").astype(np.int64) / 1000.0
            self.played_at = _column(at, n, "played_at", np.float64)
        for name in ("ms_played", "duration_ms", "completion", "plays"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _column(value, n, name, np.float64))
        if self.skipped is not None:
            self.skipped = _column(self.skipped, n, "skipped", bool)

    def __len__(self) -> int:
        return len(self.listener_ids)

    def completion_ratio(self) -> FloatArray:
        """How much of each listen was heard, 0..1 (1 when unknown)."""
        if self.completion is not None:
            ratio = self.completion
        elif self.ms_played is not None and self.duration_ms is not None:
            ratio = self.ms_played / np.maximum(self.duration_ms, 1.0)
        else:
            ratio = np.ones(len(self))
        return np.clip(np.nan_to_num(ratio, nan=1.0), 0.0, 1.0)

    def subset(self, mask: np.ndarray) -> ListeningHistory:
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[mask]

        return ListeningHistory(
            self.listener_ids[mask],
            self.track_ids[mask],
            pick(self.played_at),
            pick(self.ms_played),
            pick(self.duration_ms),
            pick(self.completion),
            pick(self.skipped),
            pick(self.plays),
        )


@dataclass
class Catalogue:
    """The tracks that can be recommended, with their content.

    ``genres`` is one list of tags per track, ``popularity`` an optional prior (e.g. listen
    counts from outside the history), ``audio_embeddings`` an optional (tracks, dims) matrix
    from the audio model (rows of zeros or NaN: no audio for that track).
    """

    track_ids: np.ndarray
    artist_ids: np.ndarray
    genres: Sequence[Sequence[str]] | None = None
    popularity: np.ndarray | None = None
    audio_embeddings: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.track_ids = np.asarray(self.track_ids).astype(str)
        self.artist_ids = np.asarray(self.artist_ids).astype(str)
        n = len(self.track_ids)
        if self.artist_ids.shape != (n,):
            raise ValueError("track_ids and artist_ids must have the same length")
        if len(set(self.track_ids.tolist())) != n:
            raise ValueError("track_ids must be unique")
        if self.genres is not None and len(self.genres) != n:
            raise ValueError("genres must have one list per track")
        if self.popularity is not None:
            self.popularity = _column(self.popularity, n, "popularity", np.float64)
        if self.audio_embeddings is not None:
            emb = np.asarray(self.audio_embeddings, dtype=np.float32)
            if emb.ndim != 2 or emb.shape[0] != n:
                raise ValueError("audio_embeddings must be a (tracks, dims) matrix")
            self.audio_embeddings = np.nan_to_num(emb)

    def __len__(self) -> int:
        return len(self.track_ids)


@dataclass
class Following:
    """Who follows whom among the listeners: one row per (follower, followed) pair. What the
    listeners one follows play is evidence of one's own taste (friends share music); a
    mutual friendship is two rows."""

    follower_ids: np.ndarray
    followed_ids: np.ndarray

    def __post_init__(self) -> None:
        self.follower_ids = np.asarray(self.follower_ids).astype(str)
        self.followed_ids = np.asarray(self.followed_ids).astype(str)
        if self.followed_ids.shape != self.follower_ids.shape or self.follower_ids.ndim != 1:
            raise ValueError("follower_ids and followed_ids must have the same length")

    def __len__(self) -> int:
        return len(self.follower_ids)


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One recommended track; ``because`` is the track the reason refers to, if any."""

    track_id: str
    score: float
    reason: str
    because: str | None = None


@dataclass(frozen=True)
class RecommenderConfig:
    # Collaborative: implicit ALS (weighted matrix factorisation) trained with PyTorch.
    factors: int = 64
    als_iterations: int = 12
    als_regularization: float = 5.0  # times als_alpha
    als_alpha: float = 10.0
    # Collaborative: EASE (closed-form item-item) through a thin SVD; the rank bounds the
    # serving embedding, lambdas are chosen on the validation split.
    ease_rank: int = 256
    ease_lambdas: tuple[float, ...] = (25.0, 50.0, 100.0, 200.0, 400.0, 800.0)
    # Implicit feedback: a listen counts by how much of it was heard; repeats add up on a
    # log scale; a skip subtracts skip_penalty of a full listen.
    repetition_weight: float = 1.0
    skip_penalty: float = 1.0
    min_completion: float = 0.3
    # How the collaborative models (ALS, EASE) weigh that evidence: "bm25" (saturated per
    # pair, scaled by the track's inverse listener frequency and the listener's history
    # length; Robertson's k1 and b) or "plain" (the evidence as aggregated).
    confidence_weighting: str = "bm25"
    bm25_k1: float = 100.0
    bm25_b: float = 0.8
    # Content: random-projection sizes for genres and artists.
    content_dims: int = 64
    audio_dims: int = 64
    # Time-based hold-out for validation: the latest fraction of listens (random when the
    # history has no times).
    holdout_fraction: float = 0.2
    blend_listeners: int = 768
    blend_top: int = 100  # per component: the candidates the blend learns to re-rank
    # Random hold-out folds the blend learns from (each one more fit of the components).
    blend_folds: int = 2
    blend_steps: int = 30
    refit: bool = True
    seed: int = 0
    components: tuple[str, ...] = field(
        default=("als", "ease", "following", "genre", "artist", "audio", "popularity")
    )
