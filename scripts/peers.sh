#!/usr/bin/env bash
# Hundreds of peers (issue 14): one process of ours holding 200 connections,
# and the pace of its connection attempts. Release build, 127.0.0.0/8 only;
# every process it starts is stopped when it exits.
#
# Usage: bash scripts/peers.sh
#   IDLE_SECS=N   how long the 200 connections are held idle and measured
#                 (default 60)
#   PACE_SECS=N   how long the pacing run is watched (default 12)
#   PEERS_DIR=DIR work dir (default: a fresh temporary folder, removed after)
#
# 1. Connections: a seeder of ours with --max-peers 200 dials 100 listeners
#    (scripts/peers/fake_peers.py, which answer the handshake and then stay
#    idle) and takes 100 incoming connections from 100 loopback addresses
#    (127.0.1.1 ...), which send a handshake and then stay idle. Once all
#    200 are up, it prints the seeder's threads, its CPU time over IDLE_SECS
#    (from /proc/PID/stat: utime + stime), its peak resident memory
#    (VmHWM in /proc/PID/status) and the most any one thread's stack holds
#    resident (the 512 KiB mappings of peer stacks, in /proc/PID/smaps).
# 2. Pacing: a downloader of ours is given 1,000 --peer addresses that never
#    answer a connect (listeners whose accept queue is full: the kernel
#    drops the SYNs, so each connect stays in SYN-SENT until its timeout).
#    It prints the most sockets of the downloader seen in SYN-SENT at once
#    (`ss`, every 0.1 s; a socket counts when it is in two dumps in a row)
#    and how many of the addresses it tried in PACE_SECS.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
IDLE_SECS=${IDLE_SECS:-60}
PACE_SECS=${PACE_SECS:-12}
FAKE="$REPO/scripts/peers/fake_peers.py"

die() { echo "peers.sh: $*" >&2; exit 1; }
case "${1:-}" in
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) die "no arguments are taken (settings are environment variables; see --help)" ;;
esac
for tool in python3 ss cargo; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ -z "${PEERS_DIR:-}" && -n "${WORK:-}" ]]; then
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -n "${PEERS_DIR:-}" ]]; then
  WORK=$PEERS_DIR
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d /tmp/bittorrent-peers.XXXXXX)
fi

echo "building (release)..." >&2
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/bittorrent
[[ -x "$BIN" ]] || die "no binary at $BIN"

HASH=$(python3 "$FAKE" make "$WORK")

