#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/) for SECONDS each (default 60), one
# after the other, starting from its seed corpus, and prints a table of
# executions per target. New corpus entries go to a scratch directory, so
# the committed corpus (fuzz/corpus/<target>) is left as it is; a crash
# stops the run and is kept under fuzz/artifacts/<target>/ (see
# docs/TESTING.md, "Fuzzing", for turning it into a regression test).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (scripts/deps.sh installs it). Builds optimised with
# debug assertions and overflow checks (`-O -a`) and without a sanitizer
# (`-s none`), so a stable toolchain works; FUZZ_SANITIZER=address uses ASan
# (nightly: FUZZ_TOOLCHAIN=+nightly). Runs under `nice`: the machine is shared.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(wire pipeline control config cni)
fi
SAN=${FUZZ_SANITIZER:-none}
TC=${FUZZ_TOOLCHAIN:-}

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz: cargo-fuzz is not installed (scripts/deps.sh installs it)" >&2
  exit 1
fi

cd fuzz
echo "== build the fuzz targets (sanitizer: $SAN)" >&2
# shellcheck disable=SC2086
nice -n 10 cargo $TC fuzz build -O -a -s "$SAN"

scratch=$(mktemp -d /tmp/vrouter-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
declare -A EXECS RATE NEW
status=0
for t in "${TARGETS[@]}"; do
  mkdir -p "$scratch/$t"
  log="$scratch/$t.log"
  echo "== fuzz $t for ${SECS}s" >&2
  rc=0
  # -timeout: a unit that runs 60 s is a hang. Coverage instrumentation makes
  # some legitimate units slow: a config with a default route builds a FIB
  # whose /0 writes all 16M tbl24 entries (1-11 s instrumented, on a loaded
  # machine).
  # shellcheck disable=SC2086
  nice -n 10 cargo $TC fuzz run -O -a -s "$SAN" "$t" "$scratch/$t" "corpus/$t" -- \
    -max_total_time="$SECS" -print_final_stats=1 -rss_limit_mb=4096 -timeout=60 \
    >"$log" 2>&1 || rc=$?
  EXECS[$t]=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  RATE[$t]=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  NEW[$t]=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -n 1)
  if [ $rc -ne 0 ]; then
    echo "fuzz: $t FAILED (exit $rc); the end of its log:" >&2
    tail -n 40 "$log" >&2
    ls -1 "artifacts/$t" 2>/dev/null | sed 's/^/  artifact: fuzz\/artifacts\/'"$t"'\//' >&2 || true
    status=1
    EXECS[$t]="${EXECS[$t]:-?} (crash)"
  fi
done

printf '\n%-10s %8s %14s %10s %10s\n' target seconds executions exec/s new-units
for t in "${TARGETS[@]}"; do
  printf '%-10s %8s %14s %10s %10s\n' "$t" "$SECS" "${EXECS[$t]:-?}" "${RATE[$t]:-?}" "${NEW[$t]:-?}"
done
exit $status
