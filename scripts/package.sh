#!/usr/bin/env bash
# Build the Debian package with cargo-deb and print the .deb's path.
#
#   bash scripts/package.sh           # builds target/debian/pkfs_VERSION-1_ARCH.deb
#   bash scripts/package.sh --check   # then installs it with dpkg -i, checks it, removes it
#
# What goes in the package is listed in Cargo.toml, [package.metadata.deb].
# cargo-deb is installed once with cargo and reused when present. --check needs
# root: it installs the package on this machine, and removes it afterwards
# unless pkfs was installed before. Progress goes to stderr, the path to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
case "${1:-}" in
    "") ;;
    --check) check=true ;;
    *) echo "usage: bash scripts/package.sh [--check]" >&2; exit 2 ;;
esac
# Fail before the long build rather than after it.
if $check && [ "$(id -u)" -ne 0 ]; then
    echo "package: --check needs root (it installs the .deb with dpkg -i)" >&2
    exit 1
fi

say() { echo "package: $*" >&2; }
fail() { echo "package: FAILED: $*" >&2; exit 1; }
took() { say "$1 took $((SECONDS - t0))s"; }

. scripts/ensure-deps.sh   # the build's own dependencies, and cargo
# cargo-deb runs dpkg-shlibdeps (dpkg-dev) for the $auto dependencies;
# `man -w` in the check needs man-db.
missing=()
command -v dpkg-shlibdeps >/dev/null || missing+=(dpkg-dev)
if $check; then command -v man >/dev/null || missing+=(man-db); fi
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v cargo-deb >/dev/null; then
    say "installing cargo-deb with cargo (about 3 minutes, once)"
    t0=$SECONDS
    cargo install --locked --quiet cargo-deb
    took "cargo install cargo-deb"
fi

# 1. The release binary, and the completions it prints. They go under
#    target/release/completions/, a path cargo-deb maps to the real target dir
#    (CARGO_TARGET_DIR and the like), as it does for the binary.
t0=$SECONDS
cargo build --release --locked --quiet --bin pkfs
took "cargo build --release"
target=$(cargo metadata --no-deps --format-version 1 |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -x "$target/release/pkfs" ] || fail "no release binary at $target/release/pkfs"
comp=$target/release/completions
mkdir -p "$comp"
"$target/release/pkfs" completions bash >"$comp/pkfs.bash"
"$target/release/pkfs" completions zsh >"$comp/_pkfs"
"$target/release/pkfs" completions fish >"$comp/pkfs.fish"

# 2. The .deb. cargo-deb gzips the man pages (man/*.1) itself, and prints the
#    package's path last.
t0=$SECONDS
deb=$(cargo deb --no-build --locked | tail -n 1)
took "cargo deb"
[ -f "$deb" ] || fail "cargo deb did not print the path of a .deb (got '$deb')"
echo "$deb"
$check || exit 0

# 3. --check: install it, and look at what a user would get.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
installed() { dpkg-query -W -f='${Status}' pkfs 2>/dev/null | grep -q 'ok installed'; }
was_installed=false
if installed; then
    was_installed=true
    say "pkfs $(dpkg-query -W -f='${Version}' pkfs) was installed before the check:" \
        "it is replaced by this build and left installed"
fi
cleanup() {
    if ! $was_installed; then
        dpkg -r pkfs >/dev/null || say "WARNING: dpkg -r pkfs failed: remove it by hand"
    fi
}
trap cleanup EXIT

dpkg-deb -f "$deb" Depends | grep -qw fuse3 || fail "the package does not depend on fuse3"
say "installing $deb"
if ! dpkg -i "$deb" >/dev/null; then
    say "dpkg -i left pkfs unconfigured: installing its dependencies with apt-get -f install"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -f install -y -qq >/dev/null
fi
installed || fail "pkfs is not installed after dpkg -i"

