"""A stand-in for ggml-rpc-server speaking the RPC query commands of protocol v7 (HELLO,
DEVICE_COUNT, GET_DEVICE_MEMORY, GET_MAX_SIZE), one client at a time like the real one; for
supervisor tests that need no llama.cpp build."""

from __future__ import annotations

import argparse
import os
import socket
import struct


def recv_exact(c: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = c.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def serve_client(c: socket.socket) -> None:
    while True:
        cmd = recv_exact(c, 1)[0]
        (n,) = struct.unpack("<Q", recv_exact(c, 8))
        payload = recv_exact(c, n)
        if cmd == 14:
            out = bytes([7, 0, 0, 0]) + bytes(24)
        elif cmd == 15:
            out = struct.pack("<I", 1)
        elif cmd == 11:
            out = struct.pack("<QQ", 1 << 30, 2 << 30)
        elif cmd == 2:
            out = struct.pack("<Q", 1 << 40)
        else:
            return
        del payload
        c.sendall(struct.pack("<Q", len(out)) + out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-H", "--host", default="127.0.0.1")
    ap.add_argument("-p", "--port", type=int, default=50052)
    ap.add_argument("-c", "--cache", action="store_true")
    ap.add_argument("-d", "--device")
    ap.add_argument("-t", "--threads")
    a = ap.parse_args()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as rpc-server does
    try:
        s.bind((a.host, a.port))
    except OSError:
        print("Failed to create server socket", flush=True)  # and exit 0, like rpc-server
        return
    s.listen(1)
    print("Starting RPC server v7.0.0", flush=True)
    print(f"  endpoint       : {a.host}:{a.port}", flush=True)
    print(f"  local cache    : {os.environ.get('LLAMA_CACHE', 'n/a')}/rpc", flush=True)
    while True:
        c, _ = s.accept()
        print("Accepted client connection", flush=True)
        try:
            serve_client(c)
        except (EOFError, OSError):
            pass
        c.close()
        print("Client connection closed", flush=True)


if __name__ == "__main__":
    main()
