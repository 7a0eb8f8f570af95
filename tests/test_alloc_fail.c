/*
 * Allocation failure injection. With the counting allocator of support.h
 * (fail_at = n: the nth allocation from now fails; fail_rest: every one from
 * the nth on), every operation is run for n = 1, 2, ... until it succeeds
 * without hitting a failure. Whenever a failure was hit, the operation must
 * say TALLY_ENOMEM and nothing may have changed (sweep: what it rolled before
 * the failure stays rolled, the rest is left for later). After every case
 * the store is destroyed and every block and byte must have come back.
 *
 * Operations that allocate a per-thread record on a thread's first call run
 * in a new thread of a fresh store, so registration is exercised; worker
 * threads only record results, the main thread asserts after the join.
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

#define T0 T(2024, 1, 15, 12, 10, 30)
#define T_DUE T(2024, 1, 15, 13, 0, 0)
#define MAX_N 200

/* ------------------------------------------------------------------------ */
/* Allocator wrapper: remembers the sizes of the failed allocations.        */
/* ------------------------------------------------------------------------ */

struct tracked {
	struct test_alloc a;
	size_t n_failed;
	size_t failed_size[MAX_N];
	bool logging; /* record the size of every allocation */
	size_t n_logged;
	size_t logged_size[MAX_N];
};

/* Fresh blocks are filled with garbage, like recycled malloc memory, so
 * that a read of memory nobody initialized behaves the same in every
 * build (plain malloc often hands out zeroed pages; ASan fills 0xbe). */
static void *
tracked_malloc(void *ctx, size_t size)
{
	struct tracked *t = ctx;
	void *p = test_alloc_malloc(&t->a, size);

	if (p == NULL && t->n_failed < MAX_N)
		t->failed_size[t->n_failed++] = size;
	if (t->logging && t->n_logged < MAX_N)
		t->logged_size[t->n_logged++] = size;
	if (p != NULL)
		memset(p, 0xa5, size);
	return p;
}

/* Only a map (at least 64 slots) is this big, except a retire batch. */
static bool
map_sized(size_t size)
{
	return size >= 64 * sizeof(void *) &&
	       size != sizeof(struct tally__batch);
}

static void
tracked_free(void *ctx, void *p, size_t size)
{
	struct tracked *t = ctx;

	test_alloc_free(&t->a, p, size);
}

/* ------------------------------------------------------------------------ */
/* Environment: a store, a fake clock, a listener                           */
/* ------------------------------------------------------------------------ */

struct heard {
	size_t n;
	int64_t sum_before; /* of every roll heard */
	struct {
		char key[16];
		tally_kind kind;
		unsigned counter;
		tally_roll_cause cause;
		int64_t usage_before;
	} ev[16];
};

static void
on_roll(const tally_roll *r, void *ctx)
{
	struct heard *h = ctx;

	h->sum_before += r->usage_before;
	if (h->n < 16) {
		size_t len = r->key_len < 15 ? r->key_len : 15;

		memcpy(h->ev[h->n].key, r->key, len);
		h->ev[h->n].key[len] = '\0';
		h->ev[h->n].kind = r->kind;
		h->ev[h->n].counter = r->counter;
		h->ev[h->n].cause = r->cause;
		h->ev[h->n].usage_before = r->usage_before;
	}
	h->n++;
}

struct env {
	struct fake_clock clock;
	struct tracked al;
	struct heard heard;
	tally_store *s;
};

static tally_store_options
env_options(struct env *e, size_t expected)
{
	tally_store_options o = test_options(&e->clock, NULL);

	o.allocator.malloc = tracked_malloc;
	o.allocator.free = tracked_free;
	o.allocator.ctx = &e->al;
	o.on_roll = on_roll;
	o.on_roll_ctx = &e->heard;
	o.expected_records = expected;
	return o;
}

static void
env_open(struct env *e, size_t expected)
{
	tally_store_options o;

	memset(e, 0, sizeof *e);
	e->clock.now = T0;
	o = env_options(e, expected);
	assert_int_equal(tally_store_create(&e->s, &o), TALLY_OK);
}

static void
env_close(struct env *e)
{
	tally_store_destroy(e->s);
	e->s = NULL;
	assert_int_equal(e->al.a.live_blocks, 0);
	assert_int_equal(e->al.a.live_bytes, 0);
}

