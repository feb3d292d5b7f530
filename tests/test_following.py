"""Who follows whom, through the real server: `follows` on upsertListeners (stored, kept,
replaced, cleared), each bad item rejected with its code while the rest are stored, and
`listener.following` only ever answering with the caller's tenant's listeners."""

from __future__ import annotations

from typing import Any

from tests.conftest import SeededTenant
from tests.helpers import Api, codes
from tunelytics.domain.listening import MAX_FOLLOWS
from tunelytics.storage import Storage
from tunelytics.storage.scope import document_key

UPSERT = """mutation($items: [ListenerInput!]!) { upsertListeners(listeners: $items) {
  listeners { id following(first: 100) { id } }
  rejected { index field code message } } }"""
FOLLOWING = """query($id: ID!, $first: Int!) { listener(id: $id) {
  following(first: $first) { id country plan } } }"""


async def upsert(api: Api, tok: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    payload: dict[str, Any] = (await api.data(UPSERT, {"items": items}, tok))["upsertListeners"]
    return payload


async def following(api: Api, tok: str, listener_id: str, first: int = 100) -> list[str] | None:
    """The IDs `listener_id` follows, or None when the caller's tenant has no such listener."""
    body = await api.post(FOLLOWING, {"id": listener_id, "first": first}, tok)
    if body["data"]["listener"] is None:
        assert codes(body) == ["NOT_FOUND"], body
        return None
    assert "errors" not in body, body
    return [li["id"] for li in body["data"]["listener"]["following"]]


def rejections(payload: dict[str, Any]) -> list[tuple[int, str | None, str]]:
    return [(r["index"], r["field"], r["code"]) for r in payload["rejected"]]


def listener(item_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": item_id, "country": "SE", "plan": "free", **fields}


async def test_follows_are_stored_kept_replaced_and_cleared(api: Api, tenant: SeededTenant) -> None:
    demo_ids = [li.id for li in tenant.demo.listeners]
    # A new listener may follow existing ones and one created later in the same batch.
    payload = await upsert(
        api,
        tenant.admin,
        [
            listener("li-f1", follows=[demo_ids[2], "li-f2", demo_ids[2], demo_ids[0]]),
            listener("li-f2"),
        ],
    )
    assert payload["rejected"] == []
    # Duplicates collapse; the order given is kept.
    assert payload["listeners"] == [
        {"id": "li-f1", "following": [{"id": demo_ids[2]}, {"id": "li-f2"}, {"id": demo_ids[0]}]},
        {"id": "li-f2", "following": []},
    ]
    viewer = tenant.viewer
    assert await following(api, viewer, "li-f1") == [demo_ids[2], "li-f2", demo_ids[0]]
    assert await following(api, viewer, "li-f1", first=2) == [demo_ids[2], "li-f2"]
    # The followed listeners are the tenant's own, with their own fields.
    data = await api.data(FOLLOWING, {"id": "li-f1", "first": 1}, viewer)
    own = tenant.demo.listeners[2]
    assert data["listener"]["following"] == [
        {"id": own.id, "country": own.country, "plan": own.plan}
    ]

    # An update that leaves follows out keeps them; a list replaces them; [] clears them.
    payload = await upsert(api, tenant.admin, [listener("li-f1", plan="premium")])
    assert payload["rejected"] == []
    assert await following(api, viewer, "li-f1") == [demo_ids[2], "li-f2", demo_ids[0]]
    await upsert(api, tenant.admin, [listener("li-f1", follows=[demo_ids[5]])])
    assert await following(api, viewer, "li-f1") == [demo_ids[5]]
    await upsert(api, tenant.admin, [listener("li-f1", follows=[])])
    assert await following(api, viewer, "li-f1") == []
    # A demo listener keeps its generated follows when updated without them.
    before = await following(api, viewer, demo_ids[0])
    assert before == tenant.demo.listeners[0].follows != []
    await upsert(api, tenant.admin, [{"id": demo_ids[0], "country": "BR", "plan": "student"}])
    assert await following(api, viewer, demo_ids[0]) == before


async def test_bad_follows_are_rejected_item_by_item(api: Api, tenant: SeededTenant) -> None:
    known = tenant.demo.listeners[1].id
    too_many = [f"li-many-{i}" for i in range(MAX_FOLLOWS + 1)]
    payload = await upsert(
        api,
        tenant.admin,
        [
            listener("li-ok-1", follows=[known]),  # 0
            listener("li-self", follows=[known, "li-self"]),  # 1
            listener("li-unknown", follows=[known, "li-nobody", "li-nobody-2"]),  # 2
            listener("li-many", follows=too_many),  # 3
            listener("li-bad-id", follows=["not an id"]),  # 4
            # Follows a listener whose own item is rejected: not stored, so unknown.  5
            listener("li-chain", follows=["li-unknown"]),
            listener("li-ok-2", follows=["li-ok-1", known]),  # 6
            listener("li-chain-2", follows=["li-chain"]),  # 7
        ],
    )
    assert rejections(payload) == [
        (1, "follows", "BAD_USER_INPUT"),
        (2, "follows", "NOT_FOUND"),
        (3, "follows", "BAD_USER_INPUT"),
        (4, "follows", "BAD_USER_INPUT"),
        (5, "follows", "NOT_FOUND"),
        (7, "follows", "NOT_FOUND"),
    ]
    messages = {r["index"]: r["message"] for r in payload["rejected"]}
    assert "itself" in messages[1]
    assert "li-nobody, li-nobody-2" in messages[2] and known not in messages[2]
    assert str(MAX_FOLLOWS) in messages[3]
    assert "li-unknown" in messages[5] and "li-chain" in messages[7]
    assert [li["id"] for li in payload["listeners"]] == ["li-ok-1", "li-ok-2"]
    assert await following(api, tenant.viewer, "li-ok-2") == ["li-ok-1", known]
    for rejected in ("li-self", "li-unknown", "li-many", "li-bad-id", "li-chain", "li-chain-2"):
        assert await following(api, tenant.viewer, rejected) is None, rejected

    # A rejected update leaves the stored listener and its follows as they were.
    payload = await upsert(api, tenant.admin, [listener("li-ok-2", follows=["li-nobody"])])
    assert rejections(payload) == [(0, "follows", "NOT_FOUND")]
    assert await following(api, tenant.viewer, "li-ok-2") == ["li-ok-1", known]


async def test_following_is_bounded_like_other_lists(api: Api, tenant: SeededTenant) -> None:
    for first in (0, 101):
        body = await api.post(
            FOLLOWING, {"id": tenant.demo.listeners[0].id, "first": first}, tenant.viewer
        )
        assert codes(body) == ["BAD_USER_INPUT"], body
    # `following` is a read: a token that may only write listeners does not get it.
    body = await api.post(UPSERT, {"items": [listener("li-ingest")]}, tenant.token("ingest"))
    assert codes(body) == ["FORBIDDEN"]


async def test_a_tenant_cannot_follow_or_see_another_tenants_listeners(
    api: Api, storage: Storage, tenant: SeededTenant, other_tenant: SeededTenant
) -> None:
    a, b = tenant, other_tenant
    assert (await upsert(api, a.admin, [listener("li-only-in-a")]))["rejected"] == []

    # B cannot follow A's listener: rejected exactly as an ID that exists nowhere.
    payload = await upsert(
        api,
        b.admin,
        [
            listener("li-b-1", follows=["li-only-in-a"]),
            listener("li-b-2", follows=["li-nowhere"]),
            listener("li-b-3", follows=["li-00001"]),  # B's own li-00001
        ],
    )
    assert rejections(payload) == [(0, "follows", "NOT_FOUND"), (1, "follows", "NOT_FOUND")]
    first, second = (r["message"] for r in payload["rejected"])
    assert first.replace("li-only-in-a", "X") == second.replace("li-nowhere", "X")
    assert [li["id"] for li in payload["listeners"]] == ["li-b-3"]

    # Even a document that names A's listener (written behind the API's back) never
    # shows it to B; B's own listener of the same ID as one of A's is B's.
    await storage.db["listeners"].update_one(
        {"_id": document_key(b.id, "li-b-3")},
        {"$set": {"follows": ["li-only-in-a", f"{a.id}/li-only-in-a", "li-00002"]}},
    )
    data = await api.data(FOLLOWING, {"id": "li-b-3", "first": 10}, b.viewer)
    mine = b.demo.listeners[1]
    assert data["listener"]["following"] == [
        {"id": mine.id, "country": mine.country, "plan": mine.plan}
    ]
    # And A, asking for B's listener, finds nothing at all.
    assert await following(api, a.viewer, "li-b-3") is None
