/*
 * The store: lifecycle, allocator, clocks, record cells and the map.
 *
 * The map is a ck_hs in SPMC mode: lookups are lock-free and run inside an
 * epoch section; structural writes (insert, remove, grow, rebuild)
 * serialize on write_lock and run outside sections (the lock alone keeps
 * every record they touch alive). Records embed their key and a memoized
 * hash, so the hash callback (called only when the map is rebuilt) returns
 * the stored value and compare() checks the hash before the bytes.
 *
 * ck_hs takes its memory through a struct ck_malloc whose callbacks receive
 * no context. All map writes happen under write_lock on the calling thread,
 * so the callbacks find their store through a thread-local pointer that is
 * set for exactly the duration of a map write (map_enter/map_leave). The old
 * map after a grow or rebuild is freed with defer=true: readers may still
 * be probing it, so it is retired through the epoch like a snapshot.
 *
 * Record cells. Records live in cells of slabs cut from the allocator, one
 * size class per 16 bytes of record (a 36-byte key: a 64-byte cell on its
 * own cache line). A removed record's cell is retired like a snapshot and,
 * after its grace period, pushed onto its class's free list (a lock-free
 * stack any reclaiming thread pushes onto; only the write_lock holder takes
 * from it, all at once, so there is no ABA); creation reuses free cells
 * first. Slabs are zeroed when cut, chained in the order they were cut and
 * freed only at destroy: that chain is what the iterator (iter.c) walks.
 * The memory of a store's records is its high-water mark, as for snapshots.
 *
 * Lookups find either a record or a probe in compare()'s second argument: a
 * probe (a key being looked up) starts with the address of probe_tag, a
 * record (a key being inserted) with its snapshot pointer, which is never
 * that address.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hold.h"
#include "store.h"

const char tally__probe_tag = 0;
const char tally__ptr_probe_tag = 0;
/* The store whose map the calling thread is writing (under write_lock). */
static _Thread_local struct map_ctx {
	tally_store *store;
	struct tally__thread *thread;
} map_ctx;

/* ------------------------------------------------------------------------ */
/* Allocator                                                                */
/* ------------------------------------------------------------------------ */

static void *
default_malloc(void *ctx, size_t size)
{
	(void)ctx;
	return malloc(size);
}

static void
default_free(void *ctx, void *ptr, size_t size)
{
	(void)ctx;
	(void)size;
	free(ptr);
}

void *
tally__malloc(tally_store *s, size_t size)
{
	return s->alloc.malloc(s->alloc.ctx, size);
}

void
tally__free(tally_store *s, void *p, size_t size)
{
	if (p != NULL)
		s->alloc.free(s->alloc.ctx, p, size);
}

/* Map allocations carry a 16-byte header with their size. */
#define MAP_HDR 16u

static void *
map_malloc(size_t size)
{
	tally_store *s = map_ctx.store;
	unsigned char *p;

	TALLY_ASSERT(s != NULL);
	if (size > SIZE_MAX - MAP_HDR ||
	    (p = tally__malloc(s, size + MAP_HDR)) == NULL)
		return NULL;
	/* ck 0.7.1 leaves some map fields (the tombstone count) unset: hand
	 * out zeroed memory so they start at 0 whatever the allocator. */
	memset(p + MAP_HDR, 0, size);
	memcpy(p, &size, sizeof size);
	/* Until the first map exists, remember its size (see create). */
	if (s->hs_overhead == 0)
		s->hs_last_cap = size;
	else if (size > s->hs_overhead)
		s->hs_last_cap = (size - s->hs_overhead) / sizeof(void *);
	return p + MAP_HDR;
}

