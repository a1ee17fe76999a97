"""The DHT side of lt_peer.py: libtorrent's DHT (BEP 5) on 127.0.0.1 only.

lt_peer.py imports it only for --dht, --dht-node and dht-node. It holds the
session settings of a DHT that stays on loopback, and Dht: the first
contacts, the loopback check of every DHT packet, the stdout lines a test
waits for (announces received, lookup results, first reply of each node),
and the forced lookups of the torrent.
"""

import os
import warnings

import libtorrent as lt

# How often a torrent's DHT lookup (and announce) is forced: see Dht.
DHT_LOOKUP_INTERVAL = 5.0


def settings():
    """The session settings of a DHT on 127.0.0.1 with no bootstrap routers.

    The DHT runs on the listen_interfaces sockets, so it gets a socket only
    where the session listens on an IP address: "127.0.0.1:PORT" (the
    default here) has it, "lo:PORT" would not. dht_bootstrap_nodes is
    emptied, so libtorrent's default router on the Internet is never
    resolved nor contacted: the DHT starts with an empty routing table and
    knows only what add_dht_node gives it (the --dht-node contacts) and what
    they name. The restrictions libtorrent applies to nodes on one address
    are lifted, since every node of a test is 127.0.0.1 and differs only by
    its port: dht_restrict_routing_ips (at most one node per IP /24 in the
    table), dht_restrict_search_ips (one per IP in a lookup),
    dht_enforce_node_id and dht_prefer_verified_node_ids (node ids tied to
    the external address, BEP 42).
    """
    return {
        "enable_dht": True,
        "dht_bootstrap_nodes": "",
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_enforce_node_id": False,
        "dht_prefer_verified_node_ids": False,
    }


class Dht:
    """The DHT side of a session started with --dht: its first contacts,
    the loopback check of every packet, the announces it receives, and the
    torrent's lookups.

    libtorrent looks a torrent up (get_peers, then announce_peer to the
    closest nodes) when the torrent starts and then every
    dht_announce_interval (15 minutes): a lookup made while the routing
    table is still empty finds nothing. So the torrent's lookup is forced
    once the table has a node, and again every DHT_LOOKUP_INTERVAL seconds
    (a downloader until it is complete, a seeder so that nodes that joined
    later learn of it too).
    """

    def __init__(self, ses, contacts, log, say, fail):
        self.ses = ses
        self.contacts = contacts
        self.log = log  # a line on stderr
        self.say = say  # a line on stdout, which a test may wait for
        self.fail = fail  # an error: exits
        self.next_lookup = 0.0
        self.replied = set()  # nodes we have had a response from

    def start(self):
        """Adds the first contacts, once the DHT's socket is up: a node
        pinged before then is retried only about 15 s later."""
        for contact in self.contacts:
            self.log(f"add_dht_node {contact[0]}:{contact[1]}")
            self.ses.add_dht_node(contact)

    def nodes(self):
        """How many nodes the routing table holds."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return self.ses.status().dht_nodes

    def on_alert(self, alert):
        """Checks and reports one alert; True if it is a DHT alert."""
        if isinstance(alert, lt.dht_pkt_alert):
            # "==> [127.0.0.1:PORT] { ... }" or "<== [IP:PORT] { ... }"
            message = alert.message()
            endpoint = message.split("[", 1)[1].split("]", 1)[0] if "[" in message else ""
            if not endpoint.startswith("127."):
                self.fail(f"a DHT packet left loopback: {message}")
            self.log(f"dht {message}")
            # The top-level keys are printed sorted: "y" comes last.
            if message.startswith("<==") and "'y': 'r'" in message:
                if endpoint not in self.replied:
                    self.replied.add(endpoint)
                    self.say(f"dht reply from {endpoint}")
            return True
        if isinstance(alert, lt.dht_announce_alert):
            self.log(alert.message())
            self.say(f"dht announce {alert.info_hash} {alert.ip}:{alert.port}")
            return True
        if isinstance(alert, lt.dht_reply_alert):
            self.log(alert.message())
            self.say(f"dht peers {alert.num_peers}")
            return True
        return isinstance(alert, lt.dht_log_alert) and not os.environ.get("LT_PEER_LOG")

    def tick(self, handle, now):
        """Forces the torrent's lookup when it is due and the table has a
        node."""
        if handle is None or now < self.next_lookup or self.nodes() == 0:
            return
        self.log(f"force_dht_announce ({self.nodes()} nodes in the routing table)")
        handle.force_dht_announce()
        self.next_lookup = now + DHT_LOOKUP_INTERVAL
