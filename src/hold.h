/*
 * Holds (hold.c): the expiry slots every counter keeps beside its usage,
 * and the per-counter rules of admission. Pure layer.
 *
 * A record keeps the estimates of requests in flight as sums in
 * TALLY__HOLD_SLOTS expiry slots. Slot number j covers the deadlines in
 * ((j - 1) * G, j * G], where G (the grain) is a store constant,
 * ceil(hold_ttl_max / (TALLY__HOLD_SLOTS - 1)); slot j is dead once
 * now >= j * G. The live slots of a record are the K numbers
 * b .. b + K - 1, where b = floor(latest now / G) + 1 never decreases, and
 * slot j lives in ring index j mod K. A hold with deadline d <= now +
 * hold_ttl_max lands in slot max(ceil(d / G), b) <= b + K - 1, so every
 * hold fits without a registry; its handle remembers its slot number.
 *
 * `due` is b * G (the time slot b dies), or INT64_MAX while no hold is
 * live: one comparison (now < due) tells the hot paths that nothing
 * expires, as window_end tells them that nothing rolls. While no hold is
 * live the slot counts are all 0 and their bytes keep b instead
 * (idle_base; INT64_MIN before the first hold), so that a settle can still
 * tell a hold whose slot died (LATE) from one already settled, whatever
 * the settle's own clock says. Dropping the dead
 * slots moves b up to floor(now / G) + 1 and reports what they held
 * (expiry notes, delivered after the CAS like roll notes).
 *
 * Per slot, every counter of the record keeps its sum and the record keeps
 * one count of holds (a rate-limit hold holds tokens and requests in the
 * same slot). A settle whose slot is still live takes its amounts out of
 * the slot; one whose slot died charges its actual and releases nothing
 * (LATE): the slot's sum left `held` once, when it died.
 */
#ifndef TALLY_HOLD_H
#define TALLY_HOLD_H

#include "snap.h"
#include "swin.h"

#define TALLY__HOLD_SLOTS 4

/* The hold state of one record, as pointers into a snapshot (next). */
struct tally__hs {
	int64_t *due;
	uint32_t *count;    /* [TALLY__HOLD_SLOTS], while a hold is live */
	int64_t *idle_base; /* the same bytes, while none is */
	int64_t *total[TALLY__ROLLS_MAX];   /* held, per counter */
	int64_t (*slot)[TALLY__HOLD_SLOTS]; /* [nc][TALLY__HOLD_SLOTS] */
	unsigned nc;
};

/* floor(a / b) and ceil(a / b) for b > 0, any a. */
static inline int64_t
tally__floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	return (a % b != 0 && a < 0) ? q - 1 : q;
}

static inline int64_t
tally__ceil_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	return (a % b != 0 && a > 0) ? q + 1 : q;
}

static inline unsigned
tally__hold_index(int64_t slot)
{
	int64_t m = slot % TALLY__HOLD_SLOTS;

	return (unsigned)(m < 0 ? m + TALLY__HOLD_SLOTS : m);
}

/* The room a counter has: max - used - held, saturated (held and used
 * are >= 0, max >= 0). */
static inline int64_t
tally__room(int64_t max, int64_t used, int64_t held)
{
	int64_t r;

	if (__builtin_sub_overflow(max - used, held, &r))
		return INT64_MIN;
	return r;
}

/* The grain of a store whose longest TTL is ttl_max (> 0). */
static inline int64_t
tally__hold_grain(int64_t ttl_max)
{
	return tally__ceil_div(ttl_max, TALLY__HOLD_SLOTS - 1);
}

/* Fills gr for the grain g > 0 (snap.h): once per store. */
void tally__grain_init(struct tally__grain *gr, int64_t g);

/* floor(n / G) for 0 <= n (n < 2^63): a multiply and a shift. */
static inline int64_t
tally__grain_div_nonneg(const struct tally__grain *gr, uint64_t n)
{
	__extension__ typedef unsigned __int128 u128;

	return (int64_t)(((u128)n * gr->magic) >> gr->shift);
}

/* floor(n / G) and ceil(n / G), any n, exact (test_hold checks them
 * against division). For n < 0, floor(n / G) = -1 - floor((-n - 1) / G),
 * where -n - 1 = ~n cannot overflow. */
static inline int64_t
tally__grain_floor(const struct tally__grain *gr, int64_t n)
{
	if (n >= 0)
		return tally__grain_div_nonneg(gr, (uint64_t)n);
	return -1 - tally__grain_div_nonneg(gr, ~(uint64_t)n);
}

