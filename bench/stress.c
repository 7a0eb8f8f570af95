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
 *
 * LLM request lifecycles (--admit-share of the request calls, 1/8 by
 * default; see the admission section): tally_admit across 4 to 8 of the
 * same records, shared as a key/team/customer/model hierarchy, then
 * settle, partial charges, release, hand-off to another thread, late
 * settles and abandoned holds, under a store whose hold_ttl_max is 2
 * minutes of the fake clock. Settled, partially charged and consumed
 * units go into the same window ledgers (every one must be found in
 * exactly one window); held units have their own ledger (placed by
 * admissions; released by settles, expired by the expiry listener, or
 * left on a removed record), which must balance once the run ends, the
 * holds still in flight are settled, and the clock has passed every
 * deadline and a sweep has dropped what expired: nothing may be held by
 * then. Every decision is checked against its own reports (an admitted
 * hold never leaves used + held above a max; a refusal is justified by
 * the state its report shows), refused calls made during checkpoints,
 * with every other thread parked, must leave their records exactly as
 * they were (version included), and the store's admission counters must
 * equal what the threads counted.
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
	double admit_share; /* of the request calls: LLM request lifecycles */
} opt = {20.0, 0, 10000, 1, false, false, 3600.0, false, 0.125};

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

static int64_t clock_skip; /* atomic: added to the fake clock (the end) */

static int64_t
fast_clock(void *ctx)
{
	(void)ctx;
	return sim_start +
	       (int64_t)((double)(mono_now() - mono_start) * opt.speed) +
	       __atomic_load_n(&clock_skip, __ATOMIC_RELAXED);
}

