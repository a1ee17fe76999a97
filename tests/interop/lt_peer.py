#!/usr/bin/python3
"""A libtorrent-rasterbar peer for the interoperability suite.

Usage:
    /usr/bin/python3 lt_peer.py seed     TORRENT DIR --port PORT [OPTIONS]
    /usr/bin/python3 lt_peer.py download TORRENT DIR --port PORT [OPTIONS]
    /usr/bin/python3 lt_peer.py download MAGNET  DIR --port PORT [OPTIONS]
    /usr/bin/python3 lt_peer.py dht-node --port PORT [--dht-node HOST:PORT ...]

OPTIONS:
    --peer HOST:PORT      a peer to dial (repeatable; [::1]:PORT for IPv6)
    --ut-metadata         add the ut_metadata plugin (implied by a magnet)
    --ut-pex              add the ut_pex plugin and allow peer exchange
    --listen-ip IP        listen on IP instead of 127.0.0.1: ::1, or both
                          (127.0.0.1 and ::1 on one port)
    --download-limit N    download at most N bytes a second (0: no limit)
    --dht                 run libtorrent's DHT (BEP 5) on 127.0.0.1 only, with
                          no bootstrap routers, and use it for the torrent
    --dht-node HOST:PORT  a DHT node to contact first (repeatable; implies
                          --dht): added with add_dht_node once the socket
                          is up; it must be on 127.0.0.1

DIR is libtorrent's save_path: the folder holding the torrent's file or top
folder (DIR/<name>), to seed from or to download into.

A download may be given a magnet link (BEP 9: "magnet:?xt=urn:btih:..."),
with its trackers (tr) and peers (x.pe): libtorrent then fetches the info
dictionary from its peers with ut_metadata before downloading. --ut-metadata
(implied by a magnet) adds libtorrent's ut_metadata plugin to the session, so
a seeder serves the info dictionary to peers that came by magnet link.

--ut-pex adds libtorrent's ut_pex plugin (BEP 11) and leaves peer exchange on
for the torrent: about a second after a peer's extension handshake, once the
torrent has two peers or more, libtorrent sends that peer the list of the
peers it is connected to (then, once a minute, what changed). --download-limit
keeps a downloader from completing during a test (a relay that stays
partial), so whoever downloads from it must also find another source.

dht-node runs a DHT node and no torrent (the hub of a test's DHT): it
answers queries, stores announced peers and prints each announce it gets.

stdout carries only the lines a test waits for, each flushed at once:
    listening on PORT   the session listens on 127.0.0.1:PORT (or the
                        --listen-ip address; the real port)
    dht announce HASH IP:PORT
                        (--dht, dht-node) a node announced (announce_peer)
                        the peer IP:PORT for the info-hash HASH (hex) to us
    dht peers N         (--dht, a torrent) a DHT lookup of the torrent's
                        info-hash (get_peers) returned N peers
    dht reply from IP:PORT
                        (--dht, dht-node) the first DHT response from the
                        node IP:PORT (once per node)
    seeding             (seed) the content was checked and is complete
    metadata received   (magnet download) the info dictionary arrived and
                        matches the info-hash
    complete            (download) every piece is downloaded and verified
stderr carries everything else: libtorrent's alerts (peers, trackers, errors)
and, once a second, a progress line.

Exit status:
    seed:     0 when stopped by SIGTERM or SIGINT; 1 if the content is
              incomplete after checking, or on a torrent or listen error.
    download: 0 once complete; 1 on a torrent or listen error; 128+signal
              if stopped by a signal before completing.

Set LT_PEER_LOG=1 in the environment to also log every message exchanged
with every peer (libtorrent's peer log): very verbose, for debugging.

The DHT side is in lt_dht.py, next to this file, imported only when a DHT is
asked for: without a DHT this file runs alone (scripts/bench.sh copies it).

It needs Debian's python3-libtorrent (libtorrent-rasterbar 2.0), which is
built for Debian's own /usr/bin/python3 only.

Everything is kept on loopback: the session listens on 127.0.0.1 only, and
finds peers only through the torrent's own tracker (the test's opentracker on
127.0.0.1) and the --peer addresses. DHT, local service discovery, UPnP,
NAT-PMP and (unless --ut-pex) peer exchange are all off; so is the DHT
unless --dht, and then it runs on 127.0.0.1 with no bootstrap routers,
reaches only the --dht-node nodes and the nodes they name, and exits with an
error if a DHT packet ever goes to or comes from anywhere but 127.0.0.1.
Connections are plain TCP (no uTP), unencrypted when we dial out, either way
when dialled. A magnet link's trackers and peers must be on loopback too: the
caller sees to that.
"""

