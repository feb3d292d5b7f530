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

from tunelytics.domain.models import DataWindow, ModelKind, Progress, Trainer, TrainingFailed
from tunelytics.domain.predict.churn import ChurnModel, ListenHistory, train_churn
from tunelytics.domain.predict.errors import NotEnoughData
from tunelytics.domain.predict.popularity import DailyPlays, PopularityModel, train_popularity
from tunelytics.storage import Storage
from tunelytics.storage.audio import SoundTrainingData, read_sound_training_data
from tunelytics.storage.predictions import (
    history_window,
    plays_window,
    read_churn_history,
    read_daily_plays,
)
from tunelytics.storage.training_data import RecommenderData, read_recommender_data

if TYPE_CHECKING:
    from tunelytics.domain.audio.classify import GenreClassifier
    from tunelytics.domain.recommend import Recommender

# The models import torch when first trained or loaded, not at start-up: the API is up
# seconds sooner.


def _fit_recommender(
    data: RecommenderData, params: dict[str, Any], progress: Progress
) -> Recommender:
    from tunelytics.domain.recommend import RecommenderConfig, train_recommender

    config = RecommenderConfig(**params) if params else None
    return train_recommender(
        data.history, data.catalogue, config=config, progress=progress, following=data.following
    )


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


def _fit_churn(data: ListenHistory, _params: dict[str, Any], progress: Progress) -> ChurnModel:
    try:
        return train_churn(data, progress)
    except NotEnoughData as error:
        raise TrainingFailed(f"not enough data: {error}") from None


def _fit_popularity(
    data: DailyPlays, _params: dict[str, Any], progress: Progress
) -> PopularityModel:
    try:
        return train_popularity(data, progress)
    except NotEnoughData as error:
        raise TrainingFailed(f"not enough data: {error}") from None


# Churn and popularity learn a handful of numbers (a calibrated logistic model; three
# smoothing parameters); serving applies them to features read at request time.
CHURN: Trainer[ListenHistory, ChurnModel, Storage] = Trainer(
    kind=ModelKind.CHURN,
    read=read_churn_history,
    fit=_fit_churn,
    load=ChurnModel.from_bytes,
    window=history_window,
)

POPULARITY: Trainer[DailyPlays, PopularityModel, Storage] = Trainer(
    kind=ModelKind.POPULARITY,
    read=read_daily_plays,
    fit=_fit_popularity,
    load=PopularityModel.from_bytes,
    window=plays_window,
)


def _sound_trainer(kind: ModelKind) -> Trainer[SoundTrainingData, GenreClassifier, Storage]:
    """Genre and mood: the CNN on labelled tracks' stored log-mel inputs (storage/audio.py);
    `params` are TrainConfig fields."""

    async def read(storage: Storage, tenant_id: str) -> SoundTrainingData:
        return await read_sound_training_data(storage, tenant_id, kind)

    def fit(data: SoundTrainingData, params: dict[str, Any], progress: Progress) -> GenreClassifier:
        from tunelytics.domain.audio.classify import GenreClassifier, TrainConfig

        if len(set(data.labels)) < 2 or len(data.labels) < 4:
            raise TrainingFailed(
                f"not enough data: {kind.value} needs analysed tracks with at least two "
                f"different labels (labelTrackAudio), has {len(data.labels)} labelled tracks "
                f"with {len(set(data.labels))} labels"
            )
        return GenreClassifier.fit(data.inputs, data.labels, TrainConfig(**params), progress)

    def load(artifact: bytes) -> GenreClassifier:
        from tunelytics.domain.audio.classify import GenreClassifier

        return GenreClassifier.from_bytes(artifact)

    return Trainer(kind=kind, read=read, fit=fit, load=load, window=lambda data: data.window)


GENRE = _sound_trainer(ModelKind.GENRE)
MOOD = _sound_trainer(ModelKind.MOOD)

TRAINERS: dict[ModelKind, Trainer[Any, Any, Storage]] = {
    ModelKind.RECOMMENDER: RECOMMENDER,
    ModelKind.CHURN: CHURN,
    ModelKind.POPULARITY: POPULARITY,
    ModelKind.GENRE: GENRE,
    ModelKind.MOOD: MOOD,
}
