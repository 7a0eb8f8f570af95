/*
 * Sliding windows (swin.c): the exact integer math of the sliding-window
 * counter, Cloudflare's estimate prev * (w - e) / w + cur, on tally's
 * deterministic window lattice (ADMISSION.md section 6, ARCHITECTURE.md
 * section 2). Pure layer: no threads, no I/O, no allocation, no clock;
 * every function takes its inputs and writes only its outputs.
 *
 * Lattice. A limit has a window length w ns and a max. The windows are the
 * fixed intervals [start + k * w, start + (k + 1) * w) for integers k,
 * where start is the state's own window start (a boundary of the record's
 * lattice: rolls move it by whole windows only, never to now). Sliding
 * windows need windows of one length: calendar periods (months, quarters,
 * years: tally_period TALLY_PERIOD_MONTH) have windows of unequal length,
 * over which this estimate is not defined, and a config path must refuse
 * them (TALLY_EPERIOD) before it gets here. Fixed and week periods,
 * calendar aligned or not, are one length w (the UTC offset is fixed, so
 * there are no DST days).
 *
 * State (struct tally__swin): start; cur, the usage of the window
 * [start, start + w); prev, the usage of the window [start - w, start),
 * or 0 if no write ever landed in it (it was missed entirely).
 *
 * Roll. The state at a time now:
 *   now < start + w (the same window, or a now before start: time never
 *     goes backwards for a record, so nothing rolls back): unchanged;
 *   start + w <= now < start + 2 * w (the next window): prev := cur,
 *     cur := 0, start := start + w;
 *   now >= start + 2 * w (two or more windows later): prev := 0,
 *     cur := 0, start := start + k * w, the latest boundary <= now
 *     (k = floor((now - start) / w)). The missed windows collapse into one
 *     roll; nothing is re-anchored at now (HAProxy does; tally does not).
 * Every function below decides on the state rolled to its now, without
 * writing it (so it may be given a stale state or an already rolled one:
 * rolling twice to the same now is rolling once).
 *
 * Decision time. A function decides at now' = max(now, start): a now
 * before the state's start (another caller's clock, a little ahead, rolled
 * it) is decided as at start. Then e = now' - start, 0 <= e < w.
 *
 * Admission. With held, the units of live holds (they count like cur; a
 * roll never touches them, as holds are not tied to windows), a request
 * of n >= 0 units is allowed at now iff
 *   prev * (w - e) + (cur + held + n) * w <= max * w,
 * evaluated exactly with 128-bit products: the estimate of the usage over
 * the last w ns, prev * (w - e) / w + cur, plus held and n, at most max.
 * n = 0 asks whether the counter is within its limit (not whether it has
 * room left). Allowed at t stays allowed at every later t as long as
 * nothing is written and held does not grow: within a window the weight
 * of prev only shrinks, and at a boundary the estimate drops (the
 * estimate just before start + w is prev * 1 / w + cur >= cur, the one at
 * start + w). So retry_after below is the one edge of an up-set.
 *
 * Admitted count (the bound the estimate guarantees; test_swin checks it
 * on greedy streams and reaches it with an adversarial one). Let a stream
 * be charged only what was allowed at its time (held = 0; one or more
 * units at a time; times never decreasing), and let s be a boundary. The
 * units charged in [x, s + f), for any s - w <= x <= s and 0 <= f <= w,
 * number at most
 *   max                            if f = 0,
 *   max + floor(max * (f - 1) / w) if 1 <= f <= w.
 * Proof: let C be the usage of the window [s - w, s); the interval's
 * units before s number a <= C, and C <= max (each of them was allowed
 * with cur + n <= max). Let b be the units charged in [s, s + f). If
 * b > 0, the last charge of those came at an offset e' <= f - 1 of the
 * window [s, s + w), with prev = C and cur + n >= b, so
 * C * (w - e') + b * w <= max * w, and
 * a + b <= C + max - C * (w - f + 1) / w = max + C * (f - 1) / w. The
 * bound is reached: max units at s - 1 after an idle window, then
 * floor(max * (f - 1) / w) at s + f - 1. Hence any w consecutive ns hold
 * at most max + floor(max * (w - 2) / w) units for w >= 2 (max for
 * w <= 2): less than 2 * max for max >= 1, but not by much. What the
 * estimate removes is the burst at a boundary: [s - w, s + 1) holds at
 * most max, where a fixed window lets 2 * max through in the two ns
 * s - 1 and s, and the excess over max grows with f only as
 * max * (f - 1) / w.
 *
 * Ranges (every function checks them): 1 <= w <= TALLY__SWIN_WIDTH_MAX
 * = 2^62 ns (146 years), and max, cur, prev, held and n in
 * 0 .. TALLY__SWIN_AMOUNT_MAX = 2^62 - 1. Then every product is below
 * 2^124 in magnitude (prev * (w - e) and max * w), the left side of the
 * admission below 2^124 + 3 * 2^124 = 2^126, every sum of two amounts
 * (cur + prev, the whole of an estimate) fits int64_t, and any time can
 * be any int64_t (start + w may lie past INT64_MAX: it is computed wide).
 *
 * Results. TALLY_EINVAL: a NULL pointer that is not allowed to be NULL,
 * w < 1, or a negative amount (max, cur, prev, held, n). Else
 * TALLY_EOVERFLOW: w or an amount above its range, or a result that does
 * not fit (the documented ones). On an error no output is written.
 */
