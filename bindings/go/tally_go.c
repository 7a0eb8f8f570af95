/* C side of the Go binding: see tally_go.h. */
#include "tally_go.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "_cgo_export.h"

/* ---- clock and events ---------------------------------------------------- */

static int64_t
tgo_clock_manual(void *ctx)
{
	return __atomic_load_n(&((tgo_ctx *)ctx)->now, __ATOMIC_ACQUIRE);
}

static void
tgo_push(tgo_ctx *c, const tgo_event *ev)
{
	pthread_mutex_lock(&c->lock);
	if (c->len == c->cap) {
		if (ev->type == TGO_EVENT_ROLL)
			c->counts.dropped_rolls++;
		else
			c->counts.dropped_expiries++;
	} else {
		c->ring[(c->head + c->len) % c->cap] = *ev;
		c->len++;
		if (ev->type == TGO_EVENT_ROLL)
			c->counts.rolls++;
		else
			c->counts.expiries++;
	}
	pthread_mutex_unlock(&c->lock);
}

static void
tgo_key(tgo_event *ev, const char *key, size_t len)
{
	if (len > TGO_KEY_MAX)
		len = TGO_KEY_MAX; /* keys are at most 255 bytes: never */
	ev->key_len = (uint32_t)len;
	memcpy(ev->key, key, len);
}

static void
tgo_on_roll(const tally_roll *r, void *ctx)
{
	tgo_event ev;

	ev.type = TGO_EVENT_ROLL;
	ev.kind = r->kind;
	ev.counter = r->counter;
	ev.cause = r->cause;
	ev.holds = 0;
	ev.usage_before = r->usage_before;
	ev.old_window_start = r->old_window_start;
	ev.new_window_start = r->new_window_start;
	ev.amount[0] = ev.amount[1] = 0;
	ev.slot_end = 0;
	ev.version = r->version;
	ev.incarnation = r->incarnation;
	tgo_key(&ev, r->key, r->key_len);
	tgo_push(ctx, &ev);
}

static void
tgo_on_expire(const tally_expiry *e, void *ctx)
{
	tgo_event ev;

	ev.type = TGO_EVENT_EXPIRY;
	ev.kind = e->kind;
	ev.counter = 0;
	ev.cause = 0;
	ev.holds = e->holds;
	ev.usage_before = ev.old_window_start = ev.new_window_start = 0;
	ev.amount[0] = e->amount[0];
	ev.amount[1] = e->amount[1];
	ev.slot_end = e->slot_end;
	ev.version = e->version;
	ev.incarnation = e->incarnation;
	tgo_key(&ev, e->key, e->key_len);
	tgo_push(ctx, &ev);
}

tgo_open_res
tgo_open(tgo_open_args a)
{
	tgo_open_res res = {TALLY_ENOMEM, NULL};
	tally_store_options o = TALLY_STORE_OPTIONS_INIT;
	tgo_ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return res;
	if (a.event_capacity > 0) {
		c->ring = calloc(a.event_capacity, sizeof(*c->ring));
		if (!c->ring) {
			free(c);
			return res;
		}
		c->cap = a.event_capacity;
		o.on_roll = tgo_on_roll;
		o.on_roll_ctx = c;
		o.on_expire = tgo_on_expire;
		o.on_expire_ctx = c;
	}
	if (pthread_mutex_init(&c->lock, NULL) != 0) {
		free(c->ring);
		free(c);
		return res;
	}
	c->now = a.now;
	if (a.manual_clock) {
		o.clock = tgo_clock_manual;
		o.clock_ctx = c;
	}
	o.expected_records = a.expected_records;
	o.hash_seed = a.hash_seed;
	o.hold_ttl_max = a.hold_ttl_max;
	res.rc = tally_store_create(&c->store, &o);
	if (res.rc != TALLY_OK) {
		pthread_mutex_destroy(&c->lock);
		free(c->ring);
		free(c);
		return res;
	}
	res.ctx = c;
	return res;
}

void
tgo_close(tgo_ctx *c)
{
	tally_store_destroy(c->store);
	pthread_mutex_destroy(&c->lock);
	free(c->ring);
	free(c);
}

void
tgo_set_now(tgo_ctx *c, int64_t now)
{
	__atomic_store_n(&c->now, now, __ATOMIC_RELEASE);
}

int64_t
tgo_now(tgo_ctx *c)
{
	struct timespec ts;

	(void)c;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

size_t
tgo_events_drain(tgo_ctx *c, tgo_event *out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&c->lock);
	while (n < max && c->len > 0) {
		out[n++] = c->ring[c->head];
		c->head = (c->head + 1) % c->cap;
		c->len--;
	}
	pthread_mutex_unlock(&c->lock);
	return n;
}

