#!/usr/bin/env bash
# The swarm benchmark (issue 14): one seeder whose upload is limited to U_s
# and N leechers each limited to U_l, all of one client, on loopback (by
# default all on 127.0.0.1, each its own port), meeting through a local
# opentracker; for each N,
# the time until the last leecher completes against the minimum distribution
# time T_min = max(F/U_s, N*F/(U_s + N*U_l)) (Kumar and Ross, 2006; F the
# file's size).
#
# Usage: bash scripts/swarm.sh   (about 3 minutes per client at the defaults)
#   SWARM_SIZE_MB=N    the file's size in MiB (default 256)
#   SWARM_PIECE_KIB=N  its piece length in KiB (default 256)
#   SWARM_SEED_RATE=R  the seeder's upload limit U_s (default 20M)
#   SWARM_LEECH_RATE=R each leecher's upload limit U_l (default 10M)
#                      R: bytes a second, with K/M (powers of 1000) or
#                      KiB/MiB (powers of 1024), as our --max-upload-rate
#   SWARM_NS="4 8 16"  the leecher counts N
#   SWARM_CLIENTS="…"  clients, one swarm each (default: ours libtorrent
#                      aria2); ours is the reference of the ratios
#   RUNS=N             runs of every swarm; the table shows medians (default 1)
#   SWARM_ADDRS=distinct|shared  each peer on its own address (the
#                      default): the seeder on 127.0.0.2, the leechers on
#                      127.0.0.3 and up (ours by --bind, which dials and
#                      announces from that address: ours announces over UDP
#                      then, since HTTP announces keep the system's choice
#                      of address); or every peer on 127.0.0.1 (ours then
#                      meets its cap of 8 connections per IP at N >= 8)
#   SWARM_TIMEOUT=S    longest one swarm may take (default 4 x T_min + 60 s)
#   SWARM_DIR=DIR      work dir (default /tmp/bittorrent-swarm): cached content
#                      and torrent, per-run logs, results-*.tsv, report-*.md
#   BIN=PATH           our binary (default: cargo build --release, then
#                      $CARGO_TARGET_DIR/release/bittorrent or target/release)
#
# How a swarm runs: a fresh opentracker on 127.0.0.1 tracks the torrent
# only; the N leechers start first, and once the tracker knows all of them
# the seeder starts; the clock starts when the seeder has checked its data
# and says it seeds (it then announces and dials every leecher; each leecher
# got from the tracker those that announced before it). A leecher that
# completes seeds on (ours with --seed-time; a binary without it exits when
# complete and is started again at once as a seeder of what it downloaded,
# with the same limit). The swarm
# ends when the last leecher is complete; every process is then stopped.
# Peers come from the tracker only: no DHT, local discovery or peer exchange
# for any client (ours --no-dht --no-pex).
#
# Reported for each client and N: the last leecher's completion time and
# its ratio to T_min; the seeder's uploaded payload / F; the time by which
# every piece had left the seeder at least once, against F/U_s; and the
# slowest (last) leecher's time from 95% to 100% of the pieces, and its
# share of the total time. Ours logs each block it serves at trace level
# (bittorrent::peer::conn::serve) and its progress every 5 s; its 95% point
# is interpolated between progress lines, unless it logs each verified piece
# (a line "piece I verified, H of N", enabled here as the debug target
# bittorrent::verified). libtorrent peers run lt_swarm.py (scripts/bench),
# with a peer-class filter so that its limits apply to loopback peers; aria2
# has no per-piece log, so its seeder and tail columns are n/a.
# Transmission 3.00 never dials 127.x peers, so it cannot form a loopback
# swarm and is not run. Ours takes at most 8 connections from one IP
# (peer_table::MAX_PER_IP), so with every peer on 127.0.0.1 a swarm of more
# than 8 peers of ours is not a full mesh.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

