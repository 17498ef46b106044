"""Model store: Ollama's layout, atomic writes, case-insensitive lookup, GC, capabilities."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from ollamapy.errors import BadRequest, NotFound, OllamaError
from ollamapy.store import store as st
from ollamapy.store.create import CreateSpec, create_model, valid_rel_path
from ollamapy.store.names import ModelName
from ollamapy.store.register import import_blob, register_gguf
from tests.unit.test_gguf import write_fixture


@pytest.fixture
def gguf_file(tmp_path: Path) -> Path:
    return write_fixture(tmp_path / "tiny.gguf", template="{% for m in messages %}{% endfor %}")


@pytest.fixture
def store(tmp_path: Path) -> st.ModelStore:
    return st.ModelStore(tmp_path / "models")


def statuses() -> tuple[list[str], Any]:
    seen: list[str] = []
    return seen, lambda p: seen.append(p["status"])


def make(store: st.ModelStore, gguf: Path, name: str = "tiny", **kw: Any) -> list[str]:
    d = import_blob(store, gguf)
    seen, cb = statuses()
    create_model(store, ModelName.parse(name), CreateSpec(files={"tiny.gguf": d}, **kw), cb)
    return seen


def test_layout_is_ollamas(store: st.ModelStore, gguf_file: Path) -> None:
    seen = make(store, gguf_file, "tiny:1b", system="be brief", template="{{ .Prompt }}",
                parameters={"temperature": 0.5, "stop": ["<a>", "<b>"]}, license=["MIT"],
                messages=[{"role": "user", "content": "hi"}])
    assert seen[0] == "parsing GGUF" and seen[-2:] == ["writing manifest", "success"]
    mpath = store.root / "manifests/registry.ollama.ai/library/tiny/1b"
    assert mpath.is_file()
    m = json.loads(mpath.read_bytes())
    assert m["schemaVersion"] == 2
    assert m["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert m["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    types = [x["mediaType"] for x in m["layers"]]
    assert types == ["application/vnd.ollama.image." + t for t in
                     ("model", "template", "system", "license", "params", "messages")]
    for layer in [*m["layers"], m["config"]]:
        blob = store.root / "blobs" / layer["digest"].replace(":", "-")
        assert blob.is_file() and blob.stat().st_size == layer["size"]
        assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == layer["digest"]
    cfg = json.loads((store.root / "blobs" / m["config"]["digest"].replace(":", "-")).read_text())
    assert cfg["model_format"] == "gguf" and cfg["model_family"] == "llama"
    assert cfg["model_families"] == ["llama"] and cfg["file_type"] == "F16"
    assert cfg["model_type"] == "5K" and cfg["os"] == "linux"
    assert cfg["rootfs"]["type"] == "layers"
    params = json.loads(store.read_blob_text(m["layers"][4]["digest"]))
    assert params == {"temperature": 0.5, "stop": ["<a>", "<b>"]}
    # Nothing but blobs/ and manifests/ (no temp files left behind).
    assert sorted(p.name for p in store.root.iterdir()) == ["blobs", "manifests"]
    assert all(p.name.startswith("sha256-") and len(p.name) == 71
               for p in (store.root / "blobs").iterdir())


def test_resolve_model(store: st.ModelStore, gguf_file: Path) -> None:
    make(store, gguf_file, "tiny", system="S", parameters={"num_ctx": 128})
    m = store.resolve("TINY:Latest")
    assert m.name == "registry.ollama.ai/library/tiny:latest"
    assert m.short_name == "tiny:latest"
    assert m.system == "S" and m.template is None and m.params == {"num_ctx": 128}
    assert m.model_path.is_file()
    assert m.capabilities == ("completion",)
    raw = (store.root / "manifests/registry.ollama.ai/library/tiny/latest").read_bytes()
    assert m.digest == hashlib.sha256(raw).hexdigest()
    assert m.config["model_family"] == "llama"
    with pytest.raises(NotFound, match="model 'nope' not found"):
        store.resolve("nope")


def test_handmade_ollama_store_is_listed(store: st.ModelStore, gguf_file: Path) -> None:
    """A store laid out by Ollama itself (manifest written by hand) lists and resolves."""
    data = gguf_file.read_bytes()
    mdig = "sha256:" + hashlib.sha256(data).hexdigest()
    cfg = b'{"model_format":"gguf","model_family":"llama","model_families":["llama"],' \
          b'"model_type":"5K","file_type":"F16","architecture":"amd64","os":"linux",' \
          b'"rootfs":{"type":"layers","diff_ids":[]}}'
    cdig = "sha256:" + hashlib.sha256(cfg).hexdigest()
    tmpl = b"{{ .System }}{{ .Prompt }}{{ if .Tools }}{{ .Tools }}{{ end }}"
    tdig = "sha256:" + hashlib.sha256(tmpl).hexdigest()
    blobs = store.root / "blobs"
    blobs.mkdir(parents=True)
    for d, b in ((mdig, data), (cdig, cfg), (tdig, tmpl)):
        (blobs / d.replace(":", "-")).write_bytes(b)
    manifest = {"schemaVersion": 2, "mediaType": st.MEDIA_MANIFEST,
                "config": {"mediaType": st.MEDIA_CONFIG, "digest": cdig, "size": len(cfg)},
                "layers": [{"mediaType": st.MEDIA_MODEL, "digest": mdig, "size": len(data)},
                           {"mediaType": st.MEDIA_TEMPLATE, "digest": tdig,
                            "size": len(tmpl)}]}
    mdir = store.root / "manifests/registry.ollama.ai/someone/Thing"
    mdir.mkdir(parents=True)
    (mdir / "Q4").write_text(json.dumps(manifest, indent=2))
    (store.root / "manifests/registry.ollama.ai/someone/stray-file").write_text("x")
    [e] = store.list_models()
    assert e.name.display_shortest() == "someone/Thing:Q4"
    assert e.size == len(data) + len(cfg) + len(tmpl)
    m = store.resolve("someone/thing:q4")
    assert m.template == tmpl.decode()
    assert m.capabilities == ("completion", "tools")


def test_list_sorted_newest_first(store: st.ModelStore, gguf_file: Path) -> None:
    make(store, gguf_file, "a")
    make(store, gguf_file, "b")
    a = store.root / "manifests/registry.ollama.ai/library/a/latest"
    os.utime(a, (a.stat().st_atime, a.stat().st_mtime + 100))
    assert [e.name.model for e in store.list_models()] == ["a", "b"]


def test_delete_keeps_shared_blobs(store: st.ModelStore, gguf_file: Path) -> None:
    make(store, gguf_file, "a", system="only a")
    make(store, gguf_file, "b")
    a = store.resolve("a")
    sys_digest = next(x["digest"] for x in store.read_manifest("a")["layers"]
                      if x["mediaType"] == st.MEDIA_SYSTEM)
    store.delete("a")
    assert a.model_path.is_file()            # shared with b
    assert not store.has_blob(sys_digest)    # only a used it
    assert not (store.root / "manifests/registry.ollama.ai/library/a").exists()
    store.delete("b")
    assert not a.model_path.exists()
    with pytest.raises(NotFound):
        store.delete("b")


def test_create_over_prunes_replaced_layers(store: st.ModelStore, gguf_file: Path) -> None:
    make(store, gguf_file, "a", system="one")
    old = next(x["digest"] for x in store.read_manifest("a")["layers"]
               if x["mediaType"] == st.MEDIA_SYSTEM)
    make(store, gguf_file, "a", system="two")
    assert not store.has_blob(old)
    assert store.resolve("a").system == "two"


def test_create_from_existing_merges(store: st.ModelStore, gguf_file: Path) -> None:
    make(store, gguf_file, "base", system="sys", parameters={"temperature": 0.1, "top_k": 5})
    _, cb = statuses()
    create_model(store, ModelName.parse("child"),
                 CreateSpec(from_="base", parameters={"temperature": 0.9}, system=""), cb)
    c = store.resolve("child")
    assert c.params == {"temperature": 0.9, "top_k": 5}
    assert c.system is None                     # "" unsets it
    layer = store.read_manifest("child")["layers"][0]
    assert layer["from"] == "base:latest"


@pytest.mark.parametrize(("spec", "err", "msg"), [
    (CreateSpec(), BadRequest, "neither 'from' or 'files' was specified"),
    (CreateSpec(from_="missing"), NotFound, "model 'missing' not found"),
    (CreateSpec(files={"../x.gguf": "sha256:" + "a" * 64}), BadRequest,
     "file path must be relative"),
    (CreateSpec(files={"/etc/passwd": "sha256:" + "a" * 64}), BadRequest,
     "file path must be relative"),
    (CreateSpec(files={"x.gguf": ""}), BadRequest, "invalid digest format"),
    (CreateSpec(files={"x.gguf": "../../etc/passwd"}), BadRequest, "invalid digest format"),
    (CreateSpec(files={"x.gguf": "sha256:" + "a" * 64}), BadRequest, "not found"),
    (CreateSpec(from_="x", parameters={"bogus": 1}), BadRequest, "unknown parameter 'bogus'"),
    (CreateSpec(from_="x", parameters={"num_ctx": "abc"}), BadRequest, "invalid"),
    (CreateSpec(from_="x", adapters={"a": "sha256:" + "a" * 64, "b": "sha256:" + "b" * 64}),
     BadRequest, "only one adapter is currently supported"),
])
def test_create_errors(store: st.ModelStore, spec: CreateSpec, err: type, msg: str) -> None:
    with pytest.raises(err, match=msg):
        create_model(store, ModelName.parse("m"), spec, lambda p: None)
    assert not (store.root / "manifests").exists()


@pytest.mark.parametrize(("template", "msg"), [
    ("{{ .Prompt ", "template error: unclosed action"),
    ("{{ if }}", "template error: missing value for command"),
    ("{{ if .System }}x", "template error: unexpected EOF in if"),
])
def test_create_refuses_a_template_that_does_not_parse(store: st.ModelStore, gguf_file: Path,
                                                       template: str, msg: str) -> None:
    """Ollama parses TEMPLATE at create (400 `template error: ...`); stored unparsed, it failed
    every later request to the model, after loading it. Nothing is written."""
    make(store, gguf_file, "base")
    blobs = set(store.blobs_dir.iterdir())
    with pytest.raises(BadRequest, match=msg):
        create_model(store, ModelName.parse("child"), CreateSpec(from_="base",
                                                                 template=template),
                     lambda p: None)
    assert set(store.blobs_dir.iterdir()) == blobs
    assert store.find_manifest(ModelName.parse("child")) is None


def test_create_refuses_text_layers_the_store_could_not_read_back(
        store: st.ModelStore, gguf_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store reads a model's text layers within one budget (OLLAMAPY_MAX_TEXT_LAYER_BYTES)
    and each within MAX_TEXT_LAYER_BYTES: create refuses what it could never read (a 400,
    before any blob is written), so show/generate cannot be 500s on the model later. The
    budget counts the base model's kept layers too."""
    from ollamapy.errors import LimitExceeded

    monkeypatch.setenv("OLLAMAPY_MAX_TEXT_LAYER_BYTES", "1000")
    make(store, gguf_file, "base")
    ok = CreateSpec(from_="base", system="s" * 400, license=["l" * 400])
    create_model(store, ModelName.parse("fits"), ok, lambda p: None)
    assert store.resolve("fits").system == "s" * 400
    blobs = set(store.blobs_dir.iterdir())
    for spec in (CreateSpec(from_="base", system="s" * 1001),
                 CreateSpec(from_="base", license=["l" * 600, "m" * 600]),
                 CreateSpec(from_="fits", template="t" * 300)):  # 400 + 400 kept + 300
        with pytest.raises(LimitExceeded, match="too large: a model's text layers"):
            create_model(store, ModelName.parse("big"), spec, lambda p: None)
    assert set(store.blobs_dir.iterdir()) == blobs
    assert store.find_manifest(ModelName.parse("big")) is None
    monkeypatch.setattr(st, "MAX_TEXT_LAYER_BYTES", 500)  # each layer's own cap
    with pytest.raises(LimitExceeded):
        create_model(store, ModelName.parse("big"), CreateSpec(from_="base", system="s" * 600),
                     lambda p: None)


