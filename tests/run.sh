#!/bin/bash
# Runs every test of csipfs: installs the Debian packages that are missing,
# builds build/, runs the unit tests and the integration tests against it,
# then does the same with build-asan/, which has AddressSanitizer and
# UndefinedBehaviorSanitizer. Last it builds build-fuzz/ with clang and runs
# the libFuzzer harnesses of tests/fuzz. Exits non-zero if any step fails.

set -u
CSIPFS_SCRIPT=$(readlink -f "$0")
. "$(dirname "$CSIPFS_SCRIPT")/lib.sh"
csipfs_require_root "$@"
cd "$CSIPFS_ROOT" || exit 1

summary=()
failures=()
failed=0

# Runs one named step, records PASS or FAIL and its duration in the summary.
step() {
	local name=$1 start status
	shift
	echo
	echo "=== $name"
	start=$(date +%s)
	"$@"
	status=$?
	if [ "$status" -eq 0 ]; then
		summary+=("PASS  $name ($(($(date +%s) - start)) s)")
	else
		summary+=("FAIL  $name (status $status)")
		failed=1
	fi
	return "$status"
}

skip() {
	summary+=("SKIP  $1 (because $2 failed)")
	failed=1
}

# Runs pytest on the tests that follow build directory $1, against that
# build's csipfs. The output also goes to $1/pytest.log, and the names of
# failed tests are listed after the summary, which is all that a truncated
# CI log may show.
run_pytest() {
	local dir=$1 status
	shift
	env CSIPFS_BIN="$CSIPFS_ROOT/$dir/fs/csipfs" /usr/bin/python3 -m pytest \
		-q -rfE "$@" 2>&1 | tee "$dir/pytest.log"
	status=${PIPESTATUS[0]}
	while read -r line; do
		failures+=("$dir: $line")
	done < <(grep -E '^(FAILED|ERROR) ' "$dir/pytest.log" | cut -c1-160)
	return "$status"
}

# Builds $1 with the extra meson options that follow, then runs its unit and
# integration tests. The remaining steps of a build are skipped when it
# fails to build.
test_build() {
	local dir=$1
	shift
	if step "build $dir" csipfs_build "$dir" "$@"; then
		step "unit tests ($dir)" meson test -C "$dir" --print-errorlogs
		step "integration tests ($dir)" run_pytest "$dir" \
			tests/integration
	else
		skip "unit tests ($dir)" "build $dir"
		skip "integration tests ($dir)" "build $dir"
	fi
}

# Seconds each libFuzzer harness fuzzes in the fuzzing step.
CSIPFS_FUZZ_SECONDS=${CSIPFS_FUZZ_SECONDS:-10}

# Runs every harness of build directory $1 for CSIPFS_FUZZ_SECONDS seconds,
# starting from its corpus in tests/fuzz/corpus. New inputs go to
# $1/fuzz-corpus and crashing inputs to $1/fuzz-artifacts, never into the
# source tree. Fails if a harness finds a crash or none was built.
run_fuzzers() {
	local dir=$CSIPFS_ROOT/$1 harness name count=0 status=0
	for harness in "$dir"/tests/fuzz/fuzz_*; do
		if [ ! -f "$harness" ] || [ ! -x "$harness" ]; then
			continue
		fi
		name=$(basename "$harness")
		count=$((count + 1))
		mkdir -p "$dir/fuzz-corpus/$name" "$dir/fuzz-artifacts"
		echo "--- $name"
		"$harness" -max_total_time="$CSIPFS_FUZZ_SECONDS" -timeout=10 \
			-rss_limit_mb=2048 -print_final_stats=1 \
			-artifact_prefix="$dir/fuzz-artifacts/$name-" \
			"$dir/fuzz-corpus/$name" \
			"$CSIPFS_ROOT/tests/fuzz/corpus/$name" || status=1
	done
	if [ "$count" -eq 0 ]; then
		echo "error: $dir has no fuzz harness: it must be built by" \
			"clang with libFuzzer (libclang-rt-14-dev)" >&2
		return 1
	fi
	return "$status"
}

# Builds build-fuzz with clang, replays every file of tests/fuzz/corpus
# (crashes found earlier are kept there as regression inputs), then fuzzes.
fuzz_build() {
	if ! CC=clang step "build build-fuzz" csipfs_build build-fuzz; then
		skip "fuzz corpus (build-fuzz)" "build build-fuzz"
		skip "fuzzing (build-fuzz)" "build build-fuzz"
		return
	fi
	step "fuzz corpus (build-fuzz)" meson test -C build-fuzz --suite fuzz \
		--print-errorlogs
	step "fuzzing (build-fuzz)" run_fuzzers build-fuzz
}

# Builds build-tsan with ThreadSanitizer and runs the unit tests and the
# local fault tests, whose readers open, read and close reports from 32
# threads at once. A data race or a lock-order inversion ends the daemon
# and fails the test.
tsan_build() {
	if ! step "build build-tsan" csipfs_build build-tsan \
		-Db_sanitize=thread -Db_lundef=false; then
		skip "unit tests (build-tsan)" "build build-tsan"
		skip "fault tests (build-tsan)" "build build-tsan"
		return
	fi
	local options=halt_on_error=1:second_deadlock_stack=1
	step "unit tests (build-tsan)" env TSAN_OPTIONS="$options" \
		meson test -C build-tsan --print-errorlogs
	TSAN_OPTIONS="$options" step "fault tests (build-tsan)" \
		run_pytest build-tsan tests/integration/test_faults_local.py
}

if ! step "install packages" csipfs_install_packages; then
	echo "error: installing tests/packages.txt failed; the apt-get" \
		"output above names the cause" >&2
	exit 1
fi
step "check /dev/fuse" csipfs_check_fuse || exit 1

test_build build
# The benchmark's short mode, so that its harness cannot rot: every
# workload and contender once on loopback, and cat over the 20 ms link of
# the wan condition.
if [ -x build/fs/csipfs ]; then
	step "benchmark smoke run" env CSIPFS_BIN="$CSIPFS_ROOT/build/fs/csipfs" \
		tests/bench/run.sh --smoke
else
	skip "benchmark smoke run" "build build"
fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=suppressions=$CSIPFS_ROOT/tests/lsan.supp
test_build build-asan -Db_sanitize=address,undefined -Db_lundef=false
tsan_build
fuzz_build

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
if [ "${#failures[@]}" -gt 0 ]; then
	echo
	echo "=== failed tests"
	printf '%s\n' "${failures[@]}"
fi
exit "$failed"
