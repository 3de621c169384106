"""``GET /metrics``: the Prometheus exposition of :mod:`biometrics.metrics`, on the main
port. It needs an admin or ``metrics``-role key as a bearer token (Prometheus's
``authorization`` setting sends one) unless the operator opened it with
``BIOMETRICS_METRICS_PUBLIC=true``. It shows counts, latencies and the model's identity,
never a speaker, a key or a call id."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from biometrics.api.auth import Guard
from biometrics.api.openapi import ApiRoute, Operation, Reply
from biometrics.metrics import CONTENT_TYPE, Metrics
from biometrics.statuses import Role

SCRAPE = Operation(
    "getMetrics",
    "The service's metrics, in Prometheus's text format",
    "operations",
    [Reply(200, "counters, histograms and the model's identity", media_type="text/plain")],
    description=(
        "Needs an admin or `metrics` key, unless the operator opened it "
        "(`BIOMETRICS_METRICS_PUBLIC=true`)."
    ),
)


class MetricsRoute:
    def __init__(self, metrics: Metrics, public: bool) -> None:
        self._metrics = metrics
        self._public = public

    async def scrape(self, request: Request) -> Response:
        # On the event loop, not a worker thread: it reads counters the loop writes (the
        # parsers', the calls'). The text takes a few milliseconds (3.6 ms with 200
        # sockets open, on a busy 2-CPU machine), once per scrape interval.
        return Response(self._metrics.exposition(), media_type=CONTENT_TYPE)

    def route(self, guard: Guard) -> Route:
        if self._public:
            return ApiRoute("/metrics", self.scrape, "GET", SCRAPE)
        return guard.route("/metrics", Role.METRICS, self.scrape, "GET", SCRAPE)
