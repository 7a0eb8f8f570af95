/*
 * Fuzzer of tally_period_parse() and tally_period_format().
 *
 * For every input:
 *  - the input up to its first NUL is a text: the library's parser and a
 *    slow parser written here from tally.h and ARCHITECTURE.md must agree on
 *    accept or reject, on the result code and on the period; a rejected text
 *    leaves *out untouched;
 *  - an accepted period formats to its canonical text (computed here
 *    independently), which parses back to the same period; format returns
 *    the full length for every buffer size from 0 to length + 1, writes
 *    exactly min(length, size - 1) bytes and a NUL into a heap buffer of
 *    exactly `size` bytes (ASan catches one byte too many), and NULL
 *    arguments give EINVAL;
 *  - the first 9 bytes, read as a raw tally_period (count, unit), go through
 *    the same format checks when the period is valid, and must give
 *    EPERIOD when it is not.
 *
 * The grammar, as tally.h states it: the empty text and "none" are no
 * period; otherwise one or more terms "<decimal digits><unit>", units ns us
 * ms s m h d w (fixed lengths) or M Q Y (calendar: 1, 3, 12 months, a term
 * that must stand alone). A lone "Nw" is a WEEK period, w inside a compound
 * is 7 fixed days. Zero, overflowing (beyond int64 nanoseconds, beyond
 * int64 weeks of nanoseconds, beyond 120000 months), unknown or malformed
 * text is EPERIOD. Fixed terms must come in strictly decreasing unit order,
 * each unit at most once ("1h30m", not "30m1h" nor "1h1h"): the library's
 * rule, which tally.h calls "malformed" without spelling it out.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tally.h"
#include "fuzz.h"

__extension__ typedef __int128 i128;

#define TEXT_MAX 4096
#define MONTH_COUNT_MAX 120000
#define NS_WEEK ((i128)7 * 86400 * 1000000000)

static void fail(const char *text, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

static void
fail(const char *text, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "\nfuzz_period: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\ninput text (%zu bytes): \"", strlen(text));
	for (const unsigned char *p = (const unsigned char *)text; *p; p++)
		fprintf(stderr, *p >= 0x20 && *p < 0x7f ? "%c" : "\\x%02x", *p);
	fprintf(stderr, "\"\n");
	abort();
}

/* ------------------------------------------------------------------------ */
/* The slow parser                                                          */
/* ------------------------------------------------------------------------ */

struct unit_def {
	const char *name;
	bool calendar;
	i128 size; /* ns for fixed units, months for calendar ones */
	int order; /* fixed units: larger units have larger order */
};

static const struct unit_def units[] = {
	{"ns", false, 1, 1},
	{"us", false, 1000, 2},
	{"ms", false, 1000000, 3},
	{"s", false, 1000000000, 4},
	{"m", false, (i128)60 * 1000000000, 5},
	{"h", false, (i128)3600 * 1000000000, 6},
	{"d", false, (i128)86400 * 1000000000, 7},
	{"w", false, NS_WEEK, 8},
	{"M", true, 1, 0},
	{"Q", true, 3, 0},
	{"Y", true, 12, 0},
};

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Exact decimal value, or CAP when it exceeds INT64_MAX. */
#define CAP ((i128)INT64_MAX + 1)

