"""The recommender on generated data with known structure: two taste groups of listeners,
each playing the tracks of its own half of the catalogue."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tunelytics.domain.recommend import (
    Catalogue,
    Following,
    ListeningHistory,
    Recommender,
    RecommenderConfig,
    train_recommender,
)
from tunelytics.domain.recommend.model import ComponentState, user_scale

N_LISTENERS = 120
N_TRACKS = 80
HALF = N_TRACKS // 2
TRACKS = [f"t{i}" for i in range(N_TRACKS)]
ARTISTS = [f"a{i // 4}" for i in range(N_TRACKS)]  # 4 tracks per artist, within a group
SMALL = RecommenderConfig(factors=16, als_iterations=6, ease_rank=64, blend_steps=40)


def group_of_track(track_id: str) -> int:
    return int(track_id[1:]) // HALF


def group_of_listener(listener_id: str) -> int:
    return int(listener_id[1:]) % 2


def make_history(seed: int = 0, per_listener: int = 10) -> ListeningHistory:
    rng = np.random.default_rng(seed)
    listeners, tracks, times, skipped = [], [], [], []
    for listener in range(N_LISTENERS):
        group = listener % 2
        for t in rng.choice(HALF, per_listener, replace=False):
            listeners.append(f"l{listener}")
            tracks.append(TRACKS[t + HALF * group])
            times.append(rng.uniform(0, 30 * 86_400))
            skipped.append(False)
    return ListeningHistory(
        np.array(listeners),
        np.array(tracks),
        played_at=np.array(times),
        skipped=np.array(skipped),
    )


def make_catalogue(genres_follow_groups: bool = True, seed: int = 0) -> Catalogue:
    rng = np.random.default_rng(seed)
    if genres_follow_groups:
        genres = [["rock"] if i < HALF else ["jazz"] for i in range(N_TRACKS)]
    else:
        genres = [[str(rng.choice(["rock", "jazz"]))] for _ in range(N_TRACKS)]
    return Catalogue(np.array(TRACKS), np.array(ARTISTS), genres)


@pytest.fixture(scope="module")
def model() -> Recommender:
    return train_recommender(make_history(), make_catalogue(), SMALL)


def test_recommends_within_the_taste_group(model: Recommender) -> None:
    listeners = [f"l{i}" for i in range(20)]
    results = model.recommend(listeners, k=10)
    for listener, recs in zip(listeners, results, strict=True):
        assert recs is not None and len(recs) == 10
        in_group = [group_of_track(r.track_id) == group_of_listener(listener) for r in recs]
        assert all(in_group), (listener, [r.track_id for r in recs])
        scores = [r.score for r in recs]
        assert scores == sorted(scores, reverse=True)


def test_excludes_listened_tracks_only_when_asked(model: Recommender) -> None:
    history = make_history()
    played = set(history.track_ids[history.listener_ids == "l0"].tolist())
    fresh = model.recommend(["l0"], k=30)[0]
    assert fresh is not None and not played & {r.track_id for r in fresh}
    everything = model.recommend(["l0"], k=N_TRACKS, exclude_listened=False)[0]
    assert everything is not None and played <= {r.track_id for r in everything}


def test_unknown_listener_gets_none_in_its_slot(model: Recommender) -> None:
    results = model.recommend(["l1", "nobody", "l2"], k=3)
    assert results[1] is None
    assert results[0] is not None and results[2] is not None


def test_max_per_artist(model: Recommender) -> None:
    recs = model.recommend(["l3"], k=8, max_per_artist=1)[0]
    assert recs is not None and len(recs) == 8
    artist = dict(zip(TRACKS, ARTISTS, strict=True))
    assert len({artist[r.track_id] for r in recs}) == 8
    unlimited = model.recommend(["l3"], k=8)[0]
    assert unlimited is not None
    assert len({artist[r.track_id] for r in unlimited}) < 8


def test_diversity_spreads_results_over_taste_groups() -> None:
    # A listener who played both groups, mostly group 0: plain top-k stays in group 0, a
    # strong diversity knob brings in group-1 tracks.
    history = make_history()
    mixed = ListeningHistory(
        np.concatenate([history.listener_ids, ["mix"] * 9]),
        np.concatenate([history.track_ids, [f"t{i}" for i in range(7)] + ["t60", "t61"]]),
        played_at=np.concatenate([history.played_at, np.full(9, 1.0)]),
    )
    model = train_recommender(mixed, make_catalogue(), SMALL)
    plain = model.recommend(["mix"], k=10)[0]
    diverse = model.recommend(["mix"], k=10, diversity=0.9)[0]
    assert plain is not None and diverse is not None
    groups_plain = [group_of_track(r.track_id) for r in plain]
    groups_diverse = [group_of_track(r.track_id) for r in diverse]
    assert groups_diverse.count(1) > groups_plain.count(1)


def test_results_are_explained(model: Recommender) -> None:
    history = make_history()
    played = set(history.track_ids[history.listener_ids == "l4"].tolist())
    recs = model.recommend(["l4"], k=5)[0]
    assert recs is not None
    for r in recs:
        assert r.reason
        if r.because is not None:
            assert r.because in played
            assert r.because in r.reason
    assert any(r.because is not None for r in recs)


def test_similar_tracks_and_anonymous_sessions(model: Recommender) -> None:
    similar = model.similar_tracks(["t5", "missing", "t45"], k=5)
    assert similar[1] is None
    assert similar[0] is not None and similar[2] is not None
    assert all(group_of_track(r.track_id) == 0 and r.track_id != "t5" for r in similar[0])
    assert all(group_of_track(r.track_id) == 1 for r in similar[2])
    sessions = model.recommend_for_tracks([["t41", "t42"], [], ["nope"]], k=4)
    assert sessions[0] is not None
    assert all(group_of_track(r.track_id) == 1 for r in sessions[0])
    assert not {"t41", "t42"} & {r.track_id for r in sessions[0]}
    assert sessions[1] is not None and len(sessions[1]) == 4  # popular tracks
    assert sessions[2] is None


def test_cold_start_track_is_reached_through_content() -> None:
    # A new track nobody has played yet, in the rock genre, by a group-0 artist.
    catalogue = make_catalogue()
    cold = Catalogue(
        np.append(catalogue.track_ids, "new"),
        np.append(catalogue.artist_ids, "fresh-artist"),
        [*(catalogue.genres or []), ["rock"]],
    )
    model = train_recommender(make_history(), cold, SMALL)
    similar = model.similar_tracks(["new"], k=5)[0]
    assert similar is not None and len(similar) == 5
    assert all(group_of_track(r.track_id) == 0 for r in similar)


def test_cold_start_listener_with_one_listen() -> None:
    history = make_history()
    light = ListeningHistory(
        np.append(history.listener_ids, "newcomer"),
        np.append(history.track_ids, "t50"),
        played_at=np.append(np.asarray(history.played_at), 10.0),
    )
    model = train_recommender(light, make_catalogue(), SMALL)
    recs = model.recommend(["newcomer"], k=5)[0]
    assert recs is not None and len(recs) == 5
    assert sum(group_of_track(r.track_id) == 1 for r in recs) >= 4


def test_round_trip_gives_identical_results(model: Recommender) -> None:
    data = model.to_bytes()
    loaded = Recommender.from_bytes(data)
    listeners = ["l0", "l7", "l8"]
    assert bool((loaded.scores(listeners) == model.scores(listeners)).all())
    assert loaded.recommend(listeners, k=5, diversity=0.3) == model.recommend(
        listeners, k=5, diversity=0.3
    )
    assert loaded.blend_weights == model.blend_weights
    assert loaded.metrics == model.metrics
    assert loaded.data_window == model.data_window


def test_training_reports_metrics_window_and_progress() -> None:
    steps: list[tuple[float, str]] = []
    model = train_recommender(
        make_history(), make_catalogue(), SMALL, progress=lambda f, m: steps.append((f, m))
    )
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert all(m for _, m in steps)
    assert model.metrics["split"] == "time"
    assert 0.0 < model.metrics["ndcg@10"] <= 1.0
    assert 0.0 < model.metrics["recall@10"] <= 1.0
    assert 0.0 < model.metrics["coverage@10"] <= 1.0
    assert model.data_window["listeners"] == N_LISTENERS
    assert model.data_window["start"] < model.data_window["holdout_from"] < model.data_window["end"]


def test_blend_weights_are_learned_from_the_data() -> None:
    informative = train_recommender(make_history(), make_catalogue(True), SMALL)
    noise = train_recommender(make_history(), make_catalogue(False), SMALL)
    assert set(informative.blend_weights.values()) != {1.0}
    # Genres that follow the taste groups earn weight; random genres lose it.
    assert informative.blend_weights["genre"] > noise.blend_weights["genre"] + 0.1


def subgroup_history(cold: bool, seed: int = 3) -> ListeningHistory:
    """Four taste subgroups of 20 tracks; genres only tell the two halves apart, so in a warm
    world collaborative filtering adds the finer structure. In the cold world each listener's
    later listens are tracks nobody played before the hold-out (new releases): collaborative
    scores cannot reach them, genres can."""
    rng = np.random.default_rng(seed)
    listeners, tracks, times = [], [], []
    for listener in range(N_LISTENERS):
        base = 20 * (listener % 4)
        if cold:
            picks = [(int(t), rng.uniform(0, 10)) for t in rng.choice(10, 6, replace=False)]
            picks += [(10 + int(t), rng.uniform(20, 30)) for t in rng.choice(10, 3, replace=False)]
        else:
            picks = [(int(t), rng.uniform(0, 30)) for t in rng.choice(20, 9, replace=False)]
        for t, at in picks:
            listeners.append(f"l{listener}")
            tracks.append(TRACKS[base + t])
            times.append(at)
    return ListeningHistory(np.array(listeners), np.array(tracks), played_at=np.array(times))


def test_content_weight_grows_without_collaborative_signal() -> None:
    def genre_share(m: Recommender) -> float:
        w = m.blend_weights
        return abs(w["genre"]) / (abs(w["genre"]) + abs(w["als"]) + abs(w["ease"]))

    cold = train_recommender(subgroup_history(cold=True), make_catalogue(), SMALL)
    warm = train_recommender(subgroup_history(cold=False), make_catalogue(), SMALL)
    assert genre_share(cold) > genre_share(warm) + 0.05


def test_skips_push_a_track_down() -> None:
    history = make_history()
    # Everyone in group 0 skips t0 over and over.
    group0 = [f"l{i}" for i in range(0, N_LISTENERS, 2)]
    skips = ListeningHistory(
        np.concatenate([history.listener_ids, np.repeat(group0, 3)]),
        np.concatenate([history.track_ids, ["t0"] * (3 * len(group0))]),
        played_at=np.concatenate([history.played_at, np.full(3 * len(group0), 5.0)]),
        skipped=np.concatenate([history.skipped, np.ones(3 * len(group0), bool)]),
    )
    base = train_recommender(history, make_catalogue(), SMALL)
    skipped = train_recommender(skips, make_catalogue(), SMALL)
    newcomer = [["t1", "t2", "t3"]]
    rank_base = [r.track_id for r in base.recommend_for_tracks(newcomer, k=N_TRACKS)[0] or []]
    rank_skip = [r.track_id for r in skipped.recommend_for_tracks(newcomer, k=N_TRACKS)[0] or []]
    assert rank_skip.index("t0") > rank_base.index("t0")
    # A listener who only ever skipped t0 does not get it back as a recommendation.
    played_t0 = set(history.listener_ids[history.track_ids == "t0"].tolist())
    skipper = next(lid for lid in group0 if lid not in played_t0)
    recs = skipped.recommend([skipper], k=N_TRACKS)[0]
    assert recs is not None and "t0" not in {r.track_id for r in recs}
    assert "t0" in {
        r.track_id
        for r in skipped.recommend([skipper], k=N_TRACKS, exclude_listened=False)[0] or []
    }


def test_catalogue_scale_serving_matches_the_exact_scan(
    model: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Force the compact retrieval stage (normally only for catalogues of ~20,000+ tracks):
    # a 4-dim projection picks 30 of the 80 tracks, which are then scored exactly.
    from tunelytics.domain.recommend import model as model_module

    monkeypatch.setattr(model_module, "EXACT_SCAN_FLOATS", 0)
    monkeypatch.setattr(model_module, "COARSE_RANK", 4)
    monkeypatch.setattr(model_module, "RESCORE_POOL", 30)
    compact = Recommender.from_bytes(model.to_bytes())
    assert compact._coarse_items is not None and compact._coarse_items.shape[1] == 4
    listeners = [f"l{i}" for i in range(20)]
    exact = model.scores(listeners)
    served = compact.recommend(listeners, k=5)
    for b, (listener, recs) in enumerate(zip(listeners, served, strict=True)):
        assert recs is not None and len(recs) == 5
        assert all(group_of_track(r.track_id) == group_of_listener(listener) for r in recs)
        for r in recs:  # served scores are the exact hybrid scores
            assert abs(r.score - float(exact[b, int(r.track_id[1:])])) < 1e-4


def test_bm25_weighting_favours_rare_tracks_and_short_histories() -> None:
    import scipy.sparse as sp

    from tunelytics.domain.recommend.interactions import Interactions, confidence_weighted

    # Listener 0 plays t0 (everyone's track) and t1 (only theirs); listener 1 plays t0 and
    # four more tracks; listener 2 has only t0. Listener 1 skipped t5.
    rows = [0, 0, 1, 1, 1, 1, 1, 2]
    cols = [0, 1, 0, 2, 3, 4, 5, 0]
    positive = sp.csr_matrix((np.ones(8, np.float32), (rows, cols)), shape=(3, 6))
    positive[1, 5] = 0.0
    positive.eliminate_zeros()
    negative = sp.csr_matrix(([1.0], ([1], [5])), shape=(3, 6), dtype=np.float32)
    data = Interactions(positive, negative)
    weighted = confidence_weighted(data, RecommenderConfig())
    w = weighted.positive.toarray()
    assert w[0, 1] > w[0, 0] > 0  # the same evidence on a rarer track weighs more
    assert w[2, 0] > w[1, 0]  # ... and from a listener with a shorter history
    assert weighted.negative[1, 5] > 0 and weighted.positive.nnz == positive.nnz
    plain = confidence_weighted(data, RecommenderConfig(confidence_weighting="plain"))
    assert (plain.positive != positive).nnz == 0
    with pytest.raises(ValueError, match="confidence_weighting"):
        confidence_weighted(data, RecommenderConfig(confidence_weighting="tfidf"))


def test_blend_learns_from_every_random_hold_out_fold() -> None:
    timed = make_history()
    untimed = ListeningHistory(timed.listener_ids, timed.track_ids, skipped=timed.skipped)
    config = replace(SMALL, blend_folds=2)
    for history, folds in ((untimed, 2), (timed, 1)):
        steps: list[str] = []
        model = train_recommender(
            history, make_catalogue(), config, progress=lambda f, m, s=steps: s.append(m)
        )
        assert any(m.startswith("blend fold 2") for m in steps) == (folds == 2)
        assert set(model.blend_weights.values()) != {1.0}
        assert 0.0 < model.metrics["ndcg@10"] <= 1.0
        # Still the two taste groups apart.
        recs = model.recommend(["l0"], k=5)[0]
        assert recs is not None
        assert all(group_of_track(r.track_id) == 0 for r in recs)


def circles_world(seed: int = 5) -> tuple[ListeningHistory, Following]:
    """Four circles of 30 friends, each circle with its own 20 tracks, but every listener
    has played only 2 of them plus 2 random tracks from anywhere: listens alone say little
    of a listener's circle, whom they follow says it plainly."""
    rng = np.random.default_rng(seed)
    listeners, tracks, times, followers, followed = [], [], [], [], []
    for listener in range(N_LISTENERS):
        circle = listener % 4
        own = [20 * circle + int(t) for t in rng.choice(20, 2, replace=False)]
        for t in own + [int(t) for t in rng.choice(N_TRACKS, 2, replace=False)]:
            listeners.append(f"l{listener}")
            tracks.append(TRACKS[t])
            times.append(rng.uniform(0, 30))
        friends = [f for f in range(circle, N_LISTENERS, 4) if f != listener]
        for friend in rng.choice(friends, 6, replace=False):
            followers.append(f"l{listener}")
            followed.append(f"l{friend}")
    return (
        ListeningHistory(np.array(listeners), np.array(tracks), played_at=np.array(times)),
        Following(np.array(followers), np.array(followed)),
    )


