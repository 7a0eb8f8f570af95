/*
 * The per-thread lookup cache (lcache.h, tally__lookup_cached) must never
 * hand out a record that was removed: a remove bumps the removal count of
 * the record's stripe before the record is retired, and an entry filled
 * under an older count is ignored.
 *
 * Records live in cells that are recycled (never freed) after a grace
 * period, so a stale entry is not a use after free that ASan would see;
 * these tests look at what the cache hands out instead, in every build:
 * after a remove, a lookup through the cache of any thread that cached the
 * record must miss it. They also check that a remove invalidates only its
 * stripe (other cached records keep hitting), and that a removed, recycled
 * cell is never served for its old key.
 *
 * The cache and the map's compare callback tell keys apart with
 * tally__key_eq; through the API two keys only reach it with equal 64-bit
 * hashes, so it is tested here directly, at every length and position.
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
#include <string.h>

#include "engine.h"
#include "support.h"

/* What this thread's cache answers for a key, as the engine asks it: the
 * record, or NULL. */
static struct tally__record *
cached_lookup(tally_store *s, const char *key)
{
	struct tally__thread *t;
	struct tally__probe p;
	struct tally__record *r;

	if (tally__thread_get(s, &t) != TALLY_OK)
		return NULL;
	tally__probe_init(&p, s->seed, key, strlen(key), TALLY_KIND_BUDGET);
	tally__section_begin(t);
	r = tally__lookup_cached(s, t, &p);
	tally__section_end(t);
	return r;
}

/* Whether this thread's cache holds r (in any set, either way). */
static bool
cache_holds(tally_store *s, const struct tally__record *r)
{
	struct tally__thread *t;

	if (tally__thread_get(s, &t) != TALLY_OK)
		return false;
	for (unsigned i = 0; i < TALLY__LCACHE_SETS; i++)
		for (unsigned w = 0; w < 2; w++)
			if (t->lcache[i][w].r == r)
				return true;
	return false;
}

/* A key whose hash falls in the same lookup-cache stripe as `key`'s, or
 * in another one (same == false). */
static void
key_in_stripe(tally_store *s, const char *key, bool same, char *out,
	      size_t size)
{
	unsigned long h =
		tally__key_hash(key, strlen(key), TALLY_KIND_BUDGET, s->seed);

	for (int i = 0;; i++) {
		unsigned long g;

		snprintf(out, size, "other-%d", i);
		g = tally__key_hash(out, strlen(out), TALLY_KIND_BUDGET,
				    s->seed);
		if ((tally__lcache_stripe(g) == tally__lcache_stripe(h)) ==
			    same &&
		    (g & (TALLY__LCACHE_SETS - 1)) !=
			    (h & (TALLY__LCACHE_SETS - 1)))
			return;
	}
}

static tally_budget_config
cfg(void)
{
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;

	c.max_limit = 1000;
	c.period = P("1d");
	return c;
}

