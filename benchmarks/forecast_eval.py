"""Forecast accuracy and interval honesty on the NAB series, beside two baselines.

Rolling origin: for each series, `--origins` forecast origins spread evenly over the last
40% of the series; at each, every method sees only the history window before it and
forecasts the next `horizon` steps. Settings: the native 5-minute series (history: the
last 2 weeks, 4032 points; horizon 12 = 1 hour) and hourly means (history: the last 4
weeks, 672 points; horizons 6 and 24 hours). Methods, all on the same windows:

- tunelytics: tunelytics.domain.predict.forecast (model chosen per window by backtest)
- seasonal naive: statsforecast SeasonalNaive, one day as the season
- AutoETS: statsforecast AutoETS with one day as the season on hourly data; on 5-minute
  data with season_length=288 one fit took ~75 s here, so that row fits AutoETS without a
  season (season_length=1); the seasonal naive row keeps the 288-step day.

AutoARIMA is left out: with a 24-hour season one fit took 85-130 s on this machine.

MASE: mean absolute error over the window's mean absolute one-day difference (seasonal
naive in-sample), averaged per series, then over series. Coverage: share of actual values
inside the 80% (and 95%) interval, over all series, origins and steps.

    nice -n 10 .venv/bin/python benchmarks/forecast_eval.py [--origins 6] [--limit N]
        [--baseline-cache /tmp/forecast_baselines.pkl]   # reuse baseline fits across runs
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np
import pandas as pd

from tunelytics.domain.predict import NotEnoughData, forecast

NAB = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nab" / "data"


@dataclass(frozen=True)
class Setting:
    name: str
    rule: str | None  # pandas resample rule, None for native
    history: int
    horizon: int
    season: int
    ets_season: int


SETTINGS = [
    Setting("5min h=12 (1 h)", None, 4032, 12, 288, 1),
    Setting("1h h=6", "1h", 672, 6, 24, 24),
    Setting("1h h=24", "1h", 672, 24, 24, 24),
]
# Origins and baseline fits are shared by the settings of one resolution: baselines
# forecast the longest horizon once and are cut to each.
LONGEST = {None: 12, "1h": 24}
LEVELS = (0.8, 0.95)


def load(path: Path, rule: str | None) -> pd.Series:
    frame = pd.read_csv(path, parse_dates=["timestamp"])
    series = frame.set_index("timestamp")["value"].astype(float)
    series = series[~series.index.duplicated()].sort_index()
    if rule is None:
        return series.resample("5min").mean().interpolate()
    return series.resample(rule).mean().interpolate()


def baselines(
    y: np.ndarray, horizon: int, season: int, ets_season: int
) -> dict[str, tuple[np.ndarray, ...]]:
    from statsforecast.models import AutoETS, SeasonalNaive

    result: dict[str, tuple[np.ndarray, ...]] = {}
    for name, model in (
        ("seasonal naive", SeasonalNaive(season_length=season)),
        ("AutoETS", AutoETS(season_length=ets_season)),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = model.forecast(y=y, h=horizon, level=[80, 95])
        result[name] = tuple(out[k] for k in ("mean", "lo-80", "hi-80", "lo-95", "hi-95"))
    return result


def mine(series: pd.Series, horizon: int) -> tuple[tuple[np.ndarray, ...], str]:
    times = [t.to_pydatetime().replace(tzinfo=UTC) for t in series.index]
    result = forecast(times, series.to_numpy(), horizon, levels=LEVELS)
    bands = [a for band in result.intervals for a in (band.lower, band.upper)]
    return (result.mean, *bands), result.model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--origins", type=int, default=6)
    parser.add_argument("--limit", type=int, default=0, help="only the first N series")
    parser.add_argument(
        "--baseline-cache",
        type=Path,
        default=None,
        help="pickle of baseline forecasts, reused across runs (they do not change)",
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    paths = sorted(NAB.glob("*/*.csv"))
    if args.limit:
        paths = paths[: args.limit]
    methods = ["tunelytics", "seasonal naive", "AutoETS"]
    print(f"{len(paths)} NAB series, {args.origins} origins each; {platform.node()} {date()}")
    table = []
    chosen: dict[str, int] = defaultdict(int)
    seconds: dict[str, float] = defaultdict(float)
    cache: dict[tuple[str, str | None, int], dict[str, tuple[np.ndarray, ...]]] = {}
    if args.baseline_cache and args.baseline_cache.exists():
        cache = pickle.loads(args.baseline_cache.read_bytes())
    for setting in SETTINGS:
        mase: dict[str, list[float]] = defaultdict(list)
        inside: dict[tuple[str, float], list[float]] = defaultdict(list)
        used = 0
        for path in paths:
            series = load(path, setting.rule)
            n = len(series)
            h, m = setting.horizon, setting.season
            first = max(int(n * 0.6), 2 * m + 1)
            last = n - LONGEST[setting.rule]
            if last <= first:
                continue
            origins = np.linspace(first, last, args.origins).astype(int)
            per_method: dict[str, list[float]] = defaultdict(list)
            ok = True
            for origin in origins:
                window = series.iloc[max(0, origin - setting.history) : origin]
                actual = series.iloc[origin : origin + h].to_numpy()
                y = window.to_numpy()
                scale = float(np.abs(y[m:] - y[:-m]).mean()) if len(y) > m else 0.0
                if scale <= 0:
                    ok = False
                    break
                started = time.perf_counter()
                try:
                    bands, model = mine(window, h)
                except NotEnoughData:
                    ok = False
                    break
                seconds["tunelytics"] += time.perf_counter() - started
                chosen[str(model).split("[")[0]] += 1
                outputs: dict[str, tuple[np.ndarray, ...]] = {"tunelytics": bands}
                started = time.perf_counter()
                key = (path.name, setting.rule, int(origin))
                if key not in cache:
                    cache[key] = baselines(y, LONGEST[setting.rule], m, setting.ets_season)
                outputs.update({k: tuple(a[:h] for a in v) for k, v in cache[key].items()})
                seconds["baselines"] += time.perf_counter() - started
                for name, (pm, *limits) in outputs.items():
                    per_method[name].append(float(np.abs(actual - pm).mean()) / scale)
                    for k, level in enumerate(LEVELS):
                        pl, ph = limits[2 * k], limits[2 * k + 1]
                        inside[name, level].extend(((actual >= pl) & (actual <= ph)).astype(float))
            if not ok:
                continue
            used += 1
            for name, values in per_method.items():
                mase[name].append(float(np.mean(values)))
            print(
                f"  {setting.name:16s} {path.stem[:38]:38s} "
                + " ".join(f"{name}={np.mean(per_method[name]):.3f}" for name in methods),
                flush=True,
            )
        for name in methods:
            table.append(
                (
                    setting.name,
                    used,
                    name,
                    np.mean(mase[name]),
                    np.median(mase[name]),
                    np.mean(inside[name, 0.8]),
                    np.mean(inside[name, 0.95]),
                )
            )
        better = {
            name: sum(a < b for a, b in zip(mase["tunelytics"], mase[name], strict=True))
            for name in methods[1:]
        }
        print(
            f"{setting.name}: tunelytics has the lower MASE on "
            + ", ".join(f"{v}/{used} series vs {k}" for k, v in better.items())
        )
    if args.baseline_cache:
        args.baseline_cache.write_bytes(pickle.dumps(cache))
    print()
    print("| setting | series | method | mean MASE | median MASE | 80% coverage | 95% coverage |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in table:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.1%} | {r[6]:.1%} |")
    print()
    print("models chosen by tunelytics:", dict(sorted(chosen.items())))
    print({k: f"{v:.0f} s" for k, v in seconds.items()})


def date() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


if __name__ == "__main__":
    main()
