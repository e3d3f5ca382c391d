"""The bare baseline: a no-op FastAPI ingress on Ray Serve, deployed like the gateway.

It answers ``GET /bare/`` with a tiny JSON body and does nothing else, so the difference
between it and the gateway's cached read is what shoal adds on top of Ray Serve. It runs
with the gateway's replica count, CPU reservation, concurrency limits and backpressure.

Import this module only after :func:`cluster.localstack.prepare_local_driver` (it imports
``ray``).
"""

from __future__ import annotations

import sys

from fastapi import FastAPI
from ray import cloudpickle, serve

from cluster import bootstrap
from cluster.settings import Settings

APP_NAME = "bare"
ROUTE_PREFIX = "/bare"
BODY = {"status": "ok"}


@serve.ingress()
class BareIngress:
    """One replica of the no-op app; the FastAPI app is built inside the replica."""

    def __serve_build_asgi_app__(self) -> FastAPI:
        app = FastAPI(title="bare", docs_url=None, redoc_url=None, openapi_url=None)

        @app.get("/")
        async def root() -> dict[str, str]:
            return BODY

        return app


def deploy_bare(settings: Settings) -> None:
    """Deploy the bare app next to the gateway (Serve must be started) and leave it serving."""
    # ``benchmarks`` is not an installed package, so replicas could not import this module:
    # ship its code with the deployment instead of a reference to it.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # type: ignore[no-untyped-call]
    bare = serve.deployment(BareIngress, name=APP_NAME, **bootstrap.gateway_options(settings))
    serve.run(
        bare.bind(),  # type: ignore[attr-defined]
        name=APP_NAME,
        route_prefix=ROUTE_PREFIX,
        blocking=False,
    )
