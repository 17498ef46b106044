"""One conversation with one registry: auth retries and the redirect policy.

Mirrors Ollama's makeRequestWithRetry: a 401 carrying a Bearer challenge gets one signed token
request (realm on the registry's own origin only) and one retry; 404 -> "file does not exist";
other >= 400 -> `<code>: <body>`. Redirects are followed by hand so the token is attached only to
requests that go to the registry's own origin, never to a CDN or any other host.
"""

from __future__ import annotations

import json
import platform
import re
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import aiohttp
from yarl import URL

from ollamapy import __version__
from ollamapy.config import is_loopback_host
from ollamapy.errors import OllamaError
from ollamapy.registry import auth, netguard
from ollamapy.registry.names import Target, origin, resolve

REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10
MAX_ERROR_BODY = 64 * 1024
USER_AGENT = (f"ollama/{__version__} ({platform.machine().lower()} {sys.platform}) "
              f"Python/{platform.python_version()} ollamapy/{__version__}")


def proxy_for(url: str) -> str | None:
    """HTTPS_PROXY / HTTP_PROXY / NO_PROXY like Go's ProxyFromEnvironment (which Ollama's pull
    uses): loopback is never proxied. Done by hand because aiohttp's trust_env would also send
    ~/.netrc credentials to whatever host a model name points at."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host or is_loopback_host(host):
        return None
    proxy = urllib.request.getproxies_environment().get(parts.scheme)
    # proxy_bypass_environment is public in CPython but missing from typeshed's stubs
    if not proxy or urllib.request.proxy_bypass_environment(host):  # type: ignore[attr-defined]
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


class RegistryError(OllamaError):
    """The registry answered with an error status (`status_code` is the registry's)."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class RegistryNotFound(RegistryError):
    def __init__(self) -> None:
        super().__init__("file does not exist", 404)


class Unauthorized(RegistryError):
    def __init__(self) -> None:
        super().__init__("unauthorized: access denied", 401)


Signer = Callable[[bytes], str]
Body = Callable[[], Any] | None  # a factory, so a body can be sent again after a 401


async def read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    data = await resp.content.read(cap + 1)
    if len(data) > cap:
        resp.close()
        raise OllamaError("registry response too large")
    return data


_ERROR_CODE = re.compile(r"[A-Z][A-Z_]{0,63}")


def status_text(status: int, body: bytes) -> str:
    """`<code>: <reason>` without echoing what the remote sent (it may be any internal HTTP
    answer): only the standard reason phrase and docker-registry error codes (`[A-Z_]+`)."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "error"
    codes: list[str] = []
    try:
        errors = json.loads(body).get("errors")
        for e in errors if isinstance(errors, list) else []:
            code = e.get("code") if isinstance(e, dict) else None
            if isinstance(code, str) and _ERROR_CODE.fullmatch(code) and code not in codes:
                codes.append(code)
    except (ValueError, AttributeError, RecursionError):
        pass
    return f"{status}: {reason}" + (f" ({', '.join(codes[:4])})" if codes else "")


async def _error_body(resp: aiohttp.ClientResponse) -> bytes:
    """At most MAX_ERROR_BODY bytes of an error response (nothing if reading it fails)."""
    try:
        return await resp.content.read(MAX_ERROR_BODY)
    except (aiohttp.ClientError, TimeoutError):
        return b""
    finally:
        resp.release()


async def error_body_text(resp: aiohttp.ClientResponse) -> str:
    """`<code>: <body>` (Ollama's wording) for an error from the registry the user named."""
    body = await _error_body(resp)
    return f"{resp.status}: {body.decode(errors='replace').strip()}"


async def error_text(resp: aiohttp.ClientResponse) -> str:
    return status_text(resp.status, await _error_body(resp))


class RegistrySession:
    def __init__(self, http: aiohttp.ClientSession, target: Target, signer: Signer | None,
                 insecure: bool = False,
                 http_internal: aiohttp.ClientSession | None = None) -> None:
        self.http = http
        self.http_internal = http_internal  # its resolver admits internal answers
        self.target = target
        self.signer = signer
        self.insecure = insecure
        self.token: str | None = None
        self._origin = origin(target.base)
        self._internal: bool | None = None

    async def allow_internal(self) -> bool:
        """Decided once per session from the registry the user named (see netguard)."""
        if self._internal is None:
            self._internal = await netguard.registry_is_internal(URL(self.target.base).host or "")
            if self._internal and self.http_internal is not None:
                self.http = self.http_internal
        return self._internal

    def is_registry(self, url: str) -> bool:
        return origin(url) == self._origin

    def headers_for(self, url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        h.update(extra or {})
        if self.token and self.is_registry(url):
            h["Authorization"] = f"Bearer {self.token}"
        else:
            h.pop("Authorization", None)
        return h

    async def send(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                   body: Body = None, follow: str = "all",
                   client_timeout: aiohttp.ClientTimeout | None = None) -> aiohttp.ClientResponse:
        """One request, redirects followed by hand. follow: "all" (any host, no credentials to
        foreign origins), "same" (stop at the first redirect to another origin and return it),
        or "none"."""
        allow = await self.allow_internal()
        for _ in range(MAX_REDIRECTS + 1):
            netguard.check_host(URL(url, encoded=True).host or "", allow)
            resp = await self.http.request(
                method, URL(url, encoded=True), headers=self.headers_for(url, headers),
                data=body() if body is not None else None, allow_redirects=False,
                proxy=proxy_for(url),
                timeout=client_timeout or aiohttp.ClientTimeout(total=None, sock_connect=30,
                                                          sock_read=60))
            location = resp.headers.get("Location")
            if resp.status not in REDIRECTS or not location or follow == "none":
                return resp
            nxt = resolve(url, location)
            if follow == "same" and not self.is_registry(nxt):
                return resp
            resp.release()
            if resp.status == 303 or (resp.status in (301, 302) and method not in ("GET", "HEAD")):
                method, body = "GET", None
            url = nxt
        raise OllamaError("maximum redirects exceeded (10)")

    async def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                      body: Body = None, follow: str = "all",
                      client_timeout: aiohttp.ClientTimeout | None = None,
                      ) -> aiohttp.ClientResponse:
        """send() plus Ollama's error mapping and one token round on 401. The caller releases the
        returned (< 400) response."""
        for _ in range(2):
            resp = await self.send(method, url, headers=headers, body=body, follow=follow,
                                   client_timeout=client_timeout)
            if resp.status == 401:
                challenge = auth.parse_challenge(resp.headers.get("WWW-Authenticate"))
                resp.release()
                if challenge is None:
                    raise Unauthorized()
                self.token = await self.fetch_token(challenge)
                continue
            if resp.status == 404:
                resp.release()
                raise RegistryNotFound()
            if resp.status >= 400:
                # the registry's own words (e.g. "requires a newer version of Ollama") reach the
                # user; an answer from any other host a redirect led to never does (issue 11)
                own = self.is_registry(str(resp.url))
                raise RegistryError(await (error_body_text(resp) if own else error_text(resp)),
                                    resp.status)
            return resp
        raise Unauthorized()

    async def fetch_token(self, challenge: auth.Challenge) -> str:
        auth.check_realm(challenge.realm, self.target.base)
        if self.signer is None:
            raise Unauthorized()
        url = auth.token_url(challenge)
        netguard.check_host(URL(url, encoded=True).host or "", await self.allow_internal())
        signature = self.signer(auth.signing_payload(url))
        headers = {"User-Agent": USER_AGENT, "Authorization": signature}
        async with self.http.get(URL(url, encoded=True), headers=headers, allow_redirects=False,
                                 proxy=proxy_for(url),
                                 timeout=aiohttp.ClientTimeout(total=60)) as resp:
            body = await read_capped(resp, MAX_ERROR_BODY)
            if resp.status >= 400:
                raise RegistryError(status_text(resp.status, body), resp.status)
        try:
            token = json.loads(body).get("token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise OllamaError("invalid token response from registry")
        return token
