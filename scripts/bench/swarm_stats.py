#!/usr/bin/python3
"""Reads one peer's log from a scripts/swarm.sh run and prints its figures.

Usage:
    python3 swarm_stats.py seeder  KIND LOG T0 PIECES
    python3 swarm_stats.py leecher KIND LOG T0 PIECES [DONE]

KIND is the client: ours (its stderr, env_logger lines with UTC timestamps)
or libtorrent (lt_swarm.py's stdout). T0 is the swarm's start (seconds since
the epoch), PIECES the torrent's piece count, DONE the time the script saw
the leecher complete (the fallback when the log does not say it).

seeder prints "UPLOADED<TAB>ALL_OUT<TAB>PIECES_OUT": payload bytes it
uploaded, seconds from T0 until every piece had left it at least once ("-"
if some never did) and how many pieces left it. Ours logs each block it
serves in its wire trace, target bittorrent::wire ("ADDR -> piece I begin
B length L"; binaries before the wire trace: "ADDR: send piece I begin B
length L" in bittorrent::peer::conn::serve); lt_swarm.py prints
first-upload and uploaded lines.

leecher prints "DONE<TAB>T95<TAB>HOW": seconds from T0 until it was complete
and until it had 95% of the pieces, and how T95 was found: "pieces" from a
line per verified piece, "interpolated" between two progress lines (ours
logs progress every 5 s unless it logs each verified piece: a line with
"piece I verified" and "H of N"; its "download complete: all N pieces
verified" counts as 100%), "-" if neither.
"""

import re
import sys
from datetime import datetime

STAMP = r"^\[(\d{4}-\d\d-\d\dT[\d:.]+Z) +(\w+) +([\w:]+)\] "
OURS_SERVED = re.compile(STAMP + r".*(?:: send| ->) piece (\d+) begin \d+ length (\d+)$")
OURS_PROGRESS = re.compile(STAMP + r"(?:.*: )?(\d+(?:\.\d+)?)% ")
OURS_PIECE = re.compile(STAMP + r".*piece (\d+) verified.*?(\d+) of (\d+)")
# A leecher that seeds on (--seed-time) says so once complete.
OURS_COMPLETE = re.compile(STAMP + r"download complete: all \d+ pieces verified")


def epoch(stamp):
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def seeder(kind, lines, t0, pieces):
    first = {}
    uploaded = 0
    for line in lines:
        if kind == "ours":
            m = OURS_SERVED.match(line)
            if m:
                index = int(m.group(4))
                first.setdefault(index, epoch(m.group(1)))
                uploaded += int(m.group(5))
        else:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "first-upload":
                first.setdefault(int(parts[2]), float(parts[1]))
            elif len(parts) == 3 and parts[0] == "uploaded":
                uploaded = int(parts[2])
    all_out = "-"
    if len(first) >= pieces:
        all_out = f"{max(first.values()) - t0:.3f}"
    return f"{uploaded}\t{all_out}\t{len(first)}"


def leecher(kind, lines, t0, pieces, done):
    done_at = None
    piece_points = []  # (time, pieces complete)
    progress = [(t0, 0.0)]  # (time, percent)
    for line in lines:
        if kind == "ours":
            m = OURS_PIECE.match(line)
            if m:
                piece_points.append((epoch(m.group(1)), int(m.group(5))))
                continue
            m = OURS_COMPLETE.match(line)
            if m:
                at = epoch(m.group(1))
                progress.append((at, 100.0))
                if done_at is None:
                    done_at = at
                continue
            m = OURS_PROGRESS.match(line)
            if m and m.group(3) == "bittorrent::progress":
                at, percent = epoch(m.group(1)), float(m.group(4))
                progress.append((at, percent))
                if percent >= 100.0 and done_at is None:
                    done_at = at
        else:
            parts = line.split()
            if len(parts) == 5 and parts[0] == "piece":
                piece_points.append((float(parts[1]), int(parts[3])))
            elif len(parts) == 2 and parts[0] == "complete" and done_at is None:
                done_at = float(parts[1])
    if done_at is None and done is not None:
        done_at = done
    t95, how = None, "-"
    target = 0.95 * pieces
    for at, have in piece_points:
        if have >= target:
            t95, how = at, "pieces"
            break
    if t95 is None:
        for (a, pa), (b, pb) in zip(progress, progress[1:]):
            if pb >= 95.0:
                t95 = a + (b - a) * (95.0 - pa) / (pb - pa) if pb > pa else b
                how = "interpolated"
                break
    fmt = lambda t: "-" if t is None else f"{t - t0:.3f}"  # noqa: E731
    return f"{fmt(done_at)}\t{fmt(t95)}\t{how}"


def main():
    if len(sys.argv) < 6 or sys.argv[1] not in ("seeder", "leecher"):
        sys.exit(__doc__.strip().splitlines()[2])
    role, kind, path, t0, pieces = sys.argv[1:6]
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    if role == "seeder":
        print(seeder(kind, lines, float(t0), int(pieces)))
    else:
        done = float(sys.argv[6]) if len(sys.argv) > 6 and sys.argv[6] != "-" else None
        print(leecher(kind, lines, float(t0), int(pieces), done))


if __name__ == "__main__":
    main()
