/*
 * tally-bench: tally against the alternatives, side by side in one process.
 *
 * The same work runs through every implementation: T threads each call one
 * operation in a loop on K keys (36-byte strings), the key of each call
 * drawn uniformly at random from one pre-generated sequence of key
 * pointers (the same sequence, the same starting points, for every
 * implementation). One row per implementation x op x threads x keys, with
 * ns/op (elapsed wall time x threads / total ops: what one request pays),
 * Mops/s (total ops / elapsed) and the ratio to tally for the same op,
 * threads and keys.
 *
 * Implementations (baselines.h has the details):
 *   tally             budgets: tally_budget_bump/check/try_consume/get.
 *   mutex             one mutex around a string-keyed map of records.
 *   rwlock            an rwlock on the map and a mutex per record.
 *   racy              load, copy, modify, store with no CAS (loses counts).
 *   floor-lookup-faa  hash + probe + one atomic fetch-add (or load).
 *   floor-atomic      one atomic add (or load) on a pre-resolved counter.
 *   tally-rl          tally rate limits (tokens and requests in one call);
 *                     human table only, never in --json (the JSON impl set
 *                     is fixed).
 *   tally-sliding     tally-rl with both counters sliding windows
 *                     (TALLY_ALGORITHM_SLIDING); human table only, its
 *                     ratio column against tally-rl (fixed windows).
 * op llm_request (llm.h): one LLM request, admitted across the 6 limits of
 * a key/team/customer hierarchy (1,000 zipf-skewed keys) and settled, by
 * tally (tally_admit + tally_settle), mutex and rwlock (the admission
 * baselines of baselines.h, same semantics); after the other rows, with
 * its own conservation check (used grew by what was settled, nothing is
 * held at the end of a row).
 * Every budget-like record has max = 2^61 (nothing is ever limited) and a
 * calendar-aligned 1 h window; tally-rl has 1 h token and 1 min request
 * windows, so its windows roll during a run. Every write rolls a due window
 * first, in tally and in the baselines alike.
 *
 * Correctness, checked after every write row (bump, try_consume): the sum of
 * usage over all keys plus the usage of every window that rolled (tally's
 * roll listener, the baselines' own count) must have grown by exactly what
 * the calls reported as applied. A mismatch (or any call that did not
 * return OK) is a failure and the exit status is 1, except for racy, where
 * the difference is the lost increments it reports. Targets (issue 3,
 * section 3) are reported as PASS or MISS, never asserted.
 *
 * Extra column: racy's lost increments; tally's failed CAS per call and the
 * peak of retired-but-unfreed snapshots (tally_store_stats); and, from
 * 100,000 keys, bytes per record: the growth of VmRSS while the store (or
 * map) is created and filled, divided by the records (tally stores are
 * created with expected_records = K).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "baselines.h"
#include "llm.h"
#include "tally.h"

#define NS_PER_SEC INT64_C(1000000000)
#define HOUR_NS (INT64_C(3600) * NS_PER_SEC)
#define MINUTE_NS (INT64_C(60) * NS_PER_SEC)
#define BIG_MAX (INT64_C(1) << 61)
#define RL_TOKENS 10 /* tokens per tally-rl write; requests: 1 */

#define KEY_LEN 36    /* like a UUID */
#define KEY_STRIDE 40 /* 36 bytes, NUL, padding */
#define SEQ_LEN ((size_t)1 << 21)
#define CHUNK 64            /* calls between two looks at the stop flag */
#define MEM_MIN_KEYS 100000 /* report bytes per record from this many */
#define RACY_ARENA_CAP ((size_t)1 << 30)

/* ------------------------------------------------------------------------ */
/* Names and options                                                        */
/* ------------------------------------------------------------------------ */

enum impl_id {
	I_TALLY,
	I_MUTEX,
	I_RWLOCK,
	I_RACY,
	I_FLOOR_FAA,
	I_FLOOR_ATOMIC,
	I_TALLY_RL,
	I_TALLY_WRITES, /* llm_request only (llm.h) */
	I_TALLY_SW,     /* tally-rl with sliding counters */
	I__COUNT
};

static const char *const impl_names[I__COUNT] = {"tally",
						 "mutex",
						 "rwlock",
						 "racy",
						 "floor-lookup-faa",
						 "floor-atomic",
						 "tally-rl",
						 "tally-writes",
						 "tally-sliding"};

/* tally's rate limits, fixed or sliding: the same calls and checks. */
static bool
is_rl(int impl)
{
	return impl == I_TALLY_RL || impl == I_TALLY_SW;
}

enum op_id {
	O_BUMP,
	O_CHECK,
	O_TRY,
	O_GET,
	O_LLM, /* llm.h: admit across 6 limits, then settle */
	O__COUNT
};

static const char *const op_names[O__COUNT] = {"bump", "check", "try_consume",
					       "get", "llm_request"};

#define MAX_LIST 16

static struct {
	double seconds;
	bool json;
	bool quick;
	int threads[MAX_LIST];
	int n_threads;
	long keys[MAX_LIST];
	int n_keys;
	bool impl[I__COUNT];
	bool op[O__COUNT];
	/* Background activity during tally rows (--with), one pass each. */
	int bg[MAX_LIST];
	long bg_rate[MAX_LIST]; /* removes per second */
	int n_bg;
	long fill; /* extra records in every tally store (--fill) */
} opt;

enum bg_id {
	BG_NONE,
	BG_SWEEP,
	BG_REMOVES
};

static bool
is_write(int op)
{
	return op == O_BUMP || op == O_TRY;
}

/* ------------------------------------------------------------------------ */
/* Time, memory, random numbers                                             */
/* ------------------------------------------------------------------------ */

static int64_t
mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

