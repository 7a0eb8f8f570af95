/*
 * Unit tests of periods: parse, format, validate and the window lattice.
 *
 * Expected instants are written as epoch-second constants computed outside
 * this code (each carries its date in a comment), never with the library's
 * own calendar arithmetic, so a wrong conversion fails here. The brute-force
 * tests compare against a slow reference: a table of month starts built by
 * walking the calendar one month at a time, and lattices walked one boundary
 * at a time from a known one.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "period.h"

__extension__ typedef __int128 i128;

#define US INT64_C(1000)
#define MS INT64_C(1000000)
#define SEC INT64_C(1000000000)
#define MIN INT64_C(60000000000)
#define HOUR INT64_C(3600000000000)
#define DAY INT64_C(86400000000000)
#define WEEK INT64_C(604800000000000)

/* Epoch seconds to nanoseconds. */
#define T(s) ((int64_t)(s)*SEC)

/* Dates used below, as epoch seconds (UTC midnight). */
#define D_1900_02_01 INT64_C(-2206310400)
#define D_1900_03_01 INT64_C(-2203891200)
#define D_1959_07_01 INT64_C(-331516800)
#define D_1960_01_01 INT64_C(-315619200)
#define D_1960_02_01 INT64_C(-312940800)
#define D_1969_02_28 INT64_C(-26524800)
#define D_1969_03_31 INT64_C(-23846400)
#define D_1969_08_01 INT64_C(-13219200)
#define D_1969_10_01 INT64_C(-7948800)
#define D_1969_12_01 INT64_C(-2678400)
#define D_1969_12_31 INT64_C(-86400)
#define D_1970_01_05 INT64_C(345600) /* Monday */
#define D_2000_02_01 INT64_C(949363200)
#define D_2000_02_29 INT64_C(951782400)
#define D_2000_03_01 INT64_C(951868800)
#define D_2024_01_01 INT64_C(1704067200)
#define D_2024_01_31 INT64_C(1706659200) /* Wednesday */
#define D_2024_02_01 INT64_C(1706745600)
#define D_2024_02_29 INT64_C(1709164800) /* Thursday */
#define D_2024_03_01 INT64_C(1709251200)
#define D_2024_04_01 INT64_C(1711929600)
#define D_2024_07_01 INT64_C(1719792000)
#define D_2024_12_31 INT64_C(1735603200)
#define D_2025_01_01 INT64_C(1735689600)
#define D_2025_12_01 INT64_C(1764547200)
#define D_2025_12_31 INT64_C(1767139200)
#define D_2026_01_01 INT64_C(1767225600)
#define D_2026_11_23 INT64_C(1795392000) /* Monday */
#define D_2026_11_30 INT64_C(1795996800) /* Monday */
#define D_2026_12_07 INT64_C(1796601600) /* Monday */
#define D_2031_06_30 INT64_C(1940544000)
#define D_2031_07_31 INT64_C(1943222400)
#define D_2100_01_31 INT64_C(4105036800)
#define D_2100_02_01 INT64_C(4105123200)
#define D_2100_02_28 INT64_C(4107456000)
#define D_2100_03_01 INT64_C(4107542400)
#define D_2200_02_28 INT64_C(7263129600)

static tally__lattice
lat(int64_t count, int32_t unit, int32_t offset_min, bool aligned,
    int64_t anchor)
{
	tally__lattice l = {count, unit, offset_min, aligned, anchor};

	return l;
}

#define check_window(l, t, s, e) check_window_at(__LINE__, (l), (t), (s), (e))

static void
check_window_at(int line, tally__lattice l, int64_t t, int64_t want_start,
		int64_t want_end)
{
	int64_t start = 0, end = 0;

	tally__window(&l, t, &start, &end);
	if (start != want_start || end != want_end) {
		print_error("line %d: count %" PRId64 " unit %d off %d "
			    "aligned %d anchor %" PRId64 " t %" PRId64
			    ": got [%" PRId64 ", %" PRId64 ") want [%" PRId64
			    ", %" PRId64 ")\n",
			    line, l.count, (int)l.unit, (int)l.offset_min,
			    (int)l.aligned, l.anchor, t, start, end, want_start,
			    want_end);
		_fail(__FILE__, line);
	}
}

/* Deterministic generator (splitmix64). */
static uint64_t rng_state = UINT64_C(0x9e3779b97f4a7c15);

