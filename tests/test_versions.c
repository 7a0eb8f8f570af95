/*
 * Versions and incarnations (tally.h, "Versions"), at their boundaries,
 * reached through the store's test hook (store.h,
 * tally__test_set_counters) rather than by 2^32 writes:
 *   - a hot key's writes cross 2^32 (where the creation count once lived
 *     in the version's upper half) and its incarnation stays;
 *   - a version observed before a remove never matches after the key is
 *     created again, however many writes either life saw;
 *   - a version never wraps past UINT64_MAX, nor an incarnation: both are
 *     TALLY_EOVERFLOW that changes nothing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "store.h"
#include "support.h"

#define CARRY (UINT64_C(1) << 32)

static tally_budget_config
cfg(void)
{
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;

	c.max_limit = 1000;
	c.period = P("1h");
	return c;
}

static void
test_writes_cross_the_old_carry_point(void **state)
{
	struct fake_clock clock = {T(2026, 5, 5, 5, 0, 0)};
	tally_store_options o = test_options(&clock, NULL);
	tally_budget_config c = cfg();
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	tally_ratelimit_config rc = TALLY_RATELIMIT_CONFIG_INIT;
	tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
	tally_store *s;
	uint64_t seen[16], inc;
	unsigned n = 0;

	(void)state;
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	tally__test_set_counters(s, CARRY - 3, 7);
	assert_int_equal(tally_budget_upsert(s, "hot", &c, &v), TALLY_CREATED);
	assert_int_equal(v.version, CARRY - 3);
	assert_int_equal(v.incarnation, 7);
	inc = v.incarnation;
	seen[n++] = v.version;
	for (int i = 0; i < 6; i++) {
		assert_int_equal(tally_budget_bump(s, "hot", 1, &v), TALLY_OK);
		assert_int_equal(v.version, seen[n - 1] + 1);
		assert_int_equal(v.incarnation,
				 inc); /* writes never change it */
		seen[n++] = v.version;
	}
	assert_true(v.version > CARRY);

	/* Another key: its own incarnation; versions may coincide across
	 * keys, never within one key's lives. */
	rc.tokens.period = rc.requests.period = P("1m");
	assert_int_equal(tally_ratelimit_upsert(s, "other", &rc, &rv),
			 TALLY_CREATED);
	assert_int_equal(rv.incarnation, 8);
	assert_int_equal(rv.version, CARRY - 3);

	/* Removed and created again: above every version of the old life. */
	assert_int_equal(tally_budget_remove(s, "hot", &v), TALLY_OK);
	assert_int_equal(v.version, seen[n - 1]);
	assert_int_equal(tally_budget_upsert(s, "hot", &c, &v), TALLY_CREATED);
	assert_int_equal(v.incarnation, 9);
	assert_int_equal(v.version, seen[n - 1] + 1);
	for (unsigned i = 0; i < n; i++) {
		tally_budget_view w = TALLY_BUDGET_VIEW_INIT;

		assert_true(v.version > seen[i]);
		assert_int_equal(tally_budget_reset(s, "hot", seen[i], &w),
				 TALLY_CONFLICT);
		/* The current snapshot, for a retry. */
		assert_int_equal(w.version, v.version);
		assert_int_equal(w.incarnation, 9);
	}
	assert_int_equal(tally_budget_reset(s, "hot", v.version, &v), TALLY_OK);
	assert_int_equal(v.incarnation, 9);
	tally_store_destroy(s);
}

