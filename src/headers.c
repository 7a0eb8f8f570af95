/*
 * Header fields from a decision: tally_headers_format(), a pure formatter.
 *
 * What a line says
 *   Each tally_header_policy names one counter of one limit report of the
 *   decision. A policy is skipped (it appears in no field) when its counter
 *   is UNLIMITED, when its limit was removed (GONE) or when the call did not
 *   reach its limit (kind 0): there is nothing true to say about it. A
 *   policy is "refusing" when its counter is flagged DENIED. A refusing
 *   counter shows 0 remaining in every family (r=0, X-RateLimit-Remaining:
 *   0, x-ratelimit-remaining-*: 0): the number the client needs is "not
 *   now", not the units left, which a request of this size did not fit in.
 *
 * The IETF fields (draft-ietf-httpapi-ratelimit-headers, 23 May 2026)
 *   Both are sf-lists with one member per policy, the refusing policies
 *   first, each group in the caller's order, so the two lines pair member
 *   by member. "qu" must name a registered unit and the draft's default
 *   unit is "requests": a token or money policy without a unit would read
 *   as a request count. Those get the vendor parameter tally-qu ("tokens"
 *   or "other") instead, which the draft lets clients ignore.
 *
 * Never early
 *   Every time is rounded up at nanosecond resolution, so a client that
 *   waits what it is told never comes back before the limit would let it
 *   through: 45.000000001 s is 46 s, 1 ns is 1 s (or 1ms for the OpenAI
 *   durations). A refusing counter never shows 0: its times are at least
 *   1 s (1ms), even for a report whose window is already due. The
 *   effective window t of a refusing counter is the smaller of the time
 *   to its window's end and its own retry-after, so t never lies beyond
 *   Retry-After, which is the largest retry-after of the refusing
 *   counters. A counter that can never pass (TOO_BIG, or retry-after
 *   TALLY_RETRY_NEVER) suppresses Retry-After: no delay would be true.
 *
 * Windows
 *   A counter has a window when its window_end is not INT64_MAX (the
 *   never-resetting budget) and its policy's unit is not
 *   concurrent-requests (held requests do not leave at a window's end, so
 *   a window would promise capacity that does not come back). Without a
 *   window there is no w, no X-RateLimit-Reset, no x-ratelimit-reset-*,
 *   and t only on a refusing counter whose retry-after is finite.
 *   A sliding counter (TALLY_DECISION_SLIDING) has the window of its
 *   lattice (w is its length), but when it refuses, its reset (t,
 *   X-RateLimit-Reset, x-ratelimit-reset-*) is its retry-after: the
 *   estimate falls gradually, so the window's end is not when a request
 *   passes again (it may pass before, or only in the next window).
 *
 * Arithmetic
 *   Differences of two int64 instants are taken in uint64 (to - from when
 *   to > from, else 0): the true difference of any two int64 values fits
 *   there, so nothing wraps for any input. Rounded-up seconds of a uint64
 *   of nanoseconds are at most 18446744074, and structured-field integers
 *   (at most 15 digits) bound q and r only: larger values are clamped to
 *   999999999999999, which can only understate the quota. The legacy and
 *   OpenAI fields are plain decimal and print the full int64.
 *
 * Output
 *   One pass writes what fits and counts everything, like snprintf: the
 *   text is truncated at size - 1 bytes and always NUL-terminated when
 *   size > 0. Everything is validated before the first byte is written;
 *   on an error buf holds "" (when size > 0). A text longer than INT_MAX,
 *   which the int result cannot carry, is TALLY_EOVERFLOW.
 */
#include <limits.h>

#include "base.h"

#define HDR_NS_PER_MS UINT64_C(1000000)
#define HDR_NS_PER_SEC UINT64_C(1000000000)
/* The largest Integer of RFC 9651 (Structured Field Values). */
#define HDR_SF_INT_MAX UINT64_C(999999999999999)

#define HDR_FIELDS                                                             \
	(TALLY_HEADERS_IETF | TALLY_HEADERS_LEGACY |                           \
	 TALLY_HEADERS_LEGACY_EPOCH | TALLY_HEADERS_OPENAI |                   \
	 TALLY_HEADERS_RETRY_AFTER)

/* Policy selection: any unit (legacy fields) or one unit (OpenAI). */
#define HDR_ANY_UNIT UINT32_MAX

struct hdr_out {
	char *buf;
	size_t size;
	size_t len; /* the full length so far (saturating) */
};

