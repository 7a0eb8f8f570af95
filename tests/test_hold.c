/*
 * Unit tests of holds in the pure layer (src/hold.c and the admission
 * operations of src/budget.c and src/ratelimit.c): expiry slots against a
 * brute-force list of holds, retry-after against a scan over time, and
 * every new transition (PEEK, HOLD, SETTLE, PARTIAL) and its report, with
 * no store and no threads.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <inttypes.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "budget.h"
#include "hold.h"
#include "ratelimit.h"
#include "support.h"

#define S NS_PER_SEC
#define G (20 * S) /* the grain of a 60 s hold_ttl_max */

/* ------------------------------------------------------------------------ */
/* Slots against a list of holds                                            */
/* ------------------------------------------------------------------------ */

/* A small deterministic generator. */
static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t
next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

struct one_hold {
	int64_t slot;
	int64_t amount[2];
	bool live; /* taken by the brute force: not settled, not expired */
	bool settled;
};

struct hstate {
	int64_t due;
	union {
		uint32_t count[TALLY__HOLD_SLOTS];
		int64_t idle_base;
	};
	int64_t total[2];
	int64_t slot[2][TALLY__HOLD_SLOTS];
};

static struct tally__hs
hs(struct hstate *st)
{
	struct tally__hs h;

	h.due = &st->due;
	h.count = st->count;
	h.idle_base = &st->idle_base;
	h.total[0] = &st->total[0];
	h.total[1] = &st->total[1];
	h.slot = st->slot;
	h.nc = 2;
	return h;
}

/* The grains of the tests: G, and 1 ns. */
static struct tally__grain grain_g, grain_1;

static void
grains_init(void)
{
	tally__grain_init(&grain_g, G);
	tally__grain_init(&grain_1, 1);
}

static struct tally__args
args_at(enum tally__op_code op, int64_t now)
{
	struct tally__args a;

	memset(&a, 0, sizeof a);
	a.op = op;
	a.now = now;
	a.grain = &grain_g;
	return a;
}

/*
 * Random holds, settles, partial charges and clock moves (forward mostly,
 * sometimes back); after every step the slots hold exactly the sum of the
 * holds whose slot is not dead at the latest time seen, each expiry note
 * accounts for exactly the holds that died, and a settle is LATE exactly
 * when its hold's slot died.
 */
static void
test_slots_match_brute_force(void **state)
{
	static struct one_hold holds[4000];
	struct hstate st;
	struct tally__hs h = hs(&st);
	int64_t now = 1000 * S, latest = now;
	int64_t expired_sum[2] = {0, 0}, expired_n = 0;
	unsigned n = 0;

	(void)state;
	memset(&st, 0, sizeof st);
	st.due = INT64_MAX;
	st.idle_base = INT64_MIN;
	for (unsigned step = 0; step < 20000; step++) {
		uint64_t r = next_rand();
		struct tally__rolls notes;
		struct tally__args a;
		unsigned what = (unsigned)(r % 10);

		/* The clock: forward by up to 9 s, or back by up to 5 s. */
		if (what == 0)
			now -= (int64_t)(r >> 8) % (5 * S);
		else
			now += (int64_t)((r >> 8) % (9 * S));
		if (now > latest)
			latest = now;

		a = args_at(TALLY__OP_HOLD, now);
		tally__notes_clear(&notes);
		(void)tally__holds_expire(&h, &a, &notes);
		expired_n += notes.exp.holds;
		if (notes.exp.holds != 0) {
			expired_sum[0] += notes.exp.amount[0];
			expired_sum[1] += notes.exp.amount[1];
		}
		/* The brute force: holds whose slot is dead at latest. */
		for (unsigned i = 0; i < n; i++)
			if (holds[i].live && holds[i].slot * G <= latest) {
				holds[i].live = false;
				expired_n--;
				expired_sum[0] -= holds[i].amount[0];
				expired_sum[1] -= holds[i].amount[1];
			}
		assert_int_equal(expired_n, 0);
		assert_int_equal(expired_sum[0], 0);
		assert_int_equal(expired_sum[1], 0);

		if (what < 6 && n < sizeof holds / sizeof holds[0]) {
			int64_t amt[2] = {(int64_t)(r >> 20) % 100,
					  (int64_t)(r >> 40) % 3};

			a.ttl = 1 + (int64_t)((r >> 12) % (60 * S));
			assert_int_equal(tally__holds_place(&h, &a, amt),
					 TALLY_OK);
			/* Never in a dead slot, never before its deadline. */
			assert_true(a.slot * G > latest);
			assert_true(a.slot * G >= now + a.ttl ||
				    a.slot == tally__floor_div(latest, G) + 1);
			holds[n].slot = a.slot;
			holds[n].amount[0] = amt[0];
			holds[n].amount[1] = amt[1];
			holds[n].live = true;
			holds[n].settled = false;
			n++;
		} else if (n > 0) {
			struct one_hold *o = &holds[(r >> 16) % n];
			bool partial = what == 9;
			int rc;

			if (o->settled)
				continue;
			a.op = partial ? TALLY__OP_PARTIAL : TALLY__OP_SETTLE;
			a.slot = o->slot;
			a.held_amount[0] = o->amount[0];
			a.held_amount[1] = o->amount[1];
			a.actual[0] = (int64_t)(r >> 24) % 150;
			a.actual[1] = (int64_t)(r >> 44) % 2;
			rc = tally__holds_take(&h, &a);
			if (!o->live) {
				assert_int_equal(rc, 0); /* LATE */
				assert_int_equal(a.moved[0], 0);
				continue;
			}
			assert_int_equal(rc, 1);
			for (unsigned c = 0; c < 2; c++) {
				int64_t want = o->amount[c];

				if (partial && a.actual[c] < want)
					want = a.actual[c];
				assert_int_equal(a.moved[c], want);
				o->amount[c] -= want;
			}
			if (!partial) {
				o->live = false;
				o->settled = true;
			}
		}
		{
			int64_t sum[2] = {0, 0};
			uint32_t live = 0, cnt = 0;

			for (unsigned i = 0; i < n; i++)
				if (holds[i].live) {
					sum[0] += holds[i].amount[0];
					sum[1] += holds[i].amount[1];
					live++;
				}
			for (unsigned i = 0;
			     st.due != INT64_MAX && i < TALLY__HOLD_SLOTS; i++)
				cnt += st.count[i];
			assert_int_equal(st.total[0], sum[0]);
			assert_int_equal(st.total[1], sum[1]);
			assert_int_equal(cnt, live);
			assert_int_equal(st.due == INT64_MAX, live == 0);
		}
	}
	assert_true(n > 1000);
}

