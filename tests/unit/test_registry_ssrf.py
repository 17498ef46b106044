"""Pull cannot be turned against internal services (issue 11): redirects and DNS answers into
loopback/private/link-local are refused unless the named registry is itself internal; errors do
not echo what a redirect target sent; a manifest declaring a 16 TiB blob leaves nothing behind."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from ollamapy.errors import OllamaError
from ollamapy.registry import netguard
from ollamapy.registry.download import DownloadConfig, plan_parts
from ollamapy.registry.netguard import BlockedAddress, address_kind, host_kind
from ollamapy.registry.service import RegistryService
from ollamapy.store.names import ModelName
from ollamapy.store.store import ModelStore
from tests.registry_server import INTERNAL_SECRET, MANIFEST_TYPE, MODEL_TYPE, TestRegistry

pytestmark = pytest.mark.timeout(60)
CFG = DownloadConfig(min_part=256 * 1024, max_retries=2, stall_timeout=5, backoff=0.01,
                     resolve_timeout=2, progress_interval=0.01, persist_interval=0.0)
REAL_KIND = address_kind


@pytest.mark.parametrize(("ip", "kind"), [
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("::ffff:169.254.169.254", "link-local"), ("127.0.0.1", "internal"),
    ("10.0.0.5", "internal"), ("192.168.1.1", "internal"), ("172.16.0.1", "internal"),
    ("100.64.0.1", "internal"), ("0.0.0.0", "internal"), ("::1", "internal"),
    ("fd00::1", "internal"), ("::ffff:127.0.0.1", "internal"), ("8.8.8.8", "public"),
    ("2606:4700::1111", "public")])
def test_address_kinds(ip: str, kind: str) -> None:
    assert address_kind(ip) == kind


def test_host_kinds_by_name() -> None:
    assert host_kind("localhost") == "internal" and host_kind("[::1]") == "internal"
    assert host_kind("registry.ollama.ai") is None  # decided by DNS at connect time
    with pytest.raises(BlockedAddress):
        netguard.check_host("169.254.169.254", allow_internal=True)  # link-local: always
    with pytest.raises(BlockedAddress):
        netguard.check_host("127.0.0.1", allow_internal=False)
    netguard.check_host("10.0.0.5", allow_internal=True)


async def test_registry_named_by_internal_address_is_internal() -> None:
    assert await netguard.registry_is_internal("localhost")
    assert await netguard.registry_is_internal("10.0.0.5")
    assert not await netguard.registry_is_internal("8.8.8.8")


@pytest.fixture
def registry() -> Iterator[TestRegistry]:
    with TestRegistry() as reg:
        yield reg


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


@pytest.fixture
async def svc(store: ModelStore, tmp_path: Path) -> AsyncIterator[RegistryService]:
    from ollamapy.registry import auth

    s = RegistryService(store, key_path=tmp_path / "key" / "id_ed25519", cfg=CFG)
    auth.ensure_keypair(s.key_path)
    yield s
    await s.aclose()


@pytest.fixture
def public_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend 127.0.0.1 (where the test registry listens) is a public address, so the test
    registry plays a public one; 127.0.0.2 (the internal service) stays internal."""
    def kind(ip: str) -> Any:
        return "public" if ip == "127.0.0.1" else REAL_KIND(ip)
    monkeypatch.setattr(netguard, "address_kind", kind)


