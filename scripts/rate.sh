#!/usr/bin/env bash
# The rate-limit benchmark (issue 14): how close --max-upload-rate and
# --max-download-rate hold the payload rate to the limit over 10 s, with
# one peer and with 20, on 127.0.0.1 only, release build.
#
# Usage: bash scripts/rate.sh             (about 3 minutes at the defaults)
#   RATES="1M 10M"  limits to measure, in the flags' syntax (default 1M 10M)
#   WINDOW=S        seconds measured (default 10), after WARMUP=S (default 2)
#                   of transfer
#   PEERS=N         peers of the many-peer scenarios (default 20)
#   SCENARIOS="…"   which to run, of up1 upN down1 downN (default all four)
#   RATE_DIR=DIR    work dir (default /tmp/bittorrent-rate): content,
#                   torrent, logs
#
# Scenarios, for each rate R:
#   upload 1     one seeder with --max-upload-rate R, one downloader
#   upload N     one seeder with --max-upload-rate R and --upload-slots N,
#                N downloader processes at once (so N peer threads of the
#                seeder share its one limit)
#   download 1   one downloader with --max-download-rate R, one seeder
#   download N   one downloader with --max-download-rate R, N seeder
#                processes (N peer threads of the downloader share its limit)
# Every process has its own loopback address (127.0.0.11, .12, ... for the
# downloaders of the upload scenarios, 127.0.0.41, ... for the seeders of
# the download ones), since a peer takes at most a few connections from
# one IP; the seeder dials the downloaders in the upload scenarios. No
# tracker, no DHT, no peer exchange: every byte goes between the seeders
# and the downloaders.
#
# What is measured: the bytes of the limited process's TCP connections over
# the window, from the kernel (`ss -ti`: bytes_acked of the seeder's
# sockets, bytes_received of the downloader's). That is the pieces' payload
# plus the wire framing around it (13 bytes per 16 KiB block and a few
# messages: under 0.2%). The window starts WARMUP seconds after the first
# MiB moves. For N peers the spread of the N connections' shares (smallest
# and largest against the mean) is printed too. Target: achieved/limit
# within 0.90..1.10.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

RATES=${RATES:-1M 10M}
WINDOW=${WINDOW:-10}
WARMUP=${WARMUP:-2}
PEERS=${PEERS:-20}
SCENARIOS=${SCENARIOS:-up1 upN down1 downN}
RATE_DIR=${RATE_DIR:-/tmp/bittorrent-rate}
# The benchmark's helpers: spawn/stop in process groups, cleanup on exit.
source "$REPO/scripts/bench/lib.sh"
trap cleanup EXIT

case "${1:-}" in
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) die "no arguments are taken (settings are environment variables; see --help)" ;;
esac
for tool in mktorrent ss setsid; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done
[[ $WINDOW =~ ^[0-9]+$ ]] && [ "$WINDOW" -ge 1 ] || die "WINDOW must be a number of seconds"
[[ $PEERS =~ ^[0-9]+$ ]] && [ "$PEERS" -ge 2 ] || die "PEERS must be at least 2"

say "cargo build --release"
cargo build --release --quiet
BIN="$RATE_DIR/bin/bittorrent"
mkdir -p "$RATE_DIR/bin" "$RATE_DIR/logs"
cp "${CARGO_TARGET_DIR:-$REPO/target}/release/bittorrent" "$BIN"

# bytes RATE: the limit in bytes a second, as the binary parses it (K =
# 1000, KiB = 1024; the same rules, in awk, for the report only).
bytes() {
  echo "$1" | awk '{
    s = $0; n = s + 0; u = s; sub(/^[0-9.]+ */, "", u); u = tolower(u); sub(/\/s$/, "", u)
    m["" ] = 1; m["b"] = 1; m["k"] = 1e3; m["kb"] = 1e3; m["m"] = 1e6; m["mb"] = 1e6
    m["g"] = 1e9; m["gb"] = 1e9; m["ki"] = 1024; m["kib"] = 1024; m["mi"] = 1048576
    m["mib"] = 1048576; m["gi"] = 1073741824; m["gib"] = 1073741824
    if (!(u in m)) exit 1; printf "%d\n", n * m[u] }'
}

