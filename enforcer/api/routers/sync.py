"""`GET /api/v1/sync`: a device's indicator set, as a snapshot or as the delta since a revision.

Long-poll: a device that is up to date (``since`` is the current revision) may ask the server to
hold the request for up to ``wait`` seconds; it is answered as soon as the revision moves. The
wait is an `asyncio` wait on the `RevisionWatcher`, so a thousand waiting devices cost a thousand
small coroutines and one store query per poll interval.

Every answer is decided and rendered once per question (`SyncAnswers`) and sent from memory or a
file with its Content-Length (gzip when the client accepts it): a download holds no database
connection, however many devices a large change wakes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from enforcer.api.deps import Ctx, CurrentDevice, bearer
from enforcer.api.sync_answers import Decided, etag, scopes_of
from enforcer.api.sync_cache import blob_response
from enforcer.wire.indicators import EPOCH_PATTERN, SyncBody
from enforcer.wire.limits import REVISION_MAX

router = APIRouter(prefix="/api/v1", tags=["devices"])

_EXAMPLE = {
    "revision": 42,
    "epoch": "5f0c3a9e2b7d41c68e1f9a0b3c4d5e6f.9c1e2f3a4b5c6d7e",
    "snapshot": False,
    "upserts": [
        {
            "indicatorValue": "megashare.example",
            "action": "Block",
            "severity": "High",
            "scope": "",
            "application": "megashare",
            "generateAlert": True,
            "title": "Unsanctioned app: Megashare",
        }
    ],
    "removes": [{"indicatorValue": "old.example", "scope": "engineering"}],
}


@router.get(
    "/sync",
    summary="A device's indicators: snapshot or delta since a revision",
    response_model=None,
    responses={
        200: {"model": SyncBody, "content": {"application/json": {"example": _EXAMPLE}}},
        304: {"description": "Nothing changed (If-None-Match matched, or a long-poll timed out)"},
    },
)
async def sync(
    request: Request,
    device: CurrentDevice,
    ctx: Ctx,
    since: Annotated[
        int | None, Query(ge=0, le=REVISION_MAX, description="The revision the device has.")
    ] = None,
    epoch: Annotated[
        str | None,
        Query(
            pattern=EPOCH_PATTERN,
            description="The epoch of that revision, as the answer that brought it said.",
        ),
    ] = None,
    wait: Annotated[
        float, Query(ge=0, le=60, description="Seconds to hold the request for a change.")
    ] = 0,
) -> Response:
    """The indicators for the calling device's groups (and those for all devices).

    ``since`` is the revision the device holds: it is recorded as the device's applied revision
    (the first time it is named, with the time), which is how the server knows each device's
    time to enforce and which devices are stale, at no cost to the device.

    Once half of the device token's lifetime has passed, the answer (200 or 304) carries a
    replacement token in the ``Enforcer-Device-Token`` header; the old token works until
    the new one is first used.
    """
    # A cursor this store never issued (a revision beyond the store's, or one whose epoch is
    # not the store's for that number: a restored store, or a device that lies) is not
    # recorded, and the device gets a snapshot.
    scopes = scopes_of(device.groups)
    limit = ctx.limits.max_delta_changes
    watcher = ctx.watcher
    waited = False
    if (
        wait > 0
        and since is not None
        and since == watcher.revision
        and (epoch is None or epoch == watcher.epoch)
    ):
        # Up to date as far as the watcher knows: wait without reading the store first (the
        # watcher notices a newer revision within its poll interval and wakes us).
        await ctx.record_applied(device.device_id, since, epoch)
        waited = True
        woken = await watcher.wait_for_change(since, epoch, wait)
        known = epoch or watcher.epoch or ""
        result = await _after_wait(ctx, woken, (since, known), epoch, scopes, limit)
    else:
        result = await ctx.answers.decide(ctx.engine, None, since, epoch, scopes, limit)
        if since is not None and result.held:
            await ctx.record_applied(device.device_id, since, epoch)
        # `since=0` on an empty store (revision 0) waits too: the device is up to date, and
        # answering at once would make it spin. What a change then brings is a snapshot.
        if wait > 0 and since is not None and since == result.revision and result.held:
            waited = True
            known = result.epoch
            woken = await watcher.wait_for_change(since, known, wait)
            result = await _after_wait(ctx, woken, (since, known), epoch, scopes, limit)
    tag = etag(result.revision, result.epoch, device.groups)
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    # Past half its lifetime, the device's token is replaced here (see docs/api.md).
    headers.update(await ctx.token_renewal(device, bearer(request)))
    unchanged = waited and result.held and since == result.revision
    if unchanged or _matches(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers=headers)
    if result.snapshot:
        body = await ctx.answers.snapshot(ctx.engine, result.revision, result.epoch, scopes)
    else:
        assert result.body is not None  # a decided delta carries its body
        body = result.body
    return blob_response(body, request.headers.get("accept-encoding"), headers)


async def _after_wait(
    ctx: Ctx,
    woken: bool,
    held: tuple[int, str],
    epoch: str | None,
    scopes: list[str],
    limit: int,
) -> Decided:
    """The answer once a long-poll ends: woken devices share one store read per question.

    `held` is the device's revision and its epoch (the one it sent, else the store's), what a
    timed-out wait answers 304 with; `epoch` is what the device sent.
    """
    since, known = held
    if not woken:  # timed out: nothing new, answered 304
        return Decided(since, known, False, True)
    return await ctx.answers.decide(ctx.engine, ctx.watcher.trusted, since, epoch, scopes, limit)


def _matches(header: str | None, tag: str) -> bool:
    if not header:
        return False
    return any(part.strip().removeprefix("W/") == tag for part in header.split(","))
