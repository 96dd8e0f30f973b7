#!/usr/bin/env bash
# Sparse files side by side: a plain directory, gocryptfs and pkfs, on one disk.
#
#   bash bench/sparse.sh [PKFS_BINARY]
#
# For each target: create a sparse file (`truncate -s SIZE`), then make it
# durable (plain and gocryptfs: `sync`; pkfs: until the mount's commit of it
# is done, as `pkfs status` shows), and report the time to create it, the time
# from the start until it is durable (pkfs starts its commit as soon as the
# truncation is answered), and the disk space the backing directory (pkfs:
# the whole home, git history included) grew by. Each figure is also given as
# a ratio to the plain directory's (its disk use counted as at least 4 KiB).
#
# Environment:
#   SPARSE_SIZE=S   the file's size (default 1G; anything `truncate -s` takes)
#   BENCH_DIR=D     work directory (default /var/tmp/pkfs-bench-sparse)
#
# Needs FUSE (root, or fusermount3) and installs gocryptfs with apt when it is
# missing (skipped, with a note, when that is not possible).
set -euo pipefail
cd "$(dirname "$0")/.."

size=${SPARSE_SIZE:-1G}
W=${BENCH_DIR:-/var/tmp/pkfs-bench-sparse}
bin=${1:-}
if [ -z "$bin" ]; then
    cargo build --quiet --release --bin pkfs
    bin=target/release/pkfs
fi
bin=$(realpath "$bin")

if ! command -v gocryptfs >/dev/null && [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gocryptfs >/dev/null 2>&1 || true
fi

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.3f", b-a}'; }
used() { du -s --block-size=1 "$1" | cut -f1; }

rm -rf "$W"
mkdir -p "$W"
printf 'sparse bench passphrase\n' >"$W/pass"
cleanup() {
    "$bin" --home "$W/pkfs.home" umount "$W/pkfs.mnt" >/dev/null 2>&1 || true
    fusermount3 -u "$W/gc.mnt" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT

rows=()
base=()
# row NAME CREATE_S DURABLE_S USED_BYTES: the first row (plain) is the base.
row() {
    [ ${#base[@]} -eq 0 ] && base=("$2" "$3" "$4")
    rows+=("$(awk -v n="$1" -v c="$2" -v d="$3" -v u="$4" \
        -v bc="${base[0]}" -v bd="${base[1]}" -v bu="${base[2]}" 'BEGIN {
        x = (bc > 0) ? c / bc : 0; y = (bd > 0) ? d / bd : 0
        if (bu < 4096) bu = 4096
        z = ((u < 4096) ? 4096 : u) / bu
        printf "| %-9s | %10.3f | %8.1fx | %10.3f | %8.1fx | %10.2f | %8.1fx |", n, c, x, d, y, u / 1048576, z
    }')")
}

# Plain directory.
mkdir -p "$W/plain"
before=$(used "$W/plain")
t0=$(now); truncate -s "$size" "$W/plain/f"; create=$(since "$t0")
sync; durable=$(since "$t0")
row plain "$create" "$durable" "$(($(used "$W/plain") - before))"

# gocryptfs.
if command -v gocryptfs >/dev/null; then
    mkdir -p "$W/gc.cipher" "$W/gc.mnt"
    gocryptfs -q -init -extpass "cat $W/pass" "$W/gc.cipher" >/dev/null
    gocryptfs -q -nosyslog -extpass "cat $W/pass" "$W/gc.cipher" "$W/gc.mnt"
    before=$(used "$W/gc.cipher")
    t0=$(now); truncate -s "$size" "$W/gc.mnt/f"; create=$(since "$t0")
    sync; durable=$(since "$t0")
    row gocryptfs "$create" "$durable" "$(($(used "$W/gc.cipher") - before))"
    fusermount3 -u "$W/gc.mnt"
else
    rows+=("| gocryptfs | (not installed) | | | | | |")
fi

# pkfs: the commit delay is short, so the commit starts as soon as it can.
export PKFS_HOME=$W/pkfs.home PKFS_PASSFILE=$W/pass
mkdir -p "$W/pkfs.mnt"
"$bin" -q init >/dev/null
"$bin" -q vault create s
"$bin" mount "$W/pkfs.mnt" --commit-delay 100ms
commits() { "$bin" version log s 2>/dev/null | grep -c . || true; }
first=$(commits)
before=$(used "$W/pkfs.home")
t0=$(now)
if truncate -s "$size" "$W/pkfs.mnt/s/f" 2>"$W/err"; then
    create=$(since "$t0")
    while [ "$(commits)" = "$first" ] || "$bin" --json status | grep -q '"pending_changes": *[1-9]'; do
        sleep 0.1
    done
    durable=$(since "$t0")
    row pkfs "$create" "$durable" "$(($(used "$W/pkfs.home") - before))"
else
    rows+=("| pkfs | failed: $(tr -d '\n' <"$W/err") | | | | | |")
fi
"$bin" umount "$W/pkfs.mnt" >/dev/null

echo "Sparse file of $size: time to create it, time until durable (pkfs: committed),"
echo "disk used; each also as a ratio to the plain directory"
echo
echo "| target    | create (s) | vs plain | durable (s) | vs plain | disk (MiB) | vs plain |"
echo "|-----------|-----------:|---------:|------------:|---------:|-----------:|---------:|"
printf '%s\n' "${rows[@]}"
