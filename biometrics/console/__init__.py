"""The agent console: server-rendered pages over the service's own routes, at ``/console``."""
