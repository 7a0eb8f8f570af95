/*
 * A thread that stops inside an operation must not stop the others.
 *
 * The stalled thread bumps a budget whose window ends within a second:
 * its coarse clock reading cannot decide whether the window is due, so
 * the library reads the precise clock inside the thread's epoch section
 * (tally.h: the clocks may be read inside a section), and that clock
 * blocks until the test releases it. (The allocator is never called inside
 * a section any more.) Meanwhile other threads keep bumping: they must all
 * finish (no thread waits for the stalled one), and the store's pending
 * reclamation grows, since no grace period can pass. Once the stalled thread
 * is released and finishes, grace periods pass again and pending memory
 * drains back under the library's bound.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "thread.h" /* TALLY__PENDING_HIGH, TALLY__BATCH_CAP */
#include "support.h"

#define BUMPERS 2
#define BUMPS 40000
#define KEYS 8

struct stall_clock {
	struct fake_clock fake;
	struct test_alloc counting;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t victim;
	bool armed;    /* the victim's next precise clock read blocks */
	bool stalled;  /* the victim is blocked inside the library */
	bool released; /* let it go */
};

/* The precise clock. */
static int64_t
stall_clock_read(void *ctx)
{
	struct stall_clock *a = ctx;

	pthread_mutex_lock(&a->lock);
	if (a->armed && pthread_equal(pthread_self(), a->victim)) {
		a->armed = false;
		a->stalled = true;
		pthread_cond_broadcast(&a->cond);
		while (!a->released)
			pthread_cond_wait(&a->cond, &a->lock);
	}
	pthread_mutex_unlock(&a->lock);
	return fake_clock_read(&a->fake);
}

/* The coarse clock: the same time (no lag), never blocks. */
static int64_t
coarse_clock_read(void *ctx)
{
	struct stall_clock *a = ctx;

	return fake_clock_read(&a->fake);
}

struct shared {
	tally_store *store;
	struct stall_clock *alloc;
	int check_rc;
	int victim_rc;
};

struct bumper {
	pthread_t tid;
	struct shared *sh;
	int index;
	long ok;
	int bad_rc;
};

static void *
victim_main(void *arg)
{
	struct shared *sh = arg;
	/* A first call registers the thread (outside any section). */
	sh->check_rc = tally_budget_check(sh->store, "k0", NULL);
	pthread_mutex_lock(&sh->alloc->lock);
	sh->alloc->victim = pthread_self();
	sh->alloc->armed = true;
	pthread_mutex_unlock(&sh->alloc->lock);
	/* "edge" ends within the coarse margin: the precise clock is read
	 * inside the section, and blocks. */
	sh->victim_rc = tally_budget_bump(sh->store, "edge", 1, NULL);
	return NULL;
}

static void *
bumper_main(void *arg)
{
	struct bumper *b = arg;
	char key[16];

	for (int i = 0; i < BUMPS; i++) {
		int rc;

		snprintf(key, sizeof key, "k%d", (i + b->index) % KEYS);
		rc = tally_budget_bump(b->sh->store, key, 1, NULL);
		if (rc == TALLY_OK)
			b->ok++;
		else
			b->bad_rc = rc;
	}
	return NULL;
}

static void
run_bumpers(struct shared *sh, struct bumper *b)
{
	for (int i = 0; i < BUMPERS; i++) {
		b[i].sh = sh;
		b[i].index = i;
		b[i].ok = 0;
		b[i].bad_rc = 0;
		pthread_create(&b[i].tid, NULL, bumper_main, &b[i]);
	}
	for (int i = 0; i < BUMPERS; i++)
		pthread_join(b[i].tid, NULL);
}

static int64_t
total_usage(tally_store *s)
{
	int64_t sum = 0;
	char key[16];

	for (int k = 0; k < KEYS; k++) {
		tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
		snprintf(key, sizeof key, "k%d", k);
		if (tally_budget_get(s, key, &v) != TALLY_OK)
			return -1;
		sum += v.usage;
	}
	return sum;
}

