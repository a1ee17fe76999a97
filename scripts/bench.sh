#!/usr/bin/env bash
# The benchmark (issue 5): our client against libtorrent, aria2,
# Transmission and rqbit, all on 127.0.0.1, release build.
#
# Usage: bash scripts/bench.sh            (about 15 minutes at the defaults)
#   BENCH_SIZE_MB=N   size of the single-file torrent in MiB (default 1024);
#                     the multi-file torrent is 5/16 of it (320 MiB)
#   RUNS=N            runs of every scenario; the table shows medians (default 3)
#   BENCH_4G=1        also download a 4 GiB torrent (our client only), to show
#                     that our peak RSS does not grow with the torrent's size
#   BENCH_CLIENTS="…" downloaders to compare (default: ours libtorrent aria2
#                     transmission rqbit; ours always runs)
#   BENCH_SEEDERS4=ours|libtorrent  the seeders of the four-seeder scenario
#   BENCH_ONLY=A,B,…  run only these scenarios (default: all): 1m, 256k,
#                     multi, 4seeders, seed, check (with the raw SHA-1 rows),
#                     4g (with BENCH_4G=1), and the newer 16k, 32seeders,
#                     ltseed; for example BENCH_ONLY=16k,32seeders,ltseed
#   BIN=PATH          our binary (default: cargo build --release, then
#                     $CARGO_TARGET_DIR/release/bittorrent or target/release)
#   BENCH_DIR=DIR     work dir (default /tmp/bittorrent-bench): cached content
#                     and torrents, per-run logs, results-*.tsv, report-*.md
#   BENCH_TIMEOUT=S   longest one download may take (default 60 s + 1 s per
#                     8 MiB: 188 s); a client that times out is not run
#                     again in that scenario
#
# What it measures, each scenario RUNS times, rounds interleaved so that
# noise spreads over every client:
#   download  one 1 GiB file in 1 MiB pieces, the same in 256 KiB pieces, and
#             a 320 MiB folder of 201 files of mixed sizes in 1 MiB pieces,
#             each from one seeder (ours, the same for every downloader), by
#             every client; the 1 GiB file also from four seeders at once;
#   newer     the same 1 GiB file in 16 KiB pieces (65,536 pieces; torrent
#             by scripts/bench/make_torrent.py, as mktorrent 1.1 refuses
#             pieces under 32 KiB) from one seeder of ours, by every client;
#             the 1 GiB file in 1 MiB pieces by ours from 32 seeders of ours
#             (32 processes, each on its own port); and the same by every
#             client from one libtorrent seeder with libtorrent's
#             high_performance_seed settings (scripts/bench/lt_swarm.py);
#   seeding   our seeder and a libtorrent seeder serving the 1 GiB file to
#             the same libtorrent downloader;
#   check     the start-up check of the complete 1 GiB file by ours and by
#             libtorrent, against the machine's single-core SHA-1 speed
#             (openssl speed, in memory) and sha1sum over the same file
#             (in the page cache).
# Throughput is bytes / 1e6 / wall seconds; CPU is user + system seconds
# per GiB of content (every thread); peak RSS is the maximum resident set
# size, from GNU time (/usr/bin/time -v) for downloaders and from
# /proc/PID/status (VmHWM) for seeders.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

BENCH_DIR=${BENCH_DIR:-/tmp/bittorrent-bench}
BENCH_SIZE_MB=${BENCH_SIZE_MB:-1024}
RUNS=${RUNS:-3}
BENCH_4G=${BENCH_4G:-0}
BENCH_CLIENTS=${BENCH_CLIENTS:-ours libtorrent aria2 transmission rqbit}
BENCH_SEEDERS4=${BENCH_SEEDERS4:-ours}
BENCH_ONLY=${BENCH_ONLY:-}
# Runs of ours never reach the DHT's default routers.
export BITTORRENT_DHT_NO_DEFAULTS=1
DL_TIMEOUT=${BENCH_TIMEOUT:-$((60 + BENCH_SIZE_MB / 8))}

source "$REPO/scripts/bench/lib.sh"
source "$REPO/scripts/bench/data.sh"
source "$REPO/scripts/bench/clients.sh"
source "$REPO/scripts/bench/report.sh"

case "${1:-}" in
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) die "no arguments are taken (settings are environment variables; see --help)" ;;
esac

