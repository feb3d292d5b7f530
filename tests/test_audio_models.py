"""Genre and mood models end to end through a real server: the demo's labelled clips,
trainModel(GENRE / MOOD), calibrated predictions stored with their model version,
similarTracksBySound on the learned embedding, the recommender's hook, roles, tenancy."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import SeededTenant, make_tenant
from tests.helpers import Api, ApiServer, codes
from tests.training import wait_for_job
from tunelytics.audio_demo import demo_clip_count, demo_clips, seed_audio
from tunelytics.domain.audio.classify import analyze_for_classification
from tunelytics.domain.audio.decode import encode_wav
from tunelytics.domain.audio.synth import synthesize
from tunelytics.domain.auth import Role
from tunelytics.domain.models import ModelKind
from tunelytics.storage import Storage
from tunelytics.storage.audio import AudioStore
from tunelytics.storage.training_data import read_recommender_data

TRAIN = """
mutation Train($kind: ModelKind!) {
  trainModel(kind: $kind, activate: true) { id status kind }
}
"""

MODELS = (
    "query M($kind: ModelKind!) { models(kind: $kind) { version status metrics { name value } } }"
)

ANALYSIS = """
query A($trackId: ID!) {
  audioAnalysis(trackId: $trackId) {
    trackId genreUnavailableReason moodUnavailableReason
    genre { label probability modelVersion probabilities { label probability } }
    mood { label probability modelVersion probabilities { label probability } }
  }
}
"""

SIMILAR = """
query S($trackId: ID!, $first: Int!) {
  similarTracksBySound(trackId: $trackId, first: $first) { similarity track { id title } }
}
"""

ANALYZE = """
mutation Analyze($trackId: ID!, $file: Upload!) {
  analyzeAudio(trackId: $trackId, file: $file) {
    trackId genreUnavailableReason
    genre { label probability modelVersion probabilities { label probability } }
    mood { label probability modelVersion probabilities { label probability } }
  }
}
"""

LABEL = """
mutation L($trackId: ID!, $genre: String, $mood: String) {
  labelTrackAudio(trackId: $trackId, genre: $genre, mood: $mood) { genre mood }
}
"""


async def _train(api: Api, token: str, kind: str) -> dict[str, Any]:
    job = (await api.data(TRAIN, {"kind": kind}, token))["trainModel"]
    assert job["status"] == "QUEUED" and job["kind"] == kind
    return await wait_for_job(api, token, job["id"], within=400.0)


def _check_classification(c: dict[str, Any], labels: set[str], version: int) -> None:
    probs = c["probabilities"]
    assert {p["label"] for p in probs} == labels
    assert math.isclose(sum(p["probability"] for p in probs), 1.0, abs_tol=1e-6)
    assert [p["probability"] for p in probs] == sorted(
        (p["probability"] for p in probs), reverse=True
    )
    assert (c["label"], c["probability"]) == (probs[0]["label"], probs[0]["probability"])
    assert c["modelVersion"] == version


@pytest.mark.timeout(900)  # two CNN trainings on a shared 2-core box
async def test_genre_and_mood_models_classify_and_find_similar_sounds(
    server: ApiServer, api: Api, storage: Storage
) -> None:
    a = await make_tenant(storage, seed=4)
    b = await make_tenant(storage, seed=5)  # the same track IDs, other content
    assert await seed_audio(storage, a.id) == demo_clip_count()
    ids = sorted(t.id for t in a.demo.tracks)[: demo_clip_count()]
    genres = {g for _, g, _ in demo_clips()}
    analyst, viewer = a.token(Role.ANALYST), a.viewer

    # Before training: analyses without classifications, and a reason; no similarity.
    before = (await api.data(ANALYSIS, {"trackId": ids[0]}, viewer))["audioAnalysis"]
    assert before["genre"] is None and before["mood"] is None
    assert "no genre model has been trained" in before["genreUnavailableReason"]
    assert "trainModel(kind: MOOD)" in before["moodUnavailableReason"]
    body = await api.post(SIMILAR, {"trackId": ids[0], "first": 3}, viewer)
    assert codes(body) == ["MODEL_NOT_READY"]

    # Viewers neither train nor label.
    assert codes(await api.post(TRAIN, {"kind": "GENRE"}, viewer)) == ["FORBIDDEN"]
    body = await api.post(LABEL, {"trackId": ids[0], "genre": "x"}, viewer)
    assert codes(body) == ["FORBIDDEN"]

    job = await _train(api, analyst, "GENRE")
    assert job["status"] == "SUCCEEDED", job
    (model,) = (await api.data(MODELS, {"kind": "GENRE"}, viewer))["models"]
    metrics = {m["name"]: m["value"] for m in model["metrics"]}
    assert model["status"] == "ACTIVE" and metrics["tracks"] == demo_clip_count()
    assert metrics["labels"] == len(genres) and metrics["temperature"] > 0
    assert 0 <= metrics["validation_accuracy"] <= 1 and 0 <= metrics["ece"] <= 1

    found = (await api.data(ANALYSIS, {"trackId": ids[0]}, viewer))["audioAnalysis"]
    _check_classification(found["genre"], genres, 1)
    assert found["genreUnavailableReason"] is None and found["mood"] is None

    # Sound-alike: the quieter FLAC copy of the first clip is its nearest track.
    similar = (await api.data(SIMILAR, {"trackId": ids[0], "first": 5}, viewer))[
        "similarTracksBySound"
    ]
    assert len(similar) == 5 and similar[0]["track"]["id"] == ids[-1]
    scores = [s["similarity"] for s in similar]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.99
    assert all(-1 - 1e-9 <= s <= 1 + 1e-9 for s in scores)
    assert ids[0] not in {s["track"]["id"] for s in similar}
    titles = {t.id: t.title for t in a.demo.tracks}
    assert all(titles[s["track"]["id"]] == s["track"]["title"] for s in similar)

    # Stored with the version; the embedding is on the tracks for the recommender.
    store = AudioStore(storage.db)
    stored = await store.predictions(a.id, ids[3])
    assert stored[ModelKind.GENRE].version == 1
    catalogue = (await read_recommender_data(storage, a.id)).catalogue
    assert catalogue.audio_embeddings is not None and catalogue.audio_embeddings.shape[1] == 64
    analysed = {str(t) for t in catalogue.track_ids[np.abs(catalogue.audio_embeddings).sum(1) > 0]}
    assert analysed == set(ids)

    # Tenant B: same IDs, none of A's analyses, predictions, embeddings or labels.
    body = await api.post(ANALYSIS, {"trackId": ids[0]}, b.viewer)
    assert codes(body) == ["NOT_FOUND"]
    wave = 0.6 * synthesize(demo_clips()[1][0], 5.0, 22050, seed=1).astype(np.float32)
    await analyze_for_classification(store, b.id, ids[0], encode_wav(wave, 22050))
    mine = (await api.data(ANALYSIS, {"trackId": ids[0]}, b.viewer))["audioAnalysis"]
    assert mine["genre"] is None and "no genre model" in mine["genreUnavailableReason"]
    assert codes(await api.post(SIMILAR, {"trackId": ids[0], "first": 3}, b.viewer)) == [
        "MODEL_NOT_READY"
    ]
    assert await store.similar(b.id, ids[0], 1, 5) is None
    assert await store.predictions(b.id, ids[3]) == {}
    assert await store.labels(b.id, ids[0]) == {}
    assert (await store.training_data(b.id, ModelKind.MOOD)).labels == []
    # B's one analysed track has a catalogue genre: one labelled track, too few to train
    # (A's labelled tracks of the same IDs are not B's).
    failed = await _train(api, b.token(Role.ANALYST), "GENRE")
    assert failed["status"] == "FAILED" and "has 1 labelled tracks" in failed["error"], failed
    # A's similarity still only sees A's tracks.
    again = (await api.data(SIMILAR, {"trackId": ids[0], "first": 50}, viewer))[
        "similarTracksBySound"
    ]
    assert {s["track"]["id"] for s in again} == set(ids[1:])

    job = await _train(api, analyst, "MOOD")
    assert job["status"] == "SUCCEEDED", job
    found = (await api.data(ANALYSIS, {"trackId": ids[2]}, viewer))["audioAnalysis"]
    _check_classification(found["mood"], {"calm", "energetic"}, 1)
    _check_classification(found["genre"], genres, 1)

    # A new upload is classified at once by both active models.
    fresh = sorted(t.id for t in a.demo.tracks)[demo_clip_count()]
    wave = 0.5 * synthesize(demo_clips()[2][0], 6.0, 22050, seed=99).astype(np.float32)
    operations = {"query": ANALYZE, "variables": {"trackId": fresh, "file": None}}
    response = await api.client.post(
        server.graphql_url,
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.file"]})},
        files={"0": ("new.wav", encode_wav(wave, 22050), "audio/wav")},
        headers={"Authorization": f"Bearer {a.admin}"},
        timeout=120.0,
    )
    analyzed = response.json()["data"]["analyzeAudio"]
    _check_classification(analyzed["genre"], genres, 1)
    _check_classification(analyzed["mood"], {"calm", "energetic"}, 1)
    assert analyzed["genreUnavailableReason"] is None
    stored = await store.predictions(a.id, fresh)
    assert stored[ModelKind.GENRE].version == 1 and stored[ModelKind.MOOD].version == 1


async def test_labels_are_cleaned_cleared_and_checked(
    api: Api, tenant: SeededTenant, other_tenant: SeededTenant, storage: Storage
) -> None:
    track_id = tenant.demo.tracks[0].id
    set_ = await api.data(LABEL, {"trackId": track_id, "genre": " Rock ", "mood": "Calm"},
                          tenant.admin)  # fmt: skip
    assert set_["labelTrackAudio"] == {"genre": "rock", "mood": "calm"}
    kept = await api.data(LABEL, {"trackId": track_id, "mood": ""}, tenant.admin)
    assert kept["labelTrackAudio"] == {"genre": "rock", "mood": None}
    body = await api.post(LABEL, {"trackId": track_id, "genre": "x" * 41}, tenant.admin)
    assert codes(body) == ["BAD_USER_INPUT"]
    body = await api.post(LABEL, {"trackId": "no-such-track", "genre": "rock"}, tenant.admin)
    assert codes(body) == ["NOT_FOUND"]
    # The other tenant's track of the same ID keeps its own (no) labels.
    assert other_tenant.demo.tracks[0].id == track_id
    mine = await api.data(LABEL, {"trackId": track_id}, other_tenant.admin)
    assert mine["labelTrackAudio"] == {"genre": None, "mood": None}
    assert await AudioStore(storage.db).labels(tenant.id, track_id) == {"genre": "rock"}


def test_first_is_bounded(server: ApiServer, tenant: SeededTenant) -> None:
    response = httpx.post(
        server.graphql_url,
        json={"query": SIMILAR, "variables": {"trackId": tenant.demo.tracks[0].id, "first": 0}},
        headers={"Authorization": f"Bearer {tenant.viewer}"},
    )
    assert codes(response.json()) == ["BAD_USER_INPUT"]
