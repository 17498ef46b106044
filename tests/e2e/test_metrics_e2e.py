"""/metrics of a real `ollamapy serve` with a real runner: scraped with prometheus_client's
parser around real requests, every counter moves by exactly what those requests did."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FAST_PARAMS, register_default_model, start_server, stop_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MODEL = "smollm2:135m"


def scrape(url: str, **headers: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = httpx.get(url + "/metrics", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def get(m: dict, name: str, **labels: str) -> float:
    return m.get((name, frozenset(labels.items())), 0.0)


def test_counters_follow_real_requests(tmp_path: Path) -> None:
    register_default_model(tmp_path / "models", params=FAST_PARAMS)
    s = start_server(tmp_path, {"OLLAMA_API_KEYS": "k"})
    auth = {"Authorization": "Bearer k"}
    try:
        assert httpx.get(s.url + "/metrics").status_code == 401  # keys set: scope applies
        before = scrape(s.url, **auth)
        prompt_tokens = generated = 0
        for _ in range(2):
            r = httpx.post(s.url + "/api/generate", headers=auth, timeout=120, json={
                "model": MODEL, "prompt": "Count to three.", "stream": False,
                "options": {"num_predict": 6, "temperature": 0}})
            assert r.status_code == 200, r.text
            prompt_tokens += r.json()["prompt_eval_count"]
            generated += r.json()["eval_count"]
        with httpx.stream("POST", s.url + "/api/chat", headers=auth, timeout=120, json={
                "model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
                "options": {"num_predict": 5}}) as r:
            lines = [ln for ln in r.iter_lines() if ln]
        last = json.loads(lines[-1])
        prompt_tokens += last["prompt_eval_count"]
        generated += last["eval_count"]
        oa = openai.OpenAI(base_url=s.url + "/v1", api_key="k")
        comp = oa.chat.completions.create(model=MODEL, max_tokens=4,
                                          messages=[{"role": "user", "content": "Hello"}])
        prompt_tokens += comp.usage.prompt_tokens
        generated += comp.usage.completion_tokens
        # Anthropic (its own family label, its key header) and Responses (family openai).
        r = httpx.post(s.url + "/v1/messages", headers={"x-api-key": "k"}, timeout=120, json={
            "model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 200, r.text
        prompt_tokens += r.json()["usage"]["input_tokens"]
        generated += r.json()["usage"]["output_tokens"]
        r = httpx.post(s.url + "/v1/responses", headers=auth, timeout=120, json={
            "model": MODEL, "input": "Hello", "max_output_tokens": 4})
        assert r.status_code == 200, r.text
        prompt_tokens += r.json()["usage"]["input_tokens"]
        generated += r.json()["usage"]["output_tokens"]
        missing = httpx.post(s.url + "/api/generate", headers=auth,
                             json={"model": "nope-secret", "prompt": "x"})
        assert missing.status_code == 404
        after = scrape(s.url, **auth)
    finally:
        stop_server(s)
    access = [ln for ln in s.log().splitlines() if "source=ollamapy.access" in ln]
    assert any("path=/api/generate" in ln and f"model={MODEL}" in ln and "status=200" in ln
               and "prompt_tokens=" in ln and "eval_tokens=" in ln for ln in access), access

    def d(name: str, **labels: str) -> float:
        return get(after, name, **labels) - get(before, name, **labels)

    req = "ollamapy_requests_total"
    assert d(req, family="ollama", route="/api/generate", model=MODEL, status="200") == 2
    assert d(req, family="ollama", route="/api/chat", model=MODEL, status="200") == 1
    assert d(req, family="openai", route="/v1/chat/completions", model=MODEL, status="200") == 1
    assert d(req, family="anthropic", route="/v1/messages", model=MODEL, status="200") == 1
    assert d(req, family="openai", route="/v1/responses", model=MODEL, status="200") == 1
    assert d(req, family="ollama", route="/api/generate", model="other", status="404") == 1
    assert d("ollamapy_prompt_tokens_total", model=MODEL) == prompt_tokens
    assert d("ollamapy_generated_tokens_total", model=MODEL) == generated
    ttft = "ollamapy_time_to_first_token_seconds_count"
    assert d(ttft, family="ollama", model=MODEL) == 3
    assert d(ttft, family="openai", model=MODEL) == 2  # chat completion + response
    assert d(ttft, family="anthropic", model=MODEL) == 1
    assert d("ollamapy_model_load_duration_seconds_count", model=MODEL) == 1
    assert get(after, "ollamapy_models_loaded") == 1
    assert get(after, "ollamapy_model_memory_bytes", model=MODEL, memory="ram") > 0
    assert get(after, "ollamapy_queue_depth") == 0
    # The runner's own llama-server metrics, re-exported with the model label.
    assert get(after, "ollamapy_runner_tokens_predicted_total", model=MODEL) >= generated - 4
    assert get(after, "ollamapy_runner_prompt_tokens_total", model=MODEL) > 0
    assert not any("nope-secret" in str(lbl) for _, lbl in after)