# The tools the benchmark itself needs (the clients compared are optional).
check_tools() {
  if [ ! -x /usr/bin/time ]; then
    echo "bench: GNU time is needed for CPU and memory figures: apt-get install time" >&2
    exit 1
  fi
  local tool
  for tool in mktorrent openssl sha1sum ss setsid timeout stdbuf cmp; do
    command -v "$tool" >/dev/null || die "$tool is needed (mktorrent: apt-get install mktorrent; ss: iproute2)"
  done
  [[ $BENCH_SIZE_MB =~ ^[0-9]+$ ]] && [ "$BENCH_SIZE_MB" -ge 16 ] || die "BENCH_SIZE_MB must be a number of MiB, at least 16"
  [[ $RUNS =~ ^[0-9]+$ ]] && [ "$RUNS" -ge 1 ] || die "RUNS must be at least 1"
  case $BENCH_SEEDERS4 in ours | libtorrent) ;; *) die "BENCH_SEEDERS4 must be ours or libtorrent" ;; esac
  local name
  for name in ${BENCH_ONLY//,/ }; do
    [[ " $SCENARIOS " == *" $name "* ]] || die "BENCH_ONLY: no scenario $name (the scenarios: $SCENARIOS)"
  done
}

# The scenarios BENCH_ONLY can name.
SCENARIOS="1m 256k multi 4seeders seed check 4g 16k 32seeders ltseed"

# Whether scenario $1 is to run: every one unless BENCH_ONLY names some
# (4g also needs BENCH_4G=1).
only() {
  [ "$1" != 4g ] || [ "$BENCH_4G" = 1 ] || return 1
  [ -z "$BENCH_ONLY" ] || [[ ",$BENCH_ONLY," == *",$1,"* ]]
}

