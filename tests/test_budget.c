/*
 * Unit tests of the pure budget transitions (src/budget.c): every operation
 * code of tally__budget_step, tally__budget_init, tally__budget_validate and
 * tally__budget_view, without a store and without threads.
 *
 * Expected instants come from T() in support.h (civil dates counted by
 * whole years and months, independently of src/period.c). After every
 * transition the window invariant is checked: window_end is the smallest
 * lattice boundary strictly after window_start.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "budget.h"
#include "period.h"
#include "support.h"

#define H NS_PER_HOUR
#define D NS_PER_DAY

/* Result of one transition. */
struct bres {
	int rc;
	bool install;
	struct tally__rolls rolls;
	struct tally__budget_snap next;
};

static tally_budget_config
bcfg(int64_t max, const char *period, bool aligned, int32_t off, int64_t anchor)
{
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;

	c.max_limit = max;
	c.period = P(period);
	c.calendar_aligned = aligned;
	c.utc_offset_minutes = off;
	c.anchor = anchor;
	return c;
}

static struct tally__budget_snap
mk(const tally_budget_config *c, int64_t now)
{
	struct tally__budget_snap s;

	memset(&s, 0x5a, sizeof s);
	tally__budget_init(&s, c, now);
	return s;
}

/* window_end is the smallest boundary > window_start of the snapshot's own
 * lattice (INT64_MAX for no period). */
static void
assert_invariant(const struct tally__budget_snap *s)
{
	tally__lattice l = {s->period_count, s->period_unit, s->offset_min,
			    s->aligned != 0, s->anchor};
	int64_t start = 0, end = 0;

	tally__window(&l, s->window_start, &start, &end);
	assert_int_equal(end, s->window_end);
	assert_true(s->window_start < s->window_end);
	if (s->period_unit == TALLY_PERIOD_NONE)
		assert_int_equal(s->window_end, INT64_MAX);
}

static void
assert_snap_equal(const struct tally__budget_snap *a,
		  const struct tally__budget_snap *b)
{
	assert_int_equal(a->version, b->version);
	assert_int_equal(a->usage, b->usage);
	assert_int_equal(a->window_start, b->window_start);
	assert_int_equal(a->window_end, b->window_end);
	assert_int_equal(a->max_limit, b->max_limit);
	assert_int_equal(a->period_count, b->period_count);
	assert_int_equal(a->period_unit, b->period_unit);
	assert_int_equal(a->anchor, b->anchor);
	assert_int_equal(a->offset_min, b->offset_min);
	assert_int_equal(a->aligned, b->aligned);
}

static struct bres
run(const struct tally__budget_snap *old, struct tally__args *a)
{
	struct bres r;

	memset(&r, 0x5a, sizeof r);
	r.install = true; /* the transition must clear it */
	r.rolls.n = 0;
	r.rc = tally__budget_step(old, &r.next, a, &r.rolls, &r.install);
	assert_invariant(&r.next);
	assert_true(r.rolls.n <= 1);
	return r;
}

static struct bres
op(const struct tally__budget_snap *old, enum tally__op_code code, int64_t now,
   int64_t amount)
{
	struct tally__args a;

	memset(&a, 0, sizeof a);
	a.op = code;
	a.now = now;
	a.amount[0] = amount;
	return run(old, &a);
}

static struct bres
reset(const struct tally__budget_snap *old, int64_t now, uint64_t version)
{
	struct tally__args a;

	memset(&a, 0, sizeof a);
	a.op = TALLY__OP_RESET;
	a.now = now;
	a.observed_version = version;
	return run(old, &a);
}

static struct bres
upsert(const struct tally__budget_snap *old, int64_t now,
       const tally_budget_config *cfg)
{
	struct tally__args a;

	memset(&a, 0, sizeof a);
	a.op = TALLY__OP_UPSERT;
	a.now = now;
	a.config = cfg;
	return run(old, &a);
}

static void
assert_note(const struct tally__roll_note *n, int64_t usage_before,
	    int64_t old_start, int64_t new_start)
{
	assert_int_equal(n->counter, TALLY_COUNTER_BUDGET);
	assert_int_equal(n->usage_before, usage_before);
	assert_int_equal(n->old_window_start, old_start);
	assert_int_equal(n->new_window_start, new_start);
}

/* A bump of 0 at t: rolls when due. Asserts whether it rolled and, if so,
 * the new window; returns the successor. */
static struct tally__budget_snap
bump_at(const struct tally__budget_snap *s, int64_t t, bool want_roll,
	int64_t want_start, int64_t want_end)
{
	struct bres r = op(s, TALLY__OP_BUMP, t, 1);

	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, want_roll ? 1u : 0u);
	if (want_roll) {
		assert_note(&r.rolls.note[0], s->usage, s->window_start,
			    want_start);
		assert_int_equal(r.next.usage, 1);
	} else {
		assert_int_equal(r.next.usage, s->usage + 1);
	}
	assert_int_equal(r.next.window_start, want_start);
	assert_int_equal(r.next.window_end, want_end);
	return r.next;
}

/* ------------------------------------------------------------------------ */
/* init                                                                     */
/* ------------------------------------------------------------------------ */

