#!/usr/bin/env bash
# The whole test suite: unit, integration (real FUSE mounts), format vectors,
# then POSIX conformance with pjdfstest (needs root, as CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
if cargo fmt --version >/dev/null 2>&1; then cargo fmt --check; fi
cargo build --locked --all-targets
cargo test --locked
if [ "$(id -u)" -eq 0 ]; then
    bash scripts/pjdfstest.sh target/debug/pkfs
else
    echo "test.sh: pjdfstest skipped (it needs root: run scripts/pjdfstest.sh as root)" >&2
fi
