#!/usr/bin/env bash
# The independent reader's check: recompute every test vector of
# docs/FORMAT.md with the reader's own primitives (check_vectors.py), then
# build a test vault with target/debug/pkfs (through a real mount and the
# CLI), decrypt it and its whole history with tests/reader/pkfs_reader.py, and
# compare every byte with what pkfs shows (check_vault.py).
# Needs FUSE (as the mount tests do), git, python3 and the `cryptography`
# package with Argon2id (44 or newer); a pinned version is installed with pip
# when the one found is missing or older.
set -euo pipefail
cd "$(dirname "$0")/../.."
PKFS=${1:-target/debug/pkfs}
[ -x "$PKFS" ] || cargo build --locked --bin pkfs
if ! python3 -c 'from cryptography.hazmat.primitives.kdf.argon2 import Argon2id' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check 'cryptography==44.0.3' \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'cryptography==44.0.3'
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/pkfs-reader.XXXXXX")
trap 'umount -l "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 tests/reader/check_vectors.py docs/FORMAT.md
python3 tests/reader/check_vault.py "$PKFS" "$work"