static uint64_t
rng(void)
{
	uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Uniform-ish in [lo, hi], lo <= hi, the range not wider than 2^63. */
static int64_t
rng_range(int64_t lo, int64_t hi)
{
	uint64_t span = (uint64_t)hi - (uint64_t)lo + 1;

	return (int64_t)((uint64_t)lo + (span ? rng() % span : rng()));
}

static int64_t
rng_any(void)
{
	return (int64_t)rng();
}

/* ------------------------------------------------------------------------ */
/* Parsing                                                                  */
/* ------------------------------------------------------------------------ */

static void
test_parse_valid(void **state)
{
	static const struct {
		const char *text;
		int64_t count;
		int32_t unit;
	} cases[] = {
		{"", 0, TALLY_PERIOD_NONE},
		{"none", 0, TALLY_PERIOD_NONE},
		{"1ns", 1, TALLY_PERIOD_FIXED},
		{"10ns", 10, TALLY_PERIOD_FIXED},
		{"1us", 1000, TALLY_PERIOD_FIXED},
		{"250us", 250000, TALLY_PERIOD_FIXED},
		{"500ms", 500000000, TALLY_PERIOD_FIXED},
		{"1s", 1000000000, TALLY_PERIOD_FIXED},
		{"30s", 30 * SEC, TALLY_PERIOD_FIXED},
		{"5m", 5 * MIN, TALLY_PERIOD_FIXED},
		{"60m", HOUR, TALLY_PERIOD_FIXED},
		{"1h", HOUR, TALLY_PERIOD_FIXED},
		{"01h", HOUR, TALLY_PERIOD_FIXED},
		{"007s", 7 * SEC, TALLY_PERIOD_FIXED},
		{"1d", DAY, TALLY_PERIOD_FIXED},
		{"7d", 7 * DAY, TALLY_PERIOD_FIXED},
		{"1h30m", HOUR + 30 * MIN, TALLY_PERIOD_FIXED},
		{"1d12h", DAY + 12 * HOUR, TALLY_PERIOD_FIXED},
		{"2m30s500ms", 2 * MIN + 30 * SEC + 500 * MS,
		 TALLY_PERIOD_FIXED},
		{"1s5ns", SEC + 5, TALLY_PERIOD_FIXED},
		{"1h0m", HOUR, TALLY_PERIOD_FIXED},
		{"0h1m", MIN, TALLY_PERIOD_FIXED},
		{"1d2h3m4s5ms6us7ns",
		 DAY + 2 * HOUR + 3 * MIN + 4 * SEC + 5 * MS + 6 * US + 7,
		 TALLY_PERIOD_FIXED},
		{"1w", 1, TALLY_PERIOD_WEEK},
		{"2w", 2, TALLY_PERIOD_WEEK},
		{"02w", 2, TALLY_PERIOD_WEEK},
		{"15250w", 15250, TALLY_PERIOD_WEEK},
		{"15250w1ns", 15250 * WEEK + 1, TALLY_PERIOD_FIXED},
		{"15250w1d", 15250 * WEEK + DAY, TALLY_PERIOD_FIXED},
		{"1w1d", 8 * DAY, TALLY_PERIOD_FIXED},
		{"1w0d", 7 * DAY, TALLY_PERIOD_FIXED},
		{"2w3h", 14 * DAY + 3 * HOUR, TALLY_PERIOD_FIXED},
		{"1M", 1, TALLY_PERIOD_MONTH},
		{"3M", 3, TALLY_PERIOD_MONTH},
		{"12M", 12, TALLY_PERIOD_MONTH},
		{"1Q", 3, TALLY_PERIOD_MONTH},
		{"2Q", 6, TALLY_PERIOD_MONTH},
		{"1Y", 12, TALLY_PERIOD_MONTH},
		{"2Y", 24, TALLY_PERIOD_MONTH},
		{"120000M", 120000, TALLY_PERIOD_MONTH},
		{"40000Q", 120000, TALLY_PERIOD_MONTH},
		{"10000Y", 120000, TALLY_PERIOD_MONTH},
		{"9223372036854775807ns", INT64_MAX, TALLY_PERIOD_FIXED},
		{"0009223372036854775807ns", INT64_MAX, TALLY_PERIOD_FIXED},
		{"106751d23h47m16s854ms775us807ns", INT64_MAX,
		 TALLY_PERIOD_FIXED},
		{"9223372036s854ms775us807ns", INT64_MAX, TALLY_PERIOD_FIXED},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tally_period p = {-7, -7};
		int rc = tally_period_parse(cases[i].text, &p);

		if (rc != TALLY_OK || p.count != cases[i].count ||
		    p.unit != cases[i].unit)
			fail_msg("\"%s\": rc %d count %" PRId64 " unit %d",
				 cases[i].text, rc, p.count, (int)p.unit);
		assert_int_equal(tally__period_validate(&p, true), TALLY_OK);
	}
}

static void
test_parse_invalid(void **state)
{
	static const char *const cases[] = {
		"0s",
		"0h0m",
		"0ns",
		"0w",
		"0M",
		"0Q",
		"0Y",
		"0d0h0m0s0ms0us0ns",
		"-1h",
		" 1h",
		"1h ",
		"+1h",
		"1 h",
		"1\th",
		"1h\n",
		"1x",
		"h",
		"1",
		"12",
		"1hh",
		"1h1h",
		"30m1h",
		"1ms1s",
		"1s1ms1s",
		"1d1w",
		"1w1w",
		"2w1w",
		"1Y6M",
		"1h1M",
		"1M1d",
		"1M1M",
		"1Q1M",
		"1Y1Y",
		"1MQ",
		"1M ",
		"M",
		"1N",
		"1S",
		"1H",
		"1D",
		"1W",
		"1y",
		"1q",
		"1m1",
		"1s1",
		"1ns1",
		"1n",
		"1u",
		"1mss",
		"1hm",
		"m",
		"ms",
		"ns",
		"NONE",
		"None",
		"none ",
		" none",
		"nonE",
		"1.5h",
		"1,5h",
		"1e3s",
		"1_000s",
		"0x10s",
		"1\xc2\xb5s",
		"99999999999999999999Y",
		"99999999999999999999ns",
		"9223372036854775808ns",
		"18446744073709551616ns",
		"106751d23h47m16s854ms775us808ns",
		"9223372036s854ms775us808ns",
		"9223372036854775807s",
		"106752d",
		"15251w",
		"15250w2d",
		"120001M",
		"40001Q",
		"10001Y",
		"9223372036854775807M",
		"3074457345618258603Q",
		"768614336404564651Y",
		"1h\x01",
		"1h\xff",
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tally_period p = {-7, -7};
		int rc = tally_period_parse(cases[i], &p);

		if (rc != TALLY_EPERIOD)
			fail_msg("\"%s\": rc %d, want EPERIOD", cases[i], rc);
		/* *out is written only on success. */
		assert_int_equal(p.count, -7);
		assert_int_equal(p.unit, -7);
	}

	tally_period p = {-7, -7};

	assert_int_equal(tally_period_parse(NULL, &p), TALLY_EINVAL);
	assert_int_equal(tally_period_parse("1h", NULL), TALLY_EINVAL);
	assert_int_equal(tally_period_parse(NULL, NULL), TALLY_EINVAL);
	assert_int_equal(p.count, -7);
}

/* Random valid compounds: units in decreasing order, each at most once. */
static void
test_parse_generated_compounds(void **state)
{
	static const struct {
		const char *name;
		int64_t ns;
	} units[] = {
		{"w", WEEK}, {"d", DAY}, {"h", HOUR}, {"m", MIN},
		{"s", SEC},  {"ms", MS}, {"us", US},  {"ns", 1},
	};
	(void)state;

	for (int iter = 0; iter < 20000; iter++) {
		char text[256];
		size_t len = 0;
		i128 total = 0;
		int terms = 0;
		bool week_only = false;
		int64_t last_n = 0;

		for (size_t u = 0; u < 8; u++) {
			int64_t n;

			if (rng() % 3 != 0)
				continue;
			switch (rng() % 4) {
			case 0:
				n = 0;
				break;
			case 1:
				n = rng_range(1, 9);
				break;
			case 2:
				n = rng_range(10, 99999);
				break;
			default:
				n = rng_range(0, INT64_MAX / units[u].ns);
				break;
			}
			len += (size_t)snprintf(text + len, sizeof(text) - len,
						"%" PRId64 "%s", n,
						units[u].name);
			total += (i128)n * units[u].ns;
			week_only = terms == 0 && u == 0;
			last_n = n;
			terms++;
		}
		if (terms == 0)
			continue;

		tally_period p = {-7, -7};
		int rc = tally_period_parse(text, &p);

		if (total == 0 || total > INT64_MAX) {
			if (rc != TALLY_EPERIOD)
				fail_msg("\"%s\": rc %d, want EPERIOD", text,
					 rc);
		} else if (terms == 1 && week_only) {
			if (rc != TALLY_OK || p.unit != TALLY_PERIOD_WEEK ||
			    p.count != last_n)
				fail_msg("\"%s\": rc %d", text, rc);
		} else {
			if (rc != TALLY_OK || p.unit != TALLY_PERIOD_FIXED ||
			    p.count != (int64_t)total)
				fail_msg("\"%s\": rc %d count %" PRId64, text,
					 rc, p.count);
		}
	}
}

/* Random strings: whatever parses must validate and round trip. */
static void
test_parse_fuzz(void **state)
{
	static const char alphabet[] = "0123456789nsumhdwMQY -+.";
	(void)state;

	for (int iter = 0; iter < 200000; iter++) {
		char text[12];
		size_t len = (size_t)rng_range(1, 10);

		for (size_t i = 0; i < len; i++)
			text[i] = alphabet[rng() % (sizeof(alphabet) - 1)];
		text[len] = '\0';

		tally_period p = {-7, -7}, q = {-7, -7};
		char buf[TALLY_PERIOD_FORMAT_MAX];
		int rc = tally_period_parse(text, &p);

		if (rc == TALLY_EPERIOD) {
			assert_int_equal(p.count, -7);
			continue;
		}
		if (rc != TALLY_OK)
			fail_msg("\"%s\": rc %d", text, rc);
		assert_int_equal(tally__period_validate(&p, true), TALLY_OK);
		assert_true(tally_period_format(&p, buf, sizeof(buf)) > 0);
		assert_int_equal(tally_period_parse(buf, &q), TALLY_OK);
		assert_int_equal(q.count, p.count);
		assert_int_equal(q.unit, p.unit);
	}
}

/* ------------------------------------------------------------------------ */
/* Validation and formatting                                                */
/* ------------------------------------------------------------------------ */

static void
test_validate(void **state)
{
	static const struct {
		int64_t count;
		int32_t unit;
		int with_none;    /* expected with allow_none */
		int without_none; /* expected without */
	} cases[] = {
		{0, TALLY_PERIOD_NONE, TALLY_OK, TALLY_EPERIOD},
		{1, TALLY_PERIOD_NONE, TALLY_EPERIOD, TALLY_EPERIOD},
		{-1, TALLY_PERIOD_NONE, TALLY_EPERIOD, TALLY_EPERIOD},
		{1, TALLY_PERIOD_FIXED, TALLY_OK, TALLY_OK},
		{INT64_MAX, TALLY_PERIOD_FIXED, TALLY_OK, TALLY_OK},
		{0, TALLY_PERIOD_FIXED, TALLY_EPERIOD, TALLY_EPERIOD},
		{-1, TALLY_PERIOD_FIXED, TALLY_EPERIOD, TALLY_EPERIOD},
		{INT64_MIN, TALLY_PERIOD_FIXED, TALLY_EPERIOD, TALLY_EPERIOD},
		{1, TALLY_PERIOD_WEEK, TALLY_OK, TALLY_OK},
		{15250, TALLY_PERIOD_WEEK, TALLY_OK, TALLY_OK},
		{15251, TALLY_PERIOD_WEEK, TALLY_EPERIOD, TALLY_EPERIOD},
		{0, TALLY_PERIOD_WEEK, TALLY_EPERIOD, TALLY_EPERIOD},
		{-5, TALLY_PERIOD_WEEK, TALLY_EPERIOD, TALLY_EPERIOD},
		{INT64_MAX, TALLY_PERIOD_WEEK, TALLY_EPERIOD, TALLY_EPERIOD},
		{1, TALLY_PERIOD_MONTH, TALLY_OK, TALLY_OK},
		{120000, TALLY_PERIOD_MONTH, TALLY_OK, TALLY_OK},
		{120001, TALLY_PERIOD_MONTH, TALLY_EPERIOD, TALLY_EPERIOD},
		{0, TALLY_PERIOD_MONTH, TALLY_EPERIOD, TALLY_EPERIOD},
		{-12, TALLY_PERIOD_MONTH, TALLY_EPERIOD, TALLY_EPERIOD},
		{1, 4, TALLY_EPERIOD, TALLY_EPERIOD},
		{0, 4, TALLY_EPERIOD, TALLY_EPERIOD},
		{1, -1, TALLY_EPERIOD, TALLY_EPERIOD},
		{1, INT32_MAX, TALLY_EPERIOD, TALLY_EPERIOD},
		{0, INT32_MIN, TALLY_EPERIOD, TALLY_EPERIOD},
	};
	(void)state;

	/* 15250 weeks fit in int64 nanoseconds; 15251 do not. */
	assert_int_equal(TALLY__WEEK_COUNT_MAX, 15250);
	assert_true((i128)15251 * WEEK > INT64_MAX);
	assert_true((i128)15250 * WEEK <= INT64_MAX);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tally_period p = {cases[i].count, cases[i].unit};

		if (tally__period_validate(&p, true) != cases[i].with_none ||
		    tally__period_validate(&p, false) != cases[i].without_none)
			fail_msg("case %zu: count %" PRId64 " unit %d", i,
				 p.count, (int)p.unit);
	}
	assert_int_equal(tally__period_validate(NULL, true), TALLY_EPERIOD);
}

