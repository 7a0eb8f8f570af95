/*
 * Unit tests of the sliding-window counter (src/swin.c), pure layer: the
 * estimate and the admission against a model that keeps the usage of
 * every window in an array and weighs each by its overlap with the last w
 * ns (other code than the library's roll and offset), retry-after against
 * a scan over every ns, the admitted-count bound of swin.h on greedy
 * streams and its tightness, the collapse of missed windows and the
 * ranges. No threads, no clock, no timing.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <inttypes.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "swin.h"

__extension__ typedef __int128 i128;

#define NS_PER_MIN (60 * INT64_C(1000000000))
#define WMAX TALLY__SWIN_WIDTH_MAX
#define AMAX TALLY__SWIN_AMOUNT_MAX

/* A small deterministic generator. */
static uint64_t rng = 0x2545f4914f6cdd1du;

static uint64_t
next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* 0 .. n - 1 (n > 0). */
static int64_t
rand_below(int64_t n)
{
	return (int64_t)(next_rand() % (uint64_t)n);
}

static int64_t
floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	return (a % b != 0 && a < 0) ? q - 1 : q;
}

static struct tally__swin
swin(int64_t start, int64_t cur, int64_t prev)
{
	struct tally__swin s = {start, cur, prev};

	return s;
}

/* ------------------------------------------------------------------------ */
/* The model: usage per window, weights by overlap                          */
/* ------------------------------------------------------------------------ */

#define NWIN 20000

/*
 * Window j is [origin + j * w, origin + (j + 1) * w). Every write lands in
 * the window of its time (the replay's clock never goes back), so the
 * window before the current one has exactly the usage the library calls
 * prev, whether or not the library's state ever saw it (a missed window
 * holds 0 here by construction).
 */
struct model {
	int64_t w;
	int64_t origin;
	int64_t usage[NWIN];
};

static int64_t
model_win(const struct model *m, int64_t t)
{
	int64_t j = floor_div(t - m->origin, m->w);

	assert_true(j >= 0 && j < NWIN);
	return j;
}

/* Length of [a0, a1) intersected with [b0, b1). */
static int64_t
overlap(int64_t a0, int64_t a1, int64_t b0, int64_t b1)
{
	int64_t lo = a0 > b0 ? a0 : b0, hi = a1 < b1 ? a1 : b1;

	return hi > lo ? hi - lo : 0;
}

/*
 * w times the estimate at t: every closed window weighs its usage by the
 * length of its overlap with [t - w, t), the current window weighs w. (Of
 * the closed ones only the one before the current window overlaps; the
 * sum goes back 8 windows, so that this is seen, not assumed.)
 */
static int64_t
model_scaled(const struct model *m, int64_t t)
{
	int64_t jt = model_win(m, t), sum = 0;

	for (int64_t j = jt > 8 ? jt - 8 : 0; j < jt; j++) {
		int64_t s = m->origin + j * m->w;

		sum += m->usage[j] * overlap(s, s + m->w, t - m->w, t);
	}
	return sum + m->usage[jt] * m->w;
}

static bool
model_allows(const struct model *m, int64_t max, int64_t t, int64_t held,
	     int64_t n)
{
	return model_scaled(m, t) + (held + n) * m->w <= max * m->w;
}

/* Checks every view of the library at t against the model. */
static void
check_views(const struct model *m, const struct tally__swin *st, int64_t max,
	    int64_t t, int64_t held)
{
	int64_t scaled = model_scaled(m, t), rem = -1, w = m->w;
	struct tally__swin_est est;
	long double ld = 0;
	int64_t jt = model_win(m, t);

	/* The estimate, exact, and in long double where that is close. */
	assert_int_equal(tally__swin_estimate(w, st, t, &est), TALLY_OK);
	assert_int_equal(est.whole, scaled / w);
	assert_int_equal(est.frac, scaled % w);
	assert_int_equal(est.ceil, (scaled + w - 1) / w);
	assert_int_equal(est.start, m->origin + jt * w);
	assert_int_equal(est.end, m->origin + (jt + 1) * w);
	if (jt > 0)
		ld = (long double)m->usage[jt - 1] *
		     ((long double)(est.end - t) / (long double)w);
	ld += (long double)m->usage[jt];
	assert_true(ld >= (long double)est.whole - 1e-6L);
	assert_true(ld < (long double)est.whole + 1 + 1e-6L);

	/* Admission for a spread of sizes, and remaining as the edge. */
	for (int64_t n = 0; n <= max + 3; n += (max > 40 ? 1 + max / 20 : 1))
		assert_int_equal(tally__swin_allow(w, max, st, t, held, n),
				 model_allows(m, max, t, held, n)
					 ? TALLY_OK
					 : TALLY_LIMITED);
	assert_int_equal(tally__swin_remaining(w, max, st, t, held, &rem),
			 TALLY_OK);
	assert_true(rem >= 0 && rem <= max);
	if (!model_allows(m, max, t, held, 0)) {
		assert_int_equal(rem, 0);
	} else {
		assert_true(model_allows(m, max, t, held, rem));
		assert_false(model_allows(m, max, t, held, rem + 1));
		assert_int_equal(tally__swin_allow(w, max, st, t, held, rem),
				 TALLY_OK);
		assert_int_equal(
			tally__swin_allow(w, max, st, t, held, rem + 1),
			TALLY_LIMITED);
	}
	/* remaining = max - held - ceil(estimate), at least 0. */
	assert_int_equal(rem,
			 max - held - est.ceil > 0 ? max - held - est.ceil : 0);
}

