"""The REST API (v1): routes, request parsing and the JSON error shape."""

from biometrics.api.routes import routes

__all__ = ["routes"]
