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
 * Sliding counters (0.4), from bits that inputs written before them left
 * unused, so those inputs keep their meaning: each rate-limit counter's
 * algorithm from bits 3..7 of its limit's first byte (pick_limit: mostly
 * FIXED, often SLIDING, now and then 2 or UINT32_MAX); maxima and amounts
 * around 2^62 - 1 from picker values that read the same bytes as before
 * (pick_max's b % 8 == 7, pick_amount's b % 8 == 7 with its byte's top
 * bit); window lengths around 2^62 ns from the "huge" period table's index
 * byte with its top bit; rate-limit configs of the 0.3 layout's size and
 * between (upsert's size byte 0xfb..0xfe) and views of the 0.3 layout and
 * between (flags & 7 == 5, 6), compared in that layout.
 *
 * Holds (op bytes 0x98-0x9f, 0xb8-0xbf, 0xd8-0xdf, 0xf8-0xff, which no
 * input written before them used): tally_admit in modes HOLD, CONSUME and
 * PEEK (and bad ones) over 1 to 16 charges of either kind (duplicates,
 * missing records, shadow charges, bad kinds, flags and amounts, n of 0,
 * 17 and 1000, every TTL edge of the grain and of hold_ttl_max, missing or
 * surplus handles, no decision or a small one); tally_settle, _release and
 * _settle_partial of 8 handles (estimates, overdrafts, less, 0, bad costs,
 * a wrong n, NULL arguments), which the program also copies, zeroes,
 * corrupts byte by byte, shrinks, resets to TALLY_HOLD_INIT or replaces
 * with another store's; and clock steps by grains, onto slot ends and
 * deadlines. The store's hold_ttl_max comes from bits 2..4 of the start
 * time (grains of 1 ns to 122 days). Decisions are compared field by
 * field, handles by their public fields, expiry events like roll events,
 * and the admission counters of tally_stats after every call.
 *
 * Every call runs on one tally_store (fake clock, roll and expiry
 * listeners that log every event) and on the model. After each call the harness compares the
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
#define NS_PER_WEEK_ (7 * NS_PER_DAY)

/* The fuzzer's time range: 1900-01-01 to 2200-01-01 (model.h). */
#define T_MIN (INT64_C(-2208988800) * NS_PER_SEC)
#define T_MAX (INT64_C(7258118400) * NS_PER_SEC)

/* 300 years of ns exceed INT64_MAX: spans and sums go through i128. */
#define T_SPAN ((uint64_t)T_MAX + (uint64_t)-T_MIN)

__extension__ typedef __int128 i128;
__extension__ typedef unsigned __int128 u128;

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

/* One expiry event (tally_expiry, key copied). */
struct xevent {
	char key[MODEL_KEY_MAX + 2];
	size_t key_len;
	int kind;
	uint32_t holds;
	int64_t amount[2];
	int64_t slot_end;
	uint64_t version;
	uint64_t incarnation;
};

struct xlog {
	size_t n;
	struct xevent e[EV_MAX];
};

/* The hold handles a program works with: the library's and the model's
 * twin of each. */
#define HOLDS_N 8

struct handle {
	tally_hold lib;
	struct model_hold mod; /* .forged: lib differs from pristine */
	tally_hold pristine;   /* lib as the library last left it */
	bool foreign;          /* another store's: always forged */
};

/*
 * Library discrepancies this harness found while holds were written, all
 * fixed in the library since (the reproducers are in tests/test_hold.c and
 * the corpus), and two found while sliding counters were written, not
 * fixed yet (TOL_SLIDING_*). The harness checks strictly;
 * FUZZ_OPS_TOLERATE=1 makes it step around each of them again, for
 * bisecting an old library (FUZZ_OPS_TOLERATE=0x300, a mask of TOL_*
 * bits: only those).
 *   TOL_UPSERT_DEAD: an upsert does not drop dead hold slots (tally.h:
 *     "the next CAS on the record (any write, or a sweep) drops it"); the
 *     harness skips upserts of records that have one.
 *   TOL_OVERFLOW: an admission that fails with EOVERFLOW in its hold
 *     pass (a held sum, or a deadline or slot past int64 time) runs
 *     undo_holds, whose `for (unsigned j = upto; j-- > 0;)` wraps below
 *     0 (the fuzz preset's unsigned-integer-overflow check aborts); with
 *     two limits or more it has also held and released the limits before
 *     the failing one in the acquisition order (their versions moved by
 *     two, due windows rolled; tally.h: "nothing changed"). The harness
 *     skips admissions the model answers EOVERFLOW. (Not fixed for one
 *     cause: a sliding counter's held past 2^62 - 1 is refused only in
 *     the hold pass, ratelimit.c's held_over_cap, not by the read-only
 *     pass's peek_fit, so the limits before it are held and released
 *     again: this tolerance steps around that too.)
 *   TOL_STRAND: settling a second copy of a handle can uncount a slot's
 *     last hold while amounts are left in it; the library (hold.c) and
 *     the model drop those amounts with the slot, and the other holds of
 *     that slot settle as GONE. Under this tolerance (for a library that
 *     stranded them in `held`) the harness skips such settles.
 *   TOL_RETRY_OVERFLOW: a report's retry_after past INT64_MAX (a clock
 *     far before the time the request could pass: INT64_MIN, or a window
 *     that ends in the far future) overflows int64 in hold.c
 *     (tally__retry_after: best - now); the harness skips calls whose
 *     reports the model saturated.
 *   TOL_STATS_WRAP: tally_stats.expired_units and overdraft_units add
 *     units (up to 2 * INT64_MAX per event) with a plain uint64 add
 *     (atomics.h, tally__stat_add), which the fuzz preset's
 *     unsigned-integer-overflow check aborts on once a counter passes
 *     2^64; the harness ends a program before expired_units could pass
 *     it and skips a settle whose costs could take overdraft_units past
 *     it.
 *   TOL_GONE_REPORT: tally_admit leaves the report of a missing record
 *     (flagged GONE) as the caller's bytes were, apart from its flags
 *     (since b16e83f dropped the memset of the reports; tally.h: "kind
 *     ... 0 if not reached"); the harness compares only the flags of such
 *     a report.
 *   TOL_GRAIN1: with a grain of 1 ns (hold_ttl_max 1 to 3), a write at
 *     now INT64_MAX on a record with a live hold computes floor(now / G)
 *     + 1 in int64 (hold.c, tally__holds_expire: signed overflow); the
 *     harness moves such a clock to INT64_MAX - 1.
 *   TOL_SLOTS_APART: hold.c's slots_apart subtracts slot numbers as
 *     uint64 (correct modulo 2^64, but not marked as wrapping like
 *     hash.c's TALLY__WRAPS), so the fuzz preset's unsigned-integer-
 *     overflow check aborts when slot numbers of both signs meet (a hold
 *     taken before 1970, a write after); the harness takes no hold (HOLD
 *     or CONSUME) while the clock is before 1970.
 *   TOL_SLIDING_CAP (fixed; found by this harness): an upsert that made
 *     a counter SLIDING kept its usage and held even above a sliding
 *     counter's range, 2^62 - 1 (a FIXED counter may reach INT64_MAX);
 *     a report's used (usage + carry) then overflowed int64 in
 *     ratelimit.c (report_sliding). Such an upsert is now TALLY_EOVERFLOW
 *     (tally.h), in the library and the model. Under this tolerance the
 *     harness skips such upserts.
 *   TOL_SLIDING_NEVER (fixed; found by this harness): a sliding counter
 *     whose window ends at INT64_MAX never rolls (tally.h), yet hold.c's
 *     tally__retry_after_sliding took swin.h's closed form, which rolls
 *     it at start + w past int64 time: a request that can never pass got
 *     a retry_after that points past INT64_MAX instead of
 *     TALLY_RETRY_NEVER. Under this tolerance the harness does not
 *     compare such a retry_after.
 */
#define TOL_UPSERT_DEAD 0x1u
#define TOL_OVERFLOW 0x2u
#define TOL_STRAND 0x4u
#define TOL_GRAIN1 0x8u
#define TOL_RETRY_OVERFLOW 0x10u
#define TOL_STATS_WRAP 0x20u
#define TOL_GONE_REPORT 0x40u
#define TOL_SLOTS_APART 0x80u
#define TOL_SLIDING_CAP 0x100u
#define TOL_SLIDING_NEVER 0x200u
#define TOL_ALL 0x3ffu

static struct {
	int64_t now; /* the fake clock */
	tally_store *store;
	struct model model;
	struct evlog lib;   /* the store's on_roll listener */
	struct evlog sweep; /* tally_sweep's callback */
	struct xlog xlib;   /* the store's on_expire listener */
	uint64_t lib_rolls_total;
	unsigned op_index;
	bool verbose;      /* FUZZ_OPS_TRACE set: print every operation */
	bool multi;        /* a call of several CASes runs (admit, settle) */
	unsigned tolerate; /* TOL_*: all with FUZZ_OPS_TOLERATE, else 0 */
	int64_t ttl_max, grain;   /* the store's hold_ttl_max and grain */
	struct handle h[HOLDS_N]; /* hold handles */
	tally_store *other;       /* another store: its handles are bad */
	tally_hold foreign;       /* a live hold of that store */
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
	/* A call of several CASes (tally_admit, tally_settle) reports after
	 * the last one: the record may hold a later version by then (the
	 * window is the same: one clock reading per call). */
	if (g.multi && version > roll->version)
		version = roll->version;
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

/* The store's expiry listener. */
static void
on_expire(const tally_expiry *ev, void *ctx)
{
	struct xlog *lg = ctx;
	struct xevent *e;

	if (lg->n >= EV_MAX) {
		fprintf(stderr, "fuzz_ops: expiry log overflow\n");
		abort();
	}
	e = &lg->e[lg->n++];
	memset(e, 0, sizeof *e);
	e->key_len = ev->key_len;
	if (ev->key != NULL && ev->key_len <= MODEL_KEY_MAX + 1)
		memcpy(e->key, ev->key, ev->key_len);
	e->kind = (int)ev->kind;
	e->holds = ev->holds;
	e->amount[0] = ev->amount[0];
	e->amount[1] = ev->amount[1];
	e->slot_end = ev->slot_end;
	e->version = ev->version;
	e->incarnation = ev->incarnation;
	if (ev->size != sizeof *ev)
		fail("expiry event of size %zu", ev->size);
	if (ev->key == NULL || ev->key[ev->key_len] != '\0')
		fail("expiry event key missing or not NUL-terminated");
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
	cmp_i64(what, "held", a->held, b->held);
	cmp_u64(what, "holds", a->holds, b->holds);
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

/* A view of the 0.3 layout (0.2: its prefix): its fields where that
 * header put them (those past the view's size hold the poison on both
 * sides), then every byte past what the library may write: the view's
 * size, and the 0.3 layout's. (Padding inside is not compared: the
 * library's struct copies may carry any bytes there.) */
static void
cmp_rview_03(const char *what, const tally_ratelimit_view *va,
	     const tally_ratelimit_view *vb)
{
	struct model_rl_view_03 a, b;

	memcpy(&a, va, sizeof a);
	memcpy(&b, vb, sizeof b);
	cmp_limit(what, "tokens", &a.config.tokens, &b.config.tokens);
	cmp_limit(what, "requests", &a.config.requests, &b.config.requests);
	cmp_i64(what, "config.anchor", a.config.anchor, b.config.anchor);
	cmp_i64(what, "config.utc_offset_minutes", a.config.utc_offset_minutes,
		b.config.utc_offset_minutes);
	cmp_i64(what, "config.calendar_aligned", a.config.calendar_aligned,
		b.config.calendar_aligned);
	cmp_counter(what, "tokens", &a.tokens, &b.tokens);
	cmp_counter(what, "requests", &a.requests, &b.requests);
	cmp_u64(what, "version", a.version, b.version);
	cmp_u64(what, "incarnation", a.incarnation, b.incarnation);
	cmp_i64(what, "tokens_held", a.tokens_held, b.tokens_held);
	cmp_i64(what, "requests_held", a.requests_held, b.requests_held);
	cmp_u64(what, "holds", a.holds, b.holds);
	cmp_u64(what, "size", a.size, b.size);
	cmp_u64(what, "config.size", a.config.size, b.config.size);
	for (size_t i = vb->size < sizeof a ? vb->size : sizeof a;
	     i < sizeof *va; i++)
		if (((const unsigned char *)va)[i] !=
		    ((const unsigned char *)vb)[i])
			fail("%s: a view of size %zu differs at byte %zu "
			     "(library 0x%02x, model 0x%02x)",
			     what, va->size, i, ((const unsigned char *)va)[i],
			     ((const unsigned char *)vb)[i]);
}

static void
cmp_rview(const char *what, const tally_ratelimit_view *a,
	  const tally_ratelimit_view *b)
{
	if (a->size != b->size)
		cmp_u64(what, "size", a->size, b->size);
	if (b->size < sizeof *b) {
		cmp_rview_03(what, a, b);
		return;
	}
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
	cmp_i64(what, "tokens_held", a->tokens_held, b->tokens_held);
	cmp_i64(what, "requests_held", a->requests_held, b->requests_held);
	cmp_u64(what, "holds", a->holds, b->holds);
	cmp_u64(what, "size", a->size, b->size);
	cmp_u64(what, "config.size", a->config.size, b->config.size);
	cmp_u64(what, "config.tokens_algorithm", a->config.tokens_algorithm,
		b->config.tokens_algorithm);
	cmp_u64(what, "config.requests_algorithm", a->config.requests_algorithm,
		b->config.requests_algorithm);
	cmp_i64(what, "tokens_previous", a->tokens_previous,
		b->tokens_previous);
	cmp_i64(what, "requests_previous", a->requests_previous,
		b->requests_previous);
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
	v->held = -55;
	v->holds = 5555;
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
	v->tokens_held = -77;
	v->requests_held = -777;
	v->holds = 7777;
	v->config.tokens_algorithm = 0x5a5a;
	v->config.requests_algorithm = 0xa5a5a5a5u;
	v->tokens_previous = -7777;
	v->requests_previous = -77777;
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

static int
xevent_cmp(const void *pa, const void *pb)
{
	const struct xevent *a = pa, *b = pb;

	if (a->kind != b->kind)
		return a->kind < b->kind ? -1 : 1;
	if (a->key_len != b->key_len)
		return a->key_len < b->key_len ? -1 : 1;
	return memcmp(a->key, b->key, a->key_len);
}

/* Compares the expiry events of the last call; a sweep's in any order. */
static void
cmp_expiries(const char *what, bool any_order)
{
	static struct xlog mod, lib;
	char f[64];

	lib = g.xlib;
	mod.n = g.model.nexpiries;
	if (mod.n > EV_MAX)
		fail("%s: model expiry log overflow", what);
	for (size_t i = 0; i < mod.n; i++) {
		const struct model_expiry *x = &g.model.expiries[i];
		struct xevent *e = &mod.e[i];

		memset(e, 0, sizeof *e);
		memcpy(e->key, x->key, x->key_len);
		e->key_len = x->key_len;
		e->kind = (int)x->kind;
		e->holds = x->holds;
		e->amount[0] = x->amount[0];
		e->amount[1] = x->amount[1];
		e->slot_end = x->slot_end;
		e->version = x->version;
		e->incarnation = x->incarnation;
	}
	if (lib.n != mod.n)
		fail("%s: %zu expiry events from the library, %zu from the "
		     "model",
		     what, lib.n, mod.n);
	if (any_order) {
		qsort(lib.e, lib.n, sizeof lib.e[0], xevent_cmp);
		qsort(mod.e, mod.n, sizeof mod.e[0], xevent_cmp);
	}
	for (size_t i = 0; i < lib.n; i++) {
		const struct xevent *a = &lib.e[i], *b = &mod.e[i];

		snprintf(f, sizeof f, "expiry[%zu].key_len", i);
		cmp_i64(what, f, (int64_t)a->key_len, (int64_t)b->key_len);
		if (memcmp(a->key, b->key, a->key_len) != 0)
			fail("%s: expiry[%zu].key differs", what, i);
		snprintf(f, sizeof f, "expiry[%zu].kind", i);
		cmp_i64(what, f, a->kind, b->kind);
		snprintf(f, sizeof f, "expiry[%zu].holds", i);
		cmp_u64(what, f, a->holds, b->holds);
		snprintf(f, sizeof f, "expiry[%zu].amount[0]", i);
		cmp_i64(what, f, a->amount[0], b->amount[0]);
		snprintf(f, sizeof f, "expiry[%zu].amount[1]", i);
		cmp_i64(what, f, a->amount[1], b->amount[1]);
		snprintf(f, sizeof f, "expiry[%zu].slot_end", i);
		cmp_i64(what, f, a->slot_end, b->slot_end);
		snprintf(f, sizeof f, "expiry[%zu].version", i);
		cmp_u64(what, f, a->version, b->version);
		snprintf(f, sizeof f, "expiry[%zu].incarnation", i);
		cmp_u64(what, f, a->incarnation, b->incarnation);
	}
	g.xlib.n = 0;
}

/* Compares the rolls and expiry events of the last call; a sweep's in any
 * order. */
static void
cmp_rolls(const char *what, bool any_order)
{
	static struct evlog mod, lib;

	cmp_expiries(what, any_order);
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
	case 7: {
		/* Around a sliding counter's largest max, 2^62 - 1 (the two
		 * bytes still read, as before sliding counters). */
		static const int64_t edge[] = {
			MODEL_SWIN_AMOUNT_MAX,     MODEL_SWIN_AMOUNT_MAX + 1,
			MODEL_SWIN_AMOUNT_MAX - 1, MODEL_SWIN_AMOUNT_MAX / 2,
			MODEL_SWIN_AMOUNT_MAX + 2,
		};

		return edge[in_u16(in) % (sizeof edge / sizeof edge[0])];
	}
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
	case 7: {
		/* Around a sliding counter's cap, 2^62 - 1 (the byte still
		 * read, as before sliding counters). */
		static const int64_t edge[] = {
			MODEL_SWIN_AMOUNT_MAX,
			MODEL_SWIN_AMOUNT_MAX + 1,
			MODEL_SWIN_AMOUNT_MAX - 1,
			MODEL_SWIN_AMOUNT_MAX / 2,
			MODEL_SWIN_AMOUNT_MAX / 2 + 1,
			MODEL_SWIN_AMOUNT_MAX - 100,
		};
		uint8_t x = in_u8(in);

		return x < 0x80 ? x % 16
				: edge[x % (sizeof edge / sizeof edge[0])];
	}
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
		/* With the index byte's top bit (no seed sets it): the edges
		 * of a sliding counter's window length, 2^62 ns. */
		static const tally_period edge[] = {
			{MODEL_SWIN_WIDTH_MAX, TALLY_PERIOD_FIXED},
			{MODEL_SWIN_WIDTH_MAX + 1, TALLY_PERIOD_FIXED},
			{MODEL_SWIN_WIDTH_MAX - 1, TALLY_PERIOD_FIXED},
			{MODEL_SWIN_WIDTH_MAX / NS_PER_WEEK_,
			 TALLY_PERIOD_WEEK},
			{MODEL_SWIN_WIDTH_MAX / NS_PER_WEEK_ + 1,
			 TALLY_PERIOD_WEEK},
			{MODEL_SWIN_WIDTH_MAX / 3, TALLY_PERIOD_FIXED},
			{INT64_C(3) << 61, TALLY_PERIOD_FIXED},
			{2, TALLY_PERIOD_FIXED},
		};
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
		uint8_t x = in_u8(in);

		if (x & 0x80)
			p = edge[x % (sizeof edge / sizeof edge[0])];
		else
			p = huge[x % (sizeof huge / sizeof huge[0])];
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

/*
 * A limit and its algorithm. The algorithm comes from bits 3..7 of the
 * limit's first byte, which inputs written before sliding counters left
 * unused (make_seeds.py writes 0 or 1 there: FIXED), so that those inputs
 * keep their meaning: 0..19 FIXED, 20..29 SLIDING, 30 and 31 values no
 * algorithm has.
 */
static tally_limit
pick_limit(struct input *in, uint32_t *algorithm)
{
	tally_limit l;
	uint8_t b = in_u8(in);
	unsigned a = b >> 3;

	*algorithm = a < 20    ? TALLY_ALGORITHM_FIXED
		     : a < 30  ? TALLY_ALGORITHM_SLIDING
		     : a == 30 ? 2u
			       : UINT32_MAX;
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
	c.tokens = pick_limit(in, &c.tokens_algorithm);
	c.requests = pick_limit(in, &c.requests_algorithm);
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
	if (t == INT64_MAX && g.grain == 1 && (g.tolerate & TOL_GRAIN1))
		t = INT64_MAX - 1;
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

/* TOL_UPSERT_DEAD: an upsert of a record with a dead hold slot (or a b to
 * move) is skipped. */
static bool
upsert_skipped(tally_kind kind, const char *key, size_t klen, const char *what)
{
	const struct model_record *r;

	if (!(g.tolerate & TOL_UPSERT_DEAD))
		return false;
	r = model_find(&g.model, kind, key, klen);
	if (r == NULL || !model_holds_due(&g.model, r))
		return false;
	trace("@%" PRId64 " %s: skipped (dead holds, TOL_UPSERT_DEAD)", g.now,
	      what);
	return true;
}

/* TOL_SLIDING_CAP: an upsert that makes a counter SLIDING (or may: the
 * config's algorithm field, whatever its size) whose usage or held is past
 * 2^62 - 1 is skipped. */
static bool
sliding_cap_skipped(const tally_ratelimit_config *c, const char *key,
		    size_t klen, const char *what)
{
	const struct model_record *r;
	const uint32_t alg[2] = {c->tokens_algorithm, c->requests_algorithm};

	if (!(g.tolerate & TOL_SLIDING_CAP))
		return false;
	r = model_find(&g.model, TALLY_KIND_RATELIMIT, key, klen);
	if (r == NULL)
		return false;
	for (unsigned i = 0; i < 2; i++)
		if ((alg[i] & 0xffffff) == TALLY_ALGORITHM_SLIDING &&
		    (r->c[i].usage > MODEL_SWIN_AMOUNT_MAX ||
		     model_held(r, i) > MODEL_SWIN_AMOUNT_MAX)) {
			trace("@%" PRId64 " %s: skipped (usage or held past "
			      "2^62 - 1, TOL_SLIDING_CAP)",
			      g.now, what);
			return true;
		}
	return false;
}

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
	if ((flags & 7) == 2) /* the 0.2 layout: no hold fields */
		lv.size = mv.size = offsetof(tally_budget_view, held);
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
		if (upsert_skipped(TALLY_KIND_BUDGET, key, klen, what))
			return;
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
		lv.size = mv.size = MODEL_RL_VIEW_V1 - 1;
	if ((flags & 7) == 2) /* the 0.2 layout: no hold fields */
		lv.size = mv.size = MODEL_RL_VIEW_V1;
	if ((flags & 7) == 5) /* the 0.3 layout: no algorithms, no prev */
		lv.size = mv.size = sizeof(struct model_rl_view_03);
	if ((flags & 7) == 6) /* between: filled in the 0.3 layout */
		lv.size = mv.size = sizeof(tally_ratelimit_view) - 1;
	switch (op) {
	case 0: {
		tally_ratelimit_config c = pick_rl_config(in);
		uint8_t cb = in_u8(in);
		bool nocfg = cb == 0xff;
		char sz[40] = "";

		/* Sizes: 1 byte short (the requests algorithm's top byte
		 * from the defaults), the 0.3 layout (both FIXED), one byte
		 * short of it (EINVAL), the 0.3 layout and the tokens
		 * algorithm. */
		if (cb == 0xfe)
			c.size = sizeof c - 1;
		else if (cb == 0xfd)
			c.size = MODEL_RL_CONFIG_V1;
		else if (cb == 0xfc)
			c.size = MODEL_RL_CONFIG_V1 - 1;
		else if (cb == 0xfb)
			c.size = offsetof(tally_ratelimit_config,
					  requests_algorithm);
		if (c.size != sizeof c)
			snprintf(sz, sizeof sz, ", size %zu", c.size);

		snprintf(what, sizeof what,
			 "ratelimit_upsert(%s, tokens %d/%" PRId64
			 " per %" PRId64 "/%d alg %" PRIu32
			 ", requests %d/%" PRId64 " per %" PRId64
			 "/%d alg %" PRIu32 ", anchor %" PRId64
			 ", off %d, aligned %d%s%s)",
			 kn, (int)c.tokens.has_max, c.tokens.max,
			 c.tokens.period.count, (int)c.tokens.period.unit,
			 c.tokens_algorithm, (int)c.requests.has_max,
			 c.requests.max, c.requests.period.count,
			 (int)c.requests.period.unit, c.requests_algorithm,
			 c.anchor, (int)c.utc_offset_minutes,
			 (int)c.calendar_aligned, nocfg ? ", NULL config" : "",
			 sz);
		trace("@%" PRId64 " %s", g.now, what);
		if (upsert_skipped(TALLY_KIND_RATELIMIT, key, klen, what) ||
		    sliding_cap_skipped(&c, key, klen, what))
			return;
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

static const char *
kind_name(uint32_t kind)
{
	return kind == TALLY_KIND_BUDGET ? "budget" : "rate-limit";
}

/* Export: what the walk gave, checked record by record against the
 * model as it goes. */
struct export_seen {
	const char *what;
	unsigned given;
	unsigned stop_at; /* fn returns 7 at this record (0: never) */
	bool stopped;     /* fn returned 7 in the current call */
	bool seen[MODEL_RECORDS_MAX];
};

static int
on_export(void *ctx, const tally_record *r)
{
	struct export_seen *e = ctx;
	const struct model_record *mr;
	size_t ix;

	e->given++;
	if (r->size != sizeof *r || r->key == NULL ||
	    r->key[r->key_len] != '\0')
		fail("%s: record %u: size %zu or key not terminated", e->what,
		     e->given, r->size);
	mr = model_find(&g.model, r->kind, r->key, r->key_len);
	if (mr == NULL)
		fail("%s: gave a %s record of %zu bytes the model lacks",
		     e->what, kind_name(r->kind), r->key_len);
	ix = (size_t)(mr - g.model.rec);
	if (e->seen[ix])
		fail("%s: gave the %s record %s twice", e->what,
		     kind_name(r->kind), mr->key);
	e->seen[ix] = true;
	if (r->kind == TALLY_KIND_BUDGET) {
		tally_budget_view mv = TALLY_BUDGET_VIEW_INIT;

		if (model_budget_get(&g.model, r->key, r->key_len, &mv) !=
		    TALLY_OK)
			fail("%s: model get failed", e->what);
		cmp_bview(e->what, &r->budget, &mv);
		if (r->ratelimit.size != sizeof r->ratelimit ||
		    r->ratelimit.version != 0)
			fail("%s: the other view is not empty", e->what);
	} else {
		tally_ratelimit_view mv = TALLY_RATELIMIT_VIEW_INIT;

		if (model_ratelimit_get(&g.model, r->key, r->key_len, &mv) !=
		    TALLY_OK)
			fail("%s: model get failed", e->what);
		cmp_rview(e->what, &r->ratelimit, &mv);
		if (r->budget.size != sizeof r->budget ||
		    r->budget.version != 0)
			fail("%s: the other view is not empty", e->what);
	}
	e->stopped = e->stop_at == e->given;
	return e->stopped ? 7 : 0;
}

/* A whole export in calls of at most max records (and one call whose fn
 * stops it): every live model record once, each view the model's. */
static void
op_export(uint8_t flags)
{
	static const size_t maxes[4] = {0, 1, 3, 64};
	size_t max = maxes[(flags >> 2) & 3];
	tally_cursor c = TALLY_CURSOR_INIT;
	struct export_seen e;
	unsigned calls = 0;

	memset(&e, 0, sizeof e);
	e.what = "export";
	e.stop_at = flags & 1 ? 2 : 0;
	trace("@%" PRId64 " export(max %zu%s)", g.now, max,
	      e.stop_at ? ", stop at 2" : "");
	while (!c.done) {
		int rc;

		e.stopped = false;
		rc = tally_export(g.store, &c, max, on_export, &e);
		if (rc != (e.stopped ? 7 : 0))
			fail("export: call %u returned %s after %u records",
			     calls, rc_name(rc), e.given);
		if (++calls > 4 * MODEL_RECORDS_MAX + 4)
			fail("export: no end after %u calls", calls);
	}
	if (e.given != model_records(&g.model))
		fail("export: gave %u records, the model has %zu", e.given,
		     model_records(&g.model));
	cmp_rolls("export", true);
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

	/* Flags 0x50 .. 0x5f (no seed writes them) export instead. */
	if ((flags & 0xf0) == 0x50) {
		op_export(flags);
		return;
	}
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
	const uint32_t alg[2] = {v->config.tokens_algorithm,
				 v->config.requests_algorithm};
	const int64_t prev[2] = {v->tokens_previous, v->requests_previous};

	fprintf(stderr,
		"    ratelimit \"%s\": anchor %" PRId64
		" off %d aligned %d version 0x%" PRIx64 "\n",
		key, v->config.anchor, (int)v->config.utc_offset_minutes,
		(int)v->config.calendar_aligned, v->version);
	for (int i = 0; i < 2; i++)
		fprintf(stderr,
			"      %s: max %d/%" PRId64 " period %" PRId64
			"/%d alg %" PRIu32 " usage %" PRId64 " prev %" PRId64
			" window [%" PRId64 ", %" PRId64 ")\n",
			i ? "requests" : "tokens", (int)l[i]->has_max,
			l[i]->max, l[i]->period.count, (int)l[i]->period.unit,
			alg[i], c[i]->usage, prev[i], c[i]->window_start,
			c[i]->window_end);
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
#define CMP_STAT(field, extra)                                                 \
	cmp_u64("after: stats", #field, st.field + (extra), g.model.stats.field)
	CMP_STAT(admitted, 0);
	CMP_STAT(refused_limit, 0);
	CMP_STAT(refused_too_big, 0);
	CMP_STAT(refused_race, 0);
	CMP_STAT(refused_missing, 0);
	CMP_STAT(compensations, 0);
	CMP_STAT(holds, 0);
	CMP_STAT(settles, 0);
	CMP_STAT(releases, 0);
	CMP_STAT(partials, 0);
	CMP_STAT(late_settles, 0);
	CMP_STAT(overdraft_units, 0);
	CMP_STAT(expired_holds, 0);
	CMP_STAT(expired_units, 0);
	CMP_STAT(shadow_would_deny, 0);
#undef CMP_STAT
	cmp_u64("after: listener", "rolls heard", g.lib_rolls_total,
		g.model.rolls_total);
}

/* ------------------------------------------------------------------------ */
/* Admission: holds, settlement, handles                                    */
/* ------------------------------------------------------------------------ */

/* How far the check word covers a handle's bytes (every byte there but
 * the size is checked). */
static size_t
hold_cover(const tally_hold *h)
{
	uint32_t n = h->n <= TALLY_ADMIT_MAX ? h->n : 0;

	return offsetof(tally_hold, part) + n * sizeof(tally_hold_part);
}

/* Whether the library would refuse the handle's bytes: some byte its
 * check covered differs from what the library last wrote (a byte changed
 * twice is itself again), or it is another store's. */
static void
handle_sync(struct handle *hd)
{
	size_t from = sizeof hd->lib.size, to = hold_cover(&hd->pristine);

	hd->mod.forged =
		hd->foreign ||
		memcmp((const char *)&hd->lib + from,
		       (const char *)&hd->pristine + from, to - from) != 0;
}

/* After a call that may have written the handle. */
static void
handle_written(struct handle *hd)
{
	if (!hd->mod.forged)
		hd->pristine = hd->lib;
}

/* What a model call may change, kept to step back when the harness skips
 * the library's twin of the call (a tolerance). */
static struct {
	struct model_record rec[MODEL_RECORDS_MAX];
	tally_stats stats;
	uint64_t creations, version_floor, rolls_total, retry_overflows;
	size_t nrolls, nexpiries;
	struct model_hold hold;
} undo;

static void
model_save(const struct model_hold *h)
{
	memcpy(undo.rec, g.model.rec, sizeof undo.rec);
	undo.stats = g.model.stats;
	undo.creations = g.model.creations;
	undo.version_floor = g.model.version_floor;
	undo.rolls_total = g.model.rolls_total;
	undo.retry_overflows = g.model.retry_overflows;
	undo.nrolls = g.model.nrolls;
	undo.nexpiries = g.model.nexpiries;
	if (h != NULL)
		undo.hold = *h;
}

static void
model_restore(struct model_hold *h)
{
	memcpy(g.model.rec, undo.rec, sizeof undo.rec);
	g.model.stats = undo.stats;
	g.model.creations = undo.creations;
	g.model.version_floor = undo.version_floor;
	g.model.rolls_total = undo.rolls_total;
	g.model.retry_overflows = undo.retry_overflows;
	g.model.nrolls = undo.nrolls;
	g.model.nexpiries = undo.nexpiries;
	if (h != NULL)
		*h = undo.hold;
}

/* Whether to skip the library's call after the model's: a tolerance
 * applies (the model then steps back). */
static bool
skipped(int mrc, const char *what, struct model_hold *mh)
{
	const char *why = NULL;

	if (mrc == TALLY_EOVERFLOW && (g.tolerate & TOL_OVERFLOW))
		why = "EOVERFLOW, TOL_OVERFLOW";
	else if (g.model.retry_overflows != undo.retry_overflows &&
		 (g.tolerate & TOL_RETRY_OVERFLOW))
		why = "retry_after past int64, TOL_RETRY_OVERFLOW";
	if (why == NULL)
		return false;
	model_restore(mh);
	trace("@%" PRId64 " %s: skipped (%s)", g.now, what, why);
	return true;
}

/* An estimate or a cost: mostly small, now and then anything. */
static int64_t
pick_hold_amount(struct input *in)
{
	static const int64_t v[] = {0, 1, 1, 2, 3, 5, 10, 100};
	uint8_t b = in_u8(in);

	if (b < 0xe0)
		return v[b % 8];
	return pick_amount(in);
}

static int64_t
pick_ttl(struct input *in, uint32_t mode)
{
	uint8_t b = in_u8(in);
	int64_t gr = g.grain, mx = g.ttl_max;

	if (mode != TALLY_ADMIT_HOLD)
		return b < 0xf0 ? 0 : (b & 1 ? 1 : -1);
	switch (b % 16) {
	case 0:
		return 1;
	case 1:
		return gr - 1;
	case 2:
		return gr;
	case 3:
		return gr + 1;
	case 4:
		return 2 * gr;
	case 5:
		return 3 * gr - 1;
	case 6:
		return mx;
	case 7:
		return mx + 1;
	case 8:
		return 0;
	case 9:
		return b & 0x80 ? -1 : INT64_MAX;
	default:
		return 1 + (int64_t)(in_u64(in) % (uint64_t)mx);
	}
}

/* The same recognisable garbage in both decisions. */
static void
poison_decision(tally_decision *d)
{
	memset(d, 0x5a, sizeof *d);
	d->size = sizeof *d;
}

static void
cmp_report(const char *what, int64_t now, unsigned i,
	   const tally_limit_report *a, const tally_limit_report *b)
{
	char f[96];

	snprintf(f, sizeof f, "limit[%u].flags", i);
	cmp_u64(what, f, a->flags, b->flags);
	if (b->kind == 0 && b->flags == TALLY_DECISION_GONE &&
	    (g.tolerate & TOL_GONE_REPORT))
		return;
	snprintf(f, sizeof f, "limit[%u].kind", i);
	cmp_u64(what, f, a->kind, b->kind);
	snprintf(f, sizeof f, "limit[%u].version", i);
	cmp_u64(what, f, a->version, b->version);
	snprintf(f, sizeof f, "limit[%u].incarnation", i);
	cmp_u64(what, f, a->incarnation, b->incarnation);
	/* A budget reports c[0] only. */
	for (unsigned k = 0; k < (b->kind == TALLY_KIND_BUDGET ? 1u : 2u);
	     k++) {
		const tally_counter_report *x = &a->c[k], *y = &b->c[k];

#define CMP_C(field)                                                           \
	do {                                                                   \
		snprintf(f, sizeof f, "limit[%u].c[%u]." #field, i, k);        \
		cmp_i64(what, f, (int64_t)x->field, (int64_t)y->field);        \
	} while (0)
		CMP_C(counter);
		CMP_C(flags);
		CMP_C(max);
		CMP_C(used);
		CMP_C(held);
		CMP_C(remaining);
		CMP_C(window_start);
		CMP_C(window_end);
		if (!(x->retry_after != y->retry_after &&
		      y->retry_after == TALLY_RETRY_NEVER &&
		      (y->flags & TALLY_DECISION_SLIDING) &&
		      (i128)now + x->retry_after > INT64_MAX &&
		      (g.tolerate & TOL_SLIDING_NEVER)))
			CMP_C(retry_after);
		CMP_C(overdraft);
#undef CMP_C
	}
}

/* Every field of a decision the call fills. */
static void
cmp_decision(const char *what, const tally_decision *a, const tally_decision *b)
{
	cmp_u64(what, "decision.size", a->size, b->size);
	cmp_i64(what, "decision.now", a->now, b->now);
	cmp_i64(what, "decision.refused", a->refused, b->refused);
	cmp_u64(what, "decision.n", a->n, b->n);
	cmp_u64(what, "decision.mask", a->mask, b->mask);
	cmp_u64(what, "decision.flags", a->flags, b->flags);
	for (unsigned i = 0; i < b->n && i < TALLY_ADMIT_MAX; i++)
		cmp_report(what, b->now, i, &a->limit[i], &b->limit[i]);
}

/* The public fields of a handle against the model's (not for a handle
 * whose bytes the harness changed). */
static void
cmp_hold(const char *what, const tally_hold *a, const struct model_hold *b)
{
	char f[64];

	if (b->forged)
		return;
	cmp_u64(what, "hold.size", a->size, b->size);
	cmp_u64(what, "hold.state", a->state, b->state);
	cmp_u64(what, "hold.n", a->n, b->n);
	cmp_i64(what, "hold.deadline", a->deadline, b->deadline);
	for (unsigned i = 0; i < b->n && i < TALLY_ADMIT_MAX; i++) {
		snprintf(f, sizeof f, "hold.part[%u].kind", i);
		cmp_u64(what, f, a->part[i].kind, b->part[i].kind);
		snprintf(f, sizeof f, "hold.part[%u].flags", i);
		cmp_u64(what, f, a->part[i].flags, b->part[i].flags);
		snprintf(f, sizeof f, "hold.part[%u].incarnation", i);
		cmp_u64(what, f, a->part[i].incarnation,
			b->part[i].incarnation);
		snprintf(f, sizeof f, "hold.part[%u].amount[0]", i);
		cmp_i64(what, f, a->part[i].amount[0], b->part[i].amount[0]);
		snprintf(f, sizeof f, "hold.part[%u].amount[1]", i);
		cmp_i64(what, f, a->part[i].amount[1], b->part[i].amount[1]);
	}
}

/* The charges as text, for the trace. */
static void
describe_charges(char *buf, size_t size, const tally_charge *c, size_t n,
		 char names[][32])
{
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && i <= TALLY_ADMIT_MAX && len < size; i++) {
		int w = snprintf(
			buf + len, size - len,
			"%s%s%s %s %" PRId64 "/%" PRId64 "/%" PRId64 "%s",
			i ? ", " : "",
			c[i].kind == TALLY_KIND_BUDGET      ? "b"
			: c[i].kind == TALLY_KIND_RATELIMIT ? "r"
							    : "?",
			c[i].flags & TALLY_CHARGE_SHADOW ? "(shadow)" : "",
			names[i], c[i].amount, c[i].tokens, c[i].requests,
			(c[i].flags & ~TALLY_CHARGE_SHADOW) ? " (bad flags)"
							    : "");
		if (w < 0)
			break;
		len += (size_t)w;
	}
}

static const char *
mode_name(uint32_t mode)
{
	switch (mode) {
	case TALLY_ADMIT_HOLD:
		return "HOLD";
	case TALLY_ADMIT_CONSUME:
		return "CONSUME";
	case TALLY_ADMIT_PEEK:
		return "PEEK";
	}
	return "bad mode";
}

static void
op_admit(struct input *in)
{
	static const uint32_t modes[8] = {
		TALLY_ADMIT_HOLD,    TALLY_ADMIT_HOLD,
		TALLY_ADMIT_HOLD,    TALLY_ADMIT_HOLD,
		TALLY_ADMIT_CONSUME, TALLY_ADMIT_CONSUME,
		TALLY_ADMIT_PEEK,    0};
	tally_charge ch[TALLY_ADMIT_MAX + 1];
	char names[TALLY_ADMIT_MAX + 1][32], list[1200], what[1400];
	uint8_t mb = in_u8(in), nb = in_u8(in), xb;
	uint32_t mode = modes[mb % 8];
	size_t n, nfill;
	int64_t ttl;
	struct handle *hd;
	tally_hold *lh = NULL, saved;
	struct model_hold *mh = NULL;
	tally_decision ld, md;
	tally_decision *ldp = &ld, *mdp = &md;
	tally_store *store = g.store;
	struct model *m = &g.model;
	int lrc, mrc;

	if (mode == 0)
		mode = mb & 0x80 ? 4 : 0;
	if (nb < 0xc0)
		n = 1 + nb % 3;
	else if (nb < 0xf0)
		n = 1 + nb % TALLY_ADMIT_MAX;
	else
		n = nb % 3 == 0 ? 0 : nb % 3 == 1 ? TALLY_ADMIT_MAX + 1 : 1000;
	nfill = n < TALLY_ADMIT_MAX + 1 ? n : TALLY_ADMIT_MAX + 1;
	memset(ch, 0, sizeof ch);
	for (size_t i = 0; i < nfill; i++) {
		uint8_t kb = in_u8(in);
		tally_charge *c = &ch[i];
		size_t klen;

		c->kind = kb & 1 ? TALLY_KIND_RATELIMIT : TALLY_KIND_BUDGET;
		c->flags = kb & 2 ? TALLY_CHARGE_SHADOW : 0;
		c->key = pick_key(in, names[i], sizeof names[i], &klen);
		c->key_len = klen; /* MODEL_KEY_NUL == TALLY_KEY_STRLEN */
		if (c->kind == TALLY_KIND_BUDGET) {
			c->amount = pick_hold_amount(in);
		} else {
			c->tokens = pick_hold_amount(in);
			c->requests = pick_hold_amount(in);
		}
		switch (kb & 0xf8) {
		case 0xf8: /* no such kind */
			c->kind = kb & 4 ? 0 : 3;
			break;
		case 0xf0: /* an unknown flag */
			c->flags |= 0x4;
			break;
		case 0xe8: /* an amount the kind does not use */
			if (c->kind == TALLY_KIND_BUDGET)
				c->requests = 1;
			else
				c->amount = 1;
			break;
		default:
			break;
		}
	}
	ttl = pick_ttl(in, mode);
	xb = in_u8(in);
	hd = &g.h[xb % HOLDS_N];
	if (mode == TALLY_ADMIT_HOLD) {
		lh = &hd->lib;
		mh = &hd->mod;
	}
	if ((xb & 0xe0) == 0xe0) {
		/* HOLD without a handle, CONSUME or PEEK with one. */
		lh = lh != NULL ? NULL : &hd->lib;
		mh = mh != NULL ? NULL : &hd->mod;
	}
	if ((xb & 0x18) == 0)
		ldp = mdp = NULL;
	poison_decision(&ld);
	poison_decision(&md);
	if ((xb & 0x18) == 0x08 && (xb & 0x80))
		ld.size = md.size = sizeof ld - 1;
	if (xb == 0x0c && nb == 0x0c)
		store = NULL, m = NULL;
	describe_charges(list, sizeof list, ch, nfill, names);
	snprintf(what, sizeof what,
		 "admit(%s%s, n %zu [%s], ttl %" PRId64 ", hold %s%u%s%s)",
		 store ? "" : "NULL store, ", mode_name(mode), n, list, ttl,
		 lh ? "#" : "NULL #", xb % HOLDS_N, ldp ? "" : ", no decision",
		 ld.size != sizeof ld ? ", small decision" : "");
	trace("@%" PRId64 " %s", g.now, what);

	if (g.now < 0 && (g.tolerate & TOL_SLOTS_APART) &&
	    (mode == TALLY_ADMIT_HOLD || mode == TALLY_ADMIT_CONSUME)) {
		trace("@%" PRId64 " %s: skipped (before 1970, TOL_SLOTS_APART)",
		      g.now, what);
		return;
	}
	/* The model first: its answer tells when to step around a known
	 * discrepancy (TOL_OVERFLOW); an error changes nothing there. */
	model_save(mh);
	mrc = model_admit(m, ch, n, mode, ttl, mh, mdp);
	if (skipped(mrc, what, mh))
		return;
	if (lh != NULL)
		saved = *lh;
	g.multi = true;
	lrc = tally_admit(store, ch, n, mode, ttl, lh, ldp);
	g.multi = false;
	if (g.verbose)
		fprintf(stderr, "    -> %s refused %d mask 0x%x flags 0x%x\n",
			rc_name(lrc), ld.refused, ld.mask, ld.flags);
	cmp_rc(what, lrc, mrc);
	if (ldp != NULL && ld.size == sizeof ld) {
		/* Filled on OK, LIMITED and ENOENT; after another error as
		 * it was (bad arguments), or n == 0. */
		if (lrc >= 0 || lrc == TALLY_ENOENT)
			cmp_decision(what, &ld, &md);
		else
			cmp_u64(what, "decision.n after an error", ld.n, md.n);
	} else if (ldp != NULL) {
		if (memcmp(&ld, &md, sizeof ld) != 0)
			fail("%s: a decision of a bad size was written", what);
	}
	if (lh != NULL) {
		if (lrc != TALLY_OK && memcmp(lh, &saved, sizeof saved) != 0)
			fail("%s: the handle changed on %s", what,
			     rc_name(lrc));
		cmp_hold(what, lh, mh);
		handle_written(hd);
	}
	cmp_rolls(what, false);
}

/* A cost for part i of a handle: its estimate, more (an overdraft), less,
 * 0, any, or a bad one. */
static tally_cost
pick_cost(struct input *in, const struct model_hold_part *p)
{
	uint8_t b = in_u8(in);
	tally_cost c = {0, 0, 0};
	int64_t v[2] = {p->amount[0], p->amount[1]};

	switch (b % 8) {
	case 0:
	case 1:
		break; /* the estimate */
	case 2:
		/* One more. */
		for (int k = 0; k < 2; k++)
			v[k] = v[k] < INT64_MAX ? v[k] + 1 : v[k];
		break;
	case 3:
		/* One less. */
		for (int k = 0; k < 2; k++)
			v[k] = v[k] > 0 ? v[k] - 1 : 0;
		break;
	case 4:
		v[0] = v[1] = 0;
		break;
	case 5:
		v[0] /= 2;
		v[1] = v[1] / 2 + 1;
		break;
	default:
		v[0] = pick_hold_amount(in);
		v[1] = pick_hold_amount(in);
		break;
	}
	if (p->kind == TALLY_KIND_RATELIMIT) {
		c.tokens = v[0];
		c.requests = v[1];
	} else {
		c.amount = v[0];
	}
	if ((b & 0xf0) == 0xf0) { /* an amount the kind does not use */
		if (p->kind == TALLY_KIND_RATELIMIT)
			c.amount = 1;
		else
			c.tokens = 1;
	}
	return c;
}

static void
op_settle(struct input *in)
{
	uint8_t vb = in_u8(in), fb = in_u8(in);
	unsigned op = vb % 4, hi = (vb >> 2) % HOLDS_N;
	struct handle *hd = &g.h[hi];
	tally_cost cost[TALLY_ADMIT_MAX + 1];
	size_t n = hd->mod.n <= TALLY_ADMIT_MAX ? hd->mod.n : 1, nfill;
	tally_store *store = g.store;
	struct model *m = &g.model;
	tally_hold *lh = &hd->lib, saved;
	struct model_hold *mh = &hd->mod;
	tally_decision ld, md;
	tally_decision *ldp = &ld, *mdp = &md;
	bool nocost = false;
	char what[800], list[600];
	size_t len = 0;
	int lrc, mrc;

	switch (fb & 0xf0) {
	case 0xf0:
		n = fb & 1 ? n + 1 : n > 0 ? n - 1 : 0;
		break;
	case 0xe0:
		if (fb & 1)
			store = NULL, m = NULL;
		else
			lh = NULL, mh = NULL;
		break;
	case 0xd0:
		nocost = true;
		break;
	default:
		break;
	}
	if ((fb & 0x0c) == 0)
		ldp = mdp = NULL;
	poison_decision(&ld);
	poison_decision(&md);
	if ((fb & 0x0c) == 0x04 && (fb & 0x80))
		ld.size = md.size = sizeof ld - 1;
	nfill = n < TALLY_ADMIT_MAX + 1 ? n : TALLY_ADMIT_MAX + 1;
	list[0] = '\0';
	memset(cost, 0, sizeof cost);
	for (size_t i = 0; op != 2 && i < nfill; i++) {
		static const struct model_hold_part none = {
			TALLY_KIND_BUDGET, 0, "", 0, 0, 0, {0, 0}};
		const struct model_hold_part *p =
			i < hd->mod.n && i < TALLY_ADMIT_MAX ? &hd->mod.part[i]
							     : &none;
		int w;

		cost[i] = pick_cost(in, p);
		w = snprintf(list + len, sizeof list - len,
			     "%s%" PRId64 "/%" PRId64 "/%" PRId64,
			     i ? ", " : "", cost[i].amount, cost[i].tokens,
			     cost[i].requests);
		if (w > 0 && (size_t)w < sizeof list - len)
			len += (size_t)w;
	}
	snprintf(what, sizeof what, "%s(%s#%u%s, n %zu [%s]%s%s)",
		 op == 2   ? "release"
		 : op == 3 ? "settle_partial"
			   : "settle",
		 store ? "" : "NULL store, ", hi, lh ? "" : " NULL", n, list,
		 ldp ? "" : ", no decision",
		 ld.size != sizeof ld ? ", small decision" : "");
	trace("@%" PRId64 " %s", g.now, what);
	if (g.tolerate & TOL_STATS_WRAP) {
		u128 units = g.model.stats.overdraft_units;

		for (size_t i = 0; i < nfill; i++)
			units += (uint64_t)(cost[i].amount > 0 ? cost[i].amount
							       : 0) +
				 (uint64_t)(cost[i].tokens > 0 ? cost[i].tokens
							       : 0) +
				 (uint64_t)(cost[i].requests > 0
						    ? cost[i].requests
						    : 0);
		if (units > UINT64_MAX) {
			trace("@%" PRId64 " %s: skipped (overdraft_units could "
			      "wrap, TOL_STATS_WRAP)",
			      g.now, what);
			return;
		}
	}
	if (op != 3 && (g.tolerate & TOL_STRAND) && mh != NULL &&
	    model_settle_strands(&g.model, mh)) {
		trace("@%" PRId64 " %s: skipped (strands a slot, TOL_STRAND)",
		      g.now, what);
		return;
	}

	/* The model first, as for admit. */
	model_save(mh);
	switch (op) {
	case 2:
		mrc = model_release(m, mh, mdp);
		break;
	case 3:
		mrc = model_settle_partial(m, mh, nocost ? NULL : cost, n, mdp);
		break;
	default:
		mrc = model_settle(m, mh, nocost ? NULL : cost, n, mdp);
		break;
	}
	if (skipped(mrc, what, mh))
		return;
	if (lh != NULL)
		saved = *lh;
	g.multi = true;
	switch (op) {
	case 2:
		lrc = tally_release(store, lh, ldp);
		break;
	case 3:
		lrc = tally_settle_partial(store, lh, nocost ? NULL : cost, n,
					   ldp);
		break;
	default:
		lrc = tally_settle(store, lh, nocost ? NULL : cost, n, ldp);
		break;
	}
	g.multi = false;
	if (g.verbose)
		fprintf(stderr, "    -> %s flags 0x%x\n", rc_name(lrc),
			ld.flags);
	cmp_rc(what, lrc, mrc);
	if (ldp != NULL && ld.size == sizeof ld && lrc >= 0)
		cmp_decision(what, &ld, &md);
	else if (ldp != NULL && memcmp(&ld, &md, sizeof ld) != 0)
		fail("%s: the decision was written on %s", what, rc_name(lrc));
	if (lh != NULL) {
		if (lrc < 0 && memcmp(lh, &saved, sizeof saved) != 0)
			fail("%s: the handle changed on %s", what,
			     rc_name(lrc));
		cmp_hold(what, lh, mh);
		handle_written(hd);
	}
	cmp_rolls(what, false);
}

/* Copies, zeroes, corrupts handles; hands in another store's. */
static void
op_handle(struct input *in)
{
	uint8_t vb = in_u8(in), xb = in_u8(in);
	unsigned a = vb % HOLDS_N, b = xb % HOLDS_N;
	struct handle *ha = &g.h[a];

	switch ((vb >> 3) % 8) {
	case 0:
	case 1:
	case 2:
		trace("@%" PRId64 " handle #%u := #%u (a copy)", g.now, b, a);
		g.h[b] = *ha;
		break;
	case 3:
		trace("@%" PRId64 " handle #%u zeroed", g.now, a);
		memset(&ha->lib, 0, sizeof ha->lib);
		memset(&ha->mod, 0, sizeof ha->mod);
		ha->pristine = ha->lib;
		ha->foreign = false;
		break;
	case 4: {
		/* One changed byte anywhere the check covers. */
		size_t span = hold_cover(&ha->lib) - sizeof ha->lib.size;
		size_t off = sizeof ha->lib.size + (size_t)in_u16(in) % span;
		uint8_t x = (uint8_t)(xb | 1);

		trace("@%" PRId64 " handle #%u: byte %zu ^= 0x%02x", g.now, a,
		      off, x);
		((uint8_t *)&ha->lib)[off] ^= x;
		handle_sync(ha);
		break;
	}
	case 5:
		trace("@%" PRId64 " handle #%u: size %zu", g.now, a,
		      xb & 1 ? sizeof(tally_hold) - 1 : (size_t)0);
		ha->lib.size = ha->mod.size =
			xb & 1 ? sizeof(tally_hold) - 1 : 0;
		break;
	case 6: {
		tally_hold init = TALLY_HOLD_INIT;

		trace("@%" PRId64 " handle #%u := TALLY_HOLD_INIT", g.now, a);
		ha->lib = ha->pristine = init;
		model_hold_init(&ha->mod);
		ha->foreign = false;
		break;
	}
	default:
		/* Another store's live handle, of one budget. */
		trace("@%" PRId64 " handle #%u := another store's", g.now, a);
		ha->lib = ha->pristine = g.foreign;
		model_hold_init(&ha->mod);
		ha->mod.state = g.foreign.state;
		ha->mod.n = g.foreign.n;
		ha->mod.deadline = g.foreign.deadline;
		ha->foreign = true;
		handle_sync(ha);
		break;
	}
}

/* A live hold slot's end (some record's), or false. */
static bool
pick_slot_end(struct input *in, int64_t *out)
{
	uint8_t b = in_u8(in), c = in_u8(in);
	unsigned k = (b & 0x7fu) % GOOD_KEYS;
	const struct model_record *r = model_find(
		&g.model, b & 0x80 ? TALLY_KIND_RATELIMIT : TALLY_KIND_BUDGET,
		good_keys[k], good_key_len[k]);

	if (r == NULL || r->nslots == 0)
		return false;
	*out = sat64((i128)r->slot[c % r->nslots].number * g.grain);
	return true;
}

/* Clock steps of the hold grid: by grains, onto slot ends and deadlines. */
static void
op_hold_clock(struct input *in)
{
	uint8_t b = in_u8(in);
	int d = (int)(in_u8(in) % 3) - 1;
	i128 t = g.now, k = 1 + (b >> 2) % 4;
	int64_t x;

	switch (b % 4) {
	case 0:
		t += k * g.grain + d;
		break;
	case 1:
		if (pick_slot_end(in, &x))
			t = (i128)x + d;
		break;
	case 2: {
		const tally_hold *h = &g.h[in_u8(in) % HOLDS_N].lib;

		if (h->state == TALLY_HOLD_LIVE)
			t = (i128)h->deadline + d;
		break;
	}
	default:
		t -= k * g.grain + d;
		break;
	}
	set_now(clamp_time(t));
	trace("clock := %" PRId64 " (holds)", g.now);
}

/* Op bytes 0x98-0x9f, 0xb8-0xbf, 0xd8-0xdf, 0xf8-0xff (op % 32 >= 24 with
 * the top bit set): no input written before holds uses them. */
static void
op_holds(struct input *in, unsigned sub)
{
	switch (sub) {
	case 0:
	case 1:
	case 2:
		op_admit(in);
		break;
	case 3:
	case 4:
		op_settle(in);
		break;
	case 5:
		op_handle(in);
		break;
	default:
		op_hold_clock(in);
		break;
	}
}

static void
do_op(struct input *in)
{
	uint8_t op = in_u8(in);

	if (op % 32 >= 24 && (op & 0x80)) {
		op_holds(in, op % 8);
		return;
	}
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

static const int64_t ttl_max_table[8] = {
	0, /* TALLY_HOLD_TTL_MAX_DEFAULT: 10 min, grain 200 s */
	60 * NS_PER_SEC,
	NS_PER_SEC, /* grain 333333334 ns */
	3,          /* grain 1 ns */
	7,          /* grain 3 ns */
	TALLY_HOLD_TTL_MAX_LIMIT,
	NS_PER_HOUR,
	1000, /* grain 334 ns */
};

/* Another store and one live hold of it, for the whole process: its
 * handle is TALLY_EINVAL to every run's store. */
static void
foreign_init(void)
{
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;
	tally_charge ch = {
		TALLY_KIND_BUDGET, 0, "a", TALLY_KEY_STRLEN, 1, 0, 0};
	tally_hold init = TALLY_HOLD_INIT;

	g.foreign = init;
	c.max_limit = INT64_MAX;
	if (tally_store_create(&g.other, NULL) != TALLY_OK ||
	    tally_budget_upsert(g.other, "a", &c, NULL) != TALLY_CREATED ||
	    tally_admit(g.other, &ch, 1, TALLY_ADMIT_HOLD,
			TALLY_HOLD_TTL_MAX_DEFAULT, &g.foreign,
			NULL) != TALLY_OK) {
		fprintf(stderr, "fuzz_ops: the other store\n");
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = {data, size};
	tally_store_options o = TALLY_STORE_OPTIONS_INIT;
	int64_t start;
	int rc;

	if (good_keys[0] == NULL) {
		keys_init();
		g.verbose = getenv("FUZZ_OPS_TRACE") != NULL;
		const char *tol = getenv("FUZZ_OPS_TOLERATE");

		g.tolerate = tol == NULL ? 0
			     : strcmp(tol, "1") == 0
				     ? TOL_ALL
				     : (unsigned)strtoul(tol, NULL, 0);
		foreign_init();
	}
	memset(&g.lib, 0, sizeof g.lib);
	memset(&g.sweep, 0, sizeof g.sweep);
	memset(&g.xlib, 0, sizeof g.xlib);
	g.lib_rolls_total = 0;
	g.op_index = 0;
	g.multi = false;
	start = random_time(&in);
	g.now = start;
	model_init(&g.model, g.now);
	for (unsigned i = 0; i < HOLDS_N; i++) {
		tally_hold init = TALLY_HOLD_INIT;

		g.h[i].lib = g.h[i].pristine = init;
		g.h[i].foreign = false;
		model_hold_init(&g.h[i].mod);
	}
	/* The longest hold TTL, from the next three bits of the start time
	 * (see expected_records below): grains of 1 ns to 122 days. */
	g.ttl_max = ttl_max_table[(start >> 2) & 7];
	if (model_set_hold_ttl_max(&g.model, g.ttl_max) != TALLY_OK)
		abort();
	g.ttl_max = g.model.hold_ttl_max;
	g.grain = g.model.hold_grain;
	set_now(start);

	/* 0 (the default size) to 3: small maps grow while keys come and
	 * go. From the start time's two lowest bits, so that inputs
	 * written before this kept their meaning. */
	o.expected_records = (size_t)(start & 3);
	o.clock = clock_read;
	o.on_roll = on_roll;
	o.on_roll_ctx = &g.lib;
	o.hash_seed = UINT64_C(0x243f6a8885a308d3);
	o.hold_ttl_max = ttl_max_table[(start >> 2) & 7];
	o.on_expire = on_expire;
	o.on_expire_ctx = &g.xlib;
	if ((rc = tally_store_create(&g.store, &o)) != TALLY_OK) {
		fprintf(stderr, "fuzz_ops: tally_store_create: %s\n",
			tally_strerror(rc));
		abort();
	}
	trace("start, clock := %" PRId64, g.now);
	cross_check();
	while (in.n > 0 && g.op_index < OPS_MAX) {
		/* TOL_STATS_WRAP: stop while no write can take expired_units
		 * past 2^64. */
		if ((g.tolerate & TOL_STATS_WRAP) &&
		    (u128)g.model.stats.expired_units +
				    model_units_due(&g.model) >
			    UINT64_MAX)
			break;
		g.op_index++;
		do_op(&in);
		cross_check();
	}
	tally_store_destroy(g.store);
	g.store = NULL;
	return 0;
}
