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
 * Holds (tally.h, "Admission"). With holds, threads also take holds on the
 * record (tally_admit, mode HOLD, one charge; TTLs of 1 ns to the store's
 * hold_ttl_max of 900 ms, so slots die while the clock runs), peek, and
 * settle, release or partially charge their own handles (some after their
 * slot died: LATE; some never: they expire; some twice: ESETTLED). Each is
 * one CAS on the record, so it is placed like any write: its decision's
 * version is the witness (a refused hold or a peek observed that version),
 * and the model replays it with its own handle for each hold. Expiry
 * events are checked as roll events are. Histories with holds for the
 * version witness do not sweep: a sweep that only moves the first live
 * slot (an empty slot died) installs a version that no event and no
 * result reveals, so no witness could place it. The Wing-Gong histories
 * with holds do sweep and record every sweep call (a sweep may now write
 * without rolling), and need no witness; the model handles are part of
 * the searched state (hashed incrementally).
 *
 * Rate limits have a sliding counter in each of their two configs
 * (requests in the first, tokens in the second), so histories cover the
 * sliding estimate's decisions and reports, prev across rolls, and
 * upserts that switch algorithms.
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

/* Calls per thread: the witness histories of 4 threads without holds
 * (sweeps, upserts) and with holds, the Wing-Gong ones of 2 threads. */
#ifdef TALLY_TSAN
#define WITNESS_OPS 10000
#define HOLD_WITNESS_OPS 12500
#define WGL_OPS 5000
#define HOLD_WGL_OPS 5000
#else
#define WITNESS_OPS 100000
#define HOLD_WITNESS_OPS 125000
#define WGL_OPS 50000
#define HOLD_WGL_OPS 50000
#endif

#define KEY "the-record"

enum op_type {
	OP_BUMP,
	OP_TRY,
	OP_CHECK,
	OP_GET,
	OP_RESET,
	OP_UPSERT,
	OP_ROLL, /* a sweep's roll of this record */
	/* Holds: one charge on the record, a handle of the thread's own. */
	OP_HOLD,
	OP_PEEK,
	OP_SETTLE,
	OP_RELEASE,
	OP_PARTIAL
};

/* The store's hold_ttl_max in histories with holds: grain 300 ms. */
#define HOLD_TTL_MAX INT64_C(900000000)
#define POOL 4 /* live handles per thread */

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
	int64_t ttl;       /* hold */
	uint32_t hold;     /* hold, settle, release, partial: the hold's id */
	int64_t left[2];   /* settle, partial: what the handle holds after */
	int rc;
	unsigned mask;
	union {
		tally_budget_view b;
		tally_ratelimit_view r;
		tally_limit_report rep; /* hold, peek, settle...: limit[0] */
	} view;
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

struct heard_expiry {
	tally_expiry x; /* key cleared */
	size_t seq;
};

struct run {
	tally_store *store;
	struct fake_clock clock;
	unsigned kind;
	int threads;
	int ops;
	bool holds;  /* hold ops in the mix */
	bool sweeps; /* the sweeper sweeps (else it only moves the clock) */
	bool wgl;
	int stop;           /* atomic */
	uint32_t next_hold; /* atomic: hold ids */
	pthread_barrier_t start;
	/* Roll and expiry events heard by the listeners, in the order
	 * heard. */
	pthread_mutex_t lock;
	struct heard *heard;
	size_t nheard, capheard;
	struct heard_expiry *xheard;
	size_t nxheard, capxheard;
};

/* A thread's hold handles. */
struct pooled {
	tally_hold h;
	uint32_t id;
};

