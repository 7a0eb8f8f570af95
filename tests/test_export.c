/*
 * tally_export (tally.h, "Export"): every record once, each from one
 * snapshot, in chunks of any size, a callback that stops the walk or calls
 * the store, records removed and created during a walk, and every bad
 * cursor; with writer threads, every record's view is one snapshot's (the
 * writers keep an invariant inside each snapshot that a torn copy would
 * break) and the walk still finds every record once.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"
#include "tally.h"

#define NREC 600 /* of each kind: several cell slabs, both key sizes */

struct seen {
	tally_store *store;
	unsigned count[2][NREC]; /* [kind - 1][index] */
	unsigned other;          /* records not made by mk_store */
	unsigned calls;
	unsigned stop_at;   /* return 42 at this call (0: never) */
	bool call_store;    /* bump the record from the callback */
	bool remove_ahead;  /* remove b<i+1> when given b<i> */
	bool check_views;   /* the view equals a get's */
	unsigned bad;       /* views that differed */
	int64_t budget_mod; /* usage % this == 0 (0: no check) */
	unsigned torn;      /* views that broke the invariant */
};

/* Key of record i of a kind: short ones and 200-byte ones, some with a
 * NUL inside (exported as key_len bytes). */
static size_t
key_of(unsigned kind, unsigned i, char *buf)
{
	size_t n = (size_t)snprintf(buf, 16, "%c%u", kind == 1 ? 'b' : 'r', i);

	if (i % 3 == 0) {
		memset(buf + n, 'x', 200 - n);
		n = 200;
	}
	if (i % 5 == 0) { /* "b5\0z" */
		buf[n++] = '\0';
		buf[n++] = 'z';
	}
	return n;
}

/* The index of a key of kind, or -1. */
static int
index_of(unsigned kind, const char *key, size_t len)
{
	char buf[256];

	for (unsigned i = 0; i < NREC; i++) {
		size_t n = key_of(kind, i, buf);

		if (n == len && memcmp(buf, key, len) == 0)
			return (int)i;
	}
	return -1;
}

static tally_store *
mk_store(struct fake_clock *clock)
{
	tally_store_options o = test_options(clock, NULL);
	tally_budget_config b = TALLY_BUDGET_CONFIG_INIT;
	tally_ratelimit_config r = TALLY_RATELIMIT_CONFIG_INIT;
	tally_store *s;
	char key[256];

	b.max_limit = 1000000;
	b.period = P("1h");
	r.tokens.has_max = true;
	r.tokens.max = 1000000;
	r.tokens.period = P("1m");
	r.requests.period = P("1s");
	r.requests_algorithm = TALLY_ALGORITHM_SLIDING;
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	for (unsigned i = 0; i < NREC; i++) {
		size_t n = key_of(1, i, key);

		assert_int_equal(tally_budget_upsert_n(s, key, n, &b, NULL),
				 TALLY_CREATED);
		assert_int_equal(tally_budget_bump_n(s, key, n, 7 * i, NULL),
				 TALLY_OK);
		n = key_of(2, i, key);
		assert_int_equal(tally_ratelimit_upsert_n(s, key, n, &r, NULL),
				 TALLY_CREATED);
		assert_int_equal(
			tally_ratelimit_bump_n(s, key, n, 3 * i, i, NULL),
			TALLY_OK);
	}
	return s;
}

static bool
budget_eq(const tally_budget_view *a, const tally_budget_view *b)
{
	return a->size == b->size && a->usage == b->usage &&
	       a->held == b->held && a->holds == b->holds &&
	       a->window_start == b->window_start &&
	       a->window_end == b->window_end && a->version == b->version &&
	       a->incarnation == b->incarnation &&
	       a->config.max_limit == b->config.max_limit &&
	       a->config.period.count == b->config.period.count &&
	       a->config.period.unit == b->config.period.unit &&
	       a->config.anchor == b->config.anchor;
}

static bool
counter_eq(const tally_counter_view *a, const tally_counter_view *b)
{
	return a->usage == b->usage && a->window_start == b->window_start &&
	       a->window_end == b->window_end;
}

