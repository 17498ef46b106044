"""Browser and network safety: CORS, the DNS-rebinding Host check, and optional API keys.

Order matters and mirrors Ollama (gin: cors, then allowedHosts): CORS answers preflights and
rejects foreign Origins first, then the Host check (only when bound to loopback), then the API
key check (an ollamapy addition, off unless keys are configured). The decisions are pure
functions below; the middlewares are thin shells around them.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from aiohttp import web
from aiohttp.typedefs import Middleware
from multidict import CIMultiDict

from ollamapy.config import Settings
from ollamapy.errors import Forbidden, Unauthorized
from ollamapy.logs import kv
from ollamapy.server.middleware import render_exception

log = logging.getLogger("ollamapy.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ALLOW_METHODS = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
ALLOW_HEADERS = ",".join((
    "Authorization", "X-Api-Key", "Content-Type", "User-Agent", "Accept", "X-Requested-With",
    "Openai-Beta",
    "X-Stainless-Arch", "X-Stainless-Async", "X-Stainless-Custom-Poll-Interval",
    "X-Stainless-Helper-Method", "X-Stainless-Lang", "X-Stainless-Os",
    "X-Stainless-Package-Version", "X-Stainless-Poll-Helper", "X-Stainless-Retry-Count",
    "X-Stainless-Runtime", "X-Stainless-Runtime-Version", "X-Stainless-Timeout",
))
MAX_AGE = "43200"  # 12 h, gin-contrib/cors default
# Schemes gin-contrib/cors accepts in an origin pattern besides http(s) (AllowBrowserExtensions
# plus the custom app schemes Ollama lists).
_EXTRA_SCHEMES = ("chrome-extension://", "safari-extension://", "moz-extension://",
                  "ms-browser-extension://", "safari-web-extension://", "app://", "file://",
                  "tauri://", "vscode-webview://", "vscode-file://")
_LOCAL_TLDS = (".localhost", ".local", ".internal")
CORS_ORIGIN_KEY = web.RequestKey("cors_allow_origin", str)
# The scope of the key a request came with (absent when no keys are configured).
SCOPE_KEY = web.RequestKey("api_key_scope", str)


# ---------------------------------------------------------------------------- CORS decisions

def default_origins() -> tuple[str, ...]:
    """Ollama's envconfig.AllowedOrigins defaults (before OLLAMA_ORIGINS entries)."""
    out: list[str] = []
    for host in ("localhost", "127.0.0.1", "0.0.0.0"):
        out += [f"http://{host}", f"https://{host}", f"http://{host}:*", f"https://{host}:*"]
    out += ["app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*"]
    return tuple(out)


def allowed_origins(extra: Iterable[str]) -> tuple[str, ...]:
    """OLLAMA_ORIGINS entries come first, then the defaults (they add, never replace)."""
    return (*(o.strip() for o in extra if o.strip()), *default_origins())


def validate_origin_patterns(patterns: Iterable[str]) -> None:
    """Reject entries gin-contrib/cors would refuse at start (Ollama panics; we exit cleanly)."""
    for p in patterns:
        if p == "*" or "*" in p:
            if p.count("*") > 1:
                raise ValueError(f"only one * is allowed in an origin: {p!r}")
            continue
        if not (p.startswith(("http://", "https://")) or p.startswith(_EXTRA_SCHEMES)):
            raise ValueError(f"bad origin: origins must contain '*' or include http://,https:// "
                             f"or a browser extension scheme: {p!r}")


def origin_allowed(origin: str, patterns: Iterable[str]) -> bool:
    """gin-contrib/cors matching: exact, `*` for all, or one `*` as prefix/suffix wildcard."""
    for p in patterns:
        if p == "*":
            return True
        if "*" in p:
            prefix, _, suffix = p.partition("*")
            if (len(origin) >= len(prefix) + len(suffix) and origin.startswith(prefix)
                    and origin.endswith(suffix)):
                return True
        elif origin == p:
            return True
    return False


def allow_all(patterns: Iterable[str]) -> bool:
    return "*" in tuple(patterns)


def same_origin(origin: str, host: str) -> bool:
    """gin-contrib/cors treats Origin == scheme://Host as a same-origin, non-CORS request."""
    return origin in (f"http://{host}", f"https://{host}")


# ---------------------------------------------------------------------- Host-check decisions