static void
test_removed_record_never_served(void **state)
{
	struct fake_clock clock = {T(2026, 6, 1, 0, 0, 0)};
	struct test_alloc a = {0};
	tally_store_options o = test_options(&clock, &a);
	tally_budget_config c = cfg();
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	tally_store *s;
	struct tally__record *victim, *same, *other, *again;
	char same_key[32], other_key[32];

	(void)state;
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	key_in_stripe(s, "victim", true, same_key, sizeof same_key);
	key_in_stripe(s, "victim", false, other_key, sizeof other_key);
	assert_int_equal(tally_budget_upsert(s, "victim", &c, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_budget_upsert(s, same_key, &c, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_budget_upsert(s, other_key, &c, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_budget_bump(s, "victim", 7, NULL), TALLY_OK);
	victim = cached_lookup(s, "victim");
	same = cached_lookup(s, same_key);
	other = cached_lookup(s, other_key);
	assert_non_null(victim);
	assert_true(cache_holds(s, victim));
	assert_true(cache_holds(s, same));
	assert_true(cache_holds(s, other));

	/* The remove must make this thread's cache miss the record at once:
	 * before any reclamation, while the cell still holds the key. */
	assert_int_equal(tally_budget_remove(s, "victim", &v), TALLY_OK);
	assert_int_equal(v.usage, 7);
	assert_true(cache_holds(s, victim));     /* still there ... */
	assert_null(cached_lookup(s, "victim")); /* ... but ignored */
	assert_int_equal(tally_budget_bump(s, "victim", 1, NULL), TALLY_ENOENT);
	assert_int_equal(tally_budget_check(s, "victim", NULL), TALLY_ENOENT);
	/* Only the victim's stripe was invalidated: a record of another
	 * stripe stays cached; one of the same stripe is found again. */
	assert_ptr_equal(cached_lookup(s, other_key), other);
	assert_ptr_equal(cached_lookup(s, same_key), same);

	/* Re-created, the key is a new record (maybe in the same cell) with
	 * its own incarnation; the cache finds it and only it. */
	assert_int_equal(tally_budget_upsert(s, "victim", &c, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_budget_bump(s, "victim", 2, &v), TALLY_OK);
	assert_int_equal(v.usage, 2);
	again = cached_lookup(s, "victim");
	assert_non_null(again);
	assert_int_equal(again->incarnation, v.incarnation);
	tally_store_destroy(s);
	assert_int_equal(a.live_blocks, 0);
	assert_int_equal(a.live_bytes, 0);
}

/*
 * A recycled cell: once the removed record's cell is reclaimed it is the
 * first one a creation of the same size class takes. Keys of the same
 * length that share a cache set keep being removed and created in turn;
 * every call must reach its own key's record.
 */
static void
test_recycled_cells_never_served_for_old_keys(void **state)
{
	struct fake_clock clock = {T(2026, 6, 1, 0, 0, 0)};
	struct test_alloc a = {0};
	tally_store_options o = test_options(&clock, &a);
	tally_budget_config c = cfg();
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	tally_store *s;
	char key[32], prev[32] = "";

	(void)state;
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	assert_int_equal(tally_budget_upsert(s, "filler", &c, NULL),
			 TALLY_CREATED);
	for (int k = 0; k < 3000; k++) {
		struct tally__record *r;

		snprintf(key, sizeof key, "key-%05d", k);
		assert_int_equal(tally_budget_upsert(s, key, &c, NULL),
				 TALLY_CREATED);
		assert_int_equal(tally_budget_bump(s, key, k, &v), TALLY_OK);
		assert_int_equal(v.usage, k);
		r = cached_lookup(s, key);
		assert_non_null(r);
		assert_int_equal(r->incarnation, v.incarnation);
		if (prev[0] != '\0') {
			/* The previous key is gone for good. */
			assert_null(cached_lookup(s, prev));
			assert_int_equal(tally_budget_get(s, prev, &v),
					 TALLY_ENOENT);
		}
		assert_int_equal(tally_budget_remove(s, key, &v), TALLY_OK);
		assert_int_equal(v.usage, k);
		assert_null(cached_lookup(s, key));
		/* Writes elsewhere, so reclamation recycles the cell. */
		for (int i = 0; i < 2 * TALLY__BATCH_CAP; i++)
			assert_int_equal(
				tally_budget_bump(s, "filler", 1, NULL),
				TALLY_OK);
		memcpy(prev, key, sizeof prev);
	}
	tally_store_destroy(s);
	assert_int_equal(a.live_blocks, 0);
}

/* Another thread's cache: it cached the record before the remove and must
 * miss it after. Workers never assert: they report, the main thread
 * checks. */
struct peer {
	tally_store *s;
	pthread_barrier_t *step;
	struct tally__record *before, *after;
	int first_rc, bump_rc;
};

static void *
peer_main(void *arg)
{
	struct peer *p = arg;

	p->first_rc = tally_budget_bump(p->s, "shared", 1, NULL);
	p->before = cached_lookup(p->s, "shared");
	pthread_barrier_wait(p->step); /* main removes */
	pthread_barrier_wait(p->step);
	p->after = cached_lookup(p->s, "shared");
	p->bump_rc = tally_budget_bump(p->s, "shared", 1, NULL);
	return NULL;
}

static void
test_other_threads_caches_invalidated(void **state)
{
	struct fake_clock clock = {T(2026, 6, 1, 0, 0, 0)};
	tally_store_options o = test_options(&clock, NULL);
	tally_budget_config c = cfg();
	tally_store *s;
	pthread_barrier_t step;
	struct peer p[3];
	pthread_t tid[3];

	(void)state;
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	assert_int_equal(tally_budget_upsert(s, "shared", &c, NULL),
			 TALLY_CREATED);
	pthread_barrier_init(&step, NULL, 4);
	for (int i = 0; i < 3; i++) {
		p[i] = (struct peer){s, &step, NULL, NULL, 0, 0};
		pthread_create(&tid[i], NULL, peer_main, &p[i]);
	}
	pthread_barrier_wait(&step);
	assert_int_equal(tally_budget_remove(s, "shared", NULL), TALLY_OK);
	pthread_barrier_wait(&step);
	for (int i = 0; i < 3; i++)
		pthread_join(tid[i], NULL);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(p[i].first_rc, TALLY_OK);
		assert_non_null(p[i].before);
		assert_null(p[i].after);
		assert_int_equal(p[i].bump_rc, TALLY_ENOENT);
	}
	pthread_barrier_destroy(&step);
	tally_store_destroy(s);
}

/* Keys of every length 1..TALLY_KEY_MAX, equal and then differing in one
 * byte at each position in turn (each path: bytes, 4-byte, word loop and
 * overlapping last word). The keys sit at odd offsets: loads are
 * unaligned. */
static void
test_key_eq_every_length_and_position(void **state)
{
	char abuf[TALLY_KEY_MAX + 2], bbuf[TALLY_KEY_MAX + 2];
	char *a = abuf + 1, *b = bbuf + 1;
	long differing = 0;

	(void)state;
	for (size_t n = 1; n <= TALLY_KEY_MAX; n++) {
		for (size_t i = 0; i < n; i++)
			a[i] = (char)('a' + (i * 7 + n) % 26);
		memcpy(b, a, n);
		assert_true(tally__key_eq(a, b, n));
		for (size_t pos = 0; pos < n; pos++) {
			b[pos] ^= 0x20;
			assert_false(tally__key_eq(a, b, n));
			assert_false(tally__key_eq(b, a, n));
			b[pos] ^= 0x20;
			differing++;
		}
		/* Bytes past n never matter. */
		a[n] = 'x';
		b[n] = 'y';
		assert_true(tally__key_eq(a, b, n));
	}
	assert_int_equal(differing, TALLY_KEY_MAX * (TALLY_KEY_MAX + 1) / 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_removed_record_never_served),
		cmocka_unit_test(test_recycled_cells_never_served_for_old_keys),
		cmocka_unit_test(test_other_threads_caches_invalidated),
		cmocka_unit_test(test_key_eq_every_length_and_position),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
