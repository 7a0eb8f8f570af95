/*
 * Rate limits: two independent counters (tokens, requests) in one snapshot.
 * Each counter has its own optional max, period, usage and window; they
 * share the anchor, the UTC offset and calendar alignment. A write changes
 * both counters in one CAS, so "both or neither" (try_consume) and "one
 * bump adds tokens and requests together" hold by construction. The window
 * invariant of budget.c holds per counter. Pure, like budget.c.
 *
 * A counter is FIXED or SLIDING (tally.h, TALLY_ALGORITHM_*). A sliding
 * counter lives on the same lattice and rolls like a fixed one, and keeps
 * in prev[i] the usage of the window before its current one (swin.h's
 * state is (window_start, usage, prev[i])); its decisions subtract the
 * previous window's weighted part (tally__rl_passes) and its reports show
 * the estimate (report_sliding).
 */
#include <string.h>

#include "period.h"
#include "ratelimit.h"

static void
lattice_of(const struct tally__rl_snap *s, const struct tally__counter *c,
	   tally__lattice *l)
{
	l->count = c->period_count;
	l->unit = c->period_unit;
	l->offset_min = s->offset_min;
	l->aligned = s->aligned != 0;
	l->anchor = s->anchor;
}

static void
note(struct tally__rolls *rolls, unsigned i, const struct tally__counter *c,
     int64_t new_start)
{
	struct tally__roll_note *n;

	if (rolls == NULL)
		return;
	n = &rolls->note[rolls->n++];
	n->counter = tally__rl_bit(i);
	n->usage_before = c->usage;
	n->old_window_start = c->window_start;
	n->new_window_start = new_start;
}

/* Rolls each due counter of s; returns the mask of rolled counters. */
static unsigned
roll_due(struct tally__rl_snap *s, struct tally__args *a,
	 struct tally__rolls *rolls)
{
	unsigned mask = 0;

	for (unsigned i = 0; i < 2; i++) {
		struct tally__counter *c = &s->c[i];
		tally__lattice l;
		int64_t start, end;

		if (!tally__is_due(a, c->window_end))
			continue;
		lattice_of(s, c, &l);
		tally__window(&l, a->now, &start, &end);
		if (start <= c->window_start)
			continue;
		note(rolls, i, c, start);
		/* Sliding: the window just closed is the previous one only
		 * if the new one follows it (swin.h, Roll). */
		if (c->algorithm == TALLY_ALGORITHM_SLIDING)
			s->prev[i] = start == c->window_end ? c->usage : 0;
		c->usage = 0;
		c->window_start = start;
		c->window_end = end;
		mask |= tally__rl_bit(i);
	}
	return mask;
}

static void
apply_limit(struct tally__counter *c, const tally_limit *lim,
	    uint32_t algorithm)
{
	c->has_max = lim->has_max ? 1 : 0;
	c->max = lim->has_max ? lim->max : 0;
	c->period_count = lim->period.count;
	c->period_unit = (uint8_t)lim->period.unit;
	c->algorithm = (uint8_t)algorithm;
}

static void
apply_config(struct tally__rl_snap *s, const tally_ratelimit_config *cfg)
{
	apply_limit(&s->c[0], &cfg->tokens, cfg->tokens_algorithm);
	apply_limit(&s->c[1], &cfg->requests, cfg->requests_algorithm);
	s->offset_min = (int16_t)cfg->utc_offset_minutes;
	s->aligned = cfg->calendar_aligned ? 1 : 0;
	if (cfg->anchor != TALLY_ANCHOR_DEFAULT)
		s->anchor = cfg->anchor;
}

static int
validate_limit(const tally_limit *lim, uint32_t algorithm)
{
	int rc;

	if (lim->has_max && lim->max < 0)
		return TALLY_EINVAL;
	if (algorithm != TALLY_ALGORITHM_FIXED &&
	    algorithm != TALLY_ALGORITHM_SLIDING)
		return TALLY_EINVAL;
	if ((rc = tally__period_validate(&lim->period, false)) != TALLY_OK ||
	    algorithm == TALLY_ALGORITHM_FIXED)
		return rc;
	/* Sliding: windows of one length w <= 2^62, amounts in swin.h's
	 * range. */
	if (lim->period.unit == TALLY_PERIOD_MONTH ||
	    (lim->period.unit == TALLY_PERIOD_WEEK
		     ? lim->period.count > TALLY__SWIN_WIDTH_MAX /
						   (7 * INT64_C(86400000000000))
		     : lim->period.count > TALLY__SWIN_WIDTH_MAX))
		return TALLY_EPERIOD;
	if (lim->has_max && lim->max > TALLY__SWIN_AMOUNT_MAX)
		return TALLY_EINVAL;
	return TALLY_OK;
}

