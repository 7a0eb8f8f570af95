/*
 * Test support shared by the test programs: a fake clock, a counting
 * allocator that can fail the nth allocation, and a civil-date helper
 * written independently of src/period.c (so a shared bug cannot hide).
 * Header-only; every function is static.
 */
#ifndef TALLY_TEST_SUPPORT_H
#define TALLY_TEST_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tally.h"

#define NS_PER_SEC INT64_C(1000000000)
#define NS_PER_MIN (60 * NS_PER_SEC)
#define NS_PER_HOUR (60 * NS_PER_MIN)
#define NS_PER_DAY (24 * NS_PER_HOUR)

/* ---- fake clock -------------------------------------------------------- */

struct fake_clock {
	int64_t now; /* accessed with __atomic builtins */
};

static inline int64_t
fake_clock_read(void *ctx)
{
	return __atomic_load_n(&((struct fake_clock *)ctx)->now,
			       __ATOMIC_SEQ_CST);
}

static inline void
fake_clock_set(struct fake_clock *c, int64_t t)
{
	__atomic_store_n(&c->now, t, __ATOMIC_SEQ_CST);
}

static inline int64_t
fake_clock_advance(struct fake_clock *c, int64_t d)
{
	return __atomic_add_fetch(&c->now, d, __ATOMIC_SEQ_CST);
}

/* ---- civil time (proleptic Gregorian, UTC) ----------------------------- */

static inline int
test_is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d by counting whole years and months: slow
 * and obviously right, for test expectations only. */
static inline int64_t
test_days(int64_t y, int m, int d)
{
	static const int mdays[12] = {31, 28, 31, 30, 31, 30,
				      31, 31, 30, 31, 30, 31};
	int64_t days = 0;

	if (y >= 1970)
		for (int64_t i = 1970; i < y; i++)
			days += 365 + test_is_leap(i);
	else
		for (int64_t i = y; i < 1970; i++)
			days -= 365 + test_is_leap(i);
	for (int i = 1; i < m; i++)
		days += mdays[i - 1] + (i == 2 && test_is_leap(y));
	return days + d - 1;
}

/* UTC instant of a civil date and time, in ns since the epoch. */
static inline int64_t
T(int64_t y, int mo, int d, int h, int mi, int s)
{
	return test_days(y, mo, d) * NS_PER_DAY + h * NS_PER_HOUR +
	       mi * NS_PER_MIN + s * NS_PER_SEC;
}

/* ---- counting, failing allocator --------------------------------------- */

struct test_alloc {
	long calls;     /* allocations attempted */
	long fail_at;   /* 0: never fail; n: the nth attempt fails */
	bool fail_rest; /* with fail_at: every attempt from the nth fails */
	long live_blocks;
	long long live_bytes;
	long failures;
};

static inline void *
test_alloc_malloc(void *ctx, size_t size)
{
	struct test_alloc *a = ctx;
	long n = __atomic_add_fetch(&a->calls, 1, __ATOMIC_SEQ_CST);
	void *p;

	if (a->fail_at != 0 &&
	    (n == a->fail_at || (a->fail_rest && n > a->fail_at))) {
		__atomic_add_fetch(&a->failures, 1, __ATOMIC_SEQ_CST);
		return NULL;
	}
	p = malloc(size);
	if (p != NULL) {
		__atomic_add_fetch(&a->live_blocks, 1, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(&a->live_bytes, (long long)size,
				   __ATOMIC_SEQ_CST);
	}
	return p;
}

static inline void
test_alloc_free(void *ctx, void *p, size_t size)
{
	struct test_alloc *a = ctx;

	if (p == NULL)
		return;
	__atomic_sub_fetch(&a->live_blocks, 1, __ATOMIC_SEQ_CST);
	/* Sizes must match what was asked: live_bytes returns to 0. */
	__atomic_sub_fetch(&a->live_bytes, (long long)size, __ATOMIC_SEQ_CST);
	free(p);
}

static inline tally_allocator
test_allocator(struct test_alloc *a)
{
	tally_allocator al = {test_alloc_malloc, test_alloc_free, a};

	return al;
}

/* Options with a fake clock and, when a != NULL, the test allocator. */
static inline tally_store_options
test_options(struct fake_clock *c, struct test_alloc *a)
{
	tally_store_options o = TALLY_STORE_OPTIONS_INIT;

	if (c != NULL) {
		o.clock = fake_clock_read;
		o.clock_ctx = c;
	}
	if (a != NULL)
		o.allocator = test_allocator(a);
	return o;
}

static inline tally_period
P(const char *text)
{
	tally_period p = {0, TALLY_PERIOD_NONE};

	if (tally_period_parse(text, &p) != TALLY_OK)
		abort();
	return p;
}

#endif /* TALLY_TEST_SUPPORT_H */
