"""The one inference thread: every embedding of the service goes through a micro-batcher.

Requests (the pieces of speech ``speech_pieces`` cuts) wait in a queue ordered by
deadline, arrival plus their urgency's latency budget, so a live verdict due now runs
before a bulk enrollment that arrived earlier. The thread takes the most urgent piece
and, with it, the most urgent others *of exactly the same length*, up to ``max_batch``,
waiting at most ``max_wait_ms`` for more to come, and runs them as one batch.

Why only equal lengths: ECAPA's convolutions see the zero padding at the end of a
shorter row, so a piece embedded beside a longer one comes out different (cosine down to
0.95 on real speech in a mixed batch, below 0.9999 with one 10 ms frame of padding; see
docs/performance.md). Rows of the same sample count need no padding and embed as they
would alone. Pieces of one request may land in different batches.

Back-pressure: REST and bulk work is refused with :class:`InferenceOverloaded` while the
queue holds ``queue_max_seconds`` of audio or more; live verdicts are never refused (they
are bounded by sockets x participants, one in flight each) and go first. The queue thus
holds at most the bound plus one request (a request is bounded by the upload limit) plus
the live verdicts in flight.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import enum
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Sequence

import numpy as np

from biometrics.audio.decode import SAMPLE_RATE, Samples
from biometrics.embedding.encoder import SpeakerEncoder
from biometrics.embedding.pooling import Vectors
from biometrics.errors import InferenceOverloaded, InferenceStopped

logger = logging.getLogger(__name__)


class Urgency(enum.IntEnum):
    """Who waits for an embedding; each has a latency budget that sets its deadline."""

    LIVE = 0  # a live call's verdict: a person is on the line
    REST = 1  # a client waits on its HTTP request
    BULK = 2  # enrollment in bulk, evaluation: throughput matters, not latency

    @property
    def budget_seconds(self) -> float:
        return _BUDGET_SECONDS[self]


# The live budget is the share of a verdict's time the model may take; REST's is a
# patient client's; bulk work yields to both for half a minute before it counts as due.
_BUDGET_SECONDS = {Urgency.LIVE: 0.5, Urgency.REST: 2.0, Urgency.BULK: 30.0}


@dataclasses.dataclass(frozen=True)
class BatchingPolicy:
    max_batch: int = 8  # pieces in one batch
    max_wait_ms: float = 5.0  # how long a batch may wait for more pieces of its length
    queue_max_seconds: float = 300.0  # audio queued before REST and bulk work is refused


@dataclasses.dataclass(frozen=True)
class Inference:
    """A request's embeddings, one row per piece, and how long it took to serve."""

    vectors: Vectors
    elapsed_seconds: float
    urgency: Urgency

    @property
    def delay(self) -> str | None:
        """Why it came late, when it took longer than its budget."""
        if self.elapsed_seconds <= self.urgency.budget_seconds:
            return None
        return f"delayed {self.elapsed_seconds * 1000:.0f} ms: inference busy"


@dataclasses.dataclass
class _Request:
    future: concurrent.futures.Future[Inference]
    urgency: Urgency
    submitted: float
    rows: list[Vectors | None]
    remaining: int


@dataclasses.dataclass(order=True)
class _Piece:
    deadline: float
    sequence: int
    samples: Samples = dataclasses.field(compare=False)
    request: _Request = dataclasses.field(compare=False)
    row: int = dataclasses.field(compare=False)


@dataclasses.dataclass(frozen=True)
class BatcherCounters:
    batches: int
    pieces: int
    queued_pieces: int
    queued_seconds: float
    max_wait_ms: float  # the longest any piece waited in the queue so far
    refused: int
    busy_seconds: float  # the model's time on batches so far (/metrics reads it)

    def as_dict(self) -> dict[str, float]:
        return {
            "batches": self.batches,
            "mean_batch": round(self.pieces / self.batches, 2) if self.batches else 0.0,
            "queued_pieces": self.queued_pieces,
            "queued_seconds": round(self.queued_seconds, 2),
            "max_wait_ms": round(self.max_wait_ms, 1),
            "refused": self.refused,
        }


