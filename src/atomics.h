/*
 * The only place in tally that touches atomics.
 *
 * Normal builds use Concurrency Kit's ck_pr primitives (inline assembly on
 * x86-64). ThreadSanitizer cannot see inline assembly, so a TSan build
 * (TALLY_TSAN) maps every primitive to the compiler's __atomic builtins with
 * the ordering on the operation, and exposes annotations for the
 * happens-before edges TSan cannot infer: epoch grace periods (section end ->
 * reclamation callback) and ck_hs publication (insert -> lookup). In normal
 * builds the annotations compile to nothing.
 *
 * Orderings, stated once:
 *   - tally__ptr_load: acquire (a snapshot's or record's fields are read
 *     after the load of its pointer; on x86-64 a plain load).
 *   - tally__ptr_store: release (the pointee is initialized before).
 *   - tally__ptr_cas / tally__ptr_fas: full barrier (lock cmpxchg/xchg);
 *     the successor's fields are initialized before, ordered by a store
 *     fence, so whoever loads the new pointer sees a complete snapshot.
 *   - tally__fence_full: a full barrier (mfence): no later load passes an
 *     earlier store.
 *   - tally__stat_*: relaxed; statistics only, owner-written.
 */
#ifndef TALLY_ATOMICS_H
#define TALLY_ATOMICS_H

#include <stdbool.h>
#include <stdint.h>

#include <ck_pr.h>

#include "base.h"

/*
 * A hint that this thread will soon write the line at p: fetch it in the
 * exclusive state now (PREFETCHW), not shared now and exclusive again at
 * the write. Never faults, even on freed memory. Processors without the
 * instruction (Intel before Broadwell) execute it as a no-op; other
 * architectures get the compiler's write prefetch.
 */
static inline void
tally__prefetch_w(const void *p)
{
#if defined(__x86_64__)
	__asm__ volatile("prefetchw (%0)" : : "r"(p));
#else
	__builtin_prefetch(p, 1, 3);
#endif
}

#if defined(TALLY_SCHED_NOISE)
/*
 * Schedule noise (test builds only): every atomic access below may yield
 * the processor first, 1 time in 64, so that stress tests run through far
 * more interleavings than a 2-core machine produces by itself.
 */
int sched_yield(void);

static inline void
tally__noise(void)
{
	static _Thread_local uint32_t x;

	if (x == 0)
		x = (uint32_t)(uintptr_t)&x | 1u;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	if ((x & 63u) == 0)
		sched_yield();
}
#else
#define tally__noise() ((void)0)
#endif

#if defined(TALLY_TSAN)
#include <sanitizer/tsan_interface.h>

static inline void *
tally__ptr_load(void *const *p)
{
	tally__noise();
	return __atomic_load_n((void **)p, __ATOMIC_ACQUIRE);
}

static inline bool
tally__ptr_cas(void **p, void *old, void *next)
{
	tally__noise();
	return __atomic_compare_exchange_n(p, &old, next, false,
					   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

static inline void *
tally__ptr_fas(void **p, void *next)
{
	tally__noise();
	return __atomic_exchange_n(p, next, __ATOMIC_ACQ_REL);
}

static inline void
tally__ptr_store(void **p, void *v)
{
	tally__noise();
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline void
tally__fence_full(void)
{
	/* A seq_cst read-modify-write (a locked instruction on x86-64) on a
	 * thread's own word: gcc's TSan rejects atomic_thread_fence. */
	static _Thread_local unsigned fence_word;

	(void)__atomic_fetch_add(&fence_word, 0, __ATOMIC_SEQ_CST);
}

static inline uint64_t
tally__stat_load(const uint64_t *p)
{
	return __atomic_load_n((uint64_t *)p, __ATOMIC_RELAXED);
}

/* Counters wrap modulo 2^64 (unit sums may, in principle). */
TALLY__WRAPS static inline void
tally__stat_add(uint64_t *p, uint64_t v)
{
	/* Owner-written only: a load and a store, not an RMW. */
	__atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v,
			 __ATOMIC_RELAXED);
}

static inline void
tally__stat_max(uint64_t *p, uint64_t v)
{
	if (v > __atomic_load_n(p, __ATOMIC_RELAXED))
		__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static inline void
tally__fence_store(void)
{
	/* Every publication below is an __atomic operation with release
	 * semantics, which TSan understands; a separate fence adds nothing
	 * (and gcc's TSan rejects atomic_thread_fence). */
}

static inline unsigned
tally__load_uint(const unsigned *p)
{
	tally__noise();
	return __atomic_load_n((unsigned *)p, __ATOMIC_ACQUIRE);
}

static inline void
tally__store_uint(unsigned *p, unsigned v)
{
	tally__noise();
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static inline void
tally__inc_uint_full(unsigned *p)
{
	tally__noise();
	__atomic_add_fetch(p, 1, __ATOMIC_SEQ_CST);
}

#define tally__tsan_release(addr) __tsan_release((void *)(addr))
#define tally__tsan_acquire(addr) __tsan_acquire((void *)(addr))

#else /* !TALLY_TSAN */

static inline void *
tally__ptr_load(void *const *p)
{
	tally__noise();
	void *v = ck_pr_load_ptr(p);

	ck_pr_fence_load_depends();
	return v;
}

static inline bool
tally__ptr_cas(void **p, void *old, void *next)
{
	tally__noise();
	ck_pr_fence_store();
	return ck_pr_cas_ptr(p, old, next);
}

static inline void *
tally__ptr_fas(void **p, void *next)
{
	tally__noise();
	ck_pr_fence_store();
	return ck_pr_fas_ptr(p, next);
}

static inline void
tally__ptr_store(void **p, void *v)
{
	tally__noise();
	ck_pr_fence_store();
	ck_pr_store_ptr(p, v);
}

static inline void
tally__fence_full(void)
{
	ck_pr_fence_memory();
}

static inline uint64_t
tally__stat_load(const uint64_t *p)
{
	return ck_pr_load_64(p);
}

/* Counters wrap modulo 2^64 (unit sums may, in principle). */
TALLY__WRAPS static inline void
tally__stat_add(uint64_t *p, uint64_t v)
{
	ck_pr_store_64(p, ck_pr_load_64(p) + v);
}

static inline void
tally__stat_max(uint64_t *p, uint64_t v)
{
	if (v > ck_pr_load_64(p))
		ck_pr_store_64(p, v);
}

static inline void
tally__fence_store(void)
{
	ck_pr_fence_store();
}

static inline unsigned
tally__load_uint(const unsigned *p)
{
	tally__noise();
	unsigned v = ck_pr_load_uint(p);

	ck_pr_fence_load();
	return v;
}

static inline void
tally__store_uint(unsigned *p, unsigned v)
{
	tally__noise();
	ck_pr_fence_store();
	ck_pr_store_uint(p, v);
}

static inline void
tally__inc_uint_full(unsigned *p)
{
	tally__noise();
	ck_pr_inc_uint(p); /* lock inc: a full barrier on x86-64 */
	ck_pr_fence_memory();
}

#define tally__tsan_release(addr) ((void)(addr))
#define tally__tsan_acquire(addr) ((void)(addr))

#endif /* TALLY_TSAN */

#endif /* TALLY_ATOMICS_H */