/*
 * A replay: the clock steps through many windows (by 1 ns mostly, so
 * that with a small w every ns of most windows is visited; sometimes by
 * a window or several, so that windows are missed), random charges land
 * (admissions that passed, and bumps that ignore the limit), and at every
 * step every view agrees with the model. The roll reports account for
 * every unit exactly once.
 */
static void
replay(int64_t w, int64_t max, int64_t step_max, unsigned steps)
{
	static struct model m;
	struct tally__swin st;
	int64_t t, total = 0, closed = 0, left = 0;
	unsigned charges = 0, rolls = 0, collapses = 0, done = 0;

	memset(&m, 0, sizeof m);
	m.w = w;
	m.origin = rand_below(2001) - 1000; /* negative starts too */
	st = swin(m.origin, 0, 0);
	t = m.origin + rand_below(w);
	for (unsigned i = 0; i < steps; i++) {
		int64_t r = rand_below(100), held = rand_below(4);
		int64_t step;

		if (r < 70)
			step = w <= 60 ? 1 : 1 + rand_below(step_max);
		else if (r < 90)
			step = rand_below(w);
		else if (r < 97)
			step = w + rand_below(w);
		else
			step = 2 * w + rand_below(3 * w);
		if (floor_div(t + step - m.origin, w) >= NWIN)
			break;
		done++;
		t += step;
		if (rand_below(3) == 0)
			held = 0;
		check_views(&m, &st, max, t, held);

		if (rand_below(5) < 2) {
			int64_t n = rand_below(max / 4 + 3);
			bool bump = rand_below(4) == 0;
			struct tally__swin_rolled rd;
			int64_t jt;

			if (!bump && tally__swin_allow(w, max, &st, t, held,
						       n) != TALLY_OK)
				continue;
			assert_int_equal(
				tally__swin_charge(w, &st, &st, t, n, &rd),
				TALLY_OK);
			m.usage[model_win(&m, t)] += n;
			total += n;
			charges++;
			rolls += rd.steps > 0;
			collapses += rd.steps >= 2;
			closed += rd.closed;
			left += rd.left_prev + rd.left_cur;
			/* Each unit once in closed, once in left. */
			assert_int_equal(closed + st.cur, total);
			assert_int_equal(left + st.cur + st.prev, total);
			/* The state is the model's, start on the lattice. */
			jt = model_win(&m, t);
			assert_int_equal(st.start, m.origin + jt * w);
			assert_int_equal(st.cur, m.usage[jt]);
			assert_int_equal(st.prev, jt > 0 ? m.usage[jt - 1] : 0);
		}
	}
	/* The replay did what it is for. */
	assert_int_equal(done, steps);
	assert_true(charges > steps / 10);
	assert_true(rolls > 10);
	assert_true(collapses > 0);
}

static void
test_estimate_matches_model(void **state)
{
	static const int64_t ws[] = {1, 2, 7, 10, 60};

	(void)state;
	for (unsigned i = 0; i < sizeof ws / sizeof ws[0]; i++) {
		replay(ws[i], 0, 1, 1500);
		replay(ws[i], 1, 1, 1500);
		replay(ws[i], 17, 1, 3000);
		replay(ws[i], 60, 1, 3000);
	}
	/* A minute in ns: random steps, values far from the window. */
	replay(NS_PER_MIN, 1000, NS_PER_MIN / 3, 3000);
	replay(NS_PER_MIN, 7, NS_PER_MIN / 7, 3000);
	replay(NS_PER_MIN + 1, 999, NS_PER_MIN / 5, 3000);
}

/* ------------------------------------------------------------------------ */
/* retry_after against a scan                                               */
/* ------------------------------------------------------------------------ */

/*
 * Whether n passes at t on the state st, nothing written since: a case
 * analysis on the window of t (not the library's roll), in 128 bits.
 */
static bool
scan_allows(int64_t w, int64_t max, const struct tally__swin *st, int64_t t,
	    int64_t held, int64_t n)
{
	i128 lhs, off = (i128)t - st->start;

	if (off < 0) /* decided as at start */
		lhs = (i128)st->prev * w + ((i128)st->cur + held + n) * w;
	else if (off < w)
		lhs = (i128)st->prev * (w - off) +
		      ((i128)st->cur + held + n) * w;
	else if (off < 2 * (i128)w)
		lhs = (i128)st->cur * (2 * (i128)w - off) +
		      ((i128)held + n) * w;
	else
		lhs = ((i128)held + n) * w;
	return lhs <= (i128)max * w;
}

