/*
 * Rate limits: two independent counters (tokens, requests) in one snapshot.
 * Each counter has its own optional max, period, usage and window; they
 * share the anchor, the UTC offset and calendar alignment. A write changes
 * both counters in one CAS, so "both or neither" (try_consume) and "one
 * bump adds tokens and requests together" hold by construction. The window
 * invariant of budget.c holds per counter. Pure, like budget.c.
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
		c->usage = 0;
		c->window_start = start;
		c->window_end = end;
		mask |= tally__rl_bit(i);
	}
	return mask;
}

static void
apply_limit(struct tally__counter *c, const tally_limit *lim)
{
	c->has_max = lim->has_max ? 1 : 0;
	c->max = lim->has_max ? lim->max : 0;
	c->period_count = lim->period.count;
	c->period_unit = (uint8_t)lim->period.unit;
}

static void
apply_config(struct tally__rl_snap *s, const tally_ratelimit_config *cfg)
{
	apply_limit(&s->c[0], &cfg->tokens);
	apply_limit(&s->c[1], &cfg->requests);
	s->offset_min = (int16_t)cfg->utc_offset_minutes;
	s->aligned = cfg->calendar_aligned ? 1 : 0;
	if (cfg->anchor != TALLY_ANCHOR_DEFAULT)
		s->anchor = cfg->anchor;
}

static int
validate_limit(const tally_limit *lim)
{
	if (lim->has_max && lim->max < 0)
		return TALLY_EINVAL;
	return tally__period_validate(&lim->period, false);
}

int
tally__rl_validate(const void *config)
{
	const tally_ratelimit_config *cfg = config;
	int rc;

	if (cfg->utc_offset_minutes < -TALLY_UTC_OFFSET_MAX ||
	    cfg->utc_offset_minutes > TALLY_UTC_OFFSET_MAX)
		return TALLY_EINVAL;
	if ((rc = validate_limit(&cfg->tokens)) != TALLY_OK)
		return rc;
	return validate_limit(&cfg->requests);
}

void
tally__rl_init(void *snap, const void *config, int64_t now)
{
	struct tally__rl_snap *s = snap;
	const tally_ratelimit_config *cfg = config;
	memset(s, 0, sizeof *s);
	s->anchor = now;
	apply_config(s, cfg);
	for (unsigned i = 0; i < 2; i++) {
		tally__lattice l;

		lattice_of(s, &s->c[i], &l);
		tally__window(&l, now, &s->c[i].window_start,
			      &s->c[i].window_end);
	}
}

/* Mask of counters with a max that usage has reached. */
static unsigned
blocked(const struct tally__rl_snap *s)
{
	unsigned mask = 0;

	for (unsigned i = 0; i < 2; i++)
		if (s->c[i].has_max && s->c[i].usage >= s->c[i].max)
			mask |= tally__rl_bit(i);
	return mask;
}

static bool
would_overflow(const struct tally__rl_snap *s, const int64_t amount[2])
{
	return amount[0] > INT64_MAX - s->c[0].usage ||
	       amount[1] > INT64_MAX - s->c[1].usage;
}

int
tally__rl_step(const void *old_snap, void *next_snap, struct tally__args *a,
	       struct tally__rolls *rolls, bool *install)
{
	const struct tally__rl_snap *old = old_snap;
	struct tally__rl_snap *next = next_snap;
	unsigned rolled, mask = 0;

	*next = *old;
	*install = false;
	a->out_mask = 0;
	switch (a->op) {
	case TALLY__OP_GET:
		return TALLY_OK;

	case TALLY__OP_CHECK:
		(void)roll_due(next, a, NULL);
		if (a->need_exact)
			return TALLY__NEED_CLOCK;
		a->out_mask = blocked(next);
		return a->out_mask != 0 ? TALLY_LIMITED : TALLY_OK;

	case TALLY__OP_BUMP:
		rolled = roll_due(next, a, rolls);
		if (a->need_exact)
			return TALLY__NEED_CLOCK;
		if (would_overflow(next, a->amount)) {
			rolls->n = 0;
			return TALLY_EOVERFLOW;
		}
		next->c[0].usage += a->amount[0];
		next->c[1].usage += a->amount[1];
		*install =
			rolled != 0 || a->amount[0] != 0 || a->amount[1] != 0;
		return TALLY_OK;

	case TALLY__OP_TRY:
		rolled = roll_due(next, a, rolls);
		if (a->need_exact)
			return TALLY__NEED_CLOCK;
		for (unsigned i = 0; i < 2; i++) {
			const struct tally__counter *c = &next->c[i];

			if (c->has_max && a->amount[i] > c->max - c->usage)
				mask |= tally__rl_bit(i);
		}
		if (mask != 0) {
			rolls->n = 0;
			a->out_mask = mask;
			return TALLY_LIMITED;
		}
		if (would_overflow(next, a->amount)) {
			rolls->n = 0;
			return TALLY_EOVERFLOW;
		}
		next->c[0].usage += a->amount[0];
		next->c[1].usage += a->amount[1];
		*install =
			rolled != 0 || a->amount[0] != 0 || a->amount[1] != 0;
		return TALLY_OK;

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
			c->window_start = start;
			c->window_end = end;
			mask |= tally__rl_bit(i);
		}
		a->out_mask = mask;
		*install = mask != 0;
		return TALLY_OK;

	case TALLY__OP_ROLL:
		*install = roll_due(next, a, rolls) != 0;
		return TALLY_OK;

	case TALLY__OP_UPSERT:
		apply_config(next, a->config);
		for (unsigned i = 0; i < 2; i++) {
			struct tally__counter *c = &next->c[i];
			tally__lattice l;
			int64_t start;

			lattice_of(next, c, &l);
			tally__window(&l, c->window_start, &start,
				      &c->window_end);
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
}

bool
tally__rl_due(const void *snap, int64_t now)
{
	const struct tally__rl_snap *s = snap;

	return tally__window_due(now, s->c[0].window_end) ||
	       tally__window_due(now, s->c[1].window_end);
}

_Static_assert(sizeof(struct tally__rl_snap) <= TALLY__SNAP_MAX,
	       "TALLY__SNAP_MAX holds a rate-limit snapshot");
