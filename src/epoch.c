/*
 * Thread records and safe memory reclamation.
 *
 * Invariant. An object that was reachable from the store (a snapshot, a
 * record cell, an old map) is freed or reused only after every thread that
 * could have loaded a pointer to it has left the epoch section in which it
 * did so. Readers load record and snapshot pointers only inside a section
 * (engine.h, lcache.h, iter.c); writers unlink an object (a snapshot by CAS
 * inside a section; a record, its last snapshot and an old map under the
 * map's lock) and retire it afterwards, with a full barrier between the
 * unlinking and the epoch read of the retirement; ck_epoch then withholds
 * the retired object until a grace period has passed. Because a snapshot cannot be freed, let alone reused,
 * while a thread that loaded it is still inside its section, a plain pointer
 * CAS cannot suffer ABA: the pointer it compares against cannot have been
 * recycled under it.
 *
 * Batches. ck_epoch_call needs an intrusive entry per object. Snapshots are
 * the hottest allocation of the library and would grow by a quarter, so
 * retired objects are instead listed by pointer in a per-thread batch of
 * TALLY__BATCH_CAP entries, and the batch is handed to ck_epoch as a whole
 * when it is full. Deferring the hand-off is safe: the epoch read by
 * ck_epoch_call is at least the epoch at which each object was unlinked.
 * Retiring never allocates: tally__reserve() is called before an operation
 * changes anything and makes sure a spare batch is ready, so an allocation
 * failure is an ENOMEM that changed nothing.
 *
 * Polling. A thread polls (ck_epoch_poll_deferred) when it has submitted a
 * batch, outside any section; freed snapshots go to a small per-thread
 * cache that the next writes reuse, freed record cells to the store's free
 * lists. Above a high-water mark of pending
 * objects a thread yields and polls again a bounded number of times: a
 * barrier that cannot deadlock when another thread stalls inside a section
 * (then pending memory grows, visible in tally_store_stats, nothing blocks,
 * and the thread waits again after each TALLY__PENDING_HIGH retirements).
 *
 * Lifetime. A thread is registered lazily with each store it touches; its
 * record lives on the heap (from the store's allocator) and stays registered
 * with ck_epoch until the store is destroyed. When the thread exits, a
 * pthread key destructor submits its partial batch, polls once and parks the
 * record on the store's idle list, still registered and with whatever
 * garbage it still holds; the next new thread adopts it (and its garbage),
 * and until then threads that poll drain it on its behalf (help_idle).
 * A record is never unregistered while it holds callbacks, because
 * ck_epoch_unregister would drop them.
 */
#define _POSIX_C_SOURCE 200809L

#include <sched.h>
#include <stdalign.h>
#include <string.h>

#include "store.h"

#define TALLY__BARRIER_SPINS 64

_Static_assert(sizeof(struct tally__slab) <= TALLY__SLAB_HDR, "slab header");
_Static_assert(TALLY__SLAB_HDR % _Alignof(uint64_t) == 0,
	       "snapshots stay aligned inside slabs");

#define batch_of(e) ((struct tally__batch *)(void *)(e))

static ck_epoch_entry_t *
entry_of(ck_stack_entry_t *se)
{
	return (ck_epoch_entry_t *)(void *)((char *)se -
					    offsetof(ck_epoch_entry_t,
						     stack_entry));
}

static void
free_object(tally_store *s, struct tally__thread *t,
	    const struct tally__retired *it)
{
	unsigned type =
		(unsigned)(it->size_and_type & ((1u << TALLY__OBJ_BITS) - 1));
	size_t size = it->size_and_type >> TALLY__OBJ_BITS;

	switch (type) {
	case TALLY__OBJ_RECORD:
		/* Cells live in the store's slabs: back to a free list, or,
		 * at destroy (t == NULL), freed with their slab. */
		if (t != NULL)
			tally__cell_free(s, it->ptr);
		return;
	case TALLY__OBJ_MAP:
		tally__free(s, it->ptr, size);
		return;
	default:
		/* Snapshots live in the threads' slabs, likewise. */
		if (t != NULL)
			tally__snap_free(t, it->ptr, type - TALLY__OBJ_SNAP);
		return;
	}
}

/* Frees every object of a batch whose grace period has passed. */
static void
batch_drain(tally_store *s, struct tally__thread *t, struct tally__batch *b)
{
	/* Every section that could have seen these objects has ended. */
	tally__tsan_acquire(&s->tsan_grace);
	for (unsigned i = 0; i < b->n; i++)
		free_object(s, t, &b->item[i]);
	if (t != NULL)
		tally__stat_add(&t->st.freed, b->n);
	b->n = 0;
}

/* ck_epoch callback: used only by ck_epoch_reclaim at destroy. */
static void
batch_reclaim_cb(ck_epoch_entry_t *e)
{
	struct tally__batch *b = batch_of(e);
	tally_store *s = b->store;

	batch_drain(s, NULL, b);
	tally__free(s, b, sizeof *b);
}

