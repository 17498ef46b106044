"""ollamapy: Ollama's API served by supervised llama.cpp `llama-server` runners."""

# A literal (not importlib.metadata) keeps `ollamapy --help` fast; pyproject reads it from here.
__version__ = "0.1.0"

# The Ollama release whose API ollamapy implements: what `/api/version` answers, because clients
# gate features on it (VS Code Copilot Chat and Raycast refuse servers below 0.6.4). ollamapy's
# own version is the `X-Ollamapy-Version` header, `ollamapy -v` and the startup log.
OLLAMA_API_VERSION = "0.34.2"