/* A settle that finds its slot holding less than its hold (a settled copy
 * of the handle) takes nothing; a slot number beyond the live ones is not
 * this record's. */
static void
test_take_refuses_what_is_not_there(void **state)
{
	struct hstate st;
	struct tally__hs h = hs(&st);
	struct tally__args a = args_at(TALLY__OP_HOLD, 100 * S);
	int64_t amt[2] = {10, 1};
	int64_t slot;

	(void)state;
	memset(&st, 0, sizeof st);
	st.due = INT64_MAX;
	st.idle_base = INT64_MIN;
	a.ttl = 30 * S;
	assert_int_equal(tally__holds_place(&h, &a, amt), TALLY_OK);
	slot = a.slot;
	assert_int_equal(slot, 7); /* ceil(130 / 20) */
	assert_int_equal(st.due, 6 * G);
	a.op = TALLY__OP_SETTLE;
	a.held_amount[0] = 11; /* more than the slot holds */
	a.held_amount[1] = 1;
	assert_int_equal(tally__holds_take(&h, &a), TALLY_ESETTLED);
	assert_int_equal(st.total[0], 10);
	a.held_amount[0] = 10;
	a.slot = slot + TALLY__HOLD_SLOTS;
	assert_int_equal(tally__holds_take(&h, &a), TALLY_ESETTLED);
	a.slot = slot;
	assert_int_equal(tally__holds_take(&h, &a), 1);
	assert_int_equal(st.total[0], 0);
	assert_int_equal(st.due, INT64_MAX);
	assert_int_equal(st.idle_base, 6);
	/* The same again: no hold is live, yet its slot has not died: it
	 * was settled (not LATE). A slot before b reads as LATE. */
	assert_int_equal(tally__holds_take(&h, &a), TALLY_ESETTLED);
	a.slot = 5;
	assert_int_equal(tally__holds_take(&h, &a), 0);
}

/* Deadlines near the end of int64 time are refused, never wrapped. */
static void
test_place_overflow(void **state)
{
	struct hstate st;
	struct tally__hs h = hs(&st);
	struct tally__args a = args_at(TALLY__OP_HOLD, INT64_MAX - 10 * S);
	int64_t amt[2] = {1, 0};

	(void)state;
	memset(&st, 0, sizeof st);
	st.due = INT64_MAX;
	st.idle_base = INT64_MIN;
	a.ttl = 30 * S;
	assert_int_equal(tally__holds_place(&h, &a, amt), TALLY_EOVERFLOW);
	assert_int_equal(st.due, INT64_MAX);
	a.now = 0;
	amt[0] = INT64_MAX;
	assert_int_equal(tally__holds_place(&h, &a, amt), TALLY_OK);
	amt[0] = 1;
	assert_int_equal(tally__holds_place(&h, &a, amt), TALLY_EOVERFLOW);
	assert_int_equal(st.total[0], INT64_MAX);
	assert_int_equal(st.count[tally__hold_index(a.slot)], 1);
}

/* Negative times (before 1970) use floor and ceil, not truncation. */
static void
test_negative_times(void **state)
{
	struct hstate st;
	struct tally__hs h = hs(&st);
	struct tally__args a = args_at(TALLY__OP_HOLD, -45 * S);
	int64_t amt[2] = {5, 0};

	(void)state;
	memset(&st, 0, sizeof st);
	st.due = INT64_MAX;
	st.idle_base = INT64_MIN;
	a.ttl = 10 * S; /* deadline -35 s: slot ceil(-35/20) = -1 */
	assert_int_equal(tally__holds_place(&h, &a, amt), TALLY_OK);
	assert_int_equal(a.slot, -1);
	assert_int_equal(st.due, -2 * G); /* b = floor(-45/20) + 1 = -2 */
	a.now = -40 * S + 1;              /* slot -2 dead, slot -1 alive */
	assert_false(tally__holds_expire(&h, &a, NULL) && st.total[0] == 0);
	assert_int_equal(st.total[0], 5);
	a.now = -20 * S; /* slot -1 dies at -20 s */
	assert_true(tally__holds_expire(&h, &a, NULL));
	assert_int_equal(st.total[0], 0);
	assert_int_equal(st.due, INT64_MAX);
	assert_int_equal(tally__floor_div(-1, 20), -1);
	assert_int_equal(tally__ceil_div(-1, 20), 0);
	assert_int_equal(tally__ceil_div(1, 20), 1);
	assert_int_equal(tally__hold_index(-1), TALLY__HOLD_SLOTS - 1);
}

