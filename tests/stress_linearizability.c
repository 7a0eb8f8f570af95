/*
 * Linearizability of tally's calls, checked against the sequential
 * reference model (tests/model/model.c, which shares no code with the
 * library's transitions).
 *
 * Threads call random operations on one record while the fake clock moves
 * across window boundaries. Each call records its invocation and response
 * on a global logical clock (an atomic counter), the clock value it read
 * (captured by the store's clock callback), its arguments, its result and
 * its view. Two checks:
 *
 * 1. With the version as witness (all histories, up to 10^6 calls). Every
 *    write installs version v + 1 over version v, so the writes, sorted by
 *    version, must form one gapless chain; replaying them in that order on
 *    the model must give each write's own result, view and roll events; a
 *    call that installed nothing observed exactly one version (its view's)
 *    and must be what the model answers right after that version's write.
 *    Then the order "write v, then the readers of v, then write v + 1" must
 *    respect real time: a call that returned before another was invoked
 *    comes first. Sorting makes this O(n log n).
 *
 * 2. Without a witness, for short histories of 2 threads: the Wing-Gong
 *    search with Lowe's memoization (linearized set as a Zobrist hash, model
 *    state hashed) looks for any order consistent with real time in which
 *    the model gives every recorded answer. It cross-checks the first
 *    check's reasoning on the same kind of history.
 *
 * Worker threads never assert: they fill their history; the main thread
 * checks after joining.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "model/model.h"
#include "support.h"

#ifdef TALLY_TSAN
#define WITNESS_OPS 25000 /* per thread, 4 threads */
#define WGL_OPS 5000      /* per thread, 2 threads */
#else
#define WITNESS_OPS 250000
#define WGL_OPS 50000
#endif

#define KEY "the-record"

enum op_type {
	OP_BUMP,
	OP_TRY,
	OP_CHECK,
	OP_GET,
	OP_RESET,
	OP_UPSERT,
	OP_ROLL /* a sweep's roll of this record */
};

struct hop {
	uint64_t inv, resp; /* logical time */
	int64_t now;        /* clock value the call read (INT64_MIN: none) */
	uint8_t kind;       /* tally_kind */
	uint8_t type;       /* enum op_type */
	uint8_t cfg;        /* upsert: config index */
	bool wrote;         /* installed a version */
	int64_t a0, a1;
	uint64_t observed; /* reset */
	unsigned counters; /* reset mask */
	int rc;
	unsigned mask;
	union {
		tally_budget_view b;
		tally_ratelimit_view r;
	} view;
	/* A sweep's roll events (up to 2) for this record. */
	unsigned nrolls;
	tally_roll rolls[2];
};

struct history {
	struct hop *op;
	size_t n, cap;
};

static void
history_push(struct history *h, const struct hop *op)
{
	if (h->n == h->cap) {
		h->cap = h->cap ? 2 * h->cap : 4096;
		h->op = realloc(h->op, h->cap * sizeof *h->op);
		if (h->op == NULL)
			abort();
	}
	h->op[h->n++] = *op;
}

/* ------------------------------------------------------------------------ */
/* The run                                                                  */
/* ------------------------------------------------------------------------ */

static uint64_t logical; /* atomic */
static _Thread_local int64_t tl_now;

struct heard {
	tally_roll r; /* key cleared: the store holds one record */
	size_t seq;
};

struct run {
	tally_store *store;
	struct fake_clock clock;
	unsigned kind;
	int threads;
	int ops;
	int stop; /* atomic */
	pthread_barrier_t start;
	/* Roll events heard by the listener, in the order heard. */
	pthread_mutex_t lock;
	struct heard *heard;
	size_t nheard, capheard;
};

struct worker {
	pthread_t tid;
	struct run *run;
	uint64_t rng;
	struct history h;
	uint64_t last_version;
};

static uint64_t
tick(void)
{
	return __atomic_add_fetch(&logical, 1, __ATOMIC_SEQ_CST);
}

static int64_t
capture_clock(void *ctx)
{
	int64_t v = fake_clock_read(ctx);

	tl_now = v;
	return v;
}

