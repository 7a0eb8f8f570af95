/*
 * The released layouts of every public struct (tally.h, "Structs and how
 * they grow"), pinned on LP64 (x86-64, arm64): a field moved, removed or
 * inserted anywhere but at the end of a size-prefixed struct breaks
 * callers compiled against an older header, and this test. Appending a
 * field adds a line here; changing one of these lines is an ABI break,
 * which needs a new layout that the library keeps filling for old callers
 * (and a new soname).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "support.h"
#include "tally.h"

#define OFF(type, field, off)                                                  \
	_Static_assert(offsetof(type, field) == (off),                         \
		       #type "." #field " stays at " #off)
#define SIZE(type, n) _Static_assert(sizeof(type) == (n), #type " is " #n)

#if UINTPTR_MAX == UINT64_MAX && SIZE_MAX == UINT64_MAX
SIZE(tally_period, 16);
OFF(tally_period, count, 0);
OFF(tally_period, unit, 8);
SIZE(tally_allocator, 24);
SIZE(tally_roll, 80);
OFF(tally_roll, size, 0);
OFF(tally_roll, key, 8);
OFF(tally_roll, key_len, 16);
OFF(tally_roll, kind, 24);
OFF(tally_roll, counter, 28);
OFF(tally_roll, cause, 32);
OFF(tally_roll, usage_before, 40);
OFF(tally_roll, old_window_start, 48);
OFF(tally_roll, new_window_start, 56);
OFF(tally_roll, version, 64);
OFF(tally_roll, incarnation, 72);
SIZE(tally_store_options, 120);
OFF(tally_store_options, size, 0);
OFF(tally_store_options, expected_records, 8);
OFF(tally_store_options, clock, 16);
OFF(tally_store_options, clock_ctx, 24);
OFF(tally_store_options, allocator, 32);
OFF(tally_store_options, on_roll, 56);
OFF(tally_store_options, on_roll_ctx, 64);
OFF(tally_store_options, hash_seed, 72);
OFF(tally_store_options, coarse_clock, 80);
OFF(tally_store_options, coarse_clock_ctx, 88);
SIZE(tally_stats, 208);
OFF(tally_stats, records, 8);
OFF(tally_stats, peak_pending, 80);
SIZE(tally_budget_config, 48);
OFF(tally_budget_config, max_limit, 8);
OFF(tally_budget_config, period, 16);
OFF(tally_budget_config, anchor, 32);
OFF(tally_budget_config, utc_offset_minutes, 40);
OFF(tally_budget_config, calendar_aligned, 44);
SIZE(tally_budget_view, 112);
OFF(tally_budget_view, config, 8);
OFF(tally_budget_view, usage, 56);
OFF(tally_budget_view, window_start, 64);
OFF(tally_budget_view, window_end, 72);
OFF(tally_budget_view, version, 80);
OFF(tally_budget_view, incarnation, 88);
SIZE(tally_limit, 32);
OFF(tally_limit, has_max, 0);
OFF(tally_limit, max, 8);
OFF(tally_limit, period, 16);
SIZE(tally_ratelimit_config, 96); /* 0.3: 88 */
OFF(tally_ratelimit_config, tokens, 8);
OFF(tally_ratelimit_config, requests, 40);
OFF(tally_ratelimit_config, anchor, 72);
OFF(tally_ratelimit_config, utc_offset_minutes, 80);
OFF(tally_ratelimit_config, calendar_aligned, 84);
SIZE(tally_counter_view, 24);
/* 0.4 grew the config inside the view: the view's 0.3 layout (184 bytes,
 * its fields 8 bytes earlier than here) is struct view_03 below, which the
 * library still fills for a view of its size (test_old_view_layouts). */
