"""The OpenAPI 3.1 document, built from the route table itself.

Each REST route is an :class:`ApiRoute`: a Starlette ``Route`` that carries its
:class:`Operation` (its request and response models from :mod:`biometrics.api.schemas`,
the errors it answers) and, when the guard made it, the roles it needs. :func:`document`
walks the application's routes and writes one operation per route from those
declarations, with the JSON Schemas pydantic generates from the same models the handlers
validate with. No decorators and no introspection of the handlers' code: what a route
declares is all there is (a plain ``Route`` is left out, and the tests refuse one).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import version
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute, Route

from biometrics.api.schemas import Error
from biometrics.statuses import Role

REF = "#/components/schemas/{model}"
JSON = "application/json"

# What each error status means, and its usual code; an operation names its own codes.
ERRORS = {
    400: ("invalid_request", "the request does not validate (the detail says which field)"),
    401: ("unauthenticated", "no key, or an unknown, revoked or expired one"),
    403: ("forbidden", "the key's role does not allow this, or a call token of another call"),
    404: ("not_found", "nothing is there"),
    408: ("request_timeout", "the body did not arrive in time"),
    409: ("conflict", "the resource's state does not allow this"),
    413: ("payload_too_large", "the body or its audio is longer than allowed"),
    415: ("unsupported_media_type", "not a media type this route reads"),
    422: ("insufficient_speech", "the recording holds too little speech"),
    429: ("rate_limited", "the key's rate is spent (see Retry-After)"),
    503: ("database_unavailable", "the database or the model is busy or away: see Retry-After"),
}
SECURED = (401, 403, 429, 503)  # every guarded route: the guard reads keys from the database
WITH_BODY = (400, 408, 413)  # every route that reads a body (the body limits apply to all)
UPLOAD = (*WITH_BODY, 415)


@dataclasses.dataclass(frozen=True)
class Reply:
    """A successful answer: its status, what it holds, and the operations it leads to."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    media_type: str = JSON
    # OpenAPI links: operationId -> {parameter: runtime expression}, e.g. the speaker a
    # POST made is the one to GET next.
    links: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Operation:
    """What one route does, for the document: ``body``, ``form`` and ``query`` name the
    models its handler validates its input with, ``replies`` those it answers through."""

    operation_id: str
    summary: str
    tag: str
    replies: Sequence[Reply]
    errors: Mapping[int, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # codes
    body: type[BaseModel] | None = None  # a JSON object
    form: type[BaseModel] | None = None  # multipart/form-data: these fields and an audio file
    query: type[BaseModel] | None = None
    description: str | None = None
    # Path parameters of this route alone: name -> (description, schema).
    parameters: Mapping[str, tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)
    # Set by the guard: the role needed (None: any API key), and whether a call token of
    # the route's call may be used; unset: the route is open.
    secured: bool = False
    role: Role | None = None
    call_token: bool = False

    def guarded(self, role: Role | None, call_token: bool) -> Operation:
        return dataclasses.replace(self, secured=True, role=role, call_token=call_token)


class ApiRoute(Route):
    """A route of one method that documents itself."""

    def __init__(self, path: str, endpoint: Any, method: str, operation: Operation) -> None:
        super().__init__(path, endpoint, methods=[method])
        self.method = method
        self.operation = operation


# --- the document -----------------------------------------------------------------------------

SECURITY_SCHEMES = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "bmk_<key id>_<secret>",
        "description": (
            "An API key (`biometrics keys create --role ROLE`). Each operation lists the "
            "role it needs; an `admin` key may do everything."
        ),
    },
    "apiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The same API key, in a header of its own.",
    },
    "callToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "bmc.<claims>.<signature>",
        "description": (
            "A call token (`POST /v1/calls/{call_id}/tokens`): acts on its own call's routes "
            "only, with the role it was minted with."
        ),
    },
}

HEADERS = {
    "X-Request-ID": {
        "description": "the request's id (the one sent, if sane, else a new one)",
        "required": True,
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 1},
    },
    "WWW-Authenticate": {
        "description": 'Bearer realm="biometrics"',
        "required": True,
        "schema": {"type": "string"},
    },
}
_ERROR_HEADERS = {
    401: ("WWW-Authenticate",),
    403: ("WWW-Authenticate",),
    429: ("Retry-After",),
    503: ("Retry-After",),
}

DESCRIPTION = """\
Self-hosted voice biometric authentication: enroll a speaker's voice from recordings or a
live call, verify a recording or a call participant against a claimed identity.

**Authentication.** Every `/v1` route needs an API key, sent as `Authorization: Bearer
<key>` or `X-API-Key: <key>`; each operation names the role it needs (`admin` may do
everything). Routes of one call also take a call token of that call. No key, or a bad one,
is 401; a key without the role is 403.

**Errors.** Every error is a JSON object `{"error": code, "detail": text}`: `error` is a
stable code to branch on, `detail` a sentence for a person.

**Live calls.** Azure Communication Services streams a call's audio to the WebSocket
`/ws/acs` (not described here: OpenAPI has no WebSocket operations); its participants,
claims and verdicts are read and changed over the routes below.
"""


