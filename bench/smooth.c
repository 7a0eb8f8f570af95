/*
 * tally-smooth: what a greedy client gets through a smooth limit (issue 10,
 * "Smooth limits"), for tally and for what nginx's limit_req and
 * redis-cell's CL.THROTTLE would admit by their published arithmetic. The
 * peers are not run: their formulas are reproduced below from their source,
 * step by step, with the integer truncations and units they use.
 *
 * Workload. One key, one client that asks as often as it can: at every
 * moment a limiter would admit, a request of one unit arrives, and it asks
 * again at once until it is refused. The run is event-driven on a fake
 * clock that starts at 0 (a millisecond boundary): after a refusal the
 * clock jumps to the next moment a request could pass (tally: the
 * retry_after it returned; the peers: computed from their state), so no
 * nanosecond is stepped through. A run of length E counts the admissions
 * at times 0 .. E inclusive. Rates (issue 10): 1/s, 3,000/s, 10,000/s,
 * 10^6/s, 10^9/s and 7 per 3 days, each with burst C = 1 (the case that
 * breaks the peers) and C = rate (tally's default; skipped for 1/s, where
 * it is C = 1 again). Runs (table `cases`): 30 days for 1/s and 7 per 3
 * days, 1,000 s for 3,000/s (long enough that a TAT losing 1 ns per 3
 * units, a dropped carry of T's fraction, shows), 10 s for 10,000/s and
 * 10^6/s, 10 ms for 10^9/s (10^7 units).
 *
 * Columns.
 *   ideal  the exact GCRA count for a client on a whole-ns clock
 *          (src/gcra.h, "Exact means"): C + floor(E / T) for C >= 2,
 *          T = P / R exact; for C = 1 a request passes only once
 *          TAT <= now, a whole ns, so one per ceil(T) ns and
 *          1 + floor(E / ceil(T)) (the two differ only where T is not a
 *          whole ns: 3,000/s and 7 per 3 days).
 *   tally  tally__gcra_admit (src/gcra.c, compiled into this program)
 *          called in the loop. At one instant the client first asks for
 *          one unit; when that passes and d.remaining > 0 it takes the
 *          remaining units in one call (the same transition as that many
 *          one-unit calls in a row at that instant, gcra.h's rule; it must
 *          pass), then asks for one more, which must be refused; it then
 *          jumps by the returned retry_after, and the request there must
 *          pass. --per-unit makes every call one unit (slow for the 10^9
 *          burst).
 *   nginx  ngx_http_limit_req_lookup, `limit_req zone=z nodelay` with
 *          `burst=C-1` (omitted for C = 1) and `rate=Rr/s` (see
 *          ngx_step below).
 *   redis-cell  CL.THROTTLE key C-1 R P (see cell_throttle below),
 *          including Redis's millisecond key expiry.
 *
 * Check. The exit status is 1 when tally's count differs from the ideal in
 * any row, or when a call broke its own report (a batch of d.remaining
 * refused, a request at now + retry_after refused, a refusal without a
 * retry_after), or when a peer simulation disagrees with its own
 * one-request-at-a-time replay (run where that is cheap). Each mismatch is
 * printed on stderr.
 *
 * Usage: tally-smooth [--markdown] [--per-unit]
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gcra.h"

#define NS_PER_MS INT64_C(1000000)
#define NS_PER_S INT64_C(1000000000)
#define NS_PER_DAY (INT64_C(86400) * NS_PER_S)

/* A count a simulator could not produce (the peer cannot express the
 * rate). */
#define COUNT_NA INT64_C(-1)

struct rate_case {
	const char *name; /* as the table prints it */
	const char *unit; /* the per-period unit of the rate columns */
	int64_t rate;     /* R units ... */
	int64_t period_s; /* ... per P seconds */
	int64_t run;      /* E, ns */
	const char *run_name;
};

