/*
 * Internal declarations shared by the library's source files. Nothing here
 * is part of the public API; symbols are tally__* and hidden.
 */
#ifndef TALLY_INTERNAL_H
#define TALLY_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <ck_epoch.h>
#include <ck_hs.h>
#include <ck_malloc.h>

#include "atomics.h"
#include "period.h"
#include "tally.h"

#if defined(NDEBUG)
#define TALLY_ASSERT(x) ((void)0)
#else
#include <assert.h>
#define TALLY_ASSERT(x) assert(x)
#endif

#define TALLY_KEY_MAX 255

/* ------------------------------------------------------------------------ */
/* Snapshots: immutable once published.                                     */
/* ------------------------------------------------------------------------ */

/*
 * A snapshot carries no reclamation header: retired objects are listed by
 * pointer in per-thread batches (epoch.c), which keeps a budget snapshot at
 * 64 bytes.
 */
struct tally__budget_snap {
	uint64_t version;
	int64_t usage;
	int64_t window_start;
	int64_t window_end; /* smallest boundary > window_start */
	int64_t max_limit;
	int64_t period_count;
	int64_t anchor;
	int16_t offset_min;
	uint8_t period_unit;
	uint8_t aligned;
};

struct tally__counter {
	int64_t usage;
	int64_t window_start;
	int64_t window_end;
	int64_t max;
	int64_t period_count;
	uint8_t period_unit;
	uint8_t has_max;
};

struct tally__rl_snap {
	uint64_t version;
	struct tally__counter c[2]; /* [0] tokens, [1] requests */
	int64_t anchor;
	int16_t offset_min;
	uint8_t aligned;
};

/* The largest snapshot; read paths copy into a stack buffer this big. */
union tally__any_snap {
	struct tally__budget_snap b;
	struct tally__rl_snap r;
};

/* A roll computed by a transition, reported after its CAS succeeds. */
struct tally__roll_note {
	unsigned counter;
	int64_t usage_before;
	int64_t old_window_start;
	int64_t new_window_start;
};

struct tally__rolls {
	unsigned n;
	struct tally__roll_note note[2];
};

/* ------------------------------------------------------------------------ */
/* Pure transitions (budget.c, ratelimit.c). Each reads old, writes next     */
/* (a different buffer), returns a result code, and sets *install when next  */
/* must be installed by CAS. No side effects: unit-tested without threads.  */
/* ------------------------------------------------------------------------ */

enum tally__op_code {
	TALLY__OP_GET = 1,
	TALLY__OP_CHECK,
	TALLY__OP_BUMP,
	TALLY__OP_TRY,
	TALLY__OP_RESET,
	TALLY__OP_ROLL, /* sweep: roll what is due, nothing else */
	TALLY__OP_UPSERT
};

struct tally__args {
	enum tally__op_code op;
	int64_t now;
	bool now_coarse;   /* now is a coarse lower bound (see tally__is_due) */
	bool need_exact;   /* set by a transition that needs the exact clock */
	int64_t amount[2]; /* budget: [0]; rate limit: tokens, requests */
	uint64_t observed_version; /* reset */
	unsigned counters;         /* reset mask (rate limit) */
	unsigned out_mask;         /* limited / reset mask (rate limit) */
	const void *config;        /* upsert: validated public config */
};

/* A transition's answer when args->now is coarse and a window might be due:
 * the engine reads the exact clock and runs the transition again. */
#define TALLY__NEED_CLOCK 1000

/*
 * The default clock is CLOCK_REALTIME. Reading it costs about as much as a
 * map lookup, while CLOCK_REALTIME_COARSE (the time of the last tick) costs
 * a few nanoseconds and lags the exact time by at most a tick (a few ms).
 * So writes that only need to know whether a window is due read the coarse
 * clock first: if even coarse + TALLY__COARSE_MARGIN is before the window's
 * end, the exact time is too, and the decision is the one the exact clock
 * would give. Only near a boundary (within the margin, a second) do they
 * read the exact clock. The margin is far above a tick so that delayed
 * ticks do not matter; if the lag ever exceeded it, the effect would be a
 * write landing in a window a moment before it rolls, as if it had run
 * that much earlier: never a lost or double-counted unit.
 */