# Builds the release binary (or takes BIN) and copies it, with lt_peer.py
# and lt_swarm.py, into the work dir: what is measured cannot change if the
# work tree does meanwhile.
build() {
  install_ours "$OURS"
  cp "$REPO/tests/interop/lt_peer.py" "$LT_PEER"
  cp "$REPO/scripts/bench/lt_swarm.py" "$LT_SWARM"
  BENCH_COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
  # Only what goes into the binary counts as a modification.
  if [ -n "$(git -C "$REPO" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    BENCH_COMMIT="$BENCH_COMMIT, with uncommitted changes to src/ or Cargo files"
  fi
  [ -z "${BIN:-}" ] || BENCH_COMMIT="tree at $BENCH_COMMIT; the binary measured is BIN=$BIN"
}

# Whether client $1 is among the compared downloaders.
wanted() {
  [ "$1" = ours ] || [[ " $BENCH_CLIENTS " == *" $1 "* ]]
}

# Content, torrent and size of each torrent key.
declare -A TORRENT CONTENT BYTES LABEL
# "SCENARIO CLIENT" pairs that timed out.
declare -A GAVE_UP

# prepare KEY CONTENT PIECE_LOG2 LABEL: makes (or reuses) the torrent.
prepare() {
  local key=$1 content=$2 piece_log2=$3
  # Named after the content, which is named after its size.
  TORRENT[$key]=$BENCH_DIR/torrents/$(basename "$content")-$((1 << piece_log2)).torrent
  CONTENT[$key]=$content
  BYTES[$key]=$(content_bytes "$content")
  LABEL[$key]=$4
  make_torrent "$content" "$piece_log2" "${TORRENT[$key]}"
}

prepare_data() {
  local single multi multi_mb=$((BENCH_SIZE_MB * 5 / 16))
  single=$(single_file "$BENCH_SIZE_MB")
  multi=$(multi_folder "$multi_mb" "$single")
  local size
  size=$(size_label "$BENCH_SIZE_MB")
  prepare single-1m "$single" 20 "$size file, 1 MiB pieces"
  prepare single-256k "$single" 18 "$size file, 256 KiB pieces"
  prepare multi-1m "$multi" 20 "$(size_label "$multi_mb"), 201 files, 1 MiB pieces"
  if only 4g; then
    prepare single4g-1m "$(single_file 4096)" 20 "4 GiB file, 1 MiB pieces"
  fi
  if only 16k; then
    prepare single-16k "$single" 14 "$size file, 16 KiB pieces"
  fi
}

# Whether the downloaded OUT/<name> is identical to CONTENT.
same_content() {
  local content=$1 got=$2
  if [ -d "$content" ]; then
    diff -rq "$content" "$got" >/dev/null 2>&1
  else
    cmp -s "$content" "$got"
  fi
}

# Keeps the logs of a failed run (not its data) for a look afterwards.
keep_failed() {
  local rundir=$1 dest
  dest=$BENCH_DIR/failed/$STAMP-round$ROUND-$(basename "$rundir")
  mkdir -p "$dest"
  find "$rundir" -maxdepth 1 -type f -exec cp {} "$dest/" \;
  say "  logs kept in $dest"
}

# bench_download KEY CLIENT SEEDERS [SEEDER_CLIENT]: CLIENT downloads
# torrent KEY from SEEDERS seeders: ours, or BENCH_SEEDERS4's client when
# there are four; when SEEDER_CLIENT is given, that client's (and the
# scenario's name says so). More than four seeders start all at once.
#
# The clock starts when both sides are ready: for ours and rqbit, when the
# downloader is launched (the seeders already serve); for libtorrent, when
# lt_peer.py says its session listens (so Python's start-up and the import
# of libtorrent are not counted as transfer time; they are in its CPU
# figure); for aria2 and Transmission, which our seeder dials, when the
# seeder says it is seeding (it has checked its data and dials at once). It
# stops when the downloader exits, complete.
bench_download() {
  local key=$1 client=$2 seeders=$3 seeder_client=${4:-}
  local torrent=${TORRENT[$key]} content=${CONTENT[$key]} bytes=${BYTES[$key]}
  local scenario="download:$key:$seeders" run_name=$key-$client-$seeders
  if [ -n "$seeder_client" ]; then
    scenario+=":$seeder_client"
    run_name+="-$seeder_client"
  else
    seeder_client=ours
    [ "$seeders" -gt 1 ] && seeder_client=$BENCH_SEEDERS4
  fi
  # A client that timed out once is not given the same scenario again: a
  # timeout costs minutes and tells the same thing each time.
  if [ -n "${GAVE_UP["$scenario $client"]:-}" ]; then
    record "$scenario" "$client" skipped "$bytes" 0 0 0 "-" "-" "timed out in an earlier round"
    return
  fi
  local rundir=$BENCH_DIR/run/$run_name
  rm -rf "$rundir"
  mkdir -p "$rundir/out"
  local port pids=() peers=() cpu0=() i t0 t1 rc=0 launch dl
  port=$(free_port)

  if ! is_dialled "$client" && [ "$seeders" -gt 4 ]; then
    for ((i = 0; i < seeders; i++)); do
      spawn_seeder "$seeder_client" "$torrent" "$content" "$rundir/seeder-$i.log"
      pids+=("$SEEDER_PID")
    done
    for ((i = 0; i < seeders; i++)); do
      await_seeder "$seeder_client" "${pids[i]}" "$rundir/seeder-$i.log"
      peers+=("127.0.0.1:$SEEDER_PORT")
    done
  elif ! is_dialled "$client"; then
    for ((i = 0; i < seeders; i++)); do
      start_seeder "$seeder_client" "$torrent" "$content" "$rundir/seeder-$i.log"
      pids+=("$SEEDER_PID")
      peers+=("127.0.0.1:$SEEDER_PORT")
    done
  fi
  download_cmd "$client" "$torrent" "$rundir/out" "$port" "$rundir" "${peers[@]+"${peers[@]}"}"
  for i in "${!pids[@]}"; do cpu0[i]=$(cpu_seconds "${pids[i]}"); done
  launch=$(now)
  spawn "$rundir/download.log" /usr/bin/time -v -o "$rundir/time.txt" \
    timeout --foreground -k 10 "$DL_TIMEOUT" "${CMD[@]}"
  dl=$SPAWNED
  t0=$launch
  case $client in
    libtorrent)
      t0=$(wait_line "$dl" "$rundir/download.log" '^listening on' 60) || t0=$launch
      ;;
    aria2 | transmission)
      [ "$seeders" = 1 ] || die "$client is dialled by one seeder only"
      if wait_listening "$dl" "$port" 60; then
        start_seeder "$seeder_client" "$torrent" "$content" "$rundir/seeder-0.log" "127.0.0.1:$port"
        pids+=("$SEEDER_PID")
        cpu0[0]=$(cpu_seconds "$SEEDER_PID")
        t0=$SEEDER_READY
      else
        say "  $client did not listen on port $port"
      fi
      ;;
  esac
  reap "$dl" || rc=$?
  t1=$(now)

  # Serving CPU of the seeders (after their check), then stop them.
  local seeder_cpu=0
  for i in "${!pids[@]}"; do
    seeder_cpu=$(awk -v a="$seeder_cpu" -v b="$(cpu_seconds "${pids[i]}")" -v c="${cpu0[i]}" \
      'BEGIN { printf "%.2f", a + b - c }')
    stop_seeder "$seeder_client" "${pids[i]}"
  done

  local status=ok note="" user sys rss
  user=$(time_field "$rundir/time.txt" "User time (seconds)")
  sys=$(time_field "$rundir/time.txt" "System time (seconds)")
  rss=$(time_field "$rundir/time.txt" "Maximum resident set size (kbytes)")
  if [ "$rc" != 0 ]; then
    status=FAIL
    note="exit status $rc"
    if [ "$rc" = 124 ]; then
      note="timed out after ${DL_TIMEOUT}s"
      GAVE_UP["$scenario $client"]=1
    fi
  elif ! same_content "$content" "$rundir/out/$(basename "$content")"; then
    status=FAIL
    note="output differs from the source"
  fi
  record "$scenario" "$client" "$status" "$bytes" "$(elapsed "$t0" "$t1")" \
    "${user:-0}" "${sys:-0}" "${rss:--}" "$seeder_cpu" "$note"
  [ "$status" = ok ] || keep_failed "$rundir"
  # The output goes at once: its dirty pages are dropped, never written back
  # during a later run.
  rm -rf "$rundir/out"
}

