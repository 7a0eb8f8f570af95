/*
 * The store (store.c): its struct, the allocator, the clocks, record cells
 * and the map of records.
 */
#ifndef TALLY_STORE_H
#define TALLY_STORE_H

#include <pthread.h>

#include <ck_epoch.h>
#include <ck_hs.h>
#include <ck_malloc.h>

#include "atomics.h"
#include "record.h"
#include "snap.h"
#include "thread.h"

/* Removal counts that validate lookup-cache entries (lcache.h): a remove
 * bumps the stripe of its record's hash. 256 stripes are 1 KiB, a few
 * lines that stay in every core's cache. */
#define TALLY__LCACHE_STRIPES 256u

/*
 * A slab of record cells (store.c). Slabs are zeroed when cut, linked in
 * the order they were cut and freed only by tally_store_destroy, so a
 * pointer to one stays valid for the store's life: the iterator (iter.h)
 * keeps one across sections.
 */
struct tally__cslab {
	struct tally__cslab *next; /* atomic: the next slab cut */
	char *cells;               /* the first cell, on a cache line */
	uint32_t cell_size;
	uint32_t ncells;
	uint32_t carved; /* under write_lock: cells handed out so far */
	uint32_t bytes;  /* of the allocation */
};

struct tally_store {
	ck_hs_t hs; /* read by every lookup */
	struct ck_malloc hs_malloc;
	unsigned lc_gen[TALLY__LCACHE_STRIPES]; /* atomic; read by lookups */
	/* The global epoch is written whenever a poll advances it; keep it
	 * off the cache lines that every lookup reads. */
	char pad_before_epoch[64];
	ck_epoch_t epoch;
	char pad_after_epoch[64];
	tally_clock_fn *clock;
	void *clock_ctx;
	tally_clock_fn *coarse; /* NULL: none */
	void *coarse_ctx;
	uint64_t seed;
	tally_roll_fn *on_roll;
	void *on_roll_ctx;
	tally_expiry_fn *on_expire;
	void *on_expire_ctx;
	int64_t hold_ttl_max;           /* ns */
	struct tally__grain hold_grain; /* hold.h */
	uint64_t store_id;              /* names the store in hold handles */
	tally_allocator alloc;
	pthread_key_t tkey;
	unsigned idle_dirty; /* atomic; an idle thread record holds garbage */
	pthread_mutex_t write_lock; /* map writers: insert, remove, grow */
	pthread_mutex_t reg_lock;   /* thread records: all and idle lists */
	/* Under write_lock. */
	uint64_t next_incarnation;
	uint64_t version_floor; /* above every version of a removed record */
	struct tally__cslab *cslab_tail;
	struct tally__cslab *cslab_cur[TALLY__CELL_CLASSES];
	struct tally__record *cell_spare[TALLY__CELL_CLASSES];
	unsigned long hs_capacity; /* slots of the live map */
	unsigned long hs_overhead; /* bytes of a map allocation beyond slots */
	unsigned long hs_last_cap; /* slots of the newest map allocation */
	/* Atomic. */
	struct tally__cslab *cslabs; /* the first slab cut */
	struct tally__record *cell_free[TALLY__CELL_CLASSES]; /* reclaimed */
	/* Under reg_lock. */
	struct tally__thread *all;
	struct tally__thread *idle;
	uint64_t threads_total;
	char tombstone;  /* its address marks a record that is not live */
	char tsan_grace; /* its address is the TSan grace-period sync object */
	bool map_ready;
};

/* Allocator (store.c) */
void *tally__malloc(tally_store *s, size_t size);
void tally__free(tally_store *s, void *p, size_t size);

/* A record cell of class cls (write_lock held; may allocate a slab), and
 * the return of a reclaimed one (any thread, outside sections). */
struct tally__record *tally__cell_alloc(tally_store *s, unsigned cls);
void tally__cell_free(tally_store *s, struct tally__record *r);

static inline bool
tally__live(const tally_store *s, const void *snap)
{
	return snap != NULL && snap != &s->tombstone;
}

/* Map (store.c). Structural writes, write_lock held, outside sections,
 * after tally__reserve(t, 3): insert a record known to be absent (grows
 * the map first when needed), remove a record. */
int tally__map_insert(tally_store *s, struct tally__thread *t,
		      struct tally__record *r);
void tally__map_remove(tally_store *s, struct tally__thread *t,
		       struct tally__record *r);

/* Map lookup; inside an epoch section (or with write_lock held). */
static inline struct tally__record *
tally__lookup(tally_store *s, const struct tally__probe *p)
{
	struct tally__record *r = ck_hs_get(&s->hs, p->hash, p);

	if (r != NULL)
		tally__tsan_acquire(r);
	return r;
}

/* ------------------------------------------------------------------------ */
/* Clocks                                                                   */
/* ------------------------------------------------------------------------ */

static inline int64_t
tally__now(tally_store *s)
{
	return s->clock(s->clock_ctx);
}

/* CLOCK_REALTIME_COARSE in nanoseconds (store.c): the default coarse
 * clock, called directly rather than through s->coarse. */
int64_t tally__coarse_default(void *ctx);

/* The clock reading for operation `code`: coarse where a coarse reading
 * can decide (bump, try_consume, check, when the store has a coarse clock:
 * see tally__is_due), precise otherwise. */
static inline void
tally__now_for(tally_store *s, struct tally__args *a, enum tally__op_code code)
{
	a->need_exact = false;
	if (s->coarse != NULL &&
	    (code == TALLY__OP_BUMP || code == TALLY__OP_TRY ||
	     code == TALLY__OP_CHECK)) {
		a->now = s->coarse == tally__coarse_default
				 ? tally__coarse_default(NULL)
				 : s->coarse(s->coarse_ctx);
		a->now_coarse = true;
	} else {
		a->now = tally__now(s);
		a->now_coarse = false;
	}
}

/* ------------------------------------------------------------------------ */
/* The calling thread and its sections                                      */
/* ------------------------------------------------------------------------ */

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

/* Test hooks (store.c): start the store's version floor and incarnation
 * count at the given values (e.g. near 2^32 or UINT64_MAX). No other
 * thread may use the store meanwhile. */
void tally__test_set_counters(tally_store *s, uint64_t version_floor,
			      uint64_t next_incarnation);

#endif /* TALLY_STORE_H */
