"""`ollamapy serve` over HTTPS (OLLAMAPY_TLS_CERT/KEY) with a CA and certificates made here.

Real server process, no runner needed: the official `ollama` and `openai` clients list models over
HTTPS, a client trusting another CA is refused, plain HTTP to the port gets a clean 400, and
SIGHUP swaps the certificate for new handshakes while an open connection keeps working.
"""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import ollama
import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ollamapy.runner.process import free_port
from tests.conftest import ServerProc, stop_server

pytestmark = pytest.mark.timeout(120)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(directory: Path, cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    path = directory / f"{cn}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


def make_server_cert(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, cert_path: Path,
                     key_path: Path, cn: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                       x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(san, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    tmp_key, tmp_cert = key_path.with_name("k.tmp"), cert_path.with_name("c.tmp")
    tmp_key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp_key, key_path)
    os.replace(tmp_cert, cert_path)


def trust(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def peer_cn(sock: ssl.SSLSocket) -> str:
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path | object]:
    ca_key, ca, ca_path = make_ca(tmp_path, "test-ca")
    other_key, other, other_path = make_ca(tmp_path, "other-ca")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    make_server_cert(ca_key, ca, cert, key, "server-one")
    return {"ca": ca_path, "other": other_path, "cert": cert, "key": key,
            "ca_key": ca_key, "ca_cert": ca, "other_key": other_key, "other_cert": other}


def start_tls_server(tmp_path: Path, cert: Path, key: Path, ca: Path) -> ServerProc:
    port = free_port()
    env = dict(os.environ, OLLAMA_HOST=f"127.0.0.1:{port}", OLLAMA_MODELS=str(tmp_path / "models"),
               HOME=str(tmp_path), OLLAMAPY_TLS_CERT=str(cert), OLLAMAPY_TLS_KEY=str(key))
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as logf:
        proc = subprocess.Popen([sys.executable, "-m", "ollamapy.cli.main", "serve"], env=env,
                                stdout=logf, stderr=subprocess.STDOUT)
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(url + "/", verify=trust(ca), timeout=1).status_code == 200:
                return ServerProc(proc, url, f"127.0.0.1:{port}", tmp_path / "models", log_path)
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise AssertionError(f"server did not answer:\n{log_path.read_text()}")


@pytest.fixture
def tls_server(tmp_path: Path, pki: dict) -> ServerProc:
    s = start_tls_server(tmp_path, pki["cert"], pki["key"], pki["ca"])
    yield s
    stop_server(s)


def test_official_clients_over_https(tls_server: ServerProc, pki: dict) -> None:
    ca = trust(pki["ca"])
    oc = ollama.Client(host=tls_server.url, verify=ca)
    assert oc.list().models == []
    assert oc.ps().models == []
    with httpx.Client(verify=ca) as http:
        oa = openai.OpenAI(base_url=tls_server.url + "/v1", api_key="x", http_client=http)
        assert list(oa.models.list()) == []
    r = httpx.get(tls_server.url + "/api/version", verify=ca)
    assert r.status_code == 200 and r.http_version == "HTTP/1.1"


def test_cli_trusts_ssl_cert_file(tls_server: ServerProc, pki: dict, tmp_path: Path) -> None:
    env = dict(os.environ, OLLAMA_HOST=tls_server.url, SSL_CERT_FILE=str(pki["ca"]))
    out = subprocess.run([sys.executable, "-m", "ollamapy.cli.main", "list"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    env["SSL_CERT_FILE"] = str(pki["other"])  # a store without our CA: refused, one line
    out = subprocess.run([sys.executable, "-m", "ollamapy.cli.main", "list"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "certificate verify failed" in out.stderr and "Traceback" not in out.stderr


def test_wrong_ca_refused(tls_server: ServerProc, pki: dict) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(tls_server.url + "/", verify=trust(pki["other"]))
    with pytest.raises(ConnectionError):  # the ollama client's own wording for it
        ollama.Client(host=tls_server.url, verify=trust(pki["other"])).list()
    assert stop_server(tls_server) == 0
    assert "Traceback" not in tls_server.log()


def test_server_context_is_tls12_plus(pki: dict) -> None:
    from ollamapy.server import tls

    ctx = tls.server_context(pki["cert"], pki["key"])
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_NONE  # no client certificates asked for
    assert ctx.options & ssl.OP_NO_COMPRESSION


def test_plain_http_to_https_port_is_a_clean_400(tls_server: ServerProc) -> None:
    r = httpx.get(tls_server.url.replace("https://", "http://") + "/api/tags", timeout=5)
    assert r.status_code == 400
    assert r.text == "Client sent an HTTP request to an HTTPS server.\n"
    port = int(tls_server.host.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # connect and leave without a byte: closed quietly
    assert httpx.get(tls_server.url + "/", verify=False).status_code == 200  # still serving
    assert stop_server(tls_server) == 0
    log = tls_server.log()
    assert "Traceback" not in log and "level=ERROR" not in log


def test_sighup_reloads_certificate_keeping_connections(tls_server: ServerProc, pki: dict,
                                                        tmp_path: Path) -> None:
    port = int(tls_server.host.rsplit(":", 1)[1])
    old_ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=old_ctx, timeout=10)
    conn.request("GET", "/api/version")
    assert conn.getresponse().read()
    assert conn.sock is not None
    first_sock = conn.sock
    assert peer_cn(first_sock) == "server-one"
    # New pair signed by the other CA, written in place, then SIGHUP.
    make_server_cert(pki["other_key"], pki["other_cert"], pki["cert"], pki["key"], "server-two")
    tls_server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while True:
        try:
            r = httpx.get(tls_server.url + "/", verify=trust(pki["other"]), timeout=2)
            assert r.status_code == 200
            break
        except httpx.ConnectError:
            assert time.monotonic() < deadline, tls_server.log()
            time.sleep(0.1)
    # The connection made before the reload still works, on the same socket and old cert.
    conn.request("GET", "/api/version")
    assert conn.getresponse().status == 200
    assert conn.sock is first_sock and peer_cn(conn.sock) == "server-one"
    conn.close()
    # A broken pair on SIGHUP keeps the current certificate serving.
    pki["key"].write_text("not a key")
    tls_server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while "TLS reload failed" not in tls_server.log():
        assert time.monotonic() < deadline, tls_server.log()
        time.sleep(0.1)
    assert httpx.get(tls_server.url + "/", verify=trust(pki["other"])).status_code == 200
    assert stop_server(tls_server) == 0


def test_cert_without_key_is_one_line(tmp_path: Path, pki: dict) -> None:
    env = dict(os.environ, OLLAMA_HOST=f"127.0.0.1:{free_port()}", HOME=str(tmp_path),
               OLLAMAPY_TLS_CERT=str(pki["cert"]))
    out = subprocess.run([sys.executable, "-m", "ollamapy.cli.main", "serve"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "OLLAMAPY_TLS_CERT and OLLAMAPY_TLS_KEY must be set together" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.e2e
def test_generation_over_https_survives_a_reload(tmp_path: Path, pki: dict) -> None:
    """Real runner: ollama and openai clients generate over HTTPS, and a stream in flight while
    the certificate is reloaded finishes on its connection."""
    from tests.conftest import FAST_PARAMS, register_default_model

    register_default_model(tmp_path / "models", params=FAST_PARAMS)
    s = start_tls_server(tmp_path, pki["cert"], pki["key"], pki["ca"])
    try:
        oc = ollama.Client(host=s.url, verify=trust(pki["ca"]), timeout=120)
        out = oc.generate(model="smollm2:135m", prompt="Say hi.",
                          options={"num_predict": 4, "temperature": 0})
        assert out.done and out.eval_count
        with httpx.Client(verify=trust(pki["ca"]), timeout=120) as http:
            oa = openai.OpenAI(base_url=s.url + "/v1", api_key="x", http_client=http)
            comp = oa.chat.completions.create(model="smollm2:135m", max_tokens=4,
                                              messages=[{"role": "user", "content": "Hi"}])
            assert comp.choices[0].message.content is not None
        stream = oc.generate(model="smollm2:135m", prompt="Count from one to twenty.",
                             stream=True, options={"num_predict": 48, "temperature": 0})
        first = next(stream)
        assert not first.done
        make_server_cert(pki["other_key"], pki["other_cert"], pki["cert"], pki["key"], "two")
        s.proc.send_signal(signal.SIGHUP)
        rest = list(stream)
        assert rest and rest[-1].done and rest[-1].done_reason in ("length", "stop")
        deadline = time.monotonic() + 15
        while "TLS certificate reloaded" not in s.log():
            assert time.monotonic() < deadline, s.log()
            time.sleep(0.1)
        assert httpx.get(s.url + "/", verify=trust(pki["other"])).status_code == 200
    finally:
        assert stop_server(s) == 0
    assert "Traceback" not in s.log()
