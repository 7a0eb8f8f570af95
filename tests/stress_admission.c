/*
 * Admission under concurrency: worker threads run the life of LLM requests
 * against limits shared in a hierarchy, under a moving fake clock, and
 * every unit is accounted for afterwards.
 *
 * The store. Six API keys; two keys share a team, two teams share the
 * first customer and the third team is the second customer's. Per key an
 * hourly budget ("key/i", rolling), a daily budget ("keyday/i", calendar
 * days at UTC-5) and a rate limit of tokens and requests per minute
 * ("rl/key/i"); per team an hourly budget (calendar hours), per customer
 * a daily budget (calendar days at UTC+1) and a concurrency limit
 * ("conc/k": requests per hour, always settled with 0, so it counts
 * requests in flight); per provider a rate limit per 10 s ("prov/p"); per
 * model a token limit that is always charged as a shadow (dark launch).
 * A request charges 4 to 8 of them in one tally_admit, in a random order
 * (acquisition order is the library's).
 *
 * The workers (2 to 4) each keep up to OPEN_MAX requests open and, at
 * random: admit a new one (HOLD with a TTL; CONSUME; PEEK; a request too
 * big for a limit; a "poison" request, below), stream part of its cost
 * (tally_settle_partial), settle it with an actual above or below the
 * estimate, release it, abandon it (never settled: it must expire), bump
 * or try_consume a single record, or read records (get, check). A mover
 * thread advances the fake clock (an atomic) in steps of up to 6 s, with a
 * jump of 35 to 95 s now and then, crossing window ends and expiry-slot
 * boundaries (hold_ttl_max 30 s: slots of 10 s; TTLs of 10 to 30 s, so
 * holds kept across a few steps expire, and every jump kills them all),
 * and sweeps every few moves. Pacing (as in stress_concurrency.c) keeps
 * workers and mover interleaved whatever the scheduler does. Workers never
 * assert: they log what they saw; the main thread joins, then checks.
 *
 * The gate. A hold that tally_admit takes and then undoes (a refusal in
 * its second pass: a compensation) is invisible to the caller; if the
 * clock passed that hold's deadline in between, the undo finds it expired
 * and the expiry listener reports units no caller can account for. In the
 * gated scenarios the mover never lets the clock reach v + ttl while a
 * worker is inside an admission whose clock reading was at least v (its
 * small steps are below the shortest TTL, its jumps wait until no
 * admission is in flight: a Dekker handshake on seq_cst atomics), so every
 * expired unit is one a worker can name, and the held accounting is
 * exact. The chaos scenario drops the gate (and jumps more often), so
 * transient holds, CONSUME's internal holds and poison holds may expire
 * mid-call; there the unnamed expiries are bounded instead.
 *
 * What is checked, and why it is sound.
 *
 *  1. Per-limit safety at every observed linearization point. Each
 *     counter report a call returns, and each view a get returns, shows
 *     one snapshot: its version, used (U), held (H) and window start. For
 *     a counter with a max that is not a shadow:
 *       (a) H <= max always. Only a hold raises H, and a hold is admitted
 *           only if U + H + e <= max, so afterwards H <= max - U <= max;
 *           every other write lowers H or leaves it.
 *       (b) after an admitted HOLD or try_consume, at its own CAS, U + H <=
 *           max with no slack (the test it passed).
 *       (c) for any installed or stored snapshot of version v in window w:
 *           U + H <= max + X(w, v), where X(w, v) is the sum of the excess
 *           units of the writes of this counter in window w with version
 *           <= v: the overdraft of a settle or partial charge (reported,
 *           and checked equal to max(0, actual - what the part still
 *           held)), the whole actual of a LATE settle (its hold had left H
 *           when it expired), and the amount of a plain bump. Induction
 *           over the counter's CASes in version order: a roll makes U = 0,
 *           so U + H = H <= max by (a); an admitted hold or try_consume
 *           leaves U + H <= max; a settle, release, partial charge or
 *           expiry changes U + H by at most its excess (a settle adds
 *           actual and removes what it held); so within a window U + H -
 *           max never exceeds the excess applied in that window so far.
 *           Every excess is applied by a write whose post-state the
 *           writing thread saw (version and window), so X is exact.
 *       (d) for an effective state (a refused call's or a peek's report,
 *           a check's view: a snapshot with due windows rolled and dead
 *           slots dropped), U + H <= max + X(w, all versions): rolling and
 *           dropping only lower U + H, and X grows with v.
 *     Also: every observation of one version of a record shows the same
 *     state; an installed version is installed by one call only; windows
 *     never move back as versions grow; an effective state agrees with the
 *     stored state of its version (same window: same used, held no more;
 *     a later window: used 0).
 *  2. Exact conservation: every unit charged (settle and partial actuals,
 *     CONSUME amounts, bumps and try_consumes) is found in exactly one
 *     window: per record and counter, the usage_before of every roll the
 *     listener heard plus the final usage equals what the threads charged,
 *     and the rolls chain (their window spans add up to the window's
 *     total move).
 *  3. Holds: every unit held leaves `held` exactly once, by a settle or
 *     partial charge of a live hold (taken) or by expiry (the expiry
 *     listener). Per counter: held by admitted calls = taken + expired, and
 *     (gated) expired = what the workers know expired (their abandoned
 *     holds and the parts their settles saw LATE, with what those parts
 *     still held). At the end (clock past every deadline and window,
 *     sweeps) held == 0 and holds == 0 everywhere, and every LATE flag
 *     agrees with the clock (LATE implies the clock reached the deadline;
 *     gated: a settle at or past the hold's slot boundary is LATE).
 *  4. Refused calls leave no trace. Every normal amount is a multiple of
 *     UNIT; each poison request (one per entry of a table of primes,
 *     never reused) holds primes q = k * UNIT + r with distinct residues r
 *     whose total is below UNIT, so any sum of poison units is nonzero
 *     modulo UNIT. An admitted poison request is released at once (0
 *     charged), a refused one must have changed nothing: so every used
 *     ever observed, every roll's usage_before and (gated) every expiry
 *     event's amount is a multiple of UNIT.
 *  5. The 0.3 stats agree with the threads' counts: admitted, holds,
 *     settles, releases, partials, late_settles, overdraft_units,
 *     refused_too_big, refused_limit + refused_race, refused_missing (0),
 *     shadow_would_deny, expired_holds and expired_units (the listener's
 *     sums), rolls; compensations are bounded by the race refusals.
 *  6. One clock reading per call: the `now` of every admission's and
 *     settle's decision lies between readings of the precise clock taken
 *     just before and after the call (with the coarse clock, which lags
 *     by up to TALLY_COARSE_MARGIN_NS, plain check, bump and try_consume
 *     take the production path).
 *
 * A run must also have exercised what it checks (LATE settles, expiries,
 * overdrafts, partial charges, refused poison, TOO_BIG, refusals, states
 * over a max). Compensations need two admissions to overlap between their
 * passes, which workers sharing one core may never do: a run that saw none
 * is run again (fully checked) with other random streams, up to 6 times.
 * (Measured on 2 cores with a load average of 5: 3 runs in 21 saw none.)
 *
 * TALLY_STRESS_SCALE (a factor) scales the operations; halved under TSan.
 * TALLY_STRESS_SEED changes the random streams.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "support.h"
#include "tally.h"

#define UNIT INT64_C(1000000)
#define HOLD_TTL_MAX (30 * NS_PER_SEC)
#define GRAIN (10 * NS_PER_SEC) /* ceil(HOLD_TTL_MAX / 3) */
#define TTL_MIN (10 * NS_PER_SEC)
#define STEP_MAX (6 * NS_PER_SEC) /* < TTL_MIN: see the gate */
#define JUMP_MIN (35 * NS_PER_SEC)
#define JUMP_SPAN (60 * NS_PER_SEC)
#define MAX_WORKERS 4
#define OPEN_MAX 4
#define NPOISON 48
#define PACE_PER 6  /* worker operations per clock move */
#define PACE_LEAD 4 /* moves the workers may run ahead */
#define SWEEP_EVERY 5

/* ------------------------------------------------------------------------ */
/* Scale, random numbers                                                    */
/* ------------------------------------------------------------------------ */

static double g_scale = 1.0;
static uint64_t g_seed = UINT64_C(0x2545f4914f6cdd1d);

static long
scaled(long n)
{
	double v = (double)n * g_scale;

	return v < 1.0 ? 1 : (long)v;
}

static uint64_t
rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * UINT64_C(2685821657736338717);
}

/* Uniform in [lo, hi]. */
static int64_t
rng_range(uint64_t *s, int64_t lo, int64_t hi)
{
	return lo + (int64_t)(rng_next(s) % (uint64_t)(hi - lo + 1));
}

static uint64_t
rng_seed(unsigned i)
{
	uint64_t s =
		g_seed ^ ((uint64_t)(i + 1) * UINT64_C(0xbf58476d1ce4e5b9));

	return s != 0 ? s : 1;
}