static void
test_format(void **state)
{
	static const struct {
		int64_t count;
		int32_t unit;
		const char *text;
	} cases[] = {
		{0, TALLY_PERIOD_NONE, "none"},
		{1, TALLY_PERIOD_FIXED, "1ns"},
		{10, TALLY_PERIOD_FIXED, "10ns"},
		{1000, TALLY_PERIOD_FIXED, "1us"},
		{1500, TALLY_PERIOD_FIXED, "1us500ns"},
		{250 * US, TALLY_PERIOD_FIXED, "250us"},
		{500 * MS, TALLY_PERIOD_FIXED, "500ms"},
		{SEC, TALLY_PERIOD_FIXED, "1s"},
		{SEC + 5, TALLY_PERIOD_FIXED, "1s5ns"},
		{30 * SEC, TALLY_PERIOD_FIXED, "30s"},
		{60 * SEC, TALLY_PERIOD_FIXED, "1m"},
		{5 * MIN, TALLY_PERIOD_FIXED, "5m"},
		{90 * MIN, TALLY_PERIOD_FIXED, "1h30m"},
		{2 * MIN + 30 * SEC + 500 * MS, TALLY_PERIOD_FIXED,
		 "2m30s500ms"},
		{HOUR, TALLY_PERIOD_FIXED, "1h"},
		{DAY, TALLY_PERIOD_FIXED, "1d"},
		{DAY + 12 * HOUR, TALLY_PERIOD_FIXED, "1d12h"},
		{7 * DAY, TALLY_PERIOD_FIXED, "7d"},
		{8 * DAY, TALLY_PERIOD_FIXED, "8d"},
		{DAY + 1, TALLY_PERIOD_FIXED, "1d1ns"},
		{INT64_MAX, TALLY_PERIOD_FIXED,
		 "106751d23h47m16s854ms775us807ns"},
		{1, TALLY_PERIOD_WEEK, "1w"},
		{2, TALLY_PERIOD_WEEK, "2w"},
		{15250, TALLY_PERIOD_WEEK, "15250w"},
		{1, TALLY_PERIOD_MONTH, "1M"},
		{3, TALLY_PERIOD_MONTH, "3M"},
		{6, TALLY_PERIOD_MONTH, "6M"},
		{11, TALLY_PERIOD_MONTH, "11M"},
		{12, TALLY_PERIOD_MONTH, "1Y"},
		{18, TALLY_PERIOD_MONTH, "18M"},
		{24, TALLY_PERIOD_MONTH, "2Y"},
		{119999, TALLY_PERIOD_MONTH, "119999M"},
		{120000, TALLY_PERIOD_MONTH, "10000Y"},
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tally_period p = {cases[i].count, cases[i].unit};
		char buf[TALLY_PERIOD_FORMAT_MAX];
		int n = tally_period_format(&p, buf, sizeof(buf));

		if (n != (int)strlen(cases[i].text) ||
		    strcmp(buf, cases[i].text) != 0)
			fail_msg("case %zu: got %d \"%s\", want \"%s\"", i, n,
				 buf, cases[i].text);
		/* Length only. */
		assert_int_equal(tally_period_format(&p, NULL, 0), n);
	}
}

static void
test_format_truncation_and_errors(void **state)
{
	tally_period p = {90 * MIN, TALLY_PERIOD_FIXED}; /* "1h30m" */
	char buf[8];
	(void)state;

	memset(buf, 'x', sizeof(buf));
	assert_int_equal(tally_period_format(&p, buf, 0), 5);
	assert_int_equal(buf[0], 'x'); /* size 0 writes nothing */
	assert_int_equal(tally_period_format(&p, buf, 1), 5);
	assert_string_equal(buf, "");
	assert_int_equal(tally_period_format(&p, buf, 3), 5);
	assert_string_equal(buf, "1h");
	assert_int_equal(buf[3], 'x');
	assert_int_equal(tally_period_format(&p, buf, 5), 5);
	assert_string_equal(buf, "1h30");
	assert_int_equal(tally_period_format(&p, buf, 6), 5);
	assert_string_equal(buf, "1h30m");
	assert_int_equal(tally_period_format(&p, buf, sizeof(buf)), 5);
	assert_string_equal(buf, "1h30m");

	assert_int_equal(tally_period_format(NULL, buf, sizeof(buf)),
			 TALLY_EINVAL);
	assert_int_equal(tally_period_format(&p, NULL, 4), TALLY_EINVAL);

	static const tally_period bad[] = {
		{0, TALLY_PERIOD_FIXED},
		{-1, TALLY_PERIOD_FIXED},
		{0, TALLY_PERIOD_WEEK},
		{15251, TALLY_PERIOD_WEEK},
		{0, TALLY_PERIOD_MONTH},
		{120001, TALLY_PERIOD_MONTH},
		{1, TALLY_PERIOD_NONE},
		{1, 4},
		{1, -1},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(buf, 'x', sizeof(buf));
		assert_int_equal(tally_period_format(&bad[i], buf, sizeof(buf)),
				 TALLY_EPERIOD);
		assert_int_equal(buf[0], 'x');
	}
}

static void
round_trip(tally_period p)
{
	char buf[TALLY_PERIOD_FORMAT_MAX];
	char again[TALLY_PERIOD_FORMAT_MAX];
	tally_period q = {-7, -7};
	int n = tally_period_format(&p, buf, sizeof(buf));

	if (n <= 0 || n >= TALLY_PERIOD_FORMAT_MAX || (size_t)n != strlen(buf))
		fail_msg("count %" PRId64 " unit %d: format %d", p.count,
			 (int)p.unit, n);
	if (tally_period_parse(buf, &q) != TALLY_OK || q.count != p.count ||
	    q.unit != p.unit)
		fail_msg("count %" PRId64 " unit %d: \"%s\" parses to %" PRId64
			 " unit %d",
			 p.count, (int)p.unit, buf, q.count, (int)q.unit);
	/* The text is canonical: formatting the parsed period gives it back. */
	assert_int_equal(tally_period_format(&q, again, sizeof(again)), n);
	assert_string_equal(again, buf);
}

static void
test_round_trip(void **state)
{
	static const int64_t lengths[] = {1, US, MS, SEC, MIN, HOUR, DAY, WEEK};
	(void)state;

	round_trip((tally_period)TALLY_PERIOD_NONE_INIT);
	for (int64_t n = 1; n <= TALLY__WEEK_COUNT_MAX; n++)
		round_trip((tally_period){n, TALLY_PERIOD_WEEK});
	for (int64_t n = 1; n <= TALLY__MONTH_COUNT_MAX; n++)
		round_trip((tally_period){n, TALLY_PERIOD_MONTH});

	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		for (int64_t k = 1; k <= 1000; k++) {
			round_trip((tally_period){k * lengths[i],
						  TALLY_PERIOD_FIXED});
			round_trip((tally_period){k * lengths[i] + 1,
						  TALLY_PERIOD_FIXED});
			round_trip((tally_period){k * lengths[i] - 1 +
							  (k == 1 && i == 0),
						  TALLY_PERIOD_FIXED});
		}
	}
	round_trip((tally_period){INT64_MAX, TALLY_PERIOD_FIXED});
	round_trip((tally_period){INT64_MAX - 1, TALLY_PERIOD_FIXED});
	round_trip((tally_period){INT64_MAX / DAY * DAY, TALLY_PERIOD_FIXED});
	for (int iter = 0; iter < 200000; iter++) {
		int64_t bits = (int64_t)(rng() % 63) + 1;
		int64_t n = (int64_t)(rng() >> (64 - bits));

		round_trip((tally_period){n < 1 ? 1 : n, TALLY_PERIOD_FIXED});
	}
}

/* ------------------------------------------------------------------------ */
/* Fixed lattices                                                           */
/* ------------------------------------------------------------------------ */

static void
test_fixed_rolling(void **state)
{
	/* 2024-03-01T00:17:23.000000005Z */
	const int64_t a = T(D_2024_03_01) + 17 * MIN + 23 * SEC + 5;
	(void)state;

	for (int32_t off = -720; off <= 840; off += 390) {
		/* Rolling lattices ignore the offset. */
		tally__lattice h = lat(HOUR, TALLY_PERIOD_FIXED, off, false, a);

		check_window(h, a, a, a + HOUR);
		check_window(h, a + 1, a, a + HOUR);
		check_window(h, a + HOUR - 1, a, a + HOUR);
		check_window(h, a + 5 * HOUR + 3 * MIN, a + 5 * HOUR,
			     a + 6 * HOUR);
		/* Before the anchor: k < 0. */
		check_window(h, a - 1, a - HOUR, a);
		check_window(h, a - 11 * HOUR, a - 11 * HOUR, a - 10 * HOUR);
		check_window(h, a - 10 * HOUR - 30 * MIN, a - 11 * HOUR,
			     a - 10 * HOUR);
	}

	const int64_t p = HOUR + 30 * MIN;
	tally__lattice hm = lat(p, TALLY_PERIOD_FIXED, 0, false, a);

	check_window(hm, a + 100 * p + 1, a + 100 * p, a + 101 * p);
	check_window(hm, a - 3 * p - 1, a - 4 * p, a - 3 * p);
	check_window(hm, a - 3 * p, a - 3 * p, a - 2 * p);

	tally__lattice seven = lat(7, TALLY_PERIOD_FIXED, 0, false, 3);

	check_window(seven, 0, -4, 3);
	check_window(seven, -4, -4, 3);
	check_window(seven, -5, -11, -4);
	check_window(seven, 2, -4, 3);
	check_window(seven, 3, 3, 10);
	check_window(seven, 9, 3, 10);
}