/* One policy resolved against the decision. */
struct hdr_item {
	const tally_header_policy *p;
	const tally_counter_report *c;
	bool refusing;    /* counter flagged DENIED */
	bool never;       /* refusing and can never pass */
	bool windowed;    /* see Windows above */
	bool has_t;       /* t is printed */
	uint64_t max;     /* at least 0 */
	uint64_t left;    /* remaining as shown: 0 when refusing */
	uint64_t reset;   /* windowed: ns to window_end (refusing: >= 1) */
	int64_t reset_at; /* windowed: the instant of reset (epoch field) */
	uint64_t w;       /* windowed: window length, s (0: no w) */
	uint64_t t;       /* has_t: effective window, s */
	uint64_t retry_s; /* refusing and not never: retry-after, s */
};

static void
hdr_put(struct hdr_out *o, const char *s, size_t n)
{
	if (o->len < o->size) {
		size_t room = o->size - 1 - o->len;

		memcpy(o->buf + o->len, s, n < room ? n : room);
	}
	o->len = n > SIZE_MAX - o->len ? SIZE_MAX : o->len + n;
}

static void
hdr_puts(struct hdr_out *o, const char *s)
{
	hdr_put(o, s, strlen(s));
}

static void
hdr_putu(struct hdr_out *o, uint64_t v)
{
	char digits[20];
	size_t i = tally__u64_dec(v, digits);

	hdr_put(o, digits + i, sizeof(digits) - i);
}

/* An sf-string: the name between quotes, `"` and `\` escaped. */
static void
hdr_put_sf_string(struct hdr_out *o, const char *s)
{
	hdr_put(o, "\"", 1);
	for (;;) {
		size_t run = strcspn(s, "\"\\");

		hdr_put(o, s, run);
		s += run;
		if (*s == '\0')
			break;
		hdr_put(o, "\\", 1);
		hdr_put(o, s, 1);
		s++;
	}
	hdr_put(o, "\"", 1);
}

/* Go's time.Duration style, rounded up: "12ms" below one second, then
 * whole seconds as "45s", "6m0s", "1h2m3s"; 0 is "0s". */
static void
hdr_put_duration(struct hdr_out *o, uint64_t ns)
{
	uint64_t ms, s;

	if (ns == 0) {
		hdr_puts(o, "0s");
		return;
	}
	ms = (ns - 1) / HDR_NS_PER_MS + 1;
	if (ms < 1000) {
		hdr_putu(o, ms);
		hdr_puts(o, "ms");
		return;
	}
	s = (ns - 1) / HDR_NS_PER_SEC + 1;
	if (s >= 3600) {
		hdr_putu(o, s / 3600);
		hdr_puts(o, "h");
	}
	if (s >= 60) {
		hdr_putu(o, s / 60 % 60);
		hdr_puts(o, "m");
	}
	hdr_putu(o, s % 60);
	hdr_puts(o, "s");
}

/* Nanoseconds from `from` to `to`, 0 when to is not later. */
static uint64_t
hdr_ns_until(int64_t from, int64_t to)
{
	return to > from ? (uint64_t)to - (uint64_t)from : 0;
}

static uint64_t
hdr_ceil_s(uint64_t ns)
{
	return ns == 0 ? 0 : (ns - 1) / HDR_NS_PER_SEC + 1;
}

static uint64_t
hdr_nonneg(int64_t v)
{
	return v > 0 ? (uint64_t)v : 0;
}

/* sf-string content: printable ASCII (escapes are added on output). */
static bool
hdr_name_ok(const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch < 0x20 || ch > 0x7e)
			return false;
	}
	return true;
}

/*
 * Resolve policy p: 1 and *it filled, 0 to skip it, -1 for TALLY_EINVAL.
 * The same checks run in the validation pass and in every later pass, so a
 * later pass never meets an error.
 */
static int
hdr_resolve(const tally_decision *d, const tally_header_policy *p,
	    struct hdr_item *it)
{
	const tally_limit_report *l;
	const tally_counter_report *c;
	size_t idx;
	int64_t ra;

	if (p->name == NULL || !hdr_name_ok(p->name))
		return -1;
	if (p->unit > TALLY_UNIT_TOKENS || p->limit >= d->n)
		return -1;
	l = &d->limit[p->limit];
	switch (l->kind) {
	case 0: /* not reached by the call: nothing to report */
		if (p->counter != TALLY_COUNTER_BUDGET &&
		    p->counter != TALLY_COUNTER_TOKENS &&
		    p->counter != TALLY_COUNTER_REQUESTS)
			return -1;
		return 0;
	case TALLY_KIND_BUDGET:
		if (p->counter != TALLY_COUNTER_BUDGET)
			return -1;
		idx = 0;
		break;
	case TALLY_KIND_RATELIMIT:
		if (p->counter == TALLY_COUNTER_TOKENS)
			idx = 0;
		else if (p->counter == TALLY_COUNTER_REQUESTS)
			idx = 1;
		else
			return -1;
		break;
	default:
		return -1;
	}
	c = &l->c[idx];
	if (((l->flags | c->flags) & TALLY_DECISION_GONE) != 0 ||
	    (c->flags & TALLY_DECISION_UNLIMITED) != 0)
		return 0;

