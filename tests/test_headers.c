/*
 * Unit tests of tally_headers_format(): decisions built by hand, every
 * expected text written out byte for byte. Instants are epoch-second
 * constants computed outside this code (each carries its date).
 *
 * The worked example of ADMISSION.md section 5 is a requests-per-minute
 * limit: its policy's unit is TALLY_UNIT_REQUESTS, so its RateLimit-Policy
 * member carries qu="requests" (the draft's default unit, so a client reads
 * it as ADMISSION.md's `"key-rpm";q=100;w=60`).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "tally.h"

#define MS INT64_C(1000000)
#define SEC INT64_C(1000000000)
#define DAY (86400 * SEC)

/* Epoch seconds (UTC). */
#define S_2026_12_01 INT64_C(1796083200)      /* 2026-12-01 00:00:00 */
#define S_2026_12_03_NOON INT64_C(1796299200) /* 2026-12-03 12:00:00 */
#define S_2027_01_01 INT64_C(1798761600)      /* 2027-01-01 00:00:00 */

/* 2026-12-03 12:00:00 + s seconds + ns, in ns. */
static int64_t
noon(int64_t s, int64_t ns)
{
	return (S_2026_12_03_NOON + s) * SEC + ns;
}

#define OUT_SIZE 4096
static char out[OUT_SIZE];

/* ---- building decisions ------------------------------------------------ */

static tally_counter_report
counter(int64_t max, int64_t used, int64_t held, int64_t start, int64_t end)
{
	tally_counter_report c;
	int64_t left = max - used - held;

	memset(&c, 0, sizeof(c));
	c.max = max;
	c.used = used;
	c.held = held;
	c.remaining = left > 0 ? left : 0;
	c.window_start = start;
	c.window_end = end;
	return c;
}

static tally_counter_report
unlimited(void)
{
	tally_counter_report c = counter(0, 5, 0, 0, INT64_MAX);

	c.flags = TALLY_DECISION_UNLIMITED;
	c.remaining = INT64_MAX;
	return c;
}

static void
deny(tally_counter_report *c, int64_t retry_after)
{
	c->flags |= TALLY_DECISION_DENIED;
	c->retry_after = retry_after;
}

static void
set_budget(tally_decision *d, uint32_t i, tally_counter_report c)
{
	memset(&d->limit[i], 0, sizeof(d->limit[i]));
	d->limit[i].kind = TALLY_KIND_BUDGET;
	c.counter = TALLY_COUNTER_BUDGET;
	d->limit[i].c[0] = c;
	d->limit[i].flags = c.flags;
	if (i >= d->n)
		d->n = i + 1;
}

static void
set_ratelimit(tally_decision *d, uint32_t i, tally_counter_report tokens,
	      tally_counter_report requests)
{
	memset(&d->limit[i], 0, sizeof(d->limit[i]));
	d->limit[i].kind = TALLY_KIND_RATELIMIT;
	tokens.counter = TALLY_COUNTER_TOKENS;
	requests.counter = TALLY_COUNTER_REQUESTS;
	d->limit[i].c[0] = tokens;
	d->limit[i].c[1] = requests;
	d->limit[i].flags = tokens.flags | requests.flags;
	if (i >= d->n)
		d->n = i + 1;
}

/* Mark limit i as refusing the call (the first refusing one names it). */
static void
refuse(tally_decision *d, uint32_t i)
{
	if (d->refused < 0 || (int32_t)i < d->refused)
		d->refused = (int32_t)i;
	d->mask |= 1u << i;
	d->flags |= d->limit[i].flags;
}

static tally_header_policy
policy(const char *name, uint32_t limit, uint32_t counter, uint32_t unit)
{
	tally_header_policy p = {name, limit, counter, unit};

	return p;
}

/*
 * Format into `out` and check the snprintf contract on the way: the
 * length matches the text, and measuring (NULL, 0) gives the same length.
 */
static int
fmt(const tally_decision *d, const tally_header_policy *p, size_t n,
    uint32_t fields)
{
	int rc, measured;

	memset(out, 'Z', sizeof(out));
	rc = tally_headers_format(d, p, n, fields, out, sizeof(out));
	measured = tally_headers_format(d, p, n, fields, NULL, 0);
	assert_int_equal(measured, rc);
	if (rc >= 0) {
		assert_true((size_t)rc < sizeof(out));
		assert_int_equal(strlen(out), (size_t)rc);
	}
	return rc;
}

#define assert_headers(d, p, n, fields, expected)                              \
	do {                                                                   \
		int rc_ = fmt((d), (p), (n), (fields));                        \
		assert_string_equal(out, (expected));                          \
		assert_int_equal(rc_, (int)strlen(expected));                  \
	} while (0)

#define ALL_FIELDS                                                             \
	(TALLY_HEADERS_IETF | TALLY_HEADERS_RETRY_AFTER |                      \
	 TALLY_HEADERS_LEGACY | TALLY_HEADERS_OPENAI)

/* ---- the worked example ------------------------------------------------ */

/* One rate limit: requests 100 per minute (fixed window 12:00:00 to
 * 12:01:00), tokens unlimited. */
static void
rpm_decision(tally_decision *d, int64_t now, int64_t used, int64_t held)
{
	tally_decision init = TALLY_DECISION_INIT;

	*d = init;
	d->now = now;
	set_ratelimit(d, 0, unlimited(),
		      counter(100, used, held, noon(0, 0), noon(60, 0)));
}

static const tally_header_policy rpm = {"key-rpm", 0, TALLY_COUNTER_REQUESTS,
					TALLY_UNIT_REQUESTS};

static void
test_worked_example_pass(void **state)
{
	tally_decision d;

	(void)state;
	/* 12:00:15.250, used + held = 40: 60 left, 44.75 s -> t=45. */
	rpm_decision(&d, noon(15, 250 * MS), 30, 10);
	assert_headers(
		&d, &rpm, 1, TALLY_HEADERS_IETF | TALLY_HEADERS_RETRY_AFTER,
		"RateLimit-Policy: \"key-rpm\";q=100;qu=\"requests\";w=60\r\n"
		"RateLimit: \"key-rpm\";r=60;t=45\r\n");
}

static void
test_worked_example_refused(void **state)
{
	tally_decision d;

	(void)state;
	/* 12:00:50.100, used = 100: refused until the window ends 9.9 s
	 * later -> Retry-After 10, t=10, r=0. */
	rpm_decision(&d, noon(50, 100 * MS), 100, 0);
	deny(&d.limit[0].c[1], noon(60, 0) - noon(50, 100 * MS));
	d.limit[0].flags |= TALLY_DECISION_DENIED;
	refuse(&d, 0);
	assert_headers(
		&d, &rpm, 1, TALLY_HEADERS_IETF | TALLY_HEADERS_RETRY_AFTER,
		"RateLimit-Policy: \"key-rpm\";q=100;qu=\"requests\";w=60\r\n"
		"RateLimit: \"key-rpm\";r=0;t=10\r\n"
		"Retry-After: 10\r\n");
	/* Each field on its own. */
	assert_headers(&d, &rpm, 1, TALLY_HEADERS_RETRY_AFTER,
		       "Retry-After: 10\r\n");
	assert_headers(&d, &rpm, 1, TALLY_HEADERS_LEGACY,
		       "X-RateLimit-Limit: 100\r\n"
		       "X-RateLimit-Remaining: 0\r\n"
		       "X-RateLimit-Reset: 10\r\n");
	assert_headers(&d, &rpm, 1, TALLY_HEADERS_OPENAI,
		       "x-ratelimit-limit-requests: 100\r\n"
		       "x-ratelimit-remaining-requests: 0\r\n"
		       "x-ratelimit-reset-requests: 10s\r\n");
}

