/*
 * Admission through the public API (src/admit.c): tally_admit in its three
 * modes over several limits, the settlement calls, handles, expiry, the
 * decision reports and the stats, single-threaded with a fake clock. Bad
 * input: every new call gets a clear negative code and changes nothing
 * (each such case checks the versions and views of every record).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "support.h"
#include "tally.h"

#define S NS_PER_SEC

struct expiry_log {
	unsigned events;
	uint64_t holds;
	int64_t amount[2];
	char last_key[256];
};

static void
log_expiry(const tally_expiry *ev, void *ctx)
{
	struct expiry_log *l = ctx;

	l->events++;
	l->holds += ev->holds;
	l->amount[0] += ev->amount[0];
	l->amount[1] += ev->amount[1];
	memcpy(l->last_key, ev->key, ev->key_len + 1);
}

struct fixture {
	struct fake_clock clock;
	struct expiry_log exp;
	tally_store *s;
};

/* A store at 2026-12-03 12:00:00 UTC with a 60 s hold_ttl_max (grain 20
 * s) and:  budgets "team" (max 100 per hour) and "cust" (max 1000 per
 * day), rate limit "key" (tokens 500/min, requests 3/min). */
static void
setup(struct fixture *f)
{
	tally_store_options o;
	tally_budget_config b = TALLY_BUDGET_CONFIG_INIT;
	tally_ratelimit_config r = TALLY_RATELIMIT_CONFIG_INIT;

	memset(f, 0, sizeof *f);
	f->clock.now = T(2026, 12, 3, 12, 0, 0);
	o = test_options(&f->clock, NULL);
	o.hold_ttl_max = 60 * S;
	o.on_expire = log_expiry;
	o.on_expire_ctx = &f->exp;
	assert_int_equal(tally_store_create(&f->s, &o), TALLY_OK);
	b.max_limit = 100;
	b.period = P("1h");
	b.calendar_aligned = true;
	assert_int_equal(tally_budget_upsert(f->s, "team", &b, NULL),
			 TALLY_CREATED);
	b.max_limit = 1000;
	b.period = P("1d");
	assert_int_equal(tally_budget_upsert(f->s, "cust", &b, NULL),
			 TALLY_CREATED);
	r.tokens.has_max = true;
	r.tokens.max = 500;
	r.tokens.period = P("1m");
	r.requests.has_max = true;
	r.requests.max = 3;
	r.requests.period = P("1m");
	r.calendar_aligned = true;
	assert_int_equal(tally_ratelimit_upsert(f->s, "key", &r, NULL),
			 TALLY_CREATED);
}

static tally_charge
bch(const char *key, int64_t amount)
{
	tally_charge c = {
		TALLY_KIND_BUDGET, 0, key, TALLY_KEY_STRLEN, amount, 0, 0};

	return c;
}

static tally_charge
rch(const char *key, int64_t tokens, int64_t requests)
{
	tally_charge c = {TALLY_KIND_RATELIMIT,
			  0,
			  key,
			  TALLY_KEY_STRLEN,
			  0,
			  tokens,
			  requests};

	return c;
}

static tally_budget_view
bview(tally_store *s, const char *key)
{
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;

	assert_int_equal(tally_budget_get(s, key, &v), TALLY_OK);
	return v;
}

static tally_ratelimit_view
rview(tally_store *s, const char *key)
{
	tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;

	assert_int_equal(tally_ratelimit_get(s, key, &v), TALLY_OK);
	return v;
}

/* The versions of the three records: "nothing changed" is these equal. */
struct versions {
	uint64_t team, cust, key;
};

static struct versions
versions(tally_store *s)
{
	struct versions v;

	v.team = bview(s, "team").version;
	v.cust = bview(s, "cust").version;
	v.key = rview(s, "key").version;
	return v;
}

static void
assert_unchanged(tally_store *s, const struct versions *before)
{
	struct versions now = versions(s);

	assert_int_equal(now.team, before->team);
	assert_int_equal(now.cust, before->cust);
	assert_int_equal(now.key, before->key);
}

/* ------------------------------------------------------------------------ */

