"""Where the embedded nx-27017 server differs from MongoDB, and what the product relies on.

Every test asserts MongoDB's documented result for the formulation the product uses. Where
the emulator deviates, a test asserts `db_server.expect(mongodb=..., nx_27017=...)`: MongoDB's
documented result when the server is MongoDB, the result observed on nx-27017 0.8.1 when
it is the emulator. So the file passes on both, and a fix (or a new bug) in the emulator
makes a test fail and asks for docs/mongodb-compat.md to be updated.

The server is identified by `buildInfo` (see `Server.is_nx_27017`). Run against a real
MongoDB with `MONGODB_URL=mongodb://localhost:27017 make test`.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from tunelytics.domain.catalog import Track, TrackFilter
from tunelytics.domain.listening import Listen
from tunelytics.domain.paging import Order
from tunelytics.storage.catalog import TrackRepository
from tunelytics.storage.database import INDEXES
from tunelytics.storage.listening import ListenRepository

Document = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class Server:
    client: AsyncMongoClient[Document]
    build_info: Document

    @property
    def is_nx_27017(self) -> bool:
        # nx-27017 answers `buildInfo` with its serverStatus document, which names the
        # process; MongoDB's buildInfo has no "process" field (mongod and mongos both),
        # and needs no privilege, unlike serverStatus. (Its `hello` only lacks fields.)
        return self.build_info.get("process") == "nx_27017"

    def expect(self, *, mongodb: T, nx_27017: T) -> T:
        """MongoDB's documented result, or what the emulator is known to return."""
        return nx_27017 if self.is_nx_27017 else mongodb


@pytest.fixture(scope="module")
async def db_server(mongo_url: str) -> AsyncIterator[Server]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        mongo_url, tz_aware=True, serverSelectionTimeoutMS=5_000
    )
    yield Server(client, await client.admin.command("buildInfo"))
    await client.close()


@pytest.fixture
async def db(db_server: Server) -> AsyncIterator[AsyncDatabase[Document]]:
    """A fresh database for each test, dropped afterwards."""
    name = f"compat_{uuid.uuid4().hex[:12]}"
    yield db_server.client[name]
    await db_server.client.drop_database(name)


async def ids(cursor: Any) -> list[Any]:
    return [doc["_id"] async for doc in cursor]


async def run(collection: AsyncCollection[Document], pipeline: list[Document]) -> list[Document]:
    return await (await collection.aggregate(pipeline)).to_list()


# --- Which server is this ---------------------------------------------------------------


async def test_server_is_identified_by_build_info(db_server: Server) -> None:
    info = db_server.build_info
    if db_server.is_nx_27017:
        # A fake 7.0.0 with none of buildInfo's own fields.
        assert info["version"] == "7.0.0"
        assert "versionArray" not in info and "gitVersion" not in info
    else:
        assert "process" not in info
        assert isinstance(info["versionArray"], list)


async def test_server_info_reports_a_version(db_server: Server) -> None:
    # PyMongo's server_info() sends lowercase `buildinfo`, which nx-27017 does not know:
    # it answers {"ok": 1, "result": []}. Use command("buildInfo") to ask the emulator.
    info = await db_server.client.server_info()
    assert ("version" in info) == db_server.expect(mongodb=True, nx_27017=False)


# --- (a), (b) Equality on an array field ----------------------------------------------------

GENRE_DOCS = [
    {"_id": 1, "t": "a", "g": ["x", "y"]},
    {"_id": 2, "t": "a", "g": ["y"]},
    {"_id": 3, "t": "a", "g": ["x"]},
    {"_id": 4, "t": "b", "g": ["x"]},
]


@pytest.mark.parametrize(
    ("index", "query", "mongodb", "nx_27017"),
    [
        # (a) Plain equality with an index whose keys include the array field.
        ([("t", 1), ("g", 1)], {"t": "a", "g": "x"}, [1, 3], []),
        ([("g", 1)], {"g": "x"}, [1, 3, 4], []),
        # The explicit $eq operator, even without any index.
        (None, {"g": {"$eq": "x"}}, [1, 3, 4], []),
        # Plain equality without an index on the field works (a full scan, see the doc).
        (None, {"t": "a", "g": "x"}, [1, 3], [1, 3]),
        # The product's formulation (storage/catalog.py): $in with one value.
        ([("t", 1), ("g", 1)], {"t": {"$eq": "a"}, "g": {"$in": ["x"]}}, [1, 3], [1, 3]),
        ([("g", 1)], {"g": {"$in": ["x"]}}, [1, 3, 4], [1, 3, 4]),
        (None, {"g": {"$in": ["x"]}}, [1, 3, 4], [1, 3, 4]),
    ],
    ids=["t_g_index", "g_index", "eq_operator", "no_index", "in_t_g", "in_g", "in_no_index"],
)
async def test_find_equality_on_array_field(
    db: AsyncDatabase[Document],
    db_server: Server,
    index: list[tuple[str, int]] | None,
    query: Document,
    mongodb: list[int],
    nx_27017: list[int],
) -> None:
    """MongoDB: equality on an array field matches documents whose array holds the value."""
    await db.c.insert_many(GENRE_DOCS)
    if index:
        await db.c.create_index(index)
    assert await ids(db.c.find(query).sort("_id", 1)) == db_server.expect(
        mongodb=mongodb, nx_27017=nx_27017
    )
    # count_documents goes another way in the emulator and is right for every form.
    assert await db.c.count_documents(query) == len(mongodb)


