# The benchmark's content and torrents (sourced by scripts/bench.sh).
#
# Content is random bytes (incompressible, so nothing on the way can cheat)
# read once from /dev/urandom and cached under $BENCH_DIR/data, keyed by
# size, so later runs reuse it; a `.complete` marker is written last, so an
# interrupted generation is redone rather than trusted. Torrents are made by
# mktorrent, a tool independent of our client, and announce to
# http://127.0.0.1:1/announce, which refuses connections: every peer is
# given by hand (--peer), so no tracker is needed.

BENCH_ANNOUNCE=http://127.0.0.1:1/announce

# single_file SIZE_MB: prints the path of a cached file of SIZE_MB MiB of
# random bytes, generating it first if needed.
single_file() {
  local size_mb=$1
  local dir=$BENCH_DIR/data/single-${size_mb}M
  local file=$dir/bench-${size_mb}M.bin
  if [ ! -e "$dir/.complete" ]; then
    say "generating $file ($size_mb MiB from /dev/urandom, once)"
    rm -rf "$dir"
    mkdir -p "$dir"
    head -c "$((size_mb * 1024 * 1024))" /dev/urandom >"$file"
    touch "$dir/.complete"
  fi
  echo "$file"
}

# multi_folder SIZE_MB SOURCE: prints the path of a cached folder of about
# SIZE_MB MiB in files of mixed sizes, cut from SOURCE (a random file at
# least that large), generating it first if needed. Its shape: one large
# file (40%), 8 medium ones (40%), 64 small ones (15%) and 128 tiny ones
# (1 to 40 KiB), in nested folders, every size odd so that pieces span
# files at uneven offsets. No empty file: Transmission does not create them
# and the comparison of its output would fail for nothing.
multi_folder() {
  local size_mb=$1 source=$2
  local dir=$BENCH_DIR/data/multi-${size_mb}M
  local root=$dir/bench-multi-${size_mb}M
  if [ ! -e "$dir/.complete" ]; then
    say "generating $root (about $size_mb MiB in 201 files, cut from $source)"
    rm -rf "$dir"
    mkdir -p "$root/media" "$root/docs/a" "$root/small/b/c"
    local total=$((size_mb * 1024 * 1024)) offset=0 i len
    # cut PATH LEN: the next LEN bytes of SOURCE into PATH.
    cut_into() {
      dd if="$source" of="$1" bs=1M iflag=skip_bytes,count_bytes \
        skip="$offset" count="$2" status=none
      offset=$((offset + $2))
    }
    cut_into "$root/large.bin" $((total * 40 / 100 - 4093))
    for ((i = 0; i < 8; i++)); do
      cut_into "$root/media/part-$i.bin" $((total * 5 / 100 - 1009 * (i + 1)))
    done
    for ((i = 0; i < 64; i++)); do
      len=$((total * 15 / 100 / 64 + 977 * (i % 7) - 2001))
      cut_into "$root/docs/a/file-$i.dat" "$len"
    done
    for ((i = 0; i < 128; i++)); do
      cut_into "$root/small/b/c/tiny-$i.txt" $((1024 + (i * 7919) % (39 * 1024) + 1))
    done
    touch "$dir/.complete"
  fi
  echo "$root"
}

# make_torrent CONTENT PIECE_LOG2 OUT: the torrent of CONTENT with pieces of
# 2^PIECE_LOG2 bytes, made by mktorrent unless OUT is already there (and
# newer than the content's marker, so regenerated content gets new torrents).
# mktorrent 1.1 takes no pieces under 32 KiB: smaller ones (a single file)
# are made by make_torrent.py, next to this file.
make_torrent() {
  local content=$1 piece_log2=$2 out=$3
  local marker
  marker=$(dirname "$content")/.complete
  if [ ! -e "$out" ] || [ "$marker" -nt "$out" ]; then
    rm -f "$out"
    mkdir -p "$(dirname "$out")"
    # -d: no creation date, so the same content gives the same torrent.
    if [ "$piece_log2" -lt 15 ]; then
      /usr/bin/python3 "$REPO/scripts/bench/make_torrent.py" "$content" $((1 << piece_log2)) \
        "$BENCH_ANNOUNCE" "$out" >/dev/null
    else
      mktorrent -a "$BENCH_ANNOUNCE" -d -l "$piece_log2" -o "$out" "$content" >/dev/null
    fi
  fi
}

# Human sizes for labels, from MiB: 1 GiB, 320 MiB.
size_label() {
  if (($1 % 1024 == 0)); then echo "$(($1 / 1024)) GiB"; else echo "$1 MiB"; fi
}

# Total bytes of a file or of every file under a folder.
content_bytes() {
  if [ -d "$1" ]; then
    find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'
  else
    stat -c %s "$1"
  fi
}

# Reads the content once so the seeders serve it from the page cache and the
# disk does not dominate (we do not drop caches: it needs root and is not the
# point; the downloaders' outputs are deleted before and after each run).
warm_cache() {
  if [ -d "$1" ]; then
    find "$1" -type f -exec cat {} + >/dev/null
  else
    cat "$1" >/dev/null
  fi
}
