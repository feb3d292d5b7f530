"""`tunelytics serve | seed | token | tenant`."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import re
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import click
import uvicorn
from tqdm import tqdm

from tunelytics.config import DEV_SECRET, Settings
from tunelytics.domain.auth import Role
from tunelytics.domain.demo import DemoSize
from tunelytics.domain.models import Job, JobStatus, ModelKind
from tunelytics.domain.tenancy import Tenant, check_slug
from tunelytics.logs import configure_logging
from tunelytics.pubsub import create_broadcaster
from tunelytics.seeding import delete_tenant_data, demo_item_count, has_catalogue, seed_demo
from tunelytics.services.trainers import TRAINERS
from tunelytics.services.training import TrainingService
from tunelytics.storage import Storage, connect
from tunelytics.storage.embedded import EmbeddedMongo
from tunelytics.tokens import mint_token

log = logging.getLogger(__name__)


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[Settings]:
    """Settings with a MongoDB URL: the configured one, or the embedded server's."""
    if settings.mongodb_url:
        yield settings
        return
    with EmbeddedMongo(settings.data_dir / "mongo") as embedded:
        yield dataclasses.replace(settings, mongodb_url=embedded.url)


def _parse_ttl(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([smhd])", text)
    if not match:
        raise click.BadParameter("use a number and a unit: 90s, 15m, 12h, 30d")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match[2]]
    return timedelta(**{unit: int(match[1])})


async def _seed(settings: Settings, tenant: str, size: DemoSize, reset: bool, quiet: bool) -> bool:
    assert settings.mongodb_url
    storage = connect(settings.mongodb_url, settings.mongodb_database)
    try:
        if await has_catalogue(storage, tenant):
            if not reset:
                return False
            await delete_tenant_data(storage, tenant)
        with tqdm(
            total=demo_item_count(size),
            desc=f"seeding {tenant}",
            unit=" docs",
            disable=quiet,
            unit_scale=True,
        ) as bar:
            await seed_demo(storage, tenant, size=size, progress=bar.update)
        await _seed_monitoring(storage, tenant, quiet)
        await _seed_audio(storage, tenant, quiet)
        return True
    finally:
        await storage.close()


async def _seed_monitoring(storage: Storage, tenant: str, quiet: bool) -> None:
    from tunelytics.services.demo import demo_point_count, seed_monitoring

    with tqdm(total=demo_point_count(), desc=f"series of {tenant}", unit=" points",
              disable=quiet, unit_scale=True) as bar:  # fmt: skip
        await seed_monitoring(storage, tenant, progress=bar.update)


async def _seed_audio(storage: Storage, tenant: str, quiet: bool) -> None:
    from tunelytics.audio_demo import demo_clip_count, seed_audio

    with tqdm(total=demo_clip_count(), desc=f"audio of {tenant}", unit=" clips",
              disable=quiet) as bar:  # fmt: skip
        await seed_audio(storage, tenant, progress=bar.update)


