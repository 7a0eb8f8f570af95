/*
 * Unit tests of the GCRA math (src/gcra.c): every transition against an
 * independent oracle in exact rationals (every time scaled by the rate, in
 * __int128, with no (ns, frac) pairs and no quotient and remainder), the
 * ideal GCRA counts of saturating streams, the burst bound over every
 * interval, retry_after, reset_after and remaining by brute force, the
 * refund rule against a replay, time going backwards, and bad input. No
 * threads, no clock: every time is given.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "gcra.h"

__extension__ typedef __int128 i128;

#define S INT64_C(1000000000)
#define DAY (86400 * S)
#define SPAN TALLY__GCRA_SPAN_MAX

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

/* Uniform enough in 0 .. n - 1, n >= 1. */
static int64_t
below(int64_t n)
{
	return (int64_t)(next_rand() % (uint64_t)n);
}

static i128
imax(i128 a, i128 b)
{
	return a > b ? a : b;
}

static i128
imin(i128 a, i128 b)
{
	return a < b ? a : b;
}

static i128
fdiv(i128 a, i128 b)
{
	i128 q = a / b;

	return (a % b != 0 && a < 0) ? q - 1 : q;
}

static i128
cdiv(i128 a, i128 b)
{
	return -fdiv(-a, b);
}

static int64_t
clamp64(i128 v)
{
	if (v > INT64_MAX)
		return INT64_MAX;
	if (v < INT64_MIN)
		return INT64_MIN;
	return (int64_t)v;
}

static void
check_i128(i128 got, i128 want, const char *what, int line)
{
	if (got == want)
		return;
	print_error("%s (line %d): got %.0Lf, want %.0Lf\n", what, line,
		    (long double)got, (long double)want);
	fail();
}

#define CHECK_I128(got, want) check_i128((got), (want), #got, __LINE__)

/* ------------------------------------------------------------------------ */
/* The oracle                                                               */
/* ------------------------------------------------------------------------ */

/*
 * Everything scaled by R: the oracle keeps R * TAT, an integer, and
 * compares and adds integers; a time x ns is R * x, T is P, C * T is C * P.
 */
struct oracle {
	i128 R, P, C;
	i128 tat; /* R * TAT */
	int64_t last;
};

struct expect {
	int rc;
	int64_t now, remaining, reset_after, retry_after, overdraft;
	unsigned flags;
	i128 hs, he; /* admission: R * the slot's ends */
};

static void
o_init(struct oracle *o, int64_t rate, int64_t period, int64_t burst,
       int64_t now)
{
	o->R = rate;
	o->P = period;
	o->C = burst == 0 ? rate : burst;
	o->tat = (i128)now * rate;
	o->last = now;
}

/* The reports of a state whose scaled TAT is x, at now: remaining is the
 * largest m with ahead + m * P <= C * P, C - ceil(ahead / P). */
static void
o_report(const struct oracle *o, i128 x, int64_t now, struct expect *e)
{
	i128 ahead = imax(x - (i128)now * o->R, 0);
	i128 m = o->C - cdiv(ahead, o->P);

	e->now = now;
	e->remaining = (int64_t)imax(m, 0);
	e->reset_after = (int64_t)cdiv(ahead, o->R);
	e->retry_after = 0;
	e->overdraft = 0;
	e->flags = 0;
}

static int64_t
o_now(const struct oracle *o, int64_t now)
{
	return now > o->last ? now : o->last;
}

/* Whether a scaled TAT x can be stored when decided at nw. */
static bool
o_fits(const struct oracle *o, i128 x, int64_t nw)
{
	return fdiv(x, o->R) <= INT64_MAX &&
	       cdiv(x - (i128)nw * o->R, o->R) <= INT64_MAX;
}

static int
o_admit(struct oracle *o, int64_t now, int64_t n, bool peek, struct expect *e)
{
	int64_t nw = o_now(o, now);
	i128 N = (i128)nw * o->R, start = imax(o->tat, N), x;

	e->hs = e->he = 0;
	if (n > o->C) {
		o_report(o, o->tat, nw, e);
		e->retry_after = TALLY_RETRY_NEVER;
		e->flags = TALLY_DECISION_DENIED | TALLY_DECISION_TOO_BIG;
		return e->rc = TALLY_LIMITED;
	}
	x = start + n * o->P;
	if (n > 0 && x - N > o->C * o->P) {
		/* The earliest time s it passes: max(tat, R s) + n P - R s <=
		 * C P holds for R s >= tat (n <= C), and for R s < tat iff
		 * R s >= tat + n P - C P (which is below tat). */
		i128 s = cdiv(o->tat + n * o->P - o->C * o->P, o->R);

		o_report(o, o->tat, nw, e);
		e->retry_after = (int64_t)(s - nw);
		assert_true(e->retry_after >= 1);
		e->flags = TALLY_DECISION_DENIED;
		return e->rc = TALLY_LIMITED;
	}
	if (fdiv(x, o->R) > INT64_MAX)
		return e->rc = TALLY_EOVERFLOW;
	e->hs = start;
	e->he = x;
	o_report(o, n > 0 ? x : o->tat, nw, e);
	if (!peek) {
		if (n > 0)
			o->tat = x;
		o->last = nw;
	}
	return e->rc = TALLY_OK;
}

static int
o_bump(struct oracle *o, int64_t now, int64_t n, struct expect *e)
{
	int64_t nw = o_now(o, now);
	i128 x = o->tat;

	if (n > 0) {
		x = imax(o->tat, (i128)nw * o->R) + n * o->P;
		if (!o_fits(o, x, nw))
			return e->rc = TALLY_EOVERFLOW;
	}
	o->tat = x;
	o->last = nw;
	o_report(o, x, nw, e);
	return e->rc = TALLY_OK;
}

static int
o_settle(struct oracle *o, int64_t now, i128 hs, i128 he, int64_t est,
	 int64_t actual, struct expect *e)
{
	int64_t nw = o_now(o, now);
	i128 N = (i128)nw * o->R, x = o->tat;

	if (actual < est) {
		i128 u = (est - actual) * o->P;
		i128 refund = imin(u, imax(0, he - imax(N, hs)));

		if (refund > 0)
			x = imax(o->tat - refund, N);
	} else if (actual > est) {
		x = imax(o->tat, N) + (actual - est) * o->P;
		if (!o_fits(o, x, nw))
			return e->rc = TALLY_EOVERFLOW;
	}
	o->tat = x;
	o->last = nw;
	o_report(o, x, nw, e);
	if (actual > est) {
		e->overdraft = actual - est;
		e->flags = TALLY_DECISION_OVERDRAFT;
	}
	return e->rc = TALLY_OK;
}

/* ------------------------------------------------------------------------ */
/* The implementation beside the oracle                                     */
/* ------------------------------------------------------------------------ */

struct run {
	struct tally__gcra_rate rt;
	struct tally__gcra st;
	struct oracle o;
};

static i128
scaled(const struct tally__gcra_rate *rt, const struct tally__gcra_at *a)
{
	return (i128)a->ns * rt->rate + a->frac;
}

static void
run_init(struct run *r, int64_t rate, int64_t period, int64_t burst,
	 int64_t now)
{
	assert_int_equal(tally__gcra_rate_init(&r->rt, rate, period, burst),
			 TALLY_OK);
	tally__gcra_init(&r->st, now);
	o_init(&r->o, rate, period, burst, now);
}

static void
check_decision(int rc, const struct tally__gcra_decision *d,
	       const struct expect *e)
{
	assert_int_equal(rc, e->rc);
	if (rc != TALLY_OK && rc != TALLY_LIMITED)
		return;
	assert_int_equal(d->now, e->now);
	assert_int_equal(d->remaining, e->remaining);
	assert_int_equal(d->reset_after, e->reset_after);
	assert_int_equal(d->retry_after, e->retry_after);
	assert_int_equal(d->overdraft, e->overdraft);
	assert_int_equal(d->flags, e->flags);
}

