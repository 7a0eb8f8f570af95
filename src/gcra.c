/*
 * GCRA: exact integer-nanosecond smooth limits (see gcra.h for the rules,
 * ranges and results). Pure: no ck, no threads, no allocation.
 *
 * Points are computed as (ns, frac) pairs whose ns is an __int128 (struct
 * wide), so no intermediate overflows: with the ranges of gcra.h every ns
 * stays within 2^126 in magnitude (int64 times plus at most INT64_MAX * T
 * <= 2^125). A result is narrowed to int64_t only after it is checked.
 */
#include "gcra.h"

__extension__ typedef __int128 i128;

/* t + f / rate, 0 <= f < rate. */
struct wide {
	i128 t;
	int64_t f;
};

static struct wide
w_ns(i128 t)
{
	struct wide w = {t, 0};

	return w;
}

static struct wide
w_at(const struct tally__gcra_at *a)
{
	struct wide w = {a->ns, a->frac};

	return w;
}

static int
w_cmp(struct wide a, struct wide b)
{
	if (a.t != b.t)
		return a.t < b.t ? -1 : 1;
	if (a.f != b.f)
		return a.f < b.f ? -1 : 1;
	return 0;
}

static struct wide
w_max(struct wide a, struct wide b)
{
	return w_cmp(a, b) >= 0 ? a : b;
}

static struct wide
w_min(struct wide a, struct wide b)
{
	return w_cmp(a, b) <= 0 ? a : b;
}

/* a - b, exact (a borrow from ns when the fractions do not suffice). */
static struct wide
w_sub(const struct tally__gcra_rate *rt, struct wide a, struct wide b)
{
	struct wide w = {a.t - b.t, a.f - b.f};

	if (w.f < 0) {
		w.t--;
		w.f += rt->rate;
	}
	return w;
}

/* a + n * T for 0 <= n <= INT64_MAX: n * q whole ns, and n * r over rate,
 * carried into ns. */
static struct wide
w_add_nt(const struct tally__gcra_rate *rt, struct wide a, int64_t n)
{
	i128 f = (i128)a.f + (i128)n * rt->r; /* < 2^63 * 2^62 + 2^62 */

	a.t += (i128)n * rt->q;
	if (f >= rt->rate && f < 2 * (i128)rt->rate) {
		a.t++; /* n = 1, and every small n: no division */
		f -= rt->rate;
	} else if (f >= rt->rate) {
		a.t += f / rt->rate;
		f %= rt->rate;
	}
	a.f = (int64_t)f;
	return a;
}

/* ceil(a) in whole ns. */
static i128
w_ceil(struct wide a)
{
	return a.t + (a.f > 0);
}

static bool
fits64(i128 v)
{
	return v >= INT64_MIN && v <= INT64_MAX;
}

static struct tally__gcra_at
w_narrow(struct wide a)
{
	struct tally__gcra_at at = {(int64_t)a.t, a.f};

	TALLY_ASSERT(fits64(a.t));
	return at;
}

/* Whether rt is what tally__gcra_rate_init makes (multiplications only:
 * q * R + r = P, C * P = cap.ns * R + cap.frac, every range). */
static bool
rate_ok(const struct tally__gcra_rate *rt)
{
	i128 cp;

	if (rt == NULL || rt->rate < 1 || rt->period < rt->rate ||
	    rt->period > TALLY__GCRA_SPAN_MAX || rt->burst < 1 || rt->q < 1 ||
	    rt->r < 0 || rt->r >= rt->rate ||
	    (i128)rt->q * rt->rate + rt->r != rt->period)
		return false;
	cp = (i128)rt->burst * rt->period;
	return rt->cap.frac >= 0 && rt->cap.frac < rt->rate &&
	       rt->cap.ns >= 0 &&
	       (i128)rt->cap.ns * rt->rate + rt->cap.frac == cp &&
	       cp <= (i128)TALLY__GCRA_SPAN_MAX * rt->rate;
}

static bool
frac_ok(const struct tally__gcra_rate *rt, const struct tally__gcra_at *a)
{
	return a->frac >= 0 && a->frac < rt->rate;
}

/* The state invariant: a valid point, and ceil(TAT - last) <= INT64_MAX
 * (so every later ahead fits: now' >= last). */
