"""The trained hybrid recommender: scoring, re-ranking, explanations, serialisation."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import torch

from tunelytics.domain.recommend.data import Recommendation

FORMAT_VERSION = 1
# How many of a listener's heaviest tracks are considered when explaining a result.
EXPLAIN_HISTORY = 256
COLLABORATIVE = ("als", "ease")
# Components whose listener vectors come from other listeners (whom they follow): a session
# folded in from its tracks alone has none.
SOCIAL = ("following",)
# Serving at catalogue scale: when tracks x serving dims exceeds EXACT_SCAN_FLOATS, a request
# scans a compact COARSE_RANK-dim projection of the item matrix (a matvec over a few MB
# instead of the whole matrix) and re-scores its best RESCORE_POOL tracks exactly.
EXACT_SCAN_FLOATS = 8_000_000
COARSE_RANK = 96
RESCORE_POOL = 1024
# Candidates beyond the requested ones, so that equal scores at the cut are ordered by
# track whatever order topk found them in.
TIE_MARGIN = 16


@dataclass
class ComponentState:
    """One component as stored: raw factors plus what the blend needs to standardise them."""

    name: str
    users: torch.Tensor  # (listeners, d)
    items: torch.Tensor  # (tracks, d)
    query: torch.Tensor | None  # (tracks, d) fold-in; None for constant user vectors
    weight: float

    @property
    def item_mean(self) -> torch.Tensor:
        return self.items.mean(0)

    @property
    def item_cov(self) -> torch.Tensor:
        centred = self.items - self.items.mean(0)
        return centred.T @ centred / max(self.items.shape[0], 1)


def user_scale(users: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """1 / (standard deviation over tracks of each user's scores); 0 for flat users, whose
    component then has nothing to say."""
    var = ((users @ cov) * users).sum(1)
    std = var.clamp_min(0).sqrt()
    return torch.where(std > 1e-6, 1.0 / std.clamp_min(1e-6), torch.zeros_like(std))


def _ordered_top(
    scores: torch.Tensor, tracks: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best n (score, track) per row, equal scores ordered by track index. topk alone
    orders ties as its kernel happens to (it differs with the batch size), and tracks
    nothing distinguishes (e.g. unplayed tracks of one genre) tie exactly; TIE_MARGIN more
    candidates (the caller's pool holds them) make a tie at the cut resolve the same way."""
    m = min(scores.shape[1], n + TIE_MARGIN)
    top_scores, at = torch.topk(scores, m, dim=1)
    top_tracks = torch.gather(tracks, 1, at)
    by_track = torch.argsort(top_tracks, dim=1)
    top_scores, top_tracks = top_scores.gather(1, by_track), top_tracks.gather(1, by_track)
    top_scores, by_score = torch.sort(top_scores, dim=1, descending=True, stable=True)
    return top_scores[:, :n], top_tracks.gather(1, by_score)[:, :n]


def reason_for(component: str, because: str | None) -> str:
    if because is None:
        if component == "popularity":
            return "popular across the catalogue"
        if component == "following":
            return "popular with people you follow"
        return "popular with listeners like you"
    return {
        "als": f"because you played {because}",
        "ease": f"because you played {because}",
        "genre": f"same genres as {because}",
        "artist": f"more from the artist of {because}",
        "audio": f"similar sound to {because}",
    }.get(component, "popular with listeners like you")


class Recommender:
    """See the package docstring for the contract; build one with train_recommender."""

    def __init__(
        self,
        *,
        listener_ids: list[str],
        track_ids: list[str],
        artist_ids: list[str],
        track_artist: torch.Tensor,
        history_indptr: torch.Tensor,
        history_tracks: torch.Tensor,
        history_weights: torch.Tensor,
        components: list[ComponentState],
        metrics: dict[str, Any] | None = None,
        data_window: dict[str, Any] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        self.listener_ids = listener_ids
        self.track_ids = track_ids
        self.artist_ids = artist_ids
        self.track_artist = track_artist.long()
        self.history_indptr = history_indptr.long()
        self.history_tracks = history_tracks.long()
        self.history_weights = history_weights.float()
        self.components = components
        self.metrics: dict[str, Any] = dict(metrics or {})
        self.data_window: dict[str, Any] = dict(data_window or {})
        self.parameters: dict[str, Any] = dict(parameters or {})
        self._listener_index = {lid: i for i, lid in enumerate(listener_ids)}
        self._track_index = {tid: i for i, tid in enumerate(track_ids)}
        self._build()

    # --- serving matrices -------------------------------------------------------------

    def _build(self) -> None:
        """Concatenate the weighted components into one user and one item matrix so that a
        batch is scored by a single matmul. Item vectors are centred and user vectors scaled
        by weight / std, which makes each component's scores per listener standardised.
        Components scored against the same tracks (following shares EASE's) keep their own
        user blocks, for the explanations, but one item block: a batch's user vectors are
        summed onto it before the scan (``_serving``)."""
        users, items, slices, user_to_item = [], [], [], []
        self._active: list[tuple[ComponentState, torch.Tensor, torch.Tensor]] = []
        # (raw item matrix, its first column, its covariance, its mean), one per block
        blocks: list[tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]] = []
        item_weights: list[torch.Tensor] = []
        user_start = item_start = 0
        for c in self.components:
            if c.weight == 0.0:
                continue
            d = c.items.shape[1]
            shared = next((b for b in blocks if b[0] is c.items), None)
            if shared is None:
                shared = (c.items, item_start, c.item_cov, c.item_mean)
                blocks.append(shared)
                items.append(c.items - shared[3])
                item_weights.append(torch.full((d,), abs(c.weight)))
                item_start += d
            _, at, cov, mean = shared
            users.append(c.users * (c.weight * user_scale(c.users, cov))[:, None])
            user_to_item.append(torch.arange(at, at + d))
            slices.append((c.name, user_start, user_start + d, at, at + d))
            user_start += d
            self._active.append((c, cov, mean))
        n_l, n_t = len(self.listener_ids), len(self.track_ids)
        self._users = torch.cat(users, 1).contiguous() if users else torch.zeros(n_l, 1)
        self._items = torch.cat(items, 1).contiguous() if items else torch.zeros(n_t, 1)
        self._user_to_item = torch.cat(user_to_item) if user_to_item else torch.zeros(1).long()
        self._merged = self._users.shape[1] != self._items.shape[1]
        self._slices = slices
        # Unit "taste" vectors for the diversity re-ranking: what the blend sees of a track.
        weights = torch.cat(item_weights) if item_weights else torch.ones(1)
        taste = self._items * weights
        self._taste = taste / taste.norm(dim=1, keepdim=True).clamp_min(1e-9)
        self._build_coarse()

    def _build_coarse(self) -> None:
        """The compact retrieval matrix: the top COARSE_RANK directions of the item matrix,
        with each serving dimension first scaled by its typical user magnitude (so the
        directions that move scores most are kept), i.e. u . i ~ (u / s) V . (i s) V."""
        n_tracks, dims = self._items.shape
        self._coarse_items: torch.Tensor | None = None
        self._coarse_map = torch.zeros(dims, 0)
        if n_tracks * dims <= EXACT_SCAN_FLOATS or dims <= COARSE_RANK:
            return
        scale = self._serving(self._users).pow(2).mean(0).sqrt().clamp_min(1e-6)
        scaled = self._items * scale
        _, vectors = torch.linalg.eigh((scaled.T @ scaled).double())
        basis = vectors[:, -COARSE_RANK:].float()
        self._coarse_items = (scaled @ basis).contiguous()
        self._coarse_map = (basis / scale[:, None]).contiguous()

    def _serving(self, users: torch.Tensor) -> torch.Tensor:
        """User vectors (per component block) in the item matrix's layout."""
        if not self._merged:
            return users
        out = torch.zeros(users.shape[0], self._items.shape[1])
        return out.index_add_(1, self._user_to_item, users)

    @property
    def blend_weights(self) -> dict[str, float]:
        return {c.name: c.weight for c in self.components}

    def _fold_in(self, seeds: list[list[int]]) -> torch.Tensor:
        """User vectors (in the serving layout) for sets of seed tracks."""
        blocks = []
        for c, cov, _ in self._active:
            if c.name in SOCIAL:
                u = torch.zeros(len(seeds), c.items.shape[1])
            elif c.query is None:
                u = torch.ones(len(seeds), c.items.shape[1])
            else:
                u = torch.stack(
                    [
                        c.query[torch.tensor(s, dtype=torch.long)].sum(0)
                        if s
                        else torch.zeros(c.query.shape[1])
                        for s in seeds
                    ]
                )
            blocks.append(u * (c.weight * user_scale(u, cov))[:, None])
        return torch.cat(blocks, 1) if blocks else torch.zeros(len(seeds), 1)

    def listener_history(self, row: int) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = int(self.history_indptr[row]), int(self.history_indptr[row + 1])
        return self.history_tracks[lo:hi], self.history_weights[lo:hi]

    # --- public API ---------------------------------------------------------------------

    def recommend(
        self,
        listener_ids: list[str],
        k: int,
        exclude_listened: bool = True,
        diversity: float = 0.0,
        max_per_artist: int | None = None,
    ) -> list[list[Recommendation] | None]:
        rows = [self._listener_index.get(lid) for lid in listener_ids]
        known = [r for r in rows if r is not None]
        if not known:
            return [None] * len(rows)
        users = self._users[torch.tensor(known, dtype=torch.long)]
        histories = [self.listener_history(r) for r in known]
        results = self._rank(users, histories, k, exclude_listened, diversity, max_per_artist)
        it = iter(results)
        return [None if r is None else next(it) for r in rows]

    def recommend_for_tracks(
        self,
        seed_track_ids: list[list[str]],
        k: int,
        exclude_seeds: bool = True,
        diversity: float = 0.0,
        max_per_artist: int | None = None,
    ) -> list[list[Recommendation] | None]:
        """Anonymous sessions: each entry is the tracks played so far. An empty session gets
        popular tracks; a session whose tracks are all unknown gets None."""
        seeds: list[list[int]] = []
        slots: list[bool] = []
        for tracks in seed_track_ids:
            idx = [self._track_index[t] for t in tracks if t in self._track_index]
            ok = bool(idx) or not tracks
            slots.append(ok)
            if ok:
                seeds.append(idx)
        if not seeds:
            return [None] * len(slots)
        users = self._fold_in(seeds)
        histories = [(torch.tensor(s, dtype=torch.long), torch.ones(len(s))) for s in seeds]
        results = self._rank(users, histories, k, exclude_seeds, diversity, max_per_artist)
        it = iter(results)
        return [next(it) if ok else None for ok in slots]

    def similar_tracks(
        self,
        track_ids: list[str],
        k: int,
        diversity: float = 0.0,
        max_per_artist: int | None = None,
    ) -> list[list[Recommendation] | None]:
        known = [t for t in track_ids if t in self._track_index]
        results = iter(
            self.recommend_for_tracks([[t] for t in known], k, True, diversity, max_per_artist)
        )
        return [next(results) if t in self._track_index else None for t in track_ids]

    # --- ranking ------------------------------------------------------------------------

    def scores(self, listener_ids: list[str]) -> torch.Tensor:
        """Raw hybrid scores (listeners, tracks) for known listeners (evaluation, tests)."""
        rows = torch.tensor([self._listener_index[lid] for lid in listener_ids])
        return self._serving(self._users[rows]) @ self._items.T

    def _rank(
        self,
        users: torch.Tensor,
        histories: list[tuple[torch.Tensor, torch.Tensor]],
        k: int,
        exclude: bool,
        diversity: float,
        max_per_artist: int | None,
    ) -> list[list[Recommendation]]:
        n_tracks = self._items.shape[0]
        k = max(0, min(k, n_tracks))
        if k == 0:
            return [[] for _ in histories]
        with torch.no_grad():
            rerank = diversity > 0.0 or max_per_artist is not None
            n_cand = min(n_tracks, max(4 * k, k + 50) if rerank else k)
            top_scores, top_idx = self._top(users, histories, n_cand, exclude)
            out = []
            for b in range(len(histories)):
                valid = torch.isfinite(top_scores[b])
                cand, cand_scores = top_idx[b][valid], top_scores[b][valid]
                if rerank:
                    cand, cand_scores = self._rerank(
                        cand, cand_scores, k, diversity, max_per_artist
                    )
                out.append(self._explain(users[b], histories[b], cand[:k], cand_scores[:k]))
            return out

    def _top(
        self,
        users: torch.Tensor,
        histories: list[tuple[torch.Tensor, torch.Tensor]],
        n_cand: int,
        exclude: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Best n_cand tracks per user (scores -inf for excluded ones): one exact scan of the
        item matrix, or at catalogue scale one scan of the compact matrix and an exact
        re-score of its best RESCORE_POOL tracks."""
        coarse = self._coarse_items
        users = self._serving(users)
        scan = users @ self._items.T if coarse is None else users @ self._coarse_map @ coarse.T
        if exclude:
            lengths = torch.tensor([len(h[0]) for h in histories])
            if int(lengths.sum()):
                row_idx = torch.repeat_interleave(torch.arange(len(histories)), lengths)
                scan[row_idx, torch.cat([h[0] for h in histories])] = -torch.inf
        width = min(scan.shape[1], n_cand + TIE_MARGIN)
        if coarse is None:
            pool_scores, pool = torch.topk(scan, width, dim=1)
        else:
            wide_scores, wide = torch.topk(scan, min(scan.shape[1], max(RESCORE_POOL, n_cand)), 1)
            exact = torch.bmm(self._items[wide], users[:, :, None]).squeeze(2)
            exact = exact.masked_fill(~torch.isfinite(wide_scores), -torch.inf)
            pool_scores, at = torch.topk(exact, width, dim=1)
            pool = wide.gather(1, at)
        # The final candidates are re-scored in float64: a float32 matmul's rounding depends
        # on the batch's shape, so tracks within ~1e-7 of each other could swap places
        # between a micro-batched request and the same request alone.
        final = torch.bmm(self._items[pool].double(), users.double()[:, :, None]).squeeze(2)
        final = final.masked_fill(~torch.isfinite(pool_scores), -torch.inf)
        top_scores, top_tracks = _ordered_top(final, pool, n_cand)
        return top_scores.float(), top_tracks

    def _rerank(
        self,
        cand: torch.Tensor,
        cand_scores: torch.Tensor,
        k: int,
        diversity: float,
        max_per_artist: int | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """MMR (Carbonell & Goldstein): trade relevance for dissimilarity to the tracks
        already chosen, and cap tracks per artist."""
        if len(cand) == 0:
            return cand, cand_scores
        lo, hi = cand_scores.min(), cand_scores.max()
        relevance = (cand_scores - lo) / (hi - lo).clamp_min(1e-9)
        taste = self._taste[cand]
        sims = taste @ taste.T
        artists = self.track_artist[cand].tolist()
        per_artist: dict[int, int] = {}
        max_sim = torch.full((len(cand),), -1.0)
        taken = torch.zeros(len(cand), dtype=torch.bool)
        chosen: list[int] = []
        d = min(max(diversity, 0.0), 1.0)
        while len(chosen) < k:
            value = (1.0 - d) * relevance - d * max_sim.clamp_min(0.0)
            value[taken] = -torch.inf
            if max_per_artist is not None:
                for j in range(len(cand)):
                    if per_artist.get(artists[j], 0) >= max_per_artist:
                        value[j] = -torch.inf
            best = int(torch.argmax(value))
            if not torch.isfinite(value[best]):
                break
            chosen.append(best)
            taken[best] = True
            per_artist[artists[best]] = per_artist.get(artists[best], 0) + 1
            max_sim = torch.maximum(max_sim, sims[best])
        pick = torch.tensor(chosen, dtype=torch.long)
        return cand[pick], cand_scores[pick]

    def _explain(
        self,
        user: torch.Tensor,
        history: tuple[torch.Tensor, torch.Tensor],
        cand: torch.Tensor,
        cand_scores: torch.Tensor,
    ) -> list[Recommendation]:
        """The reason is the component that contributed most; its seed is the played track
        whose own contribution to the result is largest (exact for the linear fold-in)."""
        if len(cand) == 0:
            return []
        contrib = torch.stack(
            [
                (user[u_lo:u_hi] * self._items[cand, i_lo:i_hi]).sum(1)
                for _, u_lo, u_hi, i_lo, i_hi in self._slices
            ],
            1,
        )
        dominant = contrib.argmax(1).tolist()
        tracks, weights = history
        if len(tracks) > EXPLAIN_HISTORY:
            keep = torch.topk(weights, EXPLAIN_HISTORY).indices
            tracks, weights = tracks[keep], weights[keep]
        out = []
        for j, track in enumerate(cand.tolist()):
            name = self._slices[dominant[j]][0]
            component = self._active[dominant[j]][0]
            because = None
            if component.query is not None and len(tracks):
                seed_part = (component.query[tracks] @ component.items[track]) * weights
                best = int(torch.argmax(seed_part))
                if float(seed_part[best]) > 0 and int(tracks[best]) != track:
                    because = self.track_ids[int(tracks[best])]
            out.append(
                Recommendation(
                    self.track_ids[track], float(cand_scores[j]), reason_for(name, because), because
                )
            )
        return out

    # --- serialisation ------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Tensors through torch.save plus JSON metadata; no pickled objects."""
        tensors: dict[str, torch.Tensor] = {
            "track_artist": self.track_artist,
            "history_indptr": self.history_indptr,
            "history_tracks": self.history_tracks,
            "history_weights": self.history_weights,
        }
        comps = []
        for i, c in enumerate(self.components):
            tensors[f"c{i}.users"] = c.users
            entry: dict[str, Any] = {"name": c.name, "weight": c.weight}
            # A component scored against another's tracks (following) stores them once.
            shared = next((j for j in range(i) if self.components[j].items is c.items), None)
            if shared is None:
                tensors[f"c{i}.items"] = c.items
            else:
                entry["items_of"] = shared
            if c.query is not None:
                tensors[f"c{i}.query"] = c.query
            entry["query"] = c.query is not None
            comps.append(entry)
        meta = {
            "format": FORMAT_VERSION,
            "listener_ids": self.listener_ids,
            "track_ids": self.track_ids,
            "artist_ids": self.artist_ids,
            "components": comps,
            "metrics": self.metrics,
            "data_window": self.data_window,
            "parameters": self.parameters,
        }
        buffer = io.BytesIO()
        torch.save({"meta": json.dumps(meta), "tensors": tensors}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Recommender:
        blob = torch.load(io.BytesIO(data), weights_only=True)
        meta = json.loads(blob["meta"])
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"unsupported recommender format {meta.get('format')!r}")
        t = blob["tensors"]
        components: list[ComponentState] = []
        for i, c in enumerate(meta["components"]):
            items = t[f"c{i}.items"] if "items_of" not in c else components[c["items_of"]].items
            query = t[f"c{i}.query"] if c["query"] else None
            components.append(
                ComponentState(c["name"], t[f"c{i}.users"], items, query, float(c["weight"]))
            )
        return cls(
            listener_ids=meta["listener_ids"],
            track_ids=meta["track_ids"],
            artist_ids=meta["artist_ids"],
            track_artist=t["track_artist"],
            history_indptr=t["history_indptr"],
            history_tracks=t["history_tracks"],
            history_weights=t["history_weights"],
            components=components,
            metrics=meta["metrics"],
            data_window=meta["data_window"],
            parameters=meta["parameters"],
        )