static const struct rate_case cases[] = {
	{"1/s", "/s", 1, 1, 30 * NS_PER_DAY, "30 d"},
	{"3,000/s", "/s", 3000, 1, 1000 * NS_PER_S, "1,000 s"},
	{"10,000/s", "/s", 10000, 1, 10 * NS_PER_S, "10 s"},
	{"10^6/s", "/s", 1000000, 1, 10 * NS_PER_S, "10 s"},
	{"10^9/s", "/s", 1000000000, 1, 10 * NS_PER_MS, "10 ms"},
	{"7 per 3 days", "/3 d", 7, 3 * 86400, 30 * NS_PER_DAY, "30 d"},
};

struct row {
	const struct rate_case *rc;
	int64_t burst; /* C */
	int64_t ideal, tally, nginx, cell;
	int64_t tally_calls;
};

static bool failed;

static void
fail(const struct row *rw, const char *what, int64_t a, int64_t b)
{
	fprintf(stderr,
		"MISMATCH %s, C = %" PRId64 ": %s (%" PRId64 " vs %" PRId64
		")\n",
		rw->rc->name, rw->burst, what, a, b);
	failed = true;
}

/* ------------------------------------------------------------------------
 * ideal: the exact count (module comment)
 * ------------------------------------------------------------------------ */

static int64_t
ideal_count(const struct rate_case *rc, int64_t burst)
{
	tally__i128 p = (tally__i128)rc->period_s * NS_PER_S;
	int64_t ceil_t;

	if (burst >= 2) /* C + floor(E * R / P) */
		return burst + (int64_t)((tally__i128)rc->run * rc->rate / p);
	ceil_t = (int64_t)((p + rc->rate - 1) / rc->rate);
	return 1 + rc->run / ceil_t;
}

/* ------------------------------------------------------------------------
 * tally: tally__gcra_admit in the loop
 * ------------------------------------------------------------------------ */

static int64_t
run_tally(struct row *rw, bool per_unit)
{
	const struct rate_case *rc = rw->rc;
	struct tally__gcra_rate rt;
	struct tally__gcra st;
	struct tally__gcra_decision d;
	int64_t t = 0, n = 0, calls = 0, k;
	bool jumped = false;
	int rc_;

	if (tally__gcra_rate_init(&rt, rc->rate, rc->period_s * NS_PER_S,
				  rw->burst) != TALLY_OK) {
		fail(rw, "tally__gcra_rate_init refused the limit", 0, 0);
		return COUNT_NA;
	}
	tally__gcra_init(&st, 0);
	while (t <= rc->run) {
		rc_ = tally__gcra_admit(&rt, &st, &st, t, 1, false, &d, NULL);
		calls++;
		if (rc_ == TALLY_OK) {
			n++;
			jumped = false;
			if (!per_unit && d.remaining > 0) {
				k = d.remaining;
				rc_ = tally__gcra_admit(&rt, &st, &st, t, k,
							false, &d, NULL);
				calls++;
				if (rc_ != TALLY_OK) {
					fail(rw,
					     "a batch of d.remaining units "
					     "was refused",
					     k, rc_);
					break;
				}
				n += k;
			}
			continue;
		}
		if (rc_ != TALLY_LIMITED || d.retry_after < 1 ||
		    d.retry_after == TALLY_RETRY_NEVER) {
			fail(rw, "a refusal without a usable retry_after", rc_,
			     d.retry_after);
			break;
		}
		if (jumped) {
			fail(rw, "refused again at now + retry_after", t, 0);
			break;
		}
		t += d.retry_after;
		jumped = true;
	}
	rw->tally_calls = calls;
	return n;
}