static void
on_roll(const tally_roll *r, void *ctx)
{
	struct run *run = ctx;

	pthread_mutex_lock(&run->lock);
	if (run->nheard == run->capheard) {
		run->capheard = run->capheard ? 2 * run->capheard : 1024;
		run->heard =
			realloc(run->heard, run->capheard * sizeof *run->heard);
		if (run->heard == NULL)
			abort();
	}
	run->heard[run->nheard].r = *r;
	run->heard[run->nheard].r.key = NULL;
	run->heard[run->nheard].seq = run->nheard;
	run->nheard++;
	pthread_mutex_unlock(&run->lock);
}

static uint64_t
rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void
budget_config(tally_budget_config *c, int idx)
{
	tally_budget_config d = TALLY_BUDGET_CONFIG_INIT;

	*c = d;
	c->max_limit = idx == 0 ? 300 : 120;
	c->period = P(idx == 0 ? "1s" : "700ms");
	c->calendar_aligned = idx == 1;
}

static void
rate_config(tally_ratelimit_config *c, int idx)
{
	memset(c, 0, sizeof *c);
	c->size = sizeof *c;
	c->anchor = TALLY_ANCHOR_DEFAULT;
	c->tokens.has_max = true;
	c->tokens.max = idx == 0 ? 200 : 90;
	c->tokens.period = P("1s");
	c->requests.has_max = idx == 0;
	c->requests.max = 12;
	c->requests.period = P(idx == 0 ? "3s" : "2s");
	c->calendar_aligned = idx == 1;
}

static uint64_t
view_version(const struct hop *op)
{
	return op->kind == TALLY_KIND_BUDGET ? op->view.b.version
					     : op->view.r.version;
}

/* One random call; records it. */
static void
call(struct worker *w, bool with_upserts)
{
	struct run *run = w->run;
	struct hop op;
	unsigned what = (unsigned)(rnd(&w->rng) % 100);

	memset(&op, 0, sizeof op);
	op.kind = (uint8_t)run->kind;
	op.a0 = (int64_t)(rnd(&w->rng) % 40) + 1;
	op.a1 = (int64_t)(rnd(&w->rng) % 2) + 1;
	if (what < 30)
		op.type = OP_BUMP;
	else if (what < 60)
		op.type = OP_TRY;
	else if (what < 78)
		op.type = OP_CHECK;
	else if (what < 90)
		op.type = OP_GET;
	else if (what < 98 || !with_upserts)
		op.type = OP_RESET;
	else
		op.type = OP_UPSERT;
	/* Resets use the last version this thread saw: often stale. */
	op.observed = w->last_version;
	op.counters = (unsigned)(rnd(&w->rng) % 3) + 1;
	if (rnd(&w->rng) & 1)
		op.counters |= TALLY_RESET_DUE_ONLY;
	op.cfg = (uint8_t)(rnd(&w->rng) % 2);

	tl_now = INT64_MIN;
	op.inv = tick();
	if (run->kind == TALLY_KIND_BUDGET) {
		tally_budget_view *v = &op.view.b;
		tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;

		v->size = sizeof *v;
		switch (op.type) {
		case OP_BUMP:
			op.rc = tally_budget_bump(run->store, KEY, op.a0, v);
			break;
		case OP_TRY:
			op.rc = tally_budget_try_consume(run->store, KEY, op.a0,
							 v);
			break;
		case OP_CHECK:
			op.rc = tally_budget_check(run->store, KEY, v);
			break;
		case OP_GET:
			op.rc = tally_budget_get(run->store, KEY, v);
			break;
		case OP_RESET:
			op.rc = tally_budget_reset(run->store, KEY, op.observed,
						   v);
			break;
		default:
			budget_config(&c, op.cfg);
			op.rc = tally_budget_upsert(run->store, KEY, &c, v);
			break;
		}
	} else {
		tally_ratelimit_view *v = &op.view.r;
		tally_ratelimit_config c = TALLY_RATELIMIT_CONFIG_INIT;

		v->size = sizeof *v;
		switch (op.type) {
		case OP_BUMP:
			op.rc = tally_ratelimit_bump(run->store, KEY, op.a0,
						     op.a1, v);
			break;
		case OP_TRY:
			op.rc = tally_ratelimit_try_consume(
				run->store, KEY, op.a0, op.a1, &op.mask, v);
			break;
		case OP_CHECK:
			op.rc = tally_ratelimit_check(run->store, KEY, &op.mask,
						      v);
			break;
		case OP_GET:
			op.rc = tally_ratelimit_get(run->store, KEY, v);
			break;
		case OP_RESET:
			op.rc = tally_ratelimit_reset(run->store, KEY,
						      op.observed, op.counters,
						      &op.mask, v);
			break;
		default:
			rate_config(&c, op.cfg);
			op.rc = tally_ratelimit_upsert(run->store, KEY, &c, v);
			break;
		}
	}
	op.resp = tick();
	op.now = tl_now;
	if (op.rc >= 0)
		w->last_version = view_version(&op);
	/* Amounts are >= 1, so an OK bump or try_consume always installs;
	 * an OK rate-limit reset installs iff it reset a counter. */
	op.wrote = op.rc == TALLY_OK &&
		   (op.type == OP_BUMP || op.type == OP_TRY ||
		    op.type == OP_UPSERT ||
		    (op.type == OP_RESET &&
		     (run->kind == TALLY_KIND_BUDGET || op.mask != 0)));
	history_push(&w->h, &op);
}