# bench_seed SEEDER: SEEDER (ours or libtorrent) serves the 1 GiB file to a
# libtorrent downloader. Throughput is the downloader's (clock as in
# bench_download); CPU is the seeder's while serving (after its start-up
# check), from /proc/PID/stat; peak RSS is the seeder's VmHWM.
bench_seed() {
  local seeder=$1 key=single-1m
  local torrent=${TORRENT[$key]} content=${CONTENT[$key]} bytes=${BYTES[$key]}
  local rundir=$BENCH_DIR/run/seed-$seeder
  rm -rf "$rundir"
  mkdir -p "$rundir/out"
  start_seeder "$seeder" "$torrent" "$content" "$rundir/seeder.log"
  local pid=$SEEDER_PID port cpu0 u0 s0 u1 s1 rss rc=0 t0 t1 launch dl
  read -r u0 s0 <<<"$(cpu_times "$pid")"
  port=$(free_port)
  download_cmd libtorrent "$torrent" "$rundir/out" "$port" "$rundir" "127.0.0.1:$SEEDER_PORT"
  launch=$(now)
  spawn "$rundir/download.log" /usr/bin/time -v -o "$rundir/time.txt" \
    timeout --foreground -k 10 "$DL_TIMEOUT" "${CMD[@]}"
  dl=$SPAWNED
  t0=$(wait_line "$dl" "$rundir/download.log" '^listening on' 60) || t0=$launch
  reap "$dl" || rc=$?
  t1=$(now)
  read -r u1 s1 <<<"$(cpu_times "$pid")"
  rss=$(peak_rss_kib "$pid")
  stop_seeder "$seeder" "$pid"
  local status=ok note="" dl_cpu
  dl_cpu=$(awk -v u="$(time_field "$rundir/time.txt" "User time (seconds)")" \
    -v s="$(time_field "$rundir/time.txt" "System time (seconds)")" 'BEGIN { printf "%.2f", u + s }')
  note="downloader (libtorrent) CPU ${dl_cpu}s"
  if [ "$rc" != 0 ]; then
    status=FAIL
    note="downloader exit status $rc"
  elif ! same_content "$content" "$rundir/out/$(basename "$content")"; then
    status=FAIL
    note="output differs from the source"
  fi
  record "seed:$key" "$seeder" "$status" "$bytes" "$(elapsed "$t0" "$t1")" \
    "$(awk -v a="$u0" -v b="$u1" 'BEGIN { printf "%.2f", b - a }')" \
    "$(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.2f", b - a }')" \
    "$rss" "-" "$note"
  [ "$status" = ok ] || keep_failed "$rundir"
  rm -rf "$rundir/out"
}

# User and system CPU seconds of PID so far, "U S".
cpu_times() {
  sed 's/^.*) //' "/proc/$1/stat" | awk -v tck="$CLK_TCK" '{ printf "%.2f %.2f", $12 / tck, $13 / tck }'
}

