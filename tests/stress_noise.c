/*
 * Conservation under every thread and key count of interest: 2 and 8
 * threads, on 1, 4 and 16 budgets and as many rate limits. Workers bump,
 * try_consume, check and get; now and then one resets with an observed
 * version or removes and re-creates a key; a sweeper moves the fake clock
 * across window boundaries and sweeps. Every unit a call reported applied
 * must be found exactly once: in a closed window (roll listener), in the
 * last snapshot of a removed record, or in the final state.
 *
 * Built as a normal stress test everywhere; in the TALLY_SCHED_NOISE build
 * (preset "noise") every internal atomic access may yield, which makes the
 * 2-core machine interleave far more finely.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "support.h"

#ifdef TALLY_SCHED_NOISE
#define OPS_PER_THREAD 1500
#else
#define OPS_PER_THREAD 20000
#endif
#define MAX_KEYS 16
#define MAX_THREADS 8

/* [kind 0 budget, 1 rate][key][counter 0 budget/tokens, 1 requests] */
struct sums {
	int64_t v[2][MAX_KEYS][2];
};

static void
sums_add(struct sums *s, int kind, int key, int counter, int64_t x)
{
	__atomic_add_fetch(&s->v[kind][key][counter], x, __ATOMIC_RELAXED);
}

struct run {
	tally_store *store;
	struct fake_clock clock;
	int keys;
	int threads;
	struct sums closed;  /* usage_before of every roll */
	struct sums removed; /* usage in the last snapshot of removed records */
	int stop;            /* atomic */
	pthread_barrier_t start;
};

struct worker {
	pthread_t tid;
	struct run *run;
	uint64_t rng;
	struct sums applied;
	long errors;
	int last_bad_rc;
};

static uint64_t
rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void
key_of(char *buf, size_t n, int kind, int key)
{
	snprintf(buf, n, "%s-%d", kind == 0 ? "budget" : "rate", key);
}

static int
key_index(const char *key)
{
	const char *p = strchr(key, '-');

	return p != NULL ? atoi(p + 1) : -1;
}

static void
on_roll(const tally_roll *r, void *ctx)
{
	struct run *run = ctx;
	int kind = r->kind == TALLY_KIND_BUDGET ? 0 : 1;
	int counter = r->counter == TALLY_COUNTER_REQUESTS ? 1 : 0;
	int key = key_index(r->key);

	if (key >= 0 && key < MAX_KEYS)
		sums_add(&run->closed, kind, key, counter, r->usage_before);
}

static void
budget_config(tally_budget_config *c, int key)
{
	tally_budget_config d = TALLY_BUDGET_CONFIG_INIT;

	*c = d;
	c->max_limit = 500;
	c->period = P(key % 2 ? "1s" : "3s");
	c->calendar_aligned = key % 3 == 0;
	c->utc_offset_minutes = key % 3 == 0 ? 330 : 0;
}

static void
rate_config(tally_ratelimit_config *c, int key)
{
	memset(c, 0, sizeof *c);
	c->size = sizeof *c;
	c->anchor = TALLY_ANCHOR_DEFAULT;
	c->tokens.has_max = true;
	c->tokens.max = 400;
	c->tokens.period = P("2s");
	c->requests.has_max = key % 2 == 0;
	c->requests.max = 40;
	c->requests.period = P("5s");
	c->calendar_aligned = key % 2 == 1;
}

static void
bad(struct worker *w, int rc)
{
	w->errors++;
	w->last_bad_rc = rc;
}

static void
budget_op(struct worker *w, int key)
{
	struct run *run = w->run;
	char name[32];
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;
	int64_t amount = (int64_t)(rnd(&w->rng) % 50);
	unsigned what = (unsigned)(rnd(&w->rng) % 200);
	int rc;

	key_of(name, sizeof name, 0, key);
	if (what < 80) {
		rc = tally_budget_bump(run->store, name, amount, &v);
		if (rc == TALLY_OK)
			sums_add(&w->applied, 0, key, 0, amount);
		else if (rc != TALLY_ENOENT)
			bad(w, rc);
	} else if (what < 150) {
		rc = tally_budget_try_consume(run->store, name, amount, &v);
		if (rc == TALLY_OK)
			sums_add(&w->applied, 0, key, 0, amount);
		else if (rc != TALLY_LIMITED && rc != TALLY_ENOENT)
			bad(w, rc);
		if (rc == TALLY_OK && v.usage > v.config.max_limit)
			bad(w, -9999);
	} else if (what < 190) {
		rc = tally_budget_check(run->store, name, &v);
		if (rc < 0 && rc != TALLY_ENOENT)
			bad(w, rc);
	} else if (what < 197) {
		rc = tally_budget_get(run->store, name, &v);
		if (rc == TALLY_OK)
			rc = tally_budget_reset(run->store, name, v.version,
						NULL);
		if (rc < 0 && rc != TALLY_ENOENT)
			bad(w, rc);
	} else {
		rc = tally_budget_remove(run->store, name, &v);
		if (rc == TALLY_OK)
			sums_add(&run->removed, 0, key, 0, v.usage);
		else if (rc != TALLY_ENOENT)
			bad(w, rc);
		budget_config(&c, key);
		rc = tally_budget_upsert(run->store, name, &c, NULL);
		if (rc < 0)
			bad(w, rc);
	}
}

