"""A/B comparison of two groups of listeners on one metric, over the range.

- LISTENS_PER_LISTENER, LISTENING_TIME: one value per listener of the group (its listens,
  or its ms played, in the range; 0 for a member without listens), compared by Welch's
  t-test (unequal variances). The effect is mean(B) - mean(A), its confidence interval
  from the Welch-Satterthwaite degrees of freedom; Cohen's d uses the pooled SD.
- SKIP_RATE: skipped listens / listens of each group, compared by the two-proportion
  z-test (pooled under H0); the interval for pB - pA is the unpooled Wald interval. It
  treats listens as independent, which a listener's own listens are not quite.

Lift is effect / A's value. Groups too small for the test raise NotEnoughData: fewer than
MIN_LISTENERS listeners in a group, or, for rates, fewer than 5 expected skips or
non-skips in a group (the normal approximation would not hold); no number is made up.

>>> r = compare_means([1.0, 2, 3, 4, 5], [3.0, 4, 5, 6, 7], 0.95)
>>> round(r.effect, 3), round(r.p_value, 4), round(r.cohens_d, 3), r.test
(2.0, 0.0805, 1.265, 'welch_t')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np

from tunelytics.domain.predict.errors import NotEnoughData

MIN_LISTENERS = 5
MIN_EXPECTED = 5


class Metric(Enum):
    LISTENS_PER_LISTENER = "LISTENS_PER_LISTENER"
    SKIP_RATE = "SKIP_RATE"
    LISTENING_TIME = "LISTENING_TIME"


@dataclass(frozen=True, slots=True)
class Comparison:
    test: str  # "welch_t" or "two_proportion_z"
    value_a: float
    value_b: float
    effect: float  # B - A
    lower: float
    upper: float
    level: float
    p_value: float
    lift: float | None  # effect / value_a; None when A's value is 0
    cohens_d: float | None  # means only
    n_a: int  # listeners (means) or listens (rates)
    n_b: int


def _lift(effect: float, base: float) -> float | None:
    return effect / base if base else None


def compare_means(a: list[float], b: list[float], level: float) -> Comparison:
    from scipy import stats  # here: it adds a second to the server's start-up

    if min(len(a), len(b)) < MIN_LISTENERS:
        raise NotEnoughData(
            f"groups of {len(a)} and {len(b)} listeners; each needs {MIN_LISTENERS}"
        )
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    va, vb = xa.var(ddof=1) / len(xa), xb.var(ddof=1) / len(xb)
    if va + vb == 0:
        raise NotEnoughData("both groups are constant: the test is undefined")
    effect = float(xb.mean() - xa.mean())
    result = stats.ttest_ind(xb, xa, equal_var=False)
    df = (va + vb) ** 2 / (va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(va + vb)
    pooled = math.sqrt(
        ((len(xa) - 1) * xa.var(ddof=1) + (len(xb) - 1) * xb.var(ddof=1)) / (len(xa) + len(xb) - 2)
    )
    return Comparison(
        test="welch_t",
        value_a=float(xa.mean()),
        value_b=float(xb.mean()),
        effect=effect,
        lower=effect - half,
        upper=effect + half,
        level=level,
        p_value=float(result.pvalue),
        lift=_lift(effect, float(xa.mean())),
        cohens_d=effect / pooled if pooled else None,
        n_a=len(xa),
        n_b=len(xb),
    )


def compare_rates(hits_a: int, n_a: int, hits_b: int, n_b: int, level: float) -> Comparison:
    from scipy import stats

    for name, hits, n in (("A", hits_a, n_a), ("B", hits_b, n_b)):
        if min(hits, n - hits) < MIN_EXPECTED:
            raise NotEnoughData(
                f"group {name}: {hits} of {n} listens skipped; the test needs at least "
                f"{MIN_EXPECTED} skipped and {MIN_EXPECTED} not skipped"
            )
    pa, pb = hits_a / n_a, hits_b / n_b
    pooled = (hits_a + hits_b) / (n_a + n_b)
    z = (pb - pa) / math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    half = float(stats.norm.ppf(0.5 + level / 2)) * math.sqrt(
        pa * (1 - pa) / n_a + pb * (1 - pb) / n_b
    )
    effect = pb - pa
    return Comparison(
        test="two_proportion_z",
        value_a=pa,
        value_b=pb,
        effect=effect,
        lower=effect - half,
        upper=effect + half,
        level=level,
        p_value=float(2 * stats.norm.sf(abs(z))),
        lift=_lift(effect, pa),
        cohens_d=None,
        n_a=n_a,
        n_b=n_b,
    )