static void
test_hold_settle_across_limits(void **state)
{
	struct fixture f;
	tally_charge ch[3];
	tally_hold h = TALLY_HOLD_INIT;
	tally_decision d = TALLY_DECISION_INIT;
	tally_cost act[3] = {{55, 0, 0}, {0, 380, 1}, {55, 0, 0}};
	tally_stats st = TALLY_STATS_INIT;
	tally_budget_view bv;
	tally_ratelimit_view rv;

	(void)state;
	setup(&f);
	ch[0] = bch("team", 40);
	ch[1] = rch("key", 300, 1);
	ch[2] = bch("cust", 40);
	assert_int_equal(
		tally_admit(f.s, ch, 3, TALLY_ADMIT_HOLD, 30 * S, &h, &d),
		TALLY_OK);
	assert_int_equal(h.state, TALLY_HOLD_LIVE);
	assert_int_equal(h.n, 3);
	assert_int_equal(h.deadline, f.clock.now + 30 * S);
	assert_int_equal(d.n, 3);
	assert_int_equal(d.refused, -1);
	assert_int_equal(d.mask, 0);
	assert_int_equal(d.now, f.clock.now);
	assert_int_equal(d.limit[0].kind, TALLY_KIND_BUDGET);
	assert_int_equal(d.limit[0].c[0].held, 40);
	assert_int_equal(d.limit[0].c[0].remaining, 60);
	assert_int_equal(d.limit[0].c[0].window_end, T(2026, 12, 3, 13, 0, 0));
	assert_int_equal(d.limit[1].kind, TALLY_KIND_RATELIMIT);
	assert_int_equal(d.limit[1].c[0].held, 300);
	assert_int_equal(d.limit[1].c[1].held, 1);
	assert_int_equal(d.limit[1].c[1].remaining, 2);
	assert_int_equal(d.limit[0].version, bview(f.s, "team").version);
	assert_int_equal(d.limit[0].incarnation,
			 bview(f.s, "team").incarnation);
	bv = bview(f.s, "team");
	assert_int_equal(bv.usage, 0);
	assert_int_equal(bv.held, 40);
	assert_int_equal(bv.holds, 1);
	rv = rview(f.s, "key");
	assert_int_equal(rv.tokens_held, 300);
	assert_int_equal(rv.requests_held, 1);
	assert_int_equal(rv.holds, 1);

	f.clock.now += 5 * S;
	assert_int_equal(tally_settle(f.s, &h, act, 3, &d), TALLY_OK);
	assert_int_equal(h.state, TALLY_HOLD_SETTLED);
	assert_true(d.limit[0].flags & TALLY_DECISION_OVERDRAFT);
	assert_int_equal(d.limit[0].c[0].overdraft, 15);
	assert_int_equal(d.limit[1].c[0].overdraft, 80);
	assert_int_equal(d.limit[1].c[1].overdraft, 0);
	assert_int_equal(d.limit[0].c[0].used, 55);
	assert_int_equal(d.limit[0].c[0].held, 0);
	bv = bview(f.s, "team");
	assert_int_equal(bv.usage, 55);
	assert_int_equal(bv.held, 0);
	assert_int_equal(bv.holds, 0);
	rv = rview(f.s, "key");
	assert_int_equal(rv.tokens.usage, 380);
	assert_int_equal(rv.requests.usage, 1);
	assert_int_equal(rv.tokens_held, 0);

	/* Exactly once: the same handle again changes nothing. */
	{
		struct versions before = versions(f.s);

		assert_int_equal(tally_settle(f.s, &h, act, 3, &d),
				 TALLY_ESETTLED);
		assert_int_equal(tally_release(f.s, &h, &d), TALLY_ESETTLED);
		assert_unchanged(f.s, &before);
	}
	assert_int_equal(tally_store_stats(f.s, &st), TALLY_OK);
	assert_int_equal(st.admitted, 1);
	assert_int_equal(st.holds, 3);
	assert_int_equal(st.settles, 1);
	assert_int_equal(st.overdraft_units, 15 + 80 + 15);
	tally_store_destroy(f.s);
}

/* Holds count against check and try_consume (used + held), not bump. */
static void
test_held_blocks_check_and_try(void **state)
{
	struct fixture f;
	tally_charge ch = bch("team", 100);
	tally_hold h = TALLY_HOLD_INIT;
	unsigned m = 0;

	(void)state;
	setup(&f);
	assert_int_equal(tally_budget_check(f.s, "team", NULL), TALLY_OK);
	assert_int_equal(
		tally_admit(f.s, &ch, 1, TALLY_ADMIT_HOLD, S, &h, NULL),
		TALLY_OK);
	assert_int_equal(tally_budget_check(f.s, "team", NULL), TALLY_LIMITED);
	assert_int_equal(tally_budget_try_consume(f.s, "team", 1, NULL),
			 TALLY_LIMITED);
	assert_int_equal(tally_budget_try_consume(f.s, "team", 0, NULL),
			 TALLY_OK);
	assert_int_equal(tally_budget_bump(f.s, "team", 1, NULL), TALLY_OK);
	ch = rch("key", 0, 3);
	h = (tally_hold)TALLY_HOLD_INIT;
	assert_int_equal(
		tally_admit(f.s, &ch, 1, TALLY_ADMIT_HOLD, S, &h, NULL),
		TALLY_OK);
	assert_int_equal(tally_ratelimit_check(f.s, "key", &m, NULL),
			 TALLY_LIMITED);
	assert_int_equal(m, TALLY_COUNTER_REQUESTS);
	assert_int_equal(
		tally_ratelimit_try_consume(f.s, "key", 1, 0, &m, NULL),
		TALLY_OK);
	assert_int_equal(
		tally_ratelimit_try_consume(f.s, "key", 0, 1, &m, NULL),
		TALLY_LIMITED);
	assert_int_equal(m, TALLY_COUNTER_REQUESTS);
	/* The holds expire (deadline + 1 s, slot end 12:00:20): check
	 * sees them gone at once, before any write drops them. */
	f.clock.now = T(2026, 12, 3, 12, 0, 20);
	assert_int_equal(tally_ratelimit_check(f.s, "key", &m, NULL), TALLY_OK);
	assert_int_equal(rview(f.s, "key").requests_held, 3); /* stored */
	assert_int_equal(f.exp.events, 0);
	assert_int_equal(tally_ratelimit_bump(f.s, "key", 0, 0, NULL),
			 TALLY_OK);
	assert_int_equal(f.exp.events, 1);
	assert_int_equal(f.exp.holds, 1);
	assert_int_equal(f.exp.amount[1], 3);
	assert_string_equal(f.exp.last_key, "key");
	assert_int_equal(rview(f.s, "key").requests_held, 0);
	tally_store_destroy(f.s);
}

/* The first pass refuses without writing; the decision names the first
 * refusing limit (caller order) and every one that would refuse. */
