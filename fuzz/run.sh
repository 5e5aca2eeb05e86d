#!/bin/sh
# Runs the fuzz targets, each for SECONDS (default 20), and prints the executions each
# survived. A crash stops the run; libFuzzer keeps the input under fuzz/artifacts/TARGET/.
#
#   fuzz/run.sh                 every target, 20 s each (what CI runs)
#   fuzz/run.sh 3600 png note   an hour each on two targets
#
# New inputs that reach new code go to fuzz/corpus/TARGET (not committed); fuzz/seeds/TARGET
# holds the committed seeds, fuzz/regressions/TARGET every crash found, both replayed by
# `cargo test` (src/fuzzing.rs).
set -eu
cd "$(dirname "$0")"
seconds=${1:-20}
[ $# -gt 0 ] && shift
targets=${*:-$(cargo +nightly fuzz list)}
cargo +nightly fuzz build
for target in $targets; do
	mkdir -p "corpus/$target"
	log=$(mktemp)
	if ! cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
		-max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
		>"$log" 2>&1; then
		tail -n 60 "$log"
		echo "fuzz target $target failed: the input is under fuzz/artifacts/$target/" >&2
		rm -f "$log"
		exit 1
	fi
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	printf '%-12s %12s executions in %s s\n' "$target" "${runs:-?}" "$seconds"
	rm -f "$log"
done