static bool
state_ok(const struct tally__gcra_rate *rt, const struct tally__gcra *st)
{
	return frac_ok(rt, &st->tat) &&
	       (i128)st->tat.ns - st->last + (st->tat.frac > 0) <= INT64_MAX;
}

/* Whether tat can be the TAT of a state decided at now: its ns fits and
 * ceil(tat - now) <= INT64_MAX. */
static bool
tat_fits(struct wide tat, int64_t now)
{
	return fits64(tat.t) && w_ceil(tat) - now <= INT64_MAX;
}

int
tally__gcra_rate_init(struct tally__gcra_rate *rt, int64_t rate, int64_t period,
		      int64_t burst)
{
	i128 cp;

	if (rt == NULL || rate < 1 || period < rate ||
	    period > TALLY__GCRA_SPAN_MAX || burst < 0)
		return TALLY_EINVAL;
	if (burst == 0)
		burst = rate; /* the default: C * T = P */

	/* C * T, scaled by R. */
	cp = (i128)burst * period;
	if (cp > (i128)TALLY__GCRA_SPAN_MAX * rate)
		return TALLY_EINVAL;
	rt->rate = rate;
	rt->period = period;
	rt->burst = burst;
	rt->q = period / rate;
	rt->r = period % rate;
	rt->cap.ns = (int64_t)(cp / rate); /* <= 2^62 */
	rt->cap.frac = (int64_t)(cp % rate);
	return TALLY_OK;
}

void
tally__gcra_init(struct tally__gcra *st, int64_t now)
{
	st->tat.ns = now;
	st->tat.frac = 0;
	st->last = now;
}

/* Fills d (when not NULL) for a state whose TAT is tat, decided at now. */
static void
report(const struct tally__gcra_rate *rt, struct wide tat, int64_t now,
       struct tally__gcra_decision *d)
{
	struct wide ahead, room;
	i128 v;

	if (d == NULL)
		return;
	ahead = w_sub(rt, w_max(tat, w_ns(now)), w_ns(now));
	d->now = now;
	d->reset_after = (int64_t)w_ceil(ahead); /* state_ok, tat_fits */
	d->remaining = 0;
	if (w_cmp(ahead, w_at(&rt->cap)) < 0) {
		/* floor(room / T) = floor(room * R / P), 0 < room <= 2^62:
		 * a 64-bit division unless room * R needs more. */
		room = w_sub(rt, w_at(&rt->cap), ahead);
		v = room.t * rt->rate + room.f;
		d->remaining = v <= INT64_MAX ? (int64_t)v / rt->period
					      : (int64_t)(v / rt->period);
	}
	d->retry_after = 0;
	d->overdraft = 0;
	d->flags = 0;
}

/* What every transition checks first: its pointers, rate and state. */
static bool
args_ok(const struct tally__gcra_rate *rt, const struct tally__gcra *old,
	const struct tally__gcra *next)
{
	return old != NULL && next != NULL && rate_ok(rt) && state_ok(rt, old);
}

/* An error: next = old, then rc. */
static int
fail(const struct tally__gcra *old, struct tally__gcra *next, int rc)
{
	if (old != NULL && next != NULL)
		*next = *old;
	return rc;
}

int
tally__gcra_admit(const struct tally__gcra_rate *rt,
		  const struct tally__gcra *old, struct tally__gcra *next,
		  int64_t now, int64_t n, bool peek,
		  struct tally__gcra_decision *d, struct tally__gcra_hold *hold)
{
	struct wide tat, start, end, lim;
	struct tally__gcra s;

