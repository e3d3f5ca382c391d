"""The bare baselines: a FastAPI ingress on Ray Serve, deployed like the gateway.

``GET /bare/`` answers a tiny JSON body and does nothing else, so the difference between
it and the gateway's cached read is what shoal adds on top of Ray Serve.
``GET /bare/products/{sku}`` is the same cached product read as the gateway's, through the
same :class:`storage.cache.RedisProductCache` (PostgreSQL behind it on a miss), but with no
authentication, no rate limit and no middleware: between it and the no-op is the cost of
the cache read itself, and between it and the gateway's read the cost of everything else.
Both run with the gateway's replica count, CPU reservation, concurrency limits,
backpressure and runtime environment.

Import this module only after :func:`cluster.localstack.prepare_local_driver` (it imports
``ray``).
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations, and
# this module's code is shipped by value, so names in strings would not resolve.
import sys

from fastapi import FastAPI
from fastapi.responses import Response
from ray import cloudpickle, serve

from cluster import bootstrap
from cluster.localstack import LocalStack
from cluster.settings import Settings
from serve.schemas import ProductOut, SkuPath
from storage.cache import CachePolicy, RedisProductCache
from storage.connections import ConnectionConfig, Connections
from storage.products import SqlUnitOfWorkFactory

APP_NAME = "bare"
ROUTE_PREFIX = "/bare"
BODY = {"status": "ok"}


@serve.ingress()
class BareIngress:
    """One replica of the bare app; connections and the FastAPI app are built in the replica."""

    def __init__(self, connections: ConnectionConfig, policy: CachePolicy) -> None:
        self._conn = Connections(connections)  # opens nothing until the first read
        self._policy = policy

    def __serve_build_asgi_app__(self) -> FastAPI:
        app = FastAPI(title="bare", docs_url=None, redoc_url=None, openapi_url=None)
        cache = RedisProductCache(self._conn.redis, self._policy)
        uow = SqlUnitOfWorkFactory(self._conn.engine)

        @app.get("/")
        async def root() -> dict[str, str]:
            return BODY

        @app.get("/products/{sku}")
        async def product(sku: SkuPath) -> Response:
            async def load() -> bytes | None:
                async with uow() as tx:
                    record = await tx.products.get(sku)
                return None if record is None else ProductOut.of(record).model_dump_json().encode()

            entry = await cache.product(sku, load)
            if entry is None:
                return Response(status_code=404)
            headers = {"ETag": entry.etag, "Cache-Control": "no-cache"}
            return Response(entry.body, media_type="application/json", headers=headers)

        return app


def deploy_bare(settings: Settings, stack: LocalStack) -> None:
    """Deploy the bare app next to the gateway (Serve must be started) and leave it serving."""
    # ``benchmarks`` is not an installed package, so replicas could not import this module:
    # ship its code with the deployment instead of a reference to it.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # type: ignore[no-untyped-call]
    options = bootstrap.gateway_options(settings)
    options["ray_actor_options"]["runtime_env"] = bootstrap.runtime_env(stack)
    bare = serve.deployment(BareIngress, name=APP_NAME, **options)
    config = bootstrap.connection_config(settings, stack), bootstrap.cache_policy(settings)
    serve.run(
        bare.bind(*config),  # type: ignore[attr-defined]
        name=APP_NAME,
        route_prefix=ROUTE_PREFIX,
        blocking=False,
    )
