/*
 * A sequential reference model of tally: the oracle of the differential
 * fuzzer (tests/fuzz/fuzz_ops.c) and of the linearizability checker.
 *
 * The simplest implementation of ARCHITECTURE.md and tally.h that is
 * obviously correct: a fixed array of records, a plain struct per record, no
 * concurrency, no memory management, and its own window arithmetic written
 * without looking at src/period.c's civil-date formulas (calendar tables
 * filled by walking years one by one from 1970, boundaries found by stepping
 * k until boundary(k) <= t < boundary(k + 1)). It shares no code with the
 * library's transitions: only the public types of tally.h.
 *
 * Every public call has a model_* twin that takes the same arguments (a
 * struct model instead of the store; the key as key and key_len, with
 * MODEL_KEY_NUL for a NUL-terminated one), returns the same result code, fills
 * the same view and masks, and appends the same roll events to the model's
 * roll log (what the store's on_roll listener would hear, in the order it
 * would hear them; a sweep's rolls come in record order, which need not be
 * the library's map order). The model's clock is model->now; the caller sets
 * it with model_set_now() in step with the store's fake clock.
 *
 * Holds (tally.h, "Admission"). Every counter keeps `used` (usage) and
 * `held`, the sum of the live holds, kept per expiry slot exactly as
 * src/hold.h documents the scheme (and written here from that text, not
 * from hold.c): the grain G is ceil(hold_ttl_max / 3); a hold with deadline
 * d = now + ttl lands in slot max(ceil(d / G), b), where b, the record's
 * first live slot, is floor(now / G) + 1 of the latest write that found a
 * hold live (or placed one), never decreasing; slot j is dead once
 * now >= j * G, and every write (or sweep) first drops the dead slots and
 * moves b, reporting them to the expiry log. Admission over several limits
 * is all or nothing; handles are struct model_hold, the model's twin of a
 * tally_hold, which names each record by kind, key and incarnation.
 *
 * Sliding counters (tally.h, TALLY_ALGORITHM_SLIDING), from tally.h's text,
 * not from swin.c: a SLIDING counter rolls exactly when a FIXED one would
 * and keeps prev, the usage of the window just before its current one (a
 * roll into the next window makes it the old usage, a roll over more
 * windows 0); its room is max - used - held - ceil(prev * (w - e) / w),
 * e the time since its window's start (0 before it, at most w - 1), and
 * its usage and held stay at most 2^62 - 1. Reports show the estimate as
 * used, and find retry_after by bisection over the times between the
 * events that change the room (the window's end, the next one's, each
 * slot's death), not by swin.h's closed form. An upsert keeps prev only
 * for a counter that was SLIDING with the same window length and whose
 * window is a window of the new lattice; otherwise prev = 0 and a SLIDING
 * counter's window becomes the new lattice's window holding its old start.
 * A counter's usage or held above 2^62 - 1 that an upsert made SLIDING
 * keeps (tally.h: "keeps its usage, held and window") is computed with
 * exactly, used clamped to INT64_MAX.
 *
 * Range of validity. Windows are computed exactly in __int128 and clamped to
 * int64 as tally.h documents ("saturating"), for every valid period and any
 * anchor, offset and time; the calendar tables cover the years -12000 to
 * 16000, which holds every month boundary reachable from an int64 time with
 * any valid MONTH count (at most 10000 years): the model aborts rather than
 * guess outside them. The differential fuzzer keeps times within the years
 * 1900 to 2200 (int64 nanoseconds end in 2262) except for a few extreme
 * probes; the int64 extremes of the lattice itself are covered by
 * tests/test_period.c.
 */
#ifndef TALLY_TEST_MODEL_H
#define TALLY_TEST_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tally.h"

#define MODEL_RECORDS_MAX 32
#define MODEL_ROLLS_MAX 256
#define MODEL_KEY_MAX 255
/* key_len of a NUL-terminated key (the calls without _n). */
#define MODEL_KEY_NUL SIZE_MAX

/* Validity limits of a period (src/period.h documents the same numbers):
 * WEEK counts whose length in ns fits an int64, MONTH counts up to 10000
 * years. */
#define MODEL_WEEK_COUNT_MAX (INT64_MAX / (7 * INT64_C(86400000000000)))
#define MODEL_MONTH_COUNT_MAX INT64_C(120000)

/* One event of the roll log: a tally_roll with its key copied. */
struct model_roll {
	char key[MODEL_KEY_MAX + 1];
	size_t key_len;
	tally_kind kind;
	unsigned counter;
	tally_roll_cause cause;
	int64_t usage_before;
	int64_t old_window_start;
	int64_t new_window_start;
	uint64_t version;
	uint64_t incarnation;
};

/* Sliding counters (tally.h, TALLY_ALGORITHM_SLIDING): the longest window
 * (ns) and the largest max, usage and held (units). */
#define MODEL_SWIN_WIDTH_MAX (INT64_C(1) << 62)
#define MODEL_SWIN_AMOUNT_MAX ((INT64_C(1) << 62) - 1)

