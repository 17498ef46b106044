"""`ollamapy -v` wording (Ollama's versionHandler plus the llama.cpp commit)."""

from __future__ import annotations

from ollamapy.cli.version import version_lines


def test_same_version() -> None:
    assert version_lines("0.1.0", "0.1.0", "abc1234") == [
        "ollamapy version is 0.1.0 (llama.cpp abc1234)"]


def test_client_differs() -> None:
    assert version_lines("0.2.0", "0.1.0", "abc1234") == [
        "ollamapy version is 0.2.0 (llama.cpp abc1234)", "Warning: client version is 0.1.0"]


def test_no_server_and_refused() -> None:
    assert version_lines(None, "0.1.0", "abc1234") == [
        "Warning: could not connect to a running ollamapy instance",
        "Warning: client version is 0.1.0 (llama.cpp abc1234)"]
    assert version_lines(None, "0.1.0", "abc1234", "unauthorized")[0] == (
        "Warning: could not connect to a running ollamapy instance: unauthorized")
