from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from biometrics.api.health import Readiness
from biometrics.embedding import ModelIdentity
from biometrics.scoring.scorer import Scorer
from biometrics.store import Database


def test_health_and_readiness_name_the_model(client, model_folder):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert body["database"] == "ok"
    assert body["model"]["source"] == str(model_folder)
    assert len(body["model"]["sha256"]) == 64
    assert body["scoring"]["calibrated"] is False


def test_readiness_fails_when_the_database_is_unreachable():
    unreachable = Database("postgresql+psycopg://nobody:secret@127.0.0.1:9/none")
    readiness = Readiness(unreachable, ModelIdentity("m", "0" * 64), Scorer())
    app = Starlette(routes=[Route("/readyz", readiness.readyz)])
    ready = TestClient(app).get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["database"] == "unreachable"
    assert "secret" not in ready.text
