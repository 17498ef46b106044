"""A cached Debian rootfs for booting systemd as PID 1 under systemd-nspawn (make test-service).

Built once with debootstrap from Debian's mirror and kept under
~/.cache/ollamapy/service/rootfs-<key>, the key hashing every input (suite, mirror, variant,
packages, architecture, this recipe's version). Boots use `--volatile=overlay`, so the cached
tree is never modified by a test run.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

RECIPE_VERSION = "1"
SUITE = "bookworm"  # the same Debian as the dev machines: its /usr/bin/python3 runs the venv
MIRROR = os.environ.get("OLLAMAPY_DEBIAN_MIRROR", "http://deb.debian.org/debian")
VARIANT = "minbase"
# systemd as init, dbus for systemctl, python3 for the venv, make for install-service,
# passwd/util-linux (minbase) for useradd/runuser, procps for pgrep, libgomp1 for the runner
# (llama.cpp links OpenMP; a minimal Debian lacks it and the service-check says so).
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "make", "procps", "passwd", "libgomp1")


def arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def cache_root() -> Path:
    base = os.environ.get("OLLAMAPY_CACHE") or os.path.expanduser("~/.cache/ollamapy")
    return Path(base) / "service"


def key() -> str:
    h = hashlib.sha256()
    for part in (RECIPE_VERSION, SUITE, MIRROR, VARIANT, ",".join(PACKAGES), arch()):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def rootfs_path() -> Path:
    return cache_root() / f"rootfs-{key()}"


def ensure() -> Path:
    """The rootfs, debootstrapped into a temporary sibling and renamed into place when whole."""
    dest = rootfs_path()
    if (dest / "usr/lib/systemd/systemd").exists():
        return dest
    if shutil.which("debootstrap") is None:
        sys.exit("test-service: no debootstrap (apt-get install debootstrap systemd-container)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    _remove(tmp)
    subprocess.run(["debootstrap", f"--variant={VARIANT}", f"--arch={arch()}",
                    f"--include={','.join(PACKAGES)}", SUITE, str(tmp), MIRROR], check=True,
                   stdout=sys.stderr)
    # No getty on a console nobody reads; the machine id is made at each (volatile) boot.
    (tmp / "etc/machine-id").write_text("")
    (tmp / "etc/hostname").write_text("ollamapy-test\n")
    for unit in ("console-getty.service", "getty@tty1.service", "systemd-networkd.service"):
        link = tmp / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    tmp.rename(dest)
    for old in dest.parent.glob("rootfs-*"):  # trees of earlier recipes: never used again
        if old != dest and not old.name.endswith(".tmp"):
            _remove(old)
    return dest


def _remove(tree: Path) -> None:
    """rm -rf a half-built tree, unmounting what an interrupted debootstrap left mounted."""
    if not tree.exists():
        return
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for m in sorted((m for m in mounts if m.startswith(str(tree) + "/")), reverse=True):
        subprocess.run(["umount", "-l", m], check=False)
    shutil.rmtree(tree)


if __name__ == "__main__":
    print(ensure())