tgo_event_counts
tgo_events_counts(tgo_ctx *c)
{
	tgo_event_counts r;

	pthread_mutex_lock(&c->lock);
	r = c->counts;
	pthread_mutex_unlock(&c->lock);
	return r;
}

/* ---- budgets and rate limits ---------------------------------------------- */

/* Go passes NULL for an empty key; the library must still see one (and
 * answer TALLY_EKEY), not a NULL (TALLY_EINVAL). */
/* The store travels as an integer: cgo checks no pointer argument then. */
#define TGO_S(s) ((tally_store *)(s))
#define TGO_KEY(k) ((k) ? (k) : "")

tgo_budget_res
tgo_budget_upsert(uintptr_t s, const char *k, size_t n,
		  tally_budget_config config)
{
	tgo_budget_res r = {0, TALLY_BUDGET_VIEW_INIT};

	config.size = sizeof(config);
	r.rc = tally_budget_upsert_n(TGO_S(s), TGO_KEY(k), n, &config, &r.view);
	return r;
}

tgo_budget_res
tgo_budget_get(uintptr_t s, const char *k, size_t n)
{
	tgo_budget_res r = {0, TALLY_BUDGET_VIEW_INIT};

	r.rc = tally_budget_get_n(TGO_S(s), TGO_KEY(k), n, &r.view);
	return r;
}

tgo_budget_res
tgo_budget_bump(uintptr_t s, const char *k, size_t n, int64_t amount)
{
	tgo_budget_res r = {0, TALLY_BUDGET_VIEW_INIT};

	r.rc = tally_budget_bump_n(TGO_S(s), TGO_KEY(k), n, amount, &r.view);
	return r;
}

tgo_budget_res
tgo_budget_check(uintptr_t s, const char *k, size_t n)
{
	tgo_budget_res r = {0, TALLY_BUDGET_VIEW_INIT};

	r.rc = tally_budget_check_n(TGO_S(s), TGO_KEY(k), n, &r.view);
	return r;
}

tgo_budget_res
tgo_budget_try_consume(uintptr_t s, const char *k, size_t n, int64_t amount)
{
	tgo_budget_res r = {0, TALLY_BUDGET_VIEW_INIT};

	r.rc = tally_budget_try_consume_n(TGO_S(s), TGO_KEY(k), n, amount,
					  &r.view);
	return r;
}

tgo_budget_res
tgo_budget_reset(uintptr_t s, const char *k, size_t n, uint64_t version)
{
	tgo_budget_res r = {0, TALLY_BUDGET_VIEW_INIT};

	r.rc = tally_budget_reset_n(TGO_S(s), TGO_KEY(k), n, version, &r.view);
	return r;
}

tgo_budget_res
tgo_budget_remove(uintptr_t s, const char *k, size_t n)
{
	tgo_budget_res r = {0, TALLY_BUDGET_VIEW_INIT};

	r.rc = tally_budget_remove_n(TGO_S(s), TGO_KEY(k), n, &r.view);
	return r;
}

tgo_rl_res
tgo_rl_upsert(uintptr_t s, const char *k, size_t n,
	      tally_ratelimit_config config)
{
	tgo_rl_res r = {0, 0, TALLY_RATELIMIT_VIEW_INIT};

	config.size = sizeof(config);
	r.rc = tally_ratelimit_upsert_n(TGO_S(s), TGO_KEY(k), n, &config,
					&r.view);
	return r;
}

tgo_rl_res
tgo_rl_get(uintptr_t s, const char *k, size_t n)
{
	tgo_rl_res r = {0, 0, TALLY_RATELIMIT_VIEW_INIT};

	r.rc = tally_ratelimit_get_n(TGO_S(s), TGO_KEY(k), n, &r.view);
	return r;
}

tgo_rl_res
tgo_rl_bump(uintptr_t s, const char *k, size_t n, int64_t tokens,
	    int64_t requests)
{
	tgo_rl_res r = {0, 0, TALLY_RATELIMIT_VIEW_INIT};

	r.rc = tally_ratelimit_bump_n(TGO_S(s), TGO_KEY(k), n, tokens, requests,
				      &r.view);
	return r;
}

tgo_rl_res
tgo_rl_check(uintptr_t s, const char *k, size_t n)
{
	tgo_rl_res r = {0, 0, TALLY_RATELIMIT_VIEW_INIT};

	r.rc = tally_ratelimit_check_n(TGO_S(s), TGO_KEY(k), n, &r.mask,
				       &r.view);
	return r;
}