#define TALLY__COARSE_MARGIN INT64_C(1000000000)

/* A window is due when now has reached its end. An end of INT64_MAX means
 * no boundary after the window is representable (or no period at all): such
 * a window never rolls, even at the last nanosecond of int64 time. */
static inline bool
tally__window_due(int64_t now, int64_t end)
{
	return end != INT64_MAX && now >= end;
}

static inline bool
tally__is_due(struct tally__args *a, int64_t end)
{
	if (!a->now_coarse)
		return tally__window_due(a->now, end);
	if (end == INT64_MAX)
		return false;
	if (end >= INT64_MIN + TALLY__COARSE_MARGIN &&
	    a->now < end - TALLY__COARSE_MARGIN)
		return false;
	a->need_exact = true;
	return false;
}

/* Whether a window ending at end is certainly not due at a->now: what
 * tally__is_due returns false for without asking for the exact clock. */
static inline bool
tally__surely_not_due(const struct tally__args *a, int64_t end)
{
	if (end == INT64_MAX)
		return true;
	if (!a->now_coarse)
		return a->now < end;
	return end >= INT64_MIN + TALLY__COARSE_MARGIN &&
	       a->now < end - TALLY__COARSE_MARGIN;
}

/* tally__budget_quick's answer when the full transition must decide. */
#define TALLY__QUICK_NO 1001

/*
 * The common case of a budget check, bump or try_consume, inline in the
 * engine: the window is certainly not due and the sum does not overflow.
 * Anything else (a window that is or may be due, an overflow, any other
 * operation) returns TALLY__QUICK_NO and goes to tally__budget_step.
 * Wherever this answers, it answers exactly as tally__budget_step would
 * (same result, successor and install flag, no roll); test_budget checks
 * that on a grid of inputs.
 */
static inline int
tally__budget_quick(const struct tally__budget_snap *old,
		    struct tally__budget_snap *next,
		    const struct tally__args *a, bool *install)
{
	int64_t amount = a->amount[0];

	if ((a->op != TALLY__OP_BUMP && a->op != TALLY__OP_TRY &&
	     a->op != TALLY__OP_CHECK) ||
	    !tally__surely_not_due(a, old->window_end))
		return TALLY__QUICK_NO;
	if (a->op == TALLY__OP_BUMP && amount > INT64_MAX - old->usage)
		return TALLY__QUICK_NO;
	*next = *old;
	*install = false;
	if (a->op == TALLY__OP_CHECK)
		return old->usage >= old->max_limit ? TALLY_LIMITED : TALLY_OK;
#if defined(TALLY_MUTATE_WRAPPING_LIMIT)
	/* Planted bug (tests/mutation), as in tally__budget_step. */
	if (a->op == TALLY__OP_TRY &&
	    (int64_t)((uint64_t)old->usage + (uint64_t)amount) > old->max_limit)
#else
	if (a->op == TALLY__OP_TRY && amount > old->max_limit - old->usage)
#endif
		return TALLY_LIMITED;
	next->usage += amount;
	*install = amount != 0;
	return TALLY_OK;
}

/*
 * The same for a rate limit: check, bump or try_consume with neither
 * counter's window possibly due and no sum overflowing; sets a->out_mask
 * as tally__rl_step does. test_ratelimit checks agreement on a grid.
 */
static inline int
tally__rl_quick(const struct tally__rl_snap *old, struct tally__rl_snap *next,
		struct tally__args *a, bool *install)
{
	const int64_t *amount = a->amount;
	unsigned mask = 0;

