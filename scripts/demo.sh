#!/usr/bin/env bash
# The main job: build pkfs, init a throwaway node, write, read and version a
# secret, then mount the vaults and use them with ordinary shell tools.
# Nothing outside a temporary directory is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
cargo build --release --locked
pkfs=$PWD/target/release/pkfs

work=$(mktemp -d)
mnt=$work/mnt
cleanup() {
    "$pkfs" umount "$mnt" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
export PKFS_HOME=$work/home
# A random passphrase in a 0600 file: never on the command line.
(umask 077; head -c 24 /dev/urandom | base64 > "$work/pass")
export PKFS_PASSFILE=$work/pass

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { step "pkfs $*"; "$pkfs" "$@"; }

run init
run vault create demo
step "echo 'hunter2' | pkfs secret write demo:db/password"
echo 'hunter2' | "$pkfs" secret write demo:db/password
step "echo 'correct horse' | pkfs secret write demo:db/password"
echo 'correct horse' | "$pkfs" secret write demo:db/password
run secret ls demo:db
run secret cat demo:db/password
run version log demo
run version checkout demo HEAD~1
run secret cat demo:db/password
run version checkout demo latest
run secret cat demo:db/password
run vault stat demo

mkdir -p "$mnt"
run mount "$mnt" --commit-delay 500ms
step "ls \$mnt; cat \$mnt/demo/db/password"
ls "$mnt"; cat "$mnt/demo/db/password"
step "cp -r scripts \$mnt/demo/ && echo 'from the shell' > \$mnt/demo/notes.txt && mv \$mnt/demo/notes.txt \$mnt/demo/db/"
cp -r scripts "$mnt/demo/" && echo 'from the shell' > "$mnt/demo/notes.txt" && mv "$mnt/demo/notes.txt" "$mnt/demo/db/"
sleep 1
run status
run version log demo -n 1
run umount "$mnt"
run secret cat demo:db/notes.txt
step "grep -r 'hunter2\\|password\\|notes\\|from the shell' \$PKFS_HOME   # nothing in plaintext on disk"
if grep -rqa -e hunter2 -e password -e notes -e 'from the shell' "$PKFS_HOME"; then echo "plaintext found!"; exit 1; else echo "(no match)"; fi
echo
echo "demo finished; the throwaway node is removed."
