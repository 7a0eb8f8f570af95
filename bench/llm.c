/*
 * tally-bench's LLM request rows (see llm.h): the hierarchy, the requests,
 * and the timed loop of each implementation.
 */
#define _POSIX_C_SOURCE 200809L

#include "llm.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_LEN 48
#define MINUTE_NS (INT64_C(60) * 1000000000)
#define DAY_NS (INT64_C(86400) * 1000000000)
#define BIG_MAX (INT64_C(1) << 61)

/* Positions of the limits in a request's charges: budgets first. */
enum {
	L_KEY_DAY,    /* budget, per day */
	L_TEAM_MONTH, /* budget, per month */
	L_CUST_MONTH, /* budget, per month */
	L_KEY_RL,     /* tokens and requests per minute */
	L_TEAM_RL,    /* tokens and requests per minute */
	L_CUST_MODEL  /* the customer's provider/model limit, per minute */
};

struct llm_req {
	uint16_t key;
	uint16_t est;    /* tokens */
	uint32_t actual; /* tokens */
};

struct llm_def {
	char name[NAME_LEN];
	uint32_t kind;
	int64_t period_count; /* budgets: 1 day or 1 month */
	int32_t period_unit;
};

struct llm_hier {
	struct llm_def def[LLM_RECORDS];
	tally_charge tc[LLM_KEYS][LLM_LIMITS];
	struct bla_charge bc[LLM_KEYS][LLM_LIMITS];
	struct llm_req *seq;
};

static uint64_t
splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* "<prefix>/<uuid>/<suffix>"; the uuid's last group is the index times an
 * odd constant (distinct). */
