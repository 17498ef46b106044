"""Pull and push through the real download/upload engine and model store against the local test
registry (tests/registry_server.py): resume, stalls, corruption, traversal, redirects, auth."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ollamapy.errors import BadRequest, NotFound, OllamaError
from ollamapy.registry import download as download_mod
from ollamapy.registry.download import DownloadConfig
from ollamapy.registry.service import RegistryService
from ollamapy.store.names import ModelName
from ollamapy.store.store import ModelStore
from tests.registry_server import CONFIG_TYPE, MANIFEST_TYPE, MODEL_TYPE, TestRegistry

pytestmark = pytest.mark.timeout(60)

KB = 1024
BLOB_SIZE = 3 * 1000 * 1000 + 123       # 12 parts of 256 KB (the last one shorter)
# stall_timeout: long enough that a busy machine never fakes a stall (which would re-send bytes
# and break the exact byte counts below); the stall test sets its own short one.
CFG = DownloadConfig(min_part=256 * KB, max_retries=4, stall_timeout=5, backoff=0.01,
                     resolve_timeout=5, progress_interval=0.01, persist_interval=0.0)


@pytest.fixture
def registry() -> Iterator[TestRegistry]:
    with TestRegistry() as reg:
        yield reg


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def store(root: Path) -> ModelStore:
    return ModelStore(root / "models")


@pytest.fixture
async def svc(store: ModelStore, tmp_path: Path) -> AsyncIterator[RegistryService]:
    s = RegistryService(store, key_path=tmp_path / "key" / "id_ed25519", cfg=CFG)
    from ollamapy.registry import auth

    auth.ensure_keypair(s.key_path)
    yield s
    await s.aclose()


def add_synthetic(reg: TestRegistry, repo: str = "library/synth", tag: str = "latest",
                  size: int = BLOB_SIZE, seed: bytes = b"x") -> dict[str, Any]:
    """A model-shaped manifest whose weights are `size` pseudo-random bytes (made at C speed:
    a sha256 chain over 3 MB was ~120 ms on the test's loop, over the watchdog's limit)."""
    data = random.Random(seed).randbytes(size)
    d, n = reg.add_blob(data=data)
    cd, cn = reg.add_blob(data=json.dumps({"model_format": "gguf", "seed": seed.hex()}).encode())
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                "config": {"mediaType": CONFIG_TYPE, "digest": cd, "size": cn},
                "layers": [{"mediaType": MODEL_TYPE, "digest": d, "size": n},
                           {"mediaType": "application/vnd.ollama.image.params",
                            "digest": reg.add_blob(data=b'{"temperature":0.5}')[0],
                            "size": 19}]}
    reg.add_manifest(repo, tag, manifest)
    return manifest


def name(reg: TestRegistry, repo: str = "library/synth", tag: str = "latest") -> ModelName:
    return ModelName.parse(f"{reg.host}/{repo}:{tag}")


async def pull(svc: RegistryService, n: ModelName) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = []
    await svc.pull(n, True, msgs.append)
    return msgs


def total_size(manifest: dict[str, Any]) -> int:
    return sum(x["size"] for x in [*manifest["layers"], manifest["config"]])


def leftovers(store: ModelStore) -> list[str]:
    return sorted(p.name for p in store.blobs_dir.iterdir() if "partial" in p.name
                  or "tmp" in p.name) if store.blobs_dir.exists() else []


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")} if path.exists() else set()


# ---------- the happy path ----------
async def test_pull_stores_verified_blobs_and_the_raw_manifest(
        registry: TestRegistry, svc: RegistryService, store: ModelStore) -> None:
    manifest = add_synthetic(registry)
    msgs = await pull(svc, name(registry))
    statuses = [m["status"] for m in msgs]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    layers = [m for m in msgs if "digest" in m]
    for layer in [*manifest["layers"], manifest["config"]]:
        mine = [m for m in layers if m["digest"] == layer["digest"]]
        assert mine and mine[-1]["completed"] == mine[-1]["total"] == layer["size"]
        assert mine[0]["status"] == f"pulling {layer['digest'][7:19]}"
        assert store.has_blob(layer["digest"])
    assert store.manifest_bytes(name(registry)) == registry.manifests[("library/synth", "latest")]
    # every byte came exactly once (plus a 1-byte probe per blob for the direct URL)
    assert registry.stats.range_bytes == total_size(manifest) + 3
    assert leftovers(store) == []
    ranged = [r for r in registry.stats.requests if "Range" in r.headers]
    assert len([r for r in ranged if r.headers["Range"] != "bytes=0-0"]) == 12 + 2


async def test_present_blobs_are_not_downloaded_again(
        registry: TestRegistry, svc: RegistryService) -> None:
    add_synthetic(registry)
    await pull(svc, name(registry))
    before = registry.stats.bytes_served
    msgs = await pull(svc, name(registry))
    assert registry.stats.bytes_served == before
    progress = [m for m in msgs if "digest" in m]
    assert len(progress) == 3 and all(m["completed"] == m["total"] for m in progress)


async def test_unknown_model_and_registry_errors(registry: TestRegistry,
                                                 svc: RegistryService) -> None:
    with pytest.raises(OllamaError, match=r"^pull model manifest: file does not exist$"):
        await pull(svc, name(registry, tag="nope"))
    add_synthetic(registry)
    registry.knobs.fail_manifest = 500
    with pytest.raises(OllamaError, match=r"^pull model manifest: 500: registry exploded$"):
        await pull(svc, name(registry))


async def test_unreachable_registry(svc: RegistryService) -> None:
    with pytest.raises(OllamaError, match=r"^pull model manifest: "):
        await pull(svc, ModelName.parse("127.0.0.1:9/library/m:latest"))


async def test_parts_download_in_parallel_but_bounded(
        registry: TestRegistry, store: ModelStore, tmp_path: Path) -> None:
    manifest = add_synthetic(registry)
    registry.knobs.slow = 0.02  # each 256 KB part takes >= 80 ms, so parts overlap
    cfg = DownloadConfig(**{**CFG.__dict__, "parts": 3, "max_part": 256 * KB})
    s = RegistryService(store, key_path=tmp_path / "k", cfg=cfg)
    try:
        await pull(s, name(registry))
    finally:
        await s.aclose()
    assert 1 < registry.stats.max_inflight <= 3  # 12 parts, in parallel, never more than 3
    assert store.has_blob(manifest["layers"][0]["digest"])


# ---------- bad networks ----------
async def test_dropped_connections_resume_without_refetching(
        registry: TestRegistry, svc: RegistryService, store: ModelStore) -> None:
    manifest = add_synthetic(registry)
    registry.knobs.drop_after = 100 * KB
    registry.knobs.drops = 3
    await pull(svc, name(registry))
    assert registry.knobs.drops == 0  # the drops really happened
    assert registry.stats.range_bytes == total_size(manifest) + probes(registry)
    assert store.has_blob(manifest["layers"][0]["digest"]) and leftovers(store) == []


def probes(reg: TestRegistry) -> int:
    """1-byte GETs that find the direct URL (one per blob download attempt)."""
    return len([r for r in reg.stats.requests if r.headers.get("Range") == "bytes=0-0"])


async def test_cancelled_pull_resumes_after_restart(
        registry: TestRegistry, svc: RegistryService, store: ModelStore, tmp_path: Path) -> None:
    manifest = add_synthetic(registry)
    registry.knobs.stall_after = 100 * KB   # one part hangs after 100 KB ...
    registry.knobs.stall_seconds = 30
    n = name(registry)
    seen: list[dict[str, Any]] = []
    task = asyncio.create_task(svc.pull(n, True, seen.append))
    for _ in range(300):  # ... while the other 11 finish (as received, not merely sent)
        await asyncio.sleep(0.01)
        if any(m.get("completed", 0) >= BLOB_SIZE - 256 * KB + 100 * KB for m in seen):
            break
    task.cancel()  # the client gives up (long before stall detection would restart the part)
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)
    kept = leftovers(store)
    assert any(k.endswith("-partial") for k in kept) and any(k.endswith("-11") for k in kept)
    served_before = registry.stats.range_bytes
    assert 0 < served_before < total_size(manifest)
    # "restart": a brand-new service (nothing in memory) picks up the files
    await svc.aclose()
    fresh = RegistryService(store, key_path=svc.key_path, cfg=CFG)
    try:
        registry.knobs.stall_after = None
        await pull(fresh, n)
    finally:
        await fresh.aclose()
    # every byte was sent exactly once across both attempts: nothing finished was re-fetched
    assert registry.stats.range_bytes == total_size(manifest) + probes(registry)
    assert store.has_blob(manifest["layers"][0]["digest"]) and leftovers(store) == []


async def test_progress_records_without_data_start_over(
        registry: TestRegistry, svc: RegistryService, store: ModelStore) -> None:
    manifest = add_synthetic(registry)
    weights = manifest["layers"][0]["digest"]
    registry.knobs.drop_after = 0
    registry.knobs.drops = 10_000
    with pytest.raises(OllamaError):
        await pull(svc, name(registry))
    partial = store.blobs_dir / f"sha256-{weights[7:]}-partial"
    record = Path(f"{partial}-0")
    record.write_text(json.dumps({"N": 0, "Offset": 0, "Size": 256 * KB,  # noqa: ASYNC240
                                  "Completed": 256 * KB}))
    partial.unlink()  # a record claiming bytes whose file is gone must not be believed
    registry.knobs.drops = 0
    await pull(svc, name(registry))
    assert store.has_blob(weights) and leftovers(store) == []


async def test_a_blob_locked_by_another_process_is_not_touched(
        registry: TestRegistry, svc: RegistryService, store: ModelStore) -> None:
    import fcntl

    manifest = add_synthetic(registry)
    weights = manifest["layers"][0]["digest"]
    store.temp_dir()
    partial = store.blobs_dir / f"sha256-{weights[7:]}-partial"
    with partial.open("wb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        with pytest.raises(OllamaError, match="being downloaded by another process"):
            await pull(svc, name(registry))
    assert registry.stats.range_bytes == 0


async def test_stalled_part_restarts_without_using_a_retry(
        registry: TestRegistry, store: ModelStore, tmp_path: Path) -> None:
    manifest = add_synthetic(registry)
    registry.knobs.stall_after = 50 * KB
    registry.knobs.stalls = 3
    registry.knobs.stall_seconds = 3
    one_try = DownloadConfig(**{**CFG.__dict__, "max_retries": 1, "stall_timeout": 0.5})
    s = RegistryService(store, key_path=tmp_path / "k", cfg=one_try)
    try:
        await pull(s, name(registry))
    finally:
        await s.aclose()
    assert registry.knobs.stalls == 0
    assert store.has_blob(manifest["layers"][0]["digest"])


async def test_retries_are_bounded_and_progress_is_kept(
        registry: TestRegistry, svc: RegistryService, store: ModelStore) -> None:
    manifest = add_synthetic(registry)
    registry.knobs.drop_after = 0
    registry.knobs.drops = 10_000
    with pytest.raises(OllamaError, match="max retries exceeded"):
        await pull(svc, name(registry))
    assert not store.has_blob(manifest["layers"][0]["digest"])
    assert any(k.endswith("-partial") for k in leftovers(store))  # resumable later
    registry.knobs.drops = 0
    await pull(svc, name(registry))
    assert leftovers(store) == []


async def test_disk_full_aborts_and_commits_nothing(
        registry: TestRegistry, svc: RegistryService, store: ModelStore,
        monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = add_synthetic(registry)
    real = os.pwrite
    calls = {"n": 0}

    def pwrite(fd: int, data: bytes, pos: int) -> int:
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, pos)

    monkeypatch.setattr(download_mod.os, "pwrite", pwrite)
    with pytest.raises(OllamaError, match="no space left on device"):
        await pull(svc, name(registry))
    assert not store.has_blob(manifest["layers"][0]["digest"])
    with pytest.raises(NotFound):
        store.manifest_bytes(name(registry))


# ---------- corrupt or malicious registries ----------
async def test_wrong_bytes_are_rejected_and_nothing_is_left(
        registry: TestRegistry, svc: RegistryService, store: ModelStore) -> None:
    manifest = add_synthetic(registry)
    registry.knobs.wrong_bytes = True
    want = manifest["layers"][0]["digest"]
    with pytest.raises(OllamaError, match=f"^digest mismatch, file must be downloaded again: "
                                          f"want {want}, got a different digest$"):
        await pull(svc, name(registry))
    assert not store.has_blob(want)
    assert leftovers(store) == []
    with pytest.raises(NotFound):
        store.manifest_bytes(name(registry))


@pytest.mark.parametrize("redirect", [False, True])
async def test_more_bytes_than_declared_are_refused(
        registry: TestRegistry, svc: RegistryService, store: ModelStore, redirect: bool) -> None:
    manifest = add_synthetic(registry)
    registry.knobs.extra_bytes = 4096
    registry.knobs.redirect = redirect
    with pytest.raises(OllamaError, match="size mismatch"):
        await pull(svc, name(registry))
    assert not store.has_blob(manifest["layers"][0]["digest"])
    assert leftovers(store) == []


@pytest.mark.parametrize("digest", ["sha256:../../../../../../tmp/owned",
                                    "sha256-../../../manifests/x",
                                    "../../evil",
                                    "sha256:" + "a" * 64 + "/../../../../owned"])
async def test_traversal_digests_are_rejected_before_any_path(
        registry: TestRegistry, svc: RegistryService, store: ModelStore, root: Path,
        tmp_path: Path, digest: str) -> None:
    good = add_synthetic(registry)
    evil = dict(good)
    evil["layers"] = [*good["layers"], {"mediaType": MODEL_TYPE, "digest": digest, "size": 5}]
    registry.add_manifest("library/evil", "latest", evil)
    before = files_under(tmp_path)
    with pytest.raises(BadRequest, match="invalid digest format"):
        await pull(svc, name(registry, "library/evil"))
    assert files_under(tmp_path) == before  # not a byte written, in the store or elsewhere
    assert not any(r.path.startswith("/v2/library/evil/blobs") for r in registry.stats.requests)


# ---------- redirects and auth ----------
async def test_token_auth_and_cdn_redirect_never_leak_the_token(
        registry: TestRegistry, svc: RegistryService, store: ModelStore) -> None:
    manifest = add_synthetic(registry)
    registry.knobs.require_token = True
    registry.knobs.redirect = True
    await pull(svc, name(registry))
    assert store.has_blob(manifest["layers"][0]["digest"])
    assert registry.stats.tokens_issued == 1  # one token for the whole pull, signature verified
    cdn = registry.stats.hits("cdn")
    assert len(cdn) >= 12 and all("Authorization" not in r.headers for r in cdn)
    authed = [r for r in registry.stats.hits("registry") if r.path.startswith("/v2/")
              and r.headers.get("Authorization", "").startswith("Bearer tok-")]
    assert authed
    assert registry.stats.hits("evil") == []


async def test_a_foreign_realm_never_gets_a_request(
        registry: TestRegistry, svc: RegistryService, store: ModelStore) -> None:
    add_synthetic(registry)
    registry.knobs.require_token = True
    registry.knobs.realm = f"http://{registry.evil_host}/token"
    with pytest.raises(OllamaError, match=f'realm host "{registry.evil_host}" does not match '
                                          f'original host "{registry.host}"'):
        await pull(svc, name(registry))
    assert registry.stats.hits("evil") == []
    assert registry.stats.tokens_issued == 0
    assert all("Authorization" not in r.headers for r in registry.stats.requests)


async def test_without_a_key_a_token_cannot_be_had(
        registry: TestRegistry, store: ModelStore, tmp_path: Path) -> None:
    add_synthetic(registry)
    registry.knobs.require_token = True
    s = RegistryService(store, key_path=tmp_path / "nokey", cfg=CFG)
    try:
        with pytest.raises(OllamaError, match="pull model manifest: open"):
            await pull(s, name(registry))
    finally:
        await s.aclose()


# ---------- sharing and pruning ----------
async def test_two_pulls_of_one_blob_share_one_download(
        registry: TestRegistry, svc: RegistryService, store: ModelStore) -> None:
    manifest = add_synthetic(registry)
    registry.add_manifest("library/synth", "other", manifest)
    registry.knobs.stall_after = 200 * KB  # hold the first download so the second attaches
    registry.knobs.stall_seconds = 0.5
    _, b = await asyncio.gather(pull(svc, name(registry)), pull(svc, name(registry, tag="other")))
    weights = manifest["layers"][0]["digest"]
    mine = [m["completed"] for m in b if m.get("digest") == weights]
    assert mine[-1] == BLOB_SIZE
    assert any(0 < c < BLOB_SIZE for c in mine)  # it watched the shared download progress
    assert registry.stats.range_bytes == total_size(manifest) + probes(registry)
    assert store.manifest_bytes(name(registry, tag="other"))


@pytest.mark.parametrize("noprune", [False, True])
async def test_repull_removes_layers_the_new_manifest_dropped(
        registry: TestRegistry, store: ModelStore, tmp_path: Path, noprune: bool) -> None:
    s = RegistryService(store, key_path=tmp_path / "k", cfg=CFG, noprune=noprune)
    try:
        old = add_synthetic(registry, size=1000, seed=b"old")
        await pull(s, name(registry))
        new = add_synthetic(registry, size=1000, seed=b"new")
        msgs = await pull(s, name(registry))
    finally:
        await s.aclose()
    statuses = [m["status"] for m in msgs]
    old_weights = old["layers"][0]["digest"]
    assert store.has_blob(new["layers"][0]["digest"])
    if noprune:
        assert "removing unused layers" not in statuses and store.has_blob(old_weights)
    else:
        assert statuses[-2:] == ["removing unused layers", "success"]
        assert not store.has_blob(old_weights)
        assert store.has_blob(old["layers"][1]["digest"])  # params layer is shared


# ---------- push ----------
def local_model(store: ModelStore, n: ModelName, size: int = BLOB_SIZE) -> bytes:
    weights = os.urandom(size)
    d, _ = store.write_blob(weights)
    cd, _ = store.write_blob(b'{"model_format":"gguf"}')
    pd, _ = store.write_blob(b'{"stop":["x"]}')
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                "config": {"mediaType": CONFIG_TYPE, "digest": cd, "size": 23},
                "layers": [{"mediaType": MODEL_TYPE, "digest": d, "size": size},
                           {"mediaType": "application/vnd.ollama.image.params", "digest": pd,
                            "size": 14}]}
    data = json.dumps(manifest).encode()
    store.write_manifest(n, data)
    return data


@pytest.mark.parametrize("token, redirect", [(False, False), (True, False), (False, True)])
async def test_push_round_trips(registry: TestRegistry, svc: RegistryService, store: ModelStore,
                                tmp_path: Path, token: bool, redirect: bool) -> None:
    n = name(registry, "me/pushed", "v1")
    data = local_model(store, n)
    registry.knobs.require_token = token
    registry.knobs.upload_redirect = redirect
    msgs: list[dict[str, Any]] = []
    await svc.push(n, True, msgs.append)
    statuses = [m["status"] for m in msgs]
    assert statuses[0] == "retrieving manifest"
    assert statuses[-2:] == ["pushing manifest", "success"]
    manifest = json.loads(data)
    for layer in [*manifest["layers"], manifest["config"]]:
        mine = [m for m in msgs if m.get("digest") == layer["digest"]]
        assert mine[0]["status"] == f"pushing {layer['digest'][7:19]}"
        assert mine[-1]["completed"] == mine[-1]["total"] == layer["size"]
    assert registry.manifests[("me/pushed", "v1")] == data
    if redirect:
        assert any(r.method == "PUT" and "Authorization" not in r.headers
                   for r in registry.stats.hits("cdn"))
    # pull it back under another name into another store: same digests, same bytes
    other = ModelStore(tmp_path / "other")
    back = RegistryService(other, key_path=svc.key_path, cfg=CFG)
    try:
        registry.add_manifest("me/copy", "v2", data)
        await back.pull(name(registry, "me/copy", "v2"), True, lambda m: None)
    finally:
        await back.aclose()
    assert other.manifest_bytes(name(registry, "me/copy", "v2")) == data
    for layer in [*manifest["layers"], manifest["config"]]:
        assert other.blob_path(layer["digest"]).read_bytes() == \
            store.blob_path(layer["digest"]).read_bytes()


async def test_push_skips_blobs_the_registry_has(registry: TestRegistry, svc: RegistryService,
                                                 store: ModelStore) -> None:
    n = name(registry, "me/pushed", "v1")
    local_model(store, n, size=1000)
    await svc.push(n, True, lambda m: None)
    uploads = len([r for r in registry.stats.requests if r.method == "PATCH"])
    await svc.push(name(registry, "me/pushed", "v1"), True, lambda m: None)
    assert len([r for r in registry.stats.requests if r.method == "PATCH"]) == uploads


async def test_push_of_a_missing_model(registry: TestRegistry, svc: RegistryService) -> None:
    msgs: list[dict[str, Any]] = []
    with pytest.raises(NotFound):
        await svc.push(name(registry, "me/none", "v1"), True, msgs.append)
    assert [m["status"] for m in msgs] == ["retrieving manifest", "couldn't retrieve manifest"]


async def test_push_mounts_layers_from_their_source_repository(
        registry: TestRegistry, svc: RegistryService, store: ModelStore) -> None:
    src = add_synthetic(registry, size=2000)
    await pull(svc, name(registry))  # the base model, pulled from this registry
    weights = dict(src["layers"][0], **{"from": f"{registry.host}/library/synth:latest"})
    derived = {**src, "layers": [weights, *src["layers"][1:]]}
    n = name(registry, "me/derived", "v1")
    store.write_manifest(n, json.dumps(derived).encode())
    registry.knobs.head_missing = True  # so the upload flow (not HEAD) must find the blob
    await svc.push(n, True, lambda m: None)
    posts = [r.path for r in registry.stats.requests if r.method == "POST"]
    assert f"/v2/me/derived/blobs/uploads/?mount={weights['digest'].replace(':', '%3A')}" \
        f"&from=library%2Fsynth" in posts
    assert not [r for r in registry.stats.requests if r.method == "PATCH"
                and r.headers.get("Content-Range", "").endswith(f"-{2000 - 1}")]
    assert ("me/derived", "v1") in registry.manifests