max_rate=0
for rate in $RATES; do
  b=$(bytes "$rate") || die "bad rate $rate"
  [ "$b" -gt "$max_rate" ] && max_rate=$b
done
# Enough content that no transfer ends inside the window, whatever the rate.
size_mib=$(((max_rate * (WINDOW + WARMUP + 8)) / 1048576 + 1))
# At least 64 MiB: 256 pieces, so that 20 peers are not in the endgame.
[ "$size_mib" -ge 64 ] || size_mib=64
CONTENT="$RATE_DIR/content-$size_mib/rate.bin"
TORRENT="$RATE_DIR/rate-$size_mib.torrent"
if [ ! -e "$TORRENT" ]; then
  say "making $size_mib MiB of content and its torrent"
  mkdir -p "$(dirname "$CONTENT")"
  head -c $((size_mib * 1048576)) /dev/urandom >"$CONTENT.part"
  mv "$CONTENT.part" "$CONTENT"
  # 256 KiB pieces, no announce URL: peers come from --peer or dial in.
  mktorrent -d -l 18 -o "$TORRENT" "$CONTENT" >/dev/null 2>&1
fi

# sockets FIELD FILTER: "LOCAL PEER VALUE" for each established TCP
# connection that matches the ss FILTER, VALUE being its FIELD counter
# (bytes_acked, bytes_received).
sockets() {
  ss -tinH state established "$2" 2>/dev/null | awk -v f="$1" '
    /^[^ \t]/ { key = $3 " " $4; next }
    { v = 0; if (match($0, f ":[0-9]+")) v = substr($0, RSTART + length(f) + 1, RLENGTH - length(f) - 1)
      print key, v }'
}

# total FIELD FILTER: the sum of FIELD over the matching connections.
total() {
  sockets "$1" "$2" | awk '{ s += $3 } END { print s + 0 }'
}

# measure FIELD FILTER: waits for a MiB to move over the connections FILTER
# matches, then WARMUP s, then measures WINDOW s; prints the bytes a second
# of all of them, then of each connection that lasted the window.
measure() {
  local field=$1 filter=$2 i start before after t0 t1
  start=$(total "$field" "$filter")
  for ((i = 0; i < 1200; i++)); do
    [ $(($(total "$field" "$filter") - start)) -gt 1048576 ] && break
    sleep 0.1
  done
  sleep "$WARMUP"
  before=$(sockets "$field" "$filter")
  t0=$EPOCHREALTIME
  sleep "$WINDOW"
  after=$(sockets "$field" "$filter")
  t1=$EPOCHREALTIME
  awk -v t0="$t0" -v t1="$t1" '
    FNR == NR { was[$1 " " $2] = $3; next }
    ($1 " " $2) in was { d = ($3 - was[$1 " " $2]) / (t1 - t0); sum += d; share[++n] = d }
    END { printf "%.0f\n", sum; for (i = 1; i <= n; i++) printf "%.0f\n", share[i] }
  ' <(echo "$before") <(echo "$after")
}

# seeder IP PORT LOG ARGS...: a seeder of the content on IP:PORT.
seeder() {
  local ip=$1 port=$2 log=$3
  shift 3
  spawn "$log" "$BIN" "$TORRENT" -s "$CONTENT" --bind "$ip" --port "$port" \
    --no-dht --no-pex --no-progress "$@"
  wait_line "$SPAWNED" "$log" '^seeding on port' 120 >/dev/null ||
    { cat "$log" >&2; die "a seeder did not start (log: $log)"; }
}

# downloader IP PORT DEST LOG ARGS...: a downloader into DEST (fresh),
# listening on IP:PORT.
downloader() {
  local ip=$1 port=$2 dest=$3 log=$4
  shift 4
  rm -rf "$dest"
  mkdir -p "$dest"
  spawn "$log" "$BIN" "$TORRENT" -d "$dest" --bind "$ip" --port "$port" \
    --no-dht --no-pex --no-progress "$@"
  local i
  for ((i = 0; i < 600; i++)); do
    [ -n "$(ss -Htln "src $ip and sport = :$port" 2>/dev/null)" ] && return 0
    running "$SPAWNED" || break
    sleep 0.05
  done
  cat "$log" >&2
  die "a downloader did not start (log: $log)"
}

