"""GPU tests: run on a machine with an NVIDIA GPU and a CUDA runner (`tests/gpu/run_on_device.sh`
builds one and runs them); everywhere else they skip, saying which of the two is missing."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from ollamapy.runner.locate import find_runners


@dataclass(frozen=True)
class SmiGpu:
    uuid: str
    total_mib: int
    free_mib: int
    compute: str


def nvidia_smi() -> list[SmiGpu]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    r = subprocess.run([exe, "--query-gpu=uuid,memory.total,memory.free,compute_cap",
                        "--format=csv,noheader,nounits"], capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        return []
    out = []
    for line in r.stdout.strip().splitlines():
        uuid, total, free, cc = (p.strip() for p in line.split(","))
        out.append(SmiGpu(uuid, int(total), int(free), cc))
    return out


@pytest.fixture(scope="session")
def smi_gpus() -> list[SmiGpu]:
    gpus = nvidia_smi()
    if not gpus:
        pytest.skip("no NVIDIA GPU visible (nvidia-smi missing or lists no device): GPU tests "
                    "run on a device machine via tests/gpu/run_on_device.sh")
    return gpus


@pytest.fixture(scope="session")
def cuda_runner(smi_gpus: list[SmiGpu]) -> Path:
    for r in find_runners():
        if r.variant == "cuda":
            return r.binary
    pytest.skip("no cuda runner built: `make runner VARIANT=cuda` (run_on_device.sh does it)")
    raise AssertionError


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.gpu)
