"""Long template renders leave the server's process (issue 11): small ones stay in a thread."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ollamapy.template import isolate
from ollamapy.template.gotemplate import Limits, Template, TemplateLimitError, parse
from tests.procs import gone_within


def where(tmpl: Template, data: dict[str, str]) -> tuple[int, str]:
    return os.getpid(), tmpl.render(data)


@pytest.fixture(autouse=True)
def _pool() -> Iterator[None]:
    yield
    isolate.shutdown()


async def test_small_render_runs_in_this_process() -> None:
    pid, out = await isolate.render(where, parse("{{range 3}}x{{end}}{{.Prompt}}"),
                                    {"Prompt": "p", "Response": ""})
    assert pid == os.getpid() and out == "xxxp"


async def test_long_render_runs_in_a_worker_process() -> None:
    t = parse("{{range 300}}{{range 100}}{{end}}{{end}}{{.Prompt}}")
    pid, out = await isolate.render(where, t, {"Prompt": "p", "Response": ""})
    assert pid != os.getpid() and out == "p"


async def test_the_full_limits_still_apply_in_the_worker() -> None:
    t = parse("{{range 300}}{{range 100}}{{end}}{{end}}", Limits(max_steps=25_000))
    with pytest.raises(TemplateLimitError, match="25000 steps"):
        await isolate.render(where, t, {})


CHILD = """
import os, sys, time
from ollamapy.template import isolate
if __name__ == "__main__":
    print(isolate.pool().submit(os.getpid).result(), flush=True)
    time.sleep(120)
"""


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"),
                    reason="PR_SET_PDEATHSIG is Linux")
def test_the_worker_process_dies_with_a_killed_server(tmp_path) -> None:
    import signal
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "server.py"
    script.write_text(CHILD)
    repo = Path(__file__).resolve().parents[2]
    server = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        assert server.stdout is not None
        worker = int(server.stdout.readline())
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        gone = gone_within(worker, 15)
        if not gone:
            os.kill(worker, signal.SIGKILL)
        assert gone, "the template worker outlived the server"
    finally:
        server.kill()
        server.wait()
