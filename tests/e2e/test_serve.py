"""`ollamapy serve` as a process: probes, 404/405 shapes, clean SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx

from ollamapy import OLLAMA_API_VERSION, __version__
from tests.conftest import stop_server


def test_root_and_version(server):
    r = httpx.get(server.url + "/")
    assert r.status_code == 200 and r.text == "Ollama is running"
    assert httpx.head(server.url + "/").status_code == 200
    r = httpx.get(server.url + "/api/version")
    # the Ollama API version it implements (clients gate on it); its own version in a header
    assert r.status_code == 200 and r.json() == {"version": OLLAMA_API_VERSION}
    assert r.headers["X-Ollamapy-Version"] == __version__
    assert httpx.head(server.url + "/api/version").status_code == 200


def test_unknown_path_and_wrong_method(server):
    r = httpx.get(server.url + "/api/nope")
    assert r.status_code == 404 and r.text == "404 page not found"
    r = httpx.post(server.url + "/api/version")
    assert r.status_code == 405


def test_sigterm_exits_zero(server):
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0
    assert "Listening on" in server.log()


def test_bad_setting_is_one_line_not_traceback(tmp_path):
    import os

    env = dict(os.environ, OLLAMA_KEEP_ALIVE="forever-ish")
    out = subprocess.run([sys.executable, "-m", "ollamapy.cli.main", "serve"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "Error: invalid OLLAMA_KEEP_ALIVE" in out.stderr
    assert "Traceback" not in out.stderr


def test_port_in_use_is_clear(server, tmp_path):
    import os

    env = dict(os.environ, OLLAMA_HOST=server.host)
    out = subprocess.run([sys.executable, "-m", "ollamapy.cli.main", "serve"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "Error: listen tcp" in out.stderr and "Traceback" not in out.stderr
    assert stop_server(server) == 0


def test_oversized_body_is_a_json_413(tmp_path):
    """A body over the server's size cap gets Ollama's error shape, not aiohttp's text page."""
    from tests.conftest import start_server

    s = start_server(tmp_path, {"OLLAMAPY_MAX_BODY_BYTES": "1024"})
    try:
        r = httpx.post(s.url + "/api/show", content=b"{" + b" " * 4096 + b"}",
                       headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        assert "too large" in r.json()["error"]
    finally:
        stop_server(s)
