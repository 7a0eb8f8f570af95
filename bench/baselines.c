/*
 * Baselines for tally-bench (see baselines.h): a mutex map, an rwlock map
 * with a mutex per record, the naive load-clone-store pattern, and the
 * hash + probe + fetch-add floor. All share one open-addressing map, the
 * library's hash function (tally__hash), tally's window lattice
 * (tally__window) and one transition function, so they differ only in how
 * they synchronize.
 */
#define _GNU_SOURCE /* MAP_ANONYMOUS */

#include "baselines.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "base.h" /* TALLY_KEY_MAX */
#include "clock.h"
#include "hash.h"
#include "period.h"

/* ------------------------------------------------------------------------ */
/* Records and the transition shared by every baseline                      */
/* ------------------------------------------------------------------------ */

struct rec {
	int64_t usage;
	int64_t window_start;
	int64_t window_end; /* next boundary: due iff now >= window_end */
	int64_t max;
};

enum op {
	OP_CHECK,
	OP_BUMP,
	OP_TRY
};

/* Entries end with the key: one length byte, the bytes and a NUL. */
struct e_mutex {
	struct rec r;
	uint8_t key_len;
	char key[];
};

struct e_rwlock {
	pthread_mutex_t mu;
	struct rec r;
	uint8_t key_len;
	char key[];
};

struct e_racy {
	struct rec *_Atomic cur; /* never modified after it is published */
	struct rec home;         /* where bl_quiesce puts the live record */
	uint8_t key_len;
	char key[];
};

struct e_floor {
	_Atomic int64_t usage;
	uint8_t key_len;
	char key[];
};

struct slot {
	uint64_t hash;
	void *e; /* NULL: empty */
};

/*
 * Racy copies come from per-thread chunks, recycled while the threads run
 * (see racy_tls). bl_warm fills a pool of chunks that have been written
 * to, and bl_quiesce moves the live records home and returns the chunks to
 * the pool, so the timed loop rarely touches fresh memory.
 */
#define CHUNK_BYTES ((size_t)4 << 20)
#define RACY_MAX_THREADS 256

struct chunk {
	struct chunk *next;      /* in the pool */
	struct chunk *used_next; /* in use by the running row */
	unsigned char data[];    /* 16-byte aligned */
};

/* A racy copy: the record readers see, and its owner's bookkeeping. */
struct copy {
	struct copy *next; /* owner's lists */
	struct e_racy *e;  /* where it was published */
	struct rec r;
};

/* Operations a racy thread has finished, alone on its cache line. */
struct qs_slot {
	_Atomic uint64_t done;
	char pad[56];
};

struct bl_map {
	/* Read by every operation. */
	enum bl_impl impl;
	size_t mask;
	struct slot *slots;
	size_t key_off; /* offset of key_len in an entry */
	uint64_t seed;
	int64_t period_ns;
	size_t n;
	/* The locks and the counters written under contention, each on its
	 * own cache lines. */
	char pad0[64];
	pthread_mutex_t mu;
	char pad1[64];
	pthread_rwlock_t rw;
	char pad2[64];
	_Atomic int64_t rolled; /* usage of every window that rolled */
	char pad3[64];
	struct chunk *_Atomic chunks; /* in use by the running row */
	struct chunk *_Atomic pool;   /* free, already populated */
	_Atomic size_t arena_bytes;
	_Atomic uint64_t run;  /* unique per map and per bl_quiesce */
	_Atomic unsigned n_qs; /* racy threads that joined this run */
	_Atomic bool no_recycle;
	char pad4[64];
	struct qs_slot qs[RACY_MAX_THREADS];
};

/* Run identities: never reused, so a thread's racy state cannot be taken
 * for that of a later map at the same address. */
static _Atomic uint64_t next_run;

static inline int64_t
clock_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * The clock as tally's default clock reads it (the rule of src/clock.h,
 * shared): CLOCK_REALTIME_COARSE first, and CLOCK_REALTIME only when the
 * coarse reading is within TALLY_COARSE_MARGIN_NS of the window's end.
 * The baselines pay exactly what tally pays for time.
 */