import argparse
import os
import signal
import socket
import sys
import time

try:
    import libtorrent as lt
except ImportError as error:
    sys.exit(
        f"lt_peer.py: cannot import libtorrent ({error}); install python3-libtorrent "
        "and run this script with /usr/bin/python3"
    )

# How often to print the progress line, and to hand libtorrent again the
# --peer peers it is not connected to.
STATUS_INTERVAL = 1.0
RECONNECT_INTERVAL = 3.0
# Failed connection attempts after which libtorrent stops dialling a peer
# (its default is 3).
MAX_FAILCOUNT = 100

# Alerts too frequent to be worth a log line each.
QUIET_ALERTS = {
    "block_downloading_alert",
    "block_finished_alert",
    "block_timeout_alert",
    "block_uploaded_alert",
    "piece_finished_alert",
    "state_update_alert",
    "stats_alert",
    "session_stats_alert",
    "torrent_log_alert",
    "log_alert",
    # peer_connect_alert says the same, with the torrent's name.
    "incoming_connection_alert",
}


def log(message):
    """One line on stderr, with a timestamp, for the test's logs."""
    now = time.time()
    stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
    print(f"[lt {stamp}] {message}", file=sys.stderr, flush=True)


def say(line):
    """One line on stdout, which a test may be waiting for."""
    print(line, flush=True)


def fail(message):
    log(f"error: {message}")
    sys.exit(1)


def parse_args():
    parser = argparse.ArgumentParser(description="A libtorrent peer for loopback tests.")
    parser.add_argument("mode", choices=["seed", "download", "dht-node"])
    parser.add_argument(
        "source",
        nargs="?",
        help="the .torrent file, or (download) a magnet link: magnet:?xt=urn:btih:...",
    )
    parser.add_argument(
        "dir", nargs="?", help="save path: the folder that holds (or will hold) <name>"
    )
    parser.add_argument("--port", type=int, required=True, help="port to listen on, on 127.0.0.1")
    parser.add_argument(
        "--ut-metadata",
        action="store_true",
        help="add the ut_metadata plugin: serve the info dictionary to magnet peers "
        "(implied by a magnet link)",
    )
    parser.add_argument(
        "--ut-pex",
        action="store_true",
        help="add the ut_pex plugin and allow peer exchange (BEP 11) for the torrent",
    )
    parser.add_argument(
        "--listen-ip",
        default="127.0.0.1",
        metavar="IP",
        help="the loopback address to listen on: 127.0.0.1 (the default), ::1, "
        "or both (127.0.0.1 and ::1, one port)",
    )
    parser.add_argument(
        "--download-limit",
        type=int,
        default=0,
        metavar="BYTES",
        help="download at most BYTES a second (0, the default: no limit)",
    )
    parser.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a peer to connect to (repeatable)",
    )
    parser.add_argument(
        "--dht",
        action="store_true",
        help="run the DHT on 127.0.0.1 only, with no bootstrap routers, for the torrent too",
    )
    parser.add_argument(
        "--dht-node",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a DHT node on 127.0.0.1 to contact first (repeatable; implies --dht)",
    )
    args = parser.parse_args()
    if args.mode == "dht-node":
        if args.source is not None:
            parser.error("dht-node takes no torrent and no folder")
        args.dht = True
    elif args.source is None or args.dir is None:
        parser.error(f"{args.mode} needs a torrent (or magnet link) and a folder")
    if args.dht_node:
        args.dht = True
    if args.dht and args.listen_ip != "127.0.0.1":
        parser.error("--dht runs on 127.0.0.1 only")
    args.magnet = args.mode != "dht-node" and args.source.startswith("magnet:")
    if args.magnet and args.mode == "seed":
        parser.error("a seeder needs the .torrent file, not a magnet link")
    if args.magnet:
        args.ut_metadata = True
    if args.listen_ip not in ("127.0.0.1", "::1", "both"):
        parser.error(f"--listen-ip {args.listen_ip}: only 127.0.0.1, ::1 or both (loopback)")
    if args.download_limit < 0:
        parser.error("--download-limit must be 0 or more")
    return args


