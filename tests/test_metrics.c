/*
 * tally_metrics_write (tally.h, "Metrics"): the Prometheus text of a small
 * store with a fake clock, byte for byte (stats after a known sequence of
 * admissions, the record families, keys that need encoding); the label
 * encoding on every single byte and thousands of random keys (decoded
 * back, all distinct, valid UTF-8); window ends in seconds (negative,
 * fractional); the max_records cap; bad input (fn never called); a sink
 * that stops the writer or calls the store; ENOMEM at every allocation.
 *
 * `test_metrics --print` writes the metrics of a populated store to
 * stdout instead: tests/CMakeLists.txt pipes them into `promtool check
 * metrics` when promtool is installed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"
#include "tally.h"

#define S NS_PER_SEC
#define CHUNK 4096u

/* ------------------------------------------------------------------------ */
/* A growing text, and the sink that collects into one                      */
/* ------------------------------------------------------------------------ */

struct text {
	char *buf;
	size_t len, cap;
};

static void
text_add_n(struct text *t, const char *s, size_t n)
{
	if (t->len + n + 1 > t->cap) {
		size_t cap = t->cap == 0 ? 4096 : t->cap;

		while (t->len + n + 1 > cap)
			cap *= 2;
		t->buf = realloc(t->buf, cap);
		assert_non_null(t->buf);
		t->cap = cap;
	}
	memcpy(t->buf + t->len, s, n);
	t->len += n;
	t->buf[t->len] = '\0';
}

static void __attribute__((format(printf, 2, 3)))
text_add(struct text *t, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < sizeof line);
	text_add_n(t, line, (size_t)n);
}

static void
text_free(struct text *t)
{
	free(t->buf);
	memset(t, 0, sizeof *t);
}

struct sink {
	struct text out;
	unsigned calls;
	bool short_seen;  /* a chunk under CHUNK bytes came: it must be last */
	unsigned stop_at; /* return stop_rc at this call (0: never) */
	int stop_rc;
	tally_store *bump_store; /* bump budget "team" from each call */
};

static int
sink_fn(void *ctx, const char *data, size_t len)
{
	struct sink *k = ctx;

	k->calls++;
	assert_true(len > 0 && len <= CHUNK);
	assert_false(k->short_seen);
	if (len < CHUNK)
		k->short_seen = true;
	text_add_n(&k->out, data, len);
	if (k->bump_store != NULL)
		assert_int_equal(
			tally_budget_bump(k->bump_store, "team", 1, NULL),
			TALLY_OK);
	if (k->stop_at != 0 && k->calls == k->stop_at)
		return k->stop_rc;
	return 0;
}

