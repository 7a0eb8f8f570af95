/*
 * Sliding windows: the exact math of the sliding-window counter (see
 * swin.h for the rules, ranges and results). Pure: no ck, no threads, no
 * allocation.
 *
 * Everything is decided on the state rolled to now (struct at, below),
 * never written back. Products are __int128: with the ranges of swin.h
 * each is below 2^124 and no sum of them reaches 2^127, so the admission
 * inequality and the divisions of retry_after are exact. Times are int64
 * but for start + w and start + 2 * w, which may lie past INT64_MAX: the
 * roll compares distances (now - start, exact in uint64_t once
 * now >= start) instead, and retry_after sums distances in __int128.
 */
#include "swin.h"

__extension__ typedef __int128 i128;

/* A state rolled to a decision time, and the offset e in its window. */
struct at {
	struct tally__swin st;
	int64_t e; /* now' - start, 0 .. w - 1, now' = max(now, start) */
};

static int
check_amount(int64_t x)
{
	if (x < 0)
		return TALLY_EINVAL;
	if (x > TALLY__SWIN_AMOUNT_MAX)
		return TALLY_EOVERFLOW;
	return TALLY_OK;
}

/* The first error of a list of checks: EINVAL before EOVERFLOW, so that
 * a call with both a negative and an oversized argument gets EINVAL. */
static int
worst(int a, int b)
{
	if (a == TALLY_EINVAL || b == TALLY_EINVAL)
		return TALLY_EINVAL;
	return a != TALLY_OK ? a : b;
}

static int
check_state(int64_t w, const struct tally__swin *st)
{
	int rc;

	if (st == NULL || w < 1)
		return TALLY_EINVAL;
	rc = worst(check_amount(st->cur), check_amount(st->prev));
	if (rc == TALLY_OK && w > TALLY__SWIN_WIDTH_MAX)
		rc = TALLY_EOVERFLOW;
	return rc;
}

/* A limit, a state and a request (any of max, held, n may be 0). */
static int
check_all(int64_t w, int64_t max, const struct tally__swin *st, int64_t held,
	  int64_t n)
{
	int rc = check_state(w, st);

	if (rc == TALLY_EINVAL)
		return rc;
	rc = worst(rc, check_amount(max));
	rc = worst(rc, check_amount(held));
	return worst(rc, check_amount(n));
}

/* now - start for now >= start, exact: the true difference is below
 * 2^64, and the subtraction modulo 2^64 (a wrap on purpose) gives it. */
TALLY__WRAPS static uint64_t
distance(int64_t now, int64_t start)
{
	return (uint64_t)now - (uint64_t)start;
}

/*
 * Rolls *old to now into *next (may be old) and fills *r. Valid input:
 * 1 <= w <= 2^62. For now >= start, now - start is exact in uint64_t and
 * the new start, now - (now - start) mod w, lies in [start, now]: no
 * int64 overflow, whatever start and now are.
 */
static void
roll(int64_t w, const struct tally__swin *old, struct tally__swin *next,
     int64_t now, struct tally__swin_rolled *r)
{
	struct tally__swin_rolled out = {0, old->start, old->start, 0, 0, 0};
	struct tally__swin st = *old;

	if (now >= old->start) {
		uint64_t gap = distance(now, old->start);

		out.steps = gap / (uint64_t)w;
		if (out.steps >= 1) {
			out.new_start = now - (int64_t)(gap % (uint64_t)w);
			out.closed = old->cur;
			out.left_prev = old->prev;
			out.left_cur = out.steps >= 2 ? old->cur : 0;
			st.start = out.new_start;
			st.prev = out.steps == 1 ? old->cur : 0;
			st.cur = 0;
		}
	}
	*next = st;
	if (r != NULL)
		*r = out;
}

/* The state at now and the offset of now' = max(now, start) in it. */
static struct at
at_now(int64_t w, const struct tally__swin *st, int64_t now)
{
	struct at a;

	roll(w, st, &a.st, now, NULL);
	/* After the roll, now >= start means now - start < w. */
	a.e = now >= a.st.start ? now - a.st.start : 0;
	return a;
}

/* prev * (w - e) + (cur + held + n) * w <= max * w. */
static bool
fits(int64_t w, int64_t max, const struct at *a, int64_t held, int64_t n)
{
	return tally__swin_fits_at(w, max, a->st.prev, a->st.cur, a->e, held,
				   n);
}

int
tally__swin_roll(int64_t w, const struct tally__swin *old,
		 struct tally__swin *next, int64_t now,
		 struct tally__swin_rolled *r)
{
	int rc = check_state(w, old);

	if (rc != TALLY_OK)
		return rc;
	if (next == NULL)
		return TALLY_EINVAL;
	roll(w, old, next, now, r);
	return TALLY_OK;
}

int
tally__swin_charge(int64_t w, const struct tally__swin *st,
		   struct tally__swin *next, int64_t now, int64_t n,
		   struct tally__swin_rolled *r)
{
	int rc = worst(check_state(w, st), check_amount(n));
	struct tally__swin_rolled out;
	struct tally__swin tmp;

