"""A client that sends a streaming generate and then reads nothing, against a real server and
runner: after OLLAMAPY_WRITE_TIMEOUT it is dropped and the runner's only slot goes idle."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import FAST_PARAMS, INFERENCE_ENV, ServerProc, running_server
from tests.e2e.test_ollama_client import M, generation_runner, slot_busy, wait_slot_idle

pytestmark = pytest.mark.e2e

# Never reaches an end-of-sequence token; 100000 tokens keep the slot busy for many minutes
# unless the server cancels the request upstream.
ENDLESS = {"model": M, "prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "raw": True,
           "options": {"num_predict": 100000, "temperature": 0, "seed": 1}}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    with running_server(tmp_path_factory.mktemp("slow"),
                        {**INFERENCE_ENV, "OLLAMA_DEBUG": "1", "OLLAMAPY_WRITE_TIMEOUT": "1s"},
                        params=FAST_PARAMS) as s:
        yield s


def test_client_that_never_reads_loses_its_slot(srv: ServerProc) -> None:
    with httpx.Client(timeout=60) as h:
        h.post(srv.url + "/api/generate", json={"model": M, "prompt": ""})  # load first
    runner = generation_runner(srv)
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps(ENDLESS).encode()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills quickly, as a stuck client
    try:
        s.connect((host, int(port)))
        s.sendall(b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                  b"application/json\r\nContent-Length: " + str(len(body)).encode()
                  + b"\r\n\r\n" + body)
        deadline = time.monotonic() + 60
        while not slot_busy(runner):
            assert time.monotonic() < deadline, "the request never started"
            time.sleep(0.05)
        # never read: the server's buffers fill, then the write deadline cuts the client off
        wait_slot_idle(runner, 120.0)
    finally:
        s.close()
    assert "client read nothing of the response" in srv.log()
    with httpx.Client(timeout=60) as h:  # the slot serves the next client
        r = h.post(srv.url + "/api/generate", json={
            "model": M, "prompt": "hi", "stream": False, "options": {"num_predict": 2}})
    assert r.status_code == 200 and r.json()["done"]
    assert generation_runner(srv) == runner  # the same runner: cancelled, not crashed