/* The whole text with max_records = max (0: none), default prefix. */
static int
write_all(tally_store *s, uint64_t max, struct sink *k)
{
	tally_metrics_options o = TALLY_METRICS_OPTIONS_INIT;

	o.max_records = max;
	return tally_metrics_write(s, &o, sink_fn, k);
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static tally_budget_config
bcfg(int64_t max, const char *period)
{
	tally_budget_config b = TALLY_BUDGET_CONFIG_INIT;

	b.max_limit = max;
	b.period = P(period);
	b.calendar_aligned = true;
	return b;
}

static tally_charge
bch(const char *key, int64_t amount)
{
	tally_charge c = {
		TALLY_KIND_BUDGET, 0, key, TALLY_KEY_STRLEN, amount, 0, 0};

	return c;
}

static tally_charge
rch(const char *key, int64_t tokens, int64_t requests)
{
	tally_charge c = {TALLY_KIND_RATELIMIT,
			  0,
			  key,
			  TALLY_KEY_STRLEN,
			  0,
			  tokens,
			  requests};

	return c;
}

/* The keys of the store in tally_export's order, which the record
 * families follow (each as kind and bytes). */
struct order {
	unsigned n;
	uint32_t kind[64];
	size_t len[64];
	char key[64][256];
};

static int
order_fn(void *ctx, const tally_record *r)
{
	struct order *o = ctx;

	assert_true(o->n < 64);
	o->kind[o->n] = r->kind;
	o->len[o->n] = r->key_len;
	memcpy(o->key[o->n], r->key, r->key_len);
	o->n++;
	return 0;
}

static void
order_of(tally_store *s, struct order *o)
{
	tally_cursor c = TALLY_CURSOR_INIT;

	memset(o, 0, sizeof *o);
	assert_int_equal(tally_export(s, &c, 0, order_fn, o), TALLY_OK);
	assert_true(c.done);
}

/* Decode a label value (the text between the quotes): the format's
 * escapes, then %XX; NUL-free input of vlen bytes. Returns the length. */
static size_t
decode_label(const char *v, size_t vlen, char *out)
{
	size_t i = 0, n = 0;

	while (i < vlen) {
		if (v[i] == '\\') {
			assert_true(i + 1 < vlen);
			assert_true(v[i + 1] == '\\' || v[i + 1] == '"');
			out[n++] = v[i + 1];
			i += 2;
		} else if (v[i] == '%') {
			unsigned x;

			assert_true(i + 3 <= vlen);
			assert_int_equal(sscanf(v + i + 1, "%2X", &x), 1);
			/* uppercase hex only */
			assert_true((v[i + 1] >= '0' && v[i + 1] <= '9') ||
				    (v[i + 1] >= 'A' && v[i + 1] <= 'F'));
			assert_true((v[i + 2] >= '0' && v[i + 2] <= '9') ||
				    (v[i + 2] >= 'A' && v[i + 2] <= 'F'));
			out[n++] = (char)x;
			i += 3;
		} else {
			assert_true(v[i] != '"' && v[i] != '\n');
			out[n++] = v[i++];
		}
	}
	return n;
}

/* Valid UTF-8 (RFC 3629), written apart from src/metrics.c. */
static bool
utf8_valid(const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint32_t cp;
		size_t len, j;

		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if ((p[i] & 0xe0) == 0xc0) {
			len = 2;
			cp = p[i] & 0x1fu;
		} else if ((p[i] & 0xf0) == 0xe0) {
			len = 3;
			cp = p[i] & 0x0fu;
		} else if ((p[i] & 0xf8) == 0xf0) {
			len = 4;
			cp = p[i] & 0x07u;
		} else {
			return false;
		}
		if (i + len > n)
			return false;
		for (j = 1; j < len; j++) {
			if ((p[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + j] & 0x3fu);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
		    (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

/* ------------------------------------------------------------------------ */
/* The exact text of a small store                                          */
/* ------------------------------------------------------------------------ */

/* A budget key that needs every kind of encoding: quote, backslash,
 * newline, '%', NUL, 0xff, then a valid é. */
static const char weird_key[] = "we\"ird\\key\n%\0\xff\xc3\xa9";
#define WEIRD_LEN (sizeof weird_key - 1)
#define WEIRD_ENC "we\\\"ird\\\\key%0A%25%00%FF\xc3\xa9"

/* 2026-01-15 12:00:00 UTC, hold_ttl_max 60 s (expiry grain 20 s):
 *   budget "team"     100 per calendar hour
 *   budget "prepaid"  5000, no period
 *   budget weird_key  7, no period
 *   rate limit "key"  tokens 500/min, requests 3/min (aligned)
 *   rate limit "free" tokens without max per min, requests 10/min
 *                     sliding (aligned)
 * then admissions that give every stat a known value. */
static tally_store *
small_store(struct fake_clock *clock)
{
	tally_store_options o;
	tally_store *s;
	tally_budget_config b;
	tally_ratelimit_config r = TALLY_RATELIMIT_CONFIG_INIT;
	tally_hold h = TALLY_HOLD_INIT;
	tally_charge ch[2];
	tally_cost c[2];

	clock->now = T(2026, 1, 15, 12, 0, 0);
	o = test_options(clock, NULL);
	o.hold_ttl_max = 60 * S;
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	b = bcfg(100, "1h");
	assert_int_equal(tally_budget_upsert(s, "team", &b, NULL),
			 TALLY_CREATED);
	b = bcfg(5000, "none");
	assert_int_equal(tally_budget_upsert(s, "prepaid", &b, NULL),
			 TALLY_CREATED);
	b = bcfg(7, "none");
	assert_int_equal(
		tally_budget_upsert_n(s, weird_key, WEIRD_LEN, &b, NULL),
		TALLY_CREATED);
	r.tokens.has_max = true;
	r.tokens.max = 500;
	r.tokens.period = P("1m");
	r.requests.has_max = true;
	r.requests.max = 3;
	r.requests.period = P("1m");
	r.calendar_aligned = true;
	assert_int_equal(tally_ratelimit_upsert(s, "key", &r, NULL),
			 TALLY_CREATED);
	r.tokens.has_max = false;
	r.tokens.max = 0;
	r.requests.max = 10;
	r.requests_algorithm = TALLY_ALGORITHM_SLIDING;
	assert_int_equal(tally_ratelimit_upsert(s, "free", &r, NULL),
			 TALLY_CREATED);

	/* Admitted (1), two per-record holds. */
	ch[0] = bch("team", 10);
	ch[1] = rch("key", 100, 1);
	assert_int_equal(
		tally_admit(s, ch, 2, TALLY_ADMIT_HOLD, 60 * S, &h, NULL),
		TALLY_OK);
	/* Refused: limit (10 held + 95 > 100), too big, missing. */
	ch[0] = bch("team", 95);
	assert_int_equal(
		tally_admit(s, ch, 1, TALLY_ADMIT_HOLD, 60 * S, NULL, NULL),
		TALLY_EINVAL); /* no hold: bad input, not counted */
	{
		tally_hold h2 = TALLY_HOLD_INIT;

		assert_int_equal(tally_admit(s, ch, 1, TALLY_ADMIT_HOLD, 60 * S,
					     &h2, NULL),
				 TALLY_LIMITED);
		ch[0] = rch("key", 501, 1);
		assert_int_equal(tally_admit(s, ch, 1, TALLY_ADMIT_HOLD, 60 * S,
					     &h2, NULL),
				 TALLY_LIMITED);
		ch[0] = bch("nope", 1);
		assert_int_equal(tally_admit(s, ch, 1, TALLY_ADMIT_HOLD, 60 * S,
					     &h2, NULL),
				 TALLY_ENOENT);
	}
	/* Settled with overdrafts of 2 and 20 units. */
	c[0] = (tally_cost){12, 0, 0};
	c[1] = (tally_cost){0, 120, 1};
	assert_int_equal(tally_settle(s, &h, c, 2, NULL), TALLY_OK);
	/* A hold of 5 that expires (slot end 12:00:20), settled late at
	 * 12:00:30 with 7: team used 19. */
	h = (tally_hold)TALLY_HOLD_INIT;
	ch[0] = bch("team", 5);
	assert_int_equal(
		tally_admit(s, ch, 1, TALLY_ADMIT_HOLD, 5 * S, &h, NULL),
		TALLY_OK);
	clock->now += 30 * S;
	c[0] = (tally_cost){7, 0, 0};
	assert_int_equal(tally_settle(s, &h, c, 1, NULL), TALLY_OK);
	/* Released. */
	h = (tally_hold)TALLY_HOLD_INIT;
	ch[0] = rch("key", 10, 1);
	assert_int_equal(
		tally_admit(s, ch, 1, TALLY_ADMIT_HOLD, 10 * S, &h, NULL),
		TALLY_OK);
	assert_int_equal(tally_release(s, &h, NULL), TALLY_OK);
	/* Partial 5, settled 10 more: team used 34. */
	h = (tally_hold)TALLY_HOLD_INIT;
	ch[0] = bch("team", 20);
	assert_int_equal(
		tally_admit(s, ch, 1, TALLY_ADMIT_HOLD, 30 * S, &h, NULL),
		TALLY_OK);
	c[0] = (tally_cost){5, 0, 0};
	assert_int_equal(tally_settle_partial(s, &h, c, 1, NULL), TALLY_OK);
	c[0] = (tally_cost){10, 0, 0};
	assert_int_equal(tally_settle(s, &h, c, 1, NULL), TALLY_OK);
	/* A shadow that would deny, consumed: prepaid used 6000. */
	ch[0] = bch("prepaid", 6000);
	ch[0].flags = TALLY_CHARGE_SHADOW;
	assert_int_equal(
		tally_admit(s, ch, 1, TALLY_ADMIT_CONSUME, 0, NULL, NULL),
		TALLY_OK);
	assert_int_equal(tally_ratelimit_bump(s, "free", 1234, 4, NULL),
			 TALLY_OK);
	/* A live hold: key holds 50 tokens and 1 request. */
	h = (tally_hold)TALLY_HOLD_INIT;
	ch[0] = rch("key", 50, 1);
	assert_int_equal(
		tally_admit(s, ch, 1, TALLY_ADMIT_HOLD, 60 * S, &h, NULL),
		TALLY_OK);
	return s;
}

/* The stats part of the text, every family spelled out. */
static void
expect_stats(struct text *t, const tally_stats *st)
{
	text_add(t,
		 "# HELP tally_records Budgets and rate limits in the store.\n"
		 "# TYPE tally_records gauge\n"
		 "tally_records %" PRIu64 "\n",
		 st->records);
	text_add(t,
		 "# HELP tally_threads Per-thread records registered with "
		 "the store.\n"
		 "# TYPE tally_threads gauge\n"
		 "tally_threads %" PRIu64 "\n",
		 st->threads);
	text_add(t,
		 "# HELP tally_threads_active Per-thread records held by a "
		 "live thread.\n"
		 "# TYPE tally_threads_active gauge\n"
		 "tally_threads_active %" PRIu64 "\n",
		 st->threads_active);
	text_add(t,
		 "# HELP tally_pending Retired objects not yet freed.\n"
		 "# TYPE tally_pending gauge\n"
		 "tally_pending %" PRIu64 "\n",
		 st->pending);
	text_add(t,
		 "# HELP tally_peak_pending Highest number of pending objects "
		 "seen by any one thread.\n"
		 "# TYPE tally_peak_pending gauge\n"
		 "tally_peak_pending %" PRIu64 "\n",
		 st->peak_pending);
#define COUNTER(name, help, v)                                                 \
	text_add(t,                                                            \
		 "# HELP tally_" name " " help "\n"                            \
		 "# TYPE tally_" name " counter\n"                             \
		 "tally_" name " %" PRIu64 "\n",                               \
		 (v))
	COUNTER("writes_total", "Snapshots installed by compare-and-swap.",
		st->writes);
	COUNTER("cas_retries_total",
		"Failed compare-and-swap attempts that were retried.",
		st->cas_retries);
	COUNTER("rolls_total", "Windows rolled, all causes.", st->rolls);
	COUNTER("retired_total",
		"Snapshots, records and maps handed to reclamation.",
		st->retired);
	COUNTER("freed_total", "Retired objects freed or recycled.", st->freed);
	COUNTER("admitted_total", "Admissions that passed (HOLD or CONSUME).",
		st->admitted);
	text_add(t,
		 "# HELP tally_refused_total Admissions refused, by reason.\n"
		 "# TYPE tally_refused_total counter\n"
		 "tally_refused_total{reason=\"limit\"} %" PRIu64 "\n"
		 "tally_refused_total{reason=\"too_big\"} %" PRIu64 "\n"
		 "tally_refused_total{reason=\"race\"} %" PRIu64 "\n"
		 "tally_refused_total{reason=\"missing\"} %" PRIu64 "\n",
		 st->refused_limit, st->refused_too_big, st->refused_race,
		 st->refused_missing);
	COUNTER("compensations_total",
		"Holds undone because a later limit of the call refused.",
		st->compensations);
	COUNTER("holds_total", "Per-record holds taken and kept.", st->holds);
	COUNTER("settles_total", "Successful tally_settle calls.", st->settles);
	COUNTER("releases_total", "Successful tally_release calls.",
		st->releases);
	COUNTER("partials_total", "Successful tally_settle_partial calls.",
		st->partials);
	COUNTER("late_settles_total", "Per-record settles of an expired hold.",
		st->late_settles);
	COUNTER("overdraft_units_total", "Units charged beyond what was held.",
		st->overdraft_units);
	COUNTER("expired_holds_total", "Holds dropped by expiry.",
		st->expired_holds);
	COUNTER("expired_units_total",
		"Units that expired holds held, all counters summed.",
		st->expired_units);
	COUNTER("shadow_would_deny_total",
		"Shadow charges that would have refused.",
		st->shadow_would_deny);
#undef COUNTER
}

/* What one record shows: its encoded key and, per counter, the values
 * (NULL: no sample). */
struct exp_counter {
	const char *name, *used, *held, *max, *end;
};
struct exp_rec {
	uint32_t kind;
	const char *key;
	size_t key_len;
	const char *enc;
	unsigned n;
	struct exp_counter c[2];
};

static const struct exp_rec small_recs[] = {
	{TALLY_KIND_BUDGET,
	 "team",
	 4,
	 "team",
	 1,
	 {{"budget", "34", "0", "100", "1768482000.000000000"}}},
	{TALLY_KIND_BUDGET,
	 "prepaid",
	 7,
	 "prepaid",
	 1,
	 {{"budget", "6000", "0", "5000", NULL}}},
	{TALLY_KIND_BUDGET,
	 weird_key,
	 WEIRD_LEN,
	 WEIRD_ENC,
	 1,
	 {{"budget", "0", "0", "7", NULL}}},
	{TALLY_KIND_RATELIMIT,
	 "key",
	 3,
	 "key",
	 2,
	 {{"tokens", "120", "50", "500", "1768478460.000000000"},
	  {"requests", "1", "1", "3", "1768478460.000000000"}}},
	{TALLY_KIND_RATELIMIT,
	 "free",
	 4,
	 "free",
	 2,
	 {{"tokens", "1234", "0", NULL, "1768478460.000000000"},
	  {"requests", "4", "0", "10", "1768478460.000000000"}}},
};
#define NSMALL (sizeof small_recs / sizeof small_recs[0])

static const struct exp_rec *
small_rec(uint32_t kind, const char *key, size_t len)
{
	for (size_t i = 0; i < NSMALL; i++)
		if (small_recs[i].kind == kind &&
		    small_recs[i].key_len == len &&
		    memcmp(small_recs[i].key, key, len) == 0)
			return &small_recs[i];
	fail_msg("unexpected record");
	return NULL;
}

/* The record families of the records named by `ord` (its first `n`). */
static void
expect_records(struct text *t, const struct order *ord, unsigned n)
{
	static const char *const fam[4][2] = {
		{"used", "Units a counter has used in its window, as stored (a "
			 "sliding counter: its current window's usage, not "
			 "the estimate)."},
		{"held", "Units the live holds of a counter hold, as stored."},
		{"max", "A counter's max (a counter without one has no "
			"sample)."},
		{"window_end_seconds",
		 "End of a counter's window, Unix time (a window that never "
		 "ends has no sample)."},
	};

	for (unsigned f = 0; f < 4; f++) {
		bool header = false;

		for (unsigned i = 0; i < n; i++) {
			const struct exp_rec *r = small_rec(
				ord->kind[i], ord->key[i], ord->len[i]);

			for (unsigned j = 0; j < r->n; j++) {
				const struct exp_counter *c = &r->c[j];
				const char *v = f == 0   ? c->used
						: f == 1 ? c->held
						: f == 2 ? c->max
							 : c->end;

				if (v == NULL)
					continue;
				if (!header)
					text_add(t,
						 "# HELP tally_%s %s\n"
						 "# TYPE tally_%s gauge\n",
						 fam[f][0], fam[f][1],
						 fam[f][0]);
				header = true;
				text_add(t,
					 "tally_%s{kind=\"%s\",key=\"%s\","
					 "counter=\"%s\"} %s\n",
					 fam[f][0],
					 r->kind == TALLY_KIND_BUDGET
						 ? "budget"
						 : "ratelimit",
					 r->enc, c->name, v);
			}
		}
	}
}

static void
assert_text_equal(const struct text *got, const struct text *want)
{
	if (got->len != want->len || memcmp(got->buf, want->buf, got->len)) {
		size_t i = 0;

		while (i < got->len && i < want->len &&
		       got->buf[i] == want->buf[i])
			i++;
		print_error("texts differ at byte %zu:\n--- got:\n%.200s\n"
			    "--- want:\n%.200s\n",
			    i, got->buf + (i > 40 ? i - 40 : 0),
			    want->buf + (i > 40 ? i - 40 : 0));
		fail();
	}
}

static void
test_exact_text(void **state)
{
	struct fake_clock clock;
	tally_store *s = small_store(&clock);
	tally_stats st = TALLY_STATS_INIT, after = TALLY_STATS_INIT;
	struct sink k;
	struct text want = {0};
	struct order ord;

	(void)state;
	order_of(s, &ord);
	assert_int_equal(ord.n, NSMALL);
	/* The stats the sequence of small_store() gives. */
	assert_int_equal(tally_store_stats(s, &st), TALLY_OK);
	assert_int_equal(st.records, 5);
	assert_int_equal(st.threads, 1);
	assert_int_equal(st.threads_active, 1);
	assert_int_equal(st.cas_retries, 0);
	assert_int_equal(st.rolls, 0);
	/* 12 holds, settles and bumps, and the CONSUME holds then settles. */
	assert_int_equal(st.writes, 15);
	assert_int_equal(st.admitted, 6);
	assert_int_equal(st.refused_limit, 1);
	assert_int_equal(st.refused_too_big, 1);
	assert_int_equal(st.refused_race, 0);
	assert_int_equal(st.refused_missing, 1);
	assert_int_equal(st.compensations, 0);
	assert_int_equal(st.holds, 6);
	assert_int_equal(st.settles, 3);
	assert_int_equal(st.releases, 1);
	assert_int_equal(st.partials, 1);
	assert_int_equal(st.late_settles, 1);
	assert_int_equal(st.overdraft_units, 22);
	assert_int_equal(st.expired_holds, 1);
	assert_int_equal(st.expired_units, 5);
	assert_int_equal(st.shadow_would_deny, 1);

	/* Without records: the stats only. */
	memset(&k, 0, sizeof k);
	assert_int_equal(write_all(s, 0, &k), TALLY_OK);
	expect_stats(&want, &st);
	assert_text_equal(&k.out, &want);
	/* Stats are not changed by a write. */
	assert_int_equal(tally_store_stats(s, &after), TALLY_OK);
	assert_memory_equal(&after, &st, sizeof st);
	/* The defaults (options NULL) are the same text. */
	text_free(&k.out);
	memset(&k, 0, sizeof k);
	assert_int_equal(tally_metrics_write(s, NULL, sink_fn, &k), TALLY_OK);
	assert_text_equal(&k.out, &want);
	text_free(&k.out);

	/* With every record. */
	assert_int_equal(tally_store_stats(s, &st), TALLY_OK);
	text_free(&want);
	expect_stats(&want, &st);
	text_add(&want,
		 "# HELP tally_records_exported Records whose gauges this "
		 "scrape shows.\n"
		 "# TYPE tally_records_exported gauge\n"
		 "tally_records_exported 5\n"
		 "# HELP tally_records_truncated Records left out by the "
		 "scrape's max_records.\n"
		 "# TYPE tally_records_truncated gauge\n"
		 "tally_records_truncated 0\n");
	expect_records(&want, &ord, ord.n);
	memset(&k, 0, sizeof k);
	assert_int_equal(write_all(s, 100, &k), TALLY_OK);
	assert_text_equal(&k.out, &want);
	assert_true(utf8_valid((const unsigned char *)k.out.buf, k.out.len));
	assert_int_equal(k.calls, (want.len + CHUNK - 1) / CHUNK);
	/* The walk registered nothing new, wrote nothing. */
	assert_int_equal(tally_store_stats(s, &after), TALLY_OK);
	assert_int_equal(after.writes, st.writes);
	assert_int_equal(after.threads, 1);
	text_free(&k.out);

	/* A cap of 2: the first two records of the walk, 3 left out. */
	assert_int_equal(tally_store_stats(s, &st), TALLY_OK);
	text_free(&want);
	expect_stats(&want, &st);
	text_add(&want,
		 "# HELP tally_records_exported Records whose gauges this "
		 "scrape shows.\n"
		 "# TYPE tally_records_exported gauge\n"
		 "tally_records_exported 2\n"
		 "# HELP tally_records_truncated Records left out by the "
		 "scrape's max_records.\n"
		 "# TYPE tally_records_truncated gauge\n"
		 "tally_records_truncated 3\n");
	expect_records(&want, &ord, 2);
	memset(&k, 0, sizeof k);
	assert_int_equal(write_all(s, 2, &k), TALLY_OK);
	assert_text_equal(&k.out, &want);
	text_free(&k.out);
	text_free(&want);
	tally_store_destroy(s);
}

/* ------------------------------------------------------------------------ */
/* Label encoding                                                           */
/* ------------------------------------------------------------------------ */

/* Find each `tally_used{kind="budget",key="...",counter="budget"} N`
 * line, decode its key and hand it with N to check(). */
static unsigned
each_used_line(const struct text *t,
	       void (*check)(void *, const char *, size_t, long), void *ctx)
{
	static const char head[] = "tally_used{kind=\"budget\",key=\"";
	static const char tail[] = "\",counter=\"budget\"} ";
	const char *p = t->buf, *end = t->buf + t->len;
	unsigned lines = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		assert_non_null(nl);
		if ((size_t)(nl - p) > sizeof head &&
		    memcmp(p, head, sizeof head - 1) == 0) {
			const char *v = p + sizeof head - 1, *q = v;
			char key[1024];
			size_t n;

			/* The value ends at the first '"' not escaped. */
			while (*q != '"')
				q += *q == '\\' ? 2 : 1;
			assert_true(q < nl);
			assert_memory_equal(q, tail, sizeof tail - 1);
			n = decode_label(v, (size_t)(q - v), key);
			check(ctx, key, n,
			      strtol(q + sizeof tail - 1, NULL, 10));
			lines++;
		}
		p = nl + 1;
	}
	return lines;
}

struct keyset {
	unsigned n;
	size_t len[4096];
	char key[4096][16];
	unsigned seen[4096];
};

static void
check_key(void *ctx, const char *key, size_t n, long used)
{
	struct keyset *ks = ctx;

	/* used is the key's index + 1 (a bump of it). */
	assert_true(used >= 1 && used <= (long)ks->n);
	assert_int_equal(n, ks->len[used - 1]);
	assert_memory_equal(key, ks->key[used - 1], n);
	ks->seen[used - 1]++;
}

/* Every single byte, and thousands of random short keys biased to the
 * bytes that need care: each decodes back to its own key (so no two
 * share a text), and the whole text is valid UTF-8. */
static void
test_label_roundtrip(void **state)
{
	static const unsigned char pool[] = {
		0x00, 0x0a, 0x1f, '"',  '\\', '%',  '0',  'A',  0x7f,
		0x80, 0x85, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3,
		0xdf, 0xe0, 0xe2, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff};
	struct keyset *ks = calloc(1, sizeof *ks);
	struct fake_clock clock = {T(2026, 1, 1, 0, 0, 0)};
	tally_store_options o = test_options(&clock, NULL);
	tally_budget_config b = bcfg(1, "none");
	uint64_t rng = 0x9e3779b97f4a7c15u;
	tally_store *s;
	struct sink k;
	unsigned i;

	(void)state;
	assert_non_null(ks);
	o.expected_records = 4096;
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	/* Every single byte first, so that no random key takes one. */
	for (i = 0; i < 256; i++) {
		ks->key[i][0] = (char)i;
		ks->len[i] = 1;
		assert_int_equal(
			tally_budget_upsert_n(s, ks->key[i], 1, &b, NULL),
			TALLY_CREATED);
	}
	for (; i < 4096; i++) {
		size_t len, j;

		do {
			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			len = 1 + (size_t)(rng % 6);
			for (j = 0; j < len; j++)
				ks->key[i][j] =
					(char)pool[(rng >> (8 + 5 * j)) %
						   sizeof pool];
			/* Every fourth key: a valid multibyte character
			 * somewhere (2, 3 or 4 bytes). */
			if (i % 4 == 0 && len <= 2) {
				memcpy(ks->key[i] + len,
				       i % 3 == 0   ? "\xc3\xa9"
				       : i % 3 == 1 ? "\xe2\x82\xac"
						    : "\xf0\x9f\x98\x80",
				       4);
				len += i % 3 == 0 ? 2 : i % 3 == 1 ? 3 : 4;
			}
			ks->len[i] = len;
		} while (tally_budget_upsert_n(s, ks->key[i], len, &b, NULL) !=
			 TALLY_CREATED); /* a key drawn twice: again */
	}
	ks->n = 4096;
	for (i = 0; i < ks->n; i++)
		assert_int_equal(tally_budget_bump_n(s, ks->key[i], ks->len[i],
						     (int64_t)i + 1, NULL),
				 TALLY_OK);
	memset(&k, 0, sizeof k);
	assert_int_equal(write_all(s, UINT64_MAX, &k), TALLY_OK);
	assert_true(utf8_valid((const unsigned char *)k.out.buf, k.out.len));
	assert_non_null(strstr(k.out.buf, "tally_records_exported 4096\n"));
	assert_int_equal(each_used_line(&k.out, check_key, ks), 4096);
	for (i = 0; i < ks->n; i++)
		assert_int_equal(ks->seen[i], 1);
	text_free(&k.out);
	tally_store_destroy(s);
	free(ks);
}

/* The encoding of chosen keys, as text. */
static void
test_label_examples(void **state)
{
	static const struct {
		const char *key;
		size_t len;
		const char *enc;
	} ex[] = {
		{"plain-key_1.x", 13, "plain-key_1.x"},
		{"a\0b", 3, "a%00b"},
		{"q\"uote", 6, "q\\\"uote"},
		{"back\\slash", 10, "back\\\\slash"},
		{"new\nline", 8, "new%0Aline"},
		{"tab\there", 8, "tab%09here"},
		{"100%", 4, "100%25"},
		{"%41", 3, "%2541"}, /* not "A" */
		{"A", 1, "A"},
		{"del\x7f", 4, "del%7F"},
		{"\xff", 1, "%FF"},
		{"\xe2\x82", 2, "%E2%82"},        /* truncated euro sign */
		{"\xe2\x82x", 3, "%E2%82x"},      /* interrupted */
		{"\xc0\xaf", 2, "%C0%AF"},        /* overlong '/' */
		{"\xe0\x80\xaf", 3, "%E0%80%AF"}, /* overlong '/' */
		{"\xed\xa0\x80", 3, "%ED%A0%80"}, /* a surrogate */
		{"\xf4\x90\x80\x80", 4, "%F4%90%80%80"}, /* past U+10FFFF */
		{"\x80", 1, "%80"},                  /* a lone continuation */
		{"\xc2\x85", 2, "%C2%85"},           /* NEL, a C1 control */
		{"\xc2\xa0", 2, "\xc2\xa0"},         /* no-break space */
		{"caf\xc3\xa9", 5, "caf\xc3\xa9"},   /* é */
		{"\xe2\x82\xac", 3, "\xe2\x82\xac"}, /* € */
		{"\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80"}, /* U+1F600 */
		{"\xef\xbf\xbf", 3, "\xef\xbf\xbf"},         /* U+FFFF */
		{"\xf4\x8f\xbf\xbf", 4, "\xf4\x8f\xbf\xbf"}, /* U+10FFFF */
		{"\xc3\xa9\xff\xc3\xa9", 5, "\xc3\xa9%FF\xc3\xa9"},
	};
	struct fake_clock clock = {T(2026, 1, 1, 0, 0, 0)};
	tally_store_options o = test_options(&clock, NULL);
	tally_budget_config b = bcfg(1, "none");
	tally_store *s;
	struct sink k;
	size_t i;

	(void)state;
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	for (i = 0; i < sizeof ex / sizeof ex[0]; i++)
		assert_int_equal(tally_budget_upsert_n(s, ex[i].key, ex[i].len,
						       &b, NULL),
				 TALLY_CREATED);
	memset(&k, 0, sizeof k);
	assert_int_equal(write_all(s, 100, &k), TALLY_OK);
	for (i = 0; i < sizeof ex / sizeof ex[0]; i++) {
		char line[256];

		snprintf(line, sizeof line,
			 "\ntally_max{kind=\"budget\",key=\"%s\","
			 "counter=\"budget\"} 1\n",
			 ex[i].enc);
		if (strstr(k.out.buf, line) == NULL)
			fail_msg("no line for key %zu: %s", i, line);
	}
	assert_true(utf8_valid((const unsigned char *)k.out.buf, k.out.len));
	text_free(&k.out);
	tally_store_destroy(s);
}

/* ------------------------------------------------------------------------ */
/* Numbers                                                                  */
/* ------------------------------------------------------------------------ */

static void
test_numbers(void **state)
{
	struct fake_clock clock = {-2250000000}; /* 1969, 2.25 s early */
	tally_store_options o = test_options(&clock, NULL);
	tally_budget_config b = TALLY_BUDGET_CONFIG_INIT;
	tally_store *s;
	struct sink k;

	(void)state;
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	/* Rolling 1 s from the creation time: ends 1 s later. */
	b.max_limit = INT64_MAX;
	b.period = P("1s");
	assert_int_equal(tally_budget_upsert(s, "neg", &b, NULL),
			 TALLY_CREATED);
	clock.now = -500000001;
	assert_int_equal(tally_budget_upsert(s, "frac", &b, NULL),
			 TALLY_CREATED);
	clock.now = -2 * S;
	assert_int_equal(tally_budget_upsert(s, "whole", &b, NULL),
			 TALLY_CREATED);
	clock.now = -1 * S - 1;
	assert_int_equal(tally_budget_upsert(s, "tiny", &b, NULL),
			 TALLY_CREATED);
	clock.now = T(2026, 1, 1, 0, 0, 0) + 123456789;
	b.period = P("1h");
	assert_int_equal(tally_budget_upsert(s, "ns", &b, NULL), TALLY_CREATED);
	assert_int_equal(tally_budget_bump(s, "ns", INT64_MAX, NULL), TALLY_OK);
	memset(&k, 0, sizeof k);
	assert_int_equal(write_all(s, 10, &k), TALLY_OK);
#define HAS(line) assert_non_null(strstr(k.out.buf, "\n" line "\n"))
	HAS("tally_window_end_seconds{kind=\"budget\",key=\"neg\","
	    "counter=\"budget\"} -1.250000000");
	HAS("tally_window_end_seconds{kind=\"budget\",key=\"frac\","
	    "counter=\"budget\"} 0.499999999");
	HAS("tally_window_end_seconds{kind=\"budget\",key=\"whole\","
	    "counter=\"budget\"} -1.000000000");
	HAS("tally_window_end_seconds{kind=\"budget\",key=\"tiny\","
	    "counter=\"budget\"} -0.000000001");
	HAS("tally_window_end_seconds{kind=\"budget\",key=\"ns\","
	    "counter=\"budget\"} 1767229200.123456789");
	HAS("tally_used{kind=\"budget\",key=\"ns\",counter=\"budget\"} "
	    "9223372036854775807");
	HAS("tally_max{kind=\"budget\",key=\"ns\",counter=\"budget\"} "
	    "9223372036854775807");
#undef HAS
	text_free(&k.out);
	tally_store_destroy(s);
}

/* ------------------------------------------------------------------------ */
/* The cap, empty stores, big texts                                         */
/* ------------------------------------------------------------------------ */

static unsigned
count(const struct text *t, const char *needle)
{
	unsigned n = 0;

	for (const char *p = t->buf; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static void
test_cap(void **state)
{
	struct fake_clock clock = {T(2026, 1, 1, 0, 0, 0)};
	tally_store_options o = test_options(&clock, NULL);
	tally_budget_config b = bcfg(10, "1d");
	tally_store *s;
	struct sink k;
	char key[16];

	(void)state;
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	/* Empty: no record family, 0 and 0. */
	memset(&k, 0, sizeof k);
	assert_int_equal(write_all(s, 10, &k), TALLY_OK);
	assert_non_null(strstr(k.out.buf, "\ntally_records 0\n"));
	assert_non_null(strstr(k.out.buf, "\ntally_records_exported 0\n"));
	assert_non_null(strstr(k.out.buf, "\ntally_records_truncated 0\n"));
	assert_null(strstr(k.out.buf, "tally_used"));
	assert_null(strstr(k.out.buf, "tally_window_end_seconds"));
	text_free(&k.out);

	for (int i = 0; i < 5; i++) {
		snprintf(key, sizeof key, "k%d", i);
		assert_int_equal(tally_budget_upsert(s, key, &b, NULL),
				 TALLY_CREATED);
	}
	{
		static const struct {
			uint64_t max;
			unsigned exported, truncated;
		} cases[] = {{1, 1, 4}, {2, 2, 3}, {4, 4, 1},
			     {5, 5, 0}, {6, 5, 0}, {UINT64_MAX, 5, 0}};

		for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
			char want[64];

			memset(&k, 0, sizeof k);
			assert_int_equal(write_all(s, cases[c].max, &k),
					 TALLY_OK);
			snprintf(want, sizeof want,
				 "\ntally_records_exported %u\n",
				 cases[c].exported);
			assert_non_null(strstr(k.out.buf, want));
			snprintf(want, sizeof want,
				 "\ntally_records_truncated %u\n",
				 cases[c].truncated);
			assert_non_null(strstr(k.out.buf, want));
			/* One sample per record in each family, the same
			 * records in every family. */
			assert_int_equal(count(&k.out, "\ntally_used{"),
					 cases[c].exported);
			assert_int_equal(count(&k.out, "\ntally_held{"),
					 cases[c].exported);
			assert_int_equal(count(&k.out, "\ntally_max{"),
					 cases[c].exported);
			assert_int_equal(
				count(&k.out, "\ntally_window_end_seconds{"),
				cases[c].exported);
			for (int i = 0; i < 5; i++) {
				char needle[64];
				unsigned n;

				snprintf(needle, sizeof needle,
					 "key=\"k%d\",counter", i);
				n = count(&k.out, needle);
				assert_true(n == 0 || n == 4);
			}
			/* Every family's HELP and TYPE once. */
			assert_true(count(&k.out,
					  "# TYPE tally_used gauge\n") == 1);
			text_free(&k.out);
		}
	}
	/* No record families without max_records. */
	memset(&k, 0, sizeof k);
	assert_int_equal(write_all(s, 0, &k), TALLY_OK);
	assert_null(strstr(k.out.buf, "tally_used"));
	assert_null(strstr(k.out.buf, "tally_records_exported"));
	assert_null(strstr(k.out.buf, "tally_records_truncated"));
	text_free(&k.out);
	tally_store_destroy(s);
}

/* A prefix replaces "tally_" in every name (HELP and TYPE included). */
static void
test_prefix(void **state)
{
	struct fake_clock clock = {T(2026, 1, 1, 0, 0, 0)};
	tally_store_options so = test_options(&clock, NULL);
	tally_metrics_options o = TALLY_METRICS_OPTIONS_INIT;
	tally_budget_config b = bcfg(10, "1d");
	tally_store *s;
	struct sink k;

	(void)state;
	assert_int_equal(tally_store_create(&s, &so), TALLY_OK);
	assert_int_equal(tally_budget_upsert(s, "x", &b, NULL), TALLY_CREATED);
	o.prefix = "gw_Budget:9_";
	o.max_records = 1;
	memset(&k, 0, sizeof k);
	assert_int_equal(tally_metrics_write(s, &o, sink_fn, &k), TALLY_OK);
	assert_null(strstr(k.out.buf, "\ntally_"));
	assert_int_equal(strncmp(k.out.buf, "# HELP gw_Budget:9_records ", 27),
			 0);
	assert_non_null(strstr(k.out.buf,
			       "\n# TYPE gw_Budget:9_used gauge\n"
			       "gw_Budget:9_used{kind=\"budget\",key=\"x\","
			       "counter=\"budget\"} 0\n"));
	/* Every line starts with '#' or the prefix. */
	for (const char *p = k.out.buf; *p != '\0'; p = strchr(p, '\n') + 1)
		assert_true(*p == '#' || strncmp(p, "gw_Budget:9_", 12) == 0);
	text_free(&k.out);
	tally_store_destroy(s);
}

/* ------------------------------------------------------------------------ */
/* Bad input, the sink's result, allocation failures                        */
/* ------------------------------------------------------------------------ */

static void
test_bad_input(void **state)
{
	static const char *const bad_prefix[] = {
		"", "9x", "a-b", "a b", "a.b", "caf\xc3\xa9", "x\n", "\xff"};
	struct fake_clock clock = {T(2026, 1, 1, 0, 0, 0)};
	tally_store_options so = test_options(&clock, NULL);
	tally_metrics_options o = TALLY_METRICS_OPTIONS_INIT;
	tally_budget_config b = bcfg(10, "1d");
	tally_budget_view before = TALLY_BUDGET_VIEW_INIT;
	tally_budget_view after = TALLY_BUDGET_VIEW_INIT;
	tally_store *s;
	struct sink k;
	size_t i;

	(void)state;
	assert_int_equal(tally_store_create(&s, &so), TALLY_OK);
	assert_int_equal(tally_budget_upsert(s, "x", &b, &before),
			 TALLY_CREATED);
	memset(&k, 0, sizeof k);
	o.max_records = 10;
	assert_int_equal(tally_metrics_write(NULL, &o, sink_fn, &k),
			 TALLY_EINVAL);
	assert_int_equal(tally_metrics_write(s, &o, NULL, &k), TALLY_EINVAL);
	o.size = 0;
	assert_int_equal(tally_metrics_write(s, &o, sink_fn, &k), TALLY_EINVAL);
	o.size = sizeof o - 1;
	assert_int_equal(tally_metrics_write(s, &o, sink_fn, &k), TALLY_EINVAL);
	o.size = sizeof o;
	for (i = 0; i < sizeof bad_prefix / sizeof bad_prefix[0]; i++) {
		o.prefix = bad_prefix[i];
		assert_int_equal(tally_metrics_write(s, &o, sink_fn, &k),
				 TALLY_EINVAL);
	}
	o.prefix = NULL;
	o.flags = 1;
	assert_int_equal(tally_metrics_write(s, &o, sink_fn, &k), TALLY_EINVAL);
	o.flags = 0x80000000u;
	assert_int_equal(tally_metrics_write(s, &o, sink_fn, &k), TALLY_EINVAL);
	assert_int_equal(k.calls, 0);
	assert_int_equal(k.out.len, 0);
	/* Good prefixes pass. */
	o.flags = 0;
	o.prefix = "_";
	assert_int_equal(tally_metrics_write(s, &o, sink_fn, &k), TALLY_OK);
	assert_true(k.calls > 0);
	text_free(&k.out);
	memset(&k, 0, sizeof k);
	o.prefix = ":a1";
	assert_int_equal(tally_metrics_write(s, &o, sink_fn, &k), TALLY_OK);
	assert_true(k.calls > 0);
	/* Nothing changed. */
	assert_int_equal(tally_budget_get(s, "x", &after), TALLY_OK);
	assert_int_equal(after.version, before.version);
	assert_int_equal(after.usage, before.usage);
	text_free(&k.out);
	tally_store_destroy(s);
}

/* A store whose text is several chunks long. */
static tally_store *
big_store(struct fake_clock *clock, struct test_alloc *a, unsigned n)
{
	tally_store_options o = test_options(clock, a);
	tally_budget_config b = bcfg(1000, "1d");
	tally_store *s;
	char key[64];

	clock->now = T(2026, 1, 1, 0, 0, 0);
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	for (unsigned i = 0; i < n; i++) {
		/* Long keys: 40 bytes, so the key array grows too. */
		snprintf(key, sizeof key, "customer-%06u-0123456789abcdefghij",
			 i);
		assert_int_equal(tally_budget_upsert(s, key, &b, NULL),
				 TALLY_CREATED);
	}
	return s;
}

static void
test_sink_result(void **state)
{
	struct fake_clock clock;
	tally_store *s = big_store(&clock, NULL, 300);
	struct sink full, k;

	(void)state;
	memset(&full, 0, sizeof full);
	assert_int_equal(write_all(s, 1000, &full), TALLY_OK);
	assert_true(full.calls >= 10);
	assert_int_equal(full.calls, (full.out.len + CHUNK - 1) / CHUNK);
	/* Stop at the first chunk: its result, and nothing more. */
	memset(&k, 0, sizeof k);
	k.stop_at = 1;
	k.stop_rc = 7;
	assert_int_equal(write_all(s, 1000, &k), 7);
	assert_int_equal(k.calls, 1);
	assert_int_equal(k.out.len, CHUNK);
	assert_memory_equal(k.out.buf, full.out.buf, CHUNK);
	text_free(&k.out);
	/* A negative result at the third: returned as is. */
	memset(&k, 0, sizeof k);
	k.stop_at = 3;
	k.stop_rc = -12345;
	assert_int_equal(write_all(s, 1000, &k), -12345);
	assert_int_equal(k.calls, 3);
	assert_memory_equal(k.out.buf, full.out.buf, 3 * CHUNK);
	text_free(&k.out);
	/* At the last chunk. */
	memset(&k, 0, sizeof k);
	k.stop_at = full.calls;
	k.stop_rc = 1;
	assert_int_equal(write_all(s, 1000, &k), 1);
	assert_int_equal(k.out.len, full.out.len);
	text_free(&k.out);
	/* The sink may call the store. */
	memset(&k, 0, sizeof k);
	k.bump_store = s;
	assert_int_equal(tally_budget_upsert(
				 s, "team",
				 &(tally_budget_config)TALLY_BUDGET_CONFIG_INIT,
				 NULL),
			 TALLY_CREATED);
	assert_int_equal(write_all(s, 1000, &k), TALLY_OK);
	{
		tally_budget_view v = TALLY_BUDGET_VIEW_INIT;

		assert_int_equal(tally_budget_get(s, "team", &v), TALLY_OK);
		assert_int_equal(v.usage, (int64_t)k.calls);
	}
	text_free(&k.out);
	text_free(&full.out);
	tally_store_destroy(s);
}

/* Every allocation of a write fails in turn: TALLY_ENOMEM, the sink never
 * called, nothing leaked; then it succeeds. */
static void
test_enomem(void **state)
{
	struct fake_clock clock;
	struct test_alloc a = {0};
	tally_store *s = big_store(&clock, &a, 300);
	long live = a.live_blocks, n;
	bool passed = false;
	struct sink k;

	(void)state;
	for (n = 1; n < 100 && !passed; n++) {
		int rc;

		a.fail_at = a.calls + n;
		memset(&k, 0, sizeof k);
		rc = write_all(s, 1000, &k);
		a.fail_at = 0;
		if (rc == TALLY_OK) {
			passed = true;
			assert_true(k.calls > 0);
		} else {
			assert_int_equal(rc, TALLY_ENOMEM);
			assert_int_equal(k.calls, 0);
		}
		assert_int_equal(a.live_blocks, live);
		text_free(&k.out);
	}
	assert_true(passed);
	/* 300 records: 64, 128, 256, 512 and the key arrays: 8 or more. */
	assert_true(n > 8);
	/* Without record gauges nothing is allocated. */
	a.fail_at = a.calls + 1;
	a.fail_rest = true;
	memset(&k, 0, sizeof k);
	assert_int_equal(write_all(s, 0, &k), TALLY_OK);
	assert_true(k.calls > 0);
	text_free(&k.out);
	a.fail_at = 0;
	a.fail_rest = false;
	tally_store_destroy(s);
	assert_int_equal(a.live_blocks, 0);
}

/* The first call of a thread registers it: that can fail too. */
static void
test_enomem_register(void **state)
{
	struct fake_clock clock = {T(2026, 1, 1, 0, 0, 0)};
	struct test_alloc a = {0};
	tally_store_options o = test_options(&clock, &a);
	tally_store *s;
	struct sink k;

	(void)state;
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	a.fail_at = a.calls + 1;
	a.fail_rest = true;
	memset(&k, 0, sizeof k);
	assert_int_equal(write_all(s, 5, &k), TALLY_ENOMEM);
	assert_int_equal(k.calls, 0);
	a.fail_at = 0;
	a.fail_rest = false;
	assert_int_equal(write_all(s, 5, &k), TALLY_OK);
	assert_non_null(strstr(k.out.buf, "\ntally_records_exported 0\n"));
	text_free(&k.out);
	tally_store_destroy(s);
	assert_int_equal(a.live_blocks, 0);
}

/* ------------------------------------------------------------------------ */
/* --print: a populated store's text on stdout, for promtool                */
/* ------------------------------------------------------------------------ */

static int
stdout_fn(void *ctx, const char *data, size_t len)
{
	(void)ctx;
	return fwrite(data, 1, len, stdout) == len ? 0 : 1;
}

static int
print_metrics(void)
{
	static const struct {
		const char *key;
		size_t len;
	} tricky[] = {
		{"a\0b", 3},
		{"q\"uote", 6},
		{"back\\slash", 10},
		{"new\nline", 8},
		{"100%", 4},
		{"%41", 3},
		{"\xff", 1},
		{"\xe2\x82", 2},
		{"\xc0\xaf", 2},
		{"\xed\xa0\x80", 3},
		{"\xc2\x85", 2},
		{"caf\xc3\xa9", 5},
		{"\xf0\x9f\x98\x80", 4},
		{"\x01\x7f", 2},
		{" ", 1},
		{"{}=,", 4},
	};
	struct fake_clock clock;
	tally_store *s = small_store(&clock);
	tally_budget_config b = bcfg(50, "1d");
	tally_ratelimit_config r = TALLY_RATELIMIT_CONFIG_INIT;
	tally_metrics_options o = TALLY_METRICS_OPTIONS_INIT;
	int rc;

	r.tokens.has_max = true;
	r.tokens.max = 1000;
	r.tokens.period = P("1m");
	r.requests.period = P("1h");
	for (size_t i = 0; i < sizeof tricky / sizeof tricky[0]; i++) {
		if (tally_budget_upsert_n(s, tricky[i].key, tricky[i].len, &b,
					  NULL) != TALLY_CREATED ||
		    tally_budget_bump_n(s, tricky[i].key, tricky[i].len,
					(int64_t)i, NULL) != TALLY_OK ||
		    tally_ratelimit_upsert_n(s, tricky[i].key, tricky[i].len,
					     &r, NULL) != TALLY_CREATED)
			return 1;
	}
	o.max_records = 1000;
	rc = tally_metrics_write(s, &o, stdout_fn, NULL);
	tally_store_destroy(s);
	if (rc != TALLY_OK || fflush(stdout) != 0) {
		fprintf(stderr, "tally_metrics_write: %d\n", rc);
		return 1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_text),
		cmocka_unit_test(test_label_roundtrip),
		cmocka_unit_test(test_label_examples),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_cap),
		cmocka_unit_test(test_prefix),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_sink_result),
		cmocka_unit_test(test_enomem),
		cmocka_unit_test(test_enomem_register),
	};

	if (argc == 2 && strcmp(argv[1], "--print") == 0)
		return print_metrics();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