static void
name(char *buf, uint64_t *rng, const char *prefix, unsigned i,
     const char *suffix)
{
	uint64_t a = splitmix64(rng);

	snprintf(buf, NAME_LEN, "%s/%08x-%04x-%04x-%04x-%012" PRIx64 "/%s",
		 prefix, (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xffffu,
		 (unsigned)a & 0xffffu, (unsigned)(splitmix64(rng) & 0xffffu),
		 (uint64_t)(((uint64_t)i * 0x9e3779b97f4bull) &
			    0xffffffffffffull),
		 suffix);
}

/* Index in def[] of each record: the budget of a key, team or customer
 * at 2 * index, its rate limit at 2 * index + 1. */
static unsigned
rec_of(unsigned level, unsigned i)
{
	unsigned base = level == 0   ? 0
			: level == 1 ? LLM_KEYS
				     : LLM_KEYS + LLM_TEAMS;

	return 2 * (base + i);
}

struct llm_hier *
llm_hier_create(void)
{
	static const char *const prefix[3] = {"key", "team", "cust"};
	static const char *const budget[3] = {"day", "month", "month"};
	static const char *const limit[3] = {"rpm-tpm", "rpm-tpm",
					     "gpt-4o-rpm-tpm"};
	static const unsigned count[3] = {LLM_KEYS, LLM_TEAMS, LLM_CUSTOMERS};
	struct llm_hier *h = calloc(1, sizeof *h);
	uint64_t rng = 0x11a7e5ca1eull;
	double *cdf, total = 0, acc = 0;

	if (h == NULL)
		return NULL;
	h->seq = malloc(LLM_SEQ * sizeof *h->seq);
	cdf = malloc(LLM_KEYS * sizeof *cdf);
	if (h->seq == NULL || cdf == NULL) {
		free(cdf);
		llm_hier_free(h);
		return NULL;
	}
	for (unsigned level = 0; level < 3; level++) {
		for (unsigned i = 0; i < count[level]; i++) {
			struct llm_def *b = &h->def[rec_of(level, i)];
			struct llm_def *r = b + 1;

			name(b->name, &rng, prefix[level], i, budget[level]);
			b->kind = TALLY_KIND_BUDGET;
			if (level == 0) {
				b->period_count = DAY_NS;
				b->period_unit = TALLY_PERIOD_FIXED;
			} else {
				b->period_count = 1;
				b->period_unit = TALLY_PERIOD_MONTH;
			}
			name(r->name, &rng, prefix[level], i, limit[level]);
			r->kind = TALLY_KIND_RATELIMIT;
			r->period_count = MINUTE_NS;
			r->period_unit = TALLY_PERIOD_FIXED;
		}
	}
	for (unsigned k = 0; k < LLM_KEYS; k++) {
		unsigned team = k % LLM_TEAMS, cust = team % LLM_CUSTOMERS;
		unsigned at[LLM_LIMITS];

		at[L_KEY_DAY] = rec_of(0, k);
		at[L_TEAM_MONTH] = rec_of(1, team);
		at[L_CUST_MONTH] = rec_of(2, cust);
		at[L_KEY_RL] = rec_of(0, k) + 1;
		at[L_TEAM_RL] = rec_of(1, team) + 1;
		at[L_CUST_MODEL] = rec_of(2, cust) + 1;
		for (unsigned l = 0; l < LLM_LIMITS; l++) {
			const struct llm_def *d = &h->def[at[l]];
			tally_charge *c = &h->tc[k][l];
			struct bla_charge *b = &h->bc[k][l];

			memset(c, 0, sizeof *c);
			c->kind = d->kind;
			c->key = d->name;
			c->key_len = strlen(d->name);
			c->requests = d->kind == TALLY_KIND_RATELIMIT ? 1 : 0;
			memset(b, 0, sizeof *b);
			b->kind = d->kind;
			b->key = d->name;
			b->key_len = c->key_len;
			b->amount[1] = c->requests;
		}
	}
	for (unsigned i = 0; i < LLM_KEYS; i++)
		total += 1.0 / (double)(i + 1);
	for (unsigned i = 0; i < LLM_KEYS; i++) {
		acc += 1.0 / (double)(i + 1);
		cdf[i] = acc / total;
	}
	for (size_t i = 0; i < LLM_SEQ; i++) {
		double u = (double)(splitmix64(&rng) >> 11) * 0x1p-53;
		unsigned lo = 0, hi = LLM_KEYS - 1;
		uint64_t r = splitmix64(&rng);
		unsigned est = 256 + (unsigned)(r % 3840);
		unsigned pct = 50 + (unsigned)((r >> 32) % 101);

		while (lo < hi) {
			unsigned mid = lo + (hi - lo) / 2;

			if (cdf[mid] >= u)
				hi = mid;
			else
				lo = mid + 1;
		}
		h->seq[i].key = (uint16_t)lo;
		h->seq[i].est = (uint16_t)est;
		h->seq[i].actual = est * pct / 100;
	}
	free(cdf);
	return h;
}

void
llm_hier_free(struct llm_hier *h)
{
	if (h == NULL)
		return;
	free(h->seq);
	free(h);
}

/* ------------------------------------------------------------------------ */
/* Setup                                                                    */
/* ------------------------------------------------------------------------ */

static void
on_roll(const tally_roll *roll, void *ctx)
{
	struct llm_target *t = ctx;

	if (roll->counter < 3)
		atomic_fetch_add(&t->rolled[roll->counter], roll->usage_before);
}

static bool
setup_tally(struct llm_target *t)
{
	tally_store_options o = TALLY_STORE_OPTIONS_INIT;
	int rc;

	o.expected_records = LLM_RECORDS;
	o.on_roll = on_roll;
	o.on_roll_ctx = t;
	if ((rc = tally_store_create(&t->store, &o)) != TALLY_OK) {
		fprintf(stderr, "tally-bench: tally_store_create: %s\n",
			tally_strerror(rc));
		return false;
	}
	for (unsigned i = 0; i < LLM_RECORDS; i++) {
		const struct llm_def *d = &t->h->def[i];

		if (d->kind == TALLY_KIND_BUDGET) {
			tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;

			c.max_limit = BIG_MAX;
			c.period.count = d->period_count;
			c.period.unit = d->period_unit;
			c.calendar_aligned = true;
			rc = tally_budget_upsert(t->store, d->name, &c, NULL);
		} else {
			tally_ratelimit_config c = TALLY_RATELIMIT_CONFIG_INIT;

			c.tokens.has_max = c.requests.has_max = true;
			c.tokens.max = c.requests.max = BIG_MAX;
			c.tokens.period.count = d->period_count;
			c.tokens.period.unit = d->period_unit;
			c.requests.period = c.tokens.period;
			c.calendar_aligned = true;
			rc = tally_ratelimit_upsert(t->store, d->name, &c,
						    NULL);
		}
		if (rc != TALLY_CREATED) {
			fprintf(stderr, "tally-bench: upsert %s: %s\n", d->name,
				tally_strerror(rc));
			return false;
		}
	}
	return true;
}

static bool
setup_bla(struct llm_target *t, enum bla_lock lock)
{
	struct bla_def *defs = calloc(LLM_RECORDS, sizeof *defs);

	if (defs == NULL)
		return false;
	for (unsigned i = 0; i < LLM_RECORDS; i++) {
		const struct llm_def *d = &t->h->def[i];

		defs[i].key = d->name;
		defs[i].kind = d->kind;
		for (unsigned c = 0; c < 2; c++) {
			defs[i].max[c] = BIG_MAX;
			defs[i].period_count[c] = d->period_count;
			defs[i].period_unit[c] = d->period_unit;
		}
	}
	t->map = bla_create(lock, defs, LLM_RECORDS);
	free(defs);
	if (t->map == NULL)
		fprintf(stderr, "tally-bench: out of memory\n");
	return t->map != NULL;
}

bool
llm_setup(struct llm_target *t, enum llm_impl impl, const struct llm_hier *h)
{
	memset(t, 0, sizeof *t);
	t->impl = impl;
	t->h = h;
	for (unsigned i = 0; i < 3; i++)
		atomic_init(&t->rolled[i], 0);
	if (impl == LLM_TALLY || impl == LLM_TALLY_WRITES)
		return setup_tally(t);
	return setup_bla(t, impl == LLM_MUTEX ? BLA_MUTEX : BLA_RWLOCK);
}

void
llm_teardown(struct llm_target *t)
{
	tally_store_destroy(t->store);
	bla_destroy(t->map);
	memset(t, 0, sizeof *t);
}

bool
llm_register(struct llm_target *t)
{
	tally_budget_view v = TALLY_BUDGET_VIEW_INIT;

	if (t->impl != LLM_TALLY && t->impl != LLM_TALLY_WRITES)
		return true;
	return tally_budget_get(t->store, t->h->def[0].name, &v) == TALLY_OK;
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */
/* ------------------------------------------------------------------------ */

/* The request's charges: the key's template with the estimate. */
static inline void
charges_of(const struct llm_hier *h, const struct llm_req *q, tally_charge *c)
{
	int64_t est = q->est;

	memcpy(c, h->tc[q->key], LLM_LIMITS * sizeof *c);
	c[L_KEY_DAY].amount = c[L_TEAM_MONTH].amount = c[L_CUST_MONTH].amount =
		est * LLM_PRICE;
	c[L_KEY_RL].tokens = c[L_TEAM_RL].tokens = c[L_CUST_MODEL].tokens = est;
}

static inline void
costs_of(const struct llm_req *q, tally_cost *c)
{
	int64_t act = q->actual;

	for (unsigned l = 0; l < LLM_LIMITS; l++) {
		bool budget = l <= L_CUST_MONTH;

		c[l].amount = budget ? act * LLM_PRICE : 0;
		c[l].tokens = budget ? 0 : act;
		c[l].requests = budget ? 0 : 1;
	}
}

/* Per-thread state of a loop: the structs a gateway keeps per request. */
struct llm_ctx {
	tally_charge ch[LLM_LIMITS];
	tally_cost cost[LLM_LIMITS];
	tally_hold hold;
	tally_decision dec;
	struct bla_charge bch[LLM_LIMITS];
	struct bla_hold bhold;
	struct bla_report rep[2 * LLM_LIMITS];
	int64_t bcost[LLM_LIMITS][2];
};

static void
ctx_init(struct llm_ctx *c)
{
	tally_hold h = TALLY_HOLD_INIT;
	tally_decision d = TALLY_DECISION_INIT;

	memset(c, 0, sizeof *c);
	c->hold = h;
	c->dec = d;
}

/* One request through tally: whether it was admitted and settled. */
static inline bool
one_tally(const struct llm_target *t, const struct llm_req *q,
	  struct llm_ctx *c)
{
	charges_of(t->h, q, c->ch);
	if (tally_admit(t->store, c->ch, LLM_LIMITS, TALLY_ADMIT_HOLD,
			LLM_TTL_NS, &c->hold, &c->dec) != TALLY_OK)
		return false;
	costs_of(q, c->cost);
	return tally_settle(t->store, &c->hold, c->cost, LLM_LIMITS, NULL) ==
	       TALLY_OK;
}

/* The floor (llm.h): the request's 12 record writes as plain bumps, half
 * of the actual at "admit", the rest at "settle". */
static inline bool
writes_half(const struct llm_target *t, const struct llm_req *q,
	    const tally_charge *c, bool second)
{
	int64_t act = q->actual, half = act / 2,
		part = second ? act - half : half;

	for (unsigned l = 0; l < LLM_LIMITS; l++) {
		int rc =
			l <= L_CUST_MONTH
				? tally_budget_bump(t->store, c[l].key,
						    part * LLM_PRICE, NULL)
				: tally_ratelimit_bump(t->store, c[l].key, part,
						       second ? 0 : 1, NULL);

		if (rc != TALLY_OK)
			return false;
	}
	return true;
}

static inline bool
one_writes(const struct llm_target *t, const struct llm_req *q)
{
	const tally_charge *c = t->h->tc[q->key];

	return writes_half(t, q, c, false) && writes_half(t, q, c, true);
}

/* The same through a baseline; *over: its overdraft units. */
static inline bool
one_bla(const struct llm_target *t, const struct llm_req *q, struct llm_ctx *c,
	int64_t *over)
{
	int64_t est = q->est, act = q->actual;

	memcpy(c->bch, t->h->bc[q->key], sizeof c->bch);
	for (unsigned l = 0; l < LLM_LIMITS; l++)
		c->bch[l].amount[0] = l <= L_CUST_MONTH ? est * LLM_PRICE : est;
	if (bla_admit(t->map, c->bch, LLM_LIMITS, &c->bhold, c->rep) !=
	    TALLY_OK)
		return false;
	for (unsigned l = 0; l < LLM_LIMITS; l++) {
		bool budget = l <= L_CUST_MONTH;

		c->bcost[l][0] = budget ? act * LLM_PRICE : act;
		c->bcost[l][1] = budget ? 0 : 1;
	}
	return bla_settle(t->map, &c->bhold, (const int64_t(*)[2])c->bcost,
			  over) == TALLY_OK;
}

void
llm_run(struct llm_target *t, size_t i, const atomic_bool *stop, unsigned chunk,
	struct llm_result *out)
{
	const struct llm_req *seq = t->h->seq;
	struct llm_ctx *c = malloc(sizeof *c);
	uint64_t n = 0, ok = 0;
	int64_t tokens = 0, over = 0;

	memset(out, 0, sizeof *out);
	if (c == NULL)
		return; /* no request ran: the row fails */
	ctx_init(c);
	if (t->impl == LLM_TALLY_WRITES) {
		while (!atomic_load_explicit(stop, memory_order_relaxed)) {
			for (unsigned j = 0; j < chunk; j++) {
				const struct llm_req *q =
					&seq[i++ & (LLM_SEQ - 1)];

				if (one_writes(t, q)) {
					ok++;
					tokens += q->actual;
				}
			}
			n += chunk;
		}
	} else if (t->impl == LLM_TALLY) {
		while (!atomic_load_explicit(stop, memory_order_relaxed)) {
			for (unsigned j = 0; j < chunk; j++) {
				const struct llm_req *q =
					&seq[i++ & (LLM_SEQ - 1)];

				if (one_tally(t, q, c)) {
					ok++;
					tokens += q->actual;
				}
			}
			n += chunk;
		}
	} else {
		while (!atomic_load_explicit(stop, memory_order_relaxed)) {
			for (unsigned j = 0; j < chunk; j++) {
				const struct llm_req *q =
					&seq[i++ & (LLM_SEQ - 1)];
				int64_t o = 0;

				if (one_bla(t, q, c, &o)) {
					ok++;
					tokens += q->actual;
					over += o;
				}
			}
			n += chunk;
		}
	}
	free(c);
	out->requests = n;
	out->ok = ok;
	out->tokens = tokens;
	out->overdraft = over;
}

bool
llm_warm(struct llm_target *t)
{
	struct llm_ctx *c = malloc(sizeof *c);
	bool ok = c != NULL;

	if (c != NULL)
		ctx_init(c);
	/* One request of every key (so every record is written once). */
	for (unsigned k = 0; k < LLM_KEYS && ok; k++) {
		struct llm_req q = {(uint16_t)k, 1000, 1000};
		int64_t o;

		ok = t->impl == LLM_TALLY          ? one_tally(t, &q, c)
		     : t->impl == LLM_TALLY_WRITES ? one_writes(t, &q)
						   : one_bla(t, &q, c, &o);
	}
	free(c);
	if (!ok)
		fprintf(stderr, "tally-bench: llm_request warm-up failed\n");
	return ok;
}

bool
llm_sums(struct llm_target *t, int64_t used[3], int64_t held[3])
{
	if (t->impl != LLM_TALLY && t->impl != LLM_TALLY_WRITES) {
		bla_sum(t->map, used, held);
		return true;
	}
	for (unsigned c = 0; c < 3; c++) {
		used[c] = atomic_load(&t->rolled[c]);
		held[c] = 0;
	}
	for (unsigned i = 0; i < LLM_RECORDS; i++) {
		const struct llm_def *d = &t->h->def[i];

		if (d->kind == TALLY_KIND_BUDGET) {
			tally_budget_view v = TALLY_BUDGET_VIEW_INIT;

			if (tally_budget_get(t->store, d->name, &v) != TALLY_OK)
				return false;
			used[TALLY_COUNTER_BUDGET] += v.usage;
			held[TALLY_COUNTER_BUDGET] += v.held;
		} else {
			tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;

			if (tally_ratelimit_get(t->store, d->name, &v) !=
			    TALLY_OK)
				return false;
			used[TALLY_COUNTER_TOKENS] += v.tokens.usage;
			used[TALLY_COUNTER_REQUESTS] += v.requests.usage;
			held[TALLY_COUNTER_TOKENS] += v.tokens_held;
			held[TALLY_COUNTER_REQUESTS] += v.requests_held;
		}
	}
	return true;
}

void
llm_expected(const struct llm_result *r, int64_t out[3])
{
	out[TALLY_COUNTER_BUDGET] = 3 * LLM_PRICE * r->tokens;
	out[TALLY_COUNTER_TOKENS] = 3 * r->tokens;
	out[TALLY_COUNTER_REQUESTS] = 3 * (int64_t)r->ok;
}
