import numpy as np
import sqlalchemy as sa

from biometrics.store import Database
from tests.api.helpers import enroll, verify
from tests.voices import flac_bytes, pcm_bytes, synthetic_speech, wav_bytes

FIELDS = {
    "speaker_id",
    "display_name",
    "aliases",
    "status",
    "enrolled_speech_seconds",
    "remaining_speech_seconds",
    "model",
    "created_at",
    "updated_at",
    "last_accessed_at",
    "expires_at",
}


def test_create_and_read_a_speaker(client):
    created = client.post(
        "/v1/speakers",
        json={"speaker_id": "cust-42", "display_name": "Ada", "aliases": ["4:+14255550123"]},
    )
    assert created.status_code == 201
    body = client.get("/v1/speakers/cust-42").json()
    assert set(body) == FIELDS
    assert body["status"] == "PENDING_ENROLLMENT"
    assert body["aliases"] == ["4:+14255550123"]
    assert body["enrolled_speech_seconds"] == 0.0
    assert body["remaining_speech_seconds"] == 8.0
    assert body["model"] is None
    assert body["created_at"].endswith("Z") and body["expires_at"] is None


def test_a_speaker_may_expire(client):
    created = client.post(
        "/v1/speakers", json={"speaker_id": "temp", "expires_at": "2999-01-31T12:00:00+01:00"}
    )
    assert created.status_code == 201
    assert created.json()["expires_at"] == "2999-01-31T11:00:00.000Z"
    for bad in ("2001-01-01T00:00:00Z", "2999-01-31", "tomorrow", 12):
        refused = client.post("/v1/speakers", json={"speaker_id": "x", "expires_at": bad})
        assert refused.status_code == 400, bad
        assert refused.json()["error"] == "invalid_request"


def test_creating_an_existing_speaker_conflicts(client):
    assert client.post("/v1/speakers", json={"speaker_id": "dup"}).status_code == 201
    again = client.post("/v1/speakers", json={"speaker_id": "dup"})
    assert again.status_code == 409
    assert again.json()["error"] == "speaker_exists"


def test_an_alias_belongs_to_one_speaker(client):
    client.post("/v1/speakers", json={"speaker_id": "a", "aliases": ["+15550001"]})
    clash = client.post("/v1/speakers", json={"speaker_id": "b", "aliases": ["+15550001"]})
    assert clash.status_code == 409
    assert client.get("/v1/speakers/b").status_code == 404


def test_speakers_are_listed_in_pages(client):
    for index in range(5):
        client.post("/v1/speakers", json={"speaker_id": f"s{index}"})
    first = client.get("/v1/speakers", params={"limit": 2}).json()
    assert [s["speaker_id"] for s in first["speakers"]] == ["s0", "s1"]
    seen = [s["speaker_id"] for s in first["speakers"]]
    cursor = first["next_cursor"]
    while cursor:
        page = client.get("/v1/speakers", params={"limit": 2, "cursor": cursor}).json()
        seen += [s["speaker_id"] for s in page["speakers"]]
        cursor = page["next_cursor"]
    assert seen == [f"s{index}" for index in range(5)]


def test_enrollment_accumulates_until_enrolled(client):
    first = enroll(client, "ada", seconds=6.0, seed=1)
    assert first.status_code == 201
    assert first.json()["status"] == "PENDING_ENROLLMENT"
    assert 0 < first.json()["remaining_speech_seconds"] < 8.0
    second = enroll(client, "ada", seconds=6.0, seed=2).json()
    assert second["status"] == "ENROLLED"
    assert second["remaining_speech_seconds"] == 0.0
    expected = first.json()["speech_seconds"] + second["speech_seconds"]
    assert abs(second["enrolled_speech_seconds"] - expected) < 0.02
    speaker = client.get("/v1/speakers/ada").json()
    assert speaker["status"] == "ENROLLED"
    assert speaker["model"]["sha256"]


def test_enrollment_creates_the_speaker_if_missing(client):
    assert enroll(client, "new-caller").status_code == 201
    assert client.get("/v1/speakers/new-caller").json()["enrolled_speech_seconds"] > 0


def test_re_enrollment_can_replace_the_voiceprint(client):
    enroll(client, "ada", seconds=6.0, seed=1)
    enroll(client, "ada", seconds=6.0, seed=2)
    replaced = enroll(client, "ada", seconds=6.0, seed=3, replace="true").json()
    assert replaced["enrolled_speech_seconds"] == replaced["speech_seconds"]
    assert replaced["status"] == "PENDING_ENROLLMENT"


