/*
 * The sequential reference model (see model.h). Read it against
 * ARCHITECTURE.md sections 2 and 3 and the comments of tally.h; every rule
 * is written once, in the plainest form, with the sentence it implements.
 */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__extension__ typedef __int128 i128;

#define NS_PER_MIN INT64_C(60000000000)
#define NS_PER_DAY INT64_C(86400000000000)
#define NS_PER_WEEK (7 * NS_PER_DAY)

static void
model_fail(const char *what)
{
	fprintf(stderr, "model: %s\n", what);
	abort();
}

/* ------------------------------------------------------------------------ */
/* Calendar: proleptic Gregorian, tables filled by walking years            */
/* ------------------------------------------------------------------------ */

#define YEAR_MIN (-12000)
#define YEAR_MAX 16000

/* year_start[y - YEAR_MIN]: days from 1970-01-01 to January 1st of year y. */
static int64_t year_start[YEAR_MAX - YEAR_MIN + 2];
static bool calendar_ready;

static bool
is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int64_t
year_length(int64_t y)
{
	return is_leap(y) ? 366 : 365;
}

static int64_t
month_length(int64_t y, int64_t m)
{
	static const int64_t len[12] = {31, 28, 31, 30, 31, 30,
					31, 31, 30, 31, 30, 31};

	return m == 2 && is_leap(y) ? 29 : len[m - 1];
}

static void
calendar_init(void)
{
	if (calendar_ready)
		return;
	year_start[1970 - YEAR_MIN] = 0;
	for (int64_t y = 1970; y <= YEAR_MAX; y++)
		year_start[y + 1 - YEAR_MIN] =
			year_start[y - YEAR_MIN] + year_length(y);
	for (int64_t y = 1970; y > YEAR_MIN; y--)
		year_start[y - 1 - YEAR_MIN] =
			year_start[y - YEAR_MIN] - year_length(y - 1);
	calendar_ready = true;
}

/* Floor division for b > 0: the largest q with q * b <= a. */
static i128
fdiv(i128 a, i128 b)
{
	i128 q = a / b;

	if (q * b > a)
		q -= 1;
	return q;
}

/* A month counted from January 1970 (index 0), as year and month 1..12. */
static void
month_of_index(i128 mi, int64_t *y, int64_t *m)
{
	i128 yy = 1970 + fdiv(mi, 12);

	if (yy < YEAR_MIN || yy > YEAR_MAX)
		model_fail("month outside the model's calendar range");
	*y = (int64_t)yy;
	*m = (int64_t)(mi - (yy - 1970) * 12) + 1;
}

/* Days from 1970-01-01 to the first day of month index mi. */
static int64_t
month_first_day(i128 mi)
{
	int64_t y, m, days;

	month_of_index(mi, &y, &m);
	days = year_start[y - YEAR_MIN];
	for (int64_t i = 1; i < m; i++)
		days += month_length(y, i);
	return days;
}

/* A local time (ns since local 1970-01-01 00:00) as civil parts. */
struct civil {
	i128 mi;     /* month index since January 1970 */
	int64_t y;   /* year */
	int64_t m;   /* 1..12 */
	int64_t day; /* 1..31 */
	i128 tod;    /* ns since local midnight */
};

static struct civil
civil_of(i128 local)
{
	struct civil c;
	i128 days = fdiv(local, NS_PER_DAY);
	int64_t lo = YEAR_MIN, hi = YEAR_MAX, rest;

	c.tod = local - days * NS_PER_DAY;
	if (days < year_start[0] || days >= year_start[YEAR_MAX - YEAR_MIN + 1])
		model_fail("time outside the model's calendar range");
	/* Binary search: the last year that starts on or before days. */
	while (lo < hi) {
		int64_t mid = lo + (hi - lo + 1) / 2;

		if (year_start[mid - YEAR_MIN] <= days)
			lo = mid;
		else
			hi = mid - 1;
	}
	c.y = lo;
	rest = (int64_t)(days - year_start[lo - YEAR_MIN]);
	c.m = 1;
	while (rest >= month_length(c.y, c.m)) {
		rest -= month_length(c.y, c.m);
		c.m++;
	}
	c.day = rest + 1;
	c.mi = (i128)(c.y - 1970) * 12 + (c.m - 1);
	return c;
}

/* ------------------------------------------------------------------------ */
/* Periods and the window lattice                                           */
/* ------------------------------------------------------------------------ */

int
model_period_validate(const tally_period *p, bool allow_none)
{
	switch (p->unit) {
	case TALLY_PERIOD_NONE:
		return allow_none && p->count == 0 ? TALLY_OK : TALLY_EPERIOD;
	case TALLY_PERIOD_FIXED:
		return p->count > 0 ? TALLY_OK : TALLY_EPERIOD;
	case TALLY_PERIOD_WEEK:
		return p->count > 0 && p->count <= MODEL_WEEK_COUNT_MAX
			       ? TALLY_OK
			       : TALLY_EPERIOD;
	case TALLY_PERIOD_MONTH:
		return p->count > 0 && p->count <= MODEL_MONTH_COUNT_MAX
			       ? TALLY_OK
			       : TALLY_EPERIOD;
	}
	return TALLY_EPERIOD;
}

struct lattice {
	tally_period p;
	bool aligned;
	int64_t anchor;
	i128 off;       /* utc offset in ns: local = utc + off */
	struct civil a; /* rolling months: the anchor in local time */
};

/*
 * Boundary number k, in UTC ns (unclamped). Boundaries increase strictly
 * with k; boundary 0 is the origin (the anchor, or the grid's origin).
 */
static i128
boundary(const struct lattice *l, i128 k)
{
	switch (l->p.unit) {
	case TALLY_PERIOD_FIXED:
		/* Aligned: multiples of the period from local 1970-01-01. */
		return (l->aligned ? -l->off : (i128)l->anchor) +
		       k * l->p.count;
	case TALLY_PERIOD_WEEK:
		/* Aligned: from local Monday 1970-01-05 (1970-01-01 was a
		 * Thursday). */
		return (l->aligned ? (i128)4 * NS_PER_DAY - l->off
				   : (i128)l->anchor) +
		       k * l->p.count * NS_PER_WEEK;
	case TALLY_PERIOD_MONTH:
		if (l->aligned) {
			/* Local 1st of every count-th month since Jan 1970. */
			return (i128)month_first_day(k * l->p.count) *
				       NS_PER_DAY -
			       l->off;
		} else {
			/* The anchor's day (clamped to the month's length)
			 * and time of day, k * count months after the anchor's
			 * month, always counted from the anchor itself. */
			int64_t y, m, day;
			i128 mi = l->a.mi + k * l->p.count;

			month_of_index(mi, &y, &m);
			day = l->a.day;
			if (day > month_length(y, m))
				day = month_length(y, m);
			return ((i128)month_first_day(mi) + day - 1) *
				       NS_PER_DAY +
			       l->a.tod - l->off;
		}
	}
	model_fail("boundary of an invalid period");
	return 0;
}

/* Some k near the boundary at or before t; boundary() steps from there. */
static i128
guess_k(const struct lattice *l, int64_t t)
{
	switch (l->p.unit) {
	case TALLY_PERIOD_FIXED:
	case TALLY_PERIOD_WEEK: {
		i128 len = (i128)l->p.count *
			   (l->p.unit == TALLY_PERIOD_WEEK ? NS_PER_WEEK : 1);

		return ((i128)t - boundary(l, 0)) / len;
	}
	case TALLY_PERIOD_MONTH: {
		struct civil c = civil_of((i128)t + l->off);

		return (c.mi - (l->aligned ? 0 : l->a.mi)) / l->p.count;
	}
	}
	return 0;
}

static int64_t
clamp64(i128 v)
{
	return v < INT64_MIN   ? INT64_MIN
	       : v > INT64_MAX ? INT64_MAX
			       : (int64_t)v;
}

void
model_window(const tally_period *p, bool aligned, int64_t anchor,
	     int32_t utc_offset_minutes, int64_t t, int64_t *start,
	     int64_t *end)
{
	struct lattice l;
	i128 k;
	int steps = 0;

	if (model_period_validate(p, true) != TALLY_OK)
		model_fail("window of an invalid period");
	if (p->unit == TALLY_PERIOD_NONE) {
		/* No period: the window is the anchor, forever. */
		*start = anchor;
		*end = INT64_MAX;
		return;
	}
	calendar_init();
	l.p = *p;
	l.aligned = aligned;
	l.anchor = anchor;
	l.off = (i128)utc_offset_minutes * NS_PER_MIN;
	if (p->unit == TALLY_PERIOD_MONTH && !aligned)
		l.a = civil_of((i128)anchor + l.off);
	/* Step k until boundary(k) <= t < boundary(k + 1). */
	k = guess_k(&l, t);
	while (boundary(&l, k) > t) {
		k -= 1;
		if (++steps > 64)
			model_fail("window search does not converge");
	}
	while (boundary(&l, k + 1) <= t) {
		k += 1;
		if (++steps > 64)
			model_fail("window search does not converge");
	}
	*start = clamp64(boundary(&l, k));
	*end = clamp64(boundary(&l, k + 1));
}

/* ------------------------------------------------------------------------ */
/* Records                                                                  */
/* ------------------------------------------------------------------------ */

static const unsigned rl_counter_id[2] = {TALLY_COUNTER_TOKENS,
					  TALLY_COUNTER_REQUESTS};

static unsigned
counter_id(const struct model_record *r, unsigned i)
{
	return r->kind == TALLY_KIND_BUDGET ? TALLY_COUNTER_BUDGET
					    : rl_counter_id[i];
}

