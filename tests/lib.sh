# shellcheck shell=bash
# Shell functions shared by tests/run.sh and tests/demo.sh. Source it from
# bash after setting CSIPFS_SCRIPT to the absolute path of the calling script.

CSIPFS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Re-executes the calling script through sudo unless it already runs as
# root, because mounting FUSE filesystems and installing packages need root.
csipfs_require_root() {
	if [ "$(id -u)" -eq 0 ]; then
		return 0
	fi
	if ! command -v sudo >/dev/null 2>&1; then
		echo "error: run $CSIPFS_SCRIPT as root (sudo is not installed)" >&2
		exit 1
	fi
	exec sudo -- "$CSIPFS_SCRIPT" "$@"
}

# Installs the packages of tests/packages.txt that are not installed yet,
# running apt-get update once before the install.
csipfs_install_packages() {
	local package status missing=()
	while read -r package; do
		case "$package" in '' | '#'*) continue ;; esac
		status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
		if [ "$status" != "install ok installed" ]; then
			missing+=("$package")
		fi
	done <"$CSIPFS_ROOT/tests/packages.txt"
	if [ "${#missing[@]}" -eq 0 ]; then
		return 0
	fi
	echo "installing missing packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update || return 1
	apt-get install -y --no-install-recommends "${missing[@]}" || return 1
}

# Fails unless the kernel offers FUSE, which containers often lack.
csipfs_check_fuse() {
	if [ ! -c /dev/fuse ]; then
		echo "error: /dev/fuse is missing: load the fuse module" \
			"(modprobe fuse) or start the container with --device" \
			"/dev/fuse --cap-add SYS_ADMIN" >&2
		return 1
	fi
}

# Configures (or reconfigures) the meson build directory $1 with the extra
# options that follow, then compiles it.
csipfs_build() {
	local dir=$1
	shift
	if [ -f "$CSIPFS_ROOT/$dir/build.ninja" ]; then
		meson setup --reconfigure "$CSIPFS_ROOT/$dir" "$CSIPFS_ROOT" \
			--buildtype=debugoptimized -Dwerror=true "$@" || return 1
	else
		meson setup "$CSIPFS_ROOT/$dir" "$CSIPFS_ROOT" \
			--buildtype=debugoptimized -Dwerror=true "$@" || return 1
	fi
	meson compile -C "$CSIPFS_ROOT/$dir"
}
