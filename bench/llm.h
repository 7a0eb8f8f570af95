/*
 * tally-bench's LLM request rows: one realistic gateway request, admitted
 * across the six limits a key/team/customer hierarchy gives it and then
 * settled with what it really cost, through tally and through the
 * admission baselines (baselines.h, bla_*), doing the same work.
 *
 * The hierarchy (2,220 records):
 *   1,000 API keys      a rate limit (tokens and requests per minute) and
 *                       a daily budget each;
 *   100 teams           a monthly budget and a rate limit (per minute) each;
 *                       key k belongs to team k mod 100;
 *   10 customers        a monthly budget and a provider/model rate limit
 *                       (per minute) each; team t belongs to customer
 *                       t mod 10.
 * So every request charges 3 budgets and 3 rate limits, and shares the
 * team and customer records with the other keys of its team and customer.
 * Keys are drawn zipf(1.0) over the 1,000 keys (key 0 the hottest). Every
 * window is calendar aligned (minute, day, month) and every max is 2^61:
 * nothing is refused, so the rows time the admitted path, and windows roll
 * at minute boundaries during the runs, in tally and in the baselines.
 *
 * A request: an estimate of 256 to 4,095 tokens (the prompt plus the
 * max_tokens a client asks for) at LLM_PRICE micro-dollars a token; admit
 * holds the estimate on the 6 records (budgets: its price; rate limits: its
 * tokens and 1 request), for LLM_TTL_NS; settle charges the actual, 0.5x
 * to 1.5x the estimate (deterministic pseudo-random), so about half of the
 * settles are overdrafts. tally: tally_admit(TALLY_ADMIT_HOLD) with a
 * decision (what a gateway turns into headers), then tally_settle; the
 * baselines fill their own report (max, used, held, remaining, window) at
 * admission.
 */
#ifndef TALLY_BENCH_LLM_H
#define TALLY_BENCH_LLM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "baselines.h"
#include "tally.h"

#define LLM_KEYS 1000
#define LLM_TEAMS 100
#define LLM_CUSTOMERS 10
#define LLM_LIMITS 6
#define LLM_RECORDS (2 * (LLM_KEYS + LLM_TEAMS + LLM_CUSTOMERS))
#define LLM_PRICE 3 /* micro-dollars per token */
#define LLM_TTL_NS (INT64_C(60) * 1000000000)
#define LLM_SEQ ((size_t)1 << 20) /* pre-drawn requests */

/*
 * LLM_TALLY_WRITES is a floor, not an admission: the 12 single-record
 * writes that any design with one CAS per record per event makes for a
 * request (6 when it is admitted, 6 when it is settled), as plain tally
 * bumps on the same records (half the actual at "admit", the rest at
 * "settle"), with no read-only pass, holds, expiry, reports or handle.
 */
enum llm_impl {
	LLM_TALLY,
	LLM_TALLY_WRITES,
	LLM_MUTEX,
	LLM_RWLOCK
};

struct llm_hier;

/* The records' names, the charge templates and LLM_SEQ requests; NULL on
 * allocation failure. */
struct llm_hier *llm_hier_create(void);
void llm_hier_free(struct llm_hier *h);

struct llm_target {
	enum llm_impl impl;
	const struct llm_hier *h;
	tally_store *store;
	struct bla_map *map;
	_Atomic int64_t rolled[3]; /* tally: used of rolled windows */
};

/* Creates the 2,220 records in a new store or map; false on failure (a
 * message on stderr). */
bool llm_setup(struct llm_target *t, enum llm_impl impl,
	       const struct llm_hier *h);
void llm_teardown(struct llm_target *t);

/* One request of each key, from this thread (untimed), as warm_up does
 * for the other rows. */
bool llm_warm(struct llm_target *t);

/* Registers the calling thread with a tally store (a read). */
bool llm_register(struct llm_target *t);

struct llm_result {
	uint64_t requests; /* started */
	uint64_t ok;       /* admitted and settled */
	int64_t tokens;    /* actual tokens of the settled requests */
	int64_t overdraft; /* baselines: units settled beyond the holds */
};

/* Runs requests from index start of the sequence until *stop, in chunks
 * of `chunk` requests. */
void llm_run(struct llm_target *t, size_t start, const atomic_bool *stop,
	     unsigned chunk, struct llm_result *out);

/* Used (with rolled windows) and held, by counter id, over every record.
 * Quiescent only; false if a record could not be read. */
bool llm_sums(struct llm_target *t, int64_t used[3], int64_t held[3]);

/* What the settled requests of r add to used, by counter id. */
void llm_expected(const struct llm_result *r, int64_t out[3]);

#endif /* TALLY_BENCH_LLM_H */