def test_following_brings_the_circle_s_tracks() -> None:
    history, following = circles_world()
    catalogue = Catalogue(np.array(TRACKS), np.array(TRACKS))  # no content to lean on
    alone = train_recommender(history, catalogue, SMALL)
    social = train_recommender(history, catalogue, SMALL, following=following)
    assert "following" not in alone.blend_weights
    assert social.blend_weights["following"] > 0.1

    def circle_share(model: Recommender) -> float:
        ids = [f"l{i}" for i in range(N_LISTENERS)]
        hits = total = 0
        for i, recs in enumerate(model.recommend(ids, k=10)):
            assert recs is not None
            hits += sum(int(r.track_id[1:]) // 20 == i % 4 for r in recs)
            total += len(recs)
        return hits / total

    assert circle_share(social) > circle_share(alone) + 0.15
    reasons = {r.reason for recs in social.recommend(["l0", "l1"], k=10) for r in recs or []}
    assert "popular with people you follow" in reasons


def test_following_is_kept_by_serialisation_and_left_out_of_sessions() -> None:
    history, following = circles_world()
    catalogue = Catalogue(np.array(TRACKS), np.array(TRACKS))
    model = train_recommender(history, catalogue, SMALL, following=following)
    loaded = Recommender.from_bytes(model.to_bytes())
    assert bool((loaded.scores(["l0", "l5"]) == model.scores(["l0", "l5"])).all())
    names = [c.name for c in loaded.components]
    # The following component is scored against EASE's tracks, stored once.
    assert loaded.components[names.index("following")].items is (
        loaded.components[names.index("ease")].items
    )
    # Served scores are the blend of each component's standardised scores, the following
    # view included, though it shares EASE's item block in the serving matrix.
    rows = [loaded.listener_ids.index(lid) for lid in ("l0", "l5")]
    expected = sum(
        c.weight
        * (c.users[rows] * user_scale(c.users, c.item_cov)[rows, None])
        @ (c.items - c.item_mean).T
        for c in loaded.components
    )
    assert torch.allclose(loaded.scores(["l0", "l5"]), expected, atol=1e-4)
    # An anonymous session has nobody it follows: nothing of the following view reaches it.
    session = loaded.recommend_for_tracks([["t0", "t1"]], k=10)[0]
    assert session is not None
    assert all(r.reason != "popular with people you follow" for r in session)


def test_following_names_outside_the_history_are_ignored() -> None:
    history, following = circles_world()
    catalogue = Catalogue(np.array(TRACKS), np.array(TRACKS))
    noisy = Following(
        np.concatenate([following.follower_ids, ["ghost", "l0", "l0"]]),
        np.concatenate([following.followed_ids, ["l1", "ghost", "l0"]]),
    )
    clean = train_recommender(history, catalogue, SMALL, following=following)
    model = train_recommender(history, catalogue, SMALL, following=noisy)
    assert bool((model.scores(["l0", "l3"]) == clean.scores(["l0", "l3"])).all())
    with pytest.raises(ValueError, match="same length"):
        Following(np.array(["a", "b"]), np.array(["c"]))


def test_a_batched_request_ranks_as_the_same_request_alone() -> None:
    """Micro-batching must not change answers: with scores that differ only by float32
    rounding (near-duplicate tracks), the order may not depend on the batch's shape."""
    torch.manual_seed(0)
    n_listeners, n_tracks, dims = 300, 4000, 64
    users = (torch.randn(n_listeners, dims) * 4).round() / 4
    items = (torch.randn(n_tracks, dims) * 4).round() / 4
    items[: n_tracks // 2] = items[n_tracks // 2 :] * 1.0000001
    model = Recommender(
        listener_ids=[f"l{i}" for i in range(n_listeners)],
        track_ids=[f"t{i}" for i in range(n_tracks)],
        artist_ids=["a"],
        track_artist=torch.zeros(n_tracks, dtype=torch.long),
        history_indptr=torch.zeros(n_listeners + 1, dtype=torch.long),
        history_tracks=torch.zeros(0, dtype=torch.long),
        history_weights=torch.zeros(0),
        components=[ComponentState("als", users, items, None, 1.0)],
    )
    ids = [f"l{i}" for i in range(n_listeners)]
    batched = [
        recs
        for lo in range(0, n_listeners, 64)
        for recs in model.recommend(ids[lo : lo + 64], k=10)
    ]
    alone = [model.recommend([lid], k=10)[0] for lid in ids]
    assert [[r.track_id for r in recs or []] for recs in batched] == [
        [r.track_id for r in recs or []] for recs in alone
    ]