static inline int64_t
clock_coarse(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t
clock_exact_if_near(int64_t coarse, int64_t window_end)
{
	if (tally__coarse_not_due(coarse, window_end))
		return coarse;
	return clock_now();
}

/* The window of now, as tally computes it for a calendar-aligned fixed
 * period (UTC offset 0). */
static void
window_of(int64_t period_ns, int64_t now, int64_t *start, int64_t *end)
{
	tally__lattice l;

	l.count = period_ns;
	l.unit = TALLY_PERIOD_FIXED;
	l.offset_min = 0;
	l.aligned = true;
	l.anchor = 0;
	tally__window(&l, now, start, end);
}

/*
 * The transition of a budget (budget.c) on a private copy r: roll a due
 * window, then apply op. *install says whether r must be written back;
 * *rolled receives the usage of the window that rolled, or -1.
 */
static inline int
step(const struct bl_map *m, struct rec *r, enum op op, int64_t now,
     int64_t amount, bool *install, int64_t *rolled)
{
	bool due;

	now = clock_exact_if_near(now, r->window_end);
	due = now >= r->window_end;

	*rolled = -1;
	*install = false;
	if (due) {
		int64_t start, end;

		window_of(m->period_ns, now, &start, &end);
		if (start > r->window_start) {
			*rolled = r->usage;
			r->usage = 0;
			r->window_start = start;
			r->window_end = end;
		} else {
			due = false;
		}
	}
	switch (op) {
	case OP_CHECK:
		return r->usage >= r->max ? TALLY_LIMITED : TALLY_OK;
	case OP_BUMP:
		if (amount > INT64_MAX - r->usage)
			return TALLY_EOVERFLOW;
		r->usage += amount;
		*install = due || amount != 0;
		return TALLY_OK;
	case OP_TRY:
		if (amount > r->max - r->usage)
			return TALLY_LIMITED;
		r->usage += amount;
		*install = due || amount != 0;
		return TALLY_OK;
	}
	return TALLY_EINVAL;
}

static inline void
account(struct bl_map *m, bool install, int64_t rolled)
{
	if (install && rolled > 0)
		atomic_fetch_add_explicit(&m->rolled, rolled,
					  memory_order_relaxed);
}

/* ------------------------------------------------------------------------ */
/* The map                                                                  */
/* ------------------------------------------------------------------------ */

static inline const uint8_t *
key_of(const struct bl_map *m, const void *e)
{
	return (const uint8_t *)e + m->key_off;
}

static inline int
key_len(const char *key, size_t *len)
{
	size_t n = strnlen(key, TALLY_KEY_MAX + 1);

	if (n == 0 || n > TALLY_KEY_MAX)
		return TALLY_EKEY;
	*len = n;
	return TALLY_OK;
}

static inline void *
probe(const struct bl_map *m, const char *key, size_t len, uint64_t h)
{
	for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
		const struct slot *s = &m->slots[i];

		if (s->e == NULL)
			return NULL;
		if (s->hash == h) {
			const uint8_t *k = key_of(m, s->e);

			if (k[0] == len && memcmp(k + 1, key, len) == 0)
				return s->e;
		}
	}
}

static size_t
entry_size(enum bl_impl impl, size_t len)
{
	switch (impl) {
	case BL_MUTEX:
		return sizeof(struct e_mutex) + len + 1;
	case BL_RWLOCK:
		return sizeof(struct e_rwlock) + len + 1;
	case BL_RACY:
		return sizeof(struct e_racy) + len + 1;
	case BL_FLOOR:
		return sizeof(struct e_floor) + len + 1;
	}
	return 0;
}

static size_t
key_offset(enum bl_impl impl)
{
	switch (impl) {
	case BL_MUTEX:
		return offsetof(struct e_mutex, key_len);
	case BL_RWLOCK:
		return offsetof(struct e_rwlock, key_len);
	case BL_RACY:
		return offsetof(struct e_racy, key_len);
	case BL_FLOOR:
		return offsetof(struct e_floor, key_len);
	}
	return 0;
}

static void
entry_init(struct bl_map *m, void *e, const struct rec *r)
{
	switch (m->impl) {
	case BL_MUTEX: {
		struct e_mutex *x = e;

		x->r = *r;
		break;
	}
	case BL_RWLOCK: {
		struct e_rwlock *x = e;

		pthread_mutex_init(&x->mu, NULL);
		x->r = *r;
		break;
	}
	case BL_RACY: {
		struct e_racy *x = e;

		x->home = *r;
		atomic_init(&x->cur, &x->home);
		break;
	}
	case BL_FLOOR: {
		struct e_floor *x = e;

		atomic_init(&x->usage, 0);
		break;
	}
	}
}