static void
test_retry_after_brute_force(void **state)
{
	unsigned never = 0, now_ok = 0, in_cur = 0, in_next = 0, after = 0;

	(void)state;
	for (unsigned i = 0; i < 30000; i++) {
		int64_t w = 1 + rand_below(12), max = rand_below(30);
		struct tally__swin st = swin(rand_below(200) - 100,
					     rand_below(36), rand_below(36));
		int64_t held = rand_below(3) == 0 ? 0 : rand_below(10);
		int64_t n = rand_below(20);
		int64_t now = st.start - w - 3 + rand_below(4 * w + 3);
		int64_t limit = (now < st.start ? st.start - now : 0) + 3 * w;
		int64_t d = -1, want = -1;
		struct tally__swin copy = st;

		for (int64_t k = 0; k <= limit; k++) {
			bool ok = scan_allows(w, max, &st, now + k, held, n);

			if (ok && want < 0)
				want = k;
			/* Allowed once, allowed from then on. */
			if (want >= 0)
				assert_true(ok);
		}
		assert_int_equal(
			tally__swin_retry_after(w, max, &st, now, held, n, &d),
			TALLY_OK);
		assert_memory_equal(&st, &copy, sizeof st);
		if (want < 0) {
			assert_int_equal(d, TALLY_RETRY_NEVER);
			assert_true(held + n > max);
			never++;
			continue;
		}
		assert_true(held + n <= max);
		assert_int_equal(d, want);
		/* The library's own allow agrees at the edge. */
		assert_int_equal(
			tally__swin_allow(w, max, &st, now + d, held, n),
			TALLY_OK);
		if (d > 0)
			assert_int_equal(tally__swin_allow(w, max, &st,
							   now + d - 1, held,
							   n),
					 TALLY_LIMITED);
		if (d == 0)
			now_ok++;
		else if (now + d < st.start + w)
			in_cur++;
		else if (now + d < st.start + 2 * w)
			in_next++;
		else
			after++;
	}
	/* Every branch of the closed form was taken, many times. */
	assert_true(never > 500);
	assert_true(now_ok > 500);
	assert_true(in_cur > 500);
	assert_true(in_next > 500);
	assert_true(after > 200);
}

/*
 * The recipe of swin.h for holds: held drops from h1 to h2 at x (a slot
 * expires); the first time n passes is the least of retry_after at now
 * with h1 and (x - now) + retry_after at x with h2, against a scan.
 */
static void
test_retry_after_with_expiry(void **state)
{
	unsigned sooner = 0;

	(void)state;
	for (unsigned i = 0; i < 20000; i++) {
		int64_t w = 1 + rand_below(10), max = rand_below(25);
		struct tally__swin st = swin(rand_below(100) - 50,
					     rand_below(30), rand_below(30));
		int64_t h1 = rand_below(12), h2 = rand_below(h1 + 1);
		int64_t n = rand_below(15);
		int64_t now = st.start - 2 + rand_below(2 * w + 2);
		int64_t x = now + 1 + rand_below(3 * w);
		int64_t limit = (now < st.start ? st.start - now : 0) + 4 * w;
		int64_t want = -1, d1 = -1, d2 = -1, got;

		for (int64_t k = 0; k <= limit && want < 0; k++)
			if (scan_allows(w, max, &st, now + k,
					now + k < x ? h1 : h2, n))
				want = k;
		assert_int_equal(
			tally__swin_retry_after(w, max, &st, now, h1, n, &d1),
			TALLY_OK);
		assert_int_equal(
			tally__swin_retry_after(w, max, &st, x, h2, n, &d2),
			TALLY_OK);
		got = d1;
		if (d2 != TALLY_RETRY_NEVER && x - now + d2 < got)
			got = x - now + d2;
		if (want < 0) {
			assert_int_equal(got, TALLY_RETRY_NEVER);
			continue;
		}
		assert_int_equal(got, want);
		sooner += got < d1;
	}
	assert_true(sooner > 1000);
}

/*
 * Windows and amounts too large to scan: the answer is the edge (allowed
 * at now + d, refused at now + d - 1) and the set above it is allowed,
 * checked with the 128-bit case analysis.
 */
static void
test_retry_after_large(void **state)
{
	unsigned checked = 0;

	(void)state;
	for (unsigned i = 0; i < 20000; i++) {
		int64_t shift = 1 + rand_below(62);
		int64_t w =
			i % 4 == 0 ? WMAX
			: i % 4 == 1
				? NS_PER_MIN
				: 1 + (int64_t)(next_rand() >> (64 - shift));
		int64_t top = i % 3 == 0 ? AMAX : 1 + rand_below(1000000);
		int64_t max = rand_below(top), held = rand_below(top / 8 + 1);
		struct tally__swin st =
			swin(-(INT64_C(1) << 61) + rand_below(1 << 20),
			     rand_below(top), rand_below(top));
		int64_t n = rand_below(top / 4 + 1), d = -1, t;
		int64_t span = w > (INT64_C(1) << 61) ? INT64_C(1) << 61 : w;
		int64_t now = st.start + rand_below(2 * span);
		int rc = tally__swin_retry_after(w, max, &st, now, held, n, &d);
		struct tally__swin_pass pass;
		struct tally__swin_est est;

		/* pass_at gives the same answer as a time, in 128 bits, and
		 * the window it was decided from (st rolled to now). */
		assert_int_equal(
			tally__swin_pass_at(w, max, &st, now, held, n, &pass),
			TALLY_OK);
		assert_int_equal(tally__swin_estimate(w, &st, now, &est),
				 TALLY_OK);
		assert_int_equal(pass.start, est.start);
		if (rc == TALLY_EOVERFLOW) {
			/* Only a d past INT64_MAX - 1: w = 2^62, e <= 1, in
			 * the window after next (prev'' = cur'' = 0). */
			assert_int_equal(w, WMAX);
			assert_true(now - st.start <= 1);
			assert_false(pass.never);
			assert_true(pass.at ==
				    (__extension__(__int128) est.start +
				     2 * (__extension__(__int128) w)));
			continue;
		}
		assert_int_equal(rc, TALLY_OK);
		assert_int_equal(pass.never, d == TALLY_RETRY_NEVER);
		if (d != TALLY_RETRY_NEVER)
			assert_true(pass.at ==
				    (__extension__(__int128) now + d));
		if (d == TALLY_RETRY_NEVER) {
			assert_true(held + n > max);
			continue;
		}
		assert_true(held + n <= max);
		if (__builtin_add_overflow(now, d, &t))
			continue;
		assert_true(scan_allows(w, max, &st, t, held, n));
		assert_int_equal(tally__swin_allow(w, max, &st, t, held, n),
				 TALLY_OK);
		if (d > 0) {
			assert_false(scan_allows(w, max, &st, t - 1, held, n));
			assert_int_equal(
				tally__swin_allow(w, max, &st, t - 1, held, n),
				TALLY_LIMITED);
		}
		if (t <= INT64_MAX - w)
			assert_true(scan_allows(
				w, max, &st, t + rand_below(w) + 1, held, n));
		checked++;
	}
	assert_true(checked > 10000);
}

