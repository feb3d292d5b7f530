"""The product's genre classifier against an SVM on summary features, by 5-fold CV.

    .venv/bin/python benchmarks/genre_eval.py --data DIR       # DIR/<label>/<file>
    .venv/bin/python benchmarks/genre_eval.py --generate /tmp/genres --per-class 16
    .venv/bin/python benchmarks/genre_eval.py --data /tmp/genres

Any format soundfile decodes. Both sides get the product's decoding and feature
frontend; the CNN is tunelytics.domain.audio.classify (log-mel windows, temperature
calibration on a split of each training fold), the baseline an RBF SVM on mean/std of
MFCC, chroma and the spectral features (centroid, bandwidth, rolloff, flatness,
contrast, ZCR, RMS), standardised. Prints stratified 5-fold accuracy side by side and the
CNN's calibration (expected calibration error, 10 bins) and how many epochs early stopping
kept.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from tunelytics.domain.audio.classify import (
    GenreClassifier,
    TrainConfig,
    expected_calibration_error,
)
from tunelytics.domain.audio.decode import AudioRejected, decode, encode_wav
from tunelytics.domain.audio.features import AudioFeatures, FeatureSet
from tunelytics.domain.audio.synth import Style, synthesize


@dataclass(frozen=True)
class Genre:
    """A generated class: distinct timbre, rhythm, tempo range and mode."""

    tempo: tuple[float, float]
    brightness: tuple[float, float]
    drums: tuple[float, float]
    attack: float
    minor: bool | None = None  # None: either
    swing: float = 0.0
    noise: float = 0.0


CLASSES = {
    "ambient": Genre((60, 80), (0.1, 0.3), (0.0, 0.1), attack=0.3),
    "rock": Genre((110, 140), (0.7, 1.0), (0.8, 1.0), attack=0.005, minor=False),
    "jazz": Genre((90, 130), (0.4, 0.6), (0.2, 0.4), attack=0.02, swing=0.3),
    "electronic": Genre((124, 150), (0.8, 1.0), (0.9, 1.0), 0.005, minor=True, noise=0.3),
}


def generate(out: Path, per_class: int, seconds: float) -> None:
    rng = np.random.default_rng(0)
    for label, g in CLASSES.items():
        (out / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            style = Style(
                tempo=float(rng.uniform(*g.tempo)),
                tonic=int(rng.integers(0, 12)),
                minor=g.minor if g.minor is not None else bool(rng.integers(0, 2)),
                brightness=float(rng.uniform(*g.brightness)),
                drums=float(rng.uniform(*g.drums)),
                swing=g.swing,
                noise=g.noise,
                attack=g.attack,
            )
            wave = 0.6 * synthesize(style, seconds, 22050, seed=int(rng.integers(1 << 30)))
            (out / label / f"{label}-{i:03d}.flac").write_bytes(
                encode_wav(wave.astype(np.float32), 22050, format="FLAC")
            )
    print(f"wrote {per_class} x {len(CLASSES)} clips of {seconds:.0f} s under {out}")


def summary(f: FeatureSet) -> np.ndarray:
    frame = [f.mfcc[0], f.chroma[0], f.contrast[0]]
    rows = [f.centroid, f.bandwidth, f.rolloff, f.flatness, f.zcr, f.rms]
    stack = torch.cat(frame + [r[0].unsqueeze(0) for r in rows]).double()
    return torch.cat([stack.mean(-1), stack.std(-1)]).numpy()


def load(data: Path) -> tuple[list[torch.Tensor], np.ndarray, list[str]]:
    frontend = AudioFeatures()
    mels, summaries, labels = [], [], []
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        for path in sorted(folder.iterdir()):
            try:
                audio = decode(path.read_bytes())
            except AudioRejected as error:
                print(f"skipping {path}: {error.reason}")
                continue
            with torch.inference_mode():
                f = frontend(torch.from_numpy(audio.mono).unsqueeze(0))
            mels.append(f.log_mel[0].clone())
            summaries.append(summary(f))
            labels.append(folder.name)
    return mels, np.stack(summaries), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--generate", type=Path, help="write a generated data set here")
    parser.add_argument("--per-class", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs, help="at most")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.generate:
        generate(args.generate, args.per_class, args.seconds)
        if not args.data:
            return
    if not args.data:
        parser.error("--data DIR (or --generate DIR)")
    mels, summaries, labels = load(args.data)
    y = np.array(labels)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    cnn_acc, svm_acc, confidence, correct = [], [], [], []
    print(f"{len(labels)} tracks, {len(set(labels))} labels: {sorted(set(labels))}")
    print(f"{'fold':>4} {'CNN':>7} {'SVM':>7} {'CNN s':>7} {'epochs':>6}")
    for k, (train, test) in enumerate(folds.split(summaries, y)):
        started = time.perf_counter()
        model = GenreClassifier.fit(
            [mels[i] for i in train], [labels[i] for i in train], TrainConfig(epochs=args.epochs)
        )
        took = time.perf_counter() - started
        right = 0
        for i in test:
            probs = model.predict_proba(mels[i])
            guess = max(probs, key=probs.__getitem__)
            right += guess == labels[i]
            confidence.append(probs[guess])
            correct.append(guess == labels[i])
        cnn_acc.append(right / len(test))
        svm = make_pipeline(StandardScaler(), SVC(C=10.0, gamma="scale"))
        svm.fit(summaries[train], y[train])
        svm_acc.append(float((svm.predict(summaries[test]) == y[test]).mean()))
        epochs = int(model.metrics["epochs"])
        print(
            f"{k + 1:>4} {cnn_acc[-1]:>7.1%} {svm_acc[-1]:>7.1%} {took:>7.1f} {epochs:>6}",
            flush=True,
        )
    print(
        f"mean {np.mean(cnn_acc):>7.1%} {np.mean(svm_acc):>7.1%}   "
        f"(std {np.std(cnn_acc):.1%} / {np.std(svm_acc):.1%}); CNN ECE "
        f"{expected_calibration_error(np.array(confidence), np.array(correct)):.3f}"
    )


if __name__ == "__main__":
    main()