static void
test_fixed_aligned_offsets(void **state)
{
	const int64_t mar1 = T(D_2024_03_01);
	const int64_t feb29 = T(D_2024_02_29);
	const int64_t dec31 = T(D_2025_12_31);
	const int64_t jan1 = T(D_2026_01_01);
	const int64_t hh = 5 * HOUR + 30 * MIN; /* +05:30 */
	(void)state;

	/* Aligned lattices ignore the anchor. */
	for (int64_t a = -3; a <= 3; a += 3) {
		int64_t anchor = a * 12345678901;

		/* 1d at +05:30: 2024-03-01T20:00Z is 01:30 on Mar 2 local. */
		tally__lattice d330 =
			lat(DAY, TALLY_PERIOD_FIXED, 330, true, anchor);

		check_window(d330, mar1 + 20 * HOUR, mar1 + DAY - hh,
			     mar1 + 2 * DAY - hh);
		check_window(d330, mar1 + DAY - hh, mar1 + DAY - hh,
			     mar1 + 2 * DAY - hh);
		check_window(d330, mar1 + DAY - hh - 1, mar1 - hh,
			     mar1 + DAY - hh);
		check_window(d330, mar1 - hh - 1, feb29 - hh, mar1 - hh);

		/* 1d at -05:00: 03:00Z on Mar 1 is 22:00 on Feb 29 local. */
		tally__lattice d300 =
			lat(DAY, TALLY_PERIOD_FIXED, -300, true, anchor);

		check_window(d300, mar1 + 3 * HOUR, feb29 + 5 * HOUR,
			     mar1 + 5 * HOUR);
		check_window(d300, mar1 + 5 * HOUR, mar1 + 5 * HOUR,
			     mar1 + DAY + 5 * HOUR);

		/* 1d at +14:00: local New Year while UTC is still Dec 31. */
		tally__lattice d840 =
			lat(DAY, TALLY_PERIOD_FIXED, 840, true, anchor);

		check_window(d840, dec31 + 10 * HOUR, dec31 + 10 * HOUR,
			     jan1 + 10 * HOUR);
		check_window(d840, dec31 + 10 * HOUR - 1, dec31 - 14 * HOUR,
			     dec31 + 10 * HOUR);

		/* 1d at -12:00: 11:59Z on Jan 1 is 23:59 on Dec 31 local. */
		tally__lattice d720 =
			lat(DAY, TALLY_PERIOD_FIXED, -720, true, anchor);

		check_window(d720, jan1 + 11 * HOUR + 59 * MIN,
			     dec31 + 12 * HOUR, jan1 + 12 * HOUR);
		check_window(d720, jan1 + 12 * HOUR, jan1 + 12 * HOUR,
			     jan1 + 36 * HOUR);

		/* 1h at +05:30: the local top of the hour is :30 UTC. */
		tally__lattice h330 =
			lat(HOUR, TALLY_PERIOD_FIXED, 330, true, anchor);

		check_window(h330, mar1 + 10 * MIN, mar1 - 30 * MIN,
			     mar1 + 30 * MIN);
		check_window(h330, mar1 + 30 * MIN, mar1 + 30 * MIN,
			     mar1 + 90 * MIN);

		/* 1h at +05:45 (Nepal): local 05:45 -> 05:00 = 23:15Z. */
		tally__lattice h345 =
			lat(HOUR, TALLY_PERIOD_FIXED, 345, true, anchor);

		check_window(h345, mar1, mar1 - 45 * MIN, mar1 + 15 * MIN);

		/* 15m at -05:00 is the UTC quarter-hour grid. */
		tally__lattice q =
			lat(15 * MIN, TALLY_PERIOD_FIXED, -300, true, anchor);

		check_window(q, mar1 + 7 * MIN, mar1, mar1 + 15 * MIN);

		/* 2d: every other midnight counted from 1970-01-01. Mar 1
		 * 2024 is day 19783 (odd), so Feb 29 starts the window. */
		tally__lattice d2 =
			lat(2 * DAY, TALLY_PERIOD_FIXED, 0, true, anchor);

		check_window(d2, mar1 + 12 * HOUR, feb29, feb29 + 2 * DAY);
		check_window(d2, feb29, feb29, feb29 + 2 * DAY);
		check_window(d2, feb29 - 1, feb29 - 2 * DAY, feb29);
		check_window(d2, 0, 0, 2 * DAY);
		check_window(d2, -1, -2 * DAY, 0);

		/* 2d at +05:30: local midnight of Feb 29. */
		tally__lattice d2o =
			lat(2 * DAY, TALLY_PERIOD_FIXED, 330, true, anchor);

		check_window(d2o, feb29 - hh, feb29 - hh, feb29 + 2 * DAY - hh);
		check_window(d2o, mar1, feb29 - hh, feb29 + 2 * DAY - hh);

		/* 7d aligned: every 7th midnight from Thursday 1970-01-01. */
		tally__lattice d7 =
			lat(7 * DAY, TALLY_PERIOD_FIXED, 0, true, anchor);

		check_window(d7, mar1, feb29, feb29 + 7 * DAY);
		check_window(d7, 0, 0, 7 * DAY);
		check_window(d7, -1, -7 * DAY, 0);
	}
}

/* ------------------------------------------------------------------------ */
/* Weeks                                                                    */
/* ------------------------------------------------------------------------ */

static void
test_week_aligned(void **state)
{
	const int64_t m23 = T(D_2026_11_23);
	const int64_t m30 = T(D_2026_11_30);
	const int64_t m07 = T(D_2026_12_07);
	const int64_t hh = 5 * HOUR + 30 * MIN;
	(void)state;

	tally__lattice w = lat(1, TALLY_PERIOD_WEEK, 0, true, 0);

	/* 2026-11-30 is a Monday boundary. */
	check_window(w, m30, m30, m07);
	check_window(w, m30 + 3 * DAY + 7 * HOUR, m30, m07);
	check_window(w, m07 - 1, m30, m07);
	/* Sunday 23:59 belongs to the week of the previous Monday. */
	check_window(w, m30 - MIN, m23, m30);
	check_window(w, m30 - 1, m23, m30);
	/* The grid starts on Monday 1970-01-05. */
	check_window(w, T(D_1970_01_05), T(D_1970_01_05),
		     T(D_1970_01_05) + WEEK);
	check_window(w, T(D_1970_01_05) - 1, T(D_1970_01_05) - WEEK,
		     T(D_1970_01_05));
	check_window(w, 0, T(D_1970_01_05) - WEEK, T(D_1970_01_05));

	/* +05:30: Sunday 23:59 local is 18:29Z on Sunday. */
	tally__lattice w330 = lat(1, TALLY_PERIOD_WEEK, 330, true, 0);

	check_window(w330, m30 - hh - MIN, m23 - hh, m30 - hh);
	check_window(w330, m30 - hh, m30 - hh, m07 - hh);
	check_window(w330, m30, m30 - hh, m07 - hh);

	/* -05:00: 04:00Z on Monday is still Sunday 23:00 local. */
	tally__lattice w300 = lat(1, TALLY_PERIOD_WEEK, -300, true, 0);

	check_window(w300, m30 + 4 * HOUR, m23 + 5 * HOUR, m30 + 5 * HOUR);
	check_window(w300, m30 + 5 * HOUR, m30 + 5 * HOUR, m07 + 5 * HOUR);

	/* +14:00 and -12:00. */
	tally__lattice w840 = lat(1, TALLY_PERIOD_WEEK, 840, true, 0);
	tally__lattice w720 = lat(1, TALLY_PERIOD_WEEK, -720, true, 0);

	check_window(w840, m30 - 10 * HOUR, m30 - 14 * HOUR, m07 - 14 * HOUR);
	check_window(w840, m30 - 14 * HOUR - 1, m23 - 14 * HOUR,
		     m30 - 14 * HOUR);
	check_window(w720, m30 + 11 * HOUR, m23 + 12 * HOUR, m30 + 12 * HOUR);
	check_window(w720, m30 + 12 * HOUR, m30 + 12 * HOUR, m07 + 12 * HOUR);

	/* 2w: every other Monday from 1970-01-05; 2026-11-23 is on the grid
	 * (20780 - 4 days = 1484 fortnights), 2026-11-30 is not. */
	tally__lattice w2 = lat(2, TALLY_PERIOD_WEEK, 0, true, 0);

	check_window(w2, m30 + 12 * HOUR, m23, m23 + 2 * WEEK);
	check_window(w2, m23, m23, m23 + 2 * WEEK);
	check_window(w2, m23 - 1, m23 - 2 * WEEK, m23);
	check_window(w2, T(D_1970_01_05), T(D_1970_01_05),
		     T(D_1970_01_05) + 2 * WEEK);
}

static void
test_week_rolling(void **state)
{
	/* Wednesday 2024-01-31T10:00Z. */
	const int64_t a = T(D_2024_01_31) + 10 * HOUR;
	(void)state;

	tally__lattice w = lat(1, TALLY_PERIOD_WEEK, 330, false, a);

	check_window(w, a, a, a + WEEK);
	check_window(w, a + 20 * DAY, a + 14 * DAY, a + 21 * DAY);
	check_window(w, a - 1, a - WEEK, a);

	tally__lattice w3 = lat(3, TALLY_PERIOD_WEEK, 0, false, a);

	check_window(w3, a - 22 * DAY, a - 42 * DAY, a - 21 * DAY);
	check_window(w3, a + 21 * DAY, a + 21 * DAY, a + 42 * DAY);
}