static void
rate_op(struct worker *w, int key)
{
	struct run *run = w->run;
	char name[32];
	tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
	tally_ratelimit_config c = TALLY_RATELIMIT_CONFIG_INIT;
	int64_t tokens = (int64_t)(rnd(&w->rng) % 40);
	unsigned what = (unsigned)(rnd(&w->rng) % 200), mask = 0;
	int rc;

	key_of(name, sizeof name, 1, key);
	if (what < 80) {
		rc = tally_ratelimit_bump(run->store, name, tokens, 1, &v);
		if (rc == TALLY_OK) {
			sums_add(&w->applied, 1, key, 0, tokens);
			sums_add(&w->applied, 1, key, 1, 1);
		} else if (rc != TALLY_ENOENT) {
			bad(w, rc);
		}
	} else if (what < 150) {
		rc = tally_ratelimit_try_consume(run->store, name, tokens, 1,
						 &mask, &v);
		if (rc == TALLY_OK) {
			sums_add(&w->applied, 1, key, 0, tokens);
			sums_add(&w->applied, 1, key, 1, 1);
		} else if (rc != TALLY_LIMITED && rc != TALLY_ENOENT) {
			bad(w, rc);
		}
	} else if (what < 190) {
		rc = tally_ratelimit_check(run->store, name, &mask, &v);
		if (rc < 0 && rc != TALLY_ENOENT)
			bad(w, rc);
	} else if (what < 197) {
		rc = tally_ratelimit_get(run->store, name, &v);
		if (rc == TALLY_OK)
			rc = tally_ratelimit_reset(
				run->store, name, v.version,
				(unsigned)(rnd(&w->rng) % 3 + 1) |
					(rnd(&w->rng) % 2 ? TALLY_RESET_DUE_ONLY
							  : 0u),
				&mask, NULL);
		if (rc < 0 && rc != TALLY_ENOENT)
			bad(w, rc);
	} else {
		rc = tally_ratelimit_remove(run->store, name, &v);
		if (rc == TALLY_OK) {
			sums_add(&run->removed, 1, key, 0, v.tokens.usage);
			sums_add(&run->removed, 1, key, 1, v.requests.usage);
		} else if (rc != TALLY_ENOENT) {
			bad(w, rc);
		}
		rate_config(&c, key);
		rc = tally_ratelimit_upsert(run->store, name, &c, NULL);
		if (rc < 0)
			bad(w, rc);
	}
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;

	pthread_barrier_wait(&w->run->start);
	for (int i = 0; i < OPS_PER_THREAD; i++) {
		int key = (int)(rnd(&w->rng) % (uint64_t)w->run->keys);

		/* Time moves with the traffic too, so windows roll inline
		 * even when the sweeper is not scheduled. */
		if (rnd(&w->rng) % 64 == 0)
			fake_clock_advance(&w->run->clock,
					   (int64_t)(rnd(&w->rng) % 50) *
						   1000000);

		if (rnd(&w->rng) & 1)
			budget_op(w, key);
		else
			rate_op(w, key);
	}
	return NULL;
}

static void *
sweeper_main(void *arg)
{
	struct run *run = arg;
	uint64_t rng = 42;
	long bad_sweeps = 0;

	pthread_barrier_wait(&run->start);
	while (!__atomic_load_n(&run->stop, __ATOMIC_ACQUIRE)) {
		size_t rolled;

		fake_clock_advance(&run->clock,
				   (int64_t)(rnd(&rng) % 300) * 1000000);
		if (tally_sweep(run->store, NULL, NULL, &rolled) != TALLY_OK)
			bad_sweeps++;
		sched_yield();
	}
	return (void *)(intptr_t)bad_sweeps;
}

