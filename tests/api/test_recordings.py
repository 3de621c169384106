"""Call recordings, end to end in-process on SQLite and PostgreSQL: a live call streams
speech over the socket; off by default nothing is written; recorded (for every call, or for
one by an admin) each participant's WAV and raw PCM download sample-exact, the files on
disk are sealed, downloads are admin-only and audited, and the retention sweep, a
speaker's deletion and key rotation do what docs/security.md says. A disk that fails
costs the recording, never the call's verdicts."""

from __future__ import annotations

import dataclasses
import io
import logging
import threading
import time
from datetime import timedelta

import numpy as np
import pytest
import soundfile
import sqlalchemy as sa
from starlette.testclient import TestClient

from biometrics import simulator
from biometrics.app import create_app
from biometrics.clock import utcnow
from biometrics.errors import ConfigError
from biometrics.statuses import Role
from biometrics.store import Database
from biometrics.store.crypto import Cipher, Key, KeyRing
from biometrics.store.keys import KeyStore
from biometrics.store.lifecycle import NO_EXPIRY, Retention, sweep
from biometrics.store.models import CallRecording, CallRecordingSetting
from biometrics.store.recordings import RecordingFiles, RecordingWriter
from biometrics.store.vault import reencrypt
from tests.api.helpers import enroll
from tests.api.test_calls import AGENT, CALLER, path, stream, wait_until
from tests.conftest import TEST_CIPHER, bearer
from tests.streaming.helpers import live_settings, voice

RECORDED = {"recordings": True}


@pytest.fixture
def settings(settings, tmp_path):
    return live_settings(settings, recordings_dir=tmp_path / "recordings")


def recorded_client(settings, encoder, admin_key, **changes):
    app = create_app(dataclasses.replace(settings, **changes), encoder=encoder)
    return TestClient(app, headers=bearer(admin_key))


def download(client, call_id: str, raw_id: str, **params):
    """The participant's audio once its recording is complete (written after the call
    ends, by the recordings' own thread)."""
    deadline = time.monotonic() + 20
    while True:
        response = client.get(path(call_id, raw_id, "audio"), params=params)
        if response.status_code != 409 or time.monotonic() > deadline:
            return response
        time.sleep(0.02)


def rows(settings) -> list[CallRecording]:
    database = Database(settings.database_url)
    try:
        with database.session() as session:
            found = session.scalars(sa.select(CallRecording).order_by(CallRecording.id)).all()
            session.expunge_all()
            return list(found)
    finally:
        database.dispose()


