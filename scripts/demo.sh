#!/usr/bin/env bash
# The main job for now: build pkfs, then init a throwaway node and write, read
# and version a secret in it. Nothing outside a temporary directory is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
cargo build --release --locked
pkfs=$PWD/target/release/pkfs

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
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
step "grep -r 'hunter2\\|password' \$PKFS_HOME   # nothing in plaintext on disk"
if grep -rqa -e hunter2 -e password "$PKFS_HOME"; then echo "plaintext found!"; exit 1; else echo "(no match)"; fi
echo
echo "demo finished; the throwaway node is removed."