SWARM_DIR=${SWARM_DIR:-/tmp/bittorrent-swarm}
SWARM_SIZE_MB=${SWARM_SIZE_MB:-256}
SWARM_PIECE_KIB=${SWARM_PIECE_KIB:-256}
SWARM_SEED_RATE=${SWARM_SEED_RATE:-20M}
SWARM_LEECH_RATE=${SWARM_LEECH_RATE:-10M}
SWARM_NS=${SWARM_NS:-4 8 16}
SWARM_CLIENTS=${SWARM_CLIENTS:-ours libtorrent aria2}
SWARM_ADDRS=${SWARM_ADDRS:-distinct}
RUNS=${RUNS:-1}
# Runs of ours never reach the DHT's default routers.
export BITTORRENT_DHT_NO_DEFAULTS=1

# lib.sh, data.sh and clients.sh work in BENCH_DIR.
BENCH_DIR=$SWARM_DIR
source "$REPO/scripts/bench/lib.sh"
source "$REPO/scripts/bench/data.sh"
source "$REPO/scripts/bench/clients.sh"
source "$REPO/scripts/bench/report.sh"
STATS=$REPO/scripts/bench/swarm_stats.py

case "${1:-}" in
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) die "no arguments are taken (settings are environment variables; see --help)" ;;
esac

SWARM_HEADER="stamp	round	scenario	client	status	bytes	n	seed_rate	leech_rate	t_min_s	last_done_s	done_over_tmin	seeder_up_over_f	all_out_s	f_over_us_s	all_out_over_f_us	tail_s	tail_share	tail_how	load1	rustc_procs	note"

check_tools() {
  local tool
  for tool in opentracker /usr/bin/python3 ss setsid timeout cmp; do
    command -v "$tool" >/dev/null || die "$tool is needed (apt-get install opentracker python3 iproute2)"
  done
  [[ $SWARM_SIZE_MB =~ ^[0-9]+$ ]] && [ "$SWARM_SIZE_MB" -ge 1 ] || die "SWARM_SIZE_MB must be a number of MiB"
  [[ $SWARM_PIECE_KIB =~ ^[0-9]+$ ]] && [ "$SWARM_PIECE_KIB" -ge 16 ] &&
    [ $((SWARM_PIECE_KIB & (SWARM_PIECE_KIB - 1))) = 0 ] || die "SWARM_PIECE_KIB must be a power of two, at least 16"
  [[ $RUNS =~ ^[0-9]+$ ]] && [ "$RUNS" -ge 1 ] || die "RUNS must be at least 1"
  case $SWARM_ADDRS in shared | distinct) ;; *) die "SWARM_ADDRS must be shared or distinct" ;; esac
  US=$(rate_bytes "$SWARM_SEED_RATE") || die "SWARM_SEED_RATE: not a rate: $SWARM_SEED_RATE"
  UL=$(rate_bytes "$SWARM_LEECH_RATE") || die "SWARM_LEECH_RATE: not a rate: $SWARM_LEECH_RATE"
  local n
  for n in $SWARM_NS; do
    [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "SWARM_NS: $n is not a count of 1 to 200"
  done
}

# rate_bytes RATE: RATE in bytes a second (an integer): 500K, 20M, 1.5MiB, 1000.
rate_bytes() {
  awk -v r="$1" 'BEGIN {
    if (!match(r, /^[0-9]+(\.[0-9]+)?/)) exit 1
    v = substr(r, 1, RLENGTH); u = substr(r, RLENGTH + 1)
    m["" ] = 1; m["K"] = 1e3; m["M"] = 1e6; m["G"] = 1e9
    m["KiB"] = 1024; m["MiB"] = 1048576; m["GiB"] = 1073741824
    if (!(u in m) || v * m[u] < 1) exit 1
    printf "%d\n", v * m[u]
  }'
}

