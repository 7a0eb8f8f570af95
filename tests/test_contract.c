/*
 * What tally.h promises a new user, call by call, through the public API
 * only:
 *   - keys: the NUL-terminated and the _n forms name the same record; _n
 *     keys may hold NUL bytes; NULL is EINVAL, empty or too long EKEY, in
 *     both forms; roll events carry such keys whole;
 *   - struct sizes: a config, view or stats struct whose size is below the
 *     first released layout is EINVAL and changes nothing; the library never
 *     writes a size field;
 *   - the edges the header settles: the Monday that N-week windows count
 *     from, rolling months with an offset (clamped on the local date), the
 *     sign of the offset, a counter with no period, reset after the clock
 *     went back, windows before a future anchor, try_consume sums beyond
 *     INT64_MAX, a budget with no period, *limited after OK, *reset and the
 *     view after CONFLICT;
 *   - the coarse clock option: check, bump and try_consume read the coarse
 *     clock and read the precise one only near a window's end;
 *   - the default clock and store options.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "support.h"
#include "tally.h"

#define H NS_PER_HOUR
#define D NS_PER_DAY

struct roll_log {
	unsigned n;
	char key[4][TALLY_PERIOD_FORMAT_MAX];
	size_t key_len[4];
	uint64_t incarnation[4];
	size_t size[4];
};

static void
log_roll(const tally_roll *r, void *ctx)
{
	struct roll_log *l = ctx;

	if (l->n < 4 && r->key_len < sizeof l->key[0]) {
		memcpy(l->key[l->n], r->key, r->key_len + 1);
		l->key_len[l->n] = r->key_len;
		l->incarnation[l->n] = r->incarnation;
		l->size[l->n] = r->size;
	}
	l->n++;
}

static tally_store *
store_at(struct fake_clock *clock, struct roll_log *log)
{
	tally_store_options o = test_options(clock, NULL);
	tally_store *s;

	if (log != NULL) {
		o.on_roll = log_roll;
		o.on_roll_ctx = log;
	}
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	return s;
}

static tally_budget_config
budget(int64_t max, const char *period, bool aligned, int32_t off)
{
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;

	c.max_limit = max;
	c.period = P(period);
	c.calendar_aligned = aligned;
	c.utc_offset_minutes = off;
	return c;
}

static tally_ratelimit_config
ratelimit(int64_t tmax, bool tlim, int64_t rmax, bool rlim, const char *per)
{
	tally_ratelimit_config c = TALLY_RATELIMIT_CONFIG_INIT;

	c.tokens.has_max = tlim;
	c.tokens.max = tmax;
	c.tokens.period = P(per);
	c.requests.has_max = rlim;
	c.requests.max = rmax;
	c.requests.period = P(per);
	return c;
}

/* ------------------------------------------------------------------------ */
/* Keys                                                                     */
/* ------------------------------------------------------------------------ */

