"""Model names: Ollama's parsing, defaults, validation, display and case-insensitivity."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from ollamapy.errors import BadRequest
from ollamapy.store.digest import blob_filename, is_valid_digest, validate_digest
from ollamapy.store.names import ModelName


@pytest.mark.parametrize(("text", "parts", "short"), [
    ("llama3", ("registry.ollama.ai", "library", "llama3", "latest"), "llama3:latest"),
    ("llama3.2:1b", ("registry.ollama.ai", "library", "llama3.2", "1b"), "llama3.2:1b"),
    ("user/m:tag", ("registry.ollama.ai", "user", "m", "tag"), "user/m:tag"),
    ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
     ("hf.co", "bartowski", "Llama-3.2-1B-Instruct-GGUF", "Q4_K_M"),
     "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"),
    ("localhost:5000/ns/m", ("localhost:5000", "ns", "m", "latest"), "localhost:5000/ns/m:latest"),
    ("http://localhost:5000/ns/m:v1", ("localhost:5000", "ns", "m", "v1"),
     "localhost:5000/ns/m:v1"),
    ("REGISTRY.ollama.ai/Library/M:T", ("REGISTRY.ollama.ai", "Library", "M", "T"), "M:T"),
])
def test_parse_and_display(text: str, parts: tuple[str, ...], short: str) -> None:
    n = ModelName.parse(text)
    assert n.parts() == parts
    assert n.display_shortest() == short


@pytest.mark.parametrize("text", [
    "", ":", "m:", "/m", "a/", "a//b", "../x", "..", ".", "ns.x/m", "m:ta/g", "-m", "m:-t",
    "a/b/c/d", "m:t:t", "x" * 81, "m:" + "t" * 81, "h" * 351 + "/n/m", "m m", "m\\x", "m:t\x00",
    "é", "ftp://h/n/m",
])
def test_invalid(text: str) -> None:
    assert ModelName.try_parse(text) is None
    with pytest.raises(BadRequest, match="invalid model name"):
        ModelName.parse(text)


def test_case_insensitive_identity() -> None:
    assert ModelName.parse("Llama3:Latest").equal_fold(ModelName.parse("llama3"))
    assert not ModelName.parse("llama3:a").equal_fold(ModelName.parse("llama3:b"))


@given(hs.text(max_size=120))
def test_parsed_parts_never_escape_the_store(text: str) -> None:
    n = ModelName.try_parse(text)
    if n is None:
        return
    for part in n.filepath():
        assert part not in ("", ".", "..")
        assert "/" not in part and "\\" not in part and "\x00" not in part
    # Round trip through the canonical form.
    assert ModelName.parse(str(n)).parts() == n.parts()


@given(hs.from_regex(r"[a-z0-9_][a-z0-9_.-]{0,20}", fullmatch=True),
       hs.from_regex(r"[a-z0-9_][a-z0-9_.-]{0,10}", fullmatch=True))
def test_valid_model_tag_always_parse(model: str, tag: str) -> None:
    n = ModelName.parse(f"{model}:{tag}")
    assert (n.model, n.tag) == (model, tag)
    assert n.display_shortest() == f"{model}:{tag}"


HEX = "ab" * 32


@pytest.mark.parametrize("d", [f"sha256:{HEX}", f"sha256-{HEX}", f"sha256:{HEX.upper()}"])
def test_digest_valid(d: str) -> None:
    assert validate_digest(d) == f"sha256:{HEX}"
    assert blob_filename(d) == f"sha256-{HEX}"


@pytest.mark.parametrize("d", ["", "sha256:", f"sha256:{HEX}0", f"sha256:{HEX[:-1]}",
                               f"sha512:{HEX}", f"sha256:../{HEX[3:]}", f"sha256_{HEX}",
                               f" sha256:{HEX}", f"sha256:{HEX}\n", None, 5])
def test_digest_invalid(d: object) -> None:
    assert not is_valid_digest(d)
    with pytest.raises(BadRequest, match="invalid digest format"):
        validate_digest(d)


@given(hs.text(max_size=80))
def test_digest_fuzz(s: str) -> None:
    if is_valid_digest(s):
        assert blob_filename(s).startswith("sha256-") and len(blob_filename(s)) == 71
    else:
        with pytest.raises(BadRequest):
            validate_digest(s)
