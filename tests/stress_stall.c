/*
 * A thread that stops inside an operation must not stop the others.
 *
 * The stalled thread creates a record; the store's allocator, called for the
 * new record while the thread is inside its epoch section, blocks until the
 * test releases it. Meanwhile other threads keep bumping: they must all
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

#include "internal.h"
#include "support.h"

#define BUMPERS 2
#define BUMPS 40000
#define KEYS 8

struct stall_alloc {
	struct test_alloc counting;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t victim;
	bool armed; /* the victim's next allocation of block_size blocks */
	size_t block_size;
	bool stalled;  /* the victim is blocked inside the library */
	bool released; /* let it go */
};

static void *
stall_malloc(void *ctx, size_t size)
{
	struct stall_alloc *a = ctx;

	pthread_mutex_lock(&a->lock);
	if (a->armed && pthread_equal(pthread_self(), a->victim) &&
	    size == a->block_size) {
		a->armed = false;
		a->stalled = true;
		pthread_cond_broadcast(&a->cond);
		while (!a->released)
			pthread_cond_wait(&a->cond, &a->lock);
	}
	pthread_mutex_unlock(&a->lock);
	return test_alloc_malloc(&a->counting, size);
}

static void
stall_free(void *ctx, void *p, size_t size)
{
	struct stall_alloc *a = ctx;

	test_alloc_free(&a->counting, p, size);
}

struct shared {
	tally_store *store;
	struct stall_alloc *alloc;
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
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;
	const char *key = "created-while-stalled";

	c.max_limit = 10;
	/* The record of a new key is allocated inside the epoch section
	 * (engine.c, tally__upsert): block exactly that allocation. */
	sh->check_rc = tally_budget_check(sh->store, "k0", NULL);
	pthread_mutex_lock(&sh->alloc->lock);
	sh->alloc->victim = pthread_self();
	sh->alloc->block_size = tally__record_size(strlen(key));
	sh->alloc->armed = true;
	pthread_mutex_unlock(&sh->alloc->lock);
	sh->victim_rc = tally_budget_upsert(sh->store, key, &c, NULL);
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
		tally_budget_view v;

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
	struct stall_alloc a;
	struct shared sh;
	struct bumper b[BUMPERS];
	struct fake_clock clock = {T(2026, 3, 1, 0, 0, 0)};
	tally_store_options o = test_options(&clock, NULL);
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;
	tally_stats before, during, after;
	pthread_t victim;
	char key[16];
	long ok = 0;

	(void)state;
	memset(&a, 0, sizeof a);
	pthread_mutex_init(&a.lock, NULL);
	pthread_cond_init(&a.cond, NULL);
	o.allocator.malloc = stall_malloc;
	o.allocator.free = stall_free;
	o.allocator.ctx = &a;
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
	assert_int_equal(sh.victim_rc, TALLY_CREATED);

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