def tune_garbage_collector() -> None:
    """Start-up objects (schema, modules) never need scanning again, and request garbage is
    mostly acyclic: under load the default thresholds spent 19-34% of the server's CPU in
    the cyclic collector (docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


@click.group()
def main() -> None:
    """tunelytics: GraphQL analytics for music streaming."""


@main.command()
@click.option("--host", default=None, help="Default: HOST or 127.0.0.1")
@click.option("--port", type=int, default=None, help="Default: PORT or 8000")
@click.option("--demo/--no-demo", default=True, help="Seed the demo tenant on first start.")
def serve(host: str | None, port: int | None, demo: bool) -> None:
    """Serve the GraphQL API (embedded MongoDB-wire server unless MONGODB_URL is set)."""
    settings = Settings.from_env()
    settings = dataclasses.replace(settings, host=host or settings.host, port=port or settings.port)
    configure_logging(settings.log_level)
    # stderr carries JSON logs, one object a line: the banner goes through the logger too,
    # and the seeding progress bar only to a terminal, never into a collected log.
    quiet = not sys.stderr.isatty()
    with database(settings) as settings:
        if demo and asyncio.run(_seed(settings, settings.demo_tenant, DemoSize(), False, quiet)):
            log.info("Seeded the demo tenant '%s'.", settings.demo_tenant)
        from tunelytics.app import create_app

        # The demo tenant gets a recommender in the background if it has none.
        app = create_app(settings, train_demo=demo)
        url = f"http://{settings.host}:{settings.port}/graphql"
        log.info("GraphiQL: %s", url)
        if settings.jwt_algorithm == "HS256" and settings.jwt_secret:
            token = mint_token(settings, settings.demo_tenant, [Role.ADMIN], subject="dev")
            log.info(
                "Development token (tenant %s, admin): paste `headers` into GraphiQL's "
                "Headers pane",
                settings.demo_tenant,
                extra={"headers": {"Authorization": f"Bearer {token}"}},
            )
            if settings.jwt_secret == DEV_SECRET:
                log.warning("JWT_SECRET is the development default: set it in production.")
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=settings.host,
                port=settings.port,
                log_config=None,
                ws="websockets-sansio",
                # Events are ~100-byte JSON: compression saves nothing and costs a zlib
                # context per socket (48 MiB per 1,000 subscribers, benchmarks).
                ws_per_message_deflate=False,
                lifespan="on",
            )
        )
        tune_garbage_collector()
        # uvicorn re-raises the Ctrl-C it handled once it has shut down cleanly.
        with contextlib.suppress(KeyboardInterrupt):
            server.run()


@main.command()
@click.option("--tenant", default=None, help="Default: DEMO_TENANT or demo")
@click.option("--reset", is_flag=True, help="Delete the tenant's data and seed again.")
@click.option("--listens", type=int, default=DemoSize().listens, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def seed(tenant: str | None, reset: bool, listens: int, quiet: bool) -> None:
    """Generate the demo catalogue and listening history (deterministic)."""
    settings = Settings.from_env()
    configure_logging("WARNING")
    slug = check_slug(tenant or settings.demo_tenant)
    with database(settings) as settings:
        size = dataclasses.replace(DemoSize(), listens=listens)
        if asyncio.run(_seed(settings, slug, size, reset, quiet)):
            click.echo(f"seeded tenant {slug}")
        else:
            click.echo(f"tenant {slug} already has a catalogue; --reset to seed it again")


async def _train(
    settings: Settings, tenant: str, kind: ModelKind, activate: bool, quiet: bool
) -> Job:
    assert settings.mongodb_url
    storage = connect(settings.mongodb_url, settings.mongodb_database)
    # With REDIS_URL, an activation here reaches the running servers at once.
    broadcaster = create_broadcaster(settings.redis_url)
    await broadcaster.start()
    training = TrainingService(storage, broadcaster, TRAINERS)
    try:
        if await storage.tenants.get(tenant) is None:
            raise click.ClickException(f"no tenant {tenant}: seed it or create it first")
        await storage.ensure_indexes()
        job = await storage.jobs.create(tenant, kind, "cli", activate)
        with tqdm(total=100, desc=f"training {kind.value}", unit="%", disable=quiet) as bar:

            def observe(state: Job) -> None:
                bar.set_postfix_str(state.message[:40])
                bar.update(round(state.progress * 100) - bar.n)

            return await training.run(job, observe)
    finally:
        await training.stop()
        await broadcaster.stop()
        await storage.close()


@main.command()
@click.option("--tenant", default=None, help="Default: DEMO_TENANT or demo")
@click.option(
    "--kind",
    type=click.Choice([k.value for k in ModelKind]),
    default="recommender",
    show_default=True,
)
@click.option("--activate", is_flag=True, help="Serve the new version once trained.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(tenant: str | None, kind: str, activate: bool, quiet: bool) -> None:
    """Train a model on a tenant's data (the same job as the trainModel mutation)."""
    settings = Settings.from_env()
    configure_logging("WARNING")
    slug = check_slug(tenant or settings.demo_tenant)
    with database(settings) as settings:
        job = asyncio.run(_train(settings, slug, ModelKind(kind), activate, quiet))
    if job.status != JobStatus.SUCCEEDED:
        raise click.ClickException(job.error or "training failed")
    done = "trained and activated" if activate else "trained"
    click.echo(f"{done} {kind} version {job.model_version} for tenant {slug}")


