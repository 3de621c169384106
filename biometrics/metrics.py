"""The service's Prometheus metrics, in one place: what ``/metrics`` shows and where each
number comes from.

Each application builds its own :class:`Metrics` (its own registry, never
``prometheus_client``'s global one, so that two applications in one process, as in the
tests, never add into each other's counters) and hands it to the parts that report.

Two kinds of number. What nothing else counts (verdicts and their latency, inference
latency, database errors) is counted here, by small hooks at the call sites. What a part
already counts for its own use (the batcher's queue for ``/readyz``, the parsers' frame
counters shown on each call, the webhook lanes' deliveries, the spool, the calls in
memory) is read from that part when Prometheus scrapes, so that nothing is counted twice
and the two views never disagree.

This module imports nothing of the package: every layer may report into it, and what it
reads it reads through the small protocols below.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

CONTENT_TYPE = CONTENT_TYPE_LATEST

# A live verdict is due in well under a second; a REST one carries its upload's speech.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Parser counters of a socket (biometrics.streaming.protocol) that count frames received.
FRAME_KINDS = {
    "metadata_frames": "metadata",
    "audio_frames": "audio",
    "dtmf_frames": "dtmf",
    "ignored_kinds": "ignored",
}
DROPPED_PREFIX = "dropped_"


class InferenceCounters(Protocol):
    """What :class:`~biometrics.embedding.batcher.BatcherCounters` tells."""

    @property
    def batches(self) -> int: ...
    @property
    def pieces(self) -> int: ...
    @property
    def queued_pieces(self) -> int: ...
    @property
    def queued_seconds(self) -> float: ...
    @property
    def refused(self) -> int: ...
    @property
    def busy_seconds(self) -> float: ...


class InferenceQueue(Protocol):
    def counters(self) -> InferenceCounters: ...


class Calls(Protocol):
    def census(self) -> tuple[int, int]:
        """Calls streaming now, and their participants heard so far."""
        ...


class WebhookCounts(Protocol):
    @property
    def delivered(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def dead_lettered(self) -> Mapping[str, int]: ...


class Webhooks(Protocol):
    def counts(self) -> WebhookCounts: ...


class SpoolCounts(Protocol):
    @property
    def pending(self) -> int: ...
    @property
    def written(self) -> int: ...
    @property
    def dropped(self) -> int: ...


class Spool(Protocol):
    def counts(self) -> SpoolCounts: ...


class Metrics:
    """The instruments of one application and the parts it reads at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._verdicts = Counter(
            "biometrics_verdicts",
            "Verdicts made, by decision and source (rest: POST /v1/verify; call: live calls)",
            ["decision", "source"],
            registry=self.registry,
        )
        self._verification_seconds = Histogram(
            "biometrics_verification_seconds",
            "Time to make one verdict, from its speech to the verdict recorded, by source",
            ["source"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._inference_seconds = Histogram(
            "biometrics_inference_seconds",
            "Time from submitting speech to the model to its embedding (queue included), "
            "by urgency (live, rest, bulk)",
            ["urgency"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._database_errors = Counter(
            "biometrics_database_errors",
            "Requests answered with a database error (503 database_unavailable or 500)",
            registry=self.registry,
        )
        self._model = Info(
            "biometrics_model", "The model that makes every embedding", registry=self.registry
        )
        self._frames = _Frames()
        self.registry.register(self._frames)

    # --- hooks ---------------------------------------------------------------------------

    def verdict(self, decision: str, source: str, seconds: float) -> None:
        self._verdicts.labels(decision=decision, source=source).inc()
        self._verification_seconds.labels(source=source).observe(seconds)

    def inference(self, urgency: str, seconds: float) -> None:
        self._inference_seconds.labels(urgency=urgency).observe(seconds)

    def database_error(self) -> None:
        self._database_errors.inc()

    def model(self, identity: Mapping[str, str]) -> None:
        """The model's identity (source, sha256, name, ...), as ``biometrics_model_info``."""
        self._model.info(dict(identity))

    @contextlib.contextmanager
    def socket(self, counters: Mapping[str, int]) -> Iterator[None]:
        """Read a live-call socket's parser ``counters`` while it is open, and keep their
        last values once it closes."""
        with self._frames.open(counters):
            yield

    # --- read at scrape time -------------------------------------------------------------

    def watch(
        self,
        *,
        inference: InferenceQueue,
        calls: Calls,
        spool: Spool,
        webhooks: Webhooks | None,
    ) -> None:
        self.registry.register(_Watched(inference, calls, spool, webhooks))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Frames:
    """Frames received and dropped over every socket: the open sockets' parser counters
    as they are now, plus the closed sockets' final ones. Runs on the event loop, where
    the parsers count, so it reads them between two frames."""

    def __init__(self) -> None:
        self._open: dict[int, Mapping[str, int]] = {}
        self._closed: collections.Counter[str] = collections.Counter()

    @contextlib.contextmanager
    def open(self, counters: Mapping[str, int]) -> Iterator[None]:
        self._open[id(counters)] = counters
        try:
            yield
        finally:
            del self._open[id(counters)]
            self._closed.update(counters)

    def collect(self) -> Iterable[Metric]:
        totals = collections.Counter(self._closed)
        for counters in self._open.values():
            totals.update(counters)
        received = CounterMetricFamily(
            "biometrics_stream_frames",
            "Live-call socket messages received, by kind (dropped ones included)",
            labels=["kind"],
        )
        for key, kind in FRAME_KINDS.items():
            received.add_metric([kind], totals[key])
        dropped = CounterMetricFamily(
            "biometrics_stream_frames_dropped",
            "Live-call frames dropped, by reason (the call goes on without them)",
            labels=["reason"],
        )
        for key, count in sorted(totals.items()):
            if key.startswith(DROPPED_PREFIX):
                dropped.add_metric([key.removeprefix(DROPPED_PREFIX)], count)
        return [received, dropped]


class _Watched:
    """The numbers other parts keep, read when Prometheus scrapes."""

    def __init__(
        self, inference: InferenceQueue, calls: Calls, spool: Spool, webhooks: Webhooks | None
    ) -> None:
        self._inference = inference
        self._calls = calls
        self._spool = spool
        self._webhooks = webhooks

    def collect(self) -> Iterable[Metric]:
        yield from self._collect_inference()
        live, participants = self._calls.census()
        yield GaugeMetricFamily("biometrics_active_calls", "Calls a socket streams now", live)
        yield GaugeMetricFamily(
            "biometrics_active_participants",
            "Participants heard so far in the calls streaming now",
            participants,
        )
        yield from self._collect_spool()
        if self._webhooks is not None:
            yield from self._collect_webhooks(self._webhooks.counts())

    def _collect_inference(self) -> Iterator[Metric]:
        counters = self._inference.counters()
        yield CounterMetricFamily(
            "biometrics_inference_batches", "Batches the model ran", counters.batches
        )
        yield CounterMetricFamily(
            "biometrics_inference_pieces",
            "Pieces of speech embedded (batch size = rate of pieces / rate of batches)",
            counters.pieces,
        )
        yield CounterMetricFamily(
            "biometrics_inference_busy_seconds",
            "Seconds the model spent running batches (its utilisation is the rate)",
            counters.busy_seconds,
        )
        yield CounterMetricFamily(
            "biometrics_inference_refused",
            "REST and bulk requests refused with 503 inference_overloaded",
            counters.refused,
        )
        yield GaugeMetricFamily(
            "biometrics_inference_queue_pieces",
            "Pieces of speech waiting for the model",
            counters.queued_pieces,
        )
        yield GaugeMetricFamily(
            "biometrics_inference_queue_seconds",
            "Seconds of audio waiting for the model (REST is refused past "
            "BIOMETRICS_INFERENCE_QUEUE_MAX)",
            counters.queued_seconds,
        )

    def _collect_spool(self) -> Iterator[Metric]:
        counts = self._spool.counts()
        yield GaugeMetricFamily(
            "biometrics_spool_rows",
            "Verdict and audit rows waiting for an unreachable database",
            counts.pending,
        )
        yield CounterMetricFamily(
            "biometrics_spool_written_late",
            "Rows written once the database answered again",
            counts.written,
        )
        yield CounterMetricFamily(
            "biometrics_spool_dropped", "Rows lost because the spool was full", counts.dropped
        )

    def _collect_webhooks(self, counts: WebhookCounts) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "biometrics_webhook_deliveries", "Webhook posts answered 2xx", counts.delivered
        )
        yield CounterMetricFamily(
            "biometrics_webhook_failures",
            "Webhook posts that failed (an error, a timeout or a non-2xx answer)",
            counts.failed,
        )
        dead = CounterMetricFamily(
            "biometrics_webhook_dead_letters",
            "Events given up on and kept as dead letters, by reason",
            labels=["reason"],
        )
        for reason, count in sorted(counts.dead_lettered.items()):
            dead.add_metric([reason], count)
        yield dead
