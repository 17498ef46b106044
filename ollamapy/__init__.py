"""ollamapy: Ollama's API served by supervised llama.cpp `llama-server` runners."""

# A literal (not importlib.metadata) keeps `ollamapy --help` fast; pyproject reads it from here.
__version__ = "0.1.0"
