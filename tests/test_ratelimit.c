/*
 * Unit tests of the pure rate-limit transitions (src/ratelimit.c): two
 * counters (tokens, requests) with independent periods and windows in one
 * snapshot. tally__rl_step for every operation code, tally__rl_init,
 * tally__rl_validate and tally__rl_view, without a store or threads.
 *
 * Expected instants come from T() in support.h. After every transition the
 * window invariant is checked for both counters.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "period.h"
#include "ratelimit.h"
#include "support.h"

#define TOK TALLY_COUNTER_TOKENS
#define REQ TALLY_COUNTER_REQUESTS
#define BOTH TALLY_COUNTER_BOTH

struct rres {
	int rc;
	bool install;
	unsigned mask; /* args.out_mask after the step */
	struct tally__rolls rolls;
	struct tally__rl_snap next;
};

static tally_limit
lim(bool has_max, int64_t max, const char *period)
{
	tally_limit l;

	memset(&l, 0, sizeof l);
	l.has_max = has_max;
	l.max = max;
	l.period = P(period);
	return l;
}

static tally_ratelimit_config
rcfg(tally_limit tokens, tally_limit requests, bool aligned, int32_t off,
     int64_t anchor)
{
	tally_ratelimit_config c = TALLY_RATELIMIT_CONFIG_INIT;
	memset(&c, 0, sizeof c);
	c.size = sizeof c;
	c.tokens = tokens;
	c.requests = requests;
	c.calendar_aligned = aligned;
	c.utc_offset_minutes = off;
	c.anchor = anchor;
	return c;
}

/* tokens: max 100 per aligned minute; requests: max 10 per aligned hour. */
static tally_ratelimit_config
std_cfg(void)
{
	return rcfg(lim(true, 100, "1m"), lim(true, 10, "1h"), true, 0,
		    TALLY_ANCHOR_DEFAULT);
}

#define NOW0 T(2024, 5, 1, 10, 30, 15)

static struct tally__rl_snap
mk(const tally_ratelimit_config *c, int64_t now)
{
	struct tally__rl_snap s;

	memset(&s, 0x5a, sizeof s);
	tally__rl_init(&s, c, now);
	return s;
}

static void
assert_invariant(const struct tally__rl_snap *s)
{
	for (int i = 0; i < 2; i++) {
		const struct tally__counter *c = &s->c[i];
		tally__lattice l = {c->period_count, c->period_unit,
				    s->offset_min, s->aligned != 0, s->anchor};
		int64_t start = 0, end = 0;

		tally__window(&l, c->window_start, &start, &end);
		assert_int_equal(end, c->window_end);
		assert_true(c->window_start < c->window_end);
	}
}

static void
assert_counter_equal(const struct tally__counter *a,
		     const struct tally__counter *b)
{
	assert_int_equal(a->usage, b->usage);
	assert_int_equal(a->held, b->held);
	assert_int_equal(a->window_start, b->window_start);
	assert_int_equal(a->window_end, b->window_end);
	assert_int_equal(a->max, b->max);
	assert_int_equal(a->period_count, b->period_count);
	assert_int_equal(a->period_unit, b->period_unit);
	assert_int_equal(a->has_max, b->has_max);
	assert_int_equal(a->algorithm, b->algorithm);
}

static void
assert_snap_equal(const struct tally__rl_snap *a,
		  const struct tally__rl_snap *b)
{
	assert_int_equal(a->version, b->version);
	assert_counter_equal(&a->c[0], &b->c[0]);
	assert_counter_equal(&a->c[1], &b->c[1]);
	assert_int_equal(a->anchor, b->anchor);
	assert_int_equal(a->offset_min, b->offset_min);
	assert_int_equal(a->aligned, b->aligned);
	assert_int_equal(a->prev[0], b->prev[0]);
	assert_int_equal(a->prev[1], b->prev[1]);
}

static struct rres
run(const struct tally__rl_snap *old, struct tally__args *a)
{
	struct rres r;

	memset(&r, 0x5a, sizeof r);
	r.install = true; /* the transition must clear it */
	r.rolls.n = 0;
	a->out_mask = 0xdead; /* ... and set this */
	r.rc = tally__rl_step(old, &r.next, a, &r.rolls, &r.install);
	r.mask = a->out_mask;
	assert_invariant(&r.next);
	assert_true(r.rolls.n <= 2);
	if (r.rolls.n == 2)
		assert_int_not_equal(r.rolls.note[0].counter,
				     r.rolls.note[1].counter);
	return r;
}

static struct rres
op(const struct tally__rl_snap *old, enum tally__op_code code, int64_t now,
   int64_t tokens, int64_t requests)
{
	struct tally__args a;

	memset(&a, 0, sizeof a);
	a.op = code;
	a.now = now;
	a.amount[0] = tokens;
	a.amount[1] = requests;
	return run(old, &a);
}

static struct rres
reset(const struct tally__rl_snap *old, int64_t now, uint64_t version,
      unsigned counters)
{
	struct tally__args a;

	memset(&a, 0, sizeof a);
	a.op = TALLY__OP_RESET;
	a.now = now;
	a.observed_version = version;
	a.counters = counters;
	return run(old, &a);
}

static struct rres
upsert(const struct tally__rl_snap *old, int64_t now,
       const tally_ratelimit_config *cfg)
{
	struct tally__args a;

	memset(&a, 0, sizeof a);
	a.op = TALLY__OP_UPSERT;
	a.now = now;
	a.config = cfg;
	return run(old, &a);
}

/* The note for counter, which must be present exactly once. */
static const struct tally__roll_note *
note_of(const struct rres *r, unsigned counter)
{
	const struct tally__roll_note *found = NULL;

	for (unsigned i = 0; i < r->rolls.n; i++) {
		if (r->rolls.note[i].counter == counter) {
			assert_null(found);
			found = &r->rolls.note[i];
		}
	}
	assert_non_null(found);
	return found;
}

static void
assert_note(const struct rres *r, unsigned counter, int64_t usage_before,
	    int64_t old_start, int64_t new_start)
{
	const struct tally__roll_note *n = note_of(r, counter);

	assert_int_equal(n->usage_before, usage_before);
	assert_int_equal(n->old_window_start, old_start);
	assert_int_equal(n->new_window_start, new_start);
}

/* ------------------------------------------------------------------------ */

static void
test_init(void **state)
{
	tally_ratelimit_config c = std_cfg();
	struct tally__rl_snap s = mk(&c, NOW0);

	(void)state;
	assert_int_equal(s.anchor, NOW0);
	assert_int_equal(s.aligned, 1);
	assert_int_equal(s.offset_min, 0);
	assert_int_equal(s.c[0].usage, 0);
	assert_int_equal(s.c[0].has_max, 1);
	assert_int_equal(s.c[0].max, 100);
	assert_int_equal(s.c[0].period_count, NS_PER_MIN);
	assert_int_equal(s.c[0].period_unit, TALLY_PERIOD_FIXED);
	assert_int_equal(s.c[0].window_start, T(2024, 5, 1, 10, 30, 0));
	assert_int_equal(s.c[0].window_end, T(2024, 5, 1, 10, 31, 0));
	assert_int_equal(s.c[1].usage, 0);
	assert_int_equal(s.c[1].has_max, 1);
	assert_int_equal(s.c[1].max, 10);
	assert_int_equal(s.c[1].period_count, NS_PER_HOUR);
	assert_int_equal(s.c[1].window_start, T(2024, 5, 1, 10, 0, 0));
	assert_int_equal(s.c[1].window_end, T(2024, 5, 1, 11, 0, 0));
	assert_invariant(&s);

	/* Rolling from an explicit anchor; one counter unlimited; calendar
	 * and week units on the counters. */
	c = rcfg(lim(false, 0, "1w"), lim(true, 0, "1M"), false, 60,
		 T(2024, 1, 31, 8, 0, 0));
	s = mk(&c, NOW0);
	assert_int_equal(s.anchor, T(2024, 1, 31, 8, 0, 0));
	assert_int_equal(s.offset_min, 60);
	assert_int_equal(s.aligned, 0);
	assert_int_equal(s.c[0].has_max, 0);
	assert_int_equal(s.c[0].period_unit, TALLY_PERIOD_WEEK);
	assert_int_equal(s.c[0].period_count, 1);
	/* Weeks from Wed Jan 31 08:00: 13 weeks later is Wed May 1 08:00. */
	assert_int_equal(s.c[0].window_start, T(2024, 5, 1, 8, 0, 0));
	assert_int_equal(s.c[0].window_end, T(2024, 5, 8, 8, 0, 0));
	assert_int_equal(s.c[1].has_max, 1);
	assert_int_equal(s.c[1].max, 0);
	assert_int_equal(s.c[1].period_unit, TALLY_PERIOD_MONTH);
	/* Months from Jan 31 08:00 UTC (09:00 local): Apr 30, May 31. */
	assert_int_equal(s.c[1].window_start, T(2024, 4, 30, 8, 0, 0));
	assert_int_equal(s.c[1].window_end, T(2024, 5, 31, 8, 0, 0));
}

