/*
 * Periods: parsing, formatting, validation and the window lattice.
 *
 * Why the lattice is deterministic
 *   A window boundary is a pure function of (period, anchor, utc offset,
 *   calendar_aligned) and an integer k: there is no state, no clock read and
 *   no history. tally__window(t) finds the k whose boundary is the latest one
 *   at or before t, so two processes that share a config row agree on every
 *   boundary without talking to each other, and a record that slept through a
 *   thousand windows lands on the same boundary as one that rolled each time.
 *   Nothing here consults the system's time zone database: "local" time is
 *   UTC plus a fixed offset, and the calendar is the proleptic Gregorian one,
 *   computed by the civil-date arithmetic below (no libc time functions, so no
 *   locks, no global state, no surprises from TZ).
 *
 * Fixed lengths and weeks
 *   Boundaries are origin + k * P for every integer k, P the period in
 *   nanoseconds. Rolling lattices use the anchor as origin. Aligned ones use
 *   local midnight of 1970-01-01 (FIXED: "1d" is every local midnight, "1h"
 *   every top of the local hour, "2d" every other midnight counted from the
 *   epoch) or local Monday 1970-01-05 00:00 (WEEK).
 *
 * Months
 *   A calendar lattice is counted in whole months. Rolling: boundary k is the
 *   anchor's local date moved by k * count months, its day of month clamped to
 *   the last day of the target month, its time of day kept. Each boundary is
 *   computed from the anchor itself, never from the previous boundary, so a
 *   clamp does not stick: Jan 31 gives Feb 28 (29), Mar 31, Apr 30, and a
 *   Feb 29 anchor returns to Feb 29 in every leap year it reaches. Different
 *   k land in different months, so boundaries strictly increase with k and
 *   the latest one at or before t is found by one floor division on month
 *   indexes plus at most one step back. Aligned: boundaries are local 1st of
 *   the month, 00:00, whose month index since January 1970 is a multiple of
 *   count (floor division, so it works before 1970 too).
 *
 * Saturation
 *   All intermediate values are computed in __int128, which holds every
 *   quantity that appears here (t, anchor, offset, k * P, and month
 *   boundaries up to 20000 years away) without overflow. Only the final start
 *   and end are clamped to int64: a start that would lie below INT64_MIN
 *   becomes INT64_MIN, an end above INT64_MAX becomes INT64_MAX. So no input,
 *   however extreme, can overflow a signed integer here.
 */
#include "period.h"

#include <assert.h>
#include <string.h>

__extension__ typedef __int128 i128;

#define NS_PER_US INT64_C(1000)
#define NS_PER_MS INT64_C(1000000)
#define NS_PER_S INT64_C(1000000000)
#define NS_PER_MIN INT64_C(60000000000)
#define NS_PER_HOUR INT64_C(3600000000000)
#define NS_PER_DAY INT64_C(86400000000000)
#define NS_PER_WEEK INT64_C(604800000000000)

/* 1970-01-05, the first Monday on or after the epoch, in days. */
#define FIRST_MONDAY_DAYS 4

/* Days from 0000-03-01 to 1970-01-01 in the proleptic Gregorian calendar. */
#define DAYS_0000_03_TO_EPOCH INT64_C(719468)

/* ------------------------------------------------------------------------ */
/* Validation                                                               */
/* ------------------------------------------------------------------------ */

int
tally__period_validate(const tally_period *p, bool allow_none)
{
	if (!p)
		return TALLY_EPERIOD;
	switch (p->unit) {
	case TALLY_PERIOD_NONE:
		return allow_none && p->count == 0 ? TALLY_OK : TALLY_EPERIOD;
	case TALLY_PERIOD_FIXED:
		return p->count >= 1 ? TALLY_OK : TALLY_EPERIOD;
	case TALLY_PERIOD_WEEK:
		return p->count >= 1 && p->count <= TALLY__WEEK_COUNT_MAX
			       ? TALLY_OK
			       : TALLY_EPERIOD;
	case TALLY_PERIOD_MONTH:
		return p->count >= 1 && p->count <= TALLY__MONTH_COUNT_MAX
			       ? TALLY_OK
			       : TALLY_EPERIOD;
	default:
		return TALLY_EPERIOD;
	}
}

/* ------------------------------------------------------------------------ */
/* Parsing                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * One unit of the text form. rank orders the fixed units for compounds
 * (strictly decreasing, each at most once); calendar units have rank -1 and
 * carry a month factor instead of a length.
 */