# The tracker: a fresh opentracker for each swarm (no peers left over from
# the last one), on 127.0.0.1:TRACKER_PORT, tracking INFO_HASH only. As
# root it chroots into its folder and drops to nobody, so the folder must
# be readable by all. Sets TRACKER_PID.
start_tracker() {
  local dir=$SWARM_DIR/opentracker
  mkdir -p "$dir"
  chmod 755 "$dir"
  echo "$INFO_HASH" >"$dir/whitelist.txt"
  chmod 644 "$dir/whitelist.txt"
  spawn "$1" opentracker -i 127.0.0.1 -p "$TRACKER_PORT" -P "$TRACKER_PORT" -d "$dir" -w /whitelist.txt
  TRACKER_PID=$SPAWNED
  wait_listening "$TRACKER_PID" "$TRACKER_PORT" 10 || { cat "$1" >&2; die "opentracker did not start"; }
}

# scrape FIELD: the tracker's count of FIELD (complete, incomplete) for the
# torrent, from its HTTP scrape (0 if it has none yet).
scrape() {
  local field=$1 hash="" i reply
  for ((i = 0; i < 40; i += 2)); do hash+="%${INFO_HASH:i:2}"; done
  reply=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" &&
    printf "GET /scrape?info_hash=%s HTTP/1.0\r\n\r\n" "$2" >&3 && cat <&3' _ "$TRACKER_PORT" "$hash" |
    tr -c '[:print:]' '.') || true
  sed -n "s/.*${field}i\([0-9]*\)e.*/\1/p" <<<"$reply" | head -n 1 | grep . || echo 0
}

# Whether our binary has the rate-limit flags the swarm needs.
ours_has_limits() {
  "$OURS" --help 2>/dev/null | grep -q -- --max-upload-rate
}

# Whether our binary seeds on after a download (--seed-time); older ones
# exit when complete and are started again as seeders.
ours_seeds_on() {
  "$OURS" --help 2>/dev/null | grep -q -- --seed-time
}

# peer_ip I: the address of peer I (-1: the seeder, 0 and up: the leechers).
peer_ip() {
  if [ "$SWARM_ADDRS" = distinct ]; then echo "127.0.0.$(($1 + 3))"; else echo 127.0.0.1; fi
}

# peer_cmd CLIENT ROLE I PORT RATE OUT LOG: sets CMD to swarm peer I (see
# peer_ip). ROLE is seed (serving the cached content) or leech (downloading
# into OUT); LOG is aria2's log file.
peer_cmd() {
  local client=$1 role=$2 ip
  ip=$(peer_ip "$3")
  shift
  local port=$3 rate=$4 out=$5 log=$6
  CMD=()
  case $client in
    ours)
      if [ "$role" = seed ]; then
        CMD=("$OURS" "$TORRENT" -s "$out")
      else
        CMD=("$OURS" "$TORRENT" -d "$out")
        # Seeds on once complete, as the others do (the swarm ends first).
        if ours_seeds_on; then CMD+=(--seed-time 60m); fi
      fi
      CMD+=(--port "$port" --bind "$ip" --no-dht --no-pex --max-upload-rate "$rate")
      ;;
    libtorrent)
      CMD=(/usr/bin/python3 "$LT_SWARM" "$role" "$TORRENT" "$out" --listen "$ip:$port"
        --upload-limit "$rate")
      if [ "$role" = seed ]; then CMD+=(--log-uploads); fi
      ;;
    aria2)
      # Seeds on after completing (ratio 0: no ratio condition) until
      # stopped; -V checks the seeder's data first.
      CMD=(aria2c "--dir=$out" "--listen-port=$port" "--max-upload-limit=$rate"
        "--interface=$ip" --enable-dht=false --enable-dht6=false --bt-enable-lpd=false
        --enable-peer-exchange=false --bt-require-crypto=false --bt-min-crypto-level=plain
        --disable-ipv6=true --file-allocation=none --summary-interval=1 --no-conf=true
        --seed-ratio=0.0 --seed-time=120 --bt-max-peers=0 "--log=$log" --log-level=notice
        --console-log-level=notice)
      if [ "$role" = seed ]; then
        CMD+=(-V)
      else
        CMD+=("--on-bt-download-complete=$ARIA2_HOOK")
      fi
      CMD+=("$TORRENT")
      ;;
    *) die "no swarm peer for $client" ;;
  esac
}

