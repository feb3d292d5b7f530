"""Track recommendations: a hybrid of collaborative and content models, blended by weights
learned on a hold-out, served by one matmul + top-k per batch.

Inputs (columnar numpy; see data.py):

- ``ListeningHistory(listener_ids, track_ids, played_at=None, ms_played=None,
  duration_ms=None, completion=None, skipped=None, plays=None)``: one row per listen
  (``plays`` repeats a row for aggregated data). ``played_at`` is datetime64 or float
  seconds. Evidence per listener-track pair: the heard fraction of each listen (completion,
  or ms_played / duration_ms), minus ``skip_penalty`` per skip, repeats on a log scale.
  Pairs whose skips outweigh their listens are negative evidence. The collaborative
  components see that evidence BM25-weighted (``confidence_weighting``): rare tracks and
  short histories count for more.
- ``Catalogue(track_ids, artist_ids, genres=None, popularity=None, audio_embeddings=None)``:
  one entry per recommendable track; ``audio_embeddings`` is an optional (tracks, dims)
  float matrix (zero rows = no audio). History tracks missing from the catalogue are added
  without content.

- ``Following(follower_ids, followed_ids)``: optional, one row per listener following
  another (a mutual friendship is two rows); names without a history are ignored.

Training: ``train_recommender(history, catalogue, config=None, progress=None,
following=None) -> Recommender``. ``progress(fraction 0..1, message)`` is called at each
step. Components: implicit ALS (weighted MF trained with PyTorch, skips as confident
zeros), EASE (closed form through a thin SVD, lambda chosen on the hold-out), following
(the mean EASE listener vector of the listeners one follows, scored against EASE's
tracks; given ``following``), content views (genres, artist, audio) and popularity. Each
component's scores are standardised per listener; the blend weights are fitted with
PyTorch on a time-based hold-out (the latest ``holdout_fraction`` of listens; random
when there are no times): a listwise softmax likelihood over every component's top
``blend_top`` unseen tracks (Newton steps), then a coordinate search for NDCG@10. With a
random hold-out the blend learns from ``blend_folds`` folds at once (each its own seeded
split and component fit; default 2): one fold's weights are noisy. Then the components
are refitted on all listens. Serving concatenates the weighted components into one user
and one item matrix (dims: factors + EASE rank + content dims + 1; following adds its
user block onto EASE's item block), so a batch is one matmul and one top-k.
``recommender.metrics`` holds hold-out ``recall@10``, ``ndcg@10``, ``coverage@10`` (plus
``<component>.ndcg@10``, ``split``, ``validation_listeners``);
``recommender.data_window`` holds ``listens``, ``listeners``, ``tracks``, ``split`` and,
with times, ``start``/``end``/``holdout_from`` (ISO 8601); ``recommender.parameters``
the config, the chosen ``ease_lambda``, ``blend_weights`` and ``timings``;
``recommender.blend_weights`` the learned weight per component.

Serving (all batched, results aligned with the inputs, None for an unknown ID):

- ``recommend(listener_ids, k, exclude_listened=True, diversity=0.0, max_per_artist=None)
  -> list[list[Recommendation] | None]``
- ``similar_tracks(track_ids, k, diversity=0.0, max_per_artist=None)``
- ``recommend_for_tracks(seed_track_ids: list[list[str]], k, exclude_seeds=True,
  diversity=0.0, max_per_artist=None)``: anonymous sessions; an empty session gets popular
  tracks, a session of only unknown tracks gets None.
- ``Recommendation(track_id, score, reason, because)``: ``reason`` is a short English
  phrase ("because you played X", "similar sound to X", "same genres as X", "more from the
  artist of X", "popular with people you follow", "popular with listeners like you",
  "popular across the catalogue");
  ``because`` is the track ID it refers to (or None), so callers can show titles instead.
- ``diversity`` in 0..1 trades relevance for dissimilarity (MMR); ``max_per_artist`` caps
  tracks per artist.
- ``to_bytes()`` / ``Recommender.from_bytes(data)``: torch.save of tensors plus JSON
  metadata, loaded with ``weights_only=True``.

>>> import numpy as np
>>> history = ListeningHistory(
...     listener_ids=np.array(["a", "a", "b", "b", "c"]),
...     track_ids=np.array(["t1", "t2", "t1", "t2", "t1"]),
... )
>>> catalogue = Catalogue(track_ids=np.array(["t1", "t2", "t3"]),
...                       artist_ids=np.array(["x", "x", "y"]))
>>> model = train_recommender(history, catalogue)
>>> [r.track_id for r in model.recommend(["c"], k=1)[0]]
['t2']
>>> model.recommend(["nobody"], k=1)
[None]
"""

from tunelytics.domain.recommend.data import (
    Catalogue,
    Following,
    ListeningHistory,
    Recommendation,
    RecommenderConfig,
)
from tunelytics.domain.recommend.model import Recommender
from tunelytics.domain.recommend.train import train_recommender

__all__ = [
    "Catalogue",
    "Following",
    "ListeningHistory",
    "Recommendation",
    "Recommender",
    "RecommenderConfig",
    "train_recommender",
]
