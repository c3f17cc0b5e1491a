#!/usr/bin/env bash
# ThreadSanitizer over the concurrency tests: the library's unit tests and tests/{poller*,
# poll_manager,connection_*,net_*,goroutines*,tasks*,faults_close_races}.rs (the poller and its
# queues, the reactor's connections, the Go-net face on threads, async tasks and coroutines),
# built with `-Zsanitizer=thread -Zbuild-std` on nightly in target/tsan. Fails on any report (a
# data race, a lock-order inversion, a crash). No suppressions. Coroutines: corosensei switches
# stacks with inline assembly and has no TSan support (its `sanitizer` feature is ASan's fiber
# API, which the TSan runtime lacks: it would not link), so TSan keeps one shadow call stack per
# thread across every switch. Race detection stays sound, because a coroutine never leaves the
# poller thread that created it, so TSan's per-thread happens-before is the real order; but the
# stacks printed in a report may include frames of other coroutines, and the one shadow stack
# grows: by 1 entry for each finished coroutine (corosensei's entry frame never returns) and by
# the depth of each suspended one (28 for a coroutine in `sleep`; both measured on the shadow
# stack pointer). It holds 64 Ki entries per thread and is not bounds-checked, so past that
# TSan corrupts its own memory. EXCLUDED for that reason: tests/goroutines_10k.rs (5,000
# coroutines suspended at once per poller: SIGSEGV in the runtime, then a hang) and
# tests/goroutines_stacks.rs (100,000 coroutines on one poller: SIGSEGV in TSan's
# TraceSwitchPartImpl, then a hang; its /proc/self/maps count would also see TSan's own
# mappings). The included tests, by their counts, stay far below (a few thousand at most).
# Tests run one at a time (--test-threads=1): the sanitizer slows code 5-15x and several tests
# have deadlines (20 ms per read, 10 s for 8 MiB) that parallel tests on 2 busy cores missed.
#
#   scripts/tsan.sh [extra `cargo test` arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
trap 'echo "tsan.sh: $(($(date +%s) - start)) s (load average now: $(cut -d" " -f1-3 /proc/loadavg))"' EXIT

scripts/install-nightly-rust-src

# std is rebuilt with the sanitizer (-Zbuild-std): TSan must see std's atomics and locks, or
# everything synchronised through them is a false race. An explicit --target keeps the flags
# off build scripts and proc macros.
target=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR=target/tsan
export RUSTFLAGS="-Zsanitizer=thread"
export RUSTDOCFLAGS="-Zsanitizer=thread"
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
# A backtrace printed by a test's expected panic inside a coroutine (64 KiB stack) overflows
# that stack under TSan's larger frames; the sanitizer prints its own stacks.
export RUST_BACKTRACE=0
# A test binary that crashes inside the TSan runtime may hang instead of exiting: 10 minutes each.
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="timeout -k 10 600"

excluded=" goroutines_10k goroutines_stacks " # see the top of this file
tests=()
for f in tests/poller*.rs tests/poll_manager.rs tests/connection_*.rs tests/net_*.rs \
    tests/goroutines*.rs tests/tasks*.rs tests/faults_close_races.rs; do
    name=$(basename "$f" .rs)
    case "$excluded" in *" $name "*) echo "excluded: tests/$name.rs"; continue ;; esac
    tests+=(--test "$name")
done

cargo +nightly test -Zbuild-std --target "$target" --all-features --no-fail-fast \
    --lib "${tests[@]}" "$@" -- --test-threads=1