def parse_dht_node(text):
    """'127.0.0.1:PORT' -> ('127.0.0.1', port): a DHT contact, loopback only."""
    ip, port = parse_peer(text)
    if not ip.startswith("127."):
        fail(f"--dht-node {text!r}: the DHT of a test stays on 127.0.0.1")
    return (ip, port)


def parse_peer(text):
    """'HOST:PORT' or '[IPv6]:PORT' -> (ip, port); libtorrent's connect_peer
    wants an IP address."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        fail(f"--peer {text!r}: expected HOST:PORT")
    family = socket.AF_INET
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        family = socket.AF_INET6
    try:
        ip = socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)[0][4][0]
    except socket.gaierror as error:
        fail(f"--peer {text!r}: cannot resolve {host!r}: {error}")
    return (ip, int(port))


def listen_interfaces(listen_ip, port):
    """libtorrent's listen_interfaces for --listen-ip: with both, one port
    number on each family (the test gives a free one, not 0)."""
    if listen_ip == "both":
        return f"127.0.0.1:{port},[::1]:{port}"
    if ":" in listen_ip:
        return f"[{listen_ip}]:{port}"
    return f"{listen_ip}:{port}"


def lt_dht():
    """lt_dht.py, next to this script: the DHT side, imported only when a
    DHT is asked for (so that this file alone still runs without it)."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    try:
        import lt_dht as module
    except ImportError as error:
        fail(f"a DHT needs lt_dht.py next to lt_peer.py in {here} ({error})")
    return module


def session_settings(listen_ip, port, dht):
    """The session's settings: loopback only, plain TCP, no limits."""
    categories = lt.alert.category_t
    alert_mask = (
        categories.error_notification
        | categories.peer_notification  # peer errors, bans, snubs, bad requests
        | categories.connect_notification  # peer connects and disconnects
        | categories.status_notification  # state changes, checked, finished, listen
        | categories.tracker_notification  # announces, replies, errors
        | categories.storage_notification  # file errors
        | categories.ip_block_notification  # peers refused by a filter
        | categories.performance_warning
    )
    if os.environ.get("LT_PEER_LOG"):
        alert_mask |= categories.peer_log_notification
    if dht:
        # Announces received, lookups and their replies; and every DHT
        # packet (dht_pkt_alert, in the dht_log category), to check that
        # none leaves loopback and to show them in the log.
        alert_mask |= (
            categories.dht_notification
            | categories.dht_operation_notification
            | categories.dht_log_notification
        )
    settings = {
        # Listen on loopback only (127.0.0.1, or ::1 alone), at the port the
        # test chose. If it was taken meanwhile, libtorrent falls back to
        # another one (the real one is printed, and announced to the tracker).
        "listen_interfaces": listen_interfaces(listen_ip, port),
        "enable_ip_notifier": False,  # no re-opening sockets on network changes
        # Nothing beyond loopback: no DHT (unless --dht: see lt_dht.settings),
        # no local service discovery (multicast), no port mapping on a router.
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        # TCP only: the client under test speaks BitTorrent over TCP, not uTP.
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_tcp": True,
        "enable_incoming_tcp": True,
        # Plaintext: dial out unencrypted (a peer that only speaks plaintext
        # would otherwise first get an encrypted handshake it drops), and
        # accept incoming connections either plaintext or encrypted.
        "out_enc_policy": int(lt.enc_policy.disabled),
        "in_enc_policy": int(lt.enc_policy.enabled),
        "allowed_enc_level": int(lt.enc_level.both),
        "prefer_rc4": False,
        "announce_crypto_support": False,
        # Every peer is 127.0.0.1, told apart only by its port.
        "allow_multiple_connections_per_ip": True,
        # No rate limits, local or not.
        "download_rate_limit": 0,
        "upload_rate_limit": 0,
        "ignore_limits_on_local_network": True,
        # Retry a peer that refused us soon: libtorrent waits
        # (failures + 1) * min_reconnect_time seconds (default 60) before
        # dialling a peer again, and in a test a peer may simply not be
        # listening yet. (max_failcount, after which a peer is never dialled
        # again, is raised later: see raise_max_failcount.)
        "min_reconnect_time": 1,
        # Announce to every tracker of the torrent, not only the first that
        # answers (the tests list one: their opentracker).
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        # Do not linger when stopped: the "stopped" announce gets 2 s.
        "stop_tracker_timeout": 2,
        "alert_mask": int(alert_mask),
        "alert_queue_size": 100000,
        "user_agent": f"lt_peer.py/libtorrent {lt.__version__}",
    }
    if dht:
        settings.update(lt_dht().settings())
    else:
        settings["enable_dht"] = False
    return settings


