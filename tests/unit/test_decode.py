import pytest
from pydantic import BaseModel

from ollamapy.api.decode import decode
from ollamapy.errors import BadRequest


class Req(BaseModel):
    model: str = ""
    n: int = 0
    opts: dict = {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "missing request body"),
        (b"  \n", "missing request body"),
        (b"{x", "invalid character 'x' looking for beginning of object key string"),
        (b'{"model": ', "unexpected EOF"),
        (b"[]", "json: cannot unmarshal array into Go value of type api.Req"),
        (b'{"n": "5"}', "json: cannot unmarshal string into Go struct field Req.n of type int"),
        (b'{"model": 5}',
         "json: cannot unmarshal number into Go struct field Req.model of type string"),
        (b'{"opts": {"x": NaN}}', "invalid character 'N' looking for beginning of value"),
        (b'{"n": Infinity}', "invalid character 'I' looking for beginning of value"),
        (b'{"opts": ' + b"[" * 100000 + b"]" * 100000 + b"}", "exceeded max depth"),
    ],
)
def test_bad_bodies_are_400_with_go_wording(body, message):
    with pytest.raises(BadRequest) as e:
        decode(Req, body)
    assert e.value.status == 400
    assert e.value.message == message


def test_null_leaves_zero_value_and_unknown_fields_are_ignored():
    r = decode(Req, b'{"model": "m", "n": null, "extra": 1}')
    assert (r.model, r.n) == ("m", 0)


def test_lone_surrogate_escapes_read_as_replacement_characters():
    """Python's parser takes a lone UTF-16 surrogate escape, pydantic's refuses it, and UTF-8
    cannot carry it back out: Go's decoder (Ollama's) reads it as U+FFFD, and so does this,
    in values and keys at any depth. A valid pair stays one character."""
    r = decode(Req, b'{"model": "a\\ud800b", "opts": {"k\\udc00": ["\\udbff", 1]}}')
    assert r.model == "a\ufffdb"
    assert r.opts == {"k\ufffd": ["\ufffd", 1]}
    assert decode(Req, b'{"model": "\\ud83d\\ude00"}').model == "\U0001f600"
    # what is wrong besides is still refused in Go's words
    with pytest.raises(BadRequest) as e:
        decode(Req, b'{"model": "\\ud800", "n": "5"}')
    assert e.value.message == "json: cannot unmarshal string into Go struct field Req.n of type int"
    # deep nesting on that path is a 400 too, never a RecursionError
    deep = b'{"model": "\\ud800", "opts": ' + b'{"a": ' * 900 + b"1" + b"}" * 900 + b"}"
    with pytest.raises(BadRequest):
        decode(Req, deep)