class FakeDNS(AbstractResolver):
    """`*.internal.test` -> 127.0.0.2, everything else -> 127.0.0.1 (a DNS-rebinding name)."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        ip = "127.0.0.2" if host.endswith("internal.test") else "127.0.0.1"
        return [{"hostname": host, "host": ip, "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


def add_model(reg: TestRegistry, size: int | None = None) -> dict[str, Any]:
    d, n = reg.add_blob(data=b"weights" * 1000)
    cd, cn = reg.add_blob(data=b'{"model_format":"gguf"}')
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                           "digest": cd, "size": cn},
                "layers": [{"mediaType": MODEL_TYPE, "digest": d,
                            "size": n if size is None else size}]}
    reg.add_manifest("library/m", "latest", manifest)
    return manifest


async def pull(svc: RegistryService, reg: TestRegistry) -> None:
    await svc.pull(ModelName.parse(f"{reg.host}/library/m:latest"), True, lambda _m: None)


def leftovers(store: ModelStore) -> list[str]:
    d = store.blobs_dir
    return [p.name for p in d.iterdir() if "partial" in p.name] if d.exists() else []


async def test_public_registry_redirect_to_loopback_is_refused(
        registry: TestRegistry, svc: RegistryService, store: ModelStore,
        public_loopback: None) -> None:
    add_model(registry)
    registry.knobs.redirect_to = f"http://{registry.internal_host}/latest/meta-data"
    with pytest.raises(OllamaError) as e:
        await pull(svc, registry)
    assert "refusing to connect to an internal address" in e.value.message
    assert registry.stats.hits("internal") == []
    assert registry.internal_host not in e.value.message


async def test_public_registry_redirect_to_a_name_resolving_internal_is_refused(
        registry: TestRegistry, svc: RegistryService, monkeypatch: pytest.MonkeyPatch,
        public_loopback: None) -> None:
    monkeypatch.setattr(netguard, "DefaultResolver", FakeDNS)
    add_model(registry)
    port = registry.internal_host.rsplit(":", 1)[1]
    registry.knobs.redirect_to = f"http://metadata.internal.test:{port}/x"
    with pytest.raises(OllamaError, match="refusing to connect"):
        await pull(svc, registry)
    assert registry.stats.hits("internal") == []


async def test_link_local_is_refused_even_for_an_internal_registry(
        registry: TestRegistry, svc: RegistryService) -> None:
    add_model(registry)
    registry.knobs.redirect_to = "http://169.254.169.254/latest/meta-data/iam"
    with pytest.raises(OllamaError, match="refusing to connect to a link-local address"):
        await pull(svc, registry)


async def test_internal_registry_may_redirect_internally(
        registry: TestRegistry, svc: RegistryService, store: ModelStore) -> None:
    m = add_model(registry)
    registry.knobs.redirect = True  # to its CDN on 127.0.0.1: a localhost registry's business
    await pull(svc, registry)
    assert store.has_blob(m["layers"][0]["digest"])


async def test_errors_do_not_echo_what_a_redirect_target_sent(
        registry: TestRegistry, svc: RegistryService) -> None:
    add_model(registry)
    registry.knobs.redirect_to = f"http://{registry.internal_host}/admin?fail=1"
    with pytest.raises(OllamaError) as e:
        await pull(svc, registry)
    assert registry.stats.hits("internal")  # allowed (registry is internal), but...
    assert INTERNAL_SECRET not in e.value.message and "credential" not in e.value.message


async def test_wrong_content_from_a_redirect_is_not_hashed_back(
        registry: TestRegistry, svc: RegistryService) -> None:
    add_model(registry)
    registry.knobs.redirect_to = f"http://{registry.internal_host}/secret"
    with pytest.raises(OllamaError) as e:
        await pull(svc, registry)
    import hashlib
    assert hashlib.sha256(INTERNAL_SECRET.encode()).hexdigest() not in e.value.message
    assert str(len(INTERNAL_SECRET)) not in e.value.message


def test_part_count_is_capped() -> None:
    parts = plan_parts(16 << 40, DownloadConfig())
    assert len(parts) <= 64 and sum(p.size for p in parts) == 16 << 40
    assert len(plan_parts(5 * 10**9, DownloadConfig())) == 16  # Ollama's split unchanged


async def test_a_16_tib_blob_leaves_no_partial_files(
        registry: TestRegistry, svc: RegistryService, store: ModelStore) -> None:
    add_model(registry, size=16 << 40)
    with pytest.raises(OllamaError, match="not enough free disk space"):
        await pull(svc, registry)
    assert leftovers(store) == []


async def test_registry_own_errors_still_reach_the_user(
        registry: TestRegistry, svc: RegistryService) -> None:
    registry.knobs.fail_manifest = 412
    with pytest.raises(OllamaError, match=r"^pull model manifest: 412"):
        await pull(svc, registry)
