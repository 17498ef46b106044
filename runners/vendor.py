"""`make vendor`: fetch the pinned llama-cpp-python sdist from PyPI, verify it, extract llama.cpp.

Only the subtree `vendor/llama.cpp/` of the sdist is extracted, minus what the runner build never
reads. Idempotent: a stamp file records the sdist checksum that produced the tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from pins import REPO, cache_dir, pins, sha256_file

DEST = REPO / "vendor" / "llama.cpp"
STAMP = DEST / ".ollamapy-vendor"
# Top-level entries of llama.cpp the server build does not need.
SKIP = {
    "models", "docs", "media", ".github", ".devops", "gguf-py", "conversion", "benches",
    "examples", "pocs", "tests", "requirements", "app", "ci", "skills", ".git",
}


def fetch_sdist(pin: dict) -> Path:
    dl = cache_dir() / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    path = dl / pin["sdist_file"]
    if path.exists() and sha256_file(path) == pin["sdist_sha256"]:
        return path
    with tempfile.TemporaryDirectory(dir=dl) as tmp:
        spec = f'{pin["sdist_package"]}=={pin["sdist_version"]}'
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--no-binary", ":all:", "-d", tmp, spec],
            check=True,
        )
        got = Path(tmp) / pin["sdist_file"]
        digest = sha256_file(got)
        if digest != pin["sdist_sha256"]:
            sys.exit(f"vendor: checksum mismatch for {got.name}: {digest} != {pin['sdist_sha256']}")
        got.replace(path)
    return path


def safe_member(m: tarfile.TarInfo) -> tarfile.TarInfo:
    """What tarfile's "data" filter refuses, for interpreters that lack it (3.11.0-3.11.3)."""
    parts = Path(m.name).parts
    if m.name.startswith("/") or ".." in parts:
        sys.exit(f"vendor: refusing unsafe path in sdist: {m.name!r}")
    if m.issym() or m.islnk():
        target = Path(m.name).parent / m.linkname if m.issym() else Path(m.linkname)
        if m.linkname.startswith("/") or ".." in Path(os.path.normpath(target)).parts:
            sys.exit(f"vendor: refusing link out of the tree in sdist: {m.name!r}")
    elif not (m.isfile() or m.isdir()):
        sys.exit(f"vendor: refusing special file in sdist: {m.name!r}")
    m.mode &= 0o755
    m.uid = m.gid = 0
    m.uname = m.gname = ""
    return m


def extract(sdist: Path, pin: dict) -> None:
    prefix = f'llama_cpp_python-{pin["sdist_version"]}/vendor/llama.cpp/'
    tmp = Path(tempfile.mkdtemp(prefix=".llama.cpp-", dir=DEST.parent))
    try:
        with tarfile.open(sdist) as tar:
            members = []
            for m in tar.getmembers():
                if not m.name.startswith(prefix):
                    continue
                rel = m.name[len(prefix):]
                if not rel or rel.split("/", 1)[0] in SKIP:
                    continue
                m.name = rel
                members.append(m)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, members=members, filter="data")
            else:  # Python < 3.11.4 (Debian 12's 3.11.2): same rules, checked by hand
                tar.extractall(tmp, members=[safe_member(m) for m in members])
        (tmp / STAMP.name).write_text(pin["sdist_sha256"] + "\n")
        if DEST.exists():
            shutil.rmtree(DEST)
        tmp.rename(DEST)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def main() -> None:
    pin = pins()["llama_cpp"]
    if STAMP.exists() and STAMP.read_text().strip() == pin["sdist_sha256"]:
        print(f"vendor: llama.cpp {pin['commit'][:12]} already in {DEST.relative_to(REPO)}")
        return
    DEST.parent.mkdir(parents=True, exist_ok=True)
    sdist = fetch_sdist(pin)
    extract(sdist, pin)
    print(f"vendor: extracted llama.cpp {pin['commit'][:12]} into {DEST.relative_to(REPO)}")


if __name__ == "__main__":
    main()
