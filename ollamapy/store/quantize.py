"""`create --quantize`: an F16/BF16/F32 model blob re-quantized by llama.cpp's `llama-quantize`
(built next to llama-server in every runner directory) into a new blob.

The tool runs as a child process in its own process group, its per-tensor lines
(`[  12/ 272] name - ...`) turned into Ollama's progress (`quantizing F16 model to Q4_K_M`,
digest "0000000000000000000", total/completed in bytes); cancelling the caller kills and reaps
it. The output goes to a temp file in the blob directory and enters the store only through
`commit_blob` (hashed, renamed atomically); a failed or cancelled run leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

from ollamapy.errors import BadRequest, QuantizeError
from ollamapy.gguf import GGUFError, read_gguf
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.runner.process import die_with_parent
from ollamapy.store import store as st
from ollamapy.store.digest import sha256_file

Progress = Callable[[JsonObject], None]

# Ollama's ggml.ParseFileType: the names accepted, and the list its error gives
TYPES = {"F32": "F32", "F16": "F16", "Q8_0": "Q8_0", "Q4_K_S": "Q4_K_S", "Q4_K_M": "Q4_K_M",
         "Q4_K": "Q4_K_M", "BF16": "BF16"}
SUPPORTED_LIST = "F32, F16, Q4_K_S, Q4_K_M, Q8_0"
SOURCE_TYPES = ("F16", "BF16", "F32")
PROGRESS_DIGEST = "0000000000000000000"
_TENSOR = re.compile(rb"^\[\s*(\d+)/\s*(\d+)\]")
MAX_LOG_LINES = 40


def parse_type(name: str) -> str:
    t = TYPES.get(name.upper())
    if t is None:
        raise BadRequest(f"unsupported quantization type {name.upper()} - supported types "
                         f"are {SUPPORTED_LIST}")
    return t


def find_quantizer(environ: dict[str, str] | None = None) -> Path:
    """`llama-quantize` from the runner directories (the CPU build first)."""
    from ollamapy.runner.locate import find_runners

    runners = sorted(find_runners(environ), key=lambda r: r.variant != "cpu")
    for r in runners:
        tool = r.binary.parent / "llama-quantize"
        if os.access(tool, os.X_OK):
            return tool
    raise QuantizeError("quantization needs llama-quantize, which no runner directory has "
                        "(rebuild the runner: make runner)")


def progress_of(line: bytes) -> tuple[int, int] | None:
    """`[  12/ 272] ...` -> (12, 272)."""
    m = _TENSOR.match(line.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def check_source(path: Path, want: str) -> str | None:
    """The source's file type, or None when it already is `want` (nothing to do). Refuses
    models that are not F16/BF16/F32, as Ollama does."""
    try:
        ft = read_gguf(path).file_type
    except (OSError, GGUFError) as e:
        raise BadRequest(f"cannot quantize: {e}") from None
    if ft not in SOURCE_TYPES:
        raise BadRequest("quantization is only supported for F16, BF16 and F32 models")
    return None if ft == want else ft


async def quantize_blob(store: st.ModelStore, digest: str, want: str, progress: Progress,
                        *, tool: Path | None = None, threads: int = 0) -> str:
    """Quantize the blob `digest` to `want` -> the new blob's digest (the same digest when it
    already has that type)."""
    src = store.blob_path(digest)
    ft = await asyncio.to_thread(check_source, src, want)
    if ft is None:
        return digest
    tool = tool or await asyncio.to_thread(find_quantizer)
    size = src.stat().st_size
    status = f"quantizing {ft} model to {want}"
    fd, tmp_name = store.new_temp()
    os.close(fd)
    tmp = Path(tmp_name)
    argv = [str(tool), str(src), str(tmp), want, str(threads or max(1, os.cpu_count() or 1))]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, preexec_fn=die_with_parent(os.getpid()),
        start_new_session=True)  # its own group (killpg on cancel), and dies with the server
    tail: list[str] = []
    try:
        progress({"status": status, "digest": PROGRESS_DIGEST, "total": size, "completed": 0})
        assert proc.stdout is not None
        async for line in proc.stdout:
            step = progress_of(line)
            if step is not None:
                done, total = step
                progress({"status": status, "digest": PROGRESS_DIGEST, "total": size,
                          "completed": size * done // max(1, total)})
            else:
                tail = [*tail[-(MAX_LOG_LINES - 1):], line.decode(errors="replace").rstrip()]
        rc = await proc.wait()
        if rc != 0:
            detail = next((t for t in reversed(tail) if t.strip()), "")
            raise QuantizeError(f"llama-quantize failed ({rc}): {detail}")
        progress({"status": "verifying conversion"})
        out = await asyncio.to_thread(_commit, store, tmp)
        return out
    except BaseException:
        _kill(proc)
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            await asyncio.shield(proc.wait())  # reaped even when cancelled
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # a cancelled run leaves no partial file
        raise


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _commit(store: st.ModelStore, tmp: Path) -> str:
    """Check the output is a GGUF, hash it, rename it into the blob store."""
    try:
        read_gguf(tmp)
    except (OSError, GGUFError) as e:
        raise QuantizeError(f"llama-quantize wrote an unreadable model: {e}") from None
    digest = sha256_file(tmp)
    store.commit_blob(tmp, digest)
    return digest