/* ------------------------------------------------------------------------ */
/* Months                                                                   */
/* ------------------------------------------------------------------------ */

/* Anchor 2024-01-31 plus k months, k = -2..25 (index k + 2), day clamped. */
static const int64_t jan31_seq[] = {
	INT64_C(1701302400), /* 2023-11-30 */
	INT64_C(1703980800), /* 2023-12-31 */
	INT64_C(1706659200), /* 2024-01-31 */
	INT64_C(1709164800), /* 2024-02-29 */
	INT64_C(1711843200), /* 2024-03-31 */
	INT64_C(1714435200), /* 2024-04-30 */
	INT64_C(1717113600), /* 2024-05-31 */
	INT64_C(1719705600), /* 2024-06-30 */
	INT64_C(1722384000), /* 2024-07-31 */
	INT64_C(1725062400), /* 2024-08-31 */
	INT64_C(1727654400), /* 2024-09-30 */
	INT64_C(1730332800), /* 2024-10-31 */
	INT64_C(1732924800), /* 2024-11-30 */
	INT64_C(1735603200), /* 2024-12-31 */
	INT64_C(1738281600), /* 2025-01-31 */
	INT64_C(1740700800), /* 2025-02-28 */
	INT64_C(1743379200), /* 2025-03-31 */
	INT64_C(1745971200), /* 2025-04-30 */
	INT64_C(1748649600), /* 2025-05-31 */
	INT64_C(1751241600), /* 2025-06-30 */
	INT64_C(1753920000), /* 2025-07-31 */
	INT64_C(1756598400), /* 2025-08-31 */
	INT64_C(1759190400), /* 2025-09-30 */
	INT64_C(1761868800), /* 2025-10-31 */
	INT64_C(1764460800), /* 2025-11-30 */
	INT64_C(1767139200), /* 2025-12-31 */
	INT64_C(1769817600), /* 2026-01-31 */
	INT64_C(1772236800), /* 2026-02-28 */
};
#define JAN31_N ((int)(sizeof(jan31_seq) / sizeof(jan31_seq[0])))

static void
test_month_rolling_month_ends(void **state)
{
	(void)state;

	/* Midnight and a time of day with nanoseconds: the time is kept. */
	static const int64_t tods[] = {0, 13 * HOUR + 45 * MIN + 10 * SEC +
						  123456789};
	for (size_t j = 0; j < 2; j++) {
		const int64_t tod = tods[j];
		tally__lattice m = lat(1, TALLY_PERIOD_MONTH, 0, false,
				       T(D_2024_01_31) + tod);

		/* 27 windows, Nov 2023 to Feb 2026: no drift after a clamp. */
		for (int i = 0; i + 1 < JAN31_N; i++) {
			int64_t s = T(jan31_seq[i]) + tod;
			int64_t e = T(jan31_seq[i + 1]) + tod;

			check_window(m, s, s, e);
			check_window(m, s + 1, s, e);
			check_window(m, s + (e - s) / 2, s, e);
			check_window(m, e - 1, s, e);
		}
	}

	/* 2M from Jan 31: Jan 31, Mar 31, May 31, Jul 31, Sep 30, Nov 30. */
	tally__lattice m2 =
		lat(2, TALLY_PERIOD_MONTH, 0, false, T(D_2024_01_31));

	for (int i = 0; i + 2 < JAN31_N; i += 2)
		check_window(m2, T(jan31_seq[i + 1]), T(jan31_seq[i]),
			     T(jan31_seq[i + 2]));
	/* 2024-03-15 lies between Jan 31 and Mar 31. */
	check_window(m2, T(D_2024_03_01) + 14 * DAY, T(jan31_seq[2]),
		     T(jan31_seq[4]));

	/* 2100 is not a leap year: Jan 31 -> Feb 28. */
	tally__lattice m2100 =
		lat(1, TALLY_PERIOD_MONTH, 0, false, T(D_2100_01_31));

	check_window(m2100, T(D_2100_02_28) + HOUR, T(D_2100_02_28),
		     T(D_2100_02_28) + 31 * DAY);
	check_window(m2100, T(D_2100_02_28) - 1, T(D_2100_01_31),
		     T(D_2100_02_28));
}

static void
test_month_rolling_feb29(void **state)
{
	/* Feb 29 2024 plus 12k months, k = -1..5. */
	static const int64_t seq[] = {
		INT64_C(1677542400), /* 2023-02-28 */
		INT64_C(1709164800), /* 2024-02-29 */
		INT64_C(1740700800), /* 2025-02-28 */
		INT64_C(1772236800), /* 2026-02-28 */
		INT64_C(1803772800), /* 2027-02-28 */
		INT64_C(1835395200), /* 2028-02-29 */
		INT64_C(1866931200), /* 2029-02-28 */
	};
	(void)state;

	tally__lattice y =
		lat(12, TALLY_PERIOD_MONTH, 0, false, T(D_2024_02_29));

	for (size_t i = 0; i + 1 < sizeof(seq) / sizeof(seq[0]); i++) {
		check_window(y, T(seq[i]), T(seq[i]), T(seq[i + 1]));
		check_window(y, T(seq[i + 1]) - 1, T(seq[i]), T(seq[i + 1]));
	}

	/* 48 months from a leap day land on leap days. */
	tally__lattice y4 =
		lat(48, TALLY_PERIOD_MONTH, 0, false, T(D_2024_02_29));

	check_window(y4, T(seq[5]), T(seq[5]),
		     T(INT64_C(1961625600)) /* 2032-02-29 */);
	check_window(y4, T(seq[5]) - 1, T(seq[1]), T(seq[5]));

	/* 2000-02-29 plus 100 years: 2100 is not a leap year, nor is 2200. */
	tally__lattice c =
		lat(1200, TALLY_PERIOD_MONTH, 0, false, T(D_2000_02_29));

	check_window(c, T(D_2100_03_01), T(D_2100_02_28), T(D_2200_02_28));
	check_window(c, T(D_2100_02_28) - 1, T(D_2000_02_29), T(D_2100_02_28));
}

static void
test_month_rolling_offsets(void **state)
{
	const int64_t hh = 5 * HOUR + 30 * MIN;
	(void)state;

	/* Anchor: local midnight of 2024-01-31 at +05:30. */
	tally__lattice m =
		lat(1, TALLY_PERIOD_MONTH, 330, false, T(D_2024_01_31) - hh);

	/* 2024-02-28T18:29:59Z is Feb 28 23:59:59 local. */
	check_window(m, T(D_2024_02_29) - hh - SEC, T(D_2024_01_31) - hh,
		     T(D_2024_02_29) - hh);
	for (int i = 2; i + 1 < JAN31_N; i++)
		check_window(m, T(jan31_seq[i]) - hh, T(jan31_seq[i]) - hh,
			     T(jan31_seq[i + 1]) - hh);

	/* The same UTC instant read at -12:00 is Jan 30 12:00 local, so the
	 * anchor's local day is the 30th: local Jan 30 -> Feb 29 -> Mar 30 at
	 * 12:00, which is Jan 31, Mar 1 and Mar 31 at 00:00 UTC. */
	tally__lattice w =
		lat(1, TALLY_PERIOD_MONTH, -720, false, T(D_2024_01_31));

	check_window(w, T(D_2024_03_01) + 12 * HOUR, T(D_2024_03_01),
		     T(D_2024_03_01) + 30 * DAY);
	check_window(w, T(D_2024_03_01) - 1, T(D_2024_01_31), T(D_2024_03_01));

	/* Local New Year at +14:00, while UTC is still Dec 31: anchor local
	 * 2025-12-31 23:00 (09:00Z), 1 month later is Jan 31 23:00 local. */
	tally__lattice ny = lat(1, TALLY_PERIOD_MONTH, 840, false,
				T(D_2025_12_31) + 9 * HOUR);

	check_window(ny, T(D_2025_12_31) + 10 * HOUR,
		     T(D_2025_12_31) + 9 * HOUR,
		     T(D_2026_01_01) + 30 * DAY + 9 * HOUR);
}