int
tally__rl_validate(const void *config)
{
	const tally_ratelimit_config *cfg = config;
	int rc;

	if (cfg->utc_offset_minutes < -TALLY_UTC_OFFSET_MAX ||
	    cfg->utc_offset_minutes > TALLY_UTC_OFFSET_MAX)
		return TALLY_EINVAL;
	if ((rc = validate_limit(&cfg->tokens, cfg->tokens_algorithm)) !=
	    TALLY_OK)
		return rc;
	return validate_limit(&cfg->requests, cfg->requests_algorithm);
}

void
tally__rl_init(void *snap, const void *config, int64_t now)
{
	struct tally__rl_snap *s = snap;
	const tally_ratelimit_config *cfg = config;
	memset(s, 0, sizeof *s);
	s->anchor = now;
	s->hold_due = INT64_MAX;
	s->hold_idle_base = INT64_MIN;
	apply_config(s, cfg);
	for (unsigned i = 0; i < 2; i++) {
		tally__lattice l;

		lattice_of(s, &s->c[i], &l);
		tally__window(&l, now, &s->c[i].window_start,
			      &s->c[i].window_end);
	}
}

static struct tally__hs
hs_of(struct tally__rl_snap *s)
{
	struct tally__hs h;

	h.due = &s->hold_due;
	h.count = s->hold_count;
	h.idle_base = &s->hold_idle_base;
	h.total[0] = &s->c[0].held;
	h.total[1] = &s->c[1].held;
	h.slot = s->held_slot;
	h.nc = 2;
	return h;
}

/* Drops dead hold slots and rolls due counters (notes in rolls, which may
 * be NULL); returns whether the snapshot changed. */
static bool
catch_up(struct tally__rl_snap *s, struct tally__args *a,
	 struct tally__rolls *rolls)
{
	struct tally__hs h = hs_of(s);
	bool changed = false;

	if (TALLY__UNLIKELY(s->hold_due != INT64_MAX))
		changed = tally__holds_expire(&h, a, rolls);
	return roll_due(s, a, rolls) != 0 || changed;
}

/* Mask of counters with a max that used + held has reached (a sliding
 * counter: its estimate). */
static unsigned
blocked(const struct tally__rl_snap *s, struct tally__args *a)
{
	unsigned mask = 0;

	for (unsigned i = 0; i < 2; i++)
		if (s->c[i].has_max && !tally__rl_passes(s, i, a, 1))
			mask |= tally__rl_bit(i);
	return mask;
}

/* Mask of counters with a max that amount does not fit, at now. */
static unsigned
no_room_at(const struct tally__rl_snap *s, const int64_t amount[2], int64_t now)
{
	unsigned mask = 0;

	for (unsigned i = 0; i < 2; i++)
		if (s->c[i].has_max &&
		    !tally__rl_passes_at(s, i, now, amount[i]))
			mask |= tally__rl_bit(i);
	return mask;
}

/* The same at a->now, asking for the exact clock where it decides. */
static unsigned
no_room(const struct tally__rl_snap *s, struct tally__args *a)
{
	if ((s->c[0].algorithm | s->c[1].algorithm) != 0 && a->now_coarse)
		a->need_exact = true;
	return no_room_at(s, a->amount, a->now);
}

/* Whether usage + amount passes a counter's cap (tally__rl_cap). */
static bool
over_cap(const struct tally__counter *c, int64_t amount)
{
	return amount > tally__rl_cap(c) - c->usage;
}

static bool
would_overflow(const struct tally__rl_snap *s, const int64_t amount[2])
{
	return over_cap(&s->c[0], amount[0]) || over_cap(&s->c[1], amount[1]);
}

