/*
 * Rate limits (ratelimit.c): the snapshot and its transitions. Pure layer.
 */
#ifndef TALLY_RATELIMIT_H
#define TALLY_RATELIMIT_H

#include "hold.h"

struct tally__counter {
	int64_t usage;
	int64_t held; /* sum of its held_slot row */
	int64_t window_end;
	int64_t max;
	int64_t window_start;
	int64_t period_count;
	uint8_t period_unit;
	uint8_t has_max;
};

/* 224 bytes: the first two cache lines hold what the hot paths read (the
 * hold due time and both counters), the rest the hold slots (hold.h). */
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
};

static inline unsigned
tally__rl_bit(unsigned i)
{
	return i == 0 ? TALLY_COUNTER_TOKENS : TALLY_COUNTER_REQUESTS;
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
	if (a->op == TALLY__OP_CHECK) {
		/* From old; next is left alone (see tally__budget_quick). */
		*install = false;
		for (unsigned i = 0; i < 2; i++)
			if (old->c[i].has_max &&
			    tally__room(old->c[i].max, old->c[i].usage,
					old->c[i].held) <= 0)
				mask |= tally__rl_bit(i);
		a->out_mask = mask;
		return mask != 0 ? TALLY_LIMITED : TALLY_OK;
	}
	if (amount[0] > INT64_MAX - old->c[0].usage ||
	    amount[1] > INT64_MAX - old->c[1].usage)
		return TALLY__QUICK_NO;
	/* Read old before writing next (a load after the copy's stores may
	 * wait on them: measured: 15 ns per try). */
	if (a->op == TALLY__OP_TRY)
		for (unsigned i = 0; i < 2; i++) {
			const struct tally__counter *c = &old->c[i];

			if (c->has_max &&
			    amount[i] > tally__room(c->max, c->usage, c->held))
				mask |= tally__rl_bit(i);
		}
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
	.config_v1 = sizeof(tally_ratelimit_config),
	.view_size = sizeof(tally_ratelimit_view),
	.view_v1 = offsetof(tally_ratelimit_view, tokens_held), /* 0.2 */
	.validate = tally__rl_validate,
	.init = tally__rl_init,
	.quick = tally__rl_quick,
	.step = tally__rl_step,
	.view = tally__rl_view,
	.due = tally__rl_due,
	.report = tally__rl_report,
	.fits = tally__rl_fits,
};

#endif /* TALLY_RATELIMIT_H */
