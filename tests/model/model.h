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

/* A counter: the one of a budget (has_max always true, max = max_limit) or
 * one of a rate limit. window_end is not stored: it is by definition the
 * smallest lattice boundary after window_start, derived for every view. */
struct model_counter {
	bool has_max;
	int64_t max;
	tally_period period;
	int64_t usage;
	int64_t window_start;
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
};

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
};

void model_init(struct model *m, int64_t now);
void model_set_now(struct model *m, int64_t now);
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

/* Rolls every due counter of every record (cause SWEEP), records in array
 * order. *rolled (may be NULL) receives the number of roll events. */
int model_sweep(struct model *m, size_t *rolled);

#endif /* TALLY_TEST_MODEL_H */
