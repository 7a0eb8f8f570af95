/*
 * The per-thread lookup cache (internal.h, tally__lookup_cached) must never
 * hand out a record that was removed: a removal empties every thread's
 * cache before the record is retired.
 *
 * The test caches a record, removes it, lets reclamation free it (the
 * counting allocator poisons freed memory here, and ASan builds detect any
 * access), re-creates the key and uses it again: every call must reach the
 * new record, and nothing may touch the freed one.
 *
 * The cache and the map's compare callback tell keys apart with
 * tally__key_eq; through the API two keys only reach it with equal 64-bit
 * hashes, so it is tested here directly, at every length and position.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "support.h"

/* Frees poison the block first, so a read of freed memory is visible in
 * any build (a stale record would show kind 0xdd, not a budget). */
static void
poison_free(void *ctx, void *p, size_t size)
{
	if (p != NULL)
		memset(p, 0xdd, size);
	test_alloc_free(ctx, p, size);
}

static void
test_removed_record_never_served(void **state)
{
	struct fake_clock clock = {T(2026, 6, 1, 0, 0, 0)};
	struct test_alloc a = {0};
	tally_store_options o = test_options(&clock, &a);
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;
	tally_budget_view v;
	tally_store *s;
	tally_stats st0, st1;
	char key[32];

	(void)state;
	o.allocator.free = poison_free;
	c.max_limit = 1000;
	c.period = P("1d");
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	assert_int_equal(tally_budget_upsert(s, "victim", &c, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_budget_bump(s, "victim", 7, NULL), TALLY_OK);
	assert_int_equal(tally_budget_check(s, "victim", NULL), TALLY_OK);

	assert_int_equal(tally_budget_remove(s, "victim", &v), TALLY_OK);
	assert_int_equal(v.usage, 7);
	assert_int_equal(tally_store_stats(s, &st0), TALLY_OK);

	/* Enough writes elsewhere that the removed record is reclaimed: one
	 * thread, so every poll finds a grace period. */
	assert_int_equal(tally_budget_upsert(s, "other", &c, NULL),
			 TALLY_CREATED);
	for (int i = 0; i < 20 * TALLY__BATCH_CAP; i++)
		assert_int_equal(tally_budget_bump(s, "other", 1, NULL),
				 TALLY_OK);
	assert_int_equal(tally_store_stats(s, &st1), TALLY_OK);
	assert_true(st1.freed >= st0.retired);

	/* The key is gone, then lives again as a new record. */
	assert_int_equal(tally_budget_bump(s, "victim", 1, NULL), TALLY_ENOENT);
	assert_int_equal(tally_budget_check(s, "victim", NULL), TALLY_ENOENT);
	assert_int_equal(tally_budget_get(s, "victim", &v), TALLY_ENOENT);
	assert_int_equal(tally_budget_upsert(s, "victim", &c, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_budget_bump(s, "victim", 2, &v), TALLY_OK);
	assert_int_equal(v.usage, 2);
	assert_int_equal(tally_budget_get(s, "victim", &v), TALLY_OK);
	assert_int_equal(v.usage, 2);

	/* Many keys sharing cache slots, removed and re-created in turn. */
	for (int round = 0; round < 3; round++) {
		for (int k = 0; k < 6 * TALLY__LCACHE_SETS; k += 97) {
			snprintf(key, sizeof key, "key-%d", k);
			if (round == 0)
				assert_int_equal(
					tally_budget_upsert(s, key, &c, NULL),
					TALLY_CREATED);
			assert_int_equal(tally_budget_bump(s, key, 1, &v),
					 TALLY_OK);
			assert_int_equal(v.usage, 1);
			assert_int_equal(tally_budget_remove(s, key, &v),
					 TALLY_OK);
			assert_int_equal(v.usage, 1);
			assert_int_equal(tally_budget_upsert(s, key, &c, NULL),
					 TALLY_CREATED);
		}
	}
	tally_store_destroy(s);
	assert_int_equal(a.live_blocks, 0);
	assert_int_equal(a.live_bytes, 0);
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
		cmocka_unit_test(test_key_eq_every_length_and_position),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