static int
slow_parse(const char *text, tally_period *out)
{
	struct {
		i128 n;
		const struct unit_def *u;
	} term[64];
	size_t nterms = 0, i = 0;

	if (text == NULL || out == NULL)
		return TALLY_EINVAL;
	if (strcmp(text, "") == 0 || strcmp(text, "none") == 0) {
		out->count = 0;
		out->unit = TALLY_PERIOD_NONE;
		return TALLY_OK;
	}
	/* Split into terms: a run of digits, then a run of non-digits that
	 * must spell a unit exactly. */
	while (text[i] != '\0') {
		i128 n = 0;
		size_t ustart, ulen;
		const struct unit_def *u = NULL;

		if (!is_digit(text[i]))
			return TALLY_EPERIOD;
		for (; is_digit(text[i]); i++) {
			n = n * 10 + (text[i] - '0');
			if (n > CAP)
				n = CAP;
		}
		ustart = i;
		while (text[i] != '\0' && !is_digit(text[i]))
			i++;
		ulen = i - ustart;
		for (size_t k = 0; k < sizeof units / sizeof units[0]; k++)
			if (strlen(units[k].name) == ulen &&
			    memcmp(units[k].name, text + ustart, ulen) == 0)
				u = &units[k];
		if (u == NULL || nterms == sizeof term / sizeof term[0])
			return TALLY_EPERIOD;
		term[nterms].n = n;
		term[nterms].u = u;
		nterms++;
	}

	/* Calendar: one term alone, 1 to 120000 months. */
	for (size_t k = 0; k < nterms; k++) {
		i128 months;

		if (!term[k].u->calendar)
			continue;
		if (nterms != 1)
			return TALLY_EPERIOD;
		months = term[0].n * term[0].u->size;
		if (months < 1 || months > MONTH_COUNT_MAX)
			return TALLY_EPERIOD;
		out->count = (int64_t)months;
		out->unit = TALLY_PERIOD_MONTH;
		return TALLY_OK;
	}

	/* Fixed: strictly decreasing units; a positive total that fits. */
	{
		i128 total = 0;

		for (size_t k = 0; k < nterms; k++) {
			if (k > 0 && term[k].u->order >= term[k - 1].u->order)
				return TALLY_EPERIOD;
			total += term[k].n * term[k].u->size;
		}
		if (total < 1 || total > INT64_MAX)
			return TALLY_EPERIOD;
		if (nterms == 1 && strcmp(term[0].u->name, "w") == 0) {
			out->count = (int64_t)term[0].n;
			out->unit = TALLY_PERIOD_WEEK;
		} else {
			out->count = (int64_t)total;
			out->unit = TALLY_PERIOD_FIXED;
		}
		return TALLY_OK;
	}
}

/* ------------------------------------------------------------------------ */
/* Validity and the canonical text                                          */
/* ------------------------------------------------------------------------ */

static bool
slow_valid(const tally_period *p)
{
	switch (p->unit) {
	case TALLY_PERIOD_NONE:
		return p->count == 0;
	case TALLY_PERIOD_FIXED:
		return p->count >= 1;
	case TALLY_PERIOD_WEEK:
		return p->count >= 1 && (i128)p->count * NS_WEEK <= INT64_MAX;
	case TALLY_PERIOD_MONTH:
		return p->count >= 1 && p->count <= MONTH_COUNT_MAX;
	}
	return false;
}

/* "none", "Nw", "NY" for whole years else "NM", or the fixed length as
 * d h m s ms us ns terms, largest first, zero terms left out. */
static void
canonical(const tally_period *p, char *buf, size_t size)
{
	static const struct {
		int64_t ns;
		const char *name;
	} fixed[] = {
		{INT64_C(86400000000000), "d"},
		{INT64_C(3600000000000), "h"},
		{INT64_C(60000000000), "m"},
		{INT64_C(1000000000), "s"},
		{INT64_C(1000000), "ms"},
		{INT64_C(1000), "us"},
		{1, "ns"},
	};
	size_t len = 0;
	int64_t rest;

	buf[0] = '\0';
	switch (p->unit) {
	case TALLY_PERIOD_NONE:
		snprintf(buf, size, "none");
		return;
	case TALLY_PERIOD_WEEK:
		snprintf(buf, size, "%" PRId64 "w", p->count);
		return;
	case TALLY_PERIOD_MONTH:
		if (p->count % 12 == 0)
			snprintf(buf, size, "%" PRId64 "Y", p->count / 12);
		else
			snprintf(buf, size, "%" PRId64 "M", p->count);
		return;
	}
	rest = p->count;
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
		int64_t n = rest / fixed[i].ns;

		rest -= n * fixed[i].ns;
		if (n > 0)
			len += (size_t)snprintf(buf + len, size - len,
						"%" PRId64 "%s", n,
						fixed[i].name);
	}
}

/* ------------------------------------------------------------------------ */
/* Checks                                                                   */
/* ------------------------------------------------------------------------ */