static void
counter_window(const struct model_record *r, const struct model_counter *c,
	       int64_t t, int64_t *start, int64_t *end)
{
	model_window(&c->period, r->calendar_aligned, r->anchor,
		     r->utc_offset_minutes, t, start, end);
}

/* window_end: the smallest boundary after window_start (INT64_MAX when it
 * never resets). */
static int64_t
counter_end(const struct model_record *r, const struct model_counter *c)
{
	int64_t s, e;

	counter_window(r, c, c->window_start, &s, &e);
	return e;
}

/* Due: window_start(now) > stored window_start. A period-less budget never
 * resets, whatever its anchor says; nor does a window whose end is INT64_MAX
 * (tally.h: "INT64_MAX: it never rolls"), even when INT64_MAX happens to be
 * a boundary of its lattice. */
static bool
counter_due(const struct model_record *r, const struct model_counter *c,
	    int64_t now, int64_t *new_start)
{
	int64_t s, e;

	if (c->period.unit == TALLY_PERIOD_NONE)
		return false;
	if (counter_end(r, c) == INT64_MAX)
		return false;
	counter_window(r, c, now, &s, &e);
	*new_start = s;
	return s > c->window_start;
}

/* ------------------------------------------------------------------------ */
/* Sliding counters (tally.h, TALLY_ALGORITHM_SLIDING)                      */
/* ------------------------------------------------------------------------ */

static bool
sliding(const struct model_counter *c)
{
	return c->algorithm == TALLY_ALGORITHM_SLIDING;
}

/* The window length w of a period of one length (FIXED: count ns; WEEK:
 * count weeks), exact. */
static i128
period_width(const tally_period *p)
{
	return p->unit == TALLY_PERIOD_WEEK ? (i128)p->count * NS_PER_WEEK
					    : (i128)p->count;
}

/* The largest usage (and held) a counter may reach: 2^62 - 1 for a
 * sliding one, INT64_MAX otherwise (a budget's too). */
static int64_t
counter_cap(const struct model_counter *c)
{
	return sliding(c) ? MODEL_SWIN_AMOUNT_MAX : INT64_MAX;
}

/* The previous window's part of the estimate at time t, for a window of
 * length w that starts at start: ceil(prev * (w - e) / w), e = t' - start
 * with t' = max(t, start), and e at most w - 1. */
static i128
carry_at(i128 w, int64_t prev, int64_t start, i128 t)
{
	i128 e = t > start ? t - start : 0;

	if (e > w - 1)
		e = w - 1;
	return -fdiv(-(i128)prev * (w - e), w);
}

/* The room of counter i of r at now: the largest request that passes (a
 * request of n passes iff n <= room; may be negative). FIXED:
 * max - used - held; SLIDING: minus the carry of the previous window too.
 * Only for a counter with a max. */
static i128
counter_room(const struct model_record *r, unsigned i, int64_t now)
{
	const struct model_counter *c = &r->c[i];
	i128 room = (i128)c->max - c->usage - model_held(r, i);

	if (sliding(c))
		room -= carry_at(period_width(&c->period), c->prev,
				 c->window_start, now);
	return room;
}

void
model_init(struct model *m, int64_t now)
{
	memset(m, 0, sizeof *m);
	m->now = now;
	m->version_floor = 1;
	m->stats.size = sizeof m->stats;
	(void)model_set_hold_ttl_max(m, 0);
	calendar_init();
}

int
model_set_hold_ttl_max(struct model *m, int64_t ttl_max)
{
	if (ttl_max < 0 || ttl_max > TALLY_HOLD_TTL_MAX_LIMIT)
		return TALLY_EINVAL;
	if (ttl_max == 0)
		ttl_max = TALLY_HOLD_TTL_MAX_DEFAULT;
	m->hold_ttl_max = ttl_max;
	/* hold.h: G = ceil(hold_ttl_max / (4 - 1)). */
	m->hold_grain = (ttl_max + 2) / 3;
	return TALLY_OK;
}

void
model_hold_init(struct model_hold *h)
{
	memset(h, 0, sizeof *h);
	h->size = sizeof(tally_hold);
	h->state = TALLY_HOLD_NONE;
}

void
model_set_now(struct model *m, int64_t now)
{
	m->now = now;
}

void
model_rolls_clear(struct model *m)
{
	m->nrolls = 0;
	m->nexpiries = 0;
}

size_t
model_records(const struct model *m)
{
	size_t n = 0;

	for (size_t i = 0; i < MODEL_RECORDS_MAX; i++)
		n += m->rec[i].live;
	return n;
}

/* NULL key: EINVAL; empty or longer than 255 bytes: EKEY. A NUL-
 * terminated key (*len == MODEL_KEY_NUL) is measured, up to 256 bytes. */
static int
key_check(const char *key, size_t *len)
{
	size_t n = 0;

	if (key == NULL)
		return TALLY_EINVAL;
	if (*len == MODEL_KEY_NUL) {
		while (n <= MODEL_KEY_MAX && key[n] != '\0')
			n++;
		*len = n;
	}
	if (*len == 0 || *len > MODEL_KEY_MAX)
		return TALLY_EKEY;
	return TALLY_OK;
}

static struct model_record *
find(struct model *m, tally_kind kind, const char *key, size_t len)
{
	for (size_t i = 0; i < MODEL_RECORDS_MAX; i++) {
		struct model_record *r = &m->rec[i];

		if (r->live && r->kind == kind && r->key_len == len &&
		    memcmp(r->key, key, len) == 0)
			return r;
	}
	return NULL;
}

const struct model_record *
model_find(const struct model *m, tally_kind kind, const char *key,
	   size_t key_len)
{
	if (key_check(key, &key_len) != TALLY_OK)
		return NULL;
	return find((struct model *)(uintptr_t)m, kind, key, key_len);
}

/* Key check, then lookup: the order every keyed call reports errors in. */
static int
lookup(struct model *m, tally_kind kind, const char *key, size_t *key_len,
       struct model_record **out)
{
	int rc = key_check(key, key_len);

	if (rc != TALLY_OK)
		return rc;
	*out = find(m, kind, key, *key_len);
	return *out != NULL ? TALLY_OK : TALLY_ENOENT;
}

/* Rolls and expired holds waiting for their write to be installed. */
struct pending {
	unsigned n;
	struct {
		unsigned counter;
		int64_t usage_before, old_start, new_start;
	} note[2];
	/* Expired slots: what they counted and held, the latest one's end. */
	bool expired;
	uint32_t exp_holds;
	int64_t exp_amount[2];
	int64_t exp_slot_end;
};

static void
note_roll(struct pending *p, const struct model_record *r, unsigned i,
	  int64_t new_start)
{
	p->note[p->n].counter = counter_id(r, i);
	p->note[p->n].usage_before = r->c[i].usage;
	p->note[p->n].old_start = r->c[i].window_start;
	p->note[p->n].new_start = new_start;
	p->n++;
}

/* Rolls every due counter of r (a working copy); returns how many. */
static unsigned
roll_due(struct model_record *r, int64_t now, struct pending *p)
{
	unsigned n = 0;

	for (unsigned i = 0; i < r->ncounters; i++) {
		int64_t s;

		if (!counter_due(r, &r->c[i], now, &s))
			continue;
		if (p != NULL)
			note_roll(p, r, i, s);
		/* Sliding: the closed window is the previous one only if the
		 * new one starts where it ended; a roll over more windows
		 * carries nothing. */
		if (sliding(&r->c[i]))
			r->c[i].prev = s == counter_end(r, &r->c[i])
					       ? r->c[i].usage
					       : 0;
		r->c[i].usage = 0;
		r->c[i].window_start = s;
		n++;
	}
	return n;
}

/* ------------------------------------------------------------------------ */
/* Holds: expiry slots (src/hold.h's scheme, from its text)                 */
/* ------------------------------------------------------------------------ */

int64_t
model_held(const struct model_record *r, unsigned i)
{
	i128 sum = 0;

	for (unsigned k = 0; k < r->nslots; k++)
		sum += r->slot[k].sum[i];
	if (sum > INT64_MAX)
		model_fail("held past INT64_MAX");
	return (int64_t)sum;
}

uint64_t
model_holds(const struct model_record *r)
{
	uint64_t n = 0;

	for (unsigned k = 0; k < r->nslots; k++)
		n += r->slot[k].count;
	return n;
}

static struct model_slot *
slot_find(struct model_record *r, int64_t number)
{
	for (unsigned k = 0; k < r->nslots; k++)
		if (r->slot[k].number == number)
			return &r->slot[k];
	return NULL;
}

static void
slot_drop(struct model_record *r, struct model_slot *sl)
{
	*sl = r->slot[--r->nslots];
}

/* floor(now / G) + 1: b as a write at now leaves it while a hold is live. */
static i128
base_of(const struct model *m, int64_t now)
{
	return fdiv(now, m->hold_grain) + 1;
}

bool
model_holds_due(const struct model *m, const struct model_record *r)
{
	return r->nslots > 0 && base_of(m, m->now) > r->hold_base;
}

uint64_t
model_units_due(const struct model *m)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < MODEL_RECORDS_MAX; i++) {
		const struct model_record *r = &m->rec[i];

		if (!r->live || !model_holds_due(m, r))
			continue;
		for (unsigned k = 0; k < r->nslots; k++)
			for (unsigned c = 0; c < r->ncounters; c++)
				if (base_of(m, m->now) > r->slot[k].number &&
				    __builtin_add_overflow(
					    sum, (uint64_t)r->slot[k].sum[c],
					    &sum))
					return UINT64_MAX;
	}
	return sum;
}

/*
 * The first thing every write does to holds: while a hold is live, b moves
 * up to floor(now / G) + 1 and the slots below it (dead: now >= j * G)
 * leave, reported to p (may be NULL). While none is live b stays. Returns
 * whether w changed (b moved: a write installs even if no slot died).
 */