def test_create_rejects_non_gguf(store: st.ModelStore, tmp_path: Path) -> None:
    p = tmp_path / "x.bin"
    p.write_bytes(b"not a gguf at all")
    d = import_blob(store, p)
    with pytest.raises(BadRequest, match="supplied file was not in GGUF format"):
        create_model(store, ModelName.parse("m"), CreateSpec(files={"x.bin": d}),
                     lambda p: None)


def test_commit_blob_verifies(store: st.ModelStore) -> None:
    fd, tmp = store.new_temp()
    os.write(fd, b"hello")
    os.close(fd)
    with pytest.raises(BadRequest, match="digest mismatch"):
        store.commit_blob(tmp, "sha256:" + "0" * 64)
    assert not tmp.exists()
    fd, tmp = store.new_temp()
    os.write(fd, b"hello")
    os.close(fd)
    d = "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert store.commit_blob(tmp, d).read_bytes() == b"hello"
    assert store.has_blob(d)


def test_paths_stay_inside(store: st.ModelStore) -> None:
    with pytest.raises(BadRequest):
        store.blob_path("../../etc/passwd")
    p = store.blob_path("sha256-" + "A" * 64)
    assert p.parent == store.root / "blobs" and p.name == "sha256-" + "a" * 64


def test_prune(store: st.ModelStore, gguf_file: Path) -> None:
    make(store, gguf_file, "keep")
    blobs = store.root / "blobs"
    orphan = blobs / ("sha256-" + "c" * 64)
    orphan.write_bytes(b"x")
    partial = blobs / ("sha256-" + "d" * 64 + "-partial")
    partial.write_bytes(b"x")
    fresh = blobs / ("sha256-" + "e" * 64)
    fresh.write_bytes(b"x")
    for f in (orphan, partial):
        os.utime(f, (0, 0))
    (store.root / "manifests/h/n/m").mkdir(parents=True)
    removed = store.prune()
    assert not orphan.exists() and not partial.exists()
    assert fresh.exists()                        # inside the grace period (upload in flight)
    assert not (store.root / "manifests/h").exists()
    assert store.resolve("keep").model_path.exists()
    assert len(removed) == 2
    assert store.prune(grace_s=0) == [fresh.name]