SIZE(tally_ratelimit_view, 208);
OFF(tally_ratelimit_view, config, 8);
OFF(tally_ratelimit_view, tokens, 104);
OFF(tally_ratelimit_view, requests, 128);
OFF(tally_ratelimit_view, version, 152);
OFF(tally_ratelimit_view, incarnation, 160);
/* 0.3: appended fields and the admission structs. */
OFF(tally_store_options, hold_ttl_max, 96);
OFF(tally_store_options, on_expire, 104);
OFF(tally_store_options, on_expire_ctx, 112);
OFF(tally_stats, admitted, 88);
OFF(tally_stats, shadow_would_deny, 200);
OFF(tally_budget_view, held, 96);
OFF(tally_budget_view, holds, 104);
OFF(tally_ratelimit_view, tokens_held, 168);
OFF(tally_ratelimit_view, requests_held, 176);
OFF(tally_ratelimit_view, holds, 184);
SIZE(tally_expiry, 72);
OFF(tally_expiry, key, 8);
OFF(tally_expiry, key_len, 16);
OFF(tally_expiry, kind, 24);
OFF(tally_expiry, holds, 28);
OFF(tally_expiry, amount, 32);
OFF(tally_expiry, slot_end, 48);
OFF(tally_expiry, version, 56);
OFF(tally_expiry, incarnation, 64);
SIZE(tally_charge, 48);
OFF(tally_charge, flags, 4);
OFF(tally_charge, key, 8);
OFF(tally_charge, key_len, 16);
OFF(tally_charge, amount, 24);
OFF(tally_charge, tokens, 32);
OFF(tally_charge, requests, 40);
SIZE(tally_cost, 24);
OFF(tally_cost, tokens, 8);
OFF(tally_cost, requests, 16);
SIZE(tally_hold_part, 56);
OFF(tally_hold_part, hash, 8);
OFF(tally_hold_part, incarnation, 16);
OFF(tally_hold_part, slot, 24);
OFF(tally_hold_part, amount, 32);
OFF(tally_hold_part, kind, 48);
OFF(tally_hold_part, flags, 52);
SIZE(tally_hold, 936);
OFF(tally_hold, store_id, 8);
OFF(tally_hold, deadline, 16);
OFF(tally_hold, n, 24);
OFF(tally_hold, state, 28);
OFF(tally_hold, check, 32);
OFF(tally_hold, part, 40);
SIZE(tally_counter_report, 72);
OFF(tally_counter_report, flags, 4);
OFF(tally_counter_report, max, 8);
OFF(tally_counter_report, used, 16);
OFF(tally_counter_report, held, 24);
OFF(tally_counter_report, remaining, 32);
OFF(tally_counter_report, window_start, 40);
OFF(tally_counter_report, window_end, 48);
OFF(tally_counter_report, retry_after, 56);
OFF(tally_counter_report, overdraft, 64);
SIZE(tally_limit_report, 168);
OFF(tally_limit_report, flags, 4);
OFF(tally_limit_report, c, 8);
OFF(tally_limit_report, version, 152);
OFF(tally_limit_report, incarnation, 160);
SIZE(tally_decision, 2720);
OFF(tally_decision, now, 8);
OFF(tally_decision, refused, 16);
OFF(tally_decision, n, 20);
OFF(tally_decision, mask, 24);
OFF(tally_decision, flags, 28);
OFF(tally_decision, limit, 32);
SIZE(tally_header_policy, 24);
OFF(tally_header_policy, limit, 8);
OFF(tally_header_policy, counter, 12);
OFF(tally_header_policy, unit, 16);
/* 0.4: the counters' algorithms, and the sliding counters' prev. */
OFF(tally_ratelimit_config, tokens_algorithm, 88);
OFF(tally_ratelimit_config, requests_algorithm, 92);
OFF(tally_ratelimit_view, tokens_previous, 192);
OFF(tally_ratelimit_view, requests_previous, 200);
/* 0.4: the metrics writer's options. */
SIZE(tally_metrics_options, 32);
OFF(tally_metrics_options, size, 0);
OFF(tally_metrics_options, prefix, 8);
OFF(tally_metrics_options, max_records, 16);
OFF(tally_metrics_options, flags, 24);
#define LAYOUT_PINNED 1
#else
#define LAYOUT_PINNED 0
#endif

/* The _INIT macros set each size to the struct's own, and every enum a
 * struct names fits its fixed-width field. */
static void
test_init_macros(void **state)
{
	tally_store_options o = TALLY_STORE_OPTIONS_INIT;
	tally_stats st = TALLY_STATS_INIT;
	tally_budget_config bc = TALLY_BUDGET_CONFIG_INIT;
	tally_budget_view bv = TALLY_BUDGET_VIEW_INIT;
	tally_ratelimit_config rc = TALLY_RATELIMIT_CONFIG_INIT;
	tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
	tally_hold h = TALLY_HOLD_INIT;
	tally_decision d = TALLY_DECISION_INIT;

	(void)state;
	assert_true(LAYOUT_PINNED);
	assert_int_equal(o.size, sizeof o);
	assert_int_equal(st.size, sizeof st);
	assert_int_equal(bc.size, sizeof bc);
	assert_int_equal(bc.anchor, TALLY_ANCHOR_DEFAULT);
	assert_int_equal(bv.size, sizeof bv);
	assert_int_equal(bv.config.size, sizeof bv.config);
	assert_int_equal(rc.size, sizeof rc);
	assert_int_equal(rc.anchor, TALLY_ANCHOR_DEFAULT);
	assert_int_equal(rv.size, sizeof rv);
	assert_int_equal(rv.config.size, sizeof rv.config);
	assert_int_equal(o.hold_ttl_max, 0);
	assert_null(o.on_expire);
	assert_int_equal(h.size, sizeof h);
	assert_int_equal(h.state, TALLY_HOLD_NONE);
	assert_int_equal(d.size, sizeof d);
	assert_int_equal(d.refused, -1);
}

/* The 0.3 layouts, as a caller compiled against 0.3 declares them (this
 * file's own copy: what the released header said). */
struct config_03 {
	size_t size;
	tally_limit tokens;
	tally_limit requests;
	int64_t anchor;
	int32_t utc_offset_minutes;
	bool calendar_aligned;
};

struct view_03 {
	size_t size;
	struct config_03 config;
	tally_counter_view tokens;
	tally_counter_view requests;
	uint64_t version;
	uint64_t incarnation;
	int64_t tokens_held;
	int64_t requests_held;
	uint64_t holds;
};