struct unit {
	int rank;
	int64_t ns;     /* fixed units */
	int64_t months; /* calendar units */
};

/* Reads the unit at *s, advancing *s past it. False if there is none. */
static bool
parse_unit(const char **s, struct unit *u)
{
	const char *p = *s;
	size_t len = 1;

	switch (p[0]) {
	case 'n':
	case 'u':
		if (p[1] != 's')
			return false;
		*u = (struct unit){p[0] == 'n' ? 0 : 1,
				   p[0] == 'n' ? 1 : NS_PER_US, 0};
		len = 2;
		break;
	case 'm':
		if (p[1] == 's') {
			*u = (struct unit){2, NS_PER_MS, 0};
			len = 2;
		} else {
			*u = (struct unit){4, NS_PER_MIN, 0};
		}
		break;
	case 's':
		*u = (struct unit){3, NS_PER_S, 0};
		break;
	case 'h':
		*u = (struct unit){5, NS_PER_HOUR, 0};
		break;
	case 'd':
		*u = (struct unit){6, NS_PER_DAY, 0};
		break;
	case 'w':
		*u = (struct unit){7, NS_PER_WEEK, 0};
		break;
	case 'M':
		*u = (struct unit){-1, 0, 1};
		break;
	case 'Q':
		*u = (struct unit){-1, 0, 3};
		break;
	case 'Y':
		*u = (struct unit){-1, 0, 12};
		break;
	default:
		return false;
	}
	*s = p + len;
	return true;
}

int
tally_period_parse(const char *text, tally_period *out)
{
	const char *s = text;
	tally_period p;
	int64_t total = 0;
	int64_t first_n = 0;
	int prev_rank = 8; /* above every fixed unit */
	int terms = 0;
	bool lone_week = false;

	if (!text || !out)
		return TALLY_EINVAL;
	if (text[0] == '\0' || strcmp(text, "none") == 0) {
		*out = (tally_period)TALLY_PERIOD_NONE_INIT;
		return TALLY_OK;
	}

	while (*s != '\0') {
		struct unit u;
		int64_t n = 0;

		if (*s < '0' || *s > '9')
			return TALLY_EPERIOD;
		for (; *s >= '0' && *s <= '9'; s++) {
			int64_t digit = *s - '0';

			if (n > (INT64_MAX - digit) / 10)
				return TALLY_EPERIOD;
			n = n * 10 + digit;
		}
		if (!parse_unit(&s, &u))
			return TALLY_EPERIOD;

		if (u.rank < 0) {
			/* Calendar units stand alone. */
			if (terms != 0 || *s != '\0')
				return TALLY_EPERIOD;
			if (n > TALLY__MONTH_COUNT_MAX / u.months)
				return TALLY_EPERIOD;
			p.count = n * u.months;
			p.unit = TALLY_PERIOD_MONTH;
			goto done;
		}

		/* Zero terms are fine ("1h0m"); only the total must be > 0. */
		if (u.rank >= prev_rank)
			return TALLY_EPERIOD;
		if (n > INT64_MAX / u.ns)
			return TALLY_EPERIOD;
		if (total > INT64_MAX - n * u.ns)
			return TALLY_EPERIOD;
		total += n * u.ns;
		if (terms == 0) {
			first_n = n;
			lone_week = u.rank == 7;
		}
		prev_rank = u.rank;
		terms++;
	}

	if (terms == 1 && lone_week) {
		p.count = first_n;
		p.unit = TALLY_PERIOD_WEEK;
	} else {
		p.count = total;
		p.unit = TALLY_PERIOD_FIXED;
	}
done:
	/* Rejects zero totals and counts beyond the unit's range. */
	if (tally__period_validate(&p, false) != TALLY_OK)
		return TALLY_EPERIOD;
	*out = p;
	return TALLY_OK;
}

/* ------------------------------------------------------------------------ */
/* Formatting                                                               */
/* ------------------------------------------------------------------------ */

/* Appends the decimal form of n (>= 0) and then unit to buf at *len. */
static void
append_term(char *buf, size_t *len, int64_t n, const char *unit)
{
	char digits[24];
	size_t nd = 0;

	do {
		digits[nd++] = (char)('0' + n % 10);
		n /= 10;
	} while (n > 0);
	while (nd > 0)
		buf[(*len)++] = digits[--nd];
	while (*unit != '\0')
		buf[(*len)++] = *unit++;
}