# Whether leecher I (ours: its process has exited 0; the others: its log
# says so) is complete.
leecher_complete() {
  local client=$1 i=$2
  case $client in
    ours)
      if ours_seeds_on; then
        grep -q 'download complete: all' "$RUNDIR/leecher-$i.log"
      else
        ! running "${LEECH_PID[i]}"
      fi
      ;;
    libtorrent) grep -q '^complete ' "$RUNDIR/leecher-$i.log" ;;
    aria2) [ -e "$RUNDIR/out-$i.complete" ] ;;
  esac
}

# swarm CLIENT N RUN: one swarm; appends its line to RESULTS.
swarm() {
  local client=$1 n=$2 run=$3
  RUNDIR=$SWARM_DIR/run/$client-n$n-r$run
  rm -rf "$RUNDIR"
  mkdir -p "$RUNDIR"
  local t_min f_us status=ok note=""
  t_min=$(awk -v f="$BYTES" -v us="$US" -v ul="$UL" -v n="$n" \
    'BEGIN { a = f / us; b = n * f / (us + n * ul); printf "%.3f", (a > b) ? a : b }')
  f_us=$(awk -v f="$BYTES" -v us="$US" 'BEGIN { printf "%.3f", f / us }')
  local limit=${SWARM_TIMEOUT:-$(awk -v t="$t_min" 'BEGIN { printf "%d", 4 * t + 60 }')}
  say "$client, N=$n, run $run: T_min ${t_min}s, F/U_s ${f_us}s (timeout ${limit}s)"
  if [ "$client" = ours ] && ! ours_has_limits; then
    record_swarm "$client" "$n" "$run" skipped "$t_min" "$f_us" - - - - - - "our binary has no --max-upload-rate yet"
    return
  fi
  TRACKER_PORT=$(free_port)
  TORRENT=$RUNDIR/swarm.torrent
  local scheme=http
  if [ "$client" = ours ] && [ "$SWARM_ADDRS" = distinct ]; then scheme=udp; fi
  make_swarm_torrent "$TORRENT" "$scheme"
  start_tracker "$RUNDIR/tracker.log"

  # The leechers, on ports of their own; ours with -d and --seed-time.
  LEECH_PID=()
  local port=() done_at=() i
  for ((i = 0; i < n; i++)); do
    port[i]=$(free_port)
    mkdir -p "$RUNDIR/out-$i"
    peer_cmd "$client" leech "$i" "${port[i]}" "$UL" "$RUNDIR/out-$i" "$RUNDIR/leecher-$i.aria2.log"
    RUST_LOG="bittorrent=warn,bittorrent::progress=info,bittorrent::piece_manager=debug" \
      spawn "$RUNDIR/leecher-$i.log" "${CMD[@]}"
    LEECH_PID[i]=$SPAWNED
  done
  for ((i = 0; i < n; i++)); do
    wait_listening "${LEECH_PID[i]}" "${port[i]}" 60 || { status=FAIL; note="leecher $i did not listen"; }
  done
  local deadline=$((SECONDS + 60))
  while [ "$status" = ok ] && [ "$(scrape incomplete)" -lt "$n" ]; do
    [ "$SECONDS" -lt "$deadline" ] || { status=FAIL; note="the tracker did not get $n leechers"; }
    sleep 0.2
  done

  # The seeder; the clock starts when it serves.
  local seed_port seed_pid t0="" seed_ready
  seed_port=$(free_port)
  case $client in
    ours) seed_ready='^seeding on port' ;;
    libtorrent) seed_ready='^seeding$' ;;
    aria2) seed_ready='BitTorrent: listening on TCP port' ;;
  esac
  if [ "$status" = ok ]; then
    # Ours seeds the file; the others from the folder that holds it.
    local seed_from=$CONTENT_PATH seed_log=$RUNDIR/seeder.log
    [ "$client" = ours ] || seed_from=$(dirname "$CONTENT_PATH")
    [ "$client" != aria2 ] || seed_log=$RUNDIR/seeder.aria2.log
    peer_cmd "$client" seed -1 "$seed_port" "$US" "$seed_from" "$seed_log"
    RUST_LOG="bittorrent=info,bittorrent::peer::conn::serve=trace,bittorrent::wire=trace" \
      spawn "$RUNDIR/seeder.log" "${CMD[@]}"
    seed_pid=$SPAWNED
    t0=$(wait_line "$seed_pid" "$seed_log" "$seed_ready" 120) || { status=FAIL; note="the seeder did not start"; }
  fi

  # Until every leecher is complete (ours: then seeding again) or the limit.
  local left=$n rc
  deadline=$((SECONDS + limit))
  while [ "$status" = ok ] && [ "$left" -gt 0 ]; do
    for ((i = 0; i < n; i++)); do
      [ -z "${done_at[i]:-}" ] || continue
      leecher_complete "$client" "$i" || continue
      done_at[i]=$(now)
      left=$((left - 1))
      if [ "$client" = ours ] && ! ours_seeds_on; then
        rc=0
        reap "${LEECH_PID[i]}" || rc=$?
        if [ "$rc" != 0 ]; then
          status=FAIL
          note="leecher $i exited with status $rc"
          break
        fi
        peer_cmd ours seed "$i" "${port[i]}" "$UL" "$RUNDIR/out-$i/$(basename "$CONTENT_PATH")" ""
        spawn "$RUNDIR/leecher-$i.seeding.log" "${CMD[@]}"
        LEECH_PID[i]=$SPAWNED
      fi
    done
    [ "$SECONDS" -lt "$deadline" ] || { status=FAIL; note="timed out after ${limit}s with $left leechers incomplete"; }
    sleep 0.1
  done

  # Stop everyone (the seeder first, so that it prints its last count).
  if [ -n "${seed_pid:-}" ]; then
    case $client in ours) stop "$seed_pid" INT 10 || true ;; *) stop "$seed_pid" TERM 10 || true ;; esac
  fi
  for ((i = 0; i < n; i++)); do
    case $client in ours) stop "${LEECH_PID[i]}" INT 10 || true ;; *) stop "${LEECH_PID[i]}" TERM 10 || true ;; esac
  done
  stop "$TRACKER_PID" TERM 5 || true

  if [ "$status" = ok ]; then
    for ((i = 0; i < n; i++)); do
      cmp -s "$CONTENT_PATH" "$RUNDIR/out-$i/$(basename "$CONTENT_PATH")" ||
        { status=FAIL; note="leecher $i: output differs from the source"; break; }
    done
  fi
  local up="-" all_out="-" last="-" t95="-" how="-" slowest=-1 line kind=$client
  if [ -n "$t0" ]; then
    local seeder_log=$RUNDIR/seeder.log
    if [ "$client" = aria2 ]; then
      up=$(aria2_uploaded "$RUNDIR/seeder.aria2.log")
    else
      read -r up all_out _ <<<"$(/usr/bin/python3 "$STATS" seeder "$kind" "$seeder_log" "$t0" "$PIECES")"
    fi
    for ((i = 0; i < n; i++)); do
      [ -n "${done_at[i]:-}" ] || continue
      if [ "$client" = aria2 ]; then
        line="$(elapsed "$t0" "$(cat "$RUNDIR/out-$i.complete")")	-	-"
      else
        line=$(/usr/bin/python3 "$STATS" leecher "$kind" "$RUNDIR/leecher-$i.log" "$t0" "$PIECES" "${done_at[i]}")
      fi
      echo "$i	$line" >>"$RUNDIR/leechers.tsv"
    done
    if [ -s "$RUNDIR/leechers.tsv" ]; then
      read -r slowest last t95 how <<<"$(sort -t$'\t' -k2,2g "$RUNDIR/leechers.tsv" | tail -n 1)"
    fi
  fi
  [ "$status" = ok ] || last="-"
  record_swarm "$client" "$n" "$run" "$status" "$t_min" "$f_us" "$last" "$up" "$all_out" "$t95" "$how" "$slowest" "$note"
  # Outputs go at once: 16 x F of written pages is a lot to keep.
  rm -rf "$RUNDIR"/out-*
}