	it->p = p;
	it->c = c;
	it->refusing = (c->flags & TALLY_DECISION_DENIED) != 0;
	it->max = hdr_nonneg(c->max);
	it->left = it->refusing ? 0 : hdr_nonneg(c->remaining);
	it->windowed = c->window_end != INT64_MAX &&
		       p->unit != TALLY_UNIT_CONCURRENT_REQUESTS;
	it->reset = 0;
	it->reset_at = 0;
	it->w = 0;
	it->has_t = false;
	it->t = 0;
	if (it->windowed) {
		it->reset = hdr_ns_until(d->now, c->window_end);
		it->reset_at = c->window_end;
		/* A refused sliding counter does not pass at its window's
		 * end but when its estimate has fallen far enough: its
		 * reset is its retry-after. */
		if (it->refusing && (c->flags & TALLY_DECISION_SLIDING) != 0 &&
		    c->retry_after != TALLY_RETRY_NEVER) {
			it->reset = hdr_nonneg(c->retry_after);
			if (__builtin_add_overflow(d->now, c->retry_after,
						   &it->reset_at))
				it->reset_at = INT64_MAX;
		}
		if (it->refusing && it->reset == 0)
			it->reset = 1;
		it->w = hdr_ceil_s(
			hdr_ns_until(c->window_start, c->window_end));
		it->has_t = true;
		it->t = hdr_ceil_s(it->reset);
	}
	ra = c->retry_after;
	it->never = it->refusing && ((c->flags & TALLY_DECISION_TOO_BIG) != 0 ||
				     ra == TALLY_RETRY_NEVER);
	it->retry_s = 0;
	if (it->refusing && !it->never) {
		it->retry_s = hdr_ceil_s(hdr_nonneg(ra));
		if (it->retry_s == 0)
			it->retry_s = 1;
		if (!it->has_t || it->retry_s < it->t) {
			it->has_t = true;
			it->t = it->retry_s;
		}
	}
	return 1;
}

/* RateLimit-Policy (policy_field) or RateLimit: one list member per
 * policy, the refusing ones first, each group in the caller's order. */
static void
hdr_put_ietf(struct hdr_out *o, const tally_decision *d,
	     const tally_header_policy *policies, size_t npolicies,
	     bool policy_field)
{
	bool first = true;
	int pass;
	size_t i;

	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < npolicies; i++) {
			struct hdr_item it;

			if (hdr_resolve(d, &policies[i], &it) != 1 ||
			    it.refusing != (pass == 0))
				continue;
			if (first)
				hdr_puts(o, policy_field ? "RateLimit-Policy: "
							 : "RateLimit: ");
			else
				hdr_puts(o, ", ");
			first = false;
			hdr_put_sf_string(o, it.p->name);
			if (policy_field) {
				hdr_puts(o, ";q=");
				hdr_putu(o, it.max < HDR_SF_INT_MAX
						    ? it.max
						    : HDR_SF_INT_MAX);
				if (it.p->unit == TALLY_UNIT_REQUESTS)
					hdr_puts(o, ";qu=\"requests\"");
				else if (it.p->unit ==
					 TALLY_UNIT_CONCURRENT_REQUESTS)
					hdr_puts(o,
						 ";qu=\"concurrent-requests\"");
				if (it.w != 0) {
					hdr_puts(o, ";w=");
					hdr_putu(o, it.w);
				}
				if (it.p->unit == TALLY_UNIT_TOKENS)
					hdr_puts(o, ";tally-qu=\"tokens\"");
				else if (it.p->unit == TALLY_UNIT_OTHER)
					hdr_puts(o, ";tally-qu=\"other\"");
			} else {
				hdr_puts(o, ";r=");
				hdr_putu(o, it.left < HDR_SF_INT_MAX
						    ? it.left
						    : HDR_SF_INT_MAX);
				if (it.has_t) {
					hdr_puts(o, ";t=");
					hdr_putu(o, it.t);
				}
			}
		}
	}
	if (!first)
		hdr_puts(o, "\r\n");
}

/* The policy one-policy fields describe: the first refusing one, else the
 * one with the smallest remaining (the first of equals). */
