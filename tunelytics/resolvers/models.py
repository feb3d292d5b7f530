"""The model registry over GraphQL: train, activate, list versions, follow a job."""

from __future__ import annotations

from collections.abc import AsyncIterator

from strawberry import Info

from tunelytics.domain.auth import Permission
from tunelytics.domain.models import Job, ModelKind, ModelVersion, TrainingFailed
from tunelytics.resolvers.context import Context
from tunelytics.resolvers.errors import BadUserInput, ModelNotReady, NotFound
from tunelytics.resolvers.expiry import check_token, ends_with_token
from tunelytics.resolvers.tenancy import require_registered_tenant
from tunelytics.services.serving import ModelServer, ModelUnavailable, Served
from tunelytics.services.training import NotActivatable, TrainingService, activate, job_channel
from tunelytics.services.training import job_from_event as _job_from_event

CtxInfo = Info[Context, None]
MAX_VERSIONS = 100


def training_service(ctx: Context) -> TrainingService:
    if ctx.services.training is None:
        raise ModelNotReady("training is not enabled on this server")
    return ctx.services.training


def model_server(ctx: Context) -> ModelServer:
    if ctx.services.models is None:
        raise ModelNotReady("model serving is not enabled on this server")
    return ctx.services.models


async def served(ctx: Context, tenant_id: str, kind: ModelKind) -> Served:
    """The model this replica serves for the tenant, or MODEL_NOT_READY saying why."""
    try:
        return await model_server(ctx).get(tenant_id, kind)
    except ModelUnavailable as error:
        raise ModelNotReady(str(error), kind=kind.value) from None


async def train_model(info: CtxInfo, kind: ModelKind, activate_when_done: bool) -> Job:
    ctx = info.context
    principal = ctx.authorize(Permission.TRAIN)
    await require_registered_tenant(ctx)
    try:
        return await training_service(ctx).start(
            principal.tenant_id, kind, principal.subject, activate=activate_when_done
        )
    except TrainingFailed as error:
        raise BadUserInput(str(error)) from None


async def activate_model(info: CtxInfo, kind: ModelKind, version: int) -> ModelVersion:
    ctx = info.context
    principal = ctx.authorize(Permission.TRAIN)
    await require_registered_tenant(ctx)
    try:
        model = await activate(
            ctx.storage,
            ctx.services.broadcaster,
            principal.tenant_id,
            kind,
            version,
            ctx.services.models.switch if ctx.services.models else None,
        )
    except NotActivatable as error:
        if error.missing:
            raise NotFound(str(error), version=version) from None
        raise ModelNotReady(str(error), version=version) from None
    # This replica serves it before answering; the others switch on the announcement.
    await model_server(ctx).switch(principal.tenant_id, kind, version)
    return model


async def models(info: CtxInfo, kind: ModelKind, first: int) -> list[ModelVersion]:
    ctx = info.context
    principal = ctx.authorize(Permission.READ)
    if not 1 <= first <= MAX_VERSIONS:
        raise BadUserInput(f"first must be between 1 and {MAX_VERSIONS}", argument="first")
    return await ctx.storage.models.list(principal.tenant_id, kind, limit=first)


async def model(info: CtxInfo, kind: ModelKind, version: int | None) -> ModelVersion | None:
    """A version, or (no version given) the active one; None when there is none."""
    ctx = info.context
    principal = ctx.authorize(Permission.READ)
    if version is None:
        return await ctx.storage.models.active(principal.tenant_id, kind)
    return await ctx.storage.models.get(principal.tenant_id, kind, version)


async def served_model(info: CtxInfo, kind: ModelKind) -> ModelVersion:
    ctx = info.context
    principal = ctx.authorize(Permission.READ)
    return (await served(ctx, principal.tenant_id, kind)).version


async def job(info: CtxInfo, id: str) -> Job:
    ctx = info.context
    principal = ctx.authorize(Permission.READ)
    found = await ctx.storage.jobs.get(principal.tenant_id, id)
    if found is None:
        raise NotFound(f"no job {id}", id=id)
    return found


async def training_progress(info: CtxInfo, job_id: str) -> AsyncIterator[Job]:
    """The job's state now, then each change, until it finishes or the token expires."""
    ctx = info.context
    principal = ctx.authorize(Permission.READ)
    await require_registered_tenant(ctx)
    tenant = principal.tenant_id
    if await ctx.storage.jobs.get(tenant, job_id) is None:
        raise NotFound(f"no job {job_id}", id=job_id)
    async with ctx.services.broadcaster.subscribe(job_channel(tenant, job_id)) as events:
        with ends_with_token(principal, events):
            # Read after subscribing: nothing between the read and the first event is lost.
            current = await ctx.storage.jobs.get(tenant, job_id)
            assert current is not None
            yield current
            last = (current.status, current.progress, current.message)
            while not current.status.finished:
                event = await events.get()
                check_token(event)
                current = _job_from_event(tenant, event)
                state = (current.status, current.progress, current.message)
                if state == last:
                    continue
                last = state
                yield current