static void
check_state(const struct run *r)
{
	assert_true(r->st.tat.frac >= 0 && r->st.tat.frac < r->rt.rate);
	CHECK_I128(scaled(&r->rt, &r->st.tat), r->o.tat);
	assert_int_equal(r->st.last, r->o.last);
}

static int
r_admit(struct run *r, int64_t now, int64_t n, bool peek,
	struct tally__gcra_decision *d, struct tally__gcra_hold *h)
{
	struct tally__gcra next;
	struct expect e;
	int rc;

	memset(&next, 0xa5, sizeof next);
	rc = tally__gcra_admit(&r->rt, &r->st, &next, now, n, peek, d, h);
	o_admit(&r->o, now, n, peek, &e);
	check_decision(rc, d, &e);
	if (rc == TALLY_OK && h != NULL) {
		CHECK_I128(scaled(&r->rt, &h->start), e.hs);
		CHECK_I128(scaled(&r->rt, &h->end), e.he);
		assert_int_equal(h->amount, n);
	}
	if (rc != TALLY_OK || peek)
		assert_memory_equal(&next, &r->st, sizeof next);
	r->st = next;
	check_state(r);
	return rc;
}

static int
r_bump(struct run *r, int64_t now, int64_t n, struct tally__gcra_decision *d)
{
	struct tally__gcra next;
	struct expect e;
	int rc;

	rc = tally__gcra_bump(&r->rt, &r->st, &next, now, n, d);
	o_bump(&r->o, now, n, &e);
	check_decision(rc, d, &e);
	if (rc != TALLY_OK)
		assert_memory_equal(&next, &r->st, sizeof next);
	r->st = next;
	check_state(r);
	return rc;
}

