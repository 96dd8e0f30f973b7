#!/usr/bin/env bash
# Side-by-side benchmark: plain directory vs gocryptfs vs pkfs, on the same disk.
#
#   bash bench/run.sh                 # full run (3 runs per figure, interleaved)
#   BENCH_RUNS=5 bash bench/run.sh    # more runs
#   BENCH_QUICK=1 bash bench/run.sh   # smoke test with small sizes
#   BENCH_DIR=/mnt/x bash bench/run.sh  # work directory (default /var/tmp/pkfs-bench)
#
# Writes bench/results/latest.md, latest-raw.tsv and latest.svg, and appends the run
# (date, commit, median figures) to bench/results/history.jsonl.
# See bench/README.md for what each figure means.
set -euo pipefail

BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_SRC/.." && pwd)
RESULTS_DIR="$BENCH_SRC/results"
RUNS=${BENCH_RUNS:-3}
QUICK=${BENCH_QUICK:-0}
W=${BENCH_DIR:-/var/tmp/pkfs-bench}

if [ "$QUICK" = 1 ]; then
    WRITE_COUNT=${BENCH_WRITE_COUNT:-256}   # x 128 KiB = 32 MiB
    EDIT_MB=${BENCH_EDIT_MB:-32}
    RSS_MB=${BENCH_RSS_MB:-256}
    VENDOR_CRATES=${BENCH_VENDOR_CRATES:-40}  # only the first N crates (sorted)
else
    WRITE_COUNT=${BENCH_WRITE_COUNT:-4096}  # x 128 KiB = 512 MiB
    EDIT_MB=${BENCH_EDIT_MB:-256}
    RSS_MB=${BENCH_RSS_MB:-2048}
    VENDOR_CRATES=${BENCH_VENDOR_CRATES:-0}   # 0 = all
fi
TIMEOUT=${BENCH_TIMEOUT:-900}
# Which parts to run (default: all). BENCH_MERGE_RAW=FILE adds the rows of an earlier
# run's raw.tsv (e.g. bench/results/latest-raw.tsv) to this one's report, so that
# phases can be run separately; BENCH_NOTE adds a line to the report's notes.
PHASES=" ${BENCH_PHASES:-io tree edit rss unlock} "
has_phase() { [[ "$PHASES" == *" $1 "* ]]; }   # seconds before a single step is declared hung

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        die "need root for: $*"; fi
}

# ---------------------------------------------------------------- dependencies
ensure_deps() {
    # Build dependencies of pkfs itself (fuse3, compiler, rustup ...), read-only reuse.
    # shellcheck source=/dev/null
    source "$REPO/scripts/ensure-deps.sh"
    local need=()
    command -v gocryptfs >/dev/null || need+=(gocryptfs)
    command -v fusermount3 >/dev/null || need+=(fuse3)
    [ -x /usr/bin/time ] || need+=(time)
    command -v python3 >/dev/null || need+=(python3)
    command -v bc >/dev/null || true
    if [ ${#need[@]} -gt 0 ]; then
        log "installing ${need[*]}"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
}

# ---------------------------------------------------------------- helpers
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.3f", b-a}'; }
drop_caches() { sync; echo 3 | as_root tee /proc/sys/vm/drop_caches >/dev/null; }
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RAW"; }  # workload target run value

PF="$W/passfile"
PLAIN="$W/plain"
GC_CIPHER="$W/gocryptfs.cipher"
GC_MNT="$W/gocryptfs.mnt"
PK_HOME="$W/pkfs.home"
PK_MNT="$W/pkfs.mnt"
PK2_HOME="$W/pkfs-slowkdf.home"
PK2_MNT="$W/pkfs-slowkdf.mnt"
PKFS="$REPO/target/release/pkfs"
RAW="$W/raw.tsv"
NOTES="$W/notes.txt"

declare -A MOUNTED=()

pk() { "$PKFS" --home "$PK_HOME" --passfile "$PF" "$@"; }

mount_t() {
    case $1 in
        plain) ;;
        gocryptfs)
            timeout "$TIMEOUT" gocryptfs -q -nosyslog -extpass "cat $PF" "$GC_CIPHER" "$GC_MNT"
            MOUNTED[gocryptfs]=1 ;;
        pkfs)
            timeout "$TIMEOUT" "$PKFS" --home "$PK_HOME" --passfile "$PF" -q mount "$PK_MNT"
            MOUNTED[pkfs]=1 ;;
    esac
}
umount_t() {
    case $1 in
        plain) ;;
        gocryptfs)
            local i
            for i in 1 2 3 4 5 6 7 8 9 10; do
                fusermount3 -u "$GC_MNT" 2>/dev/null && break
                sleep 1
            done
            mountpoint -q "$GC_MNT" && die "cannot unmount gocryptfs"
            unset 'MOUNTED[gocryptfs]' ;;
        pkfs)
            if ! timeout "$TIMEOUT" "$PKFS" --home "$PK_HOME" -q umount "$PK_MNT"; then
                note "pkfs umount failed or timed out (${TIMEOUT}s)"
                die "cannot unmount pkfs"
            fi
            unset 'MOUNTED[pkfs]' ;;
    esac
}
dir_t() {
    case $1 in
        plain) echo "$PLAIN" ;;
        gocryptfs) echo "$GC_MNT" ;;
        pkfs) echo "$PK_MNT/v" ;;
    esac
}
# Cold: unmounted and remounted, then page cache dropped.
cold() {
    if [ "$1" = pkfs ]; then pk_wait_idle >/dev/null; fi
    umount_t "$1"; mount_t "$1"; drop_caches
}
note() { echo "- $*" >>"$NOTES"; log "NOTE: $*"; }

