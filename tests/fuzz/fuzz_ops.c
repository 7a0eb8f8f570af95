/*
 * Differential fuzzer: the library against the reference model
 * (tests/model), call by call.
 *
 * The input is a program. Its first 8 bytes set the fake clock (a time
 * between 1900 and 2200); then each operation is one opcode byte followed
 * by the bytes its arguments need (see do_op). Reading past the end yields
 * zeros, so every byte string is a valid program. The operations run on a
 * few keys, the same bytes in both key spaces: "a", "b", a short key of
 * bytes 0x01, 0x7f, 0x80, 0xff, a 255-byte key of every byte 0x01..0xff,
 * each through the NUL-terminated calls or the _n calls, and two keys with
 * NUL bytes, "a\0b" and "\0" (_n calls only); now and then a bad key (NULL,
 * "", 256 bytes, a length of 0, 256 or SIZE_MAX, NULL with a length) or a
 * NULL store, config, view or mask, or a config or view whose size is too
 * small. Configs cover max 0 and INT64_MAX, negative max, every period
 * unit (valid, invalid, huge), rolling and aligned lattices, offsets in and
 * out of range, default and explicit anchors; amounts cover 0, negative and
 * INT64_MAX; resets use the right version or a stale one with every mask;
 * the clock steps forward and back, by nanoseconds to years, onto window
 * boundaries, and now and then to the int64 extremes.
 *
 * Every call runs on one tally_store (fake clock, roll listener that logs
 * every event) and on the model. After each call the harness compares the
 * result codes, every field of the views (pre-filled with the same poison
 * on both sides, so a view written on error is caught; incarnations
 * included), the limited/reset
 * masks, the roll events (all fields; a sweep's in any order since the map
 * order is the hash's, and its callback must hear exactly what the listener
 * heard), then reads every key of both kinds with get on both sides and
 * compares the store's record and roll counts. Any difference abort()s with
 * a message and the trace of the last operations.
 *
 * Deterministic: one store per input with a fixed hash seed, no real clock,
 * no threads.
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
#include "model.h"

#define NS_PER_SEC INT64_C(1000000000)
#define NS_PER_HOUR (3600 * NS_PER_SEC)
#define NS_PER_DAY (24 * NS_PER_HOUR)

/* The fuzzer's time range: 1900-01-01 to 2200-01-01 (model.h). */
#define T_MIN (INT64_C(-2208988800) * NS_PER_SEC)
#define T_MAX (INT64_C(7258118400) * NS_PER_SEC)

/* 300 years of ns exceed INT64_MAX: spans and sums go through i128. */
#define T_SPAN ((uint64_t)T_MAX + (uint64_t)-T_MIN)

__extension__ typedef __int128 i128;

#define OPS_MAX 4096
#define EV_MAX 64
#define TRACE_N 24
#define TRACE_LEN 420

/* ------------------------------------------------------------------------ */
/* Input                                                                    */
/* ------------------------------------------------------------------------ */

struct input {
	const uint8_t *p;
	size_t n;
};

static uint8_t
in_u8(struct input *in)
{
	if (in->n == 0)
		return 0;
	in->n--;
	return *in->p++;
}

static uint16_t
in_u16(struct input *in)
{
	uint16_t hi = in_u8(in);

	return (uint16_t)(hi << 8 | in_u8(in));
}

static uint64_t
in_u64(struct input *in)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | in_u8(in);
	return v;
}

static int64_t
in_i64(struct input *in)
{
	uint64_t u = in_u64(in);
	int64_t v;

	memcpy(&v, &u, sizeof v);
	return v;
}

/* ------------------------------------------------------------------------ */
/* State of one run                                                         */
/* ------------------------------------------------------------------------ */

struct event {
	char key[MODEL_KEY_MAX + 2];
	size_t key_len;
	int kind;
	unsigned counter;
	int cause;
	int64_t usage_before;
	int64_t old_start;
	int64_t new_start;
	uint64_t version;
	uint64_t incarnation;
};

struct evlog {
	size_t n;
	struct event e[EV_MAX];
};

static struct {
	int64_t now; /* the fake clock */
	tally_store *store;
	struct model model;
	struct evlog lib;   /* the store's on_roll listener */
	struct evlog sweep; /* tally_sweep's callback */
	uint64_t lib_rolls_total;
	unsigned op_index;
	bool verbose; /* FUZZ_OPS_TRACE set: print every operation */
	char trace[TRACE_N][TRACE_LEN];
} g;

static char key_short[5] = {'\x01', '\x7f', '\x80', '\xff', '\0'};
static char key_255[256];
static char key_256[257];
/* Keys 0..3 also go through the NUL-terminated calls; 4 and 5 hold NUL
 * bytes and go through the _n calls only. */
#define GOOD_KEYS 6
#define TEXT_KEYS 4
static const char *good_keys[GOOD_KEYS];
static size_t good_key_len[GOOD_KEYS];
static const char *const good_key_names[GOOD_KEYS] = {
	"a", "b", "\\x01\\x7f\\x80\\xff", "255 bytes 01..ff", "a\\0b", "\\0"};

static void
keys_init(void)
{
	for (int i = 0; i < 255; i++)
		key_255[i] = (char)(i + 1);
	key_255[255] = '\0';
	memset(key_256, 'k', 256);
	key_256[256] = '\0';
	good_keys[0] = "a";
	good_keys[1] = "b";
	good_keys[2] = key_short;
	good_keys[3] = key_255;
	good_keys[4] = "a\0b";
	good_keys[5] = "\0";
	for (int i = 0; i < TEXT_KEYS; i++)
		good_key_len[i] = strlen(good_keys[i]);
	good_key_len[4] = 3;
	good_key_len[5] = 1;
}

static int64_t
clock_read(void *ctx)
{
	(void)ctx;
	return g.now;
}