/* ------------------------------------------------------------------------ */
/* The admitted-count bound                                                 */
/* ------------------------------------------------------------------------ */

/* The bound of swin.h: units charged in [x, s + f), s - w <= x <= s. */
static int64_t
bound(int64_t w, int64_t max, int64_t f)
{
	if (f == 0)
		return max;
	return max + max * (f - 1) / w;
}

#define HORIZON 4000

/* Greedy streams: at each ns, a few requests of 1 .. 3 units (or none),
 * each charged iff allowed; then every interval is within the bound. */
static void
test_admitted_bound(void **state)
{
	static const int64_t ws[] = {1, 2, 3, 7, 10, 60};
	static const int64_t maxes[] = {1, 5, 17, 60};
	static int64_t got[HORIZON];

	(void)state;
	for (unsigned wi = 0; wi < sizeof ws / sizeof ws[0]; wi++) {
		for (unsigned mi = 0; mi < sizeof maxes / sizeof maxes[0];
		     mi++) {
			int64_t w = ws[wi], max = maxes[mi];
			struct tally__swin st = swin(0, 0, 0);
			int64_t best_w = 0;

			memset(got, 0, sizeof got);
			for (int64_t t = 0; t < HORIZON; t++) {
				/* Light, idle, heavy and sparse stretches of
				 * 3 w ns each: heavy follows idle, so that a
				 * fresh window fills up to max. */
				int64_t phase = (t / (3 * w)) % 4, tries;

				if (phase == 0)
					tries = rand_below(2);
				else if (phase == 1)
					tries = 0;
				else if (phase == 2)
					tries = rand_below(max + 4);
				else
					tries = rand_below(w) == 0
							? rand_below(2 * max)
							: 0;

				for (int64_t k = 0; k < tries; k++) {
					int64_t n = 1 + rand_below(3);

					if (tally__swin_allow(w, max, &st, t, 0,
							      n) != TALLY_OK)
						continue;
					assert_int_equal(
						tally__swin_charge(w, &st, &st,
								   t, n, NULL),
						TALLY_OK);
					got[t] += n;
				}
			}
			/* [s - w + i, s + f) for every boundary s, f, i. */
			for (int64_t s = w; s + w <= HORIZON; s += w) {
				for (int64_t i = 0; i <= w; i++) {
					int64_t sum = 0;

					for (int64_t t = s - w + i; t < s; t++)
						sum += got[t];
					for (int64_t f = 0; f <= w; f++) {
						if (f > 0)
							sum += got[s + f - 1];
						assert_true(sum <=
							    bound(w, max, f));
					}
				}
			}
			/* Any w consecutive ns. */
			for (int64_t x = 0; x + w <= HORIZON; x++) {
				int64_t sum = 0;

				for (int64_t t = x; t < x + w; t++)
					sum += got[t];
				assert_true(sum <= bound(w, max, w - 1));
				if (sum > best_w)
					best_w = sum;
			}
			/* The stream pushed the limit. */
			assert_true(best_w >= max);
		}
	}
}

/*
 * The bound is reached, for every f: max units at s - 1 after an idle
 * window, then all that passes at s + f - 1. A fixed window of the same
 * max lets 2 * max through in the two ns s - 1 and s; the sliding counter
 * lets max through there, and no more than the bound in any w ns.
 */
static void
test_admitted_bound_tight(void **state)
{
	static const int64_t ws[] = {1, 2, 3, 7, 10, 60, NS_PER_MIN};
	static const int64_t maxes[] = {1, 5, 17, 60, 1000};

	(void)state;
	for (unsigned wi = 0; wi < sizeof ws / sizeof ws[0]; wi++) {
		for (unsigned mi = 0; mi < sizeof maxes / sizeof maxes[0];
		     mi++) {
			int64_t w = ws[wi], max = maxes[mi], s = 5 * w;
			int64_t fmax = w > 100 ? 100 : w;

			for (int64_t f = 1; f <= fmax; f++) {
				int64_t ff = w > 100 ? 1 + rand_below(w) : f;
				struct tally__swin st = swin(3 * w, 0, 0);
				int64_t rem = -1, a, b;

				/* The window before s - w is idle: max at
				 * s - 1, in units of 1, every one passes. */
				for (a = 0;
				     tally__swin_allow(w, max, &st, s - 1, 0,
						       1) == TALLY_OK;
				     a++)
					assert_int_equal(
						tally__swin_charge(w, &st, &st,
								   s - 1, 1,
								   NULL),
						TALLY_OK);
				assert_int_equal(a, max);
				/* At s + ff - 1: all that passes at once. */
				assert_int_equal(tally__swin_remaining(
							 w, max, &st,
							 s + ff - 1, 0, &rem),
						 TALLY_OK);
				b = rem;
				assert_int_equal(a + b, bound(w, max, ff));
				/* And one more unit fails. */
				assert_int_equal(tally__swin_allow(w, max, &st,
								   s + ff - 1,
								   0, b + 1),
						 TALLY_LIMITED);
			}
		}
	}
}