static void
test_get(void **state)
{
	tally_ratelimit_config c = std_cfg();
	struct tally__rl_snap s = mk(&c, NOW0);
	struct rres r;

	(void)state;
	s.version = 9;
	s.c[0].usage = 150;
	s.c[1].usage = 3;
	r = op(&s, TALLY__OP_GET, NOW0, 0, 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(r.install);
	assert_int_equal(r.mask, 0);
	assert_int_equal(r.rolls.n, 0);
	assert_snap_equal(&r.next, &s);

	r = op(&s, TALLY__OP_GET, T(2024, 5, 2, 0, 0, 0), 0, 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_snap_equal(&r.next, &s);
}

static void
test_bump_adds_both(void **state)
{
	tally_ratelimit_config c = std_cfg();
	struct tally__rl_snap s = mk(&c, NOW0);
	struct rres r;

	(void)state;
	r = op(&s, TALLY__OP_BUMP, NOW0, 7, 1);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_int_equal(r.mask, 0);
	assert_int_equal(r.next.c[0].usage, 7);
	assert_int_equal(r.next.c[1].usage, 1);
	assert_int_equal(r.next.c[0].window_start, s.c[0].window_start);
	assert_int_equal(r.next.c[1].window_start, s.c[1].window_start);

	/* One counter only. */
	s = r.next;
	r = op(&s, TALLY__OP_BUMP, NOW0, 0, 4);
	assert_true(r.install);
	assert_int_equal(r.next.c[0].usage, 7);
	assert_int_equal(r.next.c[1].usage, 5);

	/* Never refused over the limits. */
	r = op(&s, TALLY__OP_BUMP, NOW0, 1000, 1000);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.next.c[0].usage, 1007);
	assert_int_equal(r.next.c[1].usage, 1001);

	/* Nothing to add, nothing due: no install. */
	r = op(&s, TALLY__OP_BUMP, NOW0, 0, 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_snap_equal(&r.next, &s);
}

static void
test_bump_rolls_independently(void **state)
{
	tally_ratelimit_config c = std_cfg();
	struct tally__rl_snap s = mk(&c, NOW0);
	struct rres r;

	(void)state;
	s.c[0].usage = 40;
	s.c[1].usage = 3;

	/* 10:31: tokens due, requests not. */
	r = op(&s, TALLY__OP_BUMP, T(2024, 5, 1, 10, 31, 0), 2, 1);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 1);
	assert_int_equal(r.rolls.note[0].counter, TOK);
	assert_note(&r, TOK, 40, T(2024, 5, 1, 10, 30, 0),
		    T(2024, 5, 1, 10, 31, 0));
	assert_int_equal(r.next.c[0].usage, 2);
	assert_int_equal(r.next.c[0].window_start, T(2024, 5, 1, 10, 31, 0));
	assert_int_equal(r.next.c[0].window_end, T(2024, 5, 1, 10, 32, 0));
	assert_int_equal(r.next.c[1].usage, 4);
	assert_int_equal(r.next.c[1].window_start, T(2024, 5, 1, 10, 0, 0));
	assert_int_equal(r.next.c[1].window_end, T(2024, 5, 1, 11, 0, 0));

	/* 11:00:30: both due, two notes in one transition. */
	r = op(&s, TALLY__OP_BUMP, T(2024, 5, 1, 11, 0, 30), 5, 6);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 2);
	assert_note(&r, TOK, 40, T(2024, 5, 1, 10, 30, 0),
		    T(2024, 5, 1, 11, 0, 0));
	assert_note(&r, REQ, 3, T(2024, 5, 1, 10, 0, 0),
		    T(2024, 5, 1, 11, 0, 0));
	assert_int_equal(r.next.c[0].usage, 5);
	assert_int_equal(r.next.c[0].window_end, T(2024, 5, 1, 11, 1, 0));
	assert_int_equal(r.next.c[1].usage, 6);
	assert_int_equal(r.next.c[1].window_end, T(2024, 5, 1, 12, 0, 0));

	/* A bump of nothing that rolls is still a write. */
	r = op(&s, TALLY__OP_BUMP, T(2024, 5, 1, 10, 45, 0), 0, 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r, TOK, 40, T(2024, 5, 1, 10, 30, 0),
		    T(2024, 5, 1, 10, 45, 0));
	assert_int_equal(r.next.c[0].usage, 0);
	assert_int_equal(r.next.c[1].usage, 3);

	/* Requests due only (tokens on a longer period). */
	c = rcfg(lim(true, 100, "1d"), lim(true, 10, "1h"), true, 0,
		 TALLY_ANCHOR_DEFAULT);
	s = mk(&c, NOW0);
	s.c[0].usage = 11;
	s.c[1].usage = 9;
	r = op(&s, TALLY__OP_BUMP, T(2024, 5, 1, 13, 0, 0), 1, 1);
	assert_int_equal(r.rolls.n, 1);
	assert_int_equal(r.rolls.note[0].counter, REQ);
	assert_note(&r, REQ, 9, T(2024, 5, 1, 10, 0, 0),
		    T(2024, 5, 1, 13, 0, 0));
	assert_int_equal(r.next.c[0].usage, 12);
	assert_int_equal(r.next.c[0].window_start, T(2024, 5, 1, 0, 0, 0));
	assert_int_equal(r.next.c[1].usage, 1);
}