class InferenceBatcher:
    """Owns the encoder and the one thread that runs it; thread-safe."""

    def __init__(self, encoder: SpeakerEncoder, policy: BatchingPolicy = BatchingPolicy()) -> None:
        self.encoder = encoder
        self.policy = policy
        self._queue: list[_Piece] = []  # a heap by deadline
        self._queued_samples = 0
        self._sequence = itertools.count()
        self._ready = threading.Condition()
        self._closed = False
        self._batches = 0
        self._pieces = 0
        self._refused = 0
        self._max_wait = 0.0
        self._audio_done = 0.0  # seconds of audio embedded, and the seconds it took
        self._busy = 0.0
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    def submit(
        self, waveforms: Sequence[Samples], urgency: Urgency
    ) -> concurrent.futures.Future[Inference]:
        """Queue ``waveforms``; the future resolves with one embedding per waveform."""
        if not waveforms:
            raise ValueError("nothing to embed")
        now = time.monotonic()
        future: concurrent.futures.Future[Inference] = concurrent.futures.Future()
        request = _Request(future, urgency, now, [None] * len(waveforms), len(waveforms))
        deadline = now + urgency.budget_seconds
        with self._ready:
            if self._closed:
                raise InferenceStopped()
            queued = self._queued_samples / SAMPLE_RATE
            if urgency is not Urgency.LIVE and queued >= self.policy.queue_max_seconds:
                self._refused += 1
                retry = queued / max(self._throughput(), 1.0)
                logger.warning(
                    "inference queue full: request refused",
                    extra={"urgency": urgency.name, "queued_seconds": round(queued, 1)},
                )
                raise InferenceOverloaded(queued, retry)
            for row, wave in enumerate(waveforms):
                piece = _Piece(deadline, next(self._sequence), np.asarray(wave), request, row)
                heapq.heappush(self._queue, piece)
                self._queued_samples += len(wave)
            self._ready.notify()
        return future

    def embed_now(self, waveforms: Sequence[Samples], urgency: Urgency = Urgency.BULK) -> Vectors:
        """Blocking: embed through the queue and wait, for callers on their own thread
        (the evaluation harness, the command line); never call it from the event loop."""
        return self.submit(waveforms, urgency).result().vectors

    def counters(self) -> BatcherCounters:
        with self._ready:
            return BatcherCounters(
                batches=self._batches,
                pieces=self._pieces,
                queued_pieces=len(self._queue),
                queued_seconds=self._queued_samples / SAMPLE_RATE,
                max_wait_ms=self._max_wait * 1000,
                refused=self._refused,
                busy_seconds=self._busy,
            )

    def close(self) -> None:
        """Stop the thread after the batch it runs; every request still queued fails with
        :class:`InferenceStopped` rather than waiting forever."""
        with self._ready:
            self._closed = True
            pending, self._queue = self._queue, []
            self._queued_samples = 0
            self._ready.notify()
        for piece in pending:
            _fail(piece.request, InferenceStopped())
        self._thread.join()

    def _throughput(self) -> float:
        """Seconds of audio embedded per second of work, from the batches so far (1 before
        any): what ``Retry-After`` is estimated from."""
        return self._audio_done / self._busy if self._busy > 0 else 1.0

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if not batch:
                continue
            start = time.monotonic()
            try:
                vectors = self.encoder.embed([piece.samples for piece in batch])
            except Exception as error:
                logger.exception("inference failed", extra={"pieces": len(batch)})
                for piece in batch:
                    _fail(piece.request, error)
                continue
            done = time.monotonic()
            with self._ready:
                self._busy += done - start
                self._audio_done += sum(len(p.samples) for p in batch) / SAMPLE_RATE
            for piece, vector in zip(batch, vectors, strict=True):
                _resolve(piece, vector, done)

    def _next_batch(self) -> list[_Piece] | None:
        """The most urgent piece and the most urgent others of its length, once the batch
        is full or its first piece has waited ``max_wait_ms``; None once closed."""
        with self._ready:
            while not self._queue and not self._closed:
                self._ready.wait()
            if self._closed:
                return None
            self._drop_settled()
            if not self._queue:
                return []
            head = self._queue[0]
            waited_from = head.request.submitted
            wait_until = waited_from + self.policy.max_wait_ms / 1000
            while (
                not self._closed
                and self._mate_count(head) < self.policy.max_batch
                and (remaining := wait_until - time.monotonic()) > 0
            ):
                self._ready.wait(remaining)
            if self._closed:
                return None
            head = self._queue[0]  # a more urgent piece may have come meanwhile
            batch = self._mates(head)[: self.policy.max_batch]
            taken = {id(piece) for piece in batch}
            self._queue = [piece for piece in self._queue if id(piece) not in taken]
            heapq.heapify(self._queue)
            self._queued_samples -= sum(len(piece.samples) for piece in batch)
            now = time.monotonic()
            self._max_wait = max(self._max_wait, *(now - p.request.submitted for p in batch))
            self._batches += 1
            self._pieces += len(batch)
            return batch

    def _drop_settled(self) -> None:
        """Forget the pieces of requests already settled: cancelled by their caller (a
        client gone, a call ended) or failed, so nobody waits for them."""
        live = [piece for piece in self._queue if not piece.request.future.done()]
        if len(live) != len(self._queue):
            self._queue = live
            heapq.heapify(self._queue)
            self._queued_samples = sum(len(piece.samples) for piece in live)

    def _mate_count(self, head: _Piece) -> int:
        """How many queued pieces share the head's length: counted, not sorted, on each
        wake-up while a batch waits to fill."""
        length = len(head.samples)
        return sum(len(piece.samples) == length for piece in self._queue)

    def _mates(self, head: _Piece) -> list[_Piece]:
        """Queued pieces of the head's exact length, most urgent first (the head too)."""
        length = len(head.samples)
        return sorted(piece for piece in self._queue if len(piece.samples) == length)


def _resolve(piece: _Piece, vector: Vectors, now: float) -> None:
    request = piece.request
    request.rows[piece.row] = vector
    request.remaining -= 1
    if request.remaining == 0:
        rows = np.stack([row for row in request.rows if row is not None])
        with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled, or failed
            request.future.set_result(Inference(rows, now - request.submitted, request.urgency))


def _fail(request: _Request, error: BaseException) -> None:
    with contextlib.suppress(concurrent.futures.InvalidStateError):  # already settled
        request.future.set_exception(error)
