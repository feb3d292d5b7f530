"""Genre / mood classification: a small CNN on log-mel windows, calibrated by temperature.

Per tenant, from tracks that carry labels. Training crops random windows of ~3 s from each
track's log-mel; prediction averages the window logits over the track. Probabilities are
calibrated by temperature scaling on a held-out validation split (Guo et al. 2017). The
penultimate layer, averaged over windows, is the track's learned audio embedding.

>>> import torch
>>> torch.manual_seed(0) and None
>>> mels = [torch.randn(128, 130) + (3 if i % 2 else -3) for i in range(8)]
>>> labels = ["loud" if i % 2 else "soft" for i in range(8)]
>>> model = GenreClassifier.fit(mels, labels, TrainConfig(epochs=3, seed=0))
>>> max(model.predict_proba(mels[1]).items(), key=lambda kv: kv[1])[0]
'loud'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

WINDOW = 128  # frames (~3 s at 22050 Hz, hop 512)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    windows_per_track: int = 4
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    validation_share: float = 0.2
    embedding_size: int = 64
    seed: int = 0


class GenreNet(nn.Module):
    """(batch, n_mels, frames) log-mel dB -> (logits, embedding)."""

    def __init__(self, n_classes: int, embedding_size: int = 64) -> None:
        super().__init__()
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
        self.embed = nn.Sequential(nn.Linear(channels, embedding_size), nn.ReLU())
        self.head = nn.Linear(embedding_size, n_classes)

    def forward(self, log_mel: Tensor) -> tuple[Tensor, Tensor]:
        # dB spectra -> roughly unit scale; halve the mel axis (fewer, wider bands suffice).
        x = F.avg_pool2d(((log_mel + 40.0) / 40.0).unsqueeze(1), (2, 1))
        x = self.features(x)
        embedding = self.embed(x.mean((-2, -1)))
        return self.head(embedding), embedding


def _windows(log_mel: Tensor, count: int, rng: np.random.Generator | None) -> Tensor:
    frames = log_mel.shape[-1]
    if frames < WINDOW:
        log_mel = F.pad(log_mel, (0, WINDOW - frames), value=float(log_mel.min()))
        frames = WINDOW
    if rng is None:  # evenly spaced, for prediction
        starts = np.linspace(0, frames - WINDOW, count).round().astype(int)
    else:
        starts = rng.integers(0, frames - WINDOW + 1, size=count)
    return torch.stack([log_mel[:, s : s + WINDOW] for s in starts])


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


class GenreClassifier:
    def __init__(self, labels: list[str], net: GenreNet, temperature: float = 1.0) -> None:
        self.labels, self.net, self.temperature = labels, net, temperature

    @classmethod
    def fit(
        cls, log_mels: list[Tensor], labels: list[str], config: TrainConfig | None = None
    ) -> GenreClassifier:
        config = config or TrainConfig()
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise ValueError("training needs at least two labels")
        torch.manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        target = torch.tensor([classes.index(label) for label in labels])
        # Stratified validation split for the temperature.
        validation: list[int] = []
        for c in range(len(classes)):
            members = rng.permutation(np.flatnonzero(target.numpy() == c))
            take = math.floor(config.validation_share * len(members))
            validation += members[: max(take, 1) if len(members) > 2 else 0].tolist()
        training = [i for i in range(len(labels)) if i not in set(validation)]
        net = GenreNet(len(classes), config.embedding_size)
        optimizer = torch.optim.AdamW(
            net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        for _ in range(config.epochs):
            net.train()
            x = torch.cat([_windows(log_mels[i], config.windows_per_track, rng) for i in training])
            y = target[training].repeat_interleave(config.windows_per_track)
            order = torch.randperm(len(y))
            for first in range(0, len(y), config.batch_size):
                batch = order[first : first + config.batch_size]
                if len(batch) < 2:
                    continue
                logits, _ = net(x[batch])
                loss = F.cross_entropy(logits, y[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        model = cls(classes, net)
        if validation:
            with torch.no_grad():
                logits = torch.stack([model._track_logits(log_mels[i]) for i in validation])
            model.temperature = fit_temperature(logits, target[validation])
        return model

    def _track_logits(self, log_mel: Tensor, windows: int = 8) -> Tensor:
        self.net.eval()
        with torch.no_grad():
            logits, _ = self.net(_windows(log_mel, windows, None))
        return logits.mean(0)

    def predict_proba(self, log_mel: Tensor) -> dict[str, float]:
        probs = torch.softmax(self._track_logits(log_mel) / self.temperature, -1)
        return dict(zip(self.labels, probs.tolist(), strict=True))

    def embedding(self, log_mel: Tensor, windows: int = 8) -> list[float]:
        self.net.eval()
        with torch.no_grad():
            _, embedding = self.net(_windows(log_mel, windows, None))
        return embedding.mean(0).tolist()

    def state(self) -> dict[str, Any]:
        """Serialisable: labels, temperature and the network's tensors."""
        return {
            "labels": self.labels,
            "temperature": self.temperature,
            "embedding_size": self.net.head.in_features,
            "weights": self.net.state_dict(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GenreClassifier:
        net = GenreNet(len(state["labels"]), state["embedding_size"])
        net.load_state_dict(state["weights"])
        return cls(list(state["labels"]), net, float(state["temperature"]))
