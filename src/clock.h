/*
 * The coarse-clock rule (pure). bench/ shares it so that its baselines pay
 * for time exactly what tally pays.
 *
 * A precise clock reading (CLOCK_REALTIME by default) costs about as much
 * as a map lookup; a coarse one (CLOCK_REALTIME_COARSE, the time of the
 * last tick) a few nanoseconds. The store's coarse clock may lag its
 * precise clock by less than TALLY_COARSE_MARGIN_NS (tally.h); it may also
 * run ahead. So a write that only needs to know whether a window is due
 * reads the coarse clock first: if even coarse + margin is before the
 * window's end, the precise time is too (precise < coarse + margin), and
 * "not due" is the answer the precise clock would give. Only within the
 * margin of a boundary does it read the precise clock. The margin is far
 * above a tick so that delayed ticks do not matter; if a clock broke the
 * contract, the effect would be a write landing in a window a moment
 * before it rolls, as if it had run that much earlier: never a lost or
 * double-counted unit.
 */
#ifndef TALLY_CLOCK_H
#define TALLY_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "tally.h"

#define TALLY__COARSE_MARGIN TALLY_COARSE_MARGIN_NS

/* A window is due when now has reached its end. An end of INT64_MAX means
 * no boundary after the window is representable (or no period at all): such
 * a window never rolls, even at the last nanosecond of int64 time. */
static inline bool
tally__window_due(int64_t now, int64_t end)
{
	return end != INT64_MAX && now >= end;
}

/* Whether a coarse reading proves that a window ending at end is not due:
 * then the precise clock need not be read. */
static inline bool
tally__coarse_not_due(int64_t coarse, int64_t end)
{
	if (end == INT64_MAX)
		return true;
	return end >= INT64_MIN + TALLY__COARSE_MARGIN &&
	       coarse < end - TALLY__COARSE_MARGIN;
}

#endif /* TALLY_CLOCK_H */
