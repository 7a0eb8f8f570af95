/*
 * Holds: expiry slots, placement, settlement, retry-after and counter
 * reports (see hold.h for the slot scheme). Pure: no ck, no threads.
 */
#include <string.h>

#include "hold.h"

void
tally__grain_init(struct tally__grain *gr, int64_t g)
{
	__extension__ typedef unsigned __int128 u128;
	unsigned l = 0;

	TALLY_ASSERT(g > 0);
	while (l < 63 && ((uint64_t)1 << l) < (uint64_t)g)
		l++;
	gr->g = g;
	gr->shift = 63 + l;
	/* ceil(2^shift / g) < 2^64 since 2^l < 2g. */
	gr->magic =
		(uint64_t)((((u128)1 << gr->shift) + (u128)g - 1) / (u128)g);
	gr->slot_max = (INT64_MAX - 1) / g - TALLY__HOLD_SLOTS;
}

bool
tally__holds_any(const struct tally__hs *h)
{
	return *h->due != INT64_MAX;
}

/* hi - lo for slot numbers hi >= lo, exact even where the int64 difference
 * would overflow (slot numbers span all of int64 with a 1 ns grain). */
TALLY__WRAPS static uint64_t
slots_apart(int64_t lo, int64_t hi)
{
	TALLY_ASSERT(hi >= lo);
	return (uint64_t)hi - (uint64_t)lo;
}

/* floor(now / g) + 1: the first slot not dead at now (INT64_MAX when even
 * slot INT64_MAX is: no live slot ends there, see place). */
static int64_t
first_alive_at(int64_t now, const struct tally__grain *g)
{
	int64_t q = tally__grain_floor(g, now);

	return q == INT64_MAX ? INT64_MAX : q + 1;
}

/* b, the first live slot number; only while a hold is live. */
static int64_t
first_live(const struct tally__hs *h, const struct tally__grain *g)
{
	return tally__grain_floor(g, *h->due); /* due is b * G exactly */
}

static bool
counts_zero(const struct tally__hs *h)
{
	for (unsigned i = 0; i < TALLY__HOLD_SLOTS; i++)
		if (h->count[i] != 0)
			return false;
	return true;
}

bool
tally__holds_expire(const struct tally__hs *h, struct tally__args *a,
		    struct tally__rolls *rolls)
{
	const struct tally__grain *g = a->grain;
	int64_t b, nb, end;

	if (*h->due == INT64_MAX || !tally__is_due(a, *h->due))
		return false;
	b = first_live(h, g);
	nb = first_alive_at(a->now, g);
	if (nb <= b)
		return false; /* only under saturation */
	end = slots_apart(b, nb) < TALLY__HOLD_SLOTS ? nb
						     : b + TALLY__HOLD_SLOTS;
	for (int64_t j = b; j < end; j++) {
		unsigned ix = tally__hold_index(j);
		uint32_t n = h->count[ix];

		if (n != 0 && rolls != NULL) {
			struct tally__expiry_note *e = &rolls->exp;

			if (e->holds == 0) {
				e->amount[0] = e->amount[1] = 0;
			}
			e->holds += n;
			for (unsigned c = 0; c < h->nc; c++)
				e->amount[c] += h->slot[c][ix];
			e->slot_end = j * g->g;
		}
		h->count[ix] = 0;
		for (unsigned c = 0; c < h->nc; c++) {
			*h->total[c] -= h->slot[c][ix];
			h->slot[c][ix] = 0;
		}
	}
	/* Every live slot number is at most (INT64_MAX - 1) / g - K (place),
	 * so nb * g fits while one is left, and so does (b + K) * g. */
	if (counts_zero(h)) {
		*h->due = INT64_MAX;
		*h->idle_base = nb;
	} else {
		*h->due = nb * g->g;
	}
	return true;
}

/* Where a hold would go (its slot s, the base b, the ring index ix) and
 * whether it fits there: TALLY_OK, TALLY_EOVERFLOW or TALLY_EINVAL. Reads
 * only. */