@main.command()
@click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--tenant", default=None, help="Default: DEMO_TENANT or demo")
@click.option(
    "--track-id", "track_ids", multiple=True, help="One per path, in order; default: file stem."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def analyze(
    paths: tuple[Path, ...], tenant: str | None, track_ids: tuple[str, ...], quiet: bool
) -> None:
    """Analyse audio files for tracks of a tenant (the same analysis as analyzeAudio)."""
    from tunelytics import audio_batch

    settings = Settings.from_env()
    configure_logging("WARNING")
    slug = check_slug(tenant or settings.demo_tenant)
    try:
        ids = audio_batch.track_ids(list(paths), list(track_ids))
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    with database(settings) as settings:
        outcomes = asyncio.run(audio_batch.analyze_files(settings, slug, list(paths), ids, quiet))
    for outcome in outcomes:
        click.echo(outcome.line())
    if any(o.analysis is None for o in outcomes):
        raise SystemExit(1)


@main.command()
@click.option("--tenant", required=True)
@click.option(
    "--role", "roles", multiple=True, required=True, type=click.Choice([r.value for r in Role])
)
@click.option("--subject", default="dev", show_default=True)
@click.option("--ttl", default="30d", show_default=True, help="Lifetime: 90s, 15m, 12h, 30d")
def token(tenant: str, roles: tuple[str, ...], subject: str, ttl: str) -> None:
    """Mint a development token."""
    settings = Settings.from_env()
    click.echo(mint_token(settings, tenant, roles, subject=subject, ttl=_parse_ttl(ttl)))


@main.group()
def tenant() -> None:
    """Manage tenants."""


@tenant.command("create")
@click.argument("slug")
@click.option("--name", required=True)
def tenant_create(slug: str, name: str) -> None:
    """Register a tenant."""
    settings = Settings.from_env()
    configure_logging("WARNING")

    async def create(url: str) -> bool:
        storage = connect(url, settings.mongodb_database)
        try:
            return await storage.tenants.create(Tenant(id=check_slug(slug), name=name))
        finally:
            await storage.close()

    with database(settings) as settings:
        assert settings.mongodb_url
        created = asyncio.run(create(settings.mongodb_url))
    click.echo(f"tenant {slug} {'created' if created else 'already exists'}")


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tenant", required=True)
@click.option("--series", "series", required=True, help="Metric name, e.g. cpu_percent.")
@click.option("--label", "labels", multiple=True, help="name=value; repeatable.")
@click.option("--speed", type=float, default=60.0, show_default=True,
              help="How many times faster than the CSV's own clock.")  # fmt: skip
@click.option("--url", default=None, help="Default: http://HOST:PORT/graphql")
@click.option("--token", "token_", default=None, help="Default: an ingest token minted here.")
def replay(
    path: Path,
    tenant: str,
    series: str,
    labels: tuple[str, ...],
    speed: float,
    url: str | None,
    token_: str | None,
) -> None:
    """Stream a CSV of timestamp,value rows (a NAB file) into a tenant, live."""
    from tunelytics import replay as replaying

    settings = Settings.from_env()
    if speed <= 0:
        raise click.BadParameter("must be positive", param_hint="--speed")
    try:
        label_map = replaying.parse_labels(labels)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--label") from None
    rows = replaying.read_rows(path)
    if not rows:
        raise click.ClickException(f"{path} has no timestamp,value rows")
    target = url or f"http://{settings.host}:{settings.port}/graphql"
    bearer = token_ or mint_token(settings, tenant, [Role.INGEST], subject="replay")
    with tqdm(total=len(rows), desc=f"replaying {path.name}", unit=" points") as bar:

        def progress(sent: int, payload: dict[str, object]) -> None:
            scores = payload.get("series") or []
            if isinstance(scores, list) and scores:
                bar.set_postfix_str(f"score {scores[0]['score']:.3f}")
            bar.update(sent)

        stored, rejected = asyncio.run(
            replaying.replay(target, bearer, rows, series, label_map, speed, progress)
        )
    click.echo(f"stored {stored} points, {rejected} rejected")