/* ---- sliding counters -------------------------------------------------- */

/*
 * A sliding counter of 100 requests per minute (window 12:00:00 to
 * 12:01:00). Passing at 12:00:15.250, it shows the window as a fixed one
 * does (t=45). Refused at 12:00:50.100 with a retry-after of 25.3 s (it
 * passes only in the next window, when the estimate has fallen far
 * enough), its reset is the retry-after, not the window's 9.9 s: t=26 in
 * every family, never a time at which it would be refused again. Refused
 * with a retry-after of 2.5 s (before the window's end), reset 3.
 */
static void
test_sliding_reset_is_retry_after(void **state)
{
	tally_decision d;

	(void)state;
	rpm_decision(&d, noon(15, 250 * MS), 30, 10);
	d.limit[0].c[1].flags |= TALLY_DECISION_SLIDING;
	assert_headers(
		&d, &rpm, 1, TALLY_HEADERS_IETF | TALLY_HEADERS_RETRY_AFTER,
		"RateLimit-Policy: \"key-rpm\";q=100;qu=\"requests\";w=60\r\n"
		"RateLimit: \"key-rpm\";r=60;t=45\r\n");

	rpm_decision(&d, noon(50, 100 * MS), 100, 0);
	d.limit[0].c[1].flags |= TALLY_DECISION_SLIDING;
	deny(&d.limit[0].c[1], 25300 * MS);
	d.limit[0].flags |= TALLY_DECISION_DENIED | TALLY_DECISION_SLIDING;
	refuse(&d, 0);
	assert_headers(&d, &rpm, 1, ALL_FIELDS,
		       "RateLimit-Policy: \"key-rpm\";q=100;qu=\"requests\";"
		       "w=60\r\n"
		       "RateLimit: \"key-rpm\";r=0;t=26\r\n"
		       "Retry-After: 26\r\n"
		       "X-RateLimit-Limit: 100\r\n"
		       "X-RateLimit-Remaining: 0\r\n"
		       "X-RateLimit-Reset: 26\r\n"
		       "x-ratelimit-limit-requests: 100\r\n"
		       "x-ratelimit-remaining-requests: 0\r\n"
		       "x-ratelimit-reset-requests: 26s\r\n");
	/* The same refusal from a fixed window would say t=10. */
	d.limit[0].c[1].flags &= ~TALLY_DECISION_SLIDING;
	assert_headers(&d, &rpm, 1, TALLY_HEADERS_IETF,
		       "RateLimit-Policy: \"key-rpm\";q=100;qu=\"requests\";"
		       "w=60\r\n"
		       "RateLimit: \"key-rpm\";r=0;t=10\r\n");
	d.limit[0].c[1].flags |= TALLY_DECISION_SLIDING;
	d.limit[0].c[1].retry_after = 2500 * MS;
	assert_headers(&d, &rpm, 1,
		       TALLY_HEADERS_IETF | TALLY_HEADERS_LEGACY_EPOCH,
		       "RateLimit-Policy: \"key-rpm\";q=100;qu=\"requests\";"
		       "w=60\r\n"
		       "RateLimit: \"key-rpm\";r=0;t=3\r\n"
		       "X-RateLimit-Limit: 100\r\n"
		       "X-RateLimit-Remaining: 0\r\n"
		       "X-RateLimit-Reset: 1796299253\r\n");
}

/* ---- every family on one decision -------------------------------------- */

/*
 * limit 0: a budget of $50 in micro-dollars per calendar month (December
 * 2026), 12.5 spent; limit 1: a rate limit of 100k tokens (40k used, 10k
 * held) and 60 requests (20 used, 2 held) per minute. Now: 2026-12-03
 * 12:00:15.250.
 */
static void
gateway_decision(tally_decision *d)
{
	tally_decision init = TALLY_DECISION_INIT;

	*d = init;
	d->now = noon(15, 250 * MS);
	set_budget(d, 0,
		   counter(50000000, 12500000, 0, S_2026_12_01 * SEC,
			   S_2027_01_01 * SEC));
	set_ratelimit(d, 1,
		      counter(100000, 40000, 10000, noon(0, 0), noon(60, 0)),
		      counter(60, 20, 2, noon(0, 0), noon(60, 0)));
}

static const tally_header_policy gateway[3] = {
	{"key-tpm", 1, TALLY_COUNTER_TOKENS, TALLY_UNIT_TOKENS},
	{"key-rpm", 1, TALLY_COUNTER_REQUESTS, TALLY_UNIT_REQUESTS},
	{"team-budget", 0, TALLY_COUNTER_BUDGET, TALLY_UNIT_OTHER},
};

/* The month ends 2462384.75 s after now: 2462385. */
#define GATEWAY_ALL                                                            \
	"RateLimit-Policy: \"key-tpm\";q=100000;w=60;tally-qu=\"tokens\", "    \
	"\"key-rpm\";q=60;qu=\"requests\";w=60, "                              \
	"\"team-budget\";q=50000000;w=2678400;tally-qu=\"other\"\r\n"          \
	"RateLimit: \"key-tpm\";r=50000;t=45, \"key-rpm\";r=38;t=45, "         \
	"\"team-budget\";r=37500000;t=2462385\r\n"                             \
	"X-RateLimit-Limit: 60\r\n"                                            \
	"X-RateLimit-Remaining: 38\r\n"                                        \
	"X-RateLimit-Reset: 45\r\n"                                            \
	"x-ratelimit-limit-requests: 60\r\n"                                   \
	"x-ratelimit-limit-tokens: 100000\r\n"                                 \
	"x-ratelimit-remaining-requests: 38\r\n"                               \
	"x-ratelimit-remaining-tokens: 50000\r\n"                              \
	"x-ratelimit-reset-requests: 45s\r\n"                                  \
	"x-ratelimit-reset-tokens: 45s\r\n"

