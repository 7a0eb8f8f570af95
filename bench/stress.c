/*
 * tally-stress: plays a gateway under heavy load and proves that nothing is
 * lost.
 *
 * Worker threads act as request hooks on K budgets and K rate limits,
 * zipf-skewed so a few keys are hot: check, try_consume and bump with random
 * costs. At the same time a sweeper rolls windows and an admin thread
 * upserts configs (limits and periods), resets with observed versions, and
 * removes and re-creates keys. The clock is a fast fake clock (one real
 * second is one simulated hour by default, starting at 2026-01-31T12:00Z so
 * the run crosses a month boundary) so thousands of windows roll; its coarse
 * twin (the same time to a quarter second) is the store's coarse clock, so
 * the calls take the production clock path.
 *
 * Every thread keeps a ledger of what the library reported as applied, by
 * window: (key, counter, incarnation, window_start). The library reports
 * every closed window exactly once (roll listener: inline rolls, sweeps,
 * resets) and remove returns the last snapshot. For every window, the
 * amounts applied must equal the usage the window held when it closed, or
 * holds at the end. Windows are checked as soon as they are final: every
 * two seconds all threads park between calls, and the windows that no call
 * can change any more (an older incarnation of the key, or a window before
 * the key's current one: windows never move back) are checked and dropped,
 * so the ledgers stay small however long the run. Also checked at every
 * call: an admitted try_consume
 * never leaves usage above max in the snapshot it installed, and every
 * LIMITED is justified by the snapshot it was decided on.
 *
 * Windows are told apart by the record's incarnation (views and roll events
 * carry it: a key removed and created again is a new incarnation).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tally.h"

#define NS_PER_SEC INT64_C(1000000000)

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

static struct {
	double duration;
	int threads;
	int keys;
	uint64_t seed;
	bool json;
	bool real_clock;
	double speed; /* simulated seconds per real second */
	bool progress;
} opt = {20.0, 0, 10000, 1, false, false, 3600.0, false};

/* ------------------------------------------------------------------------ */
/* Clock                                                                    */
/* ------------------------------------------------------------------------ */

static int64_t mono_start;
static int64_t sim_start; /* 2026-01-31T12:00:00Z: crosses Feb 1 at 12 s */

static int64_t
mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

static int64_t
fast_clock(void *ctx)
{
	(void)ctx;
	return sim_start +
	       (int64_t)((double)(mono_now() - mono_start) * opt.speed);
}

/* The fake clock's coarse twin, as a store on the default clock has one:
 * the fake time rounded down to a quarter of a simulated second, so it
 * lags by less than TALLY_COARSE_MARGIN_NS, and check, bump and
 * try_consume take the production path (coarse first, precise near a
 * window's end). */
static int64_t
fast_coarse_clock(void *ctx)
{
	int64_t t = fast_clock(ctx), q = NS_PER_SEC / 4;

	return t - (t % q + q) % q;
}

/* ------------------------------------------------------------------------ */
/* Random numbers and zipf                                                  */
/* ------------------------------------------------------------------------ */

