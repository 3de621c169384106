"""``/openapi.json`` and ``/docs``: the API's description and a page to read and try it.

Both are open to all: the document describes the routes, not anything stored, and every
route it describes still needs its key (the page's Authorize button takes one). The page is
Swagger UI from the ``swagger-ui-bundle`` package, served from the package's own files, so
it works with no internet access; nothing on it loads from elsewhere (its spec validator,
which would call validator.swagger.io, is turned off).

That package ships Swagger UI 4.15, which renders OpenAPI 3.0 only: the page hands it the
document relabelled ``3.0.3``. The document itself, ``/openapi.json``, is 3.1; the
difference the page cannot show is only how nullable fields are written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import swagger_ui_bundle
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response

from biometrics.api import openapi
from biometrics.api.openapi import JSON, ApiRoute, Operation, Reply
from biometrics.errors import BiometricsError

ASSETS = Path(swagger_ui_bundle.swagger_ui_path)
# The files the page uses, and nothing else of the package's folder.
ASSET_NAMES = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png")
HTML = "text/html"

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>biometrics API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script>
    fetch("/openapi.json").then((answer) => answer.json()).then((spec) => {
      spec.openapi = "3.0.3";  // Swagger UI 4 renders 3.0; /openapi.json is 3.1
      window.ui = SwaggerUIBundle({
        spec: spec,
        dom_id: "#swagger-ui",
        validatorUrl: null,
        deepLinking: true,
        persistAuthorization: false,
      });
    });
  </script>
</body>
</html>
"""


class AssetNotFound(BiometricsError):
    code = "not_found"
    status_code = 404


class Docs:
    """The document, built once from the application's routes on its first request."""

    def __init__(self) -> None:
        self._document: dict[str, Any] | None = None

    async def openapi_json(self, request: Request) -> Response:
        if self._document is None:
            self._document = openapi.document(request.app.routes)
        return JSONResponse(self._document)

    async def page(self, request: Request) -> Response:
        return HTMLResponse(PAGE)

    async def asset(self, request: Request) -> Response:
        name = request.path_params["asset"]
        if name not in ASSET_NAMES:
            raise AssetNotFound(f"/docs has no file {name!r}")
        return FileResponse(ASSETS / name)

    def routes(self) -> list[ApiRoute]:
        docs = "docs"
        return [
            ApiRoute(
                "/openapi.json",
                self.openapi_json,
                "GET",
                Operation(
                    "getOpenApi",
                    "This document: OpenAPI 3.1",
                    docs,
                    [Reply(200, "the OpenAPI document", media_type=JSON)],
                ),
            ),
            ApiRoute(
                "/docs",
                self.page,
                "GET",
                Operation(
                    "getDocs",
                    "This API's page (Swagger UI)",
                    docs,
                    [Reply(200, "the page", None, HTML)],
                ),
            ),
            ApiRoute(
                "/docs/{asset}",
                self.asset,
                "GET",
                Operation(
                    "getDocsAsset",
                    "A file the page loads",
                    docs,
                    [Reply(200, "the file", media_type="*/*")],
                    errors={404: ("not_found",)},
                    parameters={
                        "asset": ("a file of the page", {"type": "string", "enum": ASSET_NAMES})
                    },
                ),
            ),
        ]