def create_session(listen_ip, port, ut_metadata, ut_pex, dht):
    """A session with the settings above and no plugins but, if asked,
    ut_metadata and ut_pex.

    flags=0 leaves out add_default_plugins, so the session has none of
    libtorrent's default extensions: ut_pex (peer exchange, which could bring
    peers from outside the test), ut_metadata and smart_ban. Nothing else is
    needed to download and seed from a .torrent file. ut_metadata (BEP 9) is
    what a magnet link needs: it advertises "ut_metadata" and
    "metadata_size" in the extension handshake (BEP 10), serves the info
    dictionary and fetches it. The Python binding adds a plugin by name
    (and silently ignores a name it does not know); it is added before any
    torrent, since a torrent gets the plugins the session has when it is
    added. ut_pex (BEP 11) is in the binding's default session
    (lt.session() without flags), left out here unless asked.
    """
    ses = lt.session(session_settings(listen_ip, port, dht), flags=0)
    if ut_metadata:
        ses.add_extension("ut_metadata")
    if ut_pex:
        ses.add_extension("ut_pex")
    return ses


def raise_max_failcount(ses):
    """Raises max_failcount to MAX_FAILCOUNT for the torrent's peer list.

    libtorrent 2.0.8 quirk: a torrent's peer list starts with a limit of 3
    failures whatever the session's max_failcount, and takes the setting only
    when it changes while the list exists. So a peer dialled before it
    listens was given up for good after 3 refusals (about 5 s), and later
    connect_peer calls did nothing. Call this once the list exists (the
    torrent knows a peer): the change from the default reaches the list.
    """
    ses.apply_settings({"max_failcount": MAX_FAILCOUNT})


def wait_listening(ses, sockets, udp, timeout=30.0):
    """Waits until `sockets` TCP listen sockets are open and, if `udp`, the
    UDP socket too (the DHT's); returns the actual port."""
    deadline = time.monotonic() + timeout
    opened = 0
    udp_open = not udp
    udp_types = (lt.socket_type_t.udp, lt.socket_type_t.utp)
    while time.monotonic() < deadline:
        ses.wait_for_alert(200)
        for alert in ses.pop_alerts():
            if isinstance(alert, lt.listen_succeeded_alert):
                log(alert.message())
                if alert.socket_type == lt.socket_type_t.tcp:
                    opened += 1
                elif alert.socket_type in udp_types:
                    udp_open = True
            elif isinstance(alert, lt.listen_failed_alert):
                fail(f"cannot listen: {alert.message()}")
        if opened >= sockets and udp_open:
            return ses.listen_port()
    fail(f"not listening after {timeout:.0f} s")


def load_torrent(path):
    try:
        return lt.torrent_info(path)
    except RuntimeError as error:
        fail(f"cannot load {path}: {error}")


def add_torrent(ses, params, save_path, seed, pex, dht):
    """Adds the torrent of `params` (a .torrent's info, or a parsed magnet
    link) and returns its handle."""
    params.save_path = save_path
    # Start now, outside libtorrent's queue (not auto-managed), and keep the
    # per-torrent switches for LSD and (unless asked) DHT and peer exchange
    # off as well.
    flags = params.flags & ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
    flags |= lt.torrent_flags.disable_lsd
    if dht:
        flags &= ~lt.torrent_flags.disable_dht
    else:
        flags |= lt.torrent_flags.disable_dht
    if pex:
        flags &= ~lt.torrent_flags.disable_pex
    else:
        flags |= lt.torrent_flags.disable_pex
    if seed:
        # Upload mode: never request pieces, so a seeder whose content turns
        # out incomplete does not write into it before we exit.
        flags |= lt.torrent_flags.upload_mode
    params.flags = flags
    handle = ses.add_torrent(params)
    info = params.ti
    if info is not None:
        log(
            f"added {info.name()!r}: {info.total_size()} bytes, {info.num_pieces()} pieces "
            f"of {info.piece_length()}, {info.num_files()} file(s), "
            f"info-hash {info.info_hash()}, trackers {[t.url for t in info.trackers()]}, "
            f"save path {save_path}"
        )
    else:
        log(
            f"added magnet {params.name!r}: info-hash {params.info_hashes.v1}, "
            f"trackers {list(params.trackers)}, peers {list(params.peers)}, "
            f"save path {save_path}; fetching the info dictionary (ut_metadata)"
        )
    return handle


