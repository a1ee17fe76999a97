#!/usr/bin/env python3
"""Loopback helpers for scripts/peers.sh: a torrent, many idle peers, and
addresses that never answer a connect. Everything binds and connects on
127.0.0.0/8 only, and everything runs in one thread with a selector.

  make DIR                     content DIR/peers.bin (16 MiB) and DIR/peers.torrent;
                               prints the info-hash in hex
  incoming N PORT HASH         N connections to 127.0.0.1:PORT, from
                               127.0.1.1 .. 127.0.1.N, each sends a handshake,
                               reads the answer and then stays idle
  listen N HASH                N listeners on 127.0.0.1 that answer a handshake
                               for HASH and then stay idle; prints their ports
  blackhole N                  N listeners on 127.0.0.1 whose accept queue is
                               full (a backlog of 0 holding one connection), so
                               the kernel drops every further SYN: a connect to
                               them stays in SYN-SENT; prints their ports

Each mode that holds sockets prints "ready ..." on stdout, then runs until
it gets SIGTERM. It reports once a second, on stderr, how
many of its connections are established.
"""

import hashlib
import os
import selectors
import signal
import socket
import sys
import time

PIECE_LEN = 256 * 1024
CONTENT_LEN = 16 * 1024 * 1024


def bencode(value):
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, str):
        return bencode(value.encode())
    if isinstance(value, dict):
        out = b"d"
        for key in sorted(value):
            out += bencode(key) + bencode(value[key])
        return out + b"e"
    raise TypeError(value)


def make(folder):
    path = os.path.join(folder, "peers.bin")
    state = 0x9E3779B97F4A7C15
    chunk = bytearray()
    # Deterministic, incompressible enough, and cheap to make.
    for _ in range(4096):
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        chunk += state.to_bytes(8, "little")
    data = bytes(chunk) * (CONTENT_LEN // len(chunk))
    with open(path, "wb") as f:
        f.write(data)
    pieces = b"".join(
        hashlib.sha1(data[i : i + PIECE_LEN]).digest()
        for i in range(0, len(data), PIECE_LEN)
    )
    info = {
        "length": len(data),
        "name": "peers.bin",
        "piece length": PIECE_LEN,
        "pieces": pieces,
    }
    with open(os.path.join(folder, "peers.torrent"), "wb") as f:
        f.write(bencode({"info": info}))
    print(hashlib.sha1(bencode(info)).hexdigest())


def handshake(info_hash, n):
    peer_id = b"-PY0001-" + b"%012d" % n
    # Reserved bytes: none of the extensions, so the remote only answers
    # with its handshake and bitfield.
    return b"\x13BitTorrent protocol" + bytes(8) + info_hash + peer_id


class Hub:
    """Every socket of this process, driven by one selector."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.live = 0
        self.held = []
        self.stop = False
        signal.signal(signal.SIGTERM, self.on_term)

    def on_term(self, *_):
        self.stop = True

    def run(self, on_event):
        last = 0.0
        while not self.stop:
            for key, _ in self.sel.select(timeout=1.0):
                kind, state = key.data
                on_event(self, key.fileobj, kind, state)
            if time.monotonic() - last >= 1.0:
                last = time.monotonic()
                print("established %d" % self.live, file=sys.stderr, flush=True)

    def drop(self, sock):
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()


def read_some(hub, sock, state):
    """Reads what arrived; counts the connection live once the remote's
    handshake is in; closes it when the remote does."""
    try:
        data = sock.recv(65536)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        data = b""
    if not data:
        if state["live"]:
            hub.live -= 1
        hub.drop(sock)
        return
    state["got"] += len(data)
    if not state["live"] and state["got"] >= 68:
        state["live"] = True
        hub.live += 1
    return data


def incoming(count, port, info_hash):
    hub = Hub()
    for n in range(count):
        sock = socket.socket()
        sock.bind(("127.0.1.%d" % (1 + n % 250), 0))
        sock.setblocking(False)
        try:
            sock.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        state = {"live": False, "got": 0, "sent": False, "n": n}
        hub.sel.register(
            sock, selectors.EVENT_READ | selectors.EVENT_WRITE, ("out", state)
        )

    def on_event(hub, sock, kind, state):
        if not state["sent"]:
            try:
                sock.send(handshake(info_hash, state["n"]))
            except OSError:
                hub.drop(sock)
                return
            state["sent"] = True
            hub.sel.modify(sock, selectors.EVENT_READ, ("out", state))
            return
        read_some(hub, sock, state)

    print("ready", flush=True)
    hub.run(on_event)


def listen(count, info_hash):
    hub = Hub()
    ports = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        ports.append(sock.getsockname()[1])
        hub.sel.register(sock, selectors.EVENT_READ, ("listener", None))

    def on_event(hub, sock, kind, state):
        if kind == "listener":
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.setblocking(False)
            n = len(hub.held)
            hub.held.append(conn)
            hub.sel.register(
                conn,
                selectors.EVENT_READ,
                ("in", {"live": False, "got": 0, "n": n, "answered": False}),
            )
            return
        if read_some(hub, sock, state) and not state["answered"]:
            state["answered"] = True
            try:
                sock.send(handshake(info_hash, 100000 + state["n"]))
            except OSError:
                pass

    print("ready " + " ".join(map(str, ports)), flush=True)
    hub.run(on_event)


def blackhole(count):
    hub = Hub()
    ports = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        # A backlog of 0 queues one connection; it is never accepted, so
        # the queue stays full and later SYNs are dropped.
        sock.listen(0)
        port = sock.getsockname()[1]
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        hub.held += [sock, filler]
        ports.append(port)
    print("ready " + " ".join(map(str, ports)), flush=True)
    hub.run(lambda *_: None)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "make":
        make(sys.argv[2])
    elif mode == "incoming":
        incoming(int(sys.argv[2]), int(sys.argv[3]), bytes.fromhex(sys.argv[4]))
    elif mode == "listen":
        listen(int(sys.argv[2]), bytes.fromhex(sys.argv[3]))
    elif mode == "blackhole":
        blackhole(int(sys.argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
