# How each client is started (sourced by scripts/bench.sh).
#
# The settings are those of the interoperability suite (docs/interop.md,
# tests/interop/support/clients.rs): loopback only, no DHT, local peer
# discovery, peer exchange, UPnP or uTP, plaintext connections, no rate
# limits. Each *_download_cmd fills the array CMD with a command that
# downloads TORRENT into OUT (OUT/<name> is then the content) and exits 0
# once the download is complete and verified.

# Our binary and the libtorrent driver are copied into $BENCH_DIR/bin at the
# start of a run, so a rebuild or an edit in the work tree while the
# benchmark runs cannot change what is measured.
OURS=$BENCH_DIR/bin/bittorrent
LT_PEER=$BENCH_DIR/bin/lt_peer.py
LT_SWARM=$BENCH_DIR/bin/lt_swarm.py

# Whether client $1 is installed (ours always is: it was just built).
have_client() {
  case $1 in
    ours) return 0 ;;
    libtorrent) [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import libtorrent' 2>/dev/null ;;
    aria2) command -v aria2c >/dev/null ;;
    transmission) command -v transmission-cli >/dev/null && command -v stdbuf >/dev/null ;;
    rqbit) command -v rqbit >/dev/null ;;
    *) return 1 ;;
  esac
}

# How to install client $1, for the "missing" rows.
install_hint() {
  case $1 in
    libtorrent) echo "apt-get install python3-libtorrent" ;;
    aria2) echo "apt-get install aria2" ;;
    transmission) echo "apt-get install transmission-cli" ;;
    rqbit) echo "cargo install rqbit" ;;
  esac
}

# The version of client $1, one line.
client_version() {
  have_client "$1" || { echo "missing ($(install_hint "$1"))"; return; }
  case $1 in
    ours) echo "bittorrent $("$OURS" --version | awk '{ print $2 }') (git $BENCH_COMMIT)" ;;
    libtorrent) echo "libtorrent-rasterbar $(/usr/bin/python3 -c 'import libtorrent; print(libtorrent.__version__)') (python3-libtorrent, lt_peer.py)" ;;
    aria2) aria2c --version | head -n 1 ;;
    transmission) transmission-cli --version 2>&1 | head -n 1 ;;
    rqbit) echo "rqbit $(rqbit --version 2>&1 | head -n 1)" ;;
  esac
}

# Whether a client is dialled by our seeder rather than dialling it: aria2c
# takes no peer address by hand, and Transmission 3.00 never dials 127.x, so
# for those the downloader starts first on a known port and our seeder is
# given --peer 127.0.0.1:THEIRPORT.
is_dialled() {
  case $1 in aria2 | transmission) return 0 ;; *) return 1 ;; esac
}

# download_cmd CLIENT TORRENT OUT PORT RUNDIR PEER...: sets CMD. PEER are
# host:port of the seeders, for the clients that dial them.
download_cmd() {
  local client=$1 torrent=$2 out=$3 port=$4 rundir=$5
  shift 5
  local peer
  CMD=()
  case $client in
    ours)
      CMD=("$OURS" "$torrent" -d "$out" --port "$port" --no-dht)
      for peer in "$@"; do CMD+=(--peer "$peer"); done
      ;;
    libtorrent)
      # python3-libtorrent is built for Debian's own Python.
      CMD=(/usr/bin/python3 "$LT_PEER" download "$torrent" "$out" --port "$port")
      for peer in "$@"; do CMD+=(--peer "$peer"); done
      ;;
    aria2)
      # --seed-time=0: exit as soon as the download is complete and verified.
      CMD=(aria2c "--dir=$out" "--listen-port=$port"
        --enable-dht=false --enable-dht6=false --bt-enable-lpd=false
        --enable-peer-exchange=false --bt-require-crypto=false
        --bt-min-crypto-level=plain --disable-ipv6=true --file-allocation=none
        --summary-interval=1 --console-log-level=notice --no-conf=true
        --seed-time=0 "$torrent")
      ;;
    transmission)
      transmission_config "$rundir/transmission-config" "$port"
      # Its status lines are block-buffered into the log otherwise.
      CMD=(stdbuf -o0 transmission-cli -g "$rundir/transmission-config" -w "$out"
        -p "$port" -et -M -D -U "$torrent")
      ;;
    rqbit)
      rqbit_download_cmd "$torrent" "$out" "$@"
      ;;
    *) die "unknown client $client" ;;
  esac
}

