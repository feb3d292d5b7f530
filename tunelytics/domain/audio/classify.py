"""Genre / mood classification: a small CNN on log-mel windows, calibrated by temperature.

Per tenant, from tracks that carry labels. Training crops random ~3 s windows from each
track's log-mel (with SpecAugment-style band and time masks), each window standardised on
its own so gain does not matter; the network pools its last feature maps globally (mean
and max over time and frequency). Training stops early on a stratified validation split,
which then fits the temperature that calibrates the probabilities (Guo et al. 2017).
Prediction averages the window logits over the track. The penultimate layer, averaged
over windows, is the track's learned audio embedding (similarity by sound, and the
recommender's content side).

>>> import torch
>>> torch.manual_seed(0) and None
>>> mels = [torch.randn(128, 130) + torch.linspace(-9, 9, 128)[:, None] * (1 if i % 2 else -1)
...         for i in range(8)]
>>> labels = ["bright" if i % 2 else "dark" for i in range(8)]
>>> model = GenreClassifier.fit(mels, labels, TrainConfig(epochs=4, seed=0))
>>> model.describe([mels[1]])[0].label
'bright'
"""

from __future__ import annotations

import asyncio
import copy
import io
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from tunelytics.domain.audio.analysis import AudioAnalysis, AudioRepository
    from tunelytics.domain.audio.decode import AudioLimits

    class InputRepository(AudioRepository, Protocol):
        """Where analyses go, and the classifier inputs beside them."""

        async def save_input(self, tenant_id: str, track_id: str, log_mel: Tensor) -> None: ...


WINDOW = 128  # frames (~3 s at 22050 Hz, hop 512)
# What is kept of a track for training and re-scoring: its middle ~24 s (8 windows).
MAX_INPUT_FRAMES = 8 * WINDOW
PREDICTION_WINDOWS = 8
# Stored inputs are dB below the track's peak in 256 steps (PowerToDB floors at 80 dB).
INPUT_RANGE_DB = 80.0

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40
    patience: int = 8  # epochs without a better validation loss before stopping
    windows_per_track: int = 8
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 1e-3
    validation_share: float = 0.2
    embedding_size: int = 64
    band_mask: int = 12  # SpecAugment: up to this many mel bands masked per window
    time_mask: int = 24  # and up to this many frames
    seed: int = 0


class GenreNet(nn.Module):
    """(batch, n_mels, frames) log-mel dB -> (logits, embedding)."""

    def __init__(self, n_classes: int, embedding_size: int = 64) -> None:
        super().__init__()
        self.embedding_size = embedding_size
        layers: list[nn.Module] = []
        channels = 1
        for width in (16, 32, 64):
            layers += [
                nn.Conv2d(channels, width, 3, padding=1),
                # Cumulative statistics: a tenant model trains for few steps.
                nn.BatchNorm2d(width, momentum=None),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * channels, embedding_size))
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.2), nn.Linear(embedding_size, n_classes))

    def forward(self, log_mel: Tensor) -> tuple[Tensor, Tensor]:
        x = log_mel.float()
        # Each window on its own scale: level and gain differences carry no class.
        x = (x - x.mean((-2, -1), keepdim=True)) / x.std((-2, -1), keepdim=True).clamp(min=1.0)
        # A quarter of the mel bands and half the frames: wider bands and ~46 ms steps
        # carry timbre and rhythm at a quarter of the CPU.
        x = self.features(F.avg_pool2d(x.unsqueeze(1), (4, 2)))
        pooled = torch.cat([x.mean((-2, -1)), x.amax((-2, -1))], -1)
        embedding = self.embed(pooled)
        return self.head(embedding), embedding


def _windows(log_mel: Tensor, count: int, rng: np.random.Generator | None) -> Tensor:
    frames = log_mel.shape[-1]
    if frames < WINDOW:
        log_mel = F.pad(log_mel.float(), (0, WINDOW - frames), value=float(log_mel.min()))
        frames = WINDOW
    if rng is None:  # evenly spaced, for prediction
        starts = np.linspace(0, frames - WINDOW, count).round().astype(int)
    else:
        starts = rng.integers(0, frames - WINDOW + 1, size=count)
    return torch.stack([log_mel[:, s : s + WINDOW] for s in starts]).float()


def _augment(x: Tensor, config: TrainConfig, rng: np.random.Generator) -> Tensor:
    """One band mask and one time mask per window, filled with the window's mean."""
    x = x.clone()
    bands, frames = x.shape[-2:]
    for w in range(len(x)):
        fill = x[w].mean()
        width = int(rng.integers(0, config.band_mask + 1))
        low = int(rng.integers(0, bands - width + 1))
        x[w, low : low + width, :] = fill
        width = int(rng.integers(0, config.time_mask + 1))
        start = int(rng.integers(0, frames - width + 1))
        x[w, :, start : start + width] = fill
    return x


