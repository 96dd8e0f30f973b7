#!/usr/bin/env bash
# POSIX conformance: run the pjdfstest suite (crates.io) on a vault mounted with
# --allow-other (the suite switches users). Exits non-zero on any failure.
#
#   bash scripts/pjdfstest.sh [PKFS_BINARY]
#
# Needs root (the suite chowns and mknods). The pjdfstest binary is installed
# once with cargo and reused when present.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-deps.sh

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if [ "$(id -u)" -ne 0 ]; then
    echo "pjdfstest: must run as root (it switches users and creates device nodes)" >&2
    exit 1
fi
missing=()
[ -e /usr/include/sys/acl.h ] || missing+=(libacl1-dev)
command -v setfacl >/dev/null || missing+=(acl)
if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v pjdfstest >/dev/null; then
    echo "pjdfstest: installing it with cargo (about 4 minutes, once)" >&2
    cargo install --locked --quiet pjdfstest
fi
getent group tests >/dev/null || groupadd tests
id tests >/dev/null 2>&1 || useradd -g tests -M -s /usr/sbin/nologin tests
nogroup=nogroup
getent group nogroup >/dev/null || nogroup=nobody

bin=${1:-}
if [ -z "$bin" ]; then
    cargo build --quiet --bin pkfs
    bin=target/debug/pkfs
fi
bin=$(realpath "$bin")

work=$(mktemp -d /tmp/pkfs-pjd.XXXXXX)
mnt=$work/mnt
cleanup() {
    "$bin" --home "$work/home" umount "$mnt" >/dev/null 2>&1 || umount -l "$mnt" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$mnt"
chmod 755 "$work"
printf 'pjdfstest passphrase\n' >"$work/pass"
export PKFS_HOME=$work/home PKFS_PASSFILE=$work/pass
"$bin" -q init >/dev/null
"$bin" -q vault create pjd
# A long commit delay: the suite's 2 GiB sparse file (open/25.t) lives for a
# moment only, and hashing it into git would stall that run for minutes.
# Everything is still committed at unmount.
"$bin" mount --allow-other --commit-delay 10m "$mnt"
# The mount root starts private (the home's mode); the suite's other users
# need to reach the vault.
chmod 755 "$mnt"
chmod 777 "$mnt/pjd"

cat >"$work/pjdfstest.toml" <<TOML
[features]
posix_fallocate = {}
rename_ctime = {}
utime_now = {}
utimensat = {}

[settings]
naptime = 0.01
allow_remount = false

[dummy_auth]
entries = [["nobody", "$nogroup"], ["tests", "tests"]]
TOML

set +e
(cd "$mnt/pjd" && pjdfstest -c "$work/pjdfstest.toml" -p "$mnt/pjd") >"$work/out.txt" 2>&1
rc=$?
set -e
grep -E "FAILED|panicked" "$work/out.txt" | head -50 || true
cp "$work/out.txt" /tmp/pjd-last.txt 2>/dev/null || true
tail -n 3 "$work/out.txt"
# Nothing the suite did may break a commit.
"$bin" status | grep -q "last error" && { echo "pjdfstest: a commit failed" >&2; rc=1; }
exit $rc
