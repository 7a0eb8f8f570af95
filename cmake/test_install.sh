#!/bin/sh
# Install test, run by ctest (install_consumer):
#   1. cmake --install the build tree into a temporary prefix;
#   2. build examples/consumer against it with find_package(tally), shared and
#      static, and run both;
#   3. compile the same main.c with `cc main.c $(pkg-config --cflags --libs
#      tally)` against the prefix and run it;
#   4. check that the pkg-config file carries the static dependencies.
#
# usage: test_install.sh BUILD_DIR CONSUMER_DIR CONFIG CMAKE CC PKG_CONFIG \
#                        [EXTRA_LDFLAGS]
set -eu

build_dir=$1
consumer_dir=$2
config=$3
cmake=$4
cc=$5
pkg_config=${6:-pkg-config}
extra_ldflags=${7:-}

# Single-config generators with no CMAKE_BUILD_TYPE give an empty config:
# then pass none, so the installed per-config export file matches.
with_config() {
	if [ -n "$config" ]; then
		"$@" --config "$config"
	else
		"$@"
	fi
}

work=$(mktemp -d "${TMPDIR:-/tmp}/tally-install.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
prefix=$work/prefix

step() {
	printf '\n== install_consumer: %s\n' "$*"
}

step "cmake --install $build_dir --prefix $prefix"
with_config "$cmake" --install "$build_dir" --prefix "$prefix"

# The package must be relocatable: no installed text file may point back at
# the build tree.
if grep -rIl "$build_dir" "$prefix" >/dev/null 2>&1; then
	echo "installed files mention the build tree:" >&2
	grep -rIl "$build_dir" "$prefix" >&2
	exit 1
fi

step "find_package(tally) consumer"
"$cmake" -S "$consumer_dir" -B "$work/consumer" \
	-DCMAKE_BUILD_TYPE="$config" \
	-DCMAKE_C_COMPILER="$cc" \
	-DCMAKE_EXE_LINKER_FLAGS="$extra_ldflags" \
	-DCMAKE_PREFIX_PATH="$prefix" \
	-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
with_config "$cmake" --build "$work/consumer"
"$work/consumer/consumer"
"$work/consumer/consumer_static"

step "pkg-config consumer"
pc=$(find "$prefix" -name tally.pc -path '*/pkgconfig/*' | head -n 1)
if [ -z "$pc" ]; then
	echo "tally.pc was not installed under $prefix" >&2
	exit 1
fi
pcdir=$(dirname "$pc")
PKG_CONFIG_PATH="$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export PKG_CONFIG_PATH
flags=$("$pkg_config" --cflags --libs tally)
echo "pkg-config --cflags --libs tally: $flags"
libdir=$("$pkg_config" --variable=libdir tally)
# $flags is split into words on purpose.
# shellcheck disable=SC2086
"$cc" -std=c11 -o "$work/consumer_pc" "$consumer_dir/main.c" $flags \
	$extra_ldflags
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
	"$work/consumer_pc"

static_libs=$("$pkg_config" --static --libs tally)
echo "pkg-config --static --libs tally: $static_libs"
case " $static_libs " in
*" -lck "*) ;;
*) echo "pkg-config --static does not bring -lck" >&2; exit 1 ;;
esac
case " $static_libs " in
*" -pthread "*) ;;
*) echo "pkg-config --static does not bring -pthread" >&2; exit 1 ;;
esac

step "ok"