/* Warm-up for racy copies: see baselines.h. */
void
bl_warm(struct bl_map *m)
{
	size_t n = m->n;
	size_t want = (n * sizeof(struct copy) * 5 / 4) / CHUNK_BYTES + 8;

	if (m->impl != BL_RACY)
		return;
	for (size_t i = 0; i < want; i++) {
		void *p = mmap(NULL, CHUNK_BYTES, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct chunk *c = p;

		if (p == MAP_FAILED)
			return; /* the run maps what it needs */
		memset(c, 0, CHUNK_BYTES);
		c->next = atomic_load(&m->pool);
		atomic_store(&m->pool, c);
	}
}

struct bl_map *
bl_create(enum bl_impl impl, const char *const *keys, size_t n, int64_t max,
	  int64_t period_ns)
{
	struct bl_map *m = calloc(1, sizeof *m);
	size_t cap = 64;
	struct rec r;

	if (m == NULL)
		return NULL;
	while (cap < 2 * n)
		cap <<= 1;
	m->impl = impl;
	m->mask = cap - 1;
	m->key_off = key_offset(impl);
	m->seed = 0x5eed0f7a11ull;
	m->period_ns = period_ns;
	m->slots = calloc(cap, sizeof *m->slots);
	pthread_mutex_init(&m->mu, NULL);
	pthread_rwlock_init(&m->rw, NULL);
	atomic_init(&m->rolled, 0);
	atomic_init(&m->chunks, NULL);
	atomic_init(&m->pool, NULL);
	atomic_init(&m->arena_bytes, 0);
	atomic_init(&m->run, atomic_fetch_add(&next_run, 1) + 1);
	atomic_init(&m->n_qs, 0);
	atomic_init(&m->no_recycle, false);
	for (unsigned i = 0; i < RACY_MAX_THREADS; i++)
		atomic_init(&m->qs[i].done, 0);
	if (m->slots == NULL) {
		bl_destroy(m);
		return NULL;
	}
	memset(&r, 0, sizeof r);
	r.max = max;
	window_of(period_ns, clock_now(), &r.window_start, &r.window_end);
	for (size_t i = 0; i < n; i++) {
		size_t len, j;
		uint64_t h;
		uint8_t *e;

		if (key_len(keys[i], &len) != TALLY_OK) {
			bl_destroy(m);
			return NULL;
		}
		h = tally__hash(keys[i], len, m->seed);
		if (probe(m, keys[i], len, h) != NULL)
			continue; /* duplicate */
		e = malloc(entry_size(impl, len));
		if (e == NULL) {
			bl_destroy(m);
			return NULL;
		}
		entry_init(m, e, &r);
		e[m->key_off] = (uint8_t)len;
		memcpy(e + m->key_off + 1, keys[i], len + 1);
		for (j = h & m->mask; m->slots[j].e != NULL;
		     j = (j + 1) & m->mask)
			;
		m->slots[j].hash = h;
		m->slots[j].e = e;
		m->n++;
	}
	return m;
}

void
bl_destroy(struct bl_map *m)
{
	if (m == NULL)
		return;
	bl_quiesce(m);
	for (struct chunk *c = atomic_load(&m->pool), *next; c != NULL;
	     c = next) {
		next = c->next;
		munmap(c, CHUNK_BYTES);
	}
	if (m->slots != NULL) {
		for (size_t i = 0; i <= m->mask; i++) {
			if (m->slots[i].e == NULL)
				continue;
			if (m->impl == BL_RWLOCK) {
				struct e_rwlock *x = m->slots[i].e;

				pthread_mutex_destroy(&x->mu);
			}
			free(m->slots[i].e);
		}
	}
	free(m->slots);
	pthread_rwlock_destroy(&m->rw);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

int64_t
bl_sum(struct bl_map *m)
{
	int64_t sum = atomic_load(&m->rolled);

	for (size_t i = 0; i <= m->mask; i++) {
		void *e = m->slots[i].e;

		if (e == NULL)
			continue;
		switch (m->impl) {
		case BL_MUTEX:
			sum += ((struct e_mutex *)e)->r.usage;
			break;
		case BL_RWLOCK:
			sum += ((struct e_rwlock *)e)->r.usage;
			break;
		case BL_RACY:
			sum += atomic_load(&((struct e_racy *)e)->cur)->usage;
			break;
		case BL_FLOOR:
			sum += atomic_load(&((struct e_floor *)e)->usage);
			break;
		}
	}
	return sum;
}

void
bl_quiesce(struct bl_map *m)
{
	struct chunk *c;

	if (m->impl != BL_RACY)
		return;
	for (size_t i = 0; i <= m->mask; i++) {
		struct e_racy *e = m->slots[i].e;

		if (e == NULL)
			continue;
		e->home = *atomic_load(&e->cur);
		atomic_store(&e->cur, &e->home);
	}
	c = atomic_exchange(&m->chunks, NULL);
	while (c != NULL) {
		struct chunk *next = c->used_next;

		c->next = atomic_load(&m->pool);
		atomic_store(&m->pool, c);
		c = next;
	}
	atomic_store(&m->arena_bytes, 0);
	for (unsigned i = 0; i < RACY_MAX_THREADS; i++)
		atomic_store(&m->qs[i].done, 0);
	atomic_store(&m->n_qs, 0);
	atomic_store(&m->no_recycle, false);
	atomic_store(&m->run, atomic_fetch_add(&next_run, 1) + 1);
}

size_t
bl_arena_bytes(const struct bl_map *m)
{
	return atomic_load_explicit(&m->arena_bytes, memory_order_relaxed);
}

/* ------------------------------------------------------------------------ */
/* BL_MUTEX                                                                 */
/* ------------------------------------------------------------------------ */

/* Clock and hash outside the lock; probe and transition inside. */
static inline int
mutex_op(struct bl_map *m, const char *key, enum op op, int64_t amount)
{
	struct e_mutex *e;
	struct rec r;
	bool install;
	int64_t rolled, now;
	uint64_t h;
	size_t len;
	int rc;

	if ((rc = key_len(key, &len)) != TALLY_OK)
		return rc;
	now = clock_coarse();
	h = tally__hash(key, len, m->seed);
	pthread_mutex_lock(&m->mu);
	e = probe(m, key, len, h);
	if (e == NULL) {
		pthread_mutex_unlock(&m->mu);
		return TALLY_ENOENT;
	}
	r = e->r;
	rc = step(m, &r, op, now, amount, &install, &rolled);
	if (install)
		e->r = r;
	pthread_mutex_unlock(&m->mu);
	account(m, install, rolled);
	return rc;
}

int
bl_mutex_bump(struct bl_map *m, const char *key, int64_t amount)
{
	return mutex_op(m, key, OP_BUMP, amount);
}

int
bl_mutex_check(struct bl_map *m, const char *key)
{
	return mutex_op(m, key, OP_CHECK, 0);
}

int
bl_mutex_try_consume(struct bl_map *m, const char *key, int64_t amount)
{
	return mutex_op(m, key, OP_TRY, amount);
}

int
bl_mutex_get(struct bl_map *m, const char *key, struct bl_view *view)
{
	struct e_mutex *e;
	uint64_t h;
	size_t len;
	int rc;

	if ((rc = key_len(key, &len)) != TALLY_OK)
		return rc;
	h = tally__hash(key, len, m->seed);
	pthread_mutex_lock(&m->mu);
	e = probe(m, key, len, h);
	if (e != NULL)
		memcpy(view, &e->r, sizeof *view);
	pthread_mutex_unlock(&m->mu);
	return e != NULL ? TALLY_OK : TALLY_ENOENT;
}

/* ------------------------------------------------------------------------ */
/* BL_RWLOCK                                                                */
/* ------------------------------------------------------------------------ */

static inline int
rwlock_op(struct bl_map *m, const char *key, enum op op, int64_t amount)
{
	struct e_rwlock *e;
	struct rec r;
	bool install;
	int64_t rolled, now;
	uint64_t h;
	size_t len;
	int rc;

	if ((rc = key_len(key, &len)) != TALLY_OK)
		return rc;
	now = clock_coarse();
	h = tally__hash(key, len, m->seed);
	pthread_rwlock_rdlock(&m->rw);
	e = probe(m, key, len, h);
	if (e == NULL) {
		pthread_rwlock_unlock(&m->rw);
		return TALLY_ENOENT;
	}
	pthread_mutex_lock(&e->mu);
	r = e->r;
	rc = step(m, &r, op, now, amount, &install, &rolled);
	if (install)
		e->r = r;
	pthread_mutex_unlock(&e->mu);
	pthread_rwlock_unlock(&m->rw);
	account(m, install, rolled);
	return rc;
}

int
bl_rwlock_bump(struct bl_map *m, const char *key, int64_t amount)
{
	return rwlock_op(m, key, OP_BUMP, amount);
}

int
bl_rwlock_check(struct bl_map *m, const char *key)
{
	return rwlock_op(m, key, OP_CHECK, 0);
}

int
bl_rwlock_try_consume(struct bl_map *m, const char *key, int64_t amount)
{
	return rwlock_op(m, key, OP_TRY, amount);
}

int
bl_rwlock_get(struct bl_map *m, const char *key, struct bl_view *view)
{
	struct e_rwlock *e;
	uint64_t h;
	size_t len;
	int rc;

	if ((rc = key_len(key, &len)) != TALLY_OK)
		return rc;
	h = tally__hash(key, len, m->seed);
	pthread_rwlock_rdlock(&m->rw);
	e = probe(m, key, len, h);
	if (e != NULL) {
		pthread_mutex_lock(&e->mu);
		memcpy(view, &e->r, sizeof *view);
		pthread_mutex_unlock(&e->mu);
	}
	pthread_rwlock_unlock(&m->rw);
	return e != NULL ? TALLY_OK : TALLY_ENOENT;
}

/* ------------------------------------------------------------------------ */
/* BL_RACY                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * Reclamation of the copies, the C stand-in for Go's garbage collector.
 * Only the thread that allocated a copy ever publishes it, once, so a copy
 * that is no longer its record's current one can never become current
 * again: after its owner has seen that, the only threads that can still
 * read it are those that loaded it earlier and are still inside that
 * operation. Each racy thread counts the operations it has finished in its
 * own cache line (one plain store per operation, no fence), and the owner
 * reuses a batch of such copies once every other thread's count has moved
 * past the value it had when the batch was closed (quiescent-state-based
 * reclamation). Readers never block writers and nothing here adds an
 * atomic read-modify-write to an operation.
 */
static _Thread_local struct racy_tls {
	uint64_t run;  /* the map's run this state belongs to; 0: none */
	unsigned slot; /* in m->qs; RACY_MAX_THREADS: none (no recycling) */
	uint64_t done; /* operations finished */
	unsigned char *p, *end;   /* bump allocation in the current chunk */
	struct copy *free;        /* reusable now */
	struct copy *head, *tail; /* published, oldest first */
	struct copy *checked;     /* seen not current; grace not started */
	struct copy *waiting;     /* grace started at snap */
	unsigned n_snap;
	unsigned since_scan;
	uint64_t snap[RACY_MAX_THREADS];
} tl;

#define SCAN_EVERY 32 /* allocations between two reclamation scans */

/* A free chunk: from the pool, or newly mapped. Lock-free pop: the racy
 * threads of one row may pop concurrently, and nothing is pushed while
 * they run (bl_quiesce is quiescent), so there is no ABA; a popped chunk's
 * `next` is never written again until it is back in the pool. */
static struct chunk *
pool_take(struct bl_map *m)
{
	struct chunk *c = atomic_load(&m->pool);
	void *p;

	while (c != NULL &&
	       !atomic_compare_exchange_weak(&m->pool, &c, c->next))
		;
	if (c != NULL)
		return c;
	p = mmap(NULL, CHUNK_BYTES, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		abort(); /* a bench: no recovery */
	return p;
}

/* Start of an operation: join the map's racy threads on the first one. */
static inline void
racy_enter(struct bl_map *m)
{
	uint64_t run = atomic_load_explicit(&m->run, memory_order_relaxed);
	unsigned slot;

	/* Not the map's address: a new map may reuse a freed one's. */
	if (tl.run == run)
		return;
	/* A new map or a new run: what the old lists held is gone. */
	memset(&tl, 0, offsetof(struct racy_tls, snap));
	tl.run = run;
	/* Before this thread loads any record (seq_cst: a scan that does
	 * not see this slot took its snapshot before our first load). */
	slot = atomic_fetch_add(&m->n_qs, 1);
	if (slot >= RACY_MAX_THREADS) {
		atomic_store(&m->no_recycle, true);
		slot = RACY_MAX_THREADS;
	}
	tl.slot = slot;
}

/* End of an operation: nothing loaded during it is held any more. */
static inline void
racy_exit(struct bl_map *m)
{
	if (tl.slot < RACY_MAX_THREADS)
		atomic_store_explicit(&m->qs[tl.slot].done, ++tl.done,
				      memory_order_release);
}

static bool
grace_done(struct bl_map *m)
{
	for (unsigned i = 0; i < tl.n_snap; i++) {
		if (i != tl.slot &&
		    atomic_load_explicit(&m->qs[i].done,
					 memory_order_acquire) == tl.snap[i])
			return false;
	}
	return true;
}

static void
scan(struct bl_map *m)
{
	/* Oldest published copies first; stop at one that is still current
	 * (moved to the back: its key has not been written since). */
	for (unsigned k = 0; k < 2 * SCAN_EVERY && tl.head != NULL; k++) {
		struct copy *c = tl.head;

		tl.head = c->next;
		if (tl.head == NULL)
			tl.tail = NULL;
		c->next = NULL;
		if (atomic_load(&c->e->cur) != &c->r) {
			c->next = tl.checked;
			tl.checked = c;
			continue;
		}
		if (tl.tail != NULL)
			tl.tail->next = c;
		else
			tl.head = c;
		tl.tail = c;
		break;
	}
	if (tl.waiting != NULL && grace_done(m)) {
		struct copy *c = tl.waiting;

		while (c->next != NULL)
			c = c->next;
		c->next = tl.free;
		tl.free = tl.waiting;
		tl.waiting = NULL;
	}
	if (tl.waiting == NULL && tl.checked != NULL &&
	    !atomic_load(&m->no_recycle)) {
		tl.waiting = tl.checked;
		tl.checked = NULL;
		tl.n_snap = atomic_load(&m->n_qs);
		if (tl.n_snap > RACY_MAX_THREADS)
			tl.n_snap = RACY_MAX_THREADS;
		for (unsigned i = 0; i < tl.n_snap; i++)
			tl.snap[i] = atomic_load(&m->qs[i].done);
	}
}

static struct copy *
copy_alloc(struct bl_map *m)
{
	struct copy *c;

	if (++tl.since_scan >= SCAN_EVERY) {
		tl.since_scan = 0;
		scan(m);
	}
	if ((c = tl.free) != NULL) {
		tl.free = c->next;
		return c;
	}
	if ((size_t)(tl.end - tl.p) < sizeof *c) {
		struct chunk *k = pool_take(m);

		k->used_next =
			atomic_load_explicit(&m->chunks, memory_order_relaxed);
		while (!atomic_compare_exchange_weak(&m->chunks, &k->used_next,
						     k))
			;
		atomic_fetch_add_explicit(&m->arena_bytes, CHUNK_BYTES,
					  memory_order_relaxed);
		tl.p = k->data;
		tl.end = (unsigned char *)k + CHUNK_BYTES;
	}
	c = (struct copy *)(void *)tl.p;
	tl.p += sizeof *c;
	return c;
}

/* A copy that was never published goes straight back. */
static inline void
copy_unused(struct copy *c)
{
	c->next = tl.free;
	tl.free = c;
}

static inline void
copy_published(struct copy *c, struct e_racy *e)
{
	c->e = e;
	c->next = NULL;
	if (tl.tail != NULL)
		tl.tail->next = c;
	else
		tl.head = c;
	tl.tail = c;
}

/*
 * Load, clone, modify, store: the store is a plain pointer store (release,
 * so the copy's fields are visible to whoever loads it: on x86-64 a plain
 * mov, like the acquire load) and no CAS, so a concurrent writer's copy is
 * overwritten and its increment lost.
 */
static inline int
racy_op(struct bl_map *m, const char *key, enum op op, int64_t amount)
{
	struct e_racy *e;
	const struct rec *old;
	struct copy *c;
	bool install;
	int64_t rolled, now;
	uint64_t h;
	size_t len;
	int rc;

	if ((rc = key_len(key, &len)) != TALLY_OK)
		return rc;
	racy_enter(m);
	now = clock_coarse();
	h = tally__hash(key, len, m->seed);
	e = probe(m, key, len, h);
	if (e == NULL) {
		racy_exit(m);
		return TALLY_ENOENT;
	}
	old = atomic_load_explicit(&e->cur, memory_order_acquire);
	if (op == OP_CHECK) {
		struct rec tmp = *old;

		rc = step(m, &tmp, op, now, amount, &install, &rolled);
		racy_exit(m);
		return rc;
	}
	c = copy_alloc(m);
	c->r = *old;
	rc = step(m, &c->r, op, now, amount, &install, &rolled);
	if (install) {
		atomic_store_explicit(&e->cur, &c->r, memory_order_release);
		copy_published(c, e);
		account(m, install, rolled);
	} else {
		copy_unused(c);
	}
	racy_exit(m);
	return rc;
}

int
bl_racy_bump(struct bl_map *m, const char *key, int64_t amount)
{
	return racy_op(m, key, OP_BUMP, amount);
}

int
bl_racy_check(struct bl_map *m, const char *key)
{
	return racy_op(m, key, OP_CHECK, 0);
}

int
bl_racy_try_consume(struct bl_map *m, const char *key, int64_t amount)
{
	return racy_op(m, key, OP_TRY, amount);
}

int
bl_racy_get(struct bl_map *m, const char *key, struct bl_view *view)
{
	const struct e_racy *e;
	uint64_t h;
	size_t len;
	int rc;

	if ((rc = key_len(key, &len)) != TALLY_OK)
		return rc;
	racy_enter(m);
	h = tally__hash(key, len, m->seed);
	e = probe(m, key, len, h);
	if (e != NULL)
		memcpy(view,
		       atomic_load_explicit(&e->cur, memory_order_acquire),
		       sizeof *view);
	racy_exit(m);
	return e != NULL ? TALLY_OK : TALLY_ENOENT;
}

/* ------------------------------------------------------------------------ */
/* BL_FLOOR                                                                 */
/* ------------------------------------------------------------------------ */

int
bl_floor_add(struct bl_map *m, const char *key, int64_t amount)
{
	struct e_floor *e;
	size_t len;
	int rc;

	if ((rc = key_len(key, &len)) != TALLY_OK)
		return rc;
	e = probe(m, key, len, tally__hash(key, len, m->seed));
	if (e == NULL)
		return TALLY_ENOENT;
	atomic_fetch_add(&e->usage, amount);
	return TALLY_OK;
}

int
bl_floor_load(struct bl_map *m, const char *key, int64_t *value)
{
	struct e_floor *e;
	size_t len;
	int rc;

	if ((rc = key_len(key, &len)) != TALLY_OK)
		return rc;
	e = probe(m, key, len, tally__hash(key, len, m->seed));
	if (e == NULL)
		return TALLY_ENOENT;
	*value = atomic_load_explicit(&e->usage, memory_order_acquire);
	return TALLY_OK;
}

/* ------------------------------------------------------------------------ */
/* Admission baselines (BLA_MUTEX, BLA_RWLOCK)                              */
/* ------------------------------------------------------------------------ */

struct bla_ctr {
	int64_t used;
	int64_t held;
	int64_t max;
	int64_t window_start;
	int64_t window_end; /* due iff now >= window_end */
	tally__lattice l;
};

struct e_adm {
	pthread_mutex_t mu; /* BLA_RWLOCK */
	uint32_t kind;
	unsigned nc;
	struct bla_ctr c[2];
	uint8_t key_len;
	char key[];
};

struct bla_map {
	enum bla_lock lock;
	size_t mask;
	struct slot *slots;
	uint64_t seed;
	char pad0[64];
	pthread_mutex_t mu;
	char pad1[64];
	pthread_rwlock_t rw;
	char pad2[64];
	_Atomic int64_t rolled[3]; /* used of every window that rolled */
	char pad3[64];
};

static struct e_adm *
bla_probe(const struct bla_map *m, const char *key, size_t len, uint64_t h)
{
	for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
		const struct slot *s = &m->slots[i];

		if (s->e == NULL)
			return NULL;
		if (s->hash == h) {
			struct e_adm *e = s->e;

			if (e->key_len == len && memcmp(e->key, key, len) == 0)
				return e;
		}
	}
}

/* The entry at address e, found through the map (settle). */
static struct e_adm *
bla_probe_ptr(const struct bla_map *m, const void *e, uint64_t h)
{
	for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
		const struct slot *s = &m->slots[i];

		if (s->e == NULL)
			return NULL;
		if (s->e == e)
			return s->e;
	}
}

static inline unsigned
counter_id(const struct e_adm *e, unsigned c)
{
	if (e->kind == TALLY_KIND_BUDGET)
		return TALLY_COUNTER_BUDGET;
	return c == 0 ? TALLY_COUNTER_TOKENS : TALLY_COUNTER_REQUESTS;
}

/* Whether counter c is due at now, and its window of now. */
static inline bool
ctr_due(const struct bla_ctr *c, int64_t now, int64_t *start, int64_t *end)
{
	if (TALLY__LIKELY(!tally__window_due(now, c->window_end)))
		return false;
	tally__window(&c->l, now, start, end);
	return *start > c->window_start;
}

/* Rolls counter c of e if due (on touch: a write). */
static inline void
ctr_roll(struct bla_map *m, struct e_adm *e, unsigned c, int64_t now)
{
	struct bla_ctr *k = &e->c[c];
	int64_t start, end;

	if (!ctr_due(k, now, &start, &end))
		return;
	if (k->used != 0)
		atomic_fetch_add_explicit(&m->rolled[counter_id(e, c)], k->used,
					  memory_order_relaxed);
	k->used = 0;
	k->window_start = start;
	k->window_end = end;
}

/* Whether e fits counter c at now (a due window counts as rolled). */
static inline bool
ctr_fits(const struct bla_ctr *k, int64_t now, int64_t e)
{
	int64_t start, end, used = k->used, room;

	if (ctr_due(k, now, &start, &end))
		used = 0;
	if (__builtin_sub_overflow(k->max - used, k->held, &room))
		return false;
	return e <= room;
}

static void
ctr_report(const struct bla_ctr *k, int64_t now, struct bla_report *r)
{
	int64_t start = k->window_start, end = k->window_end;
	int64_t used = k->used;

	if (ctr_due(k, now, &start, &end))
		used = 0;
	r->max = k->max;
	r->used = used;
	r->held = k->held;
	r->remaining = k->max - used - k->held;
	if (r->remaining < 0)
		r->remaining = 0;
	r->window_start = start;
	r->window_end = end;
}

struct bla_map *
bla_create(enum bla_lock lock, const struct bla_def *defs, size_t n)
{
	struct bla_map *m = calloc(1, sizeof *m);
	size_t cap = 64;
	int64_t now = clock_now();

	if (m == NULL)
		return NULL;
	while (cap < 2 * n)
		cap <<= 1;
	m->lock = lock;
	m->mask = cap - 1;
	m->seed = 0x5eed0f7a11ull;
	pthread_mutex_init(&m->mu, NULL);
	pthread_rwlock_init(&m->rw, NULL);
	for (unsigned i = 0; i < 3; i++)
		atomic_init(&m->rolled[i], 0);
	m->slots = calloc(cap, sizeof *m->slots);
	if (m->slots == NULL) {
		bla_destroy(m);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		const struct bla_def *d = &defs[i];
		struct e_adm *e;
		size_t len, j;
		uint64_t h;

		if (key_len(d->key, &len) != TALLY_OK ||
		    (d->kind != TALLY_KIND_BUDGET &&
		     d->kind != TALLY_KIND_RATELIMIT)) {
			bla_destroy(m);
			return NULL;
		}
		h = tally__hash(d->key, len, m->seed);
		if (bla_probe(m, d->key, len, h) != NULL ||
		    (e = calloc(1, sizeof *e + len + 1)) == NULL) {
			bla_destroy(m);
			return NULL;
		}
		pthread_mutex_init(&e->mu, NULL);
		e->kind = d->kind;
		e->nc = d->kind == TALLY_KIND_BUDGET ? 1 : 2;
		for (unsigned c = 0; c < e->nc; c++) {
			struct bla_ctr *k = &e->c[c];

			k->max = d->max[c];
			k->l.count = d->period_count[c];
			k->l.unit = d->period_unit[c];
			k->l.offset_min = 0;
			k->l.aligned = true;
			k->l.anchor = 0;
			tally__window(&k->l, now, &k->window_start,
				      &k->window_end);
		}
		e->key_len = (uint8_t)len;
		memcpy(e->key, d->key, len + 1);
		for (j = h & m->mask; m->slots[j].e != NULL;
		     j = (j + 1) & m->mask)
			;
		m->slots[j].hash = h;
		m->slots[j].e = e;
	}
	return m;
}

void
bla_destroy(struct bla_map *m)
{
	if (m == NULL)
		return;
	if (m->slots != NULL) {
		for (size_t i = 0; i <= m->mask; i++) {
			struct e_adm *e = m->slots[i].e;

			if (e == NULL)
				continue;
			pthread_mutex_destroy(&e->mu);
			free(e);
		}
	}
	free(m->slots);
	pthread_rwlock_destroy(&m->rw);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

/* The decision and the holds, with every record of the call locked. */
static int
bla_admit_locked(struct bla_map *m, struct e_adm *const *e,
		 const struct bla_charge *c, unsigned n, int64_t now,
		 struct bla_hold *h, struct bla_report *rep)
{
	/* Pass 1: every counter fits, or nothing is written. */
	for (unsigned i = 0; i < n; i++)
		for (unsigned k = 0; k < e[i]->nc; k++)
			if (!ctr_fits(&e[i]->c[k], now, c[i].amount[k])) {
				if (rep != NULL)
					for (unsigned j = 0; j < n; j++)
						for (unsigned q = 0;
						     q < e[j]->nc; q++)
							ctr_report(&e[j]->c[q],
								   now,
								   &rep[2 * j +
									q]);
				return TALLY_LIMITED;
			}
	/* Pass 2: roll what is due, hold. */
	for (unsigned i = 0; i < n; i++) {
		for (unsigned k = 0; k < e[i]->nc; k++) {
			ctr_roll(m, e[i], k, now);
			e[i]->c[k].held += c[i].amount[k];
			if (rep != NULL)
				ctr_report(&e[i]->c[k], now, &rep[2 * i + k]);
		}
		h->part[i].e = e[i];
		h->part[i].amount[0] = c[i].amount[0];
		h->part[i].amount[1] = c[i].amount[1];
	}
	h->n = n;
	return TALLY_OK;
}

/* Sorts idx[0 .. n-1] by (hash, address) of their entries. */
static void
bla_order(struct e_adm *const *e, const uint64_t *hash, unsigned n,
	  unsigned *idx)
{
	for (unsigned i = 0; i < n; i++) {
		unsigned j = i;

		while (j > 0 &&
		       (hash[idx[j - 1]] > hash[i] ||
			(hash[idx[j - 1]] == hash[i] &&
			 (uintptr_t)e[idx[j - 1]] > (uintptr_t)e[i]))) {
			idx[j] = idx[j - 1];
			j--;
		}
		idx[j] = i;
	}
}

int
bla_admit(struct bla_map *m, const struct bla_charge *c, unsigned n,
	  struct bla_hold *h, struct bla_report *rep)
{
	struct e_adm *e[BLA_MAX];
	uint64_t hash[BLA_MAX];
	unsigned idx[BLA_MAX];
	int64_t now;
	int rc = TALLY_OK;

	if (n == 0 || n > BLA_MAX)
		return TALLY_EINVAL;
	for (unsigned i = 0; i < n; i++) {
		if (c[i].key_len == 0 || c[i].key_len > TALLY_KEY_MAX)
			return TALLY_EKEY;
		for (unsigned k = 0; k < 2; k++)
			if (c[i].amount[k] < 0)
				return TALLY_EINVAL;
		hash[i] = tally__hash(c[i].key, c[i].key_len, m->seed);
	}
	now = clock_now();
	if (m->lock == BLA_MUTEX)
		pthread_mutex_lock(&m->mu);
	else
		pthread_rwlock_rdlock(&m->rw);
	for (unsigned i = 0; i < n && rc == TALLY_OK; i++) {
		e[i] = bla_probe(m, c[i].key, c[i].key_len, hash[i]);
		if (e[i] == NULL)
			rc = TALLY_ENOENT;
		else if (e[i]->kind != c[i].kind)
			rc = TALLY_EINVAL;
		for (unsigned j = 0; j < i && rc == TALLY_OK; j++)
			if (e[j] == e[i])
				rc = TALLY_EINVAL;
		h->part[i].hash = hash[i];
	}
	if (rc == TALLY_OK && m->lock == BLA_MUTEX) {
		rc = bla_admit_locked(m, e, c, n, now, h, rep);
	} else if (rc == TALLY_OK) {
		bla_order(e, hash, n, idx);
		for (unsigned i = 0; i < n; i++)
			pthread_mutex_lock(&e[idx[i]]->mu);
		rc = bla_admit_locked(m, e, c, n, now, h, rep);
		for (unsigned i = n; i-- > 0;)
			pthread_mutex_unlock(&e[idx[i]]->mu);
	}
	if (m->lock == BLA_MUTEX)
		pthread_mutex_unlock(&m->mu);
	else
		pthread_rwlock_unlock(&m->rw);
	return rc;
}

/* Settles one part on its (locked) entry. */
static void
bla_settle_part(struct bla_map *m, struct e_adm *e, const int64_t held[2],
		const int64_t actual[2], int64_t now, int64_t *over)
{
	for (unsigned k = 0; k < e->nc; k++) {
		struct bla_ctr *q = &e->c[k];

		ctr_roll(m, e, k, now);
		q->held -= held[k];
		if (actual[k] <= INT64_MAX - q->used)
			q->used += actual[k];
		if (actual[k] > held[k])
			*over += actual[k] - held[k];
	}
}

int
bla_settle(struct bla_map *m, const struct bla_hold *h,
	   const int64_t (*actual)[2], int64_t *overdraft)
{
	int64_t now = clock_now(), over = 0;
	int rc = TALLY_OK;

	if (m->lock == BLA_MUTEX) {
		pthread_mutex_lock(&m->mu);
		for (unsigned i = 0; i < h->n; i++) {
			struct e_adm *e =
				bla_probe_ptr(m, h->part[i].e, h->part[i].hash);

			if (e == NULL) {
				rc = TALLY_ENOENT;
				continue;
			}
			bla_settle_part(m, e, h->part[i].amount, actual[i], now,
					&over);
		}
		pthread_mutex_unlock(&m->mu);
	} else {
		/* One record at a time: a settle needs no decision across
		 * records (tally's is one CAS per record too). */
		pthread_rwlock_rdlock(&m->rw);
		for (unsigned i = 0; i < h->n; i++) {
			struct e_adm *e =
				bla_probe_ptr(m, h->part[i].e, h->part[i].hash);

			if (e == NULL) {
				rc = TALLY_ENOENT;
				continue;
			}
			pthread_mutex_lock(&e->mu);
			bla_settle_part(m, e, h->part[i].amount, actual[i], now,
					&over);
			pthread_mutex_unlock(&e->mu);
		}
		pthread_rwlock_unlock(&m->rw);
	}
	if (overdraft != NULL)
		*overdraft = over;
	return rc;
}

void
bla_sum(struct bla_map *m, int64_t used[3], int64_t held[3])
{
	for (unsigned i = 0; i < 3; i++) {
		used[i] = atomic_load(&m->rolled[i]);
		held[i] = 0;
	}
	for (size_t i = 0; i <= m->mask; i++) {
		const struct e_adm *e = m->slots[i].e;

		if (e == NULL)
			continue;
		for (unsigned k = 0; k < e->nc; k++) {
			used[counter_id(e, k)] += e->c[k].used;
			held[counter_id(e, k)] += e->c[k].held;
		}
	}
}
