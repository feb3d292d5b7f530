"""The genre classifier on generated classes: it learns them, its probabilities are
calibrated distributions, and its state round-trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tunelytics.domain.audio.classify import GenreClassifier, TrainConfig, fit_temperature
from tunelytics.domain.audio.features import AudioFeatures
from tunelytics.domain.audio.synth import Style, synthesize

SR = 22050


def _mels(style: Style, count: int, seed: int) -> list[torch.Tensor]:
    frontend = AudioFeatures()
    out = []
    for i in range(count):
        wave = synthesize(style, 3.2, SR, seed=seed + i).astype(np.float32)
        with torch.inference_mode():
            out.append(frontend(torch.from_numpy(wave)[None]).log_mel[0].clone())
    return out


@pytest.mark.timeout(600)  # CPU training on a shared 2-core box
def test_learns_generated_genres_and_round_trips() -> None:
    soft = Style(tempo=70, brightness=0.1, drums=0.0, attack=0.3)
    loud = Style(tempo=135, brightness=1.0, drums=1.0, noise=0.3)
    train = _mels(soft, 5, 0) + _mels(loud, 5, 100)
    labels = ["ambient"] * 5 + ["rock"] * 5
    model = GenreClassifier.fit(train, labels, TrainConfig(epochs=15, seed=1))
    held_out = _mels(soft, 2, 50) + _mels(loud, 2, 150)
    truth = ["ambient", "ambient", "rock", "rock"]
    guesses = []
    for mel in held_out:
        probs = model.predict_proba(mel)
        assert set(probs) == {"ambient", "rock"} and abs(sum(probs.values()) - 1) < 1e-6
        guesses.append(max(probs, key=probs.__getitem__))
    assert guesses == truth
    assert model.temperature > 0
    again = GenreClassifier.from_state(model.state())
    assert again.predict_proba(held_out[0]) == model.predict_proba(held_out[0])
    assert len(model.embedding(held_out[0])) == 64


def test_temperature_scaling_softens_overconfident_logits() -> None:
    torch.manual_seed(0)
    targets = torch.randint(0, 3, (400,))
    # Right 70% of the time but with huge margins: the fitted temperature must exceed 1.
    predicted = torch.where(torch.rand(400) < 0.7, targets, (targets + 1) % 3)
    logits = torch.nn.functional.one_hot(predicted, 3).float() * 12.0
    temperature = fit_temperature(logits, targets)
    assert temperature > 2.0
    probs = torch.softmax(logits / temperature, -1).max(-1).values
    assert abs(float(probs.mean()) - 0.7) < 0.1
