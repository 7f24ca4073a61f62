#!/usr/bin/env bash
# Every fuzz target for a short fixed time from its committed corpus, as CI
# runs them (tests/run-all.sh). Fails when a target crashes, panics, times
# out or runs out of memory; the input that did it is kept in
# fuzz/artifacts/<target>/ (not committed) and the command to replay it is
# printed. New inputs found on the way go to a temporary directory, never
# into fuzz/corpus/.
#
#   fuzz/run-all.sh                 every target, FUZZ_SECONDS (20) each
#   fuzz/run-all.sh dwg_frame pdu_decode
#   FUZZ_SECONDS=300 fuzz/run-all.sh config
#
# Needs the nightly toolchain and cargo-fuzz (tests/run-all.sh installs
# cargo-fuzz when it is missing). See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=0

seconds="${FUZZ_SECONDS:-20}"
# No sanitizer: both crates forbid unsafe code, so AddressSanitizer would
# only slow the build and the runs; panics, overflow checks and debug
# assertions are what the targets check.
build=(cargo +nightly fuzz build --sanitizer none)
run=(cargo +nightly fuzz run --sanitizer none)

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

# The daemon's dependencies at the versions its own build is tested with:
# the fuzz workspace's lock file (not committed) starts as a copy of the
# main one, and cargo adds libFuzzer's crates to it.
[ -f fuzz/Cargo.lock ] || cp Cargo.lock fuzz/Cargo.lock
"${build[@]}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

failed=()
for t in "${targets[@]}"; do
  corpus="fuzz/corpus/$t"
  if [ ! -d "$corpus" ]; then
    echo "fuzz: $t has no committed corpus ($corpus)" >&2
    failed+=("$t")
    continue
  fi
  mkdir -p "$scratch/$t"
  echo "fuzz: $t for ${seconds}s"
  # The first corpus directory is where libFuzzer writes what it finds.
  if ! "${run[@]}" "$t" "$scratch/$t" "$corpus" -- \
      -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 \
      -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
    tail -n 60 "$scratch/$t.log" >&2
    echo "fuzz: $t FAILED; the input is in fuzz/artifacts/$t/; replay it with" >&2
    echo "  cargo +nightly fuzz run --sanitizer none $t fuzz/artifacts/$t/<file>" >&2
    failed+=("$t")
  else
    grep -E '^(stat::number_of_executed_units|stat::new_units_added)' "$scratch/$t.log" |
      sed "s/^/fuzz: $t /" || true
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${seconds}s each without a crash"