	if (rc != TALLY_OK)
		return rc;
	if (next == NULL)
		return TALLY_EINVAL;
	roll(w, st, &tmp, now, &out);
	/* Both are at most 2^62 - 1: the sum fits. */
	if (tmp.cur + n > TALLY__SWIN_AMOUNT_MAX)
		return TALLY_EOVERFLOW;
	tmp.cur += n;
	*next = tmp;
	if (r != NULL)
		*r = out;
	return TALLY_OK;
}

int
tally__swin_allow(int64_t w, int64_t max, const struct tally__swin *st,
		  int64_t now, int64_t held, int64_t n)
{
	int rc = check_all(w, max, st, held, n);
	struct at a;

	if (rc != TALLY_OK)
		return rc;
	a = at_now(w, st, now);
	return fits(w, max, &a, held, n) ? TALLY_OK : TALLY_LIMITED;
}

int
tally__swin_remaining(int64_t w, int64_t max, const struct tally__swin *st,
		      int64_t now, int64_t held, int64_t *out)
{
	int rc = check_all(w, max, st, held, 0);
	struct at a;
	i128 weighted, room;

	if (rc != TALLY_OK)
		return rc;
	if (out == NULL)
		return TALLY_EINVAL;
	a = at_now(w, st, now);
	/* n fits iff n <= max - cur - held - prev * (w - e) / w, that is
	 * (n an integer) iff n <= max - cur - held - ceil(prev * (w - e) / w).
	 */
	weighted = tally__swin_carry_at(w, a.st.prev, a.e);
	room = (i128)max - a.st.cur - held - weighted;
	*out = room > 0 ? (int64_t)room : 0;
	return TALLY_OK;
}

/* The wait d of tally__swin_retry_after, in 128 bits, from the state a at
 * now' (checked); -1 for never. */
static i128
wait_wide(int64_t w, int64_t max, const struct at *a, int64_t now, int64_t held,
	  int64_t n)
{
	i128 avail, b, d;
	int64_t p, c;

	if (fits(w, max, a, held, n))
		return 0;
	avail = (i128)max - held - n; /* what the estimate may reach */
	if (avail < 0)
		return -1;
	p = a->st.prev;
	c = a->st.cur;
	/* The current window: prev * (w - e - d) <= (avail - cur) * w. It
	 * fails at d = 0, so p > 0 and the least d is w - e - floor(b / p),
	 * inside the window iff floor(b / p) >= 1. */
	b = (avail - c) * w;
	if (p > 0 && b >= p) {
		d = w - a->e - b / p;
	} else {
		/* The next window, at offset e2: cur * (w - e2) <= avail * w. */
		b = avail * w;
		if (c == 0)
			d = w - a->e;
		else if (b >= c)
			d = w - a->e + (b / c >= w ? 0 : w - b / c);
		else /* the window after: prev'' = cur'' = 0, avail >= 0 */
			d = 2 * (i128)w - a->e;
	}
	if (now < a->st.start)
		d += (i128)a->st.start - now;
	return d;
}

int
tally__swin_retry_after(int64_t w, int64_t max, const struct tally__swin *st,
			int64_t now, int64_t held, int64_t n, int64_t *out)
{
	struct tally__swin_pass p;
	i128 d;
	int rc = tally__swin_pass_at(w, max, st, now, held, n,
				     out != NULL ? &p : NULL);

	if (rc != TALLY_OK)
		return rc;
	if (p.never) {
		*out = TALLY_RETRY_NEVER;
		return TALLY_OK;
	}
	d = p.at - now;
	if (d > INT64_MAX - 1)
		return TALLY_EOVERFLOW;
	*out = (int64_t)d;
	return TALLY_OK;
}

int
tally__swin_pass_at(int64_t w, int64_t max, const struct tally__swin *st,
		    int64_t now, int64_t held, int64_t n,
		    struct tally__swin_pass *out)
{
	int rc = check_all(w, max, st, held, n);
	struct at a;
	i128 d;

	if (rc != TALLY_OK)
		return rc;
	if (out == NULL)
		return TALLY_EINVAL;
	a = at_now(w, st, now);
	d = wait_wide(w, max, &a, now, held, n);
	out->never = d < 0;
	out->at = d < 0 ? 0 : (i128)now + d;
	out->start = a.st.start;
	return TALLY_OK;
}

int
tally__swin_estimate(int64_t w, const struct tally__swin *st, int64_t now,
		     struct tally__swin_est *out)
{
	int rc = check_state(w, st);
	struct at a;
	i128 weighted;

	if (rc != TALLY_OK)
		return rc;
	if (out == NULL)
		return TALLY_EINVAL;
	a = at_now(w, st, now);
	weighted = (i128)a.st.prev * (w - a.e);
	out->start = a.st.start;
	out->end = a.st.start > INT64_MAX - w ? INT64_MAX : a.st.start + w;
	/* whole <= cur + prev <= 2^63 - 2. */
	out->whole = a.st.cur + (int64_t)(weighted / w);
	out->frac = (int64_t)(weighted % w);
	out->ceil = out->whole + (out->frac > 0 ? 1 : 0);
	return TALLY_OK;
}