def document(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` (the application's route table)."""
    operations = [route for route in routes if isinstance(route, ApiRoute)]
    schemas = _schemas(operations)
    paths: dict[str, dict[str, Any]] = {}
    for route in operations:
        template = path_template(route.path)
        paths.setdefault(template, {})[route.method.lower()] = _operation(route, schemas)
    tags = sorted({route.operation.tag for route in operations})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "biometrics",
            "version": version("biometrics"),
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": SECURITY_SCHEMES,
            "headers": HEADERS,
        },
    }


def _schemas(routes: Sequence[ApiRoute]) -> dict[str, Any]:
    models: dict[type[BaseModel], None] = {Error: None}
    for route in routes:
        operation = route.operation
        for model in (operation.body, operation.query, operation.form):
            if model is not None:
                models[model] = None
        for reply in operation.replies:
            if reply.model is not None:
                models[reply.model] = None
    _, generated = models_json_schema([(model, "validation") for model in models], ref_template=REF)
    defs: dict[str, Any] = generated.get("$defs", {})
    return dict(sorted(defs.items()))


def path_template(path: str) -> str:
    """``/calls/{raw:path}`` -> ``/calls/{raw}``: OpenAPI names parameters, not converters."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def _operation(route: ApiRoute, schemas: Mapping[str, Any]) -> dict[str, Any]:
    operation = route.operation
    body: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
    }
    if operation.description:
        body["description"] = operation.description
    known = {**PATH_PARAMETERS, **operation.parameters}
    parameters = [_path_parameter(name, *known[name]) for name in route.param_convertors]
    if operation.query is not None:
        parameters += _query_parameters(schemas[operation.query.__name__])
    if parameters:
        body["parameters"] = parameters
    if operation.body is not None:
        body["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": {"$ref": REF.format(model=operation.body.__name__)}}},
        }
    if operation.form is not None:
        body["requestBody"] = _upload(schemas[operation.form.__name__])
    body["responses"] = _responses(operation)
    body["security"] = _security(operation) if operation.secured else []  # []: open
    return body


PATH_PARAMETERS: dict[str, tuple[str, dict[str, Any]]] = {
    "speaker_id": ("the speaker's id", {"type": "string", "examples": ["cust-42"]}),
    "call_id": (
        "the call's id (ACS's serverCallId or any id of 1-256 printable characters)",
        {"type": "string", "examples": ["call-7"]},
    ),
    "participant_raw_id": (
        "the participant's raw id, URL-encoded (e.g. 4%3A%2B14255550123)",
        {"type": "string", "examples": ["4:+14255550123"]},
    ),
    "dead_letter_id": ("the dead letter's id", {"type": "integer", "minimum": 1}),
}


def _path_parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def _query_parameters(schema: Mapping[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", ()))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": _text_field(field, "description"),
            **({"description": field["description"]} if "description" in field else {}),
        }
        for name, field in schema["properties"].items()
    ]


def _text_field(field: Mapping[str, Any], *drop: str) -> dict[str, Any]:
    """A model field as a query parameter or form field: text, where ``null`` cannot be
    written, so an optional one is simply left out (``anyOf [X, null]`` becomes ``X``)."""
    schema = {k: v for k, v in field.items() if k not in ("title", *drop)}
    choices = [choice for choice in schema.pop("anyOf", ()) if choice != {"type": "null"}]
    if len(choices) == 1:
        schema.update(choices[0])
    elif choices:
        schema["anyOf"] = choices
    if schema.get("default", 0) is None:
        del schema["default"]
    return schema


def _upload(fields: Mapping[str, Any]) -> dict[str, Any]:
    properties = {
        "audio": {
            "type": "string",
            "format": "binary",
            "contentMediaType": "audio/wav",
            "description": "the recording: WAV, FLAC or Ogg (any rate; mixed to mono, 16 kHz)",
        },
        **{name: _text_field(field) for name, field in fields["properties"].items()},
    }
    schema = {
        "type": "object",
        "properties": properties,
        "required": ["audio", *fields.get("required", ())],
    }
    return {
        "required": True,
        "description": (
            "multipart/form-data with the recording in `audio`; the fields may also be "
            "query parameters (then the body may be the bare file, e.g. "
            "`Content-Type: audio/wav`, or `audio/pcm;rate=16000`)."
        ),
        "content": {
            "multipart/form-data": {
                "schema": schema,
                "encoding": {"audio": {"contentType": "audio/wav, audio/flac, audio/ogg"}},
            }
        },
    }


def _responses(operation: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    request_id = {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}
    for reply in operation.replies:
        answer: dict[str, Any] = {"description": reply.description, "headers": request_id}
        if reply.model is not None:
            answer["content"] = {
                reply.media_type: {"schema": {"$ref": REF.format(model=reply.model.__name__)}}
            }
        elif reply.media_type != JSON:
            answer["content"] = {reply.media_type: {"schema": {"type": "string"}}}
        if reply.links:
            answer["links"] = {
                target: {"operationId": target, "parameters": dict(parameters)}
                for target, parameters in reply.links.items()
            }
        responses[str(reply.status)] = answer
    errors = dict(operation.errors)
    if operation.secured:
        errors.update({status: errors.get(status, ()) for status in SECURED})
    for status in sorted(errors):
        default_code, meaning = ERRORS[status]
        codes = errors[status] or (default_code,)
        headers = {
            **request_id,
            **{
                name: {"$ref": f"#/components/headers/{name}"}
                for name in _ERROR_HEADERS.get(status, ())
                if operation.secured or name != "WWW-Authenticate"
            },
        }
        responses[str(status)] = {
            "description": f"{', '.join(codes)}: {meaning}",
            "headers": headers,
            "content": {
                JSON: {
                    "schema": {"$ref": REF.format(model="Error")},
                    "example": {"error": codes[0], "detail": meaning},
                }
            },
        }
    return responses


def _security(operation: Operation) -> list[dict[str, list[str]]]:
    roles = [] if operation.role is None else [operation.role.value]
    schemes = [{"apiKey": roles}, {"apiKeyHeader": roles}]
    if operation.call_token:
        schemes.append({"callToken": roles})
    return schemes
