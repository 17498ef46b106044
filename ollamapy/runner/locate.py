"""Find built llama-server runners: OLLAMAPY_RUNNERS, the repo's runners/, the installed package
data dir, then `llama-server` on PATH — the first place that has any wins for each variant."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ollamapy.errors import RunnerNotFound
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.logs import kv
from ollamapy.paths import repo_root
from ollamapy.runner import variants

log = logging.getLogger("ollamapy.runner")


@dataclass(frozen=True)
class Runner:
    variant: str
    binary: Path
    commit: str
    source: str  # which search location found it
    manifest: JsonObject


def search_dirs(environ: dict[str, str] | None = None) -> list[tuple[str, Path]]:
    env = os.environ if environ is None else environ
    dirs: list[tuple[str, Path]] = []
    if env.get("OLLAMAPY_RUNNERS"):
        dirs.append(("OLLAMAPY_RUNNERS", Path(env["OLLAMAPY_RUNNERS"]).expanduser()))
    root = repo_root()
    if root is not None:
        dirs.append(("repo", root / "runners"))
    dirs.append(("package", Path(__file__).resolve().parent.parent / "runners"))
    return dirs


def _read_manifest(d: Path) -> JsonObject | None:
    try:
        data = json.loads((d / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def find_runners(environ: dict[str, str] | None = None) -> list[Runner]:
    found: dict[str, Runner] = {}
    for source, base in search_dirs(environ):
        if not base.is_dir():
            continue
        for d in sorted(base.iterdir()):
            binary = d / "bin" / "llama-server"
            manifest = _read_manifest(d)
            if manifest is None or not os.access(binary, os.X_OK):
                continue
            variant = str(manifest.get("variant", d.name))
            if variant not in found:
                found[variant] = Runner(variant, binary, str(manifest.get("llama_cpp_commit", "")),
                                        source, manifest)
    env = os.environ if environ is None else environ
    on_path = shutil.which("llama-server", path=env.get("PATH"))
    if on_path and "system" not in found:
        found["system"] = Runner("system", Path(on_path), "", "PATH", {})
    order = variants.ORDER
    return sorted(found.values(), key=lambda r: order.get(r.variant, len(order)))


def usable(r: Runner, libraries: Sequence[str]) -> bool:
    """Can this variant use the hardware? GPU variants need a device of their kind."""
    return variants.unusable_reason(r.variant, list(libraries)) is None


def choose(runners: Sequence[Runner], variant: str,
           libraries: Sequence[str] | None) -> tuple[Runner | None, list[tuple[str, str]]]:
    """Pure pick: the runner to use and (variant, why not) for each better one skipped."""
    if variant:
        return next((r for r in runners if r.variant == variant), None), []
    skipped: list[tuple[str, str]] = []
    if libraries is not None:
        for r in runners:
            why = variants.unusable_reason(r.variant, list(libraries))
            if why is None:
                return r, skipped
            skipped.append((r.variant, why))
        if runners:  # nothing fits the hardware: the first one still runs (on the CPU)
            return runners[0], [s for s in skipped if s[0] != runners[0].variant]
    return (runners[0] if runners else None), skipped


def pick_runner(variant: str = "", environ: Mapping[str, str] | None = None,
                libraries: Sequence[str] | None = None) -> Runner:
    """The runner to use: `variant` if given (OLLAMA_LLM_LIBRARY), else the most capable one
    the hardware can use (`libraries` = GPU kinds discovered; None = don't check)."""
    runners = find_runners(dict(environ) if environ is not None else None)
    if not runners:
        raise RunnerNotFound(
            "no llama-server runner found: run `make runner` (or set OLLAMAPY_RUNNERS, "
            "or put llama-server on PATH)"
        )
    picked, skipped = choose(runners, variant, libraries)
    for name, why in skipped:  # e.g. a CUDA build on a host without a GPU
        log.info("not using runner", extra=kv(variant=name, reason=why))
    if picked is None:
        raise RunnerNotFound(
            f"runner variant {variant!r} not found (have: {', '.join(r.variant for r in runners)})"
        )
    return picked


class RunnerLocator:
    """The runner-finding service the app factory builds once: the same environment for every
    lookup (`ollamapy runners`, the scheduler's pick), looked up again on each call because
    `make runner` may run after the server started."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = dict(os.environ if environ is None else environ)

    def find(self) -> list[Runner]:
        return find_runners(self.environ)

    def pick(self, variant: str = "", libraries: Sequence[str] | None = None) -> Runner:
        return pick_runner(variant, self.environ, libraries=libraries)