static bool
holds_catch_up(const struct model *m, struct model_record *w, struct pending *p)
{
	i128 nb;
	unsigned k = 0;

	if (w->nslots == 0)
		return false;
	nb = base_of(m, m->now);
	if (nb <= w->hold_base)
		return false;
	w->hold_base = nb > INT64_MAX ? INT64_MAX : (int64_t)nb;
	while (k < w->nslots) {
		struct model_slot *sl = &w->slot[k];
		int64_t end;

		if ((i128)sl->number >= nb) {
			k++;
			continue;
		}
		/* Placement keeps every slot's end a time. */
		end = (int64_t)((i128)sl->number * m->hold_grain);
		if (p != NULL) {
			if (!p->expired || end > p->exp_slot_end)
				p->exp_slot_end = end;
			p->expired = true;
			p->exp_holds += sl->count;
			for (unsigned c = 0; c < w->ncounters; c++)
				p->exp_amount[c] += sl->sum[c];
		}
		slot_drop(w, sl);
	}
	return true;
}

/*
 * Places a hold of amount[] with deadline now + ttl into w (caught up):
 * slot max(ceil(d / G), b), b = max(b, floor(now / G) + 1). TALLY_OK
 * (*slot set) or TALLY_EOVERFLOW (w unchanged): the deadline is past int64
 * time, or the slot ends too late (every slot's end, and the ends of the
 * 4 slots after it, must be times below INT64_MAX: j <= (INT64_MAX - 1) /
 * G - 4), or a counter's held sum would pass its cap (INT64_MAX; a
 * sliding counter's 2^62 - 1).
 */
static int
holds_place(const struct model *m, struct model_record *w, int64_t ttl,
	    const int64_t amount[2], int64_t *slot)
{
	i128 g = m->hold_grain, d = (i128)m->now + ttl, b, s;
	struct model_slot *sl;

	if (d > INT64_MAX)
		return TALLY_EOVERFLOW;
	b = base_of(m, m->now);
	if (b < w->hold_base)
		b = w->hold_base;
	s = -fdiv(-d, g); /* ceil(d / G) */
	if (s < b)
		s = b;
	if (s > fdiv(INT64_MAX - 1, g) - 4)
		return TALLY_EOVERFLOW;
	for (unsigned c = 0; c < w->ncounters; c++)
		if ((i128)model_held(w, c) + amount[c] > counter_cap(&w->c[c]))
			return TALLY_EOVERFLOW;
	if ((sl = slot_find(w, (int64_t)s)) == NULL) {
		if (w->nslots == MODEL_SLOTS_MAX)
			model_fail(
				"more hold slots live than the scheme allows");
		sl = &w->slot[w->nslots++];
		memset(sl, 0, sizeof *sl);
		sl->number = (int64_t)s;
	}
	if (sl->count == UINT32_MAX)
		model_fail("hold count overflow");
	sl->count++;
	for (unsigned c = 0; c < w->ncounters; c++)
		sl->sum[c] += amount[c];
	w->hold_base = (int64_t)b;
	*slot = (int64_t)s;
	return TALLY_OK;
}

/*
 * Takes a hold of slot `slot` that still holds held[] out of w (caught
 * up). Returns 0 if its slot died (below b: LATE, nothing taken),
 * TALLY_ESETTLED if the slot is live but counts no hold or holds less than
 * held[] (a settled copy: nothing taken), else 1: held[] (a partial
 * charge: at most actual[] per counter) left the slot, moved[] says how
 * much, and a settle (not a partial charge) uncounts the hold.
 */
static int
holds_take(struct model_record *w, int64_t slot, const int64_t held[2],
	   const int64_t actual[2], bool partial, int64_t moved[2])
{
	struct model_slot *sl;

	moved[0] = moved[1] = 0;
	if (slot < w->hold_base)
		return 0;
	if ((sl = slot_find(w, slot)) == NULL || sl->count == 0)
		return TALLY_ESETTLED;
	for (unsigned c = 0; c < w->ncounters; c++)
		if (sl->sum[c] < held[c])
			return TALLY_ESETTLED;
	for (unsigned c = 0; c < w->ncounters; c++) {
		moved[c] = partial && actual[c] < held[c] ? actual[c] : held[c];
		sl->sum[c] -= moved[c];
	}
	if (!partial)
		sl->count--;
	/* A slot that counts no hold holds nothing (hold.c): what a settled
	 * copy of a handle left there goes with it, so held cannot leak. */
	if (sl->count == 0)
		slot_drop(w, sl);
	return 1;
}

/* What every write does first: drop the dead hold slots and roll every
 * due window (notes in p, which may be NULL). Returns whether w changed. */
static bool
catch_up(const struct model *m, struct model_record *w, struct pending *p)
{
	bool changed = holds_catch_up(m, w, p);

	return roll_due(w, m->now, p) != 0 || changed;
}

/* A tally_stats counter: modulo 2^64, like any counter. */
static void
stat_add(uint64_t *counter, uint64_t v)
{
	(void)__builtin_add_overflow(*counter, v, counter);
}

/* Installs the working copy w into *r as the next version and logs the
 * pending rolls with that version. (A version past UINT64_MAX, an
 * EOVERFLOW in the library, is not modeled: no run gets there; test_api
 * covers that boundary through the library's test hook.) */
static void
install(struct model *m, struct model_record *r, const struct model_record *w,
	const struct pending *p, tally_roll_cause cause)
{
	*r = *w;
	r->version += 1;
	if (p->expired) {
		struct model_expiry *ev;

		if (m->nexpiries >= MODEL_EXPIRIES_MAX)
			model_fail("expiry log full");
		ev = &m->expiries[m->nexpiries++];
		memset(ev, 0, sizeof *ev);
		memcpy(ev->key, r->key, r->key_len + 1);
		ev->key_len = r->key_len;
		ev->kind = r->kind;
		ev->holds = p->exp_holds;
		ev->amount[0] = p->exp_amount[0];
		ev->amount[1] = p->exp_amount[1];
		ev->slot_end = p->exp_slot_end;
		ev->version = r->version;
		ev->incarnation = r->incarnation;
		stat_add(&m->stats.expired_holds, p->exp_holds);
		stat_add(&m->stats.expired_units, (uint64_t)p->exp_amount[0]);
		stat_add(&m->stats.expired_units, (uint64_t)p->exp_amount[1]);
	}
	for (unsigned i = 0; i < p->n; i++) {
		struct model_roll *ev;

		if (m->nrolls >= MODEL_ROLLS_MAX)
			model_fail("roll log full");
		ev = &m->rolls[m->nrolls++];
		memset(ev, 0, sizeof *ev);
		memcpy(ev->key, r->key, r->key_len + 1);
		ev->key_len = r->key_len;
		ev->kind = r->kind;
		ev->counter = p->note[i].counter;
		ev->cause = cause;
		ev->usage_before = p->note[i].usage_before;
		ev->old_window_start = p->note[i].old_start;
		ev->new_window_start = p->note[i].new_start;
		ev->version = r->version;
		ev->incarnation = r->incarnation;
		m->rolls_total++;
	}
}

/* A new record at now: the anchor defaults to now, each window is the
 * window of now. Its incarnation is the next count of creations, its
 * first version the store's version floor. */
static int
create(struct model *m, tally_kind kind, const char *key, size_t key_len,
       struct model_record **out)
{
	for (size_t i = 0; i < MODEL_RECORDS_MAX; i++) {
		struct model_record *r = &m->rec[i];

		if (r->live)
			continue;
		memset(r, 0, sizeof *r);
		r->live = true;
		r->kind = kind;
		r->key_len = key_len;
		memcpy(r->key, key, key_len);
		r->key[key_len] = '\0';
		m->creations++;
		r->incarnation = m->creations;
		r->version = m->version_floor;
		r->anchor = m->now;
		r->hold_base = INT64_MIN;
		*out = r;
		return TALLY_OK;
	}
	return TALLY_ENOMEM;
}

/* Shared config fields; the anchor changes only when given explicitly. */
static void
set_common(struct model_record *r, int64_t anchor, int32_t offset, bool aligned)
{
	if (anchor != TALLY_ANCHOR_DEFAULT)
		r->anchor = anchor;
	r->utc_offset_minutes = offset;
	r->calendar_aligned = aligned;
}

/* After a creation: every counter starts empty in the window of now. */
static void
start_windows(struct model_record *r, int64_t now)
{
	for (unsigned i = 0; i < r->ncounters; i++) {
		int64_t s, e;

		counter_window(r, &r->c[i], now, &s, &e);
		r->c[i].usage = 0;
		r->c[i].prev = 0;
		r->c[i].window_start = s;
	}
}

static bool
offset_ok(int32_t off)
{
	return off >= -TALLY_UTC_OFFSET_MAX && off <= TALLY_UTC_OFFSET_MAX;
}

/* ------------------------------------------------------------------------ */
/* Views                                                                    */
/* ------------------------------------------------------------------------ */

/* A view (or config) whose size names no released layout: smaller than
 * the first (a budget config has one layout, a rate-limit config two:
 * 0.4 appended the algorithms; the views gained the hold fields in 0.3,
 * and a 0.2 view is still accepted; the rate-limit view grew in 0.4). */
static bool
bad_size(const void *s, size_t size)
{
	size_t v;

	if (s == NULL)
		return false;
	memcpy(&v, s, sizeof v);
	return v < size;
}

#define BAD_BVIEW(v) bad_size((v), offsetof(tally_budget_view, held))
#define BAD_RVIEW(v) bad_size((v), MODEL_RL_VIEW_V1)