# aria2_uploaded LOG: the bytes aria2 says it uploaded when it stopped
# ("uploaded/downloaded=59MiB/32MiB", to the unit it prints), or "-".
aria2_uploaded() {
  sed -n 's#.*uploaded/downloaded=\([0-9.]*\)\([KMG]\{0,1\}i\{0,1\}B\)/.*#\1 \2#p' "$1" | tail -n 1 |
    awk '{ m["B"] = 1; m["KiB"] = 1024; m["MiB"] = 1048576; m["GiB"] = 1073741824; printf "%d\n", $1 * m[$2] } END { if (NR == 0) print "-" }'
}

# The hook aria2 runs when a download completes (--on-bt-download-complete,
# with the first file's path as $3; it seeds on): it writes the time into
# out-I.complete beside the leecher's out-I folder.
make_aria2_hook() {
  ARIA2_HOOK=$SWARM_DIR/bin/aria2-complete.sh
  printf '%s\n' '#!/bin/sh' 'date +%s.%N >"$(dirname "$3").complete"' >"$ARIA2_HOOK"
  chmod 755 "$ARIA2_HOOK"
}

# make_swarm_torrent OUT SCHEME: the torrent of the cached content, announcing
# to this swarm's tracker over SCHEME (http or udp; its info-hash does not
# depend on the announce URL).
make_swarm_torrent() {
  INFO_HASH=$(/usr/bin/python3 "$REPO/scripts/bench/make_torrent.py" "$CONTENT_PATH" \
    $((SWARM_PIECE_KIB * 1024)) "$2://127.0.0.1:$TRACKER_PORT/announce" "$1")
}