/* A sliding counter's report: used is the estimate rounded up, so that
 * max - used - held is the largest request tally__rl_passes lets through;
 * retry_after from swin.h's closed form with the holds' expiries
 * (tally__retry_after_sliding). */
static void
report_sliding(tally_counter_report *rep, const struct tally__rl_snap *s,
	       const struct tally__hs *h, unsigned i,
	       const struct tally__args *a, int64_t amount)
{
	const struct tally__counter *c = &s->c[i];
	struct tally__swin st;

	tally__report_fill(rep, h, i, amount, c->has_max != 0, c->max,
			   c->usage + tally__rl_carry(c, s->prev[i], a->now),
			   c->window_start, c->window_end);
	rep->flags |= TALLY_DECISION_SLIDING;
	if (!c->has_max)
		return;
	st.start = c->window_start;
	st.cur = c->usage;
	st.prev = s->prev[i];
	rep->retry_after =
		tally__retry_after_sliding(h, i, a->grain, a->now, amount,
					   c->max, tally__rl_width(c), &st);
}

void
tally__rl_report(const void *snap, const struct tally__args *a,
		 tally_limit_report *rep)
{
	struct tally__rl_snap *s = (struct tally__rl_snap *)snap;
	struct tally__hs h = hs_of(s);
	bool settling = a->op == TALLY__OP_SETTLE || a->op == TALLY__OP_PARTIAL;

	rep->kind = TALLY_KIND_RATELIMIT;
	rep->flags = 0;
	for (unsigned i = 0; i < 2; i++) {
		const struct tally__counter *c = &s->c[i];
		int64_t amount = settling ? a->held_amount[i] : a->amount[i];

		if (c->algorithm == TALLY_ALGORITHM_SLIDING)
			report_sliding(&rep->c[i], s, &h, i, a, amount);
		else
			tally__report_counter(&rep->c[i], &h, i, a, amount,
					      c->has_max != 0, c->max, c->usage,
					      c->window_start, c->window_end);
		rep->c[i].counter = tally__rl_bit(i);
		rep->flags |= rep->c[i].flags;
	}
}

/* Fills a->report (if any) from next; flags[i] and overdraft[i] are added
 * to counter i (NULL: none). */
static void
report(const struct tally__rl_snap *next, const struct tally__args *a,
       const unsigned flags[2], const int64_t overdraft[2])
{
	tally_limit_report *rep = a->report;

	if (rep == NULL)
		return;
	tally__rl_report(next, a, rep);
	if (flags == NULL)
		return;
	for (unsigned i = 0; i < 2; i++) {
		rep->c[i].flags |= flags[i];
		if (overdraft != NULL)
			rep->c[i].overdraft = overdraft[i];
		rep->flags |= rep->c[i].flags;
	}
}

/* Per-counter flags: `flag` on the counters of mask. */
static void
mask_flags(unsigned flags[2], unsigned mask, unsigned flag)
{
	for (unsigned i = 0; i < 2; i++)
		flags[i] = (mask & tally__rl_bit(i)) != 0 ? flag : 0;
}

static bool
held_over_cap(const struct tally__rl_snap *s, const int64_t amount[2])
{
	for (unsigned i = 0; i < 2; i++)
		if (s->c[i].algorithm == TALLY_ALGORITHM_SLIDING &&
		    amount[i] > TALLY__SWIN_AMOUNT_MAX - s->c[i].held)
			return true;
	return false;
}

/* A peek that stands for a hold (a->ttl > 0: admission's read-only pass)
 * also answers whether the hold would fit its slot: TALLY_OK or
 * TALLY_EOVERFLOW. */
static int
peek_fit(struct tally__rl_snap *s, const struct tally__args *a)
{
	struct tally__hs h = hs_of(s);

	if (a->ttl <= 0)
		return TALLY_OK;
	if (held_over_cap(s, a->amount))
		return TALLY_EOVERFLOW;
	return tally__holds_fit(&h, a, a->amount);
}