static void
test_refusal_mask_and_no_trace(void **state)
{
	struct fixture f;
	tally_charge ch[4];
	tally_hold h = TALLY_HOLD_INIT, h0 = TALLY_HOLD_INIT;
	tally_decision d = TALLY_DECISION_INIT;
	struct versions before;
	tally_stats st = TALLY_STATS_INIT;

	(void)state;
	setup(&f);
	assert_int_equal(tally_budget_bump(f.s, "team", 90, NULL), TALLY_OK);
	ch[0] = bch("cust", 10);
	ch[1] = bch("team", 11);   /* 90 + 11 > 100 */
	ch[2] = rch("key", 10, 1); /* fits */
	ch[3] = rch("key2", 1, 1); /* missing: first an existing key */
	before = versions(f.s);
	assert_int_equal(
		tally_admit(f.s, ch, 3, TALLY_ADMIT_HOLD, 30 * S, &h, &d),
		TALLY_LIMITED);
	assert_unchanged(f.s, &before);
	assert_memory_equal(&h, &h0, sizeof h); /* left as it was */
	assert_int_equal(d.refused, 1);
	assert_int_equal(d.mask, 1u << 1);
	assert_true(d.limit[1].flags & TALLY_DECISION_DENIED);
	assert_false(d.limit[1].flags & TALLY_DECISION_TOO_BIG);
	assert_int_equal(d.limit[1].c[0].retry_after,
			 T(2026, 12, 3, 13, 0, 0) - f.clock.now);
	assert_false(d.limit[0].flags & TALLY_DECISION_DENIED);
	/* Two refusing: both in the mask, the lower index named. */
	ch[2] = rch("key", 501, 1); /* TOO_BIG */
	assert_int_equal(
		tally_admit(f.s, ch, 3, TALLY_ADMIT_HOLD, 30 * S, &h, &d),
		TALLY_LIMITED);
	assert_int_equal(d.refused, 1);
	assert_int_equal(d.mask, (1u << 1) | (1u << 2));
	assert_true(d.limit[2].c[0].flags & TALLY_DECISION_TOO_BIG);
	assert_int_equal(d.limit[2].c[0].retry_after, TALLY_RETRY_NEVER);
	assert_false(d.limit[2].c[1].flags & TALLY_DECISION_DENIED);
	/* A missing record: ENOENT, named, nothing changed. */
	ch[1] = bch("team", 1);
	ch[2] = rch("key", 1, 1);
	assert_int_equal(
		tally_admit(f.s, ch, 4, TALLY_ADMIT_HOLD, 30 * S, &h, &d),
		TALLY_ENOENT);
	assert_int_equal(d.refused, 3);
	assert_true(d.limit[3].flags & TALLY_DECISION_GONE);
	assert_unchanged(f.s, &before);
	assert_int_equal(h.state, TALLY_HOLD_NONE);
	assert_int_equal(tally_store_stats(f.s, &st), TALLY_OK);
	assert_int_equal(st.refused_limit, 1);
	assert_int_equal(st.refused_too_big, 1);
	assert_int_equal(st.refused_missing, 1);
	assert_int_equal(st.admitted, 0);
	tally_store_destroy(f.s);
}

/* Peek answers as a hold would and changes nothing; consume takes the
 * amounts as used, all or nothing. */
static void
test_peek_and_consume(void **state)
{
	struct fixture f;
	tally_charge ch[2] = {bch("team", 60), rch("key", 200, 1)};
	tally_decision d = TALLY_DECISION_INIT;
	struct versions before;
	tally_budget_view bv;

	(void)state;
	setup(&f);
	before = versions(f.s);
	assert_int_equal(tally_admit(f.s, ch, 2, TALLY_ADMIT_PEEK, 0, NULL, &d),
			 TALLY_OK);
	assert_int_equal(d.limit[0].c[0].remaining, 100);
	assert_unchanged(f.s, &before);
	assert_int_equal(
		tally_admit(f.s, ch, 2, TALLY_ADMIT_CONSUME, 0, NULL, &d),
		TALLY_OK);
	bv = bview(f.s, "team");
	assert_int_equal(bv.usage, 60);
	assert_int_equal(bv.held, 0);
	assert_int_equal(bv.holds, 0);
	assert_int_equal(rview(f.s, "key").tokens.usage, 200);
	assert_int_equal(d.limit[0].c[0].used, 60);
	assert_int_equal(d.limit[0].version, bv.version);
	before = versions(f.s);
	assert_int_equal(tally_admit(f.s, ch, 2, TALLY_ADMIT_PEEK, 0, NULL, &d),
			 TALLY_LIMITED);
	assert_int_equal(d.refused, 0);
	assert_int_equal(
		tally_admit(f.s, ch, 2, TALLY_ADMIT_CONSUME, 0, NULL, &d),
		TALLY_LIMITED);
	assert_unchanged(f.s, &before);
	tally_store_destroy(f.s);
}

/* A shadow limit is charged and reported, never refuses. */
static void
test_shadow(void **state)
{
	struct fixture f;
	tally_charge ch[2] = {bch("team", 150), bch("cust", 10)};
	tally_hold h = TALLY_HOLD_INIT;
	tally_decision d = TALLY_DECISION_INIT;
	tally_stats st = TALLY_STATS_INIT;

	(void)state;
	setup(&f);
	ch[0].flags = TALLY_CHARGE_SHADOW;
	assert_int_equal(
		tally_admit(f.s, ch, 2, TALLY_ADMIT_HOLD, 10 * S, &h, &d),
		TALLY_OK);
	assert_true(d.limit[0].flags & TALLY_DECISION_SHADOW_WOULD_DENY);
	assert_false(d.limit[0].flags & TALLY_DECISION_DENIED);
	assert_int_equal(bview(f.s, "team").held, 150);
	assert_int_equal(h.part[0].flags, TALLY_CHARGE_SHADOW);
	assert_int_equal(tally_release(f.s, &h, NULL), TALLY_OK);
	assert_int_equal(bview(f.s, "team").held, 0);
	/* The same in mode CONSUME: charged in full, flagged, counted. */
	assert_int_equal(
		tally_admit(f.s, ch, 2, TALLY_ADMIT_CONSUME, 0, NULL, &d),
		TALLY_OK);
	assert_true(d.limit[0].flags & TALLY_DECISION_SHADOW_WOULD_DENY);
	assert_true(d.limit[0].c[0].flags & TALLY_DECISION_SHADOW_WOULD_DENY);
	assert_int_equal(bview(f.s, "team").usage, 150);
	assert_int_equal(tally_store_stats(f.s, &st), TALLY_OK);
	assert_int_equal(st.shadow_would_deny, 2);
	assert_int_equal(st.admitted, 2);
	assert_int_equal(st.releases, 1);
	tally_store_destroy(f.s);
}

/* Charges in any order take the records in one fixed order and give the
 * same result, reported in the caller's order. */