static void
test_check_mask(void **state)
{
	tally_ratelimit_config c = std_cfg();
	struct tally__rl_snap s = mk(&c, NOW0);
	struct rres r;
	static const struct {
		int64_t tok, req;
		int rc;
		unsigned mask;
	} cases[] = {
		{0, 0, TALLY_OK, 0},
		{99, 9, TALLY_OK, 0},
		{100, 9, TALLY_LIMITED, TOK},
		{99, 10, TALLY_LIMITED, REQ},
		{100, 10, TALLY_LIMITED, BOTH},
		{INT64_MAX, 11, TALLY_LIMITED, BOTH},
		{101, 0, TALLY_LIMITED, TOK},
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		s.c[0].usage = cases[i].tok;
		s.c[1].usage = cases[i].req;
		r = op(&s, TALLY__OP_CHECK, NOW0, 0, 0);
		assert_int_equal(r.rc, cases[i].rc);
		assert_int_equal(r.mask, cases[i].mask);
		assert_false(r.install);
		assert_int_equal(r.rolls.n, 0);
	}

	/* A due counter counts as rolled; the other keeps blocking. */
	s.c[0].usage = 100;
	s.c[1].usage = 10;
	r = op(&s, TALLY__OP_CHECK, T(2024, 5, 1, 10, 31, 0), 0, 0);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_int_equal(r.mask, REQ);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_int_equal(r.next.c[0].usage, 0);
	assert_int_equal(r.next.c[0].window_start, T(2024, 5, 1, 10, 31, 0));
	assert_int_equal(r.next.c[1].usage, 10);
	r = op(&s, TALLY__OP_CHECK, T(2024, 5, 1, 11, 0, 0), 0, 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_int_equal(r.mask, 0);
	assert_false(r.install);
	assert_int_equal(r.next.c[1].usage, 0);

	/* Counters without a max never block; max 0 always blocks. */
	c = rcfg(lim(false, 0, "1m"), lim(true, 0, "1h"), true, 0,
		 TALLY_ANCHOR_DEFAULT);
	s = mk(&c, NOW0);
	s.c[0].usage = INT64_MAX;
	r = op(&s, TALLY__OP_CHECK, NOW0, 0, 0);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_int_equal(r.mask, REQ);
	c = rcfg(lim(false, 5, "1m"), lim(false, 5, "1h"), true, 0,
		 TALLY_ANCHOR_DEFAULT);
	s = mk(&c, NOW0);
	s.c[0].usage = INT64_MAX;
	s.c[1].usage = 1000;
	r = op(&s, TALLY__OP_CHECK, NOW0, 0, 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_int_equal(r.mask, 0);
}

static void
test_try_all_or_nothing(void **state)
{
	tally_ratelimit_config c = std_cfg();
	struct tally__rl_snap s = mk(&c, NOW0);
	struct rres r;

	(void)state;
	s.c[0].usage = 60;
	s.c[1].usage = 5;

	r = op(&s, TALLY__OP_TRY, NOW0, 40, 5);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.mask, 0);
	assert_int_equal(r.rolls.n, 0);
	assert_int_equal(r.next.c[0].usage, 100);
	assert_int_equal(r.next.c[1].usage, 10);

	r = op(&s, TALLY__OP_TRY, NOW0, 41, 1);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_false(r.install);
	assert_int_equal(r.mask, TOK);
	assert_int_equal(r.next.c[0].usage, 60);
	assert_int_equal(r.next.c[1].usage, 5);

	r = op(&s, TALLY__OP_TRY, NOW0, 1, 6);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_false(r.install);
	assert_int_equal(r.mask, REQ);
	assert_int_equal(r.next.c[0].usage, 60);
	assert_int_equal(r.next.c[1].usage, 5);

	r = op(&s, TALLY__OP_TRY, NOW0, 41, 6);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_false(r.install);
	assert_int_equal(r.mask, BOTH);

	r = op(&s, TALLY__OP_TRY, NOW0, INT64_MAX, INT64_MAX);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_int_equal(r.mask, BOTH);
	assert_false(r.install);

	/* Nothing asked, nothing due: OK without install. */
	r = op(&s, TALLY__OP_TRY, NOW0, 0, 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(r.install);
	assert_int_equal(r.mask, 0);
	assert_snap_equal(&r.next, &s);

	/* Tokens due: the roll makes room, taken in the same transition. */
	s.c[0].usage = 100;
	r = op(&s, TALLY__OP_TRY, T(2024, 5, 1, 10, 31, 0), 100, 1);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r, TOK, 100, T(2024, 5, 1, 10, 30, 0),
		    T(2024, 5, 1, 10, 31, 0));
	assert_int_equal(r.next.c[0].usage, 100);
	assert_int_equal(r.next.c[1].usage, 6);

	/* Tokens due, requests do not fit: nothing, not even the roll. */
	r = op(&s, TALLY__OP_TRY, T(2024, 5, 1, 10, 31, 0), 1, 6);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_int_equal(r.mask, REQ);

	/* Both due, tokens do not fit even when rolled. */
	r = op(&s, TALLY__OP_TRY, T(2024, 5, 1, 11, 0, 0), 101, 1);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_int_equal(r.mask, TOK);

	/* A counter without a max takes anything that does not overflow. */
	c = rcfg(lim(false, 0, "1m"), lim(true, 10, "1h"), true, 0,
		 TALLY_ANCHOR_DEFAULT);
	s = mk(&c, NOW0);
	r = op(&s, TALLY__OP_TRY, NOW0, INT64_MAX, 10);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.next.c[0].usage, INT64_MAX);
	assert_int_equal(r.next.c[1].usage, 10);
	s = r.next;
	r = op(&s, TALLY__OP_TRY, NOW0, 1, 0);
	assert_int_equal(r.rc, TALLY_EOVERFLOW);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
	/* Limited wins over overflow: nothing could be taken anyway. */
	r = op(&s, TALLY__OP_TRY, NOW0, 1, 1);
	assert_true(r.rc == TALLY_LIMITED || r.rc == TALLY_EOVERFLOW);
	assert_false(r.install);
}

