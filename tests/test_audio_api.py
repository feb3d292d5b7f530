"""analyzeAudio through a real server: GraphQL multipart requests, limits, tenancy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import SeededTenant
from tests.helpers import ApiServer, codes
from tests.test_cli import cli
from tunelytics.domain.audio.decode import encode_wav
from tunelytics.domain.audio.synth import Style, synthesize
from tunelytics.storage import Storage
from tunelytics.storage.audio import AudioStore

UPLOAD_LIMIT = 3_000_000
RATE = 22050

ANALYZE = """
mutation Analyze($trackId: ID!, $file: Upload!) {
  analyzeAudio(trackId: $trackId, file: $file) {
    trackId durationSeconds sampleRate channels format tempoBpm tempoConfidence
    key mode keyConfidence loudnessLufs truePeakDbtp embeddingSize fingerprintHashes
    features { spectralCentroidHz mfccMean chromaMean }
    quality { verdict reasons clippingRatio effectiveBandwidthHz }
    identified { trackId votes offsetSeconds coverage }
    duplicates { trackId coverage }
  }
}
"""

READ = """
query Read($trackId: ID!) {
  audioAnalysis(trackId: $trackId) { trackId key mode tempoBpm duplicates { trackId } }
}
"""


@pytest.fixture(scope="module")
def audio_server(
    mongo_url: str, database_name: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    env = {
        "MONGODB_URL": mongo_url,
        "MONGODB_DATABASE": database_name,
        "REDIS_URL": "",
        "MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
        "MAX_AUDIO_SECONDS": "40",
    }
    server = ApiServer(env, tmp_path_factory.mktemp("audio") / "server.log").start()
    yield server
    server.stop()


def _track(seconds: float, seed: int, tonic: int = 9) -> np.ndarray:
    style = Style(tempo=120.0, tonic=tonic, minor=True, brightness=0.7)
    return (0.5 * synthesize(style, seconds, RATE, seed=seed)).astype(np.float32)


def upload(
    server: ApiServer, token: str, track_id: str, data: bytes, name: str = "take.wav"
) -> dict[str, Any]:
    """One GraphQL multipart request (operations, map, then the file part)."""
    operations = {"query": ANALYZE, "variables": {"trackId": track_id, "file": None}}
    response = httpx.post(
        server.graphql_url,
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.file"]})},
        files={"0": (name, data, "audio/wav")},
        headers={"Authorization": f"Bearer {token}"},
        timeout=120.0,
    )
    assert response.headers["content-type"].startswith("application/json"), response.text
    body: dict[str, Any] = response.json()
    return body


def read(server: ApiServer, token: str, track_id: str) -> dict[str, Any]:
    response = httpx.post(
        server.graphql_url,
        json={"query": READ, "variables": {"trackId": track_id}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30.0,
    )
    body: dict[str, Any] = response.json()
    return body


def test_analysis_of_an_upload_and_its_duplicate(
    audio_server: ApiServer, tenant: SeededTenant
) -> None:
    original, copy = tenant.demo.tracks[0].id, tenant.demo.tracks[1].id
    wave = _track(12.0, seed=1)
    body = upload(audio_server, tenant.admin, original, encode_wav(wave, RATE))
    assert "errors" not in body, body
    a = body["data"]["analyzeAudio"]
    assert a["trackId"] == original and a["format"] == "WAV" and a["channels"] == 1
    assert abs(a["durationSeconds"] - 12.0) < 0.01
    assert (a["key"], a["mode"]) == ("A", "minor")
    assert abs(a["tempoBpm"] - 120.0) < 3.0
    assert a["loudnessLufs"] < -5 and a["truePeakDbtp"] < 0
    assert a["quality"]["verdict"] in ("ok", "warning") and a["quality"]["clippingRatio"] == 0
    assert len(a["features"]["mfccMean"]) == 20 and len(a["features"]["chromaMean"]) == 12
    assert a["embeddingSize"] > 0 and a["fingerprintHashes"] > 100
    assert a["identified"] is None and a["duplicates"] == []

    # The same recording, 6 dB quieter and as FLAC, uploaded for another track.
    flac = encode_wav(wave * 0.5, RATE, subtype="PCM_16", format="FLAC")
    body = upload(audio_server, tenant.admin, copy, flac, name="copy.flac")
    assert "errors" not in body, body
    dup = body["data"]["analyzeAudio"]
    assert dup["identified"]["trackId"] == original
    assert abs(dup["identified"]["offsetSeconds"]) < 0.05
    assert [d["trackId"] for d in dup["duplicates"]] == [original]

    stored = read(audio_server, tenant.viewer, copy)["data"]["audioAnalysis"]
    assert stored["duplicates"] == [{"trackId": original}]
    assert (stored["key"], stored["mode"]) == ("A", "minor")


def test_bad_files_are_bad_user_input(audio_server: ApiServer, tenant: SeededTenant) -> None:
    track_id = tenant.demo.tracks[2].id
    silent = encode_wav(np.zeros(RATE * 3, dtype=np.float32), RATE)
    corrupt = encode_wav(_track(3.0, seed=2), RATE)[:12] + b"\xff" * 400
    too_long = encode_wav(np.tile(_track(5.0, seed=3), 9), RATE, subtype="PCM_U8")
    for data, reason in (
        (b"", "empty"),
        (b"<html>not audio</html>" * 50, "not a decodable audio file"),
        (corrupt, "not a decodable audio file"),
        (silent, "silent"),
        (too_long, "longer than 40 s"),
    ):
        body = upload(audio_server, tenant.admin, track_id, data)
        assert codes(body) == ["BAD_USER_INPUT"], (reason, body)
        assert reason in body["errors"][0]["message"], body
    # Nothing was stored for the track.
    assert codes(read(audio_server, tenant.admin, track_id)) == ["NOT_FOUND"]


def test_oversized_uploads_are_refused(audio_server: ApiServer, tenant: SeededTenant) -> None:
    stereo = np.tile(_track(5.0, seed=4), 6)
    big = encode_wav(np.stack([stereo, stereo]), RATE, subtype="FLOAT")
    assert len(big) > UPLOAD_LIMIT
    response = httpx.post(
        audio_server.graphql_url,
        data={
            "operations": json.dumps(
                {"query": ANALYZE, "variables": {"trackId": tenant.demo.tracks[0].id, "file": None}}
            ),
            "map": json.dumps({"0": ["variables.file"]}),
        },
        files={"0": ("big.wav", big, "audio/wav")},
        headers={"Authorization": f"Bearer {tenant.admin}"},
        timeout=60.0,
    )
    assert response.status_code == 413
    assert codes(response.json()) == ["BAD_USER_INPUT"]


def test_roles_and_tenancy(
    audio_server: ApiServer, tenant: SeededTenant, other_tenant: SeededTenant
) -> None:
    wave = encode_wav(_track(4.0, seed=5), RATE)
    track_id = tenant.demo.tracks[3].id
    assert codes(upload(audio_server, tenant.viewer, track_id, wave)) == ["FORBIDDEN"]
    assert codes(upload(audio_server, tenant.admin, "no-such-track", wave)) == ["NOT_FOUND"]
    # The other tenant has a track with the same ID: its analysis stays its own.
    assert other_tenant.demo.tracks[3].id == track_id
    body = upload(audio_server, other_tenant.admin, track_id, wave)
    assert "errors" not in body, body
    assert codes(read(audio_server, tenant.admin, track_id)) == ["NOT_FOUND"]
    # And the same audio in the first tenant matches nothing of the other's catalogue.
    body = upload(audio_server, tenant.admin, track_id, wave)
    assert body["data"]["analyzeAudio"]["identified"] is None


async def test_cli_analyze(
    mongo_url: str,
    database_name: str,
    storage: Storage,
    tenant: SeededTenant,
    tmp_path: Path,
) -> None:
    wave = _track(6.0, seed=7, tonic=2)
    first, second, bad = tmp_path / "a.wav", tmp_path / "b.flac", tmp_path / "c.wav"
    first.write_bytes(encode_wav(wave, RATE))
    second.write_bytes(encode_wav(wave, RATE, format="FLAC"))
    bad.write_bytes(b"not audio" * 100)
    ids = [t.id for t in tenant.demo.tracks[5:8]]
    env = {"MONGODB_URL": mongo_url, "MONGODB_DATABASE": database_name}
    args = ["analyze", str(first), str(second), str(bad), "--tenant", tenant.id, "--quiet"]
    for track_id in ids:
        args += ["--track-id", track_id]
    done = cli(*args, env=env, timeout=300)
    assert done.returncode == 1, done.stderr  # the third file is refused
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 3
    assert f"{ids[0]}: " in lines[0] and "D minor" in lines[0]
    assert f"duplicate of {ids[0]}" in lines[1]
    assert "rejected: not a decodable audio file" in lines[2]
    stored = await AudioStore(storage.db).analysis(tenant.id, ids[1])
    assert stored is not None and stored.duplicates[0].track_id == ids[0]
    # The classifier's input is stored beside the analysis (genre and mood models).
    inputs = await AudioStore(storage.db).inputs_of(tenant.id, ids[:3])
    assert sorted(inputs) == ids[:2] and inputs[ids[0]].shape[0] == 128
    mismatched = cli("analyze", str(first), "--track-id", "x", "--track-id", "y", env=env)
    assert mismatched.returncode == 2 and "one per path" in mismatched.stderr


async def test_demo_audio_shows_analyses_and_a_duplicate(storage: Storage) -> None:
    from tests.conftest import make_tenant
    from tunelytics.audio_demo import demo_clip_count, seed_audio

    demo = await make_tenant(storage, seed=3)
    assert await seed_audio(storage, demo.id) == demo_clip_count()
    store = AudioStore(storage.db)
    ids = sorted(t.id for t in demo.demo.tracks)[: demo_clip_count()]
    analyses = [await store.analysis(demo.id, track_id) for track_id in ids]
    assert all(a is not None for a in analyses)
    last = analyses[-1]
    assert last is not None and [d.track_id for d in last.duplicates] == [ids[0]]
    # Each clip is labelled with its genre and mood (the duplicate with its original's),
    # and its classifier input is stored: the demo trains GENRE and MOOD on them.
    from tunelytics.audio_demo import demo_clips

    expected = [(g, m) for _, g, m in demo_clips()]
    expected.append(expected[0])
    labels = [await store.labels(demo.id, track_id) for track_id in ids]
    assert [(x["genre"], x["mood"]) for x in labels] == expected
    assert sorted(await store.inputs_of(demo.id, ids)) == ids
    # What `serve` trains for the demo (services/demo.py): both kinds here, none elsewhere.
    from tunelytics.domain.models import ModelKind

    assert await store.labelled_kinds(demo.id) == [ModelKind.GENRE, ModelKind.MOOD]
    assert await store.labelled_kinds("no-such") == []