def fit_temperature(logits: Tensor, targets: Tensor) -> float:
    """The temperature minimising validation NLL (one scalar, LBFGS on its log)."""
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 10
) -> float:
    """Share-weighted gap between confidence and accuracy over equal-width bins."""
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for low, high in itertools.pairwise(edges):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def _calibration(logits: Tensor, targets: Tensor) -> dict[str, float]:
    """Validation accuracy and ECE, before and after temperature scaling. The calibrated
    ECE is cross-fitted (temperature from one half, measured on the other, both ways),
    so it is not measured on the very tracks that chose the temperature."""
    right = (logits.argmax(-1) == targets).numpy()
    raw = torch.softmax(logits, -1).amax(-1).numpy()
    metrics = {
        "validation_tracks": float(len(targets)),
        "validation_accuracy": float(right.mean()),
        "ece_uncalibrated": expected_calibration_error(raw, right),
    }
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(0))
    halves = [order[: len(order) // 2], order[len(order) // 2 :]]
    if min(len(h) for h in halves) >= 2:
        confidence = np.zeros(len(targets))
        for fit_on, measure_on in (halves, halves[::-1]):
            t = fit_temperature(logits[fit_on], targets[fit_on])
            confidence[measure_on.numpy()] = (
                torch.softmax(logits[measure_on] / t, -1).amax(-1).numpy()
            )
        metrics["ece"] = expected_calibration_error(confidence, right)
    return metrics


@dataclass(frozen=True)
class SoundDescription:
    """One track under one model: calibrated probabilities and the learned embedding."""

    label: str
    probabilities: dict[str, float]
    embedding: list[float]


class GenreClassifier:
    """A trained genre (or mood) model; `metrics` and `to_bytes` make it a registry model,
    `describe([inputs])` is its batched serving call."""

    def __init__(
        self,
        labels: list[str],
        net: GenreNet,
        temperature: float = 1.0,
        metrics: dict[str, float] | None = None,
    ) -> None:
        self.labels, self.net, self.temperature = labels, net, temperature
        self.metrics: dict[str, float] = dict(metrics or {})
        self.net.eval()

    @classmethod
    def fit(
        cls,
        log_mels: list[Tensor],
        labels: list[str],
        config: TrainConfig | None = None,
        progress: Progress | None = None,
    ) -> GenreClassifier:
        config = config or TrainConfig()
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise ValueError("training needs at least two labels")
        torch.manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        target = torch.tensor([classes.index(label) for label in labels])
        # Stratified validation split: early stopping, then the temperature.
        validation: list[int] = []
        for c in range(len(classes)):
            members = rng.permutation(np.flatnonzero(target.numpy() == c))
            take = math.floor(config.validation_share * len(members))
            validation += members[: max(take, 1) if len(members) > 2 else 0].tolist()
        held = set(validation)
        training = [i for i in range(len(labels)) if i not in held]
        net = GenreNet(len(classes), config.embedding_size)
        optimizer = torch.optim.AdamW(
            net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        model = cls(classes, net)
        val_windows = [_windows(log_mels[i], PREDICTION_WINDOWS, None) for i in validation]
        best: tuple[float, dict[str, Tensor]] | None = None
        stale = 0
        for epoch in range(config.epochs):
            net.train()
            x = torch.cat([_windows(log_mels[i], config.windows_per_track, rng) for i in training])
            x = _augment(x, config, rng)
            y = target[training].repeat_interleave(config.windows_per_track)
            order = torch.randperm(len(y))
            for first in range(0, len(y), config.batch_size):
                batch = order[first : first + config.batch_size]
                if len(batch) < 2:
                    continue
                logits, _ = net(x[batch])
                loss = F.cross_entropy(logits, y[batch], label_smoothing=0.05)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if progress is not None:
                progress((epoch + 1) / config.epochs, f"epoch {epoch + 1} of {config.epochs}")
            if not validation:
                continue
            with torch.no_grad():
                val_loss = float(F.cross_entropy(model._logits(val_windows), target[validation]))
            if best is None or val_loss < best[0] - 1e-4:
                best, stale = (val_loss, copy.deepcopy(net.state_dict())), 0
            else:
                stale += 1
                if stale >= config.patience:
                    break
        if best is not None:
            net.load_state_dict(best[1])
        net.eval()
        model.metrics = {"tracks": float(len(labels)), "labels": float(len(classes))}
        model.metrics["epochs"] = float(epoch + 1)
        if validation:
            with torch.no_grad():
                logits = model._logits(val_windows)
            model.temperature = fit_temperature(logits, target[validation])
            model.metrics |= _calibration(logits, target[validation])
        model.metrics["temperature"] = model.temperature
        return model

    def _logits(self, windows: list[Tensor]) -> Tensor:
        """Track logits (mean over each track's windows), one forward for all tracks."""
        self.net.eval()
        with torch.no_grad():
            logits, _ = self.net(torch.cat(windows))
        return logits.view(len(windows), -1, logits.shape[-1]).mean(1)

    def describe(self, log_mels: list[Tensor]) -> list[SoundDescription]:
        """Calibrated probabilities and the learned embedding of each track (batched)."""
        if not log_mels:
            return []
        windows = torch.cat([_windows(m, PREDICTION_WINDOWS, None) for m in log_mels])
        self.net.eval()
        with torch.no_grad():
            logits, embedding = self.net(windows)
        logits = logits.view(len(log_mels), PREDICTION_WINDOWS, -1).mean(1)
        embedding = embedding.view(len(log_mels), PREDICTION_WINDOWS, -1).mean(1)
        probs = torch.softmax(logits / self.temperature, -1)
        out = []
        for p, e in zip(probs, embedding, strict=True):
            by_label = dict(zip(self.labels, p.tolist(), strict=True))
            out.append(SoundDescription(self.labels[int(p.argmax())], by_label, e.tolist()))
        return out

    def predict_proba(self, log_mel: Tensor) -> dict[str, float]:
        return self.describe([log_mel])[0].probabilities

    def embedding(self, log_mel: Tensor) -> list[float]:
        return self.describe([log_mel])[0].embedding

    def state(self) -> dict[str, Any]:
        """Serialisable: labels, temperature, metrics and the network's tensors."""
        return {
            "labels": self.labels,
            "temperature": self.temperature,
            "embedding_size": self.net.embedding_size,
            "metrics": self.metrics,
            "weights": self.net.state_dict(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GenreClassifier:
        net = GenreNet(len(state["labels"]), state["embedding_size"])
        net.load_state_dict(state["weights"])
        return cls(list(state["labels"]), net, float(state["temperature"]), state.get("metrics"))

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save(self.state(), buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> GenreClassifier:
        # weights_only: an artifact is tensors and plain values, never code to run.
        return cls.from_state(torch.load(io.BytesIO(data), weights_only=True))


def quantize_input(log_mel: Tensor) -> tuple[bytes, float, int]:
    """A track's classifier input for storage: its middle MAX_INPUT_FRAMES frames as uint8
    steps of dB below the peak (<= 0.16 dB error); returns (codes, peak dB, frames)."""
    frames = log_mel.shape[-1]
    start = max(0, (frames - MAX_INPUT_FRAMES) // 2)
    kept = log_mel[:, start : start + MAX_INPUT_FRAMES].double()
    peak = float(kept.max())
    codes = ((peak - kept) * (255 / INPUT_RANGE_DB)).round().clamp(0, 255).to(torch.uint8)
    return codes.numpy().tobytes(), peak, int(kept.shape[-1])


def dequantize_input(codes: bytes, peak: float, frames: int) -> Tensor:
    """The stored input back as (n_mels, frames) dB, float16 (half the memory of float32)."""
    steps = torch.frombuffer(bytearray(codes), dtype=torch.uint8).view(-1, frames)
    return (peak - steps.float() * (INPUT_RANGE_DB / 255)).half()


def classifier_input(data: bytes, limits: AudioLimits | None = None) -> Tensor:
    """An upload's log-mel, as the product's feature frontend computes it (decoding and
    one frontend pass again cost ~1% of the analysis, which keeps no log-mel)."""
    from tunelytics.domain.audio.analysis import frontend
    from tunelytics.domain.audio.decode import decode

    decoded = decode(data, limits)
    with torch.inference_mode():
        return frontend()(torch.from_numpy(decoded.mono).unsqueeze(0)).log_mel[0].clone()


async def analyze_for_classification(
    repository: InputRepository,
    tenant_id: str,
    track_id: str,
    data: bytes,
    limits: AudioLimits | None = None,
) -> AudioAnalysis:
    """The analysis (analysis.analyze: raises AudioRejected, stores it) and the track's
    stored classifier input: the one upload path of analyzeAudio, the CLI and the demo."""
    from tunelytics.domain.audio.analysis import analyze

    analysis = await analyze(repository, tenant_id, track_id, data, limits)
    log_mel = await asyncio.to_thread(classifier_input, data, limits)
    await repository.save_input(tenant_id, track_id, log_mel)
    return analysis
