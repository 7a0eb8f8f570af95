/*
 * Per-thread state (epoch.c): the thread's epoch record, its batches of
 * retired objects, its snapshot slabs and caches, its lookup cache and its
 * statistics; and the section, retire and reclaim primitives.
 */
#ifndef TALLY_THREAD_H
#define TALLY_THREAD_H

#include <ck_epoch.h>

#include "atomics.h"
#include "record.h"
#include "snap.h"

/*
 * Retired objects carry a type: a record cell, an old map, or a snapshot
 * of a kind (TALLY__OBJ_SNAP + the kind's id). Four bits of the size word.
 */
enum tally__obj_type {
	TALLY__OBJ_RECORD = 0,
	TALLY__OBJ_MAP = 1,
	TALLY__OBJ_SNAP = 1 /* + kind id: 2, 3, ... */
};
#define TALLY__OBJ_BITS 4u
_Static_assert(TALLY__OBJ_SNAP + TALLY__KIND_END <= (1u << TALLY__OBJ_BITS),
	       "object types fit their bits");

static inline unsigned
tally__snap_type(unsigned kind)
{
	return TALLY__OBJ_SNAP + kind;
}

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
	unsigned kind;
};

struct tally__retired {
	void *ptr;
	size_t size_and_type; /* size << TALLY__OBJ_BITS | type */
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
	/* Admission (admit.c), and expiry wherever a CAS drops holds. */
	uint64_t expired_holds;
	uint64_t expired_units;
	uint64_t admitted;
	uint64_t refused_limit;
	uint64_t refused_too_big;
	uint64_t refused_race;
	uint64_t refused_missing;
	uint64_t compensations;
	uint64_t holds;
	uint64_t settles;
	uint64_t releases;
	uint64_t partials;
	uint64_t late_settles;
	uint64_t overdraft_units;
	uint64_t shadow_would_deny;
};

/*
 * Per-thread lookup cache: a two-way set-associative table of records this
 * thread found in the map (lcache.h). Its size is a trade of memory per
 * thread for hits: with one way of 4,096 entries a fifth of 1,000 hot keys
 * shared a slot with another and kept evicting it; two ways of 2,048 sets
 * still missed 3% of the time; two ways of 4,096 sets (128 KiB) miss under
 * 1%.
 */
#define TALLY__LCACHE_SETS 4096 /* of two entries each */

struct tally__lcache_ent {
	struct tally__record *r;
	uint32_t hash; /* low bits of the record's hash */
	uint32_t gen;  /* the stripe's removal count when it was filled */
};

struct tally__thread {
	ck_epoch_record_t epoch; /* cache-line aligned; owner only */
	tally_store *store;
	void *raw;                      /* allocation that holds this struct */
	struct tally__thread *all_next; /* every record of the store */
	struct tally__thread *idle_next;
	struct tally__batch *batch; /* filling */
	struct tally__batch *spare; /* ready, so retire never allocates */
	/* Snapshots, by kind id: free ones, and the newest slab's rest. */
	void *cache[TALLY__KIND_END];
	unsigned long cache_n[TALLY__KIND_END];
	char *slab_next[TALLY__KIND_END];
	unsigned slab_left[TALLY__KIND_END];
	struct tally__slab *slabs; /* every block this record cut */
	unsigned in_use;           /* atomic: held by a live thread */
	struct tally__lcache_ent lcache[TALLY__LCACHE_SETS][2];
	bool need_poll;      /* a submitted batch awaits its grace period */
	unsigned poll_wait;  /* operations left before the next poll */
	uint64_t spin_above; /* wait for a grace period above this pending */
	struct tally__tstats st;
};

/* Thread records (epoch.c): the calling thread's record for this store,
 * registered on first use. tally__thread_get is in store.h. */
int tally__thread_register(tally_store *s, struct tally__thread **out);
void tally__thread_exit(void *arg);
void tally__threads_destroy(tally_store *s);

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

void *tally__snap_alloc_slow(struct tally__thread *t, unsigned kind);

/* A snapshot of a kind from the thread's cache of reclaimed ones, or new.
 * Outside sections only: it may call the allocator. */
static inline void *
tally__snap_alloc(struct tally__thread *t, unsigned kind)
{
	void *p = t->cache[kind];

	if (p != NULL) {
		memcpy(&t->cache[kind], p, sizeof(void *));
		t->cache_n[kind]--;
		tally__unpoison((char *)p + sizeof(void *),
				tally__kinds[kind]->snap_size - sizeof(void *));
		return p;
	}
	return tally__snap_alloc_slow(t, kind);
}

/* Back to the thread's cache (never published, or reclaimed). */
static inline void
tally__snap_free(struct tally__thread *t, void *p, unsigned kind)
{
	memcpy(p, &t->cache[kind], sizeof(void *));
	t->cache[kind] = p;
	t->cache_n[kind]++;
	/* The first word holds the free list. */
	tally__poison((char *)p + sizeof(void *),
		      tally__kinds[kind]->snap_size - sizeof(void *));
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

void tally__retire_slow(struct tally__thread *t, void *ptr, size_t size,
			unsigned type);

/*
 * Lists an object for freeing after a grace period, after tally__reserve().
 * The object must be unreachable for threads that begin a section from now
 * on, and that unlinking must be visible before the epoch is read (the
 * full barrier of the CAS or exchange that unlinked it, or an explicit
 * one). A full batch goes the slow way: it is submitted to the epoch and
 * the spare takes its place.
 */
static inline void
tally__retire(struct tally__thread *t, void *ptr, size_t size, unsigned type)
{
	struct tally__batch *b = t->batch;

	if (b->n < TALLY__BATCH_CAP) {
		b->item[b->n].ptr = ptr;
		b->item[b->n].size_and_type = size << TALLY__OBJ_BITS | type;
		b->n++;
		tally__stat_add(&t->st.retired, 1);
		tally__stat_max(&t->st.peak_pending,
				t->st.retired - t->st.freed);
		return;
	}
	tally__retire_slow(t, ptr, size, type);
}

/* Counts a transition's notes (rolls, expired holds) after its CAS. */
static inline void
tally__stat_notes(struct tally__thread *t, const struct tally__rolls *r)
{
	if (r->n != 0)
		tally__stat_add(&t->st.rolls, r->n);
	if (r->exp.holds != 0) {
		tally__stat_add(&t->st.expired_holds, r->exp.holds);
		tally__stat_add(&t->st.expired_units,
				(uint64_t)r->exp.amount[0] +
					(uint64_t)r->exp.amount[1]);
	}
}

#endif /* TALLY_THREAD_H */