@pytest.mark.parametrize("index", [None, [("g", 1)]], ids=["no_index", "g_index"])
async def test_aggregate_match_equality_on_array_field(
    db: AsyncDatabase[Document], db_server: Server, index: list[tuple[str, int]] | None
) -> None:
    """(b) $match equality on an array field: the emulator matches scalars only."""
    await db.c.insert_many(GENRE_DOCS)
    if index:
        await db.c.create_index(index)
    for match in ({"g": "x"}, {"g": {"$eq": "x"}}):
        got = await run(db.c, [{"$match": match}, {"$sort": {"_id": 1}}])
        assert [d["_id"] for d in got] == db_server.expect(mongodb=[1, 3, 4], nx_27017=[])
        # Alone, too, or followed by $project or $limit: any pipeline but the
        # [$match, $group {_id: 1, n: {$sum: 1}}] that count_documents sends.
        assert len(await run(db.c, [{"$match": match}])) == db_server.expect(mongodb=3, nx_27017=0)
        counted = await run(db.c, [{"$match": match}, {"$group": {"_id": 1, "n": {"$sum": 1}}}])
        assert counted == [{"_id": 1, "n": 3}]
    # Correct on both: $in (or $elemMatch, or $unwind first).
    got = await run(db.c, [{"$match": {"g": {"$in": ["x"]}}}, {"$sort": {"_id": 1}}])
    assert [d["_id"] for d in got] == [1, 3, 4]


# --- (c) Index keys and names ---------------------------------------------------------------


async def test_index_direction_and_name(db: AsyncDatabase[Document], db_server: Server) -> None:
    await db.c.insert_one({"a": 1, "b": 1})
    name = await db.c.create_index([("a", ASCENDING), ("b", DESCENDING)])
    assert name == "a_1_b_-1"  # computed by PyMongo, not by the server
    await db.c.create_index([("b", DESCENDING)], name="by_b")
    info = await db.c.index_information()
    keys = {index: spec["key"] for index, spec in info.items() if index != "_id_"}
    assert keys == db_server.expect(
        mongodb={"a_1_b_-1": [("a", 1), ("b", -1)], "by_b": [("b", -1)]},
        # Every key ascending, and the names are the emulator's own.
        nx_27017={"idx_c_a_b": [("a", 1), ("b", 1)], "idx_c_b": [("b", 1)]},
    )
    try:
        await db.c.drop_index(name)
        dropped = True
    except OperationFailure:  # nx-27017: 'near "-": syntax error'
        dropped = False
    assert dropped == db_server.expect(mongodb=True, nx_27017=False)


# --- (d), (e) and other aggregation results -------------------------------------------------


async def test_lookup_returns_an_array(db: AsyncDatabase[Document], db_server: Server) -> None:
    await db.artists.insert_many([{"_id": "a1", "name": "A"}])
    await db.tracks.insert_many([{"_id": "t1", "artist_id": "a1"}, {"_id": "t2", "artist_id": "z"}])
    lookup = {
        "$lookup": {"from": "artists", "localField": "artist_id", "foreignField": "_id", "as": "a"}
    }
    got = await run(db.tracks, [lookup, {"$sort": {"_id": 1}}])
    assert got[0]["a"] == db_server.expect(
        mongodb=[{"_id": "a1", "name": "A"}], nx_27017='[{"_id":"a1","name":"A"}]'
    )
    assert got[1]["a"] == []  # no match: a real empty array on both
    # Correct on both: $unwind after the $lookup (and $size of the joined array).
    unwound = await run(db.tracks, [lookup, {"$unwind": "$a"}])
    assert [(d["_id"], d["a"]) for d in unwound] == [("t1", {"_id": "a1", "name": "A"})]
    sizes = await run(db.tracks, [lookup, {"$project": {"n": {"$size": "$a"}}}])
    assert sorted(d["n"] for d in sizes) == [0, 1]


DAY = datetime(2024, 3, 5, tzinfo=UTC)
EVENTS = [{"_id": i, "n": i, "ts": DAY + timedelta(hours=10, minutes=30) + timedelta(hours=7 * i)}
          for i in range(9)]  # fmt: skip