static void
test_all_families(void **state)
{
	tally_decision d;

	(void)state;
	gateway_decision(&d);
	assert_headers(&d, gateway, 3, ALL_FIELDS, GATEWAY_ALL);
	/* The epoch switch changes the legacy reset only. */
	assert_headers(&d, gateway, 3,
		       TALLY_HEADERS_LEGACY | TALLY_HEADERS_LEGACY_EPOCH,
		       "X-RateLimit-Limit: 60\r\n"
		       "X-RateLimit-Remaining: 38\r\n"
		       "X-RateLimit-Reset: 1796299260\r\n");
	/* LEGACY_EPOCH alone means LEGACY with epoch seconds. */
	assert_headers(&d, gateway, 3, TALLY_HEADERS_LEGACY_EPOCH,
		       "X-RateLimit-Limit: 60\r\n"
		       "X-RateLimit-Remaining: 38\r\n"
		       "X-RateLimit-Reset: 1796299260\r\n");
	/* Nothing asked, nothing written. */
	assert_headers(&d, gateway, 3, 0, "");
	/* No policies: no fields, even on a refusal. */
	deny(&d.limit[0].c[0], SEC);
	refuse(&d, 0);
	assert_headers(&d, NULL, 0, ALL_FIELDS, "");
	assert_headers(&d, gateway, 0, ALL_FIELDS, "");
}

/* ---- refusals ---------------------------------------------------------- */

static void
test_refusing_first(void **state)
{
	tally_decision d;

	(void)state;
	/* The budget (the caller's third policy) refuses: it comes first
	 * in both IETF fields and is the legacy fields' policy, though the
	 * requests limit has less left. */
	gateway_decision(&d);
	d.limit[0].c[0].used = 50000000;
	d.limit[0].c[0].remaining = 0;
	deny(&d.limit[0].c[0], S_2027_01_01 * SEC - d.now);
	d.limit[0].flags = d.limit[0].c[0].flags;
	refuse(&d, 0);
	assert_headers(
		&d, gateway, 3, ALL_FIELDS,
		"RateLimit-Policy: "
		"\"team-budget\";q=50000000;w=2678400;tally-qu=\"other\", "
		"\"key-tpm\";q=100000;w=60;tally-qu=\"tokens\", "
		"\"key-rpm\";q=60;qu=\"requests\";w=60\r\n"
		"RateLimit: \"team-budget\";r=0;t=2462385, "
		"\"key-tpm\";r=50000;t=45, \"key-rpm\";r=38;t=45\r\n"
		"Retry-After: 2462385\r\n"
		"X-RateLimit-Limit: 50000000\r\n"
		"X-RateLimit-Remaining: 0\r\n"
		"X-RateLimit-Reset: 2462385\r\n"
		"x-ratelimit-limit-requests: 60\r\n"
		"x-ratelimit-limit-tokens: 100000\r\n"
		"x-ratelimit-remaining-requests: 38\r\n"
		"x-ratelimit-remaining-tokens: 50000\r\n"
		"x-ratelimit-reset-requests: 45s\r\n"
		"x-ratelimit-reset-tokens: 45s\r\n");
}

static void
test_refusing_first_keeps_caller_order(void **state)
{
	tally_decision d;
	tally_header_policy p[3];

	(void)state;
	/* Three budgets a, b, c; the caller passes them a, b, c. */
	{
		tally_decision init = TALLY_DECISION_INIT;
		uint32_t i;

		d = init;
		d.now = noon(0, 0);
		for (i = 0; i < 3; i++)
			set_budget(&d, i,
				   counter(10 * (int64_t)(i + 1), 1, 0,
					   noon(0, 0), noon(3600, 0)));
	}
	p[0] = policy("a", 0, TALLY_COUNTER_BUDGET, TALLY_UNIT_OTHER);
	p[1] = policy("b", 1, TALLY_COUNTER_BUDGET, TALLY_UNIT_OTHER);
	p[2] = policy("c", 2, TALLY_COUNTER_BUDGET, TALLY_UNIT_OTHER);

	/* No refusal: caller order. */
	assert_headers(
		&d, p, 3, TALLY_HEADERS_IETF | TALLY_HEADERS_RETRY_AFTER,
		"RateLimit-Policy: \"a\";q=10;w=3600;tally-qu=\"other\", "
		"\"b\";q=20;w=3600;tally-qu=\"other\", "
		"\"c\";q=30;w=3600;tally-qu=\"other\"\r\n"
		"RateLimit: \"a\";r=9;t=3600, \"b\";r=19;t=3600, "
		"\"c\";r=29;t=3600\r\n");

	/* b refuses: b, a, c. */
	deny(&d.limit[1].c[0], 30 * SEC);
	refuse(&d, 1);
	assert_headers(
		&d, p, 3, TALLY_HEADERS_IETF | TALLY_HEADERS_RETRY_AFTER,
		"RateLimit-Policy: \"b\";q=20;w=3600;tally-qu=\"other\", "
		"\"a\";q=10;w=3600;tally-qu=\"other\", "
		"\"c\";q=30;w=3600;tally-qu=\"other\"\r\n"
		"RateLimit: \"b\";r=0;t=30, \"a\";r=9;t=3600, "
		"\"c\";r=29;t=3600\r\n"
		"Retry-After: 30\r\n");

	/* c refuses too (longer): b, c, a; Retry-After is the largest. */
	deny(&d.limit[2].c[0], 90 * SEC);
	refuse(&d, 2);
	assert_headers(
		&d, p, 3, TALLY_HEADERS_IETF | TALLY_HEADERS_RETRY_AFTER,
		"RateLimit-Policy: \"b\";q=20;w=3600;tally-qu=\"other\", "
		"\"c\";q=30;w=3600;tally-qu=\"other\", "
		"\"a\";q=10;w=3600;tally-qu=\"other\"\r\n"
		"RateLimit: \"b\";r=0;t=30, \"c\";r=0;t=90, "
		"\"a\";r=9;t=3600\r\n"
		"Retry-After: 90\r\n");
	/* The legacy fields describe the first refusing policy. */
	assert_headers(&d, p, 3, TALLY_HEADERS_LEGACY,
		       "X-RateLimit-Limit: 20\r\n"
		       "X-RateLimit-Remaining: 0\r\n"
		       "X-RateLimit-Reset: 3600\r\n");
	/* ... even when a policy before it has nothing left but passes (a
	 * request that costs 0 of it). */
	d.limit[0].c[0].used = 10;
	d.limit[0].c[0].remaining = 0;
	assert_headers(&d, p, 3, TALLY_HEADERS_LEGACY,
		       "X-RateLimit-Limit: 20\r\n"
		       "X-RateLimit-Remaining: 0\r\n"
		       "X-RateLimit-Reset: 3600\r\n");
	assert_headers(&d, p, 1, TALLY_HEADERS_LEGACY,
		       "X-RateLimit-Limit: 10\r\n"
		       "X-RateLimit-Remaining: 0\r\n"
		       "X-RateLimit-Reset: 3600\r\n");
}

