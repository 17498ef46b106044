"""Request images -> runner images: formats llama-server decodes pass through, others become
PNG, limits and undecodable data are clear 400s; and through the real routes (native, OpenAI,
Anthropic, Responses) the converted image reaches a vision model's runner with its media
marker (fake llama-server: no vision GGUF is available here)."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import ClientSession
from PIL import Image

from ollamapy.api.decode import Caps
from ollamapy.errors import BadRequest
from ollamapy.inference import images
from tests.fake_runner import FakeRunner, FakeScheduler, FakeStore, fake_model, inference_app
from tests.unit.test_family_routes import family_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def encoded(fmt: str, size: tuple[int, int] = (8, 6), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, 128).save(out, format=fmt)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_formats_the_runner_decodes_pass_through(fmt: str) -> None:
    data = encoded(fmt)
    assert images.to_runner_image(data) is data


@pytest.mark.parametrize(("fmt", "mode"), [("WEBP", "RGB"), ("GIF", "P"), ("BMP", "RGB"),
                                           ("TIFF", "CMYK"), ("WEBP", "RGBA")])
def test_other_formats_become_png(fmt: str, mode: str) -> None:
    out = images.to_runner_image(encoded(fmt, mode=mode))
    assert out.startswith(PNG_MAGIC)
    with Image.open(io.BytesIO(out)) as img:
        assert img.size == (8, 6)


def test_undecodable_and_bad_base64_are_400() -> None:
    with pytest.raises(BadRequest, match="illegal base64 data in image"):
        images.prepare(["not base64!"])
    with pytest.raises(BadRequest, match="image could not be decoded") as e:
        images.prepare([b64(b"hello, not an image")])
    assert e.value.status == 400
    with pytest.raises(BadRequest, match="could not be decoded"):  # truncated PNG
        images.prepare([b64(encoded("PNG", (64, 64))[:60])])


def test_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    # all of a request's images share one pixel budget, spent from each header before decoding
    monkeypatch.setattr(images, "MAX_REQUEST_PIXELS", 2 * 64 * 64)
    two = images.prepare([b64(encoded("PNG", (64, 64)))] * 2)
    assert len(two) == 2
    with pytest.raises(BadRequest, match="too large together"):
        images.prepare([b64(encoded("PNG", (64, 64)))] * 3)
    monkeypatch.undo()
    # a few kilobytes that claim 100 megapixels: refused from the header, never decoded
    bomb = encoded("PNG", (10_000, 10_000), "1")
    assert len(bomb) < 100_000
    with pytest.raises(BadRequest, match="image is too large"):  # Pillow's own bomb guard
        images.to_runner_image(bomb)
    with pytest.raises(BadRequest, match="image is too large: 7000x7000 pixels"):  # ours
        images.to_runner_image(encoded("PNG", (7000, 7000), "1"))
    with pytest.raises(BadRequest, match=r"image is too large: \d+ bytes"):
        images.to_runner_image(b"\0" * (images.MAX_IMAGE_BYTES + 1))


def test_not_converted_for_a_model_without_vision() -> None:
    webp = b64(encoded("WEBP"))
    assert images.prepare([webp], convert=False) == [webp]
    with pytest.raises(BadRequest, match="illegal base64"):
        images.prepare(["%%"], convert=False)


# ------------------------------------------------------------------ through the routes

WEBP = b64(encoded("WEBP"))
PNG = b64(images.to_runner_image(base64.b64decode(WEBP)))


@pytest.fixture
async def rig() -> AsyncIterator[tuple[str, FakeRunner]]:
    up = await FakeRunner(pieces=["a cat"]).start()
    session = ClientSession()
    tmpl = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
            "<|im_start|>assistant\n")
    proj = (Path("/nonexistent.mmproj"),)
    store = FakeStore({
        "vision:latest": fake_model("vision:latest", tmpl, ("completion", "vision"),
                                    projector_paths=proj),
        "qvl:latest": family_model("qvl:latest", renderer="qwen3-vl-instruct",
                                   parser="qwen3-vl-instruct", projector_paths=proj,
                                   digest="8" * 64),
        "text:latest": fake_model("text:latest", tmpl, digest="9" * 64),
    })
    try:
        async with inference_app(store, FakeScheduler(session, {"gen": up.url})) as url:
            yield url, up
    finally:
        await up.close()
        await session.close()


def sent(up: FakeRunner) -> tuple[str, list[str]]:
    p = up.bodies[-1]["prompt"]
    assert isinstance(p, dict), p
    return p["prompt_string"], p["multimodal_data"]


async def test_images_reach_the_runner_from_every_api(rig: tuple[str, FakeRunner]) -> None:
    url, up = rig
    data_url = "data:image/webp;base64," + WEBP
    async with httpx.AsyncClient() as h:
        r = await h.post(url + "/api/chat", json={"model": "vision", "stream": False,
                                                  "messages": [{"role": "user",
                                                                "content": "what is this?",
                                                                "images": [WEBP]}]})
        assert r.status_code == 200, r.text
        text, media = sent(up)
        assert media == [PNG] and text.count("<__media__>") == 1 and "[img-0]" not in text
        r = await h.post(url + "/api/generate", json={"model": "vision", "stream": False,
                                                      "prompt": "describe",
                                                      "images": [WEBP, WEBP]})
        assert r.status_code == 200, r.text
        text, media = sent(up)
        assert media == [PNG, PNG] and text.count("<__media__>") == 2
        r = await h.post(url + "/v1/chat/completions", json={"model": "vision", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "what?"},
                                         {"type": "image_url",
                                          "image_url": {"url": data_url}}]}]})
        assert r.status_code == 200, r.text
        assert sent(up)[1] == [PNG]
        r = await h.post(url + "/v1/messages", json={
            "model": "vision", "max_tokens": 16, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/webp",
                                             "data": WEBP}},
                {"type": "text", "text": "what?"}]}]})
        assert r.status_code == 200, r.text
        assert sent(up)[1] == [PNG]
        r = await h.post(url + "/v1/responses", json={
            "model": "vision", "input": [{"role": "user", "content": [
                {"type": "input_text", "text": "what?"},
                {"type": "input_image", "image_url": data_url}]}]})
        assert r.status_code == 200, r.text
        assert sent(up)[1] == [PNG]


async def test_family_renderer_places_the_media_marker(rig: tuple[str, FakeRunner]) -> None:
    url, up = rig
    async with httpx.AsyncClient() as h:
        r = await h.post(url + "/api/chat", json={"model": "qvl", "stream": False,
                                                  "messages": [{"role": "user",
                                                                "content": "what is this?",
                                                                "images": [WEBP]}]})
    assert r.status_code == 200, r.text
    text, media = sent(up)
    assert media == [PNG]
    # the runner's marker stands for the whole vision block (mtmd adds its own tokens)
    assert text == ("<|im_start|>user\n<__media__>what is this?<|im_end|>\n"
                    "<|im_start|>assistant\n")
    assert "[img" not in text


async def test_image_errors_through_the_routes(rig: tuple[str, FakeRunner]) -> None:
    url, up = rig
    n = len(up.bodies)
    async with httpx.AsyncClient() as h:
        bad = await h.post(url + "/api/chat", json={
            "model": "vision", "messages": [{"role": "user", "content": "x",
                                             "images": [b64(b"GIF89a garbage")]}]})
        assert bad.status_code == 400 and bad.json() == {"error": "image could not be decoded"}
        many = await h.post(url + "/api/generate", json={  # OLLAMAPY_MAX_IMAGES
            "model": "vision", "prompt": "x", "images": [WEBP] * (Caps().max_images + 1)})
        assert many.status_code == 400 and "too many images" in many.json()["error"]
        novision = await h.post(url + "/api/chat", json={
            "model": "text", "messages": [{"role": "user", "content": "x", "images": [WEBP]}]})
        assert novision.status_code == 400
        assert novision.json() == {"error": "this model does not support image input"}
    assert len(up.bodies) == n  # nothing reached the runner