static bool
hdr_pick(const tally_decision *d, const tally_header_policy *policies,
	 size_t npolicies, uint32_t unit, struct hdr_item *best)
{
	bool found = false;
	size_t i;

	for (i = 0; i < npolicies; i++) {
		struct hdr_item it;

		if (hdr_resolve(d, &policies[i], &it) != 1 ||
		    (unit != HDR_ANY_UNIT && it.p->unit != unit))
			continue;
		if (it.refusing) {
			*best = it;
			return true;
		}
		if (!found || it.left < best->left) {
			*best = it;
			found = true;
		}
	}
	return found;
}

static void
hdr_put_line_u(struct hdr_out *o, const char *name, uint64_t v)
{
	hdr_puts(o, name);
	hdr_putu(o, v);
	hdr_puts(o, "\r\n");
}

TALLY_API int
tally_headers_format(const tally_decision *decision,
		     const tally_header_policy *policies, size_t npolicies,
		     uint32_t fields, char *buf, size_t size)
{
	const uint32_t legacy =
		TALLY_HEADERS_LEGACY | TALLY_HEADERS_LEGACY_EPOCH;
	struct hdr_out o = {buf, size, 0};
	struct hdr_item it;
	bool refusing = false, never = false;
	uint64_t retry_s = 0;
	size_t i;

	if (buf == NULL && size > 0)
		return TALLY_EINVAL;
	if (size > 0)
		buf[0] = '\0';
	if (decision == NULL || decision->size < sizeof(tally_decision) ||
	    decision->n > TALLY_ADMIT_MAX ||
	    (policies == NULL && npolicies > 0) || (fields & ~HDR_FIELDS) != 0)
		return TALLY_EINVAL;
	for (i = 0; i < npolicies; i++) {
		int rc = hdr_resolve(decision, &policies[i], &it);

		if (rc < 0)
			return TALLY_EINVAL;
		if (rc > 0 && it.refusing) {
			refusing = true;
			never = never || it.never;
			if (it.retry_s > retry_s)
				retry_s = it.retry_s;
		}
	}

	if ((fields & TALLY_HEADERS_IETF) != 0) {
		hdr_put_ietf(&o, decision, policies, npolicies, true);
		hdr_put_ietf(&o, decision, policies, npolicies, false);
	}
	if ((fields & TALLY_HEADERS_RETRY_AFTER) != 0 &&
	    decision->refused >= 0 && refusing && !never)
		hdr_put_line_u(&o, "Retry-After: ", retry_s);
	if ((fields & legacy) != 0 &&
	    hdr_pick(decision, policies, npolicies, HDR_ANY_UNIT, &it)) {
		hdr_put_line_u(&o, "X-RateLimit-Limit: ", it.max);
		hdr_put_line_u(&o, "X-RateLimit-Remaining: ", it.left);
		if (it.windowed && (fields & TALLY_HEADERS_LEGACY_EPOCH) != 0)
			hdr_put_line_u(&o, "X-RateLimit-Reset: ",
				       hdr_ceil_s(hdr_nonneg(it.reset_at)));
		else if (it.windowed)
			hdr_put_line_u(&o, "X-RateLimit-Reset: ",
				       hdr_ceil_s(it.reset));
	}
	if ((fields & TALLY_HEADERS_OPENAI) != 0) {
		struct hdr_item rq, tk;
		bool has_rq = hdr_pick(decision, policies, npolicies,
				       TALLY_UNIT_REQUESTS, &rq);
		bool has_tk = hdr_pick(decision, policies, npolicies,
				       TALLY_UNIT_TOKENS, &tk);

		if (has_rq)
			hdr_put_line_u(&o,
				       "x-ratelimit-limit-requests: ", rq.max);
		if (has_tk)
			hdr_put_line_u(&o,
				       "x-ratelimit-limit-tokens: ", tk.max);
		if (has_rq)
			hdr_put_line_u(&o, "x-ratelimit-remaining-requests: ",
				       rq.left);
		if (has_tk)
			hdr_put_line_u(
				&o, "x-ratelimit-remaining-tokens: ", tk.left);
		if (has_rq && rq.windowed) {
			hdr_puts(&o, "x-ratelimit-reset-requests: ");
			hdr_put_duration(&o, rq.reset);
			hdr_puts(&o, "\r\n");
		}
		if (has_tk && tk.windowed) {
			hdr_puts(&o, "x-ratelimit-reset-tokens: ");
			hdr_put_duration(&o, tk.reset);
			hdr_puts(&o, "\r\n");
		}
	}

	if (size > 0)
		buf[o.len < size ? o.len : size - 1] = '\0';
	if (o.len > (size_t)INT_MAX) {
		if (size > 0)
			buf[0] = '\0';
		return TALLY_EOVERFLOW;
	}
	return (int)o.len;
}