static void
test_order_independent(void **state)
{
	struct fixture f;
	tally_charge a[3] = {bch("team", 1), bch("cust", 2), rch("key", 3, 1)};
	tally_charge b[3] = {rch("key", 3, 1), bch("team", 1), bch("cust", 2)};
	tally_hold ha = TALLY_HOLD_INIT, hb = TALLY_HOLD_INIT;
	tally_decision d = TALLY_DECISION_INIT;

	(void)state;
	setup(&f);
	assert_int_equal(
		tally_admit(f.s, a, 3, TALLY_ADMIT_HOLD, 10 * S, &ha, NULL),
		TALLY_OK);
	assert_int_equal(
		tally_admit(f.s, b, 3, TALLY_ADMIT_HOLD, 10 * S, &hb, &d),
		TALLY_OK);
	assert_int_equal(d.limit[0].kind, TALLY_KIND_RATELIMIT);
	assert_int_equal(d.limit[0].c[0].held, 6);
	assert_int_equal(d.limit[1].c[0].held, 2);
	assert_int_equal(d.limit[2].c[0].held, 4);
	assert_int_equal(ha.part[0].record, hb.part[1].record);
	assert_int_equal(ha.part[2].record, hb.part[0].record);
	assert_int_equal(tally_release(f.s, &hb, NULL), TALLY_OK);
	assert_int_equal(tally_release(f.s, &ha, NULL), TALLY_OK);
	assert_int_equal(bview(f.s, "team").held, 0);
	assert_int_equal(rview(f.s, "key").requests_held, 0);
	tally_store_destroy(f.s);
}

/* Streaming: partial charges move held to used; the settle adds its actual
 * on top and releases the rest. */
static void
test_partial_then_settle(void **state)
{
	struct fixture f;
	tally_charge ch = bch("team", 50);
	tally_hold h = TALLY_HOLD_INIT;
	tally_decision d = TALLY_DECISION_INIT;
	tally_cost c = {20, 0, 0};
	tally_budget_view v;

	(void)state;
	setup(&f);
	assert_int_equal(
		tally_admit(f.s, &ch, 1, TALLY_ADMIT_HOLD, 30 * S, &h, NULL),
		TALLY_OK);
	assert_int_equal(tally_settle_partial(f.s, &h, &c, 1, &d), TALLY_OK);
	assert_int_equal(h.state, TALLY_HOLD_LIVE);
	assert_int_equal(h.part[0].amount[0], 30);
	v = bview(f.s, "team");
	assert_int_equal(v.usage, 20);
	assert_int_equal(v.held, 30);
	assert_false(d.limit[0].flags & TALLY_DECISION_REACHED);
	c.amount = 85; /* 30 held: 55 beyond, and the max is reached */
	assert_int_equal(tally_settle_partial(f.s, &h, &c, 1, &d), TALLY_OK);
	assert_true(d.limit[0].flags & TALLY_DECISION_REACHED);
	assert_int_equal(d.limit[0].c[0].overdraft, 55);
	assert_int_equal(h.part[0].amount[0], 0);
	c.amount = 5;
	assert_int_equal(tally_settle(f.s, &h, &c, 1, &d), TALLY_OK);
	v = bview(f.s, "team");
	assert_int_equal(v.usage, 110);
	assert_int_equal(v.held, 0);
	assert_int_equal(v.holds, 0);
	assert_int_equal(tally_settle_partial(f.s, &h, &c, 1, &d),
			 TALLY_ESETTLED);
	tally_store_destroy(f.s);
}

/* A hold outlives its window and its deadline: a late settle charges the
 * actual in the window current at settle time and releases nothing. */
static void
test_late_settle_and_roll(void **state)
{
	struct fixture f;
	tally_charge ch = rch("key", 100, 1);
	tally_hold h = TALLY_HOLD_INIT;
	tally_decision d = TALLY_DECISION_INIT;
	tally_cost c = {0, 120, 1};
	tally_stats st = TALLY_STATS_INIT;
	tally_ratelimit_view v;

	(void)state;
	setup(&f);
	f.clock.now = T(2026, 12, 3, 12, 0, 50);
	assert_int_equal(
		tally_admit(f.s, &ch, 1, TALLY_ADMIT_HOLD, 5 * S, &h, NULL),
		TALLY_OK);
	assert_int_equal(tally_ratelimit_bump(f.s, "key", 7, 0, NULL),
			 TALLY_OK);
	/* 12:01:10: the window rolled at 12:01 (7 tokens closed) and the
	 * hold's slot (deadline 12:00:55, end 12:01:00) died. */
	f.clock.now = T(2026, 12, 3, 12, 1, 10);
	assert_int_equal(tally_settle(f.s, &h, &c, 1, &d), TALLY_OK);
	assert_true(d.limit[0].c[0].flags & TALLY_DECISION_LATE);
	assert_false(d.limit[0].c[0].flags & TALLY_DECISION_OVERDRAFT);
	v = rview(f.s, "key");
	assert_int_equal(v.tokens.usage, 120);
	assert_int_equal(v.tokens_held, 0);
	assert_int_equal(v.tokens.window_start, T(2026, 12, 3, 12, 1, 0));
	assert_int_equal(f.exp.holds, 1);
	assert_int_equal(f.exp.amount[0], 100);
	assert_int_equal(tally_store_stats(f.s, &st), TALLY_OK);
	assert_int_equal(st.late_settles, 1);
	assert_int_equal(st.expired_holds, 1);
	assert_int_equal(st.expired_units, 101);
	tally_store_destroy(f.s);
}

