#!/usr/bin/env bash
# The whole test suite: unit, integration (real FUSE mounts), format vectors,
# property tests and crash loops, then, as root (as CI runs): POSIX conformance
# with pjdfstest, 100,000 fsx operations on a mounted vault, and the Debian
# package built, installed with dpkg, checked and removed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
if cargo fmt --version >/dev/null 2>&1; then cargo fmt --check; fi
cargo build --locked --all-targets
cargo test --locked
bash tests/reader/run.sh target/debug/pkfs
if [ "$(id -u)" -eq 0 ]; then
    bash scripts/pjdfstest.sh target/debug/pkfs
    bash scripts/fsx.sh target/debug/pkfs
    bash scripts/package.sh --check
else
    echo "test.sh: pjdfstest and the package check skipped (they need root)" >&2
fi
