"""The systemd unit under a real systemd: Debian booted as PID 1 with `systemd-nspawn -b`.

`make test-service` (root, debootstrap, systemd-nspawn). The checkout, its `.venv-service`
(made with /usr/bin/python3, the same Debian python the container has at the same path) and the
built runner are bound in read-only at their host paths; the rootfs is cached and booted with
`--volatile=overlay`, so every run starts from the same clean system. The container shares the
host's network namespace: the service's loopback port is the host's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ollamapy import default_model
from ollamapy.runner.process import free_port
from tests.service import rootfs

pytestmark = [
    pytest.mark.skipif(os.environ.get("OLLAMAPY_TEST_SERVICE") != "1",
                       reason="boots systemd in a container (root, debootstrap, systemd-nspawn):"
                              " run `make test-service`"),
    pytest.mark.timeout(900),
]

CHECKOUT = Path(__file__).resolve().parents[2]
VENV = CHECKOUT / ".venv-service"
SYSTEM_PYTHON = "/usr/bin/python3"
HOST_CACHE = "/var/cache/ollamapy-host"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RESTART_SEC = 3
TIMINGS: dict[str, float] = {}


def ensure_venv() -> Path:
    """`.venv-service`: Debian's python3 + `pip install -e .`, rebuilt when pyproject changes."""
    want = hashlib.sha256((CHECKOUT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = VENV / ".ollamapy-stamp"
    if stamp.exists() and stamp.read_text() == want:
        return VENV
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin/pip"), "install", "--quiet", "-e", str(CHECKOUT)],
                   check=True)
    stamp.write_text(want)
    return VENV


@dataclass
class Container:
    proc: subprocess.Popen[bytes]
    leader: int  # host pid of the container's systemd
    log: Path
    port: int

    def sh(self, script: str, *, check: bool = True, timeout: float = 120
           ) -> subprocess.CompletedProcess[str]:
        cmd = ["nsenter", "-t", str(self.leader), "-a", "env", "-i", f"PATH={PATH}",
               "HOME=/root", "LANG=C.UTF-8", "/bin/sh", "-c", script]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"in container: {script}\nrc={r.returncode}\n{r.stdout}\n"
                                 f"{r.stderr}")
        return r

    def show(self, prop: str) -> str:
        return self.sh(f"systemctl show -p {prop} --value ollamapy").stdout.strip()

    def wait_for(self, what: str, fn: object, timeout: float = 60) -> object:
        deadline = time.monotonic() + timeout
        while True:
            got = fn()  # type: ignore[operator]
            if got:
                return got
            if time.monotonic() > deadline:
                journal = self.sh("journalctl -u ollamapy --no-pager | tail -40", check=False)
                raise AssertionError(f"timed out waiting for {what}\n{journal.stdout}")
            time.sleep(0.1)


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append(int(d.name))
    return out