static void
test_month_aligned(void **state)
{
	const int64_t end2024 = T(D_2025_01_01) - 1; /* Dec 31 23:59:59.9.. */
	(void)state;

	for (int64_t anchor = -5 * DAY; anchor <= 5 * DAY; anchor += 5 * DAY) {
		tally__lattice m1 = lat(1, TALLY_PERIOD_MONTH, 0, true, anchor);
		tally__lattice m3 = lat(3, TALLY_PERIOD_MONTH, 0, true, anchor);
		tally__lattice m6 = lat(6, TALLY_PERIOD_MONTH, 0, true, anchor);
		tally__lattice y1 =
			lat(12, TALLY_PERIOD_MONTH, 0, true, anchor);
		tally__lattice y2 =
			lat(24, TALLY_PERIOD_MONTH, 0, true, anchor);

		check_window(m1, T(D_2024_02_29) + 12 * HOUR, T(D_2024_02_01),
			     T(D_2024_03_01));
		check_window(m1, T(D_2024_03_01), T(D_2024_03_01),
			     T(D_2024_04_01));
		check_window(m1, T(D_2024_03_01) - 1, T(D_2024_02_01),
			     T(D_2024_03_01));
		check_window(m1, end2024, T(D_2024_12_31) - 30 * DAY,
			     T(D_2025_01_01));

		/* Quarters: Jan/Apr/Jul/Oct. 2024-05-15 -> Apr 1 .. Jul 1. */
		check_window(m3, T(D_2024_04_01) + 44 * DAY, T(D_2024_04_01),
			     T(D_2024_07_01));
		check_window(m3, T(D_2024_04_01) - 1, T(D_2024_01_01),
			     T(D_2024_04_01));
		check_window(m3, T(D_2024_07_01), T(D_2024_07_01),
			     T(D_2024_07_01) + 92 * DAY);

		/* Halves: Jan and Jul. */
		check_window(m6, end2024, T(D_2024_07_01), T(D_2025_01_01));
		check_window(m6, T(D_2024_07_01) - 1, T(D_2024_01_01),
			     T(D_2024_07_01));

		/* Years; the last nanosecond of 2024. */
		check_window(y1, end2024, T(D_2024_01_01), T(D_2025_01_01));
		check_window(y1, T(D_2025_01_01), T(D_2025_01_01),
			     T(D_2026_01_01));

		/* 2Y: even years (1970 is month index 0). */
		check_window(y2, T(D_2025_01_01) + 151 * DAY, T(D_2024_01_01),
			     T(D_2026_01_01));
		check_window(y2, T(D_2026_01_01), T(D_2026_01_01),
			     T(D_2026_01_01) + (365 + 365) * DAY);
		check_window(y2, 0, 0, T(INT64_C(63072000))); /* 1972-01-01 */
	}
}

static void
test_month_aligned_offsets(void **state)
{
	const int64_t hh = 5 * HOUR + 30 * MIN;
	(void)state;

	/* +14:00: local New Year at 2025-12-31T10:00Z. */
	tally__lattice y840 = lat(12, TALLY_PERIOD_MONTH, 840, true, 0);
	tally__lattice m840 = lat(1, TALLY_PERIOD_MONTH, 840, true, 0);

	check_window(y840, T(D_2025_12_31) + 10 * HOUR,
		     T(D_2025_12_31) + 10 * HOUR,
		     T(D_2026_01_01) + 364 * DAY + 10 * HOUR);
	check_window(y840, T(D_2025_12_31) + 10 * HOUR - 1,
		     T(D_2024_12_31) + 10 * HOUR, T(D_2025_12_31) + 10 * HOUR);
	check_window(m840, T(D_2025_12_31) + 12 * HOUR,
		     T(D_2025_12_31) + 10 * HOUR,
		     T(D_2026_01_01) + 30 * DAY + 10 * HOUR);

	/* -12:00: 2026-01-01T11:00Z is Dec 31 23:00 local. */
	tally__lattice m720 = lat(1, TALLY_PERIOD_MONTH, -720, true, 0);
	tally__lattice y720 = lat(12, TALLY_PERIOD_MONTH, -720, true, 0);

	check_window(m720, T(D_2026_01_01) + 11 * HOUR,
		     T(D_2025_12_01) + 12 * HOUR, T(D_2026_01_01) + 12 * HOUR);
	check_window(y720, T(D_2026_01_01) + 11 * HOUR,
		     T(D_2025_01_01) + 12 * HOUR, T(D_2026_01_01) + 12 * HOUR);
	check_window(y720, T(D_2026_01_01) + 12 * HOUR,
		     T(D_2026_01_01) + 12 * HOUR,
		     T(D_2026_01_01) + 365 * DAY + 12 * HOUR);

	/* +05:30 across a month end: 2024-02-29T18:30Z is Mar 1 local. */
	tally__lattice m330 = lat(1, TALLY_PERIOD_MONTH, 330, true, 0);

	check_window(m330, T(D_2024_03_01) - hh, T(D_2024_03_01) - hh,
		     T(D_2024_04_01) - hh);
	check_window(m330, T(D_2024_03_01) - hh - 1, T(D_2024_02_01) - hh,
		     T(D_2024_03_01) - hh);
}

static void
test_leap_years(void **state)
{
	(void)state;

	tally__lattice m1 = lat(1, TALLY_PERIOD_MONTH, 0, true, 0);

	/* 2000 is a leap year (divisible by 400). */
	check_window(m1, T(D_2000_02_29) + 12 * HOUR, T(D_2000_02_01),
		     T(D_2000_03_01));
	check_window(m1, T(D_2000_03_01) - 1, T(D_2000_02_01), T(D_2000_03_01));
	assert_int_equal(D_2000_03_01 - D_2000_02_01, 29 * 86400);

	/* 2100 is not (divisible by 100). */
	check_window(m1, T(D_2100_02_28) + 12 * HOUR, T(D_2100_02_01),
		     T(D_2100_03_01));
	check_window(m1, T(D_2100_03_01) - 1, T(D_2100_02_01), T(D_2100_03_01));
	assert_int_equal(D_2100_03_01 - D_2100_02_01, 28 * 86400);

	/* 1900 is not either. */
	check_window(m1, T(D_1900_03_01) - 1, T(D_1900_02_01), T(D_1900_03_01));
	assert_int_equal(D_1900_03_01 - D_1900_02_01, 28 * 86400);

	/* 1d aligned across the 2000 leap day. */
	tally__lattice d = lat(DAY, TALLY_PERIOD_FIXED, 0, true, 0);

	check_window(d, T(D_2000_02_29) + 1, T(D_2000_02_29), T(D_2000_03_01));
}

static void
test_missed_windows(void **state)
{
	(void)state;

	/* A record whose window started on 2024-01-31 and that is touched
	 * again in July 2031 lands on the latest boundary, not the next. */
	tally__lattice m =
		lat(1, TALLY_PERIOD_MONTH, 0, false, T(D_2024_01_31));

	check_window(m, T(D_2031_06_30) + 15 * DAY, T(D_2031_06_30),
		     T(D_2031_07_31));

	const int64_t a = T(D_2024_03_01) + 17;
	tally__lattice h = lat(HOUR, TALLY_PERIOD_FIXED, 0, false, a);

	check_window(h, a + 1000000 * HOUR + 5, a + 1000000 * HOUR,
		     a + 1000001 * HOUR);

	tally__lattice w = lat(1, TALLY_PERIOD_WEEK, 0, true, 0);

	check_window(w, T(D_2026_11_30) + 2 * DAY, T(D_2026_11_30),
		     T(D_2026_12_07));

	tally__lattice q = lat(3, TALLY_PERIOD_MONTH, 0, true, 0);

	check_window(q, T(D_2031_06_30), T(D_2031_06_30) - 90 * DAY,
		     T(D_2031_06_30) + DAY);
}

static void
test_before_1970(void **state)
{
	(void)state;

	/* Rolling 1M from 1969-12-31: Feb 1969 clamps to the 28th. */
	tally__lattice r =
		lat(1, TALLY_PERIOD_MONTH, 0, false, T(D_1969_12_31));

	check_window(r, T(D_1969_02_28) + 12 * HOUR, T(D_1969_02_28),
		     T(D_1969_03_31));
	check_window(r, T(D_1969_12_31) - 1, T(D_1969_12_31) - 31 * DAY,
		     T(D_1969_12_31));

	tally__lattice m1 = lat(1, TALLY_PERIOD_MONTH, 0, true, 0);
	tally__lattice m3 = lat(3, TALLY_PERIOD_MONTH, 0, true, 0);
	tally__lattice m5 = lat(5, TALLY_PERIOD_MONTH, 0, true, 0);
	tally__lattice m7 = lat(7, TALLY_PERIOD_MONTH, 0, true, 0);

	check_window(m1, T(D_1969_12_01) + 14 * DAY, T(D_1969_12_01), 0);
	check_window(m1, -1, T(D_1969_12_01), 0);
	check_window(m3, T(D_1969_10_01) + 45 * DAY, T(D_1969_10_01), 0);
	/* 5M: month index -1 (Dec 1969) floors to -5 (Aug 1969). */
	check_window(m5, T(D_1969_12_01), T(D_1969_08_01), 0);
	/* 7M: 1960-01 is index -120, floored to -126 = 1959-07. */
	check_window(m7, T(D_1960_01_01), T(D_1959_07_01), T(D_1960_02_01));

	/* Fixed aligned before the epoch. */
	tally__lattice d = lat(DAY, TALLY_PERIOD_FIXED, 0, true, 0);

	check_window(d, -1, -DAY, 0);
	check_window(d, T(D_1900_03_01) - 1, T(D_1900_03_01) - DAY,
		     T(D_1900_03_01));
}

static void
test_none(void **state)
{
	(void)state;

	static const int64_t ts[] = {INT64_MIN, -1, 0, 1, INT64_MAX};
	for (size_t i = 0; i < 5; i++) {
		for (size_t j = 0; j < 5; j++) {
			check_window(lat(0, TALLY_PERIOD_NONE, 0, false, ts[j]),
				     ts[i], ts[j], INT64_MAX);
			check_window(
				lat(0, TALLY_PERIOD_NONE, 840, true, ts[j]),
				ts[i], ts[j], INT64_MAX);
		}
	}
}