	if ((a->op != TALLY__OP_BUMP && a->op != TALLY__OP_TRY &&
	     a->op != TALLY__OP_CHECK) ||
	    !tally__surely_not_due(a, old->c[0].window_end) ||
	    !tally__surely_not_due(a, old->c[1].window_end))
		return TALLY__QUICK_NO;
	if (a->op == TALLY__OP_CHECK) {
		*next = *old;
		*install = false;
		for (unsigned i = 0; i < 2; i++)
			if (old->c[i].has_max &&
			    old->c[i].usage >= old->c[i].max)
				mask |= i == 0 ? TALLY_COUNTER_TOKENS
					       : TALLY_COUNTER_REQUESTS;
		a->out_mask = mask;
		return mask != 0 ? TALLY_LIMITED : TALLY_OK;
	}
	if (amount[0] > INT64_MAX - old->c[0].usage ||
	    amount[1] > INT64_MAX - old->c[1].usage)
		return TALLY__QUICK_NO;
	*next = *old;
	*install = false;
	a->out_mask = 0;
	if (a->op == TALLY__OP_TRY) {
		for (unsigned i = 0; i < 2; i++) {
			const struct tally__counter *c = &old->c[i];

#if defined(TALLY_MUTATE_WRAPPING_LIMIT)
			/* Planted bug (tests/mutation), as in tally__rl_step. */
			if (c->has_max &&
			    (int64_t)((uint64_t)c->usage +
				      (uint64_t)amount[i]) > c->max)
#else
			if (c->has_max && amount[i] > c->max - c->usage)
#endif
				mask |= i == 0 ? TALLY_COUNTER_TOKENS
					       : TALLY_COUNTER_REQUESTS;
		}
		if (mask != 0) {
			a->out_mask = mask;
			return TALLY_LIMITED;
		}
	}
	next->c[0].usage += amount[0];
	next->c[1].usage += amount[1];
	*install = amount[0] != 0 || amount[1] != 0;
	return TALLY_OK;
}

int tally__budget_step(const struct tally__budget_snap *old,
		       struct tally__budget_snap *next,
		       struct tally__args *args, struct tally__rolls *rolls,
		       bool *install);
void tally__budget_init(struct tally__budget_snap *s,
			const tally_budget_config *cfg, int64_t now);
int tally__budget_validate(const tally_budget_config *cfg);
void tally__budget_view(const struct tally__budget_snap *s,
			tally_budget_view *view);

int tally__rl_step(const struct tally__rl_snap *old,
		   struct tally__rl_snap *next, struct tally__args *args,
		   struct tally__rolls *rolls, bool *install);
void tally__rl_init(struct tally__rl_snap *s, const tally_ratelimit_config *cfg,
		    int64_t now);
int tally__rl_validate(const tally_ratelimit_config *cfg);
void tally__rl_view(const struct tally__rl_snap *s, tally_ratelimit_view *view);

/* ------------------------------------------------------------------------ */
/* Records and the map                                                      */
/* ------------------------------------------------------------------------ */

/*
 * A record never changes after it is published, except its snapshot pointer.
 * `snap` comes first: the map's compare callback tells a lookup probe from a
 * record by the first pointer-sized field (see store.c).
 */
struct tally__record {
	void *snap; /* atomic; &store->tombstone once removed */
	unsigned long hash;
	uint8_t kind;
	uint8_t key_len;
	char key[]; /* key_len bytes and a NUL */
};

/* Bytes of a record with a key of len bytes: the key starts right after
 * the 18-byte header (not at sizeof, which pads to 24), so a 36-byte key
 * makes a 55-byte record, one 64-byte malloc chunk. */
static inline size_t
tally__record_size(size_t len)
{
	return offsetof(struct tally__record, key) + len + 1;
}

struct tally__probe {
	const void *tag; /* &tally__probe_tag */
	unsigned long hash;
	const char *key;
	uint8_t kind;
	uint8_t key_len;
};

/* ------------------------------------------------------------------------ */
/* Per-thread state (epoch.c)                                               */
/* ------------------------------------------------------------------------ */

enum tally__obj_type {
	TALLY__OBJ_BUDGET_SNAP = 0,
	TALLY__OBJ_RL_SNAP = 1,
	TALLY__OBJ_RECORD = 2,
	TALLY__OBJ_MAP = 3
};

#define TALLY__BATCH_CAP 64
/* Pending (retired, not yet freed) objects per thread above which a thread
 * waits, boundedly, for a grace period (epoch.c). */