static void
map_free(void *ptr, size_t size, bool defer)
{
	tally_store *s = map_ctx.store;
	unsigned char *p = (unsigned char *)ptr - MAP_HDR;

	(void)size;
	TALLY_ASSERT(s != NULL);
	memcpy(&size, p, sizeof size);
	if (!defer) {
		tally__free(s, p, size + MAP_HDR);
		return;
	}
	/* A grow or rebuild replaced this map: the newest allocation is the
	 * live map. */
	s->hs_capacity = s->hs_last_cap;
	/*
	 * ck_hs published the new map with a plain store. Retiring may submit
	 * the batch at once, and submitting reads the global epoch; x86-64
	 * lets that load pass the earlier store. Then a reader could begin a
	 * section after the epoch was read and before the new map became
	 * visible, find the old one, and still be inside it when a grace
	 * period counted from the stale epoch ends. The full barrier orders
	 * the publication before the epoch read, as the CAS or exchange that
	 * unlinks every other retired object does (thread.h, tally__retire).
	 */
	tally__fence_full();
	tally__retire(map_ctx.thread, p, size + MAP_HDR, TALLY__OBJ_MAP);
}

static void
map_enter(tally_store *s, struct tally__thread *t)
{
	map_ctx.store = s;
	map_ctx.thread = t;
}

static void
map_leave(void)
{
	map_ctx.store = NULL;
	map_ctx.thread = NULL;
}
/* ------------------------------------------------------------------------ */
/* Keys and map callbacks                                                   */
/* ------------------------------------------------------------------------ */

static unsigned long
hs_hash(const void *object, unsigned long seed)
{
	(void)seed;
	return ((const struct tally__record *)object)->hash;
}

static bool
hs_compare(const void *stored, const void *arg)
{
	const struct tally__record *r = stored;
	/* arg is a probe (first field: the tag) or a record being inserted
	 * (first field: its snapshot pointer, an atomic). */
	const void *first = tally__ptr_load((void *const *)arg);

	/* Pairs with the release before ck_hs_put: r is fully built. */
	tally__tsan_acquire(r);
	if (first == &tally__probe_tag) {
		const struct tally__probe *p = arg;

		return r->hash == p->hash && tally__record_matches(r, p);
	} else if (first == &tally__ptr_probe_tag) {
		const struct tally__ptr_probe *p = arg;

		return (uintptr_t)r == p->record;
	} else {
		const struct tally__record *k = arg;

		return r->hash == k->hash && r->kind == k->kind &&
		       r->key_len == k->key_len &&
		       tally__key_eq(r->key, k->key, k->key_len);
	}
}

/*
 * Insert a record whose key is known to be absent (write_lock held). Grows
 * the map first when the insert would push it past its load factor, so that
 * an allocation failure is reported before the record becomes visible:
 * ck_hs ignores a failed grow after an insert.
 */
int
tally__map_insert(tally_store *s, struct tally__thread *t,
		  struct tally__record *r)
{
	int rc = TALLY_OK;

	map_enter(s, t);
	if ((ck_hs_count(&s->hs) + 1) * 2 > s->hs_capacity &&
	    !ck_hs_grow(&s->hs, s->hs_capacity << 1))
		rc = TALLY_ENOMEM;
	if (rc == TALLY_OK) {
		/* Readers that find r see it complete (compare, lookup). */
		tally__tsan_release(r);
		tally__fence_store();
		if (!ck_hs_put(&s->hs, r->hash, r))
			rc = TALLY_ENOMEM;
	}
	map_leave();
	return rc;
}

/* Remove a record (write_lock held). Rebuilds the map, best effort, when
 * removals have left many tombstones behind. */
void
tally__map_remove(tally_store *s, struct tally__thread *t,
		  struct tally__record *r)
{
	struct ck_hs_stat st;
	void *removed;

	map_enter(s, t);
	removed = ck_hs_remove(&s->hs, r->hash, r);
	TALLY_ASSERT(removed == r);
	(void)removed;
	ck_hs_stat(&s->hs, &st);
	if (st.tombstones > s->hs_capacity / 4 &&
	    tally__reserve(t, 1) == TALLY_OK)
		(void)ck_hs_rebuild(&s->hs);
	map_leave();
}

/* ------------------------------------------------------------------------ */
/* Record cells                                                             */
/* ------------------------------------------------------------------------ */