/* ------------------------------------------------------------------------ */
/* Saturation and extremes                                                  */
/* ------------------------------------------------------------------------ */

static void
test_saturation(void **state)
{
	(void)state;

	/* P = INT64_MAX from anchor 0: boundaries 0, +-INT64_MAX, ... */
	tally__lattice big = lat(INT64_MAX, TALLY_PERIOD_FIXED, 0, false, 0);

	check_window(big, 0, 0, INT64_MAX);
	check_window(big, INT64_MAX - 1, 0, INT64_MAX);
	check_window(big, INT64_MAX, INT64_MAX, INT64_MAX); /* 2P saturated */
	check_window(big, -1, -INT64_MAX, 0);
	check_window(big, INT64_MIN + 1, INT64_MIN + 1, 0);
	check_window(big, INT64_MIN, INT64_MIN, INT64_MIN + 1); /* -2P */

	/* 1ns from INT64_MIN: every instant is a boundary. */
	tally__lattice one = lat(1, TALLY_PERIOD_FIXED, 0, false, INT64_MIN);

	check_window(one, INT64_MIN, INT64_MIN, INT64_MIN + 1);
	check_window(one, 0, 0, 1);
	check_window(one, INT64_MAX, INT64_MAX, INT64_MAX);

	/* 1h from INT64_MAX, t at INT64_MIN: the boundary below t does not
	 * fit. INT64_MAX - k*HOUR for the largest k that stays >= MIN. */
	tally__lattice h = lat(HOUR, TALLY_PERIOD_FIXED, 0, false, INT64_MAX);
	const i128 kmax = ((i128)INT64_MAX - INT64_MIN) / HOUR;
	const int64_t lowest = (int64_t)((i128)INT64_MAX - kmax * HOUR);

	assert_true((i128)lowest - HOUR < INT64_MIN);
	check_window(h, INT64_MIN, INT64_MIN, lowest);
	check_window(h, INT64_MAX, INT64_MAX, INT64_MAX);
	check_window(h, INT64_MAX - 1, INT64_MAX - HOUR, INT64_MAX);

	/* 1d aligned at +23:59, t at the ends of time. */
	tally__lattice d = lat(DAY, TALLY_PERIOD_FIXED, 1439, true, 0);
	const int64_t o = 1439 * MIN;
	/* INT64_MAX = 106751 days + 85636854775807 ns. */
	/* Local INT64_MAX + o is 106752 days + 85576.85 s; local INT64_MIN
	 * + o is -106751 days + 703.15 s, whose midnight is below MIN. */
	check_window(d, INT64_MAX, 106751 * DAY - o + DAY, INT64_MAX);
	check_window(d, INT64_MIN, INT64_MIN, -106750 * DAY - o);

	/* 120000 months (10000 years): one boundary in range. */
	tally__lattice ten = lat(120000, TALLY_PERIOD_MONTH, 0, false, 0);

	check_window(ten, INT64_MAX, 0, INT64_MAX);
	check_window(ten, 0, 0, INT64_MAX);
	check_window(ten, -1, INT64_MIN, 0);
	check_window(ten, INT64_MIN, INT64_MIN, 0);

	tally__lattice tena =
		lat(120000, TALLY_PERIOD_MONTH, -1439, true, INT64_MIN);

	check_window(tena, INT64_MAX, 1439 * MIN, INT64_MAX);
	check_window(tena, INT64_MIN, INT64_MIN, 1439 * MIN);

	/* 1M rolling from INT64_MIN and INT64_MAX (in 1677 and 2262). */
	tally__lattice lo = lat(1, TALLY_PERIOD_MONTH, 0, false, INT64_MIN);
	tally__lattice hi = lat(1, TALLY_PERIOD_MONTH, 0, false, INT64_MAX);

	check_window(lo, INT64_MIN, INT64_MIN, INT64_MIN + 30 * DAY);
	check_window(hi, INT64_MAX, INT64_MAX, INT64_MAX);
	check_window(hi, INT64_MAX - 1, INT64_MAX - 31 * DAY, INT64_MAX);

	/* 1M aligned at the ends: INT64_MAX is 2262-04-11T23:47:16.85Z. */
	tally__lattice m = lat(1, TALLY_PERIOD_MONTH, 0, true, 0);

	check_window(m, INT64_MAX, T(INT64_C(9222422400)) /* 2262-04-01 */,
		     INT64_MAX);
	/* INT64_MIN is 1677-09-21T00:12:43.15Z; 1677-09-01 does not fit. */
	check_window(m, INT64_MIN, INT64_MIN,
		     T(INT64_C(-9222508800)) /* 1677-10-01 */);

	/* The largest week period. */
	tally__lattice w =
		lat(TALLY__WEEK_COUNT_MAX, TALLY_PERIOD_WEEK, 0, true, 0);

	check_window(w, 0, T(D_1970_01_05) - TALLY__WEEK_COUNT_MAX * WEEK,
		     T(D_1970_01_05));
	check_window(w, INT64_MAX, T(D_1970_01_05), INT64_MAX);
	check_window(w, INT64_MIN, INT64_MIN,
		     T(D_1970_01_05) - TALLY__WEEK_COUNT_MAX * WEEK);
}

/* Checks the lattice laws at one point. */
static void
check_laws(const tally__lattice *l, int64_t t)
{
	int64_t s, e, s2, e2;

	tally__window(l, t, &s, &e);
	if (l->unit == TALLY_PERIOD_NONE) {
		assert_true(s == l->anchor && e == INT64_MAX);
		return;
	}
	if (!(s <= e && (s == INT64_MIN || s <= t) &&
	      (e == INT64_MAX || t < e)))
		fail_msg("count %" PRId64
			 " unit %d off %d aligned %d anchor %" PRId64
			 " t %" PRId64 ": [%" PRId64 ", %" PRId64 ")",
			 l->count, (int)l->unit, (int)l->offset_min,
			 (int)l->aligned, l->anchor, t, s, e);
	/* start and end are boundaries: the window that starts at start is
	 * the same window, and end starts the next one. */
	if (s != INT64_MIN && s <= t) {
		tally__window(l, s, &s2, &e2);
		assert_true(s2 == s && e2 == e);
	}
	if (e != INT64_MAX && e > t) {
		tally__window(l, e, &s2, &e2);
		assert_true(s2 == e);
		tally__window(l, e - 1, &s2, &e2);
		assert_true(s2 == s && e2 == e);
	}
}

static void
test_extremes(void **state)
{
	static const int64_t points[] = {
		INT64_MIN,
		INT64_MIN + 1,
		INT64_MIN + DAY,
		-DAY - 1,
		-1,
		0,
		1,
		T(D_2024_01_31),
		INT64_MAX - DAY,
		INT64_MAX - 1,
		INT64_MAX,
	};
	static const tally_period periods[] = {
		{1, TALLY_PERIOD_FIXED},
		{3, TALLY_PERIOD_FIXED},
		{DAY, TALLY_PERIOD_FIXED},
		{7 * DAY + 1, TALLY_PERIOD_FIXED},
		{INT64_MAX / 2, TALLY_PERIOD_FIXED},
		{INT64_MAX - 1, TALLY_PERIOD_FIXED},
		{INT64_MAX, TALLY_PERIOD_FIXED},
		{1, TALLY_PERIOD_WEEK},
		{3, TALLY_PERIOD_WEEK},
		{TALLY__WEEK_COUNT_MAX, TALLY_PERIOD_WEEK},
		{1, TALLY_PERIOD_MONTH},
		{7, TALLY_PERIOD_MONTH},
		{12, TALLY_PERIOD_MONTH},
		{3600, TALLY_PERIOD_MONTH},
		{119999, TALLY_PERIOD_MONTH},
		{120000, TALLY_PERIOD_MONTH},
		{0, TALLY_PERIOD_NONE},
	};
	static const int32_t offsets[] = {0,
					  1,
					  -1,
					  330,
					  -300,
					  840,
					  -720,
					  TALLY_UTC_OFFSET_MAX,
					  -TALLY_UTC_OFFSET_MAX};
	const size_t np = sizeof(points) / sizeof(points[0]);
	(void)state;

	for (size_t p = 0; p < sizeof(periods) / sizeof(periods[0]); p++)
		for (size_t o = 0; o < sizeof(offsets) / sizeof(offsets[0]);
		     o++)
			for (int al = 0; al < 2; al++)
				for (size_t a = 0; a < np; a++)
					for (size_t t = 0; t < np; t++) {
						tally__lattice l =
							lat(periods[p].count,
							    periods[p].unit,
							    offsets[o], al != 0,
							    points[a]);

						check_laws(&l, points[t]);
					}
}

/* ------------------------------------------------------------------------ */
/* Brute force against slow references                                      */
/* ------------------------------------------------------------------------ */

/* Month starts from 1500-01 to 2600-12, built by walking the calendar. */
#define REF_Y0 1500
#define REF_Y1 2600
#define REF_MONTHS 13212                  /* (REF_Y1 - REF_Y0 + 1) * 12 */
static int64_t ref_first[REF_MONTHS + 1]; /* days since 1970-01-01 */
static const int64_t ref_mi0 = -5640;     /* (REF_Y0 - 1970) * 12, entry 0 */
_Static_assert(REF_MONTHS == (REF_Y1 - REF_Y0 + 1) * 12, "table size");
_Static_assert(-5640 == (REF_Y0 - 1970) * 12, "table origin");

