#!/usr/bin/env bash
# AddressSanitizer (with LeakSanitizer) over the code that handles raw memory and file
# descriptors: the library's `buffer::` and `sys::` unit tests, tests/buffer_*.rs and
# tests/poller*.rs, built with `-Zsanitizer=address -Zbuild-std` on nightly in target/asan. Fails
# on any report: out-of-bounds, use-after-free, double free, or a leak at exit. Nothing in that
# set is excluded. Coroutines are not in it (none of these tests runs one), but corosensei's
# `sanitizer` feature is on anyway: it tells ASan of each stack switch (the fiber API), so a
# coroutine that ever runs here is not taken for a stack overflow. The rest of the suite runs
# natively in `cargo test`, and the same buffer tests under miri (`.ci/run`).
#
#   scripts/asan.sh [extra `cargo test` arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
trap 'echo "asan.sh: $(($(date +%s) - start)) s (load average now: $(cut -d" " -f1-3 /proc/loadavg))"' EXIT

scripts/install-nightly-rust-src

# std is rebuilt with the sanitizer (-Zbuild-std) so its allocations and accesses are checked
# too; an explicit --target keeps the flags off build scripts and proc macros.
target=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR=target/asan
export RUSTFLAGS="-Zsanitizer=address"
export RUSTDOCFLAGS="-Zsanitizer=address"
# The tests that panic on purpose would print a backtrace, which symbolizing under ASan makes
# slow enough to trip their time limits on a busy machine.
export RUST_BACKTRACE=0
export ASAN_OPTIONS="detect_leaks=1 halt_on_error=1 abort_on_error=0 detect_stack_use_after_return=1 ${ASAN_OPTIONS:-}"
# A hung test binary must not hang CI: each one gets 10 minutes.
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="timeout -k 10 600"
args=(+nightly test -Zbuild-std --target "$target" --all-features --features corosensei/sanitizer
    --no-fail-fast)

tests=()
for f in tests/buffer_*.rs tests/poller*.rs; do
    tests+=(--test "$(basename "$f" .rs)")
done

status=0
cargo "${args[@]}" --lib "$@" -- buffer:: sys:: || status=$?
cargo "${args[@]}" "${tests[@]}" "$@" || status=$?
exit "$status"