static bool
ratelimit_eq(const tally_ratelimit_view *a, const tally_ratelimit_view *b)
{
	return a->size == b->size && counter_eq(&a->tokens, &b->tokens) &&
	       counter_eq(&a->requests, &b->requests) &&
	       a->tokens_held == b->tokens_held &&
	       a->requests_held == b->requests_held && a->holds == b->holds &&
	       a->tokens_previous == b->tokens_previous &&
	       a->requests_previous == b->requests_previous &&
	       a->version == b->version && a->incarnation == b->incarnation &&
	       a->config.tokens.max == b->config.tokens.max &&
	       a->config.requests_algorithm == b->config.requests_algorithm &&
	       a->config.anchor == b->config.anchor;
}

static int
on_record(void *ctx, const tally_record *rec)
{
	struct seen *z = ctx;
	int i;

	z->calls++;
	if (rec->size != sizeof *rec || rec->key[rec->key_len] != '\0' ||
	    (rec->kind != TALLY_KIND_BUDGET &&
	     rec->kind != TALLY_KIND_RATELIMIT)) {
		z->bad++;
		return 0;
	}
	i = index_of(rec->kind, rec->key, rec->key_len);
	if (i < 0) {
		z->other++;
		return 0;
	}
	z->count[rec->kind - 1][i]++;
	if (rec->kind == TALLY_KIND_BUDGET) {
		tally_budget_view v = TALLY_BUDGET_VIEW_INIT;

		/* The other view is zero but its size. */
		if (rec->ratelimit.size != sizeof rec->ratelimit ||
		    rec->ratelimit.version != 0 || rec->ratelimit.tokens.usage)
			z->bad++;
		if (z->budget_mod != 0 && rec->budget.usage % z->budget_mod)
			z->torn++;
		if (z->check_views &&
		    (tally_budget_get_n(z->store, rec->key, rec->key_len, &v) !=
			     TALLY_OK ||
		     !budget_eq(&v, &rec->budget)))
			z->bad++;
		if (z->call_store &&
		    tally_budget_bump_n(z->store, rec->key, rec->key_len, 0,
					NULL) != TALLY_OK)
			z->bad++;
		if (z->remove_ahead && i + 1 < NREC) {
			char key[256];
			size_t n = key_of(1, (unsigned)i + 1, key);

			(void)tally_budget_remove_n(z->store, key, n, NULL);
		}
	} else {
		tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;

		if (rec->budget.size != sizeof rec->budget ||
		    rec->budget.version != 0 || rec->budget.usage != 0)
			z->bad++;
		if (z->budget_mod != 0 &&
		    rec->ratelimit.tokens.usage !=
			    3 * rec->ratelimit.requests.usage)
			z->torn++;
		if (z->check_views &&
		    (tally_ratelimit_get_n(z->store, rec->key, rec->key_len,
					   &v) != TALLY_OK ||
		     !ratelimit_eq(&v, &rec->ratelimit)))
			z->bad++;
	}
	if (z->stop_at != 0 && z->calls == z->stop_at)
		return 42;
	return 0;
}

static void
assert_each_once(const struct seen *z)
{
	for (unsigned k = 0; k < 2; k++)
		for (unsigned i = 0; i < NREC; i++)
			assert_int_equal(z->count[k][i], 1);
	assert_int_equal(z->other, 0);
	assert_int_equal(z->bad, 0);
}

/* The walk to its end in calls of at most max records; returns the calls
 * that returned OK. */
static unsigned
walk(tally_store *s, tally_cursor *c, size_t max, struct seen *z)
{
	unsigned calls = 0;

	while (!c->done) {
		size_t before = z->calls;

		assert_int_equal(tally_export(s, c, max, on_record, z),
				 TALLY_OK);
		if (max != 0)
			assert_true(z->calls - before <= max);
		calls++;
		assert_true(calls < 10 * 2 * NREC);
	}
	return calls;
}

static void
test_every_record_once(void **state)
{
	struct fake_clock clock = {T(2026, 5, 5, 5, 0, 0)};
	tally_store *s = mk_store(&clock);
	static const size_t maxes[] = {0, 1, 7, 256, 5000};

	(void)state;
	for (size_t m = 0; m < sizeof maxes / sizeof *maxes; m++) {
		tally_cursor c = TALLY_CURSOR_INIT;
		struct seen *z = calloc(1, sizeof *z);
		unsigned calls;

		assert_non_null(z);
		z->store = s;
		z->check_views = true;
		calls = walk(s, &c, maxes[m], z);
		assert_each_once(z);
		assert_int_equal(z->calls, 2 * NREC);
		if (maxes[m] == 1)
			assert_true(calls >= 2 * NREC);
		/* A done cursor gives nothing more. */
		assert_int_equal(tally_export(s, &c, 0, on_record, z),
				 TALLY_OK);
		assert_true(c.done);
		assert_int_equal(z->calls, 2 * NREC);
		free(z);
	}
	tally_store_destroy(s);
}

