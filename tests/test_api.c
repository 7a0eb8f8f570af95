/*
 * Tests of the public API (tally.h) end to end: lifecycle, result codes,
 * budgets and rate limits through a store with a fake clock, the roll
 * listener, sweep, exact conservation through the listener, keys, and bad
 * input for every public function (after which nothing may have changed).
 *
 * Every test that uses a store runs with the counting allocator of
 * support.h; the teardown destroys the store and asserts that every block
 * and every byte was returned.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tally.h"
#include "support.h"

#define MIN_ NS_PER_MIN
#define HOUR_ NS_PER_HOUR

#define T0 T(2024, 1, 15, 12, 10, 30)
#define TALLY_KEY_MAX_TEST 255

/* ------------------------------------------------------------------------ */
/* Roll log (the store's listener and sweep callbacks)                      */
/* ------------------------------------------------------------------------ */

#define ROLL_CAP 4096

struct roll_rec {
	char key[TALLY_KEY_MAX_TEST + 1];
	size_t key_len;
	tally_kind kind;
	unsigned counter;
	tally_roll_cause cause;
	int64_t usage_before;
	int64_t old_start;
	int64_t new_start;
	uint64_t version;
};

struct roll_log {
	size_t n;        /* rolls heard */
	size_t overflow; /* heard beyond ROLL_CAP */
	struct roll_rec r[ROLL_CAP];
};

static void
log_roll(const tally_roll *roll, void *ctx)
{
	struct roll_log *lg = ctx;
	struct roll_rec *rec;

	if (lg->n >= ROLL_CAP) {
		lg->overflow++;
		lg->n++;
		return;
	}
	rec = &lg->r[lg->n++];
	memset(rec, 0, sizeof *rec);
	rec->key_len = roll->key_len;
	if (roll->key_len <= TALLY_KEY_MAX_TEST)
		memcpy(rec->key, roll->key, roll->key_len);
	rec->kind = roll->kind;
	rec->counter = roll->counter;
	rec->cause = roll->cause;
	rec->usage_before = roll->usage_before;
	rec->old_start = roll->old_window_start;
	rec->new_start = roll->new_window_start;
	rec->version = roll->version;
}

static void
assert_roll(const struct roll_rec *r, const char *key, tally_kind kind,
	    unsigned counter, tally_roll_cause cause, int64_t usage_before,
	    int64_t old_start, int64_t new_start)
{
	assert_int_equal(r->key_len, strlen(key));
	assert_memory_equal(r->key, key, r->key_len);
	assert_int_equal(r->kind, kind);
	assert_int_equal(r->counter, counter);
	assert_int_equal(r->cause, cause);
	assert_int_equal(r->usage_before, usage_before);
	assert_int_equal(r->old_start, old_start);
	assert_int_equal(r->new_start, new_start);
}

static void
assert_rec_equal(const struct roll_rec *a, const struct roll_rec *b)
{
	assert_int_equal(a->key_len, b->key_len);
	assert_memory_equal(a->key, b->key, a->key_len);
	assert_int_equal(a->kind, b->kind);
	assert_int_equal(a->counter, b->counter);
	assert_int_equal(a->cause, b->cause);
	assert_int_equal(a->usage_before, b->usage_before);
	assert_int_equal(a->old_start, b->old_start);
	assert_int_equal(a->new_start, b->new_start);
	assert_int_equal(a->version, b->version);
}

/* ------------------------------------------------------------------------ */
/* Fixture                                                                  */
/* ------------------------------------------------------------------------ */

#define SEEN_CAP 4096

struct fx {
	struct fake_clock clock;
	struct test_alloc alloc;
	struct roll_log rolls; /* the store's listener */
	struct roll_log cb;    /* tally_sweep's callback */
	tally_store *s;
	size_t n_seen;
	uint64_t seen[SEEN_CAP][2]; /* every (incarnation, version) seen */
};

static int
fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	tally_store_options o;

	if (f == NULL)
		return -1;
	f->clock.now = T0;
	o = test_options(&f->clock, &f->alloc);
	o.on_roll = log_roll;
	o.on_roll_ctx = &f->rolls;
	if (tally_store_create(&f->s, &o) != TALLY_OK) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int
fx_teardown(void **state)
{
	struct fx *f = *state;

	tally_store_destroy(f->s);
	assert_int_equal(f->alloc.live_blocks, 0);
	assert_int_equal(f->alloc.live_bytes, 0);
	assert_int_equal(f->rolls.overflow, 0);
	free(f);
	return 0;
}

#define FX_TEST(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

/* A snapshot never observed before: its (incarnation, version) pair is
 * new (versions repeat only across records, never within one key's
 * incarnations; see test_incarnations). Remembers it. */
static void
fresh_version(struct fx *f, uint64_t incarnation, uint64_t v)
{
	for (size_t i = 0; i < f->n_seen; i++)
		assert_true(f->seen[i][0] != incarnation || f->seen[i][1] != v);
	assert_true(incarnation != 0);
	assert_true(f->n_seen < SEEN_CAP);
	f->seen[f->n_seen][0] = incarnation;
	f->seen[f->n_seen++][1] = v;
}

static uint64_t
writes_of(struct fx *f)
{
	tally_stats st = TALLY_STATS_INIT;
	assert_int_equal(tally_store_stats(f->s, &st), TALLY_OK);
	return st.writes;
}

/* ------------------------------------------------------------------------ */
/* Config and view helpers                                                  */
/* ------------------------------------------------------------------------ */

static tally_budget_config
bcfg(int64_t max, const char *period, bool aligned)
{
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;

	c.max_limit = max;
	c.period = P(period);
	c.calendar_aligned = aligned;
	return c;
}

static tally_limit
lim(bool has_max, int64_t max, const char *period)
{
	tally_limit l;

	memset(&l, 0, sizeof l);
	l.has_max = has_max;
	l.max = max;
	l.period = P(period);
	return l;
}

static tally_ratelimit_config
rcfg(tally_limit tokens, tally_limit requests, bool aligned)
{
	tally_ratelimit_config c = TALLY_RATELIMIT_CONFIG_INIT;
	memset(&c, 0, sizeof c);
	c.size = sizeof c;
	c.tokens = tokens;
	c.requests = requests;
	c.anchor = TALLY_ANCHOR_DEFAULT;
	c.calendar_aligned = aligned;
	return c;
}

static void
assert_bview_equal(const tally_budget_view *a, const tally_budget_view *b)
{
	assert_int_equal(a->config.max_limit, b->config.max_limit);
	assert_int_equal(a->config.period.count, b->config.period.count);
	assert_int_equal(a->config.period.unit, b->config.period.unit);
	assert_int_equal(a->config.anchor, b->config.anchor);
	assert_int_equal(a->config.utc_offset_minutes,
			 b->config.utc_offset_minutes);
	assert_int_equal(a->config.calendar_aligned,
			 b->config.calendar_aligned);
	assert_int_equal(a->usage, b->usage);
	assert_int_equal(a->window_start, b->window_start);
	assert_int_equal(a->window_end, b->window_end);
	assert_int_equal(a->version, b->version);
}

static void
assert_limit_equal(const tally_limit *a, const tally_limit *b)
{
	assert_int_equal(a->has_max, b->has_max);
	assert_int_equal(a->max, b->max);
	assert_int_equal(a->period.count, b->period.count);
	assert_int_equal(a->period.unit, b->period.unit);
}

static void
assert_cview_equal(const tally_counter_view *a, const tally_counter_view *b)
{
	assert_int_equal(a->usage, b->usage);
	assert_int_equal(a->window_start, b->window_start);
	assert_int_equal(a->window_end, b->window_end);
}

static void
assert_rview_equal(const tally_ratelimit_view *a, const tally_ratelimit_view *b)
{
	assert_limit_equal(&a->config.tokens, &b->config.tokens);
	assert_limit_equal(&a->config.requests, &b->config.requests);
	assert_int_equal(a->config.anchor, b->config.anchor);
	assert_int_equal(a->config.utc_offset_minutes,
			 b->config.utc_offset_minutes);
	assert_int_equal(a->config.calendar_aligned,
			 b->config.calendar_aligned);
	assert_cview_equal(&a->tokens, &b->tokens);
	assert_cview_equal(&a->requests, &b->requests);
	assert_int_equal(a->version, b->version);
}

static tally_budget_view
bget(struct fx *f, const char *key)
{
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	memset(&v, 0x5a, sizeof v);
	v.size = sizeof v;
	v.config.calendar_aligned = false;
	assert_int_equal(tally_budget_get(f->s, key, &v), TALLY_OK);
	return v;
}

static tally_ratelimit_view
rget(struct fx *f, const char *key)
{
	tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
	memset(&v, 0x5a, sizeof v);
	v.size = sizeof v;
	v.config.calendar_aligned = false;
	v.config.tokens.has_max = false;
	v.config.requests.has_max = false;
	assert_int_equal(tally_ratelimit_get(f->s, key, &v), TALLY_OK);
	return v;
}

/* Every call on a missing budget/rate limit key says ENOENT. */
static void
assert_budget_absent(struct fx *f, const char *key)
{
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	assert_int_equal(tally_budget_get(f->s, key, &v), TALLY_ENOENT);
	assert_int_equal(tally_budget_bump(f->s, key, 1, &v), TALLY_ENOENT);
	assert_int_equal(tally_budget_bump(f->s, key, 0, NULL), TALLY_ENOENT);
	assert_int_equal(tally_budget_check(f->s, key, &v), TALLY_ENOENT);
	assert_int_equal(tally_budget_check(f->s, key, NULL), TALLY_ENOENT);
	assert_int_equal(tally_budget_try_consume(f->s, key, 1, &v),
			 TALLY_ENOENT);
	assert_int_equal(tally_budget_reset(f->s, key, 0, &v), TALLY_ENOENT);
	for (size_t i = 0; i < f->n_seen; i++)
		assert_int_equal(
			tally_budget_reset(f->s, key, f->seen[i][1], &v),
			TALLY_ENOENT);
	assert_int_equal(tally_budget_remove(f->s, key, &v), TALLY_ENOENT);
	assert_int_equal(tally_budget_remove(f->s, key, NULL), TALLY_ENOENT);
}

static void
assert_ratelimit_absent(struct fx *f, const char *key)
{
	tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
	unsigned m = 0;

	assert_int_equal(tally_ratelimit_get(f->s, key, &v), TALLY_ENOENT);
	assert_int_equal(tally_ratelimit_bump(f->s, key, 1, 1, &v),
			 TALLY_ENOENT);
	assert_int_equal(tally_ratelimit_check(f->s, key, &m, &v),
			 TALLY_ENOENT);
	assert_int_equal(tally_ratelimit_try_consume(f->s, key, 1, 1, &m, &v),
			 TALLY_ENOENT);
	assert_int_equal(
		tally_ratelimit_reset(f->s, key, 0, TALLY_COUNTER_BOTH, &m, &v),
		TALLY_ENOENT);
	for (size_t i = 0; i < f->n_seen; i++)
		assert_int_equal(tally_ratelimit_reset(f->s, key, f->seen[i][1],
						       TALLY_COUNTER_BOTH, &m,
						       &v),
				 TALLY_ENOENT);
	assert_int_equal(tally_ratelimit_remove(f->s, key, &v), TALLY_ENOENT);
}

/* ------------------------------------------------------------------------ */
/* Lifecycle, codes, version                                                */
/* ------------------------------------------------------------------------ */

