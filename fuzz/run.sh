#!/usr/bin/env bash
# Fuzzes raftwal for a bounded time: every target of fuzz/Cargo.toml runs
# for the given number of seconds (default 60), starting from the committed
# seeds in fuzz/seeds/<target> and the corpus kept in fuzz/corpus/<target>.
# Installs cargo-fuzz if it is missing; runs on the stable toolchain.
#
#   fuzz/run.sh [seconds]
#
# Prints `fuzz: <target>: Done N runs in S second(s)` per target and exits
# non-zero if a target found a crash (the input is in fuzz/artifacts/).
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
# cargo-fuzz passes nightly-only flags (the sanitizer); let stable take them.
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
cargo fuzz build

status=0
for target in $(cargo fuzz list); do
  mkdir -p "corpus/$target"
  dirs=("corpus/$target")
  if [ -d "seeds/$target" ]; then
    dirs+=("seeds/$target")
  fi
  log="$(mktemp)"
  # -malloc_limit_mb: no allocation may be sized by a length read from the
  # files (entries are limited to 64 KiB, inputs to 64 KiB).
  if ! cargo fuzz run "$target" "${dirs[@]}" -- \
      -max_total_time="$secs" -max_len=65536 -malloc_limit_mb=64 \
      -rss_limit_mb=2048 -timeout=60 -print_final_stats=1 >"$log" 2>&1; then
    status=1
    grep -E -A4 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written|Reproduce with' "$log" | cut -c1-400 | head -n 60
    echo "fuzz: $target: FAILED (the input is in fuzz/artifacts/$target)"
  fi
  runs="$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" | tail -n 1 || true)"
  echo "fuzz: $target: ${runs:-no final statistics}"
  rm -f "$log"
done
exit "$status"