static void
test_overflow(void **state)
{
	tally_ratelimit_config c = std_cfg();
	struct tally__rl_snap s = mk(&c, NOW0);
	struct rres r;

	(void)state;
	s.c[0].usage = INT64_MAX - 1;
	s.c[1].usage = 3;
	r = op(&s, TALLY__OP_BUMP, NOW0, 2, 1);
	assert_int_equal(r.rc, TALLY_EOVERFLOW);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
	r = op(&s, TALLY__OP_BUMP, NOW0, 1, 1);
	assert_int_equal(r.rc, TALLY_OK);
	assert_int_equal(r.next.c[0].usage, INT64_MAX);
	assert_int_equal(r.next.c[1].usage, 4);

	s.c[0].usage = 3;
	s.c[1].usage = INT64_MAX;
	r = op(&s, TALLY__OP_BUMP, NOW0, 1, 1);
	assert_int_equal(r.rc, TALLY_EOVERFLOW);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
	r = op(&s, TALLY__OP_BUMP, NOW0, INT64_MAX - 3, 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_int_equal(r.next.c[0].usage, INT64_MAX);
	assert_int_equal(r.next.c[1].usage, INT64_MAX);

	/* Tokens due (would roll) but requests overflow: no roll either. */
	r = op(&s, TALLY__OP_BUMP, T(2024, 5, 1, 10, 31, 0), 1, 1);
	assert_int_equal(r.rc, TALLY_EOVERFLOW);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
	/* Requests due: the roll makes room. */
	r = op(&s, TALLY__OP_BUMP, T(2024, 5, 1, 11, 0, 0), 1, INT64_MAX);
	assert_int_equal(r.rc, TALLY_OK);
	assert_int_equal(r.rolls.n, 2);
	assert_int_equal(r.next.c[1].usage, INT64_MAX);
}

static void
test_reset(void **state)
{
	tally_ratelimit_config c = std_cfg();
	struct tally__rl_snap s = mk(&c, NOW0);
	int64_t t = T(2024, 5, 1, 10, 45, 20);
	struct rres r;

	(void)state;
	s.version = UINT64_C(0x300000002);
	s.c[0].usage = 70;
	s.c[1].usage = 8;

	r = reset(&s, t, UINT64_C(0x300000001), BOTH);
	assert_int_equal(r.rc, TALLY_CONFLICT);
	assert_false(r.install);
	assert_int_equal(r.mask, 0);
	assert_int_equal(r.rolls.n, 0);
	assert_snap_equal(&r.next, &s);

	/* Tokens only, at 10:45:20: its window of now is 10:45. */
	r = reset(&s, t, s.version, TOK);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.mask, TOK);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r, TOK, 70, T(2024, 5, 1, 10, 30, 0),
		    T(2024, 5, 1, 10, 45, 0));
	assert_int_equal(r.next.c[0].usage, 0);
	assert_int_equal(r.next.c[0].window_start, T(2024, 5, 1, 10, 45, 0));
	assert_int_equal(r.next.c[0].window_end, T(2024, 5, 1, 10, 46, 0));
	assert_counter_equal(&r.next.c[1], &s.c[1]);

	/* Requests only. */
	r = reset(&s, t, s.version, REQ);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.mask, REQ);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r, REQ, 8, T(2024, 5, 1, 10, 0, 0),
		    T(2024, 5, 1, 10, 0, 0));
	assert_int_equal(r.next.c[1].usage, 0);
	assert_int_equal(r.next.c[1].window_start, T(2024, 5, 1, 10, 0, 0));
	assert_counter_equal(&r.next.c[0], &s.c[0]);

	/* Both. */
	r = reset(&s, t, s.version, BOTH);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.mask, BOTH);
	assert_int_equal(r.rolls.n, 2);
	assert_note(&r, TOK, 70, T(2024, 5, 1, 10, 30, 0),
		    T(2024, 5, 1, 10, 45, 0));
	assert_note(&r, REQ, 8, T(2024, 5, 1, 10, 0, 0),
		    T(2024, 5, 1, 10, 0, 0));
	assert_int_equal(r.next.c[0].usage, 0);
	assert_int_equal(r.next.c[1].usage, 0);

	/* Due only, only tokens due: requests keep their usage. */
	r = reset(&s, t, s.version, BOTH | TALLY_RESET_DUE_ONLY);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.mask, TOK);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r, TOK, 70, T(2024, 5, 1, 10, 30, 0),
		    T(2024, 5, 1, 10, 45, 0));
	assert_int_equal(r.next.c[0].usage, 0);
	assert_counter_equal(&r.next.c[1], &s.c[1]);

	/* Due only, requests asked, not due: nothing, version stays. */
	r = reset(&s, t, s.version, REQ | TALLY_RESET_DUE_ONLY);
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(r.install);
	assert_int_equal(r.mask, 0);
	assert_int_equal(r.rolls.n, 0);
	assert_snap_equal(&r.next, &s);

	/* Due only, nothing due at all. */
	r = reset(&s, NOW0, s.version, BOTH | TALLY_RESET_DUE_ONLY);
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(r.install);
	assert_int_equal(r.mask, 0);

	/* Due only at 11:00: both due. */
	r = reset(&s, T(2024, 5, 1, 11, 0, 0), s.version,
		  BOTH | TALLY_RESET_DUE_ONLY);
	assert_int_equal(r.mask, BOTH);
	assert_int_equal(r.rolls.n, 2);
	assert_note(&r, REQ, 8, T(2024, 5, 1, 10, 0, 0),
		    T(2024, 5, 1, 11, 0, 0));

	/* Due only but the due counter is not asked for. */
	r = reset(&s, t, s.version, REQ | TALLY_RESET_DUE_ONLY);
	assert_int_equal(r.mask, 0);
	assert_false(r.install);

	/* The clock went backwards: windows kept. */
	r = reset(&s, T(2024, 5, 1, 9, 0, 0), s.version, BOTH);
	assert_int_equal(r.rc, TALLY_OK);
	assert_int_equal(r.mask, BOTH);
	assert_note(&r, TOK, 70, T(2024, 5, 1, 10, 30, 0),
		    T(2024, 5, 1, 10, 30, 0));
	assert_note(&r, REQ, 8, T(2024, 5, 1, 10, 0, 0),
		    T(2024, 5, 1, 10, 0, 0));
	assert_int_equal(r.next.c[0].window_start, T(2024, 5, 1, 10, 30, 0));
	assert_int_equal(r.next.c[0].window_end, T(2024, 5, 1, 10, 31, 0));
	assert_int_equal(r.next.c[1].window_start, T(2024, 5, 1, 10, 0, 0));
	assert_int_equal(r.next.c[1].window_end, T(2024, 5, 1, 11, 0, 0));
	assert_int_equal(r.next.c[0].usage, 0);
	assert_int_equal(r.next.c[1].usage, 0);
}

static void
test_roll(void **state)
{
	tally_ratelimit_config c = std_cfg();
	struct tally__rl_snap s = mk(&c, NOW0);
	struct rres r;

	(void)state;
	s.c[0].usage = 4;
	s.c[1].usage = 2;
	r = op(&s, TALLY__OP_ROLL, T(2024, 5, 1, 10, 31, 0) - 1, 0, 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_false(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_snap_equal(&r.next, &s);

	r = op(&s, TALLY__OP_ROLL, T(2024, 5, 1, 10, 31, 0), 0, 0);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 1);
	assert_note(&r, TOK, 4, T(2024, 5, 1, 10, 30, 0),
		    T(2024, 5, 1, 10, 31, 0));
	assert_int_equal(r.next.c[1].usage, 2);

	/* Many missed windows: one roll per counter, to the latest. */
	r = op(&s, TALLY__OP_ROLL, T(2024, 5, 3, 7, 12, 59), 0, 0);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 2);
	assert_note(&r, TOK, 4, T(2024, 5, 1, 10, 30, 0),
		    T(2024, 5, 3, 7, 12, 0));
	assert_note(&r, REQ, 2, T(2024, 5, 1, 10, 0, 0),
		    T(2024, 5, 3, 7, 0, 0));
	assert_int_equal(r.next.c[0].usage, 0);
	assert_int_equal(r.next.c[1].usage, 0);
	assert_int_equal(r.next.c[0].window_end, T(2024, 5, 3, 7, 13, 0));
	assert_int_equal(r.next.c[1].window_end, T(2024, 5, 3, 8, 0, 0));

	/* Time going backwards never rolls or moves a window. */
	s = r.next;
	r = op(&s, TALLY__OP_ROLL, NOW0, 0, 0);
	assert_false(r.install);
	r = op(&s, TALLY__OP_BUMP, NOW0, 3, 3);
	assert_int_equal(r.rolls.n, 0);
	assert_int_equal(r.next.c[0].window_start, T(2024, 5, 3, 7, 12, 0));
	assert_int_equal(r.next.c[1].window_start, T(2024, 5, 3, 7, 0, 0));
	r = op(&s, TALLY__OP_CHECK, INT64_MIN, 0, 0);
	assert_int_equal(r.next.c[0].window_start, T(2024, 5, 3, 7, 12, 0));
}

static void
test_upsert(void **state)
{
	tally_ratelimit_config c = std_cfg();
	struct tally__rl_snap s = mk(&c, NOW0);
	struct rres r;

	(void)state;
	s.c[0].usage = 30;
	s.c[1].usage = 4;

	/* tokens 1m -> 5m, requests 1h -> 1d: each end re-derived. */
	c = rcfg(lim(true, 500, "5m"), lim(false, 0, "1d"), true, 0,
		 TALLY_ANCHOR_DEFAULT);
	r = upsert(&s, T(2024, 5, 1, 10, 30, 40), &c);
	assert_int_equal(r.rc, TALLY_OK);
	assert_true(r.install);
	assert_int_equal(r.rolls.n, 0);
	assert_int_equal(r.next.anchor, NOW0);
	assert_int_equal(r.next.c[0].usage, 30);
	assert_int_equal(r.next.c[0].max, 500);
	assert_int_equal(r.next.c[0].period_count, 5 * NS_PER_MIN);
	assert_int_equal(r.next.c[0].window_start, T(2024, 5, 1, 10, 30, 0));
	assert_int_equal(r.next.c[0].window_end, T(2024, 5, 1, 10, 35, 0));
	assert_int_equal(r.next.c[1].usage, 4);
	assert_int_equal(r.next.c[1].has_max, 0);
	assert_int_equal(r.next.c[1].window_start, T(2024, 5, 1, 10, 0, 0));
	assert_int_equal(r.next.c[1].window_end, T(2024, 5, 2, 0, 0, 0));

	/* Shorter: tokens 1m -> 1s, requests 1h -> 15m. */
	c = rcfg(lim(true, 100, "1s"), lim(true, 10, "15m"), true, 0,
		 TALLY_ANCHOR_DEFAULT);
	r = upsert(&s, NOW0, &c);
	assert_int_equal(r.next.c[0].window_end, T(2024, 5, 1, 10, 30, 1));
	assert_int_equal(r.next.c[1].window_end, T(2024, 5, 1, 10, 15, 0));

	/* Explicit anchor, rolling: both ends move to the new lattice. */
	c = rcfg(lim(true, 100, "1m"), lim(true, 10, "1h"), false, 0,
		 T(2024, 5, 1, 0, 0, 20));
	r = upsert(&s, NOW0, &c);
	assert_int_equal(r.next.anchor, T(2024, 5, 1, 0, 0, 20));
	assert_int_equal(r.next.aligned, 0);
	assert_int_equal(r.next.c[0].window_start, T(2024, 5, 1, 10, 30, 0));
	assert_int_equal(r.next.c[0].window_end, T(2024, 5, 1, 10, 30, 20));
	assert_int_equal(r.next.c[1].window_start, T(2024, 5, 1, 10, 0, 0));
	assert_int_equal(r.next.c[1].window_end, T(2024, 5, 1, 10, 0, 20));

	/* Offset on the aligned grid: requests 1d at local midnight. */
	c = rcfg(lim(true, 100, "1m"), lim(true, 10, "1d"), true, -300,
		 TALLY_ANCHOR_DEFAULT);
	r = upsert(&s, NOW0, &c);
	assert_int_equal(r.next.offset_min, -300);
	assert_int_equal(r.next.c[1].window_end, T(2024, 5, 2, 5, 0, 0));
	assert_int_equal(r.next.c[0].window_end, T(2024, 5, 1, 10, 31, 0));

	/* Upsert never rolls, even when both are due. */
	c = std_cfg();
	r = upsert(&s, T(2024, 6, 1, 0, 0, 0), &c);
	assert_int_equal(r.rolls.n, 0);
	assert_int_equal(r.next.c[0].usage, 30);
	assert_int_equal(r.next.c[1].usage, 4);
	assert_int_equal(r.next.c[0].window_start, T(2024, 5, 1, 10, 30, 0));
}

