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


def test_readiness_fails_when_the_database_is_unreachable(client):
    services = client.app.state.services
    services.database = Database("postgresql+psycopg://nobody:secret@127.0.0.1:9/none")
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["database"] == "unreachable"
