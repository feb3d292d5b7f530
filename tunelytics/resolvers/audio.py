"""analyzeAudio and audioAnalysis: auth, the track's tenant check, error mapping."""

from __future__ import annotations

from strawberry import Info
from strawberry.file_uploads import Upload

from tunelytics.domain.audio.analysis import AudioAnalysis, analyze
from tunelytics.domain.audio.decode import AudioLimits, AudioRejected
from tunelytics.domain.auth import Permission
from tunelytics.resolvers.context import Context
from tunelytics.resolvers.errors import BadUserInput, NotFound
from tunelytics.storage.audio import AudioStore

CtxInfo = Info[Context, None]


def _limits(info: CtxInfo) -> AudioLimits:
    limits = info.context.settings.limits
    return AudioLimits(
        max_bytes=getattr(limits, "max_upload_bytes", AudioLimits.max_bytes),
        max_seconds=getattr(limits, "max_audio_seconds", AudioLimits.max_seconds),
    )


async def _read(file: Upload, max_bytes: int) -> bytes:
    read = getattr(file, "read", None)
    if read is None:
        raise BadUserInput("file must be an uploaded file (GraphQL multipart request)")
    data = await read(max_bytes + 1)
    if len(data) > max_bytes:
        raise BadUserInput(f"the file is larger than {max_bytes} bytes", reason="TOO_LARGE")
    return bytes(data)


async def analyze_audio(info: CtxInfo, track_id: str, file: Upload) -> AudioAnalysis:
    ctx = info.context
    principal = ctx.authorize(Permission.WRITE_CATALOG)
    await ctx.loaders.track.require(track_id, "track")
    limits = _limits(info)
    data = await _read(file, limits.max_bytes)
    try:
        return await analyze(
            AudioStore(ctx.storage.db), principal.tenant_id, track_id, data, limits
        )
    except AudioRejected as error:
        raise BadUserInput(error.reason, reason="UNUSABLE_AUDIO") from None


async def audio_analysis(info: CtxInfo, track_id: str) -> AudioAnalysis:
    ctx = info.context
    principal = ctx.authorize(Permission.READ)
    found = await AudioStore(ctx.storage.db).analysis(principal.tenant_id, track_id)
    if found is None:
        raise NotFound(f"track {track_id} has no audio analysis")
    return found