static void
run_config(int threads, int keys)
{
	struct run run;
	struct worker w[MAX_THREADS];
	struct test_alloc a = {0};
	tally_store_options o;
	pthread_t sweeper;
	void *sweeper_bad;
	struct sums applied = {{{{0}}}};

	memset(&run, 0, sizeof run);
	fake_clock_set(&run.clock, T(2026, 12, 31, 23, 59, 50));
	run.keys = keys;
	run.threads = threads;
	o = test_options(&run.clock, &a);
	o.on_roll = on_roll;
	o.on_roll_ctx = &run;
	assert_int_equal(tally_store_create(&run.store, &o), TALLY_OK);
	for (int k = 0; k < keys; k++) {
		char name[32];
		tally_budget_config bc = TALLY_BUDGET_CONFIG_INIT;
		tally_ratelimit_config rc = TALLY_RATELIMIT_CONFIG_INIT;
		budget_config(&bc, k);
		key_of(name, sizeof name, 0, k);
		assert_int_equal(
			tally_budget_upsert(run.store, name, &bc, NULL),
			TALLY_CREATED);
		rate_config(&rc, k);
		key_of(name, sizeof name, 1, k);
		assert_int_equal(
			tally_ratelimit_upsert(run.store, name, &rc, NULL),
			TALLY_CREATED);
	}

	pthread_barrier_init(&run.start, NULL, (unsigned)threads + 1);
	pthread_create(&sweeper, NULL, sweeper_main, &run);
	for (int i = 0; i < threads; i++) {
		memset(&w[i], 0, sizeof w[i]);
		w[i].run = &run;
		w[i].rng = (uint64_t)(i + 1) * 7919u + (uint64_t)keys;
		pthread_create(&w[i].tid, NULL, worker_main, &w[i]);
	}
	for (int i = 0; i < threads; i++)
		pthread_join(w[i].tid, NULL);
	__atomic_store_n(&run.stop, 1, __ATOMIC_RELEASE);
	pthread_join(sweeper, &sweeper_bad);
	pthread_barrier_destroy(&run.start);

	assert_int_equal((intptr_t)sweeper_bad, 0);
	for (int i = 0; i < threads; i++) {
		if (w[i].errors != 0)
			print_error("worker %d: %ld errors, last %d\n", i,
				    w[i].errors, w[i].last_bad_rc);
		assert_int_equal(w[i].errors, 0);
		for (int kind = 0; kind < 2; kind++)
			for (int k = 0; k < keys; k++)
				for (int c = 0; c < 2; c++)
					applied.v[kind][k][c] +=
						w[i].applied.v[kind][k][c];
	}
	for (int k = 0; k < keys; k++) {
		char name[32];
		tally_budget_view bv = TALLY_BUDGET_VIEW_INIT;
		tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
		int64_t found;

		key_of(name, sizeof name, 0, k);
		assert_int_equal(tally_budget_get(run.store, name, &bv),
				 TALLY_OK);
		found = bv.usage + run.closed.v[0][k][0] +
			run.removed.v[0][k][0];
		if (found != applied.v[0][k][0])
			print_error("%d threads, %d keys: %s applied %lld, "
				    "found %lld\n",
				    threads, keys, name,
				    (long long)applied.v[0][k][0],
				    (long long)found);
		assert_int_equal(found, applied.v[0][k][0]);

		key_of(name, sizeof name, 1, k);
		assert_int_equal(tally_ratelimit_get(run.store, name, &rv),
				 TALLY_OK);
		assert_int_equal(rv.tokens.usage + run.closed.v[1][k][0] +
					 run.removed.v[1][k][0],
				 applied.v[1][k][0]);
		assert_int_equal(rv.requests.usage + run.closed.v[1][k][1] +
					 run.removed.v[1][k][1],
				 applied.v[1][k][1]);
	}
	{
		tally_stats st = TALLY_STATS_INIT;
		assert_int_equal(tally_store_stats(run.store, &st), TALLY_OK);
		/* The run did roll windows, inline and by sweeps. */
		assert_true(st.rolls > 10);
	}
	tally_store_destroy(run.store);
	assert_int_equal(a.live_blocks, 0);
	assert_int_equal(a.live_bytes, 0);
}

static void
test_2_threads_1_key(void **state)
{
	(void)state;
	run_config(2, 1);
}

static void
test_2_threads_4_keys(void **state)
{
	(void)state;
	run_config(2, 4);
}

static void
test_2_threads_16_keys(void **state)
{
	(void)state;
	run_config(2, 16);
}

static void
test_8_threads_1_key(void **state)
{
	(void)state;
	run_config(8, 1);
}

static void
test_8_threads_4_keys(void **state)
{
	(void)state;
	run_config(8, 4);
}

static void
test_8_threads_16_keys(void **state)
{
	(void)state;
	run_config(8, 16);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_2_threads_1_key),
		cmocka_unit_test(test_2_threads_4_keys),
		cmocka_unit_test(test_2_threads_16_keys),
		cmocka_unit_test(test_8_threads_1_key),
		cmocka_unit_test(test_8_threads_4_keys),
		cmocka_unit_test(test_8_threads_16_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