static void
test_lifecycle(void **state)
{
	struct fake_clock clock = {T0};
	struct test_alloc alloc = {0};
	tally_store_options o = test_options(&clock, &alloc);
	tally_store *s = NULL, *s2 = NULL;
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	struct {
		tally_store_options o;
		unsigned char pad[64];
	} big;

	(void)state;
	assert_int_equal(tally_store_create(NULL, NULL), TALLY_EINVAL);
	assert_int_equal(tally_store_create(NULL, &o), TALLY_EINVAL);
	assert_int_equal(alloc.calls, 0);

	/* All defaults. */
	assert_int_equal(tally_store_create(&s, NULL), TALLY_OK);
	assert_non_null(s);
	{
		tally_budget_config c = bcfg(5, "none", false);

		assert_int_equal(tally_budget_upsert(s, "k", &c, NULL),
				 TALLY_CREATED);
	}
	assert_int_equal(tally_budget_bump(s, "k", 3, NULL), TALLY_OK);
	assert_int_equal(tally_budget_get(s, "k", &v), TALLY_OK);
	assert_int_equal(v.usage, 3);
	tally_store_destroy(s);
	s = NULL;

	/* With options: every block comes back. */
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	assert_non_null(s);
	assert_true(alloc.live_blocks > 0);
	assert_true(alloc.live_bytes > 0);
	tally_store_destroy(s);
	assert_int_equal(alloc.live_blocks, 0);
	assert_int_equal(alloc.live_bytes, 0);

	/* options->size too small: nothing allocated. */
	alloc.calls = 0;
	o.size = 0;
	assert_int_equal(tally_store_create(&s, &o), TALLY_EINVAL);
	o.size = 1;
	assert_int_equal(tally_store_create(&s, &o), TALLY_EINVAL);
	o.size = offsetof(tally_store_options, hash_seed) + sizeof o.hash_seed -
		 1;
	assert_int_equal(tally_store_create(&s, &o), TALLY_EINVAL);
	o.size = offsetof(tally_store_options, hash_seed);
	assert_int_equal(tally_store_create(&s, &o), TALLY_EINVAL);
	assert_int_equal(alloc.calls, 0);

	/* The first released layout (up to hash_seed) is fine: the fields
	 * after it take their defaults, even if the caller's memory past its
	 * size holds garbage. */
	o.size = offsetof(tally_store_options, hash_seed) + sizeof o.hash_seed;
	memset(&o.coarse_clock, 0xff, sizeof o.coarse_clock);
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	assert_int_equal(tally_budget_upsert(
				 s, "k",
				 &(tally_budget_config)TALLY_BUDGET_CONFIG_INIT,
				 NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_budget_bump(s, "k", 1, NULL), TALLY_OK);
	tally_store_destroy(s);
	o = test_options(&clock, &alloc);
	assert_int_equal(alloc.live_blocks, 0);
	alloc.calls = 0;

	/* A larger struct from a newer caller is fine. */
	memset(&big, 0, sizeof big);
	big.o = test_options(&clock, &alloc);
	big.o.size = sizeof big;
	assert_int_equal(tally_store_create(&s, &big.o), TALLY_OK);
	tally_store_destroy(s);
	assert_int_equal(alloc.live_blocks, 0);

	/* An allocator with only one of malloc/free. */
	o = test_options(&clock, &alloc);
	o.allocator.free = NULL;
	assert_int_equal(tally_store_create(&s, &o), TALLY_EINVAL);
	o = test_options(&clock, &alloc);
	o.allocator.malloc = NULL;
	assert_int_equal(tally_store_create(&s, &o), TALLY_EINVAL);
	assert_int_equal(alloc.live_blocks, 0);

	tally_store_destroy(NULL);

	/* Two stores are independent. */
	o = test_options(&clock, &alloc);
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	assert_int_equal(tally_store_create(&s2, &o), TALLY_OK);
	assert_true(s != s2);
	{
		tally_budget_config c = bcfg(10, "1h", true);

		assert_int_equal(tally_budget_upsert(s, "k", &c, NULL),
				 TALLY_CREATED);
		assert_int_equal(tally_budget_upsert(s2, "k", &c, NULL),
				 TALLY_CREATED);
		assert_int_equal(tally_budget_bump(s, "k", 4, NULL), TALLY_OK);
		assert_int_equal(tally_budget_get(s2, "k", &v), TALLY_OK);
		assert_int_equal(v.usage, 0);
		assert_int_equal(tally_budget_remove(s2, "k", NULL), TALLY_OK);
		assert_int_equal(tally_budget_get(s, "k", &v), TALLY_OK);
		assert_int_equal(v.usage, 4);
	}
	tally_store_destroy(s2);
	tally_store_destroy(s);
	assert_int_equal(alloc.live_blocks, 0);
	assert_int_equal(alloc.live_bytes, 0);
}

static void
test_result_codes(void **state)
{
	static const struct {
		const char *name;
		int value;
		const char *msg;
	} table[] = {
#define ROW(name, value, msg) {#name, value, msg},
		TALLY_RESULT_MAP(ROW)
#undef ROW
	};
	static const int unknown[] = {4,    5,       -1,      -3,   -21,
				      -23,  -1000,   -1004,   1000, 99,
				      -999, INT_MIN, INT_MAX, -76,  -74};
	size_t n = sizeof table / sizeof table[0];

	(void)state;
	assert_int_equal(n, 11);
	for (size_t i = 0; i < n; i++) {
		const char *name = tally_result_name(table[i].value);
		const char *msg = tally_strerror(table[i].value);

		assert_non_null(name);
		assert_string_equal(name, table[i].name);
		assert_non_null(msg);
		assert_string_equal(msg, table[i].msg);
		assert_string_not_equal(msg, "unknown result");
		for (size_t j = 0; j < i; j++) {
			assert_int_not_equal(table[i].value, table[j].value);
			assert_string_not_equal(table[i].name, table[j].name);
		}
		/* Errors are negative, outcomes are not. */
		if (table[i].name[0] == 'E')
			assert_true(table[i].value < 0);
		else
			assert_true(table[i].value >= 0);
	}
	assert_int_equal(TALLY_OK, 0);
	assert_int_equal(TALLY_LIMITED, 1);
	assert_int_equal(TALLY_CONFLICT, 2);
	assert_int_equal(TALLY_CREATED, 3);
	assert_int_equal(TALLY_EINVAL, -22);
	assert_int_equal(TALLY_ENOENT, -2);
	assert_int_equal(TALLY_ENOMEM, -12);
	assert_int_equal(TALLY_EOVERFLOW, -75);
	assert_int_equal(TALLY_EKEY, -1001);
	assert_int_equal(TALLY_EPERIOD, -1002);
	assert_string_equal(tally_result_name(TALLY_LIMITED), "LIMITED");
	assert_string_equal(tally_result_name(TALLY_EINVAL), "EINVAL");

	for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
		assert_null(tally_result_name(unknown[i]));
		assert_non_null(tally_strerror(unknown[i]));
		assert_string_equal(tally_strerror(unknown[i]),
				    "unknown result");
	}
}

static void
test_version(void **state)
{
	char want[32];

	(void)state;
	assert_int_equal(tally_version(), TALLY_VERSION_HEX);
	assert_int_equal(TALLY_VERSION_HEX, (TALLY_VERSION_MAJOR << 16) |
						    (TALLY_VERSION_MINOR << 8) |
						    TALLY_VERSION_PATCH);
	snprintf(want, sizeof want, "%d.%d.%d", TALLY_VERSION_MAJOR,
		 TALLY_VERSION_MINOR, TALLY_VERSION_PATCH);
	assert_non_null(tally_version_string());
	assert_string_equal(tally_version_string(), want);
	assert_ptr_equal(tally_version_string(), tally_version_string());
}

/* ------------------------------------------------------------------------ */
/* Upsert, kinds                                                            */
/* ------------------------------------------------------------------------ */

static void
test_upsert_created_then_ok(void **state)
{
	struct fx *f = *state;
	tally_budget_config c = bcfg(100, "1h", true);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	tally_budget_view w = TALLY_BUDGET_VIEW_INIT;
	assert_int_equal(tally_budget_upsert(f->s, "b", &c, &v), TALLY_CREATED);
	fresh_version(f, v.incarnation, v.version);
	assert_int_equal(v.usage, 0);
	assert_int_equal(v.config.max_limit, 100);
	assert_int_equal(v.config.period.count, HOUR_);
	assert_int_equal(v.config.period.unit, TALLY_PERIOD_FIXED);
	assert_true(v.config.calendar_aligned);
	assert_int_equal(v.config.anchor, T0); /* effective: creation time */
	assert_int_equal(v.config.utc_offset_minutes, 0);
	assert_int_equal(v.window_start, T(2024, 1, 15, 12, 0, 0));
	assert_int_equal(v.window_end, T(2024, 1, 15, 13, 0, 0));
	w = bget(f, "b");
	assert_bview_equal(&w, &v);

	assert_int_equal(tally_budget_bump(f->s, "b", 42, &v), TALLY_OK);
	fresh_version(f, v.incarnation, v.version);

	/* Replace: OK, usage and window_start kept, anchor kept. */
	fake_clock_advance(&f->clock, 10 * MIN_);
	c = bcfg(500, "1d", true);
	c.utc_offset_minutes = 60;
	assert_int_equal(tally_budget_upsert(f->s, "b", &c, &w), TALLY_OK);
	fresh_version(f, w.incarnation, w.version);
	assert_int_equal(w.usage, 42);
	assert_int_equal(w.config.max_limit, 500);
	assert_int_equal(w.config.period.count, 24 * HOUR_);
	assert_int_equal(w.config.utc_offset_minutes, 60);
	assert_int_equal(w.config.anchor, T0);
	assert_int_equal(w.window_start, T(2024, 1, 15, 12, 0, 0));
	assert_int_equal(w.window_end, T(2024, 1, 15, 23, 0, 0));
	v = bget(f, "b");
	assert_bview_equal(&v, &w);

	/* An explicit anchor replaces it; the view may be NULL. */
	c = bcfg(500, "1d", false);
	c.anchor = T(2024, 1, 1, 6, 0, 0);
	assert_int_equal(tally_budget_upsert(f->s, "b", &c, NULL), TALLY_OK);
	v = bget(f, "b");
	fresh_version(f, v.incarnation, v.version);
	assert_int_equal(v.config.anchor, T(2024, 1, 1, 6, 0, 0));
	assert_int_equal(v.usage, 42);
	assert_int_equal(v.window_start, T(2024, 1, 15, 12, 0, 0));
	assert_int_equal(v.window_end, T(2024, 1, 16, 6, 0, 0));
	assert_int_equal(f->rolls.n, 0);

	/* Rate limits: the same. */
	{
		tally_ratelimit_config rc =
			rcfg(lim(true, 10, "1m"), lim(false, 0, "1h"), true);
		tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
		tally_ratelimit_view rw = TALLY_RATELIMIT_VIEW_INIT;
		assert_int_equal(tally_ratelimit_upsert(f->s, "r", &rc, &rv),
				 TALLY_CREATED);
		fresh_version(f, rv.incarnation, rv.version);
		assert_int_equal(rv.tokens.window_start,
				 T(2024, 1, 15, 12, 20, 0));
		assert_int_equal(rv.requests.window_start,
				 T(2024, 1, 15, 12, 0, 0));
		assert_int_equal(tally_ratelimit_bump(f->s, "r", 3, 4, NULL),
				 TALLY_OK);
		rc.tokens.max = 20;
		rc.requests = lim(true, 7, "1d");
		assert_int_equal(tally_ratelimit_upsert(f->s, "r", &rc, &rw),
				 TALLY_OK);
		fresh_version(f, rw.incarnation, rw.version);
		assert_int_equal(rw.tokens.usage, 3);
		assert_int_equal(rw.requests.usage, 4);
		assert_int_equal(rw.config.tokens.max, 20);
		assert_true(rw.config.requests.has_max);
		assert_int_equal(rw.config.requests.max, 7);
		assert_int_equal(rw.requests.window_start,
				 T(2024, 1, 15, 12, 0, 0));
		assert_int_equal(rw.requests.window_end,
				 T(2024, 1, 16, 0, 0, 0));
		assert_int_equal(rw.config.anchor, T0 + 10 * MIN_);
		rv = rget(f, "r");
		assert_rview_equal(&rv, &rw);
	}
}

