from pathlib import Path

import pytest

from biometrics.config import Settings
from biometrics.errors import ConfigError


def test_defaults_need_no_environment():
    settings = Settings.from_env({})
    assert settings.database_url.startswith("sqlite:///")
    assert settings.model_source == "bundled"
    assert settings.min_enroll_speech_seconds == 20.0
    assert settings.min_verify_speech_seconds == 3.0
    assert (settings.speaker_expiry_days, settings.sweep_interval_seconds) == (1095, 3600)
    assert (settings.verdict_retention_days, settings.audit_retention_days) == (365, 2555)
    assert settings.webhook_drain_seconds == 10.0
    batching = (settings.inference_max_batch, settings.inference_max_wait_ms)
    assert batching == (8, 5.0) and settings.inference_queue_max == 300.0
    assert settings.live_embedding == "incremental"


def test_environment_overrides_each_setting():
    settings = Settings.from_env(
        {
            "BIOMETRICS_DATABASE_URL": "postgresql+psycopg://u:p@db/biometrics",
            "BIOMETRICS_MODEL_SOURCE": "/models/ecapa",
            "BIOMETRICS_MODEL_CACHE_DIR": "~/models",
            "BIOMETRICS_THRESHOLD": "42.5",
            "BIOMETRICS_MIN_ENROLL_SPEECH_SECONDS": "30",
            "BIOMETRICS_MIN_VERIFY_SPEECH_SECONDS": "4",
            "BIOMETRICS_MAX_UPLOAD_BYTES": "1048576",
            "BIOMETRICS_AUTO_MIGRATE": "false",
            "BIOMETRICS_INFERENCE_MAX_BATCH": "16",
            "BIOMETRICS_INFERENCE_QUEUE_MAX": "60",
            "BIOMETRICS_LIVE_EMBEDDING": "window",
        }
    )
    assert (settings.inference_max_batch, settings.inference_queue_max) == (16, 60.0)
    assert settings.database_url == "postgresql+psycopg://u:p@db/biometrics"
    assert settings.model_source == "/models/ecapa"
    assert settings.model_cache_dir == Path("~/models").expanduser()
    assert settings.threshold == 42.5
    assert settings.min_enroll_speech_seconds == 30.0
    assert settings.min_verify_speech_seconds == 4.0
    assert settings.max_upload_bytes == 1048576
    assert settings.auto_migrate is False
    assert settings.live_embedding == "window"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BIOMETRICS_THRESHOLD", "high", "BIOMETRICS_THRESHOLD='high' is not a valid float"),
        ("BIOMETRICS_THRESHOLD", "150", "between 0 and 100"),
        ("BIOMETRICS_MIN_VERIFY_SPEECH_SECONDS", "0", "must be positive"),
        ("BIOMETRICS_AUTO_MIGRATE", "maybe", "not a valid bool"),
        ("BIOMETRICS_DATABASE_URL", "biometrics.db", "SQLAlchemy URL"),
        ("BIOMETRICS_LOG_FORMAT", "xml", "json, console or auto"),
        ("BIOMETRICS_STREAM_MAX_SOCKETS_PER_KEY", "-1", "must not be negative"),
        ("BIOMETRICS_UPLOAD_TIMEOUT_SECONDS", "0", "must be positive"),
        ("BIOMETRICS_SPEAKER_EXPIRY_DAYS", "-1", "EXPIRY_DAYS must not be negative"),
        ("BIOMETRICS_AUDIT_RETENTION_DAYS", "-7", "RETENTION_DAYS must not be negative"),
        ("BIOMETRICS_SWEEP_INTERVAL_SECONDS", "1.5", "not a valid int"),
        ("BIOMETRICS_WEBHOOK_DRAIN_SECONDS", "-1", "DRAIN_SECONDS must not be negative"),
        ("BIOMETRICS_INFERENCE_MAX_BATCH", "0", "MAX_BATCH must be between 1 and 256"),
        ("BIOMETRICS_INFERENCE_MAX_WAIT_MS", "-5", "MAX_WAIT_MS must be between 0 and 1000"),
        ("BIOMETRICS_INFERENCE_QUEUE_MAX", "2", "QUEUE_MAX must be at least 10"),
        ("BIOMETRICS_LIVE_EMBEDDING", "chunks", "LIVE_EMBEDDING must be one of window, incr"),
    ],
)
def test_invalid_values_name_the_variable(variable, value, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({variable: value})


def test_encryption_keys_are_read_and_never_shown():
    settings = Settings.from_env(
        {
            "BIOMETRICS_ENCRYPTION_KEY_FILE": "~/voiceprints.key",
            "BIOMETRICS_ENCRYPTION_OLD_KEYS": " b2xkLWtleS0x , b2xkLWtleS0y ,",
        }
    )
    assert settings.encryption_key_file == Path("~/voiceprints.key").expanduser()
    assert settings.encryption_old_key_list == ["b2xkLWtleS0x", "b2xkLWtleS0y"]
    assert "b2xkLWtleS0x" not in repr(settings)
    shown = repr(Settings.from_env({"BIOMETRICS_ENCRYPTION_KEY": "c2VjcmV0"}))
    assert "c2VjcmV0" not in shown


def test_a_key_and_a_key_file_are_not_both_set():
    with pytest.raises(ConfigError, match="ENCRYPTION_KEY or BIOMETRICS_ENCRYPTION_KEY_FILE"):
        Settings.from_env(
            {"BIOMETRICS_ENCRYPTION_KEY": "a2V5", "BIOMETRICS_ENCRYPTION_KEY_FILE": "/k"}
        )


def test_memory_trim_is_on_by_default_and_can_be_turned_off():
    assert Settings.from_env({}).memory_trim is True
    assert Settings.from_env({"BIOMETRICS_MEMORY_TRIM": "false"}).memory_trim is False


def test_redis_settings_are_checked():
    assert Settings.from_env({}).redis_url is None  # one process, nothing shared
    settings = Settings.from_env(
        {
            "BIOMETRICS_REDIS_URL": "redis://:hunter2@cache:6379/2",
            "BIOMETRICS_REDIS_LEASE_SECONDS": "3",
        }
    )
    assert (settings.redis_url, settings.redis_lease_seconds) == (
        "redis://:hunter2@cache:6379/2",
        3.0,
    )
    assert "hunter2" not in repr(settings)  # a URL may hold the server's password
    for variable, value in (
        ("BIOMETRICS_REDIS_URL", "http://cache:6379"),
        ("BIOMETRICS_REDIS_LEASE_SECONDS", "0.5"),
        ("BIOMETRICS_REDIS_EVENTS_TTL_SECONDS", "10"),
    ):
        with pytest.raises(ConfigError, match=variable):
            Settings.from_env({variable: value})