def test_enrollment_takes_raw_bodies_flac_and_pcm(client):
    samples = synthetic_speech(4.0, rate=8_000)
    flac = client.post(
        "/v1/speakers/ada/enrollments",
        content=flac_bytes(samples, 8_000),
        headers={"content-type": "audio/flac"},
    )
    assert flac.status_code == 201
    pcm = client.post(
        "/v1/speakers/ada/enrollments",
        content=pcm_bytes(samples),
        headers={"content-type": "audio/pcm;rate=8000"},
    )
    assert pcm.status_code == 201
    assert abs(pcm.json()["speech_seconds"] - flac.json()["speech_seconds"]) < 0.1


def test_silence_is_not_enrolled(client):
    silence = wav_bytes(np.zeros(16_000 * 5, dtype=np.float32))
    response = client.post(
        "/v1/speakers/ada/enrollments", files={"audio": ("quiet.wav", silence, "audio/wav")}
    )
    assert response.status_code == 422
    assert response.json()["error"] == "insufficient_speech"
    assert client.get("/v1/speakers/ada").status_code == 404


def test_opt_out_deletes_the_voiceprint_and_refuses_enrollment(client):
    enroll(client, "ada", seconds=6.0, seed=1)
    opted = client.post("/v1/speakers/ada/opt-out")
    assert opted.status_code == 200
    assert opted.json()["status"] == "OPTED_OUT"
    assert opted.json()["model"] is None
    assert opted.json()["enrolled_speech_seconds"] == 0.0
    refused = enroll(client, "ada")
    assert refused.status_code == 409
    assert refused.json()["error"] == "speaker_opted_out"


def test_opt_out_of_an_unknown_speaker_holds_for_later(client):
    assert client.post("/v1/speakers/later/opt-out").json()["status"] == "OPTED_OUT"
    assert enroll(client, "later").status_code == 409


def test_delete_removes_the_speaker_and_everything_of_theirs(client, settings):
    enroll(client, "ada", seconds=10.0)
    enroll(client, "bob", seconds=10.0, seed=3)
    for speaker_id in ("ada", "bob"):
        verify(client, speaker_id)
    assert client.delete("/v1/speakers/ada").status_code == 204
    assert client.get("/v1/speakers/ada").status_code == 404
    assert client.delete("/v1/speakers/ada").status_code == 404
    with Database(settings.database_url).engine.connect() as connection:

        def count(sql: str) -> int:
            return connection.execute(sa.text(sql)).scalar_one()

        assert count("SELECT count(*) FROM speakers") == 1
        assert count("SELECT count(*) FROM voiceprints") == 1
        assert count("SELECT count(*) FROM enrollment_records") == 1
        assert count("SELECT count(*) FROM verdicts WHERE speaker_id = 'ada'") == 0
        assert count("SELECT count(*) FROM verdicts WHERE speaker_id = 'bob'") == 1
    assert client.get("/v1/speakers/bob").json()["status"] == "ENROLLED"


def test_delete_and_opt_out_leave_no_vector_of_the_speaker_anywhere(client, settings):
    """Every table, every binary column: the sealed voiceprint is nowhere after deletion
    or opt-out (the other speaker's stays)."""
    from biometrics.store.models import Base

    def binary_values(connection) -> list[bytes]:
        found = []
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, sa.LargeBinary)]
            for column in columns:
                found += [v for v in connection.execute(sa.select(column)).scalars() if v]
        return found

    for speaker_id, seed in (("ada", 1), ("bob", 3), ("cy", 5)):
        assert enroll(client, speaker_id, seconds=10.0, seed=seed).status_code == 201
        verify(client, speaker_id)
    engine = Database(settings.database_url).engine
    with engine.connect() as connection:

        def sealed(speaker_id: str) -> bytes:
            return connection.execute(
                sa.text(
                    "SELECT v.vector FROM voiceprints v JOIN speakers s ON s.id = v.speaker_pk "
                    "WHERE s.speaker_id = :speaker"
                ),
                {"speaker": speaker_id},
            ).scalar_one()

        vectors = {speaker_id: sealed(speaker_id) for speaker_id in ("ada", "bob", "cy")}
    assert client.delete("/v1/speakers/ada").status_code == 204
    assert client.post("/v1/speakers/bob/opt-out").status_code == 200
    with engine.connect() as connection:
        remaining = binary_values(connection)
    assert vectors["ada"] not in remaining and vectors["bob"] not in remaining
    assert vectors["cy"] in remaining
