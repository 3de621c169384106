"""The micro-batcher: batching leaves every embedding as it is alone, the most urgent
work runs first, a full queue refuses REST work with 503 and Retry-After, and closing
fails what waits instead of leaving it hanging."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
import time
from collections.abc import Iterator, Sequence

import pytest
from starlette.testclient import TestClient

from biometrics.app import create_app
from biometrics.audio.decode import Samples
from biometrics.config import Settings
from biometrics.embedding import (
    BatchingPolicy,
    EmbeddingWorker,
    InferenceBatcher,
    SpeakerEncoder,
    Urgency,
    load_encoder,
)
from biometrics.embedding.pooling import Vectors
from biometrics.errors import InferenceOverloaded, InferenceStopped
from biometrics.evaluation.protocol import find_speakers, load_speech
from tests.api.helpers import enroll, speech_wav
from tests.conftest import LIBRISPEECH, bearer
from tests.voices import synthetic_speech

# Batched rows must embed as they do alone: a cosine this close is the same embedding.
SAME = 0.9999


class GatedEncoder(SpeakerEncoder):
    """The real model, held at ``gate`` before each batch, recording each batch's piece
    lengths: lets a test line up work while the inference thread is busy."""

    def __init__(self, encoder: SpeakerEncoder) -> None:
        self.__dict__.update(encoder.__dict__)
        self.gate = threading.Event()
        self.started = threading.Event()
        self.batches: list[list[int]] = []

    def embed(self, waveforms: Sequence[Samples]) -> Vectors:
        self.started.set()
        self.gate.wait(timeout=30)
        self.batches.append([len(wave) for wave in waveforms])
        return super().embed(waveforms)


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> SpeakerEncoder:
    return load_encoder("bundled", tmp_path_factory.mktemp("cache"))


def embed_together(batcher: InferenceBatcher, pieces: list[Samples]) -> list[Vectors]:
    """Each piece as its own request, all queued at once, as concurrent callers do."""
    futures = [batcher.submit([piece], Urgency.REST) for piece in pieces]
    return [future.result(timeout=60).vectors[0] for future in futures]


def assert_batched_as_alone(encoder: SpeakerEncoder, pieces: list[Samples]) -> None:
    batcher = InferenceBatcher(encoder, BatchingPolicy(max_batch=8, max_wait_ms=50))
    try:
        batched = embed_together(batcher, pieces)
        counters = batcher.counters()
    finally:
        batcher.close()
    alone = [encoder.embed([piece])[0] for piece in pieces]
    cosines = [float(a @ b) for a, b in zip(batched, alone, strict=True)]
    assert min(cosines) >= SAME
    assert counters.pieces == len(pieces)
    assert counters.batches < len(pieces)  # some pieces did share a batch


def test_batching_synthetic_speech_of_mixed_lengths_keeps_each_embedding(
    bundled: SpeakerEncoder,
) -> None:
    lengths = [1.0, 3.0, 3.0, 2.5, 3.0, 1.0, 4.2, 3.0]
    pieces = [synthetic_speech(s, seed=i) for i, s in enumerate(lengths)]
    assert_batched_as_alone(bundled, pieces)


@pytest.mark.skipif(not LIBRISPEECH.is_dir(), reason="shared LibriSpeech excerpts absent")
def test_batching_real_speech_of_mixed_lengths_keeps_each_embedding(
    bundled: SpeakerEncoder,
) -> None:
    files = find_speakers(LIBRISPEECH / "test-other-dev")
    speakers = load_speech({speaker: paths[:2] for speaker, paths in files.items()})
    # Crops of 1-10 s, with live-verdict-like repeats of the same length across speakers.
    seconds = [1.0, 3.0, 10.0, 3.0, 5.5, 3.0]
    pieces = [
        speakers[i % len(speakers)].utterances[i // len(speakers)][: int(s * 16_000)]
        for i, s in enumerate(seconds)
    ]
    assert_batched_as_alone(bundled, pieces)
    # What bucketing by length avoids: in one padded batch, the short row moves.
    short, long = pieces[1], pieces[2]
    padded = bundled.embed([short, long])[0]
    assert float(padded @ bundled.embed([short])[0]) < SAME


def test_a_live_request_queued_after_bulk_work_runs_first(bundled: SpeakerEncoder) -> None:
    gated = GatedEncoder(bundled)
    batcher = InferenceBatcher(gated, BatchingPolicy(max_batch=8, max_wait_ms=0))
    try:
        first = batcher.submit([synthetic_speech(1.0)], Urgency.BULK)
        assert gated.started.wait(timeout=10)  # the thread is busy with it
        bulk = [
            batcher.submit([synthetic_speech(1.0 + i / 10, seed=i)], Urgency.BULK) for i in (1, 2)
        ]
        rest = batcher.submit([synthetic_speech(1.5, seed=5)], Urgency.REST)
        live = batcher.submit([synthetic_speech(2.0, seed=3)], Urgency.LIVE)
        gated.gate.set()
        for future in (first, *bulk, rest, live):
            future.result(timeout=30)
    finally:
        batcher.close()
    order = [batch[0] for batch in gated.batches]
    assert order == [16_000, 32_000, 24_000, 17_600, 19_200]  # first, live, rest, bulk x2


def test_a_live_request_past_its_budget_says_it_was_delayed(bundled: SpeakerEncoder) -> None:
    gated = GatedEncoder(bundled)
    worker = EmbeddingWorker(InferenceBatcher(gated, BatchingPolicy(max_wait_ms=0)))

    async def embed() -> tuple[str | None, str | None]:
        busy = asyncio.ensure_future(worker.embed_speech(synthetic_speech(1.0)))
        await asyncio.sleep(0)
        live = asyncio.ensure_future(
            worker.embed_speech(synthetic_speech(2.0), urgency=Urgency.LIVE)
        )
        await asyncio.sleep(Urgency.LIVE.budget_seconds + 0.1)
        gated.gate.set()
        return (await busy).delay, (await live).delay

    try:
        busy_delay, live_delay = asyncio.run(embed())
    finally:
        worker.close()
    assert live_delay is not None and live_delay.startswith("delayed ")
    assert live_delay.endswith("ms: inference busy")
    assert busy_delay is None  # a REST request within its budget is on time


def test_closing_fails_queued_requests_instead_of_hanging(bundled: SpeakerEncoder) -> None:
    gated = GatedEncoder(bundled)
    batcher = InferenceBatcher(gated, BatchingPolicy(max_wait_ms=0))
    running = batcher.submit([synthetic_speech(1.0)], Urgency.REST)
    assert gated.started.wait(timeout=10)
    queued = batcher.submit([synthetic_speech(2.0)], Urgency.REST)
    closing = threading.Thread(target=batcher.close)
    closing.start()
    with pytest.raises(InferenceStopped):
        queued.result(timeout=10)
    gated.gate.set()
    closing.join(timeout=30)
    assert running.result(timeout=10).vectors.shape == (1, bundled.dimension)
    with pytest.raises(InferenceStopped):
        batcher.submit([synthetic_speech(1.0)], Urgency.LIVE)


def test_a_request_its_caller_gave_up_on_is_not_embedded(bundled: SpeakerEncoder) -> None:
    gated = GatedEncoder(bundled)
    batcher = InferenceBatcher(gated, BatchingPolicy(max_wait_ms=0))
    try:
        running = batcher.submit([synthetic_speech(1.0)], Urgency.REST)
        assert gated.started.wait(timeout=10)
        abandoned = batcher.submit([synthetic_speech(2.0)], Urgency.REST)
        assert abandoned.cancel()
        later = batcher.submit([synthetic_speech(3.0)], Urgency.REST)
        gated.gate.set()
        running.result(timeout=30)
        later.result(timeout=30)
        assert gated.batches == [[16_000], [48_000]]
        assert batcher.counters().queued_seconds == 0
    finally:
        batcher.close()


def test_a_full_queue_refuses_rest_and_bulk_but_never_live(bundled: SpeakerEncoder) -> None:
    gated = GatedEncoder(bundled)
    batcher = InferenceBatcher(gated, BatchingPolicy(max_batch=1, queue_max_seconds=10))
    try:
        batcher.submit([synthetic_speech(1.0)], Urgency.BULK)
        assert gated.started.wait(timeout=10)
        batcher.submit([synthetic_speech(6.0, seed=i) for i in (1, 2)], Urgency.BULK)
        for urgency in (Urgency.REST, Urgency.BULK):
            with pytest.raises(InferenceOverloaded) as refused:
                batcher.submit([synthetic_speech(1.0)], urgency)
            assert refused.value.retry_after is not None and refused.value.retry_after > 0
        live = batcher.submit([synthetic_speech(1.0)], Urgency.LIVE)
        assert batcher.counters().as_dict()["refused"] == 2
        gated.gate.set()
        assert live.result(timeout=30).vectors.shape == (1, bundled.dimension)
    finally:
        gated.gate.set()
        batcher.close()


@dataclasses.dataclass
class Busy:
    client: TestClient
    encoder: GatedEncoder


@pytest.fixture
def busy_service(settings: Settings, encoder: SpeakerEncoder, admin_key: str) -> Iterator[Busy]:
    """The service with a 10 s queue, one piece a batch, and its model held."""
    gated = GatedEncoder(encoder)
    tiny = dataclasses.replace(settings, inference_queue_max=10.0, inference_max_batch=1)
    with TestClient(create_app(tiny, encoder=gated), headers=bearer(admin_key)) as client:
        try:
            yield Busy(client, gated)
        finally:
            gated.gate.set()


def test_rest_work_beyond_the_queue_is_503_with_retry_after(busy_service: Busy) -> None:
    client = busy_service.client
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # 30 s of speech: three pieces, one running, the rest queued past the 10 s bound.
        waiting = pool.submit(
            client.post,
            "/v1/speakers/ada/enrollments",
            files={"audio": ("a.wav", speech_wav(36.0), "audio/wav")},
        )
        deadline = time.monotonic() + 30
        while client.get("/readyz").json()["inference"]["queued_seconds"] < 10:
            assert time.monotonic() < deadline and not waiting.done()
            time.sleep(0.05)
        refused = client.post(
            "/v1/speakers/bob/enrollments",
            files={"audio": ("b.wav", speech_wav(4.0, seed=2), "audio/wav")},
        )
        busy_service.encoder.gate.set()
        assert waiting.result(timeout=60).status_code == 201
    assert refused.status_code == 503
    assert refused.json()["error"] == "inference_overloaded"
    assert int(refused.headers["Retry-After"]) >= 1
    assert client.get("/readyz").json()["inference"]["refused"] == 1


def test_an_enrollment_may_ask_to_be_bulk_work(client: TestClient) -> None:
    assert enroll(client, "ada", bulk="true").status_code == 201
    refused = enroll(client, "ada", bulk="later")
    assert (refused.status_code, refused.json()["detail"]) == (400, "bulk must be true or false")
    assert client.get("/readyz").json()["inference"]["batches"] >= 1