static void
test_versions_never_wrap(void **state)
{
	struct fake_clock clock = {T(2026, 5, 5, 5, 0, 0)};
	tally_store_options o = test_options(&clock, NULL);
	tally_budget_config c = cfg();
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	tally_budget_view w = TALLY_BUDGET_VIEW_INIT;
	tally_store *s;
	size_t rolled = 99;

	(void)state;
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	tally__test_set_counters(s, UINT64_MAX - 2, 1);
	assert_int_equal(tally_budget_upsert(s, "m", &c, &v), TALLY_CREATED);
	assert_int_equal(tally_budget_bump(s, "m", 1, &v), TALLY_OK);
	assert_int_equal(tally_budget_bump(s, "m", 1, &v), TALLY_OK);
	assert_int_equal(v.version, UINT64_MAX);
	assert_int_equal(v.usage, 2);

	/* Every write now: EOVERFLOW, nothing changed, the view untouched. */
	memset(&w, 0x5a, sizeof w);
	w.size = sizeof w;
	assert_int_equal(tally_budget_bump(s, "m", 1, &w), TALLY_EOVERFLOW);
	assert_int_equal(w.usage, INT64_C(0x5a5a5a5a5a5a5a5a));
	assert_int_equal(tally_budget_try_consume(s, "m", 1, NULL),
			 TALLY_EOVERFLOW);
	assert_int_equal(tally_budget_reset(s, "m", UINT64_MAX, NULL),
			 TALLY_EOVERFLOW);
	c.max_limit = 5;
	assert_int_equal(tally_budget_upsert(s, "m", &c, NULL),
			 TALLY_EOVERFLOW);
	/* Reads still work; a write that changes nothing is no write. */
	assert_int_equal(tally_budget_check(s, "m", NULL), TALLY_OK);
	assert_int_equal(tally_budget_bump(s, "m", 0, NULL), TALLY_OK);
	assert_int_equal(tally_budget_try_consume(s, "m", 0, NULL), TALLY_OK);
	/* A due window cannot roll either: the sweep leaves it. */
	fake_clock_advance(&clock, 2 * NS_PER_HOUR);
	assert_int_equal(tally_sweep(s, NULL, NULL, &rolled), TALLY_OK);
	assert_int_equal(rolled, 0);
	assert_int_equal(tally_budget_get(s, "m", &w), TALLY_OK);
	assert_int_equal(w.version, UINT64_MAX);
	assert_int_equal(w.usage, 2);
	assert_int_equal(w.config.max_limit, 1000);

	/* Removed and created again: the floor saturates, so the new record
	 * starts at UINT64_MAX and can never be written either. */
	assert_int_equal(tally_budget_remove(s, "m", NULL), TALLY_OK);
	assert_int_equal(tally_budget_upsert(s, "m", &c, &v), TALLY_CREATED);
	assert_int_equal(v.version, UINT64_MAX);
	assert_int_equal(tally_budget_bump(s, "m", 1, NULL), TALLY_EOVERFLOW);
	tally_store_destroy(s);
}

static void
test_incarnations_never_wrap(void **state)
{
	struct fake_clock clock = {T(2026, 5, 5, 5, 0, 0)};
	tally_store_options o = test_options(&clock, NULL);
	tally_budget_config c = cfg();
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	tally_stats st = TALLY_STATS_INIT;
	tally_store *s;

	(void)state;
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	tally__test_set_counters(s, 1, UINT64_MAX - 1);
	assert_int_equal(tally_budget_upsert(s, "a", &c, &v), TALLY_CREATED);
	assert_int_equal(v.incarnation, UINT64_MAX - 1);
	assert_int_equal(tally_budget_upsert(s, "b", &c, NULL),
			 TALLY_EOVERFLOW);
	assert_int_equal(tally_budget_get(s, "b", &v), TALLY_ENOENT);
	/* Replacing a config is no creation: still fine. */
	assert_int_equal(tally_budget_upsert(s, "a", &c, &v), TALLY_OK);
	assert_int_equal(tally_store_stats(s, &st), TALLY_OK);
	assert_int_equal(st.records, 1);
	tally_store_destroy(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_writes_cross_the_old_carry_point),
		cmocka_unit_test(test_versions_never_wrap),
		cmocka_unit_test(test_incarnations_never_wrap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