static int
place_check(const struct tally__hs *h, const struct tally__args *a,
	    const int64_t *amount, int64_t *sp, int64_t *bp, unsigned *ixp)
{
	const struct tally__grain *g = a->grain;
	int64_t d, s, b;
	unsigned ix;

	if (__builtin_add_overflow(a->now, a->ttl, &d))
		return TALLY_EOVERFLOW;
	s = tally__grain_ceil(g, d);
	if (*h->due == INT64_MAX) {
		/* The first hold since none was live: b never moves back. */
		b = first_alive_at(a->now, g);
		if (b < *h->idle_base)
			b = *h->idle_base;
	} else {
		b = first_live(h, g);
	}
	if (s < b)
		s = b; /* a clock behind the record's: never before b */
	/* The slot's end must be a time (not the INT64_MAX sentinel). */
	if (s > g->slot_max)
		return TALLY_EOVERFLOW;
	/* ttl <= (K - 1) * g puts s at most at b + K - 1 (hold.h). */
	TALLY_ASSERT(slots_apart(b, s) < TALLY__HOLD_SLOTS);
	if (slots_apart(b, s) >= TALLY__HOLD_SLOTS)
		return TALLY_EINVAL;
	ix = tally__hold_index(s);
	if (*h->due != INT64_MAX && h->count[ix] == UINT32_MAX)
		return TALLY_EOVERFLOW;
	for (unsigned c = 0; c < h->nc; c++)
		if (amount[c] > INT64_MAX - *h->total[c])
			return TALLY_EOVERFLOW;
	*sp = s;
	*bp = b;
	*ixp = ix;
	return TALLY_OK;
}

int
tally__holds_fit(const struct tally__hs *h, const struct tally__args *a,
		 const int64_t *amount)
{
	int64_t s, b;
	unsigned ix;

	return place_check(h, a, amount, &s, &b, &ix);
}

int
tally__holds_place(const struct tally__hs *h, struct tally__args *a,
		   const int64_t *amount)
{
	int64_t s, b;
	unsigned ix;
	int rc;

	if ((rc = place_check(h, a, amount, &s, &b, &ix)) != TALLY_OK)
		return rc;
	if (*h->due == INT64_MAX)
		memset(h->count, 0, TALLY__HOLD_SLOTS * sizeof *h->count);
	h->count[ix]++;
	for (unsigned c = 0; c < h->nc; c++) {
		h->slot[c][ix] += amount[c];
		*h->total[c] += amount[c];
	}
	if (*h->due == INT64_MAX)
		*h->due = b * a->grain->g;
	a->slot = s;
	return TALLY_OK;
}

int
tally__holds_take(const struct tally__hs *h, struct tally__args *a)
{
	int64_t b;
	unsigned ix;
	bool partial = a->op == TALLY__OP_PARTIAL;

	a->moved[0] = a->moved[1] = 0;
	if (*h->due == INT64_MAX) {
		/* None live: the hold's slot died (LATE), or it was settled. */
		return a->slot < *h->idle_base ? 0 : TALLY_ESETTLED;
	}
	b = first_live(h, a->grain);
	if (a->slot < b)
		return 0;
	if (slots_apart(b, a->slot) >= TALLY__HOLD_SLOTS)
		return TALLY_ESETTLED; /* no such slot: not this record's */
	ix = tally__hold_index(a->slot);
	if (h->count[ix] == 0)
		return TALLY_ESETTLED;
	for (unsigned c = 0; c < h->nc; c++)
		if (h->slot[c][ix] < a->held_amount[c])
			return TALLY_ESETTLED;
	for (unsigned c = 0; c < h->nc; c++) {
		int64_t take = a->held_amount[c];

		if (partial && a->actual[c] < take)
			take = a->actual[c];
		h->slot[c][ix] -= take;
		*h->total[c] -= take;
		a->moved[c] = take;
	}
	if (!partial) {
		h->count[ix]--;
		if (h->count[ix] == 0) {
			/* No hold left in the slot: nothing may stay held
			 * there (a settled copy of a handle took another
			 * hold's amount; that hold now finds its slot short
			 * and changes nothing, but held cannot leak). */
			for (unsigned c = 0; c < h->nc; c++) {
				*h->total[c] -= h->slot[c][ix];
				h->slot[c][ix] = 0;
			}
		}
		if (counts_zero(h)) {
			*h->due = INT64_MAX;
			*h->idle_base = b;
		}
	}
	return 1;
}

/* Whether amount fits with used and held (max applies). */
static bool
fits(int64_t amount, int64_t max, int64_t used, int64_t held)
{
	return amount <= tally__room(max, used, held);
}

/* What counter c of h holds at time t: the slots whose end is after t. */
static int64_t
held_at(const struct tally__hs *h, unsigned c, const struct tally__grain *g,
	int64_t t)
{
	int64_t b, left = 0;

	if (*h->due == INT64_MAX)
		return 0;
	b = first_live(h, g);
	for (int64_t j = b; j < b + TALLY__HOLD_SLOTS; j++)
		if (j * g->g > t)
			left += h->slot[c][tally__hold_index(j)];
	return left;
}