/* A fixed window admits iff cur + n <= max: 2 * max in two ns. */
static void
test_no_double_burst(void **state)
{
	static const int64_t ws[] = {2, 7, 60, NS_PER_MIN};
	int64_t max = 100;

	(void)state;
	for (unsigned wi = 0; wi < sizeof ws / sizeof ws[0]; wi++) {
		int64_t w = ws[wi], s = 10 * w, fixed_cur = 0, fixed = 0;
		int64_t sliding = 0, fixed_start = s - w;
		struct tally__swin st = swin(s - 2 * w, 0, 0);

		for (int64_t t = s - 1; t <= s; t++) {
			for (int64_t k = 0; k < 2 * max; k++) {
				if (t >= fixed_start + w) {
					fixed_start += w;
					fixed_cur = 0;
				}
				if (fixed_cur + 1 <= max) {
					fixed_cur++;
					fixed++;
				}
				if (tally__swin_allow(w, max, &st, t, 0, 1) ==
				    TALLY_OK) {
					assert_int_equal(
						tally__swin_charge(w, &st, &st,
								   t, 1, NULL),
						TALLY_OK);
					sliding++;
				}
			}
		}
		assert_int_equal(fixed, 2 * max);
		assert_int_equal(sliding, bound(w, max, 1));
		assert_int_equal(sliding, max);
		/* The last w ns of the window after: the bound, not 2 max. */
		{
			int64_t rem = -1;

			assert_int_equal(tally__swin_remaining(w, max, &st,
							       s + w - 2, 0,
							       &rem),
					 TALLY_OK);
			assert_int_equal(max + rem, bound(w, max, w - 1));
			assert_true(max + rem < 2 * max);
		}
	}
}

/* ------------------------------------------------------------------------ */
/* Rolls                                                                    */
/* ------------------------------------------------------------------------ */

static void
expect_roll(int64_t w, struct tally__swin old, int64_t now,
	    struct tally__swin want, uint64_t steps)
{
	struct tally__swin next = swin(1, 2, 3), in_place = old;
	struct tally__swin_rolled r;

	assert_int_equal(tally__swin_roll(w, &old, &next, now, &r), TALLY_OK);
	assert_int_equal(next.start, want.start);
	assert_int_equal(next.cur, want.cur);
	assert_int_equal(next.prev, want.prev);
	assert_true(r.steps == steps);
	assert_int_equal(r.old_start, old.start);
	assert_int_equal(r.new_start, want.start);
	assert_int_equal(r.closed, steps >= 1 ? old.cur : 0);
	assert_int_equal(r.left_prev, steps >= 1 ? old.prev : 0);
	assert_int_equal(r.left_cur, steps >= 2 ? old.cur : 0);
	/* In place, and without a report. */
	assert_int_equal(tally__swin_roll(w, &in_place, &in_place, now, NULL),
			 TALLY_OK);
	assert_memory_equal(&in_place, &next, sizeof next);
	/* Rolling the rolled state to the same now changes nothing. */
	assert_int_equal(tally__swin_roll(w, &next, &in_place, now, &r),
			 TALLY_OK);
	assert_memory_equal(&in_place, &next, sizeof next);
	assert_true(r.steps == 0);
}