/* From now on, the nth allocation fails (and every later one if rest). */
static void
arm(struct env *e, long n, bool rest)
{
	e->al.a.failures = 0;
	e->al.n_failed = 0;
	e->al.a.fail_rest = rest;
	e->al.a.fail_at = e->al.a.calls + n;
}

static void
disarm(struct env *e)
{
	e->al.a.fail_at = 0;
	e->al.a.fail_rest = false;
}

static tally_budget_config
bcfg(int64_t max, const char *period)
{
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;

	c.max_limit = max;
	c.period = P(period);
	c.calendar_aligned = true;
	return c;
}

static tally_ratelimit_config
rcfg(int64_t tmax, const char *tper, int64_t rmax, const char *rper)
{
	tally_ratelimit_config c = TALLY_RATELIMIT_CONFIG_INIT;
	memset(&c, 0, sizeof c);
	c.size = sizeof c;
	c.tokens.has_max = true;
	c.tokens.max = tmax;
	c.tokens.period = P(tper);
	c.requests.has_max = true;
	c.requests.max = rmax;
	c.requests.period = P(rper);
	c.anchor = TALLY_ANCHOR_DEFAULT;
	c.calendar_aligned = true;
	return c;
}

static void
assert_bview_equal(const tally_budget_view *a, const tally_budget_view *b)
{
	assert_int_equal(a->config.max_limit, b->config.max_limit);
	assert_int_equal(a->config.period.count, b->config.period.count);
	assert_int_equal(a->config.period.unit, b->config.period.unit);
	assert_int_equal(a->config.anchor, b->config.anchor);
	assert_int_equal(a->config.utc_offset_minutes,
			 b->config.utc_offset_minutes);
	assert_int_equal(a->config.calendar_aligned,
			 b->config.calendar_aligned);
	assert_int_equal(a->usage, b->usage);
	assert_int_equal(a->window_start, b->window_start);
	assert_int_equal(a->window_end, b->window_end);
	assert_int_equal(a->version, b->version);
}

static void
assert_rview_equal(const tally_ratelimit_view *a, const tally_ratelimit_view *b)
{
	const tally_limit *la[2] = {&a->config.tokens, &a->config.requests};
	const tally_limit *lb[2] = {&b->config.tokens, &b->config.requests};
	const tally_counter_view *ca[2] = {&a->tokens, &a->requests};
	const tally_counter_view *cb[2] = {&b->tokens, &b->requests};

	for (int i = 0; i < 2; i++) {
		assert_int_equal(la[i]->has_max, lb[i]->has_max);
		assert_int_equal(la[i]->max, lb[i]->max);
		assert_int_equal(la[i]->period.count, lb[i]->period.count);
		assert_int_equal(la[i]->period.unit, lb[i]->period.unit);
		assert_int_equal(ca[i]->usage, cb[i]->usage);
		assert_int_equal(ca[i]->window_start, cb[i]->window_start);
		assert_int_equal(ca[i]->window_end, cb[i]->window_end);
	}
	assert_int_equal(a->config.anchor, b->config.anchor);
	assert_int_equal(a->config.utc_offset_minutes,
			 b->config.utc_offset_minutes);
	assert_int_equal(a->config.calendar_aligned,
			 b->config.calendar_aligned);
	assert_int_equal(a->version, b->version);
}

/* ------------------------------------------------------------------------ */
/* Store creation                                                           */
/* ------------------------------------------------------------------------ */

static void
run_create(bool rest)
{
	long enomem = 0;

	for (long n = 1;; n++) {
		struct env e;
		tally_store_options o;
		int rc;

		assert_true(n < MAX_N);
		memset(&e, 0, sizeof e);
		e.clock.now = T0;
		o = env_options(&e, 0);
		arm(&e, n, rest);
		rc = tally_store_create(&e.s, &o);
		disarm(&e);
		if (e.al.a.failures == 0) {
			assert_int_equal(rc, TALLY_OK);
			assert_non_null(e.s);
			env_close(&e);
			break;
		}
		assert_int_equal(rc, TALLY_ENOMEM);
		assert_int_equal(e.al.a.live_blocks, 0);
		assert_int_equal(e.al.a.live_bytes, 0);
		enomem++;
	}
	assert_true(enomem >= 1);
}

static void
test_create(void **state)
{
	(void)state;
	run_create(false);
	run_create(true);
}

