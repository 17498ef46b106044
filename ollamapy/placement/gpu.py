"""Device discovery: NVIDIA (NVML), AMD (sysfs), Apple (unified memory), and the CPU (psutil).

Returns plain dataclasses so the memory estimator and the scheduler stay pure. No GPU, no NVML
library, or no sysfs are normal cases, not errors: they just yield fewer devices.
Visibility variables are honoured the way the runtimes do: `CUDA_VISIBLE_DEVICES` (indices or
UUID prefixes, stopping at the first invalid entry), `ROCR_VISIBLE_DEVICES` then
`HIP_VISIBLE_DEVICES` (indices).
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ollamapy.logs import kv

log = logging.getLogger("ollamapy.placement.gpu")

GiB = 1024**3
MiB = 1024**2

# Memory each backend keeps for itself on a device (Ollama's MinimumMemory).
MINIMUM_MEMORY = {"cuda": 457 * MiB, "rocm": 457 * MiB, "vulkan": 457 * MiB, "metal": 512 * MiB}


@dataclass(frozen=True)
class GpuDevice:
    """One accelerator as the runner will number it (`index` = position among visible devices)."""

    index: int
    id: str  # stable id: NVIDIA UUID, AMD card name, "metal"
    library: str  # cuda | rocm | metal | vulkan
    name: str
    total: int  # bytes
    free: int  # bytes
    compute: str = ""  # e.g. "8.6" (CUDA compute capability) or gfx target
    driver: str = ""
    integrated: bool = False

    @property
    def minimum_memory(self) -> int:
        return MINIMUM_MEMORY.get(self.library, 457 * MiB)


@dataclass(frozen=True)
class SystemInfo:
    total: int  # RAM bytes
    free: int  # available RAM bytes
    swap_free: int = 0
    cores: int = 1  # physical cores
    threads: int = 1  # logical CPUs


@dataclass(frozen=True)
class Inventory:
    system: SystemInfo
    gpus: tuple[GpuDevice, ...] = field(default_factory=tuple)

    @property
    def cpu_only(self) -> bool:
        return not self.gpus

    def libraries(self) -> list[str]:
        return sorted({g.library for g in self.gpus})

    def total_vram(self, overhead: int = 0) -> int:
        return sum(max(0, g.total - overhead) for g in self.gpus)

    def only(self, libraries: Sequence[str] | None) -> Inventory:
        """The inventory as a runner built for `libraries` sees it (None = every GPU)."""
        if libraries is None:
            return self
        return replace(self, gpus=tuple(g for g in self.gpus if g.library in libraries))


# ---------------------------------------------------------------- visibility


def _split(value: str) -> list[str]:
    return [p.strip() for p in value.split(",")]


def cuda_visible(devices: Sequence[GpuDevice], value: str | None) -> list[GpuDevice]:
    """Apply CUDA_VISIBLE_DEVICES: unset = all; entries are indices or UUID (prefixes); the list
    ends at the first entry that matches nothing (as the CUDA runtime does); "" hides all."""
    if value is None:
        return list(devices)
    out: list[GpuDevice] = []
    for part in _split(value):
        if not part:
            break
        match: GpuDevice | None = None
        if part.lstrip("-").isdigit():
            i = int(part)
            match = devices[i] if 0 <= i < len(devices) else None
        else:
            key = part.lower()
            hits = [d for d in devices if d.id.lower().startswith(key)
                    or d.id.lower().startswith("gpu-" + key)]
            match = hits[0] if len(hits) == 1 else None
        if match is None or match in out:
            break
        out.append(match)
    return out


def index_visible(devices: Sequence[GpuDevice], value: str | None) -> list[GpuDevice]:
    """ROCR_/HIP_VISIBLE_DEVICES: comma separated indices; invalid entries end the list."""
    if value is None:
        return list(devices)
    out: list[GpuDevice] = []
    for part in _split(value):
        if not part.isdigit() or int(part) >= len(devices) or devices[int(part)] in out:
            break
        out.append(devices[int(part)])
    return out


def _renumber(devices: Sequence[GpuDevice]) -> list[GpuDevice]:
    return [replace(d, index=i) for i, d in enumerate(devices)]


# ---------------------------------------------------------------- NVIDIA


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def nvidia_devices(nvml: Any = None) -> list[GpuDevice]:
    """Every NVIDIA GPU NVML reports (before visibility filtering); [] without a driver."""
    try:
        if nvml is None:
            import pynvml as nvml  # type: ignore[no-redef]  # nvidia-ml-py
        nvml.nvmlInit()
    except Exception as e:  # no library, no driver: a CPU/AMD/Apple host
        log.debug("NVML unavailable", extra=kv(error=e))
        return []
    out: list[GpuDevice] = []
    try:
        try:
            driver = _text(nvml.nvmlSystemGetDriverVersion())
        except Exception:
            driver = ""
        for i in range(int(nvml.nvmlDeviceGetCount())):
            try:
                h = nvml.nvmlDeviceGetHandleByIndex(i)
                mem = nvml.nvmlDeviceGetMemoryInfo(h)
                try:
                    major, minor = nvml.nvmlDeviceGetCudaComputeCapability(h)
                    compute = f"{major}.{minor}"
                except Exception:
                    compute = ""
                try:
                    uuid = _text(nvml.nvmlDeviceGetUUID(h))
                except Exception:
                    uuid = str(i)
                out.append(GpuDevice(index=i, id=uuid, library="cuda",
                                     name=_text(nvml.nvmlDeviceGetName(h)), total=int(mem.total),
                                     free=int(mem.free), compute=compute, driver=driver))
            except Exception as e:
                log.warning("skipping NVIDIA GPU", extra=kv(index=i, error=e))
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass
    return out


# ---------------------------------------------------------------- AMD


def _read(p: Path) -> str | None:
    try:
        return p.read_text().strip()
    except OSError:
        return None


def amd_devices(sysfs: Path = Path("/sys")) -> list[GpuDevice]:
    """AMD GPUs from /sys/class/drm/card*/device (vendor 0x1002, mem_info_vram_*)."""
    drm = sysfs / "class" / "drm"
    if not drm.is_dir():
        return []
    out: list[GpuDevice] = []
    cards = sorted((p for p in drm.iterdir() if p.name.startswith("card") and p.name[4:].isdigit()),
                   key=lambda p: int(p.name[4:]))
    for card in cards:
        dev = card / "device"
        if _read(dev / "vendor") != "0x1002":
            continue
        total_s, used_s = _read(dev / "mem_info_vram_total"), _read(dev / "mem_info_vram_used")
        if not total_s or not total_s.isdigit():
            continue
        total = int(total_s)
        used = int(used_s) if used_s and used_s.isdigit() else 0
        name = _read(dev / "product_name") or f"AMD GPU {_read(dev / 'device') or card.name}"
        out.append(GpuDevice(index=len(out), id=card.name, library="rocm", name=name, total=total,
                             free=max(0, total - used), integrated=total < 1 * GiB))
    return out


# ---------------------------------------------------------------- Apple, CPU


def system_info() -> SystemInfo:
    import psutil

    vm = psutil.virtual_memory()
    try:
        swap_free = int(psutil.swap_memory().free)
    except Exception:
        swap_free = 0
    threads = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):  # a container or taskset may allow fewer CPUs
        threads = min(threads, len(os.sched_getaffinity(0)) or threads)
    cores = min(psutil.cpu_count(logical=False) or threads, threads)
    return SystemInfo(total=int(vm.total), free=int(vm.available), swap_free=swap_free,
                      cores=int(cores), threads=int(threads))


def apple_devices(system: SystemInfo, plat: str, machine: str) -> list[GpuDevice]:
    """Apple silicon: the GPU shares RAM; Metal lets it use about 3/4 of it."""
    if plat != "darwin" or machine not in ("arm64", "aarch64"):
        return []
    budget = system.total * 3 // 4
    return [GpuDevice(index=0, id="metal", library="metal", name="Apple GPU", total=budget,
                      free=min(budget, system.free))]


def discover(environ: Mapping[str, str] | None = None, *, nvml: Any = None,
             sysfs: Path = Path("/sys"), plat: str | None = None, machine: str | None = None,
             system: SystemInfo | None = None) -> Inventory:
    """Everything the scheduler may place a model on. Never raises for missing hardware."""
    env = os.environ if environ is None else environ
    system = system or system_info()
    plat = plat or sys.platform
    machine = machine or platform.machine()
    gpus: list[GpuDevice] = []
    gpus += _renumber(cuda_visible(nvidia_devices(nvml), env.get("CUDA_VISIBLE_DEVICES")))
    amd = amd_devices(sysfs) if plat.startswith("linux") else []
    amd = index_visible(amd, env.get("ROCR_VISIBLE_DEVICES"))
    amd = index_visible(amd, env.get("HIP_VISIBLE_DEVICES"))
    gpus += _renumber([d for d in amd if not d.integrated])
    gpus += apple_devices(system, plat, machine)
    inv = Inventory(system=system, gpus=tuple(gpus))
    for g in inv.gpus:
        log.debug("inference compute", extra={"kv": {
            "id": g.id, "library": g.library, "compute": g.compute, "driver": g.driver,
            "name": g.name, "total": f"{g.total / GiB:.1f} GiB",
            "available": f"{g.free / GiB:.1f} GiB"}})
    return inv

