/*
 * Concurrency stress tests: the seed gateway's tests ported, the races it
 * got wrong, a conservation stress over many keys, thread churn and
 * bounded reclamation.
 *
 * Rules every test follows:
 *   - workers start together on a pthread barrier, never sleep, and report
 *     what they saw in their own struct (returned from the thread); only
 *     the main thread asserts, after joining;
 *   - time is a fake clock moved by one designated thread, so windows roll
 *     exactly where a test wants them to, and nothing asserts on timing;
 *   - every unit a call reported as applied (TALLY_OK) is found again in
 *     exactly one place: the final usage, the usage_before of a roll the
 *     store's listener heard, or the view returned by a remove;
 *   - the rolls of one counter form a chain (each roll's old window is the
 *     previous roll's new one), so the sum of (new - old) window starts over
 *     all rolls heard equals final window_start - initial window_start: a
 *     window rolled twice or a roll not reported breaks the sum;
 *   - every store uses the counting allocator and must give back every
 *     block when destroyed.
 *
 * Iteration counts are large in plain builds and halved under TSan
 * (TALLY_TSAN); TALLY_STRESS_SCALE (a factor, e.g. 0.1 or 4) overrides the
 * default. The seed ports, the churn test's 2000 threads and the reset
 * rounds keep their exact counts at every scale. TALLY_STRESS_SEED (a
 * number) changes the random streams; TALLY_STRESS_FILTER (a cmocka
 * pattern such as "test_remove*") runs a subset.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thread.h" /* TALLY__BATCH_CAP, TALLY__PENDING_HIGH */
#include "support.h"
#include "tally.h"

#define NS_PER_MS INT64_C(1000000)
#define MAX_KEYS 128
#define MAX_THREADS 256

/* ------------------------------------------------------------------------ */
/* Scale, random numbers, atomics                                           */
/* ------------------------------------------------------------------------ */

static double g_scale = 1.0;
static uint64_t g_seed = UINT64_C(0x9e3779b97f4a7c15);

static long
scaled(long n)
{
	double v = (double)n * g_scale;

	return v < 1.0 ? 1 : (long)v;
}

static uint64_t
rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * UINT64_C(2685821657736338717);
}

static uint64_t
rng_seed(unsigned i)
{
	uint64_t s =
		g_seed ^ ((uint64_t)(i + 1) * UINT64_C(0xbf58476d1ce4e5b9));

	return s != 0 ? s : 1;
}

static void
flag_set(int *p)
{
	__atomic_store_n(p, 1, __ATOMIC_RELEASE);
}

static bool
flag_get(const int *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE) != 0;
}

/*
 * Pacing between workers and the thread that moves the clock, so that they
 * interleave whatever the scheduler does (two cores, more threads): the
 * mover makes its move #k once the workers have done k * per operations,
 * and a worker waits (yielding, never sleeping) while the workers are more
 * than `lead` moves ahead. Once the mover is done it releases the workers.
 */
struct pace {
	uint64_t ops;   /* worker operations done (atomic) */
	uint64_t moves; /* clock moves done (atomic) */
	uint64_t per;   /* worker operations per move */
	uint64_t lead;  /* moves the workers may run ahead */
	int released;   /* the mover is done: nobody waits any more */
};

static void
pace_worker_wait(struct pace *p)
{
	while (!flag_get(&p->released) &&
	       __atomic_load_n(&p->ops, __ATOMIC_ACQUIRE) >=
		       (__atomic_load_n(&p->moves, __ATOMIC_ACQUIRE) +
			p->lead) *
			       p->per)
		sched_yield();
}

static void
pace_worker_done(struct pace *p)
{
	__atomic_add_fetch(&p->ops, 1, __ATOMIC_RELEASE);
}

/* The mover: may move #moves happen now? */
static bool
pace_mover_ready(struct pace *p)
{
	return __atomic_load_n(&p->ops, __ATOMIC_ACQUIRE) >=
	       __atomic_load_n(&p->moves, __ATOMIC_ACQUIRE) * p->per;
}