static void
test_stalled_thread_does_not_block_others(void **state)
{
	struct stall_clock a;
	struct shared sh;
	struct bumper b[BUMPERS];
	tally_store_options o = TALLY_STORE_OPTIONS_INIT;
	tally_budget_view ev = TALLY_BUDGET_VIEW_INIT;
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;
	tally_stats before = TALLY_STATS_INIT;
	tally_stats during = TALLY_STATS_INIT;
	tally_stats after = TALLY_STATS_INIT;
	pthread_t victim;
	char key[16];
	long ok = 0;

	(void)state;
	memset(&a, 0, sizeof a);
	/* Half a second before the top of an hour. */
	a.fake.now = T(2026, 3, 1, 0, 59, 59) + NS_PER_SEC / 2;
	pthread_mutex_init(&a.lock, NULL);
	pthread_cond_init(&a.cond, NULL);
	o.clock = stall_clock_read;
	o.clock_ctx = &a;
	o.coarse_clock = coarse_clock_read;
	o.coarse_clock_ctx = &a;
	o.allocator = test_allocator(&a.counting);
	memset(&sh, 0, sizeof sh);
	sh.alloc = &a;
	assert_int_equal(tally_store_create(&sh.store, &o), TALLY_OK);
	c.max_limit = 1000;
	c.period = P("1Y");
	for (int k = 0; k < KEYS; k++) {
		snprintf(key, sizeof key, "k%d", k);
		assert_int_equal(tally_budget_upsert(sh.store, key, &c, NULL),
				 TALLY_CREATED);
	}
	c.period = P("1h");
	c.calendar_aligned = true;
	assert_int_equal(tally_budget_upsert(sh.store, "edge", &c, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_store_stats(sh.store, &before), TALLY_OK);

	/* Stall the victim inside its section. */
	pthread_create(&victim, NULL, victim_main, &sh);
	pthread_mutex_lock(&a.lock);
	while (!a.stalled)
		pthread_cond_wait(&a.cond, &a.lock);
	pthread_mutex_unlock(&a.lock);

	/* Others finish every call while it is stalled. */
	run_bumpers(&sh, b);
	for (int i = 0; i < BUMPERS; i++) {
		assert_int_equal(b[i].bad_rc, 0);
		ok += b[i].ok;
	}
	assert_int_equal(ok, (long)BUMPERS * BUMPS);
	assert_int_equal(total_usage(sh.store), (int64_t)BUMPERS * BUMPS);
	assert_int_equal(tally_store_stats(sh.store, &during), TALLY_OK);
	print_message("while stalled: retired %llu freed %llu pending %llu\n",
		      (unsigned long long)during.retired,
		      (unsigned long long)during.freed,
		      (unsigned long long)during.pending);
	/* No grace period could pass: reclamation is held back, visibly. */
	assert_true(during.pending > 4u * TALLY__PENDING_HIGH);
	assert_true(during.freed - before.freed <
		    (uint64_t)BUMPERS * TALLY__BATCH_CAP * 2);

	/* Release it: it completes, and reclamation catches up. */
	pthread_mutex_lock(&a.lock);
	a.released = true;
	pthread_cond_broadcast(&a.cond);
	pthread_mutex_unlock(&a.lock);
	pthread_join(victim, NULL);
	assert_int_equal(sh.check_rc, TALLY_OK);
	assert_int_equal(sh.victim_rc, TALLY_OK);
	assert_int_equal(tally_budget_get(sh.store, "edge", &ev), TALLY_OK);
	assert_int_equal(ev.usage, 1);

	run_bumpers(&sh, b);
	assert_int_equal(total_usage(sh.store), (int64_t)BUMPERS * BUMPS * 2);
	assert_int_equal(tally_store_stats(sh.store, &after), TALLY_OK);
	assert_true(after.freed > during.freed);
	/* Each bumper's pending is back within a few batches of the
	 * high-water mark. */
	assert_true(after.pending <
		    (uint64_t)(BUMPERS + 1) *
			    (TALLY__PENDING_HIGH + 4 * TALLY__BATCH_CAP));

	/* Destroy never waits and frees everything. */
	tally_store_destroy(sh.store);
	assert_int_equal(a.counting.live_blocks, 0);
	assert_int_equal(a.counting.live_bytes, 0);
	pthread_cond_destroy(&a.cond);
	pthread_mutex_destroy(&a.lock);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stalled_thread_does_not_block_others),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
