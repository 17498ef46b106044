"""Option mapping: every sampling field explicit, clamped, num_predict bounded."""

from __future__ import annotations

import pytest

from ollamapy import options
from ollamapy.errors import BadRequest
from ollamapy.inference.sampling import completion_fields, format_fields, num_predict_budget
from ollamapy.runner.client import check_completion_body


def test_defaults_are_ollamas_and_explicit() -> None:
    f = completion_fields(options.merge({}, {}), 4096)
    assert f["temperature"] == 0.8 and f["top_k"] == 40 and f["top_p"] == 0.9
    assert f["min_p"] == 0.0 and f["typical_p"] == 1.0 and f["repeat_penalty"] == 1.0
    assert f["repeat_last_n"] == 64 and f["seed"] == -1 and f["n_keep"] == 4
    assert f["n_predict"] == 40960 and f["stop"] == []
    assert f["mirostat"] == 0 and f["xtc_probability"] == 0.0 and f["dry_multiplier"] == 0.0
    check_completion_body({"prompt": "x", **f})


def test_request_over_model_over_default() -> None:
    merged = options.merge(options.validate({"temperature": 0.1, "stop": ["a"]}),
                           options.validate({"temperature": 0.5, "numa": True, "tfs_z": 1}))
    f = completion_fields(merged, 2048)
    assert f["temperature"] == 0.5 and f["stop"] == ["a"]


@pytest.mark.parametrize(("asked", "ctx", "sent"), [
    (-1, 100, 1000), (None, 100, 1000), (5000, 100, 1000), (7, 100, 7), (0, 100, 0),
    (-5, 2**30, 2**31 - 1)])
def test_num_predict(asked: int | None, ctx: int, sent: int) -> None:
    assert num_predict_budget(asked, ctx) == sent


def test_clamping_keeps_llama_server_safe() -> None:
    f = completion_fields({"top_p": 7.0, "top_k": -3, "temperature": -1.0, "seed": 2**40 + 5,
                           "num_keep": -50, "repeat_last_n": -9, "min_p": 3.0}, 512)
    assert f["top_p"] == 1.0 and f["top_k"] == 0 and f["temperature"] == 0.0
    assert f["seed"] == 5 and f["n_keep"] == -1 and f["repeat_last_n"] == 64 and f["min_p"] == 1.0
    f = completion_fields({"seed": -7, "num_keep": 10**9, "stop": ["", "x", "x"]}, 512)
    assert f["seed"] == -1 and f["n_keep"] == 512 and f["stop"] == ["x"]
    with pytest.raises(BadRequest):
        completion_fields({"temperature": float("nan")}, 512)
    with pytest.raises(BadRequest):
        completion_fields({"stop": ["x"] * 100}, 512)


def test_wrong_option_types_name_the_option() -> None:
    with pytest.raises(BadRequest, match='option "num_predict" must be of type integer'):
        options.validate({"num_predict": "many"})
    with pytest.raises(BadRequest, match='option "stop" must be of an array of strings'):
        options.validate({"stop": [1]})


def test_format() -> None:
    assert format_fields(None) == {} and format_fields("") == {}
    assert format_fields("json") == {"json_schema": {"type": "object"}}
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert format_fields(schema) == {"json_schema": schema}
    with pytest.raises(BadRequest, match='invalid format: "yaml"'):
        format_fields("yaml")
    with pytest.raises(BadRequest, match="invalid format: \"\\[1\\]\""):
        format_fields([1])


def test_completion_body_guard() -> None:
    with pytest.raises(Exception, match="unexpected completion field"):
        check_completion_body({"prompt": "x", "n_discard": -1})
    with pytest.raises(Exception, match="bad type"):
        check_completion_body({"prompt": "x", "n_predict": True})
