"""Client code that runs INSIDE a test network namespace (`VethNamespace.call`), reaching the
server across the veth pair. Each function takes and returns plain JSON values so the test
process, outside the namespace, makes the assertions."""

from __future__ import annotations

TIMEOUT = 10


def http(requests: list[list[object]]) -> list[dict[str, object]]:
    """Send [method, url, headers] requests in order; their status, body and headers."""
    import httpx

    out: list[dict[str, object]] = []
    for method, url, headers in requests:
        assert isinstance(method, str) and isinstance(url, str) and isinstance(headers, dict)
        r = httpx.request(method, url, headers=headers, timeout=TIMEOUT)
        out.append({"status": r.status_code, "text": r.text,
                    "headers": {k.lower(): v for k, v in r.headers.items()}})
    return out


def openai_models(base_url: str, api_key: str) -> dict[str, object]:
    """`OpenAI(...).models.list()` with this key: whether `.data` is a list, or the error type."""
    from openai import OpenAI, OpenAIError

    try:
        page = OpenAI(base_url=base_url, api_key=api_key, max_retries=0,
                      timeout=TIMEOUT).models.list()
    except OpenAIError as e:
        return {"error": type(e).__name__}
    return {"data_is_list": isinstance(page.data, list)}


def ollama_calls(host: str, headers: dict[str, str],
                 calls: list[list[object]]) -> list[dict[str, object]]:
    """[method, *args] calls on one `ollama.Client`: each one's JSON result, or its
    ResponseError (status code and error text)."""
    import ollama

    client = ollama.Client(host=host, headers=headers, timeout=TIMEOUT)
    out: list[dict[str, object]] = []
    for method, *args in calls:
        assert isinstance(method, str)
        try:
            result = getattr(client, method)(*args)
        except ollama.ResponseError as e:
            out.append({"status_code": e.status_code, "error": e.error})
            continue
        out.append({"result": result.model_dump(mode="json")})
    return out
