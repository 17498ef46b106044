"""Model names as Ollama parses them (`types/model/name.go`): `[host/][namespace/]model[:tag]`.

Every part is validated before a path is built from it, so `.`/`..`, separators and odd characters
can never reach the filesystem. Lookups compare parts case-insensitively.
"""

from __future__ import annotations

from dataclasses import dataclass

from ollamapy.errors import BadRequest

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
_MISSING = "!MISSING!"

_ALNUM_ = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_MAX_LEN = {"host": 350, "namespace": 80, "model": 80, "tag": 80}


def is_valid_part(kind: str, s: str) -> bool:
    """Ollama's isValidPart: first char [A-Za-z0-9_], then [-_.] (no '.' in namespace), ':' host."""
    if not 1 <= len(s) <= _MAX_LEN[kind]:
        return False
    if s[0] not in _ALNUM_:
        return False
    for ch in s[1:]:
        if ch in _ALNUM_ or ch in "-_":
            continue
        if ch == "." and kind != "namespace":
            continue
        if ch == ":" and kind == "host":
            continue
        return False
    return True


def _cut_promised(s: str, sep: str) -> tuple[str, str, bool]:
    i = s.rfind(sep)
    if i < 0:
        return s, "", False
    return s[:i] or _MISSING, s[i + len(sep):] or _MISSING, True


@dataclass(frozen=True)
class ModelName:
    host: str
    namespace: str
    model: str
    tag: str
    scheme: str = "https"

    @classmethod
    def parse_bare(cls, text: str) -> tuple[str, str, str, str, str]:
        """Split without defaults or validation (empty string = part absent)."""
        s = text
        host = namespace = tag = ""
        scheme = ""
        if s.rfind(":") > s.rfind("/"):
            s, tag, _ = _cut_promised(s, ":")
        s, model, promised = _cut_promised(s, "/")
        if not promised:
            return "", "", s, tag, ""
        s, namespace, promised = _cut_promised(s, "/")
        if not promised:
            return "", s, model, tag, ""
        sch, sepr, rest = s.partition("://")
        if sepr:
            scheme, host = sch, rest
        else:
            host = s
        return host, namespace, model, tag, scheme

    @classmethod
    def try_parse(cls, text: str) -> ModelName | None:
        if not isinstance(text, str) or not text:
            return None
        host, ns, model, tag, scheme = cls.parse_bare(text)
        name = cls(host or DEFAULT_HOST, ns or DEFAULT_NAMESPACE, model, tag or DEFAULT_TAG,
                   scheme or "https")
        return name if name.is_valid() else None

    @classmethod
    def parse(cls, text: str) -> ModelName:
        """Parse with defaults filled in; invalid -> BadRequest('invalid model name')."""
        name = cls.try_parse(text)
        if name is None:
            raise BadRequest("invalid model name")
        return name

    def is_valid(self) -> bool:
        return (self.scheme in ("http", "https")
                and is_valid_part("host", self.host)
                and is_valid_part("namespace", self.namespace)
                and is_valid_part("model", self.model)
                and is_valid_part("tag", self.tag))

    def parts(self) -> tuple[str, str, str, str]:
        return (self.host, self.namespace, self.model, self.tag)

    def filepath(self) -> tuple[str, str, str, str]:
        """Path components under manifests/ (validated parts: never '.', '..' or separators)."""
        return self.parts()

    def key(self) -> tuple[str, ...]:
        """Case-insensitive identity."""
        return tuple(p.lower() for p in self.parts())

    def equal_fold(self, other: ModelName) -> bool:
        return self.key() == other.key()

    def __str__(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def display_shortest(self) -> str:
        """`model:tag`, `ns/model:tag`, or `host/ns/model:tag` (tag always shown)."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"