static void
test_multiple_refusing_largest_retry_after(void **state)
{
	tally_decision d;

	(void)state;
	/* Tokens refuse for 3 s + 1 ns (holds expire), requests until the
	 * window ends (44.75 s): Retry-After 45; each t is its own. */
	gateway_decision(&d);
	deny(&d.limit[1].c[0], 3 * SEC + 1);
	deny(&d.limit[1].c[1], noon(60, 0) - d.now);
	d.limit[1].flags |= TALLY_DECISION_DENIED;
	refuse(&d, 1);
	assert_headers(
		&d, gateway, 3, TALLY_HEADERS_IETF | TALLY_HEADERS_RETRY_AFTER,
		"RateLimit-Policy: "
		"\"key-tpm\";q=100000;w=60;tally-qu=\"tokens\", "
		"\"key-rpm\";q=60;qu=\"requests\";w=60, "
		"\"team-budget\";q=50000000;w=2678400;tally-qu=\"other\"\r\n"
		"RateLimit: \"key-tpm\";r=0;t=4, \"key-rpm\";r=0;t=45, "
		"\"team-budget\";r=37500000;t=2462385\r\n"
		"Retry-After: 45\r\n");
	/* OpenAI: each unit's refusing policy, remaining 0. */
	assert_headers(&d, gateway, 3, TALLY_HEADERS_OPENAI,
		       "x-ratelimit-limit-requests: 60\r\n"
		       "x-ratelimit-limit-tokens: 100000\r\n"
		       "x-ratelimit-remaining-requests: 0\r\n"
		       "x-ratelimit-remaining-tokens: 0\r\n"
		       "x-ratelimit-reset-requests: 45s\r\n"
		       "x-ratelimit-reset-tokens: 45s\r\n");
	/* Only the policies given count: without key-rpm, 4 s. */
	assert_headers(&d, gateway, 1, TALLY_HEADERS_RETRY_AFTER,
		       "Retry-After: 4\r\n");
}

static void
test_never_no_retry_after(void **state)
{
	tally_decision d;

	(void)state;
	/* Requests refuse for 10 s, tokens never (RETRY_NEVER): no
	 * Retry-After at all; tokens' t is its window's. */
	gateway_decision(&d);
	deny(&d.limit[1].c[0], TALLY_RETRY_NEVER);
	deny(&d.limit[1].c[1], 10 * SEC);
	d.limit[1].flags |= TALLY_DECISION_DENIED;
	refuse(&d, 1);
	assert_headers(
		&d, gateway, 2, TALLY_HEADERS_IETF | TALLY_HEADERS_RETRY_AFTER,
		"RateLimit-Policy: "
		"\"key-tpm\";q=100000;w=60;tally-qu=\"tokens\", "
		"\"key-rpm\";q=60;qu=\"requests\";w=60\r\n"
		"RateLimit: \"key-tpm\";r=0;t=45, \"key-rpm\";r=0;t=10\r\n");
	assert_headers(&d, gateway, 2, TALLY_HEADERS_RETRY_AFTER, "");
	/* Without the never-passing policy, Retry-After is back. */
	assert_headers(&d, gateway + 1, 1, TALLY_HEADERS_RETRY_AFTER,
		       "Retry-After: 10\r\n");

	/* TOO_BIG (even with a finite retry_after) is never, too. */
	gateway_decision(&d);
	deny(&d.limit[1].c[0], 5 * SEC);
	d.limit[1].c[0].flags |= TALLY_DECISION_TOO_BIG;
	d.limit[1].flags |= d.limit[1].c[0].flags;
	refuse(&d, 1);
	assert_headers(&d, gateway, 3,
		       TALLY_HEADERS_RETRY_AFTER | TALLY_HEADERS_LEGACY,
		       "X-RateLimit-Limit: 100000\r\n"
		       "X-RateLimit-Remaining: 0\r\n"
		       "X-RateLimit-Reset: 45\r\n");
	assert_headers(&d, gateway, 1, TALLY_HEADERS_IETF,
		       "RateLimit-Policy: "
		       "\"key-tpm\";q=100000;w=60;tally-qu=\"tokens\"\r\n"
		       "RateLimit: \"key-tpm\";r=0;t=45\r\n");
}

static void
test_retry_after_needs_a_refusal(void **state)
{
	tally_decision d;

	(void)state;
	/* A DENIED counter in a decision that refused nothing (built by
	 * hand): r=0 and first, but no Retry-After. */
	gateway_decision(&d);
	deny(&d.limit[0].c[0], 10 * SEC);
	assert_int_equal(d.refused, -1);
	assert_headers(&d, gateway, 3, TALLY_HEADERS_RETRY_AFTER, "");
	/* A refusal whose refusing limit is not among the policies. */
	refuse(&d, 0);
	assert_headers(&d, gateway, 2, TALLY_HEADERS_RETRY_AFTER, "");
	assert_headers(&d, gateway + 2, 1, TALLY_HEADERS_RETRY_AFTER,
		       "Retry-After: 10\r\n");
	/* A refusal by a missing record (GONE, no DENIED counter). */
	gateway_decision(&d);
	d.limit[0].flags = TALLY_DECISION_GONE;
	refuse(&d, 0);
	assert_headers(&d, gateway, 3,
		       TALLY_HEADERS_RETRY_AFTER | TALLY_HEADERS_LEGACY,
		       "X-RateLimit-Limit: 60\r\n"
		       "X-RateLimit-Remaining: 38\r\n"
		       "X-RateLimit-Reset: 45\r\n");
}

/* ---- rounding ---------------------------------------------------------- */

/* One requests counter, max 10, 4 left, window [start, end), at now. */
static void
window_decision(tally_decision *d, int64_t now, int64_t start, int64_t end)
{
	tally_decision init = TALLY_DECISION_INIT;

	*d = init;
	d->now = now;
	set_ratelimit(d, 0, unlimited(), counter(10, 6, 0, start, end));
}

