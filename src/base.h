/*
 * What every internal file shares: the public header, assertions and the
 * key length bound. Pure: no ck, no pthread, no I/O; the pure layer (this
 * header, hash.h, period.h, clock.h, snap.h and the kind files) builds and
 * is unit-tested without Concurrency Kit.
 */
#ifndef TALLY_BASE_H
#define TALLY_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tally.h"

#if defined(NDEBUG)
#define TALLY_ASSERT(x) ((void)0)
#else
#include <assert.h>
#define TALLY_ASSERT(x) assert(x)
#endif

#define TALLY_KEY_MAX 255

/*
 * Records and snapshots live in slabs that return to the allocator only at
 * destroy, so AddressSanitizer cannot see a use after free of one: the
 * library marks each free cell and snapshot (but the words it keeps a free
 * list in) as poisoned itself, and unpoisons it when it hands it out again.
 */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TALLY__ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TALLY__ASAN 1
#endif
#if defined(TALLY__ASAN)
#include <sanitizer/asan_interface.h>
#define tally__poison(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define tally__unpoison(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define tally__poison(p, n) ((void)(p), (void)(n))
#define tally__unpoison(p, n) ((void)(p), (void)(n))
#endif

/*
 * The hot path (the CAS loop, the lookup cache, the per-call bodies of
 * api.c) is inlined into one body per public call, with the call's
 * operation and the kind's quick path as constants. A coverage build
 * (TALLY_COVERAGE, preset "coverage") compiles each of these functions
 * once instead, so that gcov counts every branch of the source once, not
 * once per copy with the branches its constants ruled out.
 */
#if defined(TALLY_COVERAGE)
#define TALLY__HOT static __attribute__((noinline, unused))
#else
#define TALLY__HOT static inline __attribute__((always_inline))
#endif

/* A function whose unsigned arithmetic wraps modulo 2^64 on purpose: the
 * fuzz build's unsigned-overflow check does not flag it. */
#if !defined(TALLY__WRAPS) && defined(__clang__)
#define TALLY__WRAPS __attribute__((no_sanitize("unsigned-integer-overflow")))
#elif !defined(TALLY__WRAPS)
#define TALLY__WRAPS
#endif

/* Signed 128-bit products (GCC and Clang). */
__extension__ typedef __int128 tally__i128;

/* The decimal digits of v end at digits + 20: returns where they begin. */
static inline size_t
tally__u64_dec(uint64_t v, char digits[20])
{
	size_t i = 20;

	do {
		digits[--i] = (char)('0' + (int)(v % 10));
		v /= 10;
	} while (v != 0);
	return i;
}

#define TALLY__LIKELY(x) __builtin_expect(!!(x), 1)
#define TALLY__UNLIKELY(x) __builtin_expect(!!(x), 0)

#endif /* TALLY_BASE_H */