/* ------------------------------------------------------------------------
 * nginx: ngx_http_limit_req_module
 *
 * Source read: nginx/nginx, src/http/modules/ngx_http_limit_req_module.c at
 * 3f6f782 (2026; the lookup arithmetic is unchanged since "Limit req:
 * improved handling of negative times", 7b9bc5d, 2018, which replaced
 * ngx_abs(ms) by the clamps below; for a clock that never goes backwards
 * the two are the same), and src/core/ngx_times.c.
 *
 *   Units. ngx_http_limit_req_zone: `ctx->rate = rate * 1000 / scale`
 *   (scale 1 for "r/s", 60 for "r/m"; nothing else parses, so 7 per 3 days
 *   cannot be configured: n/a). ngx_http_limit_req: `limit->burst =
 *   burst * 1000` (burst= must be >= 1 when given; omitted it is 0), and
 *   `nodelay` sets limit->delay so large that nothing is delayed. excess
 *   and burst count thousandths of a request ("1 corresponds to 0.001
 *   r/s").
 *   Clock. `now = ngx_current_msec`, whole ms: ngx_monotonic_time returns
 *   sec * 1000 + tv_nsec / 1000000 (truncated). We read it fresh for every
 *   request, the most favourable case (nginx caches it per event loop
 *   turn): ms = floor(t / 1 ms) of the fake clock.
 *   ngx_http_limit_req_lookup, one limit (account = 1):
 *     new key:  lr->excess = 0, lr->last = now, NGX_OK: the first request
 *               passes and is not counted in the excess;
 *     existing: ms = (ngx_msec_int_t) (now - lr->last), clamped (ms <
 *               -60000: 1; ms < 0: 0);
 *               excess = lr->excess - ctx->rate * ms / 1000 + 1000, in
 *               ngx_uint_t arithmetic stored into ngx_int_t;
 *               excess < 0: excess = 0 (leaked credit is not kept);
 *               (ngx_uint_t) excess > limit->burst: NGX_BUSY (nothing
 *               written);
 *               else lr->excess = excess, and lr->last = now if ms != 0.
 *   So burst = b lets b + 1 requests through at once, which is tally's
 *   C = b + 1; burst omitted is C = 1. With C = 1 the stored excess never
 *   exceeds 0: a request passes only when a whole ms has leaked 1,000
 *   thousandths: one per ceil(1,000 / R) ms, at least 1 ms apart.
 *   Not modelled: ngx_http_limit_req_expire (it frees nodes idle for 60 s
 *   with nothing left to leak, which a fresh node then equals) and
 *   ngx_http_limit_req_account (without nodelay it only delays, after
 *   the lookup has decided).
 * ------------------------------------------------------------------------ */

struct ngx_conf {
	uint64_t rate;  /* ctx->rate: r/s * 1000 */
	uint64_t burst; /* limit->burst: burst * 1000 */
};

struct ngx_node {
	bool exists;
	uint64_t excess; /* lr->excess (ngx_uint_t) */
	uint64_t last;   /* lr->last (ngx_msec_t) */
};

/* One request at ngx_current_msec = now: ngx_http_limit_req_lookup's
 * arithmetic (above). Returns true for NGX_OK, false for NGX_BUSY. */
static bool
ngx_lookup(const struct ngx_conf *cf, struct ngx_node *lr, uint64_t now)
{
	int64_t ms, excess;

	if (!lr->exists) {
		lr->exists = true;
		lr->excess = 0;
		lr->last = now;
		return true;
	}
	ms = (int64_t)(now - lr->last);
	if (ms < -60000)
		ms = 1;
	else if (ms < 0)
		ms = 0;
	excess = (int64_t)(lr->excess - cf->rate * (uint64_t)ms / 1000 + 1000);
	if (excess < 0)
		excess = 0;
	if ((uint64_t)excess > cf->burst)
		return false;
	lr->excess = (uint64_t)excess;
	if (ms)
		lr->last = now;
	return true;
}

/* The first ms after lr->last whose first request passes: the smallest
 * d >= 1 with excess - floor(rate * d / 1000) + 1000 <= burst, that is
 * rate * d >= 1000 * need for need = excess + 1000 - burst. */