static void
check_format(const char *text, const tally_period *p)
{
	char full[TALLY_PERIOD_FORMAT_MAX], want[TALLY_PERIOD_FORMAT_MAX + 64];
	tally_period back = {-5, 99};
	int n, rc;

	memset(full, 'X', sizeof full);
	n = tally_period_format(p, full, sizeof full);
	if (n < 0)
		fail(text, "format(%" PRId64 "/%d) failed: %s", p->count,
		     (int)p->unit, tally_strerror(n));
	if ((size_t)n >= sizeof full || strlen(full) != (size_t)n)
		fail(text, "format(%" PRId64 "/%d) returned %d for \"%s\"",
		     p->count, (int)p->unit, n, full);
	canonical(p, want, sizeof want);
	if (strcmp(full, want) != 0)
		fail(text,
		     "format(%" PRId64 "/%d) gave \"%s\", canonical \"%s\"",
		     p->count, (int)p->unit, full, want);
	rc = tally_period_parse(full, &back);
	if (rc != TALLY_OK || back.count != p->count || back.unit != p->unit)
		fail(text,
		     "\"%s\" parses back to %s %" PRId64 "/%d, not %" PRId64
		     "/%d",
		     full, tally_strerror(rc), back.count, (int)back.unit,
		     p->count, (int)p->unit);

	/* Every size up to one past the need: same length, truncated and
	 * NUL-terminated, not one byte written past size. */
	for (size_t size = 0; size <= (size_t)n + 1; size++) {
		char *buf = size > 0 ? malloc(size) : NULL;
		int m;

		if (size > 0 && buf == NULL)
			abort();
		if (buf != NULL)
			memset(buf, 'X', size);
		m = tally_period_format(p, buf, size);
		if (m != n)
			fail(text, "format with size %zu returned %d, not %d",
			     size, m, n);
		if (size > 0) {
			size_t k = (size_t)n < size - 1 ? (size_t)n : size - 1;

			if (memcmp(buf, full, k) != 0 || buf[k] != '\0')
				fail(text, "format with size %zu: wrong text",
				     size);
		}
		free(buf);
	}
	if (tally_period_format(NULL, full, sizeof full) != TALLY_EINVAL ||
	    tally_period_format(p, NULL, 1) != TALLY_EINVAL)
		fail(text, "format with NULL arguments is not EINVAL");
}

static void
check_text(const char *text)
{
	tally_period lib = {-7, 77}, mine = {-8, 88};
	int lrc = tally_period_parse(text, &lib);
	int mrc = slow_parse(text, &mine);

	if (lrc != mrc)
		fail(text, "parse: library %s, slow parser %s",
		     tally_strerror(lrc), tally_strerror(mrc));
	if (lrc != TALLY_OK) {
		if (lib.count != -7 || lib.unit != 77)
			fail(text, "rejected, yet *out was written");
		return;
	}
	if (lib.count != mine.count || lib.unit != mine.unit)
		fail(text,
		     "parse: library %" PRId64 "/%d, slow parser %" PRId64
		     "/%d",
		     lib.count, (int)lib.unit, mine.count, (int)mine.unit);
	if (tally_period_parse(text, NULL) != TALLY_EINVAL)
		fail(text, "parse with NULL out is not EINVAL");
	check_format(text, &lib);
}

static void
check_raw(const uint8_t *data, size_t size)
{
	tally_period p;
	char buf[TALLY_PERIOD_FORMAT_MAX];
	int rc;

	if (size < 9)
		return;
	memcpy(&p.count, data, sizeof p.count);
	/* Mostly the four units, sometimes anything. */
	p.unit = data[8] < 0xf0 ? (int32_t)(data[8] % 4)
				: (int32_t)data[8] - 0xf4;
	if (data[8] % 4 == TALLY_PERIOD_WEEK && data[8] < 0x80 && p.count > 0)
		p.count %= 20000; /* near the WEEK limit */
	if (data[8] % 4 == TALLY_PERIOD_MONTH && data[8] < 0x80 && p.count > 0)
		p.count %= 130000;
	if (!slow_valid(&p)) {
		rc = tally_period_format(&p, buf, sizeof buf);
		if (rc != TALLY_EPERIOD)
			fail("(raw)",
			     "format(%" PRId64 "/%d) of an invalid "
			     "period returned %d",
			     p.count, (int)p.unit, rc);
		return;
	}
	check_format("(raw)", &p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char text[TEXT_MAX + 1];
	size_t n = size < TEXT_MAX ? size : TEXT_MAX;

	memcpy(text, data, n);
	text[n] = '\0';
	check_text(text);
	if (tally_period_parse(NULL, &(tally_period){0, 0}) != TALLY_EINVAL)
		fail(text, "parse of NULL text is not EINVAL");
	check_raw(data, size);
	return 0;
}