/* A sweep drops expired holds too (and reports them). */
static void
test_sweep_expires(void **state)
{
	struct fixture f;
	tally_charge ch = bch("cust", 10);
	tally_hold h = TALLY_HOLD_INIT;
	size_t rolled = 0;

	(void)state;
	setup(&f);
	assert_int_equal(
		tally_admit(f.s, &ch, 1, TALLY_ADMIT_HOLD, 60 * S, &h, NULL),
		TALLY_OK);
	f.clock.now += 59 * S;
	assert_int_equal(tally_sweep(f.s, NULL, NULL, &rolled), TALLY_OK);
	assert_int_equal(f.exp.events, 0);
	f.clock.now += 21 * S;
	assert_int_equal(tally_sweep(f.s, NULL, NULL, &rolled), TALLY_OK);
	assert_int_equal(rolled, 2); /* "key"'s two 1-minute windows */
	assert_int_equal(f.exp.events, 1);
	assert_int_equal(f.exp.amount[0], 10);
	assert_int_equal(bview(f.s, "cust").held, 0);
	tally_store_destroy(f.s);
}

/* A handle of a removed (and re-created) record changes nothing there. */
static void
test_removed_and_recreated(void **state)
{
	struct fixture f;
	tally_charge ch[2] = {bch("team", 30), bch("cust", 30)};
	tally_hold h = TALLY_HOLD_INIT;
	tally_decision d = TALLY_DECISION_INIT;
	tally_cost c[2] = {{40, 0, 0}, {40, 0, 0}};
	tally_budget_config b = TALLY_BUDGET_CONFIG_INIT;
	tally_budget_view v;

	(void)state;
	setup(&f);
	assert_int_equal(
		tally_admit(f.s, ch, 2, TALLY_ADMIT_HOLD, 30 * S, &h, NULL),
		TALLY_OK);
	assert_int_equal(tally_budget_remove(f.s, "team", NULL), TALLY_OK);
	b.max_limit = 100;
	b.period = P("1h");
	assert_int_equal(tally_budget_upsert(f.s, "team", &b, NULL),
			 TALLY_CREATED);
	v = bview(f.s, "team");
	assert_int_equal(tally_settle(f.s, &h, c, 2, &d), TALLY_OK);
	assert_true(d.limit[0].flags & TALLY_DECISION_GONE);
	assert_true(d.flags & TALLY_DECISION_GONE);
	assert_false(d.limit[1].flags & TALLY_DECISION_GONE);
	assert_int_equal(bview(f.s, "team").version, v.version);
	assert_int_equal(bview(f.s, "team").usage, 0);
	assert_int_equal(bview(f.s, "cust").usage, 40);
	tally_store_destroy(f.s);
}

/* A copy of a settled handle is two handles to the library: settling the
 * copy finds the slot without its amounts and changes nothing there. */
static void
test_settled_copy(void **state)
{
	struct fixture f;
	tally_charge ch = bch("team", 30);
	tally_hold h = TALLY_HOLD_INIT, copy;
	tally_decision d = TALLY_DECISION_INIT;
	tally_cost c = {30, 0, 0};
	uint64_t version;

	(void)state;
	setup(&f);
	assert_int_equal(
		tally_admit(f.s, &ch, 1, TALLY_ADMIT_HOLD, 30 * S, &h, NULL),
		TALLY_OK);
	copy = h;
	assert_int_equal(tally_settle(f.s, &h, &c, 1, NULL), TALLY_OK);
	version = bview(f.s, "team").version;
	assert_int_equal(tally_settle(f.s, &copy, &c, 1, &d), TALLY_OK);
	assert_true(d.limit[0].flags & TALLY_DECISION_GONE);
	assert_int_equal(bview(f.s, "team").version, version);
	assert_int_equal(bview(f.s, "team").usage, 30);
	tally_store_destroy(f.s);
}

