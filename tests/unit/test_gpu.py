"""Device discovery with a fake NVML module and a fake sysfs tree; no GPU is a normal case."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from ollamapy.placement.gpu import GiB, GpuDevice, SystemInfo, cuda_visible, discover, index_visible

SYSTEM = SystemInfo(total=32 * GiB, free=20 * GiB, cores=8, threads=16)


class FakeNVML:
    def __init__(self, gpus: list[tuple[str, str, int, int, tuple[int, int]]]) -> None:
        self.gpus = gpus
        self.shutdown = False

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        self.shutdown = True

    def nvmlSystemGetDriverVersion(self) -> bytes:
        return b"550.54"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(total=self.gpus[h][2], free=self.gpus[h][3])

    def nvmlDeviceGetCudaComputeCapability(self, h: int) -> tuple[int, int]:
        return self.gpus[h][4]

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return self.gpus[h][0]

    def nvmlDeviceGetName(self, h: int) -> str:
        return self.gpus[h][1]


class BrokenNVML:
    def nvmlInit(self) -> None:
        raise OSError("NVML Shared Library Not Found")


TWO = [("GPU-aaaa-1111", "NVIDIA RTX 4090", 24 * GiB, 23 * GiB, (8, 9)),
       ("GPU-bbbb-2222", "NVIDIA RTX 3060", 12 * GiB, 11 * GiB, (8, 6))]


def linux(env: dict[str, str], nvml: object, sysfs: Path) -> list[GpuDevice]:
    return list(discover(env, nvml=nvml, sysfs=sysfs, plat="linux", machine="x86_64",
                         system=SYSTEM).gpus)


def test_nvidia_devices(tmp_path: Path):
    fake = FakeNVML(TWO)
    gpus = linux({}, fake, tmp_path)
    assert [(g.index, g.library, g.name, g.compute, g.driver) for g in gpus] == [
        (0, "cuda", "NVIDIA RTX 4090", "8.9", "550.54"),
        (1, "cuda", "NVIDIA RTX 3060", "8.6", "550.54")]
    assert gpus[0].total == 24 * GiB and gpus[0].free == 23 * GiB
    assert fake.shutdown


def test_cuda_visible_devices(tmp_path: Path):
    assert [g.name for g in linux({"CUDA_VISIBLE_DEVICES": "1"}, FakeNVML(TWO), tmp_path)] == [
        "NVIDIA RTX 3060"]
    only = linux({"CUDA_VISIBLE_DEVICES": "GPU-bbbb"}, FakeNVML(TWO), tmp_path)
    assert [(g.index, g.id) for g in only] == [(0, "GPU-bbbb-2222")]  # renumbered from 0
    assert linux({"CUDA_VISIBLE_DEVICES": ""}, FakeNVML(TWO), tmp_path) == []
    assert linux({"CUDA_VISIBLE_DEVICES": "-1"}, FakeNVML(TWO), tmp_path) == []
    # CUDA stops at the first invalid entry
    assert len(linux({"CUDA_VISIBLE_DEVICES": "0,7,1"}, FakeNVML(TWO), tmp_path)) == 1


def test_no_nvml_is_normal(tmp_path: Path):
    inv = discover({}, nvml=BrokenNVML(), sysfs=tmp_path, plat="linux", machine="x86_64",
                   system=SYSTEM)
    assert inv.cpu_only and inv.gpus == () and inv.system is SYSTEM
    assert inv.total_vram() == 0 and inv.libraries() == []


def amd_card(root: Path, n: int, vendor: str, total: int, used: int, name: str = "") -> None:
    dev = root / "class" / "drm" / f"card{n}" / "device"
    dev.mkdir(parents=True)
    (dev / "vendor").write_text(vendor + "\n")
    (dev / "mem_info_vram_total").write_text(f"{total}\n")
    (dev / "mem_info_vram_used").write_text(f"{used}\n")
    if name:
        (dev / "product_name").write_text(name)


def test_amd_sysfs_and_visibility(tmp_path: Path):
    amd_card(tmp_path, 0, "0x1002", 16 * GiB, 1 * GiB, "Radeon RX 7800")
    amd_card(tmp_path, 1, "0x8086", 8 * GiB, 0)  # an Intel card: not ours
    amd_card(tmp_path, 2, "0x1002", 24 * GiB, 2 * GiB, "Radeon RX 7900")
    amd_card(tmp_path, 3, "0x1002", 512 * 1024 * 1024, 0)  # an APU carve-out: skipped
    (tmp_path / "class" / "drm" / "renderD128").mkdir()
    gpus = linux({}, BrokenNVML(), tmp_path)
    assert [(g.index, g.name, g.free) for g in gpus] == [
        (0, "Radeon RX 7800", 15 * GiB), (1, "Radeon RX 7900", 22 * GiB)]
    assert all(g.library == "rocm" for g in gpus)
    hip = linux({"HIP_VISIBLE_DEVICES": "1"}, BrokenNVML(), tmp_path)
    assert [g.name for g in hip] == ["Radeon RX 7900"]
    rocr = linux({"ROCR_VISIBLE_DEVICES": "1", "HIP_VISIBLE_DEVICES": "0"}, BrokenNVML(),
                 tmp_path)
    assert [g.name for g in rocr] == ["Radeon RX 7900"]  # HIP indexes what ROCR left


def test_nvidia_and_amd_together(tmp_path: Path):
    amd_card(tmp_path, 0, "0x1002", 16 * GiB, 0, "Radeon")
    gpus = linux({}, FakeNVML(TWO[:1]), tmp_path)
    assert [g.library for g in gpus] == ["cuda", "rocm"]


def test_apple_silicon_unified_memory(tmp_path: Path):
    system = SystemInfo(total=16 * GiB, free=10 * GiB)
    inv = discover({}, nvml=BrokenNVML(), sysfs=tmp_path, plat="darwin", machine="arm64",
                   system=system)
    assert len(inv.gpus) == 1
    g = inv.gpus[0]
    assert g.library == "metal" and g.total == 12 * GiB and g.free == 10 * GiB
    intel_mac = discover({}, nvml=BrokenNVML(), sysfs=tmp_path, plat="darwin",
                         machine="x86_64", system=system)
    assert intel_mac.cpu_only


def test_real_host_discovery_never_raises():
    inv = discover()
    assert inv.system.total > 0 and inv.system.threads >= 1


def test_visibility_helpers_directly():
    devs = [GpuDevice(i, f"GPU-{i}", "cuda", "x", GiB, GiB) for i in range(3)]
    assert cuda_visible(devs, None) == devs
    assert [d.index for d in cuda_visible(devs, "2,0")] == [2, 0]
    assert [d.index for d in cuda_visible(devs, "0,0")] == [0]  # duplicates end the list
    assert [d.index for d in index_visible(devs, "2, 1")] == [2, 1]
    assert index_visible(devs, "x") == []


def test_system_info_counts_only_the_cpus_this_process_may_use(monkeypatch):
    import os

    import psutil

    from ollamapy.placement.gpu import system_info

    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 64 if logical else 32)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    info = system_info()
    assert info.threads == 4 and info.cores == 4 and info.total > 0