static void
test_ceil_at_ns(void **state)
{
	tally_decision d;

	(void)state;
	/* Exactly 45 s left, a 60 s window. */
	window_decision(&d, noon(15, 0), noon(0, 0), noon(60, 0));
	assert_headers(
		&d, &rpm, 1, TALLY_HEADERS_IETF | TALLY_HEADERS_LEGACY,
		"RateLimit-Policy: \"key-rpm\";q=10;qu=\"requests\";w=60\r\n"
		"RateLimit: \"key-rpm\";r=4;t=45\r\n"
		"X-RateLimit-Limit: 10\r\n"
		"X-RateLimit-Remaining: 4\r\n"
		"X-RateLimit-Reset: 45\r\n");
	/* 1 ns more of window and of time left: 61 and 46. */
	window_decision(&d, noon(15, 0) - 1, noon(0, 0) - 1, noon(60, 0));
	assert_headers(
		&d, &rpm, 1, TALLY_HEADERS_IETF | TALLY_HEADERS_LEGACY,
		"RateLimit-Policy: \"key-rpm\";q=10;qu=\"requests\";w=61\r\n"
		"RateLimit: \"key-rpm\";r=4;t=46\r\n"
		"X-RateLimit-Limit: 10\r\n"
		"X-RateLimit-Remaining: 4\r\n"
		"X-RateLimit-Reset: 46\r\n");
	/* 1 ns left: 1 s, and the epoch reset rounds the end up. */
	window_decision(&d, noon(60, 0) - 1, noon(0, 0), noon(60, 0) + 1);
	assert_headers(
		&d, &rpm, 1, TALLY_HEADERS_IETF | TALLY_HEADERS_LEGACY_EPOCH,
		"RateLimit-Policy: \"key-rpm\";q=10;qu=\"requests\";w=61\r\n"
		"RateLimit: \"key-rpm\";r=4;t=1\r\n"
		"X-RateLimit-Limit: 10\r\n"
		"X-RateLimit-Remaining: 4\r\n"
		"X-RateLimit-Reset: 1796299261\r\n");
	/* A window that is due: t=0 and reset 0 (not refusing). */
	window_decision(&d, noon(61, 0), noon(0, 0), noon(60, 0));
	assert_headers(
		&d, &rpm, 1, TALLY_HEADERS_IETF | TALLY_HEADERS_LEGACY,
		"RateLimit-Policy: \"key-rpm\";q=10;qu=\"requests\";w=60\r\n"
		"RateLimit: \"key-rpm\";r=4;t=0\r\n"
		"X-RateLimit-Limit: 10\r\n"
		"X-RateLimit-Remaining: 4\r\n"
		"X-RateLimit-Reset: 0\r\n");
	/* ... but a refusing counter never says 0 (retry_after 0). */
	deny(&d.limit[0].c[1], 0);
	refuse(&d, 0);
	assert_headers(
		&d, &rpm, 1,
		TALLY_HEADERS_IETF | TALLY_HEADERS_RETRY_AFTER |
			TALLY_HEADERS_LEGACY | TALLY_HEADERS_OPENAI,
		"RateLimit-Policy: \"key-rpm\";q=10;qu=\"requests\";w=60\r\n"
		"RateLimit: \"key-rpm\";r=0;t=1\r\n"
		"Retry-After: 1\r\n"
		"X-RateLimit-Limit: 10\r\n"
		"X-RateLimit-Remaining: 0\r\n"
		"X-RateLimit-Reset: 1\r\n"
		"x-ratelimit-limit-requests: 10\r\n"
		"x-ratelimit-remaining-requests: 0\r\n"
		"x-ratelimit-reset-requests: 1ms\r\n");
	/* A zero-length window has no w. */
	window_decision(&d, noon(0, 0), noon(60, 0), noon(60, 0));
	assert_headers(&d, &rpm, 1, TALLY_HEADERS_IETF,
		       "RateLimit-Policy: \"key-rpm\";q=10;qu=\"requests\"\r\n"
		       "RateLimit: \"key-rpm\";r=4;t=60\r\n");
}

static void
test_retry_after_rounding(void **state)
{
	static const struct {
		int64_t retry_after;
		const char *expected;
	} cases[] = {
		{-5 * SEC, "Retry-After: 1\r\n"},
		{0, "Retry-After: 1\r\n"},
		{1, "Retry-After: 1\r\n"},
		{SEC, "Retry-After: 1\r\n"},
		{SEC + 1, "Retry-After: 2\r\n"},
		{10 * SEC, "Retry-After: 10\r\n"},
		{10 * SEC + 1, "Retry-After: 11\r\n"},
		{INT64_MAX - 1, "Retry-After: 9223372037\r\n"},
		{INT64_MAX, ""}, /* TALLY_RETRY_NEVER */
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tally_decision d;

		window_decision(&d, noon(0, 0), noon(0, 0), noon(60, 0));
		deny(&d.limit[0].c[1], cases[i].retry_after);
		refuse(&d, 0);
		assert_headers(&d, &rpm, 1, TALLY_HEADERS_RETRY_AFTER,
			       cases[i].expected);
	}
}

static void
test_openai_durations(void **state)
{
	static const struct {
		int64_t left;
		const char *expected;
	} cases[] = {
		{-SEC, "0s"},
		{0, "0s"},
		{1, "1ms"},
		{MS, "1ms"},
		{MS + 1, "2ms"},
		{12 * MS, "12ms"},
		{999 * MS, "999ms"},
		{999 * MS + 1, "1s"},
		{SEC, "1s"},
		{SEC + 1, "2s"},
		{45 * SEC, "45s"},
		{59 * SEC, "59s"},
		{59 * SEC + 1, "1m0s"},
		{60 * SEC, "1m0s"},
		{360 * SEC, "6m0s"},
		{3599 * SEC, "59m59s"},
		{3599 * SEC + 1, "1h0m0s"},
		{3600 * SEC, "1h0m0s"},
		{3600 * SEC + 1, "1h0m1s"},
		{3723 * SEC, "1h2m3s"},
		{2 * DAY, "48h0m0s"},
		{2 * DAY + 1, "48h0m1s"},
		{365 * DAY + 61 * SEC, "8760h1m1s"},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tally_decision d;
		char expected[256];

		window_decision(&d, noon(0, 0), noon(0, 0) - 3 * DAY,
				noon(0, 0) + cases[i].left);
		strcpy(expected, "x-ratelimit-limit-requests: 10\r\n"
				 "x-ratelimit-remaining-requests: 4\r\n"
				 "x-ratelimit-reset-requests: ");
		strcat(expected, cases[i].expected);
		strcat(expected, "\r\n");
		assert_headers(&d, &rpm, 1, TALLY_HEADERS_OPENAI, expected);
	}
}

/* ---- extremes ---------------------------------------------------------- */

static void
test_int64_extremes(void **state)
{
	tally_decision d;
	tally_decision init = TALLY_DECISION_INIT;
	tally_header_policy p =
		policy("huge", 0, TALLY_COUNTER_TOKENS, TALLY_UNIT_TOKENS);

	(void)state;
	/* The whole int64 range: 2^64 - 2 ns is 18446744074 s rounded up;
	 * q and r are clamped to the largest sf-integer, the plain fields
	 * print every digit. */
	d = init;
	d.now = INT64_MIN;
	set_ratelimit(&d, 0, counter(INT64_MAX, 0, 0, INT64_MIN, INT64_MAX - 1),
		      unlimited());
	assert_headers(&d, &p, 1,
		       TALLY_HEADERS_IETF | TALLY_HEADERS_LEGACY |
			       TALLY_HEADERS_OPENAI,
		       "RateLimit-Policy: \"huge\";q=999999999999999;"
		       "w=18446744074;tally-qu=\"tokens\"\r\n"
		       "RateLimit: \"huge\";r=999999999999999;t=18446744074\r\n"
		       "X-RateLimit-Limit: 9223372036854775807\r\n"
		       "X-RateLimit-Remaining: 9223372036854775807\r\n"
		       "X-RateLimit-Reset: 18446744074\r\n"
		       "x-ratelimit-limit-tokens: 9223372036854775807\r\n"
		       "x-ratelimit-remaining-tokens: 9223372036854775807\r\n"
		       "x-ratelimit-reset-tokens: 5124095h34m34s\r\n");
	assert_headers(&d, &p, 1, TALLY_HEADERS_LEGACY_EPOCH,
		       "X-RateLimit-Limit: 9223372036854775807\r\n"
		       "X-RateLimit-Remaining: 9223372036854775807\r\n"
		       "X-RateLimit-Reset: 9223372037\r\n");
	/* Just under the sf bound, nothing is clamped. */
	d.limit[0].c[0].max = 999999999999999;
	d.limit[0].c[0].remaining = 999999999999998;
	assert_headers(
		&d, &p, 1, TALLY_HEADERS_IETF,
		"RateLimit-Policy: \"huge\";q=999999999999999;"
		"w=18446744074;tally-qu=\"tokens\"\r\n"
		"RateLimit: \"huge\";r=999999999999998;t=18446744074\r\n");
	/* Before the epoch: epoch seconds clamp at 0; negative counts
	 * (never produced by the library) print as 0. */
	d.now = -10 * SEC;
	d.limit[0].c[0] = counter(5, 9, 0, -20 * SEC, -5 * SEC);
	d.limit[0].c[0].max = -1;
	d.limit[0].c[0].remaining = -3;
	assert_headers(&d, &p, 1,
		       TALLY_HEADERS_LEGACY | TALLY_HEADERS_LEGACY_EPOCH,
		       "X-RateLimit-Limit: 0\r\n"
		       "X-RateLimit-Remaining: 0\r\n"
		       "X-RateLimit-Reset: 0\r\n");
	assert_headers(&d, &p, 1, TALLY_HEADERS_LEGACY,
		       "X-RateLimit-Limit: 0\r\n"
		       "X-RateLimit-Remaining: 0\r\n"
		       "X-RateLimit-Reset: 5\r\n");
}

