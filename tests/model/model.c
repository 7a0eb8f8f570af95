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

void
model_init(struct model *m, int64_t now)
{
	memset(m, 0, sizeof *m);
	m->now = now;
	m->version_floor = 1;
	calendar_init();
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

/* Rolls waiting for their write to be installed. */
struct pending {
	unsigned n;
	struct {
		unsigned counter;
		int64_t usage_before, old_start, new_start;
	} note[2];
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
		r->c[i].usage = 0;
		r->c[i].window_start = s;
		n++;
	}
	return n;
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
 * the first (the configs have one layout; the views gained the hold
 * fields in 0.3, and a 0.2 view is still accepted). */
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
#define BAD_RVIEW(v) bad_size((v), offsetof(tally_ratelimit_view, tokens_held))

/* A removed record's versions stay below every later record's. */
static void
retire_versions(struct model *m, const struct model_record *r)
{
	if (r->version >= m->version_floor)
		m->version_floor =
			r->version == UINT64_MAX ? r->version : r->version + 1;
}

static void
budget_view(const struct model_record *r, tally_budget_view *v)
{
	if (v == NULL)
		return;
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
}

static void
rl_view(const struct model_record *r, tally_ratelimit_view *v)
{
	tally_limit *lim[2];
	tally_counter_view *cv[2];

	if (v == NULL)
		return;
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
	v->version = r->version;
	v->incarnation = r->incarnation;
}

/* ------------------------------------------------------------------------ */
/* Budgets                                                                  */
/* ------------------------------------------------------------------------ */

int
model_budget_upsert(struct model *m, const char *key, size_t key_len,
		    const tally_budget_config *cfg, tally_budget_view *view)
{
	struct model_record *r, w;
	struct pending none = {0};
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
	/* Replace the config; usage and window_start stay; no roll. */
	w = *r;
	w.c[0].max = cfg->max_limit;
	w.c[0].period = cfg->period;
	set_common(&w, cfg->anchor, cfg->utc_offset_minutes,
		   cfg->calendar_aligned);
	install(m, r, &w, &none, TALLY_ROLL_INLINE);
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
	unsigned rolled;
	int rc;

	if (m == NULL || BAD_BVIEW(view) || amount < 0)
		return TALLY_EINVAL;
	if ((rc = lookup(m, TALLY_KIND_BUDGET, key, &key_len, &r)) != TALLY_OK)
		return rc;
	w = *r;
	rolled = roll_due(&w, m->now, &p);
	if ((i128)w.c[0].usage + amount > INT64_MAX)
		return TALLY_EOVERFLOW; /* nothing changes, not even the roll */
	w.c[0].usage += amount;
	if (rolled != 0 || amount != 0)
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
	/* The effective state: a due window counts as rolled. */
	w = *r;
	roll_due(&w, m->now, NULL);
	budget_view(&w, view);
	return w.c[0].usage >= w.c[0].max ? TALLY_LIMITED : TALLY_OK;
}

int
model_budget_try_consume(struct model *m, const char *key, size_t key_len,
			 int64_t amount, tally_budget_view *view)
{
	struct model_record *r, w;
	struct pending p = {0};
	unsigned rolled;
	int rc;

	if (m == NULL || BAD_BVIEW(view) || amount < 0)
		return TALLY_EINVAL;
	if ((rc = lookup(m, TALLY_KIND_BUDGET, key, &key_len, &r)) != TALLY_OK)
		return rc;
	w = *r;
	rolled = roll_due(&w, m->now, &p);
	if ((i128)w.c[0].usage + amount > w.c[0].max) {
		budget_view(&w, view); /* the effective state */
		return TALLY_LIMITED;
	}
	w.c[0].usage += amount;
	if (rolled != 0 || amount != 0)
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

static int
limit_check(const tally_limit *lim)
{
	if (lim->has_max && lim->max < 0)
		return TALLY_EINVAL;
	return model_period_validate(&lim->period, false);
}

static void
set_limit(struct model_counter *c, const tally_limit *lim)
{
	c->has_max = lim->has_max;
	c->max = lim->has_max ? lim->max : 0;
	c->period = lim->period;
}

int
model_ratelimit_upsert(struct model *m, const char *key, size_t key_len,
		       const tally_ratelimit_config *cfg,
		       tally_ratelimit_view *view)
{
	struct model_record *r, w;
	struct pending none = {0};
	int rc;

	/* Config before key: NULL, offset, then tokens, then requests. */
	if (m == NULL || cfg == NULL || bad_size(cfg, sizeof *cfg) ||
	    BAD_RVIEW(view) || !offset_ok(cfg->utc_offset_minutes))
		return TALLY_EINVAL;
	if ((rc = limit_check(&cfg->tokens)) != TALLY_OK ||
	    (rc = limit_check(&cfg->requests)) != TALLY_OK)
		return rc;
	rc = lookup(m, TALLY_KIND_RATELIMIT, key, &key_len, &r);
	if (rc < 0 && rc != TALLY_ENOENT)
		return rc;
	if (rc == TALLY_ENOENT) {
		if ((rc = create(m, TALLY_KIND_RATELIMIT, key, key_len, &r)) !=
		    TALLY_OK)
			return rc;
		r->ncounters = 2;
		set_limit(&r->c[0], &cfg->tokens);
		set_limit(&r->c[1], &cfg->requests);
		set_common(r, cfg->anchor, cfg->utc_offset_minutes,
			   cfg->calendar_aligned);
		start_windows(r, m->now);
		rl_view(r, view);
		return TALLY_CREATED;
	}
	w = *r;
	set_limit(&w.c[0], &cfg->tokens);
	set_limit(&w.c[1], &cfg->requests);
	set_common(&w, cfg->anchor, cfg->utc_offset_minutes,
		   cfg->calendar_aligned);
	install(m, r, &w, &none, TALLY_ROLL_INLINE);
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
	unsigned rolled;
	int rc;

	if (m == NULL || BAD_RVIEW(view) || tokens < 0 || requests < 0)
		return TALLY_EINVAL;
	if ((rc = lookup(m, TALLY_KIND_RATELIMIT, key, &key_len, &r)) !=
	    TALLY_OK)
		return rc;
	w = *r;
	rolled = roll_due(&w, m->now, &p);
	if ((i128)w.c[0].usage + tokens > INT64_MAX ||
	    (i128)w.c[1].usage + requests > INT64_MAX)
		return TALLY_EOVERFLOW; /* neither is added */
	w.c[0].usage += tokens;
	w.c[1].usage += requests;
	if (rolled != 0 || tokens != 0 || requests != 0)
		install(m, r, &w, &p, TALLY_ROLL_INLINE);
	rl_view(r, view);
	return TALLY_OK;
}

/* Mask of the counters with a max that usage has reached. */
static unsigned
blocked(const struct model_record *r)
{
	unsigned mask = 0;

	for (unsigned i = 0; i < 2; i++)
		if (r->c[i].has_max && r->c[i].usage >= r->c[i].max)
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
	roll_due(&w, m->now, NULL);
	mask = blocked(&w);
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
	unsigned rolled, mask = 0;
	int rc;

	if (m == NULL || BAD_RVIEW(view) || tokens < 0 || requests < 0)
		return TALLY_EINVAL;
	if ((rc = lookup(m, TALLY_KIND_RATELIMIT, key, &key_len, &r)) !=
	    TALLY_OK)
		return rc;
	w = *r;
	rolled = roll_due(&w, m->now, &p);
	for (unsigned i = 0; i < 2; i++)
		if (w.c[i].has_max &&
		    (i128)w.c[i].usage + amount[i] > w.c[i].max)
			mask |= rl_counter_id[i];
	if (mask != 0) {
		/* Both or neither: nothing taken, nothing changed. */
		if (limited != NULL)
			*limited = mask;
		rl_view(&w, view);
		return TALLY_LIMITED;
	}
	if ((i128)w.c[0].usage + tokens > INT64_MAX ||
	    (i128)w.c[1].usage + requests > INT64_MAX)
		return TALLY_EOVERFLOW;
	w.c[0].usage += tokens;
	w.c[1].usage += requests;
	if (rolled != 0 || tokens != 0 || requests != 0)
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
		c->window_start = s;
		mask |= rl_counter_id[i];
	}
	if (mask != 0)
		install(m, r, &w, &p, TALLY_ROLL_RESET);
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
		if (roll_due(&w, m->now, &p) == 0)
			continue;
		install(m, r, &w, &p, TALLY_ROLL_SWEEP);
		n += p.n;
	}
	if (rolled != NULL)
		*rolled = n;
	return TALLY_OK;
}