static int64_t
load64(const int64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

static void
store64(int64_t *p, int64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}

static void
add64(int64_t *p, int64_t v)
{
	__atomic_add_fetch(p, v, __ATOMIC_SEQ_CST);
}

/* ------------------------------------------------------------------------ */
/* The limits                                                               */
/* ------------------------------------------------------------------------ */

#define NKEYS 6
#define NTEAMS 3
#define NCUST 2
#define NPROV 2
#define NMODELS 3

enum {
	R_KEY = 0,                  /* budget, 1h rolling */
	R_KEYDAY = R_KEY + NKEYS,   /* budget, calendar day at UTC-5 */
	R_TEAM = R_KEYDAY + NKEYS,  /* budget, calendar hour */
	R_CUST = R_TEAM + NTEAMS,   /* budget, calendar day at UTC+1 */
	R_KEYRL = R_CUST + NCUST,   /* tokens and requests per minute */
	R_PROV = R_KEYRL + NKEYS,   /* tokens and requests per 10 s */
	R_MODEL = R_PROV + NPROV,   /* tokens per minute, shadow */
	R_CONC = R_MODEL + NMODELS, /* requests in flight */
	NREC = R_CONC + NCUST
};

/* Maxes per window (amounts are multiples of UNIT, requests count 1). */
#define KEY_MAX (1500 * UNIT)
#define KEYDAY_MAX (6000 * UNIT)
#define TEAM_MAX (2600 * UNIT)
#define CUST_MAX (50000 * UNIT)
#define KEYRL_TOKENS (40 * UNIT)
#define KEYRL_REQUESTS 8
#define PROV_TOKENS (40 * UNIT)
#define PROV_REQUESTS 9
#define MODEL_TOKENS (20 * UNIT)
#define CONC_MAX 5

struct rec {
	char key[24];
	uint32_t kind;
	unsigned nc;     /* counters: budget 1, rate limit 2 */
	bool has_max[2]; /* per counter */
	int64_t max[2];
	bool shadow; /* always charged as a shadow: no bound */
	int64_t initial_ws[2];
	uint64_t incarnation;
};

static struct rec g_rec[NREC];

static int
team_of(int key)
{
	return key / 2;
}

static int
cust_of_key(int key)
{
	return team_of(key) < 2 ? 0 : 1;
}

static int
prov_of(int model)
{
	return model < 2 ? 0 : 1;
}

/* Whether counter c of record i is held to its max (guarantee 1). */
static bool
hard(int i, unsigned c)
{
	return g_rec[i].has_max[c] && !g_rec[i].shadow;
}

/* Whether counter c of record i counts money or tokens (in UNITs). */
static bool
in_units(int i, unsigned c)
{
	return g_rec[i].kind == TALLY_KIND_BUDGET || c == 0;
}

#define NCLASSES 8

static const char *const class_name[NCLASSES] = {
	"key", "keyday", "team", "cust", "rl/key", "prov", "model", "conc"};

static int
class_of(int rec)
{
	static const int first[NCLASSES + 1] = {R_KEY,   R_KEYDAY, R_TEAM,
						R_CUST,  R_KEYRL,  R_PROV,
						R_MODEL, R_CONC,   NREC};
	int k = 0;

	while (rec >= first[k + 1])
		k++;
	return k;
}

static int
rec_of_key(const char *key, size_t len)
{
	for (int i = 0; i < NREC; i++)
		if (strlen(g_rec[i].key) == len &&
		    memcmp(g_rec[i].key, key, len) == 0)
			return i;
	return -1;
}

static void
rec_budget(int i, const char *key, int64_t max)
{
	snprintf(g_rec[i].key, sizeof g_rec[i].key, "%s", key);
	g_rec[i].kind = TALLY_KIND_BUDGET;
	g_rec[i].nc = 1;
	g_rec[i].has_max[0] = true;
	g_rec[i].max[0] = max;
}

static void
rec_rl(int i, const char *key, bool ht, int64_t tokens, bool hr,
       int64_t requests)
{
	snprintf(g_rec[i].key, sizeof g_rec[i].key, "%s", key);
	g_rec[i].kind = TALLY_KIND_RATELIMIT;
	g_rec[i].nc = 2;
	g_rec[i].has_max[0] = ht;
	g_rec[i].max[0] = ht ? tokens : 0;
	g_rec[i].has_max[1] = hr;
	g_rec[i].max[1] = hr ? requests : 0;
}

static void
recs_init(void)
{
	char k[24];

	memset(g_rec, 0, sizeof g_rec);
	for (int i = 0; i < NKEYS; i++) {
		snprintf(k, sizeof k, "key/%d", i);
		rec_budget(R_KEY + i, k, KEY_MAX);
		snprintf(k, sizeof k, "keyday/%d", i);
		rec_budget(R_KEYDAY + i, k, KEYDAY_MAX);
		snprintf(k, sizeof k, "rl/key/%d", i);
		rec_rl(R_KEYRL + i, k, true, KEYRL_TOKENS, true,
		       KEYRL_REQUESTS);
	}
	for (int i = 0; i < NTEAMS; i++) {
		snprintf(k, sizeof k, "team/%d", i);
		rec_budget(R_TEAM + i, k, TEAM_MAX);
	}
	for (int i = 0; i < NCUST; i++) {
		snprintf(k, sizeof k, "cust/%d", i);
		rec_budget(R_CUST + i, k, CUST_MAX);
		snprintf(k, sizeof k, "conc/%d", i);
		rec_rl(R_CONC + i, k, false, 0, true, CONC_MAX);
	}
	for (int i = 0; i < NPROV; i++) {
		snprintf(k, sizeof k, "prov/%d", i);
		rec_rl(R_PROV + i, k, true, PROV_TOKENS, true, PROV_REQUESTS);
	}
	for (int i = 0; i < NMODELS; i++) {
		snprintf(k, sizeof k, "model/%d", i);
		rec_rl(R_MODEL + i, k, true, MODEL_TOKENS, false, 0);
		g_rec[R_MODEL + i].shadow = true;
	}
}

/* ------------------------------------------------------------------------ */
/* Poison: primes k * UNIT + r, distinct residues r summing below UNIT      */
/* ------------------------------------------------------------------------ */

static int64_t g_poison[NPOISON];

static bool
is_prime(int64_t n)
{
	if (n < 2)
		return false;
	for (int64_t d = 2; d * d <= n; d++)
		if (n % d == 0)
			return false;
	return true;
}

static void
poison_init(void)
{
	int64_t sum = 0;

	for (int i = 0; i < NPOISON; i++) {
		int64_t q = (4 + i % 5) * UNIT + 400 * (i + 1) + 1;

		while (!is_prime(q))
			q += 2;
		g_poison[i] = q;
		sum += q % UNIT;
	}
	/* Any nonempty sum of residues lies in (0, UNIT). */
	if (sum >= UNIT)
		abort();
}

/* ------------------------------------------------------------------------ */
/* Failures seen by a thread: counted, the first one described              */
/* ------------------------------------------------------------------------ */

struct faults {
	long count;
	char first[256];
};

static void fault(struct faults *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
fault(struct faults *f, const char *fmt, ...)
{
	va_list ap;

	if (f->count++ != 0)
		return;
	va_start(ap, fmt);
	vsnprintf(f->first, sizeof f->first, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------------ */
/* Listeners: rolls and expiries, atomic sums per record and counter        */
/* ------------------------------------------------------------------------ */

struct acct {
	int64_t usage_before;
	int64_t span;
	int64_t rolls;
	int64_t expired;
};

struct ledger {
	struct acct a[NREC][2];
	int64_t expired_holds[NREC];
	int64_t rolls;
	int64_t expiries;
	int64_t bad;
	int64_t first_bad_line;
	int64_t first_bad_rec;
	struct fake_clock *clock;
	bool strict; /* gated: every expired amount is a multiple of UNIT */
};

static void
ledger_bad(struct ledger *l, int line, int rec)
{
	int64_t zero = 0;

	add64(&l->bad, 1);
	if (__atomic_compare_exchange_n(&l->first_bad_line, &zero, line, false,
					__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
		store64(&l->first_bad_rec, rec);
}

static void
on_roll(const tally_roll *ev, void *ctx)
{
	struct ledger *l = ctx;
	int i = rec_of_key(ev->key, ev->key_len);
	unsigned c;

	if (i < 0 || ev->kind != g_rec[i].kind) {
		ledger_bad(l, __LINE__, i);
		return;
	}
	if (g_rec[i].kind == TALLY_KIND_BUDGET) {
		if (ev->counter != TALLY_COUNTER_BUDGET) {
			ledger_bad(l, __LINE__, i);
			return;
		}
		c = 0;
	} else if (ev->counter == TALLY_COUNTER_TOKENS) {
		c = 0;
	} else if (ev->counter == TALLY_COUNTER_REQUESTS) {
		c = 1;
	} else {
		ledger_bad(l, __LINE__, i);
		return;
	}
	/* Poison units never reach a window; a window never starts in the
	 * future; windows only move forward. */
	if (ev->usage_before < 0 ||
	    (in_units(i, c) && ev->usage_before % UNIT != 0) ||
	    ev->new_window_start <= ev->old_window_start ||
	    ev->new_window_start > fake_clock_read(l->clock) ||
	    (ev->cause != TALLY_ROLL_INLINE && ev->cause != TALLY_ROLL_SWEEP) ||
	    ev->incarnation != g_rec[i].incarnation)
		ledger_bad(l, __LINE__, i);
	add64(&l->a[i][c].usage_before, ev->usage_before);
	add64(&l->a[i][c].span, ev->new_window_start - ev->old_window_start);
	add64(&l->a[i][c].rolls, 1);
	add64(&l->rolls, 1);
}

static void
on_expire(const tally_expiry *ev, void *ctx)
{
	struct ledger *l = ctx;
	int i = rec_of_key(ev->key, ev->key_len);

	if (i < 0 || ev->kind != g_rec[i].kind || ev->holds == 0 ||
	    ev->incarnation != g_rec[i].incarnation) {
		ledger_bad(l, __LINE__, i);
		return;
	}
	/* A slot expires once its boundary has passed. */
	if (ev->slot_end > fake_clock_read(l->clock) ||
	    ev->slot_end % GRAIN != 0)
		ledger_bad(l, __LINE__, i);
	for (unsigned c = 0; c < g_rec[i].nc; c++) {
		if (ev->amount[c] < 0 ||
		    (l->strict && in_units(i, c) && ev->amount[c] % UNIT != 0))
			ledger_bad(l, __LINE__, i);
		add64(&l->a[i][c].expired, ev->amount[c]);
	}
	if (g_rec[i].nc == 1 && ev->amount[1] != 0)
		ledger_bad(l, __LINE__, i);
	add64(&l->expired_holds[i], ev->holds);
	add64(&l->expiries, 1);
}

/* ------------------------------------------------------------------------ */
/* Observations and excess, logged by the workers, checked after the join   */
/* ------------------------------------------------------------------------ */

enum {
	OBS_INSTALLED = 0, /* the post-state of the observer's own CAS */
	OBS_STORED = 1,    /* a get: a snapshot as stored */
	OBS_EFFECTIVE = 2, /* a refusal, peek or check: due work applied */
	OBS_DENIED = 3     /* effective: a refused call's denying limit */
};

struct obs {
	int64_t ws;
	int64_t used;
	int64_t held;
	uint32_t version; /* checked to fit */
	uint8_t rec, c, type, worker;
};

struct excess {
	uint64_t version;
	int64_t ws;
	int64_t amount;
	uint8_t rec, c;
};

/* ------------------------------------------------------------------------ */
/* Pacing (see stress_concurrency.c) and the gate                           */
/* ------------------------------------------------------------------------ */

struct pace {
	uint64_t ops;
	uint64_t moves;
	int released;
};

#define GATE_NONE INT64_MAX
#define GATE_JOINING INT64_MIN

struct scenario {
	const char *name;
	unsigned workers;
	bool gated;
	bool coarse;      /* a lagging coarse clock for check, bump, try */
	unsigned jump_in; /* one move in this many is a jump */
	long ops;         /* per worker, before scaling */
};

struct run {
	const struct scenario *sc;
	tally_store *store;
	struct fake_clock clock;
	struct ledger *ledger;
	struct pace pace;
	int64_t gate_until[MAX_WORKERS]; /* v + ttl of an admission */
	int64_t jump;                    /* a jump waits for no admission */
	int64_t poison_next;
	long total_moves;
};

static bool
pace_released(struct run *r)
{
	return __atomic_load_n(&r->pace.released, __ATOMIC_ACQUIRE) != 0;
}

static void
pace_worker_wait(struct run *r)
{
	while (!pace_released(r) &&
	       __atomic_load_n(&r->pace.ops, __ATOMIC_ACQUIRE) >=
		       (__atomic_load_n(&r->pace.moves, __ATOMIC_ACQUIRE) +
			PACE_LEAD) *
			       PACE_PER)
		sched_yield();
}

static void
pace_worker_done(struct run *r)
{
	__atomic_add_fetch(&r->pace.ops, 1, __ATOMIC_RELEASE);
}

/*
 * Entering an admission: announce JOINING, back off while a jump is
 * pending, then publish v + ttl with v a clock reading taken after the
 * announcement. The call's own reading is >= v, so its holds' slots end at
 * or after v + ttl; the mover keeps the clock below that until we leave.
 */
static void
gate_enter(struct run *r, unsigned id, int64_t ttl)
{
	if (!r->sc->gated)
		return;
	for (;;) {
		store64(&r->gate_until[id], GATE_JOINING);
		if (load64(&r->jump) == 0)
			break;
		store64(&r->gate_until[id], GATE_NONE);
		while (load64(&r->jump) != 0)
			sched_yield();
	}
	store64(&r->gate_until[id], fake_clock_read(&r->clock) + ttl);
}

static void
gate_leave(struct run *r, unsigned id)
{
	if (r->sc->gated)
		store64(&r->gate_until[id], GATE_NONE);
}

/* ------------------------------------------------------------------------ */
/* Workers                                                                  */
/* ------------------------------------------------------------------------ */

struct open_req {
	bool live;
	tally_hold h;
	unsigned n;
	int rec[TALLY_ADMIT_MAX];
	bool dead[TALLY_ADMIT_MAX]; /* seen LATE: its units expired */
	int partials;
};

struct worker {
	struct run *run;
	unsigned id;
	uint64_t rng;
	struct open_req open[OPEN_MAX];
	/* per record and counter */
	int64_t charged[NREC][2];     /* added to used */
	int64_t held_in[NREC][2];     /* held by admitted calls */
	int64_t taken[NREC][2];       /* left held by a settle of a live hold */
	int64_t exp_known[NREC][2];   /* left held by expiry, as we know */
	int64_t refused_est[NREC][2]; /* estimates of refused calls */
	int64_t exp_parts;            /* holds (parts) we know expired */
	/* per call outcome */
	long admitted, hold_parts, consumes, limited, too_big, peeks;
	long settles, releases, partials, late_parts, abandons, shadow_wd;
	long poison_ok, poison_refused, esettled, bumps, tries, reads;
	long max_n_refused;        /* the most charges of a refused call */
	long refused_by[NCLASSES]; /* the class of the first denying limit */
	int64_t overdraft_units;
	/* logs */
	struct obs *obs;
	size_t nobs, cap_obs;
	struct excess *exc;
	size_t nexc, cap_exc;
	struct faults f;
};

static void
log_obs(struct worker *w, int rec, unsigned c, unsigned type, uint64_t v,
	int64_t ws, int64_t used, int64_t held)
{
	struct obs *o;

	if (w->nobs == w->cap_obs) {
		size_t cap = w->cap_obs != 0 ? 2 * w->cap_obs : 65536;
		struct obs *p = realloc(w->obs, cap * sizeof *p);

		if (p == NULL) {
			fault(&w->f, "out of memory for observations");
			return;
		}
		w->obs = p;
		w->cap_obs = cap;
	}
	if (v > UINT32_MAX) {
		fault(&w->f, "version %" PRIu64 " does not fit the log", v);
		return;
	}
	o = &w->obs[w->nobs++];
	o->version = (uint32_t)v;
	o->ws = ws;
	o->used = used;
	o->held = held;
	o->rec = (uint8_t)rec;
	o->c = (uint8_t)c;
	o->type = (uint8_t)type;
	o->worker = (uint8_t)w->id;
}

static void
log_excess(struct worker *w, int rec, unsigned c, uint64_t v, int64_t ws,
	   int64_t amount)
{
	struct excess *e;

	if (amount == 0)
		return;
	if (w->nexc == w->cap_exc) {
		size_t cap = w->cap_exc != 0 ? 2 * w->cap_exc : 4096;
		struct excess *p = realloc(w->exc, cap * sizeof *p);

		if (p == NULL) {
			fault(&w->f, "out of memory for excess");
			return;
		}
		w->exc = p;
		w->cap_exc = cap;
	}
	e = &w->exc[w->nexc++];
	e->version = v;
	e->ws = ws;
	e->amount = amount;
	e->rec = (uint8_t)rec;
	e->c = (uint8_t)c;
}

/* Checks the parts of a report every call fills, then logs its counters. */
static void
take_report(struct worker *w, const char *what, int rec,
	    const tally_limit_report *rep, unsigned type)
{
	const struct rec *R = &g_rec[rec];

	if (rep->kind != R->kind || rep->incarnation != R->incarnation) {
		fault(&w->f, "%s %s: report kind %u incarnation %" PRIu64, what,
		      R->key, rep->kind, rep->incarnation);
		return;
	}
	for (unsigned c = 0; c < R->nc; c++) {
		const tally_counter_report *cr = &rep->c[c];
		uint32_t id = R->kind == TALLY_KIND_BUDGET
				      ? TALLY_COUNTER_BUDGET
			      : c == 0 ? TALLY_COUNTER_TOKENS
				       : TALLY_COUNTER_REQUESTS;

		if (cr->counter != id || cr->used < 0 || cr->held < 0 ||
		    cr->window_end <= cr->window_start ||
		    (cr->flags & TALLY_DECISION_GONE) != 0 ||
		    (cr->flags & TALLY_DECISION_OVERFLOW) != 0) {
			fault(&w->f, "%s %s[%u]: malformed report", what,
			      R->key, c);
			continue;
		}
		if (R->has_max[c]) {
			int64_t room = cr->max - cr->used - cr->held;

			if (cr->max != R->max[c] ||
			    cr->remaining != (room > 0 ? room : 0) ||
			    ((cr->flags & TALLY_DECISION_REACHED) != 0) !=
				    (room <= 0) ||
			    (cr->flags & TALLY_DECISION_UNLIMITED) != 0)
				fault(&w->f,
				      "%s %s[%u]: max %" PRId64 " used %" PRId64
				      " held %" PRId64 " remaining %" PRId64
				      " flags %#x",
				      what, R->key, c, cr->max, cr->used,
				      cr->held, cr->remaining, cr->flags);
		} else if ((cr->flags & TALLY_DECISION_UNLIMITED) == 0 ||
			   cr->remaining != INT64_MAX) {
			fault(&w->f,
			      "%s %s[%u]: unlimited counter reported "
			      "with a limit",
			      what, R->key, c);
		}
		log_obs(w, rec, c, type, rep->version, cr->window_start,
			cr->used, cr->held);
	}
}

static void
log_budget_view(struct worker *w, int rec, const tally_budget_view *v,
		unsigned type)
{
	if (v->incarnation != g_rec[rec].incarnation ||
	    v->window_end <= v->window_start)
		fault(&w->f, "%s: malformed view", g_rec[rec].key);
	log_obs(w, rec, 0, type, v->version, v->window_start, v->usage,
		v->held);
}

static void
log_rl_view(struct worker *w, int rec, const tally_ratelimit_view *v,
	    unsigned type)
{
	if (v->incarnation != g_rec[rec].incarnation ||
	    v->tokens.window_end <= v->tokens.window_start ||
	    v->requests.window_end <= v->requests.window_start)
		fault(&w->f, "%s: malformed view", g_rec[rec].key);
	log_obs(w, rec, 0, type, v->version, v->tokens.window_start,
		v->tokens.usage, v->tokens_held);
	log_obs(w, rec, 1, type, v->version, v->requests.window_start,
		v->requests.usage, v->requests_held);
}

/* The amounts of a charge as counters: budget [0]; rate limit [0] tokens,
 * [1] requests. */
static void
charge_amounts(const tally_charge *ch, int64_t out[2])
{
	if (ch->kind == TALLY_KIND_BUDGET) {
		out[0] = ch->amount;
		out[1] = 0;
	} else {
		out[0] = ch->tokens;
		out[1] = ch->requests;
	}
}

static void
set_charge(tally_charge *ch, int rec, int64_t units, int64_t tokens,
	   int64_t requests)
{
	memset(ch, 0, sizeof *ch);
	ch->kind = g_rec[rec].kind;
	ch->key = g_rec[rec].key;
	ch->key_len = TALLY_KEY_STRLEN;
	if (ch->kind == TALLY_KIND_BUDGET) {
		ch->amount = units;
	} else {
		ch->tokens = tokens;
		ch->requests = requests;
	}
	if (g_rec[rec].shadow)
		ch->flags = TALLY_CHARGE_SHADOW;
}

enum {
	REQ_FULL,    /* 6 to 8 limits */
	REQ_SMALL,   /* key, team, customer, concurrency */
	REQ_CONSUME, /* key, team, customer, key and provider rate limits */
	REQ_PEEK,
	REQ_TOO_BIG, /* the provider's tokens over its max */
	REQ_POISON
};

/* Builds a request's charges; returns how many. */
static unsigned
build_request(struct worker *w, unsigned what, int64_t poison, tally_charge *ch,
	      int *rec)
{
	int key = (int)rng_range(&w->rng, 0, NKEYS - 1);
	int model = (int)rng_range(&w->rng, 0, NMODELS - 1);
	int64_t eb = rng_range(&w->rng, 1, 8) * UNIT;
	int64_t et = rng_range(&w->rng, 1, 6) * UNIT;
	uint64_t shape = rng_next(&w->rng);
	unsigned n = 0;

	if (what == REQ_POISON)
		eb = et = poison;
#define ADD(r, u, t, q)                                                        \
	do {                                                                   \
		rec[n] = (r);                                                  \
		set_charge(&ch[n], rec[n], (u), (t), (q));                     \
		n++;                                                           \
	} while (0)
	ADD(R_KEY + key, eb, 0, 0);
	ADD(R_TEAM + team_of(key), eb, 0, 0);
	ADD(R_CUST + cust_of_key(key), eb, 0, 0);
	if (what == REQ_SMALL) {
		ADD(R_CONC + cust_of_key(key), 0, 0, 1);
	} else if (what == REQ_CONSUME) {
		ADD(R_KEYRL + key, 0, et, 1);
		ADD(R_PROV + prov_of(model), 0, et, 1);
	} else {
		if (shape % 3 != 0)
			ADD(R_KEYDAY + key, eb, 0, 0);
		ADD(R_KEYRL + key, 0, et, 1);
		ADD(R_PROV + prov_of(model), 0,
		    what == REQ_TOO_BIG ? PROV_TOKENS + UNIT : et, 1);
		if ((shape >> 8) % 3 != 0)
			ADD(R_MODEL + model, 0, et, 1);
		ADD(R_CONC + cust_of_key(key), 0, 0, 1);
	}
#undef ADD
	/* A random order: the library takes them in its own. */
	for (unsigned i = n; i > 1; i--) {
		unsigned j = (unsigned)(rng_next(&w->rng) % i);
		tally_charge tc = ch[i - 1];
		int tr = rec[i - 1];

		ch[i - 1] = ch[j];
		ch[j] = tc;
		rec[i - 1] = rec[j];
		rec[j] = tr;
	}
	return n;
}

/* Checks a refused (or peeked) decision and logs its effective states. */
static void
take_refusal(struct worker *w, const char *what, const tally_charge *ch,
	     const int *rec, unsigned n, const tally_decision *d)
{
	int32_t r = d->refused;

	if (d->n != n || r < 0 || (unsigned)r >= n ||
	    (d->mask & (1u << r)) == 0 || (d->mask & ((1u << r) - 1)) != 0 ||
	    (d->mask >> n) != 0) {
		fault(&w->f, "%s: refused %d mask %#x of %u", what, r, d->mask,
		      n);
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		const tally_limit_report *rep = &d->limit[i];
		int64_t amt[2];
		bool denies = false;

		take_report(w, what, rec[i], rep,
			    (d->mask >> i) & 1u ? OBS_DENIED : OBS_EFFECTIVE);
		charge_amounts(&ch[i], amt);
		for (unsigned c = 0; c < g_rec[rec[i]].nc; c++) {
			const tally_counter_report *cr = &rep->c[c];

			if (!(cr->flags & TALLY_DECISION_DENIED))
				continue;
			/* A denial must be true of the state it shows. */
			if (!hard(rec[i], c) ||
			    amt[c] <= cr->max - cr->used - cr->held ||
			    cr->retry_after <= 0)
				fault(&w->f,
				      "%s %s[%u]: DENIED but %" PRId64
				      " fits used %" PRId64 " held %" PRId64
				      " max %" PRId64 " (retry %" PRId64 ")",
				      what, g_rec[rec[i]].key, c, amt[c],
				      cr->used, cr->held, cr->max,
				      cr->retry_after);
			if (amt[c] > cr->max &&
			    (!(cr->flags & TALLY_DECISION_TOO_BIG) ||
			     cr->retry_after != TALLY_RETRY_NEVER))
				fault(&w->f, "%s %s[%u]: too big, not said",
				      what, g_rec[rec[i]].key, c);
			denies = true;
		}
		/* The mask names exactly the limits that deny. */
		if (denies != (((d->mask >> i) & 1u) != 0))
			fault(&w->f, "%s: limit %u: DENIED %d, mask %#x", what,
			      i, denies, d->mask);
	}
}

/* Records an admitted decision: checks and logs the installed states. */
static void
take_admitted(struct worker *w, const char *what, const tally_charge *ch,
	      const int *rec, unsigned n, const tally_decision *d, bool consume)
{
	if (d->n != n || d->refused != -1 || d->mask != 0) {
		fault(&w->f, "%s: admitted with refused %d mask %#x n %u", what,
		      d->refused, d->mask, d->n);
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		const tally_limit_report *rep = &d->limit[i];
		int64_t amt[2];
		bool late = (rep->flags & TALLY_DECISION_LATE) != 0;

		take_report(w, what, rec[i], rep, OBS_INSTALLED);
		if (rep->flags & TALLY_DECISION_DENIED)
			fault(&w->f, "%s %s: admitted but DENIED", what,
			      g_rec[rec[i]].key);
		if (rep->flags & TALLY_DECISION_SHADOW_WOULD_DENY)
			w->shadow_wd++;
		charge_amounts(&ch[i], amt);
		if (late && (!consume || w->run->sc->gated))
			fault(&w->f, "%s %s: LATE at admission", what,
			      g_rec[rec[i]].key);
		for (unsigned c = 0; c < g_rec[rec[i]].nc; c++) {
			const tally_counter_report *cr = &rep->c[c];

			/* (b): the hold passed its test at this CAS. */
			if (!consume && hard(rec[i], c) &&
			    cr->used + cr->held > cr->max)
				fault(&w->f,
				      "%s %s[%u]: admitted to used %" PRId64
				      " + held %" PRId64 " > max %" PRId64,
				      what, g_rec[rec[i]].key, c, cr->used,
				      cr->held, cr->max);
			w->held_in[rec[i]][c] += amt[c];
			if (!consume)
				continue;
			w->charged[rec[i]][c] += amt[c];
			if (late) {
				/* Its internal hold expired before the
				 * settle: charged in full, as LATE. */
				w->exp_known[rec[i]][c] += amt[c];
				log_excess(w, rec[i], c, rep->version,
					   cr->window_start, amt[c]);
			} else {
				w->taken[rec[i]][c] += amt[c];
			}
		}
		if (consume && late)
			w->exp_parts++;
	}
}

static int
free_slot(struct worker *w)
{
	for (int i = 0; i < OPEN_MAX; i++)
		if (!w->open[i].live)
			return i;
	return -1;
}

static int
live_slot(struct worker *w)
{
	int cand[OPEN_MAX], k = 0;

	for (int i = 0; i < OPEN_MAX; i++)
		if (w->open[i].live)
			cand[k++] = i;
	return k == 0 ? -1 : cand[rng_next(&w->rng) % (unsigned)k];
}

static void do_release(struct worker *w, struct open_req *o, bool settle_it,
		       bool partial, const char *what);

static void
do_admit(struct worker *w, unsigned what)
{
	struct run *r = w->run;
	tally_charge ch[TALLY_ADMIT_MAX];
	int rec[TALLY_ADMIT_MAX];
	tally_decision d = TALLY_DECISION_INIT;
	tally_hold h = TALLY_HOLD_INIT;
	int64_t poison = 0, ttl = 0, before;
	unsigned n, mode;
	int slot = -1, rc;
	const char *name;

	if (what == REQ_POISON) {
		int64_t i = __atomic_fetch_add(&r->poison_next, 1,
					       __ATOMIC_SEQ_CST);

		if (i >= NPOISON)
			what = REQ_FULL;
		else
			poison = g_poison[i];
	}
	if (what == REQ_FULL || what == REQ_SMALL || what == REQ_TOO_BIG) {
		if ((slot = free_slot(w)) < 0)
			return;
	}
	n = build_request(w, what, poison, ch, rec);
	mode = what == REQ_CONSUME ? TALLY_ADMIT_CONSUME
	       : what == REQ_PEEK  ? TALLY_ADMIT_PEEK
				   : TALLY_ADMIT_HOLD;
	name = what == REQ_CONSUME  ? "admit consume"
	       : what == REQ_PEEK   ? "admit peek"
	       : what == REQ_POISON ? "admit poison"
				    : "admit hold";
	if (mode == TALLY_ADMIT_HOLD)
		ttl = rng_range(&w->rng, TTL_MIN, HOLD_TTL_MAX);
	gate_enter(r, w->id, mode == TALLY_ADMIT_CONSUME ? HOLD_TTL_MAX : ttl);
	before = fake_clock_read(&r->clock);
	rc = tally_admit(r->store, ch, n, mode, ttl,
			 mode == TALLY_ADMIT_HOLD ? &h : NULL, &d);
	/* One reading of the precise clock per call, never the coarse. */
	if ((rc == TALLY_OK || rc == TALLY_LIMITED) &&
	    (d.now < before || d.now > fake_clock_read(&r->clock)))
		fault(&w->f,
		      "%s: now %" PRId64 " is no reading of the clock "
		      "(%" PRId64 " before the call)",
		      name, d.now, before);
	if (what == REQ_POISON && rc == TALLY_OK) {
		/* Released at once, inside the gate: it never expires. */
		struct open_req o;

		memset(&o, 0, sizeof o);
		o.live = true;
		o.h = h;
		o.n = n;
		memcpy(o.rec, rec, sizeof rec);
		take_admitted(w, name, ch, rec, n, &d, false);
		w->admitted++;
		w->hold_parts += n;
		w->poison_ok++;
		do_release(w, &o, false, false, "poison release");
		gate_leave(r, w->id);
		for (unsigned i = 0; i < n; i++)
			if (o.dead[i] && r->sc->gated)
				fault(&w->f, "poison %s: LATE inside the gate",
				      g_rec[rec[i]].key);
		return;
	}
	gate_leave(r, w->id);

	if (rc == TALLY_LIMITED) {
		bool big = false;

		if (mode == TALLY_ADMIT_PEEK) {
			w->peeks++;
		} else {
			w->limited++;
			if ((long)n > w->max_n_refused)
				w->max_n_refused = n;
		}
		if (what == REQ_POISON)
			w->poison_refused++;
		if (h.state != TALLY_HOLD_NONE)
			fault(&w->f, "%s: refused, but the hold changed", name);
		take_refusal(w, name, ch, rec, n, &d);
		if (mode != TALLY_ADMIT_PEEK && d.refused >= 0 &&
		    (unsigned)d.refused < n)
			w->refused_by[class_of(rec[d.refused])]++;
		for (unsigned i = 0; i < n; i++) {
			int64_t amt[2];

			charge_amounts(&ch[i], amt);
			for (unsigned c = 0; c < g_rec[rec[i]].nc; c++)
				if (mode != TALLY_ADMIT_PEEK)
					w->refused_est[rec[i]][c] += amt[c];
			if ((d.limit[i].flags & TALLY_DECISION_TOO_BIG) != 0 &&
			    ((d.mask >> i) & 1u) != 0)
				big = true;
		}
		if (big && mode != TALLY_ADMIT_PEEK)
			w->too_big++;
		if (what == REQ_TOO_BIG && !big)
			fault(&w->f, "%s: too big, not refused as such", name);
		return;
	}
	if (rc != TALLY_OK) {
		fault(&w->f, "%s gave %d (%s)", name, rc, tally_strerror(rc));
		return;
	}
	if (what == REQ_TOO_BIG) {
		fault(&w->f, "%s: a request too big was admitted", name);
		return;
	}
	if (mode == TALLY_ADMIT_PEEK) {
		w->peeks++;
		for (unsigned i = 0; i < n; i++)
			take_report(w, name, rec[i], &d.limit[i],
				    OBS_EFFECTIVE);
		return;
	}
	w->admitted++;
	take_admitted(w, name, ch, rec, n, &d, mode == TALLY_ADMIT_CONSUME);
	if (mode == TALLY_ADMIT_CONSUME) {
		w->consumes++;
		return;
	}
	w->hold_parts += n;
	if (h.state != TALLY_HOLD_LIVE || h.n != n ||
	    h.deadline != d.now + ttl) {
		fault(&w->f, "%s: hold state %u n %u deadline %" PRId64, name,
		      h.state, h.n, h.deadline);
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		int64_t amt[2];

		charge_amounts(&ch[i], amt);
		if (h.part[i].kind != ch[i].kind ||
		    h.part[i].amount[0] != amt[0] ||
		    h.part[i].amount[1] != amt[1] ||
		    h.part[i].incarnation != g_rec[rec[i]].incarnation)
			fault(&w->f, "%s: part %u is not charge %u", name, i,
			      i);
	}
	w->open[slot].live = true;
	w->open[slot].h = h;
	w->open[slot].n = n;
	w->open[slot].partials = 0;
	memcpy(w->open[slot].rec, rec, sizeof rec);
	memset(w->open[slot].dead, 0, sizeof w->open[slot].dead);
}

/* The slot boundary of a deadline under the gate (ceil(d / G) * G). */
static int64_t
slot_end_of(int64_t deadline)
{
	int64_t q = deadline / GRAIN;

	return (deadline % GRAIN != 0 ? q + 1 : q) * GRAIN;
}

/*
 * Settles (settle_it), releases (neither) or partially charges (partial)
 * an open request, and checks what every part reports against the handle.
 */
static void
do_release(struct worker *w, struct open_req *o, bool settle_it, bool partial,
	   const char *what)
{
	struct run *r = w->run;
	tally_decision d = TALLY_DECISION_INIT;
	tally_cost cost[TALLY_ADMIT_MAX];
	int64_t act[TALLY_ADMIT_MAX][2], rem[TALLY_ADMIT_MAX][2];
	int64_t cb = 0, ct = 0, before, after;
	int rc;

	/* One cost for the request, charged at every level it holds. */
	if (partial) {
		cb = rng_range(&w->rng, 0, 5) * UNIT;
		ct = rng_range(&w->rng, 0, 4) * UNIT;
	} else if (settle_it) {
		cb = rng_range(&w->rng, 0, 14) * UNIT;
		ct = rng_range(&w->rng, 0, 10) * UNIT;
	}
	memset(cost, 0, sizeof cost);
	for (unsigned i = 0; i < o->n; i++) {
		int rec = o->rec[i];

		rem[i][0] = o->h.part[i].amount[0];
		rem[i][1] = o->h.part[i].amount[1];
		act[i][0] = act[i][1] = 0;
		if (g_rec[rec].kind == TALLY_KIND_BUDGET) {
			act[i][0] = cost[i].amount = cb;
		} else if (rec >= R_CONC) {
			/* Requests in flight: always settled with 0. */
		} else {
			act[i][0] = cost[i].tokens = ct;
			act[i][1] = cost[i].requests = settle_it ? 1 : 0;
		}
	}
	before = fake_clock_read(&r->clock);
	if (partial)
		rc = tally_settle_partial(r->store, &o->h, cost, o->n, &d);
	else if (settle_it)
		rc = tally_settle(r->store, &o->h, cost, o->n, &d);
	else
		rc = tally_release(r->store, &o->h, &d);
	after = fake_clock_read(&r->clock);
	if (rc != TALLY_OK) {
		fault(&w->f, "%s gave %d (%s)", what, rc, tally_strerror(rc));
		o->live = false;
		return;
	}
	if (d.n != o->n || d.refused != -1 || d.mask != 0 || d.now < before ||
	    d.now > after) {
		fault(&w->f,
		      "%s: decision n %u refused %d now %" PRId64
		      " read outside [%" PRId64 ", %" PRId64 "]",
		      what, d.n, d.refused, d.now, before, after);
		o->live = false;
		return;
	}
	if (partial)
		w->partials++;
	else if (settle_it)
		w->settles++;
	else
		w->releases++;
	for (unsigned i = 0; i < o->n; i++) {
		const tally_limit_report *rep = &d.limit[i];
		int rec = o->rec[i];
		bool late = (rep->flags & TALLY_DECISION_LATE) != 0;
		int64_t slot_end = slot_end_of(o->h.deadline);

		take_report(w, what, rec, rep, OBS_INSTALLED);
		if (rep->flags & TALLY_DECISION_DENIED)
			fault(&w->f, "%s %s: DENIED", what, g_rec[rec].key);
		if (late)
			w->late_parts++;
		/* A part seen LATE stays dead; LATE means the clock reached
		 * the deadline; under the gate the slot ends at slot_end,
		 * and a settle at or after it finds the hold expired. */
		if (o->dead[i] && !late)
			fault(&w->f, "%s %s: an expired part came back", what,
			      g_rec[rec].key);
		if (late && after < o->h.deadline)
			fault(&w->f,
			      "%s %s: LATE at %" PRId64 " before the "
			      "deadline %" PRId64,
			      what, g_rec[rec].key, after, o->h.deadline);
		if (r->sc->gated && !late && d.now >= slot_end)
			fault(&w->f,
			      "%s %s: not LATE at %" PRId64 ", slot ended "
			      "at %" PRId64,
			      what, g_rec[rec].key, d.now, slot_end);
		for (unsigned c = 0; c < g_rec[rec].nc; c++) {
			const tally_counter_report *cr = &rep->c[c];
			int64_t a = act[i][c], od;

			w->charged[rec][c] += a;
			if (late) {
				if (!(cr->flags & TALLY_DECISION_LATE) ||
				    cr->overdraft != 0)
					fault(&w->f, "%s %s[%u]: LATE flags",
					      what, g_rec[rec].key, c);
				if (!o->dead[i])
					w->exp_known[rec][c] += rem[i][c];
				log_excess(w, rec, c, rep->version,
					   cr->window_start, a);
				if (partial &&
				    o->h.part[i].amount[c] != rem[i][c])
					fault(&w->f,
					      "%s %s[%u]: a LATE part "
					      "changed the handle",
					      what, g_rec[rec].key, c);
				continue;
			}
			od = a > rem[i][c] ? a - rem[i][c] : 0;
			if (cr->overdraft != od ||
			    ((cr->flags & TALLY_DECISION_OVERDRAFT) != 0) !=
				    (od > 0))
				fault(&w->f,
				      "%s %s[%u]: overdraft %" PRId64
				      ", expected %" PRId64 " (actual %" PRId64
				      ", held %" PRId64 ")",
				      what, g_rec[rec].key, c, cr->overdraft,
				      od, a, rem[i][c]);
			w->overdraft_units += cr->overdraft;
			log_excess(w, rec, c, rep->version, cr->window_start,
				   od);
			if (partial) {
				int64_t moved = a < rem[i][c] ? a : rem[i][c];

				w->taken[rec][c] += moved;
				if (o->h.part[i].amount[c] != rem[i][c] - moved)
					fault(&w->f,
					      "%s %s[%u]: the handle holds "
					      "%" PRId64 ", expected %" PRId64,
					      what, g_rec[rec].key, c,
					      o->h.part[i].amount[c],
					      rem[i][c] - moved);
			} else {
				w->taken[rec][c] += rem[i][c];
			}
		}
		if (late && !o->dead[i]) {
			o->dead[i] = true;
			w->exp_parts++;
		}
	}
	if (partial) {
		o->partials++;
		if (o->h.state != TALLY_HOLD_LIVE)
			fault(&w->f, "%s: the hold is no longer live", what);
		return;
	}
	if (o->h.state != TALLY_HOLD_SETTLED)
		fault(&w->f, "%s: the hold is not settled", what);
	/* Once settled, never again. */
	if (rng_next(&w->rng) % 8 == 0) {
		tally_hold copy = o->h;

		rc = tally_release(r->store, &o->h, NULL);
		if (rc != TALLY_ESETTLED || memcmp(&copy, &o->h, sizeof copy))
			fault(&w->f, "%s: settled twice gave %d", what, rc);
		w->esettled++;
	}
	o->live = false;
}

/* Abandons an open request: whatever it still holds must expire. */
static void
do_abandon(struct worker *w, struct open_req *o)
{
	for (unsigned i = 0; i < o->n; i++) {
		if (o->dead[i])
			continue;
		for (unsigned c = 0; c < g_rec[o->rec[i]].nc; c++)
			w->exp_known[o->rec[i]][c] += o->h.part[i].amount[c];
		w->exp_parts++;
	}
	o->live = false;
	w->abandons++;
}

static void
do_read(struct worker *w, int rec)
{
	tally_store *s = w->run->store;
	int rc;

	w->reads++;
	if (g_rec[rec].kind == TALLY_KIND_BUDGET) {
		tally_budget_view v = TALLY_BUDGET_VIEW_INIT;

		if (rng_next(&w->rng) % 4 == 0) {
			rc = tally_budget_check(s, g_rec[rec].key, &v);
			if ((rc != TALLY_OK && rc != TALLY_LIMITED) ||
			    (rc == TALLY_LIMITED) !=
				    (v.usage + v.held >= g_rec[rec].max[0]))
				fault(&w->f, "check %s gave %d", g_rec[rec].key,
				      rc);
			else
				log_budget_view(w, rec, &v, OBS_EFFECTIVE);
			return;
		}
		if ((rc = tally_budget_get(s, g_rec[rec].key, &v)) != TALLY_OK)
			fault(&w->f, "get %s gave %d", g_rec[rec].key, rc);
		else
			log_budget_view(w, rec, &v, OBS_STORED);
	} else {
		tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;

		rc = tally_ratelimit_get(s, g_rec[rec].key, &v);
		if (rc != TALLY_OK)
			fault(&w->f, "get %s gave %d", g_rec[rec].key, rc);
		else
			log_rl_view(w, rec, &v, OBS_STORED);
	}
}

/* A plain bump (charged after the fact, never refused) or a try_consume
 * (a single-limit admission without a hold). */
static void
do_plain(struct worker *w)
{
	tally_store *s = w->run->store;
	uint64_t x = rng_next(&w->rng);
	int64_t amount = (int64_t)(1 + (x >> 8) % 6) * UNIT;
	int rc;

	if (x % 3 == 0) {
		int rec = R_KEY + (int)((x >> 16) % NKEYS);
		tally_budget_view v = TALLY_BUDGET_VIEW_INIT;

		rc = tally_budget_bump(s, g_rec[rec].key, amount, &v);
		if (rc != TALLY_OK) {
			fault(&w->f, "bump %s gave %d", g_rec[rec].key, rc);
			return;
		}
		w->bumps++;
		w->charged[rec][0] += amount;
		log_budget_view(w, rec, &v, OBS_INSTALLED);
		log_excess(w, rec, 0, v.version, v.window_start, amount);
	} else if (x % 3 == 1) {
		int rec = R_PROV + (int)((x >> 16) % NPROV);
		tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;

		rc = tally_ratelimit_bump(s, g_rec[rec].key, amount, 1, &v);
		if (rc != TALLY_OK) {
			fault(&w->f, "bump %s gave %d", g_rec[rec].key, rc);
			return;
		}
		w->bumps++;
		w->charged[rec][0] += amount;
		w->charged[rec][1] += 1;
		log_rl_view(w, rec, &v, OBS_INSTALLED);
		log_excess(w, rec, 0, v.version, v.tokens.window_start, amount);
		log_excess(w, rec, 1, v.version, v.requests.window_start, 1);
	} else {
		int rec = R_TEAM + (int)((x >> 16) % NTEAMS);
		tally_budget_view v = TALLY_BUDGET_VIEW_INIT;

		rc = tally_budget_try_consume(s, g_rec[rec].key, amount, &v);
		if (rc == TALLY_OK) {
			w->tries++;
			w->charged[rec][0] += amount;
			if (v.usage + v.held > g_rec[rec].max[0])
				fault(&w->f,
				      "try_consume %s: to %" PRId64
				      " + %" PRId64 " over the max",
				      g_rec[rec].key, v.usage, v.held);
			log_budget_view(w, rec, &v, OBS_INSTALLED);
		} else if (rc == TALLY_LIMITED) {
			if (v.usage + v.held + amount <= g_rec[rec].max[0])
				fault(&w->f, "try_consume %s: refused, fits",
				      g_rec[rec].key);
			log_budget_view(w, rec, &v, OBS_EFFECTIVE);
		} else {
			fault(&w->f, "try_consume %s gave %d", g_rec[rec].key,
			      rc);
		}
	}
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->run;
	long ops = scaled(r->sc->ops);

	for (long k = 0; k < ops; k++) {
		unsigned x = (unsigned)(rng_next(&w->rng) % 100);
		int slot;

		pace_worker_wait(r);
		slot = live_slot(w);
		if ((x < 45 || slot < 0) && x < 90 && free_slot(w) >= 0) {
			unsigned y = (unsigned)(rng_next(&w->rng) % 100);

			do_admit(w, y < 66   ? REQ_FULL
				    : y < 78 ? REQ_SMALL
				    : y < 90 ? REQ_CONSUME
				    : y < 94 ? REQ_PEEK
				    : y < 96 ? REQ_TOO_BIG
					     : REQ_POISON);
		} else if (x < 90 && slot >= 0) {
			struct open_req *o = &w->open[slot];
			unsigned y = (unsigned)(rng_next(&w->rng) % 100);

			if (y < 20 && o->partials < 3)
				do_release(w, o, false, true, "partial");
			else if (y < 65)
				do_release(w, o, true, false, "settle");
			else if (y < 80)
				do_release(w, o, false, false, "release");
			else if (y < 88)
				do_abandon(w, o);
			else
				do_read(w, o->rec[rng_next(&w->rng) % o->n]);
		} else if (x < 94) {
			do_plain(w);
		} else {
			do_read(w, (int)(rng_next(&w->rng) % NREC));
		}
		pace_worker_done(r);
	}
	/* What is still open is abandoned: a crashed gateway. */
	for (int i = 0; i < OPEN_MAX; i++)
		if (w->open[i].live)
			do_abandon(w, &w->open[i]);
	return w;
}

/* ------------------------------------------------------------------------ */
/* The mover: the clock and the sweeps                                      */
/* ------------------------------------------------------------------------ */

struct mover {
	struct run *run;
	uint64_t rng;
	long moves, jumps, held_back, sweeps;
	size_t rolled;
	int64_t travelled;
	struct faults f;
};

/* The earliest v + ttl of an admission in flight (INT64_MAX: none). */
static int64_t
gate_limit(struct run *r)
{
	for (;;) {
		int64_t lim = INT64_MAX;
		bool joining = false;

		for (unsigned i = 0; i < r->sc->workers; i++) {
			int64_t v = load64(&r->gate_until[i]);

			if (v == GATE_JOINING)
				joining = true;
			else if (v < lim)
				lim = v;
		}
		if (!joining)
			return lim;
		sched_yield();
	}
}

static void *
mover_main(void *arg)
{
	struct mover *m = arg;
	struct run *r = m->run;
	int64_t now = fake_clock_read(&r->clock);

	while (m->moves < r->total_moves) {
		bool jump = rng_next(&m->rng) % r->sc->jump_in == 0;
		int64_t step;

		if (__atomic_load_n(&r->pace.ops, __ATOMIC_ACQUIRE) <
		    (uint64_t)m->moves * PACE_PER) {
			sched_yield();
			continue;
		}
		if (jump) {
			step = JUMP_MIN + rng_range(&m->rng, 0, JUMP_SPAN);
			if (r->sc->gated) {
				/* No admission may be in flight across it. */
				store64(&r->jump, 1);
				while (gate_limit(r) != INT64_MAX)
					sched_yield();
			}
			now += step;
			fake_clock_set(&r->clock, now);
			if (r->sc->gated)
				store64(&r->jump, 0);
			m->jumps++;
			m->travelled += step;
		} else {
			int64_t target =
				now +
				rng_range(&m->rng, NS_PER_SEC / 5, STEP_MAX);

			if (r->sc->gated) {
				int64_t lim = gate_limit(r);

				if (target >= lim) {
					target = lim - 1;
					m->held_back++;
				}
			}
			if (target > now) {
				m->travelled += target - now;
				now = target;
				fake_clock_set(&r->clock, now);
			}
		}
		m->moves++;
		if (m->moves % SWEEP_EVERY == 0 || jump) {
			size_t rolled = 0;
			int rc = tally_sweep(r->store, NULL, NULL, &rolled);

			if (rc != TALLY_OK)
				fault(&m->f, "sweep gave %d", rc);
			m->rolled += rolled;
			m->sweeps++;
		}
		__atomic_add_fetch(&r->pace.moves, 1, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&r->pace.released, 1, __ATOMIC_RELEASE);
	return m;
}

/* ------------------------------------------------------------------------ */
/* After the join: the observations against the excess                      */
/* ------------------------------------------------------------------------ */

static int
obs_cmp(const void *pa, const void *pb)
{
	const struct obs *a = pa, *b = pb;

	if (a->rec != b->rec)
		return a->rec < b->rec ? -1 : 1;
	if (a->c != b->c)
		return a->c < b->c ? -1 : 1;
	if (a->version != b->version)
		return a->version < b->version ? -1 : 1;
	if (a->type != b->type)
		return a->type < b->type ? -1 : 1;
	return 0;
}

static int
exc_cmp(const void *pa, const void *pb)
{
	const struct excess *a = pa, *b = pb;

	if (a->rec != b->rec)
		return a->rec < b->rec ? -1 : 1;
	if (a->c != b->c)
		return a->c < b->c ? -1 : 1;
	if (a->version != b->version)
		return a->version < b->version ? -1 : 1;
	return 0;
}

struct verdict {
	long checked, bounded, over_max; /* obs; with a bound; U+H > max */
	int64_t worst_slack; /* the largest U + H - max seen (with excess) */
	long bad_bound, bad_held, bad_residue, bad_same, bad_twice, bad_back;
	long bad_effective;
	char first[4][320];
	int nfirst;
};

static void verdict_fail(struct verdict *v, long *counter, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
verdict_fail(struct verdict *v, long *counter, const char *fmt, ...)
{
	va_list ap;

	(*counter)++;
	if (v->nfirst >= 4)
		return;
	va_start(ap, fmt);
	vsnprintf(v->first[v->nfirst++], sizeof v->first[0], fmt, ap);
	va_end(ap);
}

static const char *const type_name[4] = {"installed", "stored", "effective",
					 "effective, denying"};

/* The sum of excess of one group in window ws (all versions). */
static int64_t
excess_all(const struct excess *e, size_t n, int64_t ws)
{
	int64_t sum = 0;

	/* Windows grow with versions: binary search the first of ws. */
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (e[mid].ws < ws)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i < n && e[i].ws == ws; i++)
		sum += e[i].amount;
	return sum;
}

/* One record and counter: obs[0 .. nobs-1] and exc[0 .. nexc-1] sorted. */
static void
check_group(struct verdict *v, int rec, unsigned c, const struct obs *o,
	    size_t nobs, const struct excess *e, size_t nexc)
{
	const struct rec *R = &g_rec[rec];
	const struct obs *ref = NULL; /* the stored state of this version */
	size_t ie = 0;
	int64_t cur_ws = INT64_MIN, cur_sum = 0, last_ws = INT64_MIN;

	for (size_t i = 1; i < nexc; i++)
		if (e[i].ws < e[i - 1].ws)
			verdict_fail(v, &v->bad_back,
				     "%s[%u]: excess at version %" PRIu64
				     " in an older window than version "
				     "%" PRIu64 "'s",
				     R->key, c, e[i].version, e[i - 1].version);
	for (size_t i = 0; i < nobs; i++) {
		const struct obs *x = &o[i];
		int64_t w;

		v->checked++;
		while (ie < nexc && e[ie].version <= x->version) {
			if (e[ie].ws != cur_ws) {
				cur_ws = e[ie].ws;
				cur_sum = 0;
			}
			cur_sum += e[ie].amount;
			ie++;
		}
		if (in_units(rec, c) && x->used % UNIT != 0)
			verdict_fail(v, &v->bad_residue,
				     "%s[%u] version %" PRIu32 " (%s): used "
				     "%" PRId64 " holds poison units",
				     R->key, c, x->version, type_name[x->type],
				     x->used);
		if (hard(rec, c) && x->held > R->max[c])
			verdict_fail(v, &v->bad_held,
				     "%s[%u] version %" PRIu32 " (%s): held "
				     "%" PRId64 " > max %" PRId64,
				     R->key, c, x->version, type_name[x->type],
				     x->held, R->max[c]);
		if (x->type < OBS_EFFECTIVE) {
			if (ref == NULL || ref->version != x->version) {
				ref = x;
				if (x->ws < last_ws)
					verdict_fail(v, &v->bad_back,
						     "%s[%u] version %" PRIu32
						     ": window %" PRId64
						     " before %" PRId64,
						     R->key, c, x->version,
						     x->ws, last_ws);
				last_ws = x->ws;
			} else {
				if (x->ws != ref->ws || x->used != ref->used ||
				    x->held != ref->held)
					verdict_fail(
						v, &v->bad_same,
						"%s[%u] version %" PRIu32
						": %s shows used %" PRId64
						" held %" PRId64 " ws %" PRId64
						", %s used %" PRId64
						" held %" PRId64 " ws %" PRId64,
						R->key, c, x->version,
						type_name[ref->type], ref->used,
						ref->held, ref->ws,
						type_name[x->type], x->used,
						x->held, x->ws);
				/* A call reports a record once per CAS. */
				if (x->type == OBS_INSTALLED &&
				    ref->type == OBS_INSTALLED)
					verdict_fail(v, &v->bad_twice,
						     "%s[%u] version %" PRIu32
						     " installed by two calls",
						     R->key, c, x->version);
			}
			if (x->ws == cur_ws)
				w = cur_sum;
			else if (x->ws > cur_ws)
				w = 0;
			else {
				verdict_fail(v, &v->bad_back,
					     "%s[%u] version %" PRIu32
					     ": window %" PRId64
					     " older than an excess before it",
					     R->key, c, x->version, x->ws);
				w = INT64_MAX / 2;
			}
		} else {
			/* An effective state: due work applied to the
			 * stored state of its version. */
			if (ref != NULL && ref->version == x->version &&
			    (x->ws < ref->ws ||
			     (x->ws == ref->ws &&
			      (x->used != ref->used || x->held > ref->held)) ||
			     (x->ws > ref->ws && x->used != 0)))
				verdict_fail(v, &v->bad_effective,
					     "%s[%u] version %" PRIu32
					     ": %s used %" PRId64
					     " held %" PRId64 " ws %" PRId64
					     " does not follow from the %s "
					     "used %" PRId64 " held %" PRId64
					     " ws %" PRId64,
					     R->key, c, x->version,
					     type_name[x->type], x->used,
					     x->held, x->ws,
					     type_name[ref->type], ref->used,
					     ref->held, ref->ws);
			w = excess_all(e, nexc, x->ws);
		}
		if (!hard(rec, c))
			continue;
		v->bounded++;
		if (x->used + x->held > R->max[c]) {
			int64_t slack = x->used + x->held - R->max[c];

			v->over_max++;
			if (slack > v->worst_slack)
				v->worst_slack = slack;
		}
		if (x->used + x->held > R->max[c] + w)
			verdict_fail(v, &v->bad_bound,
				     "%s[%u] version %" PRIu32 " (%s): used "
				     "%" PRId64 " + held %" PRId64
				     " > max %" PRId64 " + excess %" PRId64,
				     R->key, c, x->version, type_name[x->type],
				     x->used, x->held, R->max[c], w);
	}
}

/* Consumes the workers' logs. */
static void
check_observations(struct worker *ws, unsigned nw, struct verdict *v)
{
	size_t nobs = 0, nexc = 0, io = 0, ie = 0;
	struct obs *o;
	struct excess *e;

	for (unsigned i = 0; i < nw; i++) {
		nobs += ws[i].nobs;
		nexc += ws[i].nexc;
	}
	/* Into the first worker's logs, freeing the others' as we go. */
	o = realloc(ws[0].obs, (nobs + 1) * sizeof *o);
	e = realloc(ws[0].exc, (nexc + 1) * sizeof *e);
	assert_non_null(o);
	assert_non_null(e);
	ws[0].obs = NULL;
	ws[0].exc = NULL;
	nobs = ws[0].nobs;
	nexc = ws[0].nexc;
	for (unsigned i = 1; i < nw; i++) {
		if (ws[i].nobs != 0)
			memcpy(o + nobs, ws[i].obs, ws[i].nobs * sizeof *o);
		if (ws[i].nexc != 0)
			memcpy(e + nexc, ws[i].exc, ws[i].nexc * sizeof *e);
		nobs += ws[i].nobs;
		nexc += ws[i].nexc;
		free(ws[i].obs);
		free(ws[i].exc);
		ws[i].obs = NULL;
		ws[i].exc = NULL;
	}
	qsort(o, nobs, sizeof *o, obs_cmp);
	qsort(e, nexc, sizeof *e, exc_cmp);
	memset(v, 0, sizeof *v);
	for (int rec = 0; rec < NREC; rec++)
		for (unsigned c = 0; c < g_rec[rec].nc; c++) {
			size_t o0 = io, e0 = ie;

			while (io < nobs && o[io].rec == rec && o[io].c == c)
				io++;
			while (ie < nexc && e[ie].rec == rec && e[ie].c == c)
				ie++;
			check_group(v, rec, c, o + o0, io - o0, e + e0,
				    ie - e0);
		}
	assert_int_equal(io, nobs);
	assert_int_equal(ie, nexc);
	free(o);
	free(e);
}

/* ------------------------------------------------------------------------ */
/* A scenario                                                               */
/* ------------------------------------------------------------------------ */

static int64_t
lagging_coarse_read(void *ctx)
{
	static _Thread_local uint64_t x = 0x9e3779b97f4a7c15ull;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return fake_clock_read(ctx) -
	       (int64_t)(x % (uint64_t)TALLY_COARSE_MARGIN_NS);
}

static double
mono_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
create_records(struct run *r)
{
	for (int i = 0; i < NREC; i++) {
		struct rec *R = &g_rec[i];

		if (R->kind == TALLY_KIND_BUDGET) {
			tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;
			tally_budget_view v = TALLY_BUDGET_VIEW_INIT;

			c.max_limit = R->max[0];
			if (i < R_KEYDAY) {
				c.period = P("1h");
			} else if (i < R_TEAM) {
				c.period = P("1d");
				c.calendar_aligned = true;
				c.utc_offset_minutes = -300;
			} else if (i < R_CUST) {
				c.period = P("1h");
				c.calendar_aligned = true;
			} else {
				c.period = P("1d");
				c.calendar_aligned = true;
				c.utc_offset_minutes = 60;
			}
			assert_int_equal(
				tally_budget_upsert(r->store, R->key, &c, &v),
				TALLY_CREATED);
			R->initial_ws[0] = v.window_start;
			R->incarnation = v.incarnation;
		} else {
			tally_ratelimit_config c = TALLY_RATELIMIT_CONFIG_INIT;
			tally_ratelimit_view v = TALLY_RATELIMIT_VIEW_INIT;
			const char *period = i < R_PROV    ? "1m"
					     : i < R_MODEL ? "10s"
					     : i < R_CONC  ? "1m"
							   : "1h";

			c.tokens.has_max = R->has_max[0];
			c.tokens.max = R->max[0];
			c.tokens.period = P(period);
			c.requests.has_max = R->has_max[1];
			c.requests.max = R->max[1];
			c.requests.period = P(period);
			assert_int_equal(tally_ratelimit_upsert(r->store,
								R->key, &c, &v),
					 TALLY_CREATED);
			R->initial_ws[0] = v.tokens.window_start;
			R->initial_ws[1] = v.requests.window_start;
			R->incarnation = v.incarnation;
		}
	}
}

/* Runs and checks one scenario (every failure is fatal); returns whether
 * it exercised every path it checks. */
static bool
run_scenario(const struct scenario *sc, unsigned attempt)
{
	bool covered;
	struct run *r = calloc(1, sizeof *r);
	struct worker *ws = calloc(sc->workers, sizeof *ws);
	struct mover mv;
	struct test_alloc alloc;
	tally_store_options o;
	tally_stats st = TALLY_STATS_INIT;
	struct verdict v;
	pthread_t th[MAX_WORKERS + 1];
	struct worker sum;
	double t0 = mono_seconds(), t1;
	int64_t end;
	long failures = 0;
	size_t rolled = 0;

	assert_non_null(r);
	assert_non_null(ws);
	assert_true(sc->workers >= 1 && sc->workers <= MAX_WORKERS);
	memset(&alloc, 0, sizeof alloc);
	memset(&mv, 0, sizeof mv);
	r->sc = sc;
	r->ledger = calloc(1, sizeof *r->ledger);
	assert_non_null(r->ledger);
	r->ledger->clock = &r->clock;
	r->ledger->strict = sc->gated;
	fake_clock_set(&r->clock, T(2026, 3, 1, 21, 30, 0));
	for (unsigned i = 0; i < MAX_WORKERS; i++)
		r->gate_until[i] = GATE_NONE;
	o = test_options(&r->clock, &alloc);
	o.on_roll = on_roll;
	o.on_roll_ctx = r->ledger;
	o.on_expire = on_expire;
	o.on_expire_ctx = r->ledger;
	o.hold_ttl_max = HOLD_TTL_MAX;
	if (sc->coarse) {
		o.coarse_clock = lagging_coarse_read;
		o.coarse_clock_ctx = &r->clock;
	}
	assert_int_equal(tally_store_create(&r->store, &o), TALLY_OK);
	create_records(r);
	r->total_moves = (long)sc->workers * scaled(sc->ops) / PACE_PER;

	mv.run = r;
	mv.rng = rng_seed(100 + 16 * attempt);
	for (unsigned i = 0; i < sc->workers; i++) {
		ws[i].run = r;
		ws[i].id = i;
		ws[i].rng = rng_seed(i + 16 * attempt);
		assert_int_equal(
			pthread_create(&th[i], NULL, worker_main, &ws[i]), 0);
	}
	assert_int_equal(
		pthread_create(&th[sc->workers], NULL, mover_main, &mv), 0);
	for (unsigned i = 0; i <= sc->workers; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	t1 = mono_seconds();

	/* Every fault a thread saw. */
	for (unsigned i = 0; i < sc->workers; i++)
		if (ws[i].f.count != 0) {
			print_error("%s: worker %u: %ld failures; first: %s\n",
				    sc->name, i, ws[i].f.count, ws[i].f.first);
			failures += ws[i].f.count;
		}
	if (mv.f.count != 0) {
		print_error("%s: mover: %ld failures; first: %s\n", sc->name,
			    mv.f.count, mv.f.first);
		failures += mv.f.count;
	}

	/* The end: past every deadline and window, sweep twice. */
	fake_clock_advance(&r->clock, 2 * NS_PER_DAY);
	assert_int_equal(tally_sweep(r->store, NULL, NULL, &rolled), TALLY_OK);
	assert_true(rolled > 0);
	assert_int_equal(tally_sweep(r->store, NULL, NULL, &rolled), TALLY_OK);
	assert_int_equal(rolled, 0);
	end = fake_clock_read(&r->clock);

	/* Sum the workers. */
	memset(&sum, 0, sizeof sum);
	for (unsigned i = 0; i < sc->workers; i++) {
		const struct worker *w = &ws[i];

		for (int k = 0; k < NREC; k++)
			for (unsigned c = 0; c < 2; c++) {
				sum.charged[k][c] += w->charged[k][c];
				sum.held_in[k][c] += w->held_in[k][c];
				sum.taken[k][c] += w->taken[k][c];
				sum.exp_known[k][c] += w->exp_known[k][c];
				sum.refused_est[k][c] += w->refused_est[k][c];
			}
		sum.exp_parts += w->exp_parts;
		sum.admitted += w->admitted;
		sum.hold_parts += w->hold_parts;
		sum.consumes += w->consumes;
		sum.limited += w->limited;
		sum.too_big += w->too_big;
		sum.peeks += w->peeks;
		sum.settles += w->settles;
		sum.releases += w->releases;
		sum.partials += w->partials;
		sum.late_parts += w->late_parts;
		sum.abandons += w->abandons;
		sum.shadow_wd += w->shadow_wd;
		sum.poison_ok += w->poison_ok;
		sum.poison_refused += w->poison_refused;
		sum.esettled += w->esettled;
		sum.bumps += w->bumps;
		sum.tries += w->tries;
		sum.reads += w->reads;
		sum.overdraft_units += w->overdraft_units;
		for (int k = 0; k < NCLASSES; k++)
			sum.refused_by[k] += w->refused_by[k];
		if (w->max_n_refused > sum.max_n_refused)
			sum.max_n_refused = w->max_n_refused;
	}

	/* 2, 3: conservation, holds, per record and counter. */
	for (int k = 0; k < NREC; k++) {
		const struct rec *R = &g_rec[k];
		int64_t used[2], held[2], fws[2];
		uint64_t holds;

		if (R->kind == TALLY_KIND_BUDGET) {
			tally_budget_view bv = TALLY_BUDGET_VIEW_INIT;

			assert_int_equal(
				tally_budget_get(r->store, R->key, &bv),
				TALLY_OK);
			used[0] = bv.usage;
			held[0] = bv.held;
			fws[0] = bv.window_start;
			holds = bv.holds;
		} else {
			tally_ratelimit_view rv = TALLY_RATELIMIT_VIEW_INIT;

			assert_int_equal(
				tally_ratelimit_get(r->store, R->key, &rv),
				TALLY_OK);
			used[0] = rv.tokens.usage;
			used[1] = rv.requests.usage;
			held[0] = rv.tokens_held;
			held[1] = rv.requests_held;
			fws[0] = rv.tokens.window_start;
			fws[1] = rv.requests.window_start;
			holds = rv.holds;
		}
		if (holds != 0) {
			print_error("%s: %s: %" PRIu64 " holds at the end\n",
				    sc->name, R->key, holds);
			failures++;
		}
		for (unsigned c = 0; c < R->nc; c++) {
			const struct acct *a = &r->ledger->a[k][c];
			int64_t found = a->usage_before + used[c];
			int64_t out = sum.taken[k][c] + a->expired;

			if (found != sum.charged[k][c]) {
				print_error("%s: %s[%u]: charged %" PRId64
					    " but windows hold %" PRId64
					    " (rolled %" PRId64 " in %" PRId64
					    " rolls + final %" PRId64 ")\n",
					    sc->name, R->key, c,
					    sum.charged[k][c], found,
					    a->usage_before, a->rolls, used[c]);
				failures++;
			}
			if (a->span != fws[c] - R->initial_ws[c]) {
				print_error("%s: %s[%u]: rolls span %" PRId64
					    ", the window moved %" PRId64 "\n",
					    sc->name, R->key, c, a->span,
					    fws[c] - R->initial_ws[c]);
				failures++;
			}
			if (held[c] != 0) {
				print_error("%s: %s[%u]: held %" PRId64
					    " at the end\n",
					    sc->name, R->key, c, held[c]);
				failures++;
			}
			/* Our own books: what was held left as taken or
			 * as what we know expired. */
			if (sum.held_in[k][c] !=
			    sum.taken[k][c] + sum.exp_known[k][c]) {
				print_error("%s: %s[%u]: held %" PRId64
					    " != taken %" PRId64
					    " + known expired %" PRId64 "\n",
					    sc->name, R->key, c,
					    sum.held_in[k][c], sum.taken[k][c],
					    sum.exp_known[k][c]);
				failures++;
			}
			if (sc->gated
				    ? a->expired != sum.exp_known[k][c]
				    : a->expired < sum.exp_known[k][c] ||
					      a->expired - sum.exp_known[k][c] >
						      sum.refused_est[k][c]) {
				print_error("%s: %s[%u]: expired %" PRId64
					    " (listener), known %" PRId64
					    ", refused estimates %" PRId64
					    "; held %" PRId64 ", out %" PRId64
					    "\n",
					    sc->name, R->key, c, a->expired,
					    sum.exp_known[k][c],
					    sum.refused_est[k][c],
					    sum.held_in[k][c], out);
				failures++;
			}
		}
	}
	if (r->ledger->bad != 0) {
		print_error("%s: listeners: %" PRId64 " bad events, first at "
			    "line %" PRId64 " (%s)\n",
			    sc->name, r->ledger->bad, r->ledger->first_bad_line,
			    r->ledger->first_bad_rec >= 0
				    ? g_rec[r->ledger->first_bad_rec].key
				    : "?");
		failures++;
	}

	/* 5: the stats, exact now that every thread is joined. */
	assert_int_equal(tally_store_stats(r->store, &st), TALLY_OK);
	{
		int64_t exp_holds = 0, exp_units = 0;
		long other = sum.limited - sum.too_big;
		bool ok = true;

		for (int k = 0; k < NREC; k++) {
			exp_holds += r->ledger->expired_holds[k];
			for (unsigned c = 0; c < g_rec[k].nc; c++)
				exp_units += r->ledger->a[k][c].expired;
		}
		ok &= st.admitted == (uint64_t)sum.admitted;
		ok &= st.holds == (uint64_t)sum.hold_parts;
		ok &= st.settles == (uint64_t)sum.settles;
		ok &= st.releases == (uint64_t)sum.releases;
		ok &= st.partials == (uint64_t)sum.partials;
		ok &= st.late_settles == (uint64_t)sum.late_parts;
		ok &= st.overdraft_units == (uint64_t)sum.overdraft_units;
		ok &= st.refused_too_big == (uint64_t)sum.too_big;
		ok &= st.refused_limit + st.refused_race == (uint64_t)other;
		ok &= st.refused_missing == 0;
		ok &= st.shadow_would_deny == (uint64_t)sum.shadow_wd;
		ok &= st.expired_holds == (uint64_t)exp_holds;
		ok &= st.expired_units == (uint64_t)exp_units;
		ok &= st.rolls == (uint64_t)r->ledger->rolls;
		ok &= st.compensations <=
		      st.refused_race * (uint64_t)(sum.max_n_refused - 1);
		ok &= st.compensations == 0 || st.refused_race != 0;
		if (sc->gated)
			ok &= exp_holds == sum.exp_parts;
		else
			ok &= exp_holds >= sum.exp_parts &&
			      (uint64_t)(exp_holds - sum.exp_parts) <=
				      st.compensations;
		if (!ok) {
			print_error(
				"%s: stats disagree: admitted %" PRIu64
				"/%ld holds %" PRIu64 "/%ld settles %" PRIu64
				"/%ld releases %" PRIu64
				"/%ld partials %" PRIu64 "/%ld late %" PRIu64
				"/%ld overdraft %" PRIu64 "/%" PRId64
				" too_big %" PRIu64 "/%ld limit+race %" PRIu64
				"+%" PRIu64 "/%ld missing %" PRIu64
				" shadow %" PRIu64 "/%ld expired %" PRIu64
				"/%" PRId64 " (known %" PRId64
				") units %" PRIu64 "/%" PRId64 " rolls %" PRIu64
				"/%" PRId64 " compensations %" PRIu64 "\n",
				sc->name, st.admitted, sum.admitted, st.holds,
				sum.hold_parts, st.settles, sum.settles,
				st.releases, sum.releases, st.partials,
				sum.partials, st.late_settles, sum.late_parts,
				st.overdraft_units, sum.overdraft_units,
				st.refused_too_big, sum.too_big,
				st.refused_limit, st.refused_race, other,
				st.refused_missing, st.shadow_would_deny,
				sum.shadow_wd, st.expired_holds, exp_holds,
				sum.exp_parts, st.expired_units, exp_units,
				st.rolls, r->ledger->rolls, st.compensations);
			failures++;
		}
	}

	/* 1, 4: every observation against the excess before it. */
	check_observations(ws, sc->workers, &v);
	{
		long bad = v.bad_bound + v.bad_held + v.bad_residue +
			   v.bad_same + v.bad_twice + v.bad_back +
			   v.bad_effective;

		if (bad != 0) {
			print_error("%s: observations: %ld over the bound, "
				    "%ld held over max, %ld poison in used, "
				    "%ld versions seen differently, %ld "
				    "installed twice, %ld windows back, %ld "
				    "effective states off their version\n",
				    sc->name, v.bad_bound, v.bad_held,
				    v.bad_residue, v.bad_same, v.bad_twice,
				    v.bad_back, v.bad_effective);
			for (int i = 0; i < v.nfirst; i++)
				print_error("  %s\n", v.first[i]);
			failures += bad;
		}
	}

	print_message(
		"%s: %u workers, %.2f s; %.1f h of fake time (%ld moves, %ld "
		"jumps, %ld held back by the gate, %ld sweeps)\n"
		"  admitted %ld (%ld consume, %ld hold parts), refused %ld "
		"(%" PRIu64 " race, %" PRIu64 " too big, %" PRIu64
		" compensations), peeks %ld; poison %ld refused, %ld "
		"admitted and released\n"
		"  settles %ld, releases %ld, partials %ld, abandoned %ld, "
		"late parts %ld, overdraft units %" PRId64 ", shadow would "
		"deny %ld; bumps %ld, try_consume %ld, reads %ld\n"
		"  expired %" PRIu64 " holds (%" PRId64 " events); rolls "
		"%" PRIu64 "; observations %ld (%ld over max by at most "
		"%" PRId64 ", all within their excess)\n",
		sc->name, sc->workers, t1 - t0,
		(double)(end - 2 * NS_PER_DAY - T(2026, 3, 1, 21, 30, 0)) /
			(double)NS_PER_HOUR,
		mv.moves, mv.jumps, mv.held_back, mv.sweeps, sum.admitted,
		sum.consumes, sum.hold_parts, sum.limited, st.refused_race,
		st.refused_too_big, st.compensations, sum.peeks,
		sum.poison_refused, sum.poison_ok, sum.settles, sum.releases,
		sum.partials, sum.abandons, sum.late_parts, sum.overdraft_units,
		sum.shadow_wd, sum.bumps, sum.tries, sum.reads,
		st.expired_holds, r->ledger->expiries, st.rolls, v.checked,
		v.over_max, v.worst_slack);

	{
		char line[256];
		int len = 0;

		for (int k = 0; k < NCLASSES; k++)
			len += snprintf(line + len, sizeof line - (size_t)len,
					" %s %ld", class_name[k],
					sum.refused_by[k]);
		print_message("  refused by:%s\n", line);
	}

	/* The run must have exercised what it checks; one that did not (a
	 * random stream with, say, no refused poison call among its 48) is
	 * run again with other streams (run_until_covered). */
	covered = sum.late_parts != 0 && st.expired_holds != 0 &&
		  sum.overdraft_units != 0 && sum.partials != 0 &&
		  sum.poison_refused != 0 && sum.too_big != 0 &&
		  st.refused_limit != 0 && v.over_max != 0 &&
		  st.refused_race != 0 && st.compensations != 0;
	if (!covered)
		print_message("%s: the run did not exercise every path\n",
			      sc->name);

	tally_store_destroy(r->store);
	if (alloc.live_blocks != 0) {
		print_error("%s: leak: %ld blocks\n", sc->name,
			    alloc.live_blocks);
		failures++;
	}
	for (unsigned i = 0; i < sc->workers; i++) {
		free(ws[i].obs);
		free(ws[i].exc);
	}
	free(ws);
	free(r->ledger);
	free(r);
	assert_int_equal(failures, 0);
	return covered;
}

/*
 * Some paths need luck: a compensation needs two admissions to overlap
 * between their passes, which workers sharing one core (a loaded machine,
 * another test beside this one) may never do, and a few of the rarer
 * outcomes come from a handful of calls. Every run is checked in full; a
 * run that did not exercise every path is run again with other random
 * streams, a few times.
 */
#define ATTEMPTS 6

static void
run_until_covered(const struct scenario *sc)
{
	for (unsigned attempt = 0; attempt < ATTEMPTS; attempt++) {
		if (run_scenario(sc, attempt))
			return;
		print_message("%s: again, with other random streams\n",
			      sc->name);
	}
	fail_msg("%s: %d runs and not one that exercised every path", sc->name,
		 ATTEMPTS);
}

static const struct scenario sc_gated = {
	"gated", 4, true, false, 40, 45000,
};

static const struct scenario sc_coarse = {
	"coarse clock", 2, true, true, 40, 60000,
};

static const struct scenario sc_chaos = {
	"chaos", 3, false, false, 10, 40000,
};

static void
test_admission_gated(void **state)
{
	(void)state;
	run_until_covered(&sc_gated);
}

static void
test_admission_coarse_clock(void **state)
{
	(void)state;
	run_until_covered(&sc_coarse);
}

static void
test_admission_chaos(void **state)
{
	(void)state;
	run_until_covered(&sc_chaos);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_admission_gated),
		cmocka_unit_test(test_admission_coarse_clock),
		cmocka_unit_test(test_admission_chaos),
	};
	const char *env = getenv("TALLY_STRESS_SCALE");
	const char *seed = getenv("TALLY_STRESS_SEED");

#if defined(TALLY_TSAN)
	g_scale = 0.5;
#endif
	if (env != NULL && *env != '\0') {
		double d = strtod(env, NULL);

		if (d > 0.0)
			g_scale = d;
	}
	if (seed != NULL && *seed != '\0')
		g_seed = strtoull(seed, NULL, 0);
	if (g_seed == 0)
		g_seed = 1;
	recs_init();
	poison_init();
	print_message("stress_admission: scale %g, seed %#" PRIx64 "\n",
		      g_scale, g_seed);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