async def test_date_trunc_group_key_is_a_date(
    db: AsyncDatabase[Document], db_server: Server
) -> None:
    await db.ev.insert_many(EVENTS)
    days = [DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)]
    by_day = {"$dateTrunc": {"date": "$ts", "unit": "day"}}
    got = await run(db.ev, [{"$group": {"_id": by_day, "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}])
    assert [d["n"] for d in got] == [2, 4, 3]
    assert [d["_id"] for d in got] == db_server.expect(
        mongodb=days,
        nx_27017=[f'{{"$date":"{day:%Y-%m-%d}T00:00:00Z"}}' for day in days],
    )
    # Correct on both: $dateTrunc outside $group, and $dateToString as a group key.
    projected = await run(db.ev, [{"$project": {"d": by_day}}, {"$sort": {"d": 1}}])
    assert projected[0]["d"] == DAY
    as_text = {"$dateToString": {"date": "$ts", "format": "%Y-%m-%d"}}
    got = await run(db.ev, [{"$group": {"_id": as_text, "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}])
    assert got == [{"_id": f"{d:%Y-%m-%d}", "n": n} for d, n in zip(days, [2, 4, 3], strict=True)]


async def test_group_date_accumulators_are_dates(
    db: AsyncDatabase[Document], db_server: Server
) -> None:
    await db.ev.insert_many(EVENTS)
    got = await run(
        db.ev, [{"$group": {"_id": None, "lo": {"$min": "$ts"}, "hi": {"$max": "$ts"}}}]
    )
    first, last = EVENTS[0]["ts"], EVENTS[-1]["ts"]
    # JSON text, and without the "Z" that the $dateTrunc keys carry.
    as_json = [f'{{"$date":"{ts:%Y-%m-%dT%H:%M:%S}"}}' for ts in (first, last)]
    assert [got[0]["lo"], got[0]["hi"]] == db_server.expect(mongodb=[first, last], nx_27017=as_json)


async def test_group_by_date_parts(db: AsyncDatabase[Document], db_server: Server) -> None:
    await db.ev.insert_many(EVENTS)
    key = {"y": {"$year": "$ts"}, "m": {"$month": "$ts"}, "d": {"$dayOfMonth": "$ts"}}
    got = await run(db.ev, [{"$group": {"_id": key, "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}])
    assert got == db_server.expect(
        mongodb=[{"_id": {"y": 2024, "m": 3, "d": d}, "n": n} for d, n in [(5, 2), (6, 4), (7, 3)]],
        # The key expressions are not evaluated: one group, keyed by the expression itself.
        nx_27017=[{"_id": key, "n": 9}],
    )


async def test_group_accumulator_of_id(db: AsyncDatabase[Document], db_server: Server) -> None:
    oid = ObjectId()
    await db.c.insert_many([{"_id": oid, "n": 1}, {"_id": "s", "n": 2}])
    got = await run(
        db.c, [{"$group": {"_id": "$n", "id": {"$first": "$_id"}}}, {"$sort": {"_id": 1}}]
    )
    # The emulator returns its SQLite row numbers instead of the documents' _id.
    assert [d["id"] for d in got] == db_server.expect(mongodb=[oid, "s"], nx_27017=[1, 2])


@pytest.mark.parametrize(
    ("pipeline", "mongodb", "nx_27017"),
    [
        ([{"$project": {"g": 1}}], [{"_id": 1, "g": ["x"]}], [{"_id": "1", "g": ["x"]}]),
        (
            [{"$unwind": "$g"}, {"$match": {"g": "x"}}],
            [{"_id": 1, "k": "a", "g": "x"}],
            [{"_id": "1", "k": "a", "g": "x"}],
        ),
        # An _id-only inclusion keeps the _id type but excludes nothing.
        ([{"$project": {"_id": 1}}], [{"_id": 1}], [{"_id": 1, "k": "a", "g": ["x"]}]),
        # Correct on both.
        ([{"$unwind": "$g"}], [{"_id": 1, "k": "a", "g": "x"}], [{"_id": 1, "k": "a", "g": "x"}]),
        (
            [{"$addFields": {"m": 1}}],
            [{"_id": 1, "k": "a", "g": ["x"], "m": 1}],
            [{"_id": 1, "k": "a", "g": ["x"], "m": 1}],
        ),
    ],
    ids=["project", "unwind_match", "project_id_only", "unwind", "add_fields"],
)
async def test_aggregate_keeps_id_type_and_projection(
    db: AsyncDatabase[Document],
    db_server: Server,
    pipeline: list[Document],
    mongodb: list[Document],
    nx_27017: list[Document],
) -> None:
    await db.c.insert_one({"_id": 1, "k": "a", "g": ["x"]})
    assert await run(db.c, pipeline) == db_server.expect(mongodb=mongodb, nx_27017=nx_27017)


# --- Dates in filters -----------------------------------------------------------------------

MOMENT = datetime(2024, 1, 2, 3, 4, 5, 500_000, tzinfo=UTC)
OFFSETS_MS = {"a": -1000, "b": -1, "c": 0, "d": 1, "e": 1000}  # b, c, d: the same second


@pytest.mark.parametrize(
    ("op", "mongodb", "nx_27017"),
    [
        ("$lt", ["a", "b"], ["a"]),
        ("$lte", ["a", "b", "c"], ["a", "b", "c", "d"]),
        ("$gt", ["d", "e"], ["e"]),
        ("$gte", ["c", "d", "e"], ["b", "c", "d", "e"]),
        ("$eq", ["c"], ["b", "c", "d"]),
        ("$ne", ["a", "b", "d", "e"], ["a", "e"]),
        # Correct on both: $in compares the stored value exactly.
        ("$in", ["c"], ["c"]),
    ],
)
async def test_find_date_comparison_resolution(
    db: AsyncDatabase[Document], db_server: Server, op: str, mongodb: list[str], nx_27017: list[str]
) -> None:
    """MongoDB compares dates to the millisecond; the emulator's find to the second."""
    docs = [{"_id": k, "ts": MOMENT + timedelta(milliseconds=ms)} for k, ms in OFFSETS_MS.items()]
    await db.d.insert_many(docs)
    await db.d.create_index([("ts", DESCENDING)])  # the same with or without an index
    value = [MOMENT] if op == "$in" else MOMENT
    query = {"ts": {op: value}}
    got = await ids(db.d.find(query).sort("_id", 1))
    assert got == db_server.expect(mongodb=mongodb, nx_27017=nx_27017)
    assert await ids(db.d.find({"ts": MOMENT}).sort("_id", 1)) == db_server.expect(
        mongodb=["c"], nx_27017=["b", "c", "d"]
    )
    # count_documents takes another path in the emulator and is exact.
    assert await db.d.count_documents(query) == len(mongodb)
    # Sorting is exact on both.
    assert await ids(db.d.find().sort("ts", 1)) == list(OFFSETS_MS)


async def test_date_comparison_beside_an_objectid_is_exact(
    db: AsyncDatabase[Document], db_server: Server
) -> None:
    """Observed: a filter that holds an ObjectId is evaluated exactly (and slowly) by nx-27017."""
    oids = {k: ObjectId() for k in OFFSETS_MS}
    name = {oid: k for k, oid in oids.items()}
    await db.d.insert_many(
        [
            {"_id": oids[k], "ts": MOMENT + timedelta(milliseconds=ms)}
            for k, ms in OFFSETS_MS.items()
        ]
    )
    alone = {"ts": {"$lt": MOMENT}}
    assert [name[i] for i in await ids(db.d.find(alone).sort("ts", 1))] == db_server.expect(
        mongodb=["a", "b"], nx_27017=["a"]
    )
    beside = {"ts": {"$lt": MOMENT}, "_id": {"$lte": max(oids.values())}}
    assert [name[i] for i in await ids(db.d.find(beside).sort("ts", 1))] == ["a", "b"]


async def test_listen_pages_within_one_second(db: AsyncDatabase[Document]) -> None:
    """The product's listen keyset (storage/listening.py) compares dates to the millisecond.

    Three listens in one second, stored newest first (so _id order is the reverse of time
    order, as with listens recorded late). Correct on both, on the emulator only because
    the $or holds an ObjectId (see the test above): keep the _id condition in that filter.
    """
    listens = ListenRepository(db.listens)
    await db.listens.create_indexes(INDEXES["listens"])
    stored = await listens.insert_many(
        "t",
        [
            Listen("", "l1", "tr", MOMENT + timedelta(milliseconds=ms), 1000, False, "other")
            for ms in (300, 200, 100)
        ],
    )
    seen: list[str] = []
    after = None
    while True:
        page = await listens.recent_by_listener("t", "l1", after, 1)
        seen += [item.id for item in page.items]
        if not page.has_next:
            break
        after = page.positions[-1]
    assert seen == [listen.id for listen in stored]


@pytest.mark.parametrize(
    ("op", "mongodb", "nx_27017"),
    [("$lt", 2, 0), ("$lte", 3, 0), ("$eq", 1, 0), ("$gt", 2, 5), ("$gte", 3, 5), ("$in", 1, 0)],
)
async def test_aggregate_match_on_dates(
    db: AsyncDatabase[Document], db_server: Server, op: str, mongodb: int, nx_27017: int
) -> None:
    """In a pipeline the emulator's date comparisons match nothing or everything."""
    await db.d.insert_many([{"_id": i, "ts": DAY + timedelta(days=i)} for i in range(5)])
    value = [DAY + timedelta(days=2)] if op == "$in" else DAY + timedelta(days=2)
    got = await run(db.d, [{"$match": {"ts": {op: value}}}])
    assert len(got) == db_server.expect(mongodb=mongodb, nx_27017=nx_27017)
    assert await db.d.count_documents({"ts": {op: value}}) == mongodb  # exact on both


# --- Values that the emulator confuses ----------------------------------------------------

HEX = "65a1b2c3d4e5f60718293a4b"


async def test_plain_equality_on_a_field_named_id(
    db: AsyncDatabase[Document], db_server: Server
) -> None:
    """The emulator rewrites {"id": <string>}: digits become an int, 24 hex digits `_id`."""
    await db.c.insert_many(
        [
            {"_id": 1, "id": "10"},
            {"_id": 2, "id": 10},
            {"_id": 3, "id": HEX},
            {"_id": ObjectId(HEX), "id": "other"},
        ]
    )
    assert await ids(db.c.find({"id": "10"})) == db_server.expect(mongodb=[1], nx_27017=[2])
    assert await ids(db.c.find({"$or": [{"id": "10"}]})) == db_server.expect(
        mongodb=[1], nx_27017=[2]
    )
    assert await ids(db.c.find({"id": HEX})) == db_server.expect(
        mongodb=[3], nx_27017=[ObjectId(HEX)]
    )
    # Correct on both: an operator ($eq, $in, $gt...) keeps the string a string.
    assert await ids(db.c.find({"id": {"$eq": "10"}})) == [1]
    assert await ids(db.c.find({"id": {"$in": ["10"]}})) == [1]
    assert await ids(db.c.find({"id": {"$eq": HEX}})) == [3]


async def test_string_id_and_objectid_are_distinct(
    db: AsyncDatabase[Document], db_server: Server
) -> None:
    oid = ObjectId()
    await db.c.insert_one({"_id": oid})
    try:
        await db.c.insert_one({"_id": str(oid)})
        inserted = True
    except DuplicateKeyError:
        inserted = False
    assert inserted == db_server.expect(mongodb=True, nx_27017=False)
    assert await ids(db.c.find({"_id": str(oid)})) == db_server.expect(
        mongodb=[str(oid)], nx_27017=[oid]
    )


async def test_booleans_are_not_numbers(db: AsyncDatabase[Document], db_server: Server) -> None:
    await db.c.insert_many(
        [{"_id": 1, "v": 1}, {"_id": 2, "v": True}, {"_id": 3, "v": 0}, {"_id": 4, "v": False},
         {"_id": 5, "v": 1.0}, {"_id": 6, "v": "1"}]
    )  # fmt: skip
    assert await ids(db.c.find({"v": True}).sort("_id", 1)) == db_server.expect(
        mongodb=[2], nx_27017=[1, 2, 5]
    )
    assert await ids(db.c.find({"v": 1}).sort("_id", 1)) == db_server.expect(
        mongodb=[1, 5], nx_27017=[1, 2, 5]
    )
    # BSON order: numbers < strings < booleans.
    assert await ids(db.c.find().sort([("v", 1), ("_id", 1)])) == db_server.expect(
        mongodb=[3, 1, 5, 6, 4, 2], nx_27017=[3, 4, 1, 2, 5, 6]
    )


NULLS = [{"_id": 1, "v": 3}, {"_id": 2}, {"_id": 3, "v": None}, {"_id": 4, "v": None}]


@pytest.mark.parametrize(
    ("query", "mongodb", "find_nx", "count_nx"),
    [
        ({"v": None}, [2, 3, 4], [2, 3, 4], 1),
        ({"v": {"$exists": False}}, [2], [2, 3, 4], 1),
        ({"v": {"$exists": True}}, [1, 3, 4], [1], 3),
        ({"v": {"$ne": None}}, [1], [1, 2], 2),
        ({"v": {"$type": "null"}}, [3, 4], [2, 3, 4], 3),
        ({"v": None, "_id": {"$gt": 2}}, [3, 4], [], 0),
        # Correct on both: null-or-missing written as $in [null].
        ({"v": {"$in": [None]}}, [2, 3, 4], [2, 3, 4], 3),
        ({"v": {"$in": [None]}, "_id": {"$gt": 2}}, [3, 4], [3, 4], 2),
    ],
    ids=["eq", "exists_false", "exists_true", "ne", "type_null", "eq_and_range", "in", "in_range"],
)
async def test_null_and_missing(
    db: AsyncDatabase[Document],
    db_server: Server,
    query: Document,
    mongodb: list[int],
    find_nx: list[int],
    count_nx: int,
) -> None:
    await db.c.insert_many(NULLS)
    assert await ids(db.c.find(query).sort("_id", 1)) == db_server.expect(
        mongodb=mongodb, nx_27017=find_nx
    )
    assert await db.c.count_documents(query) == db_server.expect(
        mongodb=len(mongodb), nx_27017=count_nx
    )


# --- What the product relies on (correct on both) -----------------------------------------

TITLES = ["1999", "Alpha", "alpha", "Beta", "1999", "22", "Gamma", "Beta", "Zeta", "Beta"]


def _track(i: int) -> Track:
    return Track(
        id=f"{i:03d}",
        title=TITLES[i % len(TITLES)],
        artist_id=f"ar{i % 3}",
        duration_ms=60_000 * (1 + i % 4),
        genres=["rock", "pop"] if i % 2 else ["jazz"],
        released_at=None if i % 5 == 0 else DAY - timedelta(days=i),
        listen_count=i % 6,
    )


async def _tracks(db: AsyncDatabase[Document]) -> tuple[TrackRepository, list[Track]]:
    await db.tracks.create_indexes(INDEXES["tracks"])
    repo = TrackRepository(db.tracks)
    tracks = [_track(i) for i in range(37)]
    await repo.insert_new("t1", tracks)
    await repo.insert_new("t2", [_track(i) for i in range(5)])  # same ids, another tenant
    return repo, tracks


@pytest.mark.parametrize(
    "order",
    [Order("title"), Order("duration_ms"), Order("listen_count", descending=True), Order("id")],
    ids=lambda o: f"{o.field}{'_desc' if o.descending else ''}",
)
@pytest.mark.parametrize("genre", [None, "rock"])
async def test_keyset_pages_visit_every_track_once(
    db: AsyncDatabase[Document], order: Order, genre: str | None
) -> None:
    """storage/keyset.py: {$and: [scope, {$or: [{f: {$gt: v}}, {f: v, id: {$gt: id}}]}]}."""
    repo, tracks = await _tracks(db)
    where = TrackFilter(genre=genre)
    seen: list[str] = []
    after = None
    while True:
        page = await repo.page("t1", where, order, after, 4)
        seen += [track.id for track in page.items]
        if not page.has_next:
            break
        after = page.positions[-1]
    wanted = [t for t in tracks if genre is None or genre in t.genres]
    sign = -1 if order.descending else 1

    def key(t: Track) -> tuple[Any, ...]:
        value = getattr(t, order.field)
        return (sign * value, t.id) if isinstance(value, int) else (value, t.id)

    assert seen == [t.id for t in sorted(wanted, key=key)]
    assert await repo.count("t1", where) == len(wanted)


@pytest.mark.parametrize(
    ("text", "titles"),
    [
        ("alp", ["Alpha", "alpha"]),
        ("(live)", ["Song (Live) [2020]"]),
        ("[2020]", ["Song (Live) [2020]"]),
        ("c++", ["C++ Blues"]),
        ("ac/dc", ["AC/DC Tribute"]),
        ("$ha", ["Ke$ha"]),
        ("o.x", ["HELLO.X"]),
        ("^", []),
        ("g (l", ["Song (Live) [2020]"]),
    ],
)
async def test_title_contains_is_a_case_insensitive_literal(
    db: AsyncDatabase[Document], text: str, titles: list[str]
) -> None:
    """storage/catalog.py: {"title": {"$regex": re.escape(text), "$options": "i"}}."""
    names = ["Alpha", "alpha", "Song (Live) [2020]", "C++ Blues", "AC/DC Tribute", "Ke$ha",
             "HELLO.X", "hellox"]  # fmt: skip
    await db.c.insert_many([{"_id": i, "title": name} for i, name in enumerate(names)])
    query = {"title": {"$regex": re.escape(text), "$options": "i"}}
    assert [d["title"] async for d in db.c.find(query).sort("_id", 1)] == titles
    assert await db.c.count_documents(query) == len(titles)


async def test_tz_aware_datetimes_round_trip_in_utc(db: AsyncDatabase[Document]) -> None:
    utc = datetime(2024, 1, 2, 3, 4, 5, 678_999, tzinfo=UTC)
    plus_two = datetime(2024, 1, 2, 5, 4, 5, 678_000, tzinfo=timezone(timedelta(hours=2)))
    naive = datetime(2024, 1, 2, 3, 4, 5, 678_000)  # taken as UTC by PyMongo
    await db.c.insert_many(
        [{"_id": 1, "ts": utc}, {"_id": 2, "ts": plus_two}, {"_id": 3, "ts": naive}]
    )
    back = [d["ts"] async for d in db.c.find().sort("_id", 1)]
    expected = datetime(2024, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)  # BSON keeps milliseconds
    assert back == [expected] * 3
    assert all(ts.utcoffset() == timedelta(0) for ts in back)


async def test_inc_through_bulk_write(db: AsyncDatabase[Document]) -> None:
    """storage/catalog.py add_listen_counts: unordered $inc, no upsert."""
    await db.c.insert_many([{"_id": "x", "n": 1}, {"_id": "y", "n": 0}])
    result = await db.c.bulk_write(
        [
            UpdateOne({"_id": "x"}, {"$inc": {"n": 2}}),
            UpdateOne({"_id": "y"}, {"$inc": {"n": 5}}),
            UpdateOne({"_id": "x"}, {"$inc": {"n": 3}}),
            UpdateOne({"_id": "missing"}, {"$inc": {"n": 1}}),
        ],
        ordered=False,
    )
    assert (result.matched_count, result.modified_count, result.upserted_count) == (3, 3, 0)
    assert await db.c.find().sort("_id", 1).to_list() == [
        {"_id": "x", "n": 6},
        {"_id": "y", "n": 5},
    ]


async def test_unique_compound_index_rejects_duplicates(db: AsyncDatabase[Document]) -> None:
    await db.c.create_index([("tenant_id", ASCENDING), ("id", ASCENDING)], unique=True)
    await db.c.insert_one({"_id": "a/1", "tenant_id": "a", "id": "1"})
    with pytest.raises(DuplicateKeyError) as single:
        await db.c.insert_one({"_id": "other", "tenant_id": "a", "id": "1"})
    assert single.value.code == 11000
    with pytest.raises(BulkWriteError) as bulk:
        await db.c.bulk_write(
            [
                InsertOne({"_id": "dup", "tenant_id": "a", "id": "1"}),
                InsertOne({"_id": "b/1", "tenant_id": "b", "id": "1"}),  # another tenant
                UpdateOne({"_id": "new"}, {"$set": {"tenant_id": "a", "id": "1"}}, upsert=True),
            ],
            ordered=False,
        )
    details = bulk.value.details
    assert [(e["index"], e["code"]) for e in details["writeErrors"]] == [(0, 11000), (2, 11000)]
    assert (details["nInserted"], details["nUpserted"]) == (1, 0)
    assert await ids(db.c.find().sort("_id", 1)) == ["a/1", "b/1"]
    with pytest.raises(DuplicateKeyError):
        await db.c.insert_one({"_id": "a/1", "tenant_id": "z", "id": "z"})


async def test_set_on_insert_with_upsert(db: AsyncDatabase[Document]) -> None:
    """storage/tenants.py create() and the repositories' upsert_many."""
    update = {"$set": {"name": "first"}, "$setOnInsert": {"created": 1}}
    first = await db.c.update_one({"_id": "k"}, update, upsert=True)
    update = {"$set": {"name": "second"}, "$setOnInsert": {"created": 2}}
    second = await db.c.update_one({"_id": "k"}, update, upsert=True)
    assert (first.upserted_id, first.matched_count) == ("k", 0)
    assert (second.upserted_id, second.matched_count, second.modified_count) == (None, 1, 1)
    assert await db.c.find_one({"_id": "k"}) == {"_id": "k", "name": "second", "created": 1}
    only = {"$setOnInsert": {"name": "x"}}
    assert (await db.c.update_one({"_id": "j"}, only, upsert=True)).upserted_id == "j"
    again = await db.c.update_one({"_id": "j"}, only, upsert=True)
    assert (again.upserted_id, again.matched_count, again.modified_count) == (None, 1, 0)


async def test_objectid_comparisons_in_an_or(db: AsyncDatabase[Document]) -> None:
    """storage/listening.py: {_id: {$lt: oid}} inside an $or, sorted by _id descending."""
    base = datetime(2024, 1, 2, tzinfo=UTC)
    oids = [ObjectId.from_datetime(base + timedelta(seconds=s)) for s in range(4)]
    oids += sorted(ObjectId() for _ in range(3))
    await db.c.insert_many([{"_id": oid, "n": i} for i, oid in enumerate(oids)])
    query = {"$or": [{"n": {"$lt": 0}}, {"_id": {"$lt": oids[3]}}]}
    assert [d["n"] async for d in db.c.find(query).sort("_id", -1)] == [2, 1, 0]
    assert [d["n"] async for d in db.c.find({"_id": {"$gt": oids[3]}}).sort("_id", 1)] == [4, 5, 6]
    # ObjectIds come back as ObjectIds from find.
    assert all(isinstance(oid, ObjectId) for oid in await ids(db.c.find()))


async def test_sort_on_a_field_missing_from_some_documents(db: AsyncDatabase[Document]) -> None:
    await db.c.insert_many(
        [{"_id": 1, "v": 3}, {"_id": 2}, {"_id": 3, "v": None}, {"_id": 4, "v": 1}]
    )
    # Missing and null sort together, first ascending, last descending; ties by _id.
    assert await ids(db.c.find().sort([("v", 1), ("_id", 1)])) == [2, 3, 4, 1]
    assert await ids(db.c.find().sort([("v", -1), ("_id", 1)])) == [1, 4, 2, 3]


async def test_batched_lookups_by_id_in(db: AsyncDatabase[Document]) -> None:
    """storage/scope.py keyed(): {"_id": {"$in": ["<tenant>/<id>", ...]}}."""
    repo, tracks = await _tracks(db)
    found = await repo.by_ids("t1", ["000", "010", "036", "999"])
    assert sorted(found) == ["000", "010", "036"]
    assert found["010"] == tracks[10]
    assert sorted(await repo.by_ids("t2", ["000", "010"])) == ["000"]


async def test_date_to_long_and_compound_date_keys(
    db: AsyncDatabase[Document], db_server: Server
) -> None:
    """storage/predictions.py counts listens per hour/day: `$dateToString` keys, distinct
    listeners by `$addToSet`, the history window as a `seq` string range."""
    base = datetime(2024, 3, 5, 10, 30, tzinfo=UTC)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    docs = [
        {"_id": i, "ts": base + timedelta(minutes=40 * i), "l": f"l{i % 2}", "seq": f"{i:013d}"}
        for i in range(4)
    ]
    await db.ev.insert_many(docs)
    millis = [(d["ts"] - epoch) // timedelta(milliseconds=1) for d in docs]
    projected = await run(db.ev, [{"$sort": {"_id": 1}}, {"$project": {"ms": {"$toLong": "$ts"}}}])
    # $toLong of a date is its epoch milliseconds; the emulator answers null.
    assert [d["ms"] for d in projected] == db_server.expect(mongodb=millis, nx_27017=[None] * 4)
    hour = {"$dateToString": {"date": "$ts", "format": "%Y-%m-%dT%H"}}
    pairs = await run(db.ev, [{"$group": {"_id": {"h": hour, "l": "$l"}}}])
    # (hour, listener) pairs: 10/l0, 11/l1, 11/l0, 12/l1. Inside a compound key the
    # emulator does not evaluate $dateToString: it groups everything into one.
    assert len(pairs) == db_server.expect(mongodb=4, nx_27017=1)
    # The product's formulation, right on both.
    got = await run(
        db.ev,
        [
            {"$match": {"seq": {"$gte": f"{1:013d}"}}},
            {"$group": {"_id": hour, "who": {"$addToSet": "$l"}, "n": {"$sum": 1}}},
            {"$sort": {"_id": 1}},
        ],
    )
    assert [(d["_id"], sorted(d["who"]), d["n"]) for d in got] == [
        ("2024-03-05T11", ["l0", "l1"], 2),
        ("2024-03-05T12", ["l1"], 1),
    ]


async def test_dotted_projection_nests(db: AsyncDatabase[Document], db_server: Server) -> None:
    """storage/audio.py and storage/training_data.py project whole subdocuments."""
    await db.a.insert_one({"_id": "t/1", "t": "t", "sound": {"version": 1, "embedding": [0.5]}})
    dotted = await db.a.find_one({"t": {"$eq": "t"}}, {"_id": 0, "sound.embedding": 1})
    assert dotted == db_server.expect(
        mongodb={"sound": {"embedding": [0.5]}}, nx_27017={"sound.embedding": [0.5]}
    )
    whole = await db.a.find_one({"t": {"$eq": "t"}}, {"_id": 0, "sound": 1})
    assert whole == {"sound": {"version": 1, "embedding": [0.5]}}


async def test_set_of_a_date_on_an_existing_document(
    db: AsyncDatabase[Document], db_server: Server
) -> None:
    """Deviation p: `$set` of a top-level date on an existing document stores text on the
    emulator; `$currentDate` (the product's own timestamps: storage/models.py, catalog.py,
    listening.py), dates set while an upsert inserts, and nested dates stay dates."""
    at = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    await db.d.insert_one({"_id": 1, "n": 0})
    await db.d.update_one({"_id": 1}, {"$set": {"when": at, "nested": {"when": at}}})
    await db.d.update_one({"_id": 1}, {"$currentDate": {"stamped": True}})
    await db.d.update_one({"_id": 2}, {"$set": {"when": at}}, upsert=True)
    one, two = await db.d.find({}).sort("_id", 1).to_list()
    assert one["when"] == db_server.expect(mongodb=at, nx_27017="2024-05-06 07:08:09.123000")
    assert one["nested"] == {"when": at} and two["when"] == at
    assert isinstance(one["stamped"], datetime)
    assert abs(one["stamped"] - datetime.now(UTC)) < timedelta(minutes=5)


async def test_date_range_beside_another_condition(
    db: AsyncDatabase[Document], db_server: Server
) -> None:
    """Deviation p, continued: a date range on a `$currentDate` field finds the document
    alone, and nothing beside another condition on the emulator; the training sweep
    (storage/models.py `fail_silent`) reads unfinished jobs by status and judges the date
    in Python."""
    await db.j.insert_one({"_id": 1, "status": "running"})
    await db.j.update_one({"_id": 1}, {"$currentDate": {"updated_at": True}})
    later = datetime.now(UTC) + timedelta(hours=1)
    alone = await db.j.find({"updated_at": {"$lt": later}}).to_list()
    beside = await db.j.find(
        {"status": {"$in": ["running"]}, "updated_at": {"$lt": later}}
    ).to_list()
    assert [d["_id"] for d in alone] == [1]
    assert [d["_id"] for d in beside] == db_server.expect(mongodb=[1], nx_27017=[])


# --- Monitoring: metric points and series (works on both) ---------------------------------


async def test_ttl_index_deletes_expired_metric_points(db: AsyncDatabase[Document]) -> None:
    """Retention of metric points is a TTL index on `expire_at` (storage/monitoring.py).
    MongoDB's TTL monitor runs every 60 s; nx-27017 also honours the index (within ~10 s
    here). Waits for the deletion, asserting nothing about how soon."""
    from pymongo import IndexModel

    await db.p.create_indexes([IndexModel([("expire_at", ASCENDING)], expireAfterSeconds=0)])
    info = await db.p.index_information()
    assert [
        i.get("expireAfterSeconds") for i in info.values() if i["key"][0][0] == "expire_at"
    ] == [0]
    now = datetime.now(UTC)
    await db.p.insert_many(
        [{"_id": "old", "expire_at": now - timedelta(hours=1)},
         {"_id": "new", "expire_at": now + timedelta(days=1)}]
    )  # fmt: skip
    for _ in range(300):
        if await db.p.count_documents({"_id": "old"}) == 0:
            break
        await asyncio.sleep(0.5)
    assert await ids(db.p.find({})) == ["new"]


async def test_point_ranges_by_string_id_and_label_sets_by_all(
    db: AsyncDatabase[Document],
) -> None:
    """Points keyed "<tenant>/<series>/<13-digit ms>" are read as one `_id` range; series
    are filtered by `label_pairs: {$all: [...]}` beside a (tenant_id, label_pairs) index
    (plain equality on that array field would fail on the emulator: a, b)."""
    await db.pts.insert_many(
        [{"_id": f"{t}/s1/{ms:013d}", "v": ms} for t in ("a", "b") for ms in (5, 70, 900, 10_000)]
    )
    got = (
        await db.pts.find({"_id": {"$gte": f"a/s1/{70:013d}", "$lt": f"a/s1/{10_000:013d}"}})
        .sort("_id", -1)
        .to_list()
    )
    assert [d["v"] for d in got] == [900, 70]
    await db.series.create_index([("tenant_id", 1), ("label_pairs", 1)])
    await db.series.insert_many(
        [
            {"_id": 1, "tenant_id": "a", "label_pairs": ["region=eu", "service=api"]},
            {"_id": 2, "tenant_id": "a", "label_pairs": ["service=api"]},
            {"_id": 3, "tenant_id": "b", "label_pairs": ["region=eu", "service=api"]},
        ]
    )
    query = {"tenant_id": {"$eq": "a"}, "label_pairs": {"$all": ["service=api", "region=eu"]}}
    assert await ids(db.series.find(query)) == [1]
    one = {"tenant_id": {"$eq": "a"}, "label_pairs": {"$all": ["service=api"]}}
    assert sorted(await ids(db.series.find(one))) == [1, 2]


# --- (n) $cond on a bare field path; the analytics pipelines ---------------------------------


async def test_cond_on_a_field_path_and_the_per_listener_totals(
    db: AsyncDatabase[Document], db_server: Server
) -> None:
    """`{$cond: ["$skipped", 1, 0]}` counts true skips on MongoDB; nx-27017 rejects a bare
    field path as the condition (and evaluates any `$cond` row by row, slowly).
    storage/analytics.py counts skips with a `$match` on `skipped: {$eq: true}`, and its
    other accumulators ($min of the `seq` string, $push and $addToSet of $dateToString
    keys) after a `seq` range `$match`, all right on both."""
    base = datetime(2024, 3, 2, 17, 30, tzinfo=UTC)  # a Saturday
    await db.l.insert_many(
        [{"t": "a", "l": f"l{i % 2}", "ts": base + timedelta(hours=5 * i), "seq": f"{i:013d}",
          "skipped": i % 3 == 0} for i in range(6)]
    )  # fmt: skip
    bare = [{"$group": {"_id": "$l", "n": {"$sum": {"$cond": ["$skipped", 1, 0]}}}}]
    try:
        got: Any = sorted((d["_id"], d["n"]) for d in await run(db.l, bare))
    except OperationFailure:
        got = "error"
    assert got == db_server.expect(mongodb=[("l0", 1), ("l1", 1)], nx_27017="error")

    match = {"$match": {"t": {"$eq": "a"}, "seq": {"$gte": f"{1:013d}", "$lt": f"{5:013d}"}}}
    group = {"$group": {
        "_id": "$l",
        "first": {"$min": "$seq"},
        "hours": {"$push": {"$dateToString": {"date": "$ts", "format": "%Y-%m-%dT%H"}}},
        "days": {"$addToSet": {"$dateToString": {"date": "$ts", "format": "%Y-%m-%d"}}},
    }}  # fmt: skip
    rows = {d["_id"]: d for d in await run(db.l, [match, group])}
    assert {k: (v["first"], sorted(v["hours"]), sorted(v["days"])) for k, v in rows.items()} == {
        "l0": (f"{2:013d}", ["2024-03-03T03", "2024-03-03T13"], ["2024-03-03"]),
        "l1": (f"{1:013d}", ["2024-03-02T22", "2024-03-03T08"], ["2024-03-02", "2024-03-03"]),
    }
    skips: list[Document] = [
        match,
        {"$match": {"skipped": {"$eq": True}}},
        {"$group": {"_id": "$l", "n": {"$sum": 1}}},
    ]
    assert [(d["_id"], d["n"]) for d in await run(db.l, skips)] == [("l1", 1)]