int
tally__rl_fits(const void *old_snap, const struct tally__args *a)
{
	/* Read only, as tally__budget_fits. */
	struct tally__rl_snap *s = (struct tally__rl_snap *)old_snap;
	int64_t due = s->c[0].window_end < s->c[1].window_end
			      ? s->c[0].window_end
			      : s->c[1].window_end;

	TALLY_ASSERT(a->op == TALLY__OP_PEEK && a->report == NULL);
	if (s->hold_due < due)
		due = s->hold_due;
	if (!tally__surely_not_due(a, due) ||
	    ((s->c[0].algorithm | s->c[1].algorithm) != 0 && a->now_coarse))
		return TALLY__QUICK_NO;
	if (!a->shadow && no_room_at(s, a->amount, a->now) != 0)
		return TALLY_LIMITED;
	return peek_fit(s, a);
}

/* Settle and partial charge (see budget.c). */
static int
settle(struct tally__rl_snap *next, struct tally__args *a,
       struct tally__rolls *rolls, bool *install)
{
	struct tally__hs h = hs_of(next);
	unsigned flags[2] = {0, 0};
	int64_t overdraft[2] = {0, 0};
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
	for (unsigned i = 0; i < 2; i++) {
		struct tally__counter *c = &next->c[i];
		int64_t actual = a->actual[i];

		if (rc == 0)
			flags[i] |= TALLY_DECISION_LATE;
		else if (actual > a->moved[i])
			overdraft[i] = actual - a->moved[i];
		if (over_cap(c, actual)) {
			flags[i] |= TALLY_DECISION_OVERFLOW;
			overdraft[i] = 0;
		} else {
			c->usage += actual;
		}
		if (overdraft[i] > 0)
			flags[i] |= TALLY_DECISION_OVERDRAFT;
	}
	*install = true;
	a->settle_flags = flags[0] | flags[1];
	a->overdraft[0] = overdraft[0];
	a->overdraft[1] = overdraft[1];
	report(next, a, flags, overdraft);
	return TALLY_OK;
}

/*
 * After an upsert applied the config: counter i's window on the new
 * lattice. A fixed counter keeps its window start and takes the end of the
 * new lattice's window that holds it. A sliding one keeps prev only if it
 * was sliding with the same window length and its window is a window of
 * the new lattice (prev is then still the usage of the one before); else
 * prev = 0 and the window becomes the new lattice's window that holds the
 * old start, so every window of a sliding counter is w long (tally.h).
 */
static void
relattice(struct tally__rl_snap *s, unsigned i,
	  const struct tally__counter *was)
{
	struct tally__counter *c = &s->c[i];
	tally__lattice l;
	int64_t start, end;

	lattice_of(s, c, &l);
	tally__window(&l, c->window_start, &start, &end);
	if (c->algorithm != TALLY_ALGORITHM_SLIDING) {
		s->prev[i] = 0;
		c->window_end = end;
		return;
	}
	if (was->algorithm != TALLY_ALGORITHM_SLIDING ||
	    tally__rl_width(was) != tally__rl_width(c) ||
	    start != c->window_start)
		s->prev[i] = 0;
	c->window_start = start;
	c->window_end = end;
}

int
tally__rl_step(const void *old_snap, void *next_snap, struct tally__args *a,
	       struct tally__rolls *rolls, bool *install)
{
	const struct tally__rl_snap *old = old_snap;
	struct tally__rl_snap *next = next_snap;
	struct tally__hs h = hs_of(next);
	unsigned flags[2], mask = 0;
	bool changed;
	int rc;

