"""The netns fixture's prerequisite check: skip with a reason locally, fail under CI."""

from __future__ import annotations

import pytest

from tests import netns


@pytest.mark.parametrize(("euid", "ip", "reason"), [
    (1000, "/usr/sbin/ip", "needs root"),
    (0, None, "iproute2's `ip` is missing"),
])
def test_missing_prerequisite_skips_locally_and_fails_under_ci(
        monkeypatch: pytest.MonkeyPatch, euid: int, ip: str | None, reason: str) -> None:
    monkeypatch.setattr(netns.sys, "platform", "linux")
    monkeypatch.setattr(netns.os, "geteuid", lambda: euid)
    monkeypatch.setattr(netns.shutil, "which", lambda _name: ip)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=reason):
        netns.require_netns()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=reason):
        netns.require_netns()


def test_root_with_ip_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns.sys, "platform", "linux")
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns.shutil, "which", lambda _name: "/usr/sbin/ip")
    monkeypatch.setenv("CI", "true")
    netns.require_netns()  # returns: nothing to skip or fail


def test_clients_may_only_target_the_host_end() -> None:
    ns = netns.VethNamespace(name="n", host_if="h", ns_if="p", host_v4="10.231.0.1",
                             ns_v4="10.231.0.2", host_v6="fd00:1::1", ns_v6="fd00:1::2")
    ns.check_target(ns.url(11434) + "/api/tags")
    ns.check_target(ns.url(11434, v6=True) + "/")
    for bad in ("http://192.168.1.5:11434/", "http://10.231.0.2:1/", "http://[::1]:1/"):
        with pytest.raises(AssertionError, match="not the host end"):
            ns.check_target(bad)