/* ------------------------------------------------------------------------ */
/* First upsert of a key in a fresh store                                   */
/* ------------------------------------------------------------------------ */

struct job {
	struct env *e;
	int op;
	int rc;
	uint64_t version; /* input: observed version for resets */
	unsigned mask;
	size_t rolled;
	tally_budget_view bv;
	tally_ratelimit_view rv;
};

enum {
	OP_B_CREATE,
	OP_R_CREATE,
	OP_B_BUMP,
	OP_B_TRY,
	OP_B_RESET,
	OP_B_REMOVE,
	OP_B_UPSERT,
	OP_B_GET,
	OP_B_CHECK,
	OP_R_BUMP,
	OP_R_TRY,
	OP_R_RESET,
	OP_R_REMOVE,
	OP_R_UPSERT,
	OP_R_CHECK,
	OP_SWEEP,
	OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
	"budget create", "ratelimit create", "budget bump",   "budget try",
	"budget reset",  "budget remove",    "budget upsert", "budget get",
	"budget check",  "rl bump",          "rl try",        "rl reset",
	"rl remove",     "rl upsert",        "rl check",      "sweep"};

static int
job_run(struct job *j)
{
	tally_store *s = j->e->s;
	tally_budget_config bc = bcfg(200, "1h");
	tally_ratelimit_config rc = rcfg(300, "1m", 30, "1h");

	switch (j->op) {
	case OP_B_CREATE:
		return tally_budget_upsert(s, "new", &bc, &j->bv);
	case OP_R_CREATE:
		return tally_ratelimit_upsert(s, "new", &rc, &j->rv);
	case OP_B_BUMP:
		return tally_budget_bump(s, "b", 5, &j->bv);
	case OP_B_TRY:
		return tally_budget_try_consume(s, "b", 5, &j->bv);
	case OP_B_RESET:
		return tally_budget_reset(s, "b", j->version, &j->bv);
	case OP_B_REMOVE:
		return tally_budget_remove(s, "b", &j->bv);
	case OP_B_UPSERT:
		return tally_budget_upsert(s, "b", &bc, &j->bv);
	case OP_B_GET:
		return tally_budget_get(s, "b", &j->bv);
	case OP_B_CHECK:
		return tally_budget_check(s, "b", &j->bv);
	case OP_R_BUMP:
		return tally_ratelimit_bump(s, "r", 1, 1, &j->rv);
	case OP_R_TRY:
		return tally_ratelimit_try_consume(s, "r", 1, 1, &j->mask,
						   &j->rv);
	case OP_R_RESET:
		return tally_ratelimit_reset(s, "r", j->version,
					     TALLY_COUNTER_BOTH, &j->mask,
					     &j->rv);
	case OP_R_REMOVE:
		return tally_ratelimit_remove(s, "r", &j->rv);
	case OP_R_UPSERT:
		return tally_ratelimit_upsert(s, "r", &rc, &j->rv);
	case OP_R_CHECK:
		return tally_ratelimit_check(s, "r", &j->mask, &j->rv);
	case OP_SWEEP:
		return tally_sweep(s, NULL, NULL, &j->rolled);
	default:
		return -9999;
	}
}

static void *
job_main(void *arg)
{
	struct job *j = arg;

	j->rc = job_run(j);
	return NULL;
}

/* Runs the job in a new thread; only records, never asserts. */
static int
in_thread(struct job *j)
{
	pthread_t th;

	if (pthread_create(&th, NULL, job_main, j) != 0)
		return -1;
	return pthread_join(th, NULL);
}

