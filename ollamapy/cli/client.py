"""The HTTP client the CLI uses to talk to `ollamapy serve` (httpx, OLLAMA_HOST, API key).

`https://` hosts are verified against the system trust store, or the bundle `SSL_CERT_FILE` /
directory `SSL_CERT_DIR` names (OpenSSL's own variables), never httpx's bundled certifi list.

Kept import-light: the CLI must start fast, so nothing from the server stack is imported here and
httpx itself (~35 ms) is only imported when a Client is actually built, not for `--help`.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ollamapy import __version__
from ollamapy.config import client_host
from ollamapy.inference.jsontypes import JsonObject

if TYPE_CHECKING:
    import ssl

    import httpx

CONNECT_ERROR = "could not connect to ollamapy server, run 'ollamapy serve' to start it"


class ClientError(Exception):
    """A server-reported error (message is the server's `error` text) or a connection failure."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def user_agent() -> str:
    """Like Ollama's `ollama/<ver> (<arch> <os>) Go/<ver>`."""
    py = ".".join(map(str, sys.version_info[:3]))
    return f"ollamapy/{__version__} ({platform.machine()} {sys.platform}) Python/{py}"


def error_message(status: int, body: bytes, reason: str = "") -> str:
    """The text of an error response: `error` of a JSON body (native or OpenAI shape), else the
    raw text, else the reason phrase."""
    msg: Any = None
    try:
        obj = json.loads(body)
        msg = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(msg, dict):  # OpenAI envelope
            msg = msg.get("message")
    except ValueError:
        pass
    text = body.decode("utf-8", "replace").strip()
    # An empty body (HEAD, bare 401/403): the reason phrase in the server's lower-case style.
    return str(msg or text or reason.lower() or f"HTTP {status}")


def tls_verify(scheme: str) -> ssl.SSLContext | bool:
    """The system store (with SSL_CERT_FILE / SSL_CERT_DIR honoured by OpenSSL) for https."""
    if scheme != "https":
        return True  # unused for plain http; ssl and a context cost ~40 ms
    import ssl

    return ssl.create_default_context()


def _caused_by(e: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = e
    for _ in range(8):  # httpx -> httpcore -> ssl
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Client:
    def __init__(self, host: str | None = None, api_key: str | None = None,
                 timeout: float | None = None) -> None:
        import httpx

        env = os.environ
        hp = client_host(host if host is not None else env.get("OLLAMA_HOST"))
        self.base_url = hp.url
        key = api_key if api_key is not None else env.get("OLLAMA_API_KEY", "").strip()
        headers = {"User-Agent": user_agent(), "Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        # As Go's ProxyFromEnvironment: HTTP(S)_PROXY never applies to a loopback server.
        self._http = httpx.Client(base_url=self.base_url, headers=headers,
                                  trust_env=not hp.is_loopback, verify=tls_verify(hp.scheme),
                                  timeout=httpx.Timeout(timeout, connect=5.0))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _raise_for(r: httpx.Response) -> None:
        if r.status_code < 400:
            return
        raise ClientError(error_message(r.status_code, r.content, r.reason_phrase), r.status_code)

    @staticmethod
    def _transport_error(e: Exception) -> ClientError:
        import ssl

        import httpx

        if isinstance(e, httpx.ConnectError) and _caused_by(e, ssl.SSLError):
            return ClientError(f"TLS error talking to the server: {e}")
        if isinstance(e, httpx.ConnectError | httpx.ConnectTimeout):
            return ClientError(CONNECT_ERROR)
        if isinstance(e, httpx.RemoteProtocolError | httpx.ReadError):
            return ClientError("the server closed the connection unexpectedly")
        return ClientError(str(e) or type(e).__name__)

    def heartbeat(self) -> None:
        import httpx

        try:
            r = self._http.head("/")
        except httpx.HTTPError as e:
            raise self._transport_error(e) from None
        self._raise_for(r)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        try:
            r = self._http.request(method, path, json=body)
        except httpx.HTTPError as e:
            raise self._transport_error(e) from None
        self._raise_for(r)
        if not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            return r.text

    def server_version(self) -> str | None:
        """The server's own version: ollamapy's `X-Ollamapy-Version` header on /api/version
        (whose body is the Ollama API version it implements), else the body's version (an
        Ollama server or an older ollamapy). None when the answer has neither."""
        import httpx

        try:
            r = self._http.get("/api/version")
        except httpx.HTTPError as e:
            raise self._transport_error(e) from None
        self._raise_for(r)
        own: str | None = r.headers.get("X-Ollamapy-Version")
        if own:
            return own
        try:
            body = r.json()
        except ValueError:
            return None
        v = body.get("version") if isinstance(body, dict) else None
        return v if isinstance(v, str) else None

    def stream(self, method: str, path: str, body: Any = None) -> Iterator[JsonObject]:
        """NDJSON objects as they arrive; an `error` line raises ClientError. Closing the
        generator (or Ctrl+C while iterating) closes the connection, which cancels the work."""
        import httpx

        try:
            with self._http.stream(method, path, json=body) as r:
                if r.status_code >= 400:
                    r.read()
                    self._raise_for(r)
                for line in r.iter_lines():
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        raise ClientError(f"unexpected response from server: {line[:200]}"
                                          ) from None
                    if isinstance(obj, dict) and obj.get("error"):
                        raise ClientError(error_message(200, line.encode()))
                    yield obj
        except httpx.HTTPError as e:
            raise self._transport_error(e) from None