static void
test_never_resets(void **state)
{
	tally_decision d;
	tally_decision init = TALLY_DECISION_INIT;
	tally_header_policy p[2];

	(void)state;
	/* A lifetime budget (window_end INT64_MAX): no w, no t, no reset. */
	d = init;
	d.now = noon(0, 0);
	set_budget(&d, 0, counter(1000, 10, 0, INT64_MIN, INT64_MAX));
	p[0] = policy("lifetime", 0, TALLY_COUNTER_BUDGET, TALLY_UNIT_OTHER);
	p[1] = policy("lifetime-tokens", 0, TALLY_COUNTER_BUDGET,
		      TALLY_UNIT_TOKENS);
	assert_headers(
		&d, p, 2, ALL_FIELDS,
		"RateLimit-Policy: \"lifetime\";q=1000;tally-qu=\"other\", "
		"\"lifetime-tokens\";q=1000;tally-qu=\"tokens\"\r\n"
		"RateLimit: \"lifetime\";r=990, \"lifetime-tokens\";r=990\r\n"
		"X-RateLimit-Limit: 1000\r\n"
		"X-RateLimit-Remaining: 990\r\n"
		"x-ratelimit-limit-tokens: 1000\r\n"
		"x-ratelimit-remaining-tokens: 990\r\n");
	/* Spent for good: r=0, no t, no Retry-After. */
	d.limit[0].c[0].used = 1000;
	d.limit[0].c[0].remaining = 0;
	deny(&d.limit[0].c[0], TALLY_RETRY_NEVER);
	refuse(&d, 0);
	assert_headers(
		&d, p, 1, ALL_FIELDS,
		"RateLimit-Policy: \"lifetime\";q=1000;tally-qu=\"other\"\r\n"
		"RateLimit: \"lifetime\";r=0\r\n"
		"X-RateLimit-Limit: 1000\r\n"
		"X-RateLimit-Remaining: 0\r\n");
	/* Full only because of holds that expire in 2.5 s: t is that. */
	d.limit[0].c[0].retry_after = 2500 * MS;
	assert_headers(
		&d, p, 1, TALLY_HEADERS_IETF | TALLY_HEADERS_RETRY_AFTER,
		"RateLimit-Policy: \"lifetime\";q=1000;tally-qu=\"other\"\r\n"
		"RateLimit: \"lifetime\";r=0;t=3\r\n"
		"Retry-After: 3\r\n");
}

static void
test_concurrency(void **state)
{
	tally_decision d;
	tally_header_policy p = policy("inflight", 0, TALLY_COUNTER_REQUESTS,
				       TALLY_UNIT_CONCURRENT_REQUESTS);

	(void)state;
	/* 8 in flight at most, 5 held: no window to speak of. */
	window_decision(&d, noon(15, 0), noon(0, 0), noon(60, 0));
	d.limit[0].c[1] = counter(8, 0, 5, noon(0, 0), noon(60, 0));
	assert_headers(&d, &p, 1, ALL_FIELDS,
		       "RateLimit-Policy: \"inflight\";q=8;"
		       "qu=\"concurrent-requests\"\r\n"
		       "RateLimit: \"inflight\";r=3\r\n"
		       "X-RateLimit-Limit: 8\r\n"
		       "X-RateLimit-Remaining: 3\r\n");
	/* Full: refused until a hold expires in 2.5 s. */
	d.limit[0].c[1] = counter(8, 0, 8, noon(0, 0), noon(60, 0));
	deny(&d.limit[0].c[1], 2500 * MS);
	refuse(&d, 0);
	assert_headers(&d, &p, 1, ALL_FIELDS,
		       "RateLimit-Policy: \"inflight\";q=8;"
		       "qu=\"concurrent-requests\"\r\n"
		       "RateLimit: \"inflight\";r=0;t=3\r\n"
		       "Retry-After: 3\r\n"
		       "X-RateLimit-Limit: 8\r\n"
		       "X-RateLimit-Remaining: 0\r\n");
}

/* ---- selection --------------------------------------------------------- */