int64_t
tally__retry_after(const struct tally__hs *h, unsigned c,
		   const struct tally__grain *g, int64_t now, int64_t amount,
		   int64_t max, int64_t used, int64_t window_end)
{
	int64_t cand[TALLY__HOLD_SLOTS + 1], best = TALLY_RETRY_NEVER;
	unsigned n = 0;

	/* At now, held is the total (the caller dropped the dead slots). */
	if (fits(amount, max, used, *h->total[c]))
		return 0;
	if (amount > max)
		return TALLY_RETRY_NEVER;
	/* Used drops to 0 at the window's end (all else equal: one roll);
	 * held drops at each live slot's end. The answer is the earliest of
	 * these times at which the amount fits. */
	if (window_end != INT64_MAX)
		cand[n++] = window_end;
	if (*h->due != INT64_MAX) {
		int64_t b = first_live(h, g);

		for (int64_t j = b; j < b + TALLY__HOLD_SLOTS; j++)
			cand[n++] = j * g->g;
	}
	for (unsigned i = 0; i < n; i++) {
		int64_t t = cand[i];

		if (t <= now || t >= best)
			continue;
		if (fits(amount, max, t >= window_end ? 0 : used,
			 held_at(h, c, g, t)))
			best = t;
	}
	if (best == TALLY_RETRY_NEVER)
		return best;
	/* A clock near INT64_MIN: the distance saturates below NEVER. */
	return __builtin_sub_overflow(best, now, &best) ? INT64_MAX - 1 : best;
}

/*
 * How long after x a request of `amount` passes with held (swin.h), or
 * TALLY_RETRY_NEVER. The windows roll at boundaries of int64 time only: a
 * boundary at or past INT64_MAX never comes (tally__window_due), so a
 * pass time that needs one, or lies past INT64_MAX, is never. A wait past
 * int64 (a clock far before the window) saturates below NEVER, as
 * tally__retry_after's does.
 */
static int64_t
sliding_wait(int64_t w, int64_t max, const struct tally__swin *st, int64_t x,
	     int64_t held, int64_t amount)
{
	struct tally__swin_pass p;
	tally__i128 b1, b2, d;

	if (tally__swin_pass_at(w, max, st, x, held, amount, &p) != TALLY_OK ||
	    p.never)
		return TALLY_RETRY_NEVER;
	b1 = (tally__i128)p.start + w;
	b2 = b1 + w;
	if (p.at > INT64_MAX || (p.at >= b1 && b1 >= INT64_MAX) ||
	    (p.at >= b2 && b2 >= INT64_MAX))
		return TALLY_RETRY_NEVER;
	d = p.at - x;
	return d > INT64_MAX - 1 ? INT64_MAX - 1 : (int64_t)d;
}

int64_t
tally__retry_after_sliding(const struct tally__hs *h, unsigned c,
			   const struct tally__grain *g, int64_t now,
			   int64_t amount, int64_t max, int64_t w,
			   const struct tally__swin *st)
{
	int64_t best;

	if (amount > max)
		return TALLY_RETRY_NEVER;
	best = sliding_wait(w, max, st, now, *h->total[c], amount);
	if (best != 0 && *h->due != INT64_MAX) {
		int64_t b = first_live(h, g);

		for (int64_t j = b; j < b + TALLY__HOLD_SLOTS; j++) {
			int64_t x = j * g->g, d, wait;

			/* (x - now) + d >= best for every later slot too. */
			if (x <= now || (tally__i128)x - now >= best)
				continue;
			d = sliding_wait(w, max, st, x, held_at(h, c, g, x),
					 amount);
			if (d != TALLY_RETRY_NEVER &&
			    !__builtin_add_overflow(x - now, d, &wait) &&
			    wait < best)
				best = wait;
		}
	}
	return best;
}

void
tally__report_fill(tally_counter_report *rep, const struct tally__hs *h,
		   unsigned c, int64_t amount, bool has_max, int64_t max,
		   int64_t used, int64_t window_start, int64_t window_end)
{
	int64_t held = *h->total[c];

	rep->flags = 0;
	rep->used = used;
	rep->held = held;
	rep->window_start = window_start;
	rep->window_end = window_end;
	rep->overdraft = 0;
	rep->retry_after = 0;
	if (!has_max) {
		rep->flags = TALLY_DECISION_UNLIMITED;
		rep->max = 0;
		rep->remaining = INT64_MAX;
		return;
	}
	rep->max = max;
	rep->remaining = tally__room(max, used, held);
	if (rep->remaining < 0)
		rep->remaining = 0;
	if (rep->remaining == 0)
		rep->flags |= TALLY_DECISION_REACHED;
	if (amount > max)
		rep->flags |= TALLY_DECISION_TOO_BIG;
}

void
tally__report_counter(tally_counter_report *rep, const struct tally__hs *h,
		      unsigned c, const struct tally__args *a, int64_t amount,
		      bool has_max, int64_t max, int64_t used,
		      int64_t window_start, int64_t window_end)
{
	tally__report_fill(rep, h, c, amount, has_max, max, used, window_start,
			   window_end);
	if (has_max)
		rep->retry_after = tally__retry_after(
			h, c, a->grain, a->now, amount, max, used, window_end);
}