	*next = *old;
	*install = false;
	a->out_mask = 0;
	switch (a->op) {
	case TALLY__OP_GET:
		return TALLY_OK;

	case TALLY__OP_CHECK:
		(void)catch_up(next, a, NULL);
		if (a->need_exact)
			return TALLY__NEED_CLOCK;
		a->out_mask = blocked(next, a);
		if (a->need_exact)
			return TALLY__NEED_CLOCK;
		return a->out_mask != 0 ? TALLY_LIMITED : TALLY_OK;

	case TALLY__OP_BUMP:
		changed = catch_up(next, a, rolls);
		if (a->need_exact)
			return TALLY__NEED_CLOCK;
		if (would_overflow(next, a->amount)) {
			tally__notes_clear(rolls);
			return TALLY_EOVERFLOW;
		}
		mask = a->shadow ? no_room(next, a) : 0;
		if (a->need_exact) {
			tally__notes_clear(rolls);
			return TALLY__NEED_CLOCK;
		}
		next->c[0].usage += a->amount[0];
		next->c[1].usage += a->amount[1];
		*install = changed || a->amount[0] != 0 || a->amount[1] != 0;
		mask_flags(flags, mask, TALLY_DECISION_SHADOW_WOULD_DENY);
		report(next, a, flags, NULL);
		return TALLY_OK;

	case TALLY__OP_TRY:
	case TALLY__OP_PEEK:
	case TALLY__OP_HOLD:
		changed = catch_up(next, a, rolls);
		if (a->need_exact)
			return TALLY__NEED_CLOCK;
		mask = no_room(next, a);
		if (a->need_exact)
			return TALLY__NEED_CLOCK;
		if (mask != 0 && !(a->shadow && a->op != TALLY__OP_TRY)) {
			tally__notes_clear(rolls);
			a->out_mask = mask;
			mask_flags(flags, mask, TALLY_DECISION_DENIED);
			report(next, a, flags, NULL);
			return TALLY_LIMITED;
		}
		mask_flags(flags, mask, TALLY_DECISION_SHADOW_WOULD_DENY);
		if (a->op == TALLY__OP_PEEK) {
			tally__notes_clear(rolls);
			report(next, a, flags, NULL);
			return peek_fit(next, a);
		}
		if (a->op == TALLY__OP_HOLD) {
			/* A sliding counter's held stays in swin.h's range
			 * (only a shadow hold can pass its max). */
			if (held_over_cap(next, a->amount)) {
				tally__notes_clear(rolls);
				*next = *old;
				return TALLY_EOVERFLOW;
			}
			rc = tally__holds_place(&h, a, a->amount);
			if (rc != TALLY_OK) {
				tally__notes_clear(rolls);
				*next = *old;
				return rc;
			}
			*install = true;
			report(next, a, flags, NULL);
			return TALLY_OK;
		}
		if (would_overflow(next, a->amount)) {
			tally__notes_clear(rolls);
			return TALLY_EOVERFLOW;
		}
		next->c[0].usage += a->amount[0];
		next->c[1].usage += a->amount[1];
		*install = changed || a->amount[0] != 0 || a->amount[1] != 0;
		report(next, a, NULL, NULL);
		return TALLY_OK;

	case TALLY__OP_SETTLE:
	case TALLY__OP_PARTIAL:
		return settle(next, a, rolls, install);

	case TALLY__OP_RESET:
		if (old->version != a->observed_version)
			return TALLY_CONFLICT;
		for (unsigned i = 0; i < 2; i++) {
			struct tally__counter *c = &next->c[i];
			tally__lattice l;
			int64_t start, end;

			if ((a->counters & tally__rl_bit(i)) == 0)
				continue;
			if ((a->counters & TALLY_RESET_DUE_ONLY) != 0 &&
			    !tally__window_due(a->now, c->window_end))
				continue;
			lattice_of(next, c, &l);
			tally__window(&l, a->now, &start, &end);
			if (start < c->window_start) {
				start = c->window_start;
				end = c->window_end;
			}
			note(rolls, i, c, start);
			c->usage = 0;
			next->prev[i] = 0; /* sliding: nothing carried */
			c->window_start = start;
			c->window_end = end;
			mask |= tally__rl_bit(i);
		}
		a->out_mask = mask;
		/* Holds stay; the dead ones go with a reset that writes. */
		if (mask != 0 && next->hold_due != INT64_MAX)
			(void)tally__holds_expire(&h, a, rolls);
		*install = mask != 0;
		return TALLY_OK;

	case TALLY__OP_ROLL:
		*install = catch_up(next, a, rolls);
		return TALLY_OK;

	case TALLY__OP_UPSERT:
		/* A write: the dead hold slots go (and are reported). */
		if (next->hold_due != INT64_MAX)
			(void)tally__holds_expire(&h, a, rolls);
		apply_config(next, a->config);
		for (unsigned i = 0; i < 2; i++)
			relattice(next, i, &old->c[i]);
		/* A counter becoming sliding keeps its usage and held, which
		 * must then be in its range (tally.h). */
		if (over_cap(&next->c[0], 0) || over_cap(&next->c[1], 0) ||
		    held_over_cap(next, (const int64_t[2]){0, 0})) {
			tally__notes_clear(rolls);
			*next = *old;
			return TALLY_EOVERFLOW;
		}
		*install = true;
		return TALLY_OK;
	}
	return TALLY_EINVAL;
}

