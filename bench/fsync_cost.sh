#!/usr/bin/env bash
# What durability costs on WRITE and UNTAR: two pkfs binaries (BEFORE and
# AFTER, for example a release build of an older commit and of this tree)
# side by side with gocryptfs and a plain directory, in one run, with the
# targets interleaved in every round. Reports medians and the ratios
# AFTER/BEFORE and pkfs/gocryptfs.
#
#   BENCH_BEFORE=/path/to/old/pkfs bash bench/fsync_cost.sh
#   BENCH_AFTER=target/release/pkfs (default)  BENCH_RUNS=3 (default)
#   BENCH_BEFORE_LABEL / BENCH_AFTER_LABEL name the two in the report
#   BENCH_WRITE_MB=256  BENCH_VENDOR_CRATES=40  BENCH_DIR=/var/tmp/pkfs-fsync-bench
#
# WRITE is `dd bs=128K conv=fsync` of BENCH_WRITE_MB MiB (cold page cache);
# UNTAR is `tar xf` of the first BENCH_VENDOR_CRATES crates of `cargo vendor`
# into a cold mount, and UNTAR_COMMITTED the time until pkfs has committed
# it (gocryptfs and plain have nothing to commit: their UNTAR is repeated).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${BENCH_RUNS:-3}
W=${BENCH_DIR:-/var/tmp/pkfs-fsync-bench}
WRITE_MB=${BENCH_WRITE_MB:-256}
CRATES=${BENCH_VENDOR_CRATES:-40}
AFTER=$(realpath "${BENCH_AFTER:-$REPO/target/release/pkfs}")
BEFORE=$(realpath "${BENCH_BEFORE:?set BENCH_BEFORE to the pkfs binary to compare with}")
OUT=${BENCH_OUT:-$REPO/bench/results/fsync-cost.md}

log() { printf '[fsync-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.3f", b-a}'; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
[ "$(id -u)" -eq 0 ] || { log "needs root (drop_caches)"; exit 1; }
command -v gocryptfs >/dev/null || apt-get install -y -qq gocryptfs >/dev/null

declare -A BIN=([before]="$BEFORE" [after]="$AFTER")
PF="$W/passfile"
home() { echo "$W/$1.home"; }
mnt() { echo "$W/$1.mnt"; }
pk() { local t=$1; shift; "${BIN[$t]}" --home "$(home "$t")" --passfile "$PF" -q "$@"; }
dir_of() {
    case $1 in plain) echo "$W/plain" ;; gocryptfs) mnt gocryptfs ;; *) echo "$(mnt "$1")/v" ;; esac
}
idle() {
    local t=$1 n
    for _ in $(seq 1 6000); do
        n=$("${BIN[$t]}" --home "$(home "$t")" --json status 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(v["pending_changes"] for v in d.get("vaults", [])) + d.get("removing_dirs", 0))' || echo x)
        [ "$n" = 0 ] && return 0
        sleep 0.1
    done
    log "$t: still pending after 600 s"
}
mount_t() {
    case $1 in
        plain) ;;
        gocryptfs) gocryptfs -q -nosyslog -extpass "cat $PF" "$W/gc.cipher" "$(mnt gocryptfs)" ;;
        *) pk "$1" mount "$(mnt "$1")" ;;
    esac
}
umount_t() {
    case $1 in
        plain) ;;
        gocryptfs) fusermount3 -u "$(mnt gocryptfs)" ;;
        *) pk "$1" umount "$(mnt "$1")" ;;
    esac
}
cold() { umount_t "$1"; mount_t "$1"; drop_caches; }
cleanup() {
    set +e
    for t in before after; do
        mountpoint -q "$(mnt "$t")" 2>/dev/null && pk "$t" umount "$(mnt "$t")"
    done
    mountpoint -q "$(mnt gocryptfs)" 2>/dev/null && fusermount3 -u "$(mnt gocryptfs)"
}
trap cleanup EXIT