static void
test_init(void **state)
{
	int64_t now = T(2024, 1, 15, 12, 34, 56);
	tally_budget_config c = bcfg(100, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s = mk(&c, now);

	(void)state;
	assert_int_equal(s.usage, 0);
	assert_int_equal(s.max_limit, 100);
	assert_int_equal(s.period_count, H);
	assert_int_equal(s.period_unit, TALLY_PERIOD_FIXED);
	assert_int_equal(s.anchor, now); /* default: creation time */
	assert_int_equal(s.offset_min, 0);
	assert_int_equal(s.aligned, 1);
	assert_int_equal(s.window_start, T(2024, 1, 15, 12, 0, 0));
	assert_int_equal(s.window_end, T(2024, 1, 15, 13, 0, 0));
	assert_invariant(&s);

	/* Rolling from the creation time. */
	c = bcfg(7, "1h", false, 0, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, now);
	assert_int_equal(s.aligned, 0);
	assert_int_equal(s.anchor, now);
	assert_int_equal(s.window_start, now);
	assert_int_equal(s.window_end, now + H);

	/* Rolling from an explicit anchor. */
	c = bcfg(7, "1h", false, 0, T(2024, 1, 15, 10, 15, 0));
	s = mk(&c, now);
	assert_int_equal(s.anchor, T(2024, 1, 15, 10, 15, 0));
	assert_int_equal(s.window_start, T(2024, 1, 15, 12, 15, 0));
	assert_int_equal(s.window_end, T(2024, 1, 15, 13, 15, 0));

	/* An anchor in the future: the lattice extends backwards. */
	c = bcfg(7, "1d", false, 0, T(2024, 3, 1, 6, 0, 0));
	s = mk(&c, now);
	assert_int_equal(s.window_start, T(2024, 1, 15, 6, 0, 0));
	assert_int_equal(s.window_end, T(2024, 1, 16, 6, 0, 0));

	/* Offset and week/month units are stored as given. */
	c = bcfg(0, "3M", true, -300, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, now);
	assert_int_equal(s.offset_min, -300);
	assert_int_equal(s.period_count, 3);
	assert_int_equal(s.period_unit, TALLY_PERIOD_MONTH);
	assert_int_equal(s.max_limit, 0);
	assert_int_equal(s.window_start, T(2024, 1, 1, 5, 0, 0));
	assert_int_equal(s.window_end, T(2024, 4, 1, 5, 0, 0));
}

/* ------------------------------------------------------------------------ */
/* get, bump                                                                */
/* ------------------------------------------------------------------------ */

static void
test_get_copies_and_never_rolls(void **state)
{
	tally_budget_config c = bcfg(100, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s = mk(&c, T(2024, 1, 15, 12, 34, 56));
	struct bres r;

	(void)state;
	s.usage = 42;
	s.version = 77;
	r = op(&s, TALLY__OP_GET, T(2024, 1, 15, 12, 40, 0), 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_snap_equal(&r.next, &s);

	/* Due: get shows the record as stored. */
	r = op(&s, TALLY__OP_GET, T(2024, 1, 16, 0, 0, 0), 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_snap_equal(&r.next, &s);
}

static void
test_bump_adds_and_never_refuses(void **state)
{
	int64_t now = T(2024, 1, 15, 12, 34, 56);
	tally_budget_config c = bcfg(10, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s = mk(&c, now);
	struct bres r;

	(void)state;
	s.version = 5;
	r = op(&s, TALLY__OP_BUMP, now, 7);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_int_equal(r.next.usage, 7);
	assert_int_equal(r.next.window_start, s.window_start);
	assert_int_equal(r.next.window_end, s.window_end);
	assert_int_equal(r.next.max_limit, 10);

	/* Over the limit: still added. */
	s = r.next;
	r = op(&s, TALLY__OP_BUMP, now + 1, 100);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.next.usage, 107);

	/* Already over the limit: still added. */
	s = r.next;
	r = op(&s, TALLY__OP_BUMP, now + 2, 1);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.next.usage, 108);

	/* max 0 never refuses a bump either. */
	c.max_limit = 0;
	s = mk(&c, now);
	r = op(&s, TALLY__OP_BUMP, now, 3);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.next.usage, 3);
}

static void
test_bump_zero_nothing_due_no_install(void **state)
{
	int64_t now = T(2024, 1, 15, 12, 34, 56);
	tally_budget_config c = bcfg(10, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s = mk(&c, now);
	struct bres r;

	(void)state;
	s.usage = 4;
	r = op(&s, TALLY__OP_BUMP, now, 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_snap_equal(&r.next, &s);

	/* The last nanosecond of the window is not due. */
	r = op(&s, TALLY__OP_BUMP, T(2024, 1, 15, 13, 0, 0) - 1, 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
}

static void
test_bump_rolls_due_window_first(void **state)
{
	int64_t now = T(2024, 1, 15, 12, 34, 56);
	tally_budget_config c = bcfg(10, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s = mk(&c, now);
	struct bres r;

	(void)state;
	s.usage = 50;
	r = op(&s, TALLY__OP_BUMP, T(2024, 1, 15, 13, 0, 0), 5);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r.rolls.note[0], 50, T(2024, 1, 15, 12, 0, 0),
		    T(2024, 1, 15, 13, 0, 0));
	assert_int_equal(r.next.usage, 5);
	assert_int_equal(r.next.window_start, T(2024, 1, 15, 13, 0, 0));
	assert_int_equal(r.next.window_end, T(2024, 1, 15, 14, 0, 0));

	/* A bump of 0 that rolls is a write. */
	r = op(&s, TALLY__OP_BUMP, T(2024, 1, 15, 13, 59, 59), 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r.rolls.note[0], 50, T(2024, 1, 15, 12, 0, 0),
		    T(2024, 1, 15, 13, 0, 0));
	assert_int_equal(r.next.usage, 0);

	/* Usage 0 before the roll: still a roll, with usage_before 0. */
	s.usage = 0;
	r = op(&s, TALLY__OP_BUMP, T(2024, 1, 15, 13, 0, 1), 2);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r.rolls.note[0], 0, T(2024, 1, 15, 12, 0, 0),
		    T(2024, 1, 15, 13, 0, 0));
	assert_int_equal(r.next.usage, 2);
}

static void
test_bump_overflow(void **state)
{
	int64_t now = T(2024, 1, 15, 12, 34, 56);
	tally_budget_config c = bcfg(10, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s = mk(&c, now);
	struct bres r;

	(void)state;
	s.usage = INT64_MAX - 5;
	r = op(&s, TALLY__OP_BUMP, now, 6);
	assert_int_equal(r.rc, TALLY_EOVERFLOW);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);

	r = op(&s, TALLY__OP_BUMP, now, INT64_MAX);
	assert_int_equal(r.rc, TALLY_EOVERFLOW);
	assert_false(r.install);

	r = op(&s, TALLY__OP_BUMP, now, 5);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.next.usage, INT64_MAX);

	s = r.next;
	r = op(&s, TALLY__OP_BUMP, now, 1);
	assert_int_equal(r.rc, TALLY_EOVERFLOW);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);

	/* The due window rolls first, so the sum fits again. */
	r = op(&s, TALLY__OP_BUMP, T(2024, 1, 15, 13, 0, 0), INT64_MAX);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r.rolls.note[0], INT64_MAX, T(2024, 1, 15, 12, 0, 0),
		    T(2024, 1, 15, 13, 0, 0));
	assert_int_equal(r.next.usage, INT64_MAX);
}

/* ------------------------------------------------------------------------ */
/* check                                                                    */
/* ------------------------------------------------------------------------ */

static void
test_check(void **state)
{
	int64_t now = T(2024, 1, 15, 12, 34, 56);
	tally_budget_config c = bcfg(10, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s = mk(&c, now);
	struct bres r;

	(void)state;
	s.usage = 9;
	r = op(&s, TALLY__OP_CHECK, now, 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_int_equal(r.next.usage, 9);

	s.usage = 10; /* exactly at the limit blocks */
	r = op(&s, TALLY__OP_CHECK, now, 0);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_false(r.install);

	s.usage = 11;
	r = op(&s, TALLY__OP_CHECK, now, 0);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_false(r.install);

	s.usage = INT64_MAX;
	r = op(&s, TALLY__OP_CHECK, now, 0);
	assert_int_equal(r.rc, TALLY_LIMITED);

	/* A due window counts as rolled; check still never installs. */
	s.usage = 500;
	r = op(&s, TALLY__OP_CHECK, T(2024, 1, 15, 13, 0, 0), 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_int_equal(r.next.usage, 0);
	assert_int_equal(r.next.window_start, T(2024, 1, 15, 13, 0, 0));
	assert_int_equal(r.next.window_end, T(2024, 1, 15, 14, 0, 0));

	/* The last nanosecond before the boundary is not due. */
	r = op(&s, TALLY__OP_CHECK, T(2024, 1, 15, 13, 0, 0) - 1, 0);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_int_equal(r.next.usage, 500);
	assert_int_equal(r.next.window_start, T(2024, 1, 15, 12, 0, 0));

	/* max 0 always blocks, rolled or not. */
	c.max_limit = 0;
	s = mk(&c, now);
	r = op(&s, TALLY__OP_CHECK, now, 0);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_false(r.install);
	r = op(&s, TALLY__OP_CHECK, T(2024, 2, 1, 0, 0, 0), 0);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_false(r.install);
	assert_int_equal(r.next.usage, 0);
}

/* ------------------------------------------------------------------------ */
/* try_consume                                                              */
/* ------------------------------------------------------------------------ */

static void
test_try_consume(void **state)
{
	int64_t now = T(2024, 1, 15, 12, 34, 56);
	tally_budget_config c = bcfg(100, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s = mk(&c, now);
	struct bres r;

	(void)state;
	s.usage = 60;
	r = op(&s, TALLY__OP_TRY, now, 40); /* 60 + 40 <= 100 */
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_int_equal(r.next.usage, 100);
	assert_int_equal(r.next.window_start, s.window_start);

	r = op(&s, TALLY__OP_TRY, now, 41); /* 101 > 100 */
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_int_equal(r.next.usage, 60);

	r = op(&s, TALLY__OP_TRY, now, INT64_MAX);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_false(r.install);

	/* Amount 0 with nothing due: OK, nothing to install. */
	r = op(&s, TALLY__OP_TRY, now, 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_snap_equal(&r.next, &s);

	/* At the limit: 0 fits, 1 does not. */
	s.usage = 100;
	r = op(&s, TALLY__OP_TRY, now, 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(r.install);
	r = op(&s, TALLY__OP_TRY, now, 1);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_false(r.install);

	/* Over the limit (a bump pushed it): even 0 does not fit. */
	s.usage = 150;
	r = op(&s, TALLY__OP_TRY, now, 0);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_false(r.install);

	/* Due: rolls first, then takes, in one transition. */
	r = op(&s, TALLY__OP_TRY, T(2024, 1, 15, 13, 30, 0), 100);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r.rolls.note[0], 150, T(2024, 1, 15, 12, 0, 0),
		    T(2024, 1, 15, 13, 0, 0));
	assert_int_equal(r.next.usage, 100);
	assert_int_equal(r.next.window_start, T(2024, 1, 15, 13, 0, 0));

	/* Due and amount 0: the roll alone is installed. */
	r = op(&s, TALLY__OP_TRY, T(2024, 1, 15, 13, 30, 0), 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 1);
	assert_int_equal(r.next.usage, 0);

	/* Due but does not fit even after the roll: nothing taken, not even
	 * the roll; next shows the effective (rolled) state for the view. */
	r = op(&s, TALLY__OP_TRY, T(2024, 1, 15, 13, 30, 0), 101);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_int_equal(r.next.usage, 0);
	assert_int_equal(r.next.window_start, T(2024, 1, 15, 13, 0, 0));

	/* max 0: only 0 fits. */
	c.max_limit = 0;
	s = mk(&c, now);
	r = op(&s, TALLY__OP_TRY, now, 1);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_false(r.install);
	r = op(&s, TALLY__OP_TRY, now, 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(r.install);

	/* A huge max: no overflow, the limit decides. */
	c.max_limit = INT64_MAX;
	s = mk(&c, now);
	s.usage = INT64_MAX - 1;
	r = op(&s, TALLY__OP_TRY, now, 1);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.next.usage, INT64_MAX);
	s = r.next;
	r = op(&s, TALLY__OP_TRY, now, 1);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_false(r.install);
	r = op(&s, TALLY__OP_TRY, now, INT64_MAX);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_false(r.install);
}

/* ------------------------------------------------------------------------ */
/* reset                                                                    */
/* ------------------------------------------------------------------------ */

static void
test_reset(void **state)
{
	int64_t now = T(2024, 1, 15, 12, 34, 56);
	tally_budget_config c = bcfg(100, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s = mk(&c, now);
	struct bres r;

	(void)state;
	s.usage = 70;
	s.version = UINT64_C(0x100000007);

	/* Wrong version: CONFLICT, nothing changes. */
	r = reset(&s, now, UINT64_C(0x100000006));
	assert_int_equal(r.rc, TALLY_CONFLICT);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_snap_equal(&r.next, &s);
	r = reset(&s, now, 0);
	assert_int_equal(r.rc, TALLY_CONFLICT);
	assert_false(r.install);
	r = reset(&s, now, UINT64_C(0x7)); /* same low bits */
	assert_int_equal(r.rc, TALLY_CONFLICT);

	/* Right version, same window. */
	r = reset(&s, T(2024, 1, 15, 12, 50, 0), s.version);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r.rolls.note[0], 70, T(2024, 1, 15, 12, 0, 0),
		    T(2024, 1, 15, 12, 0, 0));
	assert_int_equal(r.next.usage, 0);
	assert_int_equal(r.next.window_start, T(2024, 1, 15, 12, 0, 0));
	assert_int_equal(r.next.window_end, T(2024, 1, 15, 13, 0, 0));
	assert_int_equal(r.next.max_limit, 100);

	/* Right version, two windows later: the window of now (a boundary,
	 * never now itself). */
	r = reset(&s, T(2024, 1, 15, 14, 20, 0), s.version);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r.rolls.note[0], 70, T(2024, 1, 15, 12, 0, 0),
		    T(2024, 1, 15, 14, 0, 0));
	assert_int_equal(r.next.usage, 0);
	assert_int_equal(r.next.window_start, T(2024, 1, 15, 14, 0, 0));
	assert_int_equal(r.next.window_end, T(2024, 1, 15, 15, 0, 0));

	/* Usage already 0: still a reset, reported with usage_before 0. */
	s.usage = 0;
	r = reset(&s, now, s.version);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r.rolls.note[0], 0, T(2024, 1, 15, 12, 0, 0),
		    T(2024, 1, 15, 12, 0, 0));

	/* The clock went backwards: the window is kept. */
	s.usage = 33;
	r = reset(&s, T(2024, 1, 15, 9, 0, 0), s.version);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r.rolls.note[0], 33, T(2024, 1, 15, 12, 0, 0),
		    T(2024, 1, 15, 12, 0, 0));
	assert_int_equal(r.next.usage, 0);
	assert_int_equal(r.next.window_start, T(2024, 1, 15, 12, 0, 0));
	assert_int_equal(r.next.window_end, T(2024, 1, 15, 13, 0, 0));

	/* Far backwards (before 1970). */
	r = reset(&s, T(1960, 6, 1, 0, 0, 0), s.version);
	assert_int_equal(r.rc, TALLY_OK);
	assert_int_equal(r.next.window_start, T(2024, 1, 15, 12, 0, 0));
	assert_int_equal(r.next.window_end, T(2024, 1, 15, 13, 0, 0));

	/* No period: window_start stays the anchor. */
	c = bcfg(100, "none", false, 0, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, now);
	s.usage = 9;
	r = reset(&s, T(2030, 1, 1, 0, 0, 0), s.version);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r.rolls.note[0], 9, now, now);
	assert_int_equal(r.next.usage, 0);
	assert_int_equal(r.next.window_start, now);
	assert_int_equal(r.next.window_end, INT64_MAX);
}

/* ------------------------------------------------------------------------ */
/* roll (sweep), missed windows, time going backwards                       */
/* ------------------------------------------------------------------------ */

static void
test_roll_only_when_due(void **state)
{
	int64_t now = T(2024, 1, 15, 12, 34, 56);
	tally_budget_config c = bcfg(100, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s = mk(&c, now);
	struct bres r;

	(void)state;
	s.usage = 12;
	r = op(&s, TALLY__OP_ROLL, T(2024, 1, 15, 12, 59, 59), 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_snap_equal(&r.next, &s);

	r = op(&s, TALLY__OP_ROLL, T(2024, 1, 15, 13, 0, 0) - 1, 0);
	assert_false(r.install);

	r = op(&s, TALLY__OP_ROLL, T(2024, 1, 15, 13, 0, 0), 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r.rolls.note[0], 12, T(2024, 1, 15, 12, 0, 0),
		    T(2024, 1, 15, 13, 0, 0));
	assert_int_equal(r.next.usage, 0);
	assert_int_equal(r.next.window_start, T(2024, 1, 15, 13, 0, 0));
	assert_int_equal(r.next.window_end, T(2024, 1, 15, 14, 0, 0));

	/* Rolled once: the same instant is not due again. */
	s = r.next;
	r = op(&s, TALLY__OP_ROLL, T(2024, 1, 15, 13, 0, 0), 0);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
}

static void
test_missed_windows_collapse(void **state)
{
	int64_t now = T(2024, 1, 15, 12, 34, 56);
	tally_budget_config c = bcfg(100, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s = mk(&c, now);
	struct bres r;

	(void)state;
	s.usage = 9;
	r = op(&s, TALLY__OP_ROLL, T(2024, 1, 21, 5, 30, 0), 0);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r.rolls.note[0], 9, T(2024, 1, 15, 12, 0, 0),
		    T(2024, 1, 21, 5, 0, 0));
	assert_int_equal(r.next.window_end, T(2024, 1, 21, 6, 0, 0));

	r = op(&s, TALLY__OP_BUMP, T(2024, 1, 21, 5, 30, 0), 4);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r.rolls.note[0], 9, T(2024, 1, 15, 12, 0, 0),
		    T(2024, 1, 21, 5, 0, 0));
	assert_int_equal(r.next.usage, 4);

	/* Rolling 1d from the creation time. */
	c = bcfg(100, "1d", false, 0, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, now);
	s.usage = 3;
	r = op(&s, TALLY__OP_BUMP, T(2024, 1, 19, 8, 0, 0), 1);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r.rolls.note[0], 3, now, T(2024, 1, 18, 12, 34, 56));
	assert_int_equal(r.next.window_end, T(2024, 1, 19, 12, 34, 56));

	/* Aligned months: seven months in one roll. */
	c = bcfg(100, "1M", true, 0, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, now);
	s.usage = 8;
	r = op(&s, TALLY__OP_TRY, T(2024, 8, 17, 3, 0, 0), 1);
	assert_int_equal(r.rc, TALLY_OK);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r.rolls.note[0], 8, T(2024, 1, 1, 0, 0, 0),
		    T(2024, 8, 1, 0, 0, 0));
	assert_int_equal(r.next.window_end, T(2024, 9, 1, 0, 0, 0));
	assert_int_equal(r.next.usage, 1);
}

static void
test_time_backwards(void **state)
{
	int64_t now = T(2024, 1, 15, 12, 34, 56);
	tally_budget_config c = bcfg(100, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s = mk(&c, now);
	struct bres r;
	static const int64_t back[] = {0, 1, -1, INT64_MIN, INT64_MIN + 1};

	(void)state;
	/* Roll into the 14:00 window, then go back. */
	r = op(&s, TALLY__OP_BUMP, T(2024, 1, 15, 14, 10, 0), 6);
	assert_int_equal(r.rolls.n, 1);
	s = r.next;
	assert_int_equal(s.window_start, T(2024, 1, 15, 14, 0, 0));

	r = op(&s, TALLY__OP_BUMP, T(2024, 1, 15, 12, 30, 0), 4);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_int_equal(r.next.usage, 10);
	assert_int_equal(r.next.window_start, T(2024, 1, 15, 14, 0, 0));
	assert_int_equal(r.next.window_end, T(2024, 1, 15, 15, 0, 0));

	r = op(&s, TALLY__OP_CHECK, T(2024, 1, 15, 12, 30, 0), 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_int_equal(r.next.usage, 6);
	assert_int_equal(r.next.window_start, T(2024, 1, 15, 14, 0, 0));

	r = op(&s, TALLY__OP_ROLL, T(2024, 1, 15, 13, 59, 59), 0);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);

	r = op(&s, TALLY__OP_TRY, T(2024, 1, 15, 11, 0, 0), 94);
	assert_int_equal(r.rc, TALLY_OK);
	assert_int_equal(r.rolls.n, 0);
	assert_int_equal(r.next.usage, 100);
	assert_int_equal(r.next.window_start, T(2024, 1, 15, 14, 0, 0));

	for (size_t i = 0; i < sizeof back / sizeof back[0]; i++) {
		r = op(&s, TALLY__OP_BUMP, back[i], 1);
		assert_int_equal(r.rc, TALLY_OK);
		assert_int_equal(r.rolls.n, 0);
		assert_int_equal(r.next.usage, 7);
		assert_int_equal(r.next.window_start, s.window_start);
		assert_int_equal(r.next.window_end, s.window_end);
		r = op(&s, TALLY__OP_ROLL, back[i], 0);
		assert_false(r.install);
	}
}

/* ------------------------------------------------------------------------ */
/* upsert                                                                   */
/* ------------------------------------------------------------------------ */

static void
test_upsert_keeps_state(void **state)
{
	int64_t now = T(2024, 1, 15, 12, 34, 56);
	tally_budget_config c = bcfg(100, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s = mk(&c, now);
	struct bres r;

	(void)state;
	s.usage = 33;
	c = bcfg(500, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	r = upsert(&s, T(2024, 1, 15, 12, 50, 0), &c);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_int_equal(r.next.max_limit, 500);
	assert_int_equal(r.next.usage, 33);
	assert_int_equal(r.next.window_start, s.window_start);
	assert_int_equal(r.next.window_end, s.window_end);
	assert_int_equal(r.next.anchor, now); /* default keeps the anchor */

	/* Lower max below usage: usage stays (check will block). */
	c.max_limit = 0;
	r = upsert(&s, now, &c);
	assert_int_equal(r.next.usage, 33);
	assert_int_equal(r.next.max_limit, 0);

	/* An explicit anchor replaces the anchor. */
	c = bcfg(100, "1h", true, 0, T(2020, 2, 2, 2, 2, 2));
	r = upsert(&s, now, &c);
	assert_int_equal(r.next.anchor, T(2020, 2, 2, 2, 2, 2));
	assert_int_equal(r.next.window_start, s.window_start);

	/* Upsert never rolls, even when due. */
	c = bcfg(100, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	r = upsert(&s, T(2024, 1, 16, 0, 0, 0), &c);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_int_equal(r.next.usage, 33);
	assert_int_equal(r.next.window_start, T(2024, 1, 15, 12, 0, 0));
	s = r.next;
	r = op(&s, TALLY__OP_BUMP, T(2024, 1, 16, 0, 0, 0), 0);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r.rolls.note[0], 33, T(2024, 1, 15, 12, 0, 0),
		    T(2024, 1, 16, 0, 0, 0));
}

static void
test_upsert_rederives_window_end(void **state)
{
	int64_t now = T(2024, 1, 15, 15, 20, 0);
	tally_budget_config c = bcfg(100, "1d", true, 0, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s = mk(&c, now);
	struct bres r;

	(void)state;
	assert_int_equal(s.window_start, T(2024, 1, 15, 0, 0, 0));
	assert_int_equal(s.window_end, T(2024, 1, 16, 0, 0, 0));

	/* 1d -> 1h: the next hour after window_start. */
	c = bcfg(100, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	r = upsert(&s, now, &c);
	assert_int_equal(r.next.period_count, H);
	assert_int_equal(r.next.window_start, T(2024, 1, 15, 0, 0, 0));
	assert_int_equal(r.next.window_end, T(2024, 1, 15, 1, 0, 0));
	/* ...so the window is due now, and the next write rolls it. */
	{
		struct tally__budget_snap u = r.next;

		u.usage = 5;
		r = op(&u, TALLY__OP_BUMP, now, 1);
		assert_int_equal(r.rolls.n, 1);
		assert_note(&r.rolls.note[0], 5, T(2024, 1, 15, 0, 0, 0),
			    T(2024, 1, 15, 15, 0, 0));
		assert_int_equal(r.next.window_end, T(2024, 1, 15, 16, 0, 0));
	}

	/* 1h -> 1d from an hour window. */
	c = bcfg(100, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, now);
	c = bcfg(100, "1d", true, 0, TALLY_ANCHOR_DEFAULT);
	r = upsert(&s, now, &c);
	assert_int_equal(r.next.window_start, T(2024, 1, 15, 15, 0, 0));
	assert_int_equal(r.next.window_end, T(2024, 1, 16, 0, 0, 0));

	/* 1d -> 1M aligned. */
	c = bcfg(100, "1M", true, 0, TALLY_ANCHOR_DEFAULT);
	r = upsert(&s, now, &c);
	assert_int_equal(r.next.window_end, T(2024, 2, 1, 0, 0, 0));

	/* Offset change: the next local midnight (+60: 23:00 UTC). */
	c = bcfg(100, "1d", true, 0, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, now);
	c = bcfg(100, "1d", true, 60, TALLY_ANCHOR_DEFAULT);
	r = upsert(&s, now, &c);
	assert_int_equal(r.next.offset_min, 60);
	assert_int_equal(r.next.window_start, T(2024, 1, 15, 0, 0, 0));
	assert_int_equal(r.next.window_end, T(2024, 1, 15, 23, 0, 0));

	/* Rolling 1d -> rolling 1h keeps the creation anchor. */
	c = bcfg(100, "1d", false, 0, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, now);
	assert_int_equal(s.window_start, now);
	c = bcfg(100, "1h", false, 0, TALLY_ANCHOR_DEFAULT);
	r = upsert(&s, now, &c);
	assert_int_equal(r.next.anchor, now);
	assert_int_equal(r.next.window_end, now + H);

	/* A new anchor moves the lattice: next boundary of the new one. */
	c = bcfg(100, "1h", false, 0, T(2024, 1, 15, 0, 10, 0));
	r = upsert(&s, now, &c);
	assert_int_equal(r.next.window_start, now);
	assert_int_equal(r.next.window_end, T(2024, 1, 15, 16, 10, 0));

	/* Aligned -> rolling. */
	c = bcfg(100, "1d", true, 0, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, now); /* anchor 15:20, start midnight */
	c = bcfg(100, "1d", false, 0, TALLY_ANCHOR_DEFAULT);
	r = upsert(&s, now, &c);
	assert_int_equal(r.next.aligned, 0);
	assert_int_equal(r.next.window_start, T(2024, 1, 15, 0, 0, 0));
	assert_int_equal(r.next.window_end, T(2024, 1, 15, 15, 20, 0));

	/* To no period: never ends. Back to 1h: the next hour after. */
	c = bcfg(100, "none", false, 0, TALLY_ANCHOR_DEFAULT);
	r = upsert(&s, now, &c);
	assert_int_equal(r.next.period_unit, TALLY_PERIOD_NONE);
	assert_int_equal(r.next.window_start, T(2024, 1, 15, 0, 0, 0));
	assert_int_equal(r.next.window_end, INT64_MAX);
	s = r.next;
	r = op(&s, TALLY__OP_ROLL, T(2099, 1, 1, 0, 0, 0), 0);
	assert_false(r.install);
	c = bcfg(100, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	r = upsert(&s, now, &c);
	assert_int_equal(r.next.window_start, T(2024, 1, 15, 0, 0, 0));
	assert_int_equal(r.next.window_end, T(2024, 1, 15, 1, 0, 0));

	/* A budget created without a period: window_start is the anchor. */
	c = bcfg(100, "none", false, 0, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, now);
	c = bcfg(100, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	r = upsert(&s, now, &c);
	assert_int_equal(r.next.window_start, now);
	assert_int_equal(r.next.window_end, T(2024, 1, 15, 16, 0, 0));
}

/* ------------------------------------------------------------------------ */
/* Calendar cases through the transitions                                   */
/* ------------------------------------------------------------------------ */

static void
test_calendar_month_aligned(void **state)
{
	tally_budget_config c = bcfg(100, "1M", true, 0, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s;

	(void)state;
	/* 2023, not a leap year: Jan 31 + 30 days is Mar 2. */
	s = mk(&c, T(2023, 1, 31, 23, 0, 0));
	assert_int_equal(s.window_start, T(2023, 1, 1, 0, 0, 0));
	assert_int_equal(s.window_end, T(2023, 2, 1, 0, 0, 0));
	s = bump_at(&s, T(2023, 1, 31, 23, 59, 59), false,
		    T(2023, 1, 1, 0, 0, 0), T(2023, 2, 1, 0, 0, 0));
	s = bump_at(&s, T(2023, 2, 1, 0, 0, 0) - 1, false,
		    T(2023, 1, 1, 0, 0, 0), T(2023, 2, 1, 0, 0, 0));
	s = bump_at(&s, T(2023, 2, 1, 0, 0, 0), true, T(2023, 2, 1, 0, 0, 0),
		    T(2023, 3, 1, 0, 0, 0));
	s = bump_at(&s, T(2023, 2, 28, 23, 59, 59), false,
		    T(2023, 2, 1, 0, 0, 0), T(2023, 3, 1, 0, 0, 0));
	s = bump_at(&s, T(2023, 3, 1, 0, 0, 0), true, T(2023, 3, 1, 0, 0, 0),
		    T(2023, 4, 1, 0, 0, 0));
	s = bump_at(&s, T(2023, 3, 2, 0, 0, 0), false, T(2023, 3, 1, 0, 0, 0),
		    T(2023, 4, 1, 0, 0, 0));
	s = bump_at(&s, T(2023, 3, 31, 23, 59, 59), false,
		    T(2023, 3, 1, 0, 0, 0), T(2023, 4, 1, 0, 0, 0));
	s = bump_at(&s, T(2023, 4, 1, 0, 0, 0), true, T(2023, 4, 1, 0, 0, 0),
		    T(2023, 5, 1, 0, 0, 0));

	/* 2024, a leap year: Feb 29 belongs to February. */
	s = mk(&c, T(2024, 2, 10, 0, 0, 0));
	assert_int_equal(s.window_end, T(2024, 3, 1, 0, 0, 0));
	s = bump_at(&s, T(2024, 2, 29, 0, 0, 0), false, T(2024, 2, 1, 0, 0, 0),
		    T(2024, 3, 1, 0, 0, 0));
	s = bump_at(&s, T(2024, 2, 29, 23, 59, 59), false,
		    T(2024, 2, 1, 0, 0, 0), T(2024, 3, 1, 0, 0, 0));
	s = bump_at(&s, T(2024, 3, 1, 0, 0, 0), true, T(2024, 3, 1, 0, 0, 0),
		    T(2024, 4, 1, 0, 0, 0));

	/* 2100 is not a leap year; 2000 was. */
	s = mk(&c, T(2100, 2, 28, 12, 0, 0));
	assert_int_equal(s.window_end, T(2100, 3, 1, 0, 0, 0));
	assert_int_equal(s.window_end - s.window_start, 28 * D);
	s = mk(&c, T(2000, 2, 28, 12, 0, 0));
	assert_int_equal(s.window_end - s.window_start, 29 * D);

	/* Year end. */
	s = mk(&c, T(2024, 12, 5, 0, 0, 0));
	s = bump_at(&s, T(2024, 12, 31, 23, 59, 59), false,
		    T(2024, 12, 1, 0, 0, 0), T(2025, 1, 1, 0, 0, 0));
	s = bump_at(&s, T(2025, 1, 1, 0, 0, 0), true, T(2025, 1, 1, 0, 0, 0),
		    T(2025, 2, 1, 0, 0, 0));
}

static void
test_calendar_quarter_year(void **state)
{
	tally_budget_config c = bcfg(100, "1Q", true, 0, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s;

	(void)state;
	s = mk(&c, T(2024, 2, 10, 0, 0, 0));
	assert_int_equal(s.window_start, T(2024, 1, 1, 0, 0, 0));
	assert_int_equal(s.window_end, T(2024, 4, 1, 0, 0, 0));
	s = bump_at(&s, T(2024, 3, 31, 23, 59, 59), false,
		    T(2024, 1, 1, 0, 0, 0), T(2024, 4, 1, 0, 0, 0));
	s = bump_at(&s, T(2024, 4, 1, 0, 0, 0), true, T(2024, 4, 1, 0, 0, 0),
		    T(2024, 7, 1, 0, 0, 0));
	s = bump_at(&s, T(2024, 7, 1, 0, 0, 0), true, T(2024, 7, 1, 0, 0, 0),
		    T(2024, 10, 1, 0, 0, 0));
	s = bump_at(&s, T(2024, 10, 1, 0, 0, 0), true, T(2024, 10, 1, 0, 0, 0),
		    T(2025, 1, 1, 0, 0, 0));
	s = bump_at(&s, T(2025, 1, 1, 0, 0, 0), true, T(2025, 1, 1, 0, 0, 0),
		    T(2025, 4, 1, 0, 0, 0));
	/* Two quarters missed: one roll to the latest. */
	s = bump_at(&s, T(2025, 11, 15, 0, 0, 0), true, T(2025, 10, 1, 0, 0, 0),
		    T(2026, 1, 1, 0, 0, 0));

	/* Years, and 6M = Jan and Jul. */
	c = bcfg(100, "1Y", true, 0, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, T(2024, 6, 1, 0, 0, 0));
	assert_int_equal(s.window_start, T(2024, 1, 1, 0, 0, 0));
	assert_int_equal(s.window_end, T(2025, 1, 1, 0, 0, 0));
	s = bump_at(&s, T(2024, 12, 31, 23, 59, 59), false,
		    T(2024, 1, 1, 0, 0, 0), T(2025, 1, 1, 0, 0, 0));
	s = bump_at(&s, T(2025, 1, 1, 0, 0, 0), true, T(2025, 1, 1, 0, 0, 0),
		    T(2026, 1, 1, 0, 0, 0));

	c = bcfg(100, "6M", true, 0, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, T(2024, 5, 1, 0, 0, 0));
	assert_int_equal(s.window_start, T(2024, 1, 1, 0, 0, 0));
	assert_int_equal(s.window_end, T(2024, 7, 1, 0, 0, 0));
	s = bump_at(&s, T(2024, 9, 1, 0, 0, 0), true, T(2024, 7, 1, 0, 0, 0),
		    T(2025, 1, 1, 0, 0, 0));

	/* Year end with an offset of -5h: the local new year is 05:00 UTC. */
	c = bcfg(100, "1Y", true, -300, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, T(2024, 6, 1, 0, 0, 0));
	assert_int_equal(s.window_start, T(2024, 1, 1, 5, 0, 0));
	assert_int_equal(s.window_end, T(2025, 1, 1, 5, 0, 0));
	s = bump_at(&s, T(2025, 1, 1, 4, 59, 59), false, T(2024, 1, 1, 5, 0, 0),
		    T(2025, 1, 1, 5, 0, 0));
	s = bump_at(&s, T(2025, 1, 1, 5, 0, 0), true, T(2025, 1, 1, 5, 0, 0),
		    T(2026, 1, 1, 5, 0, 0));
}

static void
test_calendar_weeks(void **state)
{
	tally_budget_config c = bcfg(100, "1w", true, 0, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s;
	int64_t weeks;

	(void)state;
	/* 2024-01-01 was a Monday, so Jan 29 and Feb 5 are Mondays. Created
	 * on Wednesday Jan 31. */
	s = mk(&c, T(2024, 1, 31, 10, 0, 0));
	assert_int_equal(s.window_start, T(2024, 1, 29, 0, 0, 0));
	assert_int_equal(s.window_end, T(2024, 2, 5, 0, 0, 0));
	s = bump_at(&s, T(2024, 2, 4, 23, 59, 59), false,
		    T(2024, 1, 29, 0, 0, 0), T(2024, 2, 5, 0, 0, 0));
	s = bump_at(&s, T(2024, 2, 5, 0, 0, 0), true, T(2024, 2, 5, 0, 0, 0),
		    T(2024, 2, 12, 0, 0, 0));
	/* Across the year end: 2024-12-30 is a Monday. */
	s = bump_at(&s, T(2025, 1, 1, 0, 0, 0), true, T(2024, 12, 30, 0, 0, 0),
		    T(2025, 1, 6, 0, 0, 0));

	/* Monday midnight local with +330. */
	c = bcfg(100, "1w", true, 330, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, T(2024, 1, 31, 10, 0, 0));
	assert_int_equal(s.window_start, T(2024, 1, 28, 18, 30, 0));
	assert_int_equal(s.window_end, T(2024, 2, 4, 18, 30, 0));

	/* 2w counts from Monday 1970-01-05 (day 4). */
	c = bcfg(100, "2w", true, 0, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, T(2024, 1, 31, 10, 0, 0));
	weeks = (test_days(2024, 1, 29) - 4) / 7;
	if (weeks % 2 == 0) {
		assert_int_equal(s.window_start, T(2024, 1, 29, 0, 0, 0));
		assert_int_equal(s.window_end, T(2024, 2, 12, 0, 0, 0));
	} else {
		assert_int_equal(s.window_start, T(2024, 1, 22, 0, 0, 0));
		assert_int_equal(s.window_end, T(2024, 2, 5, 0, 0, 0));
	}
}

static void
test_calendar_offsets(void **state)
{
	tally_budget_config c =
		bcfg(100, "1d", true, 330, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s;

	(void)state;
	/* +05:30: local midnight is 18:30 UTC the day before. */
	s = mk(&c, T(2024, 3, 10, 12, 0, 0));
	assert_int_equal(s.window_start, T(2024, 3, 9, 18, 30, 0));
	assert_int_equal(s.window_end, T(2024, 3, 10, 18, 30, 0));
	s = bump_at(&s, T(2024, 3, 10, 18, 29, 59), false,
		    T(2024, 3, 9, 18, 30, 0), T(2024, 3, 10, 18, 30, 0));
	s = bump_at(&s, T(2024, 3, 10, 18, 30, 0), true,
		    T(2024, 3, 10, 18, 30, 0), T(2024, 3, 11, 18, 30, 0));
	/* UTC midnight is not a boundary. */
	s = bump_at(&s, T(2024, 3, 11, 0, 0, 0), false,
		    T(2024, 3, 10, 18, 30, 0), T(2024, 3, 11, 18, 30, 0));

	/* -05:00: local midnight is 05:00 UTC. */
	c = bcfg(100, "1d", true, -300, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, T(2024, 3, 10, 3, 0, 0)); /* local Mar 9 22:00 */
	assert_int_equal(s.window_start, T(2024, 3, 9, 5, 0, 0));
	assert_int_equal(s.window_end, T(2024, 3, 10, 5, 0, 0));
	s = bump_at(&s, T(2024, 3, 10, 4, 59, 59), false,
		    T(2024, 3, 9, 5, 0, 0), T(2024, 3, 10, 5, 0, 0));
	s = bump_at(&s, T(2024, 3, 10, 5, 0, 0), true, T(2024, 3, 10, 5, 0, 0),
		    T(2024, 3, 11, 5, 0, 0));

	/* Month boundary with +330: Feb 1 local is Jan 31 18:30 UTC. */
	c = bcfg(100, "1M", true, 330, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, T(2024, 1, 20, 0, 0, 0));
	assert_int_equal(s.window_start, T(2023, 12, 31, 18, 30, 0));
	assert_int_equal(s.window_end, T(2024, 1, 31, 18, 30, 0));
	s = bump_at(&s, T(2024, 1, 31, 18, 30, 0), true,
		    T(2024, 1, 31, 18, 30, 0), T(2024, 2, 29, 18, 30, 0));

	/* Year end with -300 through 1d: Jan 1 local starts 05:00 UTC. */
	c = bcfg(100, "1d", true, -300, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, T(2024, 12, 31, 20, 0, 0));
	assert_int_equal(s.window_start, T(2024, 12, 31, 5, 0, 0));
	s = bump_at(&s, T(2025, 1, 1, 0, 0, 0), false, T(2024, 12, 31, 5, 0, 0),
		    T(2025, 1, 1, 5, 0, 0));
	s = bump_at(&s, T(2025, 1, 1, 5, 0, 0), true, T(2025, 1, 1, 5, 0, 0),
		    T(2025, 1, 2, 5, 0, 0));

	/* Extremes of the allowed offset. */
	c = bcfg(100, "1d", true, 1439, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, T(2024, 3, 10, 12, 0, 0));
	assert_int_equal(s.window_start, T(2024, 3, 10, 0, 1, 0));
	c = bcfg(100, "1d", true, -1439, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, T(2024, 3, 10, 12, 0, 0));
	assert_int_equal(s.window_start, T(2024, 3, 9, 23, 59, 0));
}

static void
test_calendar_month_rolling(void **state)
{
	tally_budget_config c =
		bcfg(100, "1M", false, 0, T(2023, 1, 31, 10, 0, 0));
	struct tally__budget_snap s;

	(void)state;
	/* Jan 31 -> Feb 28 -> Mar 31 -> Apr 30 -> May 31: no drift. */
	s = mk(&c, T(2023, 2, 10, 0, 0, 0));
	assert_int_equal(s.window_start, T(2023, 1, 31, 10, 0, 0));
	assert_int_equal(s.window_end, T(2023, 2, 28, 10, 0, 0));
	s = bump_at(&s, T(2023, 2, 28, 10, 0, 0) - 1, false,
		    T(2023, 1, 31, 10, 0, 0), T(2023, 2, 28, 10, 0, 0));
	s = bump_at(&s, T(2023, 2, 28, 10, 0, 0), true,
		    T(2023, 2, 28, 10, 0, 0), T(2023, 3, 31, 10, 0, 0));
	s = bump_at(&s, T(2023, 3, 28, 10, 0, 0), false,
		    T(2023, 2, 28, 10, 0, 0), T(2023, 3, 31, 10, 0, 0));
	s = bump_at(&s, T(2023, 3, 31, 10, 0, 0), true,
		    T(2023, 3, 31, 10, 0, 0), T(2023, 4, 30, 10, 0, 0));
	s = bump_at(&s, T(2023, 4, 30, 10, 0, 0), true,
		    T(2023, 4, 30, 10, 0, 0), T(2023, 5, 31, 10, 0, 0));

	/* Leap year: Jan 31 -> Feb 29 -> Mar 31. */
	c = bcfg(100, "1M", false, 0, T(2024, 1, 31, 0, 0, 0));
	s = mk(&c, T(2024, 2, 1, 0, 0, 0));
	assert_int_equal(s.window_end, T(2024, 2, 29, 0, 0, 0));
	s = bump_at(&s, T(2024, 2, 29, 0, 0, 0), true, T(2024, 2, 29, 0, 0, 0),
		    T(2024, 3, 31, 0, 0, 0));

	/* Yearly from Feb 29: Feb 28 in common years, Feb 29 in 2028. */
	c = bcfg(100, "1Y", false, 0, T(2024, 2, 29, 12, 0, 0));
	s = mk(&c, T(2024, 3, 1, 0, 0, 0));
	assert_int_equal(s.window_start, T(2024, 2, 29, 12, 0, 0));
	assert_int_equal(s.window_end, T(2025, 2, 28, 12, 0, 0));
	s = bump_at(&s, T(2025, 2, 28, 12, 0, 0), true,
		    T(2025, 2, 28, 12, 0, 0), T(2026, 2, 28, 12, 0, 0));
	s = bump_at(&s, T(2028, 3, 1, 0, 0, 0), true, T(2028, 2, 29, 12, 0, 0),
		    T(2029, 2, 28, 12, 0, 0));

	/* Rolling months created from the default anchor (creation). */
	c = bcfg(100, "1M", false, 0, TALLY_ANCHOR_DEFAULT);
	s = mk(&c, T(2023, 1, 31, 10, 0, 0));
	assert_int_equal(s.window_start, T(2023, 1, 31, 10, 0, 0));
	assert_int_equal(s.window_end, T(2023, 2, 28, 10, 0, 0));
}

static void
test_period_none_never_rolls(void **state)
{
	int64_t now = T(2024, 1, 15, 12, 34, 56);
	tally_budget_config c =
		bcfg(100, "none", false, 0, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s = mk(&c, now);
	struct bres r;

	(void)state;
	assert_int_equal(s.period_unit, TALLY_PERIOD_NONE);
	assert_int_equal(s.period_count, 0);
	assert_int_equal(s.window_start, now);
	assert_int_equal(s.window_end, INT64_MAX);
	s.usage = 90;
	r = op(&s, TALLY__OP_BUMP, INT64_MAX - 1, 5);
	assert_int_equal(r.rolls.n, 0);
	assert_int_equal(r.next.usage, 95);
	assert_int_equal(r.next.window_start, now);
	r = op(&s, TALLY__OP_BUMP, INT64_MAX, 5);
	assert_int_equal(r.rolls.n, 0);
	assert_int_equal(r.next.usage, 95);
	r = op(&s, TALLY__OP_ROLL, T(2200, 1, 1, 0, 0, 0), 0);
	assert_false(r.install);
	r = op(&s, TALLY__OP_CHECK, T(2200, 1, 1, 0, 0, 0), 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_int_equal(r.next.usage, 90);
	r = op(&s, TALLY__OP_TRY, T(2200, 1, 1, 0, 0, 0), 11);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_int_equal(r.rolls.n, 0);

	/* Aligned without a period: the same. */
	c.calendar_aligned = true;
	c.anchor = T(2020, 1, 1, 0, 0, 0);
	s = mk(&c, now);
	assert_int_equal(s.window_start, T(2020, 1, 1, 0, 0, 0));
	assert_int_equal(s.window_end, INT64_MAX);
}

/* The invariant after a long mixed sequence over many lattices. */
static void
test_invariant_sequence(void **state)
{
	static const char *periods[] = {"1s", "90m",  "1d", "1w",
					"2w", "1M",   "1Q", "1Y",
					"5M", "none", "7d", "1h30m"};
	static const int32_t offsets[] = {0, 330, -300, 1439, -1439};
	uint64_t x = 12345;

	(void)state;
	for (size_t p = 0; p < sizeof periods / sizeof periods[0]; p++) {
		for (size_t o = 0; o < sizeof offsets / sizeof offsets[0];
		     o++) {
			for (int aligned = 0; aligned < 2; aligned++) {
				int64_t t = T(2023, 12, 30, 7, 0, 0);
				tally_budget_config c =
					bcfg(50, periods[p], aligned != 0,
					     offsets[o], TALLY_ANCHOR_DEFAULT);
				struct tally__budget_snap s = mk(&c, t);

				for (int i = 0; i < 60; i++) {
					struct bres r;
					int64_t before = s.window_start;

					x = x * 6364136223846793005u +
					    1442695040888963407u;
					/* Up to ~18 hours, or ~75 days. */
					t += (int64_t)(x >> 44) *
					     (NS_PER_SEC / 16) *
					     (i % 3 == 0 ? 100 : 1);
					if (i % 7 == 3)
						t -= 3 * H; /* backwards */
					r = op(&s,
					       (enum tally__op_code)(
						       TALLY__OP_BUMP +
						       (int)(x >> 61) % 2),
					       t, (int64_t)(x >> 58));
					assert_true(r.next.window_start >=
						    before);
					if (r.install)
						s = r.next;
				}
				assert_invariant(&s);
			}
		}
	}
}

/* ------------------------------------------------------------------------ */
/* validate, view                                                           */
/* ------------------------------------------------------------------------ */

static void
test_validate(void **state)
{
	tally_budget_config c = bcfg(0, "1h", false, 0, TALLY_ANCHOR_DEFAULT);

	(void)state;
	assert_int_equal(tally__budget_validate(&c), TALLY_OK);
	c.max_limit = -1;
	assert_int_equal(tally__budget_validate(&c), TALLY_EINVAL);
	c.max_limit = INT64_MIN;
	assert_int_equal(tally__budget_validate(&c), TALLY_EINVAL);
	c.max_limit = INT64_MAX;
	assert_int_equal(tally__budget_validate(&c), TALLY_OK);

	c.utc_offset_minutes = TALLY_UTC_OFFSET_MAX;
	assert_int_equal(tally__budget_validate(&c), TALLY_OK);
	c.utc_offset_minutes = -TALLY_UTC_OFFSET_MAX;
	assert_int_equal(tally__budget_validate(&c), TALLY_OK);
	c.utc_offset_minutes = 1440;
	assert_int_equal(tally__budget_validate(&c), TALLY_EINVAL);
	c.utc_offset_minutes = -1440;
	assert_int_equal(tally__budget_validate(&c), TALLY_EINVAL);
	c.utc_offset_minutes = INT32_MAX;
	assert_int_equal(tally__budget_validate(&c), TALLY_EINVAL);
	c.utc_offset_minutes = INT32_MIN;
	assert_int_equal(tally__budget_validate(&c), TALLY_EINVAL);
	c.utc_offset_minutes = 0;

	c.period = (tally_period){0, TALLY_PERIOD_FIXED};
	assert_int_equal(tally__budget_validate(&c), TALLY_EPERIOD);
	c.period = (tally_period){-5, TALLY_PERIOD_FIXED};
	assert_int_equal(tally__budget_validate(&c), TALLY_EPERIOD);
	c.period = (tally_period){0, TALLY_PERIOD_WEEK};
	assert_int_equal(tally__budget_validate(&c), TALLY_EPERIOD);
	c.period = (tally_period){TALLY__WEEK_COUNT_MAX + 1, TALLY_PERIOD_WEEK};
	assert_int_equal(tally__budget_validate(&c), TALLY_EPERIOD);
	c.period = (tally_period){0, TALLY_PERIOD_MONTH};
	assert_int_equal(tally__budget_validate(&c), TALLY_EPERIOD);
	c.period =
		(tally_period){TALLY__MONTH_COUNT_MAX + 1, TALLY_PERIOD_MONTH};
	assert_int_equal(tally__budget_validate(&c), TALLY_EPERIOD);
	c.period = (tally_period){1, 4};
	assert_int_equal(tally__budget_validate(&c), TALLY_EPERIOD);
	c.period = (tally_period){1, -1};
	assert_int_equal(tally__budget_validate(&c), TALLY_EPERIOD);
	c.period = (tally_period){5, TALLY_PERIOD_NONE};
	assert_int_equal(tally__budget_validate(&c), TALLY_EPERIOD);
	/* A budget may have no period at all. */
	c.period = (tally_period){0, TALLY_PERIOD_NONE};
	assert_int_equal(tally__budget_validate(&c), TALLY_OK);
	c.period = (tally_period){TALLY__MONTH_COUNT_MAX, TALLY_PERIOD_MONTH};
	assert_int_equal(tally__budget_validate(&c), TALLY_OK);
}

/*
 * The engine's inline fast path (tally__budget_quick) must answer exactly as
 * the full transition wherever it answers: same result, same successor,
 * same install flag, no roll and no request for the exact clock. Checked on
 * a grid of windows (ending near now, at the coarse margin, never),
 * usages and limits near their edges, amounts, both clock kinds, and every
 * operation (only check, bump and try_consume may be answered).
 */
static void
test_quick_path_agrees(void **state)
{
	static const enum tally__op_code ops[] = {
		TALLY__OP_GET, TALLY__OP_CHECK, TALLY__OP_BUMP,
		TALLY__OP_TRY, TALLY__OP_RESET, TALLY__OP_ROLL,
	};
	static const int64_t usages[] = {
		0, 1, 99, 100, 101, INT64_MAX - 5, INT64_MAX};
	static const int64_t maxes[] = {0, 1, 100, INT64_MAX};
	static const int64_t amounts[] = {0,        1, 5, 100, INT64_MAX - 5,
					  INT64_MAX};
	const int64_t base = T(2026, 3, 1, 0, 0, 0);
	const int64_t m = TALLY__COARSE_MARGIN;
	const int64_t nows[] = {base,         base + H - m - 1, base + H - m,
				base + H - 1, base + H,         base + 2 * H,
				base - D};
	tally_budget_config hourly = bcfg(100, "1h", true, 0, 0);
	tally_budget_config never = bcfg(100, "none", false, 0, 0);
	const size_t n_u = sizeof usages / sizeof *usages;
	const size_t n_m = sizeof maxes / sizeof *maxes;
	const size_t n_o = sizeof ops / sizeof *ops;
	const size_t n_a = sizeof amounts / sizeof *amounts;
	const size_t n_n = sizeof nows / sizeof *nows;
	long answered = 0, limited = 0, declined = 0;

	(void)state;
	for (size_t i = 0; i < 2 * 2 * n_u * n_m * n_o * n_a * n_n; i++) {
		size_t k = i;
		struct tally__budget_snap s, quick_next;
		struct tally__args a;
		struct bres full;
		bool quick_install = true;
		int rc;

		/* One point of the grid: i in mixed radix. */
		s = mk(k % 2 == 0 ? &hourly : &never, base);
		k /= 2;
		memset(&a, 0, sizeof a);
		a.now_coarse = k % 2 != 0;
		k /= 2;
		s.version = 41;
		s.usage = usages[k % n_u];
		k /= n_u;
		s.max_limit = maxes[k % n_m];
		k /= n_m;
		a.op = ops[k % n_o];
		k /= n_o;
		a.amount[0] = amounts[k % n_a];
		k /= n_a;
		a.now = nows[k % n_n];
		a.observed_version = 41;

		memset(&quick_next, 0x5a, sizeof quick_next);
		rc = tally__budget_quick(&s, &quick_next, &a, &quick_install);
		if (rc == TALLY__QUICK_NO) {
			declined++;
			continue;
		}
		assert_true(a.op == TALLY__OP_BUMP || a.op == TALLY__OP_TRY ||
			    a.op == TALLY__OP_CHECK);
		full = run(&s, &a);
		assert_false(a.need_exact);
		assert_int_equal(rc, full.rc);
		assert_int_equal(quick_install, full.install);
		assert_int_equal(full.rolls.n, 0);
		/* check leaves next alone: its state is old's. */
		assert_snap_equal(a.op == TALLY__OP_CHECK ? &s : &quick_next,
				  &full.next);
		answered++;
		limited += rc == TALLY_LIMITED;
	}
	/* The grid reaches every kind of answer. */
	assert_true(answered > 100);
	assert_true(limited > 10);
	assert_true(declined > answered);
}

static void
test_view_copies_every_field(void **state)
{
	struct tally__budget_snap s;
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	(void)state;
	memset(&s, 0, sizeof s);
	s.version = UINT64_C(0x123456789abcdef0);
	s.usage = 1111;
	s.window_start = -2222;
	s.window_end = 3333;
	s.max_limit = 4444;
	s.period_count = 5;
	s.period_unit = TALLY_PERIOD_MONTH;
	s.anchor = -6666;
	s.offset_min = -777;
	s.aligned = 1;
	memset(&v, 0x5a, sizeof v);
	v.config.calendar_aligned = false;
	tally__budget_view(&s, UINT64_C(0xfedcba9876543210), &v);
	/* Every field but the caller's size, which it never writes. */
	assert_int_equal(v.size, UINT64_C(0x5a5a5a5a5a5a5a5a));
	assert_int_equal(v.config.size, sizeof v.config);
	assert_int_equal(v.incarnation, UINT64_C(0xfedcba9876543210));
	assert_int_equal(v.version, UINT64_C(0x123456789abcdef0));
	assert_int_equal(v.usage, 1111);
	assert_int_equal(v.window_start, -2222);
	assert_int_equal(v.window_end, 3333);
	assert_int_equal(v.config.max_limit, 4444);
	assert_int_equal(v.config.period.count, 5);
	assert_int_equal(v.config.period.unit, TALLY_PERIOD_MONTH);
	assert_int_equal(v.config.anchor, -6666);
	assert_int_equal(v.config.utc_offset_minutes, -777);
	assert_true(v.config.calendar_aligned);

	s.aligned = 0;
	s.period_unit = TALLY_PERIOD_WEEK;
	s.offset_min = 1439;
	tally__budget_view(&s, 1, &v);
	assert_false(v.config.calendar_aligned);
	assert_int_equal(v.config.period.unit, TALLY_PERIOD_WEEK);
	assert_int_equal(v.config.utc_offset_minutes, 1439);
}

/*
 * Coarse clock readings (args.now_coarse): the store's default clock reads
 * CLOCK_REALTIME_COARSE first, a lower bound of the exact time that lags it
 * by at most a tick. A transition may decide "not due" from it only when
 * even now + TALLY__COARSE_MARGIN is before the window's end; otherwise it
 * must ask for the exact clock (TALLY__NEED_CLOCK) and change nothing.
 */
static struct bres
coarse_op(const struct tally__budget_snap *old, enum tally__op_code code,
	  int64_t now, int64_t amount, bool *need_exact)
{
	struct tally__args a;
	struct bres r;

	memset(&a, 0, sizeof a);
	a.op = code;
	a.now = now;
	a.now_coarse = true;
	a.amount[0] = amount;
	memset(&r, 0x5a, sizeof r);
	r.install = true;
	r.rolls.n = 0;
	r.rc = tally__budget_step(old, &r.next, &a, &r.rolls, &r.install);
	*need_exact = a.need_exact;
	return r;
}

static void
test_coarse_clock_far_from_boundary(void **state)
{
	tally_budget_config c = bcfg(100, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s = mk(&c, T(2026, 5, 1, 10, 0, 0));
	int64_t far = s.window_end - TALLY__COARSE_MARGIN - 1;
	bool need = true;
	struct bres r;

	(void)state;
	s.usage = 40;
	r = coarse_op(&s, TALLY__OP_BUMP, far, 5, &need);
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(need);
	assert_true(r.install);
	assert_int_equal(r.next.usage, 45);
	assert_int_equal(r.rolls.n, 0);
	r = coarse_op(&s, TALLY__OP_TRY, far, 60, &need);
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(need);
	assert_int_equal(r.next.usage, 100);
	r = coarse_op(&s, TALLY__OP_TRY, far, 61, &need);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_false(need);
	assert_false(r.install);
	r = coarse_op(&s, TALLY__OP_CHECK, far, 0, &need);
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(need);
	assert_false(r.install);
}

static void
test_coarse_clock_near_boundary_asks_exact(void **state)
{
	tally_budget_config c = bcfg(100, "1h", true, 0, TALLY_ANCHOR_DEFAULT);
	struct tally__budget_snap s = mk(&c, T(2026, 5, 1, 10, 0, 0));
	const enum tally__op_code codes[3] = {TALLY__OP_BUMP, TALLY__OP_TRY,
					      TALLY__OP_CHECK};
	/* Within the margin before the end, at the end, and long after. */
	const int64_t times[4] = {s.window_end - TALLY__COARSE_MARGIN,
				  s.window_end - 1, s.window_end,
				  s.window_end + 5 * H};

	(void)state;
	s.usage = 100;
	for (int i = 0; i < 3; i++) {
		for (int k = 0; k < 4; k++) {
			bool need = false;
			struct bres r =
				coarse_op(&s, codes[i], times[k], 1, &need);

			assert_int_equal(r.rc, TALLY__NEED_CLOCK);
			assert_true(need);
			assert_false(r.install);
			assert_int_equal(r.rolls.n, 0);
		}
	}
}

static void
test_coarse_clock_window_never_ends(void **state)
{
	/* No period: window_end is INT64_MAX; coarse readings always decide,
	 * even at the far end of time. */
	tally_budget_config c = bcfg(10, "none", false, 0, 0);
	struct tally__budget_snap s = mk(&c, 0);
	bool need = true;
	struct bres r =
		coarse_op(&s, TALLY__OP_BUMP,
			  INT64_MAX - TALLY__COARSE_MARGIN - 1, 3, &need);

	(void)state;
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(need);
	assert_int_equal(r.next.usage, 3);
	/* A window that ends near INT64_MIN: no underflow in the margin. */
	s.window_end = INT64_MIN + 5;
	s.window_start = INT64_MIN;
	r = coarse_op(&s, TALLY__OP_CHECK, INT64_MIN, 0, &need);
	assert_int_equal(r.rc, TALLY__NEED_CLOCK);
	assert_true(need);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_get_copies_and_never_rolls),
		cmocka_unit_test(test_bump_adds_and_never_refuses),
		cmocka_unit_test(test_bump_zero_nothing_due_no_install),
		cmocka_unit_test(test_bump_rolls_due_window_first),
		cmocka_unit_test(test_bump_overflow),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_try_consume),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_roll_only_when_due),
		cmocka_unit_test(test_missed_windows_collapse),
		cmocka_unit_test(test_time_backwards),
		cmocka_unit_test(test_upsert_keeps_state),
		cmocka_unit_test(test_upsert_rederives_window_end),
		cmocka_unit_test(test_calendar_month_aligned),
		cmocka_unit_test(test_calendar_quarter_year),
		cmocka_unit_test(test_calendar_weeks),
		cmocka_unit_test(test_calendar_offsets),
		cmocka_unit_test(test_calendar_month_rolling),
		cmocka_unit_test(test_period_none_never_rolls),
		cmocka_unit_test(test_invariant_sequence),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_view_copies_every_field),
		cmocka_unit_test(test_quick_path_agrees),
		cmocka_unit_test(test_coarse_clock_far_from_boundary),
		cmocka_unit_test(test_coarse_clock_near_boundary_asks_exact),
		cmocka_unit_test(test_coarse_clock_window_never_ends),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
