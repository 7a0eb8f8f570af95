/*
 * Periods and the window lattice (internal).
 *
 * tally_period_parse() and tally_period_format() are public (tally.h); this
 * header adds the validation shared by every config path and the pure
 * function that places a time inside its window. See period.c for the
 * semantics of the lattice.
 */
#ifndef TALLY_PERIOD_H
#define TALLY_PERIOD_H

#include <stdbool.h>
#include <stdint.h>

#include "tally.h"

/* Largest WEEK count: count * 7 days in nanoseconds must fit an int64. */
#define TALLY__WEEK_COUNT_MAX (INT64_MAX / (7 * INT64_C(86400000000000)))
/* Largest MONTH count (10000 years). */
#define TALLY__MONTH_COUNT_MAX INT64_C(120000)

/* A window lattice: everything needed to place boundaries. */
typedef struct tally__lattice {
	int64_t count;      /* tally_period.count */
	int32_t unit;       /* tally_period_unit */
	int32_t offset_min; /* utc_offset_minutes, |x| <= 1439 */
	bool aligned;       /* calendar_aligned */
	int64_t anchor;     /* ns since the epoch, UTC; never the default */
} tally__lattice;

/* TALLY_OK or TALLY_EPERIOD. allow_none: whether TALLY_PERIOD_NONE is ok. */
int tally__period_validate(const tally_period *p, bool allow_none);

/*
 * *start = latest boundary <= t, *end = earliest boundary > t.
 * Saturating: if no boundary <= t is representable in int64, *start =
 * INT64_MIN; if no boundary > t is representable, *end = INT64_MAX.
 * unit NONE: *start = anchor, *end = INT64_MAX (never rolls).
 * Precondition: the period was validated (tally__period_validate) and
 * |offset_min| <= TALLY_UTC_OFFSET_MAX. Pure, thread safe, no allocation, no
 * undefined behaviour for any int64 t and anchor.
 */
void tally__window(const tally__lattice *l, int64_t t, int64_t *start,
		   int64_t *end);

#endif /* TALLY_PERIOD_H */