static void
test_empty_store(void **state)
{
	struct fake_clock clock = {T(2026, 5, 5, 5, 0, 0)};
	tally_store_options o = test_options(&clock, NULL);
	tally_cursor c = TALLY_CURSOR_INIT;
	struct seen z;
	tally_store *s;

	(void)state;
	memset(&z, 0, sizeof z);
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	assert_int_equal(tally_export(s, &c, 0, on_record, &z), TALLY_OK);
	assert_true(c.done);
	assert_int_equal(z.calls, 0);
	/* Still done, still nothing (and still this store's). */
	assert_int_equal(tally_export(s, &c, 0, on_record, &z), TALLY_OK);
	assert_int_equal(z.calls, 0);
	tally_store_destroy(s);
}

/* fn's nonzero result stops the walk and is returned; the record it was
 * given is not given again. The callback may write and remove. */
static void
test_stop_and_call_the_store(void **state)
{
	struct fake_clock clock = {T(2026, 5, 5, 5, 0, 0)};
	tally_store *s = mk_store(&clock);
	tally_cursor c = TALLY_CURSOR_INIT;
	struct seen *z = calloc(1, sizeof *z);
	unsigned stops = 0;

	(void)state;
	assert_non_null(z);
	z->store = s;
	z->call_store = true;
	while (!c.done) {
		int rc;

		z->stop_at = z->calls + 97;
		rc = tally_export(s, &c, 0, on_record, z);
		if (rc == 42)
			stops++;
		else
			assert_int_equal(rc, TALLY_OK);
	}
	assert_each_once(z);
	assert_int_equal(stops, 2 * NREC / 97);
	free(z);
	tally_store_destroy(s);
}

/* Records removed ahead of the cursor are not given; records created
 * during the walk are given at most once. */
static void
test_removed_and_created_during(void **state)
{
	struct fake_clock clock = {T(2026, 5, 5, 5, 0, 0)};
	tally_store *s = mk_store(&clock);
	tally_budget_config b = TALLY_BUDGET_CONFIG_INIT;
	tally_cursor c = TALLY_CURSOR_INIT;
	struct seen *z = calloc(1, sizeof *z);
	unsigned given = 0, removed = 0;

	(void)state;
	assert_non_null(z);
	z->store = s;
	z->remove_ahead = true;
	b.max_limit = 5;
	b.period = P("1d");
	while (!c.done) {
		char key[32];

		assert_int_equal(tally_export(s, &c, 5, on_record, z),
				 TALLY_OK);
		snprintf(key, sizeof key, "new-%u", z->calls);
		assert_int_equal(tally_budget_upsert(s, key, &b, NULL),
				 TALLY_CREATED);
	}
	for (unsigned i = 0; i < NREC; i++) {
		char key[256];
		size_t n = key_of(1, i, key);
		tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
		bool live = tally_budget_get_n(s, key, n, &v) == TALLY_OK;

		assert_true(z->count[0][i] <= 1);
		/* A removed record was given only if reached first. */
		if (!live) {
			removed++;
			assert_true(z->count[0][i] == 0 ||
				    z->count[0][i - 1] == 1);
		} else {
			assert_int_equal(z->count[0][i], 1);
		}
		given += z->count[0][i];
		assert_int_equal(z->count[1][i], 1);
	}
	assert_true(removed > 0);
	assert_true(given < NREC);
	assert_int_equal(z->bad, 0);
	/* The new ones were given at most once each (other counts them). */
	assert_true(z->other <= z->calls);
	free(z);
	tally_store_destroy(s);
}

static int
count_only(void *ctx, const tally_record *rec)
{
	(void)rec;
	(*(unsigned *)ctx)++;
	return 0;
}