static void
test_key_forms_name_one_record(void **state)
{
	struct fake_clock clock = {T(2026, 3, 3, 3, 0, 0)};
	struct roll_log log = {0};
	tally_store *s = store_at(&clock, &log);
	tally_budget_config c = budget(100, "1h", true, 0);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	tally_ratelimit_config rc = ratelimit(10, true, 3, true, "1m");
	tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
	static const char nul_key[] = {'a', '\0', 'b'};
	unsigned m = 99;

	(void)state;
	/* "team" and ("team", 4) are one key; ("team", 3) is "tea". */
	assert_int_equal(tally_budget_upsert(s, "team", &c, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_budget_bump_n(s, "team", 4, 5, &v), TALLY_OK);
	assert_int_equal(v.usage, 5);
	assert_int_equal(tally_budget_get_n(s, "team!!", 4, &v), TALLY_OK);
	assert_int_equal(v.usage, 5);
	assert_int_equal(tally_budget_get_n(s, "team", 3, &v), TALLY_ENOENT);
	assert_int_equal(tally_budget_check(s, "team", NULL), TALLY_OK);

	/* Keys with NUL bytes: ("a\0b", 3), ("a\0", 2) and "a" differ. */
	assert_int_equal(tally_budget_upsert_n(s, nul_key, 3, &c, &v),
			 TALLY_CREATED);
	assert_int_equal(tally_budget_upsert_n(s, nul_key, 2, &c, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_budget_upsert(s, "a", &c, NULL), TALLY_CREATED);
	assert_int_equal(tally_budget_try_consume_n(s, nul_key, 3, 40, &v),
			 TALLY_OK);
	assert_int_equal(tally_budget_try_consume_n(s, nul_key, 3, 61, &v),
			 TALLY_LIMITED);
	assert_int_equal(tally_budget_get_n(s, nul_key, 2, &v), TALLY_OK);
	assert_int_equal(v.usage, 0);
	assert_int_equal(tally_budget_get_n(s, "a", 1, &v), TALLY_OK);
	assert_int_equal(v.usage, 0);
	assert_int_equal(tally_budget_check_n(s, nul_key, 3, &v), TALLY_OK);
	assert_int_equal(v.usage, 40);
	assert_int_equal(tally_budget_reset_n(s, nul_key, 3, v.version, &v),
			 TALLY_OK);
	/* The reset's roll event carries the key whole, NUL included. */
	assert_int_equal(log.n, 1);
	assert_int_equal(log.key_len[0], 3);
	assert_memory_equal(log.key[0], nul_key, 3);
	assert_int_equal(log.key[0][3], '\0');
	assert_int_equal(log.incarnation[0], v.incarnation);
	assert_int_equal(log.size[0], sizeof(tally_roll));
	assert_int_equal(tally_budget_remove_n(s, nul_key, 3, &v), TALLY_OK);
	assert_int_equal(tally_budget_get_n(s, nul_key, 3, &v), TALLY_ENOENT);
	assert_int_equal(tally_budget_get_n(s, nul_key, 2, &v), TALLY_OK);

	/* Rate limits: the same, every call. */
	assert_int_equal(tally_ratelimit_upsert_n(s, nul_key, 3, &rc, &rv),
			 TALLY_CREATED);
	assert_int_equal(tally_ratelimit_bump_n(s, nul_key, 3, 4, 1, &rv),
			 TALLY_OK);
	assert_int_equal(
		tally_ratelimit_try_consume_n(s, nul_key, 3, 7, 1, &m, &rv),
		TALLY_LIMITED);
	assert_int_equal(m, TALLY_COUNTER_TOKENS);
	assert_int_equal(
		tally_ratelimit_try_consume_n(s, nul_key, 3, 6, 1, &m, &rv),
		TALLY_OK);
	assert_int_equal(m, 0);
	assert_int_equal(tally_ratelimit_check_n(s, nul_key, 3, &m, &rv),
			 TALLY_LIMITED);
	assert_int_equal(m, TALLY_COUNTER_TOKENS);
	assert_int_equal(tally_ratelimit_get_n(s, nul_key, 3, &rv), TALLY_OK);
	assert_int_equal(rv.tokens.usage, 10);
	assert_int_equal(rv.requests.usage, 2);
	assert_int_equal(tally_ratelimit_reset_n(s, nul_key, 3, rv.version,
						 TALLY_COUNTER_TOKENS, &m, &rv),
			 TALLY_OK);
	assert_int_equal(m, TALLY_COUNTER_TOKENS);
	assert_int_equal(tally_ratelimit_get(s, "a", &rv), TALLY_ENOENT);
	assert_int_equal(tally_ratelimit_remove_n(s, nul_key, 3, &rv),
			 TALLY_OK);
	assert_int_equal(rv.requests.usage, 2);
	tally_store_destroy(s);
}

static void
test_bad_keys_in_both_forms(void **state)
{
	struct fake_clock clock = {T(2026, 3, 3, 3, 0, 0)};
	tally_store *s = store_at(&clock, NULL);
	tally_budget_config c = budget(100, "1h", true, 0);
	tally_ratelimit_config rc = ratelimit(10, true, 3, true, "1m");
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	char k256[257], k255[256];
	unsigned m = 0;

	(void)state;
	memset(k256, 'x', 256);
	k256[256] = '\0';
	memset(k255, 'y', 255);
	k255[255] = '\0';
	assert_int_equal(tally_budget_upsert(s, NULL, &c, NULL), TALLY_EINVAL);
	assert_int_equal(tally_budget_upsert(s, "", &c, NULL), TALLY_EKEY);
	assert_int_equal(tally_budget_upsert(s, k256, &c, NULL), TALLY_EKEY);
	assert_int_equal(tally_budget_upsert_n(s, NULL, 1, &c, NULL),
			 TALLY_EINVAL);
	assert_int_equal(tally_budget_upsert_n(s, NULL, 0, &c, NULL),
			 TALLY_EINVAL);
	assert_int_equal(tally_budget_upsert_n(s, "x", 0, &c, NULL),
			 TALLY_EKEY);
	assert_int_equal(tally_budget_upsert_n(s, k256, 256, &c, NULL),
			 TALLY_EKEY);
	assert_int_equal(tally_budget_upsert_n(s, k256, SIZE_MAX, &c, NULL),
			 TALLY_EKEY);
	assert_int_equal(tally_budget_bump_n(s, k256, SIZE_MAX, 1, NULL),
			 TALLY_EKEY);
	assert_int_equal(tally_budget_get_n(s, NULL, 3, &v), TALLY_EINVAL);
	assert_int_equal(tally_ratelimit_upsert_n(s, "x", 0, &rc, NULL),
			 TALLY_EKEY);
	assert_int_equal(tally_ratelimit_check_n(s, NULL, 1, &m, NULL),
			 TALLY_EINVAL);
	assert_int_equal(tally_ratelimit_remove_n(s, k256, 256, NULL),
			 TALLY_EKEY);
	/* 255 bytes is the longest key, in both forms; nothing else was
	 * created above. */
	assert_int_equal(tally_budget_upsert_n(s, k255, 255, &c, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_budget_bump(s, k255, 3, &v), TALLY_OK);
	assert_int_equal(v.usage, 3);
	assert_int_equal(tally_budget_remove_n(s, k256, 255, &v), TALLY_ENOENT);
	{
		tally_stats st = TALLY_STATS_INIT;

		assert_int_equal(tally_store_stats(s, &st), TALLY_OK);
		assert_int_equal(st.records, 1);
	}
	tally_store_destroy(s);
}

/* ------------------------------------------------------------------------ */
/* Struct sizes                                                             */
/* ------------------------------------------------------------------------ */

static void
test_struct_sizes(void **state)
{
	struct fake_clock clock = {T(2026, 3, 3, 3, 0, 0)};
	tally_store *s = store_at(&clock, NULL);
	tally_budget_config c = budget(100, "1h", true, 0);
	tally_ratelimit_config rc = ratelimit(10, true, 3, true, "1m");
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
	tally_stats st = TALLY_STATS_INIT;
	tally_budget_config zero = {0};
	unsigned m = 0;

	(void)state;
	/* `= {0}` has size 0: refused, as is any size below the layout. */
	assert_int_equal(tally_budget_upsert(s, "b", &zero, NULL),
			 TALLY_EINVAL);
	c.size = sizeof c - 1;
	assert_int_equal(tally_budget_upsert(s, "b", &c, NULL), TALLY_EINVAL);
	c.size = sizeof c;
	rc.size = 0;
	assert_int_equal(tally_ratelimit_upsert(s, "r", &rc, NULL),
			 TALLY_EINVAL);
	rc.size = sizeof rc;
	v.size = offsetof(tally_budget_view, held) - 1; /* below 0.2's */
	assert_int_equal(tally_budget_upsert(s, "b", &c, &v), TALLY_EINVAL);
	assert_int_equal(tally_budget_get(s, "b", &v), TALLY_EINVAL);
	rv.size = 0;
	assert_int_equal(tally_ratelimit_upsert(s, "r", &rc, &rv),
			 TALLY_EINVAL);
	/* Nothing was created. */
	assert_int_equal(tally_store_stats(s, &st), TALLY_OK);
	assert_int_equal(st.records, 0);

	assert_int_equal(tally_budget_upsert(s, "b", &c, NULL), TALLY_CREATED);
	assert_int_equal(tally_ratelimit_upsert(s, "r", &rc, NULL),
			 TALLY_CREATED);
	/* Every call with a view checks its size first, changing nothing. */
	assert_int_equal(tally_budget_bump(s, "b", 1, &v), TALLY_EINVAL);
	assert_int_equal(tally_budget_try_consume(s, "b", 1, &v), TALLY_EINVAL);
	assert_int_equal(tally_budget_check(s, "b", &v), TALLY_EINVAL);
	assert_int_equal(tally_budget_reset(s, "b", 1, &v), TALLY_EINVAL);
	assert_int_equal(tally_budget_remove(s, "b", &v), TALLY_EINVAL);
	assert_int_equal(tally_ratelimit_bump(s, "r", 1, 1, &rv), TALLY_EINVAL);
	assert_int_equal(tally_ratelimit_try_consume(s, "r", 1, 1, &m, &rv),
			 TALLY_EINVAL);
	assert_int_equal(tally_ratelimit_check(s, "r", &m, &rv), TALLY_EINVAL);
	assert_int_equal(
		tally_ratelimit_reset(s, "r", 1, TALLY_COUNTER_BOTH, &m, &rv),
		TALLY_EINVAL);
	assert_int_equal(tally_ratelimit_remove(s, "r", &rv), TALLY_EINVAL);
	v.size = sizeof v;
	rv.size = sizeof rv;
	assert_int_equal(tally_budget_get(s, "b", &v), TALLY_OK);
	assert_int_equal(v.usage, 0);
	assert_int_equal(v.size, sizeof v); /* never written */
	assert_int_equal(v.config.size, sizeof v.config);
	assert_int_equal(tally_ratelimit_get(s, "r", &rv), TALLY_OK);
	assert_int_equal(rv.tokens.usage, 0);

	/* A larger size, from a newer header: the fields this library knows
	 * are filled, the rest left alone. */
	{
		struct {
			tally_budget_view v;
			char newer[16];
		} big;

		memset(&big, 0x77, sizeof big);
		big.v.size = sizeof big;
		assert_int_equal(tally_budget_bump(s, "b", 2, &big.v),
				 TALLY_OK);
		assert_int_equal(big.v.usage, 2);
		assert_int_equal(big.v.size, sizeof big);
		assert_int_equal(big.newer[0], 0x77);
		assert_int_equal(big.newer[15], 0x77);
	}

	/* The 0.2 layouts (before the hold fields): filled up to their
	 * size, nothing past it written. */
	{
		struct {
			tally_budget_view v;
			char after[8];
		} old;
		struct {
			tally_ratelimit_view v;
			char after[8];
		} rold;
		struct {
			tally_stats st;
			char after[8];
		} sold;
		size_t bsz = offsetof(tally_budget_view, held);
		/* The 0.2 rate-limit view: 160 bytes, its requests counter
		 * at 120 (0.4 moved both: test_layout's view_03). */
		size_t rsz = 160;
		int64_t rusage;
		size_t ssz = offsetof(tally_stats, admitted);

		memset(&old, 0x66, sizeof old);
		old.v.size = bsz;
		assert_int_equal(tally_budget_bump(s, "b", 1, &old.v),
				 TALLY_OK);
		assert_int_equal(old.v.usage, 3);
		assert_int_equal(old.v.size, bsz);
		assert_int_equal(((unsigned char *)&old)[bsz], 0x66);
		assert_int_equal(((unsigned char *)&old)[sizeof old - 1], 0x66);
		assert_int_equal(tally_budget_get(s, "b", &old.v), TALLY_OK);
		assert_int_equal(((unsigned char *)&old)[bsz], 0x66);

		memset(&rold, 0x66, sizeof rold);
		rold.v.size = rsz;
		assert_int_equal(tally_ratelimit_bump(s, "r", 1, 1, &rold.v),
				 TALLY_OK);
		memcpy(&rusage, (unsigned char *)&rold + 120, sizeof rusage);
		assert_int_equal(rusage, 1);
		assert_int_equal(((unsigned char *)&rold)[rsz], 0x66);

		memset(&sold, 0x66, sizeof sold);
		sold.st.size = ssz;
		assert_int_equal(tally_store_stats(s, &sold.st), TALLY_OK);
		assert_int_equal(sold.st.records, 2);
		assert_int_equal(((unsigned char *)&sold)[ssz], 0x66);
		sold.st.size = ssz - 1;
		assert_int_equal(tally_store_stats(s, &sold.st), TALLY_EINVAL);
	}

	st.size = 0;
	assert_int_equal(tally_store_stats(s, &st), TALLY_EINVAL);
	st.size = sizeof st;
	assert_int_equal(tally_store_stats(s, &st), TALLY_OK);
	assert_int_equal(st.records, 2);
	assert_int_equal(st.size, sizeof st);
	tally_store_destroy(s);
}

/* ------------------------------------------------------------------------ */
/* The edges tally.h settles                                                */
/* ------------------------------------------------------------------------ */

/* Aligned "2w" windows count from Monday 1970-01-05 00:00 local (the
 * epoch is a Thursday): 2026-11-23 is 2913 weeks later, an even number. */
static void
test_weeks_count_from_1970_01_05(void **state)
{
	struct fake_clock clock = {T(2026, 11, 25, 12, 0, 0)};
	tally_store *s = store_at(&clock, NULL);
	tally_budget_config c = budget(1, "2w", true, 0);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;

	(void)state;
	assert_int_equal((T(2026, 11, 23, 0, 0, 0) - T(1970, 1, 5, 0, 0, 0)) %
				 (14 * D),
			 0);
	assert_int_equal(tally_budget_upsert(s, "w", &c, &v), TALLY_CREATED);
	assert_int_equal(v.window_start, T(2026, 11, 23, 0, 0, 0));
	assert_int_equal(v.window_end, T(2026, 12, 7, 0, 0, 0));
	/* With an offset of +60 the Monday is local: 23:00 UTC Sunday. */
	c.utc_offset_minutes = 60;
	assert_int_equal(tally_budget_upsert(s, "w+1", &c, &v), TALLY_CREATED);
	assert_int_equal(v.window_start, T(2026, 11, 22, 23, 0, 0));
	tally_store_destroy(s);
}

/*
 * Local time is UTC + utc_offset_minutes, and rolling months keep the
 * anchor's local day and time, clamped to the last day of the local
 * month: an anchor late on the 31st local, which is still the 30th in UTC
 * at a positive offset, clamps on the local date.
 */
static void
test_offset_sign_and_local_month_clamp(void **state)
{
	struct fake_clock clock = {T(2026, 2, 10, 0, 0, 0)};
	tally_store *s = store_at(&clock, NULL);
	tally_budget_config c = budget(1, "1d", true, 60);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;

	(void)state;
	/* "1d" aligned at +60: local midnight is 23:00 UTC the day before. */
	assert_int_equal(tally_budget_upsert(s, "day+60", &c, &v),
			 TALLY_CREATED);
	assert_int_equal(v.window_start, T(2026, 2, 9, 23, 0, 0));
	c.utc_offset_minutes = -300;
	assert_int_equal(tally_budget_upsert(s, "day-300", &c, &v),
			 TALLY_CREATED);
	assert_int_equal(v.window_start, T(2026, 2, 9, 5, 0, 0));

	/* Rolling "1M" anchored on Jan 31, 23:30 local at +120 (21:30 UTC
	 * Jan 31). Local: Feb 28 23:30 local = Feb 28 21:30 UTC. */
	c = budget(1, "1M", false, 120);
	c.anchor = T(2026, 1, 31, 21, 30, 0);
	assert_int_equal(tally_budget_upsert(s, "month+120", &c, &v),
			 TALLY_CREATED);
	assert_int_equal(v.window_start, T(2026, 1, 31, 21, 30, 0));
	assert_int_equal(v.window_end, T(2026, 2, 28, 21, 30, 0));

	/* Anchor Mar 31 00:30 local at +120 = Mar 30 22:30 UTC. The next
	 * boundary is Apr 30 00:30 local (Apr 29 22:30 UTC): the day (31,
	 * clamped to 30) is the local one. Had the UTC date (the 30th) been
	 * kept, it would be Apr 30 22:30 UTC. */
	c.anchor = T(2026, 3, 30, 22, 30, 0);
	clock.now = T(2026, 4, 10, 0, 0, 0);
	assert_int_equal(tally_budget_upsert(s, "clamp+120", &c, &v),
			 TALLY_CREATED);
	assert_int_equal(v.window_start, T(2026, 3, 30, 22, 30, 0));
	assert_int_equal(v.window_end, T(2026, 4, 29, 22, 30, 0));
	tally_store_destroy(s);
}

/* A rate-limit counter needs a period: TALLY_EPERIOD (not EINVAL). */
static void
test_counter_without_period(void **state)
{
	struct fake_clock clock = {T(2026, 3, 3, 3, 0, 0)};
	tally_store *s = store_at(&clock, NULL);
	tally_ratelimit_config rc = ratelimit(10, true, 3, true, "1m");

	(void)state;
	rc.requests.period = (tally_period)TALLY_PERIOD_NONE_INIT;
	assert_int_equal(tally_ratelimit_upsert(s, "r", &rc, NULL),
			 TALLY_EPERIOD);
	rc = ratelimit(10, false, 3, false, "none");
	assert_int_equal(tally_ratelimit_upsert(s, "r", &rc, NULL),
			 TALLY_EPERIOD);
	tally_store_destroy(s);
}

/* Reset after the clock went back keeps the window it has (and zeroes
 * the usage). */
static void
test_reset_after_clock_went_back(void **state)
{
	struct fake_clock clock = {T(2026, 3, 3, 3, 30, 0)};
	tally_store *s = store_at(&clock, NULL);
	tally_budget_config c = budget(100, "1h", true, 0);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	tally_ratelimit_config rc = ratelimit(10, true, 3, true, "1h");
	tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
	unsigned m = 0;

	(void)state;
	assert_int_equal(tally_budget_upsert(s, "b", &c, NULL), TALLY_CREATED);
	assert_int_equal(tally_budget_bump(s, "b", 30, &v), TALLY_OK);
	assert_int_equal(tally_ratelimit_upsert(s, "r", &rc, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_ratelimit_bump(s, "r", 3, 1, &rv), TALLY_OK);
	clock.now = T(2026, 3, 3, 1, 0, 0); /* two and a half hours back */
	assert_int_equal(tally_budget_reset(s, "b", v.version, &v), TALLY_OK);
	assert_int_equal(v.usage, 0);
	assert_int_equal(v.window_start, T(2026, 3, 3, 3, 0, 0));
	assert_int_equal(tally_ratelimit_reset(s, "r", rv.version,
					       TALLY_COUNTER_BOTH, &m, &rv),
			 TALLY_OK);
	assert_int_equal(m, TALLY_COUNTER_BOTH);
	assert_int_equal(rv.tokens.usage, 0);
	/* Rolling windows from the creation at 03:30: kept there. */
	assert_int_equal(rv.tokens.window_start, T(2026, 3, 3, 3, 30, 0));
	assert_int_equal(rv.requests.window_start, T(2026, 3, 3, 3, 30, 0));
	tally_store_destroy(s);
}

/* An anchor in the future: the lattice extends before it. */
static void
test_windows_before_a_future_anchor(void **state)
{
	struct fake_clock clock = {T(2026, 3, 3, 3, 0, 0)};
	tally_store *s = store_at(&clock, NULL);
	tally_budget_config c = budget(100, "1d", false, 0);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;

	(void)state;
	c.anchor = T(2026, 3, 10, 12, 0, 0);
	assert_int_equal(tally_budget_upsert(s, "fixed", &c, &v),
			 TALLY_CREATED);
	assert_int_equal(v.window_start, T(2026, 3, 2, 12, 0, 0));
	assert_int_equal(v.window_end, T(2026, 3, 3, 12, 0, 0));
	c = budget(100, "1M", false, 0);
	c.anchor = T(2026, 5, 31, 0, 0, 0);
	assert_int_equal(tally_budget_upsert(s, "month", &c, &v),
			 TALLY_CREATED);
	/* Boundaries before May 31: Apr 30, Mar 31, Feb 28 (clamped). */
	assert_int_equal(v.window_start, T(2026, 2, 28, 0, 0, 0));
	assert_int_equal(v.window_end, T(2026, 3, 31, 0, 0, 0));
	tally_store_destroy(s);
}

/* try_consume beyond INT64_MAX: LIMITED where there is a max, EOVERFLOW on
 * a counter without one (unless the other counter is LIMITED). */
static void
test_try_consume_sums_beyond_int64(void **state)
{
	struct fake_clock clock = {T(2026, 3, 3, 3, 0, 0)};
	tally_store *s = store_at(&clock, NULL);
	tally_budget_config c = budget(INT64_MAX, "1h", true, 0);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	tally_ratelimit_config rc = ratelimit(INT64_MAX, true, 0, false, "1h");
	tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
	unsigned m = 99;

	(void)state;
	assert_int_equal(tally_budget_upsert(s, "b", &c, NULL), TALLY_CREATED);
	assert_int_equal(tally_budget_bump(s, "b", INT64_MAX - 1, NULL),
			 TALLY_OK);
	assert_int_equal(tally_budget_try_consume(s, "b", 2, &v),
			 TALLY_LIMITED);
	assert_int_equal(tally_budget_try_consume(s, "b", INT64_MAX, &v),
			 TALLY_LIMITED);
	assert_int_equal(v.usage, INT64_MAX - 1);
	assert_int_equal(tally_budget_try_consume(s, "b", 1, &v), TALLY_OK);
	assert_int_equal(v.usage, INT64_MAX);

	/* tokens have a max, requests none. */
	assert_int_equal(tally_ratelimit_upsert(s, "r", &rc, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_ratelimit_bump(s, "r", INT64_MAX - 1,
					      INT64_MAX - 1, NULL),
			 TALLY_OK);
	assert_int_equal(tally_ratelimit_try_consume(s, "r", 0, 2, &m, &rv),
			 TALLY_EOVERFLOW);
	assert_int_equal(m, 99); /* an error: untouched */
	assert_int_equal(tally_ratelimit_try_consume(s, "r", 2, 2, &m, &rv),
			 TALLY_LIMITED);
	assert_int_equal(m, TALLY_COUNTER_TOKENS);
	assert_int_equal(tally_ratelimit_try_consume(s, "r", 1, 1, &m, &rv),
			 TALLY_OK);
	assert_int_equal(m, 0);
	assert_int_equal(rv.tokens.usage, INT64_MAX);
	assert_int_equal(rv.requests.usage, INT64_MAX);
	tally_store_destroy(s);
}

/* A budget with no period: window_start is the anchor, window_end
 * INT64_MAX; it never rolls. */
static void
test_budget_without_period(void **state)
{
	struct fake_clock clock = {T(2026, 3, 3, 3, 0, 0)};
	tally_store *s = store_at(&clock, NULL);
	tally_budget_config c = budget(100, "none", false, 0);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	size_t rolled = 9;

	(void)state;
	assert_int_equal(tally_budget_upsert(s, "default", &c, &v),
			 TALLY_CREATED);
	assert_int_equal(v.window_start, T(2026, 3, 3, 3, 0, 0));
	assert_int_equal(v.window_end, INT64_MAX);
	c.anchor = T(2020, 1, 1, 0, 0, 0);
	assert_int_equal(tally_budget_upsert(s, "anchored", &c, &v),
			 TALLY_CREATED);
	assert_int_equal(v.window_start, T(2020, 1, 1, 0, 0, 0));
	assert_int_equal(v.window_end, INT64_MAX);
	clock.now = INT64_MAX;
	assert_int_equal(tally_sweep(s, NULL, NULL, &rolled), TALLY_OK);
	assert_int_equal(rolled, 0);
	tally_store_destroy(s);
}

/* *limited is 0 after OK; *reset is 0 after CONFLICT, and the view holds
 * the current snapshot. */
static void
test_outputs_after_ok_and_conflict(void **state)
{
	struct fake_clock clock = {T(2026, 3, 3, 3, 0, 0)};
	tally_store *s = store_at(&clock, NULL);
	tally_ratelimit_config rc = ratelimit(10, true, 3, true, "1m");
	tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
	tally_ratelimit_view cur = TALLY_RATELIMIT_VIEW_INIT;
	unsigned m = 99;

	(void)state;
	assert_int_equal(tally_ratelimit_upsert(s, "r", &rc, &rv),
			 TALLY_CREATED);
	assert_int_equal(tally_ratelimit_try_consume(s, "r", 1, 1, &m, &rv),
			 TALLY_OK);
	assert_int_equal(m, 0);
	m = 99;
	assert_int_equal(tally_ratelimit_check(s, "r", &m, NULL), TALLY_OK);
	assert_int_equal(m, 0);
	m = 99;
	assert_int_equal(tally_ratelimit_reset(s, "r", rv.version - 1,
					       TALLY_COUNTER_BOTH, &m, &cur),
			 TALLY_CONFLICT);
	assert_int_equal(m, 0);
	assert_int_equal(cur.version, rv.version);
	assert_int_equal(cur.tokens.usage, 1);
	assert_int_equal(cur.incarnation, rv.incarnation);
	tally_store_destroy(s);
}

/* ------------------------------------------------------------------------ */
/* Clocks and options                                                       */
/* ------------------------------------------------------------------------ */

struct counted_clock {
	struct fake_clock fake;
	int64_t lag; /* the coarse clock runs this far behind */
	long precise, coarse;
};

static int64_t
precise_read(void *ctx)
{
	struct counted_clock *c = ctx;

	c->precise++;
	return fake_clock_read(&c->fake);
}

static int64_t
coarse_read(void *ctx)
{
	struct counted_clock *c = ctx;

	c->coarse++;
	return fake_clock_read(&c->fake) - c->lag;
}

static void
test_coarse_clock_option(void **state)
{
	struct counted_clock cc = {{T(2026, 3, 3, 3, 10, 0)}, 0, 0, 0};
	tally_store_options o = TALLY_STORE_OPTIONS_INIT;
	tally_budget_config c = budget(100, "1h", true, 0);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	tally_store *s;

	(void)state;
	o.clock = precise_read;
	o.clock_ctx = &cc;
	o.coarse_clock = coarse_read;
	o.coarse_clock_ctx = &cc;
	cc.lag = TALLY_COARSE_MARGIN_NS - 1; /* the most the contract allows */
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	assert_int_equal(tally_budget_upsert(s, "b", &c, NULL), TALLY_CREATED);
	/* Far from the window's end: the coarse clock decides alone. */
	cc.precise = cc.coarse = 0;
	assert_int_equal(tally_budget_bump(s, "b", 1, NULL), TALLY_OK);
	assert_int_equal(tally_budget_try_consume(s, "b", 1, NULL), TALLY_OK);
	assert_int_equal(tally_budget_check(s, "b", NULL), TALLY_OK);
	assert_int_equal(cc.coarse, 3);
	assert_int_equal(cc.precise, 0);
	/* Just past the end, the lagging coarse reading is still before it:
	 * the precise clock is read, and the window rolls as it must. */
	cc.fake.now = T(2026, 3, 3, 4, 0, 0);
	cc.precise = cc.coarse = 0;
	assert_int_equal(tally_budget_bump(s, "b", 5, &v), TALLY_OK);
	assert_int_equal(cc.coarse, 1);
	assert_int_equal(cc.precise, 1);
	assert_int_equal(v.usage, 5);
	assert_int_equal(v.window_start, T(2026, 3, 3, 4, 0, 0));
	/* get reads no clock; upsert and reset read the precise one. */
	cc.precise = cc.coarse = 0;
	assert_int_equal(tally_budget_get(s, "b", &v), TALLY_OK);
	assert_int_equal(tally_budget_reset(s, "b", v.version, &v), TALLY_OK);
	assert_int_equal(cc.coarse, 0);
	assert_int_equal(cc.precise, 1);
	tally_store_destroy(s);

	/* An injected precise clock alone: no coarse reads at all. */
	o.coarse_clock = NULL;
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	assert_int_equal(tally_budget_upsert(s, "b", &c, NULL), TALLY_CREATED);
	cc.precise = cc.coarse = 0;
	assert_int_equal(tally_budget_bump(s, "b", 1, NULL), TALLY_OK);
	assert_int_equal(cc.coarse, 0);
	assert_int_equal(cc.precise, 1);
	tally_store_destroy(s);
}

/* Through a store on the default clock (CLOCK_REALTIME with coarse
 * readings): whatever the path, windows contain the real time and every
 * unit is counted. */
static void
test_default_clock_store(void **state)
{
	tally_store *st;
	tally_budget_config c = budget(1000000, "1h", true, 0);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	struct timespec ts;
	int64_t before, after;

	(void)state;
	assert_int_equal(tally_store_create(&st, NULL), TALLY_OK);
	clock_gettime(CLOCK_REALTIME, &ts);
	before = (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
	assert_int_equal(tally_budget_upsert(st, "k", &c, NULL), TALLY_CREATED);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(tally_budget_bump(st, "k", 1, NULL), TALLY_OK);
	assert_int_equal(tally_budget_try_consume(st, "k", 1, NULL), TALLY_OK);
	assert_int_equal(tally_budget_check(st, "k", &v), TALLY_OK);
	clock_gettime(CLOCK_REALTIME, &ts);
	after = (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
	assert_int_equal(tally_budget_get(st, "k", &v), TALLY_OK);
	/* 1001 units, unless the hour turned during the loop (then the roll
	 * moved some of them out: the window starts after `before`). */
	if (v.window_start <= before)
		assert_int_equal(v.usage, 1001);
	assert_true(v.window_start <= after);
	assert_true(after < v.window_end + NS_PER_SEC);
	assert_int_equal(v.window_start % H, 0);
	assert_int_equal(v.window_end - v.window_start, H);
	tally_store_destroy(st);
}

/* Store-level bad option: more records than the map can be sized for. */
static void
test_expected_records_too_large(void **state)
{
	tally_store_options o = TALLY_STORE_OPTIONS_INIT;
	tally_store *st = NULL;

	(void)state;
	o.expected_records = (size_t)1 << 40;
	assert_int_equal(tally_store_create(&st, &o), TALLY_EINVAL);
	assert_null(st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_forms_name_one_record),
		cmocka_unit_test(test_bad_keys_in_both_forms),
		cmocka_unit_test(test_struct_sizes),
		cmocka_unit_test(test_weeks_count_from_1970_01_05),
		cmocka_unit_test(test_offset_sign_and_local_month_clamp),
		cmocka_unit_test(test_counter_without_period),
		cmocka_unit_test(test_reset_after_clock_went_back),
		cmocka_unit_test(test_windows_before_a_future_anchor),
		cmocka_unit_test(test_try_consume_sums_beyond_int64),
		cmocka_unit_test(test_budget_without_period),
		cmocka_unit_test(test_outputs_after_ok_and_conflict),
		cmocka_unit_test(test_coarse_clock_option),
		cmocka_unit_test(test_default_clock_store),
		cmocka_unit_test(test_expected_records_too_large),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