static uint64_t
ngx_next_ms(const struct ngx_conf *cf, const struct ngx_node *lr)
{
	int64_t need = (int64_t)(lr->excess + 1000) - (int64_t)cf->burst;
	uint64_t d = 1;

	if (need > 0)
		d = ((uint64_t)need * 1000 + cf->rate - 1) / cf->rate;
	return lr->last + (d < 1 ? 1 : d);
}

/* The greedy client against nginx. literal: one request per lookup call
 * and every ms visited (the replay the fast path is checked against). */
static int64_t
run_nginx(const struct row *rw, bool literal)
{
	const struct rate_case *rc = rw->rc;
	struct ngx_conf cf;
	struct ngx_node lr = {false, 0, 0};
	uint64_t m = 0, end = (uint64_t)(rc->run / NS_PER_MS), k;
	int64_t n = 0;

	if (rc->period_s != 1 && rc->period_s != 60)
		return COUNT_NA; /* only "r/s" and "r/m" parse */
	cf.rate = (uint64_t)rc->rate * 1000 / (uint64_t)rc->period_s;
	cf.burst = (uint64_t)(rw->burst - 1) * 1000;
	while (m <= end) {
		if (literal) {
			while (ngx_lookup(&cf, &lr, m))
				n++;
			m++;
			continue;
		}
		if (!ngx_lookup(&cf, &lr, m)) {
			fail(rw, "nginx: the computed next ms was refused",
			     (int64_t)m, 0);
			return n;
		}
		n++;
		/* The rest of this ms: ms = 0, so each further request
		 * adds 1000 and passes while excess + 1000 <= burst. */
		if (cf.burst >= lr.excess + 1000) {
			k = (cf.burst - lr.excess) / 1000;
			n += (int64_t)k;
			lr.excess += 1000 * k;
		}
		m = ngx_next_ms(&cf, &lr);
	}
	return n;
}

/* ------------------------------------------------------------------------
 * redis-cell: CL.THROTTLE
 *
 * Source read: brandur/redis-cell at 4d42338 (2026-02, v0.5.0), files
 * src/lib.rs (ThrottleCommand::run), src/cell/mod.rs (Rate::per_period,
 * RateLimiter::new, RateLimiter::rate_limit), src/cell/store.rs
 * (InternalRedisStore) and src/redis/mod.rs (RedisKeyWritable::set_expire);
 * and Redis's module.c RM_SetExpire and db.c keyIsExpired/expireIfNeeded.
 *
 *   CL.THROTTLE key max_burst count period: period is whole seconds
 *   (lib.rs: Duration::seconds(period)), so 7 per 3 days is
 *   `CL.THROTTLE k 6 7 259200` and C = max_burst + 1.
 *   Rate::per_period: emission_interval = ((ns as f64) / (n as f64)) as i64
 *   ns, truncated: 3,000/s is 333,333 ns (not 333,333 + 1/3), 7 per 3
 *   days 37,028,571,428,571 ns.
 *   RateLimiter::new: delay_variation_tolerance = emission_interval *
 *   (max_burst + 1) ns; limit = max_burst + 1.
 *   rate_limit (the store read gives the stored TAT, u64 ns, and now =
 *   OffsetDateTime::now_utc(), ns): tat = stored or, if the key is absent,
 *   now; increment = emission_interval * quantity; new_tat = now + increment
 *   if now > tat, else tat + increment; allow_at = new_tat - dvt; diff =
 *   now - allow_at; diff < 0: limited, nothing written. Else the new TAT is
 *   written (set_if_not_exists_with_ttl or compare_and_swap_with_ttl) with
 *   ttl = new_tat - now, and InternalRedisStore sets the expiry with
 *   RedisKeyWritable::set_expire: raw::set_expire(key,
 *   expire.whole_milliseconds()): the TTL truncated to whole ms.
 *   Redis: RM_SetExpire makes the key's expire time when = mstime() + ttl
 *   ms; a key is expired once mstime() > when (keyIsExpired), and is then
 *   read as absent. So a TTL under 1 ms (any C = 1 limit faster than
 *   1,000/s) becomes 0 and the key, with the TAT in it, vanishes at the
 *   next ms tick: the next request finds no key and passes as if the
 *   bucket were full. We take Redis's ms clock to be the fake clock
 *   truncated to ms (Redis reads gettimeofday, redis-cell clock_gettime
 *   REALTIME: the same clock).
 *   Not modelled, as the greedy client ignores them: lib.rs rounds the
 *   reply's retry_after and reset_after to whole seconds, and up only when
 *   subsec_milliseconds() > 0 (a 0.4 ms retry_after reads 0 s, 1.4 ms reads
 *   1 s); `remaining` in f64 microseconds.
 *   Not redis-cell: brandur/redis-cell #80 ("zero rates are not supported"
 *   above 1,000/s) quotes Dragonfly's CL.THROTTLE error text, whose
 *   emission interval is whole ms (period * 1000 / count); redis-cell's is
 *   ns. #11 (8,000/s, "cannot parse integer from empty string", 2018) is
 *   the sub-ms TTL above: the key expired between the read and the
 *   compare-and-swap; store.rs now treats that as a lost CAS.
 * ------------------------------------------------------------------------ */