static inline uint64_t
rng_next(uint64_t *s)
{
	/* splitmix64 */
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t *zipf_cdf; /* cumulative weights scaled to 2^63 */

static void
zipf_init(int n, double s)
{
	double total = 0, acc = 0;

	zipf_cdf = malloc(sizeof *zipf_cdf * (size_t)n);
	if (zipf_cdf == NULL)
		abort();
	for (int i = 0; i < n; i++)
		total += 1.0 / pow(i + 1, s);
	for (int i = 0; i < n; i++) {
		acc += 1.0 / pow(i + 1, s);
		zipf_cdf[i] = (uint64_t)(acc / total * 9223372036854775807.0);
	}
	zipf_cdf[n - 1] = UINT64_MAX;
}

static int
zipf_pick(uint64_t *rng)
{
	uint64_t u = rng_next(rng) >> 1;
	int lo = 0, hi = opt.keys - 1;

	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;

		if (zipf_cdf[mid] >= u)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* ------------------------------------------------------------------------ */
/* Ledger: sums by window                                                   */
/* ------------------------------------------------------------------------ */

struct wkey {
	uint32_t id;     /* key index */
	uint8_t kind;    /* tally_kind */
	uint8_t counter; /* TALLY_COUNTER_* */
	uint64_t incarn; /* the record's incarnation */
	int64_t wstart;  /* window_start */
};

struct wslot {
	struct wkey k;
	bool used;
	int64_t applied;
	int64_t closed;
	uint32_t closings;
};

struct ledger {
	struct wslot *slot;
	size_t cap, n;
};

static uint64_t
wkey_hash(const struct wkey *k)
{
	uint64_t h = (uint64_t)k->id * 0x9e3779b97f4a7c15ull;

	h ^= ((uint64_t)k->kind << 8 | k->counter) * 0xc2b2ae3d27d4eb4full;
	h ^= (uint64_t)k->incarn * 0x165667b19e3779f9ull;
	h ^= (uint64_t)k->wstart;
	/* fmix64: window starts are multiples of large powers of ten, so the
	 * low bits need the full avalanche. */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

static bool
wkey_eq(const struct wkey *a, const struct wkey *b)
{
	return a->id == b->id && a->kind == b->kind &&
	       a->counter == b->counter && a->incarn == b->incarn &&
	       a->wstart == b->wstart;
}

static struct wslot *ledger_slot(struct ledger *l, const struct wkey *k);

static void
ledger_grow(struct ledger *l)
{
	struct wslot *old = l->slot;
	size_t old_cap = l->cap;

	l->cap = old_cap ? old_cap * 2 : 65536;
	l->slot = calloc(l->cap, sizeof *l->slot);
	if (l->slot == NULL)
		abort();
	l->n = 0;
	for (size_t i = 0; i < old_cap; i++) {
		if (old[i].used) {
			struct wslot *s = ledger_slot(l, &old[i].k);

			s->applied = old[i].applied;
			s->closed = old[i].closed;
			s->closings = old[i].closings;
		}
	}
	free(old);
}

static struct wslot *
ledger_slot(struct ledger *l, const struct wkey *k)
{
	size_t i;

	if ((l->n + 1) * 2 > l->cap)
		ledger_grow(l);
	for (i = wkey_hash(k) & (l->cap - 1);; i = (i + 1) & (l->cap - 1)) {
		struct wslot *s = &l->slot[i];

		if (!s->used) {
			s->used = true;
			s->k = *k;
			l->n++;
			return s;
		}
		if (wkey_eq(&s->k, k))
			return s;
	}
}

static void
ledger_add(struct ledger *l, uint32_t id, unsigned kind, unsigned counter,
	   uint64_t incarnation, int64_t wstart, int64_t applied,
	   int64_t closed)
{
	struct wkey k;
	struct wslot *s;

	memset(&k, 0, sizeof k);
	k.id = id;
	k.kind = (uint8_t)kind;
	k.counter = (uint8_t)counter;
	k.incarn = incarnation;
	k.wstart = wstart;
	s = ledger_slot(l, &k);
	s->applied += applied;
	s->closed += closed;
	if (closed != 0 || applied == 0)
		s->closings++;
}

static void
ledger_free(struct ledger *l)
{
	free(l->slot);
	memset(l, 0, sizeof *l);
}

/* Adds every window of src into dst, and empties src. */
static void
ledger_move(struct ledger *dst, struct ledger *src)
{
	for (size_t j = 0; j < src->cap; j++) {
		struct wslot *s = &src->slot[j];
		struct wslot *d;

		if (!s->used)
			continue;
		d = ledger_slot(dst, &s->k);
		d->applied += s->applied;
		d->closed += s->closed;
		d->closings += s->closings;
	}
	ledger_free(src);
}

/* The conservation check of finished windows. */
struct verdict {
	long windows;
	long mismatches;
	int64_t applied;
	int64_t closed;
};

static void
check_window(struct verdict *v, const struct wslot *s)
{
	v->windows++;
	v->applied += s->applied;
	v->closed += s->closed;
	if (s->applied != s->closed && v->mismatches++ < 20)
		fprintf(stderr,
			"CONSERVATION: %s %d counter %u incarnation %" PRIu64
			" window "
			"%" PRId64 ": applied %" PRId64 ", window held %" PRId64
			"\n",
			s->k.kind == TALLY_KIND_BUDGET ? "budget" : "rate",
			(int)s->k.id, s->k.counter, s->k.incarn, s->k.wstart,
			s->applied, s->closed);
}

/* ------------------------------------------------------------------------ */
/* Shared state                                                             */
/* ------------------------------------------------------------------------ */

enum op_type {
	OP_CHECK,
	OP_CHECK_LIMITED,
	OP_TRY_OK,
	OP_TRY_LIMITED,
	OP_BUMP,
	OP_ENOENT,
	OP_UPSERT,
	OP_RESET_OK,
	OP_RESET_CONFLICT,
	OP_REMOVE,
	OP_SWEEP,
	OP_ROLL_HEARD,
	OP__COUNT
};

static const char *op_name[OP__COUNT] = {
	"check ok",    "check limited", "try_consume ok",
	"try limited", "bump",          "enoent (removed key)",
	"upsert",      "reset ok",      "reset conflict",
	"remove",      "sweep",         "rolls heard"};

struct violation_log {
	pthread_mutex_t lock;
	long count;
};

static struct violation_log violations = {PTHREAD_MUTEX_INITIALIZER, 0};

static void violation(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static void
violation(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&violations.lock);
	if (violations.count++ < 20) {
		fprintf(stderr, "VIOLATION: ");
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fputc('\n', stderr);
	}
	pthread_mutex_unlock(&violations.lock);
}

/* The open window a thread last applied to, per key and counter: most
 * consecutive applies hit the same window, so the ledger sees one entry per
 * window, not per call. */
struct wcache {
	uint64_t incarn;
	int64_t wstart;
	int64_t sum;
	bool used;
};

struct thread_ctx {
	pthread_t tid;
	struct wcache *cache; /* 3 per key: budget, tokens, requests */
	int index;
	uint64_t rng;
	struct ledger ledger;
	uint64_t ops[OP__COUNT];
	uint64_t total_ops; /* atomic: progress */
	int errors;
};

static tally_store *store;
static volatile int stop_flag;

/*
 * Checkpoints keep the ledgers small: every CHECKPOINT_S seconds the main
 * thread asks every other thread to park between two calls, checks the
 * windows that can no longer change, drops them, and lets the threads go.
 */
#define CHECKPOINT_S 2.0
static int pause_req; /* atomic: main asks the threads to park */
static int parked;    /* atomic: threads parked */

static void
park_if_asked(void)
{
	struct timespec nap = {0, 100000}; /* 0.1 ms */

	if (!__atomic_load_n(&pause_req, __ATOMIC_ACQUIRE))
		return;
	/* Release: the ledger writes before this are the main thread's. */
	__atomic_add_fetch(&parked, 1, __ATOMIC_ACQ_REL);
	while (__atomic_load_n(&pause_req, __ATOMIC_ACQUIRE))
		nanosleep(&nap, NULL);
	__atomic_sub_fetch(&parked, 1, __ATOMIC_ACQ_REL);
}
static _Thread_local struct thread_ctx *self;

#define KEY_SIZE 40
static char *key_names; /* 2 * keys names of KEY_SIZE bytes */

static void
key_names_init(void)
{
	key_names = malloc((size_t)opt.keys * 2 * KEY_SIZE);
	if (key_names == NULL)
		abort();
	for (int id = 0; id < opt.keys; id++)
		for (int k = 0; k < 2; k++)
			snprintf(key_names + ((size_t)id * 2 + (size_t)k) *
						     KEY_SIZE,
				 KEY_SIZE, "%s/tenant-%06d/model-gpt",
				 k == 0 ? "budget" : "rate", id);
}

/* The key of a record: 36 bytes, like a typical gateway key. */
static const char *
key_of(unsigned kind, int id)
{
	return key_names +
	       ((size_t)id * 2 + (kind == TALLY_KIND_BUDGET ? 0u : 1u)) *
		       KEY_SIZE;
}

static int
key_id(const char *key)
{
	const char *p = strchr(key, '-');

	return p != NULL ? atoi(p + 1) : -1;
}

static const unsigned slot_counter[3] = {
	TALLY_COUNTER_BUDGET, TALLY_COUNTER_TOKENS, TALLY_COUNTER_REQUESTS};

static void
cache_flush(struct thread_ctx *t, int id, int slot)
{
	struct wcache *c = &t->cache[(size_t)id * 3 + (size_t)slot];

	if (c->used)
		ledger_add(&t->ledger, (uint32_t)id,
			   slot == 0 ? TALLY_KIND_BUDGET : TALLY_KIND_RATELIMIT,
			   slot_counter[slot], c->incarn, c->wstart, c->sum, 0);
	c->used = false;
}

/* Record `amount` applied to a window (slot 0 budget, 1 tokens, 2
 * requests). */
static void
applied(struct thread_ctx *t, int id, int slot, uint64_t incarnation,
	int64_t wstart, int64_t amount)
{
	struct wcache *c = &t->cache[(size_t)id * 3 + (size_t)slot];

	if (c->used && c->incarn == incarnation && c->wstart == wstart) {
		c->sum += amount;
		return;
	}
	cache_flush(t, id, slot);
	c->used = true;
	c->incarn = incarnation;
	c->wstart = wstart;
	c->sum = amount;
}

/* The roll listener: every closed window, from any thread. */
static void
on_roll(const tally_roll *r, void *ctx)
{
	int id = key_id(r->key);

	(void)ctx;
	if (self == NULL || id < 0) {
		violation("roll reported on an unknown thread or key %s",
			  r->key);
		return;
	}
	ledger_add(&self->ledger, (uint32_t)id, r->kind, r->counter,
		   r->incarnation, r->old_window_start, 0, r->usage_before);
	self->ops[OP_ROLL_HEARD]++;
}

/* ------------------------------------------------------------------------ */
/* Configs                                                                  */
/* ------------------------------------------------------------------------ */

static const char *fake_periods[] = {"1m", "5m", "1h", "6h",
				     "1d", "1w", "1M", "90s"};
static const char *real_periods[] = {"1s", "2s", "500ms", "5s", "10s"};

static tally_period
pick_period(uint64_t *rng)
{
	tally_period p;
	const char *text;

	if (opt.real_clock)
		text = real_periods[rng_next(rng) % 5];
	else
		text = fake_periods[rng_next(rng) % 8];
	if (tally_period_parse(text, &p) != TALLY_OK)
		abort();
	return p;
}

static void
budget_config(tally_budget_config *c, uint64_t *rng)
{
	tally_budget_config d = TALLY_BUDGET_CONFIG_INIT;

	*c = d;
	c->max_limit = (int64_t)(rng_next(rng) % 5000000);
	c->period = pick_period(rng);
	c->calendar_aligned = rng_next(rng) % 2 == 0;
	c->utc_offset_minutes = (int32_t)(rng_next(rng) % 3) * 330 - 330;
}

static void
ratelimit_config(tally_ratelimit_config *c, uint64_t *rng)
{
	memset(c, 0, sizeof *c);
	c->size = sizeof *c;
	c->anchor = TALLY_ANCHOR_DEFAULT;
	c->tokens.has_max = rng_next(rng) % 8 != 0;
	c->tokens.max = (int64_t)(rng_next(rng) % 2000000);
	c->tokens.period = pick_period(rng);
	c->requests.has_max = rng_next(rng) % 8 != 0;
	c->requests.max = (int64_t)(rng_next(rng) % 5000);
	c->requests.period = pick_period(rng);
	c->calendar_aligned = rng_next(rng) % 2 == 0;
	c->utc_offset_minutes = (int32_t)(rng_next(rng) % 3) * 60 - 60;
}

/* ------------------------------------------------------------------------ */
/* Workers                                                                  */
/* ------------------------------------------------------------------------ */

static void
budget_request(struct thread_ctx *t, int id)
{
	const char *key = key_of(TALLY_KIND_BUDGET, id);
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	int64_t cost = (int64_t)(rng_next(&t->rng) % 20000) + 1;
	unsigned what = (unsigned)(rng_next(&t->rng) % 10);
	int rc;

	if (what < 4) {
		rc = tally_budget_check(store, key, &v);
		if (rc == TALLY_OK && v.usage >= v.config.max_limit)
			violation("check OK on %s with usage %" PRId64
				  " >= max %" PRId64,
				  key, v.usage, v.config.max_limit);
		if (rc == TALLY_LIMITED && v.usage < v.config.max_limit)
			violation("check LIMITED on %s with usage %" PRId64
				  " < max %" PRId64,
				  key, v.usage, v.config.max_limit);
		t->ops[rc == TALLY_OK        ? OP_CHECK
		       : rc == TALLY_LIMITED ? OP_CHECK_LIMITED
					     : OP_ENOENT]++;
	} else if (what < 7) {
		rc = tally_budget_try_consume(store, key, cost, &v);
		if (rc == TALLY_OK) {
			if (v.usage > v.config.max_limit)
				violation(
					"try_consume on %s left usage %" PRId64
					" > max %" PRId64,
					key, v.usage, v.config.max_limit);
			applied(t, id, 0, v.incarnation, v.window_start, cost);
			t->ops[OP_TRY_OK]++;
		} else if (rc == TALLY_LIMITED) {
			if (cost <= v.config.max_limit - v.usage)
				violation(
					"try_consume LIMITED on %s: usage %" PRId64
					" + %" PRId64 " <= max %" PRId64,
					key, v.usage, cost, v.config.max_limit);
			t->ops[OP_TRY_LIMITED]++;
		} else {
			t->ops[OP_ENOENT]++;
		}
	} else {
		rc = tally_budget_bump(store, key, cost, &v);
		if (rc == TALLY_OK) {
			applied(t, id, 0, v.incarnation, v.window_start, cost);
			t->ops[OP_BUMP]++;
		} else {
			t->ops[OP_ENOENT]++;
		}
	}
	if (rc < 0 && rc != TALLY_ENOENT) {
		violation("budget call on %s: %s", key, tally_strerror(rc));
		t->errors++;
	}
}

static void
rate_request(struct thread_ctx *t, int id)
{
	const char *key = key_of(TALLY_KIND_RATELIMIT, id);
	tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
	int64_t tokens = (int64_t)(rng_next(&t->rng) % 4000) + 1;
	unsigned what = (unsigned)(rng_next(&t->rng) % 10), mask = 0;
	int rc;

	if (what < 4) {
		rc = tally_ratelimit_check(store, key, &mask, &v);
		t->ops[rc == TALLY_OK        ? OP_CHECK
		       : rc == TALLY_LIMITED ? OP_CHECK_LIMITED
					     : OP_ENOENT]++;
	} else if (what < 7) {
		rc = tally_ratelimit_try_consume(store, key, tokens, 1, &mask,
						 &v);
		if (rc == TALLY_OK) {
			if ((v.config.tokens.has_max &&
			     v.tokens.usage > v.config.tokens.max) ||
			    (v.config.requests.has_max &&
			     v.requests.usage > v.config.requests.max))
				violation("try_consume on %s left usage above "
					  "max",
					  key);
			applied(t, id, 1, v.incarnation, v.tokens.window_start,
				tokens);
			applied(t, id, 2, v.incarnation,
				v.requests.window_start, 1);
			t->ops[OP_TRY_OK]++;
		} else if (rc == TALLY_LIMITED) {
			bool justified =
				((mask & TALLY_COUNTER_TOKENS) &&
				 v.config.tokens.has_max &&
				 tokens > v.config.tokens.max -
						  v.tokens.usage) ||
				((mask & TALLY_COUNTER_REQUESTS) &&
				 v.config.requests.has_max &&
				 1 > v.config.requests.max - v.requests.usage);
			if (!justified || mask == 0)
				violation("rate try_consume LIMITED on %s "
					  "without cause",
					  key);
			t->ops[OP_TRY_LIMITED]++;
		} else {
			t->ops[OP_ENOENT]++;
		}
	} else {
		rc = tally_ratelimit_bump(store, key, tokens, 1, &v);
		if (rc == TALLY_OK) {
			applied(t, id, 1, v.incarnation, v.tokens.window_start,
				tokens);
			applied(t, id, 2, v.incarnation,
				v.requests.window_start, 1);
			t->ops[OP_BUMP]++;
		} else {
			t->ops[OP_ENOENT]++;
		}
	}
	if (rc < 0 && rc != TALLY_ENOENT) {
		violation("rate call on %s: %s", key, tally_strerror(rc));
		t->errors++;
	}
}

static void *
worker_main(void *arg)
{
	struct thread_ctx *t = arg;

	self = t;
	while (!__atomic_load_n(&stop_flag, __ATOMIC_RELAXED)) {
		for (int i = 0; i < 64; i++) {
			int id = zipf_pick(&t->rng);

			if (rng_next(&t->rng) & 1)
				budget_request(t, id);
			else
				rate_request(t, id);
		}
		__atomic_store_n(&t->total_ops, t->total_ops + 64,
				 __ATOMIC_RELAXED);
		park_if_asked();
	}
	return NULL;
}

static void *
sweeper_main(void *arg)
{
	struct thread_ctx *t = arg;
	struct timespec pause = {0, 2000000}; /* 2 ms */

	self = t;
	while (!__atomic_load_n(&stop_flag, __ATOMIC_RELAXED)) {
		size_t rolled = 0;
		int rc = tally_sweep(store, NULL, NULL, &rolled);

		if (rc != TALLY_OK) {
			violation("sweep: %s", tally_strerror(rc));
			t->errors++;
		}
		t->ops[OP_SWEEP]++;
		nanosleep(&pause, NULL);
		park_if_asked();
	}
	return NULL;
}

static void
admin_budget(struct thread_ctx *t, int id)
{
	const char *key = key_of(TALLY_KIND_BUDGET, id);
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
	unsigned what = (unsigned)(rng_next(&t->rng) % 10);
	int rc;

	if (what < 5) {
		budget_config(&c, &t->rng);
		rc = tally_budget_upsert(store, key, &c, NULL);
		t->ops[OP_UPSERT]++;
	} else if (what < 8) {
		rc = tally_budget_get(store, key, &v);
		if (rc == TALLY_OK) {
			rc = tally_budget_reset(store, key, v.version, NULL);
			t->ops[rc == TALLY_OK ? OP_RESET_OK
					      : OP_RESET_CONFLICT]++;
		}
	} else {
		rc = tally_budget_remove(store, key, &v);
		if (rc == TALLY_OK) {
			ledger_add(&t->ledger, (uint32_t)id, TALLY_KIND_BUDGET,
				   TALLY_COUNTER_BUDGET, v.incarnation,
				   v.window_start, 0, v.usage);
			t->ops[OP_REMOVE]++;
			budget_config(&c, &t->rng);
			rc = tally_budget_upsert(store, key, &c, NULL);
		}
	}
	if (rc < 0 && rc != TALLY_ENOENT) {
		violation("admin budget call on %s: %s", key,
			  tally_strerror(rc));
		t->errors++;
	}
}

static void
admin_rate(struct thread_ctx *t, int id)
{
	const char *key = key_of(TALLY_KIND_RATELIMIT, id);
	tally_ratelimit_config c = TALLY_RATELIMIT_CONFIG_INIT;
	tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
	unsigned what = (unsigned)(rng_next(&t->rng) % 10), reset = 0;
	int rc;

	if (what < 5) {
		ratelimit_config(&c, &t->rng);
		rc = tally_ratelimit_upsert(store, key, &c, NULL);
		t->ops[OP_UPSERT]++;
	} else if (what < 8) {
		rc = tally_ratelimit_get(store, key, &v);
		if (rc == TALLY_OK) {
			unsigned mask = (unsigned)(rng_next(&t->rng) % 3) + 1;

			if (rng_next(&t->rng) & 1)
				mask |= TALLY_RESET_DUE_ONLY;
			rc = tally_ratelimit_reset(store, key, v.version, mask,
						   &reset, NULL);
			t->ops[rc == TALLY_OK ? OP_RESET_OK
					      : OP_RESET_CONFLICT]++;
		}
	} else {
		rc = tally_ratelimit_remove(store, key, &v);
		if (rc == TALLY_OK) {
			ledger_add(&t->ledger, (uint32_t)id,
				   TALLY_KIND_RATELIMIT, TALLY_COUNTER_TOKENS,
				   v.incarnation, v.tokens.window_start, 0,
				   v.tokens.usage);
			ledger_add(&t->ledger, (uint32_t)id,
				   TALLY_KIND_RATELIMIT, TALLY_COUNTER_REQUESTS,
				   v.incarnation, v.requests.window_start, 0,
				   v.requests.usage);
			t->ops[OP_REMOVE]++;
			ratelimit_config(&c, &t->rng);
			rc = tally_ratelimit_upsert(store, key, &c, NULL);
		}
	}
	if (rc < 0 && rc != TALLY_ENOENT) {
		violation("admin rate call on %s: %s", key, tally_strerror(rc));
		t->errors++;
	}
}

static void *
admin_main(void *arg)
{
	struct thread_ctx *t = arg;
	struct timespec pause = {0, 200000}; /* 0.2 ms */

	self = t;
	while (!__atomic_load_n(&stop_flag, __ATOMIC_RELAXED)) {
		/* Admin traffic hits hot keys too: that is where it races. */
		int id =
			rng_next(&t->rng) % 4 == 0
				? (int)(rng_next(&t->rng) % 16)
				: (int)(rng_next(&t->rng) % (uint64_t)opt.keys);

		if (rng_next(&t->rng) & 1)
			admin_budget(t, id);
		else
			admin_rate(t, id);
		nanosleep(&pause, NULL);
		park_if_asked();
	}
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Checking windows                                                         */
/* ------------------------------------------------------------------------ */

/* Moves what every thread recorded (the workers' open-window caches first)
 * into total. The threads are parked or joined. */
static void
collect(struct thread_ctx *w, struct thread_ctx *const *others, int n_others,
	struct ledger *total, uint64_t *ops)
{
	for (int i = 0; i < opt.threads + n_others; i++) {
		struct thread_ctx *t =
			i < opt.threads ? &w[i] : others[i - opt.threads];

		if (i < opt.threads)
			for (int id = 0; id < opt.keys; id++)
				for (int slot = 0; slot < 3; slot++)
					cache_flush(t, id, slot);
		ledger_move(total, &t->ledger);
		if (ops != NULL)
			for (int k = 0; k < OP__COUNT; k++)
				ops[k] += t->ops[k];
	}
}

/* A key's record as it is now: incarnation and window of each counter
 * (slot 0 budget, 1 tokens, 2 requests). */
struct current {
	bool live[2]; /* budget, rate limit */
	uint64_t incarnation[2];
	int64_t wstart[3];
	int64_t usage[3];
};

static void
current_of(int id, struct current *c)
{
	tally_budget_view bv = TALLY_BUDGET_VIEW_INIT;
	tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
	memset(c, 0, sizeof *c);
	if (tally_budget_get(store, key_of(TALLY_KIND_BUDGET, id), &bv) ==
	    TALLY_OK) {
		c->live[0] = true;
		c->incarnation[0] = bv.incarnation;
		c->wstart[0] = bv.window_start;
		c->usage[0] = bv.usage;
	}
	if (tally_ratelimit_get(store, key_of(TALLY_KIND_RATELIMIT, id), &rv) ==
	    TALLY_OK) {
		c->live[1] = true;
		c->incarnation[1] = rv.incarnation;
		c->wstart[1] = rv.tokens.window_start;
		c->usage[1] = rv.tokens.usage;
		c->wstart[2] = rv.requests.window_start;
		c->usage[2] = rv.requests.usage;
	}
}

/*
 * Checks, and drops from total, every window that no call can change any
 * more: one of an older incarnation of its key (or of a removed key), or
 * one before its counter's current window (windows never move back). With
 * all, every window: the end of the run, once the current usages have been
 * added as closings. The threads are parked or joined.
 */
static void
settle(struct ledger *total, struct verdict *v, bool all)
{
	struct ledger open = {0};
	struct current *cur = NULL;

	if (!all) {
		cur = calloc((size_t)opt.keys, sizeof *cur);
		if (cur == NULL)
			abort();
		for (int id = 0; id < opt.keys; id++)
			current_of(id, &cur[id]);
	}
	for (size_t j = 0; j < total->cap; j++) {
		struct wslot *s = &total->slot[j];

		if (!s->used)
			continue;
		if (!all) {
			const struct current *c = &cur[s->k.id];
			int kind = s->k.kind == TALLY_KIND_BUDGET ? 0 : 1;
			int slot = kind == 0                              ? 0
				   : s->k.counter == TALLY_COUNTER_TOKENS ? 1
									  : 2;

			if (c->live[kind] &&
			    c->incarnation[kind] == s->k.incarn &&
			    s->k.wstart >= c->wstart[slot]) {
				struct wslot *d = ledger_slot(&open, &s->k);

				d->applied = s->applied;
				d->closed = s->closed;
				d->closings = s->closings;
				continue;
			}
		}
		check_window(v, s);
	}
	free(cur);
	ledger_free(total);
	*total = open;
}

/* ------------------------------------------------------------------------ */
/* Reporting                                                                */
/* ------------------------------------------------------------------------ */

static long
rss_kib(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	size_t n = strlen(field);

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, field, n) == 0)
			v = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return v;
}

static void
usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [--duration S] [--threads N] [--keys K] [--seed N]\n"
		"          [--real-clock] [--speed X] [--json] [--progress]\n"
		"  --duration S   seconds to run (default 20)\n"
		"  --threads N    request threads (default: CPUs, at least 2)\n"
		"  --keys K       budgets and rate limits each (default 10000)\n"
		"  --seed N       random seed (default 1)\n"
		"  --real-clock   real time and short periods (1s..10s)\n"
		"  --speed X      fake clock: simulated s per real s (3600)\n"
		"  --json         one JSON object on stdout\n"
		"  --progress     live progress line even when not a tty\n",
		argv0);
}