tgo_rl_res
tgo_rl_try_consume(uintptr_t s, const char *k, size_t n, int64_t tokens,
		   int64_t requests)
{
	tgo_rl_res r = {0, 0, TALLY_RATELIMIT_VIEW_INIT};

	r.rc = tally_ratelimit_try_consume_n(TGO_S(s), TGO_KEY(k), n, tokens,
					     requests, &r.mask, &r.view);
	return r;
}

tgo_rl_res
tgo_rl_reset(uintptr_t s, const char *k, size_t n, uint64_t version,
	     unsigned counters)
{
	tgo_rl_res r = {0, 0, TALLY_RATELIMIT_VIEW_INIT};

	r.rc = tally_ratelimit_reset_n(TGO_S(s), TGO_KEY(k), n, version,
				       counters, &r.mask, &r.view);
	return r;
}

tgo_rl_res
tgo_rl_remove(uintptr_t s, const char *k, size_t n)
{
	tgo_rl_res r = {0, 0, TALLY_RATELIMIT_VIEW_INIT};

	r.rc = tally_ratelimit_remove_n(TGO_S(s), TGO_KEY(k), n, &r.view);
	return r;
}

/* ---- admission -------------------------------------------------------------- */

int
tgo_admit(uintptr_t s, tgo_admit_buf *b, size_t n, uint32_t mode,
	  int64_t ttl_ns)
{
	tally_charge c[TALLY_ADMIT_MAX];

	if (n > TALLY_ADMIT_MAX)
		return TALLY_EINVAL;
	for (size_t i = 0; i < n; i++) {
		const tgo_charge *g = &b->charges[i];

		if (g->key_off > sizeof(b->keys) ||
		    g->key_len > sizeof(b->keys) - g->key_off)
			return TALLY_EKEY;
		c[i].kind = g->kind;
		c[i].flags = g->flags;
		c[i].key = (const char *)b->keys + g->key_off;
		c[i].key_len = g->key_len;
		c[i].amount = g->amount;
		c[i].tokens = g->tokens;
		c[i].requests = g->requests;
	}
	b->hold = (tally_hold)TALLY_HOLD_INIT;
	b->decision = (tally_decision)TALLY_DECISION_INIT;
	return tally_admit(TGO_S(s), c, n, mode, ttl_ns,
			   mode == TALLY_ADMIT_HOLD ? &b->hold : NULL,
			   &b->decision);
}

int
tgo_settle(uintptr_t s, tgo_admit_buf *b, size_t n, int op)
{
	b->decision = (tally_decision)TALLY_DECISION_INIT;
	switch (op) {
	case TGO_SETTLE:
		return tally_settle(TGO_S(s), &b->hold, b->costs, n,
				    &b->decision);
	case TGO_RELEASE:
		return tally_release(TGO_S(s), &b->hold, &b->decision);
	case TGO_PARTIAL:
		return tally_settle_partial(TGO_S(s), &b->hold, b->costs, n,
					    &b->decision);
	default:
		return TALLY_EINVAL;
	}
}

/* ---- headers ------------------------------------------------------------------ */

int
tgo_headers(const tally_decision *d, const tgo_policy *p, size_t n,
	    const char *names, uint32_t fields, char *buf, size_t size)
{
	tally_header_policy stack[32];
	tally_header_policy *hp = stack;
	int rc;

	if (n > sizeof(stack) / sizeof(stack[0])) {
		hp = malloc(n * sizeof(*hp));
		if (!hp)
			return TALLY_ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		hp[i].name = names + p[i].name_off;
		hp[i].limit = p[i].limit;
		hp[i].counter = p[i].counter;
		hp[i].unit = p[i].unit;
	}
	rc = tally_headers_format(d, n ? hp : NULL, n, fields, buf, size);
	if (hp != stack)
		free(hp);
	return rc;
}

/* ---- export and metrics: these call Go (not the request path) ---------------- */

static int
tgo_record_cb(void *ctx, const tally_record *r)
{
	return goTallyRecord((uintptr_t)ctx, (tally_record *)r);
}

int
tgo_export(tally_store *s, uintptr_t handle)
{
	tally_cursor cur = TALLY_CURSOR_INIT;
	int rc = TALLY_OK;

	while (!cur.done) {
		rc = tally_export(s, &cur, 0, tgo_record_cb, (void *)handle);
		if (rc != TALLY_OK)
			break;
	}
	return rc;
}

static int
tgo_write_cb(void *ctx, const char *data, size_t len)
{
	return goTallyWrite((uintptr_t)ctx, (char *)data, len);
}

int
tgo_metrics(tally_store *s, uintptr_t handle, uint64_t max_records)
{
	tally_metrics_options o = TALLY_METRICS_OPTIONS_INIT;

	o.max_records = max_records;
	return tally_metrics_write(s, &o, tgo_write_cb, (void *)handle);
}

void
tgo_nop(void)
{
}