/* Every bad argument of every new call: a negative code, nothing changed. */
static void
test_bad_input(void **state)
{
	struct fixture f, g;
	tally_charge ch[TALLY_ADMIT_MAX + 1];
	tally_hold h = TALLY_HOLD_INIT, live = TALLY_HOLD_INIT, bad;
	tally_decision d = TALLY_DECISION_INIT, dsmall = TALLY_DECISION_INIT;
	tally_cost c[2] = {{1, 0, 0}, {0, 1, 1}};
	struct versions before;
	char k256[257];
	tally_store_options o = TALLY_STORE_OPTIONS_INIT;
	tally_store *tmp;

	(void)state;
	setup(&f);
	setup(&g);
	memset(k256, 'k', 256);
	k256[256] = '\0';
	ch[0] = bch("team", 1);
	ch[1] = rch("key", 1, 1);
	assert_int_equal(
		tally_admit(f.s, ch, 2, TALLY_ADMIT_HOLD, 10 * S, &live, NULL),
		TALLY_OK);
	before = versions(f.s);
	dsmall.size = sizeof dsmall - 1;

#define ADMIT_BAD(rc, store, chs, n, mode, ttl, hold, dec)                     \
	do {                                                                   \
		assert_int_equal(tally_admit((store), (chs), (n), (mode),      \
					     (ttl), (hold), (dec)),            \
				 (rc));                                        \
		assert_unchanged(f.s, &before);                                \
	} while (0)

	ADMIT_BAD(TALLY_EINVAL, NULL, ch, 2, TALLY_ADMIT_HOLD, S, &h, NULL);
	ADMIT_BAD(TALLY_EINVAL, f.s, NULL, 2, TALLY_ADMIT_HOLD, S, &h, NULL);
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 0, TALLY_ADMIT_HOLD, S, &h, NULL);
	for (unsigned i = 0; i <= TALLY_ADMIT_MAX; i++)
		ch[i] = bch("team", 1);
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, TALLY_ADMIT_MAX + 1, TALLY_ADMIT_HOLD,
		  S, &h, NULL);
	/* Duplicates: the same record twice (also as NUL and _n forms). */
	ch[1] = bch("cust", 1);
	ch[2] = bch("team", 2);
	ch[2].key = "team!";
	ch[2].key_len = 4;
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 3, TALLY_ADMIT_HOLD, S, &h, NULL);
	/* One name, two kinds: two records (a budget and a missing rate
	 * limit): ENOENT, not a duplicate. */
	ch[2] = rch("team", 0, 1);
	ADMIT_BAD(TALLY_ENOENT, f.s, ch, 3, TALLY_ADMIT_HOLD, S, &h, NULL);
	ch[0] = bch("team", 1);
	ch[1] = rch("key", 1, 1);
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 2, 0, S, &h, NULL);
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 2, 4, S, &h, NULL);
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 2, TALLY_ADMIT_HOLD, S, NULL, NULL);
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 2, TALLY_ADMIT_HOLD, 0, &h, NULL);
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 2, TALLY_ADMIT_HOLD, -1, &h, NULL);
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 2, TALLY_ADMIT_HOLD, 60 * S + 1, &h,
		  NULL);
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 2, TALLY_ADMIT_HOLD, S, &h, &dsmall);
	h.size = sizeof h - 1;
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 2, TALLY_ADMIT_HOLD, S, &h, NULL);
	h.size = sizeof h;
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 2, TALLY_ADMIT_CONSUME, S, NULL, NULL);
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 2, TALLY_ADMIT_CONSUME, 0, &h, NULL);
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 2, TALLY_ADMIT_PEEK, 0, &h, NULL);
	ch[0].flags = 0x2;
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 2, TALLY_ADMIT_HOLD, S, &h, NULL);
	ch[0] = bch("team", -1);
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 2, TALLY_ADMIT_HOLD, S, &h, NULL);
	ch[0] = bch("team", 1);
	ch[0].tokens = 1; /* a budget has no tokens */
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 2, TALLY_ADMIT_HOLD, S, &h, NULL);
	ch[0] = bch("team", 1);
	ch[1] = rch("key", 1, -1);
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 2, TALLY_ADMIT_HOLD, S, &h, NULL);
	ch[1] = rch("key", 1, 1);
	ch[1].amount = 1; /* a rate limit has no amount */
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 2, TALLY_ADMIT_HOLD, S, &h, NULL);
	ch[1] = rch("key", 1, 1);
	ch[1].kind = 3;
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 2, TALLY_ADMIT_HOLD, S, &h, NULL);
	ch[1].kind = 0;
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 2, TALLY_ADMIT_HOLD, S, &h, NULL);
	ch[1] = rch(NULL, 1, 1);
	ADMIT_BAD(TALLY_EINVAL, f.s, ch, 2, TALLY_ADMIT_HOLD, S, &h, NULL);
	ch[1] = rch("", 1, 1);
	ADMIT_BAD(TALLY_EKEY, f.s, ch, 2, TALLY_ADMIT_HOLD, S, &h, NULL);
	ch[1] = rch(k256, 1, 1);
	ADMIT_BAD(TALLY_EKEY, f.s, ch, 2, TALLY_ADMIT_HOLD, S, &h, NULL);
	ch[1].key_len = 256;
	ADMIT_BAD(TALLY_EKEY, f.s, ch, 2, TALLY_ADMIT_HOLD, S, &h, NULL);
	ch[1].key_len = 0;
	ADMIT_BAD(TALLY_EKEY, f.s, ch, 2, TALLY_ADMIT_HOLD, S, &h, NULL);
	assert_int_equal(h.state, TALLY_HOLD_NONE);
#undef ADMIT_BAD

#define SETTLE_BAD(rc, call)                                                   \
	do {                                                                   \
		assert_int_equal((call), (rc));                                \
		assert_unchanged(f.s, &before);                                \
	} while (0)

	SETTLE_BAD(TALLY_EINVAL, tally_settle(NULL, &live, c, 2, &d));
	SETTLE_BAD(TALLY_EINVAL, tally_settle(f.s, NULL, c, 2, &d));
	SETTLE_BAD(TALLY_EINVAL, tally_settle(f.s, &live, NULL, 2, &d));
	SETTLE_BAD(TALLY_EINVAL, tally_settle(f.s, &live, c, 1, &d));
	SETTLE_BAD(TALLY_EINVAL, tally_settle(f.s, &live, c, 3, &d));
	SETTLE_BAD(TALLY_EINVAL, tally_settle(f.s, &live, c, 2, &dsmall));
	SETTLE_BAD(TALLY_EINVAL, tally_release(NULL, &live, &d));
	SETTLE_BAD(TALLY_EINVAL, tally_release(f.s, NULL, &d));
	SETTLE_BAD(TALLY_EINVAL, tally_settle_partial(f.s, &live, NULL, 2, &d));
	c[0].amount = -1;
	SETTLE_BAD(TALLY_EINVAL, tally_settle(f.s, &live, c, 2, &d));
	SETTLE_BAD(TALLY_EINVAL, tally_settle_partial(f.s, &live, c, 2, &d));
	c[0].amount = 1;
	c[0].requests = 1; /* the budget's part */
	SETTLE_BAD(TALLY_EINVAL, tally_settle(f.s, &live, c, 2, &d));
	c[0].requests = 0;
	c[1].amount = 2; /* the rate limit's part */
	SETTLE_BAD(TALLY_EINVAL, tally_settle(f.s, &live, c, 2, &d));
	c[1].amount = 0;
	/* A handle never taken, zeroed, changed anywhere, or of another
	 * store. */
	SETTLE_BAD(TALLY_EINVAL, tally_settle(f.s, &h, c, 2, &d));
	memset(&bad, 0, sizeof bad);
	bad.size = sizeof bad;
	SETTLE_BAD(TALLY_EINVAL, tally_settle(f.s, &bad, c, 2, &d));
	SETTLE_BAD(TALLY_EINVAL, tally_release(f.s, &bad, &d));
	for (size_t off = sizeof(size_t);
	     off < offsetof(tally_hold, part) + 2 * sizeof(tally_hold_part);
	     off++) {
		bad = live;
		((unsigned char *)&bad)[off] ^= 0x10;
		SETTLE_BAD(TALLY_EINVAL, tally_settle(f.s, &bad, c, 2, &d));
	}
	bad = live;
	bad.size = sizeof bad - 1;
	SETTLE_BAD(TALLY_EINVAL, tally_settle(f.s, &bad, c, 2, &d));
	SETTLE_BAD(TALLY_EINVAL, tally_settle(g.s, &live, c, 2, &d));
	SETTLE_BAD(TALLY_EINVAL, tally_release(g.s, &live, &d));