static struct tally__batch *
batch_new(tally_store *s)
{
	struct tally__batch *b = tally__malloc(s, sizeof *b);

	if (b != NULL) {
		b->store = s;
		b->n = 0;
	}
	return b;
}

static void
poll_once(struct tally__thread *t)
{
	ck_stack_t deferred = CK_STACK_INITIALIZER;
	ck_stack_entry_t *cursor, *next;

	ck_epoch_poll_deferred(&t->epoch, &deferred);
	for (cursor = CK_STACK_FIRST(&deferred); cursor != NULL;
	     cursor = next) {
		struct tally__batch *b = batch_of(entry_of(cursor));

		next = CK_STACK_NEXT(cursor);
		batch_drain(t->store, t, b);
		if (t->spare == NULL)
			t->spare = b;
		else
			tally__free(t->store, b, sizeof *b);
	}
}

static uint64_t
pending_of(const struct tally__thread *t)
{
	return t->st.retired - t->st.freed;
}

static void
submit(struct tally__thread *t)
{
	struct tally__batch *b = t->batch;

	if (b == NULL || b->n == 0)
		return;
	ck_epoch_call(&t->epoch, &b->entry, batch_reclaim_cb);
	t->batch = t->spare;
	t->spare = NULL;
	t->need_poll = true;
	t->poll_wait = 0; /* poll right after this call: if no other thread
			   * is inside a section, that frees everything */
}

int
tally__reserve_slow(struct tally__thread *t, unsigned slots)
{
	TALLY_ASSERT(slots <= TALLY__BATCH_CAP);
	if (t->batch == NULL) {
		if (t->spare != NULL) {
			t->batch = t->spare;
			t->spare = NULL;
		} else if ((t->batch = batch_new(t->store)) == NULL) {
			return TALLY_ENOMEM;
		}
	}
	if (t->batch->n + slots > TALLY__BATCH_CAP && t->spare == NULL &&
	    (t->spare = batch_new(t->store)) == NULL)
		return TALLY_ENOMEM;
	return TALLY_OK;
}

void
tally__retire_slow(struct tally__thread *t, void *ptr, size_t size,
		   unsigned type)
{
	struct tally__batch *b = t->batch;

	TALLY_ASSERT(b != NULL);
	if (b->n == TALLY__BATCH_CAP) {
		submit(t);
		b = t->batch;
		/* tally__reserve() guaranteed the spare. */
		TALLY_ASSERT(b != NULL && b->n == 0);
	}
	b->item[b->n].ptr = ptr;
	b->item[b->n].size_and_type = size << TALLY__OBJ_BITS | type;
	b->n++;
	tally__stat_add(&t->st.retired, 1);
	tally__stat_max(&t->st.peak_pending, pending_of(t));
}

static bool
has_garbage(const struct tally__thread *t)
{
	return pending_of(t) > (t->batch != NULL ? t->batch->n : 0);
}

/*
 * Garbage left by exited threads: their records wait on the idle list, and
 * nobody polls a record that nobody owns. A thread that polls anyway takes
 * the registration lock, if free, and polls idle records on their behalf:
 * holding the lock makes it their only owner (adoption takes it too).
 */
static void
help_idle(tally_store *s)
{
	struct tally__thread *i;
	bool dirty = false;

	if (pthread_mutex_trylock(&s->reg_lock) != 0)
		return;
	for (i = s->idle; i != NULL; i = i->idle_next) {
		if (has_garbage(i))
			poll_once(i);
		dirty |= has_garbage(i);
	}
	if (!dirty)
		tally__store_uint(&s->idle_dirty, 0);
	pthread_mutex_unlock(&s->reg_lock);
}

void
tally__maintain_slow(struct tally__thread *t)
{
	unsigned spins;

	t->poll_wait = TALLY__POLL_EVERY - 1;
	if (t->epoch.active != 0)
		return;
	poll_once(t);
	if (tally__load_uint(&t->store->idle_dirty) != 0)
		help_idle(t->store);
	if (pending_of(t) > t->spin_above) {
		for (spins = 0; pending_of(t) > TALLY__PENDING_HIGH &&
				spins < TALLY__BARRIER_SPINS;
		     spins++) {
			sched_yield();
			poll_once(t);
		}
		/*
		 * A thread stalled (or descheduled) inside a section holds the
		 * grace period back: waiting longer would only stall this
		 * thread too. Wait again after another TALLY__PENDING_HIGH
		 * retirements: a stalled peer costs one bounded wait per that
		 * many writes, and pending memory grows by at most that much
		 * between two attempts to reclaim it.
		 */
		if (pending_of(t) > TALLY__PENDING_HIGH)
			t->spin_above = pending_of(t) + TALLY__PENDING_HIGH;
	}
	if (pending_of(t) <= TALLY__PENDING_HIGH)
		t->spin_above = TALLY__PENDING_HIGH;
	/* Still waiting if anything beyond the filling batch is pending. */
	t->need_poll = has_garbage(t);
}