static void
test_missed_windows_collapse(void **state)
{
	struct tally__swin st = swin(-35, 5, 3);
	struct tally__swin_est est;
	int64_t w = 10, rem = -1;

	(void)state;
	/* The same window (and a time before start): nothing. */
	expect_roll(w, st, -35, st, 0);
	expect_roll(w, st, -26, st, 0);
	expect_roll(w, st, -1000, st, 0);
	/* Exactly one window later: prev is the old cur. */
	expect_roll(w, st, -25, swin(-25, 0, 5), 1);
	expect_roll(w, st, -16, swin(-25, 0, 5), 1);
	/* Two or more: prev 0, start on the lattice, not at now. */
	expect_roll(w, st, -15, swin(-15, 0, 0), 2);
	expect_roll(w, st, -6, swin(-15, 0, 0), 2);
	expect_roll(w, st, 17, swin(15, 0, 0), 5);
	expect_roll(w, st, 1000003, swin(999995, 0, 0), 100003);
	/* The estimate sees the same: one idle window keeps cur as prev. */
	assert_int_equal(tally__swin_estimate(w, &st, -20, &est), TALLY_OK);
	assert_int_equal(est.start, -25);
	assert_int_equal(est.whole, 2); /* 5 * 5 / 10 */
	assert_int_equal(est.frac, 5);
	assert_int_equal(est.ceil, 3);
	assert_int_equal(tally__swin_remaining(w, 4, &st, -20, 0, &rem),
			 TALLY_OK);
	assert_int_equal(rem, 1);
	assert_int_equal(tally__swin_estimate(w, &st, -14, &est), TALLY_OK);
	assert_int_equal(est.start, -15);
	assert_int_equal(est.whole, 0);
	assert_int_equal(est.frac, 0);
	assert_int_equal(tally__swin_remaining(w, 4, &st, -14, 0, &rem),
			 TALLY_OK);
	assert_int_equal(rem, 4);
	/* Before start: decided as at start (prev at full weight). */
	assert_int_equal(tally__swin_estimate(w, &st, -90, &est), TALLY_OK);
	assert_int_equal(est.start, -35);
	assert_int_equal(est.whole, 8);
	assert_int_equal(est.frac, 0);
	/* A charge before start lands in the current window. */
	{
		struct tally__swin next;

		assert_int_equal(
			tally__swin_charge(w, &st, &next, -90, 2, NULL),
			TALLY_OK);
		assert_int_equal(next.start, -35);
		assert_int_equal(next.cur, 7);
		assert_int_equal(next.prev, 3);
	}
	/* The extremes of int64 time. */
	expect_roll(1, swin(INT64_MIN, 4, 1), INT64_MAX, swin(INT64_MAX, 0, 0),
		    UINT64_MAX);
	expect_roll(WMAX, swin(INT64_MIN, 4, 1), INT64_MAX, swin(WMAX, 0, 0),
		    3);
	expect_roll(WMAX, swin(INT64_MIN, 4, 1), -1, swin(-WMAX, 0, 4), 1);
	expect_roll(7, swin(INT64_MAX - 3, 4, 1), INT64_MAX,
		    swin(INT64_MAX - 3, 4, 1), 0);
	/* Far ahead: on the lattice of -35, within w of now. */
	assert_int_equal(tally__swin_estimate(7, &st, INT64_MAX - 1, &est),
			 TALLY_OK);
	assert_true(est.start <= INT64_MAX - 1 && est.start > INT64_MAX - 8);
	assert_true(((uint64_t)est.start + 35) % 7 == 0);
	assert_int_equal(est.whole, 0);
	{
		struct tally__swin top = swin(INT64_MAX - 3, 4, 1);

		assert_int_equal(tally__swin_estimate(7, &top, INT64_MAX, &est),
				 TALLY_OK);
		assert_int_equal(est.end, INT64_MAX); /* saturated */
		assert_int_equal(est.whole, 4);       /* 1 * 4 / 7 + 4 */
		assert_int_equal(est.frac, 4);
	}
}

/* ------------------------------------------------------------------------ */
/* Ranges and bad input                                                     */
/* ------------------------------------------------------------------------ */

/* The documented code of a state and w: EINVAL first, then EOVERFLOW. */
static int
state_rc(int64_t w, struct tally__swin st)
{
	if (w < 1 || st.cur < 0 || st.prev < 0)
		return TALLY_EINVAL;
	if (w > WMAX || st.cur > AMAX || st.prev > AMAX)
		return TALLY_EOVERFLOW;
	return TALLY_OK;
}

/*
 * allow and retry_after on this input return rc, remaining (which takes
 * no n) rc_rem, roll and estimate the state's code, charge (with n) its
 * code; whatever refuses writes nothing.
 */
static void
expect_refused(int rc, int rc_rem, int64_t w, int64_t max,
	       struct tally__swin st, int64_t held, int64_t n)
{
	static const struct tally__swin seven = {7, 7, 7};
	struct tally__swin copy = st, next = seven;
	struct tally__swin_rolled r, r0;
	struct tally__swin_est est, est0;
	int64_t out = 12345;
	int src = state_rc(w, st), crc;

	crc = src == TALLY_EINVAL || n < 0         ? TALLY_EINVAL
	      : src == TALLY_EOVERFLOW || n > AMAX ? TALLY_EOVERFLOW
						   : TALLY_OK;
	memset(&r, 0x5a, sizeof r);
	memset(&est, 0x5a, sizeof est);
	r0 = r;
	est0 = est;
	assert_true(rc < 0);
	assert_int_equal(tally__swin_allow(w, max, &st, 0, held, n), rc);
	assert_int_equal(tally__swin_retry_after(w, max, &st, 0, held, n, &out),
			 rc);
	assert_int_equal(out, 12345);
	{
		struct tally__swin_pass pass, pass0;

		memset(&pass, 0x5a, sizeof pass);
		pass0 = pass;
		assert_int_equal(
			tally__swin_pass_at(w, max, &st, 0, held, n, &pass),
			rc);
		assert_memory_equal(&pass, &pass0, sizeof pass);
	}
	assert_int_equal(tally__swin_remaining(w, max, &st, 0, held, &out),
			 rc_rem);
	if (rc_rem != TALLY_OK)
		assert_int_equal(out, 12345);
	if (src != TALLY_OK) {
		assert_int_equal(tally__swin_roll(w, &st, &next, 0, &r), src);
		assert_int_equal(tally__swin_estimate(w, &st, 0, &est), src);
		assert_memory_equal(&est, &est0, sizeof est);
	}
	if (crc != TALLY_OK) {
		assert_int_equal(tally__swin_charge(w, &st, &next, 0, n, &r),
				 crc);
		assert_memory_equal(&next, &seven, sizeof next);
		assert_memory_equal(&r, &r0, sizeof r);
	}
	assert_memory_equal(&st, &copy, sizeof st);
}

