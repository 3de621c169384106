"""The REST API: speakers, verification, live calls over REST, probes; uploads, limits and
JSON errors. Each route is a small class given its dependencies by the app factory."""