/* A removed record's versions stay below every later record's. */
static void
retire_versions(struct model *m, const struct model_record *r)
{
	if (r->version >= m->version_floor)
		m->version_floor =
			r->version == UINT64_MAX ? r->version : r->version + 1;
}

/* Copies a full view into the caller's, of its own size: a view of an
 * older layout receives only the fields it has; the size stays. */
static void
view_copy(void *dst, const void *full, size_t full_size)
{
	size_t size;

	memcpy(&size, dst, sizeof size);
	if (size > full_size)
		size = full_size;
	memcpy((char *)dst + sizeof size, (const char *)full + sizeof size,
	       size - sizeof size);
}

static void
budget_view(const struct model_record *r, tally_budget_view *out)
{
	tally_budget_view full, *v = &full;

	if (out == NULL)
		return;
	memset(v, 0, sizeof *v);
	v->config.size = sizeof v->config;
	v->config.max_limit = r->c[0].max;
	v->config.period = r->c[0].period;
	v->config.anchor = r->anchor;
	v->config.utc_offset_minutes = r->utc_offset_minutes;
	v->config.calendar_aligned = r->calendar_aligned;
	v->usage = r->c[0].usage;
	v->window_start = r->c[0].window_start;
	v->window_end = counter_end(r, &r->c[0]);
	v->version = r->version;
	v->incarnation = r->incarnation;
	v->held = model_held(r, 0);
	v->holds = model_holds(r);
	view_copy(out, v, sizeof *v);
}

/* A rate-limit view of the current layout, or of the 0.3 one (0.2: its
 * prefix) when the caller's is smaller: the same fields where that header
 * put them, the config without the algorithms, no *_previous. */
static void
rl_view_out(tally_ratelimit_view *out, const tally_ratelimit_view *v)
{
	struct model_rl_view_03 o;
	size_t size;

	memcpy(&size, out, sizeof size);
	if (size >= sizeof *v) {
		view_copy(out, v, sizeof *v);
		return;
	}
	memset(&o, 0, sizeof o);
	o.config.size = sizeof o.config;
	o.config.tokens = v->config.tokens;
	o.config.requests = v->config.requests;
	o.config.anchor = v->config.anchor;
	o.config.utc_offset_minutes = v->config.utc_offset_minutes;
	o.config.calendar_aligned = v->config.calendar_aligned;
	o.tokens = v->tokens;
	o.requests = v->requests;
	o.version = v->version;
	o.incarnation = v->incarnation;
	o.tokens_held = v->tokens_held;
	o.requests_held = v->requests_held;
	o.holds = v->holds;
	view_copy(out, &o, sizeof o);
}

static void
rl_view(const struct model_record *r, tally_ratelimit_view *out)
{
	tally_ratelimit_view full, *v = &full;
	tally_limit *lim[2];
	tally_counter_view *cv[2];

	if (out == NULL)
		return;
	memset(v, 0, sizeof *v);
	v->config.size = sizeof v->config;
	lim[0] = &v->config.tokens;
	lim[1] = &v->config.requests;
	cv[0] = &v->tokens;
	cv[1] = &v->requests;
	for (unsigned i = 0; i < 2; i++) {
		const struct model_counter *c = &r->c[i];

		lim[i]->has_max = c->has_max;
		lim[i]->max = c->has_max ? c->max : 0; /* views show 0 */
		lim[i]->period = c->period;
		cv[i]->usage = c->usage;
		cv[i]->window_start = c->window_start;
		cv[i]->window_end = counter_end(r, c);
	}
	v->config.anchor = r->anchor;
	v->config.utc_offset_minutes = r->utc_offset_minutes;
	v->config.calendar_aligned = r->calendar_aligned;
	v->config.tokens_algorithm = r->c[0].algorithm;
	v->config.requests_algorithm = r->c[1].algorithm;
	v->version = r->version;
	v->incarnation = r->incarnation;
	v->tokens_held = model_held(r, 0);
	v->requests_held = model_held(r, 1);
	v->holds = model_holds(r);
	v->tokens_previous = r->c[0].prev;
	v->requests_previous = r->c[1].prev;
	rl_view_out(out, v);
}

/* ------------------------------------------------------------------------ */
/* Budgets                                                                  */
/* ------------------------------------------------------------------------ */

int
model_budget_upsert(struct model *m, const char *key, size_t key_len,
		    const tally_budget_config *cfg, tally_budget_view *view)
{
	struct model_record *r, w;
	struct pending p = {0};
	int rc;

	/* Config before key: NULL, negative max, offset, then period. */
	if (m == NULL || cfg == NULL || bad_size(cfg, sizeof *cfg) ||
	    BAD_BVIEW(view) || cfg->max_limit < 0 ||
	    !offset_ok(cfg->utc_offset_minutes))
		return TALLY_EINVAL;
	if (model_period_validate(&cfg->period, true) != TALLY_OK)
		return TALLY_EPERIOD;
	rc = lookup(m, TALLY_KIND_BUDGET, key, &key_len, &r);
	if (rc < 0 && rc != TALLY_ENOENT)
		return rc;
	if (rc == TALLY_ENOENT) {
		if ((rc = create(m, TALLY_KIND_BUDGET, key, key_len, &r)) !=
		    TALLY_OK)
			return rc;
		r->ncounters = 1;
		r->c[0].has_max = true;
		r->c[0].max = cfg->max_limit;
		r->c[0].period = cfg->period;
		set_common(r, cfg->anchor, cfg->utc_offset_minutes,
			   cfg->calendar_aligned);
		start_windows(r, m->now);
		budget_view(r, view);
		return TALLY_CREATED;
	}
	/* Replace the config; usage, holds and window_start stay; no roll.
	 * A write: dead holds leave (tally.h: "the next CAS on the record
	 * (any write, or a sweep) drops it"). */
	w = *r;
	(void)holds_catch_up(m, &w, &p);
	w.c[0].max = cfg->max_limit;
	w.c[0].period = cfg->period;
	set_common(&w, cfg->anchor, cfg->utc_offset_minutes,
		   cfg->calendar_aligned);
	install(m, r, &w, &p, TALLY_ROLL_INLINE);
	budget_view(r, view);
	return TALLY_OK;
}

int
model_budget_get(struct model *m, const char *key, size_t key_len,
		 tally_budget_view *view)
{
	struct model_record *r;
	int rc;

	if (m == NULL || view == NULL || BAD_BVIEW(view))
		return TALLY_EINVAL;
	if ((rc = lookup(m, TALLY_KIND_BUDGET, key, &key_len, &r)) != TALLY_OK)
		return rc;
	budget_view(r, view); /* as stored: a due window is shown unrolled */
	return TALLY_OK;
}

int
model_budget_bump(struct model *m, const char *key, size_t key_len,
		  int64_t amount, tally_budget_view *view)
{
	struct model_record *r, w;
	struct pending p = {0};
	bool changed;
	int rc;

	if (m == NULL || BAD_BVIEW(view) || amount < 0)
		return TALLY_EINVAL;
	if ((rc = lookup(m, TALLY_KIND_BUDGET, key, &key_len, &r)) != TALLY_OK)
		return rc;
	w = *r;
	changed = catch_up(m, &w, &p);
	if ((i128)w.c[0].usage + amount > INT64_MAX)
		return TALLY_EOVERFLOW; /* nothing changes, not even the roll */
	w.c[0].usage += amount;
	if (changed || amount != 0)
		install(m, r, &w, &p, TALLY_ROLL_INLINE);
	budget_view(r, view);
	return TALLY_OK;
}

int
model_budget_check(struct model *m, const char *key, size_t key_len,
		   tally_budget_view *view)
{
	struct model_record *r, w;
	int rc;

	if (m == NULL || BAD_BVIEW(view))
		return TALLY_EINVAL;
	if ((rc = lookup(m, TALLY_KIND_BUDGET, key, &key_len, &r)) != TALLY_OK)
		return rc;
	/* The effective state: a due window counts as rolled, dead holds as
	 * dropped. Blocks iff used + held >= max. */
	w = *r;
	(void)catch_up(m, &w, NULL);
	budget_view(&w, view);
	return (i128)w.c[0].usage + model_held(&w, 0) >= w.c[0].max
		       ? TALLY_LIMITED
		       : TALLY_OK;
}

int
model_budget_try_consume(struct model *m, const char *key, size_t key_len,
			 int64_t amount, tally_budget_view *view)
{
	struct model_record *r, w;
	struct pending p = {0};
	bool changed;
	int rc;

	if (m == NULL || BAD_BVIEW(view) || amount < 0)
		return TALLY_EINVAL;
	if ((rc = lookup(m, TALLY_KIND_BUDGET, key, &key_len, &r)) != TALLY_OK)
		return rc;
	w = *r;
	changed = catch_up(m, &w, &p);
	/* Takes it only if used + held + amount <= max. */
	if ((i128)w.c[0].usage + model_held(&w, 0) + amount > w.c[0].max) {
		budget_view(&w, view); /* the effective state */
		return TALLY_LIMITED;
	}
	w.c[0].usage += amount;
	if (changed || amount != 0)
		install(m, r, &w, &p, TALLY_ROLL_INLINE);
	budget_view(r, view);
	return TALLY_OK;
}

/* The window an operator reset moves a counter to: the window of now, but
 * never back (the clock may have gone back). */
static int64_t
reset_start(const struct model_record *r, const struct model_counter *c,
	    int64_t now)
{
	int64_t s, e;

	counter_window(r, c, now, &s, &e);
	return s > c->window_start ? s : c->window_start;
}