# record_swarm CLIENT N RUN STATUS T_MIN F_US LAST UP ALL_OUT T95 HOW SLOWEST NOTE
record_swarm() {
  local line
  line=$(awk -v OFS='\t' -v stamp="$(date +%FT%T)" -v client="$1" -v n="$2" -v run="$3" \
    -v status="$4" -v bytes="$BYTES" -v us="$US" -v ul="$UL" -v tmin="$5" -v fus="$6" \
    -v last="$7" -v up="$8" -v out="$9" -v t95="${10}" -v how="${11}" -v slowest="${12}" \
    -v load1="$(cut -d' ' -f1 /proc/loadavg)" -v rustc="$(pgrep -xc rustc || true)" -v note="${13}" '
    function r(a, b) { return (a == "-" || a == "" || b == "-" || b + 0 == 0) ? "-" : sprintf("%.3f", a / b) }
    BEGIN {
      tail = (last == "-" || t95 == "-") ? "-" : sprintf("%.3f", last - t95)
      if (status == "ok" && slowest != "-" && slowest >= 0 && how != "-") note = note (note == "" ? "" : "; ") "last leecher " slowest ", 95% point " how
      print stamp, run, "swarm:" n, client, status, bytes, n, us, ul, tmin, last, r(last, tmin), r(up, bytes), out, fus, r(out, fus), tail, r(tail, last), how, load1, rustc, note
    }')
  echo "$line" >>"$RESULTS"
  awk -F'\t' '{ printf "swarm:   %-10s N=%-3s %-7s last %7ss (%sx T_min) seeder up %sx F, all out %ss (%sx F/U_s), tail %ss %s\n",
    $4, $7, $5, $11, $12, $13, $14, $16, $17, $22 }' <<<"$line" >&2
}