static int
r_settle(struct run *r, int64_t now, const struct tally__gcra_hold *h,
	 int64_t actual, struct tally__gcra_decision *d)
{
	struct tally__gcra next;
	struct expect e;
	int rc;

	rc = tally__gcra_settle(&r->rt, &r->st, &next, now, h, actual, d);
	o_settle(&r->o, now, scaled(&r->rt, &h->start), scaled(&r->rt, &h->end),
		 h->amount, actual, &e);
	check_decision(rc, d, &e);
	if (rc != TALLY_OK)
		assert_memory_equal(&next, &r->st, sizeof next);
	r->st = next;
	check_state(r);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Configurations and times                                                 */
/* ------------------------------------------------------------------------ */

struct cfg {
	int64_t rate, period, burst;
	int steps;
};

static const struct cfg cfgs[] = {
	{1, S, 1, 15000},
	{1, S, 5, 15000},
	{3000, S, 1, 15000},
	{3000, S, 0, 15000}, /* default burst: 3000 */
	{3000, S, 7, 15000},
	{10000, S, 1, 15000},
	{10000, S, 40, 15000},
	{1000000, S, 1, 15000},
	{1000000, S, 100, 15000},
	{1000000000, S, 1, 15000},
	{1000000000, S, 1000, 15000},
	{7, 3 * DAY, 1, 15000},
	{7, 3 * DAY, 0, 15000},
	{7, 3 * DAY, 20, 15000},
	{3, 10, 2, 15000},        /* T = 3 + 1/3 ns */
	{999999937, S, 3, 15000}, /* T = 1 + 63/999999937 ns */
	{1, SPAN, 1, 300},        /* C * T = 2^62 exactly */
	{SPAN, SPAN, 1, 3000},    /* T = 1, R = 2^62 */
	{3, SPAN - 1, 3, 300},    /* T = (2^62 - 1) / 3 */
	{(INT64_C(1) << 40) + 1, SPAN, 1000, 3000}, /* T ~ 2^22 */
};

#define NCFGS (sizeof cfgs / sizeof cfgs[0])

/* T rounded up, for sizing steps. */
static int64_t
t_up(const struct cfg *c)
{
	return c->period / c->rate + (c->period % c->rate != 0);
}

/* Whether T is so long that a run sees only a few emissions. */
static bool
huge(const struct cfg *c)
{
	return t_up(c) > INT64_C(1) << 50;
}

/* The longest random step between calls: 3 T, or 2^55 ns for a huge T. */
static int64_t
step_max(const struct cfg *c)
{
	return huge(c) ? INT64_C(1) << 55 : 3 * t_up(c);
}

/* A time for the next call: random, adversarial (on the emission boundary
 * of the request n, of the TAT, of the ideal schedule from t0, or 1 ns
 * either side), backwards, or the same. */
static int64_t
pick_time(const struct cfg *c, const struct oracle *o, int64_t t0, int64_t n,
	  int64_t dmax)
{
	int64_t T = t_up(c), nn = n > o->C ? (int64_t)o->C : n;
	i128 t, k;

	switch (below(11)) {
	case 0:
	case 1:
		t = (i128)o->last + below(dmax + 1);
		break;
	case 2:
	case 3:
		/* The earliest time the request passes. */
		t = cdiv(o->tat + nn * o->P - o->C * o->P, o->R) + below(3) - 1;
		break;
	case 4:
		t = cdiv(o->tat, o->R) + below(3) - 1;
		break;
	case 5:
		k = ((i128)o->last - t0) * o->R / o->P + below(3);
		t = t0 + fdiv(k * o->P, o->R) + below(3) - 1;
		break;
	case 6:
		t = (i128)o->last - 1 - below(2 * (T < S ? T : S));
		break;
	case 7:
	case 8:
		t = (i128)o->last + below(T + 1); /* within one emission */
		break;
	default:
		t = o->last;
		break;
	}
	return clamp64(t);
}

/* A request size: mostly small, sometimes C, sometimes too big. */
static int64_t
pick_amount(int64_t C)
{
	switch (below(10)) {
	case 0:
		return 0;
	case 1:
		return C;
	case 2:
		return C + 1 + below(2);
	case 3:
	case 4:
		return 1 + below(C);
	default:
		return 1 + below(C < 3 ? C : 3);
	}
}

/* ------------------------------------------------------------------------ */
/* 1. Exactness against the oracle                                          */
/* ------------------------------------------------------------------------ */

#define OPEN_MAX 8

static void
test_rate_init_exact(void **state)
{
	struct tally__gcra_rate rt;

	(void)state;
	assert_int_equal(tally__gcra_rate_init(&rt, 3000, S, 0), TALLY_OK);
	assert_int_equal(rt.burst, 3000);
	assert_int_equal(rt.q, 333333);
	assert_int_equal(rt.r, 1000);
	assert_int_equal(rt.cap.ns, S);
	assert_int_equal(rt.cap.frac, 0);
	assert_int_equal(tally__gcra_rate_init(&rt, 3000, S, 7), TALLY_OK);
	assert_int_equal(rt.cap.ns, 2333333); /* 7e9 / 3000 = 2333333 + 1/3 */
	assert_int_equal(rt.cap.frac, 1000);
	assert_int_equal(tally__gcra_rate_init(&rt, 7, 3 * DAY, 1), TALLY_OK);
	assert_int_equal(rt.q, 37028571428571);
	assert_int_equal(rt.r, 3);
	assert_int_equal(tally__gcra_rate_init(&rt, 1000000000, S, 1),
			 TALLY_OK);
	assert_int_equal(rt.q, 1);
	assert_int_equal(rt.r, 0);
}

/*
 * Long fake-clock runs of every configuration: try, peek, hold, settle
 * (below, at and above the estimate, in any order) and bump at random and
 * adversarial times; every result, report, hold slot and state equals the
 * oracle's, exactly.
 */
static void
test_oracle_runs(void **state)
{
	(void)state;
	for (size_t ci = 0; ci < NCFGS; ci++) {
		const struct cfg *c = &cfgs[ci];
		struct tally__gcra_hold open[OPEN_MAX];
		unsigned nopen = 0, allowed = 0, refused = 0, settled = 0;
		int64_t t0 = (int64_t)(next_rand() >> 4) - (INT64_C(1) << 59);
		int64_t dmax = step_max(c);
		struct run r;

		/* A huge T starts far back and soon meets the end of int64
		 * time (TALLY_EOVERFLOW, against the oracle too); any other
		 * run stays within 2^60 ns. */
		if (huge(c))
			t0 = -(INT64_C(1) << 62) - (INT64_C(1) << 61);
		else if (dmax > (INT64_C(1) << 60) / c->steps)
			dmax = (INT64_C(1) << 60) / c->steps;
		run_init(&r, c->rate, c->period, c->burst, t0);
		for (int i = 0; i < c->steps; i++) {
			struct tally__gcra_decision d;
			struct tally__gcra_hold h;
			int64_t n = pick_amount(r.rt.burst), now;
			int64_t op = below(20);
			int rc;

			now = pick_time(c, &r.o, t0, n, dmax);
			if (op < 10) {
				rc = r_admit(&r, now, n, false, &d, NULL);
			} else if (op < 12) {
				rc = r_admit(&r, now, n, true, &d, &h);
			} else if (op < 15 && nopen < OPEN_MAX) {
				rc = r_admit(&r, now, n, false, &d, &h);
				if (rc == TALLY_OK)
					open[nopen++] = h;
			} else if (op < 19 && nopen > 0) {
				unsigned j = (unsigned)below(nopen);
				int64_t e = open[j].amount, a;

				switch (below(4)) {
				case 0:
					a = 0;
					break;
				case 1:
					a = e;
					break;
				case 2:
					a = below(e + 1);
					break;
				default:
					a = e + 1 + below(3);
					break;
				}
				rc = r_settle(&r, now, &open[j], a, &d);
				open[j] = open[--nopen];
				settled++;
			} else {
				rc = r_bump(&r, now, below(r.rt.burst + 1), &d);
			}
			if (rc == TALLY_OK)
				allowed++;
			else if (rc == TALLY_LIMITED)
				refused++;
		}
		/* The run exercised both answers. */
		assert_true(allowed > 0);
		assert_true(refused > 0);
		assert_true(settled > 0 || c->steps < 1000);
	}
}

/* ------------------------------------------------------------------------ */
/* 1b. The ideal GCRA count of a saturating stream                          */
/* ------------------------------------------------------------------------ */

/*
 * A stream of requests of k units that asks again at once when one passes
 * and exactly retry_after later when one is refused admits, by t0 + e, the
 * largest j with j k <= C + e / T requests, floor((C P + e R) / (k P)):
 * for k = 1, C + floor(e / T). The j-th passes at ceil(t0 + (j k - C) T),
 * and then TAT = t0 + j k T exactly, as long as that ceil is at most the
 * TAT before it, i.e. for k < C ((C - k) T >= 1 ns). For k = C the TAT
 * is at or below each arrival, which can only be a whole ns: the stream
 * passes one per ceil(C T) ns, 1 + floor(e / ceil(C T)) (the same for a
 * whole C T). Checked at checkpoints on and 1 ns either side of the ideal
 * schedule's boundaries.
 */
static i128
ideal(int64_t C, int64_t period, int64_t rate, int64_t k, int64_t e)
{
	if (k == C)
		return 1 + fdiv(e, cdiv((i128)C * period, rate));
	return fdiv((i128)C * period + (i128)e * rate, (i128)k * period);
}

static void
ideal_count(int64_t rate, int64_t period, int64_t burst, int64_t k,
	    int64_t horizon_units)
{
	struct tally__gcra_rate rt;
	struct tally__gcra st;
	int64_t t0 = -123456789, now = t0, C, E;
	static int64_t times[40000];
	unsigned n = 0;

	assert_int_equal(tally__gcra_rate_init(&rt, rate, period, burst),
			 TALLY_OK);
	C = rt.burst;
	tally__gcra_init(&st, t0);
	E = (int64_t)((i128)horizon_units * period / rate);
	while (now <= t0 + E) {
		struct tally__gcra_decision d;
		int rc = tally__gcra_admit(&rt, &st, &st, now, k, false, &d,
					   NULL);

		if (rc == TALLY_OK) {
			assert_true(n < sizeof times / sizeof times[0]);
			times[n++] = now;
			continue;
		}
		assert_int_equal(rc, TALLY_LIMITED);
		assert_true(d.retry_after >= 1);
		if ((i128)now + d.retry_after > (i128)t0 + E)
			break;
		now += d.retry_after;
	}
	for (int64_t j = 0; j < 60; j++) {
		i128 u = (i128)horizon_units * j / 60; /* units of T */
		int64_t e = (int64_t)cdiv(u * period, rate) + below(3) - 1;
		unsigned got = 0;
		i128 want;

		if (e < 0 || e > E)
			continue;
		while (got < n && times[got] <= t0 + e)
			got++;
		want = ideal(C, period, rate, k, e);
		if (got != want)
			print_error("rate %lld/%lld C %lld k %lld e %lld\n",
				    (long long)rate, (long long)period,
				    (long long)C, (long long)k, (long long)e);
		CHECK_I128(got, want);
	}
	CHECK_I128(n, ideal(C, period, rate, k, E));
}

/* Every ns tried until refused: the same count, for small T. */
static void
ideal_count_dense(int64_t rate, int64_t period, int64_t burst, int64_t E)
{
	struct tally__gcra_rate rt;
	struct tally__gcra st;
	int64_t t0 = 1000, got = 0;

	assert_int_equal(tally__gcra_rate_init(&rt, rate, period, burst),
			 TALLY_OK);
	tally__gcra_init(&st, t0);
	for (int64_t now = t0; now <= t0 + E; now++)
		while (tally__gcra_admit(&rt, &st, &st, now, 1, false, NULL,
					 NULL) == TALLY_OK)
			got++;
	CHECK_I128(got, ideal(rt.burst, period, rate, 1, E));
}

static void
test_ideal_count(void **state)
{
	(void)state;
	ideal_count(1, S, 1, 1, 3000);
	ideal_count(1, S, 5, 1, 3000);
	ideal_count(3000, S, 1, 1, 9000); /* T = 333333 1/3: 1 per 333334 */
	ideal_count(3000, S, 2, 1, 9000); /* exact: 3000 a second */
	ideal_count(3000, S, 7, 7, 9000);
	ideal_count(3000, S, 0, 1, 9000);
	ideal_count(10000, S, 1, 1, 20000); /* nginx passes ~1000 of these */
	ideal_count(10000, S, 10, 3, 20000);
	ideal_count(1000000, S, 1, 1, 20000);
	ideal_count(1000000, S, 100, 2, 20000);
	ideal_count(1000000000, S, 1, 1, 20000);
	ideal_count(7, 3 * DAY, 1, 1, 3000);
	ideal_count(7, 3 * DAY, 2, 1, 3000);
	ideal_count(7, 3 * DAY, 20, 3, 3000);
	ideal_count(999999937, S, 3, 1, 20000);
	ideal_count(3, 10, 2, 1, 20000);
	ideal_count(1, SPAN, 1, 1, 1);
	ideal_count_dense(1000000000, S, 1, 20000);
	ideal_count_dense(1000000000, S, 50, 20000);
	ideal_count_dense(3, 10, 2, 20000);
	ideal_count_dense(3, 10, 1, 20000); /* one per 4 ns */
	ideal_count_dense(999999937, S, 3, 20000);
	ideal_count_dense(1000000000, 4000000000, 1, 20000); /* T = 4 */
}

/* ------------------------------------------------------------------------ */
/* 2. The burst bound over every interval                                   */
/* ------------------------------------------------------------------------ */

/*
 * For admissions i <= j at times a_i <= a_j, the units of i .. j must be at
 * most C + R (a_j - a_i) / P: with U_j the units of 0 .. j,
 * (U_j - U_{i-1}) P <= C P + R (a_j - a_i), i.e.
 * (U_j P - R a_j) - (U_{i-1} P - R a_i) <= C P for every i <= j; a running
 * minimum of the subtrahend checks all pairs at once. The maximum over the
 * pairs must equal C P (the first burst fills the bucket at t0).
 */
static void
test_burst_bound(void **state)
{
	static int64_t at[20000], units[20000];

	(void)state;
	for (size_t ci = 0; ci < NCFGS; ci++) {
		const struct cfg *c = &cfgs[ci];
		struct run r;
		int64_t t0 = 5, dmax = step_max(c), C;
		unsigned n = 0;
		i128 U = 0, gmin = 0, worst = 0;

		if (huge(c))
			continue; /* too few admissions to say anything */
		run_init(&r, c->rate, c->period, c->burst, t0);
		C = r.rt.burst;
		for (int64_t i = 0; i < C; i++) {
			struct tally__gcra_decision d;

			assert_int_equal(r_admit(&r, t0, 1, false, &d, NULL),
					 TALLY_OK);
			at[n] = t0;
			units[n++] = 1;
		}
		for (int i = 0; i < 4000 && n < 20000; i++) {
			struct tally__gcra_decision d;
			int64_t k = 1 + below(C < 3 ? C : 3), now;

			now = pick_time(c, &r.o, t0, k, dmax);
			if (r_admit(&r, now, k, false, &d, NULL) == TALLY_OK) {
				at[n] = d.now;
				units[n++] = k;
			}
		}
		assert_true(n > 0);
		for (unsigned j = 0; j < n; j++) {
			i128 g = U * c->period - (i128)r.o.R * at[j];
			i128 v;

			if (j == 0 || g < gmin)
				gmin = g;
			U += units[j];
			v = U * c->period - (i128)r.o.R * at[j] - gmin;
			assert_true(v <= r.o.C * r.o.P);
			worst = imax(worst, v);
		}
		CHECK_I128(worst, r.o.C * r.o.P);
	}
}

/* ------------------------------------------------------------------------ */
/* 3. retry_after, reset_after and remaining by brute force                 */
/* ------------------------------------------------------------------------ */

static int
peek_at(const struct run *r, int64_t now, int64_t n,
	struct tally__gcra_decision *d)
{
	struct tally__gcra next;
	int rc =
		tally__gcra_admit(&r->rt, &r->st, &next, now, n, true, d, NULL);

	assert_memory_equal(&next, &r->st, sizeof next);
	return rc;
}

/* Whether an admission at t may meet TALLY_EOVERFLOW: t + C * T + 1 ns
 * leaves int64_t. */
static bool
near_end(const struct run *r, i128 t)
{
	return t + r->rt.cap.ns + 1 > INT64_MAX;
}

static void
brute_force(const struct run *r, int64_t now, int64_t n)
{
	struct tally__gcra_decision d, d2;
	int rc = peek_at(r, now, n, &d), rc2;
	int64_t nw = d.now;

	if (rc == TALLY_EOVERFLOW) {
		assert_true(near_end(r, now > r->st.last ? now : r->st.last));
		return;
	}
	if (rc == TALLY_LIMITED && (d.flags & TALLY_DECISION_TOO_BIG)) {
		assert_true(n > r->rt.burst);
		assert_int_equal(d.retry_after, TALLY_RETRY_NEVER);
		/* Never: not even once the bucket is full again. */
		if ((i128)nw + d.reset_after + 1 <= INT64_MAX) {
			assert_int_equal(
				peek_at(r, nw + d.reset_after + 1, n, &d2),
				TALLY_LIMITED);
			assert_int_equal(d2.remaining, r->rt.burst);
			assert_int_equal(d2.retry_after, TALLY_RETRY_NEVER);
		}
	} else if (rc == TALLY_LIMITED) {
		assert_true(d.retry_after >= 1);
		if ((i128)nw + d.retry_after <= INT64_MAX) {
			rc2 = peek_at(r, nw + d.retry_after, n, &d2);
			assert_true(rc2 == TALLY_OK ||
				    (rc2 == TALLY_EOVERFLOW &&
				     near_end(r, (i128)nw + d.retry_after)));
			assert_int_equal(
				peek_at(r, nw + d.retry_after - 1, n, &d2),
				TALLY_LIMITED);
		}
	} else {
		assert_int_equal(rc, TALLY_OK);
		assert_int_equal(d.retry_after, 0);
	}
	/* The state as it is (a peek of 0 changes nothing). */
	assert_int_equal(peek_at(r, now, 0, &d), TALLY_OK);
	assert_true(d.remaining >= 0 && d.remaining <= r->rt.burst);
	rc2 = peek_at(r, now, d.remaining, &d2);
	assert_true(rc2 == TALLY_OK ||
		    (rc2 == TALLY_EOVERFLOW && near_end(r, nw)));
	if (d.remaining < r->rt.burst)
		assert_int_equal(peek_at(r, now, d.remaining + 1, &d2),
				 TALLY_LIMITED);
	if ((i128)nw + d.reset_after <= INT64_MAX) {
		assert_int_equal(peek_at(r, nw + d.reset_after, 0, &d2),
				 TALLY_OK);
		assert_int_equal(d2.remaining, r->rt.burst);
		assert_int_equal(d2.reset_after, 0);
		if (d.reset_after >= 1) {
			peek_at(r, nw + d.reset_after - 1, 0, &d2);
			assert_true(d2.remaining < r->rt.burst);
			assert_int_equal(d2.reset_after, 1);
		}
	}
}

static void
test_retry_brute_force(void **state)
{
	(void)state;
	for (size_t ci = 0; ci < NCFGS; ci++) {
		const struct cfg *c = &cfgs[ci];
		struct run r;
		int64_t t0 = 77, dmax = step_max(c);
		unsigned limited = 0;

		if (huge(c))
			t0 = -(INT64_C(1) << 62);
		run_init(&r, c->rate, c->period, c->burst, t0);
		for (int i = 0; i < 3000; i++) {
			struct tally__gcra_decision d;
			int64_t n = pick_amount(r.rt.burst), now;

			now = pick_time(c, &r.o, t0, n, dmax);
			brute_force(&r, now, n);
			if (below(6) == 0)
				r_bump(&r, now, below(r.rt.burst + 1), &d);
			else if (r_admit(&r, now, n, false, &d, NULL) ==
				 TALLY_LIMITED)
				limited++;
		}
		assert_true(limited > 0);
	}
}

/*
 * States on the edges: TAT = now + C T - k T + delta / R for delta -1, 0,
 * 1, so the room C T - ahead is k T and 1/R either side of it: remaining
 * is k, k and k - 1 (exactly a multiple of T, and 1/R short of one, for
 * R up to 2^62, where room * R takes more than 64 bits). Then the brute
 * force of every report there.
 */
static void
test_edges(void **state)
{
	(void)state;
	for (size_t ci = 0; ci < NCFGS; ci++) {
		const struct cfg *c = &cfgs[ci];
		struct run r;
		int64_t C, now = 12345, ks[6];

		run_init(&r, c->rate, c->period, c->burst, now);
		C = r.rt.burst;
		ks[0] = 0;
		ks[1] = 1;
		ks[2] = C < 2 ? 1 : 2;
		ks[3] = C / 2;
		ks[4] = C - 1;
		ks[5] = C;
		for (int ki = 0; ki < 6; ki++) {
			for (int64_t delta = -1; delta <= 1; delta++) {
				i128 x = (i128)now * c->rate + r.o.C * r.o.P -
					 ks[ki] * r.o.P + delta;
				struct tally__gcra_decision d;
				/* k = 0, delta = 1: past the burst, 0. */
				int64_t want = delta == 1 && ks[ki] > 0
						       ? ks[ki] - 1
						       : ks[ki];

				if (x < (i128)now * c->rate)
					continue; /* ahead < 0: the same as 0 */
				r.st.tat.ns = (int64_t)fdiv(x, c->rate);
				r.st.tat.frac =
					(int64_t)(x -
						  (i128)r.st.tat.ns * c->rate);
				r.st.last = now;
				assert_int_equal(peek_at(&r, now, 0, &d),
						 TALLY_OK);
				assert_int_equal(d.remaining, want);
				assert_int_equal(
					d.reset_after,
					clamp64(cdiv(x - (i128)now * c->rate,
						     c->rate)));
				for (int64_t n = 1; n <= C && n <= 3; n++)
					brute_force(&r, now, n);
				brute_force(&r, now, ks[ki] + 1);
				brute_force(&r, now, C);
			}
		}
	}
}

/* ------------------------------------------------------------------------ */
/* 4. The refund rule                                                       */
/* ------------------------------------------------------------------------ */

/* max(TAT, t): what every later call at t or after reads of a state. */
static i128
effective(const struct tally__gcra_rate *rt, const struct tally__gcra *st,
	  int64_t t)
{
	return imax(scaled(rt, &st->tat), (i128)t * rt->rate);
}

/*
 * From one random state, path A holds e at t1, then (maybe) bumps at times
 * in [t1, t2], then settles with a <= e at t2; path B admits only a at t1
 * and makes the same bumps. A never ends below B (a settle never refunds
 * more than holding the actual would have left), and without the bumps
 * the two are equal, at any t2.
 */
static void
test_refund_replay(void **state)
{
	(void)state;
	for (size_t ci = 0; ci < NCFGS; ci++) {
		const struct cfg *c = &cfgs[ci];
		struct tally__gcra_rate rt;
		struct tally__gcra st;
		unsigned strict = 0;

		if (huge(c))
			continue;
		assert_int_equal(tally__gcra_rate_init(&rt, c->rate, c->period,
						       c->burst),
				 TALLY_OK);
		tally__gcra_init(&st, 1000);
		for (int i = 0; i < 1500; i++) {
			struct tally__gcra_decision d;
			struct tally__gcra_hold h;
			struct tally__gcra A, B;
			int64_t T = t_up(c), t1, t2, e, a, bt[3], bn[3];
			int nb = below(3) == 0 ? 0 : (int)below(4);
			i128 ea, eb;

			/* A random state: some load, a random time. */
			t1 = st.last + below(2 * T * rt.burst + 1);
			tally__gcra_bump(&rt, &st, &st, t1, below(rt.burst),
					 &d);
			e = 1 + below(rt.burst);
			if (tally__gcra_admit(&rt, &st, &A, t1, e, false, &d,
					      &h) != TALLY_OK) {
				t1 += d.retry_after;
				assert_int_equal(tally__gcra_admit(&rt, &st, &A,
								   t1, e, false,
								   &d, &h),
						 TALLY_OK);
			}
			a = below(e + 1);
			assert_int_equal(tally__gcra_admit(&rt, &st, &B, t1, a,
							   false, &d, NULL),
					 TALLY_OK);
			t2 = t1 + (below(3) == 0 ? 0 : below(2 * e * T + 2));
			for (int b = 0; b < nb; b++) {
				bt[b] = t1 + below(t2 - t1 + 1);
				bn[b] = 1 + below(rt.burst);
			}
			for (int b = 0; b < nb; b++)
				for (int b2 = b + 1; b2 < nb; b2++)
					if (bt[b2] < bt[b]) {
						int64_t x = bt[b];

						bt[b] = bt[b2];
						bt[b2] = x;
					}
			for (int b = 0; b < nb; b++) {
				assert_int_equal(tally__gcra_bump(&rt, &A, &A,
								  bt[b], bn[b],
								  &d),
						 TALLY_OK);
				assert_int_equal(tally__gcra_bump(&rt, &B, &B,
								  bt[b], bn[b],
								  &d),
						 TALLY_OK);
			}
			assert_int_equal(
				tally__gcra_settle(&rt, &A, &A, t2, &h, a, &d),
				TALLY_OK);
			ea = effective(&rt, &A, t2);
			eb = effective(&rt, &B, t2);
			assert_true(ea >= eb);
			if (nb == 0)
				CHECK_I128(ea, eb);
			if (ea > eb)
				strict++;
			/* Go on from the settled state, every other time. */
			if (i % 2 == 0)
				st = A;
		}
		/* Bumps behind a drained hold do keep A above B sometimes:
		 * the cases where plain subtraction over-refunds. */
		assert_true(strict > 0);
	}
}

/* Worked examples: T = 1 s, C = 10. */
static void
test_refund_examples(void **state)
{
	struct tally__gcra_rate rt;
	struct tally__gcra st, x;
	struct tally__gcra_decision d;
	struct tally__gcra_hold ha, hb;

	(void)state;
	assert_int_equal(tally__gcra_rate_init(&rt, 1, S, 10), TALLY_OK);

	/* A release half drained refunds only the undrained half. */
	tally__gcra_init(&st, 0);
	assert_int_equal(
		tally__gcra_admit(&rt, &st, &st, 0, 10, false, &d, &ha),
		TALLY_OK);
	assert_int_equal(ha.start.ns, 0);
	assert_int_equal(ha.end.ns, 10 * S);
	assert_int_equal(d.remaining, 0);
	assert_int_equal(d.reset_after, 10 * S);
	assert_int_equal(tally__gcra_settle(&rt, &st, &x, 4 * S, &ha, 0, &d),
			 TALLY_OK);
	assert_int_equal(x.tat.ns, 4 * S);
	assert_int_equal(d.remaining, 10);
	assert_int_equal(d.reset_after, 0);

	/* Two holds of 5 at 0: [0, 5 s) and [5 s, 10 s). At 7 s the first
	 * has drained: releasing it refunds nothing (plain subtraction
	 * would give TAT 5 s, a full bucket); releasing the second refunds
	 * its undrained 3 s. */
	tally__gcra_init(&st, 0);
	assert_int_equal(tally__gcra_admit(&rt, &st, &st, 0, 5, false, &d, &ha),
			 TALLY_OK);
	assert_int_equal(tally__gcra_admit(&rt, &st, &st, 0, 5, false, &d, &hb),
			 TALLY_OK);
	assert_int_equal(hb.start.ns, 5 * S);
	assert_int_equal(tally__gcra_settle(&rt, &st, &x, 7 * S, &ha, 0, &d),
			 TALLY_OK);
	assert_int_equal(x.tat.ns, 10 * S);
	assert_int_equal(d.remaining, 7);
	assert_int_equal(d.reset_after, 3 * S);
	assert_int_equal(tally__gcra_settle(&rt, &st, &x, 7 * S, &hb, 1, &d),
			 TALLY_OK);
	/* refund min(4 s, 3 s): what drained of hb covers its actual */
	assert_int_equal(x.tat.ns, 7 * S);
	assert_int_equal(d.remaining, 10);

	/* Settled at once with a < e: exactly as if a had been held. */
	tally__gcra_init(&st, 0);
	assert_int_equal(tally__gcra_admit(&rt, &st, &st, 0, 3, false, &d, &ha),
			 TALLY_OK);
	assert_int_equal(tally__gcra_admit(&rt, &st, &st, 0, 6, false, &d, &hb),
			 TALLY_OK);
	assert_int_equal(tally__gcra_settle(&rt, &st, &st, 0, &hb, 2, &d),
			 TALLY_OK);
	assert_int_equal(st.tat.ns, 5 * S);
	assert_int_equal(st.tat.frac, 0);
	assert_int_equal(d.remaining, 5);

	/* An overdraft: held 2, used 15 at 1 s, past the burst. */
	tally__gcra_init(&st, 0);
	assert_int_equal(tally__gcra_admit(&rt, &st, &st, 0, 2, false, &d, &ha),
			 TALLY_OK);
	assert_int_equal(tally__gcra_settle(&rt, &st, &st, S, &ha, 15, &d),
			 TALLY_OK);
	assert_int_equal(st.tat.ns, 15 * S); /* max(2 s, 1 s) + 13 s */
	assert_int_equal(d.overdraft, 13);
	assert_int_equal(d.flags, TALLY_DECISION_OVERDRAFT);
	assert_int_equal(d.remaining, 0);
	assert_int_equal(d.reset_after, 14 * S);
	assert_int_equal(tally__gcra_admit(&rt, &st, &x, S, 1, false, &d, NULL),
			 TALLY_LIMITED);
	assert_int_equal(d.retry_after, 5 * S); /* 15 + 1 - 10 - 1 */

	/* T = 10/3 ns, C = 3: hold 2 at 0, [0, 6 2/3); hold 1 at 0,
	 * [6 2/3, 10); releasing the first at once: TAT 10 - 20/3. */
	assert_int_equal(tally__gcra_rate_init(&rt, 3, 10, 3), TALLY_OK);
	tally__gcra_init(&st, 0);
	assert_int_equal(tally__gcra_admit(&rt, &st, &st, 0, 2, false, &d, &ha),
			 TALLY_OK);
	assert_int_equal(ha.end.ns, 6);
	assert_int_equal(ha.end.frac, 2);
	assert_int_equal(tally__gcra_admit(&rt, &st, &st, 0, 1, false, &d, &hb),
			 TALLY_OK);
	assert_int_equal(st.tat.ns, 10);
	assert_int_equal(st.tat.frac, 0);
	assert_int_equal(tally__gcra_settle(&rt, &st, &x, 0, &ha, 0, &d),
			 TALLY_OK);
	assert_int_equal(x.tat.ns, 3);
	assert_int_equal(x.tat.frac, 1);
	/* Later requests queued behind (TAT 50) and hb's slot drained by
	 * now' = 40: releasing it refunds nothing (plain subtraction would
	 * take 10/3 off). */
	st.tat.ns = 50;
	st.last = 40;
	assert_int_equal(tally__gcra_settle(&rt, &st, &x, 40, &hb, 0, &d),
			 TALLY_OK);
	assert_int_equal(x.tat.ns, 50);
	assert_int_equal(x.tat.frac, 0);
	/* TAT lowered to 5 by other refunds, ha undrained at 0: the refund
	 * of 20/3 would take it to -5/3; it stops at now' = 0. */
	st.tat.ns = 5;
	st.last = 0;
	assert_int_equal(tally__gcra_settle(&rt, &st, &x, 0, &ha, 0, &d),
			 TALLY_OK);
	assert_int_equal(x.tat.ns, 0);
	assert_int_equal(x.tat.frac, 0);
	assert_int_equal(d.remaining, 3);
}

/* ------------------------------------------------------------------------ */
/* 5. Time going backwards                                                  */
/* ------------------------------------------------------------------------ */

static void
same_call(int op, const struct tally__gcra_rate *rt,
	  const struct tally__gcra *st, int64_t earlier, int64_t n,
	  const struct tally__gcra_hold *h)
{
	struct tally__gcra_decision d1, d2;
	struct tally__gcra n1, n2;
	struct tally__gcra_hold h1, h2;
	int rc1, rc2;

	memset(&d1, 0, sizeof d1);
	memset(&d2, 0, sizeof d2);
	memset(&h1, 0, sizeof h1);
	memset(&h2, 0, sizeof h2);
	switch (op) {
	case 0:
	case 1:
		rc1 = tally__gcra_admit(rt, st, &n1, earlier, n, op == 1, &d1,
					&h1);
		rc2 = tally__gcra_admit(rt, st, &n2, st->last, n, op == 1, &d2,
					&h2);
		break;
	case 2:
		rc1 = tally__gcra_bump(rt, st, &n1, earlier, n, &d1);
		rc2 = tally__gcra_bump(rt, st, &n2, st->last, n, &d2);
		break;
	default:
		rc1 = tally__gcra_settle(rt, st, &n1, earlier, h, n, &d1);
		rc2 = tally__gcra_settle(rt, st, &n2, st->last, h, n, &d2);
		break;
	}
	assert_int_equal(rc1, rc2);
	assert_memory_equal(&n1, &n2, sizeof n1);
	assert_memory_equal(&d1, &d2, sizeof d1);
	assert_memory_equal(&h1, &h2, sizeof h1);
	assert_true(rc1 == TALLY_OK || rc1 == TALLY_LIMITED);
	assert_int_equal(d1.now, st->last);
	assert_true(n1.last == st->last);
}

static void
test_time_backwards(void **state)
{
	struct tally__gcra_rate rt;
	struct tally__gcra st, x;
	struct tally__gcra_decision d;
	struct tally__gcra_hold h;

	(void)state;
	for (size_t ci = 0; ci < NCFGS; ci++) {
		const struct cfg *c = &cfgs[ci];
		struct run r;
		struct tally__gcra_hold held[4];
		unsigned nh = 0;
		int64_t t0 = 0, dmax = step_max(c);

		if (huge(c))
			continue;
		run_init(&r, c->rate, c->period, c->burst, t0);
		for (int i = 0; i < 2000; i++) {
			int64_t n = pick_amount(r.rt.burst), now, back;
			int op = (int)below(4);

			now = pick_time(c, &r.o, t0, n, dmax);
			if (r_admit(&r, now, n, false, &d, &h) == TALLY_OK &&
			    nh < 4 && n <= r.o.C)
				held[nh++] = h;
			back = below(3) == 0 ? INT64_MIN
					     : r.st.last - 1 - below(dmax + 1);
			if (op == 3 && nh == 0)
				op = 2;
			same_call(op, &r.rt, &r.st, back,
				  op == 3 ? below(2 * r.rt.burst) : n,
				  op == 3 ? &held[--nh] : NULL);
		}
	}

	/* golang/go #71360 in GCRA terms: a settle told an older time must
	 * not refund what drained since. T = 1 s, C = 10: hold 10 at 10 s
	 * ([10 s, 20 s)), a call at 15 s, a release told 10 s: now' = 15 s,
	 * refund 5 s, not 10 s. */
	assert_int_equal(tally__gcra_rate_init(&rt, 1, S, 10), TALLY_OK);
	tally__gcra_init(&st, 10 * S);
	assert_int_equal(
		tally__gcra_admit(&rt, &st, &st, 10 * S, 10, false, &d, &h),
		TALLY_OK);
	assert_int_equal(tally__gcra_bump(&rt, &st, &st, 15 * S, 0, &d),
			 TALLY_OK);
	assert_int_equal(st.last, 15 * S);
	assert_int_equal(st.tat.ns, 20 * S); /* a bump of 0 changes no TAT */
	assert_int_equal(tally__gcra_settle(&rt, &st, &x, 10 * S, &h, 0, &d),
			 TALLY_OK);
	assert_int_equal(d.now, 15 * S);
	assert_int_equal(x.tat.ns, 15 * S);
	assert_int_equal(x.last, 15 * S);
	/* Refusals change nothing, not even last; a pass sets it. */
	tally__gcra_init(&st, 0);
	assert_int_equal(
		tally__gcra_admit(&rt, &st, &st, 0, 10, false, &d, NULL),
		TALLY_OK);
	assert_int_equal(
		tally__gcra_admit(&rt, &st, &x, 3 * S, 4, false, &d, NULL),
		TALLY_LIMITED);
	assert_memory_equal(&x, &st, sizeof x);
	assert_int_equal(d.retry_after, S);
	assert_int_equal(
		tally__gcra_admit(&rt, &st, &x, 3 * S, 0, false, &d, NULL),
		TALLY_OK);
	assert_int_equal(x.last, 3 * S);
	assert_int_equal(x.tat.ns, 10 * S);
	assert_int_equal(d.remaining, 3);
}

/* ------------------------------------------------------------------------ */
/* 6. Bad input and overflow                                                */
/* ------------------------------------------------------------------------ */

static void
test_rate_init_bad(void **state)
{
	static const int64_t bad[][3] = {
		{0, S, 1},
		{-1, S, 1},
		{INT64_MIN, S, 1},
		{1, 0, 1},
		{1, -1, 1},
		{S + 1, S, 1},    /* T < 1 ns */
		{1, SPAN + 1, 1}, /* period beyond 2^62 */
		{1, INT64_MAX, 1},
		{INT64_MAX, INT64_MAX, 1},
		{1, S, -1},
		{1, S, INT64_MIN},
		{1, SPAN, 2},           /* C * T = 2^63 */
		{4, SPAN, 5},           /* C * T = 2^62 + 2^60 */
		{3, SPAN - 1, 4},       /* C * T = 2^62 + (2^62 - 4) / 3 */
		{1, S, (SPAN / S) + 1}, /* 1 per s: C * T > 2^62 by < 1 s */
		{1000000000, S, SPAN + 1},
		{1000000000, S, INT64_MAX},
	};
	static const int64_t good[][3] = {
		{1, 1, 1},        {1, SPAN, 1},          {4, SPAN, 4},
		{3, SPAN - 1, 3}, {SPAN, SPAN, 0},       {SPAN, SPAN, SPAN},
		{1, S, SPAN / S}, {1000000000, S, SPAN}, {7, 3 * DAY, 0},
	};
	struct tally__gcra_rate rt, saved;

	(void)state;
	memset(&rt, 0x5a, sizeof rt);
	saved = rt;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(tally__gcra_rate_init(&rt, bad[i][0],
						       bad[i][1], bad[i][2]),
				 TALLY_EINVAL);
		assert_memory_equal(&rt, &saved, sizeof rt);
	}
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		struct tally__gcra st;
		struct tally__gcra_decision d;

		assert_int_equal(tally__gcra_rate_init(&rt, good[i][0],
						       good[i][1], good[i][2]),
				 TALLY_OK);
		/* Usable: a full bucket passes C at once, then refuses. */
		tally__gcra_init(&st, 0);
		assert_int_equal(tally__gcra_admit(&rt, &st, &st, 0, rt.burst,
						   false, &d, NULL),
				 TALLY_OK);
		assert_int_equal(
			tally__gcra_admit(&rt, &st, &st, 0, 1, false, &d, NULL),
			TALLY_LIMITED);
	}
	assert_int_equal(tally__gcra_rate_init(NULL, 1, S, 1), TALLY_EINVAL);
}