#define TALLY__PENDING_HIGH ((uint64_t)16 * TALLY__BATCH_CAP)
/* Snapshots per slab block, the block header, and the slack that lets the
 * first snapshot start on a cache line (epoch.c): every snapshot starts on
 * a line, so a 64-byte budget snapshot is one line to read or to write, not
 * two. The slack assumes the allocator's 8-byte minimum alignment. */
#define TALLY__SLAB_OBJS 62
#define TALLY__SLAB_HDR 16
#define TALLY__LINE 64
#define TALLY__SLAB_SLACK (TALLY__LINE - 8)

struct tally__slab {
	struct tally__slab *next;
	unsigned type;
};

struct tally__retired {
	void *ptr;
	size_t size_and_type; /* size << 2 | type */
};

struct tally__batch {
	ck_epoch_entry_t entry;
	tally_store *store;
	unsigned n;
	struct tally__retired item[TALLY__BATCH_CAP];
};

struct tally__tstats {
	uint64_t writes;
	uint64_t cas_retries;
	uint64_t rolls;
	uint64_t retired;
	uint64_t freed;
	uint64_t peak_pending;
};

/*
 * Per-thread lookup cache: a two-way set-associative table of records this
 * thread found in the map. Its size is a trade of memory per thread for
 * hits: with one way of 4,096 entries a fifth of 1,000 hot keys shared a
 * slot with another and kept evicting it; two ways of 2,048 sets still
 * missed 3% of the time (a ck_hs probe each, about 2 ns per write on
 * average); two ways of 4,096 sets (128 KiB) miss under 1%. An entry stays
 * valid while no record has been removed from the store since it was
 * filled: the store's removal count is read in the section that uses the
 * entry, and a remove bumps it (full barrier) before it retires the
 * record, so a thread that still sees the old count began its section
 * before the record was retired, and the record cannot be freed under it.
 * Any removal empties every thread's cache; removals are administrative
 * and rare. A hit saves the ck_hs probe, the costliest part of a lookup.
 */
#define TALLY__LCACHE_SETS 4096 /* of two entries each */

struct tally__lcache_ent {
	struct tally__record *r;
	unsigned long hash;
};

struct tally__thread {
	ck_epoch_record_t epoch; /* cache-line aligned; owner only */
	tally_store *store;
	void *raw;                      /* allocation that holds this struct */
	struct tally__thread *all_next; /* every record of the store */
	struct tally__thread *idle_next;
	struct tally__batch *batch; /* filling */
	struct tally__batch *spare; /* ready, so retire never allocates */
	void *cache[2];             /* free snapshots, by obj type */
	unsigned long cache_n[2];
	struct tally__slab *slabs; /* every block this record cut */
	char *slab_next[2];        /* next free object of the newest block */
	unsigned slab_left[2];
	unsigned in_use;     /* atomic: held by a live thread */
	unsigned lcache_gen; /* the store's removal count it is valid for */
	struct tally__lcache_ent lcache[TALLY__LCACHE_SETS][2];
	bool need_poll;      /* a submitted batch awaits its grace period */
	unsigned poll_wait;  /* operations left before the next poll */
	uint64_t spin_above; /* wait for a grace period above this pending */
	struct tally__tstats st;
#if defined(TALLY_MUTATE_STALE_GET)
	struct tally__record *mutant_rec;
	union tally__any_snap mutant_copy;
#endif
};

/* ------------------------------------------------------------------------ */
/* The store                                                                */
/* ------------------------------------------------------------------------ */

struct tally_store {
	ck_hs_t hs; /* read by every lookup */
	struct ck_malloc hs_malloc;
	/* The global epoch is written whenever a poll advances it; keep it
	 * off the cache lines that every lookup reads. */
	char pad_before_epoch[64];
	ck_epoch_t epoch;
	char pad_after_epoch[64];
	pthread_mutex_t write_lock; /* map writers: insert, remove, grow */
	pthread_mutex_t reg_lock;   /* thread records: all and idle lists */
	pthread_key_t tkey;
	unsigned map_gen;  /* atomic; bumped when the map is replaced */
	unsigned removals; /* atomic; bumped by every remove (lookup caches) */
	unsigned idle_dirty; /* atomic; an idle thread record holds garbage */
	tally_clock_fn *clock;
	void *clock_ctx;
	bool coarse_clock; /* default clock: coarse reads may decide "not due" */
	tally_allocator alloc;
	tally_roll_fn *on_roll;
	void *on_roll_ctx;
	uint64_t seed;
	uint64_t next_generation;  /* under write_lock: version base */
	struct tally__thread *all; /* under reg_lock */
	struct tally__thread *idle;
	uint64_t threads_total;
	unsigned long hs_capacity; /* under write_lock: slots of the live map */
	unsigned long hs_overhead; /* bytes of a map allocation beyond slots */
	unsigned long hs_last_cap; /* slots of the newest map allocation */
	char tombstone;            /* its address marks a removed record */
	char tsan_grace; /* its address is the TSan grace-period sync object */
	bool map_ready;
};