int
tally_period_format(const tally_period *period, char *buf, size_t size)
{
	static const struct {
		int64_t ns;
		const char *name;
	} fixed[] = {
		{NS_PER_DAY, "d"}, {NS_PER_HOUR, "h"}, {NS_PER_MIN, "m"},
		{NS_PER_S, "s"},   {NS_PER_MS, "ms"},  {NS_PER_US, "us"},
		{1, "ns"},
	};
	/* The longest text, INT64_MAX ns, is "106751d23h47m16s854ms775us807ns"
	 * (31 bytes), well below TALLY_PERIOD_FORMAT_MAX. */
	char text[TALLY_PERIOD_FORMAT_MAX];
	size_t len = 0;

	if (!period || (!buf && size > 0))
		return TALLY_EINVAL;
	if (tally__period_validate(period, true) != TALLY_OK)
		return TALLY_EPERIOD;

	switch (period->unit) {
	case TALLY_PERIOD_NONE:
		memcpy(text, "none", 4);
		len = 4;
		break;
	case TALLY_PERIOD_WEEK:
		append_term(text, &len, period->count, "w");
		break;
	case TALLY_PERIOD_MONTH:
		if (period->count % 12 == 0)
			append_term(text, &len, period->count / 12, "Y");
		else
			append_term(text, &len, period->count, "M");
		break;
	default: { /* TALLY_PERIOD_FIXED */
		int64_t rest = period->count;

		for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
			if (rest >= fixed[i].ns) {
				append_term(text, &len, rest / fixed[i].ns,
					    fixed[i].name);
				rest %= fixed[i].ns;
			}
		}
		break;
	}
	}
	text[len] = '\0';

	if (size > 0) {
		size_t n = len < size - 1 ? len : size - 1;

		memcpy(buf, text, n);
		buf[n] = '\0';
	}
	return (int)len;
}

/* ------------------------------------------------------------------------ */
/* Civil dates                                                              */
/* ------------------------------------------------------------------------ */

/* Division rounding toward negative infinity; b > 0. */
static int64_t
floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	return a % b < 0 ? q - 1 : q;
}

static i128
floor_div128(i128 a, i128 b)
{
	i128 q = a / b;

	return a % b < 0 ? q - 1 : q;
}

static int64_t
saturate(i128 v)
{
	if (v < INT64_MIN)
		return INT64_MIN;
	if (v > INT64_MAX)
		return INT64_MAX;
	return (int64_t)v;
}

/*
 * Days from 0000-03-01 to March 1st of "March year" y, i.e. the year whose
 * leap day (if any) is its last day. Valid for any y whose result fits, far
 * beyond the +-20000 years used here.
 */
static int64_t
march_year_start(int64_t y)
{
	return 365 * y + floor_div(y, 4) - floor_div(y, 100) +
	       floor_div(y, 400);
}

/* Days since 1970-01-01 of year y, month m (1..12), day d (1..31). */
static int64_t
days_from_civil(int64_t y, int64_t m, int64_t d)
{
	/* Months from March: Mar = 0 ... Jan = 10, Feb = 11 (previous year). */
	int64_t mar = m >= 3 ? m - 3 : m + 9;
	int64_t my = m >= 3 ? y : y - 1;

	/* (153 * mar + 2) / 5 counts the days in the months March..before
	 * mar, whose lengths repeat 31 30 31 30 31 in blocks of five. */
	return march_year_start(my) + (153 * mar + 2) / 5 + d - 1 -
	       DAYS_0000_03_TO_EPOCH;
}

/* The inverse: year, month (1..12) and day (1..31) of a day number. The
 * year estimate may be off by one; the two loops correct it. */
static void
civil_from_days(int64_t days, int64_t *y, int64_t *m, int64_t *d)
{
	int64_t z = days + DAYS_0000_03_TO_EPOCH;
	/* 146097 days make 400 years. */
	int64_t my = floor_div(z * 400, 146097);
	int64_t doy, mar;

	while (march_year_start(my) > z)
		my--;
	while (march_year_start(my + 1) <= z)
		my++;
	doy = z - march_year_start(my); /* 0..365 */
	mar = (5 * doy + 2) / 153;      /* inverse of (153 * mar + 2) / 5 */
	*d = doy - (153 * mar + 2) / 5 + 1;
	*m = mar < 10 ? mar + 3 : mar - 9;
	*y = mar < 10 ? my : my + 1;
}

/* Months since January 1970 of year y, month m (1..12). */
static int64_t
month_index(int64_t y, int64_t m)
{
	return (y - 1970) * 12 + (m - 1);
}

static int64_t
first_day_of_month(int64_t mi)
{
	int64_t y = 1970 + floor_div(mi, 12);
	int64_t m = mi - floor_div(mi, 12) * 12 + 1;

	return days_from_civil(y, m, 1);
}

