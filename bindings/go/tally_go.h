/*
 * C side of the Go binding (package tally): the wrappers the Go code calls,
 * the store's event listeners and its manual clock. Plain C11, no Go
 * pointer is ever kept here past a call.
 */
#ifndef TALLY_GO_H
#define TALLY_GO_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tally.h>

#define TGO_KEY_MAX 255

/* tgo_event.type */
#define TGO_EVENT_ROLL 1u
#define TGO_EVENT_EXPIRY 2u

/* A roll or an expiry, copied (key included) by the listener. */
typedef struct tgo_event {
	uint32_t type;
	uint32_t kind;
	uint32_t counter; /* roll */
	uint32_t cause;   /* roll */
	uint32_t holds;   /* expiry */
	uint32_t key_len;
	int64_t usage_before;     /* roll */
	int64_t old_window_start; /* roll */
	int64_t new_window_start; /* roll */
	int64_t amount[2];        /* expiry */
	int64_t slot_end;         /* expiry */
	uint64_t version;
	uint64_t incarnation;
	unsigned char key[TGO_KEY_MAX];
} tgo_event;

/* Events delivered into the ring and dropped because it was full. */
typedef struct tgo_event_counts {
	uint64_t rolls;
	uint64_t expiries;
	uint64_t dropped_rolls;
	uint64_t dropped_expiries;
} tgo_event_counts;

/* One store and what its callbacks need (freed by tgo_close). */
typedef struct tgo_ctx {
	tally_store *store;
	int64_t now;          /* manual clock (atomic) */
	pthread_mutex_t lock; /* the ring */
	tgo_event *ring;
	size_t cap, head, len;
	tgo_event_counts counts; /* under lock */
} tgo_ctx;

typedef struct tgo_open_args {
	size_t expected_records;
	uint64_t hash_seed;
	int64_t hold_ttl_max;
	size_t event_capacity; /* 0: no listeners */
	bool manual_clock;
	int64_t now;
} tgo_open_args;

typedef struct tgo_open_res {
	int rc;
	tgo_ctx *ctx;
} tgo_open_res;

tgo_open_res tgo_open(tgo_open_args args);
void tgo_close(tgo_ctx *ctx);
void tgo_set_now(tgo_ctx *ctx, int64_t now);
int64_t tgo_now(tgo_ctx *ctx);
size_t tgo_events_drain(tgo_ctx *ctx, tgo_event *out, size_t max);
tgo_event_counts tgo_events_counts(tgo_ctx *ctx);

/* Results with views, returned by value (no Go pointer goes to C). */
typedef struct tgo_budget_res {
	int rc;
	tally_budget_view view;
} tgo_budget_res;

typedef struct tgo_rl_res {
	int rc;
	unsigned mask;
	tally_ratelimit_view view;
} tgo_rl_res;

tgo_budget_res tgo_budget_upsert(uintptr_t s, const char *key, size_t len,
				 tally_budget_config config);
tgo_budget_res tgo_budget_get(uintptr_t s, const char *key, size_t len);
tgo_budget_res tgo_budget_bump(uintptr_t s, const char *key, size_t len,
			       int64_t amount);
tgo_budget_res tgo_budget_check(uintptr_t s, const char *key, size_t len);
tgo_budget_res tgo_budget_try_consume(uintptr_t s, const char *key, size_t len,
				      int64_t amount);
tgo_budget_res tgo_budget_reset(uintptr_t s, const char *key, size_t len,
				uint64_t version);
tgo_budget_res tgo_budget_remove(uintptr_t s, const char *key, size_t len);

tgo_rl_res tgo_rl_upsert(uintptr_t s, const char *key, size_t len,
			 tally_ratelimit_config config);
tgo_rl_res tgo_rl_get(uintptr_t s, const char *key, size_t len);
tgo_rl_res tgo_rl_bump(uintptr_t s, const char *key, size_t len, int64_t tokens,
		       int64_t requests);
tgo_rl_res tgo_rl_check(uintptr_t s, const char *key, size_t len);
tgo_rl_res tgo_rl_try_consume(uintptr_t s, const char *key, size_t len,
			      int64_t tokens, int64_t requests);
tgo_rl_res tgo_rl_reset(uintptr_t s, const char *key, size_t len,
			uint64_t version, unsigned counters);
tgo_rl_res tgo_rl_remove(uintptr_t s, const char *key, size_t len);

/* Admission: charges as offsets into one key buffer, so that the whole
 * call's input and output is one pointer-free block of Go memory. */
typedef struct tgo_charge {
	uint32_t kind;
	uint32_t flags;
	uint32_t key_off;
	uint32_t key_len;
	int64_t amount;
	int64_t tokens;
	int64_t requests;
} tgo_charge;

typedef struct tgo_admit_buf {
	tgo_charge charges[TALLY_ADMIT_MAX];
	tally_cost costs[TALLY_ADMIT_MAX];
	tally_hold hold;
	tally_decision decision;
	unsigned char keys[TALLY_ADMIT_MAX * TGO_KEY_MAX];
} tgo_admit_buf;

/* tgo_settle op */
#define TGO_SETTLE 0
#define TGO_RELEASE 1
#define TGO_PARTIAL 2

int tgo_admit(uintptr_t s, tgo_admit_buf *b, size_t n, uint32_t mode,
	      int64_t ttl_ns);
int tgo_settle(uintptr_t s, tgo_admit_buf *b, size_t n, int op);

/* Headers: policy names as offsets into one NUL-separated buffer. */
typedef struct tgo_policy {
	uint32_t name_off;
	uint32_t limit;
	uint32_t counter;
	uint32_t unit;
} tgo_policy;

int tgo_headers(const tally_decision *d, const tgo_policy *p, size_t n,
		const char *names, uint32_t fields, char *buf, size_t size);

/* Export and metrics: handle is a cgo.Handle, passed back to Go. */
int tgo_export(tally_store *s, uintptr_t handle);
int tgo_metrics(tally_store *s, uintptr_t handle, uint64_t max_records);

/* An empty call: the benchmarks' baseline. */
void tgo_nop(void);

#endif