int
model_budget_reset(struct model *m, const char *key, size_t key_len,
		   uint64_t observed_version, tally_budget_view *view)
{
	struct model_record *r, w;
	struct pending p = {0};
	int64_t s;
	int rc;

	if (m == NULL || BAD_BVIEW(view))
		return TALLY_EINVAL;
	if ((rc = lookup(m, TALLY_KIND_BUDGET, key, &key_len, &r)) != TALLY_OK)
		return rc;
	if (r->version != observed_version) {
		budget_view(r, view);
		return TALLY_CONFLICT;
	}
	w = *r;
	/* A write: dead holds leave first; live ones stay (a reset keeps
	 * held, as a roll does). */
	(void)holds_catch_up(m, &w, &p);
	s = reset_start(&w, &w.c[0], m->now);
	note_roll(&p, &w, 0, s);
	w.c[0].usage = 0;
	w.c[0].window_start = s;
	install(m, r, &w, &p, TALLY_ROLL_RESET);
	budget_view(r, view);
	return TALLY_OK;
}

int
model_budget_remove(struct model *m, const char *key, size_t key_len,
		    tally_budget_view *view)
{
	struct model_record *r;
	int rc;

	if (m == NULL || BAD_BVIEW(view))
		return TALLY_EINVAL;
	if ((rc = lookup(m, TALLY_KIND_BUDGET, key, &key_len, &r)) != TALLY_OK)
		return rc;
	budget_view(r, view); /* the last snapshot, as stored */
	retire_versions(m, r);
	r->live = false;
	return TALLY_OK;
}

/* ------------------------------------------------------------------------ */
/* Rate limits                                                              */
/* ------------------------------------------------------------------------ */

/* One counter's limit and algorithm, in this order: a negative max, an
 * unknown algorithm (EINVAL), the period (EPERIOD); then for SLIDING,
 * windows of one length up to 2^62 ns (a MONTH period or a longer window:
 * EPERIOD) and a max up to 2^62 - 1 (EINVAL). */
static int
limit_check(const tally_limit *lim, uint32_t algorithm)
{
	int rc;

	if (lim->has_max && lim->max < 0)
		return TALLY_EINVAL;
	if (algorithm != TALLY_ALGORITHM_FIXED &&
	    algorithm != TALLY_ALGORITHM_SLIDING)
		return TALLY_EINVAL;
	rc = model_period_validate(&lim->period, false);
	if (rc != TALLY_OK || algorithm == TALLY_ALGORITHM_FIXED)
		return rc;
	if (lim->period.unit == TALLY_PERIOD_MONTH ||
	    period_width(&lim->period) > MODEL_SWIN_WIDTH_MAX)
		return TALLY_EPERIOD;
	if (lim->has_max && lim->max > MODEL_SWIN_AMOUNT_MAX)
		return TALLY_EINVAL;
	return TALLY_OK;
}

/* The limit and algorithm; usage, prev and the window stay. */
static void
set_limit(struct model_counter *c, const tally_limit *lim, uint32_t algorithm)
{
	c->has_max = lim->has_max;
	c->max = lim->has_max ? lim->max : 0;
	c->period = lim->period;
	c->algorithm = algorithm;
}

/* The caller's config in the current layout: one of at least the 0.3
 * layout's size is copied over TALLY_RATELIMIT_CONFIG_INIT up to its size
 * (a 0.3 caller's counters are FIXED); false if smaller. */
static bool
rl_config_in(const tally_ratelimit_config *cfg, tally_ratelimit_config *out)
{
	const tally_ratelimit_config init = TALLY_RATELIMIT_CONFIG_INIT;
	size_t size;

	memcpy(&size, cfg, sizeof size);
	if (size < MODEL_RL_CONFIG_V1)
		return false;
	*out = init;
	memcpy(out, cfg, size < sizeof *out ? size : sizeof *out);
	out->size = sizeof *out;
	return true;
}

/*
 * After an upsert set counter i's new config into w: its window on the new
 * lattice. FIXED: window_start stays (its end is derived), prev is 0.
 * SLIDING: the window becomes the new lattice's window that holds the old
 * window_start, and prev stays only if the counter was SLIDING with the
 * same window length and that window starts where the old one did.
 */
static void
relattice(struct model_record *w, unsigned i, const struct model_counter *was)
{
	struct model_counter *c = &w->c[i];
	int64_t s, e;

	if (!sliding(c)) {
		c->prev = 0;
		return;
	}
	counter_window(w, c, c->window_start, &s, &e);
	if (!sliding(was) ||
	    period_width(&was->period) != period_width(&c->period) ||
	    s != c->window_start)
		c->prev = 0;
	c->window_start = s;
}

int
model_ratelimit_upsert(struct model *m, const char *key, size_t key_len,
		       const tally_ratelimit_config *config,
		       tally_ratelimit_view *view)
{
	tally_ratelimit_config full, *cfg = &full;
	struct model_record *r, w;
	struct pending p = {0};
	int rc;

	/* Config before key: NULL, size, view, offset, then tokens, then
	 * requests. */
	if (m == NULL || config == NULL || !rl_config_in(config, cfg) ||
	    BAD_RVIEW(view) || !offset_ok(cfg->utc_offset_minutes))
		return TALLY_EINVAL;
	if ((rc = limit_check(&cfg->tokens, cfg->tokens_algorithm)) !=
		    TALLY_OK ||
	    (rc = limit_check(&cfg->requests, cfg->requests_algorithm)) !=
		    TALLY_OK)
		return rc;
	rc = lookup(m, TALLY_KIND_RATELIMIT, key, &key_len, &r);
	if (rc < 0 && rc != TALLY_ENOENT)
		return rc;
	if (rc == TALLY_ENOENT) {
		if ((rc = create(m, TALLY_KIND_RATELIMIT, key, key_len, &r)) !=
		    TALLY_OK)
			return rc;
		r->ncounters = 2;
		set_limit(&r->c[0], &cfg->tokens, cfg->tokens_algorithm);
		set_limit(&r->c[1], &cfg->requests, cfg->requests_algorithm);
		set_common(r, cfg->anchor, cfg->utc_offset_minutes,
			   cfg->calendar_aligned);
		start_windows(r, m->now);
		rl_view(r, view);
		return TALLY_CREATED;
	}
	/* Usage and holds stay, no roll; each counter's window moves onto
	 * the new lattice as relattice() says. */
	w = *r;
	(void)holds_catch_up(m, &w, &p);
	set_limit(&w.c[0], &cfg->tokens, cfg->tokens_algorithm);
	set_limit(&w.c[1], &cfg->requests, cfg->requests_algorithm);
	set_common(&w, cfg->anchor, cfg->utc_offset_minutes,
		   cfg->calendar_aligned);
	for (unsigned i = 0; i < 2; i++) {
		relattice(&w, i, &r->c[i]);
		/* A counter that becomes sliding must be in its range. */
		if (sliding(&w.c[i]) &&
		    (w.c[i].usage > MODEL_SWIN_AMOUNT_MAX ||
		     model_held(&w, i) > MODEL_SWIN_AMOUNT_MAX))
			return TALLY_EOVERFLOW;
	}
	install(m, r, &w, &p, TALLY_ROLL_INLINE);
	rl_view(r, view);
	return TALLY_OK;
}

int
model_ratelimit_get(struct model *m, const char *key, size_t key_len,
		    tally_ratelimit_view *view)
{
	struct model_record *r;
	int rc;

	if (m == NULL || view == NULL || BAD_RVIEW(view))
		return TALLY_EINVAL;
	if ((rc = lookup(m, TALLY_KIND_RATELIMIT, key, &key_len, &r)) !=
	    TALLY_OK)
		return rc;
	rl_view(r, view);
	return TALLY_OK;
}

int
model_ratelimit_bump(struct model *m, const char *key, size_t key_len,
		     int64_t tokens, int64_t requests,
		     tally_ratelimit_view *view)
{
	struct model_record *r, w;
	struct pending p = {0};
	bool changed;
	int rc;

	if (m == NULL || BAD_RVIEW(view) || tokens < 0 || requests < 0)
		return TALLY_EINVAL;
	if ((rc = lookup(m, TALLY_KIND_RATELIMIT, key, &key_len, &r)) !=
	    TALLY_OK)
		return rc;
	w = *r;
	changed = catch_up(m, &w, &p);
	if ((i128)w.c[0].usage + tokens > counter_cap(&w.c[0]) ||
	    (i128)w.c[1].usage + requests > counter_cap(&w.c[1]))
		return TALLY_EOVERFLOW; /* neither is added */
	w.c[0].usage += tokens;
	w.c[1].usage += requests;
	if (changed || tokens != 0 || requests != 0)
		install(m, r, &w, &p, TALLY_ROLL_INLINE);
	rl_view(r, view);
	return TALLY_OK;
}

/* Mask of the counters with a max that have no room left at now (FIXED:
 * used + held has reached max; SLIDING: the estimate has). */
static unsigned
blocked(const struct model_record *r, int64_t now)
{
	unsigned mask = 0;

	for (unsigned i = 0; i < 2; i++)
		if (r->c[i].has_max && counter_room(r, i, now) <= 0)
			mask |= rl_counter_id[i];
	return mask;
}

int
model_ratelimit_check(struct model *m, const char *key, size_t key_len,
		      unsigned *limited, tally_ratelimit_view *view)
{
	struct model_record *r, w;
	unsigned mask;
	int rc;

	if (m == NULL || BAD_RVIEW(view))
		return TALLY_EINVAL;
	if ((rc = lookup(m, TALLY_KIND_RATELIMIT, key, &key_len, &r)) !=
	    TALLY_OK)
		return rc;
	w = *r;
	(void)catch_up(m, &w, NULL);
	mask = blocked(&w, m->now);
	if (limited != NULL)
		*limited = mask;
	rl_view(&w, view);
	return mask != 0 ? TALLY_LIMITED : TALLY_OK;
}