static int64_t
days_in_month(int64_t mi)
{
	return first_day_of_month(mi + 1) - first_day_of_month(mi);
}

/* A local time split into month index, day of month and time of day. */
struct civil {
	int64_t mi;  /* months since January 1970 */
	int64_t day; /* 1..31 */
	i128 tod;    /* ns since local midnight, 0 <= tod < NS_PER_DAY */
};

static struct civil
split_local(i128 local)
{
	i128 days = floor_div128(local, NS_PER_DAY);
	struct civil c;
	int64_t y, m;

	/* |days| < 2^40 for any int64 t and any int32 offset. */
	civil_from_days((int64_t)days, &y, &m, &c.day);
	c.mi = month_index(y, m);
	c.tod = local - days * NS_PER_DAY;
	return c;
}

/* Local time of the rolling month boundary in month mi for anchor a. */
static i128
month_boundary(const struct civil *a, int64_t mi)
{
	int64_t dim = days_in_month(mi);
	int64_t day = a->day < dim ? a->day : dim;

	return (i128)(first_day_of_month(mi) + day - 1) * NS_PER_DAY + a->tod;
}

/* ------------------------------------------------------------------------ */
/* The lattice                                                              */
/* ------------------------------------------------------------------------ */

/* Boundaries origin + k * period (period > 0), in UTC. */
static void
window_fixed(i128 origin, i128 period, int64_t t, int64_t *start, int64_t *end)
{
	i128 k = floor_div128((i128)t - origin, period);
	i128 s = origin + k * period;

	*start = saturate(s);
	*end = saturate(s + period);
}

static void
window_month_rolling(const tally__lattice *l, i128 off, int64_t t,
		     int64_t *start, int64_t *end)
{
	i128 local = (i128)t + off;
	struct civil a = split_local((i128)l->anchor + off);
	struct civil c = split_local(local);
	/* The latest boundary month not after t's month; month indexes of t
	 * and the anchor differ by less than 2^20, so this cannot overflow. */
	int64_t mi = a.mi + floor_div(c.mi - a.mi, l->count) * l->count;
	i128 b = month_boundary(&a, mi);
	i128 s, e;

	if (b <= local) {
		s = b;
		e = month_boundary(&a, mi + l->count);
	} else {
		/* Same month as t, but later in it. */
		s = month_boundary(&a, mi - l->count);
		e = b;
	}
	*start = saturate(s - off);
	*end = saturate(e - off);
}

static void
window_month_aligned(const tally__lattice *l, i128 off, int64_t t,
		     int64_t *start, int64_t *end)
{
	struct civil c = split_local((i128)t + off);
	int64_t mi = floor_div(c.mi, l->count) * l->count;
	i128 s = (i128)first_day_of_month(mi) * NS_PER_DAY;
	i128 e = (i128)first_day_of_month(mi + l->count) * NS_PER_DAY;

	*start = saturate(s - off);
	*end = saturate(e - off);
}

void
tally__window(const tally__lattice *l, int64_t t, int64_t *start, int64_t *end)
{
	tally_period p = {l->count, l->unit};
	/* In 128 bits, so even an out-of-range offset cannot overflow. */
	i128 off = (i128)l->offset_min * NS_PER_MIN;

	bool valid = tally__period_validate(&p, true) == TALLY_OK;

	/* A broken precondition: debug builds stop, release builds never roll
	 * rather than divide by zero. */
	assert(valid);
	if (!valid)
		p.unit = TALLY_PERIOD_NONE;

	switch (p.unit) {
	case TALLY_PERIOD_FIXED:
		if (l->aligned)
			window_fixed(-off, p.count, t, start, end);
		else
			window_fixed(l->anchor, p.count, t, start, end);
		break;
	case TALLY_PERIOD_WEEK:
		if (l->aligned)
			window_fixed((i128)FIRST_MONDAY_DAYS * NS_PER_DAY - off,
				     (i128)p.count * NS_PER_WEEK, t, start,
				     end);
		else
			window_fixed(l->anchor, (i128)p.count * NS_PER_WEEK, t,
				     start, end);
		break;
	case TALLY_PERIOD_MONTH:
		if (l->aligned)
			window_month_aligned(l, off, t, start, end);
		else
			window_month_rolling(l, off, t, start, end);
		break;
	default: /* TALLY_PERIOD_NONE */
		*start = l->anchor;
		*end = INT64_MAX;
		break;
	}
}
