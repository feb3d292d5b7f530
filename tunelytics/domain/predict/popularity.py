"""Track popularity: plays of each track over the next 7 days, and which tracks are rising.

Input is a tracks x days matrix of play counts, oldest day first, the last column the
newest day. Only whole weeks are used (7-day totals), so the weekly season cancels out of
every quantity without being estimated.

The model, per track, on the last four weekly totals:

- level: an exponentially weighted mean of the weekly totals (newest weighted most), the
  current weekly rate with the week-to-week Poisson noise smoothed away;
- trend: the ratio of the last 14 days to the 14 before, with empirical-Bayes
  (Gamma-Poisson) shrinkage toward the catalogue's own ratio: a Gamma prior of strength
  `PRIOR_PLAYS` pseudo-plays centred on the catalogue trend, so a track with a handful of
  plays follows the catalogue and a track with hundreds follows its own counts;
- forecast: level x weekly trend, raised to the lag between the smoothed level and the
  next week, damped (`DAMPING`) because growth rarely persists at full strength.

Growth, the "rising" score, is the forecast over the mean weekly plays of the last 28
days, both plus `PRIOR_PLAYS`: one extra play on a 1-play track moves it by a few percent,
not by 100%.

>>> import numpy as np
>>> flat = np.full(28, 10.0)
>>> rising = np.repeat([2.0, 4.0, 8.0, 16.0], 7)
>>> once = np.r_[np.zeros(27), 1.0]
>>> p = predict_popularity(np.vstack([flat, rising, once]))
>>> [round(float(g), 2) for g in p.growth]
[1.02, 2.36, 1.04]
>>> rising_tracks(p, ["flat", "rising", "once"])
[1]
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np

from tunelytics.domain.models import Progress
from tunelytics.domain.predict.errors import NotEnoughData

WEEK = 7
WEEKS = 4
HISTORY_DAYS = WEEK * WEEKS
ALPHA = 0.5  # weight of the newest week in the level
DAMPING = 0.5
PRIOR_PLAYS = 10.0
# A catalogue-wide swing of more than 2x in two weeks is an outage or a launch, not a trend.
CATALOGUE_TREND = (0.5, 2.0)
TRACK_TREND = (0.25, 4.0)
RISING_GROWTH = 1.25  # forecast at least 25% above the track's 28-day weekly mean (shrunk)


@dataclass(frozen=True, slots=True)
class Popularity:
    """Per track (rows of the input): next 7 days' plays, last 7 days' plays, growth."""

    predicted_7d: np.ndarray
    last_7d: np.ndarray
    growth: np.ndarray


def daily_matrix(
    plays: Mapping[tuple[str, date], int], track_ids: list[str], last_day: date, days: int
) -> np.ndarray:
    """Plays per (track, day) as rows of `track_ids` x the `days` days ending at `last_day`."""
    row = {t: i for i, t in enumerate(track_ids)}
    matrix = np.zeros((len(track_ids), days))
    for (track, day), n in plays.items():
        column = days - 1 - (last_day - day) // timedelta(days=1)
        if track in row and 0 <= column < days:
            matrix[row[track], column] += n
    return matrix


@dataclass(frozen=True, slots=True)
class PopularityParameters:
    """What training tunes per tenant (defaults: the values before any training)."""

    alpha: float = ALPHA
    damping: float = DAMPING
    prior_plays: float = PRIOR_PLAYS


DEFAULT_PARAMETERS = PopularityParameters()


def predict_popularity(
    counts: np.ndarray, params: PopularityParameters = DEFAULT_PARAMETERS
) -> Popularity:
    """Forecast the next 7 days from the last 28 days of daily plays per track."""
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError("counts: a tracks x days matrix")
    if c.shape[1] < HISTORY_DAYS:
        raise NotEnoughData(
            f"track popularity needs {HISTORY_DAYS} days of plays, there are {c.shape[1]}"
        )
    alpha, prior_plays = params.alpha, params.prior_plays
    weeks = c[:, -HISTORY_DAYS:].reshape(len(c), WEEKS, WEEK).sum(axis=2)  # oldest first
    weights = alpha * (1 - alpha) ** np.arange(WEEKS - 1, -1, -1)
    level = weeks @ weights / weights.sum()
    # How many weeks the weighted mean lags behind the newest week, plus one to the next.
    lag = float(weights @ np.arange(WEEKS - 1, -1, -1) / weights.sum()) + 1.0

    recent, prior = weeks[:, 2:].sum(axis=1), weeks[:, :2].sum(axis=1)
    total_prior = prior.sum()
    catalogue = recent.sum() / total_prior if total_prior > 0 else 1.0
    catalogue = float(np.clip(catalogue, *CATALOGUE_TREND))
    # Posterior mean of a Poisson rate ratio under a Gamma(k, k / catalogue) prior.
    ratio = (prior_plays * catalogue + recent) / (prior_plays + prior)
    per_week = np.sqrt(np.clip(ratio, *TRACK_TREND))  # the halves' centres are 2 weeks apart
    predicted = level * per_week ** (params.damping * lag)

    mean_week = weeks.mean(axis=1)
    # Growth is shrunk by the fixed PRIOR_PLAYS, not the tuned one: "rising" means the
    # same in every tenant and version.
    growth = (predicted + PRIOR_PLAYS) / (mean_week + PRIOR_PLAYS)
    return Popularity(predicted_7d=predicted, last_7d=weeks[:, -1], growth=growth)


def rising_tracks(p: Popularity, track_ids: list[str], first: int | None = None) -> list[int]:
    """Rows whose growth is at least RISING_GROWTH, fastest first (ties: by track ID)."""
    rows = np.flatnonzero(p.growth >= RISING_GROWTH)
    ranked = sorted(rows.tolist(), key=lambda i: (-float(p.growth[i]), track_ids[i]))
    return ranked if first is None else ranked[:first]


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank (as Spearman's correlation needs)."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2.0  # ranks starts+1 .. ends, averaged
    result = np.empty(len(values))
    result[order] = np.repeat(mean_rank, ends - starts)
    return result


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = ranks(np.asarray(a, float)), ranks(np.asarray(b, float))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


@dataclass(frozen=True, slots=True)
class PopularityEvaluation:
    tracks: int
    mae: float
    mae_naive: float  # "the next 7 days = the last 7 days"
    spearman: float
    spearman_naive: float


def evaluate_popularity(
    counts: np.ndarray,
    cut: int | None = None,
    params: PopularityParameters = DEFAULT_PARAMETERS,
) -> PopularityEvaluation:
    """Fit on days < cut, compare the forecast with the actual plays of days cut..cut+6.

    `cut` defaults to 7 days before the end, the newest week held out.
    """
    c = np.asarray(counts, dtype=np.float64)
    cut = c.shape[1] - WEEK if cut is None else cut
    if cut + WEEK > c.shape[1]:
        raise NotEnoughData(f"the hold-out needs 7 days after day {cut}")
    p = predict_popularity(c[:, :cut], params)
    actual = c[:, cut : cut + WEEK].sum(axis=1)
    return PopularityEvaluation(
        tracks=len(c),
        mae=float(np.abs(p.predicted_7d - actual).mean()),
        mae_naive=float(np.abs(p.last_7d - actual).mean()),
        spearman=spearman(p.predicted_7d, actual),
        spearman_naive=spearman(p.last_7d, actual),
    )


# --- The trained model ----------------------------------------------------------------

FORMAT = "popularity-1"
GRID = {
    "alpha": (0.3, 0.5, 0.7),
    "damping": (0.0, 0.25, 0.5, 0.75, 1.0),
    "prior_plays": (5.0, 10.0, 20.0),
}
MAX_VALIDATION_WEEKS = 6
TRAINING_DAYS = HISTORY_DAYS + WEEK * (MAX_VALIDATION_WEEKS + 1)


@dataclass(frozen=True, slots=True)
class DailyPlays:
    """A tenant's plays per (track, UTC day), and the day the read was made."""

    plays: Mapping[tuple[str, date], int]
    today: date

    def matrix(self, days: int) -> tuple[list[str], np.ndarray]:
        """Track IDs and their daily plays over the `days` days up to the newest complete
        UTC day (or the newest day with plays, when the data stops earlier)."""
        if not self.plays:
            raise NotEnoughData("no listens in the period read")
        last_day = min(self.today - timedelta(days=1), max(day for _, day in self.plays))
        span = (last_day - min(day for _, day in self.plays)).days + 1
        if span < HISTORY_DAYS:
            raise NotEnoughData(
                f"track popularity needs {HISTORY_DAYS} days of listens, the tenant has {span}"
            )
        ids = sorted({track for track, _ in self.plays})
        return ids, daily_matrix(self.plays, ids, last_day, min(days, span))