/* With a 1 ns grain, slot numbers span all of int64: a clock that jumps
 * from near INT64_MIN to near INT64_MAX drops the slots in K steps (the
 * slot distance overflows int64: a fuzzer found the loop that ran for it),
 * and a slot whose end would pass INT64_MAX - 1 is refused. */
static void
test_one_ns_grain_extremes(void **state)
{
	struct hstate st;
	struct tally__hs h = hs(&st);
	struct tally__args a = args_at(TALLY__OP_HOLD, INT64_MIN + 10);
	struct tally__rolls notes;
	int64_t amt[2] = {3, 1};

	(void)state;
	memset(&st, 0, sizeof st);
	st.due = INT64_MAX;
	st.idle_base = INT64_MIN;
	a.grain = &grain_1;
	a.ttl = 2;
	assert_int_equal(tally__holds_place(&h, &a, amt), TALLY_OK);
	assert_int_equal(a.slot, INT64_MIN + 12);
	a.now = INT64_MAX - 100;
	tally__notes_clear(&notes);
	assert_true(tally__holds_expire(&h, &a, &notes));
	assert_int_equal(notes.exp.holds, 1);
	assert_int_equal(notes.exp.amount[0], 3);
	assert_int_equal(st.due, INT64_MAX);
	assert_int_equal(st.idle_base, INT64_MAX - 99);
	a.ttl = 1; /* slot INT64_MAX - 4: within K of the end, refused */
	a.now = INT64_MAX - 5;
	assert_int_equal(tally__holds_place(&h, &a, amt), TALLY_EOVERFLOW);
	assert_int_equal(st.due, INT64_MAX);
	a.now = INT64_MAX - 200;
	assert_int_equal(tally__holds_place(&h, &a, amt), TALLY_OK);
	assert_int_equal(a.slot, INT64_MAX - 99); /* clamped to b */
}

/* ------------------------------------------------------------------------ */
/* Retry-after against a scan over time                                     */
/* ------------------------------------------------------------------------ */

static void
test_retry_after_brute_force(void **state)
{
	(void)state;
	for (unsigned round = 0; round < 3000; round++) {
		struct hstate st;
		struct tally__hs h = hs(&st);
		int64_t now = 500 * S + (int64_t)(next_rand() % (20 * S));
		int64_t max = (int64_t)(next_rand() % 50);
		int64_t used = (int64_t)(next_rand() % 60);
		int64_t amount = (int64_t)(next_rand() % 30);
		int64_t wend = now + 1 + (int64_t)(next_rand() % (90 * S));
		int64_t got, want = TALLY_RETRY_NEVER;
		unsigned nh = (unsigned)(next_rand() % 6);

		if (next_rand() % 5 == 0)
			wend = INT64_MAX; /* never rolls */
		memset(&st, 0, sizeof st);
		st.due = INT64_MAX;
		st.idle_base = INT64_MIN;
		for (unsigned i = 0; i < nh; i++) {
			struct tally__args a = args_at(TALLY__OP_HOLD, now);
			int64_t amt[2] = {(int64_t)(next_rand() % 20), 0};

			a.ttl = 1 + (int64_t)(next_rand() % (60 * S));
			assert_int_equal(tally__holds_place(&h, &a, amt),
					 TALLY_OK);
		}
		got = tally__retry_after(&h, 0, &grain_g, now, amount, max,
					 used, wend);
		/* The scan: every ms for 200 s (past every slot and the
		 * window's end, where they fall on ms boundaries: they do,
		 * slots are whole seconds and wend is checked exactly). */
		{
			int64_t pts[TALLY__HOLD_SLOTS + 2];
			unsigned np = 0;

			pts[np++] = now;
			if (wend != INT64_MAX)
				pts[np++] = wend;
			for (unsigned j = 0;
			     st.due != INT64_MAX && j < TALLY__HOLD_SLOTS; j++)
				pts[np++] = (st.due / G + j) * G;
			for (int64_t t = now; t <= now + 200 * S;
			     t += 1000000) {
				int64_t u = t >= wend ? 0 : used, held = 0;

				for (unsigned j = 0; j < TALLY__HOLD_SLOTS; j++)
					if (st.due != INT64_MAX &&
					    (st.due / G + j) * G > t)
						held += st.slot[0]
							       [tally__hold_index(
								       st.due /
									       G +
								       j)];
				if (amount <= max - u - held) {
					want = t - now;
					break;
				}
				/* Jump exactly onto the next event point
				 * inside this ms, if one is there. */
				for (unsigned p = 0; p < np; p++)
					if (pts[p] > t && pts[p] < t + 1000000)
						t = pts[p] - 1000000;
			}
		}
		if (amount > max)
			want = TALLY_RETRY_NEVER;
		assert_int_equal(got, want);
	}
}