	if (!args_ok(rt, old, next) || n < 0)
		return fail(old, next, TALLY_EINVAL);
	s = *old;
	if (now < s.last)
		now = s.last;
	tat = w_at(&s.tat);
	if (n > rt->burst) {
		*next = s;
		report(rt, tat, now, d);
		if (d != NULL) {
			d->retry_after = TALLY_RETRY_NEVER;
			d->flags =
				TALLY_DECISION_DENIED | TALLY_DECISION_TOO_BIG;
		}
		return TALLY_LIMITED;
	}
	start = w_max(tat, w_ns(now));
	end = w_add_nt(rt, start, n);
	lim.t = (i128)now + rt->cap.ns; /* now' + C * T */
	lim.f = rt->cap.frac;
	if (n > 0 && w_cmp(end, lim) > 0) {
		/* start = tat > now' here (n <= C). The request passes at
		 * now' + x iff tat + n * T - (now' + x) <= C * T, i.e. x >=
		 * end - lim > 0; and end - lim <= tat - now' fits. */
		*next = s;
		report(rt, tat, now, d);
		if (d != NULL) {
			d->retry_after = (int64_t)w_ceil(w_sub(rt, end, lim));
			d->flags = TALLY_DECISION_DENIED;
		}
		return TALLY_LIMITED;
	}
	/* end - now' <= C * T <= 2^62, or (n = 0) end = max(TAT, now'),
	 * a valid state's: only the ns can overflow. */
	if (!fits64(end.t))
		return fail(old, next, TALLY_EOVERFLOW);
	if (n > 0)
		s.tat = w_narrow(end);
	s.last = now;
	report(rt, w_at(&s.tat), now, d);
	if (hold != NULL) {
		hold->start = w_narrow(start);
		hold->end = w_narrow(end);
		hold->amount = n;
	}
	*next = peek ? *old : s;
	return TALLY_OK;
}

int
tally__gcra_bump(const struct tally__gcra_rate *rt,
		 const struct tally__gcra *old, struct tally__gcra *next,
		 int64_t now, int64_t n, struct tally__gcra_decision *d)
{
	struct wide end;
	struct tally__gcra s;

	if (!args_ok(rt, old, next) || n < 0)
		return fail(old, next, TALLY_EINVAL);
	s = *old;
	if (now < s.last)
		now = s.last;
	if (n > 0) {
		end = w_add_nt(rt, w_max(w_at(&s.tat), w_ns(now)), n);
		if (!tat_fits(end, now))
			return fail(old, next, TALLY_EOVERFLOW);
		s.tat = w_narrow(end);
	}
	s.last = now;
	report(rt, w_at(&s.tat), now, d);
	*next = s;
	return TALLY_OK;
}

/* Whether h is a slot of rt: valid points, 0 <= amount <= C, and
 * end = start + amount * T exactly. */
static bool
hold_ok(const struct tally__gcra_rate *rt, const struct tally__gcra_hold *h)
{
	struct wide end;

	if (h == NULL || h->amount < 0 || h->amount > rt->burst ||
	    !frac_ok(rt, &h->start) || !frac_ok(rt, &h->end))
		return false;
	end = w_add_nt(rt, w_at(&h->start), h->amount);
	return w_cmp(end, w_at(&h->end)) == 0;
}

int
tally__gcra_settle(const struct tally__gcra_rate *rt,
		   const struct tally__gcra *old, struct tally__gcra *next,
		   int64_t now, const struct tally__gcra_hold *hold,
		   int64_t actual, struct tally__gcra_decision *d)
{
	struct wide tat, from, undrained, refund, t;
	struct tally__gcra s;
	int64_t over = 0;

	if (!args_ok(rt, old, next) || actual < 0 || !hold_ok(rt, hold))
		return fail(old, next, TALLY_EINVAL);
	s = *old;
	if (now < s.last)
		now = s.last;
	tat = w_at(&s.tat);
	if (actual < hold->amount) {
		/* refund = min(u, max(0, end - max(now', start))). */
		from = w_max(w_ns(now), w_at(&hold->start));
		undrained = w_max(w_sub(rt, w_at(&hold->end), from), w_ns(0));
		refund = w_min(w_add_nt(rt, w_ns(0), hold->amount - actual),
			       undrained);
		if (w_cmp(refund, w_ns(0)) > 0) {
			/* TAT - refund never goes below now' (gcra.h). */
			t = w_max(w_sub(rt, tat, refund), w_ns(now));
			s.tat = w_narrow(t); /* now' <= t: fits */
		}
	} else if (actual > hold->amount) {
		over = actual - hold->amount;
		t = w_add_nt(rt, w_max(tat, w_ns(now)), over);
		if (!tat_fits(t, now))
			return fail(old, next, TALLY_EOVERFLOW);
		s.tat = w_narrow(t);
	}
	s.last = now;
	report(rt, w_at(&s.tat), now, d);
	if (d != NULL && over > 0) {
		d->overdraft = over;
		d->flags = TALLY_DECISION_OVERDRAFT;
	}
	*next = s;
	return TALLY_OK;
}
