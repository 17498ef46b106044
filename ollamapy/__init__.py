"""ollamapy: Ollama's API served by supervised llama.cpp `llama-server` runners."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ollamapy")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"
