"""Predictions: forecasts of series with honest intervals (and, later, listener churn)."""

from tunelytics.domain.predict.errors import NotEnoughData
from tunelytics.domain.predict.forecast import Backtest, Forecast, Interval, forecast

__all__ = ["Backtest", "Forecast", "Interval", "NotEnoughData", "forecast"]