/*
 * Snapshot slabs. Snapshots are the library's most frequent allocation and
 * all of one size per kind, so a thread carves them out of blocks of
 * TALLY__SLAB_OBJS from the store's allocator, with no per-object header
 * (a 64-byte budget snapshot takes 64 bytes, not a malloc chunk of 80),
 * each on its own cache lines.
 * Reclaimed snapshots go to the reclaiming thread's free list and are
 * reused before any new block is cut. Blocks return to the allocator when
 * the store is destroyed: a store's snapshot memory is its high-water mark.
 */
static size_t
snap_stride(unsigned kind)
{
	return ((size_t)tally__kind_of(kind)->snap_size + TALLY__LINE - 1) &
	       ~(size_t)(TALLY__LINE - 1);
}

static size_t
slab_bytes(unsigned kind)
{
	return TALLY__SLAB_HDR + TALLY__SLAB_SLACK +
	       TALLY__SLAB_OBJS * snap_stride(kind);
}

void *
tally__snap_alloc_slow(struct tally__thread *t, unsigned kind)
{
	size_t stride = snap_stride(kind);
	struct tally__slab *b;
	char *p;

	if (t->slab_left[kind] == 0) {
		b = tally__malloc(t->store, slab_bytes(kind));
		if (b == NULL)
			return NULL;
		b->next = t->slabs;
		b->kind = kind;
		t->slabs = b;
		/* The first snapshot on the first line after the header. */
		p = (char *)b + TALLY__SLAB_HDR;
		p += (TALLY__LINE - (uintptr_t)p % TALLY__LINE) % TALLY__LINE;
		t->slab_next[kind] = p;
		t->slab_left[kind] = TALLY__SLAB_OBJS;
	}
	p = t->slab_next[kind];
	t->slab_next[kind] = p + stride;
	t->slab_left[kind]--;
	return p;
}

static void
slabs_free(struct tally__thread *t)
{
	struct tally__slab *b = t->slabs, *next;

	for (; b != NULL; b = next) {
		next = b->next;
		tally__free(t->store, b, slab_bytes(b->kind));
	}
	t->slabs = NULL;
	memset(t->cache, 0, sizeof t->cache);
	memset(t->cache_n, 0, sizeof t->cache_n);
}

int
tally__thread_register(tally_store *s, struct tally__thread **out)
{
	struct tally__thread *t;

	pthread_mutex_lock(&s->reg_lock);
	t = s->idle;
	if (t != NULL)
		s->idle = t->idle_next;
	pthread_mutex_unlock(&s->reg_lock);

	if (t == NULL) {
		size_t align = alignof(struct tally__thread);
		size_t size = sizeof *t + align - 1;
		void *raw = tally__malloc(s, size);

		if (raw == NULL)
			return TALLY_ENOMEM;
		/* Pointer arithmetic, not an integer-to-pointer cast. */
		t = (struct tally__thread *)((char *)raw +
					     (align - (uintptr_t)raw % align) %
						     align);
		memset(t, 0, sizeof *t);
		t->raw = raw;
		t->store = s;
		t->spin_above = TALLY__PENDING_HIGH;
		ck_epoch_register(&s->epoch, &t->epoch, t);
		pthread_mutex_lock(&s->reg_lock);
		t->all_next = s->all;
		s->all = t;
		s->threads_total++;
		pthread_mutex_unlock(&s->reg_lock);
	}
	t->idle_next = NULL;
	if (pthread_setspecific(s->tkey, t) != 0) {
		pthread_mutex_lock(&s->reg_lock);
		t->idle_next = s->idle;
		s->idle = t;
		pthread_mutex_unlock(&s->reg_lock);
		return TALLY_ENOMEM;
	}
	tally__store_uint(&t->in_use, 1);
	*out = t;
	return TALLY_OK;
}

/* pthread key destructor: the thread is exiting. */
void
tally__thread_exit(void *arg)
{
	struct tally__thread *t = arg;
	tally_store *s = t->store;

	submit(t);
	if (t->need_poll)
		poll_once(t);
	t->need_poll = has_garbage(t);
	tally__store_uint(&t->in_use, 0);
	pthread_mutex_lock(&s->reg_lock);
	t->idle_next = s->idle;
	s->idle = t;
	if (t->need_poll)
		tally__store_uint(&s->idle_dirty, 1);
	pthread_mutex_unlock(&s->reg_lock);
}

/*
 * Destroy: no thread is inside any call on this store (the caller's
 * contract), so every pending object is unreachable and is freed at once.
 */
void
tally__threads_destroy(tally_store *s)
{
	struct tally__thread *t = s->all, *next;

	for (; t != NULL; t = next) {
		next = t->all_next;
		ck_epoch_reclaim(&t->epoch);
		if (t->batch != NULL) {
			batch_drain(s, NULL, t->batch);
			tally__free(s, t->batch, sizeof *t->batch);
		}
		if (t->spare != NULL)
			tally__free(s, t->spare, sizeof *t->spare);
		slabs_free(t);
		tally__free(s, t->raw,
			    sizeof *t + alignof(struct tally__thread) - 1);
	}
	s->all = NULL;
	s->idle = NULL;
}
