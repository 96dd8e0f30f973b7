#!/usr/bin/env bash
# Install what building and testing pkfs needs on Debian, if it is missing.
# Runs apt-get as root (directly, or through sudo when not root).
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "ensure-deps: need root to install: $*" >&2; return 1; fi
}

need=()
command -v cc >/dev/null || need+=(build-essential)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v git >/dev/null || need+=(git)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl ca-certificates)
# The mount and its tests: FUSE, and the real tools the tests drive.
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v sqlite3 >/dev/null || need+=(sqlite3)
command -v rsync >/dev/null || need+=(rsync)
command -v vim >/dev/null || need+=(vim)
command -v setfattr >/dev/null || need+=(attr)
# The independent reader (tests/reader/run.sh): Python and pip.
command -v python3 >/dev/null || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
    echo "ensure-deps: installing ${need[*]}" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null; then
    # Debian's packaged Rust is too old for pkfs's dependencies; use rustup.
    echo "ensure-deps: installing the Rust toolchain with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >&2
    export PATH="$HOME/.cargo/bin:$PATH"
fi