print_report() {
  local client n runs cells col
  echo "### Swarm benchmark ($(date +%F), \`bash scripts/swarm.sh\`, RUNS=$RUNS, medians)"
  echo
  echo "F = $(size_label "$SWARM_SIZE_MB") ($BYTES bytes) in $SWARM_PIECE_KIB KiB pieces ($PIECES pieces);"
  local where="all on 127.0.0.1, each peer on its own port"
  [ "$SWARM_ADDRS" = shared ] || where="the tracker on 127.0.0.1, each peer on its own address (127.0.0.2 and up)"
  echo "U_s = $SWARM_SEED_RATE ($US B/s), U_l = $SWARM_LEECH_RATE ($UL B/s); one seeder, N leechers, one opentracker; $where."
  echo "Machine: $(nproc) CPUs, load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end;"
  echo "runs during which another rustc was running: $(awk -F'\t' 'NR > 1 && $21 > 0 { n++ } END { print n + 0 }' "$RESULTS") of $(awk 'END { print NR - 1 }' "$RESULTS")."
  echo
  echo "| client | N | last done (s) | T_min (s) | last / T_min | seeder up / F | all pieces out (s) | / (F/U_s) | tail 95-100% (s) | tail / total | ours/theirs time | runs ok |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for n in $SWARM_NS; do
    for client in $SWARM_CLIENTS; do
      runs=$(runs_of "swarm:$n" "$client")
      if [ "${runs%%/*}" = 0 ]; then
        local why
        why=$(awk -F'\t' -v sc="swarm:$n" -v c="$client" 'NR > 1 && $3 == sc && $4 == c { w = $22 } END { print w }' "$RESULTS")
        echo "| $client | $n | ${why:-not run} | - | - | - | - | - | - | - | - | $runs |"
        continue
      fi
      cells=()
      for col in last_done_s t_min_s done_over_tmin seeder_up_over_f all_out_s all_out_over_f_us tail_s tail_share; do
        cells+=("$(fmt '%.2f' "$(median_of "swarm:$n" "$client" "$col")")")
      done
      local vs="-"
      [ "$client" = ours ] || vs=$(ratio "$(median_of "swarm:$n" ours last_done_s)" "$(median_of "swarm:$n" "$client" last_done_s)")
      for col in 2 3 5; do [ "${cells[col]}" = - ] || cells[col]+=x; done
      echo "| $client | $n | ${cells[0]} | ${cells[1]} | ${cells[2]} | ${cells[3]} | ${cells[4]} | ${cells[5]} | ${cells[6]} | ${cells[7]} | $vs | $runs |"
    done
  done
  echo
  echo "T_min = max(F/U_s, N*F/(U_s + N*U_l)). The clock starts when the seeder serves; \"last done\""
  echo "is when the last leecher completed; \"all pieces out\" when the seeder had sent a block of"
  echo "every piece at least once; the tail is the last leecher's time from 95% to 100% of the"
  echo "pieces. ours/theirs: ours' last-done time / theirs (below 1x: ours finished sooner)."
  echo "Raw per-run numbers: $RESULTS."
}

main() {
  check_tools
  mkdir -p "$SWARM_DIR/bin" "$SWARM_DIR/run"
  start_results "$SWARM_DIR" "$SWARM_HEADER"
  local started=$SECONDS client n run
  install_ours "$OURS"
  cp "$REPO/tests/interop/lt_peer.py" "$LT_PEER"
  cp "$REPO/scripts/bench/lt_swarm.py" "$LT_SWARM"
  make_aria2_hook
  CONTENT_PATH=$(single_file "$SWARM_SIZE_MB")
  BYTES=$(content_bytes "$CONTENT_PATH")
  PIECES=$(((BYTES + SWARM_PIECE_KIB * 1024 - 1) / (SWARM_PIECE_KIB * 1024)))
  for client in $SWARM_CLIENTS; do
    have_client "$client" || say "$client is missing: $(install_hint "$client")"
  done
  say "results: $RESULTS"
  warm_cache "$CONTENT_PATH"
  for ((run = 1; run <= RUNS; run++)); do
    for n in $SWARM_NS; do
      for client in $SWARM_CLIENTS; do
        have_client "$client" || continue
        swarm "$client" "$n" "$run"
      done
    done
  done
  print_report | tee "$SWARM_DIR/report-$STAMP.md"
  say "took $((SECONDS - started)) s; report: $SWARM_DIR/report-$STAMP.md"
}

main