# Sum of pending_changes of every vault (or "err").
pk_pending() {
    "$PKFS" --home "$PK_HOME" --json status 2>/dev/null | python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
    errs = [v["last_error"] for v in d.get("vaults", []) if v.get("last_error")]
    if errs: print("commit error: %s" % errs, file=sys.stderr)
    # Directories a checkout dropped, still being removed in the background.
    print(sum(v["pending_changes"] for v in d.get("vaults", [])) + d.get("removing_dirs", 0))
except Exception as e:
    print("err")'
}
# Wait until every vault has pending_changes 0; prints the seconds waited.
pk_wait_idle() {
    local t0 n; t0=$(now)
    while :; do
        n=$(pk_pending)
        [ "$n" = 0 ] && break
        if awk -v e="$(elapsed "$t0")" -v t="$TIMEOUT" 'BEGIN{exit !(e>t)}'; then
            note "pkfs: still $n pending changes after ${TIMEOUT}s (hang?)"; break
        fi
        sleep 0.2
    done
    elapsed "$t0"
}
pk_pid() { "$PKFS" --home "$1" --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])'; }

cleanup() {
    local rc=$?
    set +e
    if mountpoint -q "$PK2_MNT" 2>/dev/null; then
        timeout 300 "$PKFS" --home "$PK2_HOME" -q umount "$PK2_MNT" || fusermount3 -uz "$PK2_MNT"
    fi
    if [ -n "${MOUNTED[pkfs]:-}" ] && mountpoint -q "$PK_MNT" 2>/dev/null; then
        timeout 600 "$PKFS" --home "$PK_HOME" -q umount "$PK_MNT" || fusermount3 -uz "$PK_MNT"
    fi
    if [ -n "${MOUNTED[gocryptfs]:-}" ] && mountpoint -q "$GC_MNT" 2>/dev/null; then
        fusermount3 -u "$GC_MNT" || fusermount3 -uz "$GC_MNT"
    fi
    [ $rc -eq 0 ] || log "exited with status $rc; work dir left at $W"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- setup
ensure_deps
log "building pkfs (release)"
(cd "$REPO" && cargo build --release --locked -q)
[ -x "$PKFS" ] || die "no $PKFS"
drop_caches  # fails early if we cannot

for m in "$GC_MNT" "$PK_MNT" "$PK2_MNT"; do
    mountpoint -q "$m" 2>/dev/null && die "$m is still mounted from an earlier run; unmount it first"
done
rm -rf "$W"
mkdir -p "$W" "$PLAIN" "$GC_CIPHER" "$GC_MNT" "$PK_MNT" "$PK2_MNT" "$RESULTS_DIR"
: >"$RAW"; : >"$NOTES"
if [ -n "${BENCH_MERGE_RAW:-}" ]; then
    MERGE_COPY=$(mktemp); cp "$BENCH_MERGE_RAW" "$MERGE_COPY"
fi
echo "bench-passphrase-$$-$RANDOM" >"$PF"; chmod 600 "$PF"

log "work dir $W ($(df -T "$W" | awk 'NR==2{print $2}'))"
log "creating the vendor tarball (cargo vendor --locked)"
(cd "$REPO" && cargo vendor --locked "$W/vendor-src/vendor" >/dev/null 2>"$W/vendor.log") \
    || die "cargo vendor failed, see $W/vendor.log"
if [ "$VENDOR_CRATES" != 0 ]; then
    (cd "$W/vendor-src/vendor" && ls | sort | tail -n +$((VENDOR_CRATES + 1)) | xargs rm -rf)
fi
tar cf "$W/vendor.tar" -C "$W/vendor-src" vendor
(cd "$W/vendor-src" && find vendor -type f -print0 | sort -z | xargs -0 md5sum >"$W/md5.list")
rm -rf "$W/vendor-src"
TAR_BYTES=$(stat -c %s "$W/vendor.tar")
TAR_FILES=$(wc -l <"$W/md5.list")
log "tarball: $TAR_BYTES bytes, $TAR_FILES files"

log "gocryptfs -init"
gocryptfs -q -init -extpass "cat $PF" "$GC_CIPHER" >/dev/null
log "pkfs init (PKFS_TEST_ONLY_FAST_KDF=1, only to save time here)"
PKFS_TEST_ONLY_FAST_KDF=1 "$PKFS" --home "$PK_HOME" --passfile "$PF" -q init >/dev/null
PKFS_TEST_ONLY_FAST_KDF=1 "$PKFS" --home "$PK_HOME" --passfile "$PF" -q vault create v >/dev/null
mount_t gocryptfs
mount_t pkfs
TARGETS=(plain gocryptfs pkfs)
BENCH_T0=$(now)

# ---------------------------------------------------------------- WRITE / READ
WBYTES=$((WRITE_COUNT * 131072))
mbps() { awk -v b="$1" -v s="$2" 'BEGIN{printf "%.1f", b/1e6/s}'; }
if has_phase io; then
for r in $(seq 1 "$RUNS"); do
    for t in "${TARGETS[@]}"; do
        d=$(dir_t "$t"); rm -f "$d/zero"
        if [ "$t" = pkfs ]; then pk_wait_idle >/dev/null; fi
        drop_caches
        log "run $r WRITE $t"
        t0=$(now)
        timeout "$TIMEOUT" dd if=/dev/zero of="$d/zero" bs=128K count="$WRITE_COUNT" conv=fsync status=none \
            || note "WRITE $t run $r: dd failed"
        s=$(elapsed "$t0"); record WRITE "$t" "$r" "$(mbps "$WBYTES" "$s")"
    done
    for t in "${TARGETS[@]}"; do
        d=$(dir_t "$t")
        cold "$t"
        log "run $r READ $t"
        t0=$(now)
        timeout "$TIMEOUT" dd if="$d/zero" of=/dev/null bs=128K status=none || note "READ $t run $r: dd failed"
        s=$(elapsed "$t0"); record READ "$t" "$r" "$(mbps "$WBYTES" "$s")"
    done
    for t in "${TARGETS[@]}"; do rm -f "$(dir_t "$t")/zero"; done
done
pk_wait_idle >/dev/null
fi

# ---------------------------------------------------------------- tree workloads
if has_phase tree; then
for r in $(seq 1 "$RUNS"); do
    # UNTAR (tarball warm in the page cache of the underlying disk, target cold)
    for t in "${TARGETS[@]}"; do
        d=$(dir_t "$t"); rm -rf "$d/vendor"
        cold "$t"
        cat "$W/vendor.tar" >/dev/null
        log "run $r UNTAR $t"
        t0=$(now)
        timeout "$TIMEOUT" tar xf "$W/vendor.tar" -C "$d" || note "UNTAR $t run $r: tar failed"
        s=$(elapsed "$t0"); record UNTAR "$t" "$r" "$s"
        if [ "$t" = pkfs ]; then
            lag=$(pk_wait_idle)
            record UNTAR_COMMIT_LAG pkfs "$r" "$lag"
            record UNTAR_TO_COMMITTED pkfs "$r" "$(elapsed "$t0")"
            # checkout HEAD~1 (before the untar) and back to latest
            t1=$(now)
            timeout "$TIMEOUT" "$PKFS" --home "$PK_HOME" -q version checkout v HEAD~1 >/dev/null \
                || note "checkout HEAD~1 failed (run $r)"
            record CHECKOUT_BACK pkfs "$r" "$(elapsed "$t1")"
            if [ -e "$d/vendor" ]; then note "run $r: vendor/ still visible after checkout HEAD~1"; fi
            pk_wait_idle >/dev/null   # the dropped tree goes in the background
            record CHECKOUT_BACK_REMOVED pkfs "$r" "$(elapsed "$t1")"
            t1=$(now)
            timeout "$TIMEOUT" "$PKFS" --home "$PK_HOME" -q version checkout v latest >/dev/null \
                || note "checkout latest failed (run $r)"
            record CHECKOUT_LATEST pkfs "$r" "$(elapsed "$t1")"
            [ -e "$d/vendor/$(sed -n '1s/^[0-9a-f]*  vendor\///p' "$W/md5.list")" ] \
                || note "run $r: vendor/ not back after checkout latest"
        fi
    done
    # MD5 (cold)
    for t in "${TARGETS[@]}"; do
        d=$(dir_t "$t"); cold "$t"
        log "run $r MD5 $t"
        t0=$(now)
        (cd "$d" && timeout "$TIMEOUT" md5sum -c --quiet "$W/md5.list" >"$W/md5.$t.out" 2>&1) \
            || note "MD5 $t run $r: md5sum -c reported failures: $(head -c 300 "$W/md5.$t.out")"
        record MD5 "$t" "$r" "$(elapsed "$t0")"
    done
    # LS (cold)
    for t in "${TARGETS[@]}"; do
        d=$(dir_t "$t"); cold "$t"
        log "run $r LS $t"
        t0=$(now)
        timeout "$TIMEOUT" ls -lR "$d/vendor" >/dev/null || note "LS $t run $r: ls failed"
        record LS "$t" "$r" "$(elapsed "$t0")"
    done
    # RM (cold)
    for t in "${TARGETS[@]}"; do
        d=$(dir_t "$t"); cold "$t"
        log "run $r RM $t"
        t0=$(now)
        timeout "$TIMEOUT" rm -rf "$d/vendor" || note "RM $t run $r: rm failed"
        record RM "$t" "$r" "$(elapsed "$t0")"
        if [ "$t" = pkfs ]; then pk_wait_idle >/dev/null; fi
    done
done

fi

# ---------------------------------------------------------------- pkfs only: checkout of a 5000-file vault
# The issue's checkout target is for a 5000-file vault: vault `c` gets the first
# 5000 files of the tarball (md5.list order) in one commit; each run checks out
# the version before it (every file goes) and back (every file comes back), each
# with the kernel caches dropped first.
if has_phase tree; then
log "pkfs: checkout of a 5000-file vault"
pk -q vault create c >/dev/null
head -n 5000 "$W/md5.list" | sed 's/^[0-9a-f]*  //' >"$W/list5k"
C5K_FILES=$(wc -l <"$W/list5k")
timeout "$TIMEOUT" tar xf "$W/vendor.tar" -C "$PK_MNT/c" -T "$W/list5k" || note "5000-file untar failed"
pk_wait_idle >/dev/null
for r in $(seq 1 "$RUNS"); do
    drop_caches
    t1=$(now)
    timeout "$TIMEOUT" "$PKFS" --home "$PK_HOME" -q version checkout c HEAD~1 >/dev/null \
        || note "checkout c HEAD~1 failed (run $r)"
    record CHECKOUT5K_BACK pkfs "$r" "$(elapsed "$t1")"
    [ -z "$(ls -A "$PK_MNT/c")" ] || note "run $r: vault c not empty after checkout HEAD~1"
    # The dropped tree is removed in the background: reported, and waited for,
    # so that it does not overlap the next figure.
    pk_wait_idle >/dev/null
    record CHECKOUT5K_BACK_REMOVED pkfs "$r" "$(elapsed "$t1")"
    drop_caches
    t1=$(now)
    timeout "$TIMEOUT" "$PKFS" --home "$PK_HOME" -q version checkout c latest >/dev/null \
        || note "checkout c latest failed (run $r)"
    record CHECKOUT5K_LATEST pkfs "$r" "$(elapsed "$t1")"
    n=$(find "$PK_MNT/c" -type f | wc -l)
    [ "$n" = "$C5K_FILES" ] || note "run $r: vault c has $n files after checkout latest, not $C5K_FILES"
done
pk -q vault delete c --yes >/dev/null || note "deleting vault c failed"
fi

# ---------------------------------------------------------------- pkfs only: history growth of a 4 KiB edit
if has_phase edit; then
log "pkfs: history growth after a 4 KiB edit in a ${EDIT_MB} MiB file"
pk -q vault create e >/dev/null
EID=$("$PKFS" --home "$PK_HOME" --json vault list | python3 -c '
import json,sys; print([v["id"] for v in json.load(sys.stdin) if v["name"]=="e"][0])')
EGIT="$PK_HOME/vaults/$EID/.git"
EF="$PK_MNT/e/big"
EBYTES=$((EDIT_MB * 1048576))
timeout "$TIMEOUT" dd if=/dev/urandom of="$EF" bs=1M count="$EDIT_MB" conv=fsync status=none
pk_wait_idle >/dev/null
for r in $(seq 1 "$RUNS"); do
    timeout "$TIMEOUT" "$PKFS" --home "$PK_HOME" -q gc e >/dev/null || note "pkfs gc failed (run $r, before)"
    before=$(du -sb "$EGIT" | cut -f1)
    # 4 KiB at a page-aligned offset in a different place each run
    seek=$(( (EBYTES / 4096) * r / (RUNS + 1) ))
    timeout "$TIMEOUT" dd if=/dev/urandom of="$EF" bs=4K count=1 seek="$seek" conv=notrunc,fsync status=none
    pk_wait_idle >/dev/null
    t0=$(now)
    timeout "$TIMEOUT" "$PKFS" --home "$PK_HOME" -q gc e >/dev/null || note "pkfs gc failed (run $r, after)"
    record GC_SECONDS pkfs "$r" "$(elapsed "$t0")"
    after=$(du -sb "$EGIT" | cut -f1)
    record EDIT_GROWTH_BYTES pkfs "$r" "$((after - before))"
    record EDIT_GROWTH_PCT pkfs "$r" "$(awk -v a="$after" -v b="$before" -v f="$EBYTES" 'BEGIN{printf "%.4f", (a-b)*100/f}')"
done
rm -f "$EF"; pk_wait_idle >/dev/null
fi

# ---------------------------------------------------------------- pkfs only: peak RSS writing RSS_MB
if has_phase rss; then
for r in $(seq 1 "$RUNS"); do
    log "run $r pkfs peak RSS while writing ${RSS_MB} MiB"
    umount_t pkfs; mount_t pkfs   # fresh daemon: VmHWM starts from zero
    pid=$(pk_pid "$PK_HOME")
    timeout "$TIMEOUT" dd if=/dev/zero of="$PK_MNT/v/rss" bs=1M count="$RSS_MB" conv=fsync status=none \
        || note "RSS write failed (run $r)"
    hwm=$(awk '/VmHWM/{print $2}' "/proc/$pid/status")
    record RSS_AFTER_WRITE_MIB pkfs "$r" "$(awk -v k="$hwm" 'BEGIN{printf "%.1f", k/1024}')"
    pk_wait_idle >/dev/null
    hwm=$(awk '/VmHWM/{print $2}' "/proc/$pid/status")
    record RSS_AFTER_COMMIT_MIB pkfs "$r" "$(awk -v k="$hwm" 'BEGIN{printf "%.1f", k/1024}')"
    rm -f "$PK_MNT/v/rss"; pk_wait_idle >/dev/null
done
fi
umount_t pkfs
umount_t gocryptfs

# ---------------------------------------------------------------- pkfs only: unlock + mount (real KDF)
if has_phase unlock; then
log "pkfs: init a node WITHOUT the fast KDF, then time unlock+mount"
env -u PKFS_TEST_ONLY_FAST_KDF "$PKFS" --home "$PK2_HOME" --passfile "$PF" -q init >/dev/null
env -u PKFS_TEST_ONLY_FAST_KDF "$PKFS" --home "$PK2_HOME" --passfile "$PF" -q vault create v >/dev/null
for r in $(seq 1 "$RUNS"); do
    t0=$(now)
    env -u PKFS_TEST_ONLY_FAST_KDF timeout "$TIMEOUT" "$PKFS" --home "$PK2_HOME" --passfile "$PF" -q mount "$PK2_MNT" \
        || note "slow-KDF mount failed (run $r)"
    record UNLOCK_MOUNT pkfs "$r" "$(elapsed "$t0")"
    [ -d "$PK2_MNT/v" ] || note "slow-KDF mount: $PK2_MNT/v missing"
    timeout "$TIMEOUT" "$PKFS" --home "$PK2_HOME" -q umount "$PK2_MNT" || note "slow-KDF umount failed"
done
# gocryptfs reference for the same figure (its own scrypt KDF, default parameters)
for r in $(seq 1 "$RUNS"); do
    t0=$(now)
    gocryptfs -q -nosyslog -extpass "cat $PF" "$GC_CIPHER" "$GC_MNT"; MOUNTED[gocryptfs]=1
    record UNLOCK_MOUNT gocryptfs "$r" "$(elapsed "$t0")"
    umount_t gocryptfs
done
fi
BENCH_SECONDS=$(elapsed "$BENCH_T0")

# ---------------------------------------------------------------- report
if grep -qiE 'error|panic|warn' "$PK_HOME/pkfs.log" 2>/dev/null; then
    note "pkfs daemon log has error/warning lines (first 5): $(grep -iE 'error|panic|warn' "$PK_HOME/pkfs.log" | head -5 | tr '\n' ' ')"
fi
[ -z "${BENCH_NOTE:-}" ] || note "$BENCH_NOTE"
note "phases run in this invocation: $PHASES(runs: $RUNS, quick: $QUICK)"
if [ -n "${BENCH_MERGE_RAW:-}" ]; then
    # rows of the earlier run for figures this invocation did not measure
    awk -F'\t' 'NR==FNR{have[$1"\t"$2]=1; next} !(($1"\t"$2) in have)' "$RAW" "$MERGE_COPY" >>"$RAW"
    note "figures not measured in this invocation were merged from an earlier run's raw file ($BENCH_MERGE_RAW)"
fi
HOST=$(hostname)
OUT="$RESULTS_DIR/latest.md"
GIT_REV=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(cd "$REPO" && { git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null && echo "" || echo " (+ uncommitted changes in src/)"; })
export BENCH_RAW="$RAW" BENCH_NOTES="$NOTES" BENCH_OUT="$OUT" BENCH_SVG="$RESULTS_DIR/latest.svg" \
    BENCH_RUNS_N="$RUNS" BENCH_QUICK_FLAG="$QUICK" BENCH_WBYTES="$WBYTES" BENCH_EDIT_MB="$EDIT_MB" \
    BENCH_RSS_MB="$RSS_MB" BENCH_TAR_BYTES="$TAR_BYTES" BENCH_TAR_FILES="$TAR_FILES" \
    BENCH_SECONDS BENCH_WORKDIR="$W" \
    BENCH_NPROC="$(nproc)" \
    BENCH_RAM="$(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)" \
    BENCH_KERNEL="$(uname -r)" \
    BENCH_FSTYPE="$(df -T "$W" | awk 'NR==2{print $2" ("$1")"}')" \
    BENCH_CPU="$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)" \
    BENCH_GOCRYPTFS="$(gocryptfs --version | head -1)" \
    BENCH_PKFS="$("$PKFS" --version) (git $GIT_REV$GIT_DIRTY)" \
    BENCH_HOST="$HOST" BENCH_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')"
python3 "$BENCH_SRC/report.py"
cp "$RAW" "$RESULTS_DIR/latest-raw.tsv"
python3 "$BENCH_SRC/history.py" "$RESULTS_DIR/latest-raw.tsv" "$(date -u +%Y-%m-%dT%H:%MZ)" "$GIT_REV" "${BENCH_NOTE:-}"
log "results: $OUT, results/latest.svg, results/latest-raw.tsv; run appended to results/history.jsonl"
rm -rf "$W"
