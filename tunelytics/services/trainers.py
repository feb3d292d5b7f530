"""The trainer of each model kind: the one place a new kind is plugged in.

To add a kind: add a ModelKind member (domain/models.py), write its `read` (storage: a
bounded, projected read of the tenant's data), `fit` (pure, CPU-heavy, calls
`progress(fraction, message)`; returns an object with `.metrics` and `.to_bytes()`) and
`load` (bytes -> model), and add a Trainer to TRAINERS. Training jobs, the registry,
activation across replicas and micro-batched serving (`Served.call(method, item,
**arguments)` calls `model.method([items...], **arguments)`) then work unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunelytics.domain.models import DataWindow, ModelKind, Progress, Trainer
from tunelytics.storage import Storage
from tunelytics.storage.training_data import RecommenderData, read_recommender_data

if TYPE_CHECKING:
    from tunelytics.domain.recommend import Recommender

# The models import torch when first trained or loaded, not at start-up: the API is up
# seconds sooner.


def _fit_recommender(
    data: RecommenderData, params: dict[str, Any], progress: Progress
) -> Recommender:
    from tunelytics.domain.recommend import RecommenderConfig, train_recommender

    config = RecommenderConfig(**params) if params else None
    return train_recommender(data.history, data.catalogue, config=config, progress=progress)


def _load_recommender(artifact: bytes) -> Recommender:
    from tunelytics.domain.recommend import Recommender

    return Recommender.from_bytes(artifact)


def _window(data: RecommenderData) -> DataWindow:
    return data.window


RECOMMENDER: Trainer[RecommenderData, Recommender, Storage] = Trainer(
    kind=ModelKind.RECOMMENDER,
    read=read_recommender_data,
    fit=_fit_recommender,
    load=_load_recommender,
    window=_window,
)

TRAINERS: dict[ModelKind, Trainer[Any, Any, Storage]] = {ModelKind.RECOMMENDER: RECOMMENDER}