/* Calls every transition with (rt, old) and checks rc, next == old and d
 * and h untouched. */
static void
expect_all(int rc, const struct tally__gcra_rate *rt,
	   const struct tally__gcra *old, int64_t n, int64_t actual,
	   const struct tally__gcra_hold *h)
{
	struct tally__gcra next;
	struct tally__gcra_decision d, dz;
	struct tally__gcra_hold hh, hz;

	memset(&dz, 0x3c, sizeof dz);
	memset(&hz, 0x3c, sizeof hz);
	for (int op = 0; op < 4; op++) {
		int got;

		memset(&next, 0xa5, sizeof next);
		memcpy(&d, &dz, sizeof d);
		memcpy(&hh, &hz, sizeof hh);
		switch (op) {
		case 0:
		case 1:
			got = tally__gcra_admit(rt, old, &next, 0, n, op == 1,
						&d, &hh);
			break;
		case 2:
			got = tally__gcra_bump(rt, old, &next, 0, n, &d);
			break;
		default:
			got = tally__gcra_settle(rt, old, &next, 0, h, actual,
						 &d);
			break;
		}
		assert_int_equal(got, rc);
		assert_memory_equal(&next, old, sizeof next);
		assert_memory_equal(&d, &dz, sizeof d);
		assert_memory_equal(&hh, &hz, sizeof hh);
	}
}

