"""One error tree. Each error carries its HTTP status; the server maps them to {"error": ...} in
exactly one place (server/middleware.py), so handlers just raise."""

from __future__ import annotations


class OllamaError(Exception):
    """Base of every error a client may see. `message` is the text sent as {"error": message}."""

    status: int = 500

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def prefixed(self, prefix: str) -> OllamaError:
        """The same error (class and status) with `prefix` before its message, as Go's
        fmt.Errorf("%s: %w", prefix, err) keeps the wrapped error's kind."""
        out = type(self).__new__(type(self))  # no __init__: subclasses take other arguments
        out.__dict__.update(self.__dict__)
        out.message = f"{prefix}{self.message}"
        out.args = (out.message,)
        return out


class BadRequest(OllamaError):
    status = 400


class PromptTooLong(BadRequest):
    """The rendered prompt does not fit the model's context (and truncation is off). `tokens`
    and `limit` let each API family word it its own way (Anthropic: "prompt is too long: N
    tokens > M maximum"); the message is Ollama's."""

    def __init__(self, message: str, *, tokens: int, limit: int) -> None:
        super().__init__(message)
        self.tokens = tokens
        self.limit = limit


class Unauthorized(OllamaError):
    status = 401


class Forbidden(OllamaError):
    status = 403


class NotFound(OllamaError):
    status = 404


class PayloadTooLarge(OllamaError):
    status = 413


class LimitExceeded(OllamaError):
    """A request went past a configured bound (template work, messages, images, inputs).
    Not a BadRequest subclass, so routes that remap BadRequest still answer 400 here."""

    status = 400


class ClientClosed(OllamaError):
    """The client went away while its request waited (Ollama answers 499)."""

    status = 499

    def __init__(self, message: str = "request canceled") -> None:
        super().__init__(message)


class ServerBusy(OllamaError):
    status = 503

    def __init__(
        self, message: str = "server busy, please try again.  maximum pending requests exceeded"
    ) -> None:
        super().__init__(message)


class ConfigError(Exception):
    """A bad OLLAMA_* setting: reported at start as one clear line, never a traceback."""


class RunnerError(OllamaError):
    """llama-server failed to start, load, or answer."""

    status = 500


class RunnerAuthError(RunnerError):
    """A runner refused ollamapy's own per-runner key: an internal fault, never the client's
    (their key was checked before; a 401 here must not read as "your key is wrong")."""

    status = 500


class PlacementError(OllamaError):
    """A model does not fit the devices available (local GPUs, RPC workers, CPU)."""

    status = 500


class RunnerNotFound(Exception):
    """No llama-server binary could be located."""


class ServerShuttingDown(OllamaError):
    """The server is stopping: queued requests and streams cut by the planned stop say so."""

    status = 503

    def __init__(self, message: str = "server is shutting down") -> None:
        super().__init__(message)


class InsufficientStorage(OllamaError):
    status = 507


class InternalError(OllamaError):
    """An unexpected failure: the client gets this fixed text, the details go to the log."""

    status = 500

    def __init__(self, message: str = "internal server error") -> None:
        super().__init__(message)


class QuantizeError(OllamaError):
    """llama-quantize is missing, failed, or wrote something that is not a GGUF."""

    status = 500


class StoreError(OllamaError):
    """The model store holds something unreadable (a corrupt manifest, a missing layer)."""

    status = 500