def torrent_params(args):
    """add_torrent_params for the source: a .torrent file or a magnet link."""
    if args.magnet:
        try:
            return lt.parse_magnet_uri(args.source)
        except RuntimeError as error:
            fail(f"cannot parse the magnet link {args.source!r}: {error}")
    params = lt.add_torrent_params()
    params.ti = load_torrent(args.source)
    return params


def describe_alert(alert):
    """A log line for an alert: its type and libtorrent's own message, plus
    the error code where there is one (the message sometimes omits it)."""
    text = f"{type(alert).__name__}: {alert.message()}"
    error = getattr(alert, "error", None)
    if isinstance(error, lt.error_code) and error.value() != 0 and error.message() not in text:
        text += f" [{error.category().name()}:{error.value()} {error.message()}]"
    return text


def is_self_connection(alert, own):
    """Whether this alert is about libtorrent dialling itself.

    The tracker (or, with --ut-pex, another peer's PEX message) lists this
    session among the torrent's peers, and libtorrent dials it like any other: the session accepts its own connection, sees its
    own peer id, and drops it ("connected to ourselves"). It is harmless but,
    with the short reconnect time set above, it repeats every second or so,
    so it is logged once.
    """
    ip = getattr(alert, "ip", None)
    if isinstance(alert, lt.peer_alert) and ip is not None and tuple(ip) == own:
        return True
    error = getattr(alert, "error", None)
    return (
        isinstance(alert, lt.peer_disconnected_alert)
        and isinstance(error, lt.error_code)
        and error.message() == "connected to ourselves"
    )


def torrent_error(alert):
    """The error message if this alert means the torrent itself failed."""
    if isinstance(alert, (lt.torrent_error_alert, lt.file_error_alert)):
        return alert.message()
    if isinstance(alert, lt.add_torrent_alert) and alert.error.value() != 0:
        return alert.message()
    return None


def status_line(st):
    return (
        f"{st.state} {st.progress * 100:.1f}% "
        f"({st.total_wanted_done}/{st.total_wanted} bytes, {st.num_pieces} pieces) "
        f"peers {st.num_peers} (seeds {st.num_seeds}) "
        f"down {st.download_payload_rate / 1024:.0f} KiB/s "
        f"up {st.upload_payload_rate / 1024:.0f} KiB/s "
        f"uploaded {st.total_payload_upload} bytes"
    )


def start_session(args):
    """The session of `args`, listening (and its DHT started, with --dht);
    returns it, its Dht (or None) and the port it listens on."""
    ses = create_session(args.listen_ip, args.port, args.ut_metadata, args.ut_pex, args.dht)
    port = wait_listening(ses, 2 if args.listen_ip == "both" else 1, udp=args.dht)
    if port != args.port and args.port != 0:
        log(f"warning: port {args.port} was taken; listening on {port} instead")
    say(f"listening on {port}")
    dht = None
    if args.dht:
        contacts = [parse_dht_node(text) for text in args.dht_node]
        dht = lt_dht().Dht(ses, contacts, log=log, say=say, fail=fail)
        dht.start()
    return ses, dht, port


def run_dht_node(args, stop):
    """dht-node: a DHT node with no torrent, until stopped."""
    ses, dht, _port = start_session(args)
    next_status = 0.0
    while not stop:
        ses.wait_for_alert(250)
        for alert in ses.pop_alerts():
            if not dht.on_alert(alert) and type(alert).__name__ not in QUIET_ALERTS:
                log(describe_alert(alert))
        now = time.monotonic()
        if now >= next_status:
            log(f"dht: {dht.nodes()} nodes in the routing table")
            next_status = now + STATUS_INTERVAL * 5
    log(f"stopped by signal {stop[0]}")
    del ses
    log("done")
    return 0