# report NAME LIMIT ACHIEVED [SHARES...]
report() {
  local name=$1 limit=$2 achieved=$3
  shift 3
  local spread=""
  if [ $# -gt 1 ]; then
    spread=$(printf '%s\n' "$@" | awk '
      { s += $1; if (NR == 1 || $1 < lo) lo = $1; if (NR == 1 || $1 > hi) hi = $1 }
      END { m = s / NR; printf "  shares %d peers: min %.2f max %.2f of the mean", NR, lo / m, hi / m }')
  fi
  awk -v n="$name" -v l="$limit" -v a="$achieved" -v s="$spread" 'BEGIN {
    r = a / l; ok = (r >= 0.9 && r <= 1.1) ? "ok" : "OUT OF RANGE"
    printf "%-22s limit %10d B/s  achieved %10d B/s  ratio %.3f  %s%s\n", n, l, a, r, ok, s }'
}

# wanted DIRECTION N: whether SCENARIOS names this one.
wanted() {
  local name=$1$2
  [ "$2" = 1 ] || name=$1N
  [[ " $SCENARIOS " == *" $name "* ]]
}

stop_all() {
  local pid
  for pid in "$@"; do stop "$pid" INT 10 >/dev/null 2>&1 || true; done
}

LOGS="$RATE_DIR/logs"
SEED_PORT=$(free_port)
DL_PORT=$(free_port)
[ "$SEED_PORT" != "$DL_PORT" ] || DL_PORT=$((SEED_PORT + 1))
for rate in $RATES; do
  limit=$(bytes "$rate")

  # Upload: one seeder dials N downloaders, each on its own address.
  for n in 1 "$PEERS"; do
    wanted "up" "$n" || continue
    dl_pids=()
    peers=()
    for ((i = 0; i < n; i++)); do
      ip=127.0.0.$((11 + i))
      downloader "$ip" "$DL_PORT" "$RATE_DIR/out/up-$i" "$LOGS/up-$rate-$n-dl$i.log"
      dl_pids+=("$SPAWNED")
      peers+=(--peer "$ip:$DL_PORT")
    done
    seeder 127.0.0.1 "$SEED_PORT" "$LOGS/up-$rate-$n-seeder.log" \
      --max-upload-rate "$rate" --upload-slots "$n" "${peers[@]}"
    seed_pid=$SPAWNED
    # The seeder's side of its connections to the downloaders.
    mapfile -t rates < <(measure bytes_acked "( dport = :$DL_PORT and src 127.0.0.1 )")
    report "upload, $n peer(s)" "$limit" "${rates[0]}" "${rates[@]:1}"
    stop_all "$seed_pid" "${dl_pids[@]}"
  done

  # Download: one downloader dials N seeders, each on its own address.
  for n in 1 "$PEERS"; do
    wanted "down" "$n" || continue
    seed_pids=()
    peers=()
    for ((i = 0; i < n; i++)); do
      ip=127.0.0.$((41 + i))
      seeder "$ip" "$SEED_PORT" "$LOGS/down-$rate-$n-seeder$i.log"
      seed_pids+=("$SPAWNED")
      peers+=(--peer "$ip:$SEED_PORT")
    done
    downloader 127.0.0.1 "$DL_PORT" "$RATE_DIR/out/down" "$LOGS/down-$rate-$n-dl.log" \
      --max-download-rate "$rate" "${peers[@]}"
    dl_pid=$SPAWNED
    # The downloader's side of its connections to the seeders.
    mapfile -t rates < <(measure bytes_received "( dport = :$SEED_PORT and src 127.0.0.1 )")
    report "download, $n peer(s)" "$limit" "${rates[0]}" "${rates[@]:1}"
    stop_all "$dl_pid" "${seed_pids[@]}"
  done
done
rm -rf "$RATE_DIR/out"