/* ------------------------------------------------------------------------ */
/* Budget transitions                                                       */
/* ------------------------------------------------------------------------ */

static struct tally__budget_snap
budget_snap(int64_t max, int64_t now)
{
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;
	struct tally__budget_snap s;

	c.max_limit = max;
	c.period = P("1m");
	c.calendar_aligned = true;
	memset(&s, 0x5a, sizeof s);
	tally__budget_init(&s, &c, now);
	return s;
}

struct res {
	int rc;
	bool install;
	struct tally__rolls rolls;
	tally_limit_report rep;
};

static struct res
bstep(struct tally__budget_snap *s, struct tally__args *a)
{
	struct tally__budget_snap next;
	struct res r;

	memset(&r, 0, sizeof r);
	a->report = &r.rep;
	tally__notes_clear(&r.rolls);
	r.rc = tally__budget_step(s, &next, a, &r.rolls, &r.install);
	if (r.install)
		*s = next;
	return r;
}

/* The life of a hold on a budget: admitted while used + held + e <= max,
 * refused past it (TOO_BIG when e > max), checked blocked at used + held
 * >= max, kept across a roll, settled with an overdraft into the window
 * current at settle time. */
static void
test_budget_hold_settle(void **state)
{
	int64_t t0 = T(2026, 12, 3, 12, 0, 0);
	struct tally__budget_snap s = budget_snap(100, t0);
	struct tally__args a = args_at(TALLY__OP_HOLD, t0 + 5 * S);
	struct res r;
	bool install;
	int64_t slot;

	(void)state;
	a.amount[0] = 70;
	a.ttl = 50 * S;
	r = bstep(&s, &a);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	slot = a.slot;
	assert_int_equal(s.held, 70);
	assert_int_equal(s.usage, 0);
	assert_int_equal(r.rep.c[0].held, 70);
	assert_int_equal(r.rep.c[0].remaining, 30);
	assert_int_equal(r.rep.c[0].max, 100);
	/* 31 does not fit; 30 would. */
	a = args_at(TALLY__OP_HOLD, t0 + 6 * S);
	a.amount[0] = 31;
	a.ttl = 10 * S;
	r = bstep(&s, &a);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_false(r.install);
	assert_true(r.rep.c[0].flags & TALLY_DECISION_DENIED);
	assert_false(r.rep.c[0].flags & TALLY_DECISION_TOO_BIG);
	/* Until the hold expires at its slot end (t0 + 60 s) or the window
	 * (t0 + 60 s) rolls: the hold is what blocks. */
	assert_int_equal(r.rep.c[0].retry_after, 60 * S - 6 * S);
	a.amount[0] = 101;
	r = bstep(&s, &a);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_true(r.rep.c[0].flags & TALLY_DECISION_TOO_BIG);
	assert_int_equal(r.rep.c[0].retry_after, TALLY_RETRY_NEVER);
	/* A shadow hold is taken even past the max (deadline t0 + 56 s:
	 * its slot ends at t0 + 60 s). */
	a.amount[0] = 40;
	a.ttl = 50 * S;
	a.shadow = true;
	r = bstep(&s, &a);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.rep.c[0].flags & TALLY_DECISION_SHADOW_WOULD_DENY);
	assert_int_equal(s.held, 110);
	/* Peek changes nothing; past the max (a shadow did it) even 0 does
	 * not fit, as for try_consume. */
	a = args_at(TALLY__OP_PEEK, t0 + 7 * S);
	a.amount[0] = 0;
	r = bstep(&s, &a);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_false(r.install);
	assert_int_equal(r.rep.c[0].remaining, 0);
	assert_true(r.rep.c[0].flags & TALLY_DECISION_REACHED);
	/* check blocks at used + held >= max */
	a = args_at(TALLY__OP_CHECK, t0 + 7 * S);
	assert_int_equal(tally__budget_step(&s, &(struct tally__budget_snap){0},
					    &a, &r.rolls, &install),
			 TALLY_LIMITED);

	/* The window rolls at t0 + 60 s; the holds stay, used restarts. A
	 * bump before that lands in the first window. */
	a = args_at(TALLY__OP_BUMP, t0 + 8 * S);
	a.amount[0] = 3;
	r = bstep(&s, &a);
	assert_int_equal(s.usage, 3);
	/* Settle the first hold (deadline t0 + 55 s, slot end t0 + 60 s)
	 * at t0 + 59 s, in the first window: 90 charged, 70 released, 20
	 * overdraft. */
	a = args_at(TALLY__OP_SETTLE, t0 + 59 * S);
	a.slot = slot;
	a.held_amount[0] = 70;
	a.actual[0] = 90;
	r = bstep(&s, &a);
	assert_int_equal(r.rc, TALLY_OK);
	assert_int_equal(s.usage, 93);
	assert_int_equal(s.held, 40);
	assert_true(r.rep.c[0].flags & TALLY_DECISION_OVERDRAFT);
	assert_int_equal(r.rep.c[0].overdraft, 20);
	/* At t0 + 60 s the window rolls (used 93 reported) and the shadow
	 * hold expires (slot end t0 + 60 s): both in one CAS. */
	a = args_at(TALLY__OP_ROLL, t0 + 60 * S);
	r = bstep(&s, &a);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 1);
	assert_int_equal(r.rolls.note[0].usage_before, 93);
	assert_int_equal(r.rolls.exp.holds, 1);
	assert_int_equal(r.rolls.exp.amount[0], 40);
	assert_int_equal(r.rolls.exp.slot_end, (t0 + 60 * S) / G * G);
	assert_int_equal(s.usage, 0);
	assert_int_equal(s.held, 0);
	assert_int_equal(s.hold_due, INT64_MAX);
}

