"""runners/vendor.py on Debian 12's own Python (3.11.2: no tarfile `filter=`), and runner
directories a service user can use (0755 whatever the umask)."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "runners"))

import build  # noqa: E402

import vendor  # noqa: E402

DEBIAN_PYTHON = Path("/usr/bin/python3")
VERSION = "0.0.1"
PREFIX = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"


def make_sdist(path: Path, extra: list[tarfile.TarInfo] | None = None) -> None:
    with tarfile.open(path, "w:gz") as tar:
        def add(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.uname = len(data), mode, 1234, "someone"
            tar.addfile(info, io.BytesIO(data))

        add(PREFIX + "CMakeLists.txt", b"project(llama)\n")
        add(PREFIX + "tools/server/server.cpp", b"int main(){}\n")
        add(PREFIX + "scripts/gen.sh", b"#!/bin/sh\n", mode=0o4777)  # setuid, world-writable
        add(PREFIX + "examples/skip.cpp", b"// skipped\n")
        add(f"llama_cpp_python-{VERSION}/setup.py", b"# outside the subtree\n")
        for m in extra or []:
            tar.addfile(m, io.BytesIO(b"x" * m.size) if m.isfile() else None)


SNIPPET = """
import sys, tarfile
sys.path.insert(0, {runners!r})
import vendor
from pathlib import Path
dest = Path({dest!r})
vendor.DEST, vendor.STAMP = dest, dest / ".ollamapy-vendor"
print("has_data_filter", hasattr(tarfile, "data_filter"))
vendor.extract(Path({sdist!r}), {{"sdist_version": {version!r}, "sdist_sha256": "abc"}})
"""


def run_vendor(python: str, sdist: Path, dest: Path) -> subprocess.CompletedProcess[str]:
    code = SNIPPET.format(runners=str(REPO / "runners"), dest=str(dest), sdist=str(sdist),
                          version=VERSION)
    return subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": ""})


def check_tree(dest: Path) -> None:
    assert (dest / "CMakeLists.txt").read_text() == "project(llama)\n"
    assert (dest / "tools/server/server.cpp").exists()
    assert not (dest / "examples").exists() and not (dest / "setup.py").exists()
    assert (dest / ".ollamapy-vendor").read_text() == "abc\n"
    mode = stat.S_IMODE((dest / "scripts/gen.sh").stat().st_mode)
    assert mode & 0o7022 == 0  # no setuid, no group/other write


@pytest.mark.skipif(not DEBIAN_PYTHON.exists(), reason="no /usr/bin/python3 on this machine")
def test_vendor_extracts_with_debian_python(tmp_path: Path) -> None:
    sdist = tmp_path / "llama.tar.gz"
    make_sdist(sdist)
    dest = tmp_path / "vendor" / "llama.cpp"
    dest.parent.mkdir()
    out = run_vendor(str(DEBIAN_PYTHON), sdist, dest)
    assert out.returncode == 0, out.stderr
    if "has_data_filter True" in out.stdout:
        pytest.skip(f"{DEBIAN_PYTHON} has tarfile filters: the fallback is not exercised here")
    check_tree(dest)


def test_vendor_extracts_with_this_python(tmp_path: Path) -> None:
    sdist = tmp_path / "llama.tar.gz"
    make_sdist(sdist)
    dest = tmp_path / "vendor" / "llama.cpp"
    dest.parent.mkdir()
    out = run_vendor(sys.executable, sdist, dest)
    assert out.returncode == 0, out.stderr
    check_tree(dest)


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type, m.linkname, m.size = kind, linkname, 0
    return m


@pytest.mark.parametrize(("name", "kind", "link", "why"), [
    ("../evil", tarfile.REGTYPE, "", "unsafe path"),
    ("/etc/evil", tarfile.REGTYPE, "", "unsafe path"),
    ("a/link", tarfile.SYMTYPE, "../../outside", "link out of the tree"),
    ("a/abs", tarfile.SYMTYPE, "/etc/passwd", "link out of the tree"),
    ("dev", tarfile.CHRTYPE, "", "special file"),
    ("fifo", tarfile.FIFOTYPE, "", "special file"),
])
def test_safe_member_refuses(name: str, kind: bytes, link: str, why: str) -> None:
    with pytest.raises(SystemExit, match=why):
        vendor.safe_member(_member(name, kind, link))


def test_safe_member_keeps_inside_links_and_strips_owner() -> None:
    m = vendor.safe_member(_member("a/b/link", tarfile.SYMTYPE, "../c"))
    assert m.linkname == "../c"
    f = _member("a/file")
    f.mode, f.uid, f.uname = 0o6777, 99, "x"
    f = vendor.safe_member(f)
    assert (f.mode, f.uid, f.uname) == (0o755, 0, "")


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_built_runner_dir_is_usable_by_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             umask: int) -> None:
    """build.build() with cmake stubbed: the cached and installed runner dirs are 0755 and the
    binaries 0755 / libraries 0644 even when the build ran under umask 077."""
    repo = tmp_path / "repo"
    (repo / "vendor" / "llama.cpp").mkdir(parents=True)
    (repo / "vendor" / "llama.cpp" / "CMakeLists.txt").write_text("")
    (repo / "CMakeLists.txt").write_text("")
    monkeypatch.setattr(build, "REPO", repo)
    monkeypatch.setenv("OLLAMAPY_CACHE", str(tmp_path / "cache"))

    def fake_run(cmd: list[str], **kw: object) -> SimpleNamespace:
        if cmd[:2] == ["cmake", "--build"]:
            out = Path(cmd[2]) / "bin"
            out.mkdir(parents=True)
            (out / "llama-server").write_text("#!/bin/sh\n")
            (out / "llama-server").chmod(0o777 & ~umask)  # what the compiler leaves
            (out / "libggml.so").write_text("")
            (out / "libggml.so").chmod(0o666 & ~umask)
        return SimpleNamespace(returncode=0, stdout="cc 12\n")

    monkeypatch.setattr(build.subprocess, "run", fake_run)
    old = os.umask(umask)
    try:
        dest = build.build("cpu", "all", [], 1)
    finally:
        os.umask(old)
    assert dest == repo / "runners" / "cpu"
    cached = next((tmp_path / "cache" / "runners").glob("cpu-*"))
    for d in (cached, cached / "bin", dest, dest / "bin"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o755, d
    assert stat.S_IMODE((dest / "bin" / "llama-server").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "bin" / "libggml.so").stat().st_mode) == 0o644