static void
test_bad_input(void **state)
{
	struct tally__gcra_rate rt, bad;
	struct tally__gcra st, sb, next;
	struct tally__gcra_decision d;
	struct tally__gcra_hold h, hb;

	(void)state;
	assert_int_equal(tally__gcra_rate_init(&rt, 3000, S, 7), TALLY_OK);
	tally__gcra_init(&st, 100);
	assert_int_equal(
		tally__gcra_admit(&rt, &st, &st, 100, 2, false, &d, &h),
		TALLY_OK);
	/* Valid as is. */
	assert_int_equal(tally__gcra_settle(&rt, &st, &next, 100, &h, 1, &d),
			 TALLY_OK);

	/* Negative amounts. */
	expect_all(TALLY_EINVAL, &rt, &st, -1, -1, &h);
	expect_all(TALLY_EINVAL, &rt, &st, INT64_MIN, INT64_MIN, &h);

	/* A rate not made by rate_init. */
	for (int i = 0; i < 8; i++) {
		bad = rt;
		switch (i) {
		case 0:
			bad.rate = 0;
			break;
		case 1:
			bad.r = bad.rate;
			break;
		case 2:
			bad.q++;
			break;
		case 3:
			bad.burst = 0;
			break;
		case 4:
			bad.burst++; /* cap no longer C * T */
			break;
		case 5:
			bad.cap.frac = -1;
			break;
		case 6:
			bad.period = SPAN + 1;
			break;
		default:
			bad.period++; /* q * R + r no longer P */
			break;
		}
		expect_all(TALLY_EINVAL, &bad, &st, 1, 1, &h);
	}
	expect_all(TALLY_EINVAL, NULL, &st, 1, 1, &h);

	/* A state outside its invariant. */
	for (int i = 0; i < 4; i++) {
		sb = st;
		switch (i) {
		case 0:
			sb.tat.frac = rt.rate;
			break;
		case 1:
			sb.tat.frac = -1;
			break;
		case 2:
			sb.tat.ns = INT64_MAX; /* ahead of last 2^63 */
			sb.last = -1;
			break;
		default:
			sb.tat.ns = INT64_MAX - 1; /* ahead 2^63 - 1 + 1/3 */
			sb.tat.frac = 1;
			sb.last = -1;
			break;
		}
		expect_all(TALLY_EINVAL, &rt, &sb, 1, 1, &h);
	}

	/* A hold that is not a slot of this rate (admit and bump pass). */
	for (int i = 0; i < 5; i++) {
		hb = h;
		switch (i) {
		case 0:
			hb.end.frac++;
			break;
		case 1:
			hb.amount = rt.burst + 1;
			break;
		case 2:
			hb.amount = -1;
			break;
		case 3:
			hb.start.frac = -1;
			break;
		default:
			hb.amount--;
			break;
		}
		memset(&next, 0xa5, sizeof next);
		assert_int_equal(
			tally__gcra_settle(&rt, &st, &next, 0, &hb, 1, &d),
			TALLY_EINVAL);
		assert_memory_equal(&next, &st, sizeof next);
	}
	hb = h; /* shifted by 1 ns: still a slot */
	hb.start.ns++;
	hb.end.ns++;
	assert_int_equal(tally__gcra_settle(&rt, &st, &next, 0, &hb, 1, &d),
			 TALLY_OK);
	assert_int_equal(tally__gcra_settle(&rt, &st, &next, 0, NULL, 1, &d),
			 TALLY_EINVAL);
	assert_memory_equal(&next, &st, sizeof next);

	/* NULL old or next. */
	assert_int_equal(
		tally__gcra_admit(&rt, NULL, &next, 0, 1, false, &d, NULL),
		TALLY_EINVAL);
	assert_int_equal(
		tally__gcra_admit(&rt, &st, NULL, 0, 1, false, &d, NULL),
		TALLY_EINVAL);
	assert_int_equal(tally__gcra_bump(&rt, NULL, &next, 0, 1, &d),
			 TALLY_EINVAL);
	assert_int_equal(tally__gcra_bump(&rt, &st, NULL, 0, 1, &d),
			 TALLY_EINVAL);
	assert_int_equal(tally__gcra_settle(&rt, NULL, &next, 0, &h, 1, &d),
			 TALLY_EINVAL);
	assert_int_equal(tally__gcra_settle(&rt, &st, NULL, 0, &h, 1, &d),
			 TALLY_EINVAL);

	/* TOO_BIG is a refusal (LIMITED), distinct by flag and "never". */
	tally__gcra_init(&st, 0);
	memset(&next, 0xa5, sizeof next);
	assert_int_equal(
		tally__gcra_admit(&rt, &st, &next, 0, 8, false, &d, NULL),
		TALLY_LIMITED);
	assert_memory_equal(&next, &st, sizeof next);
	assert_int_equal(d.flags,
			 TALLY_DECISION_DENIED | TALLY_DECISION_TOO_BIG);
	assert_int_equal(d.retry_after, TALLY_RETRY_NEVER);
	assert_int_equal(d.remaining, 7);
	assert_int_equal(tally__gcra_admit(&rt, &st, &next, 0, INT64_MAX, true,
					   &d, NULL),
			 TALLY_LIMITED);
	assert_int_equal(d.retry_after, TALLY_RETRY_NEVER);
	/* A bump of any size is not refused. */
	assert_int_equal(tally__gcra_bump(&rt, &st, &next, 0, 8, &d), TALLY_OK);
	assert_int_equal(d.remaining, 0);
	assert_int_equal(d.retry_after, 0);
}

