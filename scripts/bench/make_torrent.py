#!/usr/bin/python3
"""Writes a single-file .torrent for the benchmarks and prints its info-hash.

Usage: python3 make_torrent.py FILE PIECE_LENGTH ANNOUNCE OUT

mktorrent 1.1 refuses pieces under 32 KiB, and the benchmark needs a 1 GiB
file in 16 KiB pieces (65,536 pieces), so this makes the torrent itself:
announce, and an info dictionary of length, name, piece length and pieces,
as mktorrent -d writes it (no creation date, so the same file gives the same
torrent). stdout: the info-hash in hex (what opentracker's whitelist takes).
"""

import hashlib
import os
import sys


def bencode(value):
    """Bencoding (BEP 3) of ints, bytes, str, lists and dicts (keys sorted)."""
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def piece_hashes(path, piece_length):
    hashes = []
    with open(path, "rb") as f:
        while True:
            chunk = f.read(piece_length)
            if not chunk:
                break
            hashes.append(hashlib.sha1(chunk).digest())
    return b"".join(hashes)


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__.strip().splitlines()[2])
    path, piece_length, announce, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    if piece_length < 16384 or piece_length & (piece_length - 1):
        sys.exit("make_torrent.py: the piece length must be a power of two, at least 16384")
    info = {
        "length": os.path.getsize(path),
        "name": os.path.basename(path),
        "piece length": piece_length,
        "pieces": piece_hashes(path, piece_length),
    }
    encoded_info = bencode(info)
    torrent = b"d" + bencode("announce") + bencode(announce) + bencode("info") + encoded_info + b"e"
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(torrent)
    os.replace(tmp, out)
    print(hashlib.sha1(encoded_info).hexdigest())


if __name__ == "__main__":
    main()