def split_host(host_header: str) -> str:
    """The host part of a Host header: `[::1]:11434` -> `::1`, `example.com:80` -> `example.com`."""
    h = host_header.strip()
    if h.startswith("["):
        end = h.find("]")
        return h[1:end] if end != -1 else h[1:]
    if h.count(":") == 1:
        return h.split(":", 1)[0]
    return h  # bare host, or a bare IPv6 literal (Go's SplitHostPort fails -> whole value)


def local_interface_ips() -> frozenset[str]:
    """Every address assigned to a local interface (Ollama's isLocalIP)."""
    try:
        import psutil

        return frozenset(a.address.split("%", 1)[0] for addrs in psutil.net_if_addrs().values()
                         for a in addrs if a.family in (socket.AF_INET, socket.AF_INET6))
    except Exception:  # psutil missing or an exotic platform: fall back to nothing extra
        return frozenset()


def host_allowed(host_header: str, *, hostname: str, local_ips: Callable[[], Iterable[str]]
                 ) -> bool:
    """Ollama's allowedHostsMiddleware decision for a server bound to loopback."""
    host = split_host(host_header)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        if ip.is_loopback or ip.is_private or ip.is_unspecified:
            return True
        if str(ip) in set(local_ips()):
            return True
    name = host.lower()
    if name in ("", "localhost") or name == hostname.lower():
        return True
    return name.endswith(_LOCAL_TLDS)


# ------------------------------------------------------------------------- API-key decisions

Scope = Literal["inference", "admin"]
SCOPES: tuple[Scope, ...] = ("inference", "admin")
# What a route needs: no key at all, any key (inference or admin), or an admin key.
Need = Literal["public", "inference", "admin"]

# What an inference key may do: run models and read the catalogue. Everything else (create,
# blobs, copy, delete, pull, push, and any route added later) needs an admin key: deny by default.
_INFERENCE_ROUTES = frozenset({
    ("GET", "/"), ("HEAD", "/"), ("GET", "/api/version"), ("HEAD", "/api/version"),
    ("POST", "/api/generate"), ("POST", "/api/chat"), ("POST", "/api/embed"),
    ("POST", "/api/embeddings"), ("GET", "/api/tags"), ("HEAD", "/api/tags"),
    ("POST", "/api/show"), ("GET", "/api/ps"), ("HEAD", "/api/ps"), ("GET", "/metrics"),
    ("HEAD", "/metrics"),
})


def route_scope(method: str, path: str,
                public: Collection[tuple[str, str]] = ()) -> Need:
    """What a request needs when keys are set. `public` routes need no key (the operator
    opened them: /metrics with OLLAMAPY_METRICS_AUTH=none). `/v1/*` (OpenAI, Anthropic,
    Responses) is inference for reads and runs; every other method there, and every unlisted
    route, is admin."""
    if (method, path) in public:
        return "public"
    if (method, path) in _INFERENCE_ROUTES:
        return "inference"
    if path.startswith("/v1/") and method in ("GET", "HEAD", "POST"):
        return "inference"
    return "admin"


def public_routes(settings: Settings) -> frozenset[tuple[str, str]]:
    """Routes served without a key even when keys are set."""
    if settings.metrics_auth == "none":
        return frozenset({("GET", "/metrics"), ("HEAD", "/metrics")})
    return frozenset()


def scope_allows(have: Scope, need: Need) -> bool:
    return have == "admin" or need != "admin"


def parse_key_file(text: str, source: str) -> list[tuple[str, Scope]]:
    """`key [scope]` per line (scope `admin`, the default, or `inference`); `#` starts a
    comment, blank lines are skipped."""
    out: list[tuple[str, Scope]] = []
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split()
        for i, w in enumerate(words):  # a word starting with `#` starts a comment
            if w.startswith("#"):
                words = words[:i]
                break
        if not words:
            continue
        if len(words) > 2 or (len(words) == 2 and words[1] not in SCOPES):
            # The words are not echoed: a mistyped line may hold a second key.
            raise ValueError(f"{source} line {n}: expected `key`, `key inference` or "
                             f"`key admin`")
        out.append((words[0], cast(Scope, words[1]) if len(words) == 2 else "admin"))
    return out