static void
test_bad_cursors(void **state)
{
	struct fake_clock clock = {T(2026, 5, 5, 5, 0, 0)};
	tally_store *s = mk_store(&clock), *other = mk_store(&clock);
	tally_cursor c = TALLY_CURSOR_INIT, bad;
	unsigned n = 0;

	(void)state;
	assert_int_equal(tally_export(NULL, &c, 0, count_only, &n),
			 TALLY_EINVAL);
	assert_int_equal(tally_export(s, NULL, 0, count_only, &n),
			 TALLY_EINVAL);
	assert_int_equal(tally_export(s, &c, 0, NULL, &n), TALLY_EINVAL);
	assert_int_equal(n, 0);
	assert_int_equal(tally_export(s, &c, 10, count_only, &n), TALLY_OK);
	assert_int_equal(n, 10);
	assert_false(c.done);
	/* Another store's cursor. */
	assert_int_equal(tally_export(other, &c, 10, count_only, &n),
			 TALLY_EINVAL);
	/* A slab that is no slab of this store, a cell past the slab, a
	 * position without a slab. */
	bad = c;
	bad.at[0] ^= 64;
	assert_int_equal(tally_export(s, &bad, 10, count_only, &n),
			 TALLY_EINVAL);
	bad = c;
	bad.at[1] = UINT64_C(1) << 40;
	assert_int_equal(tally_export(s, &bad, 10, count_only, &n),
			 TALLY_EINVAL);
	bad = c;
	bad.at[0] = 0;
	assert_int_equal(tally_export(s, &bad, 10, count_only, &n),
			 TALLY_EINVAL);
	assert_int_equal(n, 10);
	/* The real one goes on where it was. */
	while (!c.done)
		assert_int_equal(tally_export(s, &c, 0, count_only, &n),
				 TALLY_OK);
	assert_int_equal(n, 2 * NREC);
	tally_store_destroy(other);
	tally_store_destroy(s);
}

/* ---- with writers ------------------------------------------------------- */

struct writer {
	tally_store *store;
	unsigned seed;
	const int *stop;
	unsigned long writes;
	int failures;
};

/* Budgets grow by 7, rate limits by (3, 1): a torn copy of a snapshot
 * would break usage % 7 == 0 or tokens == 3 * requests. */
static void *
writer_main(void *arg)
{
	struct writer *w = arg;

	while (!__atomic_load_n(w->stop, __ATOMIC_ACQUIRE)) {
		char key[256];
		unsigned i;
		size_t n;

		w->seed = w->seed * 1103515245u + 12345u;
		i = (w->seed >> 8) % NREC;
		if (w->seed & 1) {
			n = key_of(1, i, key);
			w->failures += tally_budget_bump_n(w->store, key, n, 7,
							   NULL) != TALLY_OK;
		} else {
			n = key_of(2, i, key);
			w->failures +=
				tally_ratelimit_bump_n(w->store, key, n, 3, 1,
						       NULL) != TALLY_OK;
		}
		w->writes++;
	}
	return NULL;
}

static void
test_walks_beside_writers(void **state)
{
	struct fake_clock clock = {T(2026, 5, 5, 5, 0, 0)};
	tally_store *s = mk_store(&clock);
	struct writer w[2];
	pthread_t th[2];
	int stop = 0;

	(void)state;
	/* mk_store bumped budget i by 7 * i and rate limit i by (3i, i). */
	for (int i = 0; i < 2; i++) {
		w[i] = (struct writer){s, 17u + (unsigned)i, &stop, 0, 0};
		assert_int_equal(
			pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
	}
	for (int round = 0; round < 20; round++) {
		tally_cursor c = TALLY_CURSOR_INIT;
		struct seen *z = calloc(1, sizeof *z);

		assert_non_null(z);
		z->store = s;
		z->budget_mod = 7;
		(void)walk(s, &c, (size_t)(round % 4) * 50, z);
		assert_each_once(z);
		assert_int_equal(z->torn, 0);
		free(z);
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(w[i].failures, 0);
		assert_true(w[i].writes > 0);
	}
	tally_store_destroy(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_record_once),
		cmocka_unit_test(test_empty_store),
		cmocka_unit_test(test_stop_and_call_the_store),
		cmocka_unit_test(test_removed_and_created_during),
		cmocka_unit_test(test_bad_cursors),
		cmocka_unit_test(test_walks_beside_writers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