/* The 0.3 layouts of tally_ratelimit_config and tally_ratelimit_view
 * (0.2: the view up to tokens_held), written out from the 0.3 header: a
 * config of at least MODEL_RL_CONFIG_V1 bytes is accepted (what it lacks
 * keeps the defaults of TALLY_RATELIMIT_CONFIG_INIT), and a view smaller
 * than tally_ratelimit_view, of at least MODEL_RL_VIEW_V1 bytes, is filled
 * in this layout up to its size. */
struct model_rl_config_03 {
	size_t size;
	tally_limit tokens;
	tally_limit requests;
	int64_t anchor;
	int32_t utc_offset_minutes;
	bool calendar_aligned;
};

struct model_rl_view_03 {
	size_t size;
	struct model_rl_config_03 config;
	tally_counter_view tokens;
	tally_counter_view requests;
	uint64_t version;
	uint64_t incarnation;
	int64_t tokens_held;
	int64_t requests_held;
	uint64_t holds;
};

#define MODEL_RL_CONFIG_V1 sizeof(struct model_rl_config_03)
#define MODEL_RL_VIEW_V1 offsetof(struct model_rl_view_03, tokens_held)

/* A counter: the one of a budget (has_max always true, max = max_limit) or
 * one of a rate limit. window_end is not stored: it is by definition the
 * smallest lattice boundary after window_start, derived for every view.
 * algorithm is TALLY_ALGORITHM_* (a budget's is FIXED); prev, a SLIDING
 * counter's usage of the window just before its current one (0 when that
 * window was skipped, and always 0 for FIXED). */
struct model_counter {
	bool has_max;
	int64_t max;
	tally_period period;
	uint32_t algorithm;
	int64_t usage;
	int64_t prev;
	int64_t window_start;
};

/* Holds. An expiry slot of a record: its number j (it dies at j * G), how
 * many holds it counts, and their sum per counter. A slot is kept while it
 * counts a hold or holds an amount. */
#define MODEL_SLOTS_MAX 8 /* hold.h's scheme needs 4: more is a model error */
#define MODEL_EXPIRIES_MAX 256

struct model_slot {
	int64_t number;
	uint32_t count;
	int64_t sum[2];
};

struct model_record {
	bool live;
	tally_kind kind;
	char key[MODEL_KEY_MAX + 1];
	size_t key_len;
	uint64_t version;
	uint64_t incarnation;
	int64_t anchor; /* effective: never TALLY_ANCHOR_DEFAULT */
	int32_t utc_offset_minutes;
	bool calendar_aligned;
	unsigned ncounters; /* budget: 1, rate limit: 2 (tokens, requests) */
	struct model_counter c[2];
	/* Holds: b (INT64_MIN before the first hold; saturates at INT64_MAX)
	 * and the slots, in no particular order. */
	int64_t hold_base;
	unsigned nslots;
	struct model_slot slot[MODEL_SLOTS_MAX];
};

/* One event of the expiry log: a tally_expiry with its key copied. */
struct model_expiry {
	char key[MODEL_KEY_MAX + 1];
	size_t key_len;
	tally_kind kind;
	uint32_t holds;
	int64_t amount[2];
	int64_t slot_end;
	uint64_t version;
	uint64_t incarnation;
};

/* A hold handle: what tally_hold says, with each record named by kind, key
 * and incarnation. `forged` stands for a tally_hold whose bytes were
 * changed or that another store made (the library's check word refuses
 * it); size, n and state are the tally_hold's own fields. */
struct model_hold_part {
	tally_kind kind;
	uint32_t flags; /* the charge's TALLY_CHARGE_* */
	char key[MODEL_KEY_MAX + 1];
	size_t key_len;
	uint64_t incarnation;
	int64_t slot;
	int64_t amount[2]; /* still held */
};

struct model_hold {
	size_t size;
	uint32_t state; /* TALLY_HOLD_* */
	uint32_t n;
	int64_t deadline;
	bool forged;
	struct model_hold_part part[TALLY_ADMIT_MAX];
};

/* A handle as TALLY_HOLD_INIT makes it (never held). */
void model_hold_init(struct model_hold *h);

struct model {
	int64_t now;
	uint64_t creations; /* records ever created: the last incarnation */
	/* Above every version a removed record reached: where a new record's
	 * versions start (1 in a new store). */
	uint64_t version_floor;
	uint64_t rolls_total;
	struct model_record rec[MODEL_RECORDS_MAX];
	size_t nrolls; /* events in rolls[] since the last model_rolls_clear */
	struct model_roll rolls[MODEL_ROLLS_MAX];
	/* Holds: the store's hold_ttl_max and grain (model_set_hold_ttl_max),
	 * the expiry log (cleared with the roll log) and the admission
	 * counters of tally_stats (admitted .. shadow_would_deny; the others
	 * stay 0). */
	int64_t hold_ttl_max;
	int64_t hold_grain;
	size_t nexpiries;
	struct model_expiry expiries[MODEL_EXPIRIES_MAX];
	tally_stats stats;
	/* Reports whose retry_after was past INT64_MAX - 1 ns (saturated
	 * there): a clock far before the time the request could pass. */
	uint64_t retry_overflows;
};

