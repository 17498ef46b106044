"""The HTTP client the CLI uses to talk to `ollamapy serve` (httpx, OLLAMA_HOST, API key).

Kept import-light: the CLI must start fast, so nothing from the server stack is imported here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx

from ollamapy import __version__
from ollamapy.config import client_host

CONNECT_ERROR = "could not connect to ollamapy server, run 'ollamapy serve' to start it"


class ClientError(Exception):
    """A server-reported error (message is the server's `error` text) or a connection failure."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Client:
    def __init__(self, host: str | None = None, api_key: str | None = None,
                 timeout: float | None = None) -> None:
        env = os.environ
        self.base_url = client_host(host if host is not None else env.get("OLLAMA_HOST")).url
        key = api_key if api_key is not None else env.get("OLLAMA_API_KEY", "")
        headers = {"User-Agent": f"ollamapy/{__version__}", "Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(base_url=self.base_url, headers=headers,
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
        try:
            body = r.json()
            msg = body.get("error") if isinstance(body, dict) else None
            if isinstance(msg, dict):  # OpenAI envelope
                msg = msg.get("message")
        except ValueError:
            msg = None
        raise ClientError(str(msg or r.text.strip() or r.reason_phrase), r.status_code)

    def heartbeat(self) -> None:
        try:
            r = self._http.head("/")
        except httpx.HTTPError:
            raise ClientError(CONNECT_ERROR) from None
        self._raise_for(r)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            r = self._http.request(method, path, json=body)
        except httpx.ConnectError:
            raise ClientError(CONNECT_ERROR) from None
        except httpx.HTTPError as e:
            raise ClientError(str(e) or type(e).__name__) from None
        self._raise_for(r)
        if not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            return r.text

    def stream(self, method: str, path: str, body: Any = None) -> Iterator[dict[str, Any]]:
        """NDJSON objects as they arrive; an `error` line raises ClientError."""
        try:
            with self._http.stream(method, path, json=body) as r:
                if r.status_code >= 400:
                    r.read()
                    self._raise_for(r)
                for line in r.iter_lines():
                    if not line.strip():
                        continue
                    obj = json.loads(line)
                    if isinstance(obj, dict) and obj.get("error"):
                        raise ClientError(str(obj["error"]))
                    yield obj
        except httpx.ConnectError:
            raise ClientError(CONNECT_ERROR) from None
        except httpx.HTTPError as e:
            raise ClientError(str(e) or type(e).__name__) from None
