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
	s->hold_due = INT64_MAX;
	s->hold_idle_base = INT64_MIN;
	apply_config(s, cfg);
	lattice_of(s, &l);
	tally__window(&l, now, &s->window_start, &s->window_end);
}

static struct tally__hs
hs_of(struct tally__budget_snap *s)
{
	struct tally__hs h;

	h.due = &s->hold_due;
	h.count = s->hold_count;
	h.idle_base = &s->hold_idle_base;
	h.total[0] = &s->held;
	h.total[1] = NULL;
	h.slot = s->held_slot;
	h.nc = 1;
	return h;
}

/* What every write does first: drop the dead hold slots and roll a due
 * window (notes in rolls, which may be NULL). Returns whether the snapshot
 * changed. */
static bool
catch_up(struct tally__budget_snap *s, struct tally__args *a,
	 struct tally__rolls *rolls)
{
	struct tally__hs h = hs_of(s);
	bool changed = false;

	if (TALLY__UNLIKELY(s->hold_due != INT64_MAX))
		changed = tally__holds_expire(&h, a, rolls);
	return roll_if_due(s, a, rolls) || changed;
}

/* The amount an admission-like operation tests or a report describes. */
static int64_t
request_amount(const struct tally__args *a)
{
	return a->op == TALLY__OP_SETTLE || a->op == TALLY__OP_PARTIAL
		       ? a->held_amount[0]
		       : a->amount[0];
}

void
tally__budget_report(const void *snap, const struct tally__args *a,
		     tally_limit_report *rep)
{
	struct tally__budget_snap *s = (struct tally__budget_snap *)snap;
	struct tally__hs h = hs_of(s);

	tally__report_counter(&rep->c[0], &h, 0, a, request_amount(a), true,
			      s->max_limit, s->usage, s->window_start,
			      s->window_end);
	rep->c[0].counter = TALLY_COUNTER_BUDGET;
	memset(&rep->c[1], 0, sizeof rep->c[1]);
	rep->kind = TALLY_KIND_BUDGET;
	rep->flags = rep->c[0].flags;
}

/* Fills a->report (if any) from next, with extra flags and overdraft. */
static void
report(const struct tally__budget_snap *next, const struct tally__args *a,
       unsigned flags, int64_t overdraft)
{
	if (a->report == NULL)
		return;
	tally__budget_report(next, a, a->report);
	a->report->c[0].flags |= flags;
	a->report->c[0].overdraft = overdraft;
	a->report->flags = a->report->c[0].flags;
}

/* A peek that stands for a hold (a->ttl > 0: admission's read-only pass)
 * also answers whether the hold would fit its slot: TALLY_OK or
 * TALLY_EOVERFLOW. */
static int
peek_fit(struct tally__budget_snap *s, const struct tally__args *a)
{
	struct tally__hs h = hs_of(s);

	return a->ttl > 0 ? tally__holds_fit(&h, a, a->amount) : TALLY_OK;
}

int
tally__budget_fits(const void *old_snap, const struct tally__args *a)
{
	/* Read only: hs_of's pointers are only read by the fit test. */
	struct tally__budget_snap *s = (struct tally__budget_snap *)old_snap;
	int64_t due = s->window_end < s->hold_due ? s->window_end : s->hold_due;

	TALLY_ASSERT(a->op == TALLY__OP_PEEK && a->report == NULL);
	if (!tally__surely_not_due(a, due))
		return TALLY__QUICK_NO;
	/* Not due: the step's catch-up changes nothing, so its copy is s. */
	if (!a->shadow &&
	    a->amount[0] > tally__room(s->max_limit, s->usage, s->held))
		return TALLY_LIMITED;
	return peek_fit(s, a);
}

/* Settle and partial charge: take the hold out of its slot and charge the
 * actual amount to the current window. */
static int
settle(struct tally__budget_snap *next, struct tally__args *a,
       struct tally__rolls *rolls, bool *install)
{
	struct tally__hs h = hs_of(next);
	int64_t actual = a->actual[0], overdraft = 0;
	unsigned flags = 0;
	int rc;

	(void)catch_up(next, a, rolls);
	if (a->need_exact)
		return TALLY__NEED_CLOCK;
	rc = tally__holds_take(&h, a);
	if (rc < 0) {
		tally__notes_clear(rolls);
		*install = false;
		return rc;
	}
	/* A late hold released nothing: the whole actual is charged, as
	 * LATE, not as an overdraft (which is the excess over a live hold). */
	if (rc == 0)
		flags |= TALLY_DECISION_LATE;
	else if (actual > a->moved[0])
		overdraft = actual - a->moved[0];
	if (actual > INT64_MAX - next->usage) {
		flags |= TALLY_DECISION_OVERFLOW;
		overdraft = 0;
	} else {
		next->usage += actual;
	}
	if (overdraft > 0)
		flags |= TALLY_DECISION_OVERDRAFT;
	*install = true;
	a->settle_flags = flags;
	a->overdraft[0] = overdraft;
	a->overdraft[1] = 0;
	report(next, a, flags, overdraft);
	return TALLY_OK;
}