/* A hold outlives a roll; settling it later charges the new window; a
 * settle of an expired hold is LATE: the actual is charged, nothing is
 * released twice. */
static void
test_budget_roll_keeps_held_and_late(void **state)
{
	int64_t t0 = T(2026, 12, 3, 12, 0, 0);
	struct tally__budget_snap s = budget_snap(1000, t0);
	struct tally__args a = args_at(TALLY__OP_HOLD, t0 + 50 * S);
	struct res r;
	int64_t slot1, slot2;

	(void)state;
	a.amount[0] = 100;
	a.ttl = 30 * S; /* deadline t0 + 80 s: slot end t0 + 80 s */
	r = bstep(&s, &a);
	slot1 = a.slot;
	a = args_at(TALLY__OP_HOLD, t0 + 50 * S);
	a.amount[0] = 5;
	a.ttl = 1;
	r = bstep(&s, &a);
	slot2 = a.slot; /* slot end t0 + 60 s */
	assert_int_equal(s.held, 105);
	a = args_at(TALLY__OP_BUMP, t0 + 70 * S); /* rolls; slot2 dies */
	a.amount[0] = 1;
	r = bstep(&s, &a);
	assert_int_equal(r.rolls.n, 1);
	assert_int_equal(r.rolls.exp.holds, 1);
	assert_int_equal(r.rolls.exp.amount[0], 5);
	assert_int_equal(s.held, 100);
	assert_int_equal(s.usage, 1);
	a = args_at(TALLY__OP_SETTLE, t0 + 75 * S);
	a.slot = slot1;
	a.held_amount[0] = 100;
	a.actual[0] = 30;
	r = bstep(&s, &a);
	assert_int_equal(r.rc, TALLY_OK);
	assert_int_equal(s.usage, 31); /* the window of the settle */
	assert_int_equal(s.held, 0);
	assert_false(r.rep.c[0].flags & TALLY_DECISION_OVERDRAFT);
	a = args_at(TALLY__OP_SETTLE, t0 + 76 * S);
	a.slot = slot2;
	a.held_amount[0] = 5;
	a.actual[0] = 7;
	r = bstep(&s, &a);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.rep.c[0].flags & TALLY_DECISION_LATE);
	assert_false(r.rep.c[0].flags & TALLY_DECISION_OVERDRAFT);
	assert_int_equal(s.usage, 38);
	assert_int_equal(s.held, 0);
}

/* A partial charge moves up to its amount from held to used and says when
 * the limit is reached; the rest of the hold stays. */
static void
test_budget_partial(void **state)
{
	int64_t t0 = T(2026, 12, 3, 12, 0, 0);
	struct tally__budget_snap s = budget_snap(100, t0);
	struct tally__args a = args_at(TALLY__OP_HOLD, t0);
	struct res r;
	int64_t slot;

	(void)state;
	a.amount[0] = 60;
	a.ttl = 30 * S;
	r = bstep(&s, &a);
	slot = a.slot;
	a = args_at(TALLY__OP_PARTIAL, t0 + S);
	a.slot = slot;
	a.held_amount[0] = 60;
	a.actual[0] = 25;
	r = bstep(&s, &a);
	assert_int_equal(r.rc, TALLY_OK);
	assert_int_equal(a.moved[0], 25);
	assert_int_equal(s.usage, 25);
	assert_int_equal(s.held, 35);
	assert_int_equal(s.hold_count[tally__hold_index(slot)], 1);
	assert_true(s.hold_due != INT64_MAX);
	assert_false(r.rep.c[0].flags & TALLY_DECISION_REACHED);
	/* 35 still held; a charge of 80 takes them and overdraws 45. */
	a.held_amount[0] = 35;
	a.actual[0] = 80;
	r = bstep(&s, &a);
	assert_int_equal(a.moved[0], 35);
	assert_int_equal(r.rep.c[0].overdraft, 45);
	assert_true(r.rep.c[0].flags & TALLY_DECISION_OVERDRAFT);
	assert_true(r.rep.c[0].flags & TALLY_DECISION_REACHED);
	assert_int_equal(s.usage, 105);
	assert_int_equal(s.held, 0);
	/* The settle of what is left (0) closes the hold. */
	a = args_at(TALLY__OP_SETTLE, t0 + 2 * S);
	a.slot = slot;
	a.held_amount[0] = 0;
	a.actual[0] = 0;
	r = bstep(&s, &a);
	assert_int_equal(r.rc, TALLY_OK);
	assert_int_equal(s.hold_due, INT64_MAX);
}

