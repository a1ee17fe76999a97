# The raw results file and the final Markdown table (sourced by
# scripts/bench.sh).
#
# Every measured run is one tab-separated line of $RESULTS (columns in
# RESULTS_HEADER); the table is computed from those lines alone, so a results
# file can be re-read later. Medians are taken over the runs that succeeded.

RESULTS_HEADER="stamp	round	scenario	client	status	bytes	wall_s	mb_per_s	user_s	sys_s	cpu_s_per_gib	peak_rss_kib	seeder_cpu_s	load1	rustc_procs	note"

# record SCENARIO CLIENT STATUS BYTES WALL USER SYS PEAK_RSS_KIB SEEDER_CPU NOTE:
# appends one line to $RESULTS and prints a short line on stderr.
record() {
  local scenario=$1 client=$2 status=$3 bytes=$4 wall=$5 user=$6 sys=$7 rss=$8 seeder_cpu=$9 note=${10}
  local load rustc line
  load=$(cut -d' ' -f1 /proc/loadavg)
  # Another build on the machine is the usual source of noise: count rustc.
  rustc=$(pgrep -xc rustc || true)
  line=$(awk -v OFS='\t' -v stamp="$(date +%FT%T)" -v round="$ROUND" -v sc="$scenario" \
    -v client="$client" -v status="$status" -v bytes="$bytes" -v wall="$wall" -v user="$user" \
    -v sys="$sys" -v rss="$rss" -v scpu="$seeder_cpu" -v load1="$load" -v rustc="$rustc" -v note="$note" \
    'BEGIN {
       mbs = (wall > 0) ? sprintf("%.1f", bytes / 1e6 / wall) : "-"
       cpu = (bytes > 0) ? sprintf("%.3f", (user + sys) / (bytes / 1073741824)) : "-"
       print stamp, round, sc, client, status, bytes, wall, mbs, user, sys, cpu, rss, scpu, load1, rustc, note
     }')
  echo "$line" >>"$RESULTS"
  awk -F'\t' '{ printf "bench:   %-22s %-12s %-4s %8s MB/s %7s CPU s/GiB %8s KiB peak RSS %s\n",
                 $3, $4, $5, $8, $11, $12, $16 }' <<<"$line" >&2
}

# median_of SCENARIO CLIENT COLUMN: the median of COLUMN (a header name)
# over the successful runs, or "-".
median_of() {
  awk -F'\t' -v sc="$1" -v client="$2" -v name="$3" '
    NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) col = i; next }
    $3 == sc && $4 == client && $5 == "ok" && $col != "-" { v[n++] = $col + 0 }
    END {
      if (n == 0) { print "-"; exit }
      # insertion sort: a handful of values
      for (i = 1; i < n; i++) { x = v[i]; for (j = i - 1; j >= 0 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
      m = (n % 2) ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2
      print m
    }' "$RESULTS"
}

# runs_of SCENARIO CLIENT: "ok/total" runs.
runs_of() {
  awk -F'\t' -v sc="$1" -v client="$2" '
    NR > 1 && $3 == sc && $4 == client && $5 != "skipped" { total++; if ($5 == "ok") ok++ }
    END { printf "%d/%d", ok, total }' "$RESULTS"
}

# first_failure SCENARIO CLIENT: the note of its first failed run.
first_failure() {
  awk -F'\t' -v sc="$1" -v client="$2" '
    NR > 1 && $3 == sc && $4 == client && $5 == "FAIL" { print $16; exit }' "$RESULTS"
}

# fmt PRINTF_FORMAT VALUE: VALUE formatted, or "-" as is.
fmt() {
  if [ "$2" = "-" ] || [ -z "$2" ]; then echo "-"; else awk -v f="$1" -v v="$2" 'BEGIN { printf f, v }'; fi
}

# ratio A B: A/B as "1.23x", or "-".
ratio() {
  if [ "$1" = "-" ] || [ "$2" = "-" ] || [ -z "$1" ] || [ -z "$2" ]; then
    echo "-"
  else
    awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2fx", a / b }'
  fi
}

# table_row SCENARIO CLIENT LABEL [REFERENCE_CLIENT]: one row of the table.
# The ratio column compares ours (REFERENCE_CLIENT, by default "ours") with
# this client in the same scenario: throughput ours/theirs (above 1: we are
# faster) and CPU per GiB ours/theirs (below 1: we use less CPU).
table_row() {
  local scenario=$1 client=$2 label=$3 reference=${4:-ours}
  if ! have_client_or_tool "$client"; then
    echo "| $client | $label | missing | missing | missing | missing ($(install_hint "$client")) | - |"
    return
  fi
  local runs mbs cpu rss
  runs=$(runs_of "$scenario" "$client")
  if [ "${runs%%/*}" = 0 ]; then
    if [ "$runs" = "0/0" ]; then
      echo "| $client | $label | not run | not run | not run | - | 0/0 |"
    else
      echo "| $client | $label | failed | failed | failed | failed: $(first_failure "$scenario" "$client") | $runs |"
    fi
    return
  fi
  mbs=$(median_of "$scenario" "$client" mb_per_s)
  cpu=$(median_of "$scenario" "$client" cpu_s_per_gib)
  rss=$(median_of "$scenario" "$client" peak_rss_kib)
  local ratios="-"
  if [ "$client" != "$reference" ]; then
    local ours_mbs ours_cpu
    ours_mbs=$(median_of "$scenario" "$reference" mb_per_s)
    ours_cpu=$(median_of "$scenario" "$reference" cpu_s_per_gib)
    ratios="$(ratio "$ours_mbs" "$mbs") / $(ratio "$ours_cpu" "$cpu")"
  fi
  local rss_mib="-"
  [ "$rss" != "-" ] && rss_mib="$(fmt '%.1f' "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')") MiB"
  echo "| $client | $label | $(fmt '%.0f' "$mbs") | $(fmt '%.2f' "$cpu") | $rss_mib | $ratios | $runs |"
}

# The reference rows (openssl, sha1sum) are tools, always there.
have_client_or_tool() {
  case $1 in
    openssl-sha1 | sha1sum) return 0 ;;
    *) have_client "$1" ;;
  esac
}
