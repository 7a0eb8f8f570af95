/*
 * Rate limits (ratelimit.c): the snapshot and its transitions. Pure layer.
 */
#ifndef TALLY_RATELIMIT_H
#define TALLY_RATELIMIT_H

#include "hold.h"
#include "swin.h"

struct tally__counter {
	int64_t usage;
	int64_t held; /* sum of its held_slot row */
	int64_t window_end;
	int64_t max;
	int64_t window_start;
	int64_t period_count;
	uint8_t period_unit;
	uint8_t has_max;
	uint8_t algorithm; /* TALLY_ALGORITHM_* */
};

/* 240 bytes: the first two cache lines hold what the hot paths read (the
 * hold due time and both counters), the rest the hold slots (hold.h) and
 * the sliding counters' previous windows. */
struct tally__rl_snap {
	uint64_t version;
	int64_t hold_due;           /* hold.h: INT64_MAX while none is live */
	struct tally__counter c[2]; /* [0] tokens, [1] requests */
	int64_t anchor;
	int16_t offset_min;
	uint8_t aligned;
	union {
		uint32_t hold_count[4]; /* TALLY__HOLD_SLOTS, while live */
		int64_t hold_idle_base; /* hold.h: b while none is live */
	};
	int64_t held_slot[2][4];
	/* TALLY_ALGORITHM_SLIDING: usage of the window before the current
	 * one (swin.h's prev); 0 for FIXED. */
	int64_t prev[2];
};

static inline unsigned
tally__rl_bit(unsigned i)
{
	return i == 0 ? TALLY_COUNTER_TOKENS : TALLY_COUNTER_REQUESTS;
}

/* The largest usage (and held) of a counter: a sliding one stays in
 * swin.h's range, so that its products fit 128 bits with room. */
static inline int64_t
tally__rl_cap(const struct tally__counter *c)
{
	return c->algorithm == TALLY_ALGORITHM_SLIDING ? TALLY__SWIN_AMOUNT_MAX
						       : INT64_MAX;
}

/* A sliding counter's window length w, ns (validated: <= 2^62). */
static inline int64_t
tally__rl_width(const struct tally__counter *c)
{
	return c->period_unit == TALLY_PERIOD_WEEK
		       ? c->period_count * (7 * INT64_C(86400000000000))
		       : c->period_count;
}

/* e = now' - start, now' = max(now, start), for a counter not due at now
 * (so e < w; a window whose end is past int64 is the same). */
static inline int64_t
tally__rl_offset(const struct tally__counter *c, int64_t now)
{
	int64_t w = tally__rl_width(c);
	tally__i128 e =
		now > c->window_start ? (tally__i128)now - c->window_start : 0;

	/* e >= w: only a coarse reading, which the exact one replaces. */
	return e >= w ? w - 1 : (int64_t)e;
}

/* ceil(prev * (w - e) / w): the previous window's part of the estimate. */
static inline int64_t
tally__rl_carry(const struct tally__counter *c, int64_t prev, int64_t now)
{
	return tally__swin_carry_at(tally__rl_width(c), prev,
				    tally__rl_offset(c, now));
}

/*
 * Whether a request of n >= 0 passes counter i (which has a max) at now:
 * FIXED: used + held + n <= max; SLIDING (swin.h):
 *     prev * (w - e) + (cur + held + n) * w <= max * w,
 * products in 128 bits (no division: the hot paths decide with this; the
 * reports' used and remaining use tally__rl_carry). n = 0 passes while
 * the counter is within its limit; check blocks iff a request of 1 does
 * not pass (the remaining is 0 or less).
 */
static inline bool
tally__rl_passes_at(const struct tally__rl_snap *s, unsigned i, int64_t now,
		    int64_t n)
{
	const struct tally__counter *c = &s->c[i];

	if (TALLY__LIKELY(c->algorithm == TALLY_ALGORITHM_FIXED))
		return n <= tally__room(c->max, c->usage, c->held);
	return tally__swin_fits_at(tally__rl_width(c), c->max, s->prev[i],
				   c->usage, tally__rl_offset(c, now), c->held,
				   n);
}

/* The same at a->now. A sliding counter's decision needs the exact clock:
 * with a coarse reading this asks for it (a->need_exact) and the caller
 * runs again. */
static inline bool
tally__rl_passes(const struct tally__rl_snap *s, unsigned i,
		 struct tally__args *a, int64_t n)
{
	if (s->c[i].algorithm != TALLY_ALGORITHM_FIXED && a->now_coarse)
		a->need_exact = true;
	return tally__rl_passes_at(s, i, a->now, n);
}

/*
 * The same as tally__budget_quick for a rate limit: check, bump or
 * try_consume with no counter's window and no hold slot possibly due, no sum
 * overflowing; sets a->out_mask as tally__rl_step does. test_ratelimit
 * checks agreement on a grid.
 */