def load_scoped_keys(settings: Settings) -> dict[str, Scope]:
    """Every accepted key with its scope: OLLAMA_API_KEYS (admin, as before scopes existed),
    OLLAMAPY_INFERENCE_KEYS (inference), and OLLAMA_API_KEYS_FILE lines `key [scope]`.

    A configured but unreadable or malformed key file is a start-up error: silently serving
    without the keys the operator asked for would expose the server. So is one key given two
    different scopes: which one the operator meant cannot be guessed.
    """
    pairs: list[tuple[str, Scope]] = [(k, "admin") for k in settings.api_keys if k]
    pairs += [(k, "inference") for k in settings.inference_keys if k]
    path = settings.api_keys_file
    if path:
        try:
            text = Path(path).expanduser().read_text()
        except OSError as e:
            raise ValueError(f"cannot read OLLAMA_API_KEYS_FILE {path}: "
                             f"{e.strerror or e}") from None
        pairs += parse_key_file(text, f"OLLAMA_API_KEYS_FILE {path}")
    keys: dict[str, Scope] = {}
    for k, scope in pairs:
        if keys.get(k, scope) != scope:
            raise ValueError("an API key is listed as both inference and admin; give each key "
                             "one scope")
        keys[k] = scope
    return keys


def load_api_keys(settings: Settings) -> tuple[str, ...]:
    """Every accepted key, whatever its scope."""
    return tuple(load_scoped_keys(settings))


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def request_token(headers: Mapping[str, str]) -> str | None:
    """`Authorization: Bearer <key>` (Ollama, OpenAI clients) or `x-api-key: <key>` (Anthropic)."""
    token = bearer_token(headers.get("Authorization"))
    if token is None:
        token = (headers.get("x-api-key") or "").strip() or None
    return token


def key_accepted(token: str | None, keys: Iterable[str]) -> bool:
    """Constant-time comparison against every key, no early exit. Both sides are hashed first so
    the comparison also hides the keys' lengths (compare_digest only hides their contents)."""
    return key_scope(token, dict.fromkeys(keys, "admin")) is not None


def key_scope(token: str | None, keys: Mapping[str, Scope]) -> Scope | None:
    """The scope of `token`, or None when it is no key; compares against every key (no early
    exit, hashed first: timing reveals neither which key matched nor their lengths)."""
    if token is None:
        return None
    given = hashlib.sha256(token.encode()).digest()
    found: Scope | None = None
    for k, scope in keys.items():
        if hmac.compare_digest(given, hashlib.sha256(k.encode()).digest()):
            found = scope
    return found


# ------------------------------------------------------------------------------- middlewares

@dataclass(frozen=True)
class Policy:
    origins: tuple[str, ...]
    check_host: bool
    keys: Mapping[str, Scope]
    public: frozenset[tuple[str, str]] = frozenset()


def policy(settings: Settings) -> Policy:
    origins = allowed_origins(settings.origins)
    validate_origin_patterns(origins)
    return Policy(origins=origins, check_host=settings.host.is_loopback,
                  keys=load_scoped_keys(settings), public=public_routes(settings))


def _forbidden(request: web.Request, message: str) -> web.Response:
    return render_exception(request, Forbidden(message))


def _add_vary(headers: CIMultiDict[str], *values: str) -> None:
    have = [part.strip() for line in headers.getall("Vary", []) for part in line.split(",")]
    for v in values:
        if v not in have:
            headers.add("Vary", v)
            have.append(v)


Check = Callable[[web.Request], web.StreamResponse | None]


def cors_check(pol: Policy) -> Check:
    """Cross-origin requests: refused, answered (preflight), or marked for the CORS headers."""
    every = allow_all(pol.origins)

    def cors(request: web.Request) -> web.StreamResponse | None:
        origin = request.headers.get("Origin")
        if not origin or same_origin(origin, request.host):
            return None
        if not every and not origin_allowed(origin, pol.origins):
            return _forbidden(request, "origin not allowed")
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            resp = web.Response(status=204)
            resp.headers["Access-Control-Allow-Origin"] = "*" if every else origin
            resp.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            resp.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            resp.headers["Access-Control-Max-Age"] = MAX_AGE
            if not every:
                _add_vary(resp.headers, "Origin", "Access-Control-Request-Method",
                          "Access-Control-Request-Headers")
            return resp
        # Headers must be on the response before a streaming handler prepares it; the
        # on_response_prepare hook (see setup) reads this.
        request[CORS_ORIGIN_KEY] = "*" if every else origin
        return None

    return cors


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    allow = request.get(CORS_ORIGIN_KEY)
    if allow and "Access-Control-Allow-Origin" not in response.headers:
        response.headers["Access-Control-Allow-Origin"] = allow
        if allow != "*":
            _add_vary(response.headers, "Origin")