/* Where the quick path answers with holds present, it answers as step. */
static void
test_budget_quick_with_holds(void **state)
{
	int64_t t0 = T(2026, 12, 3, 12, 0, 0);
	unsigned answered = 0;

	(void)state;
	for (unsigned i = 0; i < 4000; i++) {
		struct tally__budget_snap s =
			budget_snap((int64_t)(next_rand() % 100), t0);
		struct tally__budget_snap n1, n2;
		struct tally__args a = args_at(TALLY__OP_HOLD, t0);
		struct tally__rolls rolls;
		bool i1 = false, i2 = false;
		int64_t amt = (int64_t)(next_rand() % 50);
		enum tally__op_code ops[] = {TALLY__OP_CHECK, TALLY__OP_TRY,
					     TALLY__OP_BUMP};
		int q, st;

		a.amount[0] = amt;
		a.ttl = 1 + (int64_t)(next_rand() % (60 * S));
		a.shadow = true;
		(void)bstep(&s, &a);
		s.usage = (int64_t)(next_rand() % 120);
		a = args_at(ops[i % 3], t0 + (int64_t)(next_rand() % (80 * S)));
		a.amount[0] = (int64_t)(next_rand() % 60);
		q = tally__budget_quick(&s, &n1, &a, &i1);
		if (q == TALLY__QUICK_NO)
			continue;
		answered++;
		tally__notes_clear(&rolls);
		st = tally__budget_step(&s, &n2, &a, &rolls, &i2);
		assert_int_equal(q, st);
		assert_int_equal(i1, i2);
		if (i1)
			assert_memory_equal(&n1, &n2, sizeof n1);
		if (a.op == TALLY__OP_CHECK)
			assert_memory_equal(&s, &n2, sizeof s);
		assert_int_equal(rolls.n, 0);
	}
	assert_true(answered > 500);
}

/* ------------------------------------------------------------------------ */
/* Rate-limit transitions                                                   */
/* ------------------------------------------------------------------------ */

static struct tally__rl_snap
rl_snap(int64_t tmax, int64_t rmax, int64_t now)
{
	tally_ratelimit_config c = TALLY_RATELIMIT_CONFIG_INIT;
	struct tally__rl_snap s;

	c.tokens.has_max = tmax >= 0;
	c.tokens.max = tmax >= 0 ? tmax : 0;
	c.tokens.period = P("1m");
	c.requests.has_max = rmax >= 0;
	c.requests.max = rmax >= 0 ? rmax : 0;
	c.requests.period = P("1h");
	c.calendar_aligned = true;
	memset(&s, 0x5a, sizeof s);
	tally__rl_init(&s, &c, now);
	return s;
}

static struct res
rstep(struct tally__rl_snap *s, struct tally__args *a)
{
	struct tally__rl_snap next;
	struct res r;

	memset(&r, 0, sizeof r);
	a->report = &r.rep;
	tally__notes_clear(&r.rolls);
	r.rc = tally__rl_step(s, &next, a, &r.rolls, &r.install);
	if (r.install)
		*s = next;
	return r;
}

/* Both counters hold in one slot; either refusing refuses the hold (the
 * mask names it); a counter without a max never refuses; settle charges
 * each counter its actual. */
static void
test_ratelimit_hold_settle(void **state)
{
	int64_t t0 = T(2026, 12, 3, 12, 0, 0);
	struct tally__rl_snap s = rl_snap(1000, 2, t0);
	struct tally__args a = args_at(TALLY__OP_HOLD, t0);
	struct res r;
	int64_t slot;

	(void)state;
	a.amount[0] = 600;
	a.amount[1] = 1;
	a.ttl = 30 * S;
	r = rstep(&s, &a);
	assert_int_equal(r.rc, TALLY_OK);
	slot = a.slot;
	assert_int_equal(s.c[0].held, 600);
	assert_int_equal(s.c[1].held, 1);
	assert_int_equal(r.rep.c[0].counter, TALLY_COUNTER_TOKENS);
	assert_int_equal(r.rep.c[1].counter, TALLY_COUNTER_REQUESTS);
	assert_int_equal(r.rep.c[1].remaining, 1);
	/* Tokens do not fit: LIMITED with the tokens bit only. */
	a = args_at(TALLY__OP_HOLD, t0 + S);
	a.amount[0] = 401;
	a.amount[1] = 1;
	a.ttl = 30 * S;
	r = rstep(&s, &a);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_int_equal(a.out_mask, TALLY_COUNTER_TOKENS);
	assert_true(r.rep.c[0].flags & TALLY_DECISION_DENIED);
	assert_false(r.rep.c[1].flags & TALLY_DECISION_DENIED);
	/* check: requests 1 + 1 held of 2: not blocked; tokens 600/1000. */
	a = args_at(TALLY__OP_CHECK, t0 + S);
	{
		struct tally__rl_snap n;
		bool inst;
		struct tally__rolls rolls;

		tally__notes_clear(&rolls);
		assert_int_equal(tally__rl_step(&s, &n, &a, &rolls, &inst),
				 TALLY_OK);
	}
	a = args_at(TALLY__OP_SETTLE, t0 + 2 * S);
	a.slot = slot;
	a.held_amount[0] = 600;
	a.held_amount[1] = 1;
	a.actual[0] = 700;
	a.actual[1] = 1;
	r = rstep(&s, &a);
	assert_int_equal(r.rc, TALLY_OK);
	assert_int_equal(s.c[0].usage, 700);
	assert_int_equal(s.c[1].usage, 1);
	assert_int_equal(s.c[0].held, 0);
	assert_int_equal(r.rep.c[0].overdraft, 100);
	assert_true(r.rep.c[0].flags & TALLY_DECISION_OVERDRAFT);
	assert_false(r.rep.c[1].flags & TALLY_DECISION_OVERDRAFT);
	assert_int_equal(s.hold_due, INT64_MAX);
}