struct cell_conf {
	int64_t ei;  /* emission_interval, ns */
	int64_t dvt; /* delay_variation_tolerance, ns */
};

struct cell_key {
	bool exists;
	int64_t tat;     /* the stored value, ns */
	int64_t when_ms; /* Redis's expire time, absolute ms */
};

/* Redis: expired once the ms clock is past `when`. */
static void
cell_expire(struct cell_key *k, int64_t now)
{
	if (k->exists && now / NS_PER_MS > k->when_ms)
		k->exists = false;
}

/* The requests of one unit that would pass in a row at now. */
static int64_t
cell_room(const struct cell_conf *cf, struct cell_key *k, int64_t now)
{
	int64_t tat, base;

	cell_expire(k, now);
	tat = k->exists ? k->tat : now;
	base = now > tat ? now : tat;
	if (now + cf->dvt - base < cf->ei)
		return 0;
	return (now + cf->dvt - base) / cf->ei;
}

/* RateLimiter::rate_limit for `quantity` units at now (above). Returns true
 * when allowed; when limited, *next is the first time a request could pass:
 * allow_at, or the ms the key expires, whichever comes first. */
static bool
cell_throttle(const struct cell_conf *cf, struct cell_key *k, int64_t now,
	      int64_t quantity, int64_t *next)
{
	int64_t tat, increment, new_tat, allow_at, diff, ttl, expiry;

	cell_expire(k, now);
	tat = k->exists ? k->tat : now;
	increment = cf->ei * quantity;
	new_tat = now > tat ? now + increment : tat + increment;
	allow_at = new_tat - cf->dvt;
	diff = now - allow_at;
	if (diff < 0) {
		expiry = k->exists ? (k->when_ms + 1) * NS_PER_MS : INT64_MAX;
		*next = allow_at < expiry ? allow_at : expiry;
		return false;
	}
	ttl = new_tat - now;
	k->exists = true;
	k->tat = new_tat;
	k->when_ms = now / NS_PER_MS + ttl / NS_PER_MS; /* whole_milliseconds */
	return true;
}

/* The greedy client against redis-cell. literal: one unit per call (the
 * replay the batched path is checked against). */
static int64_t
run_cell(const struct row *rw, bool literal)
{
	const struct rate_case *rc = rw->rc;
	double ns = (double)(rc->period_s * NS_PER_S);
	struct cell_conf cf;
	struct cell_key k = {false, 0, 0};
	int64_t t = 0, n = 0, next = 0, q;

	cf.ei = (int64_t)(ns / (double)rc->rate); /* Rate::per_period */
	cf.dvt = cf.ei * rw->burst;               /* ei * (max_burst + 1) */
	while (t <= rc->run) {
		q = literal ? 1 : cell_room(&cf, &k, t);
		if (q < 1)
			q = 1;
		if (cell_throttle(&cf, &k, t, q, &next)) {
			n += q;
			continue;
		}
		if (next <= t) {
			fail(rw, "redis-cell: no progress", t, next);
			break;
		}
		t = next;
	}
	return n;
}