static void
pace_mover_moved(struct pace *p)
{
	__atomic_add_fetch(&p->moves, 1, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------------------ */
/* Keys: budgets "b<i>", rate limits "r<i>"                                 */
/* ------------------------------------------------------------------------ */

static char g_keys[2][MAX_KEYS][16];

static const char *
bkey(int i)
{
	return g_keys[0][i];
}

static const char *
rkey(int i)
{
	return g_keys[1][i];
}

static void
keys_init(void)
{
	for (int i = 0; i < MAX_KEYS; i++) {
		snprintf(g_keys[0][i], sizeof g_keys[0][i], "b%d", i);
		snprintf(g_keys[1][i], sizeof g_keys[1][i], "r%d", i);
	}
}

/* Parses "b<i>" / "r<i>"; -1 if the key is not of that form. */
static int
key_index(const char *key, size_t len, char prefix)
{
	int idx = 0;

	if (len < 2 || len > 4 || key[0] != prefix || key[len] != '\0')
		return -1;
	for (size_t i = 1; i < len; i++) {
		if (key[i] < '0' || key[i] > '9')
			return -1;
		idx = idx * 10 + (key[i] - '0');
	}
	return idx < MAX_KEYS ? idx : -1;
}

/* ------------------------------------------------------------------------ */
/* Per-key, per-counter sums                                                */
/* ------------------------------------------------------------------------ */

enum {
	SLOT_B = 0,
	SLOT_T = 1,
	SLOT_Q = 2,
	NSLOTS = 3
};

static const char *const slot_name[NSLOTS] = {"budget", "tokens", "requests"};

struct totals {
	int64_t v[NSLOTS][MAX_KEYS];
};

static void
totals_add(struct totals *to, const struct totals *from)
{
	for (int s = 0; s < NSLOTS; s++)
		for (int k = 0; k < MAX_KEYS; k++)
			to->v[s][k] += from->v[s][k];
}

/* ------------------------------------------------------------------------ */
/* The roll listener: thread safe, atomic sums per key and counter          */
/* ------------------------------------------------------------------------ */

struct acct {
	int64_t usage_before; /* sum over every roll heard */
	int64_t span;         /* sum of new - old window_start */
	int64_t last_old;
	int64_t last_new;
	uint64_t rolls;
};

struct ledger {
	struct acct acct[MAX_KEYS][NSLOTS];
	uint64_t by_cause[4];
	uint64_t total;
	uint64_t bad;       /* malformed events */
	int first_bad_line; /* where the first malformed event was caught */
};

static void
ledger_bad(struct ledger *l, int line)
{
	int zero = 0;

	__atomic_add_fetch(&l->bad, 1, __ATOMIC_SEQ_CST);
	__atomic_compare_exchange_n(&l->first_bad_line, &zero, line, false,
				    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

static int
slot_of(const tally_roll *roll)
{
	if (roll->kind == TALLY_KIND_BUDGET)
		return roll->counter == TALLY_COUNTER_BUDGET ? SLOT_B : -1;
	if (roll->kind == TALLY_KIND_RATELIMIT) {
		if (roll->counter == TALLY_COUNTER_TOKENS)
			return SLOT_T;
		if (roll->counter == TALLY_COUNTER_REQUESTS)
			return SLOT_Q;
	}
	return -1;
}

static void
ledger_on_roll(const tally_roll *roll, void *ctx)
{
	struct ledger *l = ctx;
	int slot = slot_of(roll);
	int idx = key_index(roll->key, roll->key_len,
			    roll->kind == TALLY_KIND_BUDGET ? 'b' : 'r');
	struct acct *a;

	if (slot < 0 || idx < 0) {
		ledger_bad(l, __LINE__);
		return;
	}
	if (roll->cause < TALLY_ROLL_INLINE || roll->cause > TALLY_ROLL_RESET ||
	    roll->usage_before < 0 ||
	    roll->new_window_start < roll->old_window_start ||
	    (roll->cause != TALLY_ROLL_RESET &&
	     roll->new_window_start == roll->old_window_start)) {
		ledger_bad(l, __LINE__);
		return;
	}
	a = &l->acct[idx][slot];
	__atomic_add_fetch(&a->usage_before, roll->usage_before,
			   __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&a->span,
			   roll->new_window_start - roll->old_window_start,
			   __ATOMIC_SEQ_CST);
	__atomic_store_n(&a->last_old, roll->old_window_start,
			 __ATOMIC_SEQ_CST);
	__atomic_store_n(&a->last_new, roll->new_window_start,
			 __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&a->rolls, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&l->by_cause[roll->cause], 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&l->total, 1, __ATOMIC_SEQ_CST);
}

/* ------------------------------------------------------------------------ */
/* Unexpected results seen by a worker                                      */
/* ------------------------------------------------------------------------ */

/* Not a tally result: a view that broke an invariant. */
#define BAD_VIEW 9999

struct faults {
	long count;
	int first_rc;
	const char *first_what;
};

static void
fault(struct faults *x, const char *what, int rc)
{
	if (x->count++ == 0) {
		x->first_rc = rc;
		x->first_what = what;
	}
}

static int
faults_print(const char *who, int idx, const struct faults *x)
{
	const char *name;

	if (x->count == 0)
		return 0;
	name = x->first_rc == BAD_VIEW ? "inconsistent view"
				       : tally_result_name(x->first_rc);
	print_error("%s %d: %ld unexpected results; first: %s gave %d (%s)\n",
		    who, idx, x->count, x->first_what, x->first_rc,
		    name != NULL ? name : "?");
	return 1;
}

/* ------------------------------------------------------------------------ */
/* Fixture: a store on a fake clock, the counting allocator, the ledger     */
/* ------------------------------------------------------------------------ */

struct fixture {
	struct fake_clock clock;
	struct test_alloc alloc;
	struct ledger *ledger;
	tally_store *store;
	struct totals initial_ws; /* window_start of each counter at creation */
};

/*
 * With g_coarse set, fixtures get a coarse clock as well, as a store on
 * the default clock has one: check, bump and try_consume then take the
 * production path (a coarse reading first, the precise clock only near a
 * window's end). It lags the fake clock by a pseudo-random amount below
 * the margin on every read, the most the contract allows.
 */
static bool g_coarse;

static int64_t
lagging_coarse_read(void *ctx)
{
	static _Thread_local uint64_t x = 0x2545f4914f6cdd1dull;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return fake_clock_read(ctx) -
	       (int64_t)(x % (uint64_t)TALLY_COARSE_MARGIN_NS);
}

static void
fixture_init(struct fixture *f, int64_t now, size_t expected_records)
{
	tally_store_options o;

	memset(f, 0, sizeof *f);
	fake_clock_set(&f->clock, now);
	f->ledger = calloc(1, sizeof *f->ledger);
	assert_non_null(f->ledger);
	o = test_options(&f->clock, &f->alloc);
	if (g_coarse) {
		o.coarse_clock = lagging_coarse_read;
		o.coarse_clock_ctx = &f->clock;
	}
	o.expected_records = expected_records;
	o.on_roll = ledger_on_roll;
	o.on_roll_ctx = f->ledger;
	assert_int_equal(tally_store_create(&f->store, &o), TALLY_OK);
}

/* Destroys the store: every block must come back. */
static void
fixture_finish(struct fixture *f)
{
	tally_store_destroy(f->store);
	f->store = NULL;
	if (f->ledger->bad != 0)
		print_error("listener: %" PRIu64
			    " malformed roll events, first "
			    "caught at line %d\n",
			    f->ledger->bad, f->ledger->first_bad_line);
	assert_int_equal(f->ledger->bad, 0);
	if (f->alloc.live_blocks != 0)
		print_error("leak: %ld blocks, %lld bytes still live\n",
			    f->alloc.live_blocks, f->alloc.live_bytes);
	assert_int_equal(f->alloc.live_blocks, 0);
	assert_int_equal(f->alloc.live_bytes, 0);
	free(f->ledger);
	f->ledger = NULL;
}

static tally_budget_config
budget_cfg(int64_t max, const char *period, bool aligned, int32_t offset)
{
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;

	c.max_limit = max;
	c.period = P(period);
	c.calendar_aligned = aligned;
	c.utc_offset_minutes = offset;
	return c;
}

static tally_limit
limit(bool has_max, int64_t max, const char *period)
{
	tally_limit l;

	l.has_max = has_max;
	l.max = max;
	l.period = P(period);
	return l;
}

static tally_ratelimit_config
rl_cfg(tally_limit tokens, tally_limit requests, bool aligned, int32_t offset)
{
	tally_ratelimit_config c = TALLY_RATELIMIT_CONFIG_INIT;
	memset(&c, 0, sizeof c);
	c.size = sizeof c;
	c.tokens = tokens;
	c.requests = requests;
	c.anchor = TALLY_ANCHOR_DEFAULT;
	c.utc_offset_minutes = offset;
	c.calendar_aligned = aligned;
	return c;
}

static void
make_budget(struct fixture *f, int k, const tally_budget_config *cfg)
{
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	assert_int_equal(tally_budget_upsert(f->store, bkey(k), cfg, &v),
			 TALLY_CREATED);
	f->initial_ws.v[SLOT_B][k] = v.window_start;
}

static void
make_ratelimit(struct fixture *f, int k, const tally_ratelimit_config *cfg)
{
	tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
	assert_int_equal(tally_ratelimit_upsert(f->store, rkey(k), cfg, &v),
			 TALLY_CREATED);
	f->initial_ws.v[SLOT_T][k] = v.tokens.window_start;
	f->initial_ws.v[SLOT_Q][k] = v.requests.window_start;
}

/* One counter: final usage + rolled (+ removed) must equal applied; with
 * check_span, the rolls heard must chain from the initial window to the
 * final one. Prints and returns 1 on a mismatch. */
static int
check_counter(const struct fixture *f, const char *key, int slot, int k,
	      const struct totals *applied, const struct totals *removed,
	      int64_t final_usage, int64_t final_ws, bool check_span)
{
	const struct acct *a = &f->ledger->acct[k][slot];
	int64_t gone = removed != NULL ? removed->v[slot][k] : 0;
	int64_t sum = final_usage + a->usage_before + gone;
	int bad = 0;

	if (sum != applied->v[slot][k]) {
		print_error("%s %s: applied %" PRId64 " != final usage %" PRId64
			    " + rolled %" PRId64 " (%" PRIu64
			    " rolls) + removed %" PRId64 " = %" PRId64
			    " (off by %" PRId64 ")\n",
			    key, slot_name[slot], applied->v[slot][k],
			    final_usage, a->usage_before, a->rolls, gone, sum,
			    sum - applied->v[slot][k]);
		bad = 1;
	}
	if (check_span && a->span != final_ws - f->initial_ws.v[slot][k]) {
		print_error("%s %s: rolls heard span %" PRId64
			    " ns but the window moved %" PRId64 " ns (%" PRIu64
			    " rolls): a window rolled twice "
			    "or a roll went unreported\n",
			    key, slot_name[slot], a->span,
			    final_ws - f->initial_ws.v[slot][k], a->rolls);
		bad = 1;
	}
	return bad;
}

/* Every budget b0..b(nb-1) and rate limit r0..r(nr-1) conserves. */
static void
check_conservation(struct fixture *f, int nb, int nr,
		   const struct totals *applied, const struct totals *removed,
		   bool check_span)
{
	int failures = 0;

	for (int k = 0; k < nb; k++) {
		tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
		int rc = tally_budget_get(f->store, bkey(k), &v);

		if (rc != TALLY_OK) {
			print_error("%s: get returned %d\n", bkey(k), rc);
			failures++;
			continue;
		}
		failures +=
			check_counter(f, bkey(k), SLOT_B, k, applied, removed,
				      v.usage, v.window_start, check_span);
	}
	for (int k = 0; k < nr; k++) {
		tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
		int rc = tally_ratelimit_get(f->store, rkey(k), &v);

		if (rc != TALLY_OK) {
			print_error("%s: get returned %d\n", rkey(k), rc);
			failures++;
			continue;
		}
		failures += check_counter(f, rkey(k), SLOT_T, k, applied,
					  removed, v.tokens.usage,
					  v.tokens.window_start, check_span);
		failures += check_counter(f, rkey(k), SLOT_Q, k, applied,
					  removed, v.requests.usage,
					  v.requests.window_start, check_span);
	}
	assert_int_equal(failures, 0);
}

/* After the workers: move the clock past every window and sweep; every
 * record rolls, and a second sweep finds nothing due. */
static void
final_sweep(struct fixture *f, int64_t ahead)
{
	size_t rolled = 0;

	fake_clock_advance(&f->clock, ahead);
	assert_int_equal(tally_sweep(f->store, NULL, NULL, &rolled), TALLY_OK);
	assert_true(rolled > 0);
	assert_int_equal(tally_sweep(f->store, NULL, NULL, &rolled), TALLY_OK);
	assert_int_equal(rolled, 0);
}

/* Store stats after every thread joined: exact. */
static tally_stats
stats_of(struct fixture *f)
{
	tally_stats st = TALLY_STATS_INIT;
	assert_int_equal(tally_store_stats(f->store, &st), TALLY_OK);
	assert_int_equal(st.retired - st.freed, st.pending);
	return st;
}

/* ------------------------------------------------------------------------ */
/* Threads                                                                  */
/* ------------------------------------------------------------------------ */

struct crew {
	pthread_t th[MAX_THREADS];
	void *arg[MAX_THREADS];
	int n;
};

static void
crew_start(struct crew *c, void *(*fn)(void *), void *arg)
{
	assert_true(c->n < MAX_THREADS);
	assert_int_equal(pthread_create(&c->th[c->n], NULL, fn, arg), 0);
	c->arg[c->n++] = arg;
}

/* Joins every thread; each returns its own argument (its results). */
static void
crew_join(struct crew *c)
{
	int wrong = 0;

	for (int i = 0; i < c->n; i++) {
		void *ret = NULL;

		assert_int_equal(pthread_join(c->th[i], &ret), 0);
		wrong += ret != c->arg[i];
	}
	c->n = 0;
	assert_int_equal(wrong, 0);
}

/* ------------------------------------------------------------------------ */
/* A worker that runs random operations on b0.. and r0..                   */
/* ------------------------------------------------------------------------ */

struct mixer {
	struct fixture *f;
	pthread_barrier_t *barrier;
	uint64_t rng;
	long n;                     /* at least this many operations */
	const int *stop;            /* optional: and then until this is set */
	int nb, nr;                 /* keys b0..b(nb-1), r0..r(nr-1) */
	unsigned pct_bump, pct_try; /* the rest: check or get */
	bool allow_enoent;          /* keys may be removed concurrently */
	struct pace *pace;          /* optional: paced against a clock mover */
	/* results */
	struct totals ok; /* amounts applied by calls that returned OK */
	long ops, limited, enoent;
	struct faults faults;
};

static void
mixer_other(struct mixer *m, int rc, const char *what)
{
	if (rc == TALLY_ENOENT && m->allow_enoent)
		m->enoent++;
	else
		fault(&m->faults, what, rc);
}

static void
mixer_budget(struct mixer *m, int k, unsigned what, int64_t amount)
{
	tally_store *s = m->f->store;
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	int rc;

	if (what < m->pct_bump) {
		rc = tally_budget_bump(s, bkey(k), amount, &v);
		if (rc == TALLY_OK)
			m->ok.v[SLOT_B][k] += amount;
		else
			mixer_other(m, rc, "budget_bump");
	} else if (what < m->pct_bump + m->pct_try) {
		rc = tally_budget_try_consume(s, bkey(k), amount, &v);
		if (rc == TALLY_OK) {
			m->ok.v[SLOT_B][k] += amount;
			if (v.usage > v.config.max_limit)
				fault(&m->faults, "try_consume over max",
				      BAD_VIEW);
		} else if (rc == TALLY_LIMITED) {
			m->limited++;
			if (v.usage + amount <= v.config.max_limit)
				fault(&m->faults, "try_consume LIMITED fits",
				      BAD_VIEW);
		} else {
			mixer_other(m, rc, "budget_try_consume");
		}
	} else if (what & 1) {
		rc = tally_budget_check(s, bkey(k), &v);
		if (rc == TALLY_OK || rc == TALLY_LIMITED) {
			if ((rc == TALLY_LIMITED) !=
			    (v.usage >= v.config.max_limit))
				fault(&m->faults, "budget_check", BAD_VIEW);
		} else {
			mixer_other(m, rc, "budget_check");
		}
	} else {
		rc = tally_budget_get(s, bkey(k), &v);
		if (rc != TALLY_OK)
			mixer_other(m, rc, "budget_get");
	}
	if (rc >= 0 && (v.usage < 0 || v.window_start >= v.window_end))
		fault(&m->faults, "budget view", BAD_VIEW);
}

static bool
counter_view_ok(const tally_counter_view *c)
{
	return c->usage >= 0 && c->window_start < c->window_end;
}

static void
mixer_ratelimit(struct mixer *m, int k, unsigned what, int64_t amount)
{
	tally_store *s = m->f->store;
	tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
	int64_t req = 1 + amount % 3;
	unsigned mask = 0;
	int rc;

	if (what < m->pct_bump) {
		rc = tally_ratelimit_bump(s, rkey(k), amount, req, &v);
		if (rc == TALLY_OK) {
			m->ok.v[SLOT_T][k] += amount;
			m->ok.v[SLOT_Q][k] += req;
		} else {
			mixer_other(m, rc, "ratelimit_bump");
		}
	} else if (what < m->pct_bump + m->pct_try) {
		rc = tally_ratelimit_try_consume(s, rkey(k), amount, req, &mask,
						 &v);
		if (rc == TALLY_OK) {
			m->ok.v[SLOT_T][k] += amount;
			m->ok.v[SLOT_Q][k] += req;
			if ((v.config.tokens.has_max &&
			     v.tokens.usage > v.config.tokens.max) ||
			    (v.config.requests.has_max &&
			     v.requests.usage > v.config.requests.max))
				fault(&m->faults, "try_consume over max",
				      BAD_VIEW);
		} else if (rc == TALLY_LIMITED) {
			m->limited++;
			if (mask == 0 || (mask & ~TALLY_COUNTER_BOTH) != 0)
				fault(&m->faults, "try_consume mask", BAD_VIEW);
		} else {
			mixer_other(m, rc, "ratelimit_try_consume");
		}
	} else if (what & 1) {
		rc = tally_ratelimit_check(s, rkey(k), &mask, &v);
		if (rc == TALLY_OK || rc == TALLY_LIMITED) {
			if ((rc == TALLY_LIMITED) != (mask != 0))
				fault(&m->faults, "ratelimit_check mask",
				      BAD_VIEW);
		} else {
			mixer_other(m, rc, "ratelimit_check");
		}
	} else {
		rc = tally_ratelimit_get(s, rkey(k), &v);
		if (rc != TALLY_OK)
			mixer_other(m, rc, "ratelimit_get");
	}
	if (rc >= 0 &&
	    (!counter_view_ok(&v.tokens) || !counter_view_ok(&v.requests)))
		fault(&m->faults, "ratelimit view", BAD_VIEW);
}

static void
mixer_op(struct mixer *m)
{
	uint64_t r = rng_next(&m->rng);
	int k = (int)(r % (uint64_t)(m->nb + m->nr));
	unsigned what = (unsigned)((r >> 24) % 100);
	int64_t amount = (int64_t)((r >> 40) % 100) + 1;

	if (m->pace != NULL)
		pace_worker_wait(m->pace);
	if (k < m->nb)
		mixer_budget(m, k, what, amount);
	else
		mixer_ratelimit(m, k - m->nb, what, amount);
	m->ops++;
	if (m->pace != NULL)
		pace_worker_done(m->pace);
}

static void *
mixer_main(void *arg)
{
	struct mixer *m = arg;

	pthread_barrier_wait(m->barrier);
	for (long i = 0; i < m->n || (m->stop != NULL && !flag_get(m->stop));
	     i++)
		mixer_op(m);
	return m;
}

static struct mixer *
mixers_new(int n, struct fixture *f, pthread_barrier_t *barrier, long ops,
	   int nb, int nr)
{
	struct mixer *m = calloc((size_t)n, sizeof *m);

	assert_non_null(m);
	for (int i = 0; i < n; i++) {
		m[i].f = f;
		m[i].barrier = barrier;
		m[i].rng = rng_seed((unsigned)i);
		m[i].n = ops;
		m[i].nb = nb;
		m[i].nr = nr;
		m[i].pct_bump = 100;
	}
	return m;
}

/* Sums what the mixers applied; fails on any unexpected result. */
static void
mixers_collect(struct mixer *m, int n, struct totals *applied)
{
	int bad = 0;

	for (int i = 0; i < n; i++) {
		bad += faults_print("mixer", i, &m[i].faults);
		totals_add(applied, &m[i].ok);
	}
	assert_int_equal(bad, 0);
}

/* ------------------------------------------------------------------------ */
/* A sweeper: optionally moves the clock, then sweeps, until told to stop  */
/* ------------------------------------------------------------------------ */

struct sweeper {
	struct fixture *f;
	pthread_barrier_t *barrier;
	const int *stop;
	uint64_t rng;
	bool advance;       /* moves the clock before a sweep */
	struct pace *pace;  /* optional: paces the moves */
	int64_t step_max;   /* forward step in [0, step_max) ns */
	unsigned jump_1_in; /* 0: never; else 1 in n steps jumps ahead */
	int64_t jump_max;   /* by up to this */
	unsigned back_1_in; /* 0: never; else 1 in n steps goes back */
	int64_t back_max;   /* by up to this */
	long min_sweeps;
	bool lazy; /* sweep only when the clock moved since the last sweep */
	int64_t last_swept;
	/* results */
	long advances;
	long sweeps;
	uint64_t rolled; /* sum of *rolled */
	uint64_t heard;  /* events heard by this sweeper's callback */
	struct faults faults;
};

static void
sweeper_cb(const tally_roll *roll, void *ctx)
{
	struct sweeper *s = ctx;

	if (roll->cause != TALLY_ROLL_SWEEP)
		fault(&s->faults, "sweep callback cause", BAD_VIEW);
	s->heard++;
}

static void
sweeper_step(struct sweeper *s)
{
	uint64_t r = rng_next(&s->rng), x = rng_next(&s->rng);
	int64_t d;

	if (s->jump_1_in != 0 && r % s->jump_1_in == 0)
		d = (int64_t)(x % (uint64_t)s->jump_max);
	else if (s->back_1_in != 0 && r % s->back_1_in == 1)
		d = -(int64_t)(x % (uint64_t)s->back_max);
	else
		d = (int64_t)(x % (uint64_t)s->step_max);
	fake_clock_advance(&s->f->clock, d);
	s->advances++;
}

static void
sweeper_sweep(struct sweeper *s)
{
	size_t rolled = 0;
	int rc = tally_sweep(s->f->store, sweeper_cb, s, &rolled);

	if (rc != TALLY_OK)
		fault(&s->faults, "sweep", rc);
	s->rolled += rolled;
	s->sweeps++;
}

static void *
sweeper_main(void *arg)
{
	struct sweeper *s = arg;

	pthread_barrier_wait(s->barrier);
	while (s->sweeps < s->min_sweeps || !flag_get(s->stop)) {
		if (s->advance && s->pace != NULL) {
			if (!pace_mover_ready(s->pace) && !flag_get(s->stop)) {
				/* The workers have not caught up. */
				sched_yield();
				continue;
			}
			/* Sweep what the last move made due (the workers had
			 * their chance to roll it inline), then move on. */
			sweeper_sweep(s);
			sweeper_step(s);
			pace_mover_moved(s->pace);
			continue;
		}
		if (s->advance)
			sweeper_step(s);
		if (s->lazy && s->sweeps >= s->min_sweeps) {
			/* Nothing new can be due: leave the CPU to the
			 * workers. */
			int64_t now = fake_clock_read(&s->f->clock);

			if (now == s->last_swept) {
				sched_yield();
				continue;
			}
			s->last_swept = now;
		}
		sweeper_sweep(s);
	}
	if (s->advance && s->pace != NULL)
		flag_set(&s->pace->released);
	return s;
}

static void
sweeper_init(struct sweeper *s, struct fixture *f, pthread_barrier_t *b,
	     const int *stop, unsigned i)
{
	memset(s, 0, sizeof *s);
	s->f = f;
	s->barrier = b;
	s->stop = stop;
	s->rng = rng_seed(1000 + i);
	s->min_sweeps = 1;
	s->last_swept = INT64_MIN;
}

/* ------------------------------------------------------------------------ */
/* 1. Seed ports                                                            */
/* ------------------------------------------------------------------------ */

struct bumper {
	tally_store *store;
	pthread_barrier_t *barrier;
	const char *key;
	bool ratelimit;
	int n;
	int64_t amount[2];
	/* results */
	int64_t ok[2];
	struct faults faults;
};

static void *
bumper_main(void *arg)
{
	struct bumper *b = arg;

	pthread_barrier_wait(b->barrier);
	for (int i = 0; i < b->n; i++) {
		int rc = b->ratelimit ? tally_ratelimit_bump(b->store, b->key,
							     b->amount[0],
							     b->amount[1], NULL)
				      : tally_budget_bump(b->store, b->key,
							  b->amount[0], NULL);

		if (rc == TALLY_OK) {
			b->ok[0] += b->amount[0];
			b->ok[1] += b->amount[1];
		} else {
			fault(&b->faults, "bump", rc);
		}
	}
	return b;
}

/* n threads x per bumps of (a0, a1) on key; returns the applied sums. */
static void
run_bumpers(struct fixture *f, const char *key, bool ratelimit, int n, int per,
	    int64_t a0, int64_t a1, int64_t applied[2])
{
	struct bumper *b = calloc((size_t)n, sizeof *b);
	struct crew *c = calloc(1, sizeof *c);
	pthread_barrier_t barrier;
	int bad = 0;

	assert_non_null(b);
	assert_non_null(c);
	assert_int_equal(pthread_barrier_init(&barrier, NULL, (unsigned)n), 0);
	for (int i = 0; i < n; i++) {
		b[i].store = f->store;
		b[i].barrier = &barrier;
		b[i].key = key;
		b[i].ratelimit = ratelimit;
		b[i].n = per;
		b[i].amount[0] = a0;
		b[i].amount[1] = a1;
		crew_start(c, bumper_main, &b[i]);
	}
	crew_join(c);
	pthread_barrier_destroy(&barrier);
	applied[0] = applied[1] = 0;
	for (int i = 0; i < n; i++) {
		bad += faults_print("bumper", i, &b[i].faults);
		applied[0] += b[i].ok[0];
		applied[1] += b[i].ok[1];
	}
	free(b);
	free(c);
	assert_int_equal(bad, 0);
}

/* 256 threads x 50 bumps of 1 on one budget: exactly 12800. */
static void
test_seed_budget_256x50(void **state)
{
	struct fixture f;
	tally_budget_config cfg = budget_cfg(1000000, "1h", false, 0);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	int64_t applied[2];

	(void)state;
	fixture_init(&f, T(2026, 1, 15, 12, 0, 0), 0);
	make_budget(&f, 0, &cfg);
	run_bumpers(&f, bkey(0), false, 256, 50, 1, 0, applied);
	assert_int_equal(applied[0], 12800);
	assert_int_equal(tally_budget_get(f.store, bkey(0), &v), TALLY_OK);
	assert_int_equal(v.usage, 12800);
	assert_int_equal(v.window_start, f.initial_ws.v[SLOT_B][0]);
	assert_int_equal(f.ledger->total, 0);
	/* One CAS per bump: nothing rolled, nothing retried into a second
	 * install. */
	assert_int_equal(stats_of(&f).writes, 12800);
	fixture_finish(&f);
}

/* 256 threads x 50 rate-limit bumps of 7 tokens, 1 request. */
static void
test_seed_ratelimit_256x50(void **state)
{
	struct fixture f;
	tally_ratelimit_config cfg =
		rl_cfg(limit(false, 0, "1h"), limit(true, 100, "1h"), false, 0);
	tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
	int64_t applied[2];

	(void)state;
	fixture_init(&f, T(2026, 1, 15, 12, 0, 0), 0);
	make_ratelimit(&f, 0, &cfg);
	run_bumpers(&f, rkey(0), true, 256, 50, 7, 1, applied);
	assert_int_equal(applied[0], 89600);
	assert_int_equal(applied[1], 12800);
	assert_int_equal(tally_ratelimit_get(f.store, rkey(0), &v), TALLY_OK);
	assert_int_equal(v.tokens.usage, 89600);
	assert_int_equal(v.requests.usage, 12800);
	assert_int_equal(f.ledger->total, 0);
	fixture_finish(&f);
}

struct resetter {
	tally_store *store;
	pthread_barrier_t *barrier;
	uint64_t version;
	/* results */
	int rc;
	tally_budget_view view;
};

static void *
resetter_main(void *arg)
{
	struct resetter *r = arg;

	r->view.size = sizeof r->view;
	pthread_barrier_wait(r->barrier);
	r->rc = tally_budget_reset(r->store, bkey(0), r->version, &r->view);
	return r;
}

/* 128 resets of one expired budget observed at one version: one wins. */
static void
test_seed_reset_128_one_wins(void **state)
{
	enum {
		N = 128
	};
	struct fixture f;
	int64_t t0 = T(2026, 1, 15, 12, 0, 0);
	tally_budget_config cfg = budget_cfg(1000, "1m", false, 0);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	struct resetter *r = calloc(N, sizeof *r);
	struct crew *c = calloc(1, sizeof *c);
	pthread_barrier_t barrier;
	int ok = 0, conflict = 0, winner = -1;

	(void)state;
	assert_non_null(r);
	assert_non_null(c);
	fixture_init(&f, t0, 0);
	make_budget(&f, 0, &cfg);
	assert_int_equal(tally_budget_bump(f.store, bkey(0), 42, NULL),
			 TALLY_OK);
	/* Expire the window: 5.5 windows later, nothing swept. */
	fake_clock_set(&f.clock, t0 + 5 * NS_PER_MIN + 30 * NS_PER_SEC);
	assert_int_equal(tally_budget_get(f.store, bkey(0), &v), TALLY_OK);
	assert_int_equal(v.usage, 42);
	assert_int_equal(v.window_start, t0);

	assert_int_equal(pthread_barrier_init(&barrier, NULL, N), 0);
	for (int i = 0; i < N; i++) {
		r[i].store = f.store;
		r[i].barrier = &barrier;
		r[i].version = v.version;
		r[i].rc = INT32_MIN;
		crew_start(c, resetter_main, &r[i]);
	}
	crew_join(c);
	pthread_barrier_destroy(&barrier);

	for (int i = 0; i < N; i++) {
		if (r[i].rc == TALLY_OK) {
			ok++;
			winner = i;
		} else if (r[i].rc == TALLY_CONFLICT) {
			conflict++;
		} else {
			print_error("resetter %d: %d\n", i, r[i].rc);
		}
	}
	assert_int_equal(ok, 1);
	assert_int_equal(conflict, N - 1);
	assert_int_equal(r[winner].view.usage, 0);
	assert_int_equal(r[winner].view.window_start, t0 + 5 * NS_PER_MIN);

	/* The listener heard exactly one roll: the reset. */
	assert_int_equal(f.ledger->total, 1);
	assert_int_equal(f.ledger->by_cause[TALLY_ROLL_RESET], 1);
	assert_int_equal(f.ledger->acct[0][SLOT_B].usage_before, 42);
	assert_int_equal(f.ledger->acct[0][SLOT_B].last_old, t0);
	assert_int_equal(f.ledger->acct[0][SLOT_B].last_new,
			 t0 + 5 * NS_PER_MIN);
	assert_int_equal(tally_budget_get(f.store, bkey(0), &v), TALLY_OK);
	assert_int_equal(v.usage, 0);
	assert_int_equal(v.window_start, t0 + 5 * NS_PER_MIN);
	assert_int_equal(stats_of(&f).rolls, 1);
	free(r);
	free(c);
	fixture_finish(&f);
}

/* ------------------------------------------------------------------------ */
/* 2a. A sweep racing bumps across window boundaries                        */
/* ------------------------------------------------------------------------ */

static void
test_sweep_races_bumps(void **state)
{
	enum {
		NB = 4,
		NR = 2,
		WORKERS = 3
	};
	struct fixture f;
	struct totals *applied = calloc(1, sizeof *applied);
	struct mixer *m;
	struct sweeper sw[2];
	struct crew *workers = calloc(1, sizeof *workers);
	struct crew *sweepers = calloc(1, sizeof *sweepers);
	pthread_barrier_t barrier;
	int stop = 0;
	struct pace pace = {.per = 8, .lead = 64};
	uint64_t heard = 0, rolled = 0;
	tally_budget_config b[NB] = {
		budget_cfg(1000, "10ms", false, 0),
		budget_cfg(1000, "10ms", true, 0),
		budget_cfg(1000, "3ms", false, 0),
		budget_cfg(1000, "1s", true, 0),
	};
	tally_ratelimit_config r[NR] = {
		rl_cfg(limit(true, 500, "10ms"), limit(false, 0, "4ms"), false,
		       0),
		rl_cfg(limit(false, 0, "10ms"), limit(true, 9, "10ms"), true,
		       0),
	};
	tally_stats st = TALLY_STATS_INIT;
	(void)state;
	assert_non_null(applied);
	assert_non_null(workers);
	assert_non_null(sweepers);
	fixture_init(&f, T(2026, 1, 15, 12, 0, 0) + 123456, 0);
	for (int k = 0; k < NB; k++)
		make_budget(&f, k, &b[k]);
	for (int k = 0; k < NR; k++)
		make_ratelimit(&f, k, &r[k]);

	assert_int_equal(pthread_barrier_init(&barrier, NULL, WORKERS + 2), 0);
	m = mixers_new(WORKERS, &f, &barrier, scaled(60000), NB, NR);
	/* One sweeper moves the clock across boundaries and sweeps; a second
	 * only sweeps, so sweeps race sweeps as well as bumps. */
	for (unsigned i = 0; i < 2; i++) {
		sweeper_init(&sw[i], &f, &barrier, &stop, i);
		sw[i].min_sweeps = 100;
		sw[i].lazy = true;
	}
	/* The clock moves by up to 6 ms every 8 bumps: windows of 3 ms to
	 * 10 ms close while bumps and both sweepers race to roll them. */
	sw[0].advance = true;
	sw[0].step_max = 6 * NS_PER_MS;
	sw[0].pace = &pace;
	for (int i = 0; i < WORKERS; i++) {
		m[i].pace = &pace;
		crew_start(workers, mixer_main, &m[i]);
	}
	for (int i = 0; i < 2; i++)
		crew_start(sweepers, sweeper_main, &sw[i]);
	crew_join(workers);
	flag_set(&stop);
	crew_join(sweepers);
	pthread_barrier_destroy(&barrier);

	mixers_collect(m, WORKERS, applied);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(faults_print("sweeper", i, &sw[i].faults), 0);
		heard += sw[i].heard;
		rolled += sw[i].rolled;
	}
	print_message("sweep vs bumps: %ld sweeps, %ld clock moves, %" PRIu64
		      " rolls (%" PRIu64 " inline, %" PRIu64 " by sweeps)\n",
		      sw[0].sweeps + sw[1].sweeps, sw[0].advances,
		      f.ledger->total, f.ledger->by_cause[TALLY_ROLL_INLINE],
		      f.ledger->by_cause[TALLY_ROLL_SWEEP]);
	check_conservation(&f, NB, NR, applied, NULL, true);
	/* The sweepers' callbacks heard exactly the sweep rolls the store's
	 * listener heard, and *rolled counted each of them. */
	assert_int_equal(heard, f.ledger->by_cause[TALLY_ROLL_SWEEP]);
	assert_int_equal(rolled, heard);
	assert_int_equal(f.ledger->by_cause[TALLY_ROLL_RESET], 0);
	/* Close every window: all units are now in rolls heard. */
	final_sweep(&f, 2 * NS_PER_SEC);
	check_conservation(&f, NB, NR, applied, NULL, true);
	st = stats_of(&f);
	assert_int_equal(st.rolls, f.ledger->total);
	free(m);
	free(applied);
	free(workers);
	free(sweepers);
	fixture_finish(&f);
}

/* tally_sweep's *rolled and its callback count the same rolls: a rate limit
 * whose two counters are due at once closes two windows. */
static void
test_sweep_rolled_counts_windows(void **state)
{
	struct fixture f;
	tally_budget_config b = budget_cfg(1000, "10ms", false, 0);
	tally_ratelimit_config r = rl_cfg(limit(false, 0, "10ms"),
					  limit(false, 0, "10ms"), false, 0);
	struct sweeper sw;
	size_t rolled = 0;

	(void)state;
	fixture_init(&f, T(2026, 1, 15, 12, 0, 0), 0);
	make_budget(&f, 0, &b);
	make_ratelimit(&f, 0, &r);
	assert_int_equal(tally_budget_bump(f.store, bkey(0), 5, NULL),
			 TALLY_OK);
	assert_int_equal(tally_ratelimit_bump(f.store, rkey(0), 6, 7, NULL),
			 TALLY_OK);
	fake_clock_advance(&f.clock, 15 * NS_PER_MS);
	sweeper_init(&sw, &f, NULL, NULL, 0);
	assert_int_equal(tally_sweep(f.store, sweeper_cb, &sw, &rolled),
			 TALLY_OK);
	/* Three windows closed: b0, r0 tokens, r0 requests. */
	assert_int_equal(f.ledger->total, 3);
	assert_int_equal(sw.heard, 3);
	assert_int_equal(stats_of(&f).rolls, 3);
	fixture_finish(&f);
	if (rolled != sw.heard)
		print_error("tally_sweep: *rolled = %zu but its callback heard "
			    "%" PRIu64 " rolls\n",
			    rolled, sw.heard);
	assert_int_equal(rolled, sw.heard);
}

/* ------------------------------------------------------------------------ */
/* 2b. Rate-limit reset, due counters only                                  */
/* ------------------------------------------------------------------------ */

/* Deterministic: only tokens is due; requests keeps everything. */
static void
test_ratelimit_reset_due_only(void **state)
{
	struct fixture f;
	int64_t t0 = T(2026, 3, 1, 0, 0, 0);
	tally_ratelimit_config cfg = rl_cfg(limit(true, 1000, "1m"),
					    limit(true, 100, "1h"), true, 0);
	tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
	tally_ratelimit_view after = TALLY_RATELIMIT_VIEW_INIT;
	unsigned mask = 0xdead;

	(void)state;
	fixture_init(&f, t0 + 10 * NS_PER_SEC, 0);
	make_ratelimit(&f, 0, &cfg);
	assert_int_equal(f.initial_ws.v[SLOT_T][0], t0);
	assert_int_equal(f.initial_ws.v[SLOT_Q][0], t0);
	assert_int_equal(tally_ratelimit_bump(f.store, rkey(0), 100, 5, NULL),
			 TALLY_OK);
	fake_clock_set(&f.clock, t0 + 90 * NS_PER_SEC);
	assert_int_equal(tally_ratelimit_get(f.store, rkey(0), &v), TALLY_OK);
	assert_int_equal(
		tally_ratelimit_reset(f.store, rkey(0), v.version,
				      TALLY_COUNTER_BOTH | TALLY_RESET_DUE_ONLY,
				      &mask, &after),
		TALLY_OK);
	assert_int_equal(mask, TALLY_COUNTER_TOKENS);
	assert_int_equal(after.tokens.usage, 0);
	assert_int_equal(after.tokens.window_start, t0 + NS_PER_MIN);
	assert_int_equal(after.requests.usage, 5);
	assert_int_equal(after.requests.window_start, t0);
	assert_int_equal(f.ledger->total, 1);
	assert_int_equal(f.ledger->by_cause[TALLY_ROLL_RESET], 1);
	assert_int_equal(f.ledger->acct[0][SLOT_T].usage_before, 100);
	assert_int_equal(f.ledger->acct[0][SLOT_Q].rolls, 0);

	/* Nothing is due any more: mask 0, nothing changes. */
	assert_int_equal(tally_ratelimit_get(f.store, rkey(0), &v), TALLY_OK);
	mask = 0xdead;
	assert_int_equal(
		tally_ratelimit_reset(f.store, rkey(0), v.version,
				      TALLY_COUNTER_BOTH | TALLY_RESET_DUE_ONLY,
				      &mask, &after),
		TALLY_OK);
	assert_int_equal(mask, 0);
	assert_int_equal(tally_ratelimit_get(f.store, rkey(0), &after),
			 TALLY_OK);
	assert_int_equal(after.version, v.version);
	assert_int_equal(after.requests.usage, 5);
	assert_int_equal(f.ledger->total, 1);
	fixture_finish(&f);
}

struct rl_resetter {
	struct fixture *f;
	pthread_barrier_t *barrier;
	int *stop;         /* set when every round is done */
	struct pace *pace; /* one round per pace->per bumps */
	int rounds;
	int64_t t0;
	/* results */
	long conflicts;
	int reset_tokens, reset_none;
	struct faults faults;
};

static void *
rl_resetter_main(void *arg)
{
	struct rl_resetter *r = arg;
	tally_store *s = r->f->store;

	pthread_barrier_wait(r->barrier);
	for (int round = 0; round < r->rounds; round++) {
		/* Spread the rounds over the bumps. */
		while (!pace_mover_ready(r->pace))
			sched_yield();
		/* Exactly one tokens boundary later; requests (1d) is not
		 * due for the whole test. */
		fake_clock_advance(&r->f->clock, NS_PER_MIN);
		pace_mover_moved(r->pace);
		for (;;) {
			tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
			tally_ratelimit_view after = TALLY_RATELIMIT_VIEW_INIT;
			unsigned mask = 0xdead;
			int rc = tally_ratelimit_get(s, rkey(0), &v);

			if (rc != TALLY_OK) {
				fault(&r->faults, "get", rc);
				break;
			}
			rc = tally_ratelimit_reset(s, rkey(0), v.version,
						   TALLY_COUNTER_BOTH |
							   TALLY_RESET_DUE_ONLY,
						   &mask, &after);
			if (rc == TALLY_CONFLICT) {
				/* Each conflict means a bump won in between;
				 * endless conflicts mean get keeps showing a
				 * version that is gone. */
				if (++r->conflicts > 1000000) {
					fault(&r->faults, "reset livelock", rc);
					break;
				}
				continue;
			}
			if (rc != TALLY_OK) {
				fault(&r->faults, "reset", rc);
				break;
			}
			if (mask == TALLY_COUNTER_TOKENS)
				r->reset_tokens++;
			else if (mask == 0)
				r->reset_none++;
			else
				fault(&r->faults, "reset mask", (int)mask);
			if (after.requests.window_start != r->t0)
				fault(&r->faults, "requests window moved",
				      BAD_VIEW);
			break;
		}
	}
	flag_set(&r->pace->released);
	flag_set(r->stop);
	return r;
}

/* Concurrent: the requests counter is bumped while due-only resets roll
 * the tokens counter once a minute. */
static void
test_ratelimit_reset_due_only_racing_bumps(void **state)
{
	enum {
		WORKERS = 2,
		ROUNDS = 500
	};
	struct fixture f;
	int64_t t0 = T(2026, 3, 1, 0, 0, 0);
	tally_ratelimit_config cfg =
		rl_cfg(limit(false, 0, "1m"), limit(false, 0, "1d"), true, 0);
	struct totals *applied = calloc(1, sizeof *applied);
	struct crew *c = calloc(1, sizeof *c);
	struct rl_resetter rr;
	struct mixer *m;
	pthread_barrier_t barrier;
	tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
	const struct acct *tok, *req;
	struct pace pace = {.lead = 16};
	int stop = 0;

	(void)state;
	assert_non_null(applied);
	assert_non_null(c);
	fixture_init(&f, t0 + 30 * NS_PER_SEC, 0);
	make_ratelimit(&f, 0, &cfg);
	assert_int_equal(pthread_barrier_init(&barrier, NULL, WORKERS + 1), 0);
	m = mixers_new(WORKERS, &f, &barrier, scaled(50000), 0, 1);
	pace.per = (uint64_t)WORKERS * (uint64_t)m[0].n / (ROUNDS + 1) + 1;
	for (int i = 0; i < WORKERS; i++) {
		m[i].pace = &pace;
		m[i].stop = &stop;
		crew_start(c, mixer_main, &m[i]);
	}
	memset(&rr, 0, sizeof rr);
	rr.f = &f;
	rr.barrier = &barrier;
	rr.stop = &stop;
	rr.pace = &pace;
	rr.rounds = ROUNDS;
	rr.t0 = t0;
	crew_start(c, rl_resetter_main, &rr);
	crew_join(c);
	pthread_barrier_destroy(&barrier);

	mixers_collect(m, WORKERS, applied);
	assert_int_equal(faults_print("resetter", 0, &rr.faults), 0);
	print_message("due-only resets: %d reset tokens, %d found nothing "
		      "due, %ld conflicts\n",
		      rr.reset_tokens, rr.reset_none, rr.conflicts);
	assert_int_equal(rr.reset_tokens + rr.reset_none, ROUNDS);
	tok = &f.ledger->acct[0][SLOT_T];
	req = &f.ledger->acct[0][SLOT_Q];
	/* Requests never rolled and kept every unit. */
	assert_int_equal(req->rolls, 0);
	assert_int_equal(tally_ratelimit_get(f.store, rkey(0), &v), TALLY_OK);
	assert_int_equal(v.requests.usage, applied->v[SLOT_Q][0]);
	assert_int_equal(v.requests.window_start, t0);
	/* Tokens rolled exactly once per minute, by a reset or by a bump. */
	assert_int_equal(tok->rolls, ROUNDS);
	assert_int_equal(f.ledger->by_cause[TALLY_ROLL_RESET],
			 (uint64_t)rr.reset_tokens);
	assert_int_equal(f.ledger->by_cause[TALLY_ROLL_INLINE],
			 (uint64_t)rr.reset_none);
	assert_int_equal(v.tokens.window_start, t0 + ROUNDS * NS_PER_MIN);
	check_conservation(&f, 0, 1, applied, NULL, true);
	free(m);
	free(applied);
	free(c);
	fixture_finish(&f);
}

/* ------------------------------------------------------------------------ */
/* 2c. Config upserts racing bumps                                          */
/* ------------------------------------------------------------------------ */

struct upserter {
	struct fixture *f;
	pthread_barrier_t *barrier;
	int *stop;
	long n;
	bool rolls; /* short periods and a moving clock */
	/* results */
	long regressions; /* usage went down with no roll possible */
	struct faults faults;
};

static tally_budget_config
upsert_budget_cfg(long i, bool rolls)
{
	if (i % 2 == 0)
		return budget_cfg(1000, rolls ? "10ms" : "1h", false, 0);
	return budget_cfg(5000, rolls ? "25ms" : "2h", false, 0);
}

static tally_ratelimit_config
upsert_rl_cfg(long i, bool rolls)
{
	if (i % 2 == 0)
		return rl_cfg(limit(true, 3000, rolls ? "10ms" : "1h"),
			      limit(false, 0, rolls ? "10ms" : "1h"), false, 0);
	return rl_cfg(limit(false, 0, rolls ? "25ms" : "2h"),
		      limit(true, 70, rolls ? "5ms" : "3h"), false, 0);
}

static void *
upserter_main(void *arg)
{
	struct upserter *u = arg;
	tally_store *s = u->f->store;
	int64_t last_b = 0, last_t = 0, last_q = 0;

	pthread_barrier_wait(u->barrier);
	for (long i = 0; i < u->n; i++) {
		tally_budget_config bc = upsert_budget_cfg(i, u->rolls);
		tally_ratelimit_config rc = upsert_rl_cfg(i, u->rolls);
		tally_budget_view bv = TALLY_BUDGET_VIEW_INIT;
		tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
		int rc1 = tally_budget_upsert(s, bkey(0), &bc, &bv);
		int rc2 = tally_ratelimit_upsert(s, rkey(0), &rc, &rv);

		if (rc1 != TALLY_OK)
			fault(&u->faults, "budget_upsert", rc1);
		else if (bv.config.max_limit != bc.max_limit ||
			 bv.config.period.count != bc.period.count)
			fault(&u->faults, "budget_upsert view", BAD_VIEW);
		if (rc2 != TALLY_OK)
			fault(&u->faults, "ratelimit_upsert", rc2);
		else if (rv.config.requests.has_max != rc.requests.has_max)
			fault(&u->faults, "ratelimit_upsert view", BAD_VIEW);
		if (!u->rolls && rc1 == TALLY_OK && rc2 == TALLY_OK) {
			/* No window can roll: usage only grows. */
			u->regressions += bv.usage < last_b ||
					  rv.tokens.usage < last_t ||
					  rv.requests.usage < last_q;
			last_b = bv.usage;
			last_t = rv.tokens.usage;
			last_q = rv.requests.usage;
		}
		if (u->rolls)
			fake_clock_advance(&u->f->clock, 3 * NS_PER_MS);
	}
	flag_set(u->stop);
	return u;
}

static void
upsert_race(bool rolls)
{
	enum {
		WORKERS = 3
	};
	struct fixture f;
	struct totals *applied = calloc(1, sizeof *applied);
	struct crew *c = calloc(1, sizeof *c);
	tally_budget_config bc = upsert_budget_cfg(0, rolls);
	tally_ratelimit_config rc = upsert_rl_cfg(0, rolls);
	tally_budget_view bv = TALLY_BUDGET_VIEW_INIT;
	tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
	struct upserter u;
	struct mixer *m;
	pthread_barrier_t barrier;
	int stop = 0;

	assert_non_null(applied);
	assert_non_null(c);
	fixture_init(&f, T(2026, 5, 5, 5, 5, 5), 0);
	make_budget(&f, 0, &bc);
	make_ratelimit(&f, 0, &rc);
	assert_int_equal(pthread_barrier_init(&barrier, NULL, WORKERS + 1), 0);
	m = mixers_new(WORKERS, &f, &barrier, scaled(30000), 1, 1);
	for (int i = 0; i < WORKERS; i++) {
		m[i].stop = &stop;
		m[i].pct_bump = 70;
		m[i].pct_try = 20;
		crew_start(c, mixer_main, &m[i]);
	}
	memset(&u, 0, sizeof u);
	u.f = &f;
	u.barrier = &barrier;
	u.stop = &stop;
	u.n = scaled(20000) | 1; /* odd: the last config written is #n-1 */
	u.rolls = rolls;
	crew_start(c, upserter_main, &u);
	crew_join(c);
	pthread_barrier_destroy(&barrier);

	mixers_collect(m, WORKERS, applied);
	assert_int_equal(faults_print("upserter", 0, &u.faults), 0);
	assert_int_equal(u.regressions, 0);
	if (!rolls) {
		assert_int_equal(f.ledger->total, 0);
	} else {
		/* One more bump after a boundary: at least one roll. */
		fake_clock_advance(&f.clock, NS_PER_SEC);
		assert_int_equal(tally_budget_bump(f.store, bkey(0), 1, NULL),
				 TALLY_OK);
		assert_int_equal(
			tally_ratelimit_bump(f.store, rkey(0), 1, 1, NULL),
			TALLY_OK);
		applied->v[SLOT_B][0]++;
		applied->v[SLOT_T][0]++;
		applied->v[SLOT_Q][0]++;
		assert_true(f.ledger->total >= 3);
	}
	check_conservation(&f, 1, 1, applied, NULL, true);

	/* The last upsert's config is in force. */
	bc = upsert_budget_cfg(u.n - 1, rolls);
	rc = upsert_rl_cfg(u.n - 1, rolls);
	assert_int_equal(tally_budget_get(f.store, bkey(0), &bv), TALLY_OK);
	assert_int_equal(bv.config.max_limit, bc.max_limit);
	assert_int_equal(bv.config.period.count, bc.period.count);
	assert_int_equal(tally_ratelimit_get(f.store, rkey(0), &rv), TALLY_OK);
	assert_int_equal(rv.config.requests.has_max, rc.requests.has_max);
	assert_int_equal(rv.config.tokens.period.count, rc.tokens.period.count);
	assert_int_equal(stats_of(&f).rolls, f.ledger->total);
	free(m);
	free(applied);
	free(c);
	fixture_finish(&f);
}

/* Long periods, a still clock: no roll, no bump lost, usage never drops. */
static void
test_upsert_races_bumps(void **state)
{
	(void)state;
	upsert_race(false);
}

/* Short periods, a moving clock: rolls accounted through the listener. */
static void
test_upsert_races_bumps_with_rolls(void **state)
{
	(void)state;
	upsert_race(true);
}

/* ------------------------------------------------------------------------ */
/* 2d. A calendar-aligned monthly budget across a month boundary            */
/* ------------------------------------------------------------------------ */

struct month_worker {
	struct fixture *f;
	pthread_barrier_t *barrier;
	long n;
	bool mover; /* moves the clock into February halfway */
	/* results */
	struct totals ok;
	struct faults faults;
};

static void *
month_worker_main(void *arg)
{
	struct month_worker *w = arg;

	pthread_barrier_wait(w->barrier);
	for (long i = 0; i < w->n; i++) {
		if (w->mover && i == w->n / 2)
			fake_clock_set(&w->f->clock, T(2026, 2, 1, 0, 0, 1));
		for (int k = 0; k < 3; k++) {
			int rc = tally_budget_bump(w->f->store, bkey(k), 1,
						   NULL);

			if (rc == TALLY_OK)
				w->ok.v[SLOT_B][k]++;
			else
				fault(&w->faults, "bump", rc);
		}
	}
	return w;
}

static void
test_calendar_month_boundary(void **state)
{
	enum {
		WORKERS = 4
	};
	struct fixture f;
	/* b0: UTC months; b1: UTC-5 (its February starts 05:00Z); b2: UTC+1
	 * (its February started at 23:00Z on January 31st). */
	tally_budget_config cfg[3] = {
		budget_cfg(1000000, "1M", true, 0),
		budget_cfg(1000000, "1M", true, -300),
		budget_cfg(1000000, "1M", true, 60),
	};
	struct month_worker *w = calloc(WORKERS, sizeof *w);
	struct totals *applied = calloc(1, sizeof *applied);
	struct crew *workers = calloc(1, sizeof *workers);
	struct crew *sweepers = calloc(1, sizeof *sweepers);
	struct sweeper sw;
	pthread_barrier_t barrier;
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	const struct acct *a;
	int stop = 0, bad = 0;

	(void)state;
	assert_non_null(w);
	assert_non_null(applied);
	assert_non_null(workers);
	assert_non_null(sweepers);
	fixture_init(&f, T(2026, 1, 31, 23, 59, 59), 0);
	for (int k = 0; k < 3; k++)
		make_budget(&f, k, &cfg[k]);
	assert_int_equal(f.initial_ws.v[SLOT_B][0], T(2026, 1, 1, 0, 0, 0));
	assert_int_equal(f.initial_ws.v[SLOT_B][1], T(2026, 1, 1, 5, 0, 0));
	assert_int_equal(f.initial_ws.v[SLOT_B][2], T(2026, 1, 31, 23, 0, 0));

	assert_int_equal(pthread_barrier_init(&barrier, NULL, WORKERS + 1), 0);
	for (int i = 0; i < WORKERS; i++) {
		w[i].f = &f;
		w[i].barrier = &barrier;
		w[i].n = scaled(20000) + 2;
		w[i].mover = i == 0;
		crew_start(workers, month_worker_main, &w[i]);
	}
	sweeper_init(&sw, &f, &barrier, &stop, 0);
	crew_start(sweepers, sweeper_main, &sw);
	crew_join(workers);
	flag_set(&stop);
	crew_join(sweepers);
	pthread_barrier_destroy(&barrier);

	for (int i = 0; i < WORKERS; i++) {
		bad += faults_print("worker", i, &w[i].faults);
		totals_add(applied, &w[i].ok);
	}
	assert_int_equal(bad, 0);
	assert_int_equal(faults_print("sweeper", 0, &sw.faults), 0);

	/* Exactly one roll, b0's, onto February 1st 00:00Z. */
	a = &f.ledger->acct[0][SLOT_B];
	assert_int_equal(f.ledger->total, 1);
	assert_int_equal(a->rolls, 1);
	assert_int_equal(a->last_old, T(2026, 1, 1, 0, 0, 0));
	assert_int_equal(a->last_new, T(2026, 2, 1, 0, 0, 0));
	assert_true(a->usage_before > 0);
	assert_int_equal(tally_budget_get(f.store, bkey(0), &v), TALLY_OK);
	assert_int_equal(v.window_start, T(2026, 2, 1, 0, 0, 0));
	assert_int_equal(v.window_end, T(2026, 3, 1, 0, 0, 0));
	assert_int_equal(a->usage_before + v.usage, applied->v[SLOT_B][0]);
	/* The offset budgets did not roll: their months have not turned. */
	assert_int_equal(f.ledger->acct[1][SLOT_B].rolls, 0);
	assert_int_equal(f.ledger->acct[2][SLOT_B].rolls, 0);
	assert_int_equal(tally_budget_get(f.store, bkey(1), &v), TALLY_OK);
	assert_int_equal(v.window_end, T(2026, 2, 1, 5, 0, 0));
	assert_int_equal(tally_budget_get(f.store, bkey(2), &v), TALLY_OK);
	assert_int_equal(v.window_end, T(2026, 2, 28, 23, 0, 0));
	check_conservation(&f, 3, 0, applied, NULL, true);
	free(w);
	free(applied);
	free(workers);
	free(sweepers);
	fixture_finish(&f);
}

/* ------------------------------------------------------------------------ */
/* 2e. Remove racing bumps and gets                                         */
/* ------------------------------------------------------------------------ */

#define REMOVE_NB 30
#define REMOVE_NR 10

struct remover {
	struct fixture *f;
	pthread_barrier_t *barrier;
	int *stop;
	long n;
	/* results */
	struct totals removed; /* usage in the views remove returned */
	long removes;
	struct faults faults;
};

static tally_budget_config
remove_budget_cfg(void)
{
	return budget_cfg(200, "10ms", false, 0);
}

static tally_ratelimit_config
remove_rl_cfg(void)
{
	return rl_cfg(limit(true, 300, "10ms"), limit(true, 10, "7ms"), false,
		      0);
}

static void
remover_cycle(struct remover *r, int key)
{
	tally_store *s = r->f->store;
	int rc;

	if (key < REMOVE_NB) {
		tally_budget_config cfg = remove_budget_cfg();
		tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
		rc = tally_budget_remove(s, bkey(key), &v);
		if (rc == TALLY_OK)
			r->removed.v[SLOT_B][key] += v.usage;
		else
			fault(&r->faults, "budget_remove", rc);
		rc = tally_budget_upsert(s, bkey(key), &cfg, NULL);
	} else {
		tally_ratelimit_config cfg = remove_rl_cfg();
		tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
		int k = key - REMOVE_NB;

		rc = tally_ratelimit_remove(s, rkey(k), &v);
		if (rc == TALLY_OK) {
			r->removed.v[SLOT_T][k] += v.tokens.usage;
			r->removed.v[SLOT_Q][k] += v.requests.usage;
		} else {
			fault(&r->faults, "ratelimit_remove", rc);
		}
		rc = tally_ratelimit_upsert(s, rkey(k), &cfg, NULL);
	}
	/* Only this thread creates: the key was absent. */
	if (rc != TALLY_CREATED)
		fault(&r->faults, "re-create", rc);
	r->removes++;
}

static void *
remover_main(void *arg)
{
	struct remover *r = arg;
	const int nkeys = REMOVE_NB + REMOVE_NR;

	pthread_barrier_wait(r->barrier);
	for (long i = 0; i < r->n; i++) {
		fake_clock_advance(&r->f->clock, NS_PER_MS);
		if (i % 16 == 15) {
			/* Every key at once: tombstones pile up and the map
			 * is rebuilt under the readers. */
			for (int k = 0; k < nkeys; k++)
				remover_cycle(r, k);
		} else {
			remover_cycle(r, (int)(i % nkeys));
		}
	}
	flag_set(r->stop);
	return r;
}

static void
test_remove_races_bumps_and_gets(void **state)
{
	enum {
		WORKERS = 3
	};
	struct fixture f;
	tally_budget_config bc = remove_budget_cfg();
	tally_ratelimit_config rc = remove_rl_cfg();
	struct totals *applied = calloc(1, sizeof *applied);
	struct crew *c = calloc(1, sizeof *c);
	struct remover *r = calloc(1, sizeof *r);
	struct mixer *m;
	pthread_barrier_t barrier;
	tally_stats st = TALLY_STATS_INIT;
	long enoent = 0, ops = 0;
	int stop = 0;

	(void)state;
	assert_non_null(applied);
	assert_non_null(c);
	assert_non_null(r);
	fixture_init(&f, T(2026, 6, 1, 0, 0, 0), 0);
	for (int k = 0; k < REMOVE_NB; k++)
		make_budget(&f, k, &bc);
	for (int k = 0; k < REMOVE_NR; k++)
		make_ratelimit(&f, k, &rc);

	assert_int_equal(pthread_barrier_init(&barrier, NULL, WORKERS + 1), 0);
	m = mixers_new(WORKERS, &f, &barrier, scaled(60000), REMOVE_NB,
		       REMOVE_NR);
	for (int i = 0; i < WORKERS; i++) {
		m[i].stop = &stop;
		m[i].pct_bump = 50;
		m[i].pct_try = 20;
		m[i].allow_enoent = true;
		crew_start(c, mixer_main, &m[i]);
	}
	r->f = &f;
	r->barrier = &barrier;
	r->stop = &stop;
	r->n = scaled(8000);
	crew_start(c, remover_main, r);
	crew_join(c);
	pthread_barrier_destroy(&barrier);

	mixers_collect(m, WORKERS, applied);
	assert_int_equal(faults_print("remover", 0, &r->faults), 0);
	for (int i = 0; i < WORKERS; i++) {
		enoent += m[i].enoent;
		ops += m[i].ops;
	}
	print_message("remove vs bumps: %ld removes, %ld operations, %ld "
		      "ENOENT, %" PRIu64 " rolls\n",
		      r->removes, ops, enoent, f.ledger->total);
	check_conservation(&f, REMOVE_NB, REMOVE_NR, applied, &r->removed,
			   false);
	st = stats_of(&f);
	assert_int_equal(st.records, REMOVE_NB + REMOVE_NR);
	assert_int_equal(st.rolls, f.ledger->total);
	free(m);
	free(applied);
	free(c);
	free(r);
	fixture_finish(&f);
}

/* ------------------------------------------------------------------------ */
/* 3. Conservation stress                                                   */
/* ------------------------------------------------------------------------ */

#define STRESS_NB 64
#define STRESS_NR 64

static int32_t
stress_offset(int k)
{
	/* Spread over the whole range, negative and positive. */
	return (int32_t)((k * 977) % (2 * TALLY_UTC_OFFSET_MAX + 1)) -
	       TALLY_UTC_OFFSET_MAX;
}

static tally_budget_config
stress_budget_cfg(int k)
{
	int32_t off = stress_offset(k);

	switch (k % 8) {
	case 0:
		return budget_cfg(5000, "10ms", false, 0);
	case 1:
		return budget_cfg(300, "7ms", false, 0);
	case 2:
		return budget_cfg(100000, "1d", true, off);
	case 3:
		return budget_cfg(100000, "1w", true, off);
	case 4:
		return budget_cfg(100000, "1M", true, off);
	case 5:
		return budget_cfg(100000, "1Q", true, off);
	case 6:
		return budget_cfg(2000, "50ms", true, off);
	default:
		return budget_cfg(400, "10ms", true, 0);
	}
}

/* Half the rate limits (k / 4 odd) have sliding counters wherever the
 * period allows (not months): they roll and conserve exactly as fixed
 * ones, and try_consume never leaves a window's usage above its max. */
static tally_ratelimit_config
stress_rl_cfg(int k)
{
	int32_t off = stress_offset(k);
	tally_ratelimit_config c;

	switch (k % 4) {
	case 0:
		c = rl_cfg(limit(true, 2000, "10ms"), limit(true, 30, "25ms"),
			   false, 0);
		break;
	case 1:
		c = rl_cfg(limit(false, 0, "1h"), limit(false, 0, "1d"), true,
			   off);
		break;
	case 2:
		c = rl_cfg(limit(true, 500, "1M"), limit(true, 20, "1w"), true,
			   off);
		break;
	default:
		c = rl_cfg(limit(false, 0, "15ms"), limit(true, 50, "1s"),
			   false, 0);
		break;
	}
	if ((k / 4) % 2 == 1) {
		if (c.tokens.period.unit != TALLY_PERIOD_MONTH)
			c.tokens_algorithm = TALLY_ALGORITHM_SLIDING;
		c.requests_algorithm = TALLY_ALGORITHM_SLIDING;
	}
	return c;
}

static void
conservation_stress(void)
{
	enum {
		WORKERS = 4
	};
	struct fixture f;
	struct totals *applied = calloc(1, sizeof *applied);
	struct crew *workers = calloc(1, sizeof *workers);
	struct crew *sweepers = calloc(1, sizeof *sweepers);
	struct sweeper sw[2];
	struct mixer *m;
	pthread_barrier_t barrier;
	int64_t start = T(2025, 12, 30, 21, 0, 0);
	long ops = 0, limited = 0;
	struct pace pace = {.per = 8, .lead = 128};
	tally_stats st = TALLY_STATS_INIT;
	int stop = 0;

	assert_non_null(applied);
	assert_non_null(workers);
	assert_non_null(sweepers);
	fixture_init(&f, start, STRESS_NB + STRESS_NR);
	for (int k = 0; k < STRESS_NB; k++) {
		tally_budget_config cfg = stress_budget_cfg(k);

		make_budget(&f, k, &cfg);
	}
	for (int k = 0; k < STRESS_NR; k++) {
		tally_ratelimit_config cfg = stress_rl_cfg(k);

		make_ratelimit(&f, k, &cfg);
	}

	assert_int_equal(pthread_barrier_init(&barrier, NULL, WORKERS + 2), 0);
	m = mixers_new(WORKERS, &f, &barrier, scaled(100000), STRESS_NB,
		       STRESS_NR);
	for (int i = 0; i < WORKERS; i++) {
		m[i].pct_bump = 70;
		m[i].pct_try = 20;
		m[i].pace = &pace;
		crew_start(workers, mixer_main, &m[i]);
	}
	/* The clock: small steps, now and then a jump of days (so days,
	 * weeks, months and quarters roll too) or a small step back. */
	for (unsigned i = 0; i < 2; i++) {
		sweeper_init(&sw[i], &f, &barrier, &stop, i);
		sw[i].min_sweeps = 50;
		sw[i].lazy = true;
	}
	sw[0].advance = true;
	sw[0].step_max = 3 * NS_PER_MS;
	sw[0].jump_1_in = 500;
	sw[0].jump_max = 20 * NS_PER_DAY;
	sw[0].back_1_in = 50;
	sw[0].back_max = 5 * NS_PER_MS;
	sw[0].pace = &pace;
	for (int i = 0; i < 2; i++)
		crew_start(sweepers, sweeper_main, &sw[i]);
	crew_join(workers);
	flag_set(&stop);
	crew_join(sweepers);
	pthread_barrier_destroy(&barrier);

	mixers_collect(m, WORKERS, applied);
	for (int i = 0; i < 2; i++)
		assert_int_equal(faults_print("sweeper", i, &sw[i].faults), 0);
	for (int i = 0; i < WORKERS; i++) {
		ops += m[i].ops;
		limited += m[i].limited;
	}
	print_message("conservation: %ld operations (%ld limited), %ld "
		      "sweeps, %ld clock moves to +%" PRId64 " days, %" PRIu64
		      " rolls (%" PRIu64 " inline, %" PRIu64 " swept)\n",
		      ops, limited, sw[0].sweeps + sw[1].sweeps, sw[0].advances,
		      (fake_clock_read(&f.clock) - start) / NS_PER_DAY,
		      f.ledger->total, f.ledger->by_cause[TALLY_ROLL_INLINE],
		      f.ledger->by_cause[TALLY_ROLL_SWEEP]);
	check_conservation(&f, STRESS_NB, STRESS_NR, applied, NULL, true);
	assert_int_equal(sw[0].heard + sw[1].heard,
			 f.ledger->by_cause[TALLY_ROLL_SWEEP]);
	assert_int_equal(sw[0].rolled + sw[1].rolled,
			 sw[0].heard + sw[1].heard);
	final_sweep(&f, 400 * NS_PER_DAY);
	check_conservation(&f, STRESS_NB, STRESS_NR, applied, NULL, true);
	st = stats_of(&f);
	assert_true(st.writes > 0);
	assert_int_equal(st.rolls, f.ledger->total);
	assert_int_equal(st.records, STRESS_NB + STRESS_NR);
	free(m);
	free(applied);
	free(workers);
	free(sweepers);
	fixture_finish(&f);
}

static void
test_conservation_stress(void **state)
{
	(void)state;
	conservation_stress();
}

/* The same on the production clock path: a coarse clock lagging by up to
 * the margin, the precise one read near boundaries only. */
static void
test_conservation_stress_coarse_clock(void **state)
{
	(void)state;
	g_coarse = true;
	conservation_stress();
	g_coarse = false;
}

/* ------------------------------------------------------------------------ */
/* 4. Thread churn                                                          */
/* ------------------------------------------------------------------------ */

#define CHURN_BUMPS 5

struct churner {
	tally_store *store;
	pthread_barrier_t *barrier;
	/* results */
	int64_t ok_b, ok_t, ok_q;
	struct faults faults;
};

static void *
churner_main(void *arg)
{
	struct churner *c = arg;

	pthread_barrier_wait(c->barrier);
	for (int i = 0; i < CHURN_BUMPS; i++) {
		int rc = tally_budget_bump(c->store, bkey(0), 1, NULL);

		if (rc == TALLY_OK)
			c->ok_b++;
		else
			fault(&c->faults, "budget_bump", rc);
	}
	if (tally_ratelimit_bump(c->store, rkey(0), 2, 1, NULL) == TALLY_OK) {
		c->ok_t += 2;
		c->ok_q += 1;
	} else {
		fault(&c->faults, "ratelimit_bump", -1);
	}
	return c;
}

static void
test_thread_churn(void **state)
{
	enum {
		THREADS = 2000,
		WAVE = 8
	};
	struct fixture f;
	tally_budget_config bc = budget_cfg(1000000, "1h", false, 0);
	tally_ratelimit_config rc =
		rl_cfg(limit(false, 0, "1h"), limit(false, 0, "1h"), false, 0);
	struct churner *ch = calloc(THREADS, sizeof *ch);
	struct crew *c = calloc(1, sizeof *c);
	pthread_barrier_t barrier;
	int64_t ok_b = 0, ok_t = 0, ok_q = 0;
	uint64_t max_threads = 0;
	tally_budget_view bv = TALLY_BUDGET_VIEW_INIT;
	tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
	tally_stats st = TALLY_STATS_INIT;
	int bad = 0;

	(void)state;
	assert_non_null(ch);
	assert_non_null(c);
	fixture_init(&f, T(2026, 2, 2, 2, 2, 2), 0);
	make_budget(&f, 0, &bc); /* the main thread holds one record */
	make_ratelimit(&f, 0, &rc);
	assert_int_equal(pthread_barrier_init(&barrier, NULL, WAVE), 0);
	for (int i = 0; i < THREADS; i += WAVE) {
		for (int j = i; j < i + WAVE; j++) {
			ch[j].store = f.store;
			ch[j].barrier = &barrier;
			crew_start(c, churner_main, &ch[j]);
		}
		crew_join(c);
		st = stats_of(&f);
		if (st.threads > max_threads)
			max_threads = st.threads;
		/* Every exited thread gave its record back. */
		bad += st.threads_active != 1;
	}
	pthread_barrier_destroy(&barrier);
	assert_int_equal(bad, 0);

	for (int i = 0; i < THREADS; i++) {
		bad += faults_print("churner", i, &ch[i].faults);
		ok_b += ch[i].ok_b;
		ok_t += ch[i].ok_t;
		ok_q += ch[i].ok_q;
	}
	assert_int_equal(bad, 0);
	assert_int_equal(ok_b, THREADS * CHURN_BUMPS);
	assert_int_equal(tally_budget_get(f.store, bkey(0), &bv), TALLY_OK);
	assert_int_equal(bv.usage, ok_b);
	assert_int_equal(tally_ratelimit_get(f.store, rkey(0), &rv), TALLY_OK);
	assert_int_equal(rv.tokens.usage, ok_t);
	assert_int_equal(rv.requests.usage, ok_q);
	st = stats_of(&f);
	print_message("churn: %d threads used %" PRIu64
		      " thread records; pending %" PRIu64 ", peak %" PRIu64
		      "\n",
		      THREADS, st.threads, st.pending, st.peak_pending);
	/* Records are recycled: never more than the threads alive at once
	 * (a wave, plus the main thread). */
	assert_true(max_threads <= WAVE + 1);
	assert_true(st.threads <= WAVE + 1);
	free(ch);
	free(c);
	fixture_finish(&f);
}

/* ------------------------------------------------------------------------ */
/* 5. Pending memory stays bounded                                          */
/* ------------------------------------------------------------------------ */

/*
 * Bounds, from src/epoch.c and TALLY__BATCH_CAP / TALLY__PENDING_HIGH in
 * src/thread.h. A bump retires one snapshot into the thread's batch; when
 * the batch is full (TALLY__BATCH_CAP) it goes to the epoch and the thread
 * polls after the call, and again every TALLY__POLL_EVERY calls while
 * anything it submitted is pending; above TALLY__PENDING_HIGH it polls
 * with yields, a bounded number of times, before it goes on.
 *
 * A lone writer: every other thread record is outside any section, so the
 * first poll frees every submitted batch: at most a full batch plus the
 * snapshot that overflowed it is ever pending. The same holds for the
 * drain after a run: once the workers have exited, a thread that writes
 * enough to submit a batch frees its own garbage and the exited threads'
 * (help_idle), leaving at most its filling batch.
 */
#define PENDING_BOUND_ALONE (TALLY__BATCH_CAP + 1)
#define PENDING_BOUND_DRAINED TALLY__BATCH_CAP

/*
 * Two writers: a batch is freed once the other thread has left the section
 * it was in, so while both run, pending stays at most PENDING_HIGH + 1 (the
 * common case here: a peak of exactly 1025). A thread preempted inside a
 * section holds every grace period back, and the library does not wait for
 * it: after a bounded wait that fails, a thread waits again only after
 * another PENDING_HIGH retirements. So pending grows with the length of a
 * preemption: peaks of 2k to 23k were seen on this loaded 2-core machine
 * (a scheduler slice of a few ms, at ~10 M writes/s between two threads).
 * The bound, 64 x PENDING_HIGH (65,536), holds unless a thread is
 * preempted inside one call for several milliseconds; with reclamation
 * stalled for good, pending would reach every write of the run (2 x 10^6).
 */
#define PENDING_BOUND_PAIR (64 * TALLY__PENDING_HIGH)

/*
 * And with the other writer outside the library, nothing holds a grace
 * period back: two writers that take turns (a burst each, the other parked
 * on a condition variable outside any section) keep pending within what
 * each leaves behind alone: a full batch plus the overflowing snapshot, for
 * each of the two. A wait that failed to free anything, or a grace period
 * that needed the other thread to poll, would push it above. Deterministic:
 * who is inside a section at any time is fixed by the turns, not by the
 * scheduler. (Two writers running at once are bounded by PENDING_BOUND_PAIR
 * only: how far pending goes there depends on preemptions inside sections.)
 */
#define PENDING_BOUND_TURNS (2 * (TALLY__BATCH_CAP + 1))
#define TURN_ROUNDS 200
#define TURN_BURST 1000

struct turns {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int turn;
};

struct turn_worker {
	struct turns *t;
	struct fixture *f;
	int me;
	long ok;
	int bad_rc;
};

static void *
turn_main(void *arg)
{
	struct turn_worker *w = arg;

	for (int r = 0; r < TURN_ROUNDS; r++) {
		pthread_mutex_lock(&w->t->lock);
		while (w->t->turn != w->me)
			pthread_cond_wait(&w->t->cond, &w->t->lock);
		pthread_mutex_unlock(&w->t->lock);
		for (int i = 0; i < TURN_BURST; i++) {
			int rc = tally_budget_bump(w->f->store, bkey(0), 1,
						   NULL);
			if (rc == TALLY_OK)
				w->ok++;
			else
				w->bad_rc = rc;
		}
		pthread_mutex_lock(&w->t->lock);
		w->t->turn = 1 - w->me;
		pthread_cond_broadcast(&w->t->cond);
		pthread_mutex_unlock(&w->t->lock);
	}
	return w;
}

static void
test_pending_bounded_in_turns(void **state)
{
	struct fixture f;
	tally_budget_config cfg = budget_cfg(INT64_MAX, "none", false, 0);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	struct turns t = {.turn = 0};
	struct turn_worker w[2];
	pthread_t th[2];
	tally_stats st = TALLY_STATS_INIT;
	(void)state;

	fixture_init(&f, T(2026, 4, 4, 4, 4, 4), 0);
	make_budget(&f, 0, &cfg);
	assert_int_equal(pthread_mutex_init(&t.lock, NULL), 0);
	assert_int_equal(pthread_cond_init(&t.cond, NULL), 0);
	for (int i = 0; i < 2; i++) {
		w[i] = (struct turn_worker){.t = &t, .f = &f, .me = i};
		assert_int_equal(pthread_create(&th[i], NULL, turn_main, &w[i]),
				 0);
	}
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	pthread_cond_destroy(&t.cond);
	pthread_mutex_destroy(&t.lock);

	st = stats_of(&f);
	print_message("pending, 2 threads in turns: %" PRIu64
		      " retired, %" PRIu64 " freed, peak %" PRIu64
		      " (bound %d), %" PRIu64 " CAS retries\n",
		      st.retired, st.freed, st.peak_pending,
		      PENDING_BOUND_TURNS, st.cas_retries);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(w[i].bad_rc, 0);
		assert_int_equal(w[i].ok, (long)TURN_ROUNDS * TURN_BURST);
	}
	assert_int_equal(tally_budget_get(f.store, bkey(0), &v), TALLY_OK);
	assert_int_equal(v.usage, 2 * (int64_t)TURN_ROUNDS * TURN_BURST);
	/* Turns never overlap, so no CAS can lose. */
	assert_int_equal(st.cas_retries, 0);
	assert_int_equal(st.retired, st.writes);
	assert_true(st.peak_pending <= PENDING_BOUND_TURNS);
	assert_true(st.freed + PENDING_BOUND_TURNS >= st.retired);
	fixture_finish(&f);
}

/* `threads` workers bump one key n times each on a fresh store; then the
 * main thread writes 2 batches' worth and *drained gets what is pending. */
static tally_stats
pending_run(int threads, long n, uint64_t *drained)
{
	struct fixture f;
	tally_budget_config cfg = budget_cfg(INT64_MAX, "none", false, 0);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	struct mixer *m;
	struct crew *c = calloc(1, sizeof *c);
	struct totals *applied = calloc(1, sizeof *applied);
	pthread_barrier_t barrier;
	tally_stats st = TALLY_STATS_INIT;
	tally_stats after = TALLY_STATS_INIT;
	assert_non_null(c);
	assert_non_null(applied);
	fixture_init(&f, T(2026, 4, 4, 4, 4, 4), 0);
	make_budget(&f, 0, &cfg);
	assert_int_equal(
		pthread_barrier_init(&barrier, NULL, (unsigned)threads), 0);
	m = mixers_new(threads, &f, &barrier, n, 1, 0);
	for (int i = 0; i < threads; i++)
		crew_start(c, mixer_main, &m[i]);
	crew_join(c);
	pthread_barrier_destroy(&barrier);
	mixers_collect(m, threads, applied);

	assert_int_equal(tally_budget_get(f.store, bkey(0), &v), TALLY_OK);
	assert_int_equal(v.usage, applied->v[SLOT_B][0]);
	st = stats_of(&f);
	for (int i = 0; i <= 2 * TALLY__BATCH_CAP; i++)
		assert_int_equal(tally_budget_bump(f.store, bkey(0), 1, NULL),
				 TALLY_OK);
	after = stats_of(&f);
	*drained = after.pending;
	print_message("pending, %d thread(s): %" PRIu64 " retired, %" PRIu64
		      " freed, %" PRIu64 " pending, peak %" PRIu64 ", %" PRIu64
		      " CAS retries; %" PRIu64 " pending after a drain\n",
		      threads, st.retired, st.freed, st.pending,
		      st.peak_pending, st.cas_retries, after.pending);
	/* One key, no removes, no map growth: every write retired exactly
	 * the snapshot it replaced. */
	assert_int_equal(st.retired, st.writes);
	assert_true(st.writes <= (uint64_t)threads * (uint64_t)n);
	assert_true(st.freed > 0);
	assert_true(after.freed >= st.retired - PENDING_BOUND_DRAINED);
	free(m);
	free(c);
	free(applied);
	fixture_finish(&f);
	return st;
}

static void
test_pending_bounded(void **state)
{
	long n = scaled(1000000);
	uint64_t drained = 0;
	tally_stats st = TALLY_STATS_INIT;
	(void)state;
	st = pending_run(1, n, &drained);
	assert_true(st.peak_pending <= PENDING_BOUND_ALONE);
	assert_true(st.pending <= PENDING_BOUND_ALONE);
	assert_true(drained <= PENDING_BOUND_DRAINED);

	st = pending_run(2, n, &drained);
	assert_true(st.peak_pending <= PENDING_BOUND_PAIR);
	assert_true(drained <= PENDING_BOUND_DRAINED);
}

/* ------------------------------------------------------------------------ */

static void
stress_setup(void)
{
	const char *env = getenv("TALLY_STRESS_SCALE");
	const char *seed = getenv("TALLY_STRESS_SEED");
	const char *filter = getenv("TALLY_STRESS_FILTER");

#if defined(TALLY_TSAN)
	g_scale = 0.5;
#endif
	if (env != NULL && *env != '\0') {
		double d = strtod(env, NULL);

		if (d > 0.0)
			g_scale = d;
	}
	if (seed != NULL && *seed != '\0')
		g_seed = strtoull(seed, NULL, 0);
	if (g_seed == 0)
		g_seed = 1;
	if (filter != NULL && *filter != '\0')
		cmocka_set_test_filter(filter);
	keys_init();
	print_message("stress: scale %g, seed %#" PRIx64 "\n", g_scale, g_seed);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_budget_256x50),
		cmocka_unit_test(test_seed_ratelimit_256x50),
		cmocka_unit_test(test_seed_reset_128_one_wins),
		cmocka_unit_test(test_sweep_races_bumps),
		cmocka_unit_test(test_sweep_rolled_counts_windows),
		cmocka_unit_test(test_ratelimit_reset_due_only),
		cmocka_unit_test(test_ratelimit_reset_due_only_racing_bumps),
		cmocka_unit_test(test_upsert_races_bumps),
		cmocka_unit_test(test_upsert_races_bumps_with_rolls),
		cmocka_unit_test(test_calendar_month_boundary),
		cmocka_unit_test(test_remove_races_bumps_and_gets),
		cmocka_unit_test(test_conservation_stress),
		cmocka_unit_test(test_conservation_stress_coarse_clock),
		cmocka_unit_test(test_thread_churn),
		cmocka_unit_test(test_pending_bounded),
		cmocka_unit_test(test_pending_bounded_in_turns),
	};

	stress_setup();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
