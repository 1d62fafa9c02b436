#!/bin/bash
# Runs every test of csipfs: installs the Debian packages that are missing,
# builds build/, runs the unit tests and the integration tests against it,
# then does the same with build-asan/, which has AddressSanitizer and
# UndefinedBehaviorSanitizer. Exits non-zero if any step fails.

set -u
CSIPFS_SCRIPT=$(readlink -f "$0")
. "$(dirname "$CSIPFS_SCRIPT")/lib.sh"
csipfs_require_root "$@"
cd "$CSIPFS_ROOT" || exit 1

summary=()
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

# Builds $1 with the extra meson options that follow, then runs its unit and
# integration tests. The remaining steps of a build are skipped when it
# fails to build.
test_build() {
	local dir=$1
	shift
	if step "build $dir" csipfs_build "$dir" "$@"; then
		step "unit tests ($dir)" meson test -C "$dir" --print-errorlogs
		step "integration tests ($dir)" env CSIPFS_BIN="$dir/fs/csipfs" \
			/usr/bin/python3 -m pytest -q tests/integration
	else
		skip "unit tests ($dir)" "build $dir"
		skip "integration tests ($dir)" "build $dir"
	fi
}

if ! step "install packages" csipfs_install_packages; then
	echo "error: installing tests/packages.txt failed; the apt-get" \
		"output above names the cause" >&2
	exit 1
fi
step "check /dev/fuse" csipfs_check_fuse || exit 1

test_build build
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
test_build build-asan -Db_sanitize=address,undefined -Db_lundef=false

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