static void
test_ratelimit_unlimited_counter(void **state)
{
	int64_t t0 = T(2026, 12, 3, 12, 0, 0);
	struct tally__rl_snap s = rl_snap(-1, 5, t0);
	struct tally__args a = args_at(TALLY__OP_HOLD, t0);
	struct res r;

	(void)state;
	a.amount[0] = INT64_MAX - 1;
	a.amount[1] = 5;
	a.ttl = S;
	r = rstep(&s, &a);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.rep.c[0].flags & TALLY_DECISION_UNLIMITED);
	assert_int_equal(r.rep.c[0].remaining, INT64_MAX);
	assert_true(r.rep.c[1].flags & TALLY_DECISION_REACHED);
	/* The held sum of the unlimited counter cannot overflow. */
	a = args_at(TALLY__OP_HOLD, t0);
	a.amount[0] = 2;
	a.amount[1] = 0;
	a.ttl = S;
	r = rstep(&s, &a);
	assert_int_equal(r.rc, TALLY_EOVERFLOW);
	assert_false(r.install);
	assert_int_equal(s.c[0].held, INT64_MAX - 1);
}

/*
 * The kinds' `fits` (admission's pass 1 without reports) against a PEEK
 * step: wherever fits answers, the step returns the same (TALLY_OK,
 * TALLY_LIMITED or the placement's TALLY_EOVERFLOW) and needs no exact
 * clock. Random snapshots with 0 to 3 live holds (some about to die),
 * usages and amounts near the limits and near INT64_MAX, shadow charges,
 * TTLs up to hold_ttl_max, precise and coarse clock readings.
 */
static int64_t
pick_amount(int64_t around)
{
	switch (next_rand() % 6) {
	case 0:
		return INT64_MAX - (int64_t)(next_rand() % 4);
	case 1:
		return 0;
	default:
		return (int64_t)(next_rand() % (uint64_t)(around + 1));
	}
}

struct fits_counts {
	unsigned answered, limited, overflow, declined;
};

static void
fits_compare(int f, int st, bool need_exact, struct fits_counts *n)
{
	if (f == TALLY__QUICK_NO) {
		n->declined++;
		return;
	}
	assert_false(need_exact);
	assert_int_equal(f, st);
	n->answered++;
	n->limited += f == TALLY_LIMITED;
	n->overflow += f == TALLY_EOVERFLOW;
}

static struct tally__args
peek_args(int64_t t0)
{
	struct tally__args a =
		args_at(TALLY__OP_PEEK, t0 + (int64_t)(next_rand() % (90 * S)));

	a.now_coarse = next_rand() % 4 == 0;
	a.ttl = next_rand() % 3 == 0 ? 0
				     : 1 + (int64_t)(next_rand() % (60 * S));
	a.shadow = next_rand() % 4 == 0;
	return a;
}

static void
test_fits_agrees_with_peek(void **state)
{
	int64_t t0 = T(2026, 12, 3, 12, 0, 0);
	struct fits_counts nb = {0}, nr = {0};

	(void)state;
	for (unsigned i = 0; i < 20000; i++) {
		struct tally__budget_snap b =
			budget_snap((int64_t)(next_rand() % 100), t0);
		struct tally__rl_snap r = rl_snap(
			next_rand() % 5 == 0 ? -1
					     : (int64_t)(next_rand() % 100),
			(int64_t)(next_rand() % 4), t0);
		unsigned holds = (unsigned)(next_rand() % 4);
		struct tally__args a;
		struct tally__rolls rolls;
		bool inst;
		int f, st;

		for (unsigned h = 0; h < holds; h++) {
			a = args_at(TALLY__OP_HOLD,
				    t0 + (int64_t)(next_rand() % (30 * S)));
			a.ttl = 1 + (int64_t)(next_rand() % (60 * S));
			a.shadow = true;
			a.amount[0] = (int64_t)(next_rand() % 40);
			(void)bstep(&b, &a);
			a.amount[1] = (int64_t)(next_rand() % 2);
			a.report = NULL;
			(void)rstep(&r, &a);
		}
		b.usage = pick_amount(120);
		r.c[0].usage = pick_amount(120);
		r.c[1].usage = (int64_t)(next_rand() % 5);

		a = peek_args(t0);
		a.amount[0] = pick_amount(60);
		f = tally__budget_fits(&b, &a);
		{
			struct tally__budget_snap next;

			tally__notes_clear(&rolls);
			st = tally__budget_step(&b, &next, &a, &rolls, &inst);
			assert_false(inst);
		}
		fits_compare(f, st, a.need_exact, &nb);

		a = peek_args(t0);
		a.amount[0] = pick_amount(60);
		a.amount[1] = (int64_t)(next_rand() % 3);
		f = tally__rl_fits(&r, &a);
		{
			struct tally__rl_snap next;

			tally__notes_clear(&rolls);
			st = tally__rl_step(&r, &next, &a, &rolls, &inst);
			assert_false(inst);
		}
		fits_compare(f, st, a.need_exact, &nr);
	}
	print_message("fits: budget %u answered (%u limited, %u overflow), "
		      "%u declined; rate limit %u (%u, %u), %u\n",
		      nb.answered, nb.limited, nb.overflow, nb.declined,
		      nr.answered, nr.limited, nr.overflow, nr.declined);
	/* The grid reaches every answer and the step's fallbacks. */
	assert_true(nb.answered > 1000 && nr.answered > 1000);
	assert_true(nb.limited > 100 && nr.limited > 100);
	assert_true(nb.overflow > 10 && nr.overflow > 10);
	assert_true(nb.declined > 100 && nr.declined > 100);
}

