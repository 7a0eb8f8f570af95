#!/usr/bin/env bash
# Model-check tests/spin/tally.pml exhaustively with Spin: the correct
# protocol must verify (2 threads x 2 bumps, 3 threads x 1 bump) and the
# planted early-free and lost-update variants must each be caught.
# Usage: run.sh [workdir]   (needs spin and a C compiler)
set -euo pipefail

model="$(cd "$(dirname "$0")" && pwd)/tally.pml"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
cd "$work"
cc="${CC:-cc}"
fail=0

check() { # expect(pass|fail) description spin-defines...
	local expect=$1 what=$2
	shift 2
	rm -f pan pan.* ./*.trail
	spin "$@" -a "$model" >spin.log 2>&1 || { cat spin.log; exit 1; }
	"$cc" -O2 -DSAFETY -o pan pan.c 2>cc.log || { cat cc.log; exit 1; }
	./pan -m1000000 >pan.log 2>&1 || true
	local errors states
	errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' pan.log | head -n 1)
	states=$(sed -n 's/^ *\([0-9][0-9]*\) states, stored.*/\1/p' pan.log | head -n 1)
	if grep -q "search depth too small\|max search depth too small" pan.log; then
		echo "FAIL $what: search was truncated"
		fail=1
		return
	fi
	if [[ "$expect" == pass && "$errors" == 0 ]]; then
		echo "ok   $what: verified, $states states, 0 errors"
	elif [[ "$expect" == fail && -n "$errors" && "$errors" != 0 ]]; then
		echo "ok   $what: caught: $(grep -m1 'assertion violated' pan.log | sed 's/^pan:[0-9]*: //')"
	else
		echo "FAIL $what: expected $expect, got errors=${errors:-?}"
		sed -n '1,30p' pan.log
		fail=1
	fi
}

check pass "2 threads x 2 bumps" -DNT=2 -DNOPS=2
check pass "3 threads x 1 bump" -DNT=3 -DNOPS=1
check fail "early free, 2 x 2" -DNT=2 -DNOPS=2 -DEARLY_FREE
check fail "lost update, 2 x 2" -DNT=2 -DNOPS=2 -DLOST_UPDATE
check fail "early free, 3 x 1" -DNT=3 -DNOPS=1 -DEARLY_FREE
check fail "lost update, 3 x 1" -DNT=3 -DNOPS=1 -DLOST_UPDATE
if ((fail)); then
	echo "1 failed"
	exit 1
fi
echo "spin: all 6 checks passed"
