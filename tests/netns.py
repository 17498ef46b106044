"""A network namespace joined to this machine by a veth pair, for tests of remote access.

Remote clients run inside the namespace (`ip netns exec`) and reach a server on the host end of
the pair, so their traffic crosses a real link without ever touching this machine's own network
addresses. Every name and subnet is unique per use (parallel runs don't clash), every `ip` call
is bounded, and the namespace and both veth ends are always removed afterwards."""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IP_TIMEOUT = 10  # seconds for one `ip` command
V4_POOL = ipaddress.IPv4Network("10.231.0.0/16")  # /30s are drawn from here
_LOCK = Path(tempfile.gettempdir()) / "ollamapy-netns.lock"


def require_netns() -> None:
    """Skip (fail under CI, where `.ci/run` provides both) without root or iproute2's `ip`."""
    why = None
    if not sys.platform.startswith("linux"):
        why = "network namespaces are Linux-only"
    elif os.geteuid() != 0:
        why = "creating a network namespace and a veth pair needs root"
    elif shutil.which("ip") is None:
        why = "iproute2's `ip` is missing (apt-get install iproute2)"
    if why is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"remote-access tests cannot run: {why}")
    pytest.skip(f"remote-access tests need a network namespace: {why}")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def _routed_networks(family: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Networks this machine already routes (default routes aside), to draw a free subnet."""
    out = json.loads(_ip("-j", family, "route", "show", "table", "all").stdout or "[]")
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for route in out:
        dst = route.get("dst", "default")
        if dst == "default":
            continue
        with suppress(ValueError):
            nets.append(ipaddress.ip_network(dst, strict=False))
    return nets


def _free_v4_subnet() -> ipaddress.IPv4Network:
    used = _routed_networks("-4")
    subnets: list[ipaddress.IPv4Network] = list(V4_POOL.subnets(new_prefix=30))
    for _ in range(64):
        net = subnets[secrets.randbelow(len(subnets))]
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError(f"no free /30 in {V4_POOL} for the test namespace")


def _free_v6_subnet() -> ipaddress.IPv6Network:
    """A random ULA /64 (fd00::/8, RFC 4193) that no route already covers."""
    used = _routed_networks("-6")
    for _ in range(64):
        net = ipaddress.IPv6Network(((0xFD << 120) | (secrets.randbits(56) << 64), 64))
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free ULA /64 for the test namespace")


@dataclass
class VethNamespace:
    """The namespace `name`; `host_v4`/`host_v6` are the host end of the pair (where a server
    bound to all interfaces answers), `ns_v4`/`ns_v6` the namespace end. `host_v6` is None when
    IPv6 is disabled here."""

    name: str
    host_if: str
    ns_if: str
    host_v4: str = ""
    ns_v4: str = ""
    host_v6: str | None = None
    ns_v6: str | None = None
    ipv6_error: str = field(default="", repr=False)

    def argv(self, argv: list[str]) -> list[str]:
        """`argv` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        e = dict(os.environ)
        e["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), e.get("PYTHONPATH")) if p)
        e.update(extra or {})
        return e

    def run(self, argv: list[str], env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(argv), env=env if env is not None else self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def call(self, func: str, *args: object, timeout: float = 120) -> object:
        """`module:function(*args)` run by this venv's python inside the namespace; returns what
        it returned (JSON round-trip). Client code lives in `tests/netns_client.py`."""
        code = ("import importlib, json, sys\n"
                "mod, _, fn = sys.argv[1].partition(':')\n"
                "out = getattr(importlib.import_module(mod), fn)(*json.loads(sys.argv[2]))\n"
                "print('\\n' + json.dumps(out))\n")
        r = self.run([sys.executable, "-c", code, func, json.dumps(list(args))], timeout=timeout)
        if r.returncode != 0:
            raise AssertionError(f"{func} in netns {self.name} exited {r.returncode}:\n"
                                 f"{r.stdout}\n{r.stderr}")
        return json.loads(r.stdout.rstrip("\n").rsplit("\n", 1)[-1])

    def url(self, port: int, *, v6: bool = False) -> str:
        """The base URL of a server on the host end, as a client in the namespace sees it."""
        return f"http://[{self.host_v6}]:{port}" if v6 else f"http://{self.host_v4}:{port}"

    def http(self, *requests: tuple[str, str, dict[str, str]]) -> list[Response]:
        """(method, url, headers) requests sent from inside the namespace, in order."""
        for _method, url, _headers in requests:
            self.check_target(url)
        out = self.call("tests.netns_client:http", [list(r) for r in requests])
        assert isinstance(out, list)
        return [Response(**r) for r in out]

    def check_target(self, url: str) -> None:
        """Clients in the namespace may only talk to the host end of this pair."""
        allowed = {self.host_v4, f"[{self.host_v6}]"}
        host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
        assert host in allowed, f"{url} is not the host end of netns {self.name}"


@dataclass
class Response:
    status: int
    text: str
    headers: dict[str, str]


def _kill_leftovers(name: str) -> None:
    """Processes still inside our namespace are our clients (a timed-out run): end them."""
    r = _ip("netns", "pids", name, check=False)
    for pid in r.stdout.split():
        with suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _teardown(ns: VethNamespace) -> None:
    if Path("/run/netns", ns.name).exists():
        _kill_leftovers(ns.name)
    _ip("link", "del", ns.host_if, check=False)  # removes the peer too, wherever it is
    _ip("netns", "del", ns.name, check=False)


def _setup(ns: VethNamespace) -> None:
    _ip("netns", "add", ns.name)
    _ip("link", "add", ns.host_if, "type", "veth", "peer", "name", ns.ns_if)
    _ip("link", "set", ns.ns_if, "netns", ns.name)
    net4 = _free_v4_subnet()
    a, b = (str(h) for h in net4.hosts())
    ns.host_v4, ns.ns_v4 = a, b
    _ip("addr", "add", f"{a}/30", "dev", ns.host_if)
    _ip("-n", ns.name, "addr", "add", f"{b}/30", "dev", ns.ns_if)
    # nodad: no duplicate-address wait (nobody else is on this link), usable at once.
    net6 = _free_v6_subnet()
    h6, n6 = str(net6[1]), str(net6[2])
    r1 = _ip("-6", "addr", "add", f"{h6}/64", "dev", ns.host_if, "nodad", check=False)
    r2 = _ip("-n", ns.name, "-6", "addr", "add", f"{n6}/64", "dev", ns.ns_if, "nodad",
             check=False)
    if r1.returncode == 0 and r2.returncode == 0:
        ns.host_v6, ns.ns_v6 = h6, n6
    else:
        ns.ipv6_error = (r1.stderr + r2.stderr).strip()
    _ip("link", "set", ns.host_if, "up")
    _ip("-n", ns.name, "link", "set", ns.ns_if, "up")
    _ip("-n", ns.name, "link", "set", "lo", "up")


def _flock(fd: int, wait: float = 60) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{_LOCK} stayed locked for {wait:.0f} s") from None
            time.sleep(0.05)


@contextmanager
def veth_namespace() -> Iterator[VethNamespace]:
    require_netns()
    tag = secrets.token_hex(4)
    ns = VethNamespace(name=f"ollamapy-test-{tag}", host_if=f"opy{tag}h", ns_if=f"opy{tag}n")
    try:
        with _LOCK.open("a") as lock:  # subnet choice + assignment, one run at a time
            _flock(lock.fileno())
            _setup(ns)
        yield ns
    finally:
        _teardown(ns)


@pytest.fixture(scope="session")
def netns() -> Iterator[VethNamespace]:
    """One namespace + veth pair for the session (servers bind fresh ports per test)."""
    with veth_namespace() as ns:
        yield ns