static void
test_ranges(void **state)
{
	static const struct tally__swin seven = {7, 7, 7};
	struct tally__swin ok = swin(0, 1, 1), next = swin(7, 7, 7);
	struct tally__swin_est est;
	int64_t out = 12345;

	(void)state;
	/* w. */
	expect_refused(TALLY_EINVAL, TALLY_EINVAL, 0, 5, ok, 0, 1);
	expect_refused(TALLY_EINVAL, TALLY_EINVAL, -1, 5, ok, 0, 1);
	expect_refused(TALLY_EINVAL, TALLY_EINVAL, INT64_MIN, 5, ok, 0, 1);
	expect_refused(TALLY_EOVERFLOW, TALLY_EOVERFLOW, WMAX + 1, 5, ok, 0, 1);
	expect_refused(TALLY_EOVERFLOW, TALLY_EOVERFLOW, INT64_MAX, 5, ok, 0,
		       1);
	/* Amounts: negative is EINVAL, past 2^62 - 1 EOVERFLOW. */
	expect_refused(TALLY_EINVAL, TALLY_EINVAL, 10, -1, ok, 0, 1);
	expect_refused(TALLY_EINVAL, TALLY_EINVAL, 10, 5, swin(0, -1, 0), 0, 1);
	expect_refused(TALLY_EINVAL, TALLY_EINVAL, 10, 5, swin(0, 0, -1), 0, 1);
	expect_refused(TALLY_EINVAL, TALLY_EINVAL, 10, 5, ok, -1, 1);
	expect_refused(TALLY_EINVAL, TALLY_OK, 10, 5, ok, 0, -1);
	expect_refused(TALLY_EINVAL, TALLY_OK, 10, 5, ok, 0, INT64_MIN);
	expect_refused(TALLY_EOVERFLOW, TALLY_EOVERFLOW, 10, AMAX + 1, ok, 0,
		       1);
	expect_refused(TALLY_EOVERFLOW, TALLY_EOVERFLOW, 10, 5,
		       swin(0, AMAX + 1, 0), 0, 1);
	expect_refused(TALLY_EOVERFLOW, TALLY_EOVERFLOW, 10, 5,
		       swin(0, 0, INT64_MAX), 0, 1);
	expect_refused(TALLY_EOVERFLOW, TALLY_EOVERFLOW, 10, 5, ok, AMAX + 1,
		       1);
	expect_refused(TALLY_EOVERFLOW, TALLY_OK, 10, 5, ok, 0, AMAX + 1);
	expect_refused(TALLY_EOVERFLOW, TALLY_EOVERFLOW, 10, INT64_MAX, ok,
		       INT64_MAX, INT64_MAX);
	/* Both a negative and an oversized argument: EINVAL. */
	expect_refused(TALLY_EINVAL, TALLY_EINVAL, 10, AMAX + 1, ok, -1, 1);
	expect_refused(TALLY_EINVAL, TALLY_EINVAL, WMAX + 1, 5, swin(0, -1, 0),
		       0, 1);
	expect_refused(TALLY_EINVAL, TALLY_EINVAL, 10, 5, swin(0, AMAX + 1, -1),
		       0, 1);
	expect_refused(TALLY_EINVAL, TALLY_EOVERFLOW, 10, 5,
		       swin(0, AMAX + 1, 0), 0, -1);

	/* NULL. */
	assert_int_equal(tally__swin_allow(10, 5, NULL, 0, 0, 0), TALLY_EINVAL);
	assert_int_equal(tally__swin_remaining(10, 5, NULL, 0, 0, &out),
			 TALLY_EINVAL);
	assert_int_equal(tally__swin_remaining(10, 5, &ok, 0, 0, NULL),
			 TALLY_EINVAL);
	assert_int_equal(tally__swin_retry_after(10, 5, &ok, 0, 0, 0, NULL),
			 TALLY_EINVAL);
	assert_int_equal(tally__swin_retry_after(10, 5, NULL, 0, 0, 0, &out),
			 TALLY_EINVAL);
	assert_int_equal(tally__swin_pass_at(10, 5, &ok, 0, 0, 0, NULL),
			 TALLY_EINVAL);
	assert_int_equal(tally__swin_roll(10, NULL, &next, 0, NULL),
			 TALLY_EINVAL);
	assert_int_equal(tally__swin_roll(10, &ok, NULL, 0, NULL),
			 TALLY_EINVAL);
	assert_int_equal(tally__swin_charge(10, &ok, NULL, 0, 1, NULL),
			 TALLY_EINVAL);
	assert_int_equal(tally__swin_charge(10, NULL, &next, 0, 1, NULL),
			 TALLY_EINVAL);
	assert_int_equal(tally__swin_estimate(10, NULL, 0, &est), TALLY_EINVAL);
	assert_int_equal(tally__swin_estimate(10, &ok, 0, NULL), TALLY_EINVAL);
	assert_int_equal(out, 12345);
	assert_memory_equal(&next, &seven, sizeof next);

	/* A charge past the amount range: EOVERFLOW, nothing written; the
	 * largest one that fits passes. */
	{
		struct tally__swin hi = swin(0, AMAX - 3, 9);
		struct tally__swin_rolled r = {0};

		r.closed = 77;
		assert_int_equal(tally__swin_charge(10, &hi, &next, 5, 4, &r),
				 TALLY_EOVERFLOW);
		assert_memory_equal(&next, &seven, sizeof next);
		assert_int_equal(r.closed, 77);
		assert_int_equal(tally__swin_charge(10, &hi, &next, 5, 3, &r),
				 TALLY_OK);
		assert_int_equal(next.cur, AMAX);
		/* After a roll, cur starts again from 0. */
		assert_int_equal(
			tally__swin_charge(10, &hi, &next, 10, AMAX, &r),
			TALLY_OK);
		assert_int_equal(next.cur, AMAX);
		assert_int_equal(next.prev, AMAX - 3);
		assert_int_equal(r.closed, AMAX - 3);
	}
}