out=$(/usr/bin/pkfs --version) || fail "pkfs --version exited non-zero"
[ "$out" = "pkfs $version" ] || fail "pkfs --version printed '$out', expected 'pkfs $version'"
say "pkfs --version: $out"

page=$(env -u MANPATH man -w pkfs) || fail "man -w pkfs found no page" \
    "(does a path-exclude in /etc/dpkg/dpkg.cfg.d/ drop /usr/share/man?)"
[ "$page" = /usr/share/man/man1/pkfs.1.gz ] ||
    fail "man -w pkfs printed '$page', expected /usr/share/man/man1/pkfs.1.gz"
say "man -w pkfs: $page"
# Every committed man page, compressed.
for m in man/*.1; do
    [ -s "/usr/share/man/man1/$(basename "$m").gz" ] || fail "man page $(basename "$m").gz not installed"
done

for f in /usr/share/bash-completion/completions/pkfs \
    /usr/share/zsh/vendor-completions/_pkfs \
    /usr/share/fish/vendor_completions.d/pkfs.fish \
    /usr/lib/systemd/user/pkfs@.service \
    /usr/share/doc/pkfs/README.md /usr/share/doc/pkfs/FORMAT.md \
    /usr/share/doc/pkfs/ARCHITECTURE.md /usr/share/doc/pkfs/SECURITY.md \
    /usr/share/doc/pkfs/copyright; do
    [ -s "$f" ] || fail "$f is missing or empty"
done
[ -s /usr/share/man/man5/pkfs.5.gz ] || fail "man page pkfs.5.gz not installed"
[ "$(env -u MANPATH man -w 5 pkfs)" = /usr/share/man/man5/pkfs.5.gz ] ||
    fail "man -w 5 pkfs does not find the format page"

# The fstab form of the README, through fuse3's mount.fuse3 and the installed
# binary: `mount -t fuse.pkfs HOME DIR -o passfile=...,allow_other`.
scratch=$(mktemp -d)
(
    set -e
    printf 'package check passphrase\n' >"$scratch/pass"
    mkdir "$scratch/mnt"
    PKFS_TEST_ONLY_FAST_KDF=1 /usr/bin/pkfs -q --home "$scratch/home" --passfile "$scratch/pass" init >/dev/null
    /usr/bin/pkfs -q --home "$scratch/home" --passfile "$scratch/pass" vault create v
    mount -t fuse.pkfs "$scratch/home" "$scratch/mnt" \
        -o "passfile=$scratch/pass,allow_other,noatime"
    grep -q " $scratch/mnt fuse" /proc/mounts
    echo fstab >"$scratch/mnt/v/f"
    /usr/bin/pkfs --home "$scratch/home" umount "$scratch/mnt" >/dev/null
    [ "$(/usr/bin/pkfs --home "$scratch/home" --passfile "$scratch/pass" secret cat v:f)" = fstab ]
    # An fstab line as the README shows it (util-linux mount -T reads another fstab).
    printf '%s %s fuse.pkfs noauto,passfile=%s 0 0\n' \
        "$scratch/home" "$scratch/mnt" "$scratch/pass" >"$scratch/fstab"
    mount -T "$scratch/fstab" "$scratch/mnt"
    grep -q " $scratch/mnt fuse" /proc/mounts
    [ "$(cat "$scratch/mnt/v/f")" = fstab ]
    umount "$scratch/mnt"
) || { umount -l "$scratch/mnt" 2>/dev/null; rm -rf "$scratch"; fail "mount -t fuse.pkfs (the fstab form) failed"; }
rm -rf "$scratch"
say "mount -t fuse.pkfs and an fstab line: mounted, written, committed, unmounted"

# The bash completion loads and registers itself.
bash -c '. /usr/share/bash-completion/completions/pkfs && complete -p pkfs' >/dev/null ||
    fail "the bash completion does not register a completion for pkfs"

trap - EXIT
cleanup
if $was_installed; then say "check passed (pkfs left installed)"; else say "check passed (pkfs removed again)"; fi
