/*
 * GCRA (gcra.c): the exact integer-nanosecond math of smooth limits, the
 * generic cell rate algorithm of redis-cell's CL.THROTTLE and the governor
 * crate (ADMISSION.md section 6). Pure layer: no threads, no I/O, no
 * allocation, no clock; every function is a transition from a state `old`
 * to a state `next`.
 *
 * Rate. A limit lets R units pass per period P ns with a burst capacity of
 * C units. The emission interval T = P / R ns is carried exactly as
 * quotient and remainder, T = q + r / R with 0 <= r < R, so no configured
 * rate is ever rounded: 3,000 per second is T = 333,333 + 1/3 ns, and
 * 10,000 per second with burst 1 passes exactly 10,000 a second.
 *
 * Points. Every time on the virtual schedule is a rational with
 * denominator R, held as a pair (ns, frac): the point ns + frac / R ns,
 * 0 <= frac < R. Pairs compare as (ns, frac) lexicographically. Clock
 * readings are whole ns (frac 0). Where this header writes arithmetic on
 * points it means exact rationals; ceil and floor are of those rationals.
 *
 * State. The theoretical arrival time TAT (a point) and `last`, the latest
 * clock reading a state-changing call has used. Time never goes backwards
 * for a record: every call decides at now' = max(now, last) (golang/go
 * #71360: callers passing older times let 5,000x through), and
 * d->now reports now'. A TAT below now' means a full bucket, exactly as
 * TAT = now' does: every rule reads max(TAT, now').
 *
 * Admission of n units (0 <= n):
 *   start = max(TAT, now'), end = start + n * T;
 *   n > C: refused, TOO_BIG: it can never pass;
 *   end - now' <= C * T: allowed, TAT := end, last := now';
 *   otherwise refused (LIMITED).
 * A refusal is a pure read: nothing changes, not even `last`. n = 0 always
 * passes, even past the burst after an overdraft (where the inequality
 * fails: it takes nothing), and changes nothing but `last` (the TAT stays
 * as it was, even below now').
 *
 * Exact means the schedule is never rounded. A stream asking at whole ns
 * for n < C units at a time ((C - n) * T >= 1 ns) passes by t0 + E the
 * ideal count, the largest j with j * n <= C + E / T (for n = 1,
 * C + floor(E / T)). A request of the whole burst passes only once TAT <=
 * now', a whole ns: such a stream passes one per ceil(C * T) ns, so with
 * burst 1, 3,000 a second is one per 333,334 ns (2,999.994 a second),
 * while a whole T (10,000 a second, 100,000 ns) loses nothing.
 *
 * Holds. A hold is an admission: its TAT advance is the hold's slot on the
 * virtual schedule, [start, end) above (struct tally__gcra_hold). Settling
 * with an actual a below the estimate e (a release is a = 0) refunds
 * u = (e - a) * T, but only the part of the slot that has not drained yet:
 *   refund = min(u, max(0, end - max(now', start)));
 * plain subtraction over-refunds (time that drained while the hold was in
 * flight, or a slot that later requests queued behind, would be credited
 * twice). (The max with start changes nothing, as u <= e * T = end -
 * start, but states the rule.) Then TAT := max(TAT - refund, now') when
 * refund > 0: TAT - refund falls below now' when earlier refunds already
 * pulled the TAT under this slot's end. The clamp changes no later decision
 * (a TAT below now' acts as now' for every later call, whose now' is at
 * least this one); it keeps the stored TAT a point the clock has not
 * passed, not a credit. Settling with a > e charges
 * the excess like a bump, TAT := max(TAT, now') + (a - e) * T, even beyond
 * the burst: an overdraft, reported as d->overdraft = a - e and the flag
 * TALLY_DECISION_OVERDRAFT. A settle with a = e changes nothing but
 * `last`. A caller settles each hold once; a state cannot tell.
 *
 * A bump charges n units without admission, never refused:
 * TAT := max(TAT, now') + n * T (n = 0 changes nothing but `last`).
 *
 * Reports (struct tally__gcra_decision), of the state the call leaves
 * (refused or peeked: the state it found, or would leave), with
 * ahead = max(0, TAT - now'):
 *   remaining   = max(0, floor((C * T - ahead) / T)): the units a request
 *                 could take right now, 0 .. C;
 *   reset_after = ceil(ahead) ns: until the bucket is full again;
 *   retry_after = 0 when the call passed (bump and settle always do); on a
 *                 refusal the smallest whole d >= 1 ns such that the same
 *                 request passes at now' + d (nothing else happening in
 *                 between), that is
 *                 ceil(TAT + n * T - C * T - now'); TALLY_RETRY_NEVER
 *                 (INT64_MAX) for TOO_BIG.
 *
 * Ranges (tally__gcra_rate_init): 1 <= R <= P <= 2^62 ns (so
 * 1 <= T <= 2^62 ns: from one unit per 146 years to 10^9 per second),
 * 1 <= C and C * T <= 2^62 ns (146 years; checked exactly, as
 * C * P <= 2^62 * R). With these every intermediate fits an __int128 with
 * room to spare. Points hold ns in int64_t: a transition whose TAT would
 * leave int64_t, or whose ahead (and so reset_after) would exceed INT64_MAX
 * ns, is TALLY_EOVERFLOW, never a saturation nor a wrap. An admission can
 * meet it only within C * T of INT64_MAX (after the year 2116 for a clock
 * since 1970 and the longest burst); bumps and overdrafts anywhere.
 *
 * Results. TALLY_OK, TALLY_LIMITED (admission only), TALLY_EINVAL (a NULL
 * rate, old or next; a rate not made by tally__gcra_rate_init; a state
 * outside its invariant: frac outside 0 .. R-1, or ceil(TAT - last) above
 * INT64_MAX; a negative amount; a hold that is not a slot of this rate)
 * and TALLY_EOVERFLOW (above). On TALLY_OK, TALLY_LIMITED and peeks, d
 * (when not NULL) receives the reports; on an error neither d nor hold
 * is written and next (when not NULL) receives a copy of old. next may be
 * old itself (an update in place); otherwise old is never written.
 */