#ifndef TALLY_SWIN_H
#define TALLY_SWIN_H

#include "base.h"

/* The longest window, ns: 2^62 (146 years). */
#define TALLY__SWIN_WIDTH_MAX (INT64_C(1) << 62)
/* The largest max, usage, held or request: 2^62 - 1 units. */
#define TALLY__SWIN_AMOUNT_MAX ((INT64_C(1) << 62) - 1)

/* The state of one sliding counter (see above). */
struct tally__swin {
	int64_t start; /* the current window's start, a lattice boundary */
	int64_t cur;   /* usage of [start, start + w) */
	int64_t prev;  /* usage of [start - w, start); 0 if it was missed */
};

/*
 * What a roll did, so that a caller reports each window exactly once.
 * Over any sequence of rolls of one record, every unit ever charged to cur
 * appears once in `closed` (when its window stops taking writes) and once
 * in left_prev or left_cur (when its window stops counting in the
 * estimate), except the units still in cur (and, for the second, prev).
 */
struct tally__swin_rolled {
	uint64_t steps;    /* k, windows start moved by: 0 = no roll */
	int64_t old_start; /* start before the roll */
	int64_t new_start; /* start after: old_start + k * w */
	/* k >= 1: the old cur, the final usage of [old_start, old_start + w),
	 * which takes no write again. 0 when k = 0. */
	int64_t closed;
	/* k >= 1: the old prev, the usage of [old_start - w, old_start), which
	 * left the estimate. 0 when k = 0. */
	int64_t left_prev;
	/* k >= 2: the old cur too left the estimate (its window is no longer
	 * the one before the current one). 0 when k <= 1. */
	int64_t left_cur;
};

/*
 * The estimate of the usage over the last w ns at now' (held apart):
 * prev * (w - e) / w + cur = whole + frac / w exactly, 0 <= frac < w. Its
 * floor is whole, its ceil is ceil (whole, or whole + 1 if frac > 0); a
 * report that shows one integer `used` should show ceil, so that
 * max - held - ceil is the exact remaining (when it is >= 0).
 */
struct tally__swin_est {
	int64_t start; /* the window at now (after the roll) */
	int64_t end;   /* start + w, or INT64_MAX if that is past INT64_MAX */
	int64_t whole; /* 0 .. cur + prev */
	int64_t frac;  /* 0 .. w - 1: the estimate's fraction, times w */
	int64_t ceil;  /* whole + (frac > 0) */
};

/*
 * The estimate's test and its previous-window part at an offset e of the
 * current window (0 <= e < w), on a state already rolled to it, with no
 * range check: the functions below (which check and roll) and the hot
 * paths of the rate-limit kind (whose snapshots keep the ranges) share
 * them. Amounts in the ranges above, n up to INT64_MAX.
 */
static inline bool
tally__swin_fits_at(int64_t w, int64_t max, int64_t prev, int64_t cur,
		    int64_t e, int64_t held, int64_t n)
{
	return (tally__i128)prev * (w - e) +
		       ((tally__i128)cur + held + n) * w <=
	       (tally__i128)max * w;
}

/* ceil(prev * (w - e) / w), 0 .. prev. */
static inline int64_t
tally__swin_carry_at(int64_t w, int64_t prev, int64_t e)
{
	return (int64_t)(((tally__i128)prev * (w - e) + (w - 1)) / w);
}

/*
 * Rolls *old to now (see above) into *next, and reports in *r (when not
 * NULL) what the roll did. next may be old (in place); otherwise old is
 * never written. Returns TALLY_OK, TALLY_EINVAL (old or next NULL, w < 1,
 * a negative cur or prev) or TALLY_EOVERFLOW (w, cur or prev above its
 * range); on an error neither next nor r is written.
 */
int tally__swin_roll(int64_t w, const struct tally__swin *old,
		     struct tally__swin *next, int64_t now,
		     struct tally__swin_rolled *r);

