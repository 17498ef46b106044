"""Long template renders leave the server's process (issue 11): small ones stay in a thread."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ollamapy.template import isolate
from ollamapy.template.gotemplate import Limits, Template, TemplateLimitError, parse


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