# bench_check CLIENT: the start-up check of the complete 1 GiB file, from
# launch (ours) or from "listening on" (lt_peer.py, after Python's start-up;
# its CPU is counted from there too) until the client says it seeds.
bench_check() {
  local client=$1 key=single-1m
  local torrent=${TORRENT[$key]} content=${CONTENT[$key]} bytes=${BYTES[$key]}
  local rundir=$BENCH_DIR/run/check-$client log t0 t1 pid u0=0 s0=0 u1 s1 rss status=ok
  rm -rf "$rundir"
  mkdir -p "$rundir"
  log=$rundir/check.log
  t0=$(now)
  case $client in
    ours)
      spawn "$log" "$OURS" "$torrent" -s "$content" --port 0 --no-dht
      pid=$SPAWNED
      t1=$(wait_line "$pid" "$log" '^seeding on port' 120) || status=FAIL
      ;;
    libtorrent)
      local port
      port=$(free_port)
      spawn "$log" /usr/bin/python3 "$LT_PEER" seed "$torrent" "$(dirname "$content")" --port "$port"
      pid=$SPAWNED
      if t0=$(wait_line "$pid" "$log" '^listening on' 60); then
        read -r u0 s0 <<<"$(cpu_times "$pid")"
        t1=$(wait_line "$pid" "$log" '^seeding$' 120) || status=FAIL
      else
        status=FAIL
      fi
      ;;
  esac
  if [ "$status" = ok ]; then
    read -r u1 s1 <<<"$(cpu_times "$pid")"
    rss=$(peak_rss_kib "$pid")
    record "check:$key" "$client" ok "$bytes" "$(elapsed "$t0" "$t1")" \
      "$(awk -v a="$u0" -v b="$u1" 'BEGIN { printf "%.2f", b - a }')" \
      "$(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.2f", b - a }')" "$rss" "-" ""
  else
    record "check:$key" "$client" FAIL "$bytes" 0 0 0 "-" "-" "did not report seeding"
  fi
  stop_seeder "$client" "$pid"
  [ "$status" = ok ] || keep_failed "$rundir"
}

# The machine's raw SHA-1 speed, two ways: `openssl speed` hashes 1 MiB
# buffers in memory on one core (the ceiling for one hashing thread), and
# sha1sum reads the same 1 GiB file, which is in the page cache, on one
# core. Recorded like the checks (CPU per GiB for openssl is 1 / its rate:
# it is all CPU).
bench_sha1() {
  local key=single-1m content=${CONTENT[single-1m]} bytes=${BYTES[single-1m]}
  local kbps wall
  kbps=$(openssl speed -evp sha1 -bytes 1048576 -seconds 3 2>/dev/null |
    awk 'tolower($1) == "sha1" { v = $NF; sub(/k$/, "", v); print v }' | tail -n 1)
  if [ -n "$kbps" ]; then
    wall=$(awk -v b="$bytes" -v k="$kbps" 'BEGIN { printf "%.3f", b / (k * 1000) }')
    record "check:$key" openssl-sha1 ok "$bytes" "$wall" "$wall" 0 "-" "-" "openssl speed -evp sha1 -bytes 1048576 -seconds 3"
  else
    record "check:$key" openssl-sha1 FAIL "$bytes" 0 0 0 "-" "-" "could not read openssl speed's output"
  fi
  local timefile=$BENCH_DIR/run/sha1sum-time.txt t0 t1
  mkdir -p "$BENCH_DIR/run"
  t0=$(now)
  /usr/bin/time -v -o "$timefile" timeout 300 sha1sum "$content" >/dev/null
  t1=$(now)
  record "check:$key" sha1sum ok "$bytes" "$(elapsed "$t0" "$t1")" \
    "$(time_field "$timefile" "User time (seconds)")" "$(time_field "$timefile" "System time (seconds)")" \
    "$(time_field "$timefile" "Maximum resident set size (kbytes)")" "-" "sha1sum over the cached file"
}