/* Allocator (store.c) */
void *tally__malloc(tally_store *s, size_t size);
void tally__free(tally_store *s, void *p, size_t size);

/* Hash (hash.c) */
uint64_t tally__hash(const void *key, size_t len, uint64_t seed);

/* ------------------------------------------------------------------------ */
/* Hot-path helpers, inline: every call runs them once.                     */
/* ------------------------------------------------------------------------ */

/* Validates and measures a key: TALLY_OK, TALLY_EINVAL or TALLY_EKEY. */
static inline int
tally__key_check(const char *key, size_t *len)
{
	const char *nul;

	if (key == NULL)
		return TALLY_EINVAL;
	/* memchr stops at the first match (C11 7.24.5.1): it never reads
	 * past the key's terminator. */
	nul = memchr(key, '\0', TALLY_KEY_MAX + 1);
	if (nul == NULL || nul == key)
		return TALLY_EKEY;
	*len = (size_t)(nul - key);
	return TALLY_OK;
}

/* Tells a lookup probe from a record in the map's compare callback. */
extern const char tally__probe_tag;

static inline void
tally__probe_init(const tally_store *s, struct tally__probe *p, const char *key,
		  size_t len, unsigned kind)
{
	p->tag = &tally__probe_tag;
	p->key = key;
	p->kind = (uint8_t)kind;
	p->key_len = (uint8_t)len;
	p->hash = (unsigned long)tally__hash(key, len, s->seed ^ kind);
}

/* Map lookup; inside an epoch section. */
static inline struct tally__record *
tally__lookup(tally_store *s, const struct tally__probe *p)
{
	struct tally__record *r = ck_hs_get(&s->hs, p->hash, p);

	if (r != NULL)
		tally__tsan_acquire(r);
	return r;
}

/* Whether two keys of n bytes (1..TALLY_KEY_MAX) are equal: eight bytes
 * at a time, the last word overlapping, without a call to memcmp. */
