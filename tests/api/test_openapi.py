"""The OpenAPI document: it covers every route the application serves, it is valid
OpenAPI 3.1 whose schemas are valid JSON Schema 2020-12, and ``/docs`` is a page whose
every file comes from the service itself."""

from __future__ import annotations

import re

import jsonschema_rs
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR
from starlette.routing import Route, WebSocketRoute

from biometrics.api.openapi import ApiRoute, path_template


def test_every_route_is_documented(client):
    spec = client.get("/openapi.json").json()
    routes = client.app.routes
    # The console's pages are HTML for people, not operations of the API.
    api = [r for r in routes if not r.path.startswith("/console")]
    plain = [r.path for r in api if isinstance(r, Route) and not isinstance(r, ApiRoute)]
    assert plain == [], "each HTTP route declares its Operation"
    served = {
        (path_template(r.path), m.lower())
        for r in routes
        if isinstance(r, ApiRoute)
        for m in r.methods
        if m != "HEAD"
    }
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert served == documented
    assert len(documented) >= 23
    # The live-call socket is no OpenAPI operation; the document says where it is.
    assert [r.path for r in routes if isinstance(r, WebSocketRoute)] == ["/ws/acs"]
    assert "/ws/acs" in spec["info"]["description"]
    ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_the_document_is_valid_openapi_3_1(client):
    spec = client.get("/openapi.json").json()
    assert spec["openapi"] == "3.1.0"
    errors = [error.message for error in OPENAPI_31_VALIDATOR.iter_errors(spec)]
    assert errors == []
    for name, schema in spec["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name


def test_routes_declare_auth_errors_and_uploads(client):
    paths = client.get("/openapi.json").json()["paths"]
    verify = paths["/v1/verify"]["post"]
    assert verify["security"] == [{"apiKey": ["verify"]}, {"apiKeyHeader": ["verify"]}]
    form = verify["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["audio"]["format"] == "binary"
    assert set(form["required"]) == {"audio", "speaker_id"}
    for status in ("400", "401", "403", "413", "415", "429", "503"):
        error = verify["responses"][status]["content"]["application/json"]
        assert error["schema"] == {"$ref": "#/components/schemas/Error"}
        assert set(error["example"]) == {"error", "detail"}
    claim = paths["/v1/calls/{call_id}/participants/{participant_raw_id}/claim"]["put"]
    assert {"callToken": ["verify"]} in claim["security"]
    assert paths["/healthz"]["get"]["security"] == []
    created = paths["/v1/speakers"]["post"]["responses"]["201"]
    assert created["links"]["getSpeaker"]["parameters"] == {
        "speaker_id": "$response.body#/speaker_id"
    }


def test_a_request_that_does_not_validate_is_a_json_400(client):
    refused = client.post("/v1/speakers", json={"speaker_id": "cust-1", "aliases": "x"})
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_request"
    assert refused.json()["detail"].startswith("aliases:")
    late = client.get("/v1/audit", params={"until": "0.5"})
    assert (late.status_code, late.json()["error"]) == (400, "invalid_request")
    assert "RFC 3339" in late.json()["detail"]


def test_a_wrong_method_names_every_method_of_the_path(client):
    refused = client.request("PATCH", "/v1/speakers/cust-1")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "DELETE, GET, HEAD"
    assert refused.json()["error"] == "method_not_allowed"


def test_the_docs_page_loads_only_the_services_own_files(client):
    page = client.get("/docs", headers={"Authorization": ""})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    files = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert files and all(name.startswith("/docs/") for name in files)
    assert "validatorUrl: null" in page.text  # no call to validator.swagger.io
    for name in files:
        assert client.get(name, headers={"Authorization": ""}).status_code == 200
    assert client.get("/docs/index.html").status_code == 404
    assert client.get("/openapi.json", headers={"Authorization": ""}).status_code == 200