/* The edges of the ranges: exact answers, no overflow (UBSan would say). */
static void
test_range_edges(void **state)
{
	struct tally__swin full = swin(0, 0, AMAX), st;
	struct tally__swin_est est;
	int64_t out = -1;

	(void)state;
	/* prev = max = 2^62 - 1, w = 2^62: prev at full weight fits... */
	assert_int_equal(tally__swin_allow(WMAX, AMAX, &full, 0, 0, 0),
			 TALLY_OK);
	/* ...with no room: 1 more unit needs prev * (w - e) <= (P - 1) * w,
	 * e >= w / P = 1 + 1 / P, so e = 2. */
	assert_int_equal(tally__swin_allow(WMAX, AMAX, &full, 0, 0, 1),
			 TALLY_LIMITED);
	assert_int_equal(tally__swin_allow(WMAX, AMAX, &full, 1, 0, 1),
			 TALLY_LIMITED);
	assert_int_equal(tally__swin_allow(WMAX, AMAX, &full, 2, 0, 1),
			 TALLY_OK);
	assert_int_equal(
		tally__swin_retry_after(WMAX, AMAX, &full, 0, 0, 1, &out),
		TALLY_OK);
	assert_int_equal(out, 2);
	assert_int_equal(tally__swin_remaining(WMAX, AMAX, &full, 0, 0, &out),
			 TALLY_OK);
	assert_int_equal(out, 0);
	assert_int_equal(tally__swin_remaining(WMAX, AMAX, &full, 2, 0, &out),
			 TALLY_OK);
	assert_int_equal(out, 1); /* ceil(P * (w - 2) / w) = P - 1 */
	assert_int_equal(
		tally__swin_remaining(WMAX, AMAX, &full, WMAX - 1, 0, &out),
		TALLY_OK);
	assert_int_equal(out, AMAX - 1); /* ceil(P / w) = 1 */
	/* Everything at the top: the left side is 3 * P * w + P * w. */
	st = swin(0, AMAX, AMAX);
	assert_int_equal(tally__swin_allow(WMAX, AMAX, &st, 0, AMAX, AMAX),
			 TALLY_LIMITED);
	assert_int_equal(tally__swin_remaining(WMAX, AMAX, &st, 0, AMAX, &out),
			 TALLY_OK);
	assert_int_equal(out, 0);
	assert_int_equal(
		tally__swin_retry_after(WMAX, AMAX, &st, 0, AMAX, AMAX, &out),
		TALLY_OK);
	assert_int_equal(out, TALLY_RETRY_NEVER);
	assert_int_equal(tally__swin_estimate(WMAX, &st, 0, &est), TALLY_OK);
	assert_int_equal(est.whole, 2 * AMAX); /* 2^63 - 2: fits */
	assert_int_equal(est.frac, 0);
	assert_int_equal(est.ceil, 2 * AMAX);
	assert_int_equal(est.end, WMAX);
	assert_int_equal(tally__swin_estimate(WMAX, &st, 1, &est), TALLY_OK);
	assert_int_equal(est.whole, 2 * AMAX - 1);
	assert_int_equal(est.frac, WMAX - AMAX); /* P * (w - 1) mod w */
	assert_int_equal(est.ceil, 2 * AMAX);
	/* A used-up window whose wait reaches the window after: d = 2w - e,
	 * 2^63 and 2^63 - 1 do not fit below NEVER; 2^63 - 2 does. */
	st = swin(0, 1, 0);
	out = 0;
	assert_int_equal(tally__swin_retry_after(WMAX, 1, &st, 0, 0, 1, &out),
			 TALLY_EOVERFLOW);
	assert_int_equal(tally__swin_retry_after(WMAX, 1, &st, 1, 0, 1, &out),
			 TALLY_EOVERFLOW);
	assert_int_equal(out, 0);
	assert_int_equal(tally__swin_retry_after(WMAX, 1, &st, 2, 0, 1, &out),
			 TALLY_OK);
	assert_int_equal(out, INT64_MAX - 1);
	/* A now far before start: the wait until start counts. */
	st = swin(INT64_MAX - 10, 1, 0);
	assert_int_equal(
		tally__swin_retry_after(5, 1, &st, INT64_MIN, 0, 1, &out),
		TALLY_EOVERFLOW);
	assert_int_equal(
		tally__swin_retry_after(5, 1, &st, INT64_MAX - 16, 0, 1, &out),
		TALLY_OK);
	assert_int_equal(out, 6 + 10); /* start, then to start + 2w */
	assert_int_equal(tally__swin_allow(5, 1, &st, INT64_MAX - 1, 0, 1),
			 TALLY_LIMITED);
	assert_int_equal(tally__swin_allow(5, 1, &st, INT64_MAX, 0, 1),
			 TALLY_OK); /* start + 2w = INT64_MAX */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_estimate_matches_model),
		cmocka_unit_test(test_retry_after_brute_force),
		cmocka_unit_test(test_retry_after_with_expiry),
		cmocka_unit_test(test_retry_after_large),
		cmocka_unit_test(test_admitted_bound),
		cmocka_unit_test(test_admitted_bound_tight),
		cmocka_unit_test(test_no_double_burst),
		cmocka_unit_test(test_missed_windows_collapse),
		cmocka_unit_test(test_ranges),
		cmocka_unit_test(test_range_edges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