/* A store with the default hold_ttl_max (TALLY_HOLD_TTL_MAX_DEFAULT). */
void model_init(struct model *m, int64_t now);
void model_set_now(struct model *m, int64_t now);
/* tally_store_options.hold_ttl_max: 0 = the default; TALLY_EINVAL when
 * negative or above TALLY_HOLD_TTL_MAX_LIMIT (nothing changes then). Call
 * it before the first hold. */
int model_set_hold_ttl_max(struct model *m, int64_t ttl_max);
/* Clears the roll log and the expiry log. */
void model_rolls_clear(struct model *m);
/* The live record of that kind and key, or NULL. */
const struct model_record *model_find(const struct model *m, tally_kind kind,
				      const char *key, size_t key_len);
size_t model_records(const struct model *m);

/* TALLY_OK or TALLY_EPERIOD, as the library validates configs. */
int model_period_validate(const tally_period *p, bool allow_none);
/* Latest boundary <= t and earliest boundary > t, clamped to int64. */
void model_window(const tally_period *p, bool aligned, int64_t anchor,
		  int32_t utc_offset_minutes, int64_t t, int64_t *start,
		  int64_t *end);

int model_budget_upsert(struct model *m, const char *key, size_t key_len,
			const tally_budget_config *config,
			tally_budget_view *view);
int model_budget_get(struct model *m, const char *key, size_t key_len,
		     tally_budget_view *view);
int model_budget_bump(struct model *m, const char *key, size_t key_len,
		      int64_t amount, tally_budget_view *view);
int model_budget_check(struct model *m, const char *key, size_t key_len,
		       tally_budget_view *view);
int model_budget_try_consume(struct model *m, const char *key, size_t key_len,
			     int64_t amount, tally_budget_view *view);
int model_budget_reset(struct model *m, const char *key, size_t key_len,
		       uint64_t observed_version, tally_budget_view *view);
int model_budget_remove(struct model *m, const char *key, size_t key_len,
			tally_budget_view *view);

int model_ratelimit_upsert(struct model *m, const char *key, size_t key_len,
			   const tally_ratelimit_config *config,
			   tally_ratelimit_view *view);
int model_ratelimit_get(struct model *m, const char *key, size_t key_len,
			tally_ratelimit_view *view);
int model_ratelimit_bump(struct model *m, const char *key, size_t key_len,
			 int64_t tokens, int64_t requests,
			 tally_ratelimit_view *view);
int model_ratelimit_check(struct model *m, const char *key, size_t key_len,
			  unsigned *limited, tally_ratelimit_view *view);
int model_ratelimit_try_consume(struct model *m, const char *key,
				size_t key_len, int64_t tokens,
				int64_t requests, unsigned *limited,
				tally_ratelimit_view *view);
int model_ratelimit_reset(struct model *m, const char *key, size_t key_len,
			  uint64_t observed_version, unsigned counters,
			  unsigned *reset, tally_ratelimit_view *view);
int model_ratelimit_remove(struct model *m, const char *key, size_t key_len,
			   tally_ratelimit_view *view);

/* Rolls every due counter of every record (cause SWEEP) and drops their
 * dead hold slots, records in array order. *rolled (may be NULL) receives
 * the number of roll events. */
int model_sweep(struct model *m, size_t *rolled);

/* Admission: tally_admit, tally_settle, tally_release and
 * tally_settle_partial, with struct model_hold for tally_hold. A charge's
 * key_len is TALLY_KEY_STRLEN (== MODEL_KEY_NUL) for a NUL-terminated key. */
int model_admit(struct model *m, const tally_charge *charges, size_t n,
		uint32_t mode, int64_t ttl_ns, struct model_hold *hold,
		tally_decision *decision);
int model_settle(struct model *m, struct model_hold *hold,
		 const tally_cost *actual, size_t n, tally_decision *decision);
int model_release(struct model *m, struct model_hold *hold,
		  tally_decision *decision);
int model_settle_partial(struct model *m, struct model_hold *hold,
			 const tally_cost *amount, size_t n,
			 tally_decision *decision);

/* Queries for harnesses (they change nothing). */
/* What counter i of r holds, and how many holds r counts, as stored. */
int64_t model_held(const struct model_record *r, unsigned i);
uint64_t model_holds(const struct model_record *r);
/* Whether a write at m->now would drop a dead slot of r or move its b. */
bool model_holds_due(const struct model *m, const struct model_record *r);
/* What the dead slots of every record hold at m->now, summed over the
 * counters (what writes now would add to expired_units); UINT64_MAX if
 * that does not fit. */
uint64_t model_units_due(const struct model *m);
/* Whether settling (not partially) hold at m->now would leave a slot of
 * some record that counts no hold but still holds an amount: only a
 * second settle of a handle's copy does that (see model.c). */
bool model_settle_strands(const struct model *m, const struct model_hold *hold);

#endif /* TALLY_TEST_MODEL_H */