/* ------------------------------------------------------------------------
 * Envoy (envoyproxy/envoy #16407, 3,000/s passing about 2,500/s) is not a
 * column: its source/common/common/token_bucket_impl.cc
 * (TokenBucketImpl::consume) refills in double seconds, std::min(elapsed *
 * fill_rate_ + tokens_, max_tokens_), with no integer refill to reproduce;
 * the integer formula the issue proposes (fill_rate_ * us_past / 1000000)
 * names variables that file does not have. Without the code the reporter
 * ran, any column would be a guess.
 * ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------
 * Output
 * ------------------------------------------------------------------------ */

/* v with thousands separators. */
static void
fmt_int(char *buf, size_t size, int64_t v)
{
	char tmp[32];
	size_t len, i, o = 0;

	snprintf(tmp, sizeof tmp, "%" PRId64, v < 0 ? -v : v);
	len = strlen(tmp);
	if (v < 0 && o + 1 < size)
		buf[o++] = '-';
	for (i = 0; i < len && o + 1 < size; i++) {
		if (i > 0 && (len - i) % 3 == 0 && o + 1 < size)
			buf[o++] = ',';
		if (o + 1 < size)
			buf[o++] = tmp[i];
	}
	buf[o] = '\0';
}

/* The rate after the first burst: (count - C) / run, per period of the
 * rate (per s, or per 3 days). */
static void
fmt_rate(char *buf, size_t size, const struct rate_case *rc, int64_t burst,
	 int64_t count)
{
	double per = (double)(count - burst) * (double)rc->period_s *
		     (double)NS_PER_S / (double)rc->run;
	char whole[32];

	if (per >= 100000.0) {
		fmt_int(whole, sizeof whole, (int64_t)(per + 0.5));
		snprintf(buf, size, "%s%s", whole, rc->unit);
	} else if (per >= 1000.0) {
		fmt_int(whole, sizeof whole, (int64_t)per);
		snprintf(buf, size, "%s.%03d%s", whole,
			 (int)((per - (double)(int64_t)per) * 1000.0),
			 rc->unit);
	} else {
		snprintf(buf, size, "%.5g%s", per, rc->unit);
	}
}

static void
fmt_cell(char *buf, size_t size, const struct rate_case *rc, int64_t burst,
	 int64_t count)
{
	char c[32], r[48];

	if (count == COUNT_NA) {
		snprintf(buf, size, "n/a");
		return;
	}
	fmt_int(c, sizeof c, count);
	fmt_rate(r, sizeof r, rc, burst, count);
	snprintf(buf, size, "%s (%s)", c, r);
}

static void
print_table(const struct row *rows, size_t nrows, bool markdown)
{
	char id[96], ta[96], ng[96], ce[96], c[32];
	size_t i;

	if (markdown) {
		printf("| rate | burst C | run | ideal | tally | nginx "
		       "| redis-cell |\n");
		printf("|---|--:|--:|--:|--:|--:|--:|\n");
	} else {
		printf("%-12s %13s %7s  %-29s %-29s %-29s %s\n", "rate",
		       "burst C", "run", "ideal", "tally", "nginx",
		       "redis-cell");
	}
	for (i = 0; i < nrows; i++) {
		const struct row *rw = &rows[i];

		fmt_int(c, sizeof c, rw->burst);
		fmt_cell(id, sizeof id, rw->rc, rw->burst, rw->ideal);
		fmt_cell(ta, sizeof ta, rw->rc, rw->burst, rw->tally);
		fmt_cell(ng, sizeof ng, rw->rc, rw->burst, rw->nginx);
		fmt_cell(ce, sizeof ce, rw->rc, rw->burst, rw->cell);
		if (markdown)
			printf("| %s | %s | %s | %s | %s | %s | %s |\n",
			       rw->rc->name, c, rw->rc->run_name, id, ta, ng,
			       ce);
		else
			printf("%-12s %13s %7s  %-29s %-29s %-29s %s\n",
			       rw->rc->name, c, rw->rc->run_name, id, ta, ng,
			       ce);
	}
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The peers' one-request-at-a-time replays cost one step per request (and,
 * for nginx, per ms): run them where that stays small. */