static void
limit_view(const struct tally__counter *c, tally_limit *lim,
	   tally_counter_view *cv)
{
	lim->has_max = c->has_max != 0;
	lim->max = c->max;
	lim->period.count = c->period_count;
	lim->period.unit = c->period_unit;
	cv->usage = c->usage;
	cv->window_start = c->window_start;
	cv->window_end = c->window_end;
}

void
tally__rl_view(const void *snap, uint64_t incarnation, void *view)
{
	const struct tally__rl_snap *s = snap;
	tally_ratelimit_view *v = view;

	v->config.size = sizeof v->config;
	limit_view(&s->c[0], &v->config.tokens, &v->tokens);
	limit_view(&s->c[1], &v->config.requests, &v->requests);
	v->config.anchor = s->anchor;
	v->config.utc_offset_minutes = s->offset_min;
	v->config.calendar_aligned = s->aligned != 0;
	v->version = s->version;
	v->incarnation = incarnation;
	v->tokens_held = s->c[0].held;
	v->requests_held = s->c[1].held;
	v->tokens_previous = s->prev[0];
	v->requests_previous = s->prev[1];
	v->config.tokens_algorithm = s->c[0].algorithm;
	v->config.requests_algorithm = s->c[1].algorithm;
	v->holds = 0;
	for (unsigned i = 0; s->hold_due != INT64_MAX && i < TALLY__HOLD_SLOTS;
	     i++)
		v->holds += s->hold_count[i];
}

void
tally__rl_view_old(const void *snap, uint64_t incarnation, void *view)
{
	tally_ratelimit_view v;
	struct tally__rl_view_03 o;
	size_t size;

	memcpy(&size, view, sizeof size);
	memset(&v, 0, sizeof v); /* its padding, copied below, is defined */
	TALLY_ASSERT(size < sizeof v && size >= sizeof(size_t));
	tally__rl_view(snap, incarnation, &v);
	memset(&o, 0, sizeof o);
	o.config.size = sizeof o.config;
	o.config.tokens = v.config.tokens;
	o.config.requests = v.config.requests;
	o.config.anchor = v.config.anchor;
	o.config.utc_offset_minutes = v.config.utc_offset_minutes;
	o.config.calendar_aligned = v.config.calendar_aligned;
	o.tokens = v.tokens;
	o.requests = v.requests;
	o.version = v.version;
	o.incarnation = v.incarnation;
	o.tokens_held = v.tokens_held;
	o.requests_held = v.requests_held;
	o.holds = v.holds;
	if (size > sizeof o)
		size = sizeof o;
	memcpy((char *)view + sizeof size, (char *)&o + sizeof size,
	       size - sizeof size);
}

bool
tally__rl_due(const void *snap, int64_t now)
{
	const struct tally__rl_snap *s = snap;

	return tally__window_due(now, s->c[0].window_end) ||
	       tally__window_due(now, s->c[1].window_end) ||
	       tally__window_due(now, s->hold_due);
}

_Static_assert(sizeof(((struct tally__rl_snap *)0)->hold_count) ==
		       TALLY__HOLD_SLOTS * sizeof(uint32_t),
	       "a slot count per hold slot");
_Static_assert(offsetof(struct tally__rl_snap, anchor) == 128,
	       "the hot fields of a rate-limit snapshot fill its first lines");
_Static_assert(sizeof(struct tally__rl_config_03) == 88 &&
		       sizeof(struct tally__rl_view_03) == 184 &&
		       offsetof(struct tally__rl_view_03, tokens_held) == 160,
	       "the 0.3 layouts are frozen (x86-64 and LP64 ABIs)");
_Static_assert(sizeof(struct tally__rl_snap) <= TALLY__SNAP_MAX,
	       "TALLY__SNAP_MAX holds a rate-limit snapshot");
