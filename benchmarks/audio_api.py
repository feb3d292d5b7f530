"""analyzeAudio latency through the real server for one 30-second file (WAV and FLAC).

.venv/bin/python benchmarks/audio_api.py          # also run by benchmarks/audio.py --graphql
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from harness import (
    RealServerConfig,
    embedded_mongo,
    new_secret,
    real_server,
    running,
    seed,
    token,
)

from tunelytics.domain.audio.decode import encode_wav
from tunelytics.domain.audio.synth import Style, synthesize
from tunelytics.domain.demo import DemoSize

ANALYZE = """
mutation Analyze($trackId: ID!, $file: Upload!) {
  analyzeAudio(trackId: $trackId, file: $file) {
    tempoBpm key mode loudnessLufs quality { verdict } identified { trackId }
  }
}
"""


def _post(url: str, bearer: str, track_id: str, data: bytes, name: str) -> float:
    operations = {"query": ANALYZE, "variables": {"trackId": track_id, "file": None}}
    started = time.perf_counter()
    response = httpx.post(
        url,
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.file"]})},
        files={"0": (name, data, "application/octet-stream")},
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=120.0,
    )
    took = time.perf_counter() - started
    body = response.json()
    assert "errors" not in body, body
    return took


def analyze_latency(wave: np.ndarray | None = None, rate: int = 22050, repeats: int = 5) -> None:
    if wave is None:
        wave = synthesize(Style(tempo=120, tonic=9, minor=True), 30.0, rate, seed=0)
    wave = np.asarray(wave, dtype=np.float32)[: 30 * rate]
    stereo44 = np.stack([np.repeat(wave, 2), np.repeat(wave, 2)])  # 44.1 kHz stereo
    files = {
        "WAV 22.05 kHz mono": encode_wav(wave, rate),
        "FLAC 44.1 kHz stereo": encode_wav(stereo44, 2 * rate, format="FLAC"),
    }
    secret = new_secret()
    with tempfile.TemporaryDirectory() as tmp, embedded_mongo(Path(tmp)) as mongo:
        seed(mongo.url, DemoSize(artists=5, tracks=20, listeners=5, listens=50))
        server = real_server(RealServerConfig(mongo.url, secret), Path(tmp))
        with running(server):
            bearer = token(secret)
            print(f"analyzeAudio, one 30 s file, {repeats} runs each (first run warms up)")
            for name, data in files.items():
                _post(server.graphql_url, bearer, "tr-00001", data, "warm.bin")
                runs = sorted(
                    _post(server.graphql_url, bearer, f"tr-{i + 2:05d}", data, "f.bin")
                    for i in range(repeats)
                )
                median = statistics.median(runs)
                print(
                    f"  {name:>22}: {len(data) / 1e6:5.1f} MB, median {median:.2f} s,"
                    f" min {runs[0]:.2f} s, max {runs[-1]:.2f} s"
                )


if __name__ == "__main__":
    analyze_latency()
