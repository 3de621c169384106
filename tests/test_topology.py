"""The replica topology's files and refusals, without starting it (the end-to-end test,
tests/test_cluster_end_to_end.py, starts it): deploy/haproxy.cfg is the launcher's own
configuration for compose's replicas, HAProxy accepts it, compose runs what the README
says, and the launcher refuses what cannot work with a message that says what to do."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from biometrics.cli import main
from biometrics.topology import ClusterError, Server, haproxy_config, running

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def replicas() -> list[str]:
    return sorted(name for name in compose()["services"] if name.startswith("replica"))


def test_deploy_haproxy_cfg_is_the_launchers_configuration_for_composes_replicas():
    servers = [Server(name, f"{name}:8000") for name in replicas()]
    assert len(servers) == 3
    assert (DEPLOY / "haproxy.cfg").read_text() == haproxy_config(8000, servers, bind="*")


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_accepts_the_deploy_configuration():
    checked = subprocess.run(
        ["haproxy", "-c", "-q", "-f", str(DEPLOY / "haproxy.cfg")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_compose_runs_replicas_on_postgres_and_redis_behind_haproxy_with_health_checks():
    services = compose()["services"]
    for name in replicas():
        replica = services[name]
        environment = replica["environment"]
        assert environment["BIOMETRICS_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert environment["BIOMETRICS_DATABASE_URL"].endswith("@postgres:5432/biometrics")
        assert environment["BIOMETRICS_REDIS_URL"] == "redis://redis:6379/0"
        assert "/readyz" in " ".join(replica["healthcheck"]["test"])
        assert any(volume.endswith(":/models:ro") for volume in replica["volumes"])
        assert environment["BIOMETRICS_MODEL_SOURCE"].endswith("/models/spkrec-ecapa-voxceleb}")
        assert replica["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"]
    balancer = services["haproxy"]
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in balancer["volumes"]
    assert set(balancer["depends_on"]) == set(replicas())


def test_the_balancer_checks_readiness_names_the_replica_and_keeps_sockets_open():
    config = haproxy_config(8000, [Server("replica1", "127.0.0.1:9001")])
    assert "option httpchk GET /readyz" in config
    assert "balance leastconn" in config
    assert "http-response set-header X-Biometrics-Replica %s" in config
    assert "timeout tunnel 2h" in config
    assert "server replica1 127.0.0.1:9001 check" in config


def test_cluster_refuses_several_replicas_on_sqlite(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("BIOMETRICS_DATABASE_URL", f"sqlite:///{tmp_path / 'one.db'}")
    assert main(["cluster", "--replicas", "2", "--folder", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert "2 replicas share one PostgreSQL database" in error
    assert "BIOMETRICS_DATABASE_URL=postgresql+psycopg://" in error


def test_the_launcher_names_the_missing_binaries(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with (
        pytest.raises(ClusterError, match="redis-server and haproxy not found on PATH"),
        running(tmp_path, "postgresql+psycopg://unused/unused", 1, "bundled"),
    ):
        pass