#if LAYOUT_PINNED
SIZE(struct config_03, 88);
SIZE(struct view_03, 184);
OFF(struct view_03, tokens_held, 160);
#endif

/* A caller of 0.3 (and 0.2: the view up to tokens_held) upserts with its
 * config, reads its views and gets every field where its header put it,
 * nothing written past its size; a record a 0.4 caller made sliding looks
 * to it as the same counters without the algorithm. */
static void
test_old_view_layouts(void **state)
{
	struct fake_clock clock = {T(2026, 5, 5, 5, 0, 0)};
	tally_store_options o = test_options(&clock, NULL);
	tally_ratelimit_config now_cfg = TALLY_RATELIMIT_CONFIG_INIT;
	tally_ratelimit_view now_view = TALLY_RATELIMIT_VIEW_INIT;
	struct config_03 c;
	unsigned char buf[sizeof(struct view_03) + 16];
	struct view_03 v;
	tally_store *s;

	(void)state;
	memset(&c, 0, sizeof c);
	c.size = sizeof c;
	c.tokens.has_max = true;
	c.tokens.max = 1000;
	c.tokens.period = P("1m");
	c.requests.has_max = true;
	c.requests.max = 10;
	c.requests.period = P("1h");
	c.anchor = TALLY_ANCHOR_DEFAULT;
	c.utc_offset_minutes = 60;
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	assert_int_equal(
		tally_ratelimit_upsert(
			s, "old", (const tally_ratelimit_config *)&c, NULL),
		TALLY_CREATED);
	assert_int_equal(tally_ratelimit_bump(s, "old", 7, 1, NULL), TALLY_OK);
	/* A config of the 0.3 size means fixed windows. */
	assert_int_equal(tally_ratelimit_get(s, "old", &now_view), TALLY_OK);
	assert_int_equal(now_view.config.tokens_algorithm,
			 TALLY_ALGORITHM_FIXED);
	assert_int_equal(now_view.config.requests_algorithm,
			 TALLY_ALGORITHM_FIXED);
	assert_int_equal(now_view.config.utc_offset_minutes, 60);

	for (int round = 0; round < 2; round++) {
		for (size_t size = offsetof(struct view_03, tokens_held);
		     size <= sizeof v;
		     size += sizeof v - offsetof(struct view_03, tokens_held)) {
			memset(buf, 0xa5, sizeof buf);
			memcpy(buf, &size, sizeof size);
			assert_int_equal(
				tally_ratelimit_get(
					s, "old", (tally_ratelimit_view *)buf),
				TALLY_OK);
			for (size_t i = size; i < sizeof buf; i++)
				assert_int_equal(buf[i], 0xa5);
			memset(&v, 0, sizeof v);
			memcpy(&v, buf, size);
			assert_int_equal(v.size, size);
			assert_int_equal(v.config.size,
					 sizeof(struct config_03));
			assert_int_equal(v.config.tokens.max, 1000);
			assert_int_equal(v.config.tokens.period.count,
					 60 * NS_PER_SEC);
			assert_int_equal(v.config.requests.max, 10);
			assert_int_equal(v.config.utc_offset_minutes, 60);
			assert_int_equal(v.tokens.usage, round == 0 ? 7 : 9);
			assert_int_equal(v.requests.usage, round == 0 ? 1 : 2);
			assert_int_equal(v.tokens.window_end,
					 now_view.tokens.window_end);
			assert_int_equal(v.requests.window_start,
					 now_view.requests.window_start);
			assert_int_equal(v.version, now_view.version);
			assert_int_equal(v.incarnation, now_view.incarnation);
			if (size == sizeof v) {
				assert_int_equal(v.tokens_held, 0);
				assert_int_equal(v.holds, 0);
			}
		}
		/* A 0.4 caller makes the tokens counter sliding. */
		now_cfg = now_view.config;
		now_cfg.tokens_algorithm = TALLY_ALGORITHM_SLIDING;
		assert_int_equal(
			tally_ratelimit_upsert(s, "old", &now_cfg, &now_view),
			TALLY_OK);
		assert_int_equal(
			tally_ratelimit_bump(s, "old", 2, 1, &now_view),
			TALLY_OK);
	}
	assert_int_equal(now_view.config.tokens_algorithm,
			 TALLY_ALGORITHM_SLIDING);
	/* An old config's size and a smaller view are still refused. */
	memset(buf, 0, sizeof buf);
	{
		size_t small = offsetof(struct view_03, tokens_held) - 1;

		memcpy(buf, &small, sizeof small);
	}
	assert_int_equal(
		tally_ratelimit_get(s, "old", (tally_ratelimit_view *)buf),
		TALLY_EINVAL);
	c.size = sizeof c - 1;
	assert_int_equal(
		tally_ratelimit_upsert(
			s, "old", (const tally_ratelimit_config *)&c, NULL),
		TALLY_EINVAL);
	tally_store_destroy(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_macros),
		cmocka_unit_test(test_old_view_layouts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
