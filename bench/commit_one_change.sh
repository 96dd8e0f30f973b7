#!/usr/bin/env bash
# The cost of committing one change in a vault of N files (default 10,000):
# `pkfs secret write` of one file, run without a daemon (open, journal,
# write, commit), timed R times; the median is printed. A commit whose cost
# follows the vault's size instead of the change shows up here.
#
#   PKFS=target/release/pkfs N=10000 R=7 bench/commit_one_change.sh
#
# Uses PKFS_TEST_ONLY_FAST_KDF=1 only to save the unlock time of each
# command (the same for every run).
set -euo pipefail
PKFS=${PKFS:-target/release/pkfs}
N=${N:-10000}
R=${R:-7}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
H=$T/home
PF=$T/pass
echo "bench passphrase" >"$PF"
export PKFS_TEST_ONLY_FAST_KDF=1
p() { "$PKFS" --home "$H" --passfile "$PF" -q "$@"; }

p init >/dev/null
p vault create v >/dev/null
# N small files in 100 directories, imported in one command (one commit).
per=$((N / 100))
for d in $(seq 0 99); do
    mkdir -p "$T/src/d$d"
    for f in $(seq 0 $((per - 1))); do
        echo "file $d/$f" >"$T/src/d$d/f$f"
    done
done
p secret import "$T/src" v:tree >/dev/null
echo "vault: $(find "$H" -path '*/contents/*' -type f | wc -l) backing files"

times=()
for i in $(seq 1 "$R"); do
    echo "change $i" >"$T/one"
    s=$(date +%s%N)
    p secret write v:tree/d7/f3 <"$T/one" >/dev/null
    e=$(date +%s%N)
    times+=($(((e - s) / 1000000)))
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((R + 1) / 2))p")
echo "secret write of one file (commit included), N=$N: median ${median} ms; runs (ms): $sorted"
