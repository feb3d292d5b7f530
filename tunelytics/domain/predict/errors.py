"""Why a forecast is refused."""

from __future__ import annotations


class NotEnoughData(ValueError):
    """The history cannot support the forecast asked for; no number is made up instead."""