/* The store's precise clock, whichever it is. */
static int64_t
store_now(void)
{
	struct timespec ts;

	if (!opt.real_clock)
		return fast_clock(NULL);
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
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

/* Admission figures each thread counts (see the admission section). */
enum adm_count {
	A_HOLD_OK,
	A_HOLD_LIMITED,
	A_HOLD_ENOENT,
	A_CONSUME_OK,
	A_CONSUME_LIMITED,
	A_CONSUME_ENOENT,
	A_PEEK_OK,
	A_PEEK_LIMITED,
	A_PEEK_ENOENT,
	A_PARTS_HELD,    /* records held by admitted HOLD calls */
	A_SETTLES,       /* tally_settle calls */
	A_RELEASES,      /* tally_release calls */
	A_PARTIALS,      /* tally_settle_partial calls */
	A_RESETTLES,     /* second settles of a settled handle (ESETTLED) */
	A_HANDED,        /* holds settled by another thread (mailbox) */
	A_ABANDONED,     /* holds never settled: left to expire */
	A_LATE_PARTS,    /* per record: settles of an expired hold */
	A_EARLY_LATE,    /* of those, settled before the hold's deadline */
	A_GONE_PARTS,    /* per record: settle or consume on a removed one */
	A_OVERDRAFT,     /* units charged beyond the holds */
	A_SHADOW_DENY,   /* shadow charges that would have refused */
	A_EXPIRED_HOLDS, /* expiry listener: holds */
	A_EXPIRED_UNITS, /* expiry listener: units, all counters */
	A_CONSUMED,      /* units consumed (CONSUME), all counters */
	A_SETTLED,       /* units settled or charged partially */
	A_NO_TRACE,      /* refused calls checked for no trace */
	A__COUNT
};

static const char *adm_name[A__COUNT] = {"admit hold ok",
					 "admit hold limited",
					 "admit hold enoent",
					 "admit consume ok",
					 "admit consume limited",
					 "admit consume enoent",
					 "admit peek ok",
					 "admit peek limited",
					 "admit peek enoent",
					 "records held",
					 "settles",
					 "releases",
					 "partial charges",
					 "second settles",
					 "settled elsewhere",
					 "abandoned holds",
					 "late settles",
					 "late before deadline",
					 "gone (removed)",
					 "overdraft units",
					 "shadow would deny",
					 "expired holds",
					 "expired units",
					 "units consumed",
					 "units settled",
					 "no-trace checks"};

struct flight;

struct thread_ctx {
	pthread_t tid;
	struct wcache *cache; /* 3 per key: budget, tokens, requests */
	int index;
	uint64_t rng;
	struct ledger ledger;
	uint64_t ops[OP__COUNT];
	uint64_t total_ops; /* atomic: progress */
	int errors;
	/* Admission: held units by (key, kind, counter, incarnation), with
	 * wstart 0: applied = placed by admitted holds, closed = released by
	 * settles + expired + held at removal; closings = removals. */
	struct ledger held;
	uint64_t adm[A__COUNT];
	struct flight *ring; /* holds in flight, FIFO */
	unsigned ring_head, ring_n;
	struct flight *late; /* holds to settle after their deadline */
	unsigned late_n;
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

/* The lattice of a sliding record: fixed per id, so that the admin's
 * upserts never move its windows. (An upsert that changes a sliding
 * counter's lattice moves its window start onto the new lattice, tally.h;
 * this harness's ledger keys a window by its start, and the unit tests,
 * the fuzzer and the linearizability checker cover that rule.) */
static void
sliding_lattice(tally_ratelimit_config *c, int id)
{
	static const char *const fake[] = {"1m", "5m", "1h", "90s", "1d", "1w"};
	static const char *const real[] = {"1s", "2s", "500ms", "5s"};
	unsigned k = (unsigned)id / 3;

	if (tally_period_parse(opt.real_clock ? real[k % 4] : fake[k % 6],
			       &c->tokens.period) != TALLY_OK ||
	    tally_period_parse(opt.real_clock ? real[(k / 4) % 4]
					      : fake[(k / 6) % 6],
			       &c->requests.period) != TALLY_OK)
		abort();
	c->calendar_aligned = k % 2 == 0;
	c->utc_offset_minutes = (int32_t)(k % 3) * 60 - 60;
	c->tokens_algorithm = TALLY_ALGORITHM_SLIDING;
	c->requests_algorithm = TALLY_ALGORITHM_SLIDING;
}

/* Records whose id is a multiple of 3 are sliding windows: they roll,
 * and so conserve, exactly as fixed ones do. */
static void
ratelimit_config(tally_ratelimit_config *c, uint64_t *rng, int id)
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
	if (id % 3 == 0)
		sliding_lattice(c, id);
}

/* ------------------------------------------------------------------------ */
/* Admission: LLM request lifecycles across a hierarchy of limits           */
/* ------------------------------------------------------------------------ */

/*
 * The hierarchy lives in the same records as the other calls: ids 0..7
 * are customers, 8..71 teams, 72..75 provider/model limits, the others
 * API keys. A request of key k charges, in a shuffled order, the first 4
 * to 8 of: k's budget and rate limit, its team's (8 + k % 64) budget and
 * rate limit, its customer's (team % 8) budget and rate limit, its
 * model's (72 + k % 4) rate limit and budget. Keys are drawn zipf, so
 * customers and teams are shared by many requests at once, and all of
 * these records also see check, try_consume, bump, upserts, resets and
 * removes.
 *
 * Lifecycles: admit (HOLD, sometimes CONSUME or PEEK, sometimes with a
 * shadow charge), then settle at once with an actual from 0 to 2x the
 * estimate, charge it partially first, release it, keep it in flight for
 * a while (a ring per thread), hand it to another thread (a mailbox),
 * settle it after its deadline (late), or abandon it to expiry.
 *
 * Checked: every settled, partially charged and consumed unit enters the
 * window ledgers by the window its report names (so it must be found in
 * exactly one window, as every other unit); every unit held is released by
 * a settle, expired (expiry listener) or left on a removed record, and
 * none is left at the end; every decision's post-state and refusal is
 * checked against its own report; refused calls made while every other
 * thread is parked must leave every record as it was (version included);
 * the store's admission counters must equal what the threads counted.
 */
#define H_CUSTOMERS 8
#define H_TEAMS 64
#define H_MODELS 4
#define H_FIRST_KEY (H_CUSTOMERS + H_TEAMS + H_MODELS)
#define H_MIN_KEYS 128 /* fewer keys: no admission in the mix */
#define H_MAX 8        /* limits per request */
#define RING 32
#define LATE_MAX 16
#define MAILBOX 256

/* A hold in flight, and what its settles need to know. */
struct flight {
	tally_hold h;
	int64_t settle_at; /* in flight (ring): when the response comes */
	unsigned n;
	int id[H_MAX];
	uint32_t kind[H_MAX];
	int64_t est[2]; /* budget amount; rate-limit tokens (requests: 1) */
};

static int64_t hold_ttl_max; /* ns of the store's clock */
static int64_t hold_grain;   /* ceil(hold_ttl_max / 3) */
static bool admission_on;    /* keys >= H_MIN_KEYS and a share > 0 */

static struct {
	pthread_mutex_t lock;
	struct flight *slot; /* MAILBOX */
	unsigned n;
} mailbox = {PTHREAD_MUTEX_INITIALIZER, NULL, 0};

/* Counters of a kind's record: budget [0]; rate limit [0] tokens and [1]
 * requests. The wcache slot of counter c: 0 budget, 1 tokens, 2
 * requests. */
static unsigned
n_counters(uint32_t kind)
{
	return kind == TALLY_KIND_BUDGET ? 1u : 2u;
}

static unsigned
counter_of(uint32_t kind, unsigned c)
{
	if (kind == TALLY_KIND_BUDGET)
		return TALLY_COUNTER_BUDGET;
	return c == 0 ? TALLY_COUNTER_TOKENS : TALLY_COUNTER_REQUESTS;
}

static int
wslot_of(uint32_t kind, unsigned c)
{
	return kind == TALLY_KIND_BUDGET ? 0 : 1 + (int)c;
}

/* Held units: placed by a hold, closed by a release, an expiry or a
 * removal (removed: closings + 1). */
static void
held_add(struct thread_ctx *t, int id, uint32_t kind, unsigned c,
	 uint64_t incarnation, int64_t placed, int64_t closed, bool removed)
{
	struct wkey k;
	struct wslot *s;

	memset(&k, 0, sizeof k);
	k.id = (uint32_t)id;
	k.kind = (uint8_t)kind;
	k.counter = (uint8_t)counter_of(kind, c);
	k.incarn = incarnation;
	s = ledger_slot(&t->held, &k);
	s->applied += placed;
	s->closed += closed;
	if (removed)
		s->closings++;
}

/* The expiry listener: holds dropped by any CAS, from any thread. */
static void
on_expire(const tally_expiry *ev, void *ctx)
{
	int id = key_id(ev->key);

	(void)ctx;
	if (self == NULL || id < 0) {
		violation("expiry reported on an unknown thread or key %s",
			  ev->key);
		return;
	}
	self->adm[A_EXPIRED_HOLDS] += ev->holds;
	for (unsigned c = 0; c < n_counters(ev->kind); c++) {
		held_add(self, id, ev->kind, c, ev->incarnation, 0,
			 ev->amount[c], false);
		self->adm[A_EXPIRED_UNITS] += (uint64_t)ev->amount[c];
	}
}

/* The estimate of a charge's counter c. */
static int64_t
charge_amount(const tally_charge *ch, unsigned c)
{
	if (ch->kind == TALLY_KIND_BUDGET)
		return ch->amount;
	return c == 0 ? ch->tokens : ch->requests;
}

/* Picks a request: its records and estimates, as charges (f->n of them). */
static void
pick_request(struct thread_ctx *t, struct flight *f, tally_charge *ch)
{
	int key = H_FIRST_KEY + zipf_pick(&t->rng) % (opt.keys - H_FIRST_KEY);
	int team = H_CUSTOMERS + key % H_TEAMS;
	int cust = team % H_CUSTOMERS;
	int model = H_CUSTOMERS + H_TEAMS + key % H_MODELS;
	const int ids[H_MAX] = {key, key, team, team, cust, cust, model, model};
	const uint32_t kinds[H_MAX] = {
		TALLY_KIND_BUDGET,    TALLY_KIND_RATELIMIT,
		TALLY_KIND_BUDGET,    TALLY_KIND_RATELIMIT,
		TALLY_KIND_BUDGET,    TALLY_KIND_RATELIMIT,
		TALLY_KIND_RATELIMIT, TALLY_KIND_BUDGET};
	unsigned order[H_MAX];

	f->n = 4 + (unsigned)(rng_next(&t->rng) % 5);
	for (unsigned i = 0; i < H_MAX; i++)
		order[i] = i;
	for (unsigned i = f->n; i-- > 1;) {
		unsigned j = (unsigned)(rng_next(&t->rng) % (i + 1)), x;

		x = order[i];
		order[i] = order[j];
		order[j] = x;
	}
	f->est[0] = (int64_t)(rng_next(&t->rng) % 20000) + 1;
	f->est[1] = (int64_t)(rng_next(&t->rng) % 4000) + 1;
	for (unsigned i = 0; i < f->n; i++) {
		tally_charge *c = &ch[i];

		f->id[i] = ids[order[i]];
		f->kind[i] = kinds[order[i]];
		memset(c, 0, sizeof *c);
		c->kind = f->kind[i];
		c->key = key_of(c->kind, f->id[i]);
		/* Both key forms. */
		c->key_len = rng_next(&t->rng) & 1 ? TALLY_KEY_STRLEN
						   : strlen(c->key);
		if (c->kind == TALLY_KIND_BUDGET) {
			c->amount = f->est[0];
		} else {
			c->tokens = f->est[1];
			c->requests = 1;
		}
	}
	if (rng_next(&t->rng) % 32 == 0)
		ch[rng_next(&t->rng) % f->n].flags = TALLY_CHARGE_SHADOW;
}

/*
 * A decision against its own reports. OK: every counter with a max of
 * every charge that is not a shadow fits (HOLD: used + held <= max after
 * the hold, its post-state; PEEK: the estimate fits the state it saw).
 * LIMITED: the refusing limit (the lowest bit of the mask) has a counter
 * whose estimate does not fit the state its report shows. ENOENT: the
 * named limit is flagged GONE. Every report's remaining is max - used -
 * held, at least 0.
 */
static void
check_decision(const tally_charge *ch, unsigned n, uint32_t mode, int rc,
	       const tally_decision *d)
{
	if (rc < 0 && rc != TALLY_ENOENT) {
		violation("tally_admit: %s", tally_strerror(rc));
		return;
	}
	if (d->n != n) {
		violation("decision reports %u limits of %u", d->n, n);
		return;
	}
	for (unsigned i = 0; i < n && rc != TALLY_ENOENT; i++) {
		const tally_limit_report *r = &d->limit[i];

		for (unsigned c = 0; c < n_counters(ch[i].kind); c++) {
			const tally_counter_report *k = &r->c[c];
			int64_t room, want;

			if (k->flags & TALLY_DECISION_UNLIMITED)
				continue;
			room = k->max - k->used - k->held;
			want = room < 0 ? 0 : room;
			if (k->remaining != want)
				violation("%s: remaining %" PRId64
					  " with max %" PRId64 ", used %" PRId64
					  ", held %" PRId64,
					  ch[i].key, k->remaining, k->max,
					  k->used, k->held);
			if (rc != TALLY_OK ||
			    (ch[i].flags & TALLY_CHARGE_SHADOW))
				continue;
			if (mode == TALLY_ADMIT_HOLD && room < 0)
				violation("admitted hold left %s with used "
					  "%" PRId64 " + held %" PRId64
					  " > max %" PRId64,
					  ch[i].key, k->used, k->held, k->max);
			if (mode == TALLY_ADMIT_PEEK &&
			    charge_amount(&ch[i], c) > room)
				violation("peek OK on %s: %" PRId64
					  " does not fit %" PRId64,
					  ch[i].key, charge_amount(&ch[i], c),
					  room);
		}
	}
	if (rc == TALLY_OK) {
		if (d->refused != -1 || d->mask != 0)
			violation("admitted, with refused %d, mask %#x",
				  d->refused, d->mask);
		return;
	}
	if (d->refused < 0 || (unsigned)d->refused >= n) {
		violation("refused (%s) without a limit named",
			  tally_strerror(rc));
		return;
	}
	if (rc == TALLY_ENOENT) {
		if (!(d->limit[d->refused].flags & TALLY_DECISION_GONE))
			violation("ENOENT names %s, not flagged GONE",
				  ch[d->refused].key);
		return;
	}
	if (!(d->mask & (1u << d->refused)) ||
	    (d->mask & ((1u << d->refused) - 1)) != 0) {
		violation("refused %d is not the first of mask %#x", d->refused,
			  d->mask);
		return;
	}
	{
		const tally_charge *c = &ch[d->refused];
		const tally_limit_report *r = &d->limit[d->refused];
		bool justified = false;

		for (unsigned k = 0; k < n_counters(c->kind); k++) {
			const tally_counter_report *q = &r->c[k];

			if (q->flags & TALLY_DECISION_UNLIMITED)
				continue;
			if (charge_amount(c, k) > q->max - q->used - q->held &&
			    (q->flags & TALLY_DECISION_DENIED))
				justified = true;
		}
		if (!justified || (c->flags & TALLY_CHARGE_SHADOW))
			violation("refusal by %s%s is not justified by its "
				  "report",
				  c->key,
				  (c->flags & TALLY_CHARGE_SHADOW)
					  ? " (a shadow charge)"
					  : "");
	}
}

/* The units of a report's counters go to the window ledger. */
static void
charge_windows(struct thread_ctx *t, int id, uint32_t kind,
	       const tally_limit_report *r, const int64_t amount[2])
{
	for (unsigned c = 0; c < n_counters(kind); c++)
		if (amount[c] != 0)
			applied(t, id, wslot_of(kind, c), r->incarnation,
				r->c[c].window_start, amount[c]);
}

/*
 * Settles (actual != NULL), releases (actual NULL, partial false) or
 * partially charges f, and accounts for it: units charged to the windows
 * the reports name, held units released (all that the handle held, or
 * what a partial charge took), overdrafts and late settles against what
 * the handle held.
 */
static void
settle_flight(struct thread_ctx *t, struct flight *f, const int64_t *actual,
	      bool partial)
{
	tally_decision d = TALLY_DECISION_INIT;
	tally_cost cost[H_MAX];
	int64_t before[H_MAX][2];
	int rc;

	memset(cost, 0, sizeof cost);
	for (unsigned i = 0; i < f->n; i++) {
		before[i][0] = f->h.part[i].amount[0];
		before[i][1] = f->h.part[i].amount[1];
		if (actual == NULL)
			continue;
		if (f->kind[i] == TALLY_KIND_BUDGET) {
			cost[i].amount = actual[0];
		} else {
			cost[i].tokens = actual[1];
			cost[i].requests = actual[2];
		}
	}
	if (partial) {
		rc = tally_settle_partial(store, &f->h, cost, f->n, &d);
		t->adm[A_PARTIALS]++;
	} else if (actual == NULL) {
		rc = tally_release(store, &f->h, &d);
		t->adm[A_RELEASES]++;
	} else {
		rc = tally_settle(store, &f->h, cost, f->n, &d);
		t->adm[A_SETTLES]++;
	}
	if (rc != TALLY_OK) {
		violation("settle of a live hold: %s", tally_strerror(rc));
		return;
	}
	if (!partial && f->h.state != TALLY_HOLD_SETTLED)
		violation("settled hold not marked settled");
	for (unsigned i = 0; i < f->n; i++) {
		const tally_limit_report *r = &d.limit[i];
		bool late = (r->flags & TALLY_DECISION_LATE) != 0;
		int64_t amount[2] = {0, 0};

		if (r->flags & TALLY_DECISION_GONE) {
			t->adm[A_GONE_PARTS]++;
			continue;
		}
		for (unsigned c = 0; c < n_counters(f->kind[i]); c++) {
			int64_t a = f->kind[i] == TALLY_KIND_BUDGET
					    ? cost[i].amount
				    : c == 0 ? cost[i].tokens
					     : cost[i].requests;
			int64_t moved =
				partial ? before[i][c] - f->h.part[i].amount[c]
					: before[i][c];
			int64_t over = a > moved ? a - moved : 0;

			amount[c] = a;
			t->adm[A_SETTLED] += (uint64_t)a;
			t->adm[A_OVERDRAFT] += (uint64_t)r->c[c].overdraft;
			if (late) {
				if (r->c[c].overdraft != 0)
					violation(
						"late settle on %s reports an "
						"overdraft",
						key_of(f->kind[i], f->id[i]));
				continue;
			}
			if (partial &&
			    moved != (a < before[i][c] ? a : before[i][c]))
				violation("partial charge of %" PRId64
					  " took %" PRId64 " of %" PRId64
					  " held",
					  a, moved, before[i][c]);
			if (r->c[c].overdraft != over)
				violation("settle of %" PRId64 " on %" PRId64
					  " held reports overdraft %" PRId64,
					  a, moved, r->c[c].overdraft);
			held_add(t, f->id[i], f->kind[i], c, r->incarnation, 0,
				 moved, false);
		}
		charge_windows(t, f->id[i], f->kind[i], r, amount);
		if (late) {
			t->adm[A_LATE_PARTS]++;
			if (d.now < f->h.deadline)
				t->adm[A_EARLY_LATE]++;
		} else if (d.now >= f->h.deadline + 2 * hold_grain) {
			violation("settle on %s long after the hold's deadline "
				  "(%" PRId64 " ns) was not late",
				  key_of(f->kind[i], f->id[i]),
				  d.now - f->h.deadline);
		}
	}
	if (!partial && rng_next(&t->rng) % 64 == 0) {
		/* Settled once: a second settle changes nothing. */
		t->adm[A_RESETTLES]++;
		rc = tally_settle(store, &f->h, cost, f->n, NULL);
		if (rc != TALLY_ESETTLED)
			violation("second settle of a hold: %s",
				  tally_strerror(rc));
	}
}

/* Settles f with an actual of 0 to 2x its estimate (a tenth: release). */
static void
finish_flight(struct thread_ctx *t, struct flight *f)
{
	int64_t x = (int64_t)(rng_next(&t->rng) % 21), actual[3];

	if (x == 0) {
		settle_flight(t, f, NULL, false);
		return;
	}
	actual[0] = f->est[0] * x / 10;
	actual[1] = f->est[1] * x / 10;
	actual[2] = 1;
	settle_flight(t, f, actual, false);
}

static void
mailbox_put(struct thread_ctx *t, struct flight *f)
{
	bool put = false;

	pthread_mutex_lock(&mailbox.lock);
	if (mailbox.n < MAILBOX) {
		mailbox.slot[mailbox.n++] = *f;
		put = true;
	}
	pthread_mutex_unlock(&mailbox.lock);
	if (!put)
		finish_flight(t, f);
}

static bool
mailbox_take(struct flight *f)
{
	bool got = false;

	pthread_mutex_lock(&mailbox.lock);
	if (mailbox.n > 0) {
		*f = mailbox.slot[--mailbox.n];
		got = true;
	}
	pthread_mutex_unlock(&mailbox.lock);
	return got;
}

/* Settles the holds in flight whose response came (the ring's order is
 * the admission order; the responses come in any order). */
static void
ring_due(struct thread_ctx *t)
{
	int64_t now = store_now();
	unsigned kept = 0;

	for (unsigned j = 0; j < t->ring_n; j++) {
		struct flight *f = &t->ring[(t->ring_head + j) % RING];

		if (f->settle_at <= now)
			finish_flight(t, f);
		else if (kept++ != j)
			t->ring[(t->ring_head + kept - 1) % RING] = *f;
	}
	t->ring_n = kept;
}

/* One LLM request: admit, then a lifecycle. */
static void
llm_request(struct thread_ctx *t)
{
	tally_charge ch[H_MAX];
	tally_decision d = TALLY_DECISION_INIT;
	struct flight f;
	uint64_t r = rng_next(&t->rng) % 100;
	uint32_t mode = r < 8    ? TALLY_ADMIT_CONSUME
			: r < 12 ? TALLY_ADMIT_PEEK
				 : TALLY_ADMIT_HOLD;
	int64_t ttl = 0;
	int rc;

	pick_request(t, &f, ch);
	if (mode == TALLY_ADMIT_HOLD) {
		tally_hold h = TALLY_HOLD_INIT;

		f.h = h;
		ttl = hold_ttl_max / 8 +
		      (int64_t)(rng_next(&t->rng) %
				(uint64_t)(hold_ttl_max - hold_ttl_max / 8));
	}
	rc = tally_admit(store, ch, f.n, mode, ttl,
			 mode == TALLY_ADMIT_HOLD ? &f.h : NULL, &d);
	check_decision(ch, f.n, mode, rc, &d);
	t->adm[(mode == TALLY_ADMIT_HOLD      ? A_HOLD_OK
		: mode == TALLY_ADMIT_CONSUME ? A_CONSUME_OK
					      : A_PEEK_OK) +
	       (rc == TALLY_OK        ? 0
		: rc == TALLY_LIMITED ? 1
				      : 2)]++;
	if (rc != TALLY_OK || mode == TALLY_ADMIT_PEEK)
		return;
	for (unsigned i = 0; i < f.n; i++)
		if (d.limit[i].flags & TALLY_DECISION_SHADOW_WOULD_DENY)
			t->adm[A_SHADOW_DENY]++;
	if (mode == TALLY_ADMIT_CONSUME) {
		for (unsigned i = 0; i < f.n; i++) {
			int64_t amount[2];

			if (d.limit[i].flags & TALLY_DECISION_GONE) {
				t->adm[A_GONE_PARTS]++;
				continue;
			}
			amount[0] = charge_amount(&ch[i], 0);
			amount[1] = charge_amount(&ch[i], 1);
			charge_windows(t, f.id[i], f.kind[i], &d.limit[i],
				       amount);
			t->adm[A_CONSUMED] +=
				(uint64_t)(amount[0] +
					   (f.kind[i] == TALLY_KIND_BUDGET
						    ? 0
						    : amount[1]));
		}
		return;
	}
	t->adm[A_PARTS_HELD] += f.n;
	for (unsigned i = 0; i < f.n; i++)
		for (unsigned c = 0; c < n_counters(f.kind[i]); c++)
			held_add(t, f.id[i], f.kind[i], c,
				 f.h.part[i].incarnation,
				 charge_amount(&ch[i], c), 0, false);

	r = rng_next(&t->rng) % 100;
	if (r < 40) {
		finish_flight(t, &f);
	} else if (r < 50) {
		/* Streaming: one or two partial charges, then the rest. */
		unsigned k = 1 + (unsigned)(rng_next(&t->rng) % 2);

		for (unsigned j = 0; j < k; j++) {
			int64_t part[3] = {f.est[0] / 3 + 1, f.est[1] / 3 + 1,
					   j == 0 ? 1 : 0};

			settle_flight(t, &f, part, true);
		}
		finish_flight(t, &f);
	} else if (r < 60) {
		settle_flight(t, &f, NULL, false);
	} else if (r < 88) {
		/* In flight until its response comes, up to half its TTL
		 * later (when the ring is full, the oldest settles now). */
		if (t->ring_n == RING) {
			finish_flight(t, &t->ring[t->ring_head]);
			t->ring_head = (t->ring_head + 1) % RING;
			t->ring_n--;
		}
		f.settle_at = d.now + (int64_t)(rng_next(&t->rng) %
						(uint64_t)(ttl / 2 + 1));
		t->ring[(t->ring_head + t->ring_n++) % RING] = f;
	} else if (r < 93) {
		t->adm[A_HANDED]++;
		mailbox_put(t, &f);
	} else if (r < 97 || t->late_n == LATE_MAX) {
		t->adm[A_ABANDONED]++; /* left to expire */
	} else {
		t->late[t->late_n++] = f;
	}
	/* Responses that came, someone else's hold, and a late one whose
	 * deadline has passed. */
	ring_due(t);
	if (rng_next(&t->rng) % 4 == 0 && mailbox_take(&f))
		finish_flight(t, &f);
	if (t->late_n > 0 &&
	    store_now() >= t->late[0].h.deadline + 2 * hold_grain) {
		finish_flight(t, &t->late[0]);
		t->late[0] = t->late[--t->late_n];
	}
}

/* Settles every hold a thread still has in flight (the end). */
static void
drain_flights(struct thread_ctx *t, struct thread_ctx *by)
{
	struct flight f;

	while (t->ring_n > 0) {
		finish_flight(by, &t->ring[t->ring_head]);
		t->ring_head = (t->ring_head + 1) % RING;
		t->ring_n--;
	}
	while (t->late_n > 0)
		finish_flight(by, &t->late[--t->late_n]);
	while (mailbox_take(&f))
		finish_flight(by, &f);
}

/* A record's state as a refused call must leave it. */
struct trace {
	bool live;
	uint64_t version;
	int64_t used[2], held[2];
	uint64_t holds;
};

static void
trace_of(uint32_t kind, int id, struct trace *tr)
{
	memset(tr, 0, sizeof *tr);
	if (kind == TALLY_KIND_BUDGET) {
		tally_budget_view v = TALLY_BUDGET_VIEW_INIT;

		if (tally_budget_get(store, key_of(kind, id), &v) != TALLY_OK)
			return;
		tr->live = true;
		tr->version = v.version;
		tr->used[0] = v.usage;
		tr->held[0] = v.held;
		tr->holds = v.holds;
	} else {
		tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;

		if (tally_ratelimit_get(store, key_of(kind, id), &v) !=
		    TALLY_OK)
			return;
		tr->live = true;
		tr->version = v.version;
		tr->used[0] = v.tokens.usage;
		tr->used[1] = v.requests.usage;
		tr->held[0] = v.tokens_held;
		tr->held[1] = v.requests_held;
		tr->holds = v.holds;
	}
}

/*
 * With every other thread parked: requests made to refuse (one budget's
 * estimate over its max, or over its room) must return LIMITED, name a
 * refusing limit, and leave every record of the call as it was, version
 * included. A call that passes anyway (its window rolled, a hold expired
 * in between) is released and not counted.
 */
static void
no_trace_checks(struct thread_ctx *t)
{
	for (int k = 0; k < 8; k++) {
		tally_charge ch[H_MAX];
		tally_decision d = TALLY_DECISION_INIT;
		struct trace before[H_MAX], after[H_MAX];
		struct flight f;
		const tally_hold h = TALLY_HOLD_INIT;
		unsigned j = H_MAX;
		bool all = true, too_big = false;
		int rc;

		pick_request(t, &f, ch);
		for (unsigned i = 0; i < f.n; i++) {
			trace_of(f.kind[i], f.id[i], &before[i]);
			all &= before[i].live;
			ch[i].flags = 0;
			if (j == H_MAX && f.kind[i] == TALLY_KIND_BUDGET)
				j = i;
		}
		if (!all || j == H_MAX)
			continue;
		{
			tally_budget_view v = TALLY_BUDGET_VIEW_INIT;

			if (tally_budget_get(store, ch[j].key, &v) != TALLY_OK)
				continue;
			too_big = k % 2 == 0 && v.config.max_limit < INT64_MAX;
			if (too_big)
				ch[j].amount = v.config.max_limit + 1;
			else if (v.config.max_limit - v.usage - v.held >= 0)
				ch[j].amount = v.config.max_limit - v.usage -
					       v.held + 1;
			else
				ch[j].amount = 1;
		}
		f.h = h;
		rc = tally_admit(store, ch, f.n, TALLY_ADMIT_HOLD, hold_ttl_max,
				 &f.h, &d);
		check_decision(ch, f.n, TALLY_ADMIT_HOLD, rc, &d);
		if (rc == TALLY_OK) {
			/* It fitted after all (a window rolled): release. */
			t->adm[A_HOLD_OK]++;
			t->adm[A_PARTS_HELD] += f.n;
			for (unsigned i = 0; i < f.n; i++)
				for (unsigned c = 0; c < n_counters(f.kind[i]);
				     c++)
					held_add(t, f.id[i], f.kind[i], c,
						 f.h.part[i].incarnation,
						 charge_amount(&ch[i], c), 0,
						 false);
			settle_flight(t, &f, NULL, false);
			continue;
		}
		t->adm[rc == TALLY_LIMITED ? A_HOLD_LIMITED : A_HOLD_ENOENT]++;
		t->adm[A_NO_TRACE]++;
		/* Over its max, the budget refuses whatever its window; over
		 * the room of the stored view, it may fit once a window that
		 * is due counts as rolled (another limit refused then). */
		if (rc != TALLY_LIMITED || (too_big && !(d.mask & (1u << j))))
			violation("a call made to refuse on %s (%s): %s, mask "
				  "%#x",
				  ch[j].key,
				  too_big ? "over its max" : "over its room",
				  tally_strerror(rc), d.mask);
		for (unsigned i = 0; i < f.n; i++) {
			trace_of(f.kind[i], f.id[i], &after[i]);
			if (memcmp(&before[i], &after[i], sizeof before[i]) !=
			    0)
				violation("refused call left a trace on %s: "
					  "version %" PRIu64 " -> %" PRIu64
					  ", held %" PRId64 " -> %" PRId64,
					  ch[i].key, before[i].version,
					  after[i].version, before[i].held[0],
					  after[i].held[0]);
		}
	}
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

	/* Holds count against the max: check blocks iff used + held >=
	 * max, try_consume takes only what fits beside them. */
	if (what < 4) {
		rc = tally_budget_check(store, key, &v);
		if (rc == TALLY_OK && v.usage >= v.config.max_limit - v.held)
			violation("check OK on %s with usage %" PRId64
				  " + held %" PRId64 " >= max %" PRId64,
				  key, v.usage, v.held, v.config.max_limit);
		if (rc == TALLY_LIMITED &&
		    v.usage < v.config.max_limit - v.held)
			violation("check LIMITED on %s with usage %" PRId64
				  " + held %" PRId64 " < max %" PRId64,
				  key, v.usage, v.held, v.config.max_limit);
		t->ops[rc == TALLY_OK        ? OP_CHECK
		       : rc == TALLY_LIMITED ? OP_CHECK_LIMITED
					     : OP_ENOENT]++;
	} else if (what < 7) {
		rc = tally_budget_try_consume(store, key, cost, &v);
		if (rc == TALLY_OK) {
			if (v.usage > v.config.max_limit - v.held)
				violation(
					"try_consume on %s left usage %" PRId64
					" + held %" PRId64 " > max %" PRId64,
					key, v.usage, v.held,
					v.config.max_limit);
			applied(t, id, 0, v.incarnation, v.window_start, cost);
			t->ops[OP_TRY_OK]++;
		} else if (rc == TALLY_LIMITED) {
			if (cost <= v.config.max_limit - v.usage - v.held)
				violation(
					"try_consume LIMITED on %s: usage %" PRId64
					" + held %" PRId64 " + %" PRId64
					" <= max %" PRId64,
					key, v.usage, v.held, cost,
					v.config.max_limit);
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
			     v.tokens.usage >
				     v.config.tokens.max - v.tokens_held) ||
			    (v.config.requests.has_max &&
			     v.requests.usage >
				     v.config.requests.max - v.requests_held))
				violation("try_consume on %s left usage above "
					  "max",
					  key);
			applied(t, id, 1, v.incarnation, v.tokens.window_start,
				tokens);
			applied(t, id, 2, v.incarnation,
				v.requests.window_start, 1);
			t->ops[OP_TRY_OK]++;
		} else if (rc == TALLY_LIMITED) {
			/* A sliding counter also counts a part of its
			 * previous window, at most all of it. */
			bool justified =
				((mask & TALLY_COUNTER_TOKENS) &&
				 v.config.tokens.has_max &&
				 tokens > v.config.tokens.max - v.tokens.usage -
						  v.tokens_held -
						  v.tokens_previous) ||
				((mask & TALLY_COUNTER_REQUESTS) &&
				 v.config.requests.has_max &&
				 1 > v.config.requests.max - v.requests.usage -
						 v.requests_held -
						 v.requests_previous);
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

			if (admission_on &&
			    (double)(rng_next(&t->rng) >> 11) * 0x1p-53 <
				    opt.admit_share)
				llm_request(t);
			else if (rng_next(&t->rng) & 1)
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
			held_add(t, id, TALLY_KIND_BUDGET, 0, v.incarnation, 0,
				 v.held, true);
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
		ratelimit_config(&c, &t->rng, id);
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
			held_add(t, id, TALLY_KIND_RATELIMIT, 0, v.incarnation,
				 0, v.tokens_held, true);
			held_add(t, id, TALLY_KIND_RATELIMIT, 1, v.incarnation,
				 0, v.requests_held, true);
			t->ops[OP_REMOVE]++;
			ratelimit_config(&c, &t->rng, id);
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

		if (t->cache != NULL)
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
/* Checking holds                                                           */
/* ------------------------------------------------------------------------ */

struct held_verdict {
	long entries;    /* (key, kind, counter, incarnation) held ledgers */
	long mismatches; /* live: placed != released + expired */
	long caught;     /* removed with more held than placed: holds of
			    refused calls in flight at the remove */
	long left;       /* counters still holding something at the end */
	int64_t placed, released;
};

/* Every live counter must hold nothing (all holds settled or expired). */
static void
check_nothing_held(struct held_verdict *hv)
{
	for (int id = 0; id < opt.keys; id++) {
		struct trace tr;

		for (int k = 0; k < 2; k++) {
			uint32_t kind = k == 0 ? TALLY_KIND_BUDGET
					       : TALLY_KIND_RATELIMIT;

			trace_of(kind, id, &tr);
			if (!tr.live || (tr.held[0] == 0 && tr.held[1] == 0 &&
					 tr.holds == 0))
				continue;
			if (hv->left++ < 20)
				fprintf(stderr,
					"HELD: %s holds %" PRId64 "/%" PRId64
					" in %" PRIu64 " holds at the end\n",
					key_of(kind, id), tr.held[0],
					tr.held[1], tr.holds);
		}
	}
}

/*
 * The held ledgers of every thread, merged: on a live record every unit
 * placed must have been released or expired (nothing is held any more); on
 * a removed one, released + expired + what the removal found must cover
 * what was placed (more: holds of calls that were refused after a remove
 * took their record, which no thread counts as placed).
 */
static void
check_holds(struct thread_ctx *const *ctx, int n, struct held_verdict *hv)
{
	struct ledger all = {0};
	struct current *cur = calloc((size_t)opt.keys, sizeof *cur);

	if (cur == NULL)
		abort();
	for (int i = 0; i < n; i++)
		ledger_move(&all, &ctx[i]->held);
	for (int id = 0; id < opt.keys; id++)
		current_of(id, &cur[id]);
	for (size_t j = 0; j < all.cap; j++) {
		const struct wslot *s = &all.slot[j];
		const struct current *c;
		int kind;

		if (!s->used)
			continue;
		c = &cur[s->k.id];
		kind = s->k.kind == TALLY_KIND_BUDGET ? 0 : 1;
		hv->entries++;
		hv->placed += s->applied;
		hv->released += s->closed;
		if (c->live[kind] && c->incarnation[kind] == s->k.incarn) {
			if (s->applied == s->closed && s->closings == 0)
				continue;
		} else if (s->closings > 0 && s->closed >= s->applied) {
			hv->caught += s->closed > s->applied;
			continue;
		}
		if (hv->mismatches++ < 20)
			fprintf(stderr,
				"HOLDS: %s %d counter %u incarnation %" PRIu64
				": placed %" PRId64 ", released, expired or "
				"removed %" PRId64 " (%u removals)\n",
				kind == 0 ? "budget" : "rate", (int)s->k.id,
				s->k.counter, s->k.incarn, s->applied,
				s->closed, s->closings);
	}
	ledger_free(&all);
	free(cur);
}

/* The store's admission counters against the threads' own counts. */
static long
check_stats(const tally_stats *st, const uint64_t *a)
{
	struct {
		const char *name;
		uint64_t store, counted;
	} pairs[] = {
		{"admitted", st->admitted, a[A_HOLD_OK] + a[A_CONSUME_OK]},
		{"refused (limits)",
		 st->refused_limit + st->refused_too_big + st->refused_race,
		 a[A_HOLD_LIMITED] + a[A_CONSUME_LIMITED]},
		{"refused (missing)", st->refused_missing,
		 a[A_HOLD_ENOENT] + a[A_CONSUME_ENOENT]},
		{"holds", st->holds, a[A_PARTS_HELD]},
		{"settles", st->settles, a[A_SETTLES]},
		{"releases", st->releases, a[A_RELEASES]},
		{"partials", st->partials, a[A_PARTIALS]},
		{"late settles", st->late_settles, a[A_LATE_PARTS]},
		{"overdraft units", st->overdraft_units, a[A_OVERDRAFT]},
		{"expired holds", st->expired_holds, a[A_EXPIRED_HOLDS]},
		{"expired units", st->expired_units, a[A_EXPIRED_UNITS]},
		{"shadow would deny", st->shadow_would_deny, a[A_SHADOW_DENY]},
	};
	long bad = 0;

	for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
		if (pairs[i].store == pairs[i].counted)
			continue;
		bad++;
		fprintf(stderr,
			"STATS: %s: tally_store_stats %" PRIu64
			", the threads counted %" PRIu64 "\n",
			pairs[i].name, pairs[i].store, pairs[i].counted);
	}
	return bad;
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
		"  --progress     live progress line even when not a tty\n"
		"  --admit-share P  of the request calls, LLM request "
		"lifecycles\n"
		"                 (admit across 4-8 limits, settle, release, "
		"expire;\n"
		"                 default 0.125; 0: none; needs 128 keys)\n",
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
		{"admit-share", required_argument, NULL, 'a'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	int c;

	while ((c = getopt_long(argc, argv, "d:t:k:s:x:rjpa:h", longopts,
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
		case 'a':
			opt.admit_share = atof(optarg);
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
	    opt.threads < 0 || opt.threads > 1024 || opt.speed <= 0 ||
	    !(opt.admit_share >= 0 && opt.admit_share <= 1)) {
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

#define STATS_FIELDS(X)                                                        \
	X(admitted)                                                            \
	X(refused_limit)                                                       \
	X(refused_too_big)                                                     \
	X(refused_race)                                                        \
	X(refused_missing)                                                     \
	X(compensations)                                                       \
	X(holds)                                                               \
	X(settles)                                                             \
	X(releases)                                                            \
	X(partials)                                                            \
	X(late_settles)                                                        \
	X(overdraft_units)                                                     \
	X(expired_holds)                                                       \
	X(expired_units)                                                       \
	X(shadow_would_deny)

static void
print_stats_json(const tally_stats *st)
{
#define X(f) printf(",\"%s\":%" PRIu64, #f, st->f);
	STATS_FIELDS(X)
#undef X
}

static void
print_admission(const tally_stats *st, const uint64_t *a,
		const struct held_verdict *hv)
{
	printf("\n  admission (LLM requests, 4-8 limits each; "
	       "tally_store_stats)\n");
#define X(f) printf("  %-24s %14" PRIu64 "\n", #f, st->f);
	STATS_FIELDS(X)
#undef X
	printf("\n  counted by the threads\n");
	for (int k = 0; k < A__COUNT; k++)
		printf("  %-24s %14" PRIu64 "\n", adm_name[k], a[k]);
	printf("  %-24s %14ld\n", "held ledgers checked", hv->entries);
	printf("  %-24s %14" PRId64 "\n", "units held", hv->placed);
	printf("  %-24s %14ld\n", "caught by a remove", hv->caught);
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
	struct held_verdict hv = {0};
	uint64_t adm[A__COUNT] = {0};
	long stats_bad = 0;
	double elapsed;
	int64_t t0, t1;
	uint64_t rng;
	int rc;

	parse_args(argc, argv);
	admission_on = opt.keys >= H_MIN_KEYS && opt.admit_share > 0;
	/* Holds live seconds of the store's clock: 2 minutes of the fake one
	 * (about 33 ms of real time at 3600x), 3 s of the real one. */
	hold_ttl_max = opt.real_clock ? 3 * NS_PER_SEC : 120 * NS_PER_SEC;
	hold_grain = (hold_ttl_max + 2) / 3;
	mailbox.slot = calloc(MAILBOX, sizeof *mailbox.slot);
	if (mailbox.slot == NULL)
		abort();
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
	o.hold_ttl_max = hold_ttl_max;
	o.on_expire = on_expire;
	if ((rc = tally_store_create(&store, &o)) != TALLY_OK) {
		fprintf(stderr, "tally_store_create: %s\n", tally_strerror(rc));
		return 1;
	}

	memset(&mainctx, 0, sizeof mainctx);
	mainctx.cache = calloc((size_t)opt.keys * 3, sizeof *mainctx.cache);
	if (mainctx.cache == NULL)
		abort();
	mainctx.rng = rng_next(&rng);
	self = &mainctx;
	for (int id = 0; id < opt.keys; id++) {
		tally_budget_config bc = TALLY_BUDGET_CONFIG_INIT;
		tally_ratelimit_config rc2 = TALLY_RATELIMIT_CONFIG_INIT;
		budget_config(&bc, &rng);
		if (tally_budget_upsert(store, key_of(TALLY_KIND_BUDGET, id),
					&bc, NULL) != TALLY_CREATED)
			abort();
		ratelimit_config(&rc2, &rng, id);
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
		w[i].ring = calloc(RING, sizeof *w[i].ring);
		w[i].late = calloc(LATE_MAX, sizeof *w[i].late);
		if (w[i].cache == NULL || w[i].ring == NULL ||
		    w[i].late == NULL)
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
			/* Refused calls while nothing else runs: no trace. */
			if (admission_on)
				no_trace_checks(&mainctx);
			collect(w, others, 3, &total, NULL);
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

	if (admission_on) {
		struct thread_ctx *hctx[3 + 1024];
		int nctx = 0;

		/* Settle what is still in flight, then let every abandoned
		 * hold expire: the clock past every deadline and its slot,
		 * and a sweep to drop them. Nothing may be held after. */
		for (int i = 0; i < opt.threads; i++)
			drain_flights(&w[i], &mainctx);
		if (opt.real_clock) {
			struct timespec nap = {
				(time_t)((hold_ttl_max + 2 * hold_grain) /
					 NS_PER_SEC) +
					1,
				0};

			nanosleep(&nap, NULL);
		} else {
			__atomic_add_fetch(&clock_skip, 3 * hold_ttl_max,
					   __ATOMIC_RELAXED);
		}
		if (tally_sweep(store, NULL, NULL, NULL) != TALLY_OK)
			violation("final sweep failed");
		check_nothing_held(&hv);
		for (int i = 0; i < opt.threads; i++)
			hctx[nctx++] = &w[i];
		hctx[nctx++] = &sweeper;
		hctx[nctx++] = &admin;
		hctx[nctx++] = &mainctx;
		check_holds(hctx, nctx, &hv);
	}
	for (int i = 0; i < opt.threads; i++)
		for (int k = 0; k < A__COUNT; k++)
			adm[k] += w[i].adm[k];
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < A__COUNT; k++)
			adm[k] += others[i]->adm[k];

	tally_store_stats(store, &st);
	if (admission_on)
		stats_bad = check_stats(&st, adm);

	/* Merge every ledger; then close the windows that are still open. */
	collect(w, others, 3, &total, ops);
	for (int i = 0; i < opt.threads; i++) {
		free(w[i].cache);
		free(w[i].ring);
		free(w[i].late);
		ledger_free(&w[i].held);
	}
	free(w);
	free(mainctx.cache);
	free(mailbox.slot);
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
			    st.rolls == ops[OP_ROLL_HEARD] &&
			    hv.mismatches == 0 && hv.left == 0 &&
			    stats_bad == 0;
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
			       ",\"rss_kib\":%ld,\"peak_rss_kib\":%ld",
			       st.writes, st.cas_retries, retries, st.rolls,
			       st.retired, st.freed, st.pending,
			       st.peak_pending, st.threads, v.windows,
			       checkpoints, v.applied, v.mismatches,
			       violations.count, rss, hwm);
			printf(",\"admission\":{\"enabled\":%s,\"share\":%.3f"
			       ",\"hold_ttl_max_ns\":%" PRId64,
			       admission_on ? "true" : "false", opt.admit_share,
			       hold_ttl_max);
			print_stats_json(&st);
			for (int k = 0; k < A__COUNT; k++)
				printf(",\"%s\":%" PRIu64, adm_name[k], adm[k]);
			printf(",\"held_ledgers\":%ld,\"held_placed\":%" PRId64
			       ",\"held_mismatches\":%ld,\"held_left\":%ld"
			       ",\"caught_by_remove\":%ld,\"stats_mismatches\":"
			       "%ld}}\n",
			       hv.entries, hv.placed, hv.mismatches, hv.left,
			       hv.caught, stats_bad);
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
			if (admission_on)
				print_admission(&st, adm, &hv);
			printf("\n%s: %ld windows, %" PRId64
			       " units applied = %" PRId64
			       " units found; %ld conservation mismatches, "
			       "%ld violations, rolls reported %" PRIu64
			       " / counted %" PRIu64 "\n",
			       pass ? "PASS" : "FAIL", v.windows, v.applied,
			       v.closed, v.mismatches, violations.count,
			       ops[OP_ROLL_HEARD], st.rolls);
			if (admission_on)
				printf("holds: %" PRId64
				       " units held, every one released, "
				       "expired or removed: %ld mismatches, "
				       "%ld counters still holding, %ld store "
				       "counters off\n",
				       hv.placed, hv.mismatches, hv.left,
				       stats_bad);
		}
		tally_store_destroy(store);
		return pass ? 0 : 1;
	}
}