static inline int
tally__rl_quick(const void *old_snap, void *next_snap, struct tally__args *a,
		bool *install)
{
	const struct tally__rl_snap *old = old_snap;
	struct tally__rl_snap *next = next_snap;
	const int64_t *amount = a->amount;
	unsigned mask = 0;
	/* One test for the three due times ("not due" is monotone). */
	int64_t due = old->c[0].window_end < old->c[1].window_end
			      ? old->c[0].window_end
			      : old->c[1].window_end;

	if (old->hold_due < due)
		due = old->hold_due;
	if ((a->op != TALLY__OP_BUMP && a->op != TALLY__OP_TRY &&
	     a->op != TALLY__OP_CHECK) ||
	    !tally__surely_not_due(a, due))
		return TALLY__QUICK_NO;
	/* A sliding counter decides at the exact time: with a coarse
	 * reading, ask for the exact one (tally__step reads it and comes
	 * back). A bump decides nothing. */
	if (TALLY__UNLIKELY((old->c[0].algorithm | old->c[1].algorithm) != 0) &&
	    a->op != TALLY__OP_BUMP && a->now_coarse) {
		a->need_exact = true;
		return TALLY__QUICK_NO;
	}
	if (a->op == TALLY__OP_CHECK) {
		/* From old; next is left alone (see tally__budget_quick). */
		*install = false;
		for (unsigned i = 0; i < 2; i++)
			if (old->c[i].has_max &&
			    !tally__rl_passes(old, i, a, 1))
				mask |= tally__rl_bit(i);
		a->out_mask = mask;
		return mask != 0 ? TALLY_LIMITED : TALLY_OK;
	}
	if (amount[0] > tally__rl_cap(&old->c[0]) - old->c[0].usage ||
	    amount[1] > tally__rl_cap(&old->c[1]) - old->c[1].usage)
		return TALLY__QUICK_NO;
	/* Read old before writing next (a load after the copy's stores may
	 * wait on them: measured: 15 ns per try). */
	if (a->op == TALLY__OP_TRY)
		for (unsigned i = 0; i < 2; i++)
			if (old->c[i].has_max &&
			    !tally__rl_passes(old, i, a, amount[i]))
				mask |= tally__rl_bit(i);
	*next = *old;
	*install = false;
	a->out_mask = mask;
	if (mask != 0)
		return TALLY_LIMITED;
	next->c[0].usage += amount[0];
	next->c[1].usage += amount[1];
	*install = amount[0] != 0 || amount[1] != 0;
	return TALLY_OK;
}

/* The 0.3 layouts of tally_ratelimit_config and tally_ratelimit_view
 * (0.2: the view up to tokens_held), before 0.4 grew the config by the
 * counters' algorithms: a caller's view of that size is filled in them. */
struct tally__rl_config_03 {
	size_t size;
	tally_limit tokens;
	tally_limit requests;
	int64_t anchor;
	int32_t utc_offset_minutes;
	bool calendar_aligned;
};

struct tally__rl_view_03 {
	size_t size;
	struct tally__rl_config_03 config;
	tally_counter_view tokens;
	tally_counter_view requests;
	uint64_t version;
	uint64_t incarnation;
	int64_t tokens_held;
	int64_t requests_held;
	uint64_t holds;
};

void tally__rl_view_old(const void *snap, uint64_t incarnation, void *view);
int tally__rl_step(const void *old, void *next, struct tally__args *args,
		   struct tally__rolls *rolls, bool *install);
void tally__rl_init(void *snap, const void *config, int64_t now);
int tally__rl_validate(const void *config);
void tally__rl_view(const void *snap, uint64_t incarnation, void *view);
bool tally__rl_due(const void *snap, int64_t now);
void tally__rl_report(const void *snap, const struct tally__args *a,
		      tally_limit_report *rep);
int tally__rl_fits(const void *old, const struct tally__args *a);

/* The kind's row (kinds.c lists it), in the header as budget.h's is. */
static const struct tally__kind tally__kind_ratelimit = {
	.name = "ratelimit",
	.id = TALLY_KIND_RATELIMIT,
	.snap_size = sizeof(struct tally__rl_snap),
	.config_size = sizeof(tally_ratelimit_config),
	.config_v1 = sizeof(struct tally__rl_config_03),
	.view_size = sizeof(tally_ratelimit_view),
	.view_v1 = offsetof(struct tally__rl_view_03, tokens_held), /* 0.2 */
	.validate = tally__rl_validate,
	.init = tally__rl_init,
	.quick = tally__rl_quick,
	.step = tally__rl_step,
	.view = tally__rl_view,
	.view_old = tally__rl_view_old,
	.due = tally__rl_due,
	.report = tally__rl_report,
	.fits = tally__rl_fits,
};

#endif /* TALLY_RATELIMIT_H */