def test_prune_keeps_resumable_partial_downloads(store: st.ModelStore, gguf_file: Path) -> None:
    """A pull interrupted by a restart resumes: its partial file and progress records survive
    start-up pruning for days, and go together once abandoned (or once the blob is complete)."""
    import fcntl
    import time

    make(store, gguf_file, "keep")
    blobs = store.root / "blobs"
    now = time.time()

    def partial(ch: str, age: float) -> list[Path]:
        base = blobs / ("sha256-" + ch * 64 + "-partial")
        files = [base, Path(f"{base}-0"), Path(f"{base}-1"), Path(f"{base}-1.tmp")]
        for f in files:
            f.write_bytes(b"{}")
            os.utime(f, (now - age, now - age))
        return files

    resumable = partial("a", 2 * 3600)             # older than the 1 h stray-file grace
    abandoned = partial("b", 8 * 24 * 3600)
    done = partial("c", 2 * 3600)                  # its blob is already complete
    (blobs / ("sha256-" + "c" * 64)).write_bytes(b"x")
    locked = partial("e", 30 * 24 * 3600)          # another server is downloading it
    fd = os.open(locked[0], os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        removed = store.prune()
    finally:
        os.close(fd)
    assert all(f.exists() for f in resumable + locked)
    assert not any(f.exists() for f in abandoned)
    assert not any(f.exists() for f in done[:3]) and not done[3].exists()
    assert sorted(removed) == sorted(f.name for f in abandoned + done)


def test_prune_skipped_when_a_manifest_is_corrupt(store: st.ModelStore, gguf_file: Path) -> None:
    make(store, gguf_file, "keep")
    bad = store.root / "manifests/registry.ollama.ai/library/bad/latest"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    orphan = store.root / "blobs" / ("sha256-" + "c" * 64)
    orphan.write_bytes(b"x")
    assert store.prune(grace_s=0) == []
    assert orphan.exists()
    assert [e.name.model for e in store.list_models()] == ["keep"]  # bad one skipped


def test_manifest_with_traversal_digest_rejected(store: st.ModelStore) -> None:
    bad = {"schemaVersion": 2, "layers": [{"mediaType": st.MEDIA_MODEL,
                                           "digest": "sha256:../../../../etc/passwd"}]}
    with pytest.raises(OllamaError):
        store.write_manifest("evil", json.dumps(bad).encode())
    p = store.root / "manifests/registry.ollama.ai/library/evil/latest"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps(bad))
    with pytest.raises(NotFound):
        store.resolve("evil")
    assert store.list_models() == []