#define REPLAY_MAX INT64_C(20000000)

int
main(int argc, char **argv)
{
	struct row rows[2 * sizeof cases / sizeof cases[0]];
	size_t nrows = 0, i;
	bool markdown = false, per_unit = false;
	int64_t replays = 0, calls = 0;
	double t0 = now_s();
	int a;

	for (a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--markdown") == 0) {
			markdown = true;
		} else if (strcmp(argv[a], "--per-unit") == 0) {
			per_unit = true;
		} else {
			fprintf(stderr, "usage: %s [--markdown] [--per-unit]\n",
				argv[0]);
			return strcmp(argv[a], "--help") == 0 ? 0 : 2;
		}
	}
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int64_t bursts[2] = {1, cases[i].rate};
		int b;

		for (b = 0; b < (cases[i].rate == 1 ? 1 : 2); b++) {
			struct row *rw = &rows[nrows++];

			memset(rw, 0, sizeof *rw);
			rw->rc = &cases[i];
			rw->burst = bursts[b];
			rw->ideal = ideal_count(rw->rc, rw->burst);
			rw->tally = run_tally(rw, per_unit);
			rw->nginx = run_nginx(rw, false);
			rw->cell = run_cell(rw, false);
			calls += rw->tally_calls;
			if (rw->tally != rw->ideal)
				fail(rw, "tally's count differs from the ideal",
				     rw->tally, rw->ideal);
			/* Replays: nginx visits every ms; redis-cell takes
			 * one call per admitted unit. */
			if (rw->nginx != COUNT_NA &&
			    rw->rc->run / NS_PER_MS + rw->nginx <= REPLAY_MAX) {
				int64_t v = run_nginx(rw, true);

				replays++;
				if (v != rw->nginx)
					fail(rw, "nginx: replay differs",
					     rw->nginx, v);
			}
			if (rw->cell <= REPLAY_MAX) {
				int64_t v = run_cell(rw, true);

				replays++;
				if (v != rw->cell)
					fail(rw, "redis-cell: replay differs",
					     rw->cell, v);
			}
		}
	}
	print_table(rows, nrows, markdown);
	if (!markdown) {
		printf("\nA client that asks as often as it can, on a fake "
		       "clock from 0 (a ms boundary);\n"
		       "counts of admissions at times 0 .. run, and (count - "
		       "C) / run: the rate after the first burst.\n"
		       "ideal: C + floor(run / T), or 1 + floor(run / ceil(T)) "
		       "for C = 1 (whole-ns clock, gcra.h).\n"
		       "nginx: limit_req rate=Rr/s, burst=C-1 (none for C = "
		       "1), nodelay; n/a: only r/s and r/m parse.\n"
		       "redis-cell: CL.THROTTLE key C-1 R P (P in seconds), "
		       "with Redis's ms key expiry.\n");
		printf("%" PRId64 " tally__gcra_admit calls%s, %" PRId64
		       " peer replays, %.2f s\n",
		       calls, per_unit ? " (one unit each)" : "", replays,
		       now_s() - t0);
		printf("check: %s\n",
		       failed ? "FAILED (see stderr)"
			      : "tally admitted the ideal count in every row");
	}
	return failed ? 1 : 0;
}