def main():
    args = parse_args()

    # SIGTERM and SIGINT end the main loop; the session is then closed
    # cleanly (files flushed, "stopped" sent to the tracker).
    stop = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: stop.append(number))
    if args.mode == "dht-node":
        return run_dht_node(args, stop)

    peers = [parse_peer(text) for text in args.peer]
    save_path = os.path.abspath(args.dir)
    if args.mode == "download":
        os.makedirs(save_path, exist_ok=True)

    params = torrent_params(args)
    info = params.ti  # None until a magnet's metadata arrives
    ses, dht, port = start_session(args)

    handle = add_torrent(
        ses, params, save_path, seed=args.mode == "seed", pex=args.ut_pex, dht=args.dht
    )
    if args.download_limit:
        handle.set_download_limit(args.download_limit)
        log(f"download limit {args.download_limit} bytes/s")

    checked = False  # the initial check of existing data is done
    announced_seeding = False
    finished = False
    ever_connected = set()  # --peer endpoints we have been connected to
    # our own listen endpoint (with both, the IPv4 one)
    own = ("127.0.0.1" if args.listen_ip == "both" else args.listen_ip, port)
    failcount_raised = False
    self_noted = False
    next_status = 0.0
    next_dial = 0.0
    exit_code = 0

    while not stop:
        ses.wait_for_alert(250)
        for alert in ses.pop_alerts():
            name = type(alert).__name__
            if dht is not None and dht.on_alert(alert):
                pass
            elif is_self_connection(alert, own) and not os.environ.get("LT_PEER_LOG"):
                if not self_noted:
                    log(f"{describe_alert(alert)} (a tracker or a peer's PEX lists us; such lines are not shown again)")
                    self_noted = True
            elif name not in QUIET_ALERTS or os.environ.get("LT_PEER_LOG"):
                log(describe_alert(alert))
            error = torrent_error(alert)
            if error is not None:
                fail(f"torrent error: {error}")
            if isinstance(alert, lt.metadata_received_alert):
                info = handle.torrent_file()
                log(
                    f"metadata received: {info.name()!r}, {info.total_size()} bytes, "
                    f"{info.num_pieces()} pieces of {info.piece_length()}, "
                    f"{info.num_files()} file(s), {len(info.info_section())} bytes of info dictionary"
                )
                say("metadata received")
            elif isinstance(alert, lt.torrent_checked_alert):
                checked = True
            elif isinstance(alert, lt.peer_connect_alert):
                ever_connected.add(tuple(alert.ip))

        st = handle.status()
        if st.errc.value() != 0:
            fail(f"torrent error: {st.errc.message()} (file: {st.error_file})")
        if not failcount_raised and st.list_peers > 0:
            raise_max_failcount(ses)
            failcount_raised = True
        # A torrent added without resume data is always checked first, so
        # torrent_checked_alert tells when the content on disk is known.
        checking = st.state in (
            lt.torrent_status.checking_files,
            lt.torrent_status.checking_resume_data,
        )
        if checked and not checking and info is not None:
            complete = st.is_seeding and st.num_pieces == info.num_pieces()
            if args.mode == "seed" and not announced_seeding:
                if not complete:
                    fail(
                        f"{os.path.join(save_path, info.name())} is incomplete: "
                        f"{st.num_pieces} of {info.num_pieces()} pieces after checking"
                    )
                log(status_line(st))
                say("seeding")
                announced_seeding = True
            elif args.mode == "download" and complete:
                log(status_line(st))
                finished = True
                break

        now = time.monotonic()
        if dht is not None:
            dht.tick(handle, now)
        if now >= next_status:
            log(status_line(st))
            next_status = now + STATUS_INTERVAL
        # Dial the --peer peers we are not connected to: a downloader keeps
        # trying until it is complete (the remote may not be listening yet,
        # or may have dropped us); a seeder until it has reached each once.
        # connect_peer only puts the peer in the torrent's peer list (again,
        # if it was dropped from it): libtorrent dials it at once the first
        # time, then when its reconnect delay allows (see min_reconnect_time).
        # (A magnet download has no check before its metadata arrives, and
        # may need these very peers to fetch it.)
        if peers and (checked or args.magnet) and now >= next_dial:
            connected = {tuple(p.ip) for p in handle.get_peer_info()}
            for peer in peers:
                if peer in connected:
                    continue
                if args.mode == "seed" and peer in ever_connected:
                    continue
                log(f"--peer {peer[0]}:{peer[1]} is not connected: connect_peer")
                handle.connect_peer(peer)
            next_dial = now + RECONNECT_INTERVAL

    if stop:
        log(f"stopped by signal {stop[0]}")
        if args.mode == "download" and not finished:
            exit_code = 128 + stop[0]

    # Close the session before exiting: this waits for the disk threads
    # (every piece written) and sends the tracker its "stopped" announce.
    log("closing the session")
    ses.pause()
    del handle
    del ses
    if finished:
        say("complete")
    log("done")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