rm -rf "$W"
mkdir -p "$W/plain" "$W/gc.cipher" "$(mnt gocryptfs)" "$(mnt before)" "$(mnt after)"
echo "bench-passphrase-$$-$RANDOM" >"$PF"
chmod 600 "$PF"
log "vendor tarball ($CRATES crates)"
(cd "$REPO" && cargo vendor --locked "$W/src/vendor" >/dev/null 2>&1)
(cd "$W/src/vendor" && ls | sort | tail -n +$((CRATES + 1)) | xargs rm -rf)
tar cf "$W/vendor.tar" -C "$W/src" vendor
FILES=$(find "$W/src/vendor" -type f | wc -l)
rm -rf "$W/src"
gocryptfs -q -init -extpass "cat $PF" "$W/gc.cipher" >/dev/null
for t in before after; do
    PKFS_TEST_ONLY_FAST_KDF=1 pk "$t" init >/dev/null
    PKFS_TEST_ONLY_FAST_KDF=1 pk "$t" vault create v >/dev/null
done
TARGETS=(plain gocryptfs before after)
for t in "${TARGETS[@]}"; do mount_t "$t"; done
RAW="$W/raw.tsv"
: >"$RAW"
for r in $(seq 1 "$RUNS"); do
    for t in "${TARGETS[@]}"; do
        d=$(dir_of "$t")
        rm -f "$d/zero"
        case $t in before | after) idle "$t" ;; esac
        drop_caches
        log "run $r WRITE $t"
        t0=$(now)
        dd if=/dev/zero of="$d/zero" bs=128K count=$((WRITE_MB * 8)) conv=fsync status=none
        printf 'WRITE\t%s\t%s\n' "$t" "$(awk -v s="$(elapsed "$t0")" -v m="$WRITE_MB" 'BEGIN{printf "%.1f", m*1.048576/s}')" >>"$RAW"
        rm -f "$d/zero"
    done
    for t in "${TARGETS[@]}"; do
        d=$(dir_of "$t")
        rm -rf "$d/vendor"
        case $t in before | after) idle "$t" ;; esac
        cold "$t"
        cat "$W/vendor.tar" >/dev/null
        log "run $r UNTAR $t"
        t0=$(now)
        tar xf "$W/vendor.tar" -C "$d"
        printf 'UNTAR\t%s\t%s\n' "$t" "$(elapsed "$t0")" >>"$RAW"
        case $t in before | after)
            idle "$t"
            printf 'UNTAR_COMMITTED\t%s\t%s\n' "$t" "$(elapsed "$t0")" >>"$RAW" ;;
        esac
    done
done

python3 - "$RAW" "$OUT" "$WRITE_MB" "$FILES" "$RUNS" \
    "${BENCH_BEFORE_LABEL:-$BEFORE}" "${BENCH_AFTER_LABEL:-$AFTER}" \
    "$(git -C "$REPO" rev-parse --short HEAD)" <<'EOF'
import statistics, sys
raw, out, mb, files, runs, vb, va, rev = sys.argv[1:]
rows = {}
for line in open(raw):
    w, t, v = line.split("\t")
    rows.setdefault((w, t), []).append(float(v))
med = {k: statistics.median(v) for k, v in rows.items()}
def cell(w, t, unit):
    fmt = "%.1f %s" if unit == "MB/s" else "%.2f %s"
    return fmt % (med[(w, t)], unit) if (w, t) in med else "–"
lines = [
    "# What durability costs on WRITE and UNTAR",
    "",
    "`bench/fsync_cost.sh`, commit %s: medians of %s interleaved runs on the shared"
    " 2-core machine (read the ratios, not the second digit). WRITE: dd of %s MiB"
    " with conv=fsync, MB/s (higher is better). UNTAR: %s files, seconds (lower is"
    " better); UNTAR_COMMITTED: until pkfs has committed them. `before` is %s,"
    " `after` is %s." % (rev, runs, mb, files, vb, va),
    "",
    "| workload | plain | gocryptfs | pkfs before | pkfs after | after/before | after/gocryptfs |",
    "|---|---:|---:|---:|---:|---:|---:|",
]
for w, unit in (("WRITE", "MB/s"), ("UNTAR", "s"), ("UNTAR_COMMITTED", "s")):
    b, a, g = med.get((w, "before")), med.get((w, "after")), med.get((w, "gocryptfs"))
    ab = "%.2f×" % (a / b) if a and b else "–"
    ag = "%.2f×" % (a / g) if a and g else "–"
    lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
        w, cell(w, "plain", unit), cell(w, "gocryptfs", unit), cell(w, "before", unit),
        cell(w, "after", unit), ab, ag))
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
log "report: $OUT"