def _comm(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    for tool in ("systemd-nspawn", "nsenter", "debootstrap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} missing: apt-get install debootstrap systemd-container")
    if os.geteuid() != 0:
        pytest.fail("test-service needs root (systemd-nspawn)")
    if CHECKOUT.is_relative_to("/tmp"):
        # the unit's PrivateTmp=yes gives the service its own empty /tmp: a checkout there is
        # invisible to it and the unit cannot start (seen from a clone in /tmp)
        pytest.fail(f"the checkout {CHECKOUT} is under /tmp, which the unit's PrivateTmp hides "
                    "from the service: run make test-service from a checkout outside /tmp "
                    "(the README installs from /opt/ollamapy)")
    runner = (CHECKOUT / "runners" / "cpu").resolve()
    if not (runner / "bin" / "llama-server").exists():
        pytest.fail("no runners/cpu: run `make runner-test` first")
    model = default_model.model_path()
    if not model.exists():
        pytest.fail("no default model in the cache: run `make model-file` first")
    t0 = time.monotonic()
    root = rootfs.ensure()
    TIMINGS["rootfs"] = time.monotonic() - t0
    t0 = time.monotonic()
    ensure_venv()
    TIMINGS["venv"] = time.monotonic() - t0
    log = tmp_path_factory.mktemp("nspawn") / "console.log"
    name = f"ollamapy-test-{os.getpid()}"
    binds = [f"--bind-ro={CHECKOUT}", f"--bind-ro={model.parent}:{HOST_CACHE}/models"]
    if not runner.is_relative_to(CHECKOUT):
        binds.append(f"--bind-ro={runner}")
    cmd = ["systemd-nspawn", "--quiet", "-D", str(root), "-b", "--register=no", "--keep-unit",
           "--volatile=overlay", f"--machine={name}", "--console=read-only", *binds]
    t0 = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
    leader = 0
    try:
        deadline = time.monotonic() + 30
        while not leader:
            if proc.poll() is not None:
                raise AssertionError(f"nspawn exited {proc.returncode}:\n{log.read_text()}")
            leader = next((p for p in _children(proc.pid) if _comm(p) == "systemd"), 0)
            if time.monotonic() > deadline:
                raise AssertionError(f"no container init:\n{log.read_text()}")
            time.sleep(0.05)
        c = Container(proc, leader, log, free_port())
        c.wait_for("systemd's bus", lambda: c.sh("test -S /run/systemd/private",
                                                 check=False).returncode == 0, timeout=30)
        state = c.sh("systemctl is-system-running --wait", check=False, timeout=90)
        assert state.stdout.strip() in ("running", "degraded"), state.stdout + state.stderr
        TIMINGS["boot"] = time.monotonic() - t0
        yield c
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to power off
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        print("\ntest-service timings (s):",
              ", ".join(f"{k}={v:.1f}" for k, v in TIMINGS.items()))


@pytest.fixture(scope="module")
def installed(container: Container) -> Container:
    c = container
    c.sh("install -d /etc/ollamapy && printf 'OLLAMA_HOST=127.0.0.1:%d\\n' "
         f"{c.port} > /etc/ollamapy/ollamapy.env")
    t0 = time.monotonic()
    r = c.sh(f"cd {CHECKOUT} && make --no-print-directory install-service VENV={VENV} "
             f"OLLAMAPY_CACHE={HOST_CACHE}", timeout=300)
    TIMINGS["install-service"] = time.monotonic() - t0
    out = r.stdout + r.stderr
    assert "WARNING" not in out, out
    assert "service user ollamapy can run" in out, out
    assert "registered smollm2:135m" in out, out
    return c


def generate(c: Container, prompt: str = "Say hi.") -> dict[str, object]:
    r = httpx.post(f"http://127.0.0.1:{c.port}/api/generate", timeout=120, json={
        "model": "smollm2:135m", "prompt": prompt, "stream": False,
        "options": {"num_predict": 8, "num_thread": 1, "temperature": 0}})
    assert r.status_code == 200, r.text
    return r.json()


def runner_pids(c: Container) -> list[int]:
    r = c.sh("pgrep -u ollamapy -x llama-server", check=False)
    return [int(p) for p in r.stdout.split()]


def test_unit_active_and_ready(installed: Container) -> None:
    c = installed
    assert c.sh("systemctl is-active ollamapy").stdout.strip() == "active"
    assert c.show("Type") == "notify"
    assert c.show("StatusText") == "ready, no models loaded"
    assert c.sh("systemctl is-enabled ollamapy").stdout.strip() == "enabled"
    pid = c.show("MainPID")
    c.sh("systemctl reload ollamapy")  # SIGHUP: nothing to reload without TLS, still serving
    assert c.show("MainPID") == pid and c.show("ActiveState") == "active"


def test_generate_from_the_host(installed: Container) -> None:
    c = installed
    t0 = time.monotonic()
    body = generate(c)
    TIMINGS["first-generate"] = time.monotonic() - t0
    assert body["done"] is True and body["eval_count"]
    assert len(runner_pids(c)) == 1
    c.wait_for("StatusText with the loaded model",
               lambda: c.show("StatusText") == "ready, 1 loaded: smollm2:135m", timeout=30)
    metrics = httpx.get(f"http://127.0.0.1:{c.port}/metrics").text
    assert 'ollamapy_models_loaded 1.0' in metrics


def test_hardening_holds_in_the_service(installed: Container) -> None:
    c = installed
    pid = c.show("MainPID")
    enter = f"nsenter -t {pid} -m -S $(id -u ollamapy) -G $(id -g ollamapy) --"
    for path in ("/usr/probe", "/etc/probe", f"{CHECKOUT}/probe"):
        r = c.sh(f"{enter} touch {path}", check=False)
        assert r.returncode != 0 and "Read-only file system" in r.stderr, (path, r.stderr)
    c.sh(f"{enter} touch /var/lib/ollamapy/.ollama/models/probe")
    c.sh(f"{enter} rm /var/lib/ollamapy/.ollama/models/probe")
    status = c.sh(f"cat /proc/{pid}/status").stdout
    assert "NoNewPrivs:\t1" in status
    assert "CapBnd:\t0000000000000000" in status
    assert c.sh(f"stat -c %U /proc/{pid}").stdout.strip() == "ollamapy"


def test_kill_9_restarts_without_orphans(installed: Container) -> None:
    c = installed
    if not runner_pids(c):
        generate(c)
    old_main = int(c.show("MainPID"))
    old_runners = runner_pids(c)
    restarts = int(c.show("NRestarts"))
    assert old_runners
    t0 = time.monotonic()
    c.sh(f"kill -9 {old_main}")

    def restarted() -> bool:
        return (int(c.show("NRestarts")) > restarts and c.show("ActiveState") == "active"
                and int(c.show("MainPID")) not in (0, old_main))

    c.wait_for("a restart", restarted, timeout=60)
    TIMINGS["restart-after-kill-9"] = time.monotonic() - t0
    for pid in old_runners:
        assert c.sh(f"test -e /proc/{pid}", check=False).returncode != 0, f"orphan runner {pid}"
    assert runner_pids(c) == []  # the new server loads on demand
    journal = c.sh("journalctl -u ollamapy --no-pager").stdout
    assert "Main process exited, code=killed, status=9/KILL" in journal
    assert f"Scheduled restart job, restart counter is at {restarts + 1}" in journal
    assert generate(c)["done"] is True  # and it serves again


def test_watchdog_restarts_a_wedged_server(installed: Container) -> None:
    """A frozen process (SIGSTOP: no loop, no pings) is killed and restarted by the watchdog.
    A drop-in shortens WatchdogSec for the test and is removed again afterwards."""
    c = installed
    dropin = "/etc/systemd/system/ollamapy.service.d"
    c.sh(f"mkdir -p {dropin} && printf '[Service]\\nWatchdogSec=2\\nTimeoutAbortSec=1\\n' "
         f"> {dropin}/watchdog.conf && systemctl daemon-reload && systemctl restart ollamapy")
    try:
        assert c.show("WatchdogUSec") == "2s"
        main = int(c.show("MainPID"))
        restarts = int(c.show("NRestarts"))
        # The server pings: systemd's record of the last WATCHDOG=1 moves.
        first = c.show("WatchdogTimestampMonotonic")
        c.wait_for("a watchdog ping", lambda: c.show("WatchdogTimestampMonotonic") != first)
        assert int(c.show("MainPID")) == main
        c.sh(f"kill -STOP {main}")
        c.wait_for("a watchdog restart", lambda: int(c.show("NRestarts")) > restarts
                   and c.show("ActiveState") == "active", timeout=60)
        journal = c.sh("journalctl -u ollamapy --no-pager").stdout
        assert "Watchdog timeout" in journal
    finally:
        c.sh(f"rm -rf {dropin} && systemctl daemon-reload && systemctl restart ollamapy")
    assert c.show("WatchdogUSec") == "1min"


def test_journal_has_the_logs(installed: Container) -> None:
    journal = installed.sh("journalctl -u ollamapy --no-pager -o cat").stdout
    assert "Listening on 127.0.0.1:" in journal
    assert "llama runner started" in journal
    assert "source=ollamapy.access" in journal and "path=/api/generate" in journal


def test_stop_leaves_no_process(installed: Container) -> None:
    c = installed
    if not runner_pids(c):
        generate(c)
    t0 = time.monotonic()
    c.sh("systemctl stop ollamapy", timeout=60)
    TIMINGS["stop"] = time.monotonic() - t0
    assert c.show("ActiveState") == "inactive"
    assert c.show("MainPID") == "0"
    assert c.sh("pgrep -u ollamapy", check=False).stdout.strip() == ""
    assert c.show("Result") == "success"  # a clean stop is not a failure
    journal = c.sh("journalctl -u ollamapy --no-pager -o cat").stdout
    assert "server stopped" in journal


def test_service_check_notices_a_runner_the_user_cannot_run(installed: Container) -> None:
    """The issue's two cases, with the runner directory masked by a tmpfs (after the stop)."""
    c = installed
    runner = (CHECKOUT / "runners" / "cpu").resolve()
    check = f"cd {CHECKOUT} && make --no-print-directory service-check VENV={VENV}"
    c.sh(f"mount -t tmpfs -o mode=0700 tmpfs {runner}")  # root's 0700 runners/cpu (mkdtemp)
    try:
        out = c.sh(check).stdout
        assert "WARNING: user ollamapy finds no llama-server runner" in out, out
    finally:
        c.sh(f"umount {runner}")
    # Visible and executable, but it cannot start (e.g. a shared library it needs is missing).
    c.sh(f"mount -t tmpfs -o mode=0755 tmpfs {runner} && mkdir -m 0755 {runner}/bin && "
         f"printf '#!/nonexistent/interpreter\\n' > {runner}/bin/llama-server && "
         f"echo '{{\"variant\": \"cpu\"}}' > {runner}/manifest.json && "
         f"chmod 0755 {runner}/bin/llama-server {runner}/manifest.json")
    try:
        out = c.sh(check).stdout
        assert f"WARNING: user ollamapy cannot run {CHECKOUT}/runners/cpu/bin/llama-server" in out
    finally:
        c.sh(f"umount {runner}")
    assert "can run" in c.sh(check).stdout  # and the real one passes again