def test_interrupted_write_keeps_old_state(store: st.ModelStore, gguf_file: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    make(store, gguf_file, "a", system="old")
    before = store.manifest_bytes("a")

    def boom(*a: Any, **k: Any) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(st.os, "replace", boom)
    with pytest.raises(OSError):
        make(store, gguf_file, "a", system="new")
    monkeypatch.undo()
    assert store.manifest_bytes("a") == before
    assert not [p for p in store.root.rglob(".tmp-*")]


def test_concurrent_creates_and_deletes(store: st.ModelStore, gguf_file: Path) -> None:
    d = import_blob(store, gguf_file)
    # A model that keeps the weights referenced (otherwise deleting the last user of the blob
    # legitimately garbage-collects it and a later create must upload it again).
    create_model(store, ModelName.parse("keeper"), CreateSpec(files={"t.gguf": d}),
                 lambda p: None)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(5):
                name = ModelName.parse(f"m{i % 3}")
                create_model(store, name, CreateSpec(files={"t.gguf": d}, system=f"{i}-{j}"),
                             lambda p: None)
                if j % 2:
                    try:
                        store.delete(name)
                    except NotFound:
                        pass
        except BaseException as e:  # collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    # Every surviving model is complete, and no blob is left that nobody references.
    refs: set[str] = set()
    for e in store.list_models():
        m = store.resolve(e.name)
        assert m.model_path.is_file()
        refs |= store.layer_digests(e.manifest)
    on_disk = {"sha256:" + p.name[7:] for p in (store.root / "blobs").iterdir()}
    assert refs <= on_disk


def test_register_is_idempotent(tmp_path: Path, gguf_file: Path) -> None:
    root = tmp_path / "m2"
    assert register_gguf(root, gguf_file, "x:1") == "x:1"
    mtime = (root / "manifests/registry.ollama.ai/library/x/1").stat().st_mtime_ns
    assert register_gguf(root, gguf_file, "x:1") == "x:1"
    assert (root / "manifests/registry.ollama.ai/library/x/1").stat().st_mtime_ns == mtime


@pytest.mark.parametrize(("p", "ok"), [("a.gguf", True), ("d/a.gguf", True), ("/a", False),
                                       ("../a", False), ("a/../b", False), ("", False),
                                       ("a//b", False), ("a\\b", False)])
def test_valid_rel_path(p: str, ok: bool) -> None:
    assert valid_rel_path(p) is ok


# Capabilities now come from inference.capabilities (Ollama's Capabilities(), in its order:
# the GGUF chat template's tools/thinking first, then completion|embedding, then the Go
# template's); a Jinja template counts as thinking only with both <think> and </think>.
@pytest.mark.parametrize(("template", "jinja", "caps"), [
    (None, "{% for m in messages %}{% endfor %}", ["completion"]),
    (None, "{% if tools %}{{ tools }}{% endif %}", ["tools", "completion"]),
    (None, "{% if enable_thinking %}<think>{% endif %}", ["completion"]),
    (None, "{% if enable_thinking %}<think></think>{% endif %}", ["thinking", "completion"]),
    # the GGUF template can do more than this TEMPLATE: Ollama prefers it (prefer_jinja)
    ("{{ .Prompt }}", "{% if tools %}{% endif %}", ["tools", "completion"]),
    ("{{ .Prompt }}{{ .Suffix }}", None, ["completion", "insert"]),
    ("{{ if .Tools }}{{ .Tools }}{{ end }}{{ if .Thinking }}<think>{{ .Thinking }}</think>"
     "{{ end }}", None, ["completion", "tools", "thinking"]),
])
def test_capabilities(tmp_path: Path, template: str | None, jinja: str | None,
                      caps: list[str]) -> None:
    from ollamapy.gguf import read_gguf
    from ollamapy.inference.capabilities import model_capabilities

    g = read_gguf(write_fixture(tmp_path / "c.gguf", template=jinja))
    assert model_capabilities(g, template, [], {}) == caps


def test_capabilities_embedding_and_vision(tmp_path: Path) -> None:
    from ollamapy.gguf import read_gguf
    from ollamapy.inference.capabilities import model_capabilities

    g = read_gguf(write_fixture(tmp_path / "e.gguf", pooling=True, template=None))
    assert model_capabilities(g, None, [], {}) == ["embedding"]
    g = read_gguf(write_fixture(tmp_path / "v.gguf", template=None))
    assert model_capabilities(g, None, [tmp_path / "mmproj"], {}) == ["completion", "vision"]


def test_resolved_model_carries_config_capabilities(store: st.ModelStore,
                                                    tmp_path: Path) -> None:
    """A RENDERER/PARSER in the config blob decides the capabilities (the parser's tools and
    thinking), and the GGUF's Jinja template is then not consulted."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from families_fixture import FAMILIES, write_family_model

    g = write_fixture(tmp_path / "f.gguf", template="{% if tools %}{% endif %}")
    name = write_family_model(store.root, "fam/q:test", g, FAMILIES["qwen3-coder"])
    m = store.resolve(name)
    assert m.config["renderer"] == "qwen3-coder" and m.config["parser"] == "qwen3-coder"
    assert m.capabilities == ("completion", "tools")
    assert not m.prefer_jinja


def test_symlinked_manifest_dirs_are_ignored(store: st.ModelStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "m").mkdir(parents=True)
    (outside / "m" / "latest").write_text('{"schemaVersion":2,"layers":[]}')
    lib = store.root / "manifests/registry.ollama.ai"
    lib.mkdir(parents=True)
    (lib / "library").symlink_to(outside)
    assert store.list_models() == []
    with pytest.raises(NotFound):
        store.resolve("m")


def test_resolve_reuses_the_model_until_the_manifest_is_replaced(
        store: st.ModelStore, gguf_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every inference request resolves its model: a repeated name costs a stat of the cached
    manifest path, not the lookup (name parsing, case-insensitive search, layer reads)."""
    make(store, gguf_file, "tiny", system="S1")
    finds: list[object] = []
    real_find = store.find_manifest

    def counting_find(name: ModelName) -> Path | None:
        finds.append(name)
        return real_find(name)

    monkeypatch.setattr(store, "find_manifest", counting_find)
    first = store.resolve("tiny")
    for _ in range(3):
        assert store.resolve("tiny") is first
    assert len(finds) == 1
    make(store, gguf_file, "tiny", system="S2")  # create-over: a new manifest file
    finds.clear()
    second = store.resolve("tiny")
    assert len(finds) == 1 and second.system == "S2"  # looked up again, not served stale
    store.delete("tiny")
    with pytest.raises(NotFound, match="model 'tiny' not found"):
        store.resolve("tiny")


def test_route_lookup_keeps_its_not_found_wording(store: st.ModelStore) -> None:
    from ollamapy.inference.plan import resolve_model

    with pytest.raises(NotFound, match="try pulling"):
        resolve_model(store, "m", not_found='model "m" not found, try pulling it first')
    with pytest.raises(NotFound, match="model 'm' not found"):
        resolve_model(store, "m")
    with pytest.raises(BadRequest, match="invalid model name"):
        resolve_model(store, "bad name!")


async def test_resolve_on_the_loop_never_waits_for_a_create_in_a_thread(
        store: st.ModelStore, gguf_file: Path) -> None:
    """A long /api/create holds the store lock in a worker thread; resolve() runs on the event
    loop for every request and must not wait for it (it used to take the same lock)."""
    import asyncio

    make(store, gguf_file, "warm")
    make(store, gguf_file, "cold")
    store.resolve("warm")  # cached: the hit path
    in_create, release, created = threading.Event(), threading.Event(), threading.Event()

    def progress(p: dict[str, Any]) -> None:
        if p["status"] == "writing manifest":  # inside create's `with store.lock:`
            in_create.set()
            release.wait(60)  # guard only: the test never relies on it expiring

    def create() -> None:
        try:
            create_model(store, ModelName.parse("new"),
                         CreateSpec(files={"tiny.gguf": import_blob(store, gguf_file)}), progress)
        finally:
            created.set()

    worker = threading.Thread(target=create)
    worker.start()
    try:
        assert await asyncio.to_thread(in_create.wait, 60)
        assert store.resolve("warm").short_name == "warm:latest"
        assert store.resolve("cold").short_name == "cold:latest"  # the miss path too
        assert not created.is_set()  # both answered while the create still held the lock
    finally:
        release.set()
        worker.join()
    assert created.is_set() and store.resolve("new").short_name == "new:latest"


def test_template_actions_scan_is_linear() -> None:
    """A TEMPLATE layer of 400k `{` made the lazy `{{(.*?)}}` regex quadratic (minutes per
    /api/tags, holding the GIL). It runs in a child so a regression is killed by the deadline
    instead of hanging the suite; the deadline is a hang guard (a linear scan takes ms)."""
    import subprocess
    import sys

    code = ("from ollamapy.inference.capabilities import template_vars; "
            "print(template_vars('{' * 400_000))")
    root = str(Path(__file__).resolve().parents[2])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=root, env={**os.environ, "PYTHONPATH": root})
    assert r.returncode == 0 and r.stdout.strip() == "set()", r.stderr
    from ollamapy.inference.capabilities import go_actions, template_vars

    assert template_vars("{{ .Tools }}x{{{ .Suffix}}}{{ if .Thinking }}") == {
        "tools", "suffix", "thinking"}
    assert go_actions("a{{ .A }}b{{}}c{{ .B") == " .A  "