static void
run_first_upsert(bool rest, bool thread, bool ratelimit)
{
	long enomem = 0;

	for (long n = 1;; n++) {
		struct env e;
		struct job j;
		tally_budget_view bv = TALLY_BUDGET_VIEW_INIT;
		tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
		tally_stats st = TALLY_STATS_INIT;
		assert_true(n < MAX_N);
		env_open(&e, 0);
		memset(&j, 0, sizeof j);
		j.bv.size = sizeof j.bv;
		j.rv.size = sizeof j.rv;
		j.e = &e;
		j.op = ratelimit ? OP_R_CREATE : OP_B_CREATE;
		arm(&e, n, rest);
		if (thread)
			assert_int_equal(in_thread(&j), 0);
		else
			j.rc = job_run(&j);
		disarm(&e);
		if (e.al.a.failures == 0) {
			assert_int_equal(j.rc, TALLY_CREATED);
			if (ratelimit) {
				assert_int_equal(
					tally_ratelimit_get(e.s, "new", &rv),
					TALLY_OK);
				assert_rview_equal(&rv, &j.rv);
			} else {
				assert_int_equal(
					tally_budget_get(e.s, "new", &bv),
					TALLY_OK);
				assert_bview_equal(&bv, &j.bv);
			}
			env_close(&e);
			break;
		}
		assert_int_equal(j.rc, TALLY_ENOMEM);
		enomem++;
		assert_int_equal(tally_budget_get(e.s, "new", &bv),
				 TALLY_ENOENT);
		assert_int_equal(tally_ratelimit_get(e.s, "new", &rv),
				 TALLY_ENOENT);
		assert_int_equal(tally_store_stats(e.s, &st), TALLY_OK);
		assert_int_equal(st.records, 0);
		assert_int_equal(st.writes, 0);
		/* The store still works after the failure. */
		{
			tally_budget_config c = bcfg(1, "1h");

			assert_int_equal(
				tally_budget_upsert(e.s, "new", &c, &bv),
				TALLY_CREATED);
			assert_int_equal(bv.usage, 0);
		}
		env_close(&e);
	}
	/* The thread record, the snapshot and the record all allocate. */
	assert_true(enomem >= 3);
}

static void
test_first_upsert(void **state)
{
	(void)state;
	for (int rest = 0; rest < 2; rest++) {
		run_first_upsert(rest != 0, false, false);
		run_first_upsert(rest != 0, true, false);
		run_first_upsert(rest != 0, false, true);
		run_first_upsert(rest != 0, true, true);
	}
}

/* ------------------------------------------------------------------------ */
/* Map growth                                                               */
/* ------------------------------------------------------------------------ */

#define GROW_KEYS 140

static void
key_name(char *buf, size_t size, int i)
{
	snprintf(buf, size, "key-%03d", i);
}

/* A fresh store with keys 0..count-1, key k at usage k. */
static void
growth_store(struct env *e, int count)
{
	tally_budget_config c = bcfg(1000, "1h");
	char key[32];

	env_open(e, 1); /* the smallest map: 64 slots */
	for (int k = 0; k < count; k++) {
		key_name(key, sizeof key, k);
		assert_int_equal(tally_budget_upsert(e->s, key, &c, NULL),
				 TALLY_CREATED);
		assert_int_equal(tally_budget_bump(e->s, key, k, NULL),
				 TALLY_OK);
	}
}

/*
 * Insert key i into a store that holds keys 0..i-1, failing the nth
 * allocation of the insert, for every n until it succeeds; each attempt
 * on a fresh store, so that every allocation of the insert (snapshot,
 * record, and the map when the insert grows it) is the failing one once.
 */
static void
run_growth(bool rest)
{
	tally_budget_config c = bcfg(1000, "1h");
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	size_t map_failures = 0;
	char key[32], other[32];

	for (int i = 0; i < GROW_KEYS; i++) {
		key_name(key, sizeof key, i);
		for (long n = 1;; n++) {
			struct env e;
			int rc;

			assert_true(n < MAX_N);
			growth_store(&e, i);
			arm(&e, n, rest);
			rc = tally_budget_upsert(e.s, key, &c, &v);
			disarm(&e);
			if (e.al.a.failures == 0) {
				assert_int_equal(rc, TALLY_CREATED);
				assert_int_equal(v.usage, 0);
				env_close(&e);
				break;
			}
			assert_int_equal(rc, TALLY_ENOMEM);
			/* A map allocation: bigger than anything else. */
			for (size_t k = 0; k < e.al.n_failed; k++)
				if (map_sized(e.al.failed_size[k]))
					map_failures++;
			assert_int_equal(tally_budget_get(e.s, key, &v),
					 TALLY_ENOENT);
			/* Every earlier key intact. */
			for (int k = 0; k < i; k++) {
				key_name(other, sizeof other, k);
				assert_int_equal(
					tally_budget_get(e.s, other, &v),
					TALLY_OK);
				assert_int_equal(v.usage, k);
			}
			/* And the insert works once memory is back. */
			assert_int_equal(tally_budget_upsert(e.s, key, &c, &v),
					 TALLY_CREATED);
			env_close(&e);
		}
	}
	/* The map grew at least twice (64 -> 128 -> 256 slots), and each
	 * growth allocation was refused before the insert succeeded. */
	assert_true(map_failures >= 2);
}

