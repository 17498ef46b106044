"""packaging/ollamapy.service: the settings the issue asks for, and `systemd-analyze verify` on the
unit as `make install-service` stages it (where that tool exists)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "packaging" / "ollamapy.service"


def parse(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd unit -> {section: {key: [values...]}} (keys repeat, so values are lists)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        out[section].setdefault(key, []).append(value)
    return out


def test_unit_settings() -> None:
    u = parse(UNIT)
    svc = u["Service"]
    assert svc["ExecStart"] == ["/opt/ollamapy/.venv/bin/ollamapy serve"]
    assert svc["User"] == ["ollamapy"] and svc["Restart"] == ["always"]
    assert svc["Type"] == ["notify"] and svc["NotifyAccess"] == ["main"]
    assert int(svc["WatchdogSec"][0]) >= 30  # generous: pings come every WatchdogSec/2
    env = dict(e.split("=", 1) for e in svc["Environment"])
    assert env["OLLAMA_HOST"] == "127.0.0.1:11434"
    assert env["OLLAMA_MODELS"].startswith(env["HOME"])  # store under the service user's home
    assert svc["StateDirectory"] == ["ollamapy"]
    assert svc["ReadWritePaths"] == [env["HOME"]] and env["HOME"] == "/var/lib/ollamapy"
    assert svc["ProtectSystem"] == ["strict"] and svc["NoNewPrivileges"] == ["yes"]
    assert "PrivateDevices" not in svc  # GPUs must stay reachable
    assert svc["KillSignal"] == ["SIGTERM"] and int(svc["TimeoutStopSec"][0]) >= 15
    assert svc["EnvironmentFile"] == ["-/etc/ollamapy/ollamapy.env"]
    assert u["Install"]["WantedBy"] == ["multi-user.target"]


def test_env_template_is_all_comments() -> None:
    # Installed once and kept: nothing in it may be active by default.
    lines = (REPO / "packaging" / "ollamapy.env").read_text().splitlines()
    assert all(not ln.strip() or ln.startswith("#") for ln in lines)
    cp = configparser.ConfigParser()
    cp.read_string("[x]\n" + "\n".join(ln.lstrip("#") for ln in lines if "=" in ln))
    assert cp["x"]["OLLAMA_HOST"] == "0.0.0.0:11434"


def staged_unit(tmp_path: Path) -> Path:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    r = subprocess.run(["make", "-s", "install-service", f"DESTDIR={tmp_path}"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    if "run 'make venv runner' first" in r.stdout + r.stderr:
        pytest.skip("no venv in this checkout")
    assert r.returncode == 0, r.stdout + r.stderr
    unit = tmp_path / "etc/systemd/system/ollamapy.service"
    assert (tmp_path / "etc/ollamapy/ollamapy.env").exists()
    return unit


def test_make_install_service_stages_the_unit(tmp_path: Path) -> None:
    unit = staged_unit(tmp_path)
    exec_start = parse(unit)["Service"]["ExecStart"][0].split()[0]
    assert exec_start == str(REPO / ".venv" / "bin" / "ollamapy")
    assert Path(exec_start).exists()
    # An existing env file is kept on reinstall.
    env = tmp_path / "etc/ollamapy/ollamapy.env"
    env.write_text("OLLAMA_HOST=0.0.0.0:1\n")
    staged_unit(tmp_path)
    assert env.read_text() == "OLLAMA_HOST=0.0.0.0:1\n"


def verify(unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (apt-get install systemd)")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = staged_unit(tmp_path)
    r = verify(unit)
    # verify only warns (exit 0) on unparsable values, so any line about our unit is a failure.
    assert r.returncode == 0 and "ollamapy.service" not in r.stdout + r.stderr, r.stderr
    # ... and the check is real: a broken copy is reported.
    bad = tmp_path / "bad" / "ollamapy.service"
    bad.parent.mkdir()
    bad.write_text(unit.read_text().replace("Restart=always", "Restart=sometimes"))
    r = verify(bad)
    assert "restart" in (r.stdout + r.stderr).lower()