/* About 4 KiB of cells per slab, and never fewer than 16. */
#define CSLAB_TARGET 4096u
#define CSLAB_MIN_CELLS 16u

static struct tally__cslab *
cslab_cut(tally_store *s, unsigned cls)
{
	uint32_t size = (uint32_t)tally__cell_size(cls);
	uint32_t n = CSLAB_TARGET / size;
	size_t bytes;
	struct tally__cslab *b;
	char *p;

	if (n < CSLAB_MIN_CELLS)
		n = CSLAB_MIN_CELLS;
	bytes = sizeof *b + TALLY__LINE + (size_t)n * size;
	if ((b = tally__malloc(s, bytes)) == NULL)
		return NULL;
	/* Every cell starts unused: snap NULL (iter.c skips it). */
	memset(b, 0, bytes);
	p = (char *)(b + 1);
	p += (TALLY__LINE - (uintptr_t)p % TALLY__LINE) % TALLY__LINE;
	b->cells = p;
	b->cell_size = size;
	b->ncells = n;
	b->bytes = (uint32_t)bytes;
	/* Iterators find it complete (zeroed cells, fields set). */
	if (s->cslab_tail == NULL)
		tally__ptr_store((void **)&s->cslabs, b);
	else
		tally__ptr_store((void **)&s->cslab_tail->next, b);
	s->cslab_tail = b;
	return b;
}

struct tally__record *
tally__cell_alloc(tally_store *s, unsigned cls)
{
	struct tally__record *r = s->cell_spare[cls];
	struct tally__cslab *b;

	if (r == NULL)
		/* Take every cell reclaimed since the last time. */
		r = tally__ptr_fas((void **)&s->cell_free[cls], NULL);
	if (r != NULL) {
		s->cell_spare[cls] = r->free_next;
		tally__unpoison(r, tally__cell_size(cls));
		return r;
	}
	b = s->cslab_cur[cls];
	if (b == NULL || b->carved == b->ncells) {
		if ((b = cslab_cut(s, cls)) == NULL)
			return NULL;
		s->cslab_cur[cls] = b;
	}
	return (struct tally__record *)(void *)(b->cells +
						(size_t)b->carved++ *
							b->cell_size);
}

