#!/usr/bin/env bash
# Runs one cargo-fuzz (libFuzzer) target for a while:
#
#   scripts/fuzz.sh TARGET [MINUTES]     (default 1 minute; fractions allowed: 0.25 = 15 s)
#   scripts/fuzz.sh --list
#
# The corpus grows in fuzz/corpus/TARGET (git-ignored); a crash is written to
# fuzz/artifacts/TARGET/ and fails the run — turn it into a regression test. Installs nightly
# and cargo-fuzz when missing (scripts/install-cargo-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-cargo-fuzz >/dev/null
if [ "${1:-}" = "--list" ]; then
    cargo +nightly fuzz list
    exit 0
fi
target=${1:?usage: scripts/fuzz.sh TARGET [MINUTES] (scripts/fuzz.sh --list)}
minutes=${2:-1}
seconds=$(awk -v m="$minutes" 'BEGIN { s = int(m * 60); print (s < 1 ? 1 : s) }')
mkdir -p "fuzz/corpus/$target"
# Seeds checked in next to the target, if any, start the corpus.
[ -d "fuzz/seeds/$target" ] && cp -n "fuzz/seeds/$target"/* "fuzz/corpus/$target"/ 2>/dev/null || true
echo "fuzzing $target for ${seconds}s"
cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10 -print_final_stats=1
