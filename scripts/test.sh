#!/usr/bin/env bash
# The whole test suite: unit, integration and format-vector tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
if cargo fmt --version >/dev/null 2>&1; then cargo fmt --check; fi
cargo build --locked --all-targets
cargo test --locked
