import pytest

from ollamapy.config import client_host, load_settings, parse_host
from ollamapy.errors import ConfigError


@pytest.mark.parametrize(
    ("value", "scheme", "host", "port"),
    [
        (None, "http", "127.0.0.1", 11434),
        ("", "http", "127.0.0.1", 11434),
        ("0.0.0.0", "http", "0.0.0.0", 11434),
        ("1.2.3.4:5678", "http", "1.2.3.4", 5678),
        (":8080", "http", "", 8080),
        ("http://example.com", "http", "example.com", 80),
        ("https://example.com", "https", "example.com", 443),
        ("http://example.com:1234", "http", "example.com", 1234),
        ("[::1]:9999", "http", "::1", 9999),
        ("[::]", "http", "::", 11434),
        ("  'localhost:1' ", "http", "localhost", 1),
        ("example.com:abc", "http", "example.com", 11434),  # bad port -> default
        ("ollama.com", "https", "ollama.com", 443),
    ],
)
def test_parse_host(value, scheme, host, port):
    hp = parse_host(value)
    assert (hp.scheme, hp.host, hp.port) == (scheme, host, port)


def test_parse_host_keeps_path():
    assert parse_host("http://h:1/prefix").path == "/prefix"


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("0.0.0.0:1234", "http://127.0.0.1:1234"),
        (":1234", "http://127.0.0.1:1234"),
        ("[::]:5", "http://[::1]:5"),
        (None, "http://127.0.0.1:11434"),
        ("https://h.example", "https://h.example:443"),
    ],
)
def test_client_host(value, url):
    assert client_host(value).url == url


def test_loopback_detection():
    assert parse_host("127.0.0.1").is_loopback
    assert parse_host("[::1]:1").is_loopback
    assert parse_host("localhost").is_loopback
    assert not parse_host("0.0.0.0").is_loopback
    assert not parse_host(":1").is_loopback


def test_defaults():
    s = load_settings({})
    assert s["OLLAMA_KEEP_ALIVE"] == 300
    assert s["OLLAMA_NUM_PARALLEL"] == 1
    assert s["OLLAMA_MAX_QUEUE"] == 512
    assert s["OLLAMA_DEBUG"] == 0
    assert s.models_dir.name == "models"


@pytest.mark.parametrize(
    ("env", "key", "value"),
    [
        ({"OLLAMA_KEEP_ALIVE": "10m"}, "OLLAMA_KEEP_ALIVE", 600),
        ({"OLLAMA_KEEP_ALIVE": "-1"}, "OLLAMA_KEEP_ALIVE", -1),
        ({"OLLAMA_KEEP_ALIVE": "1h30m"}, "OLLAMA_KEEP_ALIVE", 5400),
        ({"OLLAMA_DEBUG": "1"}, "OLLAMA_DEBUG", 1),
        ({"OLLAMA_DEBUG": "true"}, "OLLAMA_DEBUG", 1),
        ({"OLLAMA_DEBUG": "2"}, "OLLAMA_DEBUG", 2),
        ({"OLLAMA_NOPRUNE": "yes"}, "OLLAMA_NOPRUNE", True),  # Ollama: unparsable bool is true
        ({"OLLAMA_NOPRUNE": "0"}, "OLLAMA_NOPRUNE", False),
        ({"OLLAMA_ORIGINS": "http://a, http://b"}, "OLLAMA_ORIGINS", ("http://a", "http://b")),
        ({"OLLAMA_KV_CACHE_TYPE": "Q8_0"}, "OLLAMA_KV_CACHE_TYPE", "q8_0"),
    ],
)
def test_values(env, key, value):
    assert load_settings(env)[key] == value


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"OLLAMA_KEEP_ALIVE": "soon"}, "OLLAMA_KEEP_ALIVE"),
        ({"OLLAMA_NUM_PARALLEL": "-2"}, "OLLAMA_NUM_PARALLEL"),
        ({"OLLAMA_MAX_QUEUE": "many"}, "OLLAMA_MAX_QUEUE"),
        ({"OLLAMA_KV_CACHE_TYPE": "q3"}, "OLLAMA_KV_CACHE_TYPE"),
    ],
)
def test_bad_values_are_one_clear_line(env, needle):
    with pytest.raises(ConfigError) as e:
        load_settings(env)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_secrets_redacted():
    s = load_settings({"OLLAMA_API_KEYS": "sekrit1,sekrit2"})
    assert "sekrit" not in repr(s.redacted())
    assert s.redacted()["OLLAMA_API_KEYS"] == "<redacted>"


def test_typed_attributes_match_the_env_names() -> None:
    s = load_settings({"OLLAMA_KEEP_ALIVE": "10m", "OLLAMA_NUM_PARALLEL": "4",
                       "OLLAMA_SCHED_SPREAD": "1", "OLLAMA_ORIGINS": "a,b"})
    assert s.keep_alive == 600.0 and s.num_parallel == 4 and s.sched_spread is True
    assert s.origins == ("a", "b") and s.max_queue == 512 and s.flash_attention == "auto"
    assert s.host.port == 11434 and s.models_dir.name == "models"
    assert s["OLLAMA_KEEP_ALIVE"] == s.keep_alive  # the transitional mapping view agrees