void
tally__cell_free(tally_store *s, struct tally__record *r)
{
	struct tally__record **head =
		&s->cell_free[tally__cell_class(r->key_len)];

	/* Still the tombstone: iterators skip the cell. They read its
	 * snapshot pointer and the free list its link; the rest is
	 * poisoned until the cell is handed out again. */
	TALLY_ASSERT(r->snap == &s->tombstone);
	tally__poison((char *)r + offsetof(struct tally__record, incarnation),
		      tally__cell_size(tally__cell_class(r->key_len)) -
			      offsetof(struct tally__record, incarnation));
	for (;;) {
		struct tally__record *old = tally__ptr_load((void **)head);

		r->free_next = old;
		if (tally__ptr_cas((void **)head, old, r))
			return;
	}
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */
/* ------------------------------------------------------------------------ */

static int64_t
default_clock(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
tally__coarse_default(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Coarse readings help only if a tick is far shorter than the margin. */
static bool
coarse_clock_usable(void)
{
	struct timespec res;

	return clock_getres(CLOCK_REALTIME_COARSE, &res) == 0 &&
	       res.tv_sec == 0 && res.tv_nsec <= 50000000;
}

/* The first released layouts; later fields are optional. */
#define STATS_V1_SIZE (offsetof(tally_stats, peak_pending) + sizeof(uint64_t))
#define OPTIONS_V1_SIZE                                                        \
	(offsetof(tally_store_options, hash_seed) + sizeof(uint64_t))

#define MAP_MIN_CAPACITY 64ul
#define MAP_MAX_CAPACITY (1ul << 30)

static unsigned long
pow2_at_least(unsigned long v)
{
	unsigned long p = MAP_MIN_CAPACITY;

	while (p < v && p < MAP_MAX_CAPACITY)
		p <<= 1;
	return p;
}

TALLY_API int
tally_store_create(tally_store **out, const tally_store_options *options)
{
	tally_store_options o = TALLY_STORE_OPTIONS_INIT;
	tally_store *s;
	unsigned long cap;
	int rc;

	if (out == NULL)
		return TALLY_EINVAL;
	if (options != NULL) {
		if (options->size < OPTIONS_V1_SIZE)
			return TALLY_EINVAL;
		memcpy(&o, options,
		       options->size < sizeof o ? options->size : sizeof o);
		o.size = sizeof o;
	}
	if ((o.allocator.malloc == NULL) != (o.allocator.free == NULL))
		return TALLY_EINVAL;
	if (o.allocator.malloc == NULL) {
		o.allocator.malloc = default_malloc;
		o.allocator.free = default_free;
		o.allocator.ctx = NULL;
	}
	if (o.expected_records > MAP_MAX_CAPACITY / 2)
		return TALLY_EINVAL;
	if (o.hold_ttl_max < 0 || o.hold_ttl_max > TALLY_HOLD_TTL_MAX_LIMIT)
		return TALLY_EINVAL;
	if (o.hold_ttl_max == 0)
		o.hold_ttl_max = TALLY_HOLD_TTL_MAX_DEFAULT;

	s = o.allocator.malloc(o.allocator.ctx, sizeof *s);
	if (s == NULL)
		return TALLY_ENOMEM;
	memset(s, 0, sizeof *s);
	s->alloc = o.allocator;
	s->clock = o.clock != NULL ? o.clock : default_clock;
	s->clock_ctx = o.clock_ctx;
	if (o.coarse_clock != NULL) {
		s->coarse = o.coarse_clock;
		s->coarse_ctx = o.coarse_clock_ctx;
	} else if (o.clock == NULL && coarse_clock_usable()) {
		s->coarse = tally__coarse_default;
	}
	s->on_roll = o.on_roll;
	s->on_roll_ctx = o.on_roll_ctx;
	s->on_expire = o.on_expire;
	s->on_expire_ctx = o.on_expire_ctx;
	s->hold_ttl_max = o.hold_ttl_max;
	tally__grain_init(&s->hold_grain, tally__hold_grain(o.hold_ttl_max));
	s->seed = o.hash_seed;
	if (s->seed == 0) {
		int64_t now = default_clock(NULL);
		uintptr_t addr = (uintptr_t)s;

		s->seed = tally__hash(&now, sizeof now, (uint64_t)addr) | 1;
	}
	{
		/* Distinct per store (the address and the time of creation)
		 * even with an equal hash_seed; hold handles carry it. */
		uint64_t id[2] = {(uint64_t)(uintptr_t)s,
				  (uint64_t)default_clock(NULL)};

		s->store_id = tally__hash(id, sizeof id, s->seed ^ 0x5a17ull);
	}
	s->next_incarnation = 1;
	s->version_floor = 1;
	s->hs_malloc.malloc = map_malloc;
	s->hs_malloc.free = map_free;
	s->hs_malloc.realloc = NULL;

	if (pthread_mutex_init(&s->write_lock, NULL) != 0) {
		rc = TALLY_ENOMEM;
		goto fail_write_lock;
	}
	if (pthread_mutex_init(&s->reg_lock, NULL) != 0) {
		rc = TALLY_ENOMEM;
		goto fail_reg_lock;
	}
	if (pthread_key_create(&s->tkey, tally__thread_exit) != 0) {
		rc = TALLY_ENOMEM;
		goto fail_key;
	}
	ck_epoch_init(&s->epoch);

	/* Twice the expected count: ck_hs grows at load factor 0.5. */
	cap = pow2_at_least((unsigned long)o.expected_records * 2);
	map_enter(s, NULL);
	if (!ck_hs_init(&s->hs, CK_HS_MODE_OBJECT | CK_HS_MODE_SPMC, hs_hash,
			hs_compare, &s->hs_malloc, cap,
			(unsigned long)s->seed)) {
		map_leave();
		rc = TALLY_ENOMEM;
		goto fail_map;
	}
	map_leave();
	/* ck_hs_init allocated a map of exactly cap slots (cap is a power of
	 * two); what it asked beyond the slots is the per-map overhead, from
	 * which later map sizes tell their capacity. */
	s->hs_overhead = s->hs_last_cap - cap * sizeof(void *);
	s->hs_capacity = cap;
	s->map_ready = true;
	*out = s;
	return TALLY_OK;

fail_map:
	pthread_key_delete(s->tkey);
fail_key:
	pthread_mutex_destroy(&s->reg_lock);
fail_reg_lock:
	pthread_mutex_destroy(&s->write_lock);
fail_write_lock:
	o.allocator.free(o.allocator.ctx, s, sizeof *s);
	return rc;
}

TALLY_API void
tally_store_destroy(tally_store *s)
{
	struct tally__cslab *b, *next;

	if (s == NULL)
		return;
	/* Threads that exit from now on do not touch the store. */
	pthread_key_delete(s->tkey);
	tally__tsan_acquire(&s->tsan_grace);
	/* Snapshots live in the threads' slabs, records in these. */
	tally__threads_destroy(s);
	for (b = s->cslabs; b != NULL; b = next) {
		next = b->next;
		tally__free(s, b, b->bytes);
	}
	if (s->map_ready) {
		map_enter(s, NULL);
		ck_hs_destroy(&s->hs);
		map_leave();
	}
	pthread_mutex_destroy(&s->reg_lock);
	pthread_mutex_destroy(&s->write_lock);
	s->alloc.free(s->alloc.ctx, s, sizeof *s);
}

TALLY_API int
tally_store_stats(tally_store *s, tally_stats *out)
{
	tally_stats st = TALLY_STATS_INIT;
	struct tally__thread *t;
	uint64_t active = 0;
	size_t size;

	if (s == NULL || out == NULL || out->size < STATS_V1_SIZE)
		return TALLY_EINVAL;
	size = out->size < sizeof st ? out->size : sizeof st;
	pthread_mutex_lock(&s->reg_lock);
	for (t = s->all; t != NULL; t = t->all_next) {
		const struct tally__tstats *ts = &t->st;
		uint64_t pend;

#define SUM(f) st.f += tally__stat_load(&ts->f)
		SUM(writes);
		SUM(cas_retries);
		SUM(rolls);
		SUM(retired);
		SUM(freed);
		SUM(admitted);
		SUM(refused_limit);
		SUM(refused_too_big);
		SUM(refused_race);
		SUM(refused_missing);
		SUM(compensations);
		SUM(holds);
		SUM(settles);
		SUM(releases);
		SUM(partials);
		SUM(late_settles);
		SUM(overdraft_units);
		SUM(expired_holds);
		SUM(expired_units);
		SUM(shadow_would_deny);
#undef SUM
		pend = tally__stat_load(&ts->peak_pending);
		if (pend > st.peak_pending)
			st.peak_pending = pend;
		active += tally__load_uint(&t->in_use) != 0;
	}
	st.threads = s->threads_total;
	pthread_mutex_unlock(&s->reg_lock);
	st.threads_active = active;
	/* Threads move on while they are summed: never wrap. */
	st.pending = st.retired > st.freed ? st.retired - st.freed : 0;
	pthread_mutex_lock(&s->write_lock);
	st.records = ck_hs_count(&s->hs);
	pthread_mutex_unlock(&s->write_lock);
	/* Only the bytes of the caller's layout; never its size field. */
	memcpy((char *)out + sizeof out->size, (char *)&st + sizeof st.size,
	       size - sizeof st.size);
	return TALLY_OK;
}

void
tally__test_set_counters(tally_store *s, uint64_t version_floor,
			 uint64_t next_incarnation)
{
	pthread_mutex_lock(&s->write_lock);
	s->version_floor = version_floor;
	s->next_incarnation = next_incarnation;
	pthread_mutex_unlock(&s->write_lock);
}
