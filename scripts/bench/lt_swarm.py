#!/usr/bin/python3
"""A libtorrent peer for the benchmarks: rate-limited swarm peers and a
high-performance seeder.

Usage:
    /usr/bin/python3 lt_swarm.py seed  TORRENT DIR --listen IP:PORT [OPTIONS]
    /usr/bin/python3 lt_swarm.py leech TORRENT DIR --listen IP:PORT [OPTIONS]

OPTIONS:
    --upload-limit N   upload at most N payload bytes a second (0: no limit)
    --high-performance-seed
                       start from libtorrent's high_performance_seed preset
    --log-uploads      (seed) print the first upload of each piece
    --peer HOST:PORT   a peer to dial (repeatable)

It is built on lt_peer.py (the interop suite's driver, copied next to this
file by the scripts): the same loopback-only session settings (no DHT, LSD,
UPnP, NAT-PMP, uTP or peer exchange; plain TCP; IP on loopback), with two
changes. Rate limits apply to every peer: libtorrent puts 127.0.0.0/8 in its
"local" peer class, which is never limited, so a peer-class filter puts every
address in the global class, whose limit is upload_rate_limit. And a leecher
does not exit when complete: it seeds on until stopped (SIGTERM or SIGINT),
as the peers of a swarm do.

stdout, one line per event, each flushed, times in seconds since the epoch:
    listening on PORT
    seeding                    (seed) the content was checked and is complete
    piece T INDEX HAVE TOTAL   (leech) piece INDEX passed its hash check at
                               T; HAVE of TOTAL pieces are now complete
    complete T                 (leech) every piece is complete
    first-upload T INDEX       (--log-uploads) a block of piece INDEX left
                               for the first time
    uploaded T BYTES           payload bytes uploaded so far, every second
                               and once more when stopped
stderr: libtorrent's alerts, as lt_peer.py logs them.
"""

import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lt_peer  # noqa: E402  (next to this file)
from lt_peer import lt  # noqa: E402


def say(line):
    print(line, flush=True)


def parse_args():
    parser = argparse.ArgumentParser(description="A libtorrent swarm peer for loopback benchmarks.")
    parser.add_argument("mode", choices=["seed", "leech"])
    parser.add_argument("torrent")
    parser.add_argument("dir")
    parser.add_argument("--listen", required=True, metavar="IP:PORT")
    parser.add_argument("--upload-limit", type=int, default=0, metavar="BYTES")
    parser.add_argument("--high-performance-seed", action="store_true")
    parser.add_argument("--log-uploads", action="store_true")
    parser.add_argument("--peer", action="append", default=[], metavar="HOST:PORT")
    args = parser.parse_args()
    ip, _, port = args.listen.rpartition(":")
    if not ip.startswith("127.") or not port.isdigit():
        parser.error("--listen must be a 127.x.y.z address and a port")
    args.ip, args.port = ip, int(port)
    return args


def settings(args):
    """lt_peer.py's settings, on top of the preset if asked, with limits."""
    pack = lt.high_performance_seed() if args.high_performance_seed else {}
    pack.update(lt_peer.session_settings(args.ip, args.port, False))
    categories = lt.alert.category_t
    pack["alert_mask"] |= int(categories.piece_progress_notification)
    if args.log_uploads:
        pack["alert_mask"] |= int(categories.upload_notification)
    pack["upload_rate_limit"] = args.upload_limit
    pack["ignore_limits_on_local_network"] = False
    return pack


def main():
    args = parse_args()
    stop = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: stop.append(number))
    ses = lt.session(settings(args), flags=0)
    # Every address in the global peer class (only), so that the session's
    # rate limits apply to loopback peers too.
    classes = lt.ip_filter()
    classes.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
    ses.set_peer_class_filter(classes)
    port = lt_peer.wait_listening(ses, 1, udp=False)
    say(f"listening on {port}")
    seed = args.mode == "seed"
    save_path = os.path.abspath(args.dir)
    os.makedirs(save_path, exist_ok=True)
    params = lt.add_torrent_params()
    params.ti = lt_peer.load_torrent(args.torrent)
    info = params.ti
    handle = lt_peer.add_torrent(ses, params, save_path, seed=seed, pex=False, dht=False)
    peers = [lt_peer.parse_peer(text) for text in args.peer]
    total = info.num_pieces()
    have = 0
    checked = announced = complete = failcount_raised = False
    uploaded_pieces = set()
    next_status = 0.0
    while not stop:
        ses.wait_for_alert(100)
        for alert in ses.pop_alerts():
            now = time.time()
            if isinstance(alert, lt.block_uploaded_alert):
                if alert.piece_index not in uploaded_pieces:
                    uploaded_pieces.add(alert.piece_index)
                    say(f"first-upload {now:.3f} {alert.piece_index}")
                continue
            if isinstance(alert, lt.piece_finished_alert):
                if checked:
                    have += 1
                    say(f"piece {now:.3f} {alert.piece_index} {have} {total}")
                continue
            if type(alert).__name__ not in lt_peer.QUIET_ALERTS:
                lt_peer.log(lt_peer.describe_alert(alert))
            error = lt_peer.torrent_error(alert)
            if error is not None:
                lt_peer.fail(f"torrent error: {error}")
            if isinstance(alert, lt.torrent_checked_alert):
                checked = True
                have = handle.status().num_pieces
                if peers:
                    for peer in peers:
                        handle.connect_peer(peer)
        st = handle.status()
        if not failcount_raised and st.list_peers > 0:
            lt_peer.raise_max_failcount(ses)
            failcount_raised = True
        checking = st.state in (
            lt.torrent_status.checking_files,
            lt.torrent_status.checking_resume_data,
        )
        if checked and not checking:
            done = st.is_seeding and st.num_pieces == total
            if seed and not announced:
                if not done:
                    lt_peer.fail(f"the content is incomplete: {st.num_pieces} of {total} pieces")
                say("seeding")
                announced = True
            elif not seed and done and not complete:
                say(f"complete {time.time():.3f}")
                complete = True
        now = time.monotonic()
        if now >= next_status:
            lt_peer.log(lt_peer.status_line(st))
            say(f"uploaded {time.time():.3f} {st.total_payload_upload}")
            next_status = now + 1.0
    say(f"uploaded {time.time():.3f} {handle.status().total_payload_upload}")
    lt_peer.log(f"stopped by signal {stop[0]}; closing the session")
    ses.pause()
    del handle
    del ses
    return 0


if __name__ == "__main__":
    sys.exit(main())