struct sweeper {
	pthread_t tid;
	struct run *run;
	struct history h;
	long bad;
};

/* The listener already hears sweep rolls with their version; the sweeper
 * records each call's interval and clock so the rolls can be placed. */
static void *
sweeper_main(void *arg)
{
	struct sweeper *s = arg;
	struct run *run = s->run;
	uint64_t rng = 99;

	pthread_barrier_wait(&run->start);
	while (!__atomic_load_n(&run->stop, __ATOMIC_ACQUIRE)) {
		struct hop op;
		size_t rolled = 0;

		fake_clock_advance(&run->clock,
				   (int64_t)(rnd(&rng) % 400) * 1000000);
		memset(&op, 0, sizeof op);
		op.type = OP_ROLL;
		op.kind = (uint8_t)run->kind;
		tl_now = INT64_MIN;
		op.inv = tick();
		op.rc = tally_sweep(run->store, NULL, NULL, &rolled);
		op.resp = tick();
		op.now = tl_now;
		op.a0 = (int64_t)rolled;
		if (op.rc != TALLY_OK)
			s->bad++;
		if (rolled > 0)
			history_push(&s->h, &op);
		sched_yield();
	}
	return NULL;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;

	pthread_barrier_wait(&w->run->start);
	for (int i = 0; i < w->run->ops; i++)
		call(w, true);
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Model side                                                               */
/* ------------------------------------------------------------------------ */

static int64_t t_start;

static void
model_create(struct model *m, unsigned kind, int64_t now)
{
	int rc;

	model_init(m, now);
	if (kind == TALLY_KIND_BUDGET) {
		tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;
		budget_config(&c, 0);
		rc = model_budget_upsert(m, KEY, MODEL_KEY_NUL, &c, NULL);
	} else {
		tally_ratelimit_config c = TALLY_RATELIMIT_CONFIG_INIT;
		rate_config(&c, 0);
		rc = model_ratelimit_upsert(m, KEY, MODEL_KEY_NUL, &c, NULL);
	}
	if (rc != TALLY_CREATED)
		abort();
	model_rolls_clear(m);
}

static bool
budget_view_eq(const tally_budget_view *a, const tally_budget_view *b)
{
	return a->usage == b->usage && a->window_start == b->window_start &&
	       a->window_end == b->window_end && a->version == b->version &&
	       a->config.max_limit == b->config.max_limit &&
	       a->config.period.count == b->config.period.count &&
	       a->config.period.unit == b->config.period.unit &&
	       a->config.anchor == b->config.anchor &&
	       a->config.calendar_aligned == b->config.calendar_aligned &&
	       a->config.utc_offset_minutes == b->config.utc_offset_minutes;
}

static bool
counter_eq(const tally_counter_view *a, const tally_counter_view *b,
	   const tally_limit *la, const tally_limit *lb)
{
	return a->usage == b->usage && a->window_start == b->window_start &&
	       a->window_end == b->window_end && la->has_max == lb->has_max &&
	       la->max == lb->max && la->period.count == lb->period.count &&
	       la->period.unit == lb->period.unit;
}

static bool
rate_view_eq(const tally_ratelimit_view *a, const tally_ratelimit_view *b)
{
	return a->version == b->version &&
	       counter_eq(&a->tokens, &b->tokens, &a->config.tokens,
			  &b->config.tokens) &&
	       counter_eq(&a->requests, &b->requests, &a->config.requests,
			  &b->config.requests) &&
	       a->config.anchor == b->config.anchor &&
	       a->config.calendar_aligned == b->config.calendar_aligned &&
	       a->config.utc_offset_minutes == b->config.utc_offset_minutes;
}

/*
 * Runs op on the model (at the op's clock) and tells whether the model
 * gives the recorded answer. A sweep roll runs as a sweep of the model's
 * one record.
 */
static bool
model_apply(struct model *m, const struct hop *op)
{
	struct hop got;

	memset(&got, 0, sizeof got);
	if (op->now != INT64_MIN)
		model_set_now(m, op->now);
	if (op->type == OP_ROLL) {
		size_t rolled = 0;

		got.rc = model_sweep(m, &rolled);
		return got.rc == op->rc && (int64_t)rolled == op->a0;
	}
	if (op->kind == TALLY_KIND_BUDGET) {
		tally_budget_view *v = &got.view.b;
		tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;

		v->size = sizeof *v;
		switch (op->type) {
		case OP_BUMP:
			got.rc = model_budget_bump(m, KEY, MODEL_KEY_NUL,
						   op->a0, v);
			break;
		case OP_TRY:
			got.rc = model_budget_try_consume(m, KEY, MODEL_KEY_NUL,
							  op->a0, v);
			break;
		case OP_CHECK:
			got.rc = model_budget_check(m, KEY, MODEL_KEY_NUL, v);
			break;
		case OP_GET:
			got.rc = model_budget_get(m, KEY, MODEL_KEY_NUL, v);
			break;
		case OP_RESET:
			got.rc = model_budget_reset(m, KEY, MODEL_KEY_NUL,
						    op->observed, v);
			break;
		default:
			budget_config(&c, op->cfg);
			got.rc = model_budget_upsert(m, KEY, MODEL_KEY_NUL, &c,
						     v);
			break;
		}
		return got.rc == op->rc &&
		       (op->rc < 0 || budget_view_eq(v, &op->view.b));
	} else {
		tally_ratelimit_view *v = &got.view.r;
		tally_ratelimit_config c = TALLY_RATELIMIT_CONFIG_INIT;

		v->size = sizeof *v;
		switch (op->type) {
		case OP_BUMP:
			got.rc = model_ratelimit_bump(m, KEY, MODEL_KEY_NUL,
						      op->a0, op->a1, v);
			break;
		case OP_TRY:
			got.rc = model_ratelimit_try_consume(
				m, KEY, MODEL_KEY_NUL, op->a0, op->a1,
				&got.mask, v);
			break;
		case OP_CHECK:
			got.rc = model_ratelimit_check(m, KEY, MODEL_KEY_NUL,
						       &got.mask, v);
			break;
		case OP_GET:
			got.rc = model_ratelimit_get(m, KEY, MODEL_KEY_NUL, v);
			break;
		case OP_RESET:
			got.rc = model_ratelimit_reset(
				m, KEY, MODEL_KEY_NUL, op->observed,
				op->counters, &got.mask, v);
			break;
		default:
			rate_config(&c, op->cfg);
			got.rc = model_ratelimit_upsert(m, KEY, MODEL_KEY_NUL,
							&c, v);
			break;
		}
		if (op->type == OP_GET || op->type == OP_BUMP ||
		    op->type == OP_UPSERT)
			got.mask = op->mask;
		return got.rc == op->rc && got.mask == op->mask &&
		       (op->rc < 0 || rate_view_eq(v, &op->view.r));
	}
}

static void
describe(const char *what, const struct hop *op)
{
	print_error("%s: type %d rc %d mask %u version %llu now %lld "
		    "inv %llu resp %llu a0 %lld a1 %lld observed %llu\n",
		    what, op->type, op->rc, op->mask,
		    (unsigned long long)(op->type == OP_ROLL
						 ? 0
						 : view_version(op)),
		    (long long)op->now, (unsigned long long)op->inv,
		    (unsigned long long)op->resp, (long long)op->a0,
		    (long long)op->a1, (unsigned long long)op->observed);
}

/* ------------------------------------------------------------------------ */
/* Check 1: the version as witness                                          */
/* ------------------------------------------------------------------------ */

static int
cmp_u64(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;

	return *x < *y ? -1 : *x > *y;
}

static int
cmp_heard(const void *a, const void *b)
{
	const struct heard *x = a, *y = b;

	if (x->r.version != y->r.version)
		return x->r.version < y->r.version ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

struct placed {
	const struct hop *op;
	uint64_t version; /* installed (write) or observed (read) */
	int is_read;
};

static int
cmp_pos(const void *a, const void *b)
{
	const struct placed *x = a, *y = b;

	if (x->version != y->version)
		return x->version < y->version ? -1 : 1;
	return x->is_read - y->is_read;
}

static int
cmp_inv(const void *a, const void *b)
{
	const struct placed *x = a, *y = b;

	return x->op->inv < y->op->inv ? -1 : x->op->inv > y->op->inv;
}

static int
cmp_resp(const void *a, const void *b)
{
	const struct placed *x = a, *y = b;

	return x->op->resp < y->op->resp ? -1 : x->op->resp > y->op->resp;
}

static bool
pos_le(const struct placed *a, const struct placed *b)
{
	return a->version < b->version ||
	       (a->version == b->version && a->is_read <= b->is_read);
}

/* Returns the number of calls checked; fails the test on a violation. */
static size_t
check_with_witness(struct run *run, struct history *all, uint64_t v0)
{
	struct placed *p, *by_resp;
	struct model m;
	size_t n = 0, next_roll = 0, writes = 0;
	uint64_t expect;

	p = calloc(all->n + run->nheard, sizeof *p);
	if (p == NULL)
		abort();
	/* Sweep calls become one write per roll event they installed: their
	 * versions come from the listener (cause SWEEP), matched by
	 * interval: a sweep roll's version lies in exactly one sweep call. */
	for (size_t i = 0; i < all->n; i++) {
		const struct hop *op = &all->op[i];

		if (op->type == OP_ROLL || op->rc < 0)
			continue;
		p[n].op = op;
		p[n].version = view_version(op);
		p[n].is_read = !op->wrote;
		n++;
	}
	/* Sweep rolls: each recorded sweep call of this one-record store
	 * installed one version, and the sweeper is one thread, so its calls
	 * and the distinct versions heard with cause SWEEP pair up in order. */
	{
		uint64_t *sv = calloc(run->nheard + 1, sizeof *sv);
		struct hop **sc = calloc(all->n + 1, sizeof *sc);
		size_t nsv = 0, nsc = 0, u = 0;

		if (sv == NULL || sc == NULL)
			abort();
		for (size_t i = 0; i < run->nheard; i++)
			if (run->heard[i].r.cause == TALLY_ROLL_SWEEP)
				sv[nsv++] = run->heard[i].r.version;
		qsort(sv, nsv, sizeof *sv, cmp_u64);
		for (size_t i = 0; i < nsv; i++)
			if (u == 0 || sv[u - 1] != sv[i])
				sv[u++] = sv[i];
		for (size_t i = 0; i < all->n; i++)
			if (all->op[i].type == OP_ROLL)
				sc[nsc++] = &all->op[i];
		assert_int_equal(u, nsc);
		for (size_t k = 0; k < nsc; k++) {
			p[n].op = sc[k];
			p[n].version = sv[k];
			p[n].is_read = 0;
			n++;
		}
		free(sc);
		free(sv);
	}

	/* Roll events in version order; a write's own events keep the order
	 * they were heard in. */
	qsort(run->heard, run->nheard, sizeof *run->heard, cmp_heard);

	/* The writes form one gapless chain v0 + 1, v0 + 2, ... */
	qsort(p, n, sizeof *p, cmp_pos);
	expect = v0 + 1;
	for (size_t i = 0; i < n; i++) {
		if (p[i].is_read)
			continue;
		if (p[i].version != expect) {
			describe("write out of the version chain", p[i].op);
			print_error("expected version %llu\n",
				    (unsigned long long)expect);
			fail();
		}
		expect++;
		writes++;
	}

	/* Replay on the model: write v, then the readers of v. */
	model_create(&m, run->kind, t_start);
	for (size_t i = 0; i < n; i++) {
		bool ok;

		if (p[i].version < v0) {
			describe("observed a version before creation", p[i].op);
			fail();
		}
		ok = model_apply(&m, p[i].op);
		if (!ok) {
			describe(p[i].is_read
					 ? "read disagrees with the model"
					 : "write disagrees with the model",
				 p[i].op);
			fail();
		}
		/* Roll events of this write: the model's equal the
		 * listener's for this version. */
		if (!p[i].is_read) {
			while (next_roll < run->nheard &&
			       run->heard[next_roll].r.version < p[i].version)
				next_roll++;
			for (size_t r = 0; r < m.nrolls; r++, next_roll++) {
				const tally_roll *h;

				if (next_roll >= run->nheard) {
					describe("roll not heard", p[i].op);
					fail();
				}
				h = &run->heard[next_roll].r;
				if (h->version != p[i].version ||
				    h->counter != m.rolls[r].counter ||
				    h->usage_before !=
					    m.rolls[r].usage_before ||
				    h->old_window_start !=
					    m.rolls[r].old_window_start ||
				    h->new_window_start !=
					    m.rolls[r].new_window_start ||
				    h->cause != m.rolls[r].cause) {
					describe("roll event differs", p[i].op);
					fail();
				}
			}
		}
		model_rolls_clear(&m);
	}

	/* Real time: whoever returned before another was invoked is not
	 * placed after it. */
	by_resp = malloc(n * sizeof *by_resp);
	if (by_resp == NULL)
		abort();
	memcpy(by_resp, p, n * sizeof *p);
	qsort(p, n, sizeof *p, cmp_inv);
	qsort(by_resp, n, sizeof *by_resp, cmp_resp);
	{
		size_t j = 0;
		const struct placed *max = NULL;

		for (size_t i = 0; i < n; i++) {
			while (j < n && by_resp[j].op->resp < p[i].op->inv) {
				if (max == NULL || !pos_le(&by_resp[j], max))
					max = &by_resp[j];
				j++;
			}
			if (max != NULL && !pos_le(max, &p[i])) {
				describe("returned first", max->op);
				describe("but placed after", p[i].op);
				fail();
			}
		}
	}
	assert_true(writes > 0);
	free(by_resp);
	free(p);
	return n;
}

/* ------------------------------------------------------------------------ */
/* Check 2: Wing-Gong search with Lowe's memoization                        */
/* ------------------------------------------------------------------------ */

struct entry {
	bool is_call;
	size_t op;           /* index into the history */
	struct entry *match; /* call <-> return */
	struct entry *prev, *next;
};

struct mstate {
	uint64_t creations, rolls_total;
	struct model_record rec;
};

static void
mstate_save(const struct model *m, struct mstate *s)
{
	s->creations = m->creations;
	s->rolls_total = m->rolls_total;
	s->rec = m->rec[0];
}

static void
mstate_load(struct model *m, const struct mstate *s)
{
	m->creations = s->creations;
	m->rolls_total = s->rolls_total;
	m->rec[0] = s->rec;
	m->nrolls = 0;
}

static uint64_t
mstate_hash(const struct model *m)
{
	const struct model_record *r = &m->rec[0];
	uint64_t h = r->version * 0x9e3779b97f4a7c15ull;

	for (unsigned i = 0; i < r->ncounters; i++) {
		h ^= (uint64_t)r->c[i].max * 0xff51afd7ed558ccdull;
		h ^= (uint64_t)r->c[i].period.count * 0xc4ceb9fe1a85ec53ull;
		h ^= (uint64_t)r->c[i].usage * 0xc2b2ae3d27d4eb4full;
		h = (h << 17 | h >> 47) ^
		    (uint64_t)r->c[i].window_start * 0x165667b19e3779f9ull;
	}
	return h ^ (h >> 29);
}

struct seen {
	uint64_t *a, *b;
	size_t cap, n;
};

/* Inserts (x, y); false if it was there already. */
static bool
seen_add(struct seen *s, uint64_t x, uint64_t y)
{
	size_t i;

	if ((s->n + 1) * 2 > s->cap) {
		struct seen bigger = {0};

		bigger.cap = s->cap ? 2 * s->cap : 1u << 16;
		bigger.a = calloc(bigger.cap, sizeof *bigger.a);
		bigger.b = calloc(bigger.cap, sizeof *bigger.b);
		if (bigger.a == NULL || bigger.b == NULL)
			abort();
		for (i = 0; i < s->cap; i++)
			if (s->a[i] != 0 || s->b[i] != 0)
				(void)seen_add(&bigger, s->a[i], s->b[i]);
		free(s->a);
		free(s->b);
		*s = bigger;
	}
	if (x == 0 && y == 0)
		x = 1;
	for (i = (x ^ (y * 31)) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
		if (s->a[i] == 0 && s->b[i] == 0) {
			s->a[i] = x;
			s->b[i] = y;
			s->n++;
			return true;
		}
		if (s->a[i] == x && s->b[i] == y)
			return false;
	}
}

static int
cmp_event(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;

	return *x < *y ? -1 : *x > *y;
}

static bool
wgl_check(struct run *run, struct history *all)
{
	size_t n = all->n;
	struct entry *e = calloc(2 * n + 1, sizeof *e);
	uint64_t *order = calloc(2 * n, sizeof *order * 2);
	uint64_t *zob = calloc(n, sizeof *zob);
	struct {
		struct entry *call;
		struct mstate state;
	} *stack = calloc(n + 1, sizeof *stack);
	struct entry head = {0};
	struct seen seen = {0};
	struct model m;
	size_t depth = 0;
	uint64_t lin = 0, rng = 7;
	struct entry *cur;

	if (e == NULL || order == NULL || zob == NULL || stack == NULL)
		abort();
	/* Events in time order: (time, index) pairs. */
	for (size_t i = 0; i < n; i++) {
		order[4 * i + 0] = all->op[i].inv;
		order[4 * i + 1] = 2 * i;
		order[4 * i + 2] = all->op[i].resp;
		order[4 * i + 3] = 2 * i + 1;
		zob[i] = rnd(&rng) | 1;
	}
	qsort(order, 2 * n, 2 * sizeof *order, cmp_event);
	{
		struct entry *prev = &head;

		for (size_t k = 0; k < 2 * n; k++) {
			size_t id = (size_t)order[2 * k + 1];
			struct entry *x = &e[id];

			x->is_call = id % 2 == 0;
			x->op = id / 2;
			x->match = &e[id ^ 1];
			x->prev = prev;
			prev->next = x;
			prev = x;
		}
	}
	model_create(&m, run->kind, t_start);

	cur = head.next;
	while (head.next != NULL) {
		if (cur->is_call) {
			struct mstate saved;
			const struct hop *op = &all->op[cur->op];
			bool ok;

			mstate_save(&m, &saved);
			ok = model_apply(&m, op);
			model_rolls_clear(&m);
			if (ok && seen_add(&seen, lin ^ zob[cur->op],
					   mstate_hash(&m))) {
				/* Linearize it here: lift call and return. */
				stack[depth].call = cur;
				stack[depth].state = saved;
				depth++;
				lin ^= zob[cur->op];
				cur->prev->next = cur->next;
				if (cur->next != NULL)
					cur->next->prev = cur->prev;
				cur->match->prev->next = cur->match->next;
				if (cur->match->next != NULL)
					cur->match->next->prev =
						cur->match->prev;
				cur = head.next;
			} else {
				mstate_load(&m, &saved);
				cur = cur->next;
			}
		} else {
			struct entry *c;

			/* A return before its call was linearized: undo
			 * the last choice. */
			if (depth == 0)
				break;
			depth--;
			c = stack[depth].call;
			mstate_load(&m, &stack[depth].state);
			lin ^= zob[c->op];
			/* Unlift, in reverse order. */
			c->match->prev->next = c->match;
			if (c->match->next != NULL)
				c->match->next->prev = c->match;
			c->prev->next = c;
			if (c->next != NULL)
				c->next->prev = c;
			cur = c->next;
		}
	}
	{
		bool ok = head.next == NULL;

		free(seen.a);
		free(seen.b);
		free(stack);
		free(zob);
		free(order);
		free(e);
		return ok;
	}
}

/* ------------------------------------------------------------------------ */
/* Driver                                                                   */
/* ------------------------------------------------------------------------ */

static void
run_history(unsigned kind, int threads, int ops, bool wgl)
{
	struct run run;
	struct worker w[4];
	struct sweeper sw;
	struct history all = {0};
	tally_store_options o;
	struct test_alloc a = {0};
	uint64_t v0;
	int rc;

	memset(&run, 0, sizeof run);
	run.kind = kind;
	run.threads = threads;
	run.ops = ops;
	pthread_mutex_init(&run.lock, NULL);
	t_start = T(2026, 2, 28, 23, 59, 58);
	fake_clock_set(&run.clock, t_start);
	o = test_options(&run.clock, &a);
	o.clock = capture_clock;
	o.on_roll = on_roll;
	o.on_roll_ctx = &run;
	assert_int_equal(tally_store_create(&run.store, &o), TALLY_OK);
	if (kind == TALLY_KIND_BUDGET) {
		tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;
		tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
		budget_config(&c, 0);
		rc = tally_budget_upsert(run.store, KEY, &c, &v);
		v0 = v.version;
	} else {
		tally_ratelimit_config c = TALLY_RATELIMIT_CONFIG_INIT;
		tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
		rate_config(&c, 0);
		rc = tally_ratelimit_upsert(run.store, KEY, &c, &v);
		v0 = v.version;
	}
	assert_int_equal(rc, TALLY_CREATED);

	pthread_barrier_init(&run.start, NULL, (unsigned)threads + 1);
	memset(&sw, 0, sizeof sw);
	sw.run = &run;
	pthread_create(&sw.tid, NULL, sweeper_main, &sw);
	for (int i = 0; i < threads; i++) {
		memset(&w[i], 0, sizeof w[i]);
		w[i].run = &run;
		w[i].rng = (uint64_t)i * 1000003u + kind;
		w[i].last_version = v0;
		pthread_create(&w[i].tid, NULL, worker_main, &w[i]);
	}
	for (int i = 0; i < threads; i++)
		pthread_join(w[i].tid, NULL);
	__atomic_store_n(&run.stop, 1, __ATOMIC_RELEASE);
	pthread_join(sw.tid, NULL);
	pthread_barrier_destroy(&run.start);
	assert_int_equal(sw.bad, 0);

	for (int i = 0; i < threads; i++) {
		for (size_t k = 0; k < w[i].h.n; k++)
			history_push(&all, &w[i].h.op[k]);
		free(w[i].h.op);
	}
	for (size_t k = 0; k < sw.h.n; k++)
		history_push(&all, &sw.h.op[k]);
	free(sw.h.op);

	print_message("%s, %d threads: %zu calls checked with the version "
		      "witness, %zu rolls heard\n",
		      kind == TALLY_KIND_BUDGET ? "budget" : "rate limit",
		      threads, check_with_witness(&run, &all, v0), run.nheard);
	if (wgl) {
		bool ok = wgl_check(&run, &all);

		print_message("  Wing-Gong/Lowe search over %zu calls: %s\n",
			      all.n, ok ? "linearizable" : "NOT linearizable");
		assert_true(ok);
	}
	tally_store_destroy(run.store);
	assert_int_equal(a.live_blocks, 0);
	free(all.op);
	free(run.heard);
	pthread_mutex_destroy(&run.lock);
}

static void
test_budget_witness_4_threads(void **state)
{
	(void)state;
	run_history(TALLY_KIND_BUDGET, 4, WITNESS_OPS, false);
}

static void
test_ratelimit_witness_4_threads(void **state)
{
	(void)state;
	run_history(TALLY_KIND_RATELIMIT, 4, WITNESS_OPS, false);
}

static void
test_budget_wgl_2_threads(void **state)
{
	(void)state;
	run_history(TALLY_KIND_BUDGET, 2, WGL_OPS, true);
}

static void
test_ratelimit_wgl_2_threads(void **state)
{
	(void)state;
	run_history(TALLY_KIND_RATELIMIT, 2, WGL_OPS, true);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_budget_witness_4_threads),
		cmocka_unit_test(test_ratelimit_witness_4_threads),
		cmocka_unit_test(test_budget_wgl_2_threads),
		cmocka_unit_test(test_ratelimit_wgl_2_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
