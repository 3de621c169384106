"""Live-call state shared by replicas through Redis, when ``BIOMETRICS_REDIS_URL`` is set:
who holds each call (a lease), claims sent to that replica, every call event in a Redis
stream for SSE on any replica, and webhooks delivered once by a consumer group.

Without Redis one process holds it all in memory (:data:`~biometrics.cluster.ownership.
SOLE_REPLICA`, the in-process broker), exactly as before. docs/scale-out.md has the keys,
their lifetimes and what a replica's death loses.
"""