# wait_for WHAT SECS CMD...: runs CMD every 0.2 s until it succeeds.
wait_for() {
  local what=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    ((SECONDS < deadline)) || die "timed out after ${secs}s waiting for $what"
    sleep 0.2
  done
}
# ready_line FILE: the ports a fake_peers.py printed after "ready".
has_ready() { grep -q '^ready' "$1"; }
# established FILE: the last count of live connections a helper reported.
established() { tail -n 1 "$1" 2>/dev/null | sed -n 's/^established //p'; }
all_established() { [[ "$(established "$1")" == "$2" ]]; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
status_field() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
listen_port() { sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$1" | head -n 1; }
has_port() { [[ -n "$(listen_port "$1")" ]]; }
# peer_args_from FILE: sets peer_args to a --peer for each "ready PORT" line.
peer_args_from() {
  peer_args=()
  for port in $(sed -n 's/^ready //p' "$1"); do
    peer_args+=(--peer "127.0.0.1:$port")
  done
}

# --- 1. 200 connections, both directions ---------------------------------
python3 "$FAKE" listen 100 "$HASH" >"$WORK/listen.out" 2>"$WORK/listen.err" &
PIDS+=($!)
wait_for "the listeners" 20 has_ready "$WORK/listen.out"
peer_args_from "$WORK/listen.out"
"$BIN" "$WORK/peers.torrent" --seed "$WORK/peers.bin" --bind 127.0.0.1 --port 0 \
  --max-peers 200 --no-dht --no-pex --no-progress -v "${peer_args[@]}" 2>"$WORK/seeder.log" &
SEEDER=$!
PIDS+=("$SEEDER")
wait_for "the seeder's listen port" 30 has_port "$WORK/seeder.log"
python3 "$FAKE" incoming 100 "$(listen_port "$WORK/seeder.log")" "$HASH" \
  >"$WORK/incoming.out" 2>"$WORK/incoming.err" &
PIDS+=($!)
wait_for "100 outgoing connections" 60 all_established "$WORK/listen.err" 100
wait_for "100 incoming connections" 60 all_established "$WORK/incoming.err" 100
# Let the opening messages (bitfields, first choke round) pass.
sleep 3
threads=$(status_field "$SEEDER" Threads)
ticks0=$(cpu_ticks "$SEEDER")
start=$SECONDS
echo "holding 200 idle connections for ${IDLE_SECS}s..." >&2
sleep "$IDLE_SECS"
ticks1=$(cpu_ticks "$SEEDER")
elapsed=$((SECONDS - start))
hwm_kib=$(status_field "$SEEDER" VmHWM)
threads_after=$(status_field "$SEEDER" Threads)
out_after=$(established "$WORK/listen.err")
in_after=$(established "$WORK/incoming.err")
# Peer stacks are the mappings of exactly 512 KiB (their guard page is a
# mapping of its own); what each holds resident is what its thread touched.
stack_kib=$(awk '
  /^[0-9a-f]+-[0-9a-f]+ / { size = 0 }
  $1 == "Size:" { size = $2 }
  $1 == "Rss:" && size == 512 { if ($2 > most) most = $2; n++ }
  END { printf "%d %d", most, n }' "/proc/$SEEDER/smaps")
ticks=$((ticks1 - ticks0))
# Clock ticks are 1/100 s on Linux.
echo
echo "== 200 connections to one seeder (100 incoming, 100 dialled) =="
echo "connections up after the idle time: $out_after outgoing, $in_after incoming"
echo "threads: $threads (after the idle time: $threads_after)"
echo "peak RSS (VmHWM): $((hwm_kib / 1024)) MiB ($hwm_kib kB)"
awk -v t="$ticks" -v s="$elapsed" 'BEGIN {
  cpu = t / 100
  printf "CPU while idle: %.2f s in %d s = %.2f s per minute = %.2f%% of a core; %.2f ms per peer per minute\n",
    cpu, s, cpu * 60 / s, cpu * 100 / s, cpu * 60 / s / 200 * 1000 }'
read -r most_stack stacks <<<"$stack_kib"
echo "peer thread stacks: $stacks of 512 KiB; the most resident in one: $most_stack kB"

for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
PIDS=()

# --- 2. 1,000 addresses that never answer ---------------------------------
python3 "$FAKE" blackhole 1000 >"$WORK/blackhole.out" 2>"$WORK/blackhole.err" &
PIDS+=($!)
wait_for "the blackholes" 60 has_ready "$WORK/blackhole.out"
peer_args_from "$WORK/blackhole.out"
mkdir -p "$WORK/dl"
"$BIN" "$WORK/peers.torrent" -d "$WORK/dl" --bind 127.0.0.1 --port 0 --no-dht --no-pex \
  --no-progress "${peer_args[@]}" 2>"$WORK/downloader.log" &
DL=$!
PIDS+=("$DL")
# A dump of the socket table is not atomic: a socket closed and a new one
# opened meanwhile may both be in one. A socket in two dumps in a row was
# there at the moment between them, so those count as in flight at once.
most=0
: >"$WORK/syn-sent"
: >"$WORK/syn-last"
end=$((SECONDS + PACE_SECS))
while ((SECONDS < end)); do
  ss -Htnp state syn-sent 2>/dev/null | grep "pid=$DL," | awk '{ print $3, $4 }' |
    sort >"$WORK/syn-now" || true
  now=$(comm -12 "$WORK/syn-last" "$WORK/syn-now" | wc -l)
  ((now > most)) && most=$now
  awk '{ print $2 }' "$WORK/syn-now" >>"$WORK/syn-sent"
  mv "$WORK/syn-now" "$WORK/syn-last"
  sleep 0.1
done
tried=$(sort -u "$WORK/syn-sent" | wc -l)
echo
echo "== 1,000 addresses that never answer a connect =="
echo "most sockets in SYN-SENT at once: $most"
echo "addresses tried in ${PACE_SECS}s: $tried (seen in SYN-SENT)"