static void
parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"duration", required_argument, NULL, 'd'},
		{"threads", required_argument, NULL, 't'},
		{"keys", required_argument, NULL, 'k'},
		{"seed", required_argument, NULL, 's'},
		{"speed", required_argument, NULL, 'x'},
		{"real-clock", no_argument, NULL, 'r'},
		{"json", no_argument, NULL, 'j'},
		{"progress", no_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	int c;

	while ((c = getopt_long(argc, argv, "d:t:k:s:x:rjph", longopts,
				NULL)) != -1) {
		switch (c) {
		case 'd':
			opt.duration = atof(optarg);
			break;
		case 't':
			opt.threads = atoi(optarg);
			break;
		case 'k':
			opt.keys = atoi(optarg);
			break;
		case 's':
			opt.seed = strtoull(optarg, NULL, 10);
			break;
		case 'x':
			opt.speed = atof(optarg);
			break;
		case 'r':
			opt.real_clock = true;
			break;
		case 'j':
			opt.json = true;
			break;
		case 'p':
			opt.progress = true;
			break;
		case 'h':
			usage(argv[0]);
			exit(0);
		default:
			usage(argv[0]);
			exit(2);
		}
	}
	if (opt.duration <= 0 || opt.keys < 16 || opt.keys > 10000000 ||
	    opt.threads < 0 || opt.threads > 1024 || opt.speed <= 0) {
		usage(argv[0]);
		exit(2);
	}
	if (opt.threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		opt.threads = n < 2 ? 2 : (int)n;
	}
	if (!opt.json && isatty(STDERR_FILENO))
		opt.progress = true;
}