#ifndef TALLY_GCRA_H
#define TALLY_GCRA_H

#include "base.h"

/* The largest period and the largest C * T, in ns: 2^62 (146 years). */
#define TALLY__GCRA_SPAN_MAX (INT64_C(1) << 62)

/* A point on the virtual schedule: ns + frac / rate ns, 0 <= frac < rate. */
struct tally__gcra_at {
	int64_t ns;
	int64_t frac;
};

/* A validated limit: made only by tally__gcra_rate_init. */
struct tally__gcra_rate {
	int64_t rate;              /* R, units per period: 1 .. period */
	int64_t period;            /* P, ns: rate .. TALLY__GCRA_SPAN_MAX */
	int64_t burst;             /* C, units: 1 .. with C * T <= 2^62 ns */
	int64_t q;                 /* T = q + r / rate ns: q = P / R >= 1, */
	int64_t r;                 /* r = P % R */
	struct tally__gcra_at cap; /* C * T, the width of a full bucket */
};

/* The state of one record (see above). */
struct tally__gcra {
	struct tally__gcra_at tat;
	int64_t last;
};

/* A hold's slot on the virtual schedule, [start, end), end = start +
 * amount * T, and its amount (the estimate, 0 .. C). */
struct tally__gcra_hold {
	struct tally__gcra_at start;
	struct tally__gcra_at end;
	int64_t amount;
};

struct tally__gcra_decision {
	int64_t now;         /* now' = max(now, last): the time decided at */
	int64_t remaining;   /* units, 0 .. C */
	int64_t reset_after; /* ns, 0 .. INT64_MAX */
	int64_t retry_after; /* ns: 0, 1 .., or TALLY_RETRY_NEVER */
	int64_t overdraft;   /* settle: a - e when a > e; else 0 */
	/* TALLY_DECISION_DENIED (refused), TALLY_DECISION_TOO_BIG (n > C:
	 * never), TALLY_DECISION_OVERDRAFT (settle with a > e). */
	unsigned flags;
};

/*
 * Validates a limit of `rate` units per `period` ns with burst capacity
 * `burst` units (0: the default, C = rate, whose C * T = P always fits)
 * and fills *rt with T and C * T, exact. Returns TALLY_OK, or
 * TALLY_EINVAL (rt NULL, or out of the ranges above: rate < 1,
 * period < rate, period > 2^62, burst < 0, C * T > 2^62 ns) leaving *rt
 * as it was.
 */
int tally__gcra_rate_init(struct tally__gcra_rate *rt, int64_t rate,
			  int64_t period, int64_t burst);

/* A record created at `now` (any time): full bucket, TAT = last = now. */
void tally__gcra_init(struct tally__gcra *st, int64_t now);

/*
 * Admits a request of n units at now (try, and hold with hold not NULL),
 * or with peek decides exactly as admission would and changes nothing:
 * *next = *old whatever the answer. Returns TALLY_OK (allowed: hold, when
 * not NULL, receives its slot [start, end) and n, even when peeking),
 * TALLY_LIMITED (refused, next = old: d->flags has TALLY_DECISION_DENIED,
 * and TALLY_DECISION_TOO_BIG if n > C), TALLY_EINVAL (see above; n < 0) or
 * TALLY_EOVERFLOW (allowed, but the new TAT leaves int64_t).
 */
int tally__gcra_admit(const struct tally__gcra_rate *rt,
		      const struct tally__gcra *old, struct tally__gcra *next,
		      int64_t now, int64_t n, bool peek,
		      struct tally__gcra_decision *d,
		      struct tally__gcra_hold *hold);

/*
 * Charges n >= 0 units at now without admission: TAT := max(TAT, now') +
 * n * T, past the burst if need be (remaining then reports 0). Returns
 * TALLY_OK, TALLY_EINVAL (n < 0, see above) or TALLY_EOVERFLOW.
 */
int tally__gcra_bump(const struct tally__gcra_rate *rt,
		     const struct tally__gcra *old, struct tally__gcra *next,
		     int64_t now, int64_t n, struct tally__gcra_decision *d);

/*
 * Settles the hold `hold` (as tally__gcra_admit reported it on this
 * record) at now with the actual amount `actual` >= 0 (0: a release):
 * refunds the undrained part of its slot, or charges an overdraft (see
 * above). Returns TALLY_OK, TALLY_EINVAL (actual < 0; hold NULL, its
 * amount outside 0 .. C, a frac outside 0 .. R-1, or end != start +
 * amount * T; see above) or TALLY_EOVERFLOW (an overdraft whose TAT
 * leaves int64_t).
 */
int tally__gcra_settle(const struct tally__gcra_rate *rt,
		       const struct tally__gcra *old, struct tally__gcra *next,
		       int64_t now, const struct tally__gcra_hold *hold,
		       int64_t actual, struct tally__gcra_decision *d);

#endif /* TALLY_GCRA_H */