def sent_pcm(samples: np.ndarray, rate: int) -> bytes:
    """What the simulator sends of ``samples``: its PCM, the last frame padded to 20 ms."""
    pcm = simulator.to_pcm(samples)
    size = simulator.frame_bytes(rate)
    return pcm.ljust(-(-len(pcm) // size) * size, b"\x00")


def test_nothing_is_recorded_by_default(client, settings):
    stream(client, "quiet", {CALLER: voice(2.0, "a", seed=1)})
    time.sleep(0.2)  # what a recording would have written by now
    missing = client.get(path("quiet", CALLER, "audio"))
    assert missing.status_code == 404 and missing.json()["error"] == "recording_not_found"
    assert rows(settings) == []
    assert not settings.recordings_dir.exists()


def test_a_recorded_call_downloads_sample_exact_and_is_sealed_on_disk(settings, encoder, admin_key):
    caller, agent = voice(2.5, "a", seed=1), voice(2.0, "b", seed=2)
    with recorded_client(settings, encoder, admin_key, **RECORDED) as client:
        stream(client, "rec-1", {CALLER: caller, AGENT: agent})
        for raw_id, samples in ((CALLER, caller), (AGENT, agent)):
            expected = sent_pcm(samples, 16_000)
            wav = download(client, "rec-1", raw_id)
            assert wav.status_code == 200, wav.text
            assert wav.headers["content-type"] == "audio/wav"
            data, rate = soundfile.read(io.BytesIO(wav.content), dtype="int16")
            assert rate == 16_000 and data.tobytes() == expected
            raw = download(client, "rec-1", raw_id, format="pcm")
            assert raw.content == expected and raw.headers["x-sample-rate"] == "16000"
        audit = client.get("/v1/audit", params={"action": "recording.download"}).json()
    entries = [  # a download tried before the recording was complete is audited as such
        (e["subject"], e["participant_raw_id"], e["outcome"], e["actor"])
        for e in audit["entries"]
        if e["outcome"] != "recording_in_progress"
    ]
    key_id = admin_key.split("_")[1]
    assert entries == [
        ("rec-1", CALLER, "wav", key_id),
        ("rec-1", CALLER, "pcm", key_id),
        ("rec-1", AGENT, "wav", key_id),
        ("rec-1", AGENT, "pcm", key_id),
    ]
    stored = rows(settings)
    assert [(r.status, r.raw_bytes, r.dropped_bytes) for r in stored] == [
        ("complete", len(sent_pcm(caller, 16_000)), 0),
        ("complete", len(sent_pcm(agent, 16_000)), 0),
    ]
    for row in stored:
        on_disk = (settings.recordings_dir / f"{row.recording_id}.raw").read_bytes()
        plain = sent_pcm(caller if row.participant_raw_id == CALLER else agent, 16_000)
        assert len(on_disk) > len(plain)  # sealed: nonce and tag per chunk
        assert not any(plain[i : i + 64] in on_disk for i in range(0, len(plain) - 64, 997))
        assert (settings.recordings_dir / f"{row.recording_id}.raw").stat().st_mode & 0o077 == 0


def test_a_24_khz_call_keeps_its_raw_pcm_and_a_16_khz_wav(settings, encoder, admin_key):
    samples = voice(2.0, "a", seed=3, rate=24_000)
    with recorded_client(settings, encoder, admin_key, **RECORDED) as client:
        stream(client, "wide", {CALLER: samples}, rate=24_000)
        raw = download(client, "wide", CALLER, format="pcm")
        assert raw.content == sent_pcm(samples, 24_000)
        assert raw.headers["x-sample-rate"] == "24000"
        wav = download(client, "wide", CALLER)
    data, rate = soundfile.read(io.BytesIO(wav.content), dtype="int16")
    sent = np.frombuffer(raw.content, dtype="<i2")
    assert rate == 16_000 and abs(len(data) - len(sent) * 2 / 3) <= 2
    # The same sound at the new rate: a 440 Hz-band voice survives resampling.
    assert np.corrcoef(data[::2][: len(sent[::3])], sent[::3][: len(data[::2])])[0, 1] > 0.9


def test_an_admin_records_one_call_and_others_stay_unrecorded(client, settings):
    bad = client.put(path("chosen", None, "recording"), json={"enabled": "yes"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"
    chosen = client.put(path("chosen", None, "recording"), json={"enabled": True})
    assert chosen.json() == {"call_id": "chosen", "recording": True, "default": False}
    stream(client, "chosen", {CALLER: voice(1.5, "a", seed=1)})
    stream(client, "other", {CALLER: voice(1.5, "a", seed=1)})
    assert download(client, "chosen", CALLER).status_code == 200
    assert client.get(path("other", CALLER, "audio")).status_code == 404
    assert [(r.call_id, r.status) for r in rows(settings)] == [("chosen", "complete")]
    choices = client.get("/v1/audit", params={"action": "call.recording"}).json()["entries"]
    assert [(e["subject"], e["outcome"]) for e in choices] == [("chosen", "on")]


def test_a_read_key_may_not_download_or_turn_recording_on(settings, encoder, admin_key):
    read_key = KeyStore(Database(settings.database_url)).create(Role.READ)[1]
    with recorded_client(settings, encoder, admin_key, **RECORDED) as client:
        stream(client, "private", {CALLER: voice(1.5, "a", seed=1)})
        assert download(client, "private", CALLER).status_code == 200
        refused = client.get(path("private", CALLER, "audio"), headers=bearer(read_key))
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
        put = client.put(
            path("private", None, "recording"), json={"enabled": False}, headers=bearer(read_key)
        )
        assert put.status_code == 403


def test_retention_and_a_speakers_deletion_remove_recordings(settings, encoder, admin_key):
    with recorded_client(settings, encoder, admin_key, **RECORDED) as client:
        assert enroll(client, "alice").status_code == 201
        client.put(path("old", CALLER, "claim"), json={"speaker_id": "alice"})
        client.put(path("old", None, "recording"), json={"enabled": True})
        stream(client, "old", {CALLER: voice(1.5, "a", seed=1), AGENT: voice(1.5, "b", seed=2)})
        stream(client, "kept", {CALLER: voice(1.5, "a", seed=4)})
        assert download(client, "old", CALLER).status_code == 200
        assert download(client, "old", AGENT).status_code == 200
        assert download(client, "kept", CALLER).status_code == 200
        folder = settings.recordings_dir
        assert len(list(folder.iterdir())) == 3

        # alice is deleted: the recording of the participant who claimed her goes.
        assert client.delete("/v1/speakers/alice").status_code == 204
        assert client.get(path("old", CALLER, "audio")).status_code == 404
        assert download(client, "old", AGENT).status_code == 200
        assert len(list(folder.iterdir())) == 2

        # The agent's recording is past retention, the other call's is not.
        database = Database(settings.database_url)
        with database.session() as session:
            session.execute(
                sa.update(CallRecording)
                .where(CallRecording.call_id == "old")
                .values(started_at=utcnow() - timedelta(days=31))
            )
            session.execute(
                sa.update(CallRecordingSetting).values(set_at=utcnow() - timedelta(days=31))
            )
        report = sweep(
            database, NO_EXPIRY, Retention(recording_days=30), recordings=RecordingFiles(folder)
        )
        assert report.recordings_deleted == 1
        with database.session() as session:  # the admin's choice for the old call went too
            assert session.scalars(sa.select(CallRecordingSetting)).all() == []
        database.dispose()
        assert client.get(path("old", AGENT, "audio")).status_code == 404
        assert download(client, "kept", CALLER).status_code == 200
    assert [r.call_id for r in rows(settings)] == ["kept"] and len(list(folder.iterdir())) == 1


def test_rotating_the_voiceprint_key_reseals_recordings(settings, encoder, admin_key):
    with recorded_client(settings, encoder, admin_key, **RECORDED) as client:
        stream(client, "rotated", {CALLER: voice(1.5, "a", seed=1)})
        before = download(client, "rotated", CALLER).content
    new = Key.of(bytes(range(100, 132)))
    rotated = dataclasses.replace(settings, encryption_key=new.encoded(), encryption_old_keys="")
    old_id = TEST_CIPHER.key_id
    with pytest.raises(ConfigError, match=f"encrypted under key {old_id}"):
        create_app(rotated, encoder=encoder)  # the recording's key is still sealed under it
    database = Database(settings.database_url)
    done = reencrypt(database, Cipher(KeyRing(new, (TEST_CIPHER.keyring.current,))))
    database.dispose()
    assert done.recordings == 1 and rows(settings)[0].key_id == new.key_id
    with recorded_client(rotated, encoder, admin_key, **RECORDED) as client:
        assert download(client, "rotated", CALLER).content == before


def test_a_failing_disk_is_logged_and_the_call_still_gets_its_verdicts(
    settings, encoder, admin_key, caplog
):
    blocked = settings.recordings_dir.parent / "not-a-folder"
    blocked.write_text("a file where the recordings folder should be")
    broken = recorded_client(settings, encoder, admin_key, **RECORDED, recordings_dir=blocked)
    with broken as c:
        assert enroll(c, "alice").status_code == 201
        c.put(path("broken", CALLER, "claim"), json={"speaker_id": "alice", "threshold": 0})
        with caplog.at_level(logging.ERROR, logger="biometrics.store.recordings"):
            stream(c, "broken", {CALLER: voice(3.5, "a", seed=1)})
            call = wait_until(c, "broken", lambda call: call["status"] == "ENDED")
            assert call["participants"][0]["latest_verdict"]["decision"] == "ACCEPT"
            missing = download(c, "broken", CALLER)
            assert missing.status_code == 404 and "failed" in missing.json()["detail"]
    failures = [r for r in caplog.records if "could not be written" in r.getMessage()]
    assert failures and failures[0].call_id == "broken"
    assert [(r.status, r.problem is not None) for r in rows(settings)] == [("failed", True)]


def test_audio_past_the_bound_on_pending_writes_is_dropped_not_queued():
    writer = RecordingWriter(max_pending_bytes=1000)
    disk = threading.Event()
    written = threading.Event()
    try:
        assert writer.submit(disk.wait)  # the disk stalls
        assert writer.submit(lambda: None, 600)
        assert not writer.submit(lambda: None, 600)  # past the bound: refused at once
        assert writer.submit(lambda: None)  # control work (a recording's end) still queues
        disk.set()
        deadline = time.monotonic() + 10
        while not writer.submit(written.set, 600):  # room again once the disk caught up
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert written.wait(10)
    finally:
        disk.set()
        writer.close()
