/*
 * Budgets (budget.c): the snapshot and its transitions. Pure layer.
 */
#ifndef TALLY_BUDGET_H
#define TALLY_BUDGET_H

#include "hold.h"

/*
 * 128 bytes: two cache lines in a snapshot slab. The first holds what the
 * hot paths read (usage, held, the two due times, the max); the second the
 * rest of the config and the hold slots (hold.h). A snapshot carries no
 * reclamation header: retired objects are listed by pointer in per-thread
 * batches (epoch.c).
 */
struct tally__budget_snap {
	uint64_t version;
	int64_t usage;
	int64_t held;       /* sum of held_slot */
	int64_t window_end; /* smallest boundary > window_start */
	int64_t hold_due;   /* hold.h: INT64_MAX while no hold is live */
	int64_t max_limit;
	int64_t window_start;
	int64_t anchor;
	/* Second line. */
	int64_t period_count;
	int16_t offset_min;
	uint8_t period_unit;
	uint8_t aligned;
	union {
		uint32_t hold_count[4]; /* TALLY__HOLD_SLOTS, while live */
		int64_t hold_idle_base; /* hold.h: b while none is live */
	};
	int64_t held_slot[1][4];
};

/*
 * The common case of a budget check, bump or try_consume, inline in the
 * hot paths: neither the window nor a hold slot can be due, and the sum
 * does not overflow. Anything else (a window or slot that is or may be
 * due, an overflow, any other operation) returns TALLY__QUICK_NO and goes
 * to tally__budget_step. Wherever this answers, it answers exactly as
 * tally__budget_step would (same result, successor and install flag, no
 * roll; a check writes no successor, its state is old's); test_budget
 * checks that on a grid of inputs.
 */
static inline int
tally__budget_quick(const void *old_snap, void *next_snap,
		    struct tally__args *a, bool *install)
{
	const struct tally__budget_snap *old = old_snap;
	struct tally__budget_snap *next = next_snap;
	int64_t amount = a->amount[0];
	bool limited;
	/* One test for both due times ("not due" is monotone in the end). */
	int64_t due = old->window_end < old->hold_due ? old->window_end
						      : old->hold_due;

	if ((a->op != TALLY__OP_BUMP && a->op != TALLY__OP_TRY &&
	     a->op != TALLY__OP_CHECK) ||
	    !tally__surely_not_due(a, due))
		return TALLY__QUICK_NO;
	if (a->op == TALLY__OP_BUMP && amount > INT64_MAX - old->usage)
		return TALLY__QUICK_NO;
	*install = false;
	/* check answers from old and leaves next alone (the read path shows
	 * old: nothing changed). */
	if (a->op == TALLY__OP_CHECK)
		return tally__room(old->max_limit, old->usage, old->held) <= 0
			       ? TALLY_LIMITED
			       : TALLY_OK;
	/* Read old before writing next (see tally__rl_quick). */
	limited = a->op == TALLY__OP_TRY &&
		  amount > tally__room(old->max_limit, old->usage, old->held);
	*next = *old;
	if (limited)
		return TALLY_LIMITED;
	next->usage += amount;
	*install = amount != 0;
	return TALLY_OK;
}

int tally__budget_step(const void *old, void *next, struct tally__args *args,
		       struct tally__rolls *rolls, bool *install);
void tally__budget_init(void *snap, const void *config, int64_t now);
int tally__budget_validate(const void *config);
void tally__budget_view(const void *snap, uint64_t incarnation, void *view);
bool tally__budget_due(const void *snap, int64_t now);
void tally__budget_report(const void *snap, const struct tally__args *a,
			  tally_limit_report *rep);
int tally__budget_fits(const void *old, const struct tally__args *a);

/* The kind's row (kinds.c lists it). Defined here, not in budget.c, so
 * that the hot paths (api.c) see its sizes and id as constants. */
static const struct tally__kind tally__kind_budget = {
	.name = "budget",
	.id = TALLY_KIND_BUDGET,
	.snap_size = sizeof(struct tally__budget_snap),
	.config_size = sizeof(tally_budget_config),
	.config_v1 = sizeof(tally_budget_config),
	.view_size = sizeof(tally_budget_view),
	.view_v1 = offsetof(tally_budget_view, held), /* 0.2 */
	.validate = tally__budget_validate,
	.init = tally__budget_init,
	.quick = tally__budget_quick,
	.step = tally__budget_step,
	.view = tally__budget_view,
	.due = tally__budget_due,
	.report = tally__budget_report,
	.fits = tally__budget_fits,
};

#endif /* TALLY_BUDGET_H */