/*
 * Charges n >= 0 units at now: rolls to now, then cur += n (a charge at a
 * now before start lands in the current window). Never refused for being
 * over the limit (a bump or a settle; admission is tally__swin_allow
 * first). As tally__swin_roll, and TALLY_EINVAL for n < 0,
 * TALLY_EOVERFLOW for cur + n above TALLY__SWIN_AMOUNT_MAX (and n above
 * it); on an error neither next nor r is written.
 */
int tally__swin_charge(int64_t w, const struct tally__swin *st,
		       struct tally__swin *next, int64_t now, int64_t n,
		       struct tally__swin_rolled *r);

/*
 * Whether a request of n units passes at now with `held` units held:
 * prev * (w - e) + (cur + held + n) * w <= max * w on the state rolled to
 * now. Returns TALLY_OK (allowed), TALLY_LIMITED (refused),
 * TALLY_EINVAL (st NULL, w < 1, a negative amount) or TALLY_EOVERFLOW (an
 * amount or w above its range).
 */
int tally__swin_allow(int64_t w, int64_t max, const struct tally__swin *st,
		      int64_t now, int64_t held, int64_t n);

/*
 * *out = the largest n >= 0 that tally__swin_allow would allow at now, or
 * 0 if none does (the counter is over its limit):
 * max(0, max - cur - held - ceil(prev * (w - e) / w)), 0 .. max.
 * Returns TALLY_OK, TALLY_EINVAL (st or out NULL, w < 1, a negative
 * amount) or TALLY_EOVERFLOW (an amount or w above its range).
 */
int tally__swin_remaining(int64_t w, int64_t max, const struct tally__swin *st,
			  int64_t now, int64_t held, int64_t *out);

/*
 * *out = the smallest whole d >= 0 such that a request of n units passes
 * at now + d, nothing being written in between and held staying as it is.
 * Holds that expire can only make it sooner (held only shrinks): a
 * caller with holds takes the least of this and, for each expiry time x
 * of a slot after now, (x - now) + this function at x (same state) with
 * the held left at x, as tally__retry_after does for fixed windows.
 * 0 if the request passes now; TALLY_RETRY_NEVER (INT64_MAX) iff
 * held + n > max (it fails even on an empty window). Otherwise, with
 * e and the state (start, cur, prev) at now', d is the first that exists
 * of, in this order:
 *   in the current window, if prev > 0 and
 *     B = (max - cur - held - n) * w >= prev:
 *     d = w - e - floor(B / prev) (prev's weight has shrunk enough);
 *   in the next window (prev' = cur, cur' = 0), if cur = 0 or
 *     B' = (max - held - n) * w >= cur:
 *     d = w - e + e2, e2 = 0 if cur = 0, else max(0, w - floor(B' / cur));
 *   at the window after (prev'' = cur'' = 0): d = 2 * w - e;
 * plus now' - now when now < start. Each is > 0 (the request fails at
 * now'). Returns TALLY_OK, TALLY_EINVAL (st or out NULL, w < 1, a
 * negative amount) or TALLY_EOVERFLOW (an amount or w above its range, or
 * a d above INT64_MAX - 1, which only a now far before start, or
 * w = 2^62 with e <= 1, can give).
 */
int tally__swin_retry_after(int64_t w, int64_t max,
			    const struct tally__swin *st, int64_t now,
			    int64_t held, int64_t n, int64_t *out);

/* When a request passes (tally__swin_pass_at), exactly. */
struct tally__swin_pass {
	tally__i128 at; /* now + the wait: may pass INT64_MAX */
	int64_t start;  /* the window at now (after the roll) */
	bool never;     /* held + n > max: at is 0 */
};

/*
 * The same answer as tally__swin_retry_after as a time, in 128 bits, with
 * the window it was decided from: out->at = now + d, which may lie past
 * INT64_MAX (a caller whose windows end there, where no boundary is
 * representable, knows that the rolls it needs never come: those after
 * out->start + w and out->start + 2 * w), or out->never. Returns TALLY_OK
 * or the errors of tally__swin_retry_after but the one for d.
 */
int tally__swin_pass_at(int64_t w, int64_t max, const struct tally__swin *st,
			int64_t now, int64_t held, int64_t n,
			struct tally__swin_pass *out);

/*
 * Fills *out with the estimate at now (see struct tally__swin_est).
 * Returns TALLY_OK, TALLY_EINVAL (st or out NULL, w < 1, a negative cur
 * or prev) or TALLY_EOVERFLOW (w, cur or prev above its range).
 */
int tally__swin_estimate(int64_t w, const struct tally__swin *st, int64_t now,
			 struct tally__swin_est *out);

#endif /* TALLY_SWIN_H */