# transmission_config DIR PORT: a fresh settings.json like the interop
# suite's for a downloader: the seed ratio limit of 0 makes transmission-cli
# exit 0 once the download is complete and verified.
transmission_config() {
  local dir=$1 port=$2
  rm -rf "$dir"
  mkdir -p "$dir"
  cat >"$dir/settings.json" <<EOF
{
    "dht-enabled": false,
    "lpd-enabled": false,
    "pex-enabled": false,
    "utp-enabled": false,
    "port-forwarding-enabled": false,
    "blocklist-enabled": false,
    "rpc-enabled": false,
    "encryption": 0,
    "peer-port": $port,
    "peer-port-random-on-start": false,
    "bind-address-ipv4": "127.0.0.1",
    "rename-partial-files": false,
    "incomplete-dir-enabled": false,
    "speed-limit-up-enabled": false,
    "speed-limit-down-enabled": false,
    "alt-speed-enabled": false,
    "ratio-limit-enabled": true,
    "ratio-limit": 0,
    "idle-seeding-limit-enabled": false,
    "message-level": 2
}
EOF
}

# rqbit_download_cmd TORRENT OUT PEER...: sets CMD. rqbit's flags have
# changed between versions, so each optional one is passed only when its
# --help lists it. Not exercised on the machine the script was written on
# (rqbit was not installed there).
rqbit_download_cmd() {
  local torrent=$1 out=$2
  shift 2
  local global_help download_help peers flag
  global_help=$(rqbit --help 2>&1 || true)
  download_help=$(rqbit download --help 2>&1 || true)
  CMD=(rqbit)
  for flag in --disable-dht --disable-dht-persistence --disable-upnp-port-forward --disable-upnp; do
    grep -qE -- "$flag([ ,=]|\$)" <<<"$global_help" && CMD+=("$flag")
  done
  CMD+=(download -o "$out" --exit-on-finish)
  for flag in --disable-http-api --disable-trackers; do
    grep -qE -- "$flag([ ,=]|\$)" <<<"$download_help" && CMD+=("$flag")
  done
  peers=$(IFS=,; echo "$*")
  [ -n "$peers" ] && CMD+=(--initial-peers "$peers")
  CMD+=("$torrent")
}

# start_seeder CLIENT TORRENT CONTENT LOG [PEER]: starts a seeder of CONTENT
# in the background and waits (120 s at most) until it has checked the
# content and serves it. Sets SEEDER_PID, SEEDER_PORT and SEEDER_READY (the
# `now` stamp at which it said so). CLIENT is ours, libtorrent (lt_peer.py)
# or ltseed (libtorrent with its high_performance_seed settings, through
# lt_swarm.py); ours and ltseed are given PEER to dial.
start_seeder() {
  spawn_seeder "$@"
  await_seeder "$1" "$SEEDER_PID" "$4"
}

# spawn_seeder CLIENT TORRENT CONTENT LOG [PEER]: starts the seeder and sets
# SEEDER_PID, without waiting for it (several start at once this way).
spawn_seeder() {
  local client=$1 torrent=$2 content=$3 log=$4 peer=${5:-} cmd port
  case $client in
    ours)
      cmd=("$OURS" "$torrent" -s "$content" --port 0 --no-dht)
      [ -z "$peer" ] || cmd+=(--peer "$peer")
      ;;
    libtorrent)
      # save_path is the folder holding the content.
      port=$(free_port)
      cmd=(/usr/bin/python3 "$LT_PEER" seed "$torrent" "$(dirname "$content")" --port "$port")
      ;;
    ltseed)
      port=$(free_port)
      cmd=(/usr/bin/python3 "$LT_SWARM" seed "$torrent" "$(dirname "$content")"
        --listen "127.0.0.1:$port" --high-performance-seed)
      [ -z "$peer" ] || cmd+=(--peer "$peer")
      ;;
    *) die "no seeder for $client" ;;
  esac
  spawn "$log" "${cmd[@]}"
  SEEDER_PID=$SPAWNED
}

# await_seeder CLIENT PID LOG: waits until the seeder serves; sets
# SEEDER_READY and SEEDER_PORT.
await_seeder() {
  local client=$1 pid=$2 log=$3
  case $client in
    ours)
      SEEDER_READY=$(wait_line "$pid" "$log" '^seeding on port' 120) ||
        { cat "$log" >&2; die "our seeder did not start (log: $log)"; }
      SEEDER_PORT=$(sed -n 's/^seeding on port \([0-9]*\).*/\1/p' "$log" | head -n 1)
      ;;
    *)
      SEEDER_READY=$(wait_line "$pid" "$log" '^seeding$' 120) ||
        { cat "$log" >&2; die "the $client seeder did not start (log: $log)"; }
      SEEDER_PORT=$(sed -n 's/^listening on \([0-9]*\)$/\1/p' "$log" | head -n 1)
      ;;
  esac
}

# Stops a seeder cleanly: ours on SIGINT (it announces `stopped` and exits
# 0), lt_peer.py on SIGTERM.
stop_seeder() {
  local client=$1 pid=$2
  case $client in
    ours) stop "$pid" INT || say "our seeder $pid exited with status $?" ;;
    *) stop "$pid" TERM || say "the $client seeder $pid exited with status $?" ;;
  esac
}