# One round: every scenario once (those BENCH_ONLY names, when it does).
round() {
  local key client
  for key in single-1m single-256k multi-1m; do
    case $key in single-1m) only 1m ;; single-256k) only 256k ;; multi-1m) only multi ;; esac || continue
    warm_cache "${CONTENT[$key]}"
    for client in ours libtorrent aria2 transmission rqbit; do
      wanted "$client" && have_client "$client" && bench_download "$key" "$client" 1
    done
  done
  warm_cache "${CONTENT[single-1m]}"
  if only 4seeders; then
    bench_download single-1m ours 4
    wanted libtorrent && have_client libtorrent && bench_download single-1m libtorrent 4
  fi
  if only seed && have_client libtorrent; then
    bench_seed ours
    bench_seed libtorrent
  fi
  if only check; then
    bench_check ours
    have_client libtorrent && bench_check libtorrent
    bench_sha1
  fi
  if only 4g; then
    warm_cache "${CONTENT[single4g-1m]}"
    bench_download single4g-1m ours 1
  fi
  if only 16k; then
    warm_cache "${CONTENT[single-16k]}"
    for client in ours libtorrent aria2 transmission rqbit; do
      wanted "$client" && have_client "$client" && bench_download single-16k "$client" 1
    done
  fi
  if only 32seeders; then
    warm_cache "${CONTENT[single-1m]}"
    bench_download single-1m ours 32 ours
  fi
  if only ltseed && have_client libtorrent; then
    warm_cache "${CONTENT[single-1m]}"
    for client in ours libtorrent aria2 transmission rqbit; do
      wanted "$client" && have_client "$client" && bench_download single-1m "$client" 1 ltseed
    done
  fi
  return 0
}

# Machine, versions and the table, in Markdown.
print_report() {
  local key client mem_gib cpu_model
  cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  mem_gib=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
  echo "### Benchmark ($(date +%F), \`bash scripts/bench.sh\`, RUNS=$RUNS, medians)"
  echo
  echo "Machine: $(nproc) CPUs, ${cpu_model:-unknown CPU}, $mem_gib GiB RAM, Linux $(uname -r);"
  echo "load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end;"
  echo "runs during which another rustc was running: $(awk -F'\t' 'NR > 1 && $15 > 0 { n++ } END { print n + 0 }' "$RESULTS") of $(awk 'END { print NR - 1 }' "$RESULTS")."
  local makers
  makers="torrents by $(mktorrent -h 2>&1 | head -n 1 | awk '{ print $1, $2 }')"
  only 16k && makers+=" (the 16 KiB-piece one by scripts/bench/make_torrent.py: mktorrent refuses pieces under 32 KiB)"
  echo "Everything on 127.0.0.1; content in the page cache; $makers."
  echo
  echo "Clients:"
  for client in ours libtorrent aria2 transmission rqbit; do
    echo "- $client: $(client_version "$client")"
  done
  echo
  echo "| client | scenario | MB/s | CPU s/GiB | peak RSS | ours/theirs: MB/s, CPU/GiB | runs ok |"
  echo "|---|---|---:|---:|---:|---|---:|"
  for key in single-1m single-256k multi-1m; do
    case $key in single-1m) only 1m ;; single-256k) only 256k ;; multi-1m) only multi ;; esac || continue
    for client in ours libtorrent aria2 transmission rqbit; do
      wanted "$client" || continue
      table_row "download:$key:1" "$client" "download ${LABEL[$key]}, from 1 seeder (ours)"
    done
  done
  if only 4seeders; then
    table_row "download:single-1m:4" ours "download ${LABEL[single-1m]}, from 4 seeders ($BENCH_SEEDERS4)"
    wanted libtorrent && table_row "download:single-1m:4" libtorrent "download ${LABEL[single-1m]}, from 4 seeders ($BENCH_SEEDERS4)"
  fi
  if only 4g; then
    table_row "download:single4g-1m:1" ours "download ${LABEL[single4g-1m]}, from 1 seeder (ours)"
  fi
  if only seed; then
    table_row "seed:single-1m" ours "seed ${LABEL[single-1m]} to 1 libtorrent downloader (seeder's CPU and RSS)"
    table_row "seed:single-1m" libtorrent "seed ${LABEL[single-1m]} to 1 libtorrent downloader (seeder's CPU and RSS)"
  fi
  if only check; then
    table_row "check:single-1m" ours "check the complete ${LABEL[single-1m]%%,*} at start-up"
    table_row "check:single-1m" libtorrent "check the complete ${LABEL[single-1m]%%,*} at start-up"
    table_row "check:single-1m" openssl-sha1 "raw SHA-1, 1 core, in memory (openssl speed)"
    table_row "check:single-1m" sha1sum "raw SHA-1, 1 core, the cached file (sha1sum)"
  fi
  if only 16k; then
    for client in ours libtorrent aria2 transmission rqbit; do
      wanted "$client" || continue
      table_row "download:single-16k:1" "$client" "download ${LABEL[single-16k]}, from 1 seeder (ours)"
    done
  fi
  if only 32seeders; then
    table_row "download:single-1m:32:ours" ours "download ${LABEL[single-1m]}, from 32 seeders (ours)"
  fi
  if only ltseed; then
    for client in ours libtorrent aria2 transmission rqbit; do
      wanted "$client" || continue
      table_row "download:single-1m:1:ltseed" "$client" \
        "download ${LABEL[single-1m]}, from 1 seeder (libtorrent, high_performance_seed)"
    done
  fi
  print_targets
  echo
  echo "MB/s is 10^6 bytes per second of wall time; CPU is user + system seconds per GiB,"
  echo "every thread; ours/theirs above 1x for MB/s means we are faster, below 1x for"
  echo "CPU/GiB that we use less. Download clocks start when both sides are ready (for"
  echo "aria2 and Transmission, which our seeder dials, when it has checked its data;"
  echo "for libtorrent when its session listens) and stop when the downloader exits;"
  echo "libtorrent's CPU includes Python's start-up (lt_peer.py). Transmission 3.00 waits"
  echo "for its 10-second timer before it asks for anything, which its MB/s includes."
  echo "libtorrent 2.0 maps the files into memory, so its peak RSS counts their cached"
  echo "pages. sha1sum hashes with coreutils' own SHA-1; openssl speed shows the CPU's best."
  echo "Raw per-run numbers: $RESULTS."
}

