#!/bin/bash
# Runs the csipfs benchmark, tests/bench/bench.py, with the options given
# (--smoke for the short mode, --help for the list).
#
# First it installs the Debian packages of tests/packages.txt that are
# missing. It builds an optimised csipfs in build-bench/ unless CSIPFS_BIN
# names a binary, and removes what an earlier run that crashed left
# behind. Everything the benchmark starts is stopped on exit and on Ctrl-C.
# Exits with the status of bench.py.

set -u
CSIPFS_SCRIPT=$(readlink -f "$0")
for arg in "$@"; do
	case "$arg" in
	-h | --help)
		exec /usr/bin/python3 "$(dirname "$CSIPFS_SCRIPT")/bench.py" --help
		;;
	esac
done
. "$(dirname "$CSIPFS_SCRIPT")/../lib.sh"
# sudo resets the environment, so CSIPFS_BIN is passed on explicitly.
if [ "$(id -u)" -ne 0 ] && [ -n "${CSIPFS_BIN:-}" ] &&
	command -v sudo >/dev/null 2>&1; then
	exec sudo -- env CSIPFS_BIN="$(readlink -f "$CSIPFS_BIN")" \
		"$CSIPFS_SCRIPT" "$@"
fi
csipfs_require_root "$@"
cd "$CSIPFS_ROOT" || exit 1

BENCH_WORK_DIR=/var/tmp/csipfs-bench
NETNS_PREFIX=csipbench-
netns=$NETNS_PREFIX$$
run_dir=$BENCH_WORK_DIR/run-$$
bench_pid=
keep_run_dir=0
for arg in "$@"; do
	[ "$arg" = --keep-run-dir ] && keep_run_dir=1
done

# Unmounts every mount below directory $1, innermost first, lazily when
# it is busy.
unmount_below() {
	local dir=$1 mountpoint
	while read -r _ mountpoint _; do
		case "$mountpoint" in
		"$dir"/*)
			umount "$mountpoint" 2>/dev/null ||
				umount -l "$mountpoint" 2>/dev/null ||
				echo "warning: $mountpoint stays mounted" >&2
			;;
		esac
	done < <(tac /proc/self/mounts)
}

# Kills the processes inside network namespace $1, which only a benchmark
# run starts there (the emulator and the delay line), and deletes the
# namespace. The delay line's tun devices go with its process.
delete_netns() {
	local name=$1 pid
	for pid in $(ip netns pids "$name" 2>/dev/null); do
		kill -KILL "$pid" 2>/dev/null
	done
	ip netns delete "$name" 2>/dev/null ||
		echo "warning: ip netns delete $name failed" >&2
}

# Removes the network namespaces, mounts and scratch directories of earlier
# runs whose run.sh process is gone; the process id is part of their names.
remove_stale() {
	local name pid dir
	for name in $(ip netns list | awk '{print $1}'); do
		case "$name" in "$NETNS_PREFIX"*) ;; *) continue ;; esac
		pid=${name#"$NETNS_PREFIX"}
		if [ "$pid" != "$$" ] && kill -0 "$pid" 2>/dev/null; then
			continue
		fi
		echo "removing the network namespace $name of an earlier run"
		delete_netns "$name"
	done
	for dir in "$BENCH_WORK_DIR"/run-*; do
		[ -d "$dir" ] || continue
		pid=${dir##*/run-}
		if [ "$pid" != "$$" ] && kill -0 "$pid" 2>/dev/null; then
			continue
		fi
		echo "removing the scratch directory $dir of an earlier run"
		unmount_below "$dir"
		rm -rf "$dir"
	done
}

cleanup() {
	local status=$?
	trap '' INT TERM
	if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
		kill -TERM "$bench_pid" 2>/dev/null
		wait "$bench_pid" 2>/dev/null
	fi
	unmount_below "$run_dir"
	if ip netns list | awk '{print $1}' | grep -qxF "$netns"; then
		delete_netns "$netns"
	fi
	if [ "$keep_run_dir" -eq 0 ]; then
		rm -rf "$run_dir"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! csipfs_install_packages; then
	echo "error: installing the benchmark's packages failed; the apt-get" \
		"output above names the cause" >&2
	exit 1
fi
csipfs_check_fuse || exit 1
remove_stale

# bench.py records the command from these two.
export CSIPFS_BENCH_ARGC=$#
export CSIPFS_BENCH_BIN=${CSIPFS_BIN:-}
if [ -z "${CSIPFS_BIN:-}" ]; then
	build_dir=$CSIPFS_ROOT/build-bench
	reconfigure=()
	if [ -f "$build_dir/build.ninja" ]; then
		reconfigure=(--reconfigure)
	fi
	# Only the daemon is built: the benchmark runs no unit tests.
	if ! meson setup "${reconfigure[@]}" "$build_dir" "$CSIPFS_ROOT" \
		--buildtype=release -Dwerror=true >/dev/null ||
		! meson compile -C "$build_dir" csipfs >/dev/null; then
		echo "error: building $build_dir failed; run meson compile -C" \
			"$build_dir csipfs to see the compiler's output" >&2
		exit 1
	fi
	CSIPFS_BIN=$build_dir/fs/csipfs
	echo "built $CSIPFS_BIN"
fi

/usr/bin/python3 "$CSIPFS_ROOT/tests/bench/bench.py" --csipfs "$CSIPFS_BIN" \
	--work-dir "$BENCH_WORK_DIR" --run-dir "$run_dir" --netns "$netns" "$@" &
bench_pid=$!
wait "$bench_pid"
status=$?
bench_pid=
exit "$status"