struct worker {
	pthread_t tid;
	struct run *run;
	uint64_t rng;
	struct history h;
	uint64_t last_version;
	struct pooled pool[POOL];
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
on_expire(const tally_expiry *x, void *ctx)
{
	struct run *run = ctx;

	pthread_mutex_lock(&run->lock);
	if (run->nxheard == run->capxheard) {
		run->capxheard = run->capxheard ? 2 * run->capxheard : 1024;
		run->xheard = realloc(run->xheard,
				      run->capxheard * sizeof *run->xheard);
		if (run->xheard == NULL)
			abort();
	}
	run->xheard[run->nxheard].x = *x;
	run->xheard[run->nxheard].x.key = NULL;
	run->xheard[run->nxheard].seq = run->nxheard;
	run->nxheard++;
	pthread_mutex_unlock(&run->lock);
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
	/* Sliding counters (tally.h, TALLY_ALGORITHM_SLIDING) in both
	 * configs, so that upserts switch algorithms and lattices. */
	c->requests_algorithm =
		idx == 0 ? TALLY_ALGORITHM_SLIDING : TALLY_ALGORITHM_FIXED;
	c->tokens_algorithm =
		idx == 1 ? TALLY_ALGORITHM_SLIDING : TALLY_ALGORITHM_FIXED;
}

static bool
reports(const struct hop *op)
{
	return op->type >= OP_HOLD;
}

static uint64_t
view_version(const struct hop *op)
{
	if (reports(op))
		return op->view.rep.version;
	return op->kind == TALLY_KIND_BUDGET ? op->view.b.version
					     : op->view.r.version;
}

/* A hold, peek or settle of the record; records what it reports. */
static void
call_hold(struct worker *w, struct hop *op)
{
	struct run *run = w->run;
	struct pooled *p = &w->pool[rnd(&w->rng) % POOL];
	tally_charge c = {run->kind, 0, KEY, TALLY_KEY_STRLEN, 0, 0, 0};
	tally_cost cost = {0, 0, 0};
	tally_decision d = TALLY_DECISION_INIT;

	if (run->kind == TALLY_KIND_BUDGET) {
		c.amount = op->a0;
		cost.amount = (int64_t)(rnd(&w->rng) % 60);
	} else {
		c.tokens = op->a0;
		c.requests = op->a1;
		cost.tokens = (int64_t)(rnd(&w->rng) % 60);
		cost.requests = (int64_t)(rnd(&w->rng) % 3);
	}
	/* TTLs of 1 ns to hold_ttl_max, short ones more often: some
	 * settles come after their slot died. */
	op->ttl = 1 + (int64_t)(rnd(&w->rng) %
				((uint64_t)HOLD_TTL_MAX >> (rnd(&w->rng) % 8)));
	/* A new hold gets a new id; a live handle taken over by an admitted
	 * one is abandoned (it expires). */
	op->hold = op->type == OP_HOLD ? __atomic_fetch_add(&run->next_hold, 1,
							    __ATOMIC_RELAXED)
				       : p->id;
	tl_now = INT64_MIN;
	op->inv = tick();
	switch (op->type) {
	case OP_HOLD:
		op->rc = tally_admit(run->store, &c, 1, TALLY_ADMIT_HOLD,
				     op->ttl, &p->h, &d);
		break;
	case OP_PEEK:
		op->rc = tally_admit(run->store, &c, 1, TALLY_ADMIT_PEEK, 0,
				     NULL, &d);
		break;
	case OP_SETTLE:
		op->rc = tally_settle(run->store, &p->h, &cost, 1, &d);
		break;
	case OP_RELEASE:
		op->rc = tally_release(run->store, &p->h, &d);
		break;
	default:
		op->rc = tally_settle_partial(run->store, &p->h, &cost, 1, &d);
		break;
	}
	op->resp = tick();
	op->now = tl_now;
	if (op->type == OP_HOLD && op->rc == TALLY_OK)
		p->id = op->hold;
	op->a0 = cost.amount + cost.tokens;
	op->a1 = cost.requests;
	if (op->type == OP_HOLD || op->type == OP_PEEK) {
		op->a0 = c.amount + c.tokens;
		op->a1 = c.requests;
	}
	op->left[0] = p->h.part[0].amount[0];
	op->left[1] = p->h.part[0].amount[1];
	op->view.rep = d.limit[0];
	op->mask = d.mask;
	/* A hold, settle or partial charge that returns OK installed a
	 * version on the record, unless it found the record without the
	 * hold (GONE: not in these histories, which never copy a handle). */
	op->wrote = op->rc == TALLY_OK && op->type != OP_PEEK &&
		    !(d.limit[0].flags & TALLY_DECISION_GONE);
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
	if (run->holds) {
		/* The clock runs with the calls (0 to 3 ms each), so that
		 * windows roll and slots die whatever the scheduler does
		 * with the sweeper. */
		fake_clock_advance(&run->clock,
				   (int64_t)(rnd(&w->rng) % 4) * 1000000);
		op.a0 = op.a0 / 4 + 1; /* 1 .. 10 */
		/* Requests (12 per 3 s) fill first: mostly tokens alone. */
		if (run->kind == TALLY_KIND_RATELIMIT && what >= 55)
			op.a1 = rnd(&w->rng) % 4 == 0;
	}
	if (run->holds && what >= 55) {
		/* 45%: holds (20), peeks (5), settles (10), releases (5),
		 * partial charges (5); the rest as without holds. */
		op.type = what < 75   ? OP_HOLD
			  : what < 80 ? OP_PEEK
			  : what < 90 ? OP_SETTLE
			  : what < 95 ? OP_RELEASE
				      : OP_PARTIAL;
		call_hold(w, &op);
		if (op.rc >= 0)
			w->last_version = view_version(&op);
		history_push(&w->h, &op);
		return;
	}
	if (run->holds)
		what = what * 100 / 55;
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
		if (!run->sweeps) {
			sched_yield();
			continue;
		}
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
		/* With holds a sweep may write without rolling (expired
		 * holds): every call is part of the history. */
		if (rolled > 0 || run->holds)
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
	/* No upserts with holds: the library's upsert keeps dead hold slots
	 * that tally.h says any write drops (reported; the fuzzer's
	 * TOL_UPSERT_DEAD). */
	for (int i = 0; i < w->run->ops; i++)
		call(w, !w->run->holds);
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Model side                                                               */
/* ------------------------------------------------------------------------ */

static int64_t t_start;

/* The model's handle of every hold id, compact (one part, on KEY), and a
 * hash of all of them (XOR of one term per handle), part of the state the
 * Wing-Gong search memoizes. */
struct chold {
	uint32_t state;
	int64_t slot, amount[2], deadline;
	uint64_t incarnation;
};

static struct chold *chs;
static uint64_t chs_hash;

static uint64_t
chold_term(uint32_t id, const struct chold *c)
{
	uint64_t h = (id + 1) * 0x9e3779b97f4a7c15ull;

	h ^= c->state * 0xff51afd7ed558ccdull;
	h = (h << 23 | h >> 41) ^ (uint64_t)c->slot * 0xc4ceb9fe1a85ec53ull;
	h = (h << 23 | h >> 41) ^
	    (uint64_t)c->amount[0] * 0xc2b2ae3d27d4eb4full;
	h = (h << 23 | h >> 41) ^
	    (uint64_t)c->amount[1] * 0x165667b19e3779f9ull;
	return h ^ (h >> 31);
}

static void
chold_set(uint32_t id, const struct chold *c)
{
	chs_hash ^= chold_term(id, &chs[id]) ^ chold_term(id, c);
	chs[id] = *c;
}

/* A model handle for hold id (one struct, reused: only what n covers is
 * read). */
static struct model_hold *
chold_model(unsigned kind, uint32_t id)
{
	static struct model_hold h;
	const struct chold *c = &chs[id];

	if (h.size == 0) {
		model_hold_init(&h);
		memcpy(h.part[0].key, KEY, sizeof KEY);
		h.part[0].key_len = sizeof KEY - 1;
	}
	h.state = c->state;
	h.n = c->state == TALLY_HOLD_NONE ? 0 : 1;
	h.deadline = c->deadline;
	h.part[0].kind = (tally_kind)kind;
	h.part[0].flags = 0;
	h.part[0].incarnation = c->incarnation;
	h.part[0].slot = c->slot;
	h.part[0].amount[0] = c->amount[0];
	h.part[0].amount[1] = c->amount[1];
	return &h;
}

static void
chold_back(uint32_t id, const struct model_hold *h)
{
	struct chold c;

	c.state = h->state;
	c.slot = h->part[0].slot;
	c.amount[0] = h->part[0].amount[0];
	c.amount[1] = h->part[0].amount[1];
	c.deadline = h->deadline;
	c.incarnation = h->part[0].incarnation;
	chold_set(id, &c);
}

static void
cholds_reset(size_t n)
{
	free(chs);
	chs = calloc(n + 1, sizeof *chs);
	if (chs == NULL)
		abort();
	chs_hash = 0;
	for (size_t i = 0; i < n; i++)
		chs_hash ^= chold_term((uint32_t)i, &chs[i]);
}

static void
model_create(struct model *m, unsigned kind, int64_t now)
{
	int rc;

	model_init(m, now);
	if (model_set_hold_ttl_max(m, HOLD_TTL_MAX) != TALLY_OK)
		abort();
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
	return a->usage == b->usage && a->held == b->held &&
	       a->holds == b->holds && a->window_start == b->window_start &&
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
	return a->version == b->version && a->tokens_held == b->tokens_held &&
	       a->requests_held == b->requests_held && a->holds == b->holds &&
	       counter_eq(&a->tokens, &b->tokens, &a->config.tokens,
			  &b->config.tokens) &&
	       counter_eq(&a->requests, &b->requests, &a->config.requests,
			  &b->config.requests) &&
	       a->config.anchor == b->config.anchor &&
	       a->config.calendar_aligned == b->config.calendar_aligned &&
	       a->config.utc_offset_minutes == b->config.utc_offset_minutes &&
	       a->config.tokens_algorithm == b->config.tokens_algorithm &&
	       a->config.requests_algorithm == b->config.requests_algorithm &&
	       a->tokens_previous == b->tokens_previous &&
	       a->requests_previous == b->requests_previous;
}

static bool
report_eq(const tally_limit_report *a, const tally_limit_report *b,
	  unsigned counters)
{
	if (a->kind != b->kind || a->flags != b->flags ||
	    a->version != b->version || a->incarnation != b->incarnation)
		return false;
	for (unsigned i = 0; i < counters; i++) {
		const tally_counter_report *x = &a->c[i], *y = &b->c[i];

		if (x->counter != y->counter || x->flags != y->flags ||
		    x->max != y->max || x->used != y->used ||
		    x->held != y->held || x->remaining != y->remaining ||
		    x->window_start != y->window_start ||
		    x->window_end != y->window_end ||
		    x->retry_after != y->retry_after ||
		    x->overdraft != y->overdraft)
			return false;
	}
	return true;
}

/* A hold, peek, settle, release or partial charge on the model, with the
 * model's handle of the op's hold id. */
static bool
model_apply_hold(struct model *m, const struct hop *op)
{
	tally_charge c = {op->kind, 0, KEY, TALLY_KEY_STRLEN, 0, 0, 0};
	tally_cost cost = {0, 0, 0};
	tally_decision d = TALLY_DECISION_INIT;
	struct model_hold *h = chold_model(op->kind, op->hold);
	int rc;

	if (op->kind == TALLY_KIND_BUDGET) {
		c.amount = cost.amount = op->a0;
	} else {
		c.tokens = cost.tokens = op->a0;
		c.requests = cost.requests = op->a1;
	}
	switch (op->type) {
	case OP_HOLD:
		/* A new id: its handle is fresh (TALLY_HOLD_INIT). */
		h->state = TALLY_HOLD_NONE;
		h->n = 0;
		rc = model_admit(m, &c, 1, TALLY_ADMIT_HOLD, op->ttl, h, &d);
		break;
	case OP_PEEK:
		rc = model_admit(m, &c, 1, TALLY_ADMIT_PEEK, 0, NULL, &d);
		break;
	case OP_SETTLE:
		rc = model_settle(m, h, &cost, 1, &d);
		break;
	case OP_RELEASE:
		rc = model_release(m, h, &d);
		break;
	default:
		rc = model_settle_partial(m, h, &cost, 1, &d);
		break;
	}
	if (rc != op->rc)
		return false;
	if (op->type != OP_PEEK)
		chold_back(op->hold, h);
	if (rc < 0)
		return true;
	if (op->type != OP_HOLD && op->type != OP_PEEK &&
	    (h->part[0].amount[0] != op->left[0] ||
	     h->part[0].amount[1] != op->left[1]))
		return false;
	return d.mask == op->mask &&
	       report_eq(&d.limit[0], &op->view.rep,
			 op->kind == TALLY_KIND_BUDGET ? 1 : 2);
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
	if (reports(op))
		return model_apply_hold(m, op);
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
cmp_xheard(const void *a, const void *b)
{
	const struct heard_expiry *x = a, *y = b;

	if (x->x.version != y->x.version)
		return x->x.version < y->x.version ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
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
	size_t n = 0, next_roll = 0, next_x = 0, writes = 0, xmodel = 0;
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
	 * they were heard in. Expiry events likewise (one per write). */
	if (run->nheard > 0)
		qsort(run->heard, run->nheard, sizeof *run->heard, cmp_heard);
	if (run->nxheard > 0) /* none without holds: no array */
		qsort(run->xheard, run->nxheard, sizeof *run->xheard,
		      cmp_xheard);

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
	cholds_reset(run->next_hold);
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
			/* Its expiry event, if the model has one. */
			xmodel += m.nexpiries;
			while (next_x < run->nxheard &&
			       run->xheard[next_x].x.version < p[i].version)
				next_x++;
			for (size_t r = 0; r < m.nexpiries; r++, next_x++) {
				const tally_expiry *x;

				if (next_x >= run->nxheard) {
					describe("expiry not heard", p[i].op);
					fail();
				}
				x = &run->xheard[next_x].x;
				if (x->version != p[i].version ||
				    x->holds != m.expiries[r].holds ||
				    x->amount[0] != m.expiries[r].amount[0] ||
				    x->amount[1] != m.expiries[r].amount[1] ||
				    x->slot_end != m.expiries[r].slot_end) {
					describe("expiry event differs",
						 p[i].op);
					fail();
				}
			}
		}
		model_rolls_clear(&m);
	}

	/* Every expiry heard belongs to a write the model replayed. */
	if (xmodel != run->nxheard) {
		print_error("%zu expiry events heard, %zu replayed\n",
			    run->nxheard, xmodel);
		fail();
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

/* The model's state before an op: the record and, for an op of a hold,
 * that hold's model handle. */
struct mstate {
	uint64_t creations, rolls_total, chs_hash;
	struct model_record rec;
	uint32_t hold; /* UINT32_MAX: none */
	struct chold ch;
};

static void
mstate_save(const struct model *m, struct mstate *s, const struct hop *op)
{
	s->creations = m->creations;
	s->rolls_total = m->rolls_total;
	s->rec = m->rec[0];
	s->chs_hash = chs_hash;
	s->hold = UINT32_MAX;
	if (reports(op) && op->type != OP_PEEK) {
		s->hold = op->hold;
		s->ch = chs[op->hold];
	}
}

static void
mstate_load(struct model *m, const struct mstate *s)
{
	m->creations = s->creations;
	m->rolls_total = s->rolls_total;
	m->rec[0] = s->rec;
	m->nrolls = 0;
	m->nexpiries = 0;
	if (s->hold != UINT32_MAX)
		chs[s->hold] = s->ch;
	chs_hash = s->chs_hash;
}

/* The record (holds included) and every handle. */
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
	h ^= (uint64_t)r->hold_base * 0xd6e8feb86659fd93ull;
	for (unsigned k = 0; k < r->nslots; k++) {
		const struct model_slot *sl = &r->slot[k];

		/* Slots in any order: a sum of terms. */
		h += ((uint64_t)sl->number * 0x9fb21c651e98df25ull) ^
		     ((uint64_t)sl->count << 40) ^
		     ((uint64_t)sl->sum[0] * 0xa0761d6478bd642full) ^
		     ((uint64_t)sl->sum[1] * 0xe7037ed1a0b428dbull);
	}
	h ^= chs_hash;
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
	cholds_reset(run->next_hold);

	cur = head.next;
	while (head.next != NULL) {
		if (cur->is_call) {
			struct mstate saved;
			const struct hop *op = &all->op[cur->op];
			bool ok;

			mstate_save(&m, &saved, op);
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

/* What a history with holds did, for the log: the checks mean little if
 * no hold ever expired. */
static void
hold_summary(const struct history *all, const struct run *run)
{
	size_t held = 0, late = 0, settled = 0, refused = 0;

	for (size_t i = 0; i < all->n; i++) {
		const struct hop *op = &all->op[i];

		if (!reports(op) || op->rc != TALLY_OK) {
			refused +=
				op->type == OP_HOLD && op->rc == TALLY_LIMITED;
			continue;
		}
		held += op->type == OP_HOLD;
		settled += op->type >= OP_SETTLE;
		late += op->type >= OP_SETTLE &&
			(op->view.rep.flags & TALLY_DECISION_LATE) != 0;
	}
	print_message(
		"  holds: %zu taken, %zu refused, %zu settled (%zu late), "
		"%zu expiry events\n",
		held, refused, settled, late, run->nxheard);
}

/*
 * One history on one record of `kind`. With holds the mix includes holds
 * and settlements; a history for the version witness then does not sweep
 * (see the top of the file), and one for the Wing-Gong search (wgl) sweeps
 * and skips the witness check.
 */
static void
run_history(unsigned kind, int threads, int ops, bool wgl, bool holds)
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
	run.holds = holds;
	run.wgl = wgl;
	run.sweeps = !holds || wgl;
	pthread_mutex_init(&run.lock, NULL);
	t_start = T(2026, 2, 28, 23, 59, 58);
	fake_clock_set(&run.clock, t_start);
	o = test_options(&run.clock, &a);
	o.clock = capture_clock;
	o.on_roll = on_roll;
	o.on_roll_ctx = &run;
	o.hold_ttl_max = HOLD_TTL_MAX;
	o.on_expire = on_expire;
	o.on_expire_ctx = &run;
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
		for (int k = 0; k < POOL; k++) {
			tally_hold init = TALLY_HOLD_INIT;

			w[i].pool[k].h = init;
			w[i].pool[k].id = run.next_hold++;
		}
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

	if (!(holds && wgl))
		print_message("%s%s, %d threads: %zu calls checked with the "
			      "version witness, %zu rolls heard\n",
			      kind == TALLY_KIND_BUDGET ? "budget"
							: "rate limit",
			      holds ? " with holds" : "", threads,
			      check_with_witness(&run, &all, v0), run.nheard);
	else
		print_message(
			"%s with holds and sweeps, %d threads: %zu calls, "
			"%zu rolls heard\n",
			kind == TALLY_KIND_BUDGET ? "budget" : "rate limit",
			threads, all.n, run.nheard);
	if (holds)
		hold_summary(&all, &run);
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
	free(run.xheard);
	free(chs);
	chs = NULL;
	pthread_mutex_destroy(&run.lock);
}

static void
test_budget_witness_4_threads(void **state)
{
	(void)state;
	run_history(TALLY_KIND_BUDGET, 4, WITNESS_OPS, false, false);
}

static void
test_ratelimit_witness_4_threads(void **state)
{
	(void)state;
	run_history(TALLY_KIND_RATELIMIT, 4, WITNESS_OPS, false, false);
}

static void
test_budget_holds_witness_4_threads(void **state)
{
	(void)state;
	run_history(TALLY_KIND_BUDGET, 4, HOLD_WITNESS_OPS, false, true);
}

static void
test_ratelimit_holds_witness_4_threads(void **state)
{
	(void)state;
	run_history(TALLY_KIND_RATELIMIT, 4, HOLD_WITNESS_OPS, false, true);
}

static void
test_budget_wgl_2_threads(void **state)
{
	(void)state;
	run_history(TALLY_KIND_BUDGET, 2, WGL_OPS, true, false);
}

static void
test_ratelimit_wgl_2_threads(void **state)
{
	(void)state;
	run_history(TALLY_KIND_RATELIMIT, 2, WGL_OPS, true, false);
}

static void
test_budget_holds_wgl_2_threads(void **state)
{
	(void)state;
	run_history(TALLY_KIND_BUDGET, 2, HOLD_WGL_OPS, true, true);
}

static void
test_ratelimit_holds_wgl_2_threads(void **state)
{
	(void)state;
	run_history(TALLY_KIND_RATELIMIT, 2, HOLD_WGL_OPS, true, true);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_budget_witness_4_threads),
		cmocka_unit_test(test_ratelimit_witness_4_threads),
		cmocka_unit_test(test_budget_holds_witness_4_threads),
		cmocka_unit_test(test_ratelimit_holds_witness_4_threads),
		cmocka_unit_test(test_budget_wgl_2_threads),
		cmocka_unit_test(test_ratelimit_wgl_2_threads),
		cmocka_unit_test(test_budget_holds_wgl_2_threads),
		cmocka_unit_test(test_ratelimit_holds_wgl_2_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