static void
test_legacy_and_openai_selection(void **state)
{
	tally_decision d;
	tally_decision init = TALLY_DECISION_INIT;
	tally_header_policy p[5];

	(void)state;
	/* limit 0: 60 rpm (5 left) and 100k tpm; limit 1: 1000 requests
	 * per day (5 left, a tie) and 2M tokens per day (1500 left). */
	d = init;
	d.now = noon(30, 0);
	set_ratelimit(&d, 0, counter(100000, 1000, 0, noon(0, 0), noon(60, 0)),
		      counter(60, 55, 0, noon(0, 0), noon(60, 0)));
	set_ratelimit(
		&d, 1,
		counter(2000000, 1998500, 0, noon(-43200, 0), noon(43200, 0)),
		counter(1000, 995, 0, noon(-43200, 0), noon(43200, 0)));
	p[0] = policy("rpd", 1, TALLY_COUNTER_REQUESTS, TALLY_UNIT_REQUESTS);
	p[1] = policy("rpm", 0, TALLY_COUNTER_REQUESTS, TALLY_UNIT_REQUESTS);
	p[2] = policy("tpm", 0, TALLY_COUNTER_TOKENS, TALLY_UNIT_TOKENS);
	p[3] = policy("tpd", 1, TALLY_COUNTER_TOKENS, TALLY_UNIT_TOKENS);
	p[4] = policy("inflight", 1, TALLY_COUNTER_REQUESTS,
		      TALLY_UNIT_CONCURRENT_REQUESTS);
	/* Smallest remaining, the first of a tie: rpd (5) before rpm (5);
	 * tokens: tpd (1500). */
	assert_headers(&d, p, 4, TALLY_HEADERS_LEGACY | TALLY_HEADERS_OPENAI,
		       "X-RateLimit-Limit: 1000\r\n"
		       "X-RateLimit-Remaining: 5\r\n"
		       "X-RateLimit-Reset: 43170\r\n"
		       "x-ratelimit-limit-requests: 1000\r\n"
		       "x-ratelimit-limit-tokens: 2000000\r\n"
		       "x-ratelimit-remaining-requests: 5\r\n"
		       "x-ratelimit-remaining-tokens: 1500\r\n"
		       "x-ratelimit-reset-requests: 11h59m30s\r\n"
		       "x-ratelimit-reset-tokens: 11h59m30s\r\n");
	/* The other order: rpm first. */
	assert_headers(&d, p + 1, 1, TALLY_HEADERS_LEGACY,
		       "X-RateLimit-Limit: 60\r\n"
		       "X-RateLimit-Remaining: 5\r\n"
		       "X-RateLimit-Reset: 30\r\n");
	{
		tally_header_policy q[2] = {p[1], p[0]};

		assert_headers(&d, q, 2, TALLY_HEADERS_LEGACY,
			       "X-RateLimit-Limit: 60\r\n"
			       "X-RateLimit-Remaining: 5\r\n"
			       "X-RateLimit-Reset: 30\r\n");
	}
	/* The tokens per minute refuse: they win the legacy fields and the
	 * tokens fields, though 98999 are left by count. */
	deny(&d.limit[0].c[0], 30 * SEC);
	d.limit[0].flags |= TALLY_DECISION_DENIED;
	refuse(&d, 0);
	assert_headers(&d, p, 4, TALLY_HEADERS_LEGACY | TALLY_HEADERS_OPENAI,
		       "X-RateLimit-Limit: 100000\r\n"
		       "X-RateLimit-Remaining: 0\r\n"
		       "X-RateLimit-Reset: 30\r\n"
		       "x-ratelimit-limit-requests: 1000\r\n"
		       "x-ratelimit-limit-tokens: 100000\r\n"
		       "x-ratelimit-remaining-requests: 5\r\n"
		       "x-ratelimit-remaining-tokens: 0\r\n"
		       "x-ratelimit-reset-requests: 11h59m30s\r\n"
		       "x-ratelimit-reset-tokens: 30s\r\n");
	/* Only tokens present: only the tokens fields. Concurrent requests
	 * never feed the -requests fields. */
	{
		tally_header_policy q[2] = {p[4], p[3]};

		assert_headers(&d, q, 2, TALLY_HEADERS_OPENAI,
			       "x-ratelimit-limit-tokens: 2000000\r\n"
			       "x-ratelimit-remaining-tokens: 1500\r\n"
			       "x-ratelimit-reset-tokens: 11h59m30s\r\n");
		assert_headers(&d, q, 1, TALLY_HEADERS_OPENAI, "");
	}
}

/* ---- skipped policies -------------------------------------------------- */

static void
test_skipped_policies(void **state)
{
	tally_decision d;
	tally_header_policy p[4];

	(void)state;
	/* limit 0: tokens unlimited, requests limited; limit 1 was not
	 * reached (kind 0); limit 2 is GONE. */
	window_decision(&d, noon(15, 0), noon(0, 0), noon(60, 0));
	d.n = 3;
	d.limit[2].kind = TALLY_KIND_BUDGET;
	d.limit[2].flags = TALLY_DECISION_GONE;
	p[0] = policy("tpm", 0, TALLY_COUNTER_TOKENS, TALLY_UNIT_TOKENS);
	p[1] = policy("later", 1, TALLY_COUNTER_BUDGET, TALLY_UNIT_OTHER);
	p[2] = policy("gone", 2, TALLY_COUNTER_BUDGET, TALLY_UNIT_OTHER);
	p[3] = policy("rpm", 0, TALLY_COUNTER_REQUESTS, TALLY_UNIT_REQUESTS);
	assert_headers(&d, p, 4, ALL_FIELDS,
		       "RateLimit-Policy: \"rpm\";q=10;qu=\"requests\";w=60\r\n"
		       "RateLimit: \"rpm\";r=4;t=45\r\n"
		       "X-RateLimit-Limit: 10\r\n"
		       "X-RateLimit-Remaining: 4\r\n"
		       "X-RateLimit-Reset: 45\r\n"
		       "x-ratelimit-limit-requests: 10\r\n"
		       "x-ratelimit-remaining-requests: 4\r\n"
		       "x-ratelimit-reset-requests: 45s\r\n");
	/* Nothing left to describe: no field at all, not an empty one. */
	assert_headers(&d, p, 3, ALL_FIELDS, "");
	/* A GONE counter (flag on the counter only) is skipped too. */
	d.limit[0].c[1].flags = TALLY_DECISION_GONE;
	assert_headers(&d, p + 3, 1, ALL_FIELDS, "");
}

/* ---- names ------------------------------------------------------------- */

static void
test_sf_string_names(void **state)
{
	tally_decision d;
	tally_header_policy p[3];

	(void)state;
	window_decision(&d, noon(15, 0), noon(0, 0), noon(60, 0));
	p[0] = policy("say \"hi\" \\o/", 0, TALLY_COUNTER_REQUESTS,
		      TALLY_UNIT_REQUESTS);
	p[1] = policy("", 0, TALLY_COUNTER_REQUESTS, TALLY_UNIT_REQUESTS);
	p[2] = policy(" !~,;=", 0, TALLY_COUNTER_REQUESTS, TALLY_UNIT_REQUESTS);
	assert_headers(&d, p, 3, TALLY_HEADERS_IETF,
		       "RateLimit-Policy: "
		       "\"say \\\"hi\\\" \\\\o/\";q=10;qu=\"requests\";w=60, "
		       "\"\";q=10;qu=\"requests\";w=60, "
		       "\" !~,;=\";q=10;qu=\"requests\";w=60\r\n"
		       "RateLimit: \"say \\\"hi\\\" \\\\o/\";r=4;t=45, "
		       "\"\";r=4;t=45, \" !~,;=\";r=4;t=45\r\n");
	p[0] = policy("\\", 0, TALLY_COUNTER_REQUESTS, TALLY_UNIT_REQUESTS);
	assert_headers(
		&d, p, 1, TALLY_HEADERS_IETF,
		"RateLimit-Policy: \"\\\\\";q=10;qu=\"requests\";w=60\r\n"
		"RateLimit: \"\\\\\";r=4;t=45\r\n");
}

/* ---- buffer ------------------------------------------------------------ */

