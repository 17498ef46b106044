"""Build the official SDKs' response models before an async test drives them.

`anthropic` and `openai` define their response types with deferred pydantic schemas and import
some resources lazily, so the first response a client parses builds hundreds of model schemas
(100-400 ms of CPU) inside the test's event loop. That is the client's one-time cost, not the
server's, and the loop watchdog would charge it to the server under test: tests that use the
async clients call `warm()` from a sync fixture (outside the watched call phase) first.
"""

from __future__ import annotations

import functools
import sys

import pydantic


def _rebuild_models(prefixes: tuple[str, ...]) -> None:
    """Every model class of the loaded modules under `prefixes` (`__pydantic_complete__` is
    False for a deferred one: rebuilding builds it, once)."""
    for name, mod in list(sys.modules.items()):
        if not name.startswith(prefixes):
            continue
        for v in list(vars(mod).values()):
            if (isinstance(v, type) and issubclass(v, pydantic.BaseModel)
                    and not v.__pydantic_complete__):
                try:
                    v.model_rebuild()
                except Exception:  # an SDK base or generic class: not built alone
                    continue


@functools.cache
def warm() -> None:
    import anthropic
    import anthropic.lib.streaming
    import anthropic.types
    import anthropic.types.beta
    import openai
    import openai.resources.responses
    import openai.types.responses
    from anthropic._models import construct_type as anthropic_construct
    from openai._models import construct_type as openai_construct

    _rebuild_models(("anthropic.types", "anthropic.lib", "openai.types", "openai.lib"))
    # the SDKs cache each discriminated union's variant table on first use
    for u in (anthropic.types.RawMessageStreamEvent, anthropic.types.ContentBlock,
              anthropic.types.beta.BetaRawMessageStreamEvent,
              anthropic.types.beta.BetaContentBlock):
        anthropic_construct(type_=u, value={"type": "_"})
    for u in (openai.types.responses.ResponseStreamEvent,
              openai.types.responses.ResponseOutputItem):
        openai_construct(type_=u, value={"type": "_"})
    # An async client's first construction imports its HTTP transport, and its resources
    # (`client.responses`, ...) are imported on first access: built once here, off the loop.
    for client in (openai.AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="k"),
                   anthropic.AsyncAnthropic(base_url="http://127.0.0.1:9", api_key="k")):
        for resource in ("responses", "chat", "completions", "embeddings", "models",
                         "messages"):
            getattr(client, resource, None)
