#!/usr/bin/env bash
# Mutation testing of the concurrency and semantics tests. Each planted bug
# is a patch in this directory (NAME.patch, against the repository root);
# for each one this copies the tree, applies the patch with `git apply`,
# builds the copy and checks that the test suite FAILS on it, naming the
# tests that caught it. The library's own sources carry no planted bug.
# A patch that no longer applies fails the run: refresh it with the source.
#
# Usage: run.sh SOURCE_DIR WORK_DIR [MUTANT...]
# Each mutant runs in the builds where its bug is observable: plain for
# logic bugs, ASan and TSan for the early free (TSan must report it).
set -uo pipefail

src=$(cd "$1" && pwd)
work=$2
shift 2
mkdir -p "$work"
work=$(cd "$work" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
jobs=${CMAKE_BUILD_PARALLEL_LEVEL:-2}

# name:flavor pairs; the name is the patch file's stem.
all=(
	read_outside_cas:plain    # the successor computed from a stale snapshot
	stale_get:plain           # get serves an old copy
	reset_ignores_version:plain
	stale_lcache:plain        # a remove leaves the lookup caches as they are
	version_reuse:plain       # a re-created key starts at its old versions
	iter_skips:plain          # a chunk cut short skips a record
	sweep_one_section:plain   # a sweep walks the store in one section
	wrapping_limit:plain      # usage + held + amount wraps in the limit test
	held_ignored:plain        # the quick try_consume ignores the holds
	dead_slot_taken:plain     # a hold whose slot died is taken from another
	refusal_keeps_holds:plain # a refused admission keeps its holds
	fits_ignores_held:plain   # admission's read-only pass ignores the holds
	missed_window_carries:plain # a sliding roll over a gap keeps prev
	early_free:asan           # no grace period before a free
	early_free:tsan
)
if (($# > 0)); then
	sel=()
	for m in "$@"; do
		for p in "${all[@]}"; do
			[[ "${p%%:*}" == "$m" ]] && sel+=("$p")
		done
	done
	all=("${sel[@]}")
fi

# The parts of the tree a build and its tests read.
parts=(CMakeLists.txt CMakePresets.json include src tests cmake examples)

survived=0
for pair in "${all[@]}"; do
	name=${pair%%:*}
	flavor=${pair##*:}
	tree="$work/$name-$flavor.src"
	dir="$work/$name-$flavor"
	rm -rf "$tree"
	mkdir -p "$tree"
	for p in "${parts[@]}"; do
		cp -R "$src/$p" "$tree/"
	done
	if ! (cd "$tree" && git apply --whitespace=nowarn "$here/$name.patch") \
		>"$dir.apply.log" 2>&1; then
		echo "ERROR  $name: the patch does not apply; see $dir.apply.log"
		survived=1
		continue
	fi
	args=(-DTALLY_BUILD_BENCH=OFF
		-DTALLY_STRESS_TIMEOUT=240
		-DCMAKE_BUILD_TYPE=RelWithDebInfo
		-DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g")
	case $flavor in
	asan) args+=(-DTALLY_SANITIZE=address,undefined) ;;
	tsan) args+=(-DTALLY_SANITIZE=thread -DCMAKE_C_COMPILER=clang) ;;
	esac
	if ! cmake -S "$tree" -B "$dir" "${args[@]}" >"$dir.configure.log" 2>&1 ||
		! cmake --build "$dir" -j "$jobs" >"$dir.build.log" 2>&1; then
		echo "ERROR  $name ($flavor): the mutant does not build; see $dir.build.log"
		survived=1
		continue
	fi
	(cd "$dir" && ctest -L 'unit|stress' -E 'install_consumer|shared_exports|header|mutation' \
		--timeout 240 >"$dir.ctest.log" 2>&1)
	caught=$(sed -n '/The following tests FAILED:/,$p' "$dir.ctest.log" |
		sed -n 's/^[[:space:]]*[0-9]* - \([^ ]*\).*/\1/p' | tr '\n' ' ')
	if [[ -n "$caught" ]]; then
		extra=""
		if [[ $flavor == tsan ]] && grep -q "WARNING: ThreadSanitizer" "$dir/Testing/Temporary/LastTest.log"; then
			extra=" (ThreadSanitizer reported it)"
		fi
		if [[ $flavor == asan ]] && grep -q "ERROR: AddressSanitizer" "$dir/Testing/Temporary/LastTest.log"; then
			extra=" (AddressSanitizer reported it)"
		fi
		echo "caught $name ($flavor) by: $caught$extra"
	else
		echo "SURVIVED $name ($flavor): every test passed; see $dir.ctest.log"
		survived=1
	fi
	rm -rf "$tree"
done
if ((survived)); then
	echo "mutation: some planted bugs were not caught"
	exit 1
fi
echo "mutation: every planted bug was caught (${#all[@]} builds)"
