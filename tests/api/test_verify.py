import sqlalchemy as sa
from starlette.testclient import TestClient

from biometrics.app import create_app
from biometrics.embedding import load_encoder
from biometrics.embedding.folder import ecapa_hyperparams, write_initialised_folder
from biometrics.store import Database
from tests.api.helpers import enroll, verify

RESULT_FIELDS = {
    "speaker_id",
    "decision",
    "score",
    "similarity",
    "threshold",
    "speech_seconds",
    "model",
    "calibrated",
    "normalized_score",
    "quality",
}


def enrolled(client, speaker_id="ada"):
    enroll(client, speaker_id, seconds=6.0, seed=1)
    assert enroll(client, speaker_id, seconds=6.0, seed=2).json()["status"] == "ENROLLED"


def test_verification_returns_a_decision_with_a_score(client):
    enrolled(client)
    result = verify(client, "ada", threshold="0").json()
    assert set(result) == RESULT_FIELDS
    assert result["decision"] == "ACCEPT"
    assert 0 <= result["score"] <= 100
    assert result["score"] == round(100 * max(result["similarity"], 0), 2)
    assert result["threshold"] == 0.0
    assert result["speech_seconds"] >= 2.0
    assert result["model"]["sha256"] == client.get("/readyz").json()["model"]["sha256"]
    assert result["calibrated"] is False
    assert result["quality"]["issues"] == []
    assert result["quality"]["snr_db"] > 10


def test_the_request_threshold_overrides_the_default(client):
    enrolled(client)
    strict = verify(client, "ada", threshold="100").json()
    assert strict["decision"] == "REJECT"
    default = verify(client, "ada").json()
    assert default["threshold"] == 30.0
    expected = "ACCEPT" if default["score"] >= 30.0 else "REJECT"
    assert default["decision"] == expected


def test_too_little_speech_is_not_judged(client):
    enrolled(client)
    result = verify(client, "ada", seconds=1.5).json()
    assert result["decision"] == "NOT_ENOUGH_SPEECH"
    assert result["score"] is None
    assert 0 < result["speech_seconds"] < 2.0


def test_a_speaker_still_enrolling_is_not_enrolled(client):
    enroll(client, "ada", seconds=4.0)
    assert verify(client, "ada").json()["decision"] == "SPEAKER_NOT_ENROLLED"


def test_an_opted_out_speaker_is_reported(client):
    enrolled(client)
    client.post("/v1/speakers/ada/opt-out")
    assert verify(client, "ada").json()["decision"] == "SPEAKER_OPTED_OUT"


def test_verifications_are_recorded_and_touch_the_speaker(client, settings):
    enrolled(client)
    assert client.get("/v1/speakers/ada").json()["last_accessed_at"] is None
    verify(client, "ada")
    verify(client, "ada", seconds=1.0)
    assert client.get("/v1/speakers/ada").json()["last_accessed_at"] is not None
    with Database(settings.database_url).engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT decision, threshold FROM verification_records ORDER BY id")
        ).all()
    assert [row.decision for row in rows][1] == "NOT_ENOUGH_SPEECH"
    assert len(rows) == 2


def test_a_voiceprint_of_another_model_is_never_compared(client, settings, tmp_path):
    enrolled(client)
    other_folder = write_initialised_folder(
        tmp_path / "other-model", ecapa_hyperparams(channels=64, n_classes=8), seed=7
    )
    other = load_encoder(str(other_folder), tmp_path / "cache")
    with TestClient(create_app(settings, encoder=other)) as other_client:
        refused = verify(other_client, "ada")
        assert refused.status_code == 409
        assert refused.json()["error"] == "model_mismatch"
        assert "Re-enroll" in refused.json()["detail"]
        accumulate = enroll(other_client, "ada")
        assert accumulate.status_code == 409
        assert enroll(other_client, "ada", seconds=12.0, replace="true").status_code == 201
        assert verify(other_client, "ada").json()["decision"] in ("ACCEPT", "REJECT")
