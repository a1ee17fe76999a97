# Process and timing helpers for scripts/bench.sh (sourced, not run).
#
# Every process the benchmark starts goes through `spawn`, which puts it in a
# session (and so a process group) of its own and remembers it, so that
# `cleanup` can end it and everything under it on any exit, and nothing is
# killed by name. Every wait is bounded by a deadline.

# Process groups started by `spawn` and not yet ended.
BENCH_PGIDS=()

# Clock ticks per second, to read CPU times from /proc/PID/stat.
CLK_TCK=$(getconf CLK_TCK)

# Prints a message on stderr and exits 1.
die() {
  echo "bench: $*" >&2
  exit 1
}

# Prints a progress message on stderr (stdout is kept for the report).
say() {
  echo "bench: $*" >&2
}

# The wall clock in seconds, with microseconds (bash 5, no fork).
now() {
  echo "$EPOCHREALTIME"
}

# spawn LOG CMD...: starts CMD in the background in a new session, its
# stdout and stderr into LOG; sets SPAWNED to its pid, which is also its
# process group (setsid does not fork here: a background child of a
# non-interactive shell is never a group leader, so setsid execs in place).
spawn() {
  local log=$1
  shift
  setsid "$@" >"$log" 2>&1 </dev/null &
  SPAWNED=$!
  BENCH_PGIDS+=("$SPAWNED")
}

# Forgets a process group that has ended.
forget() {
  local pid=$1 kept=() p
  for p in "${BENCH_PGIDS[@]}"; do
    [ "$p" = "$pid" ] || kept+=("$p")
  done
  BENCH_PGIDS=("${kept[@]+"${kept[@]}"}")
}

# Whether PID is still running (a zombie, exited but not yet reaped, is not).
running() {
  local state
  state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# stop PID SIGNAL [SECONDS]: sends SIGNAL to PID, waits up to SECONDS
# (default 15) for it to exit, then kills its whole process group; reaps it.
# Returns its exit status.
stop() {
  local pid=$1 signal=$2 seconds=${3:-15} rc=0 i
  kill -s "$signal" "$pid" 2>/dev/null || true
  for ((i = 0; i < seconds * 20; i++)); do
    running "$pid" || break
    sleep 0.05
  done
  if running "$pid"; then
    say "pid $pid did not stop within ${seconds}s of SIG$signal; killing its group"
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || rc=$?
  # Anything it left in its group (there should be nothing) goes too.
  kill -KILL -- "-$pid" 2>/dev/null || true
  forget "$pid"
  return "$rc"
}

# reap PID: waits for PID, which must end by itself (every downloader runs
# under `timeout`, so it does); returns its exit status.
reap() {
  local pid=$1 rc=0
  wait "$pid" 2>/dev/null || rc=$?
  kill -KILL -- "-$pid" 2>/dev/null || true
  forget "$pid"
  return "$rc"
}

# Ends every process group still running; for the EXIT trap.
cleanup() {
  local pid
  for pid in "${BENCH_PGIDS[@]+"${BENCH_PGIDS[@]}"}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  sleep 0.5
  for pid in "${BENCH_PGIDS[@]+"${BENCH_PGIDS[@]}"}"; do
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  BENCH_PGIDS=()
}

# wait_line PID FILE REGEX SECONDS: polls FILE every 10 ms until a line
# matches REGEX (then prints the time it was seen), PID exits, or SECONDS
# pass (then returns 1).
wait_line() {
  local pid=$1 file=$2 regex=$3 seconds=$4 deadline
  deadline=$(($(date +%s) + seconds))
  while :; do
    if grep -qE -- "$regex" "$file" 2>/dev/null; then
      now
      return 0
    fi
    running "$pid" || { grep -qE -- "$regex" "$file" 2>/dev/null && { now; return 0; }; return 1; }
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.01
  done
}

# Whether something listens on TCP port $1 (any address).
listening() {
  [ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]
}

# wait_listening PID PORT SECONDS: until PORT is open, PID exits, or SECONDS.
wait_listening() {
  local pid=$1 port=$2 seconds=$3 i
  for ((i = 0; i < seconds * 50; i++)); do
    listening "$port" && return 0
    running "$pid" || return 1
    sleep 0.02
  done
  return 1
}

# A TCP port nothing listens on, picked at random (the clients that are
# dialled need a known port before they start).
free_port() {
  local port i
  for ((i = 0; i < 100; i++)); do
    port=$((20000 + RANDOM % 40000))
    listening "$port" || { echo "$port"; return 0; }
  done
  die "no free port found"
}

# CPU seconds (user + system, all threads) PID has used so far.
cpu_seconds() {
  sed 's/^.*) //' "/proc/$1/stat" | awk -v tck="$CLK_TCK" '{ printf "%.2f", ($12 + $13) / tck }'
}

# Peak resident memory of PID so far, in KiB (VmHWM).
peak_rss_kib() {
  awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

# field FILE NAME: a value from GNU time's -v report.
time_field() {
  awk -F': ' -v name="$2" '{ sub(/^[ \t]+/, "", $1) } $1 == name { print $2; exit }' "$1"
}

# Seconds between two `now` stamps, 3 decimals.
elapsed() {
  awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'
}

# install_ours DEST: copies our release binary to DEST, so that a rebuild
# while a benchmark runs cannot change what is measured. The binary is BIN
# when set (nothing is built), else what `cargo build --release` makes in
# $CARGO_TARGET_DIR (relative to the repository, as cargo takes it) or
# target/. Run from the repository's root.
install_ours() {
  local dest=$1 src
  if [ -n "${BIN:-}" ]; then
    src=$BIN
  else
    say "cargo build --release"
    cargo build --release --quiet
    src=${CARGO_TARGET_DIR:-target}/release/bittorrent
  fi
  [ -x "$src" ] || die "no binary at $src"
  mkdir -p "$(dirname "$dest")"
  cp "$src" "$dest"
}

# start_results DIR HEADER: what a benchmark's main does first: the EXIT
# trap that ends every process it starts, a STAMP for this run's files, and
# RESULTS, DIR/results-STAMP.tsv, holding HEADER; LOAD_START is the load
# average now.
start_results() {
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  STAMP=$(date +%Y%m%d-%H%M%S)
  RESULTS=$1/results-$STAMP.tsv
  echo "$2" >"$RESULTS"
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
}
