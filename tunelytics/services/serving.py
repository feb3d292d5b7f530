"""Serving trained models: the active version per tenant and kind, loaded from GridFS, and
micro-batched inference off the event loop.

Each process loads a tenant's active model on its first request and keeps it. When any
replica (or the CLI) activates a version it announces it on MODELS_CHANNEL; every
ModelServer that holds that tenant's model loads the new version and swaps it in, so
the served version changes everywhere without a restart. A periodic check against the
registry covers an announcement lost while Redis was unreachable.

Inference calls are batch calls: `Served.call("recommend", listener_id, k=10)` waits up
to `window_s` (or until `max_batch` items) for other requests with the same method and
arguments, then runs one `model.recommend([ids...], k=10)` in the inference thread and
hands each caller its own result.

Requests that a batch answers together then read the same kind of documents together:
`ModelServer.lookup(tenant_id, name, fetch)` is a per-tenant Coalescer that turns the
concurrent lookups of one loop turn into one `fetch(keys)` (the tracks of 64 answers in
one `$in` read instead of 64). Each read is as fresh as a per-request one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from tunelytics.domain.models import ModelKind, ModelStatus, ModelVersion
from tunelytics.pubsub import Broadcaster
from tunelytics.services.training import MODELS_CHANNEL, AnyTrainer
from tunelytics.storage import Storage

log = logging.getLogger(__name__)
I = TypeVar("I")  # noqa: E741 - an item of a batch
R = TypeVar("R")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
BatchKey = tuple[str, tuple[tuple[str, Hashable], ...]]


class ModelUnavailable(Exception):
    """No version of this kind can be served for the tenant now; the message says why."""


class MicroBatcher(Generic[I, R]):
    """Collects concurrent calls with the same key for `window_s` (or `max_batch` items)
    and runs them as one batch call in the executor; results align with items.

    While one of its batches runs, a window that closes does not send its batch to queue
    behind it: the batch keeps collecting and goes when the running one is done (or when it
    is full). It would have waited that long in the executor anyway; this way one batch,
    not several small ones, pays the model's fixed cost per call (the scan of the item
    matrix: most of a recommendation's model CPU at the batch sizes a 1 ms window gives).
    """

    def __init__(
        self,
        run: Callable[[BatchKey, list[I]], list[R]],
        executor: Executor,
        window_s: float = 0.001,
        max_batch: int = 64,
    ) -> None:
        self.run = run
        self.executor = executor
        self.window_s = window_s
        self.max_batch = max_batch
        self.pending: dict[BatchKey, list[tuple[I, asyncio.Future[R]]]] = defaultdict(list)
        self.timers: dict[BatchKey, asyncio.TimerHandle] = {}
        # Keys whose window closed while a batch was running: they go when none runs.
        self.held: set[BatchKey] = set()
        self.running = 0
        self.batches = 0
        self.items = 0

    async def submit(self, key: BatchKey, item: I) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        waiting = self.pending[key]
        waiting.append((item, future))
        if len(waiting) >= self.max_batch:
            self._flush(key)
        elif key not in self.timers and key not in self.held:
            self.timers[key] = loop.call_later(self.window_s, self._window_closed, key)
        return await future

    def _window_closed(self, key: BatchKey) -> None:
        if self.running:
            self.timers.pop(key, None)
            self.held.add(key)
        else:
            self._flush(key)

    def _flush(self, key: BatchKey) -> None:
        timer = self.timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self.held.discard(key)
        batch = self.pending.pop(key, [])
        if batch:
            self.batches += 1
            self.items += len(batch)
            self.running += 1
            asyncio.get_running_loop().create_task(self._execute(key, batch))

    async def _execute(self, key: BatchKey, batch: list[tuple[I, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.run, key, items
            )
            if len(results) != len(items):
                raise RuntimeError(f"a batch of {len(items)} returned {len(results)} results")
        except Exception as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        finally:
            self._done()
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _done(self) -> None:
        self.running -= 1
        if not self.running:
            for key in list(self.held):
                self._flush(key)


class Coalescer(Generic[K, V]):
    """Lookups of keys from concurrent callers within `window_s` (or up to `max_keys`)
    become one `fetch(keys)`; each caller gets the values of its own keys (None: absent)."""

    def __init__(
        self,
        fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]],
        window_s: float = 0.001,
        max_keys: int = 1_000,
    ) -> None:
        self.fetch = fetch
        self.window_s = window_s
        self.max_keys = max_keys
        self.keys: dict[K, None] = {}
        self.round: asyncio.Future[Mapping[K, V]] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.fetches = 0

    async def get_many(self, keys: Sequence[K]) -> list[V | None]:
        if not keys:
            return []
        loop = asyncio.get_running_loop()
        if self.round is None:
            self.round = loop.create_future()
            self.timer = loop.call_later(self.window_s, self._flush)
        round_ = self.round
        self.keys.update(dict.fromkeys(keys))
        if len(self.keys) >= self.max_keys:
            self._flush()
        found = await asyncio.shield(round_)
        return [found.get(k) for k in keys]

    def _flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        round_, keys = self.round, list(self.keys)
        self.round, self.timer, self.keys = None, None, {}
        if round_ is not None:
            self.fetches += 1
            asyncio.get_running_loop().create_task(self._run(round_, keys))

    async def _run(self, round_: asyncio.Future[Mapping[K, V]], keys: list[K]) -> None:
        try:
            round_.set_result(await self.fetch(keys))
        except Exception as error:
            round_.set_exception(error)


def batch_key(method: str, arguments: Mapping[str, Hashable]) -> BatchKey:
    return method, tuple(sorted(arguments.items()))


def call_batch(model: Any, key: BatchKey, items: list[Any]) -> list[Any]:
    """`model.<method>(items, **arguments)`: the one shape every served model offers."""
    method, arguments = key
    return list(getattr(model, method)(items, **dict(arguments)))


@dataclass
class Served:
    """One loaded model version and its batcher."""

    version: ModelVersion
    model: Any
    batcher: MicroBatcher[Any, Any]
    loaded_at: float = field(default_factory=time.monotonic)

    async def call(self, method: str, item: Any, **arguments: Hashable) -> Any:
        return await self.batcher.submit(batch_key(method, arguments), item)


def single_threaded_torch() -> None:
    """Executor initializer: torch ops of the calling thread run on that thread alone.

    The inference thread shares two cores with the event loop: with torch's default of one
    intra-op thread per core, every batch's matrix products waited at an OpenMP barrier for
    a peer thread the loop (or another process) held the core from, and spun meanwhile. A
    recommendation cost 4-8 ms of server CPU under load instead of 1.1-1.4 (docs/benchmarks.md,
    issue 4). torch keeps the count per thread once a thread has used it, but
    set_num_threads also sets the default that threads starting later copy (the training
    thread's), so a throwaway thread puts that default back.
    """
    import torch

    default = torch.get_num_threads()
    torch.set_num_threads(1)
    restore = threading.Thread(target=torch.set_num_threads, args=(default,))
    restore.start()
    restore.join()


class ModelServer:
    """The active model of each (tenant, kind) this process has served, kept current."""

    def __init__(
        self,
        storage: Storage,
        broadcaster: Broadcaster,
        trainers: Mapping[ModelKind, AnyTrainer],
        window_s: float = 0.001,
        max_batch: int = 64,
        recheck_s: float = 60.0,
    ) -> None:
        self.storage = storage
        self.broadcaster = broadcaster
        self.trainers = dict(trainers)
        self.window_s = window_s
        self.max_batch = max_batch
        self.recheck_s = recheck_s
        # Batches queue behind each other here rather than fight for the two cores.
        self.executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="inference", initializer=single_threaded_torch
        )
        self.served: dict[tuple[str, ModelKind], Served] = {}
        self.loading: dict[tuple[str, ModelKind], asyncio.Task[Served]] = {}
        self.switching: defaultdict[tuple[str, ModelKind], asyncio.Lock] = defaultdict(asyncio.Lock)
        self.tasks: list[asyncio.Task[None]] = []
        self.listening = asyncio.Event()
        self.lookups: dict[tuple[str, str], Coalescer[Any, Any]] = {}

    async def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self._listen(), name="model-activations"),
            asyncio.create_task(self._recheck(), name="model-recheck"),
        ]
        # Activations announced from now on are seen.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), 5.0)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.executor.shutdown(wait=False, cancel_futures=True)

    def lookup(
        self, tenant_id: str, name: str, fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]]
    ) -> Coalescer[K, V]:
        """The tenant's coalesced `name` lookup (made with `fetch` on first use): one per
        tenant, so a fetch only ever reads one tenant's documents."""
        key = (tenant_id, name)
        found = self.lookups.get(key)
        if found is None:
            found = self.lookups[key] = Coalescer(fetch, self.window_s)
        return found

    async def get(self, tenant_id: str, kind: ModelKind) -> Served:
        """The served model; raises ModelUnavailable saying why there is none."""
        key = (tenant_id, kind)
        served = self.served.get(key)
        if served is not None:
            return served
        task = self.loading.get(key)
        if task is None:
            task = asyncio.create_task(self._load_active(tenant_id, kind))
            self.loading[key] = task
            task.add_done_callback(lambda _t: self.loading.pop(key, None))
        return await asyncio.shield(task)

    async def _load_active(self, tenant_id: str, kind: ModelKind) -> Served:
        active = await self.storage.models.active(tenant_id, kind)
        if active is None:
            raise ModelUnavailable(await self._why_none(tenant_id, kind))
        served = await self._load(active)
        self.served[(tenant_id, kind)] = served
        return served

    async def _why_none(self, tenant_id: str, kind: ModelKind) -> str:
        latest = await self.storage.models.list(tenant_id, kind, limit=1)
        name = kind.value
        if not latest:
            return f"no {name} model has been trained yet: run trainModel(kind: {name.upper()})"
        newest = latest[0]
        if newest.status == ModelStatus.TRAINING:
            return f"the {name} is still training (version {newest.version}); try again soon"
        if newest.status == ModelStatus.FAILED:
            return f"the {name} version {newest.version} failed to train: {newest.error}"
        return f"no {name} version is active: activate one with activateModel"

    async def _load(self, version: ModelVersion) -> Served:
        trainer = self.trainers.get(version.kind)
        if trainer is None or version.artifact_id is None:
            raise ModelUnavailable(
                f"{version.kind.value} version {version.version} is not servable"
            )
        artifact = await self.storage.artifacts.get(version.tenant_id, version.artifact_id)
        if artifact is None:
            raise ModelUnavailable(
                f"the artifact of {version.kind.value} version {version.version} is missing"
            )
        loop = asyncio.get_running_loop()
        model = await loop.run_in_executor(self.executor, trainer.load, artifact)

        def run(key: BatchKey, items: list[Any]) -> list[Any]:
            return call_batch(model, key, items)

        batcher: MicroBatcher[Any, Any] = MicroBatcher(
            run, self.executor, self.window_s, self.max_batch
        )
        log.info(
            "model loaded",
            extra={
                "tenant": version.tenant_id,
                "kind": version.kind.value,
                "version": version.version,
                "artifact_bytes": len(artifact),
            },
        )
        return Served(version=version, model=model, batcher=batcher)

    async def switch(self, tenant_id: str, kind: ModelKind, version: int) -> None:
        """Serve `version` if this process serves the tenant's model (else it loads the
        active one when first asked)."""
        key = (tenant_id, kind)
        loading = self.loading.get(key)
        if loading is not None:
            # A first load that read the registry before this activation must not win.
            with contextlib.suppress(Exception):
                await asyncio.shield(loading)
        # One switch at a time per model, so a slow load cannot land after a later one.
        async with self.switching[key]:
            current = self.served.get(key)
            if current is None or current.version.version == version:
                return
            # An announcement can arrive after a later activation this replica already
            # served (its own, switched directly): the registry decides, not the order.
            found = await self.storage.models.active(tenant_id, kind)
            if found is None or found.version != version:
                return
            try:
                self.served[key] = await self._load(found)
            except ModelUnavailable as error:
                log.error("cannot switch models: %s", error, extra={"tenant": tenant_id})

    async def _listen(self) -> None:
        while True:
            try:
                async with self.broadcaster.subscribe(MODELS_CHANNEL) as events:
                    self.listening.set()
                    while True:
                        event = await events.get()
                        try:
                            kind = ModelKind(event["kind"])
                            await self.switch(str(event["tenant_id"]), kind, int(event["version"]))
                        except (KeyError, ValueError, TypeError):
                            log.warning("dropping a malformed model activation event")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("model activation listener failed; retrying")
                await asyncio.sleep(1.0)

    async def _recheck(self) -> None:
        while True:
            await asyncio.sleep(self.recheck_s)
            for (tenant_id, kind), served in list(self.served.items()):
                try:
                    active = await self.storage.models.active(tenant_id, kind)
                    if active is not None and active.version != served.version.version:
                        await self.switch(tenant_id, kind, active.version)
                except Exception:
                    log.exception("model recheck failed", extra={"tenant": tenant_id})
