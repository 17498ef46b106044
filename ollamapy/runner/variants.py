"""The one table of runner variants: what `make runner` builds, which GPUs each can drive, and
which one the server prefers. Stdlib only: `runners/build.py` imports it with the system Python
before any venv exists."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    name: str
    # GPU libraries (as ollamapy.placement.gpu names them) this variant can use; () = none
    # (CPU only), None = any (a `llama-server` found on PATH, build unknown).
    libraries: tuple[str, ...] | None
    buildable: bool = True  # `make runner VARIANT=<name>` can build it
    backend: str = ""  # the ggml backend name recorded in the manifest ("" = same as name)

    @property
    def needs_gpu(self) -> bool:
        """A GPU variant is only picked when a device of one of its libraries is present."""
        return bool(self.libraries)


# In preference order: the first usable one wins when OLLAMA_LLM_LIBRARY is not set.
TABLE: tuple[Variant, ...] = (
    Variant("cuda", ("cuda",)),
    Variant("rocm", ("rocm",), backend="hip"),
    Variant("metal", ("metal",)),
    Variant("vulkan", ("cuda", "rocm")),
    Variant("cpu", ()),
    Variant("system", None, buildable=False),
)
BY_NAME: dict[str, Variant] = {v.name: v for v in TABLE}
BUILDABLE: tuple[str, ...] = tuple(v.name for v in TABLE if v.buildable)
ORDER: dict[str, int] = {v.name: i for i, v in enumerate(TABLE)}


def libraries(variant: str) -> tuple[str, ...] | None:
    """GPU libraries a runner of `variant` drives (unknown variants: any)."""
    v = BY_NAME.get(variant)
    return v.libraries if v is not None else None


def backend(variant: str) -> str:
    v = BY_NAME.get(variant)
    return (v.backend or v.name) if v is not None else variant


def unusable_reason(variant: str, present: tuple[str, ...] | list[str]) -> str | None:
    """Why a runner of `variant` cannot be used with the GPU libraries `present` (None: it can).
    Pure, so the scheduler can log the reason it skipped a CUDA/ROCm runner."""
    v = BY_NAME.get(variant)
    if v is None or not v.needs_gpu:
        return None
    assert v.libraries is not None
    if any(lib in present for lib in v.libraries):
        return None
    kinds = "/".join(v.libraries)
    return (f"no {kinds} GPU found" if not present
            else f"no {kinds} GPU found (have: {', '.join(present)})")
