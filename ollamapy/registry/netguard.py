"""Where pull and push may connect (issue 11: no SSRF through registry redirects).

A registry may redirect blob downloads anywhere (a CDN), so a hostile registry could point us at
loopback, the LAN or a cloud metadata service and get the answer stored as a layer. The rule:
link-local (169.254/16, fe80::/10: metadata services) is always refused; loopback, private,
CGNAT, unique-local and unspecified addresses are refused unless the registry the user named is
itself on such an address (`localhost:5000`, `10.0.0.5`, a LAN hostname). Names are checked twice:
literal hosts before each request, and DNS answers at connect time by `GuardedResolver`, so a
public name that resolves to 127.0.0.1 is refused too. Errors never name the remote target.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Literal

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from ollamapy.errors import OllamaError

Kind = Literal["link-local", "internal", "public"]

_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class BlockedAddress(OllamaError):
    """A registry connection would reach an address the policy refuses."""

    status = 403

    def __init__(self, kind: Kind) -> None:
        article = "an" if kind == "internal" else "a"
        super().__init__(f"refusing to connect to {article} {kind} address (registry redirect "
                         "or DNS answer outside the registry's network)")


def address_kind(ip: str) -> Kind:
    """Classify one IP address (IPv4-mapped IPv6 counts as its IPv4 address)."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_link_local:
        return "link-local"
    if (addr.is_loopback or addr.is_private or addr.is_unspecified or addr.is_reserved
            or addr.is_multicast or (isinstance(addr, ipaddress.IPv4Address) and addr in _CGNAT)
            or not addr.is_global):
        return "internal"
    return "public"


def host_kind(host: str) -> Kind | None:
    """The kind of a URL host known without DNS (an IP literal or localhost), else None."""
    h = host.strip("[]").lower().rstrip(".")
    if h == "localhost" or h.endswith(".localhost"):
        return "internal"
    try:
        return address_kind(h)
    except ValueError:
        return None


def allowed(kind: Kind, allow_internal: bool) -> bool:
    return kind == "public" or (kind == "internal" and allow_internal)


def check_host(host: str, allow_internal: bool) -> None:
    """Refuse a literal host the policy forbids (names are checked at connect time)."""
    kind = host_kind(host)
    if kind is not None and not allowed(kind, allow_internal):
        raise BlockedAddress(kind)


async def registry_is_internal(host: str) -> bool:
    """Whether the registry the user named lives on an internal address (then internal
    redirects are its own business). A name counts when every DNS answer is internal."""
    kind = host_kind(host)
    if kind is not None:
        return kind != "public"
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None,
                                                             type=socket.SOCK_STREAM)
    except OSError:
        return False
    kinds = {address_kind(str(i[4][0])) for i in infos}
    return bool(kinds) and "public" not in kinds


class GuardedResolver(AbstractResolver):
    """DNS answers filtered by the policy at connect time (no check-then-connect gap: aiohttp
    connects only to what the resolver returns)."""

    def __init__(self, allow_internal: bool, inner: AbstractResolver | None = None,
                 exempt: frozenset[str] = frozenset()) -> None:
        self.allow_internal = allow_internal
        self.inner = inner or DefaultResolver()
        self.exempt = exempt  # the configured HTTP(S) proxy hosts: the user's own choice

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        if host.lower() in self.exempt:
            return results
        kept = [r for r in results if allowed(address_kind(r["host"]), self.allow_internal)]
        if not kept:
            kinds = {address_kind(r["host"]) for r in results}
            raise BlockedAddress("link-local" if "link-local" in kinds else "internal")
        return kept

    async def close(self) -> None:
        await self.inner.close()


def proxy_hosts() -> frozenset[str]:
    """Host names of the proxies in the environment (a proxy on the LAN stays reachable)."""
    import urllib.parse
    import urllib.request

    out = set()
    for url in urllib.request.getproxies_environment().values():
        host = urllib.parse.urlsplit(url if "://" in url else f"http://{url}").hostname
        if host:
            out.add(host.lower())
    return frozenset(out)