static inline bool
tally__key_eq(const char *a, const char *b, size_t n)
{
	uint64_t x, y;
	uint32_t u, v;
	size_t i;

	if (n >= 8) {
		for (i = 0; i + 8 < n; i += 8) {
			memcpy(&x, a + i, 8);
			memcpy(&y, b + i, 8);
			if (x != y)
				return false;
		}
		memcpy(&x, a + n - 8, 8);
		memcpy(&y, b + n - 8, 8);
		return x == y;
	}
	if (n >= 4) {
		memcpy(&u, a, 4);
		memcpy(&v, b, 4);
		if (u != v)
			return false;
		memcpy(&u, a + n - 4, 4);
		memcpy(&v, b + n - 4, 4);
		return u == v;
	}
	for (i = 0; i < n; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

static inline bool
tally__lcache_match(const struct tally__lcache_ent *e,
		    const struct tally__probe *p)
{
	const struct tally__record *r = e->r;

	return r != NULL && e->hash == p->hash && r->kind == p->kind &&
	       r->key_len == p->key_len &&
	       tally__key_eq(r->key, p->key, p->key_len);
}

/* Outside a section: a hint only. The entry may name a record that is
 * being freed; a prefetch never faults and reads nothing. */
static inline void
tally__lcache_prefetch(struct tally__thread *t, const struct tally__probe *p)
{
	struct tally__lcache_ent *set =
		t->lcache[p->hash & (TALLY__LCACHE_SETS - 1)];

	if (set[0].hash == p->hash)
		tally__prefetch_w(set[0].r);
}

/* Map lookup through the thread's cache; inside an epoch section. */
static inline __attribute__((always_inline)) struct tally__record *
tally__lookup_cached(tally_store *s, struct tally__thread *t,
		     const struct tally__probe *p)
{
	unsigned gen = tally__load_uint(&s->removals);
	struct tally__lcache_ent *set;
	struct tally__record *r;

	if (gen != t->lcache_gen) {
		memset(t->lcache, 0, sizeof t->lcache);
		t->lcache_gen = gen;
	}
	set = t->lcache[p->hash & (TALLY__LCACHE_SETS - 1)];
	if (tally__lcache_match(&set[0], p))
		return set[0].r;
	if (tally__lcache_match(&set[1], p))
		return set[1].r;
	r = tally__lookup(s, p);
	if (r != NULL) {
		/* The newest entry in way 0, the one before it in way 1. */
		set[1] = set[0];
		set[0].r = r;
		set[0].hash = p->hash;
	}
	return r;
}

static inline int64_t
tally__now(tally_store *s)
{
	return s->clock(s->clock_ctx);
}

/* CLOCK_REALTIME_COARSE in nanoseconds (store.c). */
int64_t tally__coarse_now(void);

/* The clock reading for an operation: coarse where a coarse reading can
 * decide (bump, try_consume, check on the default clock: see
 * tally__is_due), exact otherwise. */
static inline void
tally__now_for(tally_store *s, struct tally__args *a)
{
	a->need_exact = false;
	if (s->coarse_clock &&
	    (a->op == TALLY__OP_BUMP || a->op == TALLY__OP_TRY ||
	     a->op == TALLY__OP_CHECK)) {
		a->now = tally__coarse_now();
		a->now_coarse = true;
	} else {
		a->now = tally__now(s);
		a->now_coarse = false;
	}
}

/* Thread records (epoch.c): the calling thread's record for this store,
 * registered on first use. */
int tally__thread_register(tally_store *s, struct tally__thread **out);

static inline int
tally__thread_get(tally_store *s, struct tally__thread **out)
{
	struct tally__thread *t = pthread_getspecific(s->tkey);

	if (t != NULL) {
		*out = t;
		return TALLY_OK;
	}
	return tally__thread_register(s, out);
}

/* Makes sure `slots` objects can be retired without allocating. */
int tally__reserve_slow(struct tally__thread *t, unsigned slots);

static inline int
tally__reserve(struct tally__thread *t, unsigned slots)
{
	if (t->batch != NULL &&
	    (t->batch->n + slots <= TALLY__BATCH_CAP || t->spare != NULL))
		return TALLY_OK;
	return tally__reserve_slow(t, slots);
}

void *tally__snap_alloc_slow(struct tally__thread *t,
			     enum tally__obj_type type);

/* A snapshot from the thread's cache of reclaimed ones, or new. */
static inline void *
tally__snap_alloc(struct tally__thread *t, enum tally__obj_type type)
{
	void *p = t->cache[type];

	if (p != NULL) {
		memcpy(&t->cache[type], p, sizeof(void *));
		t->cache_n[type]--;
		return p;
	}
	return tally__snap_alloc_slow(t, type);
}

void tally__maintain_slow(struct tally__thread *t);

/*
 * A thread polls right after the call that submits a batch, then once
 * every TALLY__POLL_EVERY calls while anything it submitted is pending.
 * A poll reads every thread's epoch record and may advance the global
 * epoch; polling after every call made each one pull the other threads'
 * record lines across cores. A grace period needs two epoch advances, so
 * a batch is still freed within a few polls.
 */
#define TALLY__POLL_EVERY 16

/* After an operation, outside any section: reclaim what is due. */
static inline void
tally__maintain(struct tally__thread *t)
{
	if (!t->need_poll)
		return;
	if (t->poll_wait == 0)
		tally__maintain_slow(t);
	else
		t->poll_wait--;
}

/* Map (store.c). Structural writes; write_lock held, inside a section,
 * after tally__reserve(t, 3). */
int tally__map_insert(tally_store *s, struct tally__thread *t,
		      struct tally__record *r);
void tally__map_remove(tally_store *s, struct tally__thread *t,
		       struct tally__record *r);

/* Thread records and reclamation (epoch.c) */
void tally__thread_exit(void *arg);
void tally__retire_slow(struct tally__thread *t, void *ptr, size_t size,
			enum tally__obj_type type);

/* Lists an object for freeing after a grace period; inside a section,
 * after tally__reserve(). A full batch goes the slow way: it is submitted
 * to the epoch and the spare takes its place. */
static inline void
tally__retire(struct tally__thread *t, void *ptr, size_t size,
	      enum tally__obj_type type)
{
#if !defined(TALLY_MUTATE_EARLY_FREE)
	struct tally__batch *b = t->batch;

	if (b->n < TALLY__BATCH_CAP) {
		b->item[b->n].ptr = ptr;
		b->item[b->n].size_and_type = size << 2 | (size_t)type;
		b->n++;
		tally__stat_add(&t->st.retired, 1);
		tally__stat_max(&t->st.peak_pending,
				t->st.retired - t->st.freed);
		return;
	}
#endif
	tally__retire_slow(t, ptr, size, type);
}
void tally__snap_free(struct tally__thread *t, void *p,
		      enum tally__obj_type type);
void tally__threads_destroy(tally_store *s);

static inline void
tally__section_begin(struct tally__thread *t)
{
	tally__noise();
	ck_epoch_begin(&t->epoch, NULL);
}

static inline void
tally__section_end(struct tally__thread *t)
{
	/* Everything read in the section happens before any reclamation
	 * that waited for this section to end. */
	tally__tsan_release(&t->store->tsan_grace);
	ck_epoch_end(&t->epoch, NULL);
	tally__noise();
}

static inline enum tally__obj_type
tally__snap_type(unsigned kind)
{
	return kind == TALLY_KIND_BUDGET ? TALLY__OBJ_BUDGET_SNAP
					 : TALLY__OBJ_RL_SNAP;
}

static inline size_t
tally__snap_size(enum tally__obj_type type)
{
	return type == TALLY__OBJ_BUDGET_SNAP
		       ? sizeof(struct tally__budget_snap)
		       : sizeof(struct tally__rl_snap);
}

/* A snapshot's footprint in a slab: whole cache lines. */
static inline size_t
tally__snap_stride(enum tally__obj_type type)
{
	return (tally__snap_size(type) + TALLY__LINE - 1) &
	       ~(size_t)(TALLY__LINE - 1);
}

static inline size_t
tally__slab_bytes(enum tally__obj_type type)
{
	return TALLY__SLAB_HDR + TALLY__SLAB_SLACK +
	       TALLY__SLAB_OBJS * tally__snap_stride(type);
}

/* Engine (engine.c): the one CAS loop, and the read path. */
struct tally__op {
	tally_store *store;
	const char *key;
	unsigned kind; /* tally_kind */
	struct tally__args args;
	void *view; /* tally_budget_view / tally_ratelimit_view or NULL */
};

static inline void
tally__op_init(struct tally__op *op, tally_store *store, const char *key,
	       unsigned kind, enum tally__op_code code, void *view)
{
	memset(op, 0, sizeof *op);
	op->store = store;
	op->key = key;
	op->kind = kind;
	op->args.op = code;
	op->view = view;
}

int tally__cas_loop(tally_store *s, struct tally__thread *t,
		    struct tally__record **rp, const struct tally__probe *probe,
		    unsigned kind, struct tally__args *args, void *next,
		    struct tally__rolls *rolls, bool *installed,
		    uint64_t *version);
int tally__write(struct tally__op *op);
int tally__read(struct tally__op *op);
int tally__upsert(struct tally__op *op);
int tally__remove(struct tally__op *op);

/* Reports a roll to the listener and to an extra callback (sweep). */
void tally__report(tally_store *s, const char *key, size_t key_len,
		   unsigned kind, tally_roll_cause cause,
		   const struct tally__rolls *rolls, uint64_t version,
		   tally_roll_fn *extra, void *extra_ctx);

#endif /* TALLY_INTERNAL_H */