def host_check(pol: Policy) -> Check | None:
    """A loopback server answers only Host names that are its own (DNS rebinding)."""
    if not pol.check_host:
        return None
    hostname = socket.gethostname()

    def host(request: web.Request) -> web.StreamResponse | None:
        raw = request.headers.get("Host", "")
        if not host_allowed(raw, hostname=hostname, local_ips=local_interface_ips):
            return _forbidden(request, "host not allowed")
        if request.method == "OPTIONS":
            try:
                ip_literal = ipaddress.ip_address(split_host(raw)) is not None
            except ValueError:
                ip_literal = False
            if not ip_literal:
                return web.Response(status=204)  # Ollama answers OPTIONS to local names early
        return None

    return host


def api_key_check(pol: Policy) -> Check | None:
    """With keys configured, every non-public route needs a key whose scope allows it."""
    if not pol.keys:
        return None

    def api_key(request: web.Request) -> web.StreamResponse | None:
        need = route_scope(request.method, request.path, pol.public)
        if need == "public":
            return None
        have = key_scope(request_token(request.headers), pol.keys)
        if have is not None and scope_allows(have, need):
            request[SCOPE_KEY] = have
            return None
        # The presented token is never logged; the peer and path are enough to diagnose.
        fields = kv(method=request.method, path=request.path, remote=request.remote)
        if have is None:
            log.info("rejected request without a valid API key", extra=fields)
            resp = render_exception(request, Unauthorized("unauthorized"))
            resp.headers["WWW-Authenticate"] = 'Bearer realm="ollamapy"'
            return resp
        log.info("rejected request: the API key's scope does not allow it",
                 extra=kv(scope=have, needs=need, **fields["kv"]))
        return render_exception(request, Forbidden(
            f"this API key is not allowed to manage models: {request.method} {request.path} "
            f"needs an admin key"))

    return api_key


def require_scope(request: web.Request, need: Scope, action: str) -> None:
    """For a handler whose body decides what the request does (a generate that only unloads):
    raise 403 when the request's key lacks `need`. No keys configured: everything is allowed."""
    have = request.get(SCOPE_KEY)
    if have is not None and not scope_allows(cast(Scope, have), need):
        raise Forbidden(f"this API key is not allowed to manage models: {action} needs an "
                        f"{need} key")


def guard(pol: Policy) -> Middleware:
    """One middleware for the checks, in order (CORS, Host, API key): the first that answers
    (a refusal, a preflight) ends the request; checks the policy turns off are not run."""
    checks = tuple(c for c in (cors_check(pol), host_check(pol), api_key_check(pol))
                   if c is not None)

    @web.middleware
    async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        for check in checks:
            answer = check(request)
            if answer is not None:
                return answer
        return await handler(request)

    return guarded


def middlewares(settings: Settings) -> list[Middleware]:
    """The security middleware for create_app. Bad config -> SystemExit."""
    try:
        pol = policy(settings)
    except ValueError as e:
        raise SystemExit(f"Error: {e}") from None
    return [guard(pol)]


def startup_warnings(settings: Settings) -> list[str]:
    """What to say at start about exposure: non-loopback without keys is worth a loud line."""
    hp = settings.host
    try:
        keys = load_api_keys(settings)
    except ValueError:
        keys = ()
    if hp.is_loopback:
        return []
    where = hp.host or "all interfaces"
    if keys:
        return []
    return [f"listening on {where}, which is reachable from other machines, and no API keys are "
            "set: anyone who can reach this port can run and manage models. Set OLLAMA_API_KEYS "
            "or OLLAMA_API_KEYS_FILE, or bind to 127.0.0.1"]


def setup(app: web.Application, settings: Settings) -> None:
    """Hook CORS headers into every response and log the exposure summary once at start."""
    app.on_response_prepare.append(_on_prepare)

    async def _announce(_app: web.Application) -> None:
        for w in startup_warnings(settings):
            log.warning(w)
        try:
            scopes = list(load_scoped_keys(settings).values())
        except ValueError:
            scopes = []
        if scopes:
            log.info("API key authentication enabled", extra=kv(
                admin_keys=scopes.count("admin"), inference_keys=scopes.count("inference")))

    app.on_startup.append(_announce)
