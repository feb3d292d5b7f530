"""Music-like synthetic tracks: chords, a bass line, a melody and drums at a tempo and key.

For tests, benchmarks, the genre evaluation on generated material and the demo tenant:
signals whose tempo, key and timbre are known by construction.

>>> track = synthesize(Style(tempo=120.0, tonic=2, minor=False), seconds=2.0, seed=1)
>>> track.shape, bool(abs(track).max() <= 1.0)
((44100,), True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)


@dataclass(frozen=True)
class Style:
    tempo: float = 120.0
    tonic: int = 0  # pitch class, 0 = C
    minor: bool = False
    brightness: float = 0.5  # 0 dull (few harmonics) .. 1 bright
    drums: float = 0.6  # drum level relative to the harmony
    swing: float = 0.0  # 0 straight, up to ~0.3 swung eighths
    noise: float = 0.0  # breathy noise floor
    attack: float = 0.01  # note attack, seconds (pads are slow)


def _midi_hz(note: float) -> float:
    return float(440.0 * 2.0 ** ((note - 69) / 12))


def _tone(freq: float, length: int, sr: int, brightness: float, attack: float) -> np.ndarray:
    t = np.arange(length) / sr
    harmonics = 1 + round(brightness * 11)
    wave = np.zeros(length)
    for h in range(1, harmonics + 1):
        if freq * h >= sr / 2:
            break
        wave += np.sin(2 * np.pi * freq * h * t) / h ** (2.0 - brightness)
    envelope = np.minimum(1.0, t / max(attack, 1e-3)) * np.exp(-2.5 * t)
    return wave * envelope


def _drum(kind: str, length: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(length) / sr
    if kind == "kick":
        return np.sin(2 * np.pi * (50 + 100 * np.exp(-30 * t)) * t) * np.exp(-12 * t)
    noise = rng.standard_normal(length)
    if kind == "snare":
        return 0.6 * noise * np.exp(-25 * t) + 0.3 * np.sin(2 * np.pi * 190 * t) * np.exp(-20 * t)
    hat = np.diff(noise, prepend=0.0)  # crude high-pass
    return 0.25 * hat * np.exp(-80 * t)


def synthesize(style: Style, seconds: float = 30.0, sr: int = 22050, seed: int = 0) -> np.ndarray:
    """A mono track in [-1, 1] (peak 0.9) of `seconds` at `sr`."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = np.zeros(n + sr)
    beat = 60.0 / style.tempo
    scale = MINOR if style.minor else MAJOR
    root = 48 + style.tonic
    # Cadential progressions (I-IV-V-I and kin) keep the key unambiguous by construction.
    patterns = ([0, 3, 4, 0], [0, 5, 3, 4], [0, 3, 0, 4])
    pattern = patterns[int(rng.integers(0, len(patterns)))]
    degrees = np.array(pattern * (int(seconds / (16 * beat)) + 2))
    beats = int(seconds / beat) + 1
    for b in range(beats):
        start = int(b * beat * sr)
        bar, pos = divmod(b, 4)
        degree = int(degrees[bar % degrees.size])
        if pos == 0:  # a chord per bar: triad on the degree
            for step in (0, 2, 4):
                d = degree + step
                note = root + 12 + scale[d % 7] + 12 * (d // 7)
                length = int(4 * beat * sr)
                out[start : start + length] += (
                    0.25
                    * _tone(
                        _midi_hz(note),
                        min(length, out.size - start),
                        sr,
                        style.brightness,
                        style.attack,
                    )[: out.size - start]
                )
        bass = root - 12 + scale[degree % 7]
        blen = int(beat * sr * 0.9)
        out[start : start + blen] += (
            0.35 * _tone(_midi_hz(bass), blen, sr, 0.3, 0.005)[: out.size - start]
        )
        for half in (0, 1):  # melody in eighths, swung
            offset = half * beat * (0.5 + style.swing * 0.5)
            s = int((b * beat + offset) * sr)
            d = degree + int(rng.integers(0, 7))
            note = root + 24 + scale[d % 7]
            mlen = int(beat * sr * 0.45)
            if s < out.size - mlen:
                out[s : s + mlen] += 0.18 * _tone(_midi_hz(note), mlen, sr, style.brightness, 0.005)
        if style.drums > 0:
            dlen = int(0.25 * sr)
            for kind, hit in (("kick", pos in (0, 2)), ("snare", pos in (1, 3)), ("hat", True)):
                if hit and start + dlen < out.size:
                    out[start : start + dlen] += style.drums * _drum(kind, dlen, sr, rng)
    if style.noise > 0:
        out += style.noise * rng.standard_normal(out.size) * 0.05
    out = out[:n]
    return (0.9 * out / max(float(np.abs(out).max()), 1e-9)).astype(np.float64)