static void
test_calendar(void **state)
{
	/* tokens per local day at +05:30, requests per calendar month. */
	tally_ratelimit_config c =
		rcfg(lim(true, 1000, "1d"), lim(true, 50, "1M"), true, 330,
		     TALLY_ANCHOR_DEFAULT);
	struct tally__rl_snap s = mk(&c, T(2024, 2, 28, 20, 0, 0));
	struct rres r;

	(void)state;
	/* 20:00 UTC is Feb 29 01:30 local. */
	assert_int_equal(s.c[0].window_start, T(2024, 2, 28, 18, 30, 0));
	assert_int_equal(s.c[0].window_end, T(2024, 2, 29, 18, 30, 0));
	assert_int_equal(s.c[1].window_start, T(2024, 1, 31, 18, 30, 0));
	assert_int_equal(s.c[1].window_end, T(2024, 2, 29, 18, 30, 0));
	s.c[0].usage = 10;
	s.c[1].usage = 20;
	r = op(&s, TALLY__OP_BUMP, T(2024, 2, 29, 18, 29, 59), 1, 1);
	assert_int_equal(r.rolls.n, 0);
	r = op(&s, TALLY__OP_BUMP, T(2024, 2, 29, 18, 30, 0), 1, 1);
	assert_int_equal(r.rolls.n, 2);
	assert_note(&r, TOK, 10, T(2024, 2, 28, 18, 30, 0),
		    T(2024, 2, 29, 18, 30, 0));
	assert_note(&r, REQ, 20, T(2024, 1, 31, 18, 30, 0),
		    T(2024, 2, 29, 18, 30, 0));
	assert_int_equal(r.next.c[0].window_end, T(2024, 3, 1, 18, 30, 0));
	assert_int_equal(r.next.c[1].window_end, T(2024, 3, 31, 18, 30, 0));
}

static void
test_validate(void **state)
{
	tally_ratelimit_config c = std_cfg();

	(void)state;
	assert_int_equal(tally__rl_validate(&c), TALLY_OK);

	c.tokens.period = (tally_period){0, TALLY_PERIOD_NONE};
	assert_int_equal(tally__rl_validate(&c), TALLY_EPERIOD);
	c = std_cfg();
	c.requests.period = (tally_period){0, TALLY_PERIOD_NONE};
	assert_int_equal(tally__rl_validate(&c), TALLY_EPERIOD);
	c = std_cfg();
	c.requests.period = (tally_period){0, TALLY_PERIOD_FIXED};
	assert_int_equal(tally__rl_validate(&c), TALLY_EPERIOD);
	c = std_cfg();
	c.tokens.period = (tally_period){1, 17};
	assert_int_equal(tally__rl_validate(&c), TALLY_EPERIOD);
	c = std_cfg();
	c.tokens.period =
		(tally_period){TALLY__MONTH_COUNT_MAX + 1, TALLY_PERIOD_MONTH};
	assert_int_equal(tally__rl_validate(&c), TALLY_EPERIOD);

	c = std_cfg();
	c.tokens.max = -1;
	assert_int_equal(tally__rl_validate(&c), TALLY_EINVAL);
	c = std_cfg();
	c.requests.max = INT64_MIN;
	assert_int_equal(tally__rl_validate(&c), TALLY_EINVAL);
	/* Without has_max the max is not looked at. */
	c = std_cfg();
	c.requests.has_max = false;
	c.requests.max = -1;
	assert_int_equal(tally__rl_validate(&c), TALLY_OK);
	c = std_cfg();
	c.tokens.max = 0;
	assert_int_equal(tally__rl_validate(&c), TALLY_OK);

	c = std_cfg();
	c.utc_offset_minutes = 1440;
	assert_int_equal(tally__rl_validate(&c), TALLY_EINVAL);
	c.utc_offset_minutes = -1440;
	assert_int_equal(tally__rl_validate(&c), TALLY_EINVAL);
	c.utc_offset_minutes = 1439;
	assert_int_equal(tally__rl_validate(&c), TALLY_OK);
	c.utc_offset_minutes = -1439;
	assert_int_equal(tally__rl_validate(&c), TALLY_OK);

	c = std_cfg();
	c.tokens.period = P("1w");
	c.requests.period = P("1Y");
	assert_int_equal(tally__rl_validate(&c), TALLY_OK);
}

/*
 * The engine's inline fast path (tally__rl_quick) must answer exactly as
 * tally__rl_step wherever it answers: same result, limited mask, successor
 * and install flag, no roll, no request for the exact clock. Checked on a
 * grid of configurations, usages near the limits, amounts, clock readings
 * around both counters' window ends (exact and coarse), and every
 * operation.
 */