static inline int64_t
tally__grain_ceil(const struct tally__grain *gr, int64_t n)
{
	/* ceil(n / G) = floor((n - 1) / G) + 1 for integers; n - 1 exists
	 * but for INT64_MIN, which G divides exactly iff G is a power of
	 * two. */
	if (n == INT64_MIN)
		return tally__grain_floor(gr, n) +
		       ((gr->g & (gr->g - 1)) != 0 ? 1 : 0);
	return tally__grain_floor(gr, n - 1) + 1;
}

/* Drops the slots dead at a->now (a coarse reading that cannot decide
 * sets a->need_exact, as for windows); adds their sums to rolls->exp
 * (rolls may be NULL). Returns whether anything changed. */
bool tally__holds_expire(const struct tally__hs *h, struct tally__args *a,
			 struct tally__rolls *rolls);

/* Whether any hold of h is live. */
bool tally__holds_any(const struct tally__hs *h);

/* Places a hold of amount[0 .. nc-1] with deadline a->now + a->ttl into
 * its slot (a->slot receives the slot number). Returns TALLY_OK or
 * TALLY_EOVERFLOW (the deadline, a sum or the count would overflow);
 * h is unchanged on error. Expire first. */
int tally__holds_place(const struct tally__hs *h, struct tally__args *a,
		       const int64_t *amount);

/* Whether tally__holds_place would succeed (its result), changing
 * nothing: admission's read-only pass tests a hold with it. */
int tally__holds_fit(const struct tally__hs *h, const struct tally__args *a,
		     const int64_t *amount);

/*
 * Takes what the hold of slot a->slot still holds (a->held_amount[c])
 * out of its slot; with a->op TALLY__OP_PARTIAL only up to a->actual[c]
 * per counter, and the hold stays counted. Returns 1 if the slot is live
 * and holds at least that much (done; a->moved[c] is what left each
 * counter's held), 0 if the slot died (LATE: nothing taken), or
 * TALLY_ESETTLED if the slot is live but holds less than the hold's
 * amounts (a settled copy of the handle): nothing taken. Expire first.
 */
int tally__holds_take(const struct tally__hs *h, struct tally__args *a);

/*
 * The time until `amount` fits a counter with max (has_max) whose used
 * is `used` until window_end and 0 after (a roll), and whose counter c of
 * h holds what its live slots hold until each slot dies: 0 if it fits
 * at now, TALLY_RETRY_NEVER if it never does.
 */
int64_t tally__retry_after(const struct tally__hs *h, unsigned c,
			   const struct tally__grain *grain, int64_t now,
			   int64_t amount, int64_t max, int64_t used,
			   int64_t window_end);

/*
 * The same for a sliding counter (swin.h) whose state is *st (rolled to
 * now or not: the math rolls it) with window length w: the least, over
 * now and each live slot's end x after now, of (x - now) plus the time
 * after x at which `amount` passes with the held left at x
 * (tally__swin_retry_after, the recipe of swin.h). Held only drops, so
 * the least is the first time it passes. The amounts are in swin.h's
 * range (the kind keeps them there); TALLY_RETRY_NEVER if amount > max,
 * or if it would pass only past INT64_MAX or after a boundary at or past
 * INT64_MAX (which never comes: such a window never rolls).
 */
int64_t tally__retry_after_sliding(const struct tally__hs *h, unsigned c,
				   const struct tally__grain *grain,
				   int64_t now, int64_t amount, int64_t max,
				   int64_t w, const struct tally__swin *st);

/* The same without retry_after (0): for a kind that computes its own. */
void tally__report_fill(tally_counter_report *rep, const struct tally__hs *h,
			unsigned c, int64_t amount, bool has_max, int64_t max,
			int64_t used, int64_t window_start, int64_t window_end);

/*
 * Fills a counter report for the counter c of a record (next, after the
 * transition) and a request of `amount`: max, used, held, remaining,
 * window, retry_after, and flags UNLIMITED, REACHED, TOO_BIG. The caller
 * adds DENIED and the rest.
 */
void tally__report_counter(tally_counter_report *rep, const struct tally__hs *h,
			   unsigned c, const struct tally__args *a,
			   int64_t amount, bool has_max, int64_t max,
			   int64_t used, int64_t window_start,
			   int64_t window_end);

#endif /* TALLY_HOLD_H */
