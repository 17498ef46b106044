"""Model name -> registry URLs (`<scheme>://<host>/v2/<namespace>/<model>/...`).

`hf.co/<user>/<repo>:<quant>` and `huggingface.co/...` are ordinary names whose host is Hugging
Face's registry endpoint, so they go through exactly the same code.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from ollamapy.errors import OllamaError
from ollamapy.store.names import ModelName

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass(frozen=True)
class Target:
    """Where one model lives on its registry."""

    name: ModelName
    base: str          # e.g. https://registry.ollama.ai
    repository: str    # <namespace>/<model>
    tag: str

    @property
    def manifest_url(self) -> str:
        return f"{self.base}/v2/{self.repository}/manifests/{self.tag}"

    def blob_url(self, digest: str) -> str:
        return f"{self.base}/v2/{self.repository}/blobs/{digest}"

    @property
    def upload_url(self) -> str:
        return f"{self.base}/v2/{self.repository}/blobs/uploads/"


def target(name: ModelName, insecure: bool) -> Target:
    """https unless `insecure` (which forces http, as Ollama does); an explicit `http://` name
    without `insecure` is refused."""
    if name.scheme == "http" and not insecure:
        raise OllamaError("insecure protocol http")
    scheme = "http" if insecure else "https"
    return Target(name, f"{scheme}://{name.host}", f"{name.namespace}/{name.model}", name.tag)


def origin(url: str) -> tuple[str, str]:
    """(scheme, host:port) — credentials only ever go back to the exact origin they came from."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def resolve(base: str, location: str) -> str:
    """A Location header (possibly relative) resolved against the URL that returned it."""
    return urllib.parse.urljoin(base, location)
