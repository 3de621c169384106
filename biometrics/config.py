"""Every setting of the service, read once from the environment (``BIOMETRICS_*``).

The CLI and the application factory only read a :class:`Settings`; nothing else
looks at ``os.environ``. Invalid values fail at start with a message that names
the variable and what it accepts.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from biometrics.errors import ConfigError

PREFIX = "BIOMETRICS_"
DEFAULT_MODEL_SOURCE = "bundled"
LIVE_EMBEDDINGS = ("window", "incremental")


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///biometrics.db"
    # Every /v1 route and the live-call socket need an API key (or ACS's token). Turning
    # it off is for development only: the service warns at start and on /readyz.
    auth_enabled: bool = True
    rate_limit_per_minute: int = 600  # requests a minute per API key (429 above); 0: none
    auto_migrate: bool = True
    # A Hugging Face id or a local folder in the spkrec-ecapa-voxceleb layout.
    model_source: str = DEFAULT_MODEL_SOURCE
    model_cache_dir: Path = Path.home() / ".cache" / "biometrics" / "models"
    inference_threads: int = 2
    # The one inference thread's micro-batcher (docs/performance.md, Inference batching):
    # pieces of equal length per batch, how long a batch waits for more, and the audio
    # queued (seconds) past which REST and bulk work is refused with 503 (live never is).
    inference_max_batch: int = 8
    inference_max_wait_ms: float = 5.0
    inference_queue_max: float = 300.0
    # The embedding network's runtime and number format: fp32, bf16 or onnx
    # (biometrics/embedding/precision.py; docs/performance.md for what each costs).
    inference_precision: str = "fp32"
    # Decision threshold on the 0-100 score; a request may override it. Unset, it is
    # derived from the model's calibration at target_far (30 when uncalibrated).
    threshold: float | None = None
    target_far: float = 0.01
    # Quality gate: audio below it is not judged (decision POOR_AUDIO_QUALITY).
    min_snr_db: float = 3.0
    max_clipping_ratio: float = 0.01
    min_enroll_speech_seconds: float = 20.0
    min_verify_speech_seconds: float = 3.0
    # Brute force: after this many failed verifications of one speaker (REST or calls)
    # within the window, none is judged until the oldest leaves it, or an admin clears
    # the lockout. 0 turns it off.
    lockout_failures: int = 5
    lockout_window_seconds: float = 900.0
    # Data lifecycle. A speaker with no enrollment or ACCEPT for this many days is EXPIRED
    # (Voice ID's three years, BIPA's limit): verdicts say SPEAKER_EXPIRED and the sweep
    # deletes the voiceprint. Verdicts and audit rows older than their retention are
    # deleted by the same sweep, run every interval by the service and by `biometrics
    # expire`. 0 turns each off (kept forever; no periodic sweep).
    speaker_expiry_days: int = 1095
    verdict_retention_days: int = 365
    audit_retention_days: int = 2555
    sweep_interval_seconds: int = 3600
    max_upload_bytes: int = 25 * 1024 * 1024
    max_audio_seconds: float = 300.0
    log_level: str = "INFO"
    log_format: str = "auto"  # "json", "console", or "auto" (console on a terminal)
    # Live calls: the first scored verdict at min_verify_speech_seconds of net speech (the
    # minimum of every verdict), a new one every step, the final one at the maximum (no
    # speech is buffered past it).
    stream_step_seconds: float = 2.0
    stream_max_speech_seconds: float = 10.0
    # How each live verdict gets its embedding: "incremental" embeds only the speech since
    # the last verdict and pools it with the embedding so far (10 s through the model for
    # the default schedule), "window" re-embeds all the speech so far (34 s). The first
    # verdict is the same either way; docs/accuracy.md finds the later ones no worse.
    live_embedding: str = "incremental"
    stream_metadata_timeout_seconds: float = 10.0  # close 1008 if no AudioMetadata by then
    stream_idle_timeout_seconds: float = 30.0  # close 1008 after this long without a message
    stream_max_message_bytes: int = 256 * 1024  # close 1009 above (GA frames are ~1.5 KB)
    stream_max_participants: int = 32  # per call; frames of further participants dropped
    stream_max_calls: int = 1000  # calls held in memory at once (pending, ongoing, recent)
    stream_retention_seconds: float = 300.0  # an ended call stays resumable this long
    # Hostile clients: open call sockets one API key may hold in this process (close 1013
    # above; 0: no limit; ACS-signed sockets are bounded by STREAM_MAX_CALLS instead), and
    # how long a request body may take to arrive, trickled or stalled (408 past it).
    stream_max_sockets_per_key: int = 64
    upload_timeout_seconds: float = 60.0
    # ACS signs each audio socket with a JWT whose audience is your ACS resource id; set
    # it to require and check that token (unset: the socket is open to anyone who can
    # reach it, so keep it behind a gateway).
    acs_audience: str | None = None
    acs_issuer: str = "https://acscallautomation.communication.azure.com"
    acs_jwks_url: str = "https://acscallautomation.communication.azure.com/calling/keys"
    # A JWKS file instead of the URL, for a service that cannot reach it.
    acs_jwks_file: Path | None = None
    # Webhooks: comma-separated http(s) URLs that receive every call event as a
    # CloudEvent, signed with HMAC-SHA256 under the secret (required with URLs).
    webhook_urls: str = ""
    webhook_secret: str | None = dataclasses.field(default=None, repr=False)  # never logged
    webhook_max_attempts: int = 6
    webhook_backoff_seconds: float = 1.0  # first retry delay; doubles up to a minute
    webhook_timeout_seconds: float = 5.0
    # On shutdown, deliver what is queued (and retries falling due) for this long; the
    # rest becomes dead letters (webhook_dead_letters), never dropped.
    webhook_drain_seconds: float = 10.0
    # Voiceprints at rest: AES-256-GCM under this key (base64 of 32 random bytes), or the
    # key held in this file. With neither, a SQLite database gets a key file beside it
    # (biometrics.db.key) on first start; PostgreSQL refuses to start. Older keys
    # (comma-separated base64) still decrypt until `biometrics keys rotate-voiceprints`.
    encryption_key: str | None = dataclasses.field(default=None, repr=False)  # never logged
    encryption_key_file: Path | None = None
    encryption_old_keys: str = dataclasses.field(default="", repr=False)
    # Outages and shutdown: verdict and audit rows that wait in memory while the database
    # is unreachable (the oldest dropped, counted and logged, past it); how long live calls
    # get to make their final verdicts when the service stops (uvicorn's graceful
    # shutdown), before webhooks drain and the process exits.
    spool_max_rows: int = 10_000
    shutdown_timeout_seconds: float = 20.0
    # Once calls have left memory, hand the heap's freed pages back to the system (glibc's
    # malloc_trim; nothing elsewhere), so that the resident size falls after a burst.
    memory_trim: bool = True
    # Several replicas: the Redis server they share for live-call state (call ownership
    # leases, claims sent to the replica holding a call's socket, events for SSE on any
    # replica, webhooks delivered once). Unset: one process holds everything in memory.
    # A replica that dies loses its calls' leases after lease_seconds (a reconnect waits at
    # most that long for a new home); a call's events stay readable (Last-Event-ID) for
    # events_ttl_seconds after its last one.
    redis_url: str | None = dataclasses.field(default=None, repr=False)  # may hold a password
    redis_lease_seconds: float = 5.0
    redis_events_ttl_seconds: int = 3600

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        fields = {field.name: field for field in dataclasses.fields(cls)}
        values: dict[str, object] = {}
        for name, field in fields.items():
            raw = env.get(PREFIX + name.upper())
            if raw is None or raw.strip() == "":
                continue
            values[name] = _parse(PREFIX + name.upper(), raw.strip(), field.type)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.threshold is not None and not 0.0 <= self.threshold <= 100.0:
            raise ConfigError(f"{PREFIX}THRESHOLD must be between 0 and 100, got {self.threshold}")
        if not 0.0001 <= self.target_far <= 0.5:
            raise ConfigError(f"{PREFIX}TARGET_FAR must be between 0.0001 and 0.5")
        if not 0.0 <= self.max_clipping_ratio <= 1.0:
            raise ConfigError(f"{PREFIX}MAX_CLIPPING_RATIO must be between 0 and 1")
        for name in ("min_enroll_speech_seconds", "min_verify_speech_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{PREFIX}{name.upper()} must be positive")
        if self.max_upload_bytes < 1024:
            raise ConfigError(f"{PREFIX}MAX_UPLOAD_BYTES must be at least 1024")
        if self.max_audio_seconds < self.min_verify_speech_seconds:
            raise ConfigError(
                f"{PREFIX}MAX_AUDIO_SECONDS must be at least {PREFIX}MIN_VERIFY_SPEECH_SECONDS"
            )
        if self.lockout_failures < 0 or self.lockout_window_seconds <= 0:
            raise ConfigError(
                f"{PREFIX}LOCKOUT_FAILURES must not be negative and "
                f"{PREFIX}LOCKOUT_WINDOW_SECONDS must be positive"
            )
        for name in (
            "rate_limit_per_minute",
            "speaker_expiry_days",
            "verdict_retention_days",
            "audit_retention_days",
            "sweep_interval_seconds",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{PREFIX}{name.upper()} must not be negative (0: off)")
        if self.inference_threads < 1:
            raise ConfigError(f"{PREFIX}INFERENCE_THREADS must be at least 1")
        self._validate_batching()
        self._validate_precision()
        if self.log_format not in ("json", "console", "auto"):
            raise ConfigError(f"{PREFIX}LOG_FORMAT must be json, console or auto")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"{PREFIX}LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        if self.spool_max_rows < 1 or self.shutdown_timeout_seconds <= 0:
            raise ConfigError(
                f"{PREFIX}SPOOL_MAX_ROWS must be at least 1 and "
                f"{PREFIX}SHUTDOWN_TIMEOUT_SECONDS must be positive"
            )
        self._validate_streaming()
        self._validate_encryption()
        self._validate_redis()
        if "://" not in self.database_url:
            raise ConfigError(
                f"{PREFIX}DATABASE_URL must be a SQLAlchemy URL such as "
                "sqlite:///biometrics.db or postgresql+psycopg://user:pass@host/db"
            )

    def _validate_batching(self) -> None:
        if not 1 <= self.inference_max_batch <= 256:
            raise ConfigError(f"{PREFIX}INFERENCE_MAX_BATCH must be between 1 and 256 pieces")
        if not 0 <= self.inference_max_wait_ms <= 1000:
            raise ConfigError(f"{PREFIX}INFERENCE_MAX_WAIT_MS must be between 0 and 1000")
        if self.inference_queue_max < 10:
            raise ConfigError(
                f"{PREFIX}INFERENCE_QUEUE_MAX must be at least 10 (seconds of queued audio)"
            )

    def _validate_streaming(self) -> None:
        for name in (
            "stream_step_seconds",
            "stream_metadata_timeout_seconds",
            "stream_idle_timeout_seconds",
            "webhook_backoff_seconds",
            "webhook_timeout_seconds",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{PREFIX}{name.upper()} must be positive")
        if self.live_embedding not in LIVE_EMBEDDINGS:
            raise ConfigError(
                f"{PREFIX}LIVE_EMBEDDING must be one of {', '.join(LIVE_EMBEDDINGS)}, "
                f"got {self.live_embedding!r}"
            )
        if self.stream_max_speech_seconds < self.min_verify_speech_seconds:
            raise ConfigError(
                f"{PREFIX}STREAM_MAX_SPEECH_SECONDS must be at least "
                f"{PREFIX}MIN_VERIFY_SPEECH_SECONDS"
            )
        for name in (
            "stream_max_participants",
            "stream_max_calls",
            "webhook_max_attempts",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{PREFIX}{name.upper()} must be at least 1")
        if self.stream_max_message_bytes < 4096:
            raise ConfigError(f"{PREFIX}STREAM_MAX_MESSAGE_BYTES must be at least 4096")
        if self.stream_max_sockets_per_key < 0:
            raise ConfigError(
                f"{PREFIX}STREAM_MAX_SOCKETS_PER_KEY must not be negative (0: no limit)"
            )
        if self.upload_timeout_seconds <= 0:
            raise ConfigError(f"{PREFIX}UPLOAD_TIMEOUT_SECONDS must be positive")
        for name in ("stream_retention_seconds", "webhook_drain_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{PREFIX}{name.upper()} must not be negative")
        for url in self.webhook_url_list:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(
                    f"{PREFIX}WEBHOOK_URLS: {url!r} is not an http:// or https:// URL"
                )
        if self.webhook_url_list and not self.webhook_secret:
            raise ConfigError(
                f"{PREFIX}WEBHOOK_SECRET is required with {PREFIX}WEBHOOK_URLS: receivers "
                "check each event's X-Biometrics-Signature with it"
            )

    def _validate_precision(self) -> None:
        # Imported here: the names live beside the code that applies them, and importing
        # the embedding package (torch, SpeechBrain) only pays when settings are checked.
        from biometrics.embedding.precision import PRECISIONS

        if self.inference_precision not in PRECISIONS:
            raise ConfigError(
                f"{PREFIX}INFERENCE_PRECISION must be one of {', '.join(PRECISIONS)}, "
                f"got {self.inference_precision!r}"
            )

    def _validate_encryption(self) -> None:
        if self.encryption_key is not None and self.encryption_key_file is not None:
            raise ConfigError(
                f"set {PREFIX}ENCRYPTION_KEY or {PREFIX}ENCRYPTION_KEY_FILE, not both"
            )

    def _validate_redis(self) -> None:
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ConfigError(
                f"{PREFIX}REDIS_URL must be a redis://, rediss:// or unix:// URL such as "
                "redis://127.0.0.1:6379/0"
            )
        if not 1.0 <= self.redis_lease_seconds <= 60.0:
            raise ConfigError(
                f"{PREFIX}REDIS_LEASE_SECONDS must be between 1 and 60 (renewed three times "
                "per lease; a dead replica's calls wait this long for a new one)"
            )
        if self.redis_events_ttl_seconds < 60:
            raise ConfigError(f"{PREFIX}REDIS_EVENTS_TTL_SECONDS must be at least 60")

    @property
    def encryption_old_key_list(self) -> list[str]:
        return [key.strip() for key in self.encryption_old_keys.split(",") if key.strip()]

    @property
    def webhook_url_list(self) -> list[str]:
        return [url.strip() for url in self.webhook_urls.split(",") if url.strip()]


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(variable: str, raw: str, kind: object) -> object:
    kind_name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    kind_name = kind_name.removesuffix(" | None")
    try:
        if kind_name == "bool":
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise ValueError
        if kind_name == "int":
            return int(raw)
        if kind_name == "float":
            return float(raw)
        if kind_name == "Path":
            return Path(raw).expanduser()
    except ValueError:
        raise ConfigError(f"{variable}={raw!r} is not a valid {kind_name}") from None
    return raw