static bool
ref_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static void
ref_build(void)
{
	static const int mdays[12] = {31, 28, 31, 30, 31, 30,
				      31, 31, 30, 31, 30, 31};
	int64_t day = 0;

	for (int64_t y = 1969; y >= REF_Y0; y--)
		day -= ref_leap(y) ? 366 : 365;
	for (int64_t i = 0; i <= REF_MONTHS; i++) {
		int64_t y = REF_Y0 + i / 12;
		int m = (int)(i % 12);

		ref_first[i] = day;
		day += mdays[m] + (m == 1 && ref_leap(y));
	}
}

/* First day of month index mi (months since 1970-01). */
static int64_t
ref_first_day(int64_t mi)
{
	int64_t i = mi - ref_mi0;

	if (i < 0 || i + 1 > REF_MONTHS)
		fail_msg("month index %" PRId64 " out of the reference table",
			 mi);
	return ref_first[i];
}

struct ref_civil {
	int64_t mi, day, tod;
};

/* Split a local time (in the table's range) by searching the table. */
static struct ref_civil
ref_split(int64_t local)
{
	int64_t dayno = local / DAY - (local % DAY < 0);
	size_t lo = 0, hi = REF_MONTHS;
	struct ref_civil c;

	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;

		if (ref_first[mid] <= dayno)
			lo = mid;
		else
			hi = mid;
	}
	c.mi = (int64_t)lo + ref_mi0;
	c.day = dayno - ref_first[lo] + 1;
	c.tod = local - dayno * DAY;
	return c;
}

static int64_t
ref_saturate(i128 v)
{
	return v < INT64_MIN   ? INT64_MIN
	       : v > INT64_MAX ? INT64_MAX
			       : (int64_t)v;
}

/* Rolling boundary k, as UTC; may lie outside int64. */
static i128
ref_rolling(const struct ref_civil *a, int64_t count, int64_t k, int64_t off)
{
	int64_t mi = a->mi + k * count;
	int64_t dim = ref_first_day(mi + 1) - ref_first_day(mi);
	int64_t day = a->day < dim ? a->day : dim;

	return (i128)(ref_first_day(mi) + day - 1) * DAY + a->tod - off;
}

/* Aligned boundary at the start of month mi, as UTC. */
static i128
ref_aligned(int64_t mi, int64_t off)
{
	return (i128)ref_first_day(mi) * DAY - off;
}

static void
test_brute_month_rolling(void **state)
{
	/* 1700-01-01 and 2250-01-01 as epoch seconds. */
	const int64_t lo = T(INT64_C(-8520336000));
	const int64_t hi = T(INT64_C(8835955200));
	(void)state;

	ref_build();
	for (int iter = 0; iter < 20000; iter++) {
		int64_t count =
			iter % 4 == 0 ? rng_range(1, 600) : rng_range(1, 36);
		int32_t off_min = (int32_t)rng_range(-1439, 1439);
		int64_t off = off_min * MIN;
		int64_t anchor = rng_range(lo, hi);
		int64_t t;
		struct ref_civil a = ref_split(anchor + off);
		int64_t k = 0;

		/* Half of the times near a boundary. */
		if (iter % 2 == 0) {
			t = rng_range(lo, hi);
		} else {
			/* At most 100 years away, inside the table. */
			int64_t kk = rng_range(-1200 / count, 1200 / count);

			i128 b = ref_rolling(&a, count, kk, off) +
				 rng_range(-2, 2);

			t = b < lo || b > hi ? anchor : (int64_t)b;
		}
		while (ref_rolling(&a, count, k, off) > t)
			k--;
		while (ref_rolling(&a, count, k + 1, off) <= t)
			k++;

		tally__lattice l =
			lat(count, TALLY_PERIOD_MONTH, off_min, false, anchor);

		check_window(l, t, ref_saturate(ref_rolling(&a, count, k, off)),
			     ref_saturate(ref_rolling(&a, count, k + 1, off)));
	}
}

static void
test_brute_month_aligned(void **state)
{
	const int64_t lo = T(INT64_C(-8520336000)); /* 1700-01-01 */
	const int64_t hi = T(INT64_C(8835955200));  /* 2250-01-01 */
	(void)state;

	ref_build();
	/* The table itself against known constants. */
	assert_int_equal(ref_first_day(0), 0);
	assert_int_equal(ref_first_day((2024 - 1970) * 12 + 2) * 86400,
			 D_2024_03_01);
	assert_int_equal(ref_first_day((1900 - 1970) * 12 + 1) * 86400,
			 D_1900_02_01);
	assert_int_equal(ref_first_day((2100 - 1970) * 12 + 2) * 86400,
			 D_2100_03_01);

	for (int iter = 0; iter < 20000; iter++) {
		int64_t count =
			iter % 4 == 0 ? rng_range(1, 600) : rng_range(1, 36);
		int32_t off_min = (int32_t)rng_range(-1439, 1439);
		int64_t off = off_min * MIN;
		int64_t t = rng_range(lo, hi);
		int64_t mi = 0;

		if (iter % 2 == 1) {
			/* Near a month start. */
			t = ref_first_day(ref_split(t + off).mi) * DAY - off +
			    rng_range(-2, 2);
		}
		while (ref_aligned(mi, off) > t)
			mi -= count;
		while (ref_aligned(mi + count, off) <= t)
			mi += count;

		tally__lattice l = lat(count, TALLY_PERIOD_MONTH, off_min, true,
				       rng_any());

		check_window(l, t, ref_saturate(ref_aligned(mi, off)),
			     ref_saturate(ref_aligned(mi + count, off)));
	}
}

/* Fixed and week lattices: exactly one boundary in (t - P, t], on the grid
 * origin + k * P. Checked with 128-bit arithmetic over the whole range. */
static void
test_brute_fixed_week(void **state)
{
	(void)state;

	for (int iter = 0; iter < 200000; iter++) {
		bool week = rng() % 3 == 0;
		bool aligned = rng() % 2 == 0;
		int64_t count;
		i128 p;

		if (week) {
			count = rng() % 4 ? rng_range(1, 5)
					  : rng_range(1, TALLY__WEEK_COUNT_MAX);
			p = (i128)count * WEEK;
		} else {
			int64_t bits = (int64_t)(rng() % 63) + 1;

			count = (int64_t)(rng() >> (64 - bits));
			if (count < 1)
				count = 1;
			p = count;
		}
		int32_t off_min = (int32_t)rng_range(-1439, 1439);
		int64_t anchor = rng() % 8
					 ? rng_any()
					 : (rng() % 2 ? INT64_MIN : INT64_MAX);
		int64_t t = rng() % 8 ? rng_any()
				      : (rng() % 2 ? INT64_MIN : INT64_MAX);
		i128 origin;

		if (!aligned)
			origin = anchor;
		else if (week)
			origin = (i128)D_1970_01_05 * SEC - (i128)off_min * MIN;
		else
			origin = -(i128)off_min * MIN;

		tally__lattice l = lat(
			count, week ? TALLY_PERIOD_WEEK : TALLY_PERIOD_FIXED,
			off_min, aligned, anchor);
		int64_t s, e;

		tally__window(&l, t, &s, &e);

		/* start: on the grid and in (t - p, t]; or INT64_MIN when
		 * that boundary lies below INT64_MIN, which needs t - p to. */
		bool genuine = ((i128)s - origin) % p == 0 && s <= t &&
			       (i128)s > (i128)t - p;
		if (!genuine && !(s == INT64_MIN && (i128)t - p < INT64_MIN))
			fail_msg("iter %d t %" PRId64 " start %" PRId64, iter,
				 t, s);
		/* end: on the grid and in (t, t + p]; or INT64_MAX. */
		genuine = ((i128)e - origin) % p == 0 && e > t &&
			  (i128)e <= (i128)t + p;
		if (!genuine && !(e == INT64_MAX && (i128)t + p > INT64_MAX))
			fail_msg("iter %d t %" PRId64 " end %" PRId64, iter, t,
				 e);
		if (s != INT64_MIN && e != INT64_MAX)
			assert_true((i128)e - s == p);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_valid),
		cmocka_unit_test(test_parse_invalid),
		cmocka_unit_test(test_parse_generated_compounds),
		cmocka_unit_test(test_parse_fuzz),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_format_truncation_and_errors),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_fixed_rolling),
		cmocka_unit_test(test_fixed_aligned_offsets),
		cmocka_unit_test(test_week_aligned),
		cmocka_unit_test(test_week_rolling),
		cmocka_unit_test(test_month_rolling_month_ends),
		cmocka_unit_test(test_month_rolling_feb29),
		cmocka_unit_test(test_month_rolling_offsets),
		cmocka_unit_test(test_month_aligned),
		cmocka_unit_test(test_month_aligned_offsets),
		cmocka_unit_test(test_leap_years),
		cmocka_unit_test(test_missed_windows),
		cmocka_unit_test(test_before_1970),
		cmocka_unit_test(test_none),
		cmocka_unit_test(test_saturation),
		cmocka_unit_test(test_extremes),
		cmocka_unit_test(test_brute_month_rolling),
		cmocka_unit_test(test_brute_month_aligned),
		cmocka_unit_test(test_brute_fixed_week),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