static void
test_quick_path_agrees(void **state)
{
	static const enum tally__op_code ops[] = {
		TALLY__OP_GET, TALLY__OP_CHECK, TALLY__OP_BUMP,
		TALLY__OP_TRY, TALLY__OP_RESET, TALLY__OP_ROLL,
	};
	static const int64_t usages[] = {0,        9, 10, 99, INT64_MAX - 5,
					 INT64_MAX};
	static const int64_t amounts[] = {0, 1, 5, INT64_MAX};
	const int64_t m = TALLY__COARSE_MARGIN;
	const int64_t min_end = T(2024, 5, 1, 10, 31, 0);
	const int64_t hour_end = T(2024, 5, 1, 11, 0, 0);
	const int64_t nows[] = {NOW0,        min_end - m - 1,  min_end - m,
				min_end - 1, min_end,          hour_end - 1,
				hour_end,    NOW0 - NS_PER_DAY};
	tally_ratelimit_config cfgs[3];
	const size_t n_u = sizeof usages / sizeof *usages;
	const size_t n_o = sizeof ops / sizeof *ops;
	const size_t n_a = sizeof amounts / sizeof *amounts;
	const size_t n_n = sizeof nows / sizeof *nows;
	long answered = 0, limited = 0, declined = 0;

	(void)state;
	cfgs[0] = std_cfg();
	/* Unlimited tokens that never roll; limited requests per hour. */
	cfgs[1] = rcfg(lim(false, 0, "none"), lim(true, 10, "1h"), true, 0,
		       TALLY_ANCHOR_DEFAULT);
	/* Sliding tokens per minute, fixed requests per hour. */
	cfgs[2] = std_cfg();
	cfgs[2].tokens_algorithm = TALLY_ALGORITHM_SLIDING;
	for (size_t i = 0; i < 3 * 2 * n_u * n_u * n_o * n_a * n_a * n_n; i++) {
		size_t k = i;
		struct tally__rl_snap s, quick_next;
		struct tally__args a;
		struct rres full;
		bool quick_install = true;
		unsigned quick_mask;
		int rc;

		/* One point of the grid: i in mixed radix. */
		s = mk(&cfgs[k % 3], NOW0);
		s.prev[0] = s.c[0].algorithm != 0 ? 60 : 0;
		k /= 3;
		memset(&a, 0, sizeof a);
		a.now_coarse = k % 2 != 0;
		k /= 2;
		s.version = 7;
		s.c[0].usage = usages[k % n_u];
		k /= n_u;
		s.c[1].usage = usages[k % n_u];
		k /= n_u;
		a.op = ops[k % n_o];
		k /= n_o;
		a.amount[0] = amounts[k % n_a];
		k /= n_a;
		a.amount[1] = amounts[k % n_a];
		k /= n_a;
		a.now = nows[k % n_n];
		a.observed_version = 7;
		a.counters = BOTH;

		memset(&quick_next, 0x5a, sizeof quick_next);
		a.out_mask = 0xdead;
		rc = tally__rl_quick(&s, &quick_next, &a, &quick_install);
		if (rc == TALLY__QUICK_NO) {
			declined++;
			continue;
		}
		quick_mask = a.out_mask;
		assert_true(a.op == TALLY__OP_BUMP || a.op == TALLY__OP_TRY ||
			    a.op == TALLY__OP_CHECK);
		full = run(&s, &a);
		assert_false(a.need_exact);
		assert_int_equal(rc, full.rc);
		assert_int_equal(quick_mask, full.mask);
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
	struct tally__rl_snap s;
	tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
	(void)state;
	memset(&s, 0, sizeof s);
	s.version = UINT64_C(0xfedcba9876543210);
	s.c[0] = (struct tally__counter){.usage = 11,
					 .held = 16,
					 .window_start = -12,
					 .window_end = 13,
					 .max = 14,
					 .period_count = 15,
					 .period_unit = TALLY_PERIOD_WEEK,
					 .has_max = 1};
	s.c[1] = (struct tally__counter){.usage = 21,
					 .held = 26,
					 .window_start = 22,
					 .window_end = 23,
					 .max = 24,
					 .period_count = 25,
					 .period_unit = TALLY_PERIOD_MONTH,
					 .has_max = 0};
	s.hold_count[1] = 3;
	s.hold_count[3] = 4;
	s.anchor = -31;
	s.offset_min = 1234;
	s.aligned = 1;
	memset(&v, 0x5a, sizeof v);
	v.config.calendar_aligned = false;
	v.config.tokens.has_max = false;
	v.config.requests.has_max = true;
	tally__rl_view(&s, 42, &v);
	assert_int_equal(v.size, UINT64_C(0x5a5a5a5a5a5a5a5a));
	assert_int_equal(v.config.size, sizeof v.config);
	assert_int_equal(v.incarnation, 42);
	assert_int_equal(v.version, UINT64_C(0xfedcba9876543210));
	assert_int_equal(v.tokens.usage, 11);
	assert_int_equal(v.tokens.window_start, -12);
	assert_int_equal(v.tokens.window_end, 13);
	assert_int_equal(v.config.tokens.max, 14);
	assert_int_equal(v.config.tokens.period.count, 15);
	assert_int_equal(v.config.tokens.period.unit, TALLY_PERIOD_WEEK);
	assert_true(v.config.tokens.has_max);
	assert_int_equal(v.requests.usage, 21);
	assert_int_equal(v.requests.window_start, 22);
	assert_int_equal(v.requests.window_end, 23);
	assert_int_equal(v.config.requests.max, 24);
	assert_int_equal(v.config.requests.period.count, 25);
	assert_int_equal(v.config.requests.period.unit, TALLY_PERIOD_MONTH);
	assert_false(v.config.requests.has_max);
	assert_int_equal(v.config.anchor, -31);
	assert_int_equal(v.config.utc_offset_minutes, 1234);
	assert_true(v.config.calendar_aligned);
	assert_int_equal(v.tokens_held, 16);
	assert_int_equal(v.requests_held, 26);
	assert_int_equal(v.holds, 7);
}

/*
 * Coarse clock readings (see test_budget.c): a rate-limit transition may
 * decide "neither counter is due" only when even now + the margin is before
 * both windows' ends; if either counter might be due it asks for the exact
 * clock and changes nothing.
 */
static struct rres
coarse(const struct tally__rl_snap *old, enum tally__op_code code, int64_t now,
       bool *need_exact)
{
	struct tally__args a;
	struct rres r;

	memset(&a, 0, sizeof a);
	a.op = code;
	a.now = now;
	a.now_coarse = true;
	a.amount[0] = 5;
	a.amount[1] = 1;
	memset(&r, 0x5a, sizeof r);
	r.install = true;
	r.rolls.n = 0;
	r.rc = tally__rl_step(old, &r.next, &a, &r.rolls, &r.install);
	*need_exact = a.need_exact;
	return r;
}

static void
test_coarse_clock(void **state)
{
	tally_ratelimit_config c = std_cfg();
	struct tally__rl_snap s = mk(&c, NOW0);
	const enum tally__op_code codes[3] = {TALLY__OP_BUMP, TALLY__OP_TRY,
					      TALLY__OP_CHECK};
	/* Tokens end first (the minute); requests at the hour. */
	int64_t far = s.c[0].window_end - TALLY__COARSE_MARGIN - 1;
	int64_t near_tokens = s.c[0].window_end - TALLY__COARSE_MARGIN;

	(void)state;
	for (int i = 0; i < 3; i++) {
		bool need = true;
		struct rres r = coarse(&s, codes[i], far, &need);

		assert_false(need);
		assert_int_equal(r.rc, TALLY_OK);
		assert_int_equal(r.rolls.n, 0);
		assert_int_equal(r.install, codes[i] != TALLY__OP_CHECK);
		if (codes[i] != TALLY__OP_CHECK) {
			assert_int_equal(r.next.c[0].usage, s.c[0].usage + 5);
			assert_int_equal(r.next.c[1].usage, s.c[1].usage + 1);
		}

		need = false;
		r = coarse(&s, codes[i], near_tokens, &need);
		assert_true(need);
		assert_int_equal(r.rc, TALLY__NEED_CLOCK);
		assert_false(r.install);
		assert_int_equal(r.rolls.n, 0);
	}
}

/* ------------------------------------------------------------------------ */
/* Sliding counters (TALLY_ALGORITHM_SLIDING)                              */
/* ------------------------------------------------------------------------ */

#define SW 1000 /* window length, ns */

/* Sliding tokens (max per SW ns, windows [k * SW, (k + 1) * SW)), fixed
 * requests per hour. */
static tally_ratelimit_config
sw_cfg(int64_t max)
{
	tally_ratelimit_config c =
		rcfg(lim(true, max, "1h"), lim(true, 10, "1h"), false, 0, 0);

	c.tokens.period = (tally_period){SW, TALLY_PERIOD_FIXED};
	c.tokens_algorithm = TALLY_ALGORITHM_SLIDING;
	return c;
}

static struct tally__rl_snap
sw_state(int64_t max, int64_t start, int64_t cur, int64_t prev, int64_t held)
{
	tally_ratelimit_config c = sw_cfg(max);
	struct tally__rl_snap s = mk(&c, start);

	assert_int_equal(s.c[0].window_start, start);
	s.c[0].usage = cur;
	s.c[0].held = held;
	s.prev[0] = prev;
	return s;
}

/* One point of test_sliding_agrees_with_swin; returns 0 (refused), 1
 * (passed), plus 2 when the report's wait is finite and positive. */
static int
sliding_point(int64_t max, int64_t start, int64_t cur, int64_t prev,
	      int64_t held, int64_t now, int64_t n)
{
	struct tally__rl_snap s = sw_state(max, start, cur, prev, held);
	struct tally__swin st = {start, cur, prev};
	struct tally__swin_est est;
	int64_t want_rem = -1, want_ra = -1;
	int allow = tally__swin_allow(SW, max, &st, now, held, n);
	tally_limit_report rep;
	struct tally__args a;
	struct rres r;

	assert_int_equal(
		tally__swin_remaining(SW, max, &st, now, held, &want_rem),
		TALLY_OK);
	assert_int_equal(
		tally__swin_retry_after(SW, max, &st, now, held, n, &want_ra),
		TALLY_OK);
	assert_int_equal(tally__swin_estimate(SW, &st, now, &est), TALLY_OK);

	r = op(&s, TALLY__OP_TRY, now, n, 0);
	assert_int_equal(r.rc, allow);
	assert_int_equal(r.rolls.n, 0);
	if (allow == TALLY_OK) {
		assert_int_equal(r.next.c[0].usage, cur + n);
		assert_int_equal(r.next.prev[0], prev);
	} else {
		assert_int_equal(r.mask, TOK);
	}

	memset(&a, 0, sizeof a);
	a.op = TALLY__OP_PEEK;
	a.now = now;
	a.amount[0] = n;
	a.report = &rep;
	memset(&rep, 0x5a, sizeof rep);
	r = run(&s, &a);
	assert_int_equal(r.rc, allow);
	assert_false(r.install);
	assert_int_equal(rep.c[0].used, est.ceil);
	assert_int_equal(rep.c[0].held, held);
	assert_int_equal(rep.c[0].max, max);
	assert_int_equal(rep.c[0].remaining, want_rem);
	assert_int_equal(rep.c[0].retry_after, want_ra);
	assert_int_equal(rep.c[0].window_start, start);
	assert_int_equal(rep.c[0].window_end, start + SW);
	assert_true((rep.c[0].flags & TALLY_DECISION_SLIDING) != 0);
	assert_false((rep.c[1].flags & TALLY_DECISION_SLIDING) != 0);
	assert_int_equal((rep.c[0].flags & TALLY_DECISION_TOO_BIG) != 0,
			 n > max);
	assert_int_equal((rep.c[0].flags & TALLY_DECISION_REACHED) != 0,
			 want_rem == 0);
	assert_int_equal((rep.c[0].flags & TALLY_DECISION_DENIED) != 0,
			 allow != TALLY_OK);
	return (allow == TALLY_OK) +
	       2 * (want_ra > 0 && want_ra != TALLY_RETRY_NEVER);
}

/*
 * Every decision of a sliding counter is swin.h's: try_consume passes iff
 * tally__swin_allow does, and a peek's report shows the estimate (ceil),
 * tally__swin_remaining and tally__swin_retry_after, on a grid of states,
 * times in the window (and before its start) and amounts. The requests
 * counter (fixed) never refuses here.
 */
static void
test_sliding_agrees_with_swin(void **state)
{
	static const int64_t maxes[] = {0, 1, 7, 100};
	static const int64_t prevs[] = {0, 1, 50, 100, 150};
	static const int64_t curs[] = {0, 3, 60, 100};
	static const int64_t helds[] = {0, 5};
	static const int64_t offs[] = {-10, 0, 1, 499, 500, 998, 999};
	static const int64_t ns[] = {0, 1, 2, 40, 100, 101};
	const size_t n_m = sizeof maxes / sizeof *maxes;
	const size_t n_p = sizeof prevs / sizeof *prevs;
	const size_t n_c = sizeof curs / sizeof *curs;
	const size_t n_o = sizeof offs / sizeof *offs;
	const size_t n_n = sizeof ns / sizeof *ns;
	const int64_t start = 5 * SW;
	long passed = 0, refused = 0, waits = 0;

	(void)state;
	for (size_t i = 0; i < n_m * n_p * n_c * 2 * n_o * n_n; i++) {
		size_t k = i;
		int64_t max = maxes[k % n_m], prev, cur, held, now;
		int got;

		k /= n_m;
		prev = prevs[k % n_p];
		k /= n_p;
		cur = curs[k % n_c];
		k /= n_c;
		held = helds[k % 2];
		k /= 2;
		now = start + offs[k % n_o];
		k /= n_o;
		got = sliding_point(max, start, cur, prev, held, now, ns[k]);
		passed += got & 1;
		refused += !(got & 1);
		waits += got >> 1;
	}
	assert_true(passed > 500);
	assert_true(refused > 500);
	assert_true(waits > 200);
}

/* A roll into the next window carries its usage as prev; a roll over a
 * missed window carries nothing; both report the closed window as a fixed
 * counter does. check blocks on the estimate. */
static void
test_sliding_rolls(void **state)
{
	struct tally__rl_snap s = sw_state(100, 5 * SW, 40, 7, 0);
	struct rres r;

	(void)state;
	/* [6000, 7000): prev = 40; at e = 100, 40 * 900 / 1000 = 36. */
	r = op(&s, TALLY__OP_TRY, 6 * SW + 100, 64, 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_note(&r, TOK, 40, 5 * SW, 6 * SW);
	assert_int_equal(r.next.prev[0], 40);
	assert_int_equal(r.next.c[0].usage, 64);
	assert_int_equal(r.next.c[0].window_start, 6 * SW);
	s = r.next;
	r = op(&s, TALLY__OP_TRY, 6 * SW + 100, 1, 0);
	assert_int_equal(r.rc, TALLY_LIMITED);
	r = op(&s, TALLY__OP_CHECK, 6 * SW + 100, 0, 0);
	assert_int_equal(r.rc, TALLY_LIMITED);
	assert_int_equal(r.mask, TOK);
	/* One ns later prev's part is ceil(40 * 899 / 1000) = 36 still;
	 * at e = 124 ceil(35.04) = 36, at e = 125 exactly 35: one unit
	 * passes. */
	r = op(&s, TALLY__OP_CHECK, 6 * SW + 124, 0, 0);
	assert_int_equal(r.rc, TALLY_LIMITED);
	r = op(&s, TALLY__OP_CHECK, 6 * SW + 125, 0, 0);
	assert_int_equal(r.rc, TALLY_OK);
	/* [8000, 9000) after the missed [7000, 8000): prev = 0. */
	r = op(&s, TALLY__OP_BUMP, 8 * SW + 1, 5, 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_note(&r, TOK, 64, 6 * SW, 8 * SW);
	assert_int_equal(r.next.prev[0], 0);
	assert_int_equal(r.next.c[0].usage, 5);
	/* A fixed counter keeps prev at 0 through its rolls. */
	r = op(&s, TALLY__OP_BUMP, T(2024, 5, 1, 12, 0, 0), 0, 1);
	assert_int_equal(r.next.prev[1], 0);
	/* Reset zeroes prev with usage. */
	s.version = 3;
	r = reset(&s, 6 * SW + 500, 3, TOK);
	assert_int_equal(r.rc, TALLY_OK);
	assert_int_equal(r.next.prev[0], 0);
	assert_int_equal(r.next.c[0].usage, 0);
}

/* The upsert rules of tally.h: the algorithm changes keep usage and the
 * window; prev survives only a same-length window on the new lattice. */
static void
test_sliding_upsert(void **state)
{
	tally_ratelimit_config c = sw_cfg(100);
	struct tally__rl_snap s = sw_state(100, 5 * SW, 40, 7, 0);
	struct rres r;

	(void)state;
	/* Same config, another max: prev kept. */
	c.tokens.max = 50;
	r = upsert(&s, 5 * SW + 1, &c);
	assert_int_equal(r.rc, TALLY_OK);
	assert_int_equal(r.next.prev[0], 7);
	assert_int_equal(r.next.c[0].usage, 40);
	assert_int_equal(r.next.c[0].max, 50);
	assert_int_equal(r.next.c[0].window_start, 5 * SW);
	/* Sliding to fixed: prev dropped, usage and window kept. */
	c = sw_cfg(100);
	c.tokens_algorithm = TALLY_ALGORITHM_FIXED;
	r = upsert(&s, 5 * SW + 1, &c);
	assert_int_equal(r.next.prev[0], 0);
	assert_int_equal(r.next.c[0].algorithm, TALLY_ALGORITHM_FIXED);
	assert_int_equal(r.next.c[0].usage, 40);
	assert_int_equal(r.next.c[0].window_end, 6 * SW);
	/* ... and back: sliding starts with prev = 0. */
	s = r.next;
	s.prev[0] = 0;
	c.tokens_algorithm = TALLY_ALGORITHM_SLIDING;
	r = upsert(&s, 5 * SW + 1, &c);
	assert_int_equal(r.next.prev[0], 0);
	assert_int_equal(r.next.c[0].algorithm, TALLY_ALGORITHM_SLIDING);
	/* A longer window: prev = 0, the window of the new lattice that
	 * holds the old start, [4000, 6000), usage kept. */
	s = sw_state(100, 5 * SW, 40, 7, 0);
	c = sw_cfg(100);
	c.tokens.period.count = 2 * SW;
	r = upsert(&s, 5 * SW + 1, &c);
	assert_int_equal(r.next.prev[0], 0);
	assert_int_equal(r.next.c[0].window_start, 4 * SW);
	assert_int_equal(r.next.c[0].window_end, 6 * SW);
	assert_int_equal(r.next.c[0].usage, 40);
	/* A new anchor that moves the lattice: prev = 0. */
	c = sw_cfg(100);
	c.anchor = 300;
	r = upsert(&s, 5 * SW + 1, &c);
	assert_int_equal(r.next.prev[0], 0);
	assert_int_equal(r.next.c[0].window_start, 4 * SW + 300);
	assert_int_equal(r.next.c[0].window_end, 5 * SW + 300);
	/* An anchor on the same lattice keeps it. */
	c.anchor = 17 * SW;
	r = upsert(&s, 5 * SW + 1, &c);
	assert_int_equal(r.next.prev[0], 7);
	assert_int_equal(r.next.c[0].window_start, 5 * SW);
}

static void
test_sliding_validate(void **state)
{
	tally_ratelimit_config c = sw_cfg(100);
	const int64_t week = 7 * NS_PER_DAY;

	(void)state;
	assert_int_equal(tally__rl_validate(&c), TALLY_OK);
	c.tokens_algorithm = 2;
	assert_int_equal(tally__rl_validate(&c), TALLY_EINVAL);
	c = sw_cfg(100);
	c.requests_algorithm = UINT32_MAX;
	assert_int_equal(tally__rl_validate(&c), TALLY_EINVAL);
	c = sw_cfg(100);
	c.tokens.period = P("1M");
	assert_int_equal(tally__rl_validate(&c), TALLY_EPERIOD);
	c.tokens_algorithm = TALLY_ALGORITHM_FIXED;
	assert_int_equal(tally__rl_validate(&c), TALLY_OK);
	c = sw_cfg(100);
	c.tokens.period =
		(tally_period){TALLY__SWIN_WIDTH_MAX, TALLY_PERIOD_FIXED};
	assert_int_equal(tally__rl_validate(&c), TALLY_OK);
	c.tokens.period.count++;
	assert_int_equal(tally__rl_validate(&c), TALLY_EPERIOD);
	c.tokens.period =
		(tally_period){TALLY__SWIN_WIDTH_MAX / week, TALLY_PERIOD_WEEK};
	assert_int_equal(tally__rl_validate(&c), TALLY_OK);
	c.tokens.period.count++;
	assert_int_equal(tally__rl_validate(&c), TALLY_EPERIOD);
	c = sw_cfg(TALLY__SWIN_AMOUNT_MAX);
	assert_int_equal(tally__rl_validate(&c), TALLY_OK);
	c.tokens.max++;
	assert_int_equal(tally__rl_validate(&c), TALLY_EINVAL);
	c.tokens.has_max = false; /* not looked at */
	assert_int_equal(tally__rl_validate(&c), TALLY_OK);
	c = sw_cfg(-1);
	assert_int_equal(tally__rl_validate(&c), TALLY_EINVAL);
}

/* A sliding counter decides at the exact time (the coarse clock asks for
 * it), and its usage stays within 2^62 - 1. */
static void
test_sliding_clock_and_caps(void **state)
{
	struct tally__rl_snap s = sw_state(100, 5 * SW, 40, 7, 0);
	struct tally__rl_snap q;
	struct tally__args a;
	bool need = false, install;
	struct rres r;

	(void)state;
	r = coarse(&s, TALLY__OP_TRY, 5 * SW + 10, &need);
	assert_true(need);
	assert_int_equal(r.rc, TALLY__NEED_CLOCK);
	assert_false(r.install);
	need = false;
	r = coarse(&s, TALLY__OP_CHECK, 5 * SW + 10, &need);
	assert_true(need);
	assert_int_equal(r.rc, TALLY__NEED_CLOCK);
	/* Far from a boundary (a minute's window) the quick path asks for
	 * the exact clock, which a fixed counter would not need. */
	{
		tally_ratelimit_config c = std_cfg();
		struct tally__rl_snap m;

		c.tokens_algorithm = TALLY_ALGORITHM_SLIDING;
		m = mk(&c, NOW0);
		memset(&a, 0, sizeof a);
		a.op = TALLY__OP_TRY;
		a.now = NOW0;
		a.now_coarse = true;
		a.amount[0] = 1;
		assert_int_equal(tally__rl_quick(&m, &q, &a, &install),
				 TALLY__QUICK_NO);
		assert_true(a.need_exact);
		a.need_exact = false;
		a.now_coarse = false;
		assert_int_equal(tally__rl_quick(&m, &q, &a, &install),
				 TALLY_OK);
		assert_int_equal(q.c[0].usage, 1);
		c.tokens_algorithm = TALLY_ALGORITHM_FIXED;
		m = mk(&c, NOW0);
		a.now_coarse = true;
		assert_int_equal(tally__rl_quick(&m, &q, &a, &install),
				 TALLY_OK);
		assert_false(a.need_exact);
	}

	s.c[0].has_max = 0;
	s.c[0].usage = TALLY__SWIN_AMOUNT_MAX - 5;
	r = op(&s, TALLY__OP_BUMP, 5 * SW + 10, 5, 0);
	assert_int_equal(r.rc, TALLY_OK);
	assert_int_equal(r.next.c[0].usage, TALLY__SWIN_AMOUNT_MAX);
	r = op(&s, TALLY__OP_BUMP, 5 * SW + 10, 6, 0);
	assert_int_equal(r.rc, TALLY_EOVERFLOW);
	r = op(&s, TALLY__OP_TRY, 5 * SW + 10, 6, 0);
	assert_int_equal(r.rc, TALLY_EOVERFLOW);
	s.c[0].algorithm = TALLY_ALGORITHM_FIXED;
	r = op(&s, TALLY__OP_BUMP, 5 * SW + 10, 6, 0);
	assert_int_equal(r.rc, TALLY_OK);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_coarse_clock),
		cmocka_unit_test(test_sliding_agrees_with_swin),
		cmocka_unit_test(test_sliding_rolls),
		cmocka_unit_test(test_sliding_upsert),
		cmocka_unit_test(test_sliding_validate),
		cmocka_unit_test(test_sliding_clock_and_caps),
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_get),
		cmocka_unit_test(test_bump_adds_both),
		cmocka_unit_test(test_bump_rolls_independently),
		cmocka_unit_test(test_check_mask),
		cmocka_unit_test(test_try_all_or_nothing),
		cmocka_unit_test(test_overflow),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_roll),
		cmocka_unit_test(test_upsert),
		cmocka_unit_test(test_calendar),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_view_copies_every_field),
		cmocka_unit_test(test_quick_path_agrees),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
