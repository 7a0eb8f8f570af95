#!/usr/bin/env bash
# Mutation testing of the concurrency and semantics tests: build the library
# with each planted bug (CMake option TALLY_MUTATION, see src/) and check that
# the test suite FAILS on it, naming the tests that caught it.
#
# Usage: run.sh SOURCE_DIR WORK_DIR [MUTANT...]
# Each mutant runs in the builds where its bug is observable: plain for
# logic bugs, ASan and TSan for the early free (TSan must report it).
set -uo pipefail

src=$(cd "$1" && pwd)
work=$2
shift 2
mkdir -p "$work"
jobs=${CMAKE_BUILD_PARALLEL_LEVEL:-2}

# name:flavor pairs
all=(
	READ_OUTSIDE_CAS:plain
	STALE_GET:plain
	RESET_IGNORES_VERSION:plain
	WRAPPING_LIMIT:plain
	EARLY_FREE:asan
	EARLY_FREE:tsan
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

survived=0
for pair in "${all[@]}"; do
	name=${pair%%:*}
	flavor=${pair##*:}
	dir="$work/$name-$flavor"
	args=(-DTALLY_MUTATION="$name" -DTALLY_BUILD_BENCH=OFF
		-DTALLY_STRESS_TIMEOUT=240
		-DCMAKE_BUILD_TYPE=RelWithDebInfo
		-DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g")
	case $flavor in
	asan) args+=(-DTALLY_SANITIZE=address,undefined) ;;
	tsan) args+=(-DTALLY_SANITIZE=thread -DCMAKE_C_COMPILER=clang) ;;
	esac
	if ! cmake -S "$src" -B "$dir" "${args[@]}" >"$dir.configure.log" 2>&1 ||
		! cmake --build "$dir" -j "$jobs" >"$dir.build.log" 2>&1; then
		echo "ERROR  $name ($flavor): the mutant does not build; see $dir.build.log"
		survived=1
		continue
	fi
	(cd "$dir" && ctest -L 'unit|stress' -E 'install_consumer|shared_exports|header' \
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
done
if ((survived)); then
	echo "mutation: some planted bugs were not caught"
	exit 1
fi
echo "mutation: every planted bug was caught (${#all[@]} builds)"