# The issue-14 targets that compare rows of the table, when both ran:
# ours in 16 KiB pieces against ours in 1 MiB pieces (at least 70%), and
# ours from the libtorrent seeder against the fastest other downloader
# there (at least 1.5x).
print_targets() {
  local lines=() ours other best="" best_client="" client
  if only 16k; then
    ours=$(median_of download:single-16k:1 ours mb_per_s)
    other=$(median_of download:single-1m:1 ours mb_per_s)
    if [ "$ours" != - ] && [ "$other" != - ]; then
      lines+=("Ours, 16 KiB against 1 MiB pieces (same run): $(awk -v a="$ours" -v b="$other" 'BEGIN { printf "%.0f%%", 100 * a / b }') of the throughput (target: at least 70%).")
    elif [ "$ours" != - ]; then
      lines+=("Ours in 16 KiB pieces against 1 MiB pieces: run 1m too (BENCH_ONLY=1m,16k) for the ratio.")
    fi
  fi
  if only ltseed; then
    ours=$(median_of download:single-1m:1:ltseed ours mb_per_s)
    for client in libtorrent aria2 transmission rqbit; do
      other=$(median_of download:single-1m:1:ltseed "$client" mb_per_s)
      [ "$other" != - ] || continue
      if [ -z "$best" ] || awk -v a="$other" -v b="$best" 'BEGIN { exit !(a > b) }'; then
        best=$other
        best_client=$client
      fi
    done
    if [ "$ours" != - ] && [ -n "$best" ]; then
      lines+=("From the libtorrent seeder: ours $(ratio "$ours" "$best") the fastest other downloader ($best_client) (target: at least 1.50x).")
    fi
  fi
  if [ "${#lines[@]}" -gt 0 ]; then
    echo
    printf '%s\n' "${lines[@]}"
  fi
  return 0
}

main() {
  check_tools
  mkdir -p "$BENCH_DIR/torrents" "$BENCH_DIR/run"
  start_results "$BENCH_DIR" "$RESULTS_HEADER"
  local started=$SECONDS

  build
  prepare_data
  for client in libtorrent aria2 transmission rqbit; do
    wanted "$client" && ! have_client "$client" && say "$client is missing: $(install_hint "$client")"
  done
  say "results: $RESULTS"
  for ((ROUND = 1; ROUND <= RUNS; ROUND++)); do
    say "round $ROUND of $RUNS"
    round
  done
  ROUND=-
  print_report | tee "$BENCH_DIR/report-$STAMP.md"
  say "took $((SECONDS - started)) s; report: $BENCH_DIR/report-$STAMP.md"
}

ROUND=0
main