int
model_ratelimit_try_consume(struct model *m, const char *key, size_t key_len,
			    int64_t tokens, int64_t requests, unsigned *limited,
			    tally_ratelimit_view *view)
{
	struct model_record *r, w;
	struct pending p = {0};
	const int64_t amount[2] = {tokens, requests};
	unsigned mask = 0;
	bool changed;
	int rc;

	if (m == NULL || BAD_RVIEW(view) || tokens < 0 || requests < 0)
		return TALLY_EINVAL;
	if ((rc = lookup(m, TALLY_KIND_RATELIMIT, key, &key_len, &r)) !=
	    TALLY_OK)
		return rc;
	w = *r;
	changed = catch_up(m, &w, &p);
	for (unsigned i = 0; i < 2; i++)
		if (w.c[i].has_max && amount[i] > counter_room(&w, i, m->now))
			mask |= rl_counter_id[i];
	if (mask != 0) {
		/* Both or neither: nothing taken, nothing changed. */
		if (limited != NULL)
			*limited = mask;
		rl_view(&w, view);
		return TALLY_LIMITED;
	}
	if ((i128)w.c[0].usage + tokens > counter_cap(&w.c[0]) ||
	    (i128)w.c[1].usage + requests > counter_cap(&w.c[1]))
		return TALLY_EOVERFLOW;
	w.c[0].usage += tokens;
	w.c[1].usage += requests;
	if (changed || tokens != 0 || requests != 0)
		install(m, r, &w, &p, TALLY_ROLL_INLINE);
	if (limited != NULL)
		*limited = 0;
	rl_view(r, view);
	return TALLY_OK;
}

int
model_ratelimit_reset(struct model *m, const char *key, size_t key_len,
		      uint64_t observed_version, unsigned counters,
		      unsigned *reset, tally_ratelimit_view *view)
{
	struct model_record *r, w;
	struct pending p = {0};
	unsigned mask = 0;
	int rc;

	/* The mask names at least one counter and nothing unknown. */
	if (m == NULL || BAD_RVIEW(view) ||
	    (counters & TALLY_COUNTER_BOTH) == 0 ||
	    (counters & ~(TALLY_COUNTER_BOTH | TALLY_RESET_DUE_ONLY)) != 0)
		return TALLY_EINVAL;
	if ((rc = lookup(m, TALLY_KIND_RATELIMIT, key, &key_len, &r)) !=
	    TALLY_OK)
		return rc;
	if (r->version != observed_version) {
		if (reset != NULL)
			*reset = 0;
		rl_view(r, view);
		return TALLY_CONFLICT;
	}
	w = *r;
	for (unsigned i = 0; i < 2; i++) {
		struct model_counter *c = &w.c[i];
		int64_t s;

		if ((counters & rl_counter_id[i]) == 0)
			continue;
		if ((counters & TALLY_RESET_DUE_ONLY) != 0 &&
		    !counter_due(&w, c, m->now, &s))
			continue;
		s = reset_start(&w, c, m->now);
		note_roll(&p, &w, i, s);
		c->usage = 0;
		c->prev = 0; /* sliding: nothing carried */
		c->window_start = s;
		mask |= rl_counter_id[i];
	}
	/* A reset that writes drops the dead holds; one that resets nothing
	 * writes nothing. */
	if (mask != 0) {
		(void)holds_catch_up(m, &w, &p);
		install(m, r, &w, &p, TALLY_ROLL_RESET);
	}
	if (reset != NULL)
		*reset = mask;
	rl_view(r, view);
	return TALLY_OK;
}

int
model_ratelimit_remove(struct model *m, const char *key, size_t key_len,
		       tally_ratelimit_view *view)
{
	struct model_record *r;
	int rc;

	if (m == NULL || BAD_RVIEW(view))
		return TALLY_EINVAL;
	if ((rc = lookup(m, TALLY_KIND_RATELIMIT, key, &key_len, &r)) !=
	    TALLY_OK)
		return rc;
	rl_view(r, view);
	retire_versions(m, r);
	r->live = false;
	return TALLY_OK;
}

/* ------------------------------------------------------------------------ */
/* Sweep                                                                    */
/* ------------------------------------------------------------------------ */

int
model_sweep(struct model *m, size_t *rolled)
{
	size_t n = 0;

	if (rolled != NULL)
		*rolled = 0;
	if (m == NULL)
		return TALLY_EINVAL;
	for (size_t i = 0; i < MODEL_RECORDS_MAX; i++) {
		struct model_record *r = &m->rec[i], w;
		struct pending p = {0};

		if (!r->live)
			continue;
		w = *r;
		if (!catch_up(m, &w, &p))
			continue;
		install(m, r, &w, &p, TALLY_ROLL_SWEEP);
		n += p.n;
	}
	if (rolled != NULL)
		*rolled = n;
	return TALLY_OK;
}

/* ------------------------------------------------------------------------ */
/* Admission: reports                                                       */
/* ------------------------------------------------------------------------ */

/* What counter i of w holds at time t: its slots still alive at t. */
static i128
held_at(const struct model *m, const struct model_record *w, unsigned i,
	int64_t t)
{
	i128 sum = 0;

	for (unsigned k = 0; k < w->nslots; k++)
		if ((i128)w->slot[k].number * m->hold_grain > t)
			sum += w->slot[k].sum[i];
	return sum;
}

/*
 * retry_after by brute force: "all else equal", used stays until the
 * window's end and is 0 after it, and each slot holds its sum until it
 * dies. Those are the only times the room changes, so the answer is the
 * first of now and those times at which amount fits (max - used - held),
 * minus now; never if none does (a request over the max, or a window that
 * never rolls with too little left once every hold has died).
 */
static int64_t
retry_after(struct model *m, const struct model_record *w, unsigned i,
	    int64_t amount)
{
	const struct model_counter *c = &w->c[i];
	int64_t end = counter_end(w, c), cand[MODEL_SLOTS_MAX + 2];
	int64_t best = 0;
	unsigned n = 0;
	bool found = false;

	cand[n++] = m->now;
	if (end != INT64_MAX)
		cand[n++] = end;
	for (unsigned k = 0; k < w->nslots; k++)
		cand[n++] = (int64_t)((i128)w->slot[k].number * m->hold_grain);
	for (unsigned k = 0; k < n; k++) {
		int64_t t = cand[k];
		/* An end of INT64_MAX never comes (even at now INT64_MAX). */
		i128 used = end != INT64_MAX && t >= end ? 0 : c->usage;

		if (t < m->now || (found && t >= best))
			continue;
		if ((i128)amount <= (i128)c->max - used - held_at(m, w, i, t)) {
			best = t;
			found = true;
		}
	}
	if (!found)
		return TALLY_RETRY_NEVER;
	/* A wait past int64 (a clock at the far past): saturated, and
	 * counted for harnesses. */
	if ((i128)best - m->now >= INT64_MAX) {
		m->retry_overflows++;
		return INT64_MAX - 1;
	}
	return best - m->now;
}

/*
 * The room of sliding counter i of w at a time t >= now, all else equal:
 * nothing is written, the window rolls at its end (prev = cur, cur = 0)
 * and again at the next window's end (prev = 0), each roll only where the
 * lattice has a window end below INT64_MAX (a window that ends at
 * INT64_MAX never rolls), and each slot holds its sum until it dies.
 */
static i128
sliding_room_at(const struct model *m, const struct model_record *w, unsigned i,
		int64_t end, int64_t next_end, i128 t)
{
	const struct model_counter *c = &w->c[i];
	int64_t start = c->window_start, cur = c->usage, prev = c->prev;

	if (end != INT64_MAX && t >= end) {
		start = end;
		prev = cur;
		cur = 0;
		if (next_end != INT64_MAX && t >= next_end) {
			start = next_end;
			prev = 0;
		}
	}
	return (i128)c->max - cur - held_at(m, w, i, (int64_t)t) -
	       carry_at(period_width(&c->period), prev, start, t);
}

/*
 * retry_after of a sliding counter by search: the room changes only by
 * the carry's shrinking (never growing while time passes within a window)
 * and at a few events: now, the window's end, the next window's end, each
 * slot's death. Between two events the room does not decrease, so the
 * first time a request of amount fits is found by bisecting the first
 * interval whose last ns fits. NEVER if amount > max or nothing fits by
 * INT64_MAX; a wait past INT64_MAX - 1 saturates there (counted).
 */
static int64_t
retry_after_sliding(struct model *m, const struct model_record *w, unsigned i,
		    int64_t amount)
{
	const struct model_counter *c = &w->c[i];
	int64_t end = counter_end(w, c), next_end = INT64_MAX, s;
	i128 ev[MODEL_SLOTS_MAX + 3], best = 0;
	unsigned n = 0;
	bool found = false;

	if (amount > c->max)
		return TALLY_RETRY_NEVER;
	if (end != INT64_MAX)
		counter_window(w, c, end, &s, &next_end);
	ev[n++] = m->now;
	if (end != INT64_MAX && end > m->now)
		ev[n++] = end;
	if (next_end != INT64_MAX && next_end > m->now)
		ev[n++] = next_end;
	for (unsigned k = 0; k < w->nslots; k++) {
		i128 x = (i128)w->slot[k].number * m->hold_grain;

		if (x > m->now && x <= INT64_MAX)
			ev[n++] = x;
	}
	/* In time order (insertion sort: a few events). */
	for (unsigned k = 1; k < n; k++)
		for (unsigned j = k; j > 0 && ev[j - 1] > ev[j]; j--) {
			i128 x = ev[j];

			ev[j] = ev[j - 1];
			ev[j - 1] = x;
		}
	for (unsigned k = 0; k < n && !found; k++) {
		i128 lo = ev[k], hi = INT64_MAX;

		for (unsigned j = k + 1; j < n; j++)
			if (ev[j] > lo) {
				hi = ev[j] - 1;
				break;
			}
		if (k > 0 && ev[k] == ev[k - 1])
			continue;
		if (amount <= sliding_room_at(m, w, i, end, next_end, lo)) {
			best = lo;
			found = true;
			break;
		}
		if (amount > sliding_room_at(m, w, i, end, next_end, hi))
			continue;
		/* lo fails, hi fits. */
		while (hi - lo > 1) {
			i128 mid = lo + (hi - lo) / 2;

			if (amount <=
			    sliding_room_at(m, w, i, end, next_end, mid))
				hi = mid;
			else
				lo = mid;
		}
		best = hi;
		found = true;
	}
	if (!found)
		return TALLY_RETRY_NEVER;
	if (best - m->now >= INT64_MAX) {
		m->retry_overflows++;
		return INT64_MAX - 1;
	}
	return (int64_t)(best - m->now);
}

