"""Register a local GGUF file as a model, offline, through the same create code as /api/create.

Used for the default model (`python -m ollamapy.default_model --register`) and by tests; the GGUF
is hard-linked into blobs/ when possible (same filesystem), copied otherwise, and always verified.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from ollamapy.errors import NotFound
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.store import store as st
from ollamapy.store.create import CreateSpec, create_model
from ollamapy.store.digest import sha256_file, validate_digest
from ollamapy.store.names import ModelName


def import_blob(store: st.ModelStore, src: Path, digest: str | None = None) -> str:
    """Put file `src` into the blob store (link or copy, then verify) -> its digest."""
    if digest is not None and store.has_blob(digest) and \
            store.blob_path(digest).stat().st_size == src.stat().st_size:
        return validate_digest(digest)
    want = digest or sha256_file(src)
    fd, tmp = store.new_temp()
    os.close(fd)
    tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    try:
        store.commit_blob(tmp, want)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return validate_digest(want)


def register_gguf(models_dir: Path, gguf: Path, name: str, *, digest: str | None = None,
                  quiet: bool = True) -> str:
    """Idempotently make `name` a model whose weights are `gguf`; returns the display name."""
    store = st.ModelStore(models_dir)
    mname = ModelName.parse(name)
    d = import_blob(store, gguf, digest)
    with contextlib.suppress(NotFound):
        m = store.resolve(mname)
        if m.model_path == store.blob_path(d):
            return m.short_name

    def progress(p: JsonObject) -> None:
        if not quiet:
            print(p["status"])

    create_model(store, mname, CreateSpec(files={gguf.name: d}), progress)
    return mname.display_shortest()