static void fail(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

static void
log_event(struct evlog *lg, const tally_roll *roll)
{
	struct event *e;

	if (lg->n >= EV_MAX) {
		fprintf(stderr, "fuzz_ops: roll log overflow\n");
		abort();
	}
	e = &lg->e[lg->n++];
	memset(e, 0, sizeof *e);
	e->key_len = roll->key_len;
	if (roll->key != NULL && roll->key_len <= MODEL_KEY_MAX + 1)
		memcpy(e->key, roll->key, roll->key_len);
	e->kind = (int)roll->kind;
	e->counter = roll->counter;
	e->cause = (int)roll->cause;
	e->usage_before = roll->usage_before;
	e->old_start = roll->old_window_start;
	e->new_start = roll->new_window_start;
	e->version = roll->version;
	e->incarnation = roll->incarnation;
	if (roll->size != sizeof *roll)
		fail("roll event of size %zu", roll->size);
	if (roll->key != NULL && roll->key[roll->key_len] != '\0')
		fail("roll event key not NUL-terminated");
}

/*
 * The store's listener. It may call into the store (tally.h): it reads the
 * record back, which must hold the snapshot that installed the roll (one
 * thread: nothing can have changed it since the CAS) with the window the
 * event names.
 */
static void
on_roll(const tally_roll *roll, void *ctx)
{
	uint64_t version, incarnation;
	int64_t start;
	int rc;

	log_event(ctx, roll);
	g.lib_rolls_total++;
	if (roll->kind == TALLY_KIND_BUDGET) {
		tally_budget_view v = TALLY_BUDGET_VIEW_INIT;

		rc = tally_budget_get_n(g.store, roll->key, roll->key_len, &v);
		version = v.version;
		incarnation = v.incarnation;
		start = v.window_start;
	} else {
		tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;

		rc = tally_ratelimit_get_n(g.store, roll->key, roll->key_len,
					   &v);
		version = v.version;
		incarnation = v.incarnation;
		start = roll->counter == TALLY_COUNTER_REQUESTS
				? v.requests.window_start
				: v.tokens.window_start;
	}
	if (rc != TALLY_OK || version != roll->version ||
	    incarnation != roll->incarnation || start != roll->new_window_start)
		fail("get inside the roll listener: %s, version 0x%" PRIx64
		     " (event 0x%" PRIx64 "), window_start %" PRId64
		     " (event %" PRId64 ")",
		     tally_strerror(rc), version, roll->version, start,
		     roll->new_window_start);
}

static void
on_sweep_roll(const tally_roll *roll, void *ctx)
{
	log_event(ctx, roll);
}

/* ------------------------------------------------------------------------ */
/* Reporting                                                                */
/* ------------------------------------------------------------------------ */

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
trace(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(g.trace[g.op_index % TRACE_N], TRACE_LEN, fmt, ap);
	va_end(ap);
	if (g.verbose)
		fprintf(stderr, "#%u %s\n", g.op_index,
			g.trace[g.op_index % TRACE_N]);
}

static void
fail(const char *fmt, ...)
{
	va_list ap;
	unsigned first = g.op_index >= TRACE_N ? g.op_index - TRACE_N + 1 : 0;

	fprintf(stderr, "\nfuzz_ops: library and model differ\n");
	fprintf(stderr, "last operations (clock before each):\n");
	for (unsigned i = first; i <= g.op_index; i++)
		fprintf(stderr, "  #%u %s\n", i, g.trace[i % TRACE_N]);
	fprintf(stderr, "at #%u: ", g.op_index);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	abort();
}

static const char *
rc_name(int rc)
{
	const char *n = tally_result_name(rc);

	return n != NULL ? n : "?";
}

static void
cmp_rc(const char *what, int lib, int mod)
{
	if (lib != mod)
		fail("%s: result library %d (%s), model %d (%s)", what, lib,
		     rc_name(lib), mod, rc_name(mod));
}

static void
cmp_i64(const char *what, const char *field, int64_t lib, int64_t mod)
{
	if (lib != mod)
		fail("%s: %s library %" PRId64 ", model %" PRId64, what, field,
		     lib, mod);
}

static void
cmp_u64(const char *what, const char *field, uint64_t lib, uint64_t mod)
{
	if (lib != mod)
		fail("%s: %s library %" PRIu64 " (0x%" PRIx64
		     "), model %" PRIu64 " (0x%" PRIx64 ")",
		     what, field, lib, lib, mod, mod);
}

static void
cmp_bview(const char *what, const tally_budget_view *a,
	  const tally_budget_view *b)
{
	cmp_i64(what, "config.max_limit", a->config.max_limit,
		b->config.max_limit);
	cmp_i64(what, "config.period.count", a->config.period.count,
		b->config.period.count);
	cmp_i64(what, "config.period.unit", a->config.period.unit,
		b->config.period.unit);
	cmp_i64(what, "config.anchor", a->config.anchor, b->config.anchor);
	cmp_i64(what, "config.utc_offset_minutes", a->config.utc_offset_minutes,
		b->config.utc_offset_minutes);
	cmp_i64(what, "config.calendar_aligned", a->config.calendar_aligned,
		b->config.calendar_aligned);
	cmp_i64(what, "usage", a->usage, b->usage);
	cmp_i64(what, "window_start", a->window_start, b->window_start);
	cmp_i64(what, "window_end", a->window_end, b->window_end);
	cmp_u64(what, "version", a->version, b->version);
	cmp_u64(what, "incarnation", a->incarnation, b->incarnation);
	cmp_u64(what, "size", a->size, b->size);
	cmp_u64(what, "config.size", a->config.size, b->config.size);
}

static void
cmp_limit(const char *what, const char *name, const tally_limit *a,
	  const tally_limit *b)
{
	char f[64];

	snprintf(f, sizeof f, "config.%s.has_max", name);
	cmp_i64(what, f, a->has_max, b->has_max);
	snprintf(f, sizeof f, "config.%s.max", name);
	cmp_i64(what, f, a->max, b->max);
	snprintf(f, sizeof f, "config.%s.period.count", name);
	cmp_i64(what, f, a->period.count, b->period.count);
	snprintf(f, sizeof f, "config.%s.period.unit", name);
	cmp_i64(what, f, a->period.unit, b->period.unit);
}

static void
cmp_counter(const char *what, const char *name, const tally_counter_view *a,
	    const tally_counter_view *b)
{
	char f[64];

	snprintf(f, sizeof f, "%s.usage", name);
	cmp_i64(what, f, a->usage, b->usage);
	snprintf(f, sizeof f, "%s.window_start", name);
	cmp_i64(what, f, a->window_start, b->window_start);
	snprintf(f, sizeof f, "%s.window_end", name);
	cmp_i64(what, f, a->window_end, b->window_end);
}

static void
cmp_rview(const char *what, const tally_ratelimit_view *a,
	  const tally_ratelimit_view *b)
{
	cmp_limit(what, "tokens", &a->config.tokens, &b->config.tokens);
	cmp_limit(what, "requests", &a->config.requests, &b->config.requests);
	cmp_i64(what, "config.anchor", a->config.anchor, b->config.anchor);
	cmp_i64(what, "config.utc_offset_minutes", a->config.utc_offset_minutes,
		b->config.utc_offset_minutes);
	cmp_i64(what, "config.calendar_aligned", a->config.calendar_aligned,
		b->config.calendar_aligned);
	cmp_counter(what, "tokens", &a->tokens, &b->tokens);
	cmp_counter(what, "requests", &a->requests, &b->requests);
	cmp_u64(what, "version", a->version, b->version);
	cmp_u64(what, "incarnation", a->incarnation, b->incarnation);
	cmp_u64(what, "size", a->size, b->size);
	cmp_u64(what, "config.size", a->config.size, b->config.size);
}

/* The same recognisable garbage on both sides before each call. */
static void
poison_bview(tally_budget_view *v)
{
	memset(v, 0, sizeof *v);
	v->config.max_limit = INT64_C(0x5a5a5a5a5a5a5a5a);
	v->config.period.count = -77;
	v->config.period.unit = 77;
	v->config.anchor = INT64_C(-0x5a5a5a5a5a5a5a5a);
	v->config.utc_offset_minutes = 7777;
	v->config.calendar_aligned = true;
	v->usage = -5;
	v->window_start = 55555;
	v->window_end = -55555;
	v->version = UINT64_C(0xa5a5a5a5a5a5a5a5);
	v->incarnation = UINT64_C(0x5aa55aa55aa55aa5);
	v->config.size = 5;
	v->size = sizeof *v;
}

static void
poison_limit(tally_limit *l, tally_counter_view *c)
{
	l->has_max = true;
	l->max = -9;
	l->period.count = -99;
	l->period.unit = 99;
	c->usage = -999;
	c->window_start = 9999;
	c->window_end = -9999;
}

static void
poison_rview(tally_ratelimit_view *v)
{
	memset(v, 0, sizeof *v);
	poison_limit(&v->config.tokens, &v->tokens);
	poison_limit(&v->config.requests, &v->requests);
	v->config.anchor = 123456789;
	v->config.utc_offset_minutes = -7777;
	v->config.calendar_aligned = true;
	v->version = UINT64_C(0x5a5a5a5a5a5a5a5a);
	v->incarnation = UINT64_C(0xa55aa55aa55aa55a);
	v->config.size = 7;
	v->size = sizeof *v;
}

#define MASK_POISON 0xdeadu

static int
event_cmp(const struct event *a, const struct event *b)
{
	if (a->kind != b->kind)
		return a->kind < b->kind ? -1 : 1;
	if (a->key_len != b->key_len)
		return a->key_len < b->key_len ? -1 : 1;
	if (memcmp(a->key, b->key, a->key_len) != 0)
		return memcmp(a->key, b->key, a->key_len);
	if (a->counter != b->counter)
		return a->counter < b->counter ? -1 : 1;
	return 0;
}

static int
event_qsort_cmp(const void *a, const void *b)
{
	return event_cmp(a, b);
}

static void
events_of_model(struct evlog *out)
{
	out->n = g.model.nrolls;
	for (size_t i = 0; i < g.model.nrolls; i++) {
		const struct model_roll *r = &g.model.rolls[i];
		struct event *e = &out->e[i];

		memset(e, 0, sizeof *e);
		memcpy(e->key, r->key, r->key_len);
		e->key_len = r->key_len;
		e->kind = (int)r->kind;
		e->counter = r->counter;
		e->cause = (int)r->cause;
		e->usage_before = r->usage_before;
		e->old_start = r->old_window_start;
		e->new_start = r->new_window_start;
		e->version = r->version;
		e->incarnation = r->incarnation;
	}
}

static void
cmp_event(const char *what, size_t i, const struct event *a,
	  const struct event *b)
{
	char f[64];

	snprintf(f, sizeof f, "roll[%zu].key_len", i);
	cmp_i64(what, f, (int64_t)a->key_len, (int64_t)b->key_len);
	if (memcmp(a->key, b->key, a->key_len) != 0)
		fail("%s: roll[%zu].key differs", what, i);
	snprintf(f, sizeof f, "roll[%zu].kind", i);
	cmp_i64(what, f, a->kind, b->kind);
	snprintf(f, sizeof f, "roll[%zu].counter", i);
	cmp_i64(what, f, a->counter, b->counter);
	snprintf(f, sizeof f, "roll[%zu].cause", i);
	cmp_i64(what, f, a->cause, b->cause);
	snprintf(f, sizeof f, "roll[%zu].usage_before", i);
	cmp_i64(what, f, a->usage_before, b->usage_before);
	snprintf(f, sizeof f, "roll[%zu].old_window_start", i);
	cmp_i64(what, f, a->old_start, b->old_start);
	snprintf(f, sizeof f, "roll[%zu].new_window_start", i);
	cmp_i64(what, f, a->new_start, b->new_start);
	snprintf(f, sizeof f, "roll[%zu].version", i);
	cmp_u64(what, f, a->version, b->version);
	snprintf(f, sizeof f, "roll[%zu].incarnation", i);
	cmp_u64(what, f, a->incarnation, b->incarnation);
}

/* Compares the rolls of the last call; a sweep's in any order. */
static void
cmp_rolls(const char *what, bool any_order)
{
	static struct evlog mod, lib;

	events_of_model(&mod);
	lib = g.lib;
	if (lib.n != mod.n)
		fail("%s: %zu roll events from the library, %zu from the model",
		     what, lib.n, mod.n);
	if (any_order) {
		qsort(lib.e, lib.n, sizeof lib.e[0], event_qsort_cmp);
		qsort(mod.e, mod.n, sizeof mod.e[0], event_qsort_cmp);
	}
	for (size_t i = 0; i < lib.n; i++)
		cmp_event(what, i, &lib.e[i], &mod.e[i]);
	g.lib.n = 0;
	model_rolls_clear(&g.model);
}

/* ------------------------------------------------------------------------ */
/* Argument pickers                                                         */
/* ------------------------------------------------------------------------ */

/* A key and its length: MODEL_KEY_NUL for the NUL-terminated calls. */
static const char *
pick_key(struct input *in, char *name, size_t size, size_t *len)
{
	uint8_t b = in_u8(in);

	if (b < 0xe0) {
		unsigned k = b % GOOD_KEYS;

		*len = k < TEXT_KEYS && (b & 0x40) == 0 ? MODEL_KEY_NUL
							: good_key_len[k];
		snprintf(name, size, "\"%s\"%s", good_key_names[k],
			 *len == MODEL_KEY_NUL ? "" : " (_n)");
		return good_keys[k];
	}
	*len = MODEL_KEY_NUL;
	switch (b % 8) {
	case 0:
		snprintf(name, size, "NULL");
		return NULL;
	case 1:
		snprintf(name, size, "\"\"");
		return "";
	case 2:
		snprintf(name, size, "256 bytes");
		return key_256;
	case 3:
		*len = 0;
		snprintf(name, size, "\"a\" length 0");
		return "a";
	case 4:
		*len = 256;
		snprintf(name, size, "256 bytes (_n)");
		return key_256;
	case 5:
		*len = 1;
		snprintf(name, size, "NULL length 1");
		return NULL;
	case 6:
		*len = SIZE_MAX;
		snprintf(name, size, "256 bytes length SIZE_MAX");
		return key_256;
	default:
		*len = 0;
		snprintf(name, size, "NULL length 0");
		return NULL;
	}
}

static int64_t
pick_max(struct input *in)
{
	static const int64_t v[] = {0,  1,   2,    3,         5,
				    10, 100, 1000, INT64_MAX, INT64_MAX - 1};
	uint8_t b = in_u8(in);

	if (b < 2 * sizeof v / sizeof v[0])
		return v[b % (sizeof v / sizeof v[0])];
	switch (b % 8) {
	case 0:
		return -1;
	case 1:
		return INT64_MIN;
	case 2:
		return in_i64(in); /* any, negative too */
	default:
		return in_u16(in);
	}
}

static int64_t
pick_amount(struct input *in)
{
	static const int64_t v[] = {
		0, 0, 1, 1, 2, 3, 5, 10, 100, INT64_MAX, INT64_MAX - 1};
	uint8_t b = in_u8(in);

	if (b < 3 * sizeof v / sizeof v[0])
		return v[b % (sizeof v / sizeof v[0])];
	switch (b % 8) {
	case 0:
		return -1;
	case 1:
		return INT64_MIN;
	case 2:
		return in_i64(in);
	case 3:
		return in_u16(in);
	default:
		return in_u8(in) % 16;
	}
}

static tally_period
pick_period(struct input *in)
{
	uint8_t b = in_u8(in);
	tally_period p = {0, TALLY_PERIOD_FIXED};

	switch (b % 20) {
	case 0:
		p.unit = TALLY_PERIOD_NONE;
		break;
	case 1:
		p.count = 1;
		break;
	case 2:
		p.count = 1000;
		break;
	case 3:
		p.count = NS_PER_SEC;
		break;
	case 4:
		p.count = 60 * NS_PER_SEC;
		break;
	case 5:
		p.count = NS_PER_HOUR;
		break;
	case 6:
		p.count = NS_PER_DAY;
		break;
	case 7:
		p.count = (1 + (int64_t)in_u16(in)) * NS_PER_SEC;
		break;
	case 8:
		p.count = 1 + (int64_t)(in_u64(in) % UINT64_C(4000000000));
		break;
	case 9:
	case 10:
		p.unit = TALLY_PERIOD_WEEK;
		p.count = 1 + in_u8(in) % 3;
		break;
	case 11:
	case 12:
		p.unit = TALLY_PERIOD_MONTH;
		p.count = 1 + in_u8(in) % 13;
		break;
	case 13:
		p.unit = TALLY_PERIOD_MONTH;
		p.count = 1;
		break;
	case 14:
		p.unit = TALLY_PERIOD_MONTH;
		p.count = 12;
		break;
	case 15:
		p.count = (2 + in_u8(in) % 30) * NS_PER_DAY;
		break;
	case 16: { /* invalid */
		static const tally_period bad[] = {
			{0, TALLY_PERIOD_FIXED},
			{-1, TALLY_PERIOD_FIXED},
			{INT64_MIN, TALLY_PERIOD_FIXED},
			{0, TALLY_PERIOD_WEEK},
			{MODEL_WEEK_COUNT_MAX + 1, TALLY_PERIOD_WEEK},
			{0, TALLY_PERIOD_MONTH},
			{-12, TALLY_PERIOD_MONTH},
			{MODEL_MONTH_COUNT_MAX + 1, TALLY_PERIOD_MONTH},
			{1, TALLY_PERIOD_NONE},
			{1, 4},
			{1, -1},
		};
		p = bad[in_u8(in) % (sizeof bad / sizeof bad[0])];
		break;
	}
	case 17: { /* valid but huge: windows saturate or span centuries */
		static const tally_period huge[] = {
			{INT64_MAX, TALLY_PERIOD_FIXED},
			{INT64_MAX / 2, TALLY_PERIOD_FIXED},
			{400 * NS_PER_DAY, TALLY_PERIOD_FIXED},
			{MODEL_WEEK_COUNT_MAX, TALLY_PERIOD_WEEK},
			{520, TALLY_PERIOD_WEEK},
			{MODEL_MONTH_COUNT_MAX, TALLY_PERIOD_MONTH},
			{1200, TALLY_PERIOD_MONTH},
			{48, TALLY_PERIOD_MONTH},
		};
		p = huge[in_u8(in) % (sizeof huge / sizeof huge[0])];
		break;
	}
	default:
		p.count = (1 + in_u8(in) % 120) * 60 * NS_PER_SEC;
		break;
	}
	return p;
}

/* A time in [T_MIN, T_MAX). */
static int64_t
random_time(struct input *in)
{
	return (int64_t)((i128)T_MIN + (i128)(in_u64(in) % T_SPAN));
}

static int64_t
sat64(i128 v)
{
	return v < INT64_MIN   ? INT64_MIN
	       : v > INT64_MAX ? INT64_MAX
			       : (int64_t)v;
}

static int64_t
pick_anchor(struct input *in)
{
	uint8_t b = in_u8(in);

	switch (b % 16) {
	case 0:
		return g.now;
	case 1:
		return sat64((i128)g.now - in_u16(in));
	case 2:
		return sat64((i128)g.now + (int64_t)in_u16(in) * NS_PER_SEC);
	case 3:
		return random_time(in);
	case 4: {
		static const int64_t v[] = {
			INT64_MIN + 1,
			INT64_MAX,
			0,
			-1,
			INT64_C(1706659200) * NS_PER_SEC, /* 2024-01-31 */
			INT64_C(1709208000) * NS_PER_SEC, /* 2024-02-29 12:00 */
			INT64_C(1711929599) *
				NS_PER_SEC, /* 2024-03-31 23:59:59 */
			INT64_C(951782400) * NS_PER_SEC, /* 2000-02-29 */
		};
		return v[in_u8(in) % (sizeof v / sizeof v[0])];
	}
	case 5:
		return in_i64(in);
	default:
		return TALLY_ANCHOR_DEFAULT;
	}
}

static int32_t
pick_offset(struct input *in)
{
	static const int32_t v[] = {0,    0,     0,    60,    -60, 330, -330,
				    1439, -1439, 1440, -1440, 600, -480};
	uint8_t b = in_u8(in);

	if (b < 2 * sizeof v / sizeof v[0])
		return v[b % (sizeof v / sizeof v[0])];
	switch (b % 4) {
	case 0:
		return INT32_MIN;
	case 1:
		return INT32_MAX;
	default:
		return (int32_t)(in_u16(in) % 2879) - 1439;
	}
}

static tally_budget_config
pick_budget_config(struct input *in)
{
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;

	c.max_limit = pick_max(in);
	c.period = pick_period(in);
	c.anchor = pick_anchor(in);
	c.utc_offset_minutes = pick_offset(in);
	c.calendar_aligned = in_u8(in) & 1;
	return c;
}

static tally_limit
pick_limit(struct input *in)
{
	tally_limit l;
	uint8_t b = in_u8(in);

	l.has_max = (b & 3) != 0;
	l.max = l.has_max || (b & 4) ? pick_max(in) : 0;
	l.period = pick_period(in);
	return l;
}

static tally_ratelimit_config
pick_rl_config(struct input *in)
{
	tally_ratelimit_config c = TALLY_RATELIMIT_CONFIG_INIT;
	memset(&c, 0, sizeof c);
	c.size = sizeof c;
	c.tokens = pick_limit(in);
	c.requests = pick_limit(in);
	c.anchor = pick_anchor(in);
	c.utc_offset_minutes = pick_offset(in);
	c.calendar_aligned = in_u8(in) & 1;
	return c;
}

/* The version to observe: the record's, or a stale or made-up one. */
static uint64_t
pick_version(struct input *in, tally_kind kind, const char *key, size_t len)
{
	const struct model_record *r = model_find(&g.model, kind, key, len);
	uint64_t v = r != NULL ? r->version : 0;
	uint8_t b = in_u8(in);

	switch (b % 8) {
	case 0:
		return v > 0 ? v - 1 : v;
	case 1:
		return v < UINT64_MAX ? v + 1 : v;
	case 2:
		return in_u64(in);
	case 3:
		/* The last version of some removed record: a key's earlier
		 * incarnation's, perhaps. */
		return g.model.version_floor - 1;
	default:
		return v;
	}
}

static unsigned
pick_mask(struct input *in)
{
	static const unsigned v[] = {
		TALLY_COUNTER_TOKENS,
		TALLY_COUNTER_REQUESTS,
		TALLY_COUNTER_BOTH,
		TALLY_COUNTER_TOKENS | TALLY_RESET_DUE_ONLY,
		TALLY_COUNTER_REQUESTS | TALLY_RESET_DUE_ONLY,
		TALLY_COUNTER_BOTH | TALLY_RESET_DUE_ONLY,
		TALLY_COUNTER_BOTH,
		TALLY_COUNTER_BOTH | TALLY_RESET_DUE_ONLY,
		0,
		TALLY_RESET_DUE_ONLY,
		4,
		TALLY_COUNTER_BOTH | 0x200,
		UINT32_MAX,
	};
	uint8_t b = in_u8(in);

	if (b == 0xff)
		return in_u16(in);
	return v[b % (sizeof v / sizeof v[0])];
}

/* ------------------------------------------------------------------------ */
/* Clock                                                                    */
/* ------------------------------------------------------------------------ */

static int64_t
clamp_time(i128 t)
{
	if (t < T_MIN)
		return T_MIN;
	if (t > T_MAX)
		return T_MAX;
	return (int64_t)t;
}

static void
set_now(int64_t t)
{
	g.now = t;
	model_set_now(&g.model, t);
}

/* A window_end (or start) of some live record, or false. */
static bool
pick_boundary(struct input *in, int64_t *out)
{
	uint8_t b = in_u8(in);
	const char *key = good_keys[b % GOOD_KEYS];
	size_t len = good_key_len[b % GOOD_KEYS];
	bool end = (b & 0x10) == 0;
	int64_t t;

	if (b & 0x20) {
		tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
		if (model_ratelimit_get(&g.model, key, len, &v) != TALLY_OK)
			return false;
		t = (b & 0x40) ? (end ? v.requests.window_end
				      : v.requests.window_start)
			       : (end ? v.tokens.window_end
				      : v.tokens.window_start);
	} else {
		tally_budget_view v = TALLY_BUDGET_VIEW_INIT;
		if (model_budget_get(&g.model, key, len, &v) != TALLY_OK)
			return false;
		t = end ? v.window_end : v.window_start;
	}
	*out = t;
	return true;
}

static void
op_clock(struct input *in)
{
	i128 t = g.now;
	uint8_t b = in_u8(in);
	int64_t x;

	switch (b % 12) {
	case 0:
		t += 1 + in_u16(in);
		break;
	case 1:
		t += (int64_t)in_u16(in) * NS_PER_SEC;
		break;
	case 2:
		t += (int64_t)(1 + in_u8(in)) * NS_PER_HOUR;
		break;
	case 3:
		t += (int64_t)(1 + in_u8(in)) * NS_PER_DAY;
		break;
	case 4:
		t += (int64_t)(1 + in_u8(in) % 60) * 31 * NS_PER_DAY;
		break;
	case 5:
		t += (int64_t)(1 + in_u8(in) % 50) * 365 * NS_PER_DAY;
		break;
	case 6:
		t -= 1 + in_u16(in);
		break;
	case 7:
		t -= (int64_t)(1 + in_u8(in)) * NS_PER_HOUR;
		break;
	case 8:
		t -= (int64_t)(1 + in_u8(in) % 50) * 365 * NS_PER_DAY;
		break;
	case 9:
	case 10: /* onto a boundary, or one ns either side */
		if (pick_boundary(in, &x)) {
			t = x;
			t += (int)(in_u8(in) % 3) - 1;
		}
		break;
	default:
		if (in_u8(in) % 8 == 0) {
			/* The int64 extremes, outside the usual range. */
			static const int64_t v[] = {INT64_MIN, INT64_MIN + 1,
						    INT64_MAX, INT64_MAX - 1};

			set_now(v[in_u8(in) % 4]);
			trace("clock := %" PRId64 " (extreme)", g.now);
			return;
		}
		t = random_time(in);
		break;
	}
	set_now(clamp_time(t));
	trace("clock := %" PRId64, g.now);
}

/* ------------------------------------------------------------------------ */
/* Operations                                                               */
/* ------------------------------------------------------------------------ */

/* The library call of a key: its NUL-terminated form, or its _n form. */
#define KCALL(fn, ...)                                                         \
	(klen == MODEL_KEY_NUL                                                 \
		 ? tally_##fn(store, key, __VA_ARGS__)                         \
		 : tally_##fn##_n(store, key, klen, __VA_ARGS__))

static void
op_budget(struct input *in, unsigned op)
{
	char kn[32], what[320];
	size_t klen;
	const char *key = pick_key(in, kn, sizeof kn, &klen);
	uint8_t flags = in_u8(in);
	bool noview = (flags & 7) == 0, smallview = (flags & 7) == 1;
	tally_budget_view lv = TALLY_BUDGET_VIEW_INIT;
	tally_budget_view mv = TALLY_BUDGET_VIEW_INIT;
	tally_budget_view *lvp = noview ? NULL : &lv,
			  *mvp = noview ? NULL : &mv;
	tally_store *store = (flags & 0xf8) == 0xf8 ? NULL : g.store;
	struct model *m = store == NULL ? NULL : &g.model;
	int lrc = 0, mrc = 0;

	poison_bview(&lv);
	poison_bview(&mv);
	if (smallview)
		lv.size = mv.size = offsetof(tally_budget_view, held) - 1;
	switch (op) {
	case 0: {
		tally_budget_config c = pick_budget_config(in);
		uint8_t cb = in_u8(in);
		bool nocfg = cb == 0xff;

		if (cb == 0xfe)
			c.size = sizeof c - 1;

		snprintf(what, sizeof what,
			 "budget_upsert(%s, max %" PRId64 ", period %" PRId64
			 "/%d, anchor %" PRId64 ", off %d, aligned %d%s)",
			 kn, c.max_limit, c.period.count, (int)c.period.unit,
			 c.anchor, (int)c.utc_offset_minutes,
			 (int)c.calendar_aligned,
			 nocfg        ? ", NULL config"
			 : cb == 0xfe ? ", small"
				      : "");
		trace("@%" PRId64 " %s", g.now, what);
		lrc = KCALL(budget_upsert, nocfg ? NULL : &c, lvp);
		mrc = model_budget_upsert(m, key, klen, nocfg ? NULL : &c, mvp);
		break;
	}
	case 1:
		snprintf(what, sizeof what, "budget_get(%s)", kn);
		trace("@%" PRId64 " %s", g.now, what);
		lrc = KCALL(budget_get, lvp);
		mrc = model_budget_get(m, key, klen, mvp);
		break;
	case 2: {
		int64_t a = pick_amount(in);

		snprintf(what, sizeof what, "budget_bump(%s, %" PRId64 ")", kn,
			 a);
		trace("@%" PRId64 " %s", g.now, what);
		lrc = KCALL(budget_bump, a, lvp);
		mrc = model_budget_bump(m, key, klen, a, mvp);
		break;
	}
	case 3:
		snprintf(what, sizeof what, "budget_check(%s)", kn);
		trace("@%" PRId64 " %s", g.now, what);
		lrc = KCALL(budget_check, lvp);
		mrc = model_budget_check(m, key, klen, mvp);
		break;
	case 4: {
		int64_t a = pick_amount(in);

		snprintf(what, sizeof what,
			 "budget_try_consume(%s, %" PRId64 ")", kn, a);
		trace("@%" PRId64 " %s", g.now, what);
		lrc = KCALL(budget_try_consume, a, lvp);
		mrc = model_budget_try_consume(m, key, klen, a, mvp);
		break;
	}
	case 5: {
		uint64_t v = pick_version(in, TALLY_KIND_BUDGET, key, klen);

		snprintf(what, sizeof what,
			 "budget_reset(%s, version 0x%" PRIx64 ")", kn, v);
		trace("@%" PRId64 " %s", g.now, what);
		lrc = KCALL(budget_reset, v, lvp);
		mrc = model_budget_reset(m, key, klen, v, mvp);
		break;
	}
	default:
		snprintf(what, sizeof what, "budget_remove(%s)", kn);
		trace("@%" PRId64 " %s", g.now, what);
		lrc = KCALL(budget_remove, lvp);
		mrc = model_budget_remove(m, key, klen, mvp);
		break;
	}
	if (g.verbose)
		fprintf(stderr, "    -> %s\n", rc_name(lrc));
	cmp_rc(what, lrc, mrc);
	cmp_bview(what, &lv, &mv);
	cmp_rolls(what, false);
}

static void
op_ratelimit(struct input *in, unsigned op)
{
	char kn[32], what[400];
	size_t klen;
	const char *key = pick_key(in, kn, sizeof kn, &klen);
	uint8_t flags = in_u8(in);
	bool noview = (flags & 7) == 0, nomask = (flags & 0x18) == 0;
	bool smallview = (flags & 7) == 1;
	tally_ratelimit_view lv = TALLY_RATELIMIT_VIEW_INIT;
	tally_ratelimit_view mv = TALLY_RATELIMIT_VIEW_INIT;
	tally_ratelimit_view *lvp = noview ? NULL : &lv,
			     *mvp = noview ? NULL : &mv;
	unsigned lmask = MASK_POISON, mmask = MASK_POISON;
	unsigned *lmp = nomask ? NULL : &lmask, *mmp = nomask ? NULL : &mmask;
	tally_store *store =
		(flags & 0xe0) == 0xe0 && (flags & 7) == 7 ? NULL : g.store;
	struct model *m = store == NULL ? NULL : &g.model;
	int lrc = 0, mrc = 0;

	poison_rview(&lv);
	poison_rview(&mv);
	if (smallview)
		lv.size = mv.size =
			offsetof(tally_ratelimit_view, tokens_held) - 1;
	switch (op) {
	case 0: {
		tally_ratelimit_config c = pick_rl_config(in);
		uint8_t cb = in_u8(in);
		bool nocfg = cb == 0xff;

		if (cb == 0xfe)
			c.size = sizeof c - 1;

		snprintf(what, sizeof what,
			 "ratelimit_upsert(%s, tokens %d/%" PRId64
			 " per %" PRId64 "/%d, requests %d/%" PRId64
			 " per %" PRId64 "/%d, anchor %" PRId64
			 ", off %d, aligned %d%s)",
			 kn, (int)c.tokens.has_max, c.tokens.max,
			 c.tokens.period.count, (int)c.tokens.period.unit,
			 (int)c.requests.has_max, c.requests.max,
			 c.requests.period.count, (int)c.requests.period.unit,
			 c.anchor, (int)c.utc_offset_minutes,
			 (int)c.calendar_aligned,
			 nocfg        ? ", NULL config"
			 : cb == 0xfe ? ", small"
				      : "");
		trace("@%" PRId64 " %s", g.now, what);
		lrc = KCALL(ratelimit_upsert, nocfg ? NULL : &c, lvp);
		mrc = model_ratelimit_upsert(m, key, klen, nocfg ? NULL : &c,
					     mvp);
		break;
	}
	case 1:
		snprintf(what, sizeof what, "ratelimit_get(%s)", kn);
		trace("@%" PRId64 " %s", g.now, what);
		lrc = KCALL(ratelimit_get, lvp);
		mrc = model_ratelimit_get(m, key, klen, mvp);
		break;
	case 2: {
		int64_t t = pick_amount(in), r = pick_amount(in);

		snprintf(what, sizeof what,
			 "ratelimit_bump(%s, %" PRId64 ", %" PRId64 ")", kn, t,
			 r);
		trace("@%" PRId64 " %s", g.now, what);
		lrc = KCALL(ratelimit_bump, t, r, lvp);
		mrc = model_ratelimit_bump(m, key, klen, t, r, mvp);
		break;
	}
	case 3:
		snprintf(what, sizeof what, "ratelimit_check(%s)", kn);
		trace("@%" PRId64 " %s", g.now, what);
		lrc = KCALL(ratelimit_check, lmp, lvp);
		mrc = model_ratelimit_check(m, key, klen, mmp, mvp);
		break;
	case 4: {
		int64_t t = pick_amount(in), r = pick_amount(in);

		snprintf(what, sizeof what,
			 "ratelimit_try_consume(%s, %" PRId64 ", %" PRId64 ")",
			 kn, t, r);
		trace("@%" PRId64 " %s", g.now, what);
		lrc = KCALL(ratelimit_try_consume, t, r, lmp, lvp);
		mrc = model_ratelimit_try_consume(m, key, klen, t, r, mmp, mvp);
		break;
	}
	case 5: {
		uint64_t v = pick_version(in, TALLY_KIND_RATELIMIT, key, klen);
		unsigned mask = pick_mask(in);

		snprintf(what, sizeof what,
			 "ratelimit_reset(%s, version 0x%" PRIx64
			 ", mask 0x%x)",
			 kn, v, mask);
		trace("@%" PRId64 " %s", g.now, what);
		lrc = KCALL(ratelimit_reset, v, mask, lmp, lvp);
		mrc = model_ratelimit_reset(m, key, klen, v, mask, mmp, mvp);
		break;
	}
	default:
		snprintf(what, sizeof what, "ratelimit_remove(%s)", kn);
		trace("@%" PRId64 " %s", g.now, what);
		lrc = KCALL(ratelimit_remove, lvp);
		mrc = model_ratelimit_remove(m, key, klen, mvp);
		break;
	}
	if (g.verbose)
		fprintf(stderr, "    -> %s mask 0x%x\n", rc_name(lrc), lmask);
	cmp_rc(what, lrc, mrc);
	cmp_rview(what, &lv, &mv);
	cmp_u64(what, "mask", lmask, mmask);
	cmp_rolls(what, false);
}

static void
op_sweep(struct input *in)
{
	uint8_t flags = in_u8(in);
	bool with_cb = flags & 1, with_count = flags & 2;
	tally_store *store = (flags & 0xfc) == 0xfc ? NULL : g.store;
	size_t lrolled = 777, mrolled = 777;
	int lrc, mrc;
	char what[64];

	snprintf(what, sizeof what, "sweep(%s%s%s)", store ? "" : "NULL, ",
		 with_cb ? "cb" : "no cb", with_count ? ", count" : "");
	trace("@%" PRId64 " %s", g.now, what);
	g.sweep.n = 0;
	lrc = tally_sweep(store, with_cb ? on_sweep_roll : NULL, &g.sweep,
			  with_count ? &lrolled : NULL);
	mrc = model_sweep(store ? &g.model : NULL,
			  with_count ? &mrolled : NULL);
	if (g.verbose)
		fprintf(stderr, "    -> %s, %zu rolls\n", rc_name(lrc),
			g.lib.n);
	cmp_rc(what, lrc, mrc);
	cmp_u64(what, "*rolled", lrolled, mrolled);
	if (with_cb) {
		/* The callback hears what the listener heard, in order. */
		if (g.sweep.n != g.lib.n)
			fail("%s: callback heard %zu rolls, listener %zu", what,
			     g.sweep.n, g.lib.n);
		for (size_t i = 0; i < g.lib.n; i++)
			cmp_event("sweep callback vs listener", i,
				  &g.sweep.e[i], &g.lib.e[i]);
	} else if (g.sweep.n != 0) {
		fail("%s: no callback given, yet it was called", what);
	}
	cmp_rolls(what, true);
}

static void
print_bview(const char *key, const tally_budget_view *v)
{
	fprintf(stderr,
		"    budget \"%s\": max %" PRId64 " period %" PRId64
		"/%d anchor %" PRId64 " off %d aligned %d usage %" PRId64
		" window [%" PRId64 ", %" PRId64 ") version 0x%" PRIx64 "\n",
		key, v->config.max_limit, v->config.period.count,
		(int)v->config.period.unit, v->config.anchor,
		(int)v->config.utc_offset_minutes,
		(int)v->config.calendar_aligned, v->usage, v->window_start,
		v->window_end, v->version);
}

static void
print_rview(const char *key, const tally_ratelimit_view *v)
{
	const tally_limit *l[2] = {&v->config.tokens, &v->config.requests};
	const tally_counter_view *c[2] = {&v->tokens, &v->requests};

	fprintf(stderr,
		"    ratelimit \"%s\": anchor %" PRId64
		" off %d aligned %d version 0x%" PRIx64 "\n",
		key, v->config.anchor, (int)v->config.utc_offset_minutes,
		(int)v->config.calendar_aligned, v->version);
	for (int i = 0; i < 2; i++)
		fprintf(stderr,
			"      %s: max %d/%" PRId64 " period %" PRId64
			"/%d usage %" PRId64 " window [%" PRId64 ", %" PRId64
			")\n",
			i ? "requests" : "tokens", (int)l[i]->has_max,
			l[i]->max, l[i]->period.count, (int)l[i]->period.unit,
			c[i]->usage, c[i]->window_start, c[i]->window_end);
}

/* Every key of both kinds, as stored, and the store's counters. */
static void
cross_check(void)
{
	tally_stats st = TALLY_STATS_INIT;

	for (unsigned i = 0; i < GOOD_KEYS; i++) {
		const char *key = good_keys[i];
		size_t len = good_key_len[i];
		tally_budget_view lb = TALLY_BUDGET_VIEW_INIT;
		tally_budget_view mb = TALLY_BUDGET_VIEW_INIT;
		tally_ratelimit_view lr = TALLY_RATELIMIT_VIEW_INIT;
		tally_ratelimit_view mr = TALLY_RATELIMIT_VIEW_INIT;
		char what[64];

		poison_bview(&lb);
		poison_bview(&mb);
		snprintf(what, sizeof what, "after: budget_get(\"%s\")",
			 good_key_names[i]);
		cmp_rc(what, tally_budget_get_n(g.store, key, len, &lb),
		       model_budget_get(&g.model, key, len, &mb));
		if (g.verbose && lb.version != mb.version)
			print_bview(good_key_names[i], &lb);
		cmp_bview(what, &lb, &mb);

		poison_rview(&lr);
		poison_rview(&mr);
		snprintf(what, sizeof what, "after: ratelimit_get(\"%s\")",
			 good_key_names[i]);
		cmp_rc(what, tally_ratelimit_get_n(g.store, key, len, &lr),
		       model_ratelimit_get(&g.model, key, len, &mr));
		if (g.verbose && lr.version != mr.version)
			print_rview(good_key_names[i], &lr);
		cmp_rview(what, &lr, &mr);
	}
	if (tally_store_stats(g.store, &st) != TALLY_OK)
		fail("tally_store_stats failed");
	cmp_u64("after: stats", "records", st.records, model_records(&g.model));
	cmp_u64("after: stats", "rolls", st.rolls, g.model.rolls_total);
	cmp_u64("after: listener", "rolls heard", g.lib_rolls_total,
		g.model.rolls_total);
}

static void
do_op(struct input *in)
{
	uint8_t op = in_u8(in);

	switch (op % 32) {
	case 0:
	case 1:
	case 2:
		op_budget(in, 0); /* upsert */
		break;
	case 3:
		op_budget(in, 1); /* get */
		break;
	case 4:
	case 5:
		op_budget(in, 2); /* bump */
		break;
	case 6:
		op_budget(in, 3); /* check */
		break;
	case 7:
	case 8:
		op_budget(in, 4); /* try_consume */
		break;
	case 9:
		op_budget(in, 5); /* reset */
		break;
	case 10:
		op_budget(in, 6); /* remove */
		break;
	case 11:
	case 12:
	case 13:
		op_ratelimit(in, 0);
		break;
	case 14:
		op_ratelimit(in, 1);
		break;
	case 15:
	case 16:
		op_ratelimit(in, 2);
		break;
	case 17:
		op_ratelimit(in, 3);
		break;
	case 18:
	case 19:
		op_ratelimit(in, 4);
		break;
	case 20:
		op_ratelimit(in, 5);
		break;
	case 21:
		op_ratelimit(in, 6);
		break;
	case 22:
	case 23:
		op_sweep(in);
		break;
	default:
		op_clock(in);
		break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = {data, size};
	tally_store_options o = TALLY_STORE_OPTIONS_INIT;
	int rc;

	if (good_keys[0] == NULL) {
		keys_init();
		g.verbose = getenv("FUZZ_OPS_TRACE") != NULL;
	}
	memset(&g.lib, 0, sizeof g.lib);
	memset(&g.sweep, 0, sizeof g.sweep);
	g.lib_rolls_total = 0;
	g.op_index = 0;
	g.now = random_time(&in);
	model_init(&g.model, g.now);

	/* 0 (the default size) to 3: small maps grow while keys come and
	 * go. From the start time's two lowest bits, so that inputs
	 * written before this kept their meaning. */
	o.expected_records = (size_t)(g.now & 3);
	o.clock = clock_read;
	o.on_roll = on_roll;
	o.on_roll_ctx = &g.lib;
	o.hash_seed = UINT64_C(0x243f6a8885a308d3);
	if ((rc = tally_store_create(&g.store, &o)) != TALLY_OK) {
		fprintf(stderr, "fuzz_ops: tally_store_create: %s\n",
			tally_strerror(rc));
		abort();
	}
	trace("start, clock := %" PRId64, g.now);
	cross_check();
	while (in.n > 0 && g.op_index < OPS_MAX) {
		g.op_index++;
		do_op(&in);
		cross_check();
	}
	tally_store_destroy(g.store);
	g.store = NULL;
	return 0;
}
