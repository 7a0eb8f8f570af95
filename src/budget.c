/*
 * Budgets: the pure transitions of a budget snapshot, and the public calls.
 *
 * A transition copies the old snapshot into the successor, rolls the window
 * if it is due, applies the operation and says whether the successor must
 * be installed. It touches nothing else, so every rule of ARCHITECTURE.md
 * section 3 is testable here without threads. The public calls are in
 * api.c; this file is pure (no ck, no threads).
 *
 * Window invariant: window_end is the smallest lattice boundary strictly
 * after window_start. Then "due" (window_start(now) > window_start) is
 * exactly now >= window_end, one comparison on the hot path; the calendar
 * math runs only when a window actually rolls or the config changes. Time
 * going backwards gives now < window_end: nothing rolls, nothing moves back.
 */
#include <string.h>

#include "budget.h"
#include "period.h"

static void
lattice_of(const struct tally__budget_snap *s, tally__lattice *l)
{
	l->count = s->period_count;
	l->unit = s->period_unit;
	l->offset_min = s->offset_min;
	l->aligned = s->aligned != 0;
	l->anchor = s->anchor;
}

/* Rolls s, which is due at a->now; appends a note when rolls != NULL. */
static bool
roll_due(struct tally__budget_snap *s, struct tally__args *a,
	 struct tally__rolls *rolls)
{
	tally__lattice l;
	int64_t start, end;

	lattice_of(s, &l);
	tally__window(&l, a->now, &start, &end);
	if (start <= s->window_start)
		return false; /* only under saturation; never moves back */
	if (rolls != NULL) {
		struct tally__roll_note *n = &rolls->note[rolls->n++];

		n->counter = TALLY_COUNTER_BUDGET;
		n->usage_before = s->usage;
		n->old_window_start = s->window_start;
		n->new_window_start = start;
	}
	s->usage = 0;
	s->window_start = start;
	s->window_end = end;
	return true;
}

/* Rolls s if due at a->now. The test is inline: almost no call rolls. */
static inline bool
roll_if_due(struct tally__budget_snap *s, struct tally__args *a,
	    struct tally__rolls *rolls)
{
	if (TALLY__LIKELY(!tally__is_due(a, s->window_end)))
		return false;
	return roll_due(s, a, rolls);
}

static void
apply_config(struct tally__budget_snap *s, const tally_budget_config *cfg)
{
	s->max_limit = cfg->max_limit;
	s->period_count = cfg->period.count;
	s->period_unit = (uint8_t)cfg->period.unit;
	s->offset_min = (int16_t)cfg->utc_offset_minutes;
	s->aligned = cfg->calendar_aligned ? 1 : 0;
	if (cfg->anchor != TALLY_ANCHOR_DEFAULT)
		s->anchor = cfg->anchor;
}

int
tally__budget_validate(const void *config)
{
	const tally_budget_config *cfg = config;
	int rc;

	if (cfg->max_limit < 0)
		return TALLY_EINVAL;
	if (cfg->utc_offset_minutes < -TALLY_UTC_OFFSET_MAX ||
	    cfg->utc_offset_minutes > TALLY_UTC_OFFSET_MAX)
		return TALLY_EINVAL;
	rc = tally__period_validate(&cfg->period, true);
	return rc;
}

void
tally__budget_init(void *snap, const void *config, int64_t now)
{
	struct tally__budget_snap *s = snap;
	const tally_budget_config *cfg = config;
	tally__lattice l;

	memset(s, 0, sizeof *s);
	s->anchor = now;
	apply_config(s, cfg);
	lattice_of(s, &l);
	tally__window(&l, now, &s->window_start, &s->window_end);
}

int
tally__budget_step(const void *old_snap, void *next_snap, struct tally__args *a,
		   struct tally__rolls *rolls, bool *install)
{
	const struct tally__budget_snap *old = old_snap;
	struct tally__budget_snap *next = next_snap;
	tally__lattice l;
	int64_t start, end, amount = a->amount[0];
	bool rolled;

	*next = *old;
	*install = false;
	switch (a->op) {
	case TALLY__OP_GET:
		return TALLY_OK;

	case TALLY__OP_CHECK:
		(void)roll_if_due(next, a, NULL);
		if (a->need_exact)
			return TALLY__NEED_CLOCK;
		return next->usage >= next->max_limit ? TALLY_LIMITED
						      : TALLY_OK;

	case TALLY__OP_BUMP:
		rolled = roll_if_due(next, a, rolls);
		if (a->need_exact)
			return TALLY__NEED_CLOCK;
		if (amount > INT64_MAX - next->usage) {
			rolls->n = 0;
			return TALLY_EOVERFLOW;
		}
		next->usage += amount;
		*install = rolled || amount != 0;
		return TALLY_OK;

	case TALLY__OP_TRY:
		rolled = roll_if_due(next, a, rolls);
		if (a->need_exact)
			return TALLY__NEED_CLOCK;
		if (amount > next->max_limit - next->usage) {
			/* Nothing taken, nothing changed: not even the roll. */
			rolls->n = 0;
			return TALLY_LIMITED;
		}
		next->usage += amount;
		*install = rolled || amount != 0;
		return TALLY_OK;

	case TALLY__OP_RESET:
		if (old->version != a->observed_version)
			return TALLY_CONFLICT;
		lattice_of(next, &l);
		tally__window(&l, a->now, &start, &end);
		if (start < next->window_start) {
			/* The clock went back: keep the window. */
			start = next->window_start;
			end = next->window_end;
		}
		{
			struct tally__roll_note *n = &rolls->note[rolls->n++];

			n->counter = TALLY_COUNTER_BUDGET;
			n->usage_before = next->usage;
			n->old_window_start = next->window_start;
			n->new_window_start = start;
		}
		next->usage = 0;
		next->window_start = start;
		next->window_end = end;
		*install = true;
		return TALLY_OK;

	case TALLY__OP_ROLL:
		*install = roll_if_due(next, a, rolls);
		return TALLY_OK;

	case TALLY__OP_UPSERT:
		apply_config(next, a->config);
		/* Keep usage and window_start; re-derive the end under the
		 * new lattice so the invariant holds. */
		lattice_of(next, &l);
		tally__window(&l, next->window_start, &start, &end);
		next->window_end = end;
		*install = true;
		return TALLY_OK;
	}
	return TALLY_EINVAL;
}

void
tally__budget_view(const void *snap, uint64_t incarnation, void *view)
{
	const struct tally__budget_snap *s = snap;
	tally_budget_view *v = view;

	v->config.size = sizeof v->config;
	v->config.max_limit = s->max_limit;
	v->config.period.count = s->period_count;
	v->config.period.unit = s->period_unit;
	v->config.anchor = s->anchor;
	v->config.utc_offset_minutes = s->offset_min;
	v->config.calendar_aligned = s->aligned != 0;
	v->usage = s->usage;
	v->window_start = s->window_start;
	v->window_end = s->window_end;
	v->version = s->version;
	v->incarnation = incarnation;
}

bool
tally__budget_due(const void *snap, int64_t now)
{
	const struct tally__budget_snap *s = snap;

	return tally__window_due(now, s->window_end);
}

_Static_assert(sizeof(struct tally__budget_snap) <= TALLY__SNAP_MAX,
	       "TALLY__SNAP_MAX holds a budget snapshot");
_Static_assert(sizeof(struct tally__budget_snap) == 64,
	       "a budget snapshot is one cache line");
