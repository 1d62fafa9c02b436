#!/bin/bash
# Demonstrates csipfs: installs the Debian packages that are missing, builds
# build/, starts the local CSIP emulator with its fixture of scan reports,
# mounts it with the group administrator's credential and runs ls, cp, grep
# and rsync on the mount. Everything it starts and creates is removed on
# exit.

set -eu
CSIPFS_SCRIPT=$(readlink -f "$0")
. "$(dirname "$CSIPFS_SCRIPT")/lib.sh"
csipfs_require_root "$@"
cd "$CSIPFS_ROOT"

csipfs_install_packages
csipfs_check_fuse
csipfs_build build >/dev/null
echo "built build/fs/csipfs"

work=$(mktemp -d /tmp/csipfs-demo.XXXXXX)
mnt=$work/mnt
emulator_pid=
csipfs_pid=

cleanup() {
	local status=$?
	if mountpoint -q "$mnt"; then
		fusermount3 -u "$mnt" || fusermount3 -u -z "$mnt"
	fi
	if [ -n "$csipfs_pid" ]; then
		wait "$csipfs_pid" 2>/dev/null || true
	fi
	if [ -n "$emulator_pid" ]; then
		kill -TERM "$emulator_pid" 2>/dev/null || true
		wait "$emulator_pid" 2>/dev/null || true
	fi
	if [ "$status" -ne 0 ]; then
		echo "demo failed; last lines of the logs:" >&2
		tail -n 20 "$work"/*.log >&2 || true
	fi
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs a command after printing it as a shell session would show it, with
# quotes around arguments that contain spaces.
show() {
	local arg line='$'
	for arg in "$@"; do
		case "$arg" in
		*[[:space:]]*) line+=" '$arg'" ;;
		*) line+=" $arg" ;;
		esac
	done
	echo
	echo "$line"
	"$@"
}

# Waits up to $2 seconds for the command that follows $2 to succeed, and
# fails early if the process $1 exits.
wait_for() {
	local pid=$1 seconds=$2
	shift 2
	local deadline=$(($(date +%s) + seconds))
	until "$@"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "error: process $pid exited while waiting for: $*" >&2
			return 1
		fi
		if [ "$(date +%s)" -ge "$deadline" ]; then
			echo "error: timed out after $seconds s waiting for: $*" >&2
			return 1
		fi
		sleep 0.2
	done
}

echo "starting the CSIP emulator in $work/emulator (building the fixture" \
	"takes a few seconds)"
(cd tests && exec /usr/bin/python3 -m emulator --dir "$work/emulator") \
	>"$work/emulator.log" 2>&1 &
emulator_pid=$!
wait_for "$emulator_pid" 120 grep -q "^emulator ready" "$work/emulator.log"

# Reads the values the demo needs from the emulator's state and manifest.
# Prints one value a line: API URL, CA file, secret id, secret key, the
# administrator's account directory, one report's path and a word that only
# this report contains.
read_state() {
	/usr/bin/python3 - "$work/emulator/state.json" <<'EOF'
import json
import sys

state = json.load(open(sys.argv[1]))
manifest = json.load(open(state["manifest"]))
admin = state["credentials"]["admin"]
account = next(a for a in manifest["accounts"] if a["role"] == "Admin")
complete = [r for r in manifest["reports"] if r["status"] == 2]
counts = {}
for report in complete:
    for word in report["words"]:
        counts[word] = counts.get(word, 0) + 1
report = next(r for r in complete
              if 100000 < r["size"] < 10000000
              and any(counts[w] == 1 for w in r["words"]))
word = next(w for w in report["words"] if counts[w] == 1)
for value in (state["api_url"], state["ca_file"], admin["secret_id"],
              admin["secret_key"], account["dir"], report["path"], word):
    print(value)
EOF
}
mapfile -t values < <(read_state)
api_url=${values[0]}
ca_file=${values[1]}
account_dir=${values[4]}
report=${values[5]}
word=${values[6]}
export TENCENTCLOUD_SECRET_ID=${values[2]}
export TENCENTCLOUD_SECRET_KEY=${values[3]}

mkdir "$mnt" "$work/copy" "$work/backup"
options="endpoint=$api_url,cafile=$ca_file,cache_dir=$work/cache"
build/fs/csipfs -f -o "$options" default "$mnt" 2>"$work/csipfs.log" &
csipfs_pid=$!
wait_for "$csipfs_pid" 20 mountpoint -q "$mnt"
echo "mounted csipfs on $mnt"

cd "$mnt"
show ls -l
show ls -lR "$account_dir"
show cp "$report" "$work/copy/"
show ls -l "$work/copy"
show grep -rl "$word" .
cd "$CSIPFS_ROOT"

show rsync -a "$mnt/" "$work/backup/"
show du -sh "$work/backup"
echo
echo "\$ rsync -a --itemize-changes $mnt/ $work/backup/"
rsync -a --itemize-changes "$mnt/" "$work/backup/" >"$work/rsync.out"
cat "$work/rsync.out"
if [ -s "$work/rsync.out" ]; then
	echo "error: the second rsync transferred files" >&2
	exit 1
fi
echo "(no output: the second rsync found nothing to transfer)"

fusermount3 -u "$mnt"
wait "$csipfs_pid"
csipfs_pid=
echo
echo "unmounted $mnt; the demo finished"