static void
test_map_growth(void **state)
{
	(void)state;
	run_growth(false);
	run_growth(true);
}

/* ------------------------------------------------------------------------ */
/* Writes and reads on a fresh thread                                       */
/* ------------------------------------------------------------------------ */

struct before {
	tally_budget_view b;
	tally_budget_view quiet;
	tally_ratelimit_view r;
};

/* "b" (1h) and "r" (tokens 1m, requests 1h) are due at T_DUE; "quiet"
 * (1d) is not. The main thread is registered; no roll happened yet. */
static void
world_setup(struct env *e, struct before *w)
{
	tally_budget_config c = bcfg(100, "1h");
	tally_budget_config q = bcfg(100, "1d");
	tally_ratelimit_config rc = rcfg(100, "1m", 10, "1h");

	assert_int_equal(tally_budget_upsert(e->s, "b", &c, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_budget_bump(e->s, "b", 40, NULL), TALLY_OK);
	assert_int_equal(tally_budget_upsert(e->s, "quiet", &q, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_budget_bump(e->s, "quiet", 5, NULL), TALLY_OK);
	assert_int_equal(tally_ratelimit_upsert(e->s, "r", &rc, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_ratelimit_bump(e->s, "r", 30, 3, NULL),
			 TALLY_OK);
	fake_clock_set(&e->clock, T_DUE);
	w->b.size = w->quiet.size = sizeof w->b;
	w->r.size = sizeof w->r;
	assert_int_equal(tally_budget_get(e->s, "b", &w->b), TALLY_OK);
	assert_int_equal(tally_budget_get(e->s, "quiet", &w->quiet), TALLY_OK);
	assert_int_equal(tally_ratelimit_get(e->s, "r", &w->r), TALLY_OK);
	assert_int_equal(e->heard.n, 0);
}

static bool
budget_rolled(struct env *e)
{
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	assert_int_equal(tally_budget_get(e->s, "b", &v), TALLY_OK);
	return v.window_start == T_DUE;
}

static bool
ratelimit_rolled(struct env *e)
{
	tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
	assert_int_equal(tally_ratelimit_get(e->s, "r", &v), TALLY_OK);
	/* Both counters roll in the same CAS. */
	assert_int_equal(v.tokens.window_start == T_DUE,
			 v.requests.window_start == T_DUE);
	return v.tokens.window_start == T_DUE;
}

static void
assert_unchanged(struct env *e, const struct before *w)
{
	tally_budget_view bv = TALLY_BUDGET_VIEW_INIT;
	tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
	assert_int_equal(tally_budget_get(e->s, "b", &bv), TALLY_OK);
	assert_bview_equal(&bv, &w->b);
	assert_int_equal(tally_budget_get(e->s, "quiet", &bv), TALLY_OK);
	assert_bview_equal(&bv, &w->quiet);
	assert_int_equal(tally_ratelimit_get(e->s, "r", &rv), TALLY_OK);
	assert_rview_equal(&rv, &w->r);
	assert_int_equal(e->heard.n, 0);
}

/* The effect of a successful job, checked from the main thread. */
static void
assert_success(struct env *e, const struct before *w, const struct job *j)
{
	tally_budget_view bv = TALLY_BUDGET_VIEW_INIT;
	tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
	switch (j->op) {
	case OP_B_BUMP:
	case OP_B_TRY:
		assert_int_equal(j->rc, TALLY_OK);
		assert_int_equal(j->bv.usage, 5);
		assert_int_equal(j->bv.window_start, T_DUE);
		assert_int_equal(e->heard.n, 1);
		assert_int_equal(e->heard.ev[0].cause, TALLY_ROLL_INLINE);
		assert_int_equal(e->heard.ev[0].usage_before, 40);
		assert_string_equal(e->heard.ev[0].key, "b");
		assert_int_equal(tally_budget_get(e->s, "b", &bv), TALLY_OK);
		assert_bview_equal(&bv, &j->bv);
		break;
	case OP_B_RESET:
		assert_int_equal(j->rc, TALLY_OK);
		assert_int_equal(j->bv.usage, 0);
		assert_int_equal(j->bv.window_start, T_DUE);
		assert_int_equal(e->heard.n, 1);
		assert_int_equal(e->heard.ev[0].cause, TALLY_ROLL_RESET);
		assert_int_equal(e->heard.ev[0].usage_before, 40);
		break;
	case OP_B_REMOVE:
		assert_int_equal(j->rc, TALLY_OK);
		assert_bview_equal(&j->bv, &w->b);
		assert_int_equal(tally_budget_get(e->s, "b", &bv),
				 TALLY_ENOENT);
		assert_int_equal(e->heard.n, 0);
		break;
	case OP_B_UPSERT:
		assert_int_equal(j->rc, TALLY_OK);
		assert_int_equal(j->bv.usage, 40);
		assert_int_equal(j->bv.config.max_limit, 200);
		assert_int_equal(j->bv.window_start, w->b.window_start);
		assert_int_equal(e->heard.n, 0);
		break;
	case OP_B_GET:
		assert_int_equal(j->rc, TALLY_OK);
		assert_bview_equal(&j->bv, &w->b);
		break;
	case OP_B_CHECK:
		assert_int_equal(j->rc, TALLY_OK);
		assert_int_equal(j->bv.usage, 0);
		assert_int_equal(j->bv.window_start, T_DUE);
		assert_int_equal(e->heard.n, 0);
		break;
	case OP_R_BUMP:
	case OP_R_TRY:
		assert_int_equal(j->rc, TALLY_OK);
		assert_int_equal(j->rv.tokens.usage, 1);
		assert_int_equal(j->rv.requests.usage, 1);
		assert_int_equal(e->heard.n, 2);
		assert_int_equal(e->heard.ev[0].cause, TALLY_ROLL_INLINE);
		assert_int_equal(e->heard.ev[1].cause, TALLY_ROLL_INLINE);
		assert_int_equal(e->heard.ev[0].usage_before +
					 e->heard.ev[1].usage_before,
				 33);
		assert_int_equal(tally_ratelimit_get(e->s, "r", &rv), TALLY_OK);
		assert_rview_equal(&rv, &j->rv);
		break;
	case OP_R_RESET:
		assert_int_equal(j->rc, TALLY_OK);
		assert_int_equal(j->mask, TALLY_COUNTER_BOTH);
		assert_int_equal(j->rv.tokens.usage, 0);
		assert_int_equal(j->rv.requests.usage, 0);
		assert_int_equal(e->heard.n, 2);
		assert_int_equal(e->heard.ev[0].cause, TALLY_ROLL_RESET);
		break;
	case OP_R_REMOVE:
		assert_int_equal(j->rc, TALLY_OK);
		assert_rview_equal(&j->rv, &w->r);
		assert_int_equal(tally_ratelimit_get(e->s, "r", &rv),
				 TALLY_ENOENT);
		break;
	case OP_R_UPSERT:
		assert_int_equal(j->rc, TALLY_OK);
		assert_int_equal(j->rv.tokens.usage, 30);
		assert_int_equal(j->rv.requests.usage, 3);
		assert_int_equal(j->rv.config.tokens.max, 300);
		break;
	case OP_R_CHECK:
		assert_int_equal(j->rc, TALLY_OK);
		assert_int_equal(j->mask, 0);
		assert_int_equal(j->rv.tokens.usage, 0);
		break;
	case OP_SWEEP:
		assert_int_equal(j->rc, TALLY_OK);
		assert_true(j->rolled >= 2);
		assert_int_equal(e->heard.n, 3);
		assert_true(budget_rolled(e));
		assert_true(ratelimit_rolled(e));
		break;
	default:
		fail();
	}
	/* Never touched by any job. */
	assert_int_equal(tally_budget_get(e->s, "quiet", &bv), TALLY_OK);
	assert_bview_equal(&bv, &w->quiet);
}

/* A sweep that failed part way: what it rolled stays rolled, the rest is
 * left for the next sweep; every roll is heard exactly once overall. */
static void
assert_partial_sweep(struct env *e, const struct before *w, const struct job *j)
{
	bool b = budget_rolled(e), r = ratelimit_rolled(e);
	tally_budget_view bv = TALLY_BUDGET_VIEW_INIT;
	size_t rolled = 0;

	assert_int_equal(j->rc, TALLY_ENOMEM);
	assert_int_equal(e->heard.n, (b ? 1u : 0u) + (r ? 2u : 0u));
	assert_int_equal(j->rolled == 0, e->heard.n == 0);
	if (!b) {
		assert_int_equal(tally_budget_get(e->s, "b", &bv), TALLY_OK);
		assert_bview_equal(&bv, &w->b);
	}
	assert_int_equal(tally_budget_get(e->s, "quiet", &bv), TALLY_OK);
	assert_bview_equal(&bv, &w->quiet);
	assert_int_equal(tally_sweep(e->s, NULL, NULL, &rolled), TALLY_OK);
	assert_int_equal(e->heard.n, 3);
	assert_true(budget_rolled(e));
	assert_true(ratelimit_rolled(e));
}

/*
 * A remove may rebuild the map when removals have left many tombstones
 * behind, best effort: if only that map allocation failed, the remove
 * still succeeds. Every other failed allocation must make it ENOMEM.
 */
static bool
best_effort_only(const struct env *e, int op, int rc)
{
	if ((op != OP_B_REMOVE && op != OP_R_REMOVE) || rc != TALLY_OK)
		return false;
	for (size_t k = 0; k < e->al.n_failed; k++)
		if (!map_sized(e->al.failed_size[k]))
			return false;
	return e->al.n_failed > 0;
}

static void
run_thread_op(int op, bool rest)
{
	long enomem = 0;

	for (long n = 1;; n++) {
		struct env e;
		struct before w;
		struct job j;

		if (n >= MAX_N)
			fail_msg("%s: no success after %ld", op_names[op], n);
		env_open(&e, 0);
		world_setup(&e, &w);
		memset(&j, 0, sizeof j);
		j.bv.size = sizeof j.bv;
		j.rv.size = sizeof j.rv;
		j.e = &e;
		j.op = op;
		j.version = op == OP_R_RESET ? w.r.version : w.b.version;
		j.rc = -9999;
		arm(&e, n, rest);
		assert_int_equal(in_thread(&j), 0);
		disarm(&e);
		if (e.al.a.failures == 0) {
			assert_success(&e, &w, &j);
			env_close(&e);
			break;
		}
		enomem++;
		if (op == OP_SWEEP) {
			assert_partial_sweep(&e, &w, &j);
		} else if (best_effort_only(&e, op, j.rc)) {
			assert_success(&e, &w, &j);
		} else {
			if (j.rc != TALLY_ENOMEM)
				fail_msg("%s (n=%ld%s): rc %d, want ENOMEM",
					 op_names[op], n, rest ? ", rest" : "",
					 j.rc);
			assert_unchanged(&e, &w);
		}
		env_close(&e);
	}
	/* At least the thread record of the new thread was refused. */
	assert_true(enomem >= 1);
}

static void
test_thread_ops(void **state)
{
	static const int ops[] = {
		OP_B_BUMP,   OP_B_TRY,    OP_B_RESET, OP_B_REMOVE, OP_B_UPSERT,
		OP_B_GET,    OP_B_CHECK,  OP_R_BUMP,  OP_R_TRY,    OP_R_RESET,
		OP_R_REMOVE, OP_R_UPSERT, OP_R_CHECK, OP_SWEEP};

	(void)state;
	for (int rest = 0; rest < 2; rest++)
		for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
			run_thread_op(ops[i], rest != 0);
}

/* The same operations on an already registered thread (the main thread):
 * the failures now hit the snapshot and batch allocations. */
static void
run_main_op(int op, bool rest)
{
	for (long n = 1;; n++) {
		struct env e;
		struct before w;
		struct job j;

		if (n >= MAX_N)
			fail_msg("%s: no success after %ld", op_names[op], n);
		env_open(&e, 0);
		world_setup(&e, &w);
		memset(&j, 0, sizeof j);
		j.bv.size = sizeof j.bv;
		j.rv.size = sizeof j.rv;
		j.e = &e;
		j.op = op;
		j.version = op == OP_R_RESET ? w.r.version : w.b.version;
		arm(&e, n, rest);
		j.rc = job_run(&j);
		disarm(&e);
		if (e.al.a.failures == 0) {
			assert_success(&e, &w, &j);
			env_close(&e);
			break;
		}
		if (op == OP_SWEEP) {
			assert_partial_sweep(&e, &w, &j);
		} else if (best_effort_only(&e, op, j.rc)) {
			assert_success(&e, &w, &j);
		} else {
			if (j.rc != TALLY_ENOMEM)
				fail_msg("%s (main, n=%ld%s): rc %d, want "
					 "ENOMEM",
					 op_names[op], n, rest ? ", rest" : "",
					 j.rc);
			assert_unchanged(&e, &w);
		}
		env_close(&e);
	}
}

static void
test_main_thread_ops(void **state)
{
	static const int ops[] = {OP_B_BUMP,   OP_B_TRY,    OP_B_RESET,
				  OP_B_REMOVE, OP_B_UPSERT, OP_R_BUMP,
				  OP_R_TRY,    OP_R_RESET,  OP_R_REMOVE,
				  OP_R_UPSERT, OP_SWEEP};

	(void)state;
	for (int rest = 0; rest < 2; rest++)
		for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
			run_main_op(ops[i], rest != 0);
}

/*
 * Removing one record of three leaves one tombstone in a 64-slot map: far
 * from "many tombstones", so the remove must not rebuild the map (that is
 * an allocation of a whole map and a rehash of every record, under the
 * write lock). Fresh blocks from this allocator hold garbage, as recycled
 * malloc memory does.
 */
static void
test_remove_keeps_small_map(void **state)
{
	struct env e;
	tally_budget_config c = bcfg(100, "1h");
	tally_stats st0 = TALLY_STATS_INIT;
	tally_stats st1 = TALLY_STATS_INIT;
	size_t maps = 0;

	(void)state;
	env_open(&e, 0);
	assert_int_equal(tally_budget_upsert(e.s, "a", &c, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_budget_upsert(e.s, "b", &c, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_budget_upsert(e.s, "c", &c, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally_store_stats(e.s, &st0), TALLY_OK);
	e.al.logging = true;
	assert_int_equal(tally_budget_remove(e.s, "b", NULL), TALLY_OK);
	e.al.logging = false;
	assert_int_equal(tally_store_stats(e.s, &st1), TALLY_OK);
	for (size_t k = 0; k < e.al.n_logged; k++)
		if (map_sized(e.al.logged_size[k]))
			maps++;
	assert_int_equal(maps, 0);
	/* The last snapshot and the record are retired; no old map. */
	assert_int_equal(st1.retired - st0.retired, 2);
	assert_int_equal(st1.records, 2);
	env_close(&e);
}

/*
 * Many writes under a failure every few allocations: each one either
 * applies or says ENOMEM and applies nothing. A write allocates only when
 * its thread's caches run dry, so the test keeps its thread inside an
 * epoch section throughout (the library's own sections nest inside it):
 * nothing it retires can be reclaimed, and writes keep cutting new
 * snapshot blocks and retire batches, every one of which may fail.
 */
static void
test_sustained_failures(void **state)
{
	struct env e;
	tally_budget_config c = bcfg(INT64_MAX, "1m");
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	struct tally__thread *t;
	int64_t applied = 0;
	long ok = 0, enomem = 0;

	(void)state;
	env_open(&e, 0);
	assert_int_equal(tally_budget_upsert(e.s, "s", &c, NULL),
			 TALLY_CREATED);
	assert_int_equal(tally__thread_get(e.s, &t), TALLY_OK);
	tally__section_begin(t);
	for (int i = 0; i < 3000; i++) {
		int rc;

		arm(&e, 1 + i % 3, false);
		rc = tally_budget_bump(e.s, "s", i, NULL);
		disarm(&e);
		if (rc == TALLY_OK) {
			applied += i;
			ok++;
		} else {
			assert_int_equal(rc, TALLY_ENOMEM);
			assert_true(e.al.a.failures > 0);
			enomem++;
		}
		if (i % 50 == 0)
			fake_clock_advance(&e.clock, NS_PER_MIN);
	}
	tally__section_end(t);
	/* About one write in 32 allocates (a block of snapshots or a retire
	 * batch), and a third of those allocations are the armed one. */
	assert_true(ok > 0);
	assert_true(enomem >= 10);
	assert_true(e.heard.n >= 50);
	assert_int_equal(tally_budget_remove(e.s, "s", &v), TALLY_OK);
	assert_int_equal(e.heard.sum_before + v.usage, applied);
	env_close(&e);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create),
		cmocka_unit_test(test_first_upsert),
		cmocka_unit_test(test_map_growth),
		cmocka_unit_test(test_thread_ops),
		cmocka_unit_test(test_main_thread_ops),
		cmocka_unit_test(test_remove_keeps_small_map),
		cmocka_unit_test(test_sustained_failures),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