@dataclass(frozen=True, slots=True)
class TrackPopularity:
    track_id: str
    predicted_7d: float
    last_7d: float
    growth: float


@dataclass(frozen=True, slots=True)
class PopularityScores:
    by_track: dict[str, TrackPopularity]
    rising: list[TrackPopularity]


class PopularityModel:
    """The tenant's tuned parameters; scores the latest 28 days of plays when asked."""

    def __init__(
        self,
        params: PopularityParameters = DEFAULT_PARAMETERS,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        self.params = params
        self.metrics: dict[str, Any] = metrics or {}

    @property
    def parameters(self) -> dict[str, float]:
        """Recorded with the registry entry."""
        return asdict(self.params)

    def score(self, batches: Sequence[DailyPlays]) -> list[PopularityScores]:
        """The batch call the model server makes: every track of each read, and the rising."""
        result = []
        for daily in batches:
            ids, counts = daily.matrix(HISTORY_DAYS)
            p = predict_popularity(counts, self.params)
            scores = [
                TrackPopularity(
                    t, float(p.predicted_7d[i]), float(p.last_7d[i]), float(p.growth[i])
                )
                for i, t in enumerate(ids)
            ]
            result.append(
                PopularityScores(
                    by_track={s.track_id: s for s in scores},
                    rising=[scores[i] for i in rising_tracks(p, ids)],
                )
            )
        return result

    def to_bytes(self) -> bytes:
        state = {"format": FORMAT, "params": asdict(self.params), "metrics": self.metrics}
        return json.dumps(state).encode()

    @staticmethod
    def from_bytes(data: bytes) -> PopularityModel:
        state = json.loads(data)
        if state.get("format") != FORMAT:
            raise ValueError(f"unsupported popularity model format {state.get('format')!r}")
        return PopularityModel(PopularityParameters(**state["params"]), dict(state["metrics"]))


def train_popularity(daily: DailyPlays, progress: Progress | None = None) -> PopularityModel:
    """Parameters tuned on rolling weekly origins, then measured on the newest week.

    The newest 7 days are the hold-out, touched only once, at the end: MAE and Spearman
    of the tuned model beside the naive "next 7 days = last 7 days". Before it, up to
    MAX_VALIDATION_WEEKS earlier weeks are each forecast from the 28 days before them;
    the grid point with the lowest mean MAE over them wins. With no room for a
    validation week (under 42 days), the defaults are kept and said so.
    """
    step = progress or (lambda _f, _m: None)
    _, counts = daily.matrix(TRAINING_DAYS)
    days = counts.shape[1]
    if days < HISTORY_DAYS + WEEK:
        raise NotEnoughData(
            f"a popularity hold-out needs {HISTORY_DAYS + WEEK} days of listens, there are {days}"
        )
    test_cut = days - WEEK
    cuts = [c for c in range(test_cut - WEEK, HISTORY_DAYS - 1, -WEEK)][:MAX_VALIDATION_WEEKS]
    notes: dict[str, Any] = {}
    best = DEFAULT_PARAMETERS
    if cuts:
        grid = [
            PopularityParameters(a, d, k)
            for a in GRID["alpha"]
            for d in GRID["damping"]
            for k in GRID["prior_plays"]
        ]
        errors = []
        for i, params in enumerate(grid):
            errors.append(np.mean([evaluate_popularity(counts, c, params).mae for c in cuts]))
            step(0.9 * (i + 1) / len(grid), f"tuning on {len(cuts)} validation weeks")
        best = grid[int(np.argmin(errors))]
    else:
        notes["tuning"] = "defaults kept: no room for a validation week before the hold-out"
    held = evaluate_popularity(counts, test_cut, best)
    metrics: dict[str, Any] = {
        "mae": held.mae,
        "mae_naive": held.mae_naive,
        "spearman": held.spearman,
        "spearman_naive": held.spearman_naive,
        "holdout_tracks": held.tracks,
        "validation_weeks": len(cuts),
        **notes,
    }
    step(1.0, "trained")
    return PopularityModel(best, metrics)