/* A report of every counter of w for a request of amount[], with no
 * DENIED or call-specific flags yet. */
static void
report_limit(struct model *m, const struct model_record *w,
	     const int64_t amount[2], tally_limit_report *rep)
{
	memset(rep, 0, sizeof *rep);
	rep->kind = w->kind;
	rep->version = w->version;
	rep->incarnation = w->incarnation;
	for (unsigned i = 0; i < w->ncounters; i++) {
		const struct model_counter *c = &w->c[i];
		tally_counter_report *cr = &rep->c[i];
		i128 room;

		cr->counter = counter_id(w, i);
		cr->used = c->usage;
		cr->held = model_held(w, i);
		cr->window_start = c->window_start;
		cr->window_end = counter_end(w, c);
		if (sliding(c)) {
			/* used: the estimate, rounded up (with or without a
			 * max). */
			cr->flags = TALLY_DECISION_SLIDING;
			cr->used = clamp64((i128)c->usage +
					   carry_at(period_width(&c->period),
						    c->prev, c->window_start,
						    m->now));
		}
		if (!c->has_max) {
			cr->flags |= TALLY_DECISION_UNLIMITED;
			cr->remaining = INT64_MAX;
			continue;
		}
		cr->max = c->max;
		room = counter_room(w, i, m->now);
		cr->remaining = room > 0 ? (int64_t)room : 0;
		if (cr->remaining == 0)
			cr->flags |= TALLY_DECISION_REACHED;
		if (amount[i] > c->max)
			cr->flags |= TALLY_DECISION_TOO_BIG;
		cr->retry_after =
			sliding(c) ? retry_after_sliding(m, w, i, amount[i])
				   : retry_after(m, w, i, amount[i]);
	}
	rep->flags = rep->c[0].flags | rep->c[1].flags;
}

/* Adds flag to counter i of a report (and to the limit's union). */
static void
report_flag(tally_limit_report *rep, unsigned i, uint32_t flag)
{
	rep->c[i].flags |= flag;
	rep->flags |= flag;
}

static void
report_union(tally_limit_report *rep)
{
	rep->flags = rep->c[0].flags | rep->c[1].flags;
}

static void
decision_begin(const struct model *m, tally_decision *d, unsigned n)
{
	d->now = m->now;
	d->refused = -1;
	d->n = n;
	d->mask = 0;
	d->flags = 0;
	memset(d->limit, 0, sizeof d->limit);
}

static void
decision_union(tally_decision *d)
{
	d->flags = 0;
	for (unsigned i = 0; i < d->n; i++)
		d->flags |= d->limit[i].flags;
}

/* ------------------------------------------------------------------------ */
/* Admission: tally_admit                                                   */
/* ------------------------------------------------------------------------ */

/* A charge or a cost as its kind's amounts (budget [0]; rate limit [0]
 * tokens, [1] requests): EINVAL for a bad kind, a negative amount or one
 * the kind does not use. */
static int
amounts_of(uint32_t kind, int64_t amount, int64_t tokens, int64_t requests,
	   int64_t out[2])
{
	if (kind == TALLY_KIND_BUDGET) {
		if (amount < 0 || tokens != 0 || requests != 0)
			return TALLY_EINVAL;
		out[0] = amount;
		out[1] = 0;
		return TALLY_OK;
	}
	if (kind == TALLY_KIND_RATELIMIT) {
		if (amount != 0 || tokens < 0 || requests < 0)
			return TALLY_EINVAL;
		out[0] = tokens;
		out[1] = requests;
		return TALLY_OK;
	}
	return TALLY_EINVAL;
}

struct charge {
	tally_kind kind;
	const char *key;
	size_t key_len;
	int64_t amount[2];
	bool shadow;
	struct model_record *r; /* NULL: missing */
	struct model_record w;  /* the working copy */
	struct pending p[2];    /* the hold's write, the settle's (CONSUME) */
	int64_t slot;
};

/* The counters of w that amount[] does not fit at now (amount > room,
 * counters with a max), as bits 0 and 1. */
static unsigned
no_room(const struct model_record *w, const int64_t amount[2], int64_t now)
{
	unsigned mask = 0;

	for (unsigned i = 0; i < w->ncounters; i++)
		if (w->c[i].has_max && amount[i] > counter_room(w, i, now))
			mask |= 1u << i;
	return mask;
}

/* After an error other than ENOENT: tally.h, "after another error it
 * is left as it was (bad arguments) or has n == 0" (EOVERFLOW, in the hold
 * pass; refused -1, mask and flags 0 with it). */
static int
admit_overflow(tally_decision *d, int rc)
{
	d->n = 0;
	d->refused = -1;
	d->mask = 0;
	d->flags = 0;
	return rc;
}

int
model_admit(struct model *m, const tally_charge *charges, size_t n,
	    uint32_t mode, int64_t ttl, struct model_hold *hold,
	    tally_decision *decision)
{
	static struct charge ch[TALLY_ADMIT_MAX]; /* big: not on the stack */
	tally_decision local;
	tally_decision *d = decision != NULL ? decision : &local;
	bool writes = mode != TALLY_ADMIT_PEEK, missing = false,
	     too_big = false;
	unsigned refusing = 0;
	int rc;

	/* The store, the structs, the call's arguments, the charges, the
	 * keys, then duplicates: the decision stays as it was. */
	if (m == NULL || charges == NULL || n == 0 || n > TALLY_ADMIT_MAX)
		return TALLY_EINVAL;
	if (decision != NULL && decision->size < sizeof *decision)
		return TALLY_EINVAL;
	if (mode == TALLY_ADMIT_HOLD) {
		if (hold == NULL || hold->size < sizeof(tally_hold) ||
		    ttl <= 0 || ttl > m->hold_ttl_max)
			return TALLY_EINVAL;
	} else if (mode == TALLY_ADMIT_CONSUME || mode == TALLY_ADMIT_PEEK) {
		if (hold != NULL || ttl != 0)
			return TALLY_EINVAL;
	} else {
		return TALLY_EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		const tally_charge *c = &charges[i];

		memset(&ch[i], 0, sizeof ch[i]);
		if ((c->flags & ~TALLY_CHARGE_SHADOW) != 0)
			return TALLY_EINVAL;
		if ((rc = amounts_of(c->kind, c->amount, c->tokens, c->requests,
				     ch[i].amount)) != TALLY_OK)
			return rc;
		ch[i].kind = (tally_kind)c->kind;
		ch[i].shadow = (c->flags & TALLY_CHARGE_SHADOW) != 0;
	}
	for (size_t i = 0; i < n; i++) {
		ch[i].key = charges[i].key;
		ch[i].key_len = charges[i].key_len;
		if ((rc = key_check(ch[i].key, &ch[i].key_len)) != TALLY_OK)
			return rc;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < i; j++)
			if (ch[i].kind == ch[j].kind &&
			    ch[i].key_len == ch[j].key_len &&
			    memcmp(ch[i].key, ch[j].key, ch[i].key_len) == 0)
				return TALLY_EINVAL;

	/* Every limit as it stands now (due windows rolled, dead holds
	 * dropped), without writing: the refusals, the reports. */
	decision_begin(m, d, (unsigned)n);
	for (size_t i = 0; i < n; i++) {
		struct charge *c = &ch[i];
		tally_limit_report *rep = &d->limit[i];
		unsigned deny;

		c->r = find(m, c->kind, c->key, c->key_len);
		if (c->r == NULL) {
			rep->flags = TALLY_DECISION_GONE;
			if (!missing)
				d->refused = (int32_t)i;
			missing = true;
			continue;
		}
		c->w = *c->r;
		(void)catch_up(m, &c->w, &c->p[0]);
		report_limit(m, &c->w, c->amount, rep);
		deny = no_room(&c->w, c->amount, m->now);
		for (unsigned k = 0; k < 2; k++)
			if (deny & (1u << k))
				report_flag(
					rep, k,
					c->shadow
						? TALLY_DECISION_SHADOW_WOULD_DENY
						: TALLY_DECISION_DENIED);
		if (deny != 0 && !c->shadow) {
			d->mask |= 1u << i;
			too_big |= (rep->flags & TALLY_DECISION_TOO_BIG) != 0;
			refusing++;
		}
	}
	if (missing) {
		rc = TALLY_ENOENT;
	} else if (refusing != 0) {
		rc = TALLY_LIMITED;
		for (size_t i = 0; i < n; i++)
			if (d->mask & (1u << i)) {
				d->refused = (int32_t)i;
				break;
			}
	} else {
		rc = TALLY_OK;
	}
	decision_union(d);
	if (rc != TALLY_OK || !writes) {
		if (writes && rc == TALLY_ENOENT)
			m->stats.refused_missing++;
		else if (writes && too_big)
			m->stats.refused_too_big++;
		else if (writes)
			m->stats.refused_limit++;
		return rc;
	}

	/* Hold every estimate, all or nothing: a hold that cannot be placed
	 * (EOVERFLOW) leaves every record as it was. (A mode CONSUME hold
	 * lives inside the call only: its TTL is the store's maximum.) */
	for (size_t i = 0; i < n; i++) {
		rc = holds_place(m, &ch[i].w,
				 mode == TALLY_ADMIT_HOLD ? ttl
							  : m->hold_ttl_max,
				 ch[i].amount, &ch[i].slot);
		if (rc != TALLY_OK)
			return admit_overflow(d, rc);
	}
	for (size_t i = 0; i < n; i++) {
		struct charge *c = &ch[i];
		tally_limit_report *rep = &d->limit[i];
		uint32_t shadow[2] = {rep->c[0].flags, rep->c[1].flags};

		install(m, c->r, &c->w, &c->p[0], TALLY_ROLL_INLINE);
		c->w = *c->r;
		if (mode == TALLY_ADMIT_CONSUME) {
			/* The estimate becomes usage, in the window of now. */
			int64_t moved[2];

			if (holds_take(&c->w, c->slot, c->amount, c->amount,
				       false, moved) != 1)
				model_fail("consume lost its own hold");
			for (unsigned k = 0; k < c->w.ncounters; k++)
				if ((i128)c->w.c[k].usage + c->amount[k] >
				    counter_cap(&c->w.c[k]))
					shadow[k] |= TALLY_DECISION_OVERFLOW;
				else
					c->w.c[k].usage += c->amount[k];
			install(m, c->r, &c->w, &c->p[1], TALLY_ROLL_INLINE);
		}
		/* The report shows the record as the call left it. */
		report_limit(m, c->r, c->amount, rep);
		for (unsigned k = 0; k < 2; k++)
			rep->c[k].flags |=
				shadow[k] & (TALLY_DECISION_SHADOW_WOULD_DENY |
					     TALLY_DECISION_OVERFLOW);
		report_union(rep);
		if (rep->flags & TALLY_DECISION_SHADOW_WOULD_DENY)
			m->stats.shadow_would_deny++;
	}
	decision_union(d);
	m->stats.admitted++;
	if (mode == TALLY_ADMIT_HOLD) {
		m->stats.holds += n;
		hold->state = TALLY_HOLD_LIVE;
		hold->n = (uint32_t)n;
		hold->deadline = m->now + ttl;
		hold->forged = false;
		memset(hold->part, 0, sizeof hold->part);
		for (size_t i = 0; i < n; i++) {
			struct model_hold_part *hp = &hold->part[i];

			hp->kind = ch[i].kind;
			hp->flags = ch[i].shadow ? TALLY_CHARGE_SHADOW : 0;
			memcpy(hp->key, ch[i].key, ch[i].key_len);
			hp->key[ch[i].key_len] = '\0';
			hp->key_len = ch[i].key_len;
			hp->incarnation = ch[i].r->incarnation;
			hp->slot = ch[i].slot;
			hp->amount[0] = ch[i].amount[0];
			hp->amount[1] = ch[i].amount[1];
		}
	}
	return TALLY_OK;
}