int
tally__budget_step(const void *old_snap, void *next_snap, struct tally__args *a,
		   struct tally__rolls *rolls, bool *install)
{
	const struct tally__budget_snap *old = old_snap;
	struct tally__budget_snap *next = next_snap;
	struct tally__hs h = hs_of(next);
	tally__lattice l;
	int64_t start, end, amount = a->amount[0], room;
	bool changed;
	int rc;

	*next = *old;
	*install = false;
	switch (a->op) {
	case TALLY__OP_GET:
		return TALLY_OK;

	case TALLY__OP_CHECK:
		(void)catch_up(next, a, NULL);
		if (a->need_exact)
			return TALLY__NEED_CLOCK;
		return tally__room(next->max_limit, next->usage, next->held) <=
				       0
			       ? TALLY_LIMITED
			       : TALLY_OK;

	case TALLY__OP_BUMP:
		changed = catch_up(next, a, rolls);
		if (a->need_exact)
			return TALLY__NEED_CLOCK;
		if (amount > INT64_MAX - next->usage) {
			tally__notes_clear(rolls);
			return TALLY_EOVERFLOW;
		}
		room = tally__room(next->max_limit, next->usage, next->held);
		next->usage += amount;
		*install = changed || amount != 0;
		report(next, a,
		       a->shadow && amount > room
			       ? TALLY_DECISION_SHADOW_WOULD_DENY
			       : 0,
		       0);
		return TALLY_OK;

	case TALLY__OP_TRY:
	case TALLY__OP_PEEK:
		changed = catch_up(next, a, rolls);
		if (a->need_exact)
			return TALLY__NEED_CLOCK;
		if (amount >
		    tally__room(next->max_limit, next->usage, next->held)) {
			/* Nothing taken, nothing changed: not even the roll. */
			tally__notes_clear(rolls);
			if (a->shadow && a->op == TALLY__OP_PEEK) {
				report(next, a,
				       TALLY_DECISION_SHADOW_WOULD_DENY, 0);
				return peek_fit(next, a);
			}
			report(next, a, TALLY_DECISION_DENIED, 0);
			return TALLY_LIMITED;
		}
		if (a->op == TALLY__OP_PEEK) {
			tally__notes_clear(rolls);
			report(next, a, 0, 0);
			return peek_fit(next, a);
		}
		next->usage += amount;
		*install = changed || amount != 0;
		report(next, a, 0, 0);
		return TALLY_OK;

	case TALLY__OP_HOLD: {
		unsigned flags = 0;

		(void)catch_up(next, a, rolls);
		if (a->need_exact)
			return TALLY__NEED_CLOCK;
		if (amount >
		    tally__room(next->max_limit, next->usage, next->held)) {
			if (!a->shadow) {
				tally__notes_clear(rolls);
				report(next, a, TALLY_DECISION_DENIED, 0);
				return TALLY_LIMITED;
			}
			flags = TALLY_DECISION_SHADOW_WOULD_DENY;
		}
		if ((rc = tally__holds_place(&h, a, &amount)) != TALLY_OK) {
			tally__notes_clear(rolls);
			*next = *old;
			return rc;
		}
		*install = true;
		report(next, a, flags, 0);
		return TALLY_OK;
	}

	case TALLY__OP_SETTLE:
	case TALLY__OP_PARTIAL:
		return settle(next, a, rolls, install);

	case TALLY__OP_RESET:
		if (old->version != a->observed_version)
			return TALLY_CONFLICT;
		if (next->hold_due != INT64_MAX)
			(void)tally__holds_expire(&h, a, rolls);
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
		*install = catch_up(next, a, rolls);
		return TALLY_OK;

	case TALLY__OP_UPSERT:
		/* A write: the dead hold slots go (and are reported). */
		if (next->hold_due != INT64_MAX)
			(void)tally__holds_expire(&h, a, rolls);
		apply_config(next, a->config);
		/* Keep usage, holds and window_start; re-derive the end under
		 * the new lattice so the invariant holds. */
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
	v->held = s->held;
	v->holds = 0;
	for (unsigned i = 0; s->hold_due != INT64_MAX && i < TALLY__HOLD_SLOTS;
	     i++)
		v->holds += s->hold_count[i];
}

bool
tally__budget_due(const void *snap, int64_t now)
{
	const struct tally__budget_snap *s = snap;

	return tally__window_due(now, s->window_end) ||
	       tally__window_due(now, s->hold_due);
}

_Static_assert(sizeof(struct tally__budget_snap) <= TALLY__SNAP_MAX,
	       "TALLY__SNAP_MAX holds a budget snapshot");
_Static_assert(sizeof(((struct tally__budget_snap *)0)->hold_count) ==
		       TALLY__HOLD_SLOTS * sizeof(uint32_t),
	       "a slot count per hold slot");
_Static_assert(sizeof(struct tally__budget_snap) == 128,
	       "a budget snapshot is two cache lines");
_Static_assert(offsetof(struct tally__budget_snap, period_count) == 64,
	       "the hot fields of a budget snapshot share its first line");