/* ------------------------------------------------------------------------ */
/* Main                                                                     */
/* ------------------------------------------------------------------------ */

int
main(int argc, char **argv)
{
	tally_store_options o = TALLY_STORE_OPTIONS_INIT;
	struct thread_ctx *w, sweeper, admin, mainctx;
	struct thread_ctx *others[3] = {&sweeper, &admin, &mainctx};
	struct ledger total = {0};
	struct verdict v = {0};
	uint64_t ops[OP__COUNT] = {0}, request_ops = 0, checkpoints = 0;
	double next_checkpoint = CHECKPOINT_S;
	tally_stats st = TALLY_STATS_INIT;
	double elapsed;
	int64_t t0, t1;
	uint64_t rng;
	int rc;

	parse_args(argc, argv);
	rng = opt.seed;
	zipf_init(opt.keys, 1.0);
	key_names_init();
	mono_start = mono_now();
	sim_start = INT64_C(1769860800) * NS_PER_SEC; /* 2026-01-31T12:00Z */

	if (!opt.real_clock) {
		o.clock = fast_clock;
		o.coarse_clock = fast_coarse_clock;
	}
	o.expected_records = (size_t)opt.keys * 2;
	o.on_roll = on_roll;
	if ((rc = tally_store_create(&store, &o)) != TALLY_OK) {
		fprintf(stderr, "tally_store_create: %s\n", tally_strerror(rc));
		return 1;
	}

	memset(&mainctx, 0, sizeof mainctx);
	self = &mainctx;
	for (int id = 0; id < opt.keys; id++) {
		tally_budget_config bc = TALLY_BUDGET_CONFIG_INIT;
		tally_ratelimit_config rc2 = TALLY_RATELIMIT_CONFIG_INIT;
		budget_config(&bc, &rng);
		if (tally_budget_upsert(store, key_of(TALLY_KIND_BUDGET, id),
					&bc, NULL) != TALLY_CREATED)
			abort();
		ratelimit_config(&rc2, &rng);
		if (tally_ratelimit_upsert(store,
					   key_of(TALLY_KIND_RATELIMIT, id),
					   &rc2, NULL) != TALLY_CREATED)
			abort();
	}

	w = calloc((size_t)opt.threads, sizeof *w);
	if (w == NULL)
		abort();
	for (int i = 0; i < opt.threads; i++) {
		w[i].cache = calloc((size_t)opt.keys * 3, sizeof *w[i].cache);
		if (w[i].cache == NULL)
			abort();
	}
	memset(&sweeper, 0, sizeof sweeper);
	memset(&admin, 0, sizeof admin);
	sweeper.rng = rng_next(&rng);
	admin.rng = rng_next(&rng);
	t0 = mono_now();
	for (int i = 0; i < opt.threads; i++) {
		w[i].index = i;
		w[i].rng = rng_next(&rng);
		pthread_create(&w[i].tid, NULL, worker_main, &w[i]);
	}
	pthread_create(&sweeper.tid, NULL, sweeper_main, &sweeper);
	pthread_create(&admin.tid, NULL, admin_main, &admin);

	for (;;) {
		struct timespec tick = {0, 250000000};
		double secs = (double)(mono_now() - t0) / 1e9;
		uint64_t done = 0;

		if (secs >= opt.duration)
			break;
		if (secs >= next_checkpoint) {
			struct timespec nap = {0, 100000};

			__atomic_store_n(&pause_req, 1, __ATOMIC_RELEASE);
			while (__atomic_load_n(&parked, __ATOMIC_ACQUIRE) !=
			       opt.threads + 2)
				nanosleep(&nap, NULL);
			collect(w, others, 2, &total, NULL);
			settle(&total, &v, false);
			checkpoints++;
			__atomic_store_n(&pause_req, 0, __ATOMIC_RELEASE);
			next_checkpoint = secs + CHECKPOINT_S;
		}
		nanosleep(&tick, NULL);
		if (!opt.progress)
			continue;
		for (int i = 0; i < opt.threads; i++)
			done += __atomic_load_n(&w[i].total_ops,
						__ATOMIC_RELAXED);
		if (tally_store_stats(store, &st) == TALLY_OK)
			fprintf(stderr,
				"\r%6.1fs  %12" PRIu64 " ops  %7.2f Mops/s  "
				"%10" PRIu64
				" windows rolled  pending %6" PRIu64 "   ",
				secs, done, (double)done / secs / 1e6, st.rolls,
				st.pending);
	}
	__atomic_store_n(&stop_flag, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < opt.threads; i++)
		pthread_join(w[i].tid, NULL);
	pthread_join(sweeper.tid, NULL);
	pthread_join(admin.tid, NULL);
	t1 = mono_now();
	elapsed = (double)(t1 - t0) / 1e9;
	if (opt.progress)
		fputc('\n', stderr);

	tally_store_stats(store, &st);

	/* Merge every ledger; then close the windows that are still open. */
	collect(w, others, 3, &total, ops);
	for (int i = 0; i < opt.threads; i++)
		free(w[i].cache);
	free(w);
	for (int id = 0; id < opt.keys; id++) {
		struct current c;

		current_of(id, &c);
		for (int slot = 0; slot < 3; slot++)
			if (c.live[slot == 0 ? 0 : 1])
				ledger_add(&total, (uint32_t)id,
					   slot == 0 ? TALLY_KIND_BUDGET
						     : TALLY_KIND_RATELIMIT,
					   slot_counter[slot],
					   c.incarnation[slot == 0 ? 0 : 1],
					   c.wstart[slot], 0, c.usage[slot]);
	}
	settle(&total, &v, true);
	request_ops = ops[OP_CHECK] + ops[OP_CHECK_LIMITED] + ops[OP_TRY_OK] +
		      ops[OP_TRY_LIMITED] + ops[OP_BUMP] + ops[OP_ENOENT];

	{
		bool pass = v.mismatches == 0 && violations.count == 0 &&
			    st.rolls == ops[OP_ROLL_HEARD];
		long rss = rss_kib("VmRSS:"), hwm = rss_kib("VmHWM:");
		double mops = (double)request_ops / elapsed / 1e6;
		double retries =
			st.writes ? (double)st.cas_retries / (double)st.writes
				  : 0.0;

		if (opt.json) {
			printf("{\"verdict\":\"%s\",\"duration_s\":%.3f,"
			       "\"threads\":%d,\"keys\":%d,\"seed\":%" PRIu64
			       ",\"clock\":\"%s\",\"request_ops\":%" PRIu64
			       ",\"mops\":%.4f,\"ops\":{",
			       pass ? "PASS" : "FAIL", elapsed, opt.threads,
			       opt.keys, opt.seed,
			       opt.real_clock ? "real" : "fake", request_ops,
			       mops);
			for (int k = 0; k < OP__COUNT; k++)
				printf("%s\"%s\":%" PRIu64, k ? "," : "",
				       op_name[k], ops[k]);
			printf("},\"writes\":%" PRIu64
			       ",\"cas_retries\":%" PRIu64
			       ",\"cas_retries_per_write\":%.5f,\"rolls\":%" PRIu64
			       ",\"retired\":%" PRIu64 ",\"freed\":%" PRIu64
			       ",\"pending\":%" PRIu64
			       ",\"peak_pending\":%" PRIu64
			       ",\"thread_records\":%" PRIu64
			       ",\"windows_checked\":%ld,\"checkpoints\":%" PRIu64
			       ",\"applied\":%" PRId64
			       ",\"mismatches\":%ld,\"violations\":%ld"
			       ",\"rss_kib\":%ld,\"peak_rss_kib\":%ld}\n",
			       st.writes, st.cas_retries, retries, st.rolls,
			       st.retired, st.freed, st.pending,
			       st.peak_pending, st.threads, v.windows,
			       checkpoints, v.applied, v.mismatches,
			       violations.count, rss, hwm);
		} else {
			printf("tally-stress: %d request threads + sweeper + "
			       "admin, %d budgets + %d rate limits, %.1f s, "
			       "%s clock, seed %" PRIu64 "\n\n",
			       opt.threads, opt.keys, opt.keys, elapsed,
			       opt.real_clock ? "real" : "fast fake", opt.seed);
			printf("  %-24s %14s\n", "operation", "count");
			for (int k = 0; k < OP__COUNT; k++)
				printf("  %-24s %14" PRIu64 "\n", op_name[k],
				       ops[k]);
			printf("\n");
			printf("  %-24s %14.2f\n", "request Mops/s", mops);
			printf("  %-24s %14" PRIu64 "\n", "snapshots installed",
			       st.writes);
			printf("  %-24s %14.4f\n", "CAS retries per write",
			       retries);
			printf("  %-24s %14" PRIu64 "\n", "windows rolled",
			       st.rolls);
			printf("  %-24s %14" PRIu64 "\n", "objects retired",
			       st.retired);
			printf("  %-24s %14" PRIu64 "\n", "objects freed",
			       st.freed);
			printf("  %-24s %14" PRIu64 "\n", "pending now",
			       st.pending);
			printf("  %-24s %14" PRIu64 "\n",
			       "peak pending (thread)", st.peak_pending);
			printf("  %-24s %14" PRIu64 "\n", "thread records",
			       st.threads);
			printf("  %-24s %11ld KiB\n", "RSS", rss);
			printf("  %-24s %11ld KiB\n", "peak RSS", hwm);
			printf("  %-24s %14ld\n", "windows checked", v.windows);
			printf("  %-24s %14" PRIu64 "\n", "checkpoints",
			       checkpoints);
			printf("  %-24s %14" PRId64 "\n", "units applied",
			       v.applied);
			printf("\n%s: %ld windows, %" PRId64
			       " units applied = %" PRId64
			       " units found; %ld conservation mismatches, "
			       "%ld violations, rolls reported %" PRIu64
			       " / counted %" PRIu64 "\n",
			       pass ? "PASS" : "FAIL", v.windows, v.applied,
			       v.closed, v.mismatches, violations.count,
			       ops[OP_ROLL_HEARD], st.rolls);
		}
		tally_store_destroy(store);
		return pass ? 0 : 1;
	}
}