/* ------------------------------------------------------------------------ */
/* Admission: settlement                                                    */
/* ------------------------------------------------------------------------ */

enum settle_op {
	SETTLE,
	RELEASE,
	PARTIAL
};

/* The record a part of a hold names, or NULL (removed, or created again:
 * another incarnation). */
static struct model_record *
part_record(const struct model *m, const struct model_hold_part *hp)
{
	struct model_record *r = find((struct model *)(uintptr_t)m, hp->kind,
				      hp->key, hp->key_len);

	return r != NULL && r->incarnation == hp->incarnation ? r : NULL;
}

/* TALLY_OK for a live handle; TALLY_ESETTLED or TALLY_EINVAL. */
static int
hold_check(const struct model_hold *h)
{
	if (h->size < sizeof(tally_hold) || h->n == 0 ||
	    h->n > TALLY_ADMIT_MAX || h->forged)
		return TALLY_EINVAL;
	if (h->state == TALLY_HOLD_SETTLED)
		return TALLY_ESETTLED;
	return h->state == TALLY_HOLD_LIVE ? TALLY_OK : TALLY_EINVAL;
}

static int
settle_common(struct model *m, struct model_hold *h, const tally_cost *actual,
	      size_t n, enum settle_op op, tally_decision *decision)
{
	int64_t cost[TALLY_ADMIT_MAX][2];
	tally_decision local;
	tally_decision *d = decision != NULL ? decision : &local;
	int rc;

	if (m == NULL || h == NULL)
		return TALLY_EINVAL;
	if (decision != NULL && decision->size < sizeof *decision)
		return TALLY_EINVAL;
	if ((rc = hold_check(h)) != TALLY_OK)
		return rc;
	if (n != h->n || (actual == NULL && op != RELEASE))
		return TALLY_EINVAL;
	for (unsigned i = 0; i < h->n; i++) {
		if (actual == NULL) {
			cost[i][0] = cost[i][1] = 0;
			continue;
		}
		if ((rc = amounts_of(h->part[i].kind, actual[i].amount,
				     actual[i].tokens, actual[i].requests,
				     cost[i])) != TALLY_OK)
			return rc;
	}

	decision_begin(m, d, h->n);
	for (unsigned i = 0; i < h->n; i++) {
		struct model_hold_part *hp = &h->part[i];
		struct model_record *r = part_record(m, hp), w;
		tally_limit_report *rep = &d->limit[i];
		struct pending p = {0};
		uint32_t flags[2] = {0, 0};
		int64_t moved[2], over[2] = {0, 0};

		rc = TALLY_ENOENT;
		if (r != NULL) {
			w = *r;
			(void)catch_up(m, &w, &p);
			rc = holds_take(&w, hp->slot, hp->amount, cost[i],
					op == PARTIAL, moved);
		}
		if (r == NULL || rc < 0) {
			/* Removed, or the slot does not hold it (a settled
			 * copy): nothing done there. */
			rep->kind = hp->kind;
			rep->flags = TALLY_DECISION_GONE;
			continue;
		}
		for (unsigned k = 0; k < w.ncounters; k++) {
			/* Late: the whole actual is charged, released
			 * nothing; live: beyond what left held is an
			 * overdraft. Never past the counter's cap
			 * (INT64_MAX; sliding: 2^62 - 1). */
			if (rc == 0)
				flags[k] |= TALLY_DECISION_LATE;
			else if (cost[i][k] > moved[k])
				over[k] = cost[i][k] - moved[k];
			if ((i128)w.c[k].usage + cost[i][k] >
			    counter_cap(&w.c[k])) {
				flags[k] |= TALLY_DECISION_OVERFLOW;
				over[k] = 0;
			} else {
				w.c[k].usage += cost[i][k];
			}
			if (over[k] > 0)
				flags[k] |= TALLY_DECISION_OVERDRAFT;
			stat_add(&m->stats.overdraft_units, (uint64_t)over[k]);
		}
		install(m, r, &w, &p, TALLY_ROLL_INLINE);
		/* Reported for a request of what the hold held. */
		report_limit(m, r, hp->amount, rep);
		for (unsigned k = 0; k < w.ncounters; k++) {
			rep->c[k].flags |= flags[k];
			rep->c[k].overdraft = over[k];
		}
		report_union(rep);
		if (rc == 0)
			m->stats.late_settles++;
		if (op == PARTIAL) {
			hp->amount[0] -= moved[0];
			hp->amount[1] -= moved[1];
		}
	}
	decision_union(d);
	if (op == PARTIAL) {
		m->stats.partials++;
	} else {
		h->state = TALLY_HOLD_SETTLED;
		if (op == RELEASE)
			m->stats.releases++;
		else
			m->stats.settles++;
	}
	return TALLY_OK;
}

int
model_settle(struct model *m, struct model_hold *hold, const tally_cost *actual,
	     size_t n, tally_decision *decision)
{
	if (actual == NULL)
		return TALLY_EINVAL;
	return settle_common(m, hold, actual, n, SETTLE, decision);
}

int
model_release(struct model *m, struct model_hold *hold,
	      tally_decision *decision)
{
	return settle_common(m, hold, NULL, hold != NULL ? hold->n : 0, RELEASE,
			     decision);
}

int
model_settle_partial(struct model *m, struct model_hold *hold,
		     const tally_cost *amount, size_t n,
		     tally_decision *decision)
{
	if (amount == NULL)
		return TALLY_EINVAL;
	return settle_common(m, hold, amount, n, PARTIAL, decision);
}

/*
 * A second settle of a copy of a handle takes its amounts again from a
 * slot that other holds share (the slot holds their sums: "two copies of
 * one handle are two handles to the library"). When that uncounts the
 * slot's last hold while amounts are left in it, those amounts leave
 * `held` with the slot (as in hold.c), and the other holds of the slot
 * find nothing to settle. Harnesses ask this before such a settle (only
 * to skip it under TOL_STRAND, for a library that kept the amounts).
 */
bool
model_settle_strands(const struct model *m, const struct model_hold *h)
{
	if (hold_check(h) != TALLY_OK)
		return false;
	for (unsigned i = 0; i < h->n; i++) {
		const struct model_hold_part *hp = &h->part[i];
		struct model_record *r = part_record(m, hp), w;
		struct model_slot *sl;
		int64_t moved[2];

		if (r == NULL)
			continue;
		w = *r;
		(void)catch_up(m, &w, NULL);
		if (holds_take(&w, hp->slot, hp->amount, hp->amount, false,
			       moved) != 1)
			continue;
		if ((sl = slot_find(&w, hp->slot)) != NULL && sl->count == 0)
			return true;
	}
	return false;
}