#undef SETTLE_BAD

	/* The handle still works. */
	assert_int_equal(tally_release(f.s, &live, &d), TALLY_OK);
	assert_int_equal(bview(f.s, "team").held, 0);
	/* Settled: ESETTLED, and any byte of it changed is EINVAL (the check
	 * word was updated with the state). */
	assert_int_equal(tally_release(f.s, &live, &d), TALLY_ESETTLED);
	for (size_t off = sizeof(size_t);
	     off < offsetof(tally_hold, part) + 2 * sizeof(tally_hold_part);
	     off++) {
		bad = live;
		((unsigned char *)&bad)[off] ^= 0x01;
		assert_int_equal(tally_release(f.s, &bad, &d), TALLY_EINVAL);
	}

	/* Store options: hold_ttl_max out of range. */
	o.hold_ttl_max = -1;
	assert_int_equal(tally_store_create(&tmp, &o), TALLY_EINVAL);
	o.hold_ttl_max = TALLY_HOLD_TTL_MAX_LIMIT + 1;
	assert_int_equal(tally_store_create(&tmp, &o), TALLY_EINVAL);
	o.hold_ttl_max = TALLY_HOLD_TTL_MAX_LIMIT;
	assert_int_equal(tally_store_create(&tmp, &o), TALLY_OK);
	tally_store_destroy(tmp);
	tally_store_destroy(g.s);
	tally_store_destroy(f.s);
}

/* Holds stay through an upsert and an operator reset (which zero or keep
 * used, never held). */
static void
test_holds_survive_upsert_and_reset(void **state)
{
	struct fixture f;
	tally_charge ch = bch("team", 30);
	tally_hold h = TALLY_HOLD_INIT;
	tally_budget_config b = TALLY_BUDGET_CONFIG_INIT;
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	tally_cost c = {10, 0, 0};

	(void)state;
	setup(&f);
	assert_int_equal(tally_budget_bump(f.s, "team", 5, NULL), TALLY_OK);
	assert_int_equal(
		tally_admit(f.s, &ch, 1, TALLY_ADMIT_HOLD, 30 * S, &h, NULL),
		TALLY_OK);
	b.max_limit = 50;
	b.period = P("1h");
	b.calendar_aligned = true;
	assert_int_equal(tally_budget_upsert(f.s, "team", &b, &v), TALLY_OK);
	assert_int_equal(v.held, 30);
	assert_int_equal(v.usage, 5);
	assert_int_equal(tally_budget_reset(f.s, "team", v.version, &v),
			 TALLY_OK);
	assert_int_equal(v.held, 30);
	assert_int_equal(v.usage, 0);
	assert_int_equal(tally_settle(f.s, &h, &c, 1, NULL), TALLY_OK);
	v = bview(f.s, "team");
	assert_int_equal(v.usage, 10);
	assert_int_equal(v.held, 0);
	tally_store_destroy(f.s);
}

/*
 * A settle without a decision does what one with a decision does: the
 * same usage and held, the same stats (overdraft units, late settles),
 * and a partial charge without a decision moves the handle's amounts the
 * same way. Two identical stores, one settled with decisions, one without.
 */
static void
test_settle_without_decision(void **state)
{
	struct fixture f[2];
	tally_stats st[2];
	(void)state;

	for (int w = 0; w < 2; w++) {
		tally_charge ch[3] = {bch("team", 30), bch("cust", 30),
				      rch("key", 100, 1)};
		tally_cost over[3] = {{45, 0, 0}, {30, 0, 0}, {0, 150, 1}};
		tally_cost part[3] = {{10, 0, 0}, {5, 0, 0}, {0, 20, 0}};
		tally_hold h1 = TALLY_HOLD_INIT, h2 = TALLY_HOLD_INIT;
		tally_decision d = TALLY_DECISION_INIT;
		tally_decision *dp = w == 0 ? &d : NULL;

		setup(&f[w]);
		assert_int_equal(tally_admit(f[w].s, ch, 3, TALLY_ADMIT_HOLD,
					     10 * S, &h1, NULL),
				 TALLY_OK);
		assert_int_equal(tally_admit(f[w].s, ch, 3, TALLY_ADMIT_HOLD,
					     10 * S, &h2, NULL),
				 TALLY_OK);
		/* An overdraft on two counters. */
		assert_int_equal(tally_settle(f[w].s, &h1, over, 3, dp),
				 TALLY_OK);
		/* A partial charge, then a late settle (the hold died). */
		assert_int_equal(tally_settle_partial(f[w].s, &h2, part, 3, dp),
				 TALLY_OK);
		assert_int_equal(h2.part[0].amount[0], 20);
		assert_int_equal(h2.part[2].amount[0], 80);
		f[w].clock.now += 40 * S;
		assert_int_equal(tally_settle(f[w].s, &h2, part, 3, dp),
				 TALLY_OK);
		st[w] = (tally_stats)TALLY_STATS_INIT;
		assert_int_equal(tally_store_stats(f[w].s, &st[w]), TALLY_OK);
	}
	assert_int_equal(bview(f[0].s, "team").usage,
			 bview(f[1].s, "team").usage);
	assert_int_equal(bview(f[1].s, "team").usage, 45 + 10 + 10);
	assert_int_equal(bview(f[1].s, "team").held, 0);
	assert_int_equal(rview(f[1].s, "key").tokens.usage, 150 + 20 + 20);
	assert_int_equal(st[1].overdraft_units, 15 + 50);
	assert_int_equal(st[1].late_settles, 3);
	assert_int_equal(st[1].partials, 1);
	assert_int_equal(st[1].settles, 2);
	assert_int_equal(st[0].overdraft_units, st[1].overdraft_units);
	assert_int_equal(st[0].late_settles, st[1].late_settles);
	for (int w = 0; w < 2; w++)
		tally_store_destroy(f[w].s);
}