static void
test_truncation(void **state)
{
	tally_decision d;
	char buf[sizeof(GATEWAY_ALL) + 8];
	const size_t len = sizeof(GATEWAY_ALL) - 1;
	size_t size, i;

	(void)state;
	gateway_decision(&d);
	assert_int_equal(
		tally_headers_format(&d, gateway, 3, ALL_FIELDS, NULL, 0),
		(int)len);
	/* size 0 with a buffer: measured, nothing written. */
	memset(buf, 'Z', sizeof(buf));
	assert_int_equal(
		tally_headers_format(&d, gateway, 3, ALL_FIELDS, buf, 0),
		(int)len);
	for (i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 'Z');
	/* Every size: the full length, the prefix that fits, a NUL, and
	 * nothing past the size. */
	for (size = 1; size <= sizeof(buf); size++) {
		size_t kept = size - 1 < len ? size - 1 : len;

		memset(buf, 'Z', sizeof(buf));
		assert_int_equal(tally_headers_format(&d, gateway, 3,
						      ALL_FIELDS, buf, size),
				 (int)len);
		assert_memory_equal(buf, GATEWAY_ALL, kept);
		assert_int_equal(buf[kept], '\0');
		for (i = kept + 1; i < sizeof(buf); i++)
			assert_int_equal(buf[i], 'Z');
	}
}

/* ---- errors ------------------------------------------------------------ */

/* TALLY_EINVAL, and the buffer holds "" with nothing else written. */
static void
assert_einval(const tally_decision *d, const tally_header_policy *p, size_t n,
	      uint32_t fields)
{
	size_t i;

	memset(out, 'Z', sizeof(out));
	assert_int_equal(
		tally_headers_format(d, p, n, fields, out, sizeof(out)),
		TALLY_EINVAL);
	assert_int_equal(out[0], '\0');
	for (i = 1; i < sizeof(out); i++)
		assert_int_equal(out[i], 'Z');
	assert_int_equal(tally_headers_format(d, p, n, fields, NULL, 0),
			 TALLY_EINVAL);
}

static void
test_einval(void **state)
{
	tally_decision d;
	tally_header_policy p[2];
	static const char *const bad_names[] = {
		"tab\there", "new\nline", "cr\r",
		"del\x7f",   "\x80",      "caf\xc3\xa9",
	};
	size_t i;

	(void)state;
	gateway_decision(&d);

	/* The decision. */
	assert_einval(NULL, gateway, 3, ALL_FIELDS);
	d.size = sizeof(d) - 1;
	assert_einval(&d, gateway, 3, ALL_FIELDS);
	d.size = 0;
	assert_einval(&d, gateway, 3, ALL_FIELDS);
	d.size = sizeof(d);
	d.n = TALLY_ADMIT_MAX + 1;
	assert_einval(&d, gateway, 3, ALL_FIELDS);
	d.n = 2;
	d.limit[1].kind = 3;
	assert_einval(&d, gateway, 3, ALL_FIELDS);
	d.limit[1].kind = TALLY_KIND_RATELIMIT;
	assert_int_equal(fmt(&d, gateway, 3, ALL_FIELDS),
			 (int)strlen(GATEWAY_ALL));

	/* The policies. */
	assert_einval(&d, NULL, 1, ALL_FIELDS);
	p[0] = gateway[0];
	p[1] = gateway[1];
	p[1].limit = 2; /* == n */
	assert_einval(&d, p, 2, ALL_FIELDS);
	p[1].limit = TALLY_ADMIT_MAX;
	assert_einval(&d, p, 2, ALL_FIELDS);
	p[1].limit = UINT32_MAX;
	assert_einval(&d, p, 2, ALL_FIELDS);
	/* Counters: budget takes BUDGET only, a rate limit TOKENS or
	 * REQUESTS; a limit not reached still checks the name. */
	p[1] = policy("x", 0, TALLY_COUNTER_TOKENS, TALLY_UNIT_TOKENS);
	assert_einval(&d, p, 2, ALL_FIELDS);
	p[1].counter = TALLY_COUNTER_REQUESTS;
	assert_einval(&d, p, 2, ALL_FIELDS);
	p[1] = policy("x", 1, TALLY_COUNTER_BUDGET, TALLY_UNIT_OTHER);
	assert_einval(&d, p, 2, ALL_FIELDS);
	p[1].counter = TALLY_COUNTER_BOTH;
	assert_einval(&d, p, 2, ALL_FIELDS);
	p[1].counter = 7;
	assert_einval(&d, p, 2, ALL_FIELDS);
	d.limit[1].kind = 0;
	assert_einval(&d, p, 2, ALL_FIELDS);
	p[1].counter = TALLY_COUNTER_TOKENS;
	assert_int_equal(fmt(&d, p, 2, ALL_FIELDS), (int)strlen(out));
	d.limit[1].kind = TALLY_KIND_RATELIMIT;
	/* Units. */
	p[1] = gateway[1];
	p[1].unit = TALLY_UNIT_TOKENS + 1;
	assert_einval(&d, p, 2, ALL_FIELDS);
	p[1].unit = UINT32_MAX;
	assert_einval(&d, p, 2, ALL_FIELDS);
	/* Names, even those of skipped policies. */
	p[1] = gateway[1];
	p[1].name = NULL;
	assert_einval(&d, p, 2, ALL_FIELDS);
	for (i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		p[1].name = bad_names[i];
		assert_einval(&d, p, 2, ALL_FIELDS);
	}
	d.limit[1].c[1].flags = TALLY_DECISION_UNLIMITED;
	assert_einval(&d, p, 2, ALL_FIELDS);
	d.limit[1].c[1].flags = 0;

	/* Fields: every unknown bit. */
	for (i = 5; i < 32; i++)
		assert_einval(&d, gateway, 3, ALL_FIELDS | (UINT32_C(1) << i));
	/* Errors are found before anything is written, whatever fields. */
	p[1].name = "bad\x01";
	assert_einval(&d, p, 2, 0);

	/* The buffer: NULL with a size cannot even be cleared. */
	assert_int_equal(
		tally_headers_format(&d, gateway, 3, ALL_FIELDS, NULL, 1),
		TALLY_EINVAL);
	assert_int_equal(tally_headers_format(NULL, NULL, 0, 0, NULL, 16),
			 TALLY_EINVAL);

	/* A larger size (a later layout) is accepted. */
	d.size = sizeof(d) + 64;
	assert_int_equal(fmt(&d, gateway, 3, ALL_FIELDS),
			 (int)strlen(GATEWAY_ALL));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_worked_example_pass),
		cmocka_unit_test(test_worked_example_refused),
		cmocka_unit_test(test_sliding_reset_is_retry_after),
		cmocka_unit_test(test_all_families),
		cmocka_unit_test(test_refusing_first),
		cmocka_unit_test(test_refusing_first_keeps_caller_order),
		cmocka_unit_test(test_multiple_refusing_largest_retry_after),
		cmocka_unit_test(test_never_no_retry_after),
		cmocka_unit_test(test_retry_after_needs_a_refusal),
		cmocka_unit_test(test_ceil_at_ns),
		cmocka_unit_test(test_retry_after_rounding),
		cmocka_unit_test(test_openai_durations),
		cmocka_unit_test(test_int64_extremes),
		cmocka_unit_test(test_never_resets),
		cmocka_unit_test(test_concurrency),
		cmocka_unit_test(test_legacy_and_openai_selection),
		cmocka_unit_test(test_skipped_policies),
		cmocka_unit_test(test_sf_string_names),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_einval),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