static void
test_overflow(void **state)
{
	struct tally__gcra_rate rt;
	struct tally__gcra st, next;
	struct tally__gcra_decision d;
	struct tally__gcra_hold h;

	(void)state;
	/* T = 1 ns, C = 10. An admission near the end of int64 time. */
	assert_int_equal(tally__gcra_rate_init(&rt, 1, 1, 10), TALLY_OK);
	tally__gcra_init(&st, INT64_MAX - 5);
	assert_int_equal(tally__gcra_admit(&rt, &st, &st, INT64_MAX - 5, 5,
					   false, &d, &h),
			 TALLY_OK);
	assert_int_equal(st.tat.ns, INT64_MAX);
	assert_int_equal(d.remaining, 5);
	assert_int_equal(h.end.ns, INT64_MAX);
	assert_int_equal(tally__gcra_admit(&rt, &st, &next, INT64_MAX - 5, 1,
					   false, &d, NULL),
			 TALLY_EOVERFLOW);
	assert_memory_equal(&next, &st, sizeof next);
	assert_int_equal(tally__gcra_admit(&rt, &st, &next, INT64_MAX - 5, 1,
					   true, &d, NULL),
			 TALLY_EOVERFLOW);
	assert_int_equal(tally__gcra_admit(&rt, &st, &next, INT64_MAX - 5, 0,
					   false, &d, NULL),
			 TALLY_OK);
	assert_int_equal(tally__gcra_admit(&rt, &st, &next, INT64_MAX, 0, false,
					   &d, NULL),
			 TALLY_OK);
	assert_int_equal(d.remaining, 10);
	/* Refused requests report, whatever their TAT would be. */
	assert_int_equal(tally__gcra_admit(&rt, &st, &next, INT64_MAX - 5, 6,
					   false, &d, NULL),
			 TALLY_LIMITED);
	assert_int_equal(d.retry_after, 1);
	assert_int_equal(
		tally__gcra_bump(&rt, &st, &next, INT64_MAX - 5, 1, &d),
		TALLY_EOVERFLOW);
	assert_memory_equal(&next, &st, sizeof next);
	assert_int_equal(
		tally__gcra_settle(&rt, &st, &next, INT64_MAX - 5, &h, 6, &d),
		TALLY_EOVERFLOW);
	assert_memory_equal(&next, &st, sizeof next);
	assert_int_equal(
		tally__gcra_settle(&rt, &st, &next, INT64_MAX - 5, &h, 5, &d),
		TALLY_OK);

	/* Bumps: TAT - now' up to INT64_MAX ns, not 1 ns more. */
	tally__gcra_init(&st, -2);
	assert_int_equal(tally__gcra_bump(&rt, &st, &st, -2, INT64_MAX, &d),
			 TALLY_OK);
	assert_int_equal(st.tat.ns, INT64_MAX - 2);
	assert_int_equal(d.reset_after, INT64_MAX);
	assert_int_equal(d.remaining, 0);
	assert_int_equal(
		tally__gcra_admit(&rt, &st, &next, -2, 1, false, &d, NULL),
		TALLY_LIMITED);
	assert_int_equal(d.retry_after, INT64_MAX - 9);
	assert_int_equal(tally__gcra_bump(&rt, &st, &next, -2, 1, &d),
			 TALLY_EOVERFLOW); /* ns fits, ahead 2^63 does not */
	assert_memory_equal(&next, &st, sizeof next);
	assert_int_equal(tally__gcra_bump(&rt, &st, &st, -1, 1, &d), TALLY_OK);
	assert_int_equal(d.reset_after, INT64_MAX);
	assert_int_equal(tally__gcra_bump(&rt, &st, &st, 1, 1, &d), TALLY_OK);
	assert_int_equal(st.tat.ns, INT64_MAX);
	assert_int_equal(tally__gcra_bump(&rt, &st, &next, 2, 1, &d),
			 TALLY_EOVERFLOW); /* ns past INT64_MAX */

	/* T = 10/3 ns: a TAT of INT64_MAX + 1/3 is ahead of last = 1 by
	 * 2^63 - 2 + 1/3, whose ceil fits; of last = 0 by 2^63 - 1 + 1/3,
	 * whose ceil does not: not a state. */
	assert_int_equal(tally__gcra_rate_init(&rt, 3, 10, 3), TALLY_OK);
	tally__gcra_init(&st, 0);
	st.tat.ns = INT64_MAX;
	st.tat.frac = 1;
	st.last = 1;
	assert_int_equal(tally__gcra_bump(&rt, &st, &next, 1, 0, &d), TALLY_OK);
	assert_int_equal(d.reset_after, INT64_MAX);
	assert_int_equal(tally__gcra_bump(&rt, &st, &next, 1, 1, &d),
			 TALLY_EOVERFLOW);
	st.last = 0;
	assert_int_equal(tally__gcra_bump(&rt, &st, &next, 1, 0, &d),
			 TALLY_EINVAL);
	/* A huge bump from far back: 3 * (2^62 - 1) units. */
	tally__gcra_init(&st, INT64_MIN);
	assert_int_equal(tally__gcra_bump(&rt, &st, &next, INT64_MIN,
					  INT64_MAX / 10 * 3, &d),
			 TALLY_OK);
	assert_int_equal(
		tally__gcra_bump(&rt, &st, &next, INT64_MIN, INT64_MAX, &d),
		TALLY_EOVERFLOW);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rate_init_exact),
		cmocka_unit_test(test_oracle_runs),
		cmocka_unit_test(test_ideal_count),
		cmocka_unit_test(test_burst_bound),
		cmocka_unit_test(test_retry_brute_force),
		cmocka_unit_test(test_edges),
		cmocka_unit_test(test_refund_replay),
		cmocka_unit_test(test_refund_examples),
		cmocka_unit_test(test_time_backwards),
		cmocka_unit_test(test_rate_init_bad),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_overflow),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