static void
test_kinds_are_separate(void **state)
{
	struct fx *f = *state;
	tally_budget_config c = bcfg(100, "1h", true);
	tally_ratelimit_config rc =
		rcfg(lim(true, 10, "1m"), lim(true, 10, "1h"), true);
	tally_budget_view bv = TALLY_BUDGET_VIEW_INIT;
	tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
	tally_stats st = TALLY_STATS_INIT;
	assert_int_equal(tally_budget_upsert(f->s, "same", &c, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_ratelimit_upsert(f->s, "same", &rc, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_store_stats(f->s, &st), TALLY_OK);
	assert_int_equal(st.records, 2);
	assert_int_equal(tally_budget_bump(f->s, "same", 7, NULL), TALLY_OK);
	assert_int_equal(tally_ratelimit_bump(f->s, "same", 2, 1, NULL),
			 TALLY_OK);
	bv = bget(f, "same");
	rv = rget(f, "same");
	assert_int_equal(bv.usage, 7);
	assert_int_equal(rv.tokens.usage, 2);
	assert_int_equal(rv.requests.usage, 1);

	/* A rate limit key is not a budget key and vice versa. */
	assert_int_equal(tally_ratelimit_upsert(f->s, "only-rl", &rc, NULL),
			 TALLY_CREATED);
	assert_budget_absent(f, "only-rl");
	assert_int_equal(tally_budget_upsert(f->s, "only-b", &c, NULL),
			 TALLY_CREATED);
	assert_ratelimit_absent(f, "only-b");

	assert_int_equal(tally_budget_remove(f->s, "same", &bv), TALLY_OK);
	assert_int_equal(bv.usage, 7);
	assert_budget_absent(f, "same");
	rv = rget(f, "same");
	assert_int_equal(rv.tokens.usage, 2);
	assert_int_equal(tally_store_stats(f->s, &st), TALLY_OK);
	assert_int_equal(st.records, 3);
}

/* ------------------------------------------------------------------------ */
/* Budget semantics end to end                                              */
/* ------------------------------------------------------------------------ */

static void
test_budget_end_to_end(void **state)
{
	struct fx *f = *state;
	tally_budget_config c = bcfg(100, "1h", true);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	tally_budget_view w = TALLY_BUDGET_VIEW_INIT;
	tally_budget_view last = TALLY_BUDGET_VIEW_INIT;
	uint64_t writes;

	assert_int_equal(tally_budget_upsert(f->s, "b", &c, &v), TALLY_CREATED);
	fresh_version(f, v.incarnation, v.version);

	assert_int_equal(tally_budget_bump(f->s, "b", 30, &v), TALLY_OK);
	fresh_version(f, v.incarnation, v.version);
	assert_int_equal(v.usage, 30);
	assert_int_equal(v.window_start, T(2024, 1, 15, 12, 0, 0));
	assert_int_equal(v.window_end, T(2024, 1, 15, 13, 0, 0));
	w = bget(f, "b");
	assert_bview_equal(&w, &v);

	/* check reads only. */
	writes = writes_of(f);
	assert_int_equal(tally_budget_check(f->s, "b", &w), TALLY_OK);
	assert_bview_equal(&w, &v);
	assert_int_equal(tally_budget_check(f->s, "b", NULL), TALLY_OK);
	assert_int_equal(writes_of(f), writes);

	assert_int_equal(tally_budget_try_consume(f->s, "b", 70, &v), TALLY_OK);
	fresh_version(f, v.incarnation, v.version);
	assert_int_equal(v.usage, 100);

	/* LIMITED: nothing taken, version unchanged. */
	assert_int_equal(tally_budget_try_consume(f->s, "b", 1, &w),
			 TALLY_LIMITED);
	assert_bview_equal(&w, &v);
	w = bget(f, "b");
	assert_bview_equal(&w, &v);
	assert_int_equal(tally_budget_check(f->s, "b", &w), TALLY_LIMITED);
	assert_bview_equal(&w, &v);
	assert_int_equal(tally_budget_try_consume(f->s, "b", 0, &w), TALLY_OK);
	assert_bview_equal(&w, &v);

	/* bump is never refused. */
	assert_int_equal(tally_budget_bump(f->s, "b", 50, &v), TALLY_OK);
	fresh_version(f, v.incarnation, v.version);
	assert_int_equal(v.usage, 150);
	/* A bump of 0 with nothing due writes nothing. */
	writes = writes_of(f);
	assert_int_equal(tally_budget_bump(f->s, "b", 0, &w), TALLY_OK);
	assert_bview_equal(&w, &v);
	assert_int_equal(writes_of(f), writes);
	assert_int_equal(f->rolls.n, 0);

	/* The next hour: get shows the stored state, check the effective
	 * one; neither rolls. */
	fake_clock_set(&f->clock, T(2024, 1, 15, 13, 0, 0));
	w = bget(f, "b");
	assert_bview_equal(&w, &v);
	assert_int_equal(tally_budget_check(f->s, "b", &w), TALLY_OK);
	assert_int_equal(w.usage, 0);
	assert_int_equal(w.window_start, T(2024, 1, 15, 13, 0, 0));
	assert_int_equal(w.window_end, T(2024, 1, 15, 14, 0, 0));
	assert_int_equal(w.version, v.version);
	assert_int_equal(f->rolls.n, 0);
	assert_int_equal(writes_of(f), writes);

	/* LIMITED across a due window: effective state in the view, nothing
	 * stored, no roll. */
	assert_int_equal(tally_budget_try_consume(f->s, "b", 101, &w),
			 TALLY_LIMITED);
	assert_int_equal(w.usage, 0);
	assert_int_equal(w.window_start, T(2024, 1, 15, 13, 0, 0));
	assert_int_equal(w.version, v.version);
	w = bget(f, "b");
	assert_bview_equal(&w, &v);
	assert_int_equal(f->rolls.n, 0);

	/* try_consume rolls inline. */
	assert_int_equal(tally_budget_try_consume(f->s, "b", 10, &v), TALLY_OK);
	fresh_version(f, v.incarnation, v.version);
	assert_int_equal(v.usage, 10);
	assert_int_equal(v.window_start, T(2024, 1, 15, 13, 0, 0));
	assert_int_equal(f->rolls.n, 1);
	assert_roll(&f->rolls.r[0], "b", TALLY_KIND_BUDGET,
		    TALLY_COUNTER_BUDGET, TALLY_ROLL_INLINE, 150,
		    T(2024, 1, 15, 12, 0, 0), T(2024, 1, 15, 13, 0, 0));
	assert_int_equal(f->rolls.r[0].version, v.version);

	/* Reset: stale versions conflict and change nothing. */
	for (size_t i = 0; i + 1 < f->n_seen; i++) {
		assert_int_equal(
			tally_budget_reset(f->s, "b", f->seen[i][1], &w),
			TALLY_CONFLICT);
		assert_bview_equal(&w, &v);
	}
	assert_int_equal(tally_budget_reset(f->s, "b", v.version + 1, NULL),
			 TALLY_CONFLICT);
	w = bget(f, "b");
	assert_bview_equal(&w, &v);
	assert_int_equal(f->rolls.n, 1);

	fake_clock_set(&f->clock, T(2024, 1, 15, 13, 40, 0));
	assert_int_equal(tally_budget_reset(f->s, "b", v.version, &w),
			 TALLY_OK);
	fresh_version(f, w.incarnation, w.version);
	assert_int_equal(w.usage, 0);
	assert_int_equal(w.window_start, T(2024, 1, 15, 13, 0, 0));
	assert_int_equal(w.window_end, T(2024, 1, 15, 14, 0, 0));
	assert_int_equal(f->rolls.n, 2);
	assert_roll(&f->rolls.r[1], "b", TALLY_KIND_BUDGET,
		    TALLY_COUNTER_BUDGET, TALLY_ROLL_RESET, 10,
		    T(2024, 1, 15, 13, 0, 0), T(2024, 1, 15, 13, 0, 0));
	assert_int_equal(f->rolls.r[1].version, w.version);
	/* The version it observed is gone now. */
	assert_int_equal(tally_budget_reset(f->s, "b", v.version, NULL),
			 TALLY_CONFLICT);
	v = w;

	/* A reset two hours later lands on the window of now. */
	fake_clock_set(&f->clock, T(2024, 1, 15, 15, 30, 0));
	assert_int_equal(tally_budget_bump(f->s, "b", 5, &v), TALLY_OK);
	fresh_version(f, v.incarnation, v.version);
	assert_int_equal(f->rolls.n, 3);
	assert_roll(&f->rolls.r[2], "b", TALLY_KIND_BUDGET,
		    TALLY_COUNTER_BUDGET, TALLY_ROLL_INLINE, 0,
		    T(2024, 1, 15, 13, 0, 0), T(2024, 1, 15, 15, 0, 0));
	fake_clock_set(&f->clock, T(2024, 1, 15, 17, 59, 59));
	assert_int_equal(tally_budget_reset(f->s, "b", v.version, &w),
			 TALLY_OK);
	fresh_version(f, w.incarnation, w.version);
	assert_int_equal(w.window_start, T(2024, 1, 15, 17, 0, 0));
	assert_int_equal(w.window_end, T(2024, 1, 15, 18, 0, 0));
	assert_roll(&f->rolls.r[3], "b", TALLY_KIND_BUDGET,
		    TALLY_COUNTER_BUDGET, TALLY_ROLL_RESET, 5,
		    T(2024, 1, 15, 15, 0, 0), T(2024, 1, 15, 17, 0, 0));
	assert_int_equal(tally_budget_bump(f->s, "b", 8, &v), TALLY_OK);
	fresh_version(f, v.incarnation, v.version);

	/* The clock goes back: nothing rolls, nothing moves back. */
	fake_clock_set(&f->clock, T(2024, 1, 15, 12, 0, 0));
	assert_int_equal(tally_budget_bump(f->s, "b", 1, &v), TALLY_OK);
	fresh_version(f, v.incarnation, v.version);
	assert_int_equal(v.usage, 9);
	assert_int_equal(v.window_start, T(2024, 1, 15, 17, 0, 0));
	assert_int_equal(f->rolls.n, 4);

	/* Remove: the last view, then ENOENT for everything. */
	assert_int_equal(tally_budget_remove(f->s, "b", &last), TALLY_OK);
	assert_bview_equal(&last, &v);
	assert_budget_absent(f, "b");
	assert_int_equal(f->rolls.n, 4);

	/* Re-create: usage 0 and a version never seen. */
	assert_int_equal(tally_budget_upsert(f->s, "b", &c, &w), TALLY_CREATED);
	fresh_version(f, w.incarnation, w.version);
	assert_int_equal(w.usage, 0);
	assert_int_equal(w.config.anchor, T(2024, 1, 15, 12, 0, 0));
	/* Stale versions of the old record do not reset the new one. */
	for (size_t i = 0; i + 1 < f->n_seen; i++)
		assert_int_equal(
			tally_budget_reset(f->s, "b", f->seen[i][1], NULL),
			TALLY_CONFLICT);
	v = bget(f, "b");
	assert_bview_equal(&v, &w);
}

static void
test_budget_no_period(void **state)
{
	struct fx *f = *state;
	tally_budget_config c = bcfg(1000, "none", false);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	assert_int_equal(tally_budget_upsert(f->s, "prepaid", &c, &v),
			 TALLY_CREATED);
	assert_int_equal(v.window_start, T0);
	assert_int_equal(v.window_end, INT64_MAX);
	assert_int_equal(v.config.period.unit, TALLY_PERIOD_NONE);
	assert_int_equal(tally_budget_bump(f->s, "prepaid", 600, NULL),
			 TALLY_OK);
	fake_clock_set(&f->clock, T(2100, 1, 1, 0, 0, 0));
	assert_int_equal(tally_budget_try_consume(f->s, "prepaid", 401, &v),
			 TALLY_LIMITED);
	assert_int_equal(v.usage, 600);
	assert_int_equal(tally_budget_try_consume(f->s, "prepaid", 400, &v),
			 TALLY_OK);
	assert_int_equal(v.usage, 1000);
	assert_int_equal(tally_budget_check(f->s, "prepaid", &v),
			 TALLY_LIMITED);
	assert_int_equal(tally_sweep(f->s, NULL, NULL, NULL), TALLY_OK);
	assert_int_equal(f->rolls.n, 0);
	v = bget(f, "prepaid");
	assert_int_equal(v.usage, 1000);
	assert_int_equal(v.window_start, T0);
}

/* ------------------------------------------------------------------------ */
/* Rate-limit semantics end to end                                          */
/* ------------------------------------------------------------------------ */

static void
test_ratelimit_end_to_end(void **state)
{
	struct fx *f = *state;
	tally_ratelimit_config c =
		rcfg(lim(true, 100, "1m"), lim(true, 3, "1h"), true);
	tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
	tally_ratelimit_view w = TALLY_RATELIMIT_VIEW_INIT;
	tally_ratelimit_view last = TALLY_RATELIMIT_VIEW_INIT;
	unsigned m;
	uint64_t writes;

	assert_int_equal(tally_ratelimit_upsert(f->s, "r", &c, &v),
			 TALLY_CREATED);
	fresh_version(f, v.incarnation, v.version);
	assert_int_equal(v.tokens.window_start, T(2024, 1, 15, 12, 10, 0));
	assert_int_equal(v.tokens.window_end, T(2024, 1, 15, 12, 11, 0));
	assert_int_equal(v.requests.window_start, T(2024, 1, 15, 12, 0, 0));
	assert_int_equal(v.requests.window_end, T(2024, 1, 15, 13, 0, 0));
	assert_int_equal(v.config.anchor, T0);
	assert_true(v.config.tokens.has_max);
	assert_int_equal(v.config.tokens.max, 100);
	assert_int_equal(v.config.requests.max, 3);

	assert_int_equal(tally_ratelimit_bump(f->s, "r", 40, 1, &v), TALLY_OK);
	fresh_version(f, v.incarnation, v.version);
	assert_int_equal(v.tokens.usage, 40);
	assert_int_equal(v.requests.usage, 1);

	writes = writes_of(f);
	m = 0xdead;
	assert_int_equal(tally_ratelimit_check(f->s, "r", &m, &w), TALLY_OK);
	assert_int_equal(m, 0);
	assert_rview_equal(&w, &v);
	assert_int_equal(tally_ratelimit_check(f->s, "r", NULL, NULL),
			 TALLY_OK);
	assert_int_equal(writes_of(f), writes);

	m = 0xdead;
	assert_int_equal(tally_ratelimit_try_consume(f->s, "r", 60, 1, &m, &v),
			 TALLY_OK);
	fresh_version(f, v.incarnation, v.version);
	assert_int_equal(m, 0);
	assert_int_equal(v.tokens.usage, 100);
	assert_int_equal(v.requests.usage, 2);

	m = 0xdead;
	assert_int_equal(tally_ratelimit_check(f->s, "r", &m, &w),
			 TALLY_LIMITED);
	assert_int_equal(m, TALLY_COUNTER_TOKENS);

	/* All or nothing. */
	m = 0xdead;
	assert_int_equal(tally_ratelimit_try_consume(f->s, "r", 1, 0, &m, &w),
			 TALLY_LIMITED);
	assert_int_equal(m, TALLY_COUNTER_TOKENS);
	assert_rview_equal(&w, &v);
	m = 0xdead;
	assert_int_equal(tally_ratelimit_try_consume(f->s, "r", 0, 2, &m, &w),
			 TALLY_LIMITED);
	assert_int_equal(m, TALLY_COUNTER_REQUESTS);
	assert_rview_equal(&w, &v);
	m = 0xdead;
	assert_int_equal(
		tally_ratelimit_try_consume(f->s, "r", 5, 5, NULL, NULL),
		TALLY_LIMITED);
	assert_int_equal(tally_ratelimit_try_consume(f->s, "r", 5, 5, &m, &w),
			 TALLY_LIMITED);
	assert_int_equal(m, TALLY_COUNTER_BOTH);
	assert_rview_equal(&w, &v);
	w = rget(f, "r");
	assert_rview_equal(&w, &v);

	assert_int_equal(tally_ratelimit_bump(f->s, "r", 0, 1, &v), TALLY_OK);
	fresh_version(f, v.incarnation, v.version);
	m = 0;
	assert_int_equal(tally_ratelimit_check(f->s, "r", &m, NULL),
			 TALLY_LIMITED);
	assert_int_equal(m, TALLY_COUNTER_BOTH);
	assert_int_equal(f->rolls.n, 0);

	/* 12:11: tokens due (effective 0), requests still blocked. */
	fake_clock_set(&f->clock, T(2024, 1, 15, 12, 11, 0));
	m = 0;
	assert_int_equal(tally_ratelimit_check(f->s, "r", &m, &w),
			 TALLY_LIMITED);
	assert_int_equal(m, TALLY_COUNTER_REQUESTS);
	assert_int_equal(w.tokens.usage, 0);
	assert_int_equal(w.tokens.window_start, T(2024, 1, 15, 12, 11, 0));
	assert_int_equal(w.requests.usage, 3);
	assert_int_equal(w.version, v.version);
	assert_int_equal(f->rolls.n, 0);

	m = 0xdead;
	assert_int_equal(tally_ratelimit_try_consume(f->s, "r", 10, 0, &m, &v),
			 TALLY_OK);
	fresh_version(f, v.incarnation, v.version);
	assert_int_equal(m, 0);
	assert_int_equal(v.tokens.usage, 10);
	assert_int_equal(v.requests.usage, 3);
	assert_int_equal(f->rolls.n, 1);
	assert_roll(&f->rolls.r[0], "r", TALLY_KIND_RATELIMIT,
		    TALLY_COUNTER_TOKENS, TALLY_ROLL_INLINE, 100,
		    T(2024, 1, 15, 12, 10, 0), T(2024, 1, 15, 12, 11, 0));
	assert_int_equal(f->rolls.r[0].version, v.version);

	/* Reset: conflict, then requests only. */
	m = 0xdead;
	assert_int_equal(tally_ratelimit_reset(f->s, "r", v.version - 1,
					       TALLY_COUNTER_BOTH, &m, &w),
			 TALLY_CONFLICT);
	assert_int_equal(m, 0);
	assert_rview_equal(&w, &v);
	w = rget(f, "r");
	assert_rview_equal(&w, &v);

	m = 0xdead;
	assert_int_equal(tally_ratelimit_reset(f->s, "r", v.version,
					       TALLY_COUNTER_REQUESTS, &m, &v),
			 TALLY_OK);
	fresh_version(f, v.incarnation, v.version);
	assert_int_equal(m, TALLY_COUNTER_REQUESTS);
	assert_int_equal(v.requests.usage, 0);
	assert_int_equal(v.tokens.usage, 10);
	assert_int_equal(f->rolls.n, 2);
	assert_roll(&f->rolls.r[1], "r", TALLY_KIND_RATELIMIT,
		    TALLY_COUNTER_REQUESTS, TALLY_ROLL_RESET, 3,
		    T(2024, 1, 15, 12, 0, 0), T(2024, 1, 15, 12, 0, 0));

	/* Due only, nothing due: OK, mask 0, version unchanged. */
	m = 0xdead;
	writes = writes_of(f);
	assert_int_equal(
		tally_ratelimit_reset(f->s, "r", v.version,
				      TALLY_COUNTER_BOTH | TALLY_RESET_DUE_ONLY,
				      &m, &w),
		TALLY_OK);
	assert_int_equal(m, 0);
	assert_rview_equal(&w, &v);
	assert_int_equal(writes_of(f), writes);
	assert_int_equal(f->rolls.n, 2);

	/* Due only at 12:12: tokens due, requests keep their usage. */
	assert_int_equal(tally_ratelimit_bump(f->s, "r", 1, 2, &v), TALLY_OK);
	fresh_version(f, v.incarnation, v.version);
	fake_clock_set(&f->clock, T(2024, 1, 15, 12, 12, 30));
	m = 0xdead;
	assert_int_equal(
		tally_ratelimit_reset(f->s, "r", v.version,
				      TALLY_COUNTER_BOTH | TALLY_RESET_DUE_ONLY,
				      &m, &w),
		TALLY_OK);
	fresh_version(f, w.incarnation, w.version);
	assert_int_equal(m, TALLY_COUNTER_TOKENS);
	assert_int_equal(w.tokens.usage, 0);
	assert_int_equal(w.tokens.window_start, T(2024, 1, 15, 12, 12, 0));
	assert_int_equal(w.requests.usage, 2);
	assert_int_equal(w.requests.window_start, T(2024, 1, 15, 12, 0, 0));
	assert_int_equal(f->rolls.n, 3);
	assert_roll(&f->rolls.r[2], "r", TALLY_KIND_RATELIMIT,
		    TALLY_COUNTER_TOKENS, TALLY_ROLL_RESET, 11,
		    T(2024, 1, 15, 12, 11, 0), T(2024, 1, 15, 12, 12, 0));
	v = w;

	/* Both, then tokens only. */
	assert_int_equal(tally_ratelimit_reset(f->s, "r", v.version,
					       TALLY_COUNTER_BOTH, &m, &v),
			 TALLY_OK);
	fresh_version(f, v.incarnation, v.version);
	assert_int_equal(m, TALLY_COUNTER_BOTH);
	assert_int_equal(f->rolls.n, 5);
	assert_int_equal(v.tokens.usage, 0);
	assert_int_equal(v.requests.usage, 0);
	assert_int_equal(tally_ratelimit_bump(f->s, "r", 6, 1, &v), TALLY_OK);
	assert_int_equal(tally_ratelimit_reset(f->s, "r", v.version,
					       TALLY_COUNTER_TOKENS, NULL, &v),
			 TALLY_OK);
	fresh_version(f, v.incarnation, v.version);
	assert_int_equal(v.tokens.usage, 0);
	assert_int_equal(v.requests.usage, 1);
	assert_int_equal(f->rolls.n, 6);
	assert_roll(&f->rolls.r[5], "r", TALLY_KIND_RATELIMIT,
		    TALLY_COUNTER_TOKENS, TALLY_ROLL_RESET, 6,
		    T(2024, 1, 15, 12, 12, 0), T(2024, 1, 15, 12, 12, 0));

	/* 13:00: both counters roll inline, two events. */
	fake_clock_set(&f->clock, T(2024, 1, 15, 13, 0, 5));
	assert_int_equal(tally_ratelimit_bump(f->s, "r", 7, 1, &v), TALLY_OK);
	fresh_version(f, v.incarnation, v.version);
	assert_int_equal(f->rolls.n, 8);
	for (size_t i = 6; i < 8; i++) {
		const struct roll_rec *r = &f->rolls.r[i];

		assert_int_equal(r->cause, TALLY_ROLL_INLINE);
		assert_int_equal(r->version, v.version);
		if (r->counter == TALLY_COUNTER_TOKENS)
			assert_roll(r, "r", TALLY_KIND_RATELIMIT,
				    TALLY_COUNTER_TOKENS, TALLY_ROLL_INLINE, 0,
				    T(2024, 1, 15, 12, 12, 0),
				    T(2024, 1, 15, 13, 0, 0));
		else
			assert_roll(r, "r", TALLY_KIND_RATELIMIT,
				    TALLY_COUNTER_REQUESTS, TALLY_ROLL_INLINE,
				    1, T(2024, 1, 15, 12, 0, 0),
				    T(2024, 1, 15, 13, 0, 0));
	}
	assert_int_not_equal(f->rolls.r[6].counter, f->rolls.r[7].counter);

	assert_int_equal(tally_ratelimit_remove(f->s, "r", &last), TALLY_OK);
	assert_rview_equal(&last, &v);
	assert_ratelimit_absent(f, "r");
	assert_int_equal(tally_ratelimit_upsert(f->s, "r", &c, &w),
			 TALLY_CREATED);
	fresh_version(f, w.incarnation, w.version);
	assert_int_equal(w.tokens.usage, 0);
	assert_int_equal(w.requests.usage, 0);
	assert_int_equal(f->rolls.n, 8);
}

static void
test_ratelimit_unlimited_counter(void **state)
{
	struct fx *f = *state;
	tally_ratelimit_config c =
		rcfg(lim(false, 0, "1m"), lim(true, 2, "1h"), true);
	tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
	unsigned m = 0xdead;

	assert_int_equal(tally_ratelimit_upsert(f->s, "u", &c, &v),
			 TALLY_CREATED);
	assert_false(v.config.tokens.has_max);
	assert_int_equal(tally_ratelimit_try_consume(f->s, "u", INT64_MAX - 1,
						     1, &m, &v),
			 TALLY_OK);
	assert_int_equal(m, 0);
	assert_int_equal(tally_ratelimit_check(f->s, "u", &m, &v), TALLY_OK);
	assert_int_equal(m, 0);
	assert_int_equal(tally_ratelimit_try_consume(f->s, "u", 1, 1, &m, &v),
			 TALLY_OK);
	assert_int_equal(v.tokens.usage, INT64_MAX);
	assert_int_equal(v.requests.usage, 2);
	m = 0;
	assert_int_equal(tally_ratelimit_check(f->s, "u", &m, NULL),
			 TALLY_LIMITED);
	assert_int_equal(m, TALLY_COUNTER_REQUESTS);
}

/* ------------------------------------------------------------------------ */
/* Sweep and the listener                                                   */
/* ------------------------------------------------------------------------ */

static void
test_sweep(void **state)
{
	struct fx *f = *state;
	tally_ratelimit_config rc =
		rcfg(lim(true, 10, "1m"), lim(true, 10, "1d"), true);
	tally_budget_view bv = TALLY_BUDGET_VIEW_INIT;
	tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
	size_t rolled = 99;
	struct {
		const char *key;
		const char *period;
		int64_t amount;
	} budgets[] = {
		{"h1", "1h", 7},
		{"m1", "1m", 3},
		{"d1", "1d", 5},
		{"none", "none", 9},
	};
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;
	for (size_t i = 0; i < 4; i++) {
		c = bcfg(100, budgets[i].period, true);
		assert_int_equal(
			tally_budget_upsert(f->s, budgets[i].key, &c, NULL),
			TALLY_CREATED);
		assert_int_equal(tally_budget_bump(f->s, budgets[i].key,
						   budgets[i].amount, NULL),
				 TALLY_OK);
	}
	assert_int_equal(tally_ratelimit_upsert(f->s, "rl", &rc, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_ratelimit_bump(f->s, "rl", 2, 1, NULL),
			 TALLY_OK);

	/* Nothing due yet. */
	assert_int_equal(tally_sweep(f->s, log_roll, &f->cb, &rolled),
			 TALLY_OK);
	assert_int_equal(rolled, 0);
	assert_int_equal(f->rolls.n, 0);
	assert_int_equal(f->cb.n, 0);

	/* 12:11: m1 and the tokens of rl are due. */
	fake_clock_set(&f->clock, T(2024, 1, 15, 12, 11, 0));
	rolled = 99;
	assert_int_equal(tally_sweep(f->s, log_roll, &f->cb, &rolled),
			 TALLY_OK);
	assert_int_equal(rolled, 2);
	assert_int_equal(f->rolls.n, 2);
	assert_int_equal(f->cb.n, 2);
	for (size_t i = 0; i < 2; i++) {
		const struct roll_rec *r = &f->rolls.r[i];

		assert_rec_equal(&f->cb.r[i], r);
		if (r->kind == TALLY_KIND_BUDGET) {
			assert_roll(r, "m1", TALLY_KIND_BUDGET,
				    TALLY_COUNTER_BUDGET, TALLY_ROLL_SWEEP, 3,
				    T(2024, 1, 15, 12, 10, 0),
				    T(2024, 1, 15, 12, 11, 0));
			bv = bget(f, "m1");
			assert_int_equal(bv.usage, 0);
			assert_int_equal(bv.window_start,
					 T(2024, 1, 15, 12, 11, 0));
			assert_int_equal(r->version, bv.version);
		} else {
			assert_roll(r, "rl", TALLY_KIND_RATELIMIT,
				    TALLY_COUNTER_TOKENS, TALLY_ROLL_SWEEP, 2,
				    T(2024, 1, 15, 12, 10, 0),
				    T(2024, 1, 15, 12, 11, 0));
			rv = rget(f, "rl");
			assert_int_equal(rv.tokens.usage, 0);
			assert_int_equal(rv.requests.usage, 1);
			assert_int_equal(r->version, rv.version);
		}
	}
	assert_int_not_equal(f->rolls.r[0].kind, f->rolls.r[1].kind);
	bv = bget(f, "h1");
	assert_int_equal(bv.usage, 7);
	bv = bget(f, "d1");
	assert_int_equal(bv.usage, 5);
	bv = bget(f, "none");
	assert_int_equal(bv.usage, 9);

	/* A second sweep rolls nothing; NULL callback and count are fine. */
	rolled = 99;
	assert_int_equal(tally_sweep(f->s, log_roll, &f->cb, &rolled),
			 TALLY_OK);
	assert_int_equal(rolled, 0);
	assert_int_equal(tally_sweep(f->s, NULL, NULL, NULL), TALLY_OK);
	assert_int_equal(f->rolls.n, 2);
	assert_int_equal(f->cb.n, 2);

	/* 13:00: writes roll everything that is due inline first; the sweep
	 * then finds nothing. */
	fake_clock_set(&f->clock, T(2024, 1, 15, 13, 0, 0));
	assert_int_equal(tally_budget_bump(f->s, "h1", 0, NULL), TALLY_OK);
	assert_int_equal(tally_budget_try_consume(f->s, "m1", 0, NULL),
			 TALLY_OK);
	assert_int_equal(tally_ratelimit_bump(f->s, "rl", 0, 0, NULL),
			 TALLY_OK);
	assert_int_equal(f->rolls.n, 5);
	for (size_t i = 2; i < 5; i++)
		assert_int_equal(f->rolls.r[i].cause, TALLY_ROLL_INLINE);
	rolled = 99;
	assert_int_equal(tally_sweep(f->s, log_roll, &f->cb, &rolled),
			 TALLY_OK);
	assert_int_equal(rolled, 0);
	assert_int_equal(f->rolls.n, 5);
	assert_int_equal(f->cb.n, 2);

	/* A removed record is not swept. */
	assert_int_equal(tally_budget_remove(f->s, "m1", NULL), TALLY_OK);
	fake_clock_set(&f->clock, T(2024, 1, 15, 13, 30, 0));
	rolled = 99;
	assert_int_equal(tally_sweep(f->s, log_roll, &f->cb, &rolled),
			 TALLY_OK);
	assert_int_equal(rolled, 1);
	assert_int_equal(f->cb.n, 3);
	assert_roll(&f->cb.r[2], "rl", TALLY_KIND_RATELIMIT,
		    TALLY_COUNTER_TOKENS, TALLY_ROLL_SWEEP, 0,
		    T(2024, 1, 15, 13, 0, 0), T(2024, 1, 15, 13, 30, 0));
	assert_int_equal(f->rolls.n, 6);
}

/* *rolled counts rolls, as the callback hears them: a rate limit whose two
 * counters are both due is two rolls (two tally_roll events). */
static void
test_sweep_count_matches_callback(void **state)
{
	struct fx *f = *state;
	tally_ratelimit_config rc =
		rcfg(lim(true, 10, "1m"), lim(true, 10, "1h"), true);
	tally_budget_config c = bcfg(100, "1h", true);
	tally_stats before = TALLY_STATS_INIT;
	tally_stats after = TALLY_STATS_INIT;
	size_t rolled = 99;

	assert_int_equal(tally_ratelimit_upsert(f->s, "both", &rc, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_ratelimit_bump(f->s, "both", 4, 5, NULL),
			 TALLY_OK);
	assert_int_equal(tally_budget_upsert(f->s, "b", &c, NULL),
			 TALLY_CREATED);
	fake_clock_set(&f->clock, T(2024, 1, 15, 13, 0, 0));
	assert_int_equal(tally_store_stats(f->s, &before), TALLY_OK);
	assert_int_equal(tally_sweep(f->s, log_roll, &f->cb, &rolled),
			 TALLY_OK);
	assert_int_equal(tally_store_stats(f->s, &after), TALLY_OK);
	assert_int_equal(f->cb.n, 3);
	assert_int_equal(f->rolls.n, 3);
	assert_int_equal(after.rolls - before.rolls, 3);
	assert_int_equal(rolled, f->cb.n);
}

static void
test_listener_hears_every_cause(void **state)
{
	struct fx *f = *state;
	tally_budget_config c = bcfg(100, "1m", true);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	const char *key = "listener/key";

	assert_int_equal(tally_budget_upsert(f->s, key, &c, &v), TALLY_CREATED);
	assert_int_equal(tally_budget_bump(f->s, key, 11, NULL), TALLY_OK);

	fake_clock_advance(&f->clock, MIN_);
	assert_int_equal(tally_budget_bump(f->s, key, 12, &v), TALLY_OK);
	assert_int_equal(f->rolls.n, 1);
	assert_roll(&f->rolls.r[0], key, TALLY_KIND_BUDGET,
		    TALLY_COUNTER_BUDGET, TALLY_ROLL_INLINE, 11,
		    T(2024, 1, 15, 12, 10, 0), T(2024, 1, 15, 12, 11, 0));
	assert_int_equal(f->rolls.r[0].version, v.version);

	fake_clock_advance(&f->clock, MIN_);
	assert_int_equal(tally_budget_try_consume(f->s, key, 13, &v), TALLY_OK);
	assert_int_equal(f->rolls.n, 2);
	assert_roll(&f->rolls.r[1], key, TALLY_KIND_BUDGET,
		    TALLY_COUNTER_BUDGET, TALLY_ROLL_INLINE, 12,
		    T(2024, 1, 15, 12, 11, 0), T(2024, 1, 15, 12, 12, 0));
	assert_int_equal(f->rolls.r[1].version, v.version);

	assert_int_equal(tally_budget_reset(f->s, key, v.version, &v),
			 TALLY_OK);
	assert_int_equal(f->rolls.n, 3);
	assert_roll(&f->rolls.r[2], key, TALLY_KIND_BUDGET,
		    TALLY_COUNTER_BUDGET, TALLY_ROLL_RESET, 13,
		    T(2024, 1, 15, 12, 12, 0), T(2024, 1, 15, 12, 12, 0));
	assert_int_equal(f->rolls.r[2].version, v.version);

	assert_int_equal(tally_budget_bump(f->s, key, 14, NULL), TALLY_OK);
	fake_clock_advance(&f->clock, 3 * MIN_);
	assert_int_equal(tally_sweep(f->s, NULL, NULL, NULL), TALLY_OK);
	assert_int_equal(f->rolls.n, 4);
	assert_roll(&f->rolls.r[3], key, TALLY_KIND_BUDGET,
		    TALLY_COUNTER_BUDGET, TALLY_ROLL_SWEEP, 14,
		    T(2024, 1, 15, 12, 12, 0), T(2024, 1, 15, 12, 15, 0));
	v = bget(f, key);
	assert_int_equal(f->rolls.r[3].version, v.version);

	/* Upsert, get, check, remove never roll. */
	fake_clock_advance(&f->clock, 5 * MIN_);
	assert_int_equal(tally_budget_check(f->s, key, NULL), TALLY_OK);
	assert_int_equal(tally_budget_get(f->s, key, &v), TALLY_OK);
	assert_int_equal(tally_budget_upsert(f->s, key, &c, NULL), TALLY_OK);
	assert_int_equal(tally_budget_remove(f->s, key, NULL), TALLY_OK);
	assert_int_equal(f->rolls.n, 4);
}

/* Every unit applied is found exactly once: in the usage_before of one
 * roll, or in the final usage. Window starts chain without gaps. */
static void
test_conservation(void **state)
{
	struct fx *f = *state;
	tally_budget_config c = bcfg(1000, "1m", true);
	tally_ratelimit_config rc =
		rcfg(lim(true, 500, "1m"), lim(true, 50, "5m"), true);
	int64_t applied[3] = {0, 0, 0}, rolled_sum[3] = {0, 0, 0};
	int64_t last_start[3];
	tally_budget_view bv = TALLY_BUDGET_VIEW_INIT;
	tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
	uint64_t x = 0x243f6a8885a308d3u;

	assert_int_equal(tally_budget_upsert(f->s, "cb", &c, &bv),
			 TALLY_CREATED);
	assert_int_equal(tally_ratelimit_upsert(f->s, "cr", &rc, &rv),
			 TALLY_CREATED);
	last_start[0] = bv.window_start;
	last_start[1] = rv.tokens.window_start;
	last_start[2] = rv.requests.window_start;

	for (int i = 0; i < 3000; i++) {
		int64_t a, b;
		unsigned m;
		int rc_;

		x = x * 6364136223846793005u + 1442695040888963407u;
		a = (int64_t)(x >> 33) % 300;
		b = (int64_t)(x >> 20) % 7;
		switch ((x >> 60) % 8) {
		case 0:
		case 1:
			assert_int_equal(tally_budget_bump(f->s, "cb", a, NULL),
					 TALLY_OK);
			applied[0] += a;
			break;
		case 2:
			rc_ = tally_budget_try_consume(f->s, "cb", a, NULL);
			assert_true(rc_ == TALLY_OK || rc_ == TALLY_LIMITED);
			if (rc_ == TALLY_OK)
				applied[0] += a;
			break;
		case 3:
			assert_int_equal(
				tally_ratelimit_bump(f->s, "cr", a, b, NULL),
				TALLY_OK);
			applied[1] += a;
			applied[2] += b;
			break;
		case 4:
			rc_ = tally_ratelimit_try_consume(f->s, "cr", a, b, &m,
							  NULL);
			assert_true(rc_ == TALLY_OK || rc_ == TALLY_LIMITED);
			if (rc_ == TALLY_OK) {
				applied[1] += a;
				applied[2] += b;
			}
			break;
		case 5:
			if (i % 5 == 0) {
				bv = bget(f, "cb");
				assert_int_equal(tally_budget_reset(f->s, "cb",
								    bv.version,
								    NULL),
						 TALLY_OK);
			} else if (i % 5 == 1) {
				rv = rget(f, "cr");
				assert_int_equal(
					tally_ratelimit_reset(
						f->s, "cr", rv.version,
						(unsigned)(1 + (x >> 40) % 3) |
							((x >> 45) & 1
								 ? TALLY_RESET_DUE_ONLY
								 : 0u),
						NULL, NULL),
					TALLY_OK);
			}
			break;
		case 6:
			assert_int_equal(tally_sweep(f->s, NULL, NULL, NULL),
					 TALLY_OK);
			break;
		default:
			assert_true(tally_budget_check(f->s, "cb", NULL) >= 0);
			assert_true(tally_ratelimit_check(f->s, "cr", NULL,
							  NULL) >= 0);
			break;
		}
		/* Mostly forward by up to 40 s; sometimes back a little. */
		if ((x >> 10) % 13 == 0)
			fake_clock_advance(&f->clock,
					   -(int64_t)((x >> 3) % 90) *
						   NS_PER_SEC);
		else
			fake_clock_advance(&f->clock, (int64_t)((x >> 3) % 40) *
							      NS_PER_SEC);
	}

	assert_int_equal(f->rolls.overflow, 0);
	assert_true(f->rolls.n > 100);
	for (size_t i = 0; i < f->rolls.n; i++) {
		const struct roll_rec *r = &f->rolls.r[i];
		int idx = r->kind == TALLY_KIND_BUDGET         ? 0
			  : r->counter == TALLY_COUNTER_TOKENS ? 1
							       : 2;

		assert_int_equal(r->key_len, 2);
		assert_memory_equal(r->key, idx == 0 ? "cb" : "cr", 2);
		assert_int_equal(r->old_start, last_start[idx]);
		if (r->cause == TALLY_ROLL_RESET)
			assert_true(r->new_start >= r->old_start);
		else
			assert_true(r->new_start > r->old_start);
		last_start[idx] = r->new_start;
		rolled_sum[idx] += r->usage_before;
	}
	assert_int_equal(tally_budget_remove(f->s, "cb", &bv), TALLY_OK);
	assert_int_equal(tally_ratelimit_remove(f->s, "cr", &rv), TALLY_OK);
	assert_int_equal(bv.window_start, last_start[0]);
	assert_int_equal(rv.tokens.window_start, last_start[1]);
	assert_int_equal(rv.requests.window_start, last_start[2]);
	assert_int_equal(rolled_sum[0] + bv.usage, applied[0]);
	assert_int_equal(rolled_sum[1] + rv.tokens.usage, applied[1]);
	assert_int_equal(rolled_sum[2] + rv.requests.usage, applied[2]);
}

/* A listener that persists every closed window into the same store: it
 * creates "closed-<key>" budgets while a sweep walks the map (so the map
 * grows under the sweep) and while writes roll inline. */
struct reentrant {
	tally_store *s;
	size_t heard;
	int bad; /* nested calls that failed */
};

static void
persist_roll(const tally_roll *roll, void *ctx)
{
	struct reentrant *x = ctx;
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;
	char key[300];
	int rc;

	x->heard++;
	c.max_limit = INT64_MAX;
	snprintf(key, sizeof key, "closed-%.*s", (int)roll->key_len, roll->key);
	rc = tally_budget_upsert(x->s, key, &c, NULL);
	if (rc != TALLY_CREATED && rc != TALLY_OK)
		x->bad++;
	if (tally_budget_bump(x->s, key, roll->usage_before, NULL) != TALLY_OK)
		x->bad++;
}

static void
test_listener_may_call_the_store(void **state)
{
	struct fake_clock clock = {T0};
	struct test_alloc alloc = {0};
	struct reentrant x = {NULL, 0, 0};
	tally_store_options o = test_options(&clock, &alloc);
	struct roll_log *cb = calloc(1, sizeof *cb);
	tally_budget_config c = bcfg(100, "1m", true);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	tally_stats st = TALLY_STATS_INIT;
	size_t rolled = 0;
	int seen[40] = {0};
	char key[32];

	(void)state;
	assert_non_null(cb);
	o.on_roll = persist_roll;
	o.on_roll_ctx = &x;
	assert_int_equal(tally_store_create(&x.s, &o), TALLY_OK);
	for (int i = 0; i < 40; i++) {
		snprintf(key, sizeof key, "k%02d", i);
		assert_int_equal(tally_budget_upsert(x.s, key, &c, NULL),
				 TALLY_CREATED);
		assert_int_equal(tally_budget_bump(x.s, key, i + 1, NULL),
				 TALLY_OK);
	}
	fake_clock_advance(&clock, MIN_);
	assert_int_equal(tally_sweep(x.s, log_roll, cb, &rolled), TALLY_OK);
	assert_int_equal(x.bad, 0);
	assert_int_equal(x.heard, 40);
	assert_int_equal(cb->n, 40);
	assert_int_equal(rolled, 40);
	for (size_t i = 0; i < cb->n; i++) {
		int k;

		assert_int_equal(cb->r[i].key_len, 3);
		assert_int_equal(cb->r[i].key[0], 'k');
		k = (cb->r[i].key[1] - '0') * 10 + (cb->r[i].key[2] - '0');
		assert_true(k >= 0 && k < 40);
		assert_int_equal(seen[k], 0);
		seen[k] = 1;
		assert_int_equal(cb->r[i].usage_before, k + 1);
	}
	for (int i = 0; i < 40; i++) {
		snprintf(key, sizeof key, "closed-k%02d", i);
		assert_int_equal(tally_budget_get(x.s, key, &v), TALLY_OK);
		assert_int_equal(v.usage, i + 1);
		snprintf(key, sizeof key, "k%02d", i);
		assert_int_equal(tally_budget_get(x.s, key, &v), TALLY_OK);
		assert_int_equal(v.usage, 0);
	}
	assert_int_equal(tally_store_stats(x.s, &st), TALLY_OK);
	assert_int_equal(st.records, 80);

	/* Inline rolls call the listener too. */
	assert_int_equal(tally_budget_bump(x.s, "k07", 5, NULL), TALLY_OK);
	fake_clock_advance(&clock, MIN_);
	assert_int_equal(tally_budget_bump(x.s, "k07", 1, NULL), TALLY_OK);
	assert_int_equal(x.heard, 41);
	assert_int_equal(x.bad, 0);
	assert_int_equal(tally_budget_get(x.s, "closed-k07", &v), TALLY_OK);
	assert_int_equal(v.usage, 8 + 5);

	tally_store_destroy(x.s);
	free(cb);
	assert_int_equal(alloc.live_blocks, 0);
	assert_int_equal(alloc.live_bytes, 0);
}

/* ------------------------------------------------------------------------ */
/* Threads                                                                  */
/* ------------------------------------------------------------------------ */

struct worker {
	tally_store *s;
	int rc;
};

static void *
worker_bump(void *arg)
{
	struct worker *w = arg;

	w->rc = tally_budget_bump(w->s, "w", 1, NULL);
	return NULL;
}

/* Sequential threads: each registers on its first call and releases its
 * record when it exits; the next thread adopts it. */
static void
test_thread_records_recycled(void **state)
{
	struct fx *f = *state;
	tally_budget_config c = bcfg(100, "1h", true);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	tally_stats st = TALLY_STATS_INIT;
	assert_int_equal(tally_budget_upsert(f->s, "w", &c, NULL),
			 TALLY_CREATED);
	for (int i = 0; i < 5; i++) {
		struct worker w = {f->s, -9999};
		pthread_t th;

		assert_int_equal(pthread_create(&th, NULL, worker_bump, &w), 0);
		assert_int_equal(pthread_join(th, NULL), 0);
		assert_int_equal(w.rc, TALLY_OK);
		assert_int_equal(tally_store_stats(f->s, &st), TALLY_OK);
		assert_int_equal(st.threads, 2);        /* main + one reused */
		assert_int_equal(st.threads_active, 1); /* main */
	}
	v = bget(f, "w");
	assert_int_equal(v.usage, 5);
	/* Five bumps; creating the record is an insert, not a CAS. */
	assert_int_equal(st.writes, 5);
}

/* ------------------------------------------------------------------------ */
/* Keys                                                                     */
/* ------------------------------------------------------------------------ */

static void
test_keys(void **state)
{
	struct fx *f = *state;
	tally_budget_config c = bcfg(100, "1m", true);
	tally_ratelimit_config rc =
		rcfg(lim(true, 10, "1m"), lim(true, 10, "1h"), true);
	char k255[256], k256[257], all[256], buf[8];
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
	unsigned m;

	memset(k255, 'k', 255);
	k255[255] = '\0';
	memset(k256, 'k', 256);
	k256[256] = '\0';
	for (int i = 0; i < 255; i++)
		all[i] = (char)(unsigned char)(i + 1);
	all[255] = '\0';

	/* 255 bytes: every call works, the listener sees every byte. */
	assert_int_equal(tally_budget_upsert(f->s, k255, &c, &v),
			 TALLY_CREATED);
	assert_int_equal(tally_budget_bump(f->s, k255, 3, &v), TALLY_OK);
	assert_int_equal(tally_budget_check(f->s, k255, &v), TALLY_OK);
	assert_int_equal(tally_budget_try_consume(f->s, k255, 3, &v), TALLY_OK);
	assert_int_equal(v.usage, 6);
	assert_int_equal(tally_budget_reset(f->s, k255, v.version, &v),
			 TALLY_OK);
	assert_int_equal(f->rolls.n, 1);
	assert_roll(&f->rolls.r[0], k255, TALLY_KIND_BUDGET,
		    TALLY_COUNTER_BUDGET, TALLY_ROLL_RESET, 6,
		    T(2024, 1, 15, 12, 10, 0), T(2024, 1, 15, 12, 10, 0));
	assert_int_equal(tally_budget_remove(f->s, k255, &v), TALLY_OK);

	/* Every byte value but NUL, as a budget and as a rate limit. */
	assert_int_equal(strlen(all), 255);
	assert_int_equal(tally_budget_upsert(f->s, all, &c, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_budget_bump(f->s, all, 5, NULL), TALLY_OK);
	assert_int_equal(tally_budget_get(f->s, all, &v), TALLY_OK);
	assert_int_equal(v.usage, 5);
	assert_int_equal(tally_ratelimit_upsert(f->s, all, &rc, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_ratelimit_try_consume(f->s, all, 1, 2, &m, &rv),
			 TALLY_OK);
	fake_clock_advance(&f->clock, MIN_);
	assert_int_equal(tally_budget_bump(f->s, all, 1, NULL), TALLY_OK);
	assert_int_equal(f->rolls.n, 2);
	assert_roll(&f->rolls.r[1], all, TALLY_KIND_BUDGET,
		    TALLY_COUNTER_BUDGET, TALLY_ROLL_INLINE, 5,
		    T(2024, 1, 15, 12, 10, 0), T(2024, 1, 15, 12, 11, 0));
	assert_int_equal(tally_ratelimit_remove(f->s, all, &rv), TALLY_OK);
	assert_int_equal(rv.requests.usage, 2);
	assert_int_equal(tally_budget_remove(f->s, all, &v), TALLY_OK);
	assert_int_equal(v.usage, 1);

	/* Single high bytes, prefixes: all distinct keys. */
	{
		static const char *keys[] = {"\x01", "\x7f",    "\x80", "\xfe",
					     "\xff", "a",       "ab",   "abc",
					     "b",    "\xff\xff"};
		size_t n = sizeof keys / sizeof keys[0];

		for (size_t i = 0; i < n; i++) {
			assert_int_equal(
				tally_budget_upsert(f->s, keys[i], &c, NULL),
				TALLY_CREATED);
			assert_int_equal(tally_budget_bump(f->s, keys[i],
							   (int64_t)i + 1,
							   NULL),
					 TALLY_OK);
		}
		for (size_t i = 0; i < n; i++) {
			v = bget(f, keys[i]);
			assert_int_equal(v.usage, (int64_t)i + 1);
		}
	}

	/* The library copies the key. */
	strcpy(buf, "copy");
	assert_int_equal(tally_budget_upsert(f->s, buf, &c, NULL),
			 TALLY_CREATED);
	buf[0] = 'C';
	assert_int_equal(tally_budget_get(f->s, buf, &v), TALLY_ENOENT);
	assert_int_equal(tally_budget_get(f->s, "copy", &v), TALLY_OK);

	/* 256 bytes and the empty key are rejected everywhere. */
	assert_int_equal(tally_budget_upsert(f->s, k256, &c, NULL), TALLY_EKEY);
	assert_int_equal(tally_budget_upsert(f->s, "", &c, NULL), TALLY_EKEY);
	assert_int_equal(tally_ratelimit_upsert(f->s, k256, &rc, NULL),
			 TALLY_EKEY);
	assert_int_equal(tally_ratelimit_upsert(f->s, "", &rc, NULL),
			 TALLY_EKEY);
}

/* Many keys: the map grows; every key keeps its own record. */
static void
test_many_keys(void **state)
{
	struct fx *f = *state;
	tally_budget_config c = bcfg(100, "1h", true);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	tally_stats st = TALLY_STATS_INIT;
	char key[32];

	for (int i = 0; i < 300; i++) {
		snprintf(key, sizeof key, "key-%d", i);
		assert_int_equal(tally_budget_upsert(f->s, key, &c, NULL),
				 TALLY_CREATED);
		assert_int_equal(tally_budget_bump(f->s, key, i, NULL),
				 TALLY_OK);
	}
	for (int i = 0; i < 300; i += 2) {
		snprintf(key, sizeof key, "key-%d", i);
		assert_int_equal(tally_budget_remove(f->s, key, &v), TALLY_OK);
		assert_int_equal(v.usage, i);
	}
	assert_int_equal(tally_store_stats(f->s, &st), TALLY_OK);
	assert_int_equal(st.records, 150);
	for (int i = 0; i < 300; i++) {
		snprintf(key, sizeof key, "key-%d", i);
		if (i % 2 == 0) {
			assert_int_equal(tally_budget_get(f->s, key, &v),
					 TALLY_ENOENT);
		} else {
			v = bget(f, key);
			assert_int_equal(v.usage, i);
		}
	}
}

/* ------------------------------------------------------------------------ */
/* Bad input: clear errors, nothing changed                                 */
/* ------------------------------------------------------------------------ */

struct world {
	tally_budget_view b;
	tally_budget_view ovf;
	tally_ratelimit_view r;
	tally_ratelimit_view rovf;
	size_t rolls;
	uint64_t writes, records;
};

static struct world
world_of(struct fx *f)
{
	struct world w;
	tally_stats st = TALLY_STATS_INIT;
	w.b = bget(f, "b");
	w.ovf = bget(f, "ovf");
	w.r = rget(f, "r");
	w.rovf = rget(f, "rovf");
	w.rolls = f->rolls.n;
	assert_int_equal(tally_store_stats(f->s, &st), TALLY_OK);
	w.writes = st.writes;
	w.records = st.records;
	return w;
}

static void
assert_world(struct fx *f, const struct world *w0)
{
	struct world w = world_of(f);

	assert_bview_equal(&w.b, &w0->b);
	assert_bview_equal(&w.ovf, &w0->ovf);
	assert_rview_equal(&w.r, &w0->r);
	assert_rview_equal(&w.rovf, &w0->rovf);
	assert_int_equal(w.rolls, w0->rolls);
	assert_int_equal(w.writes, w0->writes);
	assert_int_equal(w.records, w0->records);
	assert_int_equal(tally_budget_get(f->s, "new", &w.b), TALLY_ENOENT);
	assert_int_equal(tally_ratelimit_get(f->s, "new", &w.r), TALLY_ENOENT);
}

/* "b", "r" with some usage and a due window; "ovf", "rovf" at INT64_MAX. */
static void
world_setup(struct fx *f)
{
	tally_budget_config c = bcfg(100, "1m", true);
	tally_ratelimit_config rc =
		rcfg(lim(true, 100, "1m"), lim(true, 10, "1h"), true);
	tally_ratelimit_config rc2 =
		rcfg(lim(false, 0, "1h"), lim(false, 0, "1h"), true);

	assert_int_equal(tally_budget_upsert(f->s, "b", &c, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_budget_bump(f->s, "b", 17, NULL), TALLY_OK);
	c = bcfg(100, "1h", true);
	assert_int_equal(tally_budget_upsert(f->s, "ovf", &c, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_budget_bump(f->s, "ovf", INT64_MAX, NULL),
			 TALLY_OK);
	assert_int_equal(tally_ratelimit_upsert(f->s, "r", &rc, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_ratelimit_bump(f->s, "r", 20, 2, NULL),
			 TALLY_OK);
	assert_int_equal(tally_ratelimit_upsert(f->s, "rovf", &rc2, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_ratelimit_bump(f->s, "rovf", INT64_MAX - 1,
					      INT64_MAX - 1, NULL),
			 TALLY_OK);
	/* "b" and the tokens of "r" are due: a bad call must not roll them. */
	fake_clock_set(&f->clock, T(2024, 1, 15, 12, 11, 0));
}

static void
test_bad_input_budget(void **state)
{
	struct fx *f = *state;
	char k256[257];
	const char *bad_keys[] = {NULL, "", k256};
	const int bad_key_rc[] = {TALLY_EINVAL, TALLY_EKEY, TALLY_EKEY};
	tally_budget_config good = bcfg(100, "1m", true), c;
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	struct world w0;
	uint64_t ver;

	memset(k256, 'x', 256);
	k256[256] = '\0';
	world_setup(f);
	w0 = world_of(f);
	ver = w0.b.version;

	/* NULL store. */
	assert_int_equal(tally_budget_upsert(NULL, "b", &good, &v),
			 TALLY_EINVAL);
	assert_int_equal(tally_budget_get(NULL, "b", &v), TALLY_EINVAL);
	assert_int_equal(tally_budget_bump(NULL, "b", 1, &v), TALLY_EINVAL);
	assert_int_equal(tally_budget_check(NULL, "b", &v), TALLY_EINVAL);
	assert_int_equal(tally_budget_try_consume(NULL, "b", 1, &v),
			 TALLY_EINVAL);
	assert_int_equal(tally_budget_reset(NULL, "b", ver, &v), TALLY_EINVAL);
	assert_int_equal(tally_budget_remove(NULL, "b", &v), TALLY_EINVAL);
	assert_world(f, &w0);

	/* Bad keys. */
	for (size_t i = 0; i < 3; i++) {
		const char *k = bad_keys[i];
		int want = bad_key_rc[i];

		assert_int_equal(tally_budget_upsert(f->s, k, &good, &v), want);
		assert_int_equal(tally_budget_get(f->s, k, &v), want);
		assert_int_equal(tally_budget_bump(f->s, k, 1, &v), want);
		assert_int_equal(tally_budget_check(f->s, k, &v), want);
		assert_int_equal(tally_budget_try_consume(f->s, k, 1, &v),
				 want);
		assert_int_equal(tally_budget_reset(f->s, k, ver, &v), want);
		assert_int_equal(tally_budget_remove(f->s, k, &v), want);
		assert_world(f, &w0);
	}

	/* NULL config / view where required. */
	assert_int_equal(tally_budget_upsert(f->s, "b", NULL, &v),
			 TALLY_EINVAL);
	assert_int_equal(tally_budget_upsert(f->s, "new", NULL, &v),
			 TALLY_EINVAL);
	assert_int_equal(tally_budget_get(f->s, "b", NULL), TALLY_EINVAL);
	assert_world(f, &w0);

	/* Bad configs, for an existing and for a new key. */
	for (int k = 0; k < 2; k++) {
		const char *key = k == 0 ? "b" : "new";

		c = good;
		c.max_limit = -1;
		assert_int_equal(tally_budget_upsert(f->s, key, &c, &v),
				 TALLY_EINVAL);
		c.max_limit = INT64_MIN;
		assert_int_equal(tally_budget_upsert(f->s, key, &c, &v),
				 TALLY_EINVAL);
		c = good;
		c.utc_offset_minutes = 1440;
		assert_int_equal(tally_budget_upsert(f->s, key, &c, &v),
				 TALLY_EINVAL);
		c.utc_offset_minutes = -1440;
		assert_int_equal(tally_budget_upsert(f->s, key, &c, &v),
				 TALLY_EINVAL);
		c.utc_offset_minutes = INT32_MIN;
		assert_int_equal(tally_budget_upsert(f->s, key, &c, &v),
				 TALLY_EINVAL);
		c = good;
		c.period = (tally_period){0, TALLY_PERIOD_FIXED};
		assert_int_equal(tally_budget_upsert(f->s, key, &c, &v),
				 TALLY_EPERIOD);
		c.period = (tally_period){-1, TALLY_PERIOD_FIXED};
		assert_int_equal(tally_budget_upsert(f->s, key, &c, &v),
				 TALLY_EPERIOD);
		c.period = (tally_period){1, 9};
		assert_int_equal(tally_budget_upsert(f->s, key, &c, &v),
				 TALLY_EPERIOD);
		c.period = (tally_period){3, TALLY_PERIOD_NONE};
		assert_int_equal(tally_budget_upsert(f->s, key, &c, &v),
				 TALLY_EPERIOD);
		c.period = (tally_period){0, TALLY_PERIOD_MONTH};
		assert_int_equal(tally_budget_upsert(f->s, key, &c, &v),
				 TALLY_EPERIOD);
		c.period = (tally_period){INT64_MAX, TALLY_PERIOD_WEEK};
		assert_int_equal(tally_budget_upsert(f->s, key, &c, &v),
				 TALLY_EPERIOD);
		assert_world(f, &w0);
	}

	/* Negative amounts. */
	assert_int_equal(tally_budget_bump(f->s, "b", -1, &v), TALLY_EINVAL);
	assert_int_equal(tally_budget_bump(f->s, "b", INT64_MIN, &v),
			 TALLY_EINVAL);
	assert_int_equal(tally_budget_try_consume(f->s, "b", -1, &v),
			 TALLY_EINVAL);
	assert_int_equal(tally_budget_try_consume(f->s, "b", INT64_MIN, &v),
			 TALLY_EINVAL);
	assert_int_equal(tally_budget_bump(f->s, "new", -1, &v), TALLY_EINVAL);
	assert_world(f, &w0);

	/* Overflow. */
	assert_int_equal(tally_budget_bump(f->s, "ovf", 1, &v),
			 TALLY_EOVERFLOW);
	assert_int_equal(tally_budget_bump(f->s, "ovf", INT64_MAX, &v),
			 TALLY_EOVERFLOW);
	assert_world(f, &w0);

	/* Normal outcomes that change nothing. */
	assert_int_equal(tally_budget_reset(f->s, "b", ver + 1, &v),
			 TALLY_CONFLICT);
	assert_int_equal(tally_budget_reset(f->s, "b", ver - 1, &v),
			 TALLY_CONFLICT);
	assert_int_equal(tally_budget_reset(f->s, "b", 0, &v), TALLY_CONFLICT);
	assert_int_equal(tally_budget_try_consume(f->s, "b", 101, &v),
			 TALLY_LIMITED);
	assert_int_equal(tally_budget_try_consume(f->s, "ovf", 1, &v),
			 TALLY_LIMITED);
	assert_int_equal(tally_budget_check(f->s, "ovf", &v), TALLY_LIMITED);
	assert_world(f, &w0);
}

static void
test_bad_input_ratelimit(void **state)
{
	struct fx *f = *state;
	char k256[257];
	const char *bad_keys[] = {NULL, "", k256};
	const int bad_key_rc[] = {TALLY_EINVAL, TALLY_EKEY, TALLY_EKEY};
	static const unsigned bad_masks[] = {
		0,
		TALLY_RESET_DUE_ONLY,
		4,
		TALLY_COUNTER_TOKENS | 4,
		TALLY_COUNTER_BOTH | 0x80,
		TALLY_COUNTER_BOTH | 0x200,
		TALLY_COUNTER_REQUESTS | TALLY_RESET_DUE_ONLY | 0x400,
		0x80000000u | TALLY_COUNTER_TOKENS,
		~0u,
	};
	tally_ratelimit_config good =
		rcfg(lim(true, 100, "1m"), lim(true, 10, "1h"), true);
	tally_ratelimit_config c = TALLY_RATELIMIT_CONFIG_INIT;
	tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
	struct world w0;
	uint64_t ver;
	unsigned m;

	memset(k256, 'x', 256);
	k256[256] = '\0';
	world_setup(f);
	w0 = world_of(f);
	ver = w0.r.version;

	assert_int_equal(tally_ratelimit_upsert(NULL, "r", &good, &v),
			 TALLY_EINVAL);
	assert_int_equal(tally_ratelimit_get(NULL, "r", &v), TALLY_EINVAL);
	assert_int_equal(tally_ratelimit_bump(NULL, "r", 1, 1, &v),
			 TALLY_EINVAL);
	assert_int_equal(tally_ratelimit_check(NULL, "r", &m, &v),
			 TALLY_EINVAL);
	assert_int_equal(tally_ratelimit_try_consume(NULL, "r", 1, 1, &m, &v),
			 TALLY_EINVAL);
	assert_int_equal(tally_ratelimit_reset(NULL, "r", ver,
					       TALLY_COUNTER_BOTH, &m, &v),
			 TALLY_EINVAL);
	assert_int_equal(tally_ratelimit_remove(NULL, "r", &v), TALLY_EINVAL);
	assert_world(f, &w0);

	for (size_t i = 0; i < 3; i++) {
		const char *k = bad_keys[i];
		int want = bad_key_rc[i];

		assert_int_equal(tally_ratelimit_upsert(f->s, k, &good, &v),
				 want);
		assert_int_equal(tally_ratelimit_get(f->s, k, &v), want);
		assert_int_equal(tally_ratelimit_bump(f->s, k, 1, 1, &v), want);
		assert_int_equal(tally_ratelimit_check(f->s, k, &m, &v), want);
		assert_int_equal(
			tally_ratelimit_try_consume(f->s, k, 1, 1, &m, &v),
			want);
		assert_int_equal(tally_ratelimit_reset(f->s, k, ver,
						       TALLY_COUNTER_BOTH, &m,
						       &v),
				 want);
		assert_int_equal(tally_ratelimit_remove(f->s, k, &v), want);
		assert_world(f, &w0);
	}

	assert_int_equal(tally_ratelimit_upsert(f->s, "r", NULL, &v),
			 TALLY_EINVAL);
	assert_int_equal(tally_ratelimit_upsert(f->s, "new", NULL, &v),
			 TALLY_EINVAL);
	assert_int_equal(tally_ratelimit_get(f->s, "r", NULL), TALLY_EINVAL);
	assert_world(f, &w0);

	for (int k = 0; k < 2; k++) {
		const char *key = k == 0 ? "r" : "new";

		c = good;
		c.tokens.period = (tally_period){0, TALLY_PERIOD_NONE};
		assert_int_equal(tally_ratelimit_upsert(f->s, key, &c, &v),
				 TALLY_EPERIOD);
		c = good;
		c.requests.period = (tally_period){0, TALLY_PERIOD_NONE};
		assert_int_equal(tally_ratelimit_upsert(f->s, key, &c, &v),
				 TALLY_EPERIOD);
		c = good;
		c.requests.period = (tally_period){-3, TALLY_PERIOD_FIXED};
		assert_int_equal(tally_ratelimit_upsert(f->s, key, &c, &v),
				 TALLY_EPERIOD);
		c = good;
		c.tokens.period = (tally_period){1, 42};
		assert_int_equal(tally_ratelimit_upsert(f->s, key, &c, &v),
				 TALLY_EPERIOD);
		c = good;
		c.tokens.max = -1;
		assert_int_equal(tally_ratelimit_upsert(f->s, key, &c, &v),
				 TALLY_EINVAL);
		c = good;
		c.requests.max = INT64_MIN;
		assert_int_equal(tally_ratelimit_upsert(f->s, key, &c, &v),
				 TALLY_EINVAL);
		c = good;
		c.utc_offset_minutes = 1440;
		assert_int_equal(tally_ratelimit_upsert(f->s, key, &c, &v),
				 TALLY_EINVAL);
		c.utc_offset_minutes = -1440;
		assert_int_equal(tally_ratelimit_upsert(f->s, key, &c, &v),
				 TALLY_EINVAL);
		assert_world(f, &w0);
	}

	/* Negative amounts on either counter. */
	assert_int_equal(tally_ratelimit_bump(f->s, "r", -1, 0, &v),
			 TALLY_EINVAL);
	assert_int_equal(tally_ratelimit_bump(f->s, "r", 0, -1, &v),
			 TALLY_EINVAL);
	assert_int_equal(tally_ratelimit_bump(f->s, "r", INT64_MIN, 5, &v),
			 TALLY_EINVAL);
	assert_int_equal(tally_ratelimit_try_consume(f->s, "r", -1, 0, &m, &v),
			 TALLY_EINVAL);
	assert_int_equal(tally_ratelimit_try_consume(f->s, "r", 0, -1, &m, &v),
			 TALLY_EINVAL);
	assert_world(f, &w0);

	/* Overflow on either counter: neither is added. */
	assert_int_equal(tally_ratelimit_bump(f->s, "rovf", 2, 0, &v),
			 TALLY_EOVERFLOW);
	assert_int_equal(tally_ratelimit_bump(f->s, "rovf", 0, 2, &v),
			 TALLY_EOVERFLOW);
	assert_int_equal(tally_ratelimit_bump(f->s, "rovf", 1, 2, &v),
			 TALLY_EOVERFLOW);
	assert_int_equal(tally_ratelimit_bump(f->s, "rovf", 2, 1, &v),
			 TALLY_EOVERFLOW);
	assert_int_equal(
		tally_ratelimit_try_consume(f->s, "rovf", 2, 0, &m, &v),
		TALLY_EOVERFLOW);
	assert_int_equal(
		tally_ratelimit_try_consume(f->s, "rovf", 0, 2, &m, &v),
		TALLY_EOVERFLOW);
	assert_world(f, &w0);

	/* Reset masks: empty or unknown bits. */
	for (size_t i = 0; i < sizeof bad_masks / sizeof bad_masks[0]; i++) {
		m = 0xdead;
		assert_int_equal(tally_ratelimit_reset(f->s, "r", ver,
						       bad_masks[i], &m, &v),
				 TALLY_EINVAL);
		assert_int_equal(tally_ratelimit_reset(f->s, "new", ver,
						       bad_masks[i], &m, &v),
				 TALLY_EINVAL);
	}
	assert_world(f, &w0);

	/* Normal outcomes that change nothing. */
	assert_int_equal(tally_ratelimit_reset(f->s, "r", ver + 1,
					       TALLY_COUNTER_BOTH, &m, &v),
			 TALLY_CONFLICT);
	assert_int_equal(tally_ratelimit_try_consume(f->s, "r", 1, 9, &m, &v),
			 TALLY_LIMITED);
	assert_int_equal(m, TALLY_COUNTER_REQUESTS);
	assert_world(f, &w0);
}

static void
test_bad_input_store(void **state)
{
	struct fx *f = *state;
	tally_stats st = TALLY_STATS_INIT;
	tally_period p = {7, 7};
	char buf[16];
	size_t rolled = 99;
	struct world w0;

	world_setup(f);
	w0 = world_of(f);
	assert_int_equal(tally_store_stats(NULL, &st), TALLY_EINVAL);
	assert_int_equal(tally_store_stats(f->s, NULL), TALLY_EINVAL);
	assert_int_equal(tally_sweep(NULL, log_roll, &f->cb, &rolled),
			 TALLY_EINVAL);
	assert_int_equal(tally_sweep(NULL, NULL, NULL, NULL), TALLY_EINVAL);
	assert_int_equal(f->cb.n, 0);
	assert_int_equal(tally_period_parse(NULL, &p), TALLY_EINVAL);
	assert_int_equal(tally_period_parse("1h", NULL), TALLY_EINVAL);
	assert_int_equal(tally_period_parse("0h", &p), TALLY_EPERIOD);
	assert_int_equal(tally_period_parse("1x", &p), TALLY_EPERIOD);
	assert_int_equal(p.count, 7);
	assert_int_equal(p.unit, 7);
	assert_int_equal(tally_period_format(NULL, buf, sizeof buf),
			 TALLY_EINVAL);
	p = P("1h");
	assert_int_equal(tally_period_format(&p, NULL, 5), TALLY_EINVAL);
	p.count = 0;
	assert_int_equal(tally_period_format(&p, buf, sizeof buf),
			 TALLY_EPERIOD);
	assert_world(f, &w0);
}

/* A coarse clock 5 ms behind the precise one (within the margin). */
static int64_t
lagging_coarse(void *ctx)
{
	return fake_clock_read(ctx) - 5 * NS_PER_SEC / 1000;
}

/*
 * A sliding counter through the store: the boundary burst a fixed window
 * lets through is gone, the estimate decides at the precise time even when
 * the store has a coarse clock, views show prev, admission reports the
 * estimate and a finite retry-after, and a refused sliding counter's
 * header reset is its retry-after.
 */
static void
test_sliding_through_the_store(void **state)
{
	const int64_t t0 = T(2026, 5, 5, 5, 0, 0); /* a second boundary */
	struct fake_clock clock = {t0 - 1};
	tally_store_options o = test_options(&clock, NULL);
	tally_ratelimit_config c = TALLY_RATELIMIT_CONFIG_INIT;
	tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
	tally_charge ch = {
		TALLY_KIND_RATELIMIT, 0, "s", TALLY_KEY_STRLEN, 0, 3, 0};
	tally_decision d = TALLY_DECISION_INIT;
	tally_hold h = TALLY_HOLD_INIT;
	tally_header_policy pol = {"tok", 0, TALLY_COUNTER_TOKENS,
				   TALLY_UNIT_TOKENS};
	char buf[512];
	unsigned lim = 0;
	int passed[2] = {0, 0};
	tally_store *s;

	(void)state;
	o.coarse_clock = lagging_coarse;
	o.coarse_clock_ctx = &clock;
	c.tokens.has_max = true;
	c.tokens.max = 10;
	c.tokens.period = P("1s");
	c.requests.period = P("1s");
	c.calendar_aligned = true;
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	assert_int_equal(tally_ratelimit_upsert(s, "f", &c, NULL),
			 TALLY_CREATED);
	c.tokens_algorithm = TALLY_ALGORITHM_SLIDING;
	assert_int_equal(tally_ratelimit_upsert(s, "s", &c, &v), TALLY_CREATED);
	assert_int_equal(v.config.tokens_algorithm, TALLY_ALGORITHM_SLIDING);
	/* 1 ns before a boundary and at it: fixed passes 20, sliding 10. */
	for (int k = 0; k < 2; k++) {
		fake_clock_set(&clock, t0 - 1 + k);
		for (int i = 0; i < 15; i++) {
			passed[0] +=
				tally_ratelimit_try_consume(s, "f", 1, 0, NULL,
							    NULL) == TALLY_OK;
			passed[1] +=
				tally_ratelimit_try_consume(s, "s", 1, 0, &lim,
							    NULL) == TALLY_OK;
		}
	}
	assert_int_equal(passed[0], 20);
	assert_int_equal(passed[1], 10);
	assert_int_equal(lim, TALLY_COUNTER_TOKENS);
	/* Refusals wrote nothing: the stored window is still the last one
	 * (a read does not roll). */
	assert_int_equal(tally_ratelimit_get(s, "s", &v), TALLY_OK);
	assert_int_equal(v.tokens.usage, 10);
	assert_int_equal(v.tokens_previous, 0);
	assert_int_equal(v.tokens.window_start, t0 - NS_PER_SEC);
	/* At t0 + 100 ms prev weighs 9: one unit passes, though the coarse
	 * reading (t0 + 95 ms: ceil(9.05) = 10) would refuse it. */
	fake_clock_set(&clock, t0 + 100 * NS_PER_SEC / 1000 - 1);
	assert_int_equal(tally_ratelimit_check(s, "s", &lim, NULL),
			 TALLY_LIMITED);
	fake_clock_set(&clock, t0 + 100 * NS_PER_SEC / 1000);
	assert_int_equal(tally_ratelimit_check(s, "s", &lim, NULL), TALLY_OK);
	assert_int_equal(tally_ratelimit_try_consume(s, "s", 1, 0, &lim, &v),
			 TALLY_OK);
	assert_int_equal(v.tokens.usage, 1);
	assert_int_equal(v.tokens_previous, 10);
	assert_int_equal(v.tokens.window_start, t0);
	assert_int_equal(tally_ratelimit_try_consume(s, "s", 1, 0, &lim, &v),
			 TALLY_LIMITED);
	/* Admission of 3 is refused: used = 9 + 1 = 10; 3 fit once the
	 * estimate is 7, ceil(10 * (1 - e)) + 1 <= 7 at e = 0.4 s. */
	assert_int_equal(
		tally_admit(s, &ch, 1, TALLY_ADMIT_HOLD, NS_PER_SEC, &h, &d),
		TALLY_LIMITED);
	assert_int_equal(d.refused, 0);
	assert_true((d.limit[0].c[0].flags & TALLY_DECISION_SLIDING) != 0);
	assert_int_equal(d.limit[0].c[0].used, 10);
	assert_int_equal(d.limit[0].c[0].remaining, 0);
	assert_int_equal(d.limit[0].c[0].retry_after, 300 * NS_PER_SEC / 1000);
	assert_int_equal(d.limit[0].c[0].window_end, t0 + NS_PER_SEC);
	assert_true(tally_headers_format(&d, &pol, 1,
					 TALLY_HEADERS_IETF |
						 TALLY_HEADERS_RETRY_AFTER,
					 buf, sizeof buf) > 0);
	assert_non_null(strstr(buf, "RateLimit: \"tok\";r=0;t=1"));
	assert_non_null(strstr(buf, "Retry-After: 1"));
	/* At t0 + 400 ms the hold passes; settled below its estimate, the
	 * actual is what counts. */
	fake_clock_set(&clock, t0 + 400 * NS_PER_SEC / 1000);
	assert_int_equal(
		tally_admit(s, &ch, 1, TALLY_ADMIT_HOLD, NS_PER_SEC, &h, &d),
		TALLY_OK);
	assert_int_equal(d.limit[0].c[0].held, 3);
	assert_int_equal(d.limit[0].c[0].used, 7);
	assert_int_equal(d.limit[0].c[0].remaining, 0);
	{
		tally_cost cost = {0, 2, 0};

		assert_int_equal(tally_settle(s, &h, &cost, 1, &d), TALLY_OK);
	}
	assert_int_equal(tally_ratelimit_get(s, "s", &v), TALLY_OK);
	assert_int_equal(v.tokens.usage, 3);
	assert_int_equal(v.tokens_held, 0);
	assert_int_equal(v.tokens_previous, 10);
	tally_store_destroy(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lifecycle),
		cmocka_unit_test(test_result_codes),
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_sliding_through_the_store),
		FX_TEST(test_upsert_created_then_ok),
		FX_TEST(test_kinds_are_separate),
		FX_TEST(test_budget_end_to_end),
		FX_TEST(test_budget_no_period),
		FX_TEST(test_ratelimit_end_to_end),
		FX_TEST(test_ratelimit_unlimited_counter),
		FX_TEST(test_sweep),
		FX_TEST(test_sweep_count_matches_callback),
		FX_TEST(test_listener_hears_every_cause),
		FX_TEST(test_conservation),
		cmocka_unit_test(test_listener_may_call_the_store),
		FX_TEST(test_thread_records_recycled),
		FX_TEST(test_keys),
		FX_TEST(test_many_keys),
		FX_TEST(test_bad_input_budget),
		FX_TEST(test_bad_input_ratelimit),
		FX_TEST(test_bad_input_store),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