static void
sleep_ns(int64_t ns)
{
	struct timespec ts = {(time_t)(ns / NS_PER_SEC),
			      (long)(ns % NS_PER_SEC)};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Resident set size in bytes, from /proc/self/status; -1 if unknown. */
static long long
rss_bytes(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long long kib = -1;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL) {
		if (strncmp(line, "VmRSS:", 6) == 0) {
			kib = strtoll(line + 6, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kib < 0 ? -1 : kib * 1024;
}

/* RSS after giving freed heap memory back, so that what the next build
 * allocates is counted even where it reuses freed pages. */
static long long
rss_settled(void)
{
#if defined(__GLIBC__)
	malloc_trim(0);
#endif
	return rss_bytes();
}

static uint64_t
splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void *
xmalloc(size_t size)
{
	void *p = malloc(size);

	if (p == NULL) {
		fprintf(stderr, "tally-bench: out of memory (%zu bytes)\n",
			size);
		exit(1);
	}
	return p;
}

/* ------------------------------------------------------------------------ */
/* Keys                                                                     */
/* ------------------------------------------------------------------------ */

struct keyset {
	size_t n;
	char *arena;       /* n keys, KEY_STRIDE bytes apart */
	const char **keys; /* n pointers into arena */
	const char **seq;  /* SEQ_LEN pointers: the calls' keys */
};

/*
 * UUID-shaped keys, 8-4-4-4-12 hex digits: random, except the last group,
 * which is the index times an odd constant mod 2^48 (a bijection), so keys
 * are distinct.
 */
static void
keyset_init(struct keyset *ks, size_t n)
{
	uint64_t rng = 0x7a11ba5e + n;

	ks->n = n;
	ks->arena = xmalloc(n * KEY_STRIDE);
	ks->keys = xmalloc(n * sizeof *ks->keys);
	ks->seq = xmalloc(SEQ_LEN * sizeof *ks->seq);
	for (size_t i = 0; i < n; i++) {
		char *k = ks->arena + i * KEY_STRIDE;
		uint64_t a = splitmix64(&rng);
		uint64_t b =
			((uint64_t)i * 0x9e3779b97f4bull) & 0xffffffffffffull;

		snprintf(k, KEY_STRIDE, "%08x-%04x-%04x-%04x-%012" PRIx64,
			 (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xffffu,
			 (unsigned)a & 0xffffu,
			 (unsigned)(splitmix64(&rng) & 0xffffu), b);
		if (strlen(k) != KEY_LEN)
			abort();
		ks->keys[i] = k;
	}
	for (size_t i = 0; i < SEQ_LEN; i++)
		ks->seq[i] = ks->keys[splitmix64(&rng) % n];
}

static void
keyset_free(struct keyset *ks)
{
	free(ks->arena);
	free(ks->keys);
	free(ks->seq);
	memset(ks, 0, sizeof *ks);
}

/* ------------------------------------------------------------------------ */
/* Implementations: setup, sums, teardown                                   */
/* ------------------------------------------------------------------------ */

/* Usage of every window a tally store rolled, by counter id. */
struct rolled {
	_Atomic int64_t usage[3];
};

static void
on_roll(const tally_roll *roll, void *ctx)
{
	struct rolled *r = ctx;

	if (roll->counter < 3)
		atomic_fetch_add(&r->usage[roll->counter], roll->usage_before);
}

struct target {
	int impl;
	const struct keyset *ks;
	tally_store *store;
	struct rolled rolled;
	struct bl_map *map;
	_Atomic int64_t *counters; /* floor-atomic */
	_Atomic int64_t **cseq;    /* floor-atomic: seq, pre-resolved */
	double bytes_per_record;   /* < 0: not measured */
	bool is_llm;               /* llm_request rows (llm.h) */
	struct llm_target llm;
};

/* Key of the i-th extra record (--fill) or churned record (--with
 * removes): 36 bytes, never one of a keyset's (those contain '-' at 8). */
static void
aux_key(char *buf, const char *what, long i)
{
	snprintf(buf, KEY_STRIDE, "%s%030ld", what, i);
}

/* --fill: records that are never written, only swept over. */
static bool
fill_store(tally_store *s, int impl)
{
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;
	char key[KEY_STRIDE];

	if (impl != I_TALLY)
		return true;
	c.max_limit = BIG_MAX;
	c.period.count = HOUR_NS;
	c.period.unit = TALLY_PERIOD_FIXED;
	c.calendar_aligned = true;
	for (long i = 0; i < opt.fill; i++) {
		int rc;

		aux_key(key, "fill::", i);
		if ((rc = tally_budget_upsert(s, key, &c, NULL)) !=
		    TALLY_CREATED) {
			fprintf(stderr, "tally-bench: --fill: %s\n",
				tally_strerror(rc));
			return false;
		}
	}
	return true;
}

static bool
target_setup(struct target *t, int impl, const struct keyset *ks)
{
	long long before = -1, after;

	memset(t, 0, sizeof *t);
	t->impl = impl;
	t->ks = ks;
	t->bytes_per_record = -1;
	if (ks->n >= MEM_MIN_KEYS && impl != I_FLOOR_ATOMIC)
		before = rss_settled();

	switch (impl) {
	case I_TALLY:
	case I_TALLY_RL:
	case I_TALLY_SW: {
		tally_store_options o = TALLY_STORE_OPTIONS_INIT;
		int rc;

		for (int i = 0; i < 3; i++)
			atomic_init(&t->rolled.usage[i], 0);
		o.expected_records = ks->n + (size_t)opt.fill;
		o.on_roll = on_roll;
		o.on_roll_ctx = &t->rolled;
		if ((rc = tally_store_create(&t->store, &o)) != TALLY_OK) {
			fprintf(stderr, "tally-bench: tally_store_create: %s\n",
				tally_strerror(rc));
			return false;
		}
		for (size_t i = 0; i < ks->n; i++) {
			if (impl == I_TALLY) {
				tally_budget_config c =
					TALLY_BUDGET_CONFIG_INIT;

				c.max_limit = BIG_MAX;
				c.period.count = HOUR_NS;
				c.period.unit = TALLY_PERIOD_FIXED;
				c.calendar_aligned = true;
				rc = tally_budget_upsert(t->store, ks->keys[i],
							 &c, NULL);
			} else {
				tally_ratelimit_config c =
					TALLY_RATELIMIT_CONFIG_INIT;

				c.tokens.has_max = true;
				c.tokens.max = BIG_MAX;
				c.tokens.period.count = HOUR_NS;
				c.tokens.period.unit = TALLY_PERIOD_FIXED;
				c.requests.has_max = true;
				c.requests.max = BIG_MAX;
				c.requests.period.count = MINUTE_NS;
				c.requests.period.unit = TALLY_PERIOD_FIXED;
				c.calendar_aligned = true;
				if (impl == I_TALLY_SW) {
					c.tokens_algorithm =
						TALLY_ALGORITHM_SLIDING;
					c.requests_algorithm =
						TALLY_ALGORITHM_SLIDING;
				}
				rc = tally_ratelimit_upsert(
					t->store, ks->keys[i], &c, NULL);
			}
			if (rc != TALLY_CREATED) {
				fprintf(stderr, "tally-bench: upsert: %s\n",
					tally_strerror(rc));
				return false;
			}
		}
		if (!fill_store(t->store, impl))
			return false;
		break;
	}
	case I_MUTEX:
	case I_RWLOCK:
	case I_RACY:
	case I_FLOOR_FAA: {
		static const enum bl_impl kind[] = {[I_MUTEX] = BL_MUTEX,
						    [I_RWLOCK] = BL_RWLOCK,
						    [I_RACY] = BL_RACY,
						    [I_FLOOR_FAA] = BL_FLOOR};

		t->map = bl_create(kind[impl], ks->keys, ks->n, BIG_MAX,
				   HOUR_NS);
		if (t->map == NULL) {
			fprintf(stderr, "tally-bench: out of memory\n");
			return false;
		}
		break;
	}
	case I_FLOOR_ATOMIC:
		t->counters = xmalloc(ks->n * sizeof *t->counters);
		for (size_t i = 0; i < ks->n; i++)
			atomic_init(&t->counters[i], 0);
		t->cseq = xmalloc(SEQ_LEN * sizeof *t->cseq);
		for (size_t i = 0; i < SEQ_LEN; i++)
			t->cseq[i] =
				&t->counters[(size_t)(ks->seq[i] - ks->arena) /
					     KEY_STRIDE];
		break;
	}

	if (before >= 0 && (after = rss_bytes()) >= 0)
		t->bytes_per_record = (double)(after - before) / (double)ks->n;
	if (t->map != NULL)
		bl_warm(t->map);
	return true;
}

/*
 * One untimed bump of every key, in key order, from this thread, so that
 * every implementation starts its rows as a running gateway would: each
 * record written once, and the memory that writes recycle (tally's
 * snapshots, racy's copies) already touched, rather than the first touch
 * of fresh pages (very slow under some hypervisors). False on an error.
 */
static bool
warm_up(struct target *t)
{
	const struct keyset *ks = t->ks;
	int rc = TALLY_OK;

	for (size_t i = 0; i < ks->n && rc == TALLY_OK; i++) {
		const char *key = ks->keys[i];

		switch (t->impl) {
		case I_TALLY:
			rc = tally_budget_bump(t->store, key, 1, NULL);
			break;
		case I_TALLY_RL:
		case I_TALLY_SW:
			rc = tally_ratelimit_bump(t->store, key, RL_TOKENS, 1,
						  NULL);
			break;
		case I_MUTEX:
			rc = bl_mutex_bump(t->map, key, 1);
			break;
		case I_RWLOCK:
			rc = bl_rwlock_bump(t->map, key, 1);
			break;
		case I_RACY:
			rc = bl_racy_bump(t->map, key, 1);
			break;
		case I_FLOOR_FAA:
			rc = bl_floor_add(t->map, key, 1);
			break;
		default:
			atomic_fetch_add(&t->counters[i], 1);
			break;
		}
	}
	if (t->map != NULL)
		bl_quiesce(t->map); /* this thread leaves the racy run */
	if (rc != TALLY_OK)
		fprintf(stderr, "tally-bench: %s: warm-up bump: %s\n",
			impl_names[t->impl], tally_strerror(rc));
	return rc == TALLY_OK;
}

static void
target_teardown(struct target *t)
{
	tally_store_destroy(t->store);
	bl_destroy(t->map);
	free(t->counters);
	free(t->cseq);
	memset(t, 0, sizeof *t);
}

/*
 * What the implementation holds, for the conservation check: usage summed
 * over keys plus rolled usage. tally-rl: sums[0] tokens, sums[1] requests.
 * Quiescent only. False if a key could not be read.
 */
static bool
target_sum(struct target *t, int64_t sums[2])
{
	const struct keyset *ks = t->ks;

	sums[0] = sums[1] = 0;
	switch (t->impl) {
	case I_TALLY:
		sums[0] = atomic_load(&t->rolled.usage[TALLY_COUNTER_BUDGET]);
		for (size_t i = 0; i < ks->n; i++) {
			tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
			if (tally_budget_get(t->store, ks->keys[i], &v) !=
			    TALLY_OK)
				return false;
			sums[0] += v.usage;
		}
		return true;
	case I_TALLY_RL:
	case I_TALLY_SW:
		sums[0] = atomic_load(&t->rolled.usage[TALLY_COUNTER_TOKENS]);
		sums[1] = atomic_load(&t->rolled.usage[TALLY_COUNTER_REQUESTS]);
		for (size_t i = 0; i < ks->n; i++) {
			tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
			if (tally_ratelimit_get(t->store, ks->keys[i], &v) !=
			    TALLY_OK)
				return false;
			sums[0] += v.tokens.usage;
			sums[1] += v.requests.usage;
		}
		return true;
	case I_FLOOR_ATOMIC:
		for (size_t i = 0; i < ks->n; i++)
			sums[0] += atomic_load(&t->counters[i]);
		return true;
	default:
		sums[0] = bl_sum(t->map);
		return true;
	}
}

/* ------------------------------------------------------------------------ */
/* Workers                                                                  */
/* ------------------------------------------------------------------------ */

static atomic_uint g_ready;
static atomic_bool g_go;
static atomic_bool g_stop;

struct worker {
	pthread_t tid;
	struct target *t;
	int op;
	size_t start;
	bool timed; /* count slow chunks (background rows) */
	uint64_t ops;
	uint64_t ok;   /* calls that returned TALLY_OK */
	uint64_t slow; /* chunks of CHUNK calls that took over 1 ms */
	int64_t end_ns;
	struct llm_result lr; /* llm_request rows */
	char pad[64];
};

/* The timed loop: CALL is evaluated once per key, its truth counted. In
 * background rows each chunk is timed too (one clock read per chunk). */
#define LOOP(CALL)                                                             \
	do {                                                                   \
		int64_t last_ = w->timed ? mono_now() : 0;                     \
		while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) { \
			for (unsigned j_ = 0; j_ < CHUNK; j_++) {              \
				const char *key = seq[i++ & mask];             \
				ok += (CALL);                                  \
			}                                                      \
			ops += CHUNK;                                          \
			if (w->timed) {                                        \
				int64_t now_ = mono_now();                     \
				slow += now_ - last_ > 1000000;                \
				last_ = now_;                                  \
			}                                                      \
		}                                                              \
	} while (0)

/* The same with the pre-resolved counter of each key instead. */
#define LOOP_COUNTER(CALL)                                                     \
	do {                                                                   \
		while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) { \
			for (unsigned j_ = 0; j_ < CHUNK; j_++) {              \
				_Atomic int64_t *c = cseq[i++ & mask];         \
				ok += (CALL);                                  \
			}                                                      \
			ops += CHUNK;                                          \
		}                                                              \
	} while (0)

#define CASE(impl, op) ((impl)*O__COUNT + (op))

static void
run_loop(struct worker *w)
{
	struct target *t = w->t;
	const char *const *seq = t->ks != NULL ? t->ks->seq : NULL;
	_Atomic int64_t *const *cseq = t->cseq;
	const size_t mask = SEQ_LEN - 1;
	tally_store *s = t->store;
	struct bl_map *m = t->map;
	tally_budget_view bv = TALLY_BUDGET_VIEW_INIT;
	tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;
	struct bl_view v;
	int64_t x;
	uint64_t ops = 0, ok = 0, slow = 0;
	size_t i = w->start;

	if (t->is_llm) {
		llm_run(&t->llm, w->start, &g_stop, CHUNK, &w->lr);
		w->ops = w->lr.requests;
		w->ok = w->lr.ok;
		return;
	}
	switch (CASE(t->impl, w->op)) {
	case CASE(I_TALLY, O_BUMP):
		LOOP(tally_budget_bump(s, key, 1, NULL) == TALLY_OK);
		break;
	case CASE(I_TALLY, O_CHECK):
		LOOP(tally_budget_check(s, key, NULL) == TALLY_OK);
		break;
	case CASE(I_TALLY, O_TRY):
		LOOP(tally_budget_try_consume(s, key, 1, NULL) == TALLY_OK);
		break;
	case CASE(I_TALLY, O_GET):
		LOOP(tally_budget_get(s, key, &bv) == TALLY_OK);
		break;

	case CASE(I_TALLY_RL, O_BUMP):
	case CASE(I_TALLY_SW, O_BUMP):
		LOOP(tally_ratelimit_bump(s, key, RL_TOKENS, 1, NULL) ==
		     TALLY_OK);
		break;
	case CASE(I_TALLY_RL, O_CHECK):
	case CASE(I_TALLY_SW, O_CHECK):
		LOOP(tally_ratelimit_check(s, key, NULL, NULL) == TALLY_OK);
		break;
	case CASE(I_TALLY_RL, O_TRY):
	case CASE(I_TALLY_SW, O_TRY):
		LOOP(tally_ratelimit_try_consume(s, key, RL_TOKENS, 1, NULL,
						 NULL) == TALLY_OK);
		break;
	case CASE(I_TALLY_RL, O_GET):
	case CASE(I_TALLY_SW, O_GET):
		LOOP(tally_ratelimit_get(s, key, &rv) == TALLY_OK);
		break;

	case CASE(I_MUTEX, O_BUMP):
		LOOP(bl_mutex_bump(m, key, 1) == TALLY_OK);
		break;
	case CASE(I_MUTEX, O_CHECK):
		LOOP(bl_mutex_check(m, key) == TALLY_OK);
		break;
	case CASE(I_MUTEX, O_TRY):
		LOOP(bl_mutex_try_consume(m, key, 1) == TALLY_OK);
		break;
	case CASE(I_MUTEX, O_GET):
		LOOP(bl_mutex_get(m, key, &v) == TALLY_OK);
		break;

	case CASE(I_RWLOCK, O_BUMP):
		LOOP(bl_rwlock_bump(m, key, 1) == TALLY_OK);
		break;
	case CASE(I_RWLOCK, O_CHECK):
		LOOP(bl_rwlock_check(m, key) == TALLY_OK);
		break;
	case CASE(I_RWLOCK, O_TRY):
		LOOP(bl_rwlock_try_consume(m, key, 1) == TALLY_OK);
		break;
	case CASE(I_RWLOCK, O_GET):
		LOOP(bl_rwlock_get(m, key, &v) == TALLY_OK);
		break;

	case CASE(I_RACY, O_BUMP):
		LOOP(bl_racy_bump(m, key, 1) == TALLY_OK);
		break;
	case CASE(I_RACY, O_CHECK):
		LOOP(bl_racy_check(m, key) == TALLY_OK);
		break;
	case CASE(I_RACY, O_TRY):
		LOOP(bl_racy_try_consume(m, key, 1) == TALLY_OK);
		break;
	case CASE(I_RACY, O_GET):
		LOOP(bl_racy_get(m, key, &v) == TALLY_OK);
		break;

	case CASE(I_FLOOR_FAA, O_BUMP):
	case CASE(I_FLOOR_FAA, O_TRY):
		LOOP(bl_floor_add(m, key, 1) == TALLY_OK);
		break;
	case CASE(I_FLOOR_FAA, O_CHECK):
	case CASE(I_FLOOR_FAA, O_GET):
		LOOP(bl_floor_load(m, key, &x) == TALLY_OK);
		break;

	case CASE(I_FLOOR_ATOMIC, O_BUMP):
	case CASE(I_FLOOR_ATOMIC, O_TRY):
		LOOP_COUNTER(atomic_fetch_add(c, 1) >= 0);
		break;
	case CASE(I_FLOOR_ATOMIC, O_CHECK):
	case CASE(I_FLOOR_ATOMIC, O_GET):
		LOOP_COUNTER(atomic_load_explicit(c, memory_order_acquire) >=
			     0);
		break;
	default:
		abort();
	}
	w->ops = ops;
	w->ok = ok;
	w->slow = slow;
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct target *t = w->t;

	/* Register the thread with the store before the clock starts (a
	 * failure shows again in the timed calls, which are all checked). */
	if (t->is_llm) {
		if (!llm_register(&t->llm))
			w->ok = 0;
	} else if (t->impl == I_TALLY) {
		tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
		if (tally_budget_get(t->store, t->ks->keys[0], &v) != TALLY_OK)
			w->ok = 0;
	} else if (is_rl(t->impl)) {
		tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
		if (tally_ratelimit_get(t->store, t->ks->keys[0], &v) !=
		    TALLY_OK)
			w->ok = 0;
	}
	atomic_fetch_add(&g_ready, 1);
	while (!atomic_load(&g_go))
		sched_yield();
	run_loop(w);
	w->end_ns = mono_now();
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Rows                                                                     */
/* ------------------------------------------------------------------------ */

struct row {
	int impl, op, threads;
	long keys;
	double ns_per_op, mops;
	uint64_t ops;
	bool has_lost;
	int64_t lost;
	double lost_pct;
	double bytes_per_record; /* < 0: not measured */
	double retries_per_op;   /* tally writes: failed CAS per call */
	uint64_t peak_pending;   /* tally: retired snapshots not yet freed */
	bool has_stats;
	bool failed;
	int bg;            /* background activity (BG_*) */
	double bg_per_sec; /* sweeps or removes it did per second */
	uint64_t slow;     /* chunks of CHUNK calls that took over 1 ms */
	/* llm_request rows: units settled beyond the holds, per request;
	 * tally: holds undone after a refusal in the hold pass. */
	double overdraft_per_op;
	uint64_t compensations;
};

static struct row *rows;
static size_t n_rows, cap_rows;
static bool any_failure;

static struct row *
row_add(void)
{
	if (n_rows == cap_rows) {
		cap_rows = cap_rows ? cap_rows * 2 : 256;
		rows = realloc(rows, cap_rows * sizeof *rows);
		if (rows == NULL) {
			fprintf(stderr, "tally-bench: out of memory\n");
			exit(1);
		}
	}
	memset(&rows[n_rows], 0, sizeof rows[n_rows]);
	return &rows[n_rows++];
}

static const struct row *
row_find(int impl, int op, int threads, long keys)
{
	for (size_t i = 0; i < n_rows; i++) {
		const struct row *r = &rows[i];

		if (r->impl == impl && r->op == op && r->threads == threads &&
		    r->keys == keys && r->bg == BG_NONE)
			return r;
	}
	return NULL;
}

static FILE *
human_out(void)
{
	return opt.json ? stderr : stdout;
}

/* What one read of the store clock costs here: tally and the lock and
 * racy baselines pay it once per write or check; the floors and get never
 * do. */
static double
clock_cost_ns(void)
{
	struct timespec ts;
	const int n = 50000;
	int64_t best = INT64_MAX;

	/* The fastest of 20 tries: the others were interrupted. */
	for (int k = 0; k < 20; k++) {
		int64_t t0 = mono_now(), dt;

		for (int i = 0; i < n; i++)
			clock_gettime(CLOCK_REALTIME, &ts);
		if ((dt = mono_now() - t0) < best)
			best = dt;
	}
	return (double)best / n;
}

static void
print_header(void)
{
	FILE *f = human_out();

	fprintf(f,
		"tally-bench %s: %.2f s per row; ns/op = elapsed x threads / "
		"ops; x tally = ns/op over tally's ns/op\n"
		"for the same op, threads and keys (above 1: slower than "
		"tally). Keys: 36-byte strings, uniform.\n"
		"clock_gettime(CLOCK_REALTIME): %.1f ns per call. tally, "
		"mutex, rwlock and racy read CLOCK_REALTIME_COARSE\n"
		"per write and check, and CLOCK_REALTIME only within 1 s of a "
		"window's end; the floors never read a clock.\n\n",
		tally_version_string(), opt.seconds, clock_cost_ns());
	fprintf(f, "%-17s %-11s %7s %8s %9s %9s %8s  %s\n", "impl", "op",
		"threads", "keys", "ns/op", "Mops/s", "x tally", "extra");
	fflush(f);
}

static void
print_row(const struct row *r)
{
	FILE *f = human_out();
	/* tally-rl rows too are compared with tally's budgets; sliding ones
	 * with tally-rl's (fixed windows). */
	const struct row *base =
		row_find(r->impl == I_TALLY_SW ? I_TALLY_RL : I_TALLY, r->op,
			 r->threads, r->keys);
	char ratio[32] = "-";
	char extra[192] = "";
	size_t n = 0;

	if (base != NULL && base->ns_per_op > 0)
		snprintf(ratio, sizeof ratio, "%.2f",
			 r->ns_per_op / base->ns_per_op);
	if (r->has_lost)
		n += (size_t)snprintf(extra + n, sizeof extra - n,
				      "lost %" PRId64 " (%.1f%%) ", r->lost,
				      r->lost_pct);
	if (r->has_stats && (is_write(r->op) || r->op == O_LLM))
		n += (size_t)snprintf(
			extra + n, sizeof extra - n,
			"CAS retries/op %.3f, peak pending %" PRIu64 " ",
			r->retries_per_op, r->peak_pending);
	if (r->op == O_LLM) {
		n += (size_t)snprintf(extra + n, sizeof extra - n,
				      "overdraft units/request %.0f ",
				      r->overdraft_per_op);
		if (r->has_stats)
			n += (size_t)snprintf(extra + n, sizeof extra - n,
					      "compensations %" PRIu64 " ",
					      r->compensations);
	}
	if (r->bytes_per_record >= 0)
		n += (size_t)snprintf(extra + n, sizeof extra - n,
				      "%.1f B/record ", r->bytes_per_record);
	if (r->bg == BG_SWEEP)
		n += (size_t)snprintf(extra + n, sizeof extra - n,
				      "with sweep (%.1f sweeps/s), ",
				      r->bg_per_sec);
	if (r->bg == BG_REMOVES)
		n += (size_t)snprintf(extra + n, sizeof extra - n,
				      "with removes (%.0f/s), ", r->bg_per_sec);
	if (r->bg != BG_NONE)
		n += (size_t)snprintf(extra + n, sizeof extra - n,
				      "%" PRIu64
				      " chunks of %u calls over 1 ms ",
				      r->slow, CHUNK);
	if (r->failed)
		n += (size_t)snprintf(extra + n, sizeof extra - n, "FAIL ");
	while (n > 0 && n < sizeof extra && extra[n - 1] == ' ')
		extra[--n] = '\0';
	fprintf(f, "%-17s %-11s %7d %8ld %9.1f %9.3f %8s  %s\n",
		impl_names[r->impl], op_names[r->op], r->threads, r->keys,
		r->ns_per_op, r->mops, ratio, extra);
	fflush(f);
}

static void
print_json(void)
{
	bool first = true;

	printf("[");
	for (size_t i = 0; i < n_rows; i++) {
		const struct row *r = &rows[i];

		if (is_rl(r->impl) || r->bg != BG_NONE)
			continue;
		printf("%s\n  {\"impl\": \"%s\", \"op\": \"%s\", "
		       "\"threads\": %d, \"keys\": %ld, \"ns_per_op\": %.3f, "
		       "\"mops\": %.4f",
		       first ? "" : ",", impl_names[r->impl], op_names[r->op],
		       r->threads, r->keys, r->ns_per_op, r->mops);
		if (r->has_lost)
			printf(", \"lost\": %" PRId64, r->lost);
		if (r->bytes_per_record >= 0)
			printf(", \"bytes_per_record\": %.1f",
			       r->bytes_per_record);
		printf("}");
		first = false;
	}
	printf("\n]\n");
}

/* ------------------------------------------------------------------------ */
/* Background activity (--with)                                             */
/* ------------------------------------------------------------------------ */

static int g_bg;       /* of the pass being run */
static long g_bg_rate; /* BG_REMOVES: per second */
static atomic_bool g_bg_stop;

struct bg {
	pthread_t tid;
	struct target *t;
	uint64_t done; /* sweeps, or removes */
	int rc;        /* first error */
	int64_t t0, t1;
};

/*
 * BG_SWEEP: tally_sweep in a loop. BG_REMOVES: g_bg_rate times a second,
 * create and remove one of 1,024 keys of its own (so the measured keys and
 * their sums are untouched), paced by the clock.
 */
static void *
bg_main(void *arg)
{
	struct bg *b = arg;
	tally_store *s = b->t->store;
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;
	char key[KEY_STRIDE];

	c.max_limit = BIG_MAX;
	b->t0 = mono_now();
	while (!atomic_load(&g_bg_stop) && b->rc == TALLY_OK) {
		if (g_bg == BG_SWEEP) {
			size_t n;

			b->rc = tally_sweep(s, NULL, NULL, &n);
			b->done++;
			continue;
		}
		while ((double)b->done <
		       (double)(mono_now() - b->t0) * (double)g_bg_rate / 1e9) {
			int rc;

			aux_key(key, "churn:", (long)(b->done % 1024));
			if ((rc = tally_budget_upsert(s, key, &c, NULL)) !=
				    TALLY_CREATED ||
			    (rc = tally_budget_remove(s, key, NULL)) !=
				    TALLY_OK) {
				b->rc = rc;
				break;
			}
			b->done++;
		}
		sleep_ns(20000);
	}
	b->t1 = mono_now();
	return NULL;
}

/* One row: threads x op on t, for opt.seconds. */
static void
run_row(struct target *t, int op, int threads)
{
	struct worker *w = xmalloc((size_t)threads * sizeof *w);
	int64_t before[2] = {0, 0}, after[2] = {0, 0};
	int64_t llm_before[3] = {0, 0, 0}, llm_after[3], llm_held[3];
	struct llm_result lr = {0};
	int64_t t0, t1 = 0, budget = (int64_t)(opt.seconds * 1e9);
	uint64_t ops = 0, ok = 0;
	tally_stats st0 = TALLY_STATS_INIT;
	tally_stats st1 = TALLY_STATS_INIT;
	struct row *r;
	struct bg bg = {0};
	uint64_t slow = 0;
	bool with_bg = g_bg != BG_NONE && t->impl == I_TALLY;
	double elapsed;

	if (t->store != NULL && tally_store_stats(t->store, &st0) != TALLY_OK)
		memset(&st0, 0, sizeof st0);
	if (is_write(op) && !target_sum(t, before)) {
		fprintf(stderr, "tally-bench: %s: cannot read a key\n",
			impl_names[t->impl]);
		any_failure = true;
	}
	if (t->is_llm && !llm_sums(&t->llm, llm_before, llm_held)) {
		fprintf(stderr, "tally-bench: %s: cannot read a record\n",
			impl_names[t->impl]);
		any_failure = true;
	}
	atomic_store(&g_ready, 0);
	atomic_store(&g_go, false);
	atomic_store(&g_stop, false);
	for (int i = 0; i < threads; i++) {
		memset(&w[i], 0, sizeof w[i]);
		w[i].t = t;
		w[i].op = op;
		w[i].start = (size_t)i * ((t->is_llm ? LLM_SEQ : SEQ_LEN) /
					  (size_t)threads);
		w[i].timed = with_bg;
		if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0) {
			fprintf(stderr, "tally-bench: pthread_create failed\n");
			exit(1);
		}
	}
	while (atomic_load(&g_ready) < (unsigned)threads)
		sleep_ns(100000);
	if (with_bg) {
		bg.t = t;
		atomic_store(&g_bg_stop, false);
		if (pthread_create(&bg.tid, NULL, bg_main, &bg) != 0) {
			fprintf(stderr, "tally-bench: pthread_create failed\n");
			exit(1);
		}
	}
	t0 = mono_now();
	atomic_store(&g_go, true);
	for (;;) {
		int64_t left = budget - (mono_now() - t0);

		if (left <= 0)
			break;
		sleep_ns(left < 10000000 ? left : 10000000);
		if (t->map != NULL && bl_arena_bytes(t->map) > RACY_ARENA_CAP)
			break; /* racy copies: enough memory for one row */
	}
	atomic_store(&g_stop, true);
	for (int i = 0; i < threads; i++) {
		pthread_join(w[i].tid, NULL);
		ops += w[i].ops;
		ok += w[i].ok;
		slow += w[i].slow;
		lr.requests += w[i].lr.requests;
		lr.ok += w[i].lr.ok;
		lr.tokens += w[i].lr.tokens;
		lr.overdraft += w[i].lr.overdraft;
		if (w[i].end_ns > t1)
			t1 = w[i].end_ns;
	}
	free(w);
	if (with_bg) {
		atomic_store(&g_bg_stop, true);
		pthread_join(bg.tid, NULL);
	}
	elapsed = (double)(t1 - t0) / 1e9;

	r = row_add();
	r->impl = t->impl;
	r->op = op;
	r->threads = threads;
	r->keys = t->is_llm ? LLM_KEYS : (long)t->ks->n;
	r->ops = ops;
	r->ns_per_op = elapsed * 1e9 * threads / (double)ops;
	r->mops = (double)ops / elapsed / 1e6;
	r->bytes_per_record = t->bytes_per_record;
	r->bg = with_bg ? g_bg : BG_NONE;
	r->slow = slow;
	if (with_bg) {
		r->bg_per_sec = (double)bg.done * 1e9 /
				(double)(bg.t1 > bg.t0 ? bg.t1 - bg.t0 : 1);
		if (bg.rc != TALLY_OK) {
			fprintf(stderr, "tally-bench: background: %s\n",
				tally_strerror(bg.rc));
			r->failed = true;
		}
	}
	if (t->store != NULL && tally_store_stats(t->store, &st1) == TALLY_OK) {
		r->has_stats = true;
		r->retries_per_op =
			(double)(st1.cas_retries - st0.cas_retries) /
			(double)ops;
		r->peak_pending = st1.peak_pending;
		r->compensations = st1.compensations - st0.compensations;
		if (t->is_llm)
			lr.overdraft = (int64_t)(st1.overdraft_units -
						 st0.overdraft_units);
	}
	if (t->is_llm)
		r->overdraft_per_op =
			(double)lr.overdraft / (double)(ops ? ops : 1);

	if (ok != ops && t->impl != I_RACY) {
		fprintf(stderr,
			"tally-bench: %s %s: %" PRIu64 " of %" PRIu64
			" calls did not return OK\n",
			impl_names[t->impl], op_names[op], ops - ok, ops);
		r->failed = true;
	}
	if (t->is_llm) {
		int64_t want[3];

		llm_expected(&lr, want);
		if (!llm_sums(&t->llm, llm_after, llm_held)) {
			r->failed = true;
		} else {
			for (unsigned c = 0; c < 3; c++) {
				if (llm_after[c] - llm_before[c] == want[c] &&
				    llm_held[c] == 0)
					continue;
				fprintf(stderr,
					"tally-bench: %s llm_request: counter "
					"%u: settled %" PRId64
					", used grew by %" PRId64
					", held %" PRId64 " at the end\n",
					impl_names[t->impl], c, want[c],
					llm_after[c] - llm_before[c],
					llm_held[c]);
				r->failed = true;
			}
		}
	}
	if (is_write(op)) {
		int64_t applied = (int64_t)ok, delta;

		if (!target_sum(t, after)) {
			r->failed = true;
		} else if (is_rl(t->impl)) {
			if (after[0] - before[0] != applied * RL_TOKENS ||
			    after[1] - before[1] != applied) {
				fprintf(stderr,
					"tally-bench: %s %s: applied "
					"%" PRId64 " calls, tokens grew by "
					"%" PRId64 ", requests by %" PRId64
					"\n",
					impl_names[t->impl], op_names[op],
					applied, after[0] - before[0],
					after[1] - before[1]);
				r->failed = true;
			}
		} else if ((delta = after[0] - before[0]) != applied) {
			if (t->impl == I_RACY) {
				r->has_lost = true;
				r->lost = applied - delta;
				r->lost_pct = 100.0 * (double)r->lost /
					      (double)(applied ? applied : 1);
			} else {
				fprintf(stderr,
					"tally-bench: %s %s: applied %" PRId64
					", usage grew by %" PRId64 "\n",
					impl_names[t->impl], op_names[op],
					applied, delta);
				r->failed = true;
			}
		} else if (t->impl == I_RACY) {
			r->has_lost = true; /* and lost none */
		}
		if (t->map != NULL)
			bl_quiesce(t->map);
	}
	if (r->failed)
		any_failure = true;
	print_row(r);
}

/* ------------------------------------------------------------------------ */
/* Targets (issue 3, section 3)                                             */
/* ------------------------------------------------------------------------ */

static void
target_line(bool measured, bool pass, const char *what, const char *detail)
{
	fprintf(human_out(), "  %-4s  %s%s%s\n",
		!measured ? "----"
		: pass    ? "PASS"
			  : "MISS",
		what, measured ? ": " : " (not measured in this run)",
		measured ? detail : "");
}

/* Tally's ns/op at most `factor` times the floor's. */
static void
target_floor(int threads)
{
	const struct row *t = row_find(I_TALLY, O_BUMP, threads, 1000);
	const struct row *f = row_find(I_FLOOR_FAA, O_BUMP, threads, 1000);
	char what[128], detail[128] = "";
	double x = 0;

	snprintf(what, sizeof what,
		 "bump, 1000 keys, %d thread%s: tally <= 2.0x "
		 "floor-lookup-faa ns/op",
		 threads, threads == 1 ? "" : "s");
	if (t && f) {
		x = t->ns_per_op / f->ns_per_op;
		snprintf(detail, sizeof detail, "%.2fx (%.1f vs %.1f ns/op)", x,
			 t->ns_per_op, f->ns_per_op);
	}
	target_line(t && f, x <= 2.0, what, detail);
}

/* Tally's throughput at least `factor` times the mutex map's. */
static void
target_mutex(long keys, int threads, double factor)
{
	const struct row *t = row_find(I_TALLY, O_BUMP, threads, keys);
	const struct row *m = row_find(I_MUTEX, O_BUMP, threads, keys);
	char what[128], detail[128] = "";
	double x = 0;

	snprintf(what, sizeof what,
		 "bump, %ld key%s, %d thread%s: tally >= %.1fx mutex "
		 "throughput",
		 keys, keys == 1 ? "" : "s", threads, threads == 1 ? "" : "s",
		 factor);
	if (t && m) {
		x = t->mops / m->mops;
		snprintf(detail, sizeof detail, "%.2fx (%.2f vs %.2f Mops/s)",
			 x, t->mops, m->mops);
	}
	target_line(t && m, x >= factor, what, detail);
}

/* The LLM request rows' targets: ns per request at one thread, and the
 * throughput over the mutex map's at two. */
static void
target_llm(void)
{
	const struct row *t1 = row_find(I_TALLY, O_LLM, 1, LLM_KEYS);
	const struct row *t2 = row_find(I_TALLY, O_LLM, 2, LLM_KEYS);
	const struct row *m2 = row_find(I_MUTEX, O_LLM, 2, LLM_KEYS);
	char detail[128] = "";
	double x = 0;

	if (t1 != NULL)
		snprintf(detail, sizeof detail, "%.1f ns/request",
			 t1->ns_per_op);
	target_line(t1 != NULL, t1 && t1->ns_per_op <= 1000.0,
		    "llm_request (admit 6 limits + settle), 1 thread: tally "
		    "<= 1000 ns/request",
		    detail);
	if (t2 && m2) {
		x = t2->mops / m2->mops;
		snprintf(detail, sizeof detail, "%.2fx (%.3f vs %.3f Mops/s)",
			 x, t2->mops, m2->mops);
	}
	target_line(t2 && m2, x >= 2.0,
		    "llm_request, 2 threads: tally >= 2.0x mutex throughput",
		    detail);
}

static void
print_targets(void)
{
	const struct row *mem = NULL, *any = NULL;
	char detail[128] = "";

	fprintf(human_out(),
		"\ntargets (issue 3, section 3; reports, not assertions):\n");
	target_floor(1);
	target_floor(2);
	target_mutex(1000, 1, 1.0);
	target_mutex(1000, 2, 1.5);
	target_mutex(1, 2, 1.5);
	for (size_t i = 0; i < n_rows; i++) {
		if (rows[i].impl != I_TALLY || rows[i].bytes_per_record < 0)
			continue;
		if (rows[i].keys == 1000000)
			mem = &rows[i];
		if (any == NULL || rows[i].keys > any->keys)
			any = &rows[i];
	}
	if (mem != NULL)
		snprintf(detail, sizeof detail,
			 "%.1f B/record (RSS growth / records)",
			 mem->bytes_per_record);
	target_line(mem != NULL, mem && mem->bytes_per_record <= 160.0,
		    "memory, 1000000 budget records with 36-byte keys: <= "
		    "160 B/record",
		    detail);
	if (mem == NULL && any != NULL)
		fprintf(human_out(),
			"        (at %ld records: %.1f B/record)\n", any->keys,
			any->bytes_per_record);
	fprintf(human_out(),
		"  ----  pending snapshots bounded in a 60 s stress run: "
		"reported by tally-stress\n");
	target_llm();
}

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

static void
usage(FILE *f, const char *argv0)
{
	fprintf(f,
		"usage: %s [--seconds S] [--threads LIST] [--keys LIST]\n"
		"          [--impl LIST] [--op LIST] [--json] [--quick]\n"
		"  --seconds S     run time per row (default 0.3)\n"
		"  --threads LIST  thread counts (default 1,2,4)\n"
		"  --keys LIST     key counts (default 1,1000,1000000)\n"
		"  --impl LIST     of tally, mutex, rwlock, racy,\n"
		"                  floor-lookup-faa, floor-atomic, tally-rl,\n"
		"                  tally-writes, tally-sliding\n"
		"                  (default all; tally-rl rows are rate limits,\n"
		"                  tally-sliding ones sliding rate limits, both\n"
		"                  shown in the table only, never in --json;\n"
		"                  tally-writes: llm_request only, its 12\n"
		"                  record writes as plain bumps, a floor)\n"
		"  --op LIST       of bump, check, try_consume, get, "
		"llm_request\n"
		"                  (default all; llm_request: one LLM request\n"
		"                  admitted across 6 limits of a key/team/\n"
		"                  customer hierarchy, then settled, by tally,\n"
		"                  tally-writes, mutex and rwlock, after the\n"
		"                  other rows, on 1000 keys whatever --keys\n"
		"                  says)\n"
		"  --json          a JSON array of rows on stdout (the table "
		"and\n"
		"                  the targets go to stderr)\n"
		"  --quick         0.05 s per row and keys 1,1000,100000 "
		"unless\n"
		"                  --seconds or --keys say otherwise\n"
		"  --with LIST     passes, each with a background thread "
		"during\n"
		"                  tally rows: none, sweep (tally_sweep in a "
		"loop),\n"
		"                  removes=N (N creates and removes per "
		"second of\n"
		"                  other keys; removes=0, the pacing thread "
		"alone, is\n"
		"                  their control); default none. Background "
		"rows are\n"
		"                  in the table only, with the chunks of %u "
		"calls\n"
		"                  that took over 1 ms\n"
		"  --fill N        N more records in every tally store, never "
		"written\n"
		"                  (what a sweep walks over; default 0)\n"
		"Exit status: 0, 1 on a correctness failure, 2 on a usage "
		"error.\n",
		argv0, CHUNK);
}

static void
usage_error(const char *argv0, const char *what, const char *arg)
{
	fprintf(stderr, "%s: invalid %s: '%s'\n", argv0, what, arg);
	usage(stderr, argv0);
	exit(2);
}

/* Comma-separated names into flags; false on an unknown name. */
static bool
parse_names(const char *arg, const char *const *names, int n, bool *flags)
{
	char buf[256], *save = NULL;

	if (strlen(arg) >= sizeof buf)
		return false;
	strcpy(buf, arg);
	memset(flags, 0, (size_t)n * sizeof *flags);
	for (char *tok = strtok_r(buf, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		int i;

		for (i = 0; i < n && strcmp(tok, names[i]) != 0; i++)
			;
		if (i == n)
			return false;
		flags[i] = true;
	}
	for (int i = 0; i < n; i++)
		if (flags[i])
			return true;
	return false;
}

/* Comma-separated integers in [lo, hi]; the count, or -1. */
static int
parse_longs(const char *arg, long lo, long hi, long *out)
{
	const char *p = arg;
	int n = 0;

	while (*p != '\0') {
		char *end;
		long v;

		errno = 0;
		v = strtol(p, &end, 10);
		if (end == p || errno != 0 || v < lo || v > hi ||
		    n == MAX_LIST || (*end != ',' && *end != '\0'))
			return -1;
		out[n++] = v;
		p = *end == ',' ? end + 1 : end;
	}
	return n;
}

/* --with: none, sweep, removes=N, comma-separated. */
static bool
parse_backgrounds(const char *arg)
{
	char buf[256], *save = NULL;

	if (strlen(arg) >= sizeof buf)
		return false;
	strcpy(buf, arg);
	opt.n_bg = 0;
	for (char *tok = strtok_r(buf, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		char *end;

		if (opt.n_bg == MAX_LIST)
			return false;
		opt.bg_rate[opt.n_bg] = 0;
		if (strcmp(tok, "none") == 0) {
			opt.bg[opt.n_bg++] = BG_NONE;
		} else if (strcmp(tok, "sweep") == 0) {
			opt.bg[opt.n_bg++] = BG_SWEEP;
		} else if (strncmp(tok, "removes=", 8) == 0) {
			errno = 0;
			opt.bg_rate[opt.n_bg] = strtol(tok + 8, &end, 10);
			if (end == tok + 8 || *end != '\0' || errno != 0 ||
			    opt.bg_rate[opt.n_bg] < 0 ||
			    opt.bg_rate[opt.n_bg] > 10000000)
				return false;
			opt.bg[opt.n_bg++] = BG_REMOVES;
		} else {
			return false;
		}
	}
	return opt.n_bg > 0;
}

static void
parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"seconds", required_argument, NULL, 's'},
		{"threads", required_argument, NULL, 't'},
		{"keys", required_argument, NULL, 'k'},
		{"impl", required_argument, NULL, 'i'},
		{"op", required_argument, NULL, 'o'},
		{"json", no_argument, NULL, 'j'},
		{"quick", no_argument, NULL, 'q'},
		{"with", required_argument, NULL, 'w'},
		{"fill", required_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	bool have_seconds = false, have_keys = false;
	long tmp[MAX_LIST];
	int c;

	opt.seconds = 0.3;
	opt.n_threads = 3;
	opt.threads[0] = 1;
	opt.threads[1] = 2;
	opt.threads[2] = 4;
	opt.n_keys = 3;
	opt.keys[0] = 1;
	opt.keys[1] = 1000;
	opt.keys[2] = 1000000;
	for (int i = 0; i < I__COUNT; i++)
		opt.impl[i] = true;
	for (int i = 0; i < O__COUNT; i++)
		opt.op[i] = true;

	opt.n_bg = 1;
	opt.bg[0] = BG_NONE;
	while ((c = getopt_long(argc, argv, "s:t:k:i:o:jqw:f:h", longopts,
				NULL)) != -1) {
		char *end;
		int n;

		switch (c) {
		case 's':
			errno = 0;
			opt.seconds = strtod(optarg, &end);
			if (end == optarg || *end != '\0' || errno != 0 ||
			    !(opt.seconds > 0 && opt.seconds <= 3600))
				usage_error(argv[0], "--seconds", optarg);
			have_seconds = true;
			break;
		case 't':
			n = parse_longs(optarg, 1, 256, tmp);
			if (n <= 0)
				usage_error(argv[0], "--threads", optarg);
			opt.n_threads = n;
			for (int i = 0; i < n; i++)
				opt.threads[i] = (int)tmp[i];
			break;
		case 'k':
			n = parse_longs(optarg, 1, 10000000, opt.keys);
			if (n <= 0)
				usage_error(argv[0], "--keys", optarg);
			opt.n_keys = n;
			have_keys = true;
			break;
		case 'i':
			if (!parse_names(optarg, impl_names, I__COUNT,
					 opt.impl))
				usage_error(argv[0], "--impl", optarg);
			break;
		case 'o':
			if (!parse_names(optarg, op_names, O__COUNT, opt.op))
				usage_error(argv[0], "--op", optarg);
			break;
		case 'j':
			opt.json = true;
			break;
		case 'q':
			opt.quick = true;
			break;
		case 'w':
			if (!parse_backgrounds(optarg))
				usage_error(argv[0], "--with", optarg);
			break;
		case 'f':
			errno = 0;
			opt.fill = strtol(optarg, &end, 10);
			if (end == optarg || *end != '\0' || errno != 0 ||
			    opt.fill < 0 || opt.fill > 10000000)
				usage_error(argv[0], "--fill", optarg);
			break;
		case 'h':
			usage(stdout, argv[0]);
			exit(0);
		default:
			usage(stderr, argv[0]);
			exit(2);
		}
	}
	if (optind < argc)
		usage_error(argv[0], "argument", argv[optind]);
	if (opt.quick) {
		if (!have_seconds)
			opt.seconds = 0.05;
		if (!have_keys) {
			opt.keys[2] = 100000;
		}
	}
}

/* The llm_request rows (llm.h): tally, mutex and rwlock on one
 * hierarchy of 1,000 keys, after every other pass. */
static void
run_llm_pass(void)
{
	static const int impls[] = {I_TALLY, I_TALLY_WRITES, I_MUTEX, I_RWLOCK};
	static const enum llm_impl kinds[] = {LLM_TALLY, LLM_TALLY_WRITES,
					      LLM_MUTEX, LLM_RWLOCK};
	struct llm_hier *h;
	bool any = false;

	for (unsigned k = 0; k < 4; k++)
		any |= opt.impl[impls[k]];
	if (!opt.op[O_LLM] || !any)
		return;
	if ((h = llm_hier_create()) == NULL) {
		fprintf(stderr, "tally-bench: out of memory\n");
		exit(1);
	}
	g_bg = BG_NONE;
	fprintf(human_out(),
		"\nllm_request: one request = admit its estimate across %d "
		"limits (3 budgets, 3 rate limits: its\n"
		"API key's, team's and customer's), then settle an actual of "
		"0.5x-1.5x; %d keys drawn zipf(1.0),\n"
		"%d teams, %d customers (%d records); ns/op = per request; "
		"mutex: one lock, rwlock: a lock per record\n",
		LLM_LIMITS, LLM_KEYS, LLM_TEAMS, LLM_CUSTOMERS, LLM_RECORDS);
	for (unsigned k = 0; k < 4; k++) {
		struct target t;

		if (!opt.impl[impls[k]])
			continue;
		memset(&t, 0, sizeof t);
		t.impl = impls[k];
		t.is_llm = true;
		t.bytes_per_record = -1;
		if (!llm_setup(&t.llm, kinds[k], h) || !llm_warm(&t.llm)) {
			llm_teardown(&t.llm);
			exit(1);
		}
		t.store = t.llm.store; /* for the stats */
		for (int i = 0; i < opt.n_threads; i++)
			run_row(&t, O_LLM, opt.threads[i]);
		llm_teardown(&t.llm);
	}
	llm_hier_free(h);
}

int
main(int argc, char **argv)
{
	int64_t t_start = mono_now();
	bool key_ops = false;

	parse_args(argc, argv);
	print_header();
	for (int op = 0; op < O__COUNT; op++)
		key_ops |= opt.op[op] && op != O_LLM;
	for (int b = 0; b < opt.n_bg && key_ops; b++) {
		g_bg = opt.bg[b];
		g_bg_rate = opt.bg_rate[b];
		for (int k = 0; k < opt.n_keys; k++) {
			struct keyset ks;

			keyset_init(&ks, (size_t)opt.keys[k]);
			for (int impl = 0; impl < I__COUNT; impl++) {
				struct target t;

				/* Backgrounds are tally's alone. */
				if (!opt.impl[impl] || impl == I_TALLY_WRITES ||
				    (g_bg != BG_NONE && impl != I_TALLY))
					continue;
				if (!target_setup(&t, impl, &ks) ||
				    !warm_up(&t)) {
					target_teardown(&t);
					exit(1);
				}
				for (int op = 0; op < O__COUNT; op++) {
					if (!opt.op[op] || op == O_LLM)
						continue;
					for (int i = 0; i < opt.n_threads; i++)
						run_row(&t, op, opt.threads[i]);
				}
				target_teardown(&t);
			}
			keyset_free(&ks);
			if (k + 1 < opt.n_keys || b + 1 < opt.n_bg)
				fputc('\n', human_out());
		}
	}
	run_llm_pass();
	print_targets();
	fprintf(human_out(), "\n%s in %.1f s\n",
		any_failure ? "FAIL: tally-bench found a correctness failure"
			    : "correctness: every counted write accounted for",
		(double)(mono_now() - t_start) / 1e9);
	if (opt.json)
		print_json();
	free(rows);
	return any_failure ? 1 : 0;
}
