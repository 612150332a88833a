"""``/metrics``: Prometheus exposition of the process registry plus store-derived gauges."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool

from enforcer.api.deps import Admin, Ctx
from enforcer.pipeline.metrics import REGISTRY, StoreCollector

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (admin token)",
    # The exposition format is text, not the JSON FastAPI would document by default.
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    response_class=Response,
)
async def metrics(ctx: Ctx, _: Admin) -> Response:
    def render() -> bytes:
        store = CollectorRegistry(auto_describe=False)
        store.register(StoreCollector(ctx.engine))
        return generate_latest(REGISTRY) + generate_latest(store)

    return Response(await run_in_threadpool(render), media_type=CONTENT_TYPE_LATEST)