/*
 * The divider of a grain (snap.h) against division, for every grain class
 * a store can have (1 ns, powers of two and their neighbours, the default,
 * 122 days, and the largest int64) and numerators at every edge: 0, +-1,
 * multiples of G and their neighbours, INT64_MIN and INT64_MAX, and random
 * values of every magnitude.
 */
static int64_t
floor_ref(int64_t n, int64_t g)
{
	int64_t q = n / g;

	return (n % g != 0 && n < 0) ? q - 1 : q;
}

static int64_t
ceil_ref(int64_t n, int64_t g)
{
	int64_t q = n / g;

	return (n % g != 0 && n > 0) ? q + 1 : q;
}

static void
check_grain_at(const struct tally__grain *gr, int64_t n, unsigned *bad)
{
	if (tally__grain_floor(gr, n) != floor_ref(n, gr->g) ||
	    tally__grain_ceil(gr, n) != ceil_ref(n, gr->g)) {
		if (*bad < 5)
			print_error("grain %" PRId64 ", n %" PRId64
				    ": floor %" PRId64 " (%" PRId64
				    "), ceil %" PRId64 " (%" PRId64 ")\n",
				    gr->g, n, tally__grain_floor(gr, n),
				    floor_ref(n, gr->g),
				    tally__grain_ceil(gr, n),
				    ceil_ref(n, gr->g));
		(*bad)++;
	}
}

static void
test_grain_divides_exactly(void **state)
{
	int64_t grains[64 * 3 + 8];
	unsigned ng = 0, bad = 0;
	(void)state;

	for (unsigned k = 0; k < 63; k++) {
		int64_t p = INT64_C(1) << k;

		grains[ng++] = p;
		if (p > 2)
			grains[ng++] = p - 1;
		if (k < 62)
			grains[ng++] = p + 1;
	}
	grains[ng++] = 3;
	grains[ng++] = tally__hold_grain(TALLY_HOLD_TTL_MAX_DEFAULT);
	grains[ng++] = tally__hold_grain(INT64_C(366) * 86400 * 1000000000);
	grains[ng++] = 333333334;
	grains[ng++] = INT64_MAX;
	grains[ng++] = INT64_MAX - 1;
	for (unsigned i = 0; i < ng; i++) {
		struct tally__grain gr;
		int64_t g = grains[i];
		int64_t edge[] = {0,
				  1,
				  -1,
				  g,
				  -g,
				  INT64_MAX,
				  INT64_MIN,
				  INT64_MAX - 1,
				  INT64_MIN + 1};

		tally__grain_init(&gr, g);
		assert_int_equal(gr.g, g);
		assert_int_equal(gr.slot_max,
				 (INT64_MAX - 1) / g - TALLY__HOLD_SLOTS);
		for (unsigned e = 0; e < sizeof edge / sizeof edge[0]; e++)
			for (int64_t d = -1; d <= 1; d++) {
				int64_t n;

				if (!__builtin_add_overflow(edge[e], d, &n))
					check_grain_at(&gr, n, &bad);
			}
		/* Multiples of g and their neighbours, over the range. */
		for (unsigned j = 0; j < 2000; j++) {
			uint64_t r = next_rand();
			int64_t q = (int64_t)(r >> (r & 63)) / g;
			int64_t m;

			if ((r >> 7) & 1)
				q = -q;
			if (__builtin_mul_overflow(q, g, &m))
				continue;
			for (int64_t d = -1; d <= 1; d++) {
				int64_t n;

				if (!__builtin_add_overflow(m, d, &n))
					check_grain_at(&gr, n, &bad);
			}
			/* And a random numerator of any magnitude. */
			check_grain_at(&gr,
				       (int64_t)(next_rand() >> (r & 63)) *
					       ((r >> 8) & 1 ? -1 : 1),
				       &bad);
		}
	}
	assert_int_equal(bad, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grain_divides_exactly),
		cmocka_unit_test(test_slots_match_brute_force),
		cmocka_unit_test(test_take_refuses_what_is_not_there),
		cmocka_unit_test(test_place_overflow),
		cmocka_unit_test(test_negative_times),
		cmocka_unit_test(test_one_ns_grain_extremes),
		cmocka_unit_test(test_retry_after_brute_force),
		cmocka_unit_test(test_budget_hold_settle),
		cmocka_unit_test(test_budget_roll_keeps_held_and_late),
		cmocka_unit_test(test_budget_partial),
		cmocka_unit_test(test_budget_quick_with_holds),
		cmocka_unit_test(test_ratelimit_hold_settle),
		cmocka_unit_test(test_ratelimit_unlimited_counter),
		cmocka_unit_test(test_fits_agrees_with_peek),
	};

	grains_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