/*
 * A settle without a decision reads the store's coarse clock where it can
 * decide, and the exact one where it cannot: with a coarse clock 0.9 s
 * behind, a settle 0.5 s after both the window's end and the hold's slot
 * end is LATE and charged to the new window, as with the exact clock; one
 * far from any end is charged normally.
 */
static int64_t
lagging_read(void *ctx)
{
	return fake_clock_read(ctx) - 900 * (S / 1000);
}

static void
test_settle_coarse_clock_near_ends(void **state)
{
	struct fake_clock clock = {T(2026, 12, 3, 12, 0, 50)};
	tally_store_options o = test_options(&clock, NULL);
	tally_ratelimit_config r = TALLY_RATELIMIT_CONFIG_INIT;
	tally_charge ch = rch("key", 100, 1);
	tally_hold h1 = TALLY_HOLD_INIT, h2 = TALLY_HOLD_INIT;
	tally_cost c = {0, 120, 1};
	tally_stats st = TALLY_STATS_INIT;
	tally_ratelimit_view v;
	tally_store *s;

	(void)state;
	o.coarse_clock = lagging_read;
	o.coarse_clock_ctx = &clock;
	o.hold_ttl_max = 60 * S;
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	r.tokens.has_max = true;
	r.tokens.max = 500;
	r.tokens.period = P("1m");
	r.requests.has_max = true;
	r.requests.max = 10;
	r.requests.period = P("1m");
	r.calendar_aligned = true;
	assert_int_equal(tally_ratelimit_upsert(s, "key", &r, NULL),
			 TALLY_CREATED);
	/* Both holds' slots end at 12:01:00 (grain 20 s), with the window. */
	assert_int_equal(
		tally_admit(s, &ch, 1, TALLY_ADMIT_HOLD, 5 * S, &h1, NULL),
		TALLY_OK);
	assert_int_equal(
		tally_admit(s, &ch, 1, TALLY_ADMIT_HOLD, 5 * S, &h2, NULL),
		TALLY_OK);
	/* 12:00:52 (coarse 12:00:51.1): far from 12:01, settled in time. */
	clock.now = T(2026, 12, 3, 12, 0, 52);
	assert_int_equal(tally_settle(s, &h1, &c, 1, NULL), TALLY_OK);
	v = rview(s, "key");
	assert_int_equal(v.tokens.usage, 120);
	assert_int_equal(v.tokens_held, 100);
	/* 12:01:00.5 (coarse 12:00:59.6): the window rolled and the slot
	 * died; the coarse reading alone would say neither. */
	clock.now = T(2026, 12, 3, 12, 1, 0) + S / 2;
	assert_int_equal(tally_settle(s, &h2, &c, 1, NULL), TALLY_OK);
	v = rview(s, "key");
	assert_int_equal(v.tokens.window_start, T(2026, 12, 3, 12, 1, 0));
	assert_int_equal(v.tokens.usage, 120);
	assert_int_equal(v.tokens_held, 0);
	assert_int_equal(tally_store_stats(s, &st), TALLY_OK);
	assert_int_equal(st.late_settles, 1);
	assert_int_equal(st.overdraft_units, 20);
	assert_int_equal(st.expired_holds, 1);
	tally_store_destroy(s);
}

/*
 * An admission without a decision keeps its reports in a local decision
 * that nothing clears: what the stats read of it must have been written
 * by this call. With the stack under it full of set bits, admissions
 * without a decision (the read-only pass answering without reports) count
 * no shadow refusal and no other stat they did not earn.
 */
static void __attribute__((noinline)) dirty_stack(void)
{
	volatile unsigned char junk[64 * 1024];

	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = 0xff;
}

static void
test_admit_without_decision_counts_only_itself(void **state)
{
	struct fixture f;
	tally_charge ch[3] = {bch("team", 5), bch("cust", 5),
			      rch("key", 10, 1)};
	tally_stats st = TALLY_STATS_INIT;
	(void)state;

	setup(&f);
	for (int i = 0; i < 3; i++) {
		tally_hold h = TALLY_HOLD_INIT;
		int rc;

		dirty_stack();
		rc = tally_admit(f.s, ch, 3, TALLY_ADMIT_HOLD, S, &h, NULL);
		assert_int_equal(rc, TALLY_OK);
		dirty_stack();
		assert_int_equal(tally_release(f.s, &h, NULL), TALLY_OK);
		dirty_stack();
		rc = tally_admit(f.s, ch, 3, TALLY_ADMIT_CONSUME, 0, NULL,
				 NULL);
		assert_int_equal(rc, TALLY_OK);
	}
	assert_int_equal(tally_store_stats(f.s, &st), TALLY_OK);
	assert_int_equal(st.shadow_would_deny, 0);
	assert_int_equal(st.admitted, 6);
	assert_int_equal(st.overdraft_units, 0);
	assert_int_equal(st.late_settles, 0);
	tally_store_destroy(f.s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hold_settle_across_limits),
		cmocka_unit_test(test_held_blocks_check_and_try),
		cmocka_unit_test(test_settle_without_decision),
		cmocka_unit_test(
			test_admit_without_decision_counts_only_itself),
		cmocka_unit_test(test_settle_coarse_clock_near_ends),
		cmocka_unit_test(test_refusal_mask_and_no_trace),
		cmocka_unit_test(test_peek_and_consume),
		cmocka_unit_test(test_shadow),
		cmocka_unit_test(test_order_independent),
		cmocka_unit_test(test_partial_then_settle),
		cmocka_unit_test(test_late_settle_and_roll),
		cmocka_unit_test(test_sweep_expires),
		cmocka_unit_test(test_removed_and_recreated),
		cmocka_unit_test(test_settled_copy),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_holds_survive_upsert_and_reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
