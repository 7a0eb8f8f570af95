/*
 * Metrics: tally_metrics_write(), the store's stats and its records'
 * gauges in the Prometheus text exposition format 0.0.4 (tally.h,
 * "Metrics"). No I/O: the text goes to the caller's sink.
 *
 * One snapshot per record, every family together
 *   The format wants all samples of a family after its # TYPE line, and a
 *   record has a sample in several families (used, held, max, window end).
 *   Walking the store once per family would show a record's used from one
 *   snapshot and its held from a later one. So the records are walked
 *   once, with tally_export (one snapshot each), and what the families
 *   need (the key and four numbers per counter) is copied into arrays from
 *   the store's allocator. The copies are made in the export callback,
 *   which runs outside every epoch section, so the allocator is never
 *   called inside one. Everything that can fail (arguments, the thread's
 *   registration, the copies) happens before the first byte goes to the
 *   sink: an error never leaves a partial text behind.
 *
 * Output
 *   Text is gathered in a 4 KiB buffer on the stack and handed to the sink
 *   whenever it is full, and once at the end: every chunk is 4 KiB but the
 *   last, never empty. A nonzero result of the sink stops the writer.
 *
 * Label values
 *   Keys are any bytes; label values must be UTF-8 with \, " and newline
 *   escaped. The encoding (tally.h) keeps printable ASCII and well-formed
 *   UTF-8 from U+00A0 up, and writes every other byte (controls, '%', the
 *   bytes of C1 controls, of ill-formed sequences) as %XX. Since '%'
 *   itself is always %25, the text decodes to one key only.
 */
#include <string.h>

#include "store.h"

#define MET_CHUNK 4096u
/* The first arrays: up to this many records, then doubling. */
#define MET_FIRST_RECORDS 64u
#define MET_FIRST_KEY_BYTES 32u /* per record of the first array */
#define MET_NS_PER_SEC UINT64_C(1000000000)

/* ------------------------------------------------------------------------ */
/* Output                                                                   */
/* ------------------------------------------------------------------------ */

struct met_out {
	tally_write_fn *fn;
	void *ctx;
	const char *prefix;
	size_t prefix_len;
	int rc; /* the sink's first nonzero result: nothing more is written */
	size_t len;
	char buf[MET_CHUNK];
};

static void
met_flush(struct met_out *o)
{
	if (o->rc == 0 && o->len > 0)
		o->rc = o->fn(o->ctx, o->buf, o->len);
	o->len = 0;
}

static void
met_put(struct met_out *o, const char *s, size_t n)
{
	while (n > 0 && o->rc == 0) {
		size_t room = MET_CHUNK - o->len;
		size_t k = n < room ? n : room;

		memcpy(o->buf + o->len, s, k);
		o->len += k;
		s += k;
		n -= k;
		if (o->len == MET_CHUNK)
			met_flush(o);
	}
}

static void
met_puts(struct met_out *o, const char *s)
{
	met_put(o, s, strlen(s));
}

static void
met_putu(struct met_out *o, uint64_t v)
{
	char digits[20];
	size_t i = tally__u64_dec(v, digits);

	met_put(o, digits + i, sizeof(digits) - i);
}

/* |v| as a uint64, for any int64 (INT64_MIN included). */
static uint64_t
met_abs(int64_t v)
{
	return v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
}

static void
met_puti(struct met_out *o, int64_t v)
{
	if (v < 0)
		met_put(o, "-", 1);
	met_putu(o, met_abs(v));
}

/* Nanoseconds as seconds with exactly 9 fractional digits. */
static void
met_put_seconds(struct met_out *o, int64_t ns)
{
	uint64_t mag = met_abs(ns);
	uint64_t frac = mag % MET_NS_PER_SEC;
	char digits[9];
	int i;

	if (ns < 0)
		met_put(o, "-", 1);
	met_putu(o, mag / MET_NS_PER_SEC);
	for (i = 8; i >= 0; i--) {
		digits[i] = (char)('0' + (int)(frac % 10));
		frac /= 10;
	}
	met_put(o, ".", 1);
	met_put(o, digits, sizeof digits);
}

/* The prefix and the rest of a metric name. */
static void
met_name(struct met_out *o, const char *name)
{
	met_put(o, o->prefix, o->prefix_len);
	met_puts(o, name);
}

static void
met_family(struct met_out *o, const char *name, const char *type,
	   const char *help)
{
	met_puts(o, "# HELP ");
	met_name(o, name);
	met_put(o, " ", 1);
	met_puts(o, help);
	met_puts(o, "\n# TYPE ");
	met_name(o, name);
	met_put(o, " ", 1);
	met_puts(o, type);
	met_put(o, "\n", 1);
}

/* A family of one unlabelled sample. */
static void
met_single(struct met_out *o, const char *name, const char *type,
	   const char *help, uint64_t v)
{
	met_family(o, name, type, help);
	met_name(o, name);
	met_put(o, " ", 1);
	met_putu(o, v);
	met_put(o, "\n", 1);
}

/* ------------------------------------------------------------------------ */
/* Keys as label values                                                     */
/* ------------------------------------------------------------------------ */

/*
 * The length of the well-formed UTF-8 sequence of two or more bytes at
 * p[0 .. n-1] (Unicode 15, table 3-7: shortest form, no surrogates, at
 * most U+10FFFF), or 0 if there is none there.
 */
static size_t
met_utf8_len(const unsigned char *p, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len, i;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (p[0] == 0xe0)
		lo = 0xa0; /* no overlong 3-byte form */
	else if (p[0] == 0xed)
		hi = 0x9f; /* no surrogates */
	else if (p[0] == 0xf0)
		lo = 0x90; /* no overlong 4-byte form */
	else if (p[0] == 0xf4)
		hi = 0x8f; /* at most U+10FFFF */
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return len;
}

static void
met_put_key(struct met_out *o, const unsigned char *k, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i = 0;

	while (i < n) {
		unsigned char c = k[i];
		size_t len;
		char esc[3];

		if (c == '\\' || c == '"') {
			esc[0] = '\\';
			esc[1] = (char)c;
			met_put(o, esc, 2);
			i++;
			continue;
		}
		if (c >= 0x20 && c < 0x7f && c != '%') {
			met_put(o, (const char *)k + i, 1);
			i++;
			continue;
		}
		len = c >= 0x80 ? met_utf8_len(k + i, n - i) : 0;
		/* U+0080 to U+009F (C1 controls) are 0xc2 0x80 to 0xc2 0x9f. */
		if (len != 0 && !(c == 0xc2 && k[i + 1] < 0xa0)) {
			met_put(o, (const char *)k + i, len);
			i += len;
			continue;
		}
		esc[0] = '%';
		esc[1] = hex[c >> 4];
		esc[2] = hex[c & 0xf];
		met_put(o, esc, 3);
		i++;
	}
}

/* ------------------------------------------------------------------------ */
/* The walk: what the record families need, copied once                    */
/* ------------------------------------------------------------------------ */

struct met_counter {
	int64_t used;
	int64_t held;
	int64_t max;
	int64_t end; /* window end, ns; INT64_MAX: never */
	bool has_max;
};

struct met_rec {
	size_t key_off; /* into met_walk.keys */
	uint32_t key_len;
	uint32_t kind;
	struct met_counter
		c[2]; /* budget: c[0]; rate limit: tokens, requests */
};

struct met_walk {
	tally_store *s;
	size_t first; /* records of the first array */
	struct met_rec *rec;
	size_t n, cap;
	char *keys;
	size_t keys_len, keys_cap;
};

/* Make room for `need` elements of `elem` bytes in *p (holding `used` of
 * them, `*cap` allocated): the first array holds `first`, then the size
 * doubles. False when the allocator fails or the size would overflow. */
static bool
met_grow(tally_store *s, void **p, size_t *cap, size_t used, size_t elem,
	 size_t need, size_t first)
{
	size_t ncap = *cap == 0 ? first : *cap;
	void *q;

	if (need <= *cap)
		return true;
	if (ncap == 0)
		ncap = 1;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2)
			return false;
		ncap *= 2;
	}
	if (ncap > SIZE_MAX / elem ||
	    (q = tally__malloc(s, ncap * elem)) == NULL)
		return false;
	if (used > 0)
		memcpy(q, *p, used * elem);
	tally__free(s, *p, *cap * elem);
	*p = q;
	*cap = ncap;
	return true;
}

static void
met_walk_free(struct met_walk *w)
{
	tally__free(w->s, w->rec, w->cap * sizeof *w->rec);
	tally__free(w->s, w->keys, w->keys_cap);
}

static void
met_counter_of(struct met_counter *c, int64_t used, int64_t held,
	       const tally_limit *l, int64_t end)
{
	c->used = used;
	c->held = held;
	c->has_max = l->has_max;
	c->max = l->max;
	c->end = end;
}

/* tally_export's callback: outside every section, so it may allocate. */
static int
met_take(void *ctx, const tally_record *r)
{
	struct met_walk *w = ctx;
	struct met_rec *m;
	void *rec = w->rec, *keys = w->keys;
	bool ok;

	ok = met_grow(w->s, &rec, &w->cap, w->n, sizeof *w->rec, w->n + 1,
		      w->first);
	w->rec = rec;
	if (ok) {
		ok = met_grow(w->s, &keys, &w->keys_cap, w->keys_len, 1,
			      w->keys_len + r->key_len,
			      w->first * MET_FIRST_KEY_BYTES);
		w->keys = keys;
	}
	if (!ok)
		return TALLY_ENOMEM;
	m = &w->rec[w->n++];
	memset(m, 0, sizeof *m);
	m->key_off = w->keys_len;
	m->key_len = (uint32_t)r->key_len;
	m->kind = r->kind;
	memcpy(w->keys + w->keys_len, r->key, r->key_len);
	w->keys_len += r->key_len;
	if (r->kind == TALLY_KIND_BUDGET) {
		const tally_budget_view *v = &r->budget;

		m->c[0].used = v->usage;
		m->c[0].held = v->held;
		m->c[0].has_max = true;
		m->c[0].max = v->config.max_limit;
		m->c[0].end = v->window_end;
	} else {
		const tally_ratelimit_view *v = &r->ratelimit;

		met_counter_of(&m->c[0], v->tokens.usage, v->tokens_held,
			       &v->config.tokens, v->tokens.window_end);
		met_counter_of(&m->c[1], v->requests.usage, v->requests_held,
			       &v->config.requests, v->requests.window_end);
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Families                                                                 */
/* ------------------------------------------------------------------------ */

enum met_gauge {
	MET_USED,
	MET_HELD,
	MET_MAX,
	MET_END
};

static const struct {
	const char *name;
	const char *help;
} met_gauges[] = {
	{"used", "Units a counter has used in its window, as stored (a sliding "
		 "counter: its current window's usage, not the estimate)."},
	{"held", "Units the live holds of a counter hold, as stored."},
	{"max", "A counter's max (a counter without one has no sample)."},
	{"window_end_seconds",
	 "End of a counter's window, Unix time (a window that never ends has "
	 "no sample)."},
};

static bool
met_has_sample(enum met_gauge g, const struct met_counter *c)
{
	if (g == MET_MAX)
		return c->has_max;
	if (g == MET_END)
		return c->end != INT64_MAX;
	return true;
}

static void
met_record_family(struct met_out *o, const struct met_walk *w, enum met_gauge g)
{
	static const char *const counters[2][2] = {{"budget", NULL},
						   {"tokens", "requests"}};
	bool any = false;
	size_t i, j;

	for (i = 0; i < w->n && !any; i++)
		for (j = 0; j < (w->rec[i].kind == TALLY_KIND_BUDGET ? 1u : 2u);
		     j++)
			any = any || met_has_sample(g, &w->rec[i].c[j]);
	if (!any)
		return;
	met_family(o, met_gauges[g].name, "gauge", met_gauges[g].help);
	for (i = 0; i < w->n && o->rc == 0; i++) {
		const struct met_rec *m = &w->rec[i];
		bool budget = m->kind == TALLY_KIND_BUDGET;

		for (j = 0; j < (budget ? 1u : 2u); j++) {
			const struct met_counter *c = &m->c[j];

			if (!met_has_sample(g, c))
				continue;
			met_name(o, met_gauges[g].name);
			met_puts(o, budget ? "{kind=\"budget\",key=\""
					   : "{kind=\"ratelimit\",key=\"");
			met_put_key(o,
				    (const unsigned char *)w->keys + m->key_off,
				    m->key_len);
			met_puts(o, "\",counter=\"");
			met_puts(o, counters[budget ? 0 : 1][j]);
			met_puts(o, "\"} ");
			if (g == MET_END)
				met_put_seconds(o, c->end);
			else
				met_puti(o, g == MET_USED   ? c->used
					    : g == MET_HELD ? c->held
							    : c->max);
			met_put(o, "\n", 1);
		}
	}
}

static void
met_stats(struct met_out *o, const tally_stats *st)
{
	static const char *const reasons[4] = {"limit", "too_big", "race",
					       "missing"};
	const uint64_t refused[4] = {st->refused_limit, st->refused_too_big,
				     st->refused_race, st->refused_missing};
	const struct {
		const char *name;
		const char *help;
		uint64_t v;
	} gauges[] =
		{
			{"records", "Budgets and rate limits in the store.",
			 st->records},
			{"threads",
			 "Per-thread records registered with the store.",
			 st->threads},
			{"threads_active",
			 "Per-thread records held by a live thread.",
			 st->threads_active},
			{"pending", "Retired objects not yet freed.",
			 st->pending},
			{"peak_pending",
			 "Highest number of pending objects seen by any one thread.",
			 st->peak_pending},
		},
	  counters[] = {
		  {"writes_total", "Snapshots installed by compare-and-swap.",
		   st->writes},
		  {"cas_retries_total",
		   "Failed compare-and-swap attempts that were retried.",
		   st->cas_retries},
		  {"rolls_total", "Windows rolled, all causes.", st->rolls},
		  {"retired_total",
		   "Snapshots, records and maps handed to reclamation.",
		   st->retired},
		  {"freed_total", "Retired objects freed or recycled.",
		   st->freed},
		  {"admitted_total",
		   "Admissions that passed (HOLD or CONSUME).", st->admitted},
		  {NULL, NULL, 0}, /* refused_total goes here */
		  {"compensations_total",
		   "Holds undone because a later limit of the call refused.",
		   st->compensations},
		  {"holds_total", "Per-record holds taken and kept.",
		   st->holds},
		  {"settles_total", "Successful tally_settle calls.",
		   st->settles},
		  {"releases_total", "Successful tally_release calls.",
		   st->releases},
		  {"partials_total", "Successful tally_settle_partial calls.",
		   st->partials},
		  {"late_settles_total",
		   "Per-record settles of an expired hold.", st->late_settles},
		  {"overdraft_units_total",
		   "Units charged beyond what was held.", st->overdraft_units},
		  {"expired_holds_total", "Holds dropped by expiry.",
		   st->expired_holds},
		  {"expired_units_total",
		   "Units that expired holds held, all counters summed.",
		   st->expired_units},
		  {"shadow_would_deny_total",
		   "Shadow charges that would have refused.",
		   st->shadow_would_deny},
	  };
	size_t i, r;

	for (i = 0; i < sizeof gauges / sizeof gauges[0]; i++)
		met_single(o, gauges[i].name, "gauge", gauges[i].help,
			   gauges[i].v);
	for (i = 0; i < sizeof counters / sizeof counters[0]; i++) {
		if (counters[i].name != NULL) {
			met_single(o, counters[i].name, "counter",
				   counters[i].help, counters[i].v);
			continue;
		}
		met_family(o, "refused_total", "counter",
			   "Admissions refused, by reason.");
		for (r = 0; r < 4; r++) {
			met_name(o, "refused_total{reason=\"");
			met_puts(o, reasons[r]);
			met_puts(o, "\"} ");
			met_putu(o, refused[r]);
			met_put(o, "\n", 1);
		}
	}
}

/* ------------------------------------------------------------------------ */
/* The call                                                                 */
/* ------------------------------------------------------------------------ */

static bool
met_prefix_ok(const char *p)
{
	size_t i;

	for (i = 0; p[i] != '\0'; i++) {
		char c = p[i];
		bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     c == '_' || c == ':';

		if (!alpha && (i == 0 || c < '0' || c > '9'))
			return false;
	}
	return i > 0;
}

TALLY_API int
tally_metrics_write(tally_store *s, const tally_metrics_options *options,
		    tally_write_fn *fn, void *ctx)
{
	tally_metrics_options opt = TALLY_METRICS_OPTIONS_INIT;
	tally_stats st = TALLY_STATS_INIT;
	struct met_walk w;
	struct met_out o;
	int rc;

	if (s == NULL || fn == NULL)
		return TALLY_EINVAL;
	if (options != NULL) {
		/* The first layout is the whole struct (0.4). */
		if (options->size < sizeof opt)
			return TALLY_EINVAL;
		opt.prefix = options->prefix;
		opt.max_records = options->max_records;
		opt.flags = options->flags;
	}
	if (opt.prefix == NULL)
		opt.prefix = "tally_";
	if (!met_prefix_ok(opt.prefix) || opt.flags != 0)
		return TALLY_EINVAL;

	if ((rc = tally_store_stats(s, &st)) != TALLY_OK)
		return rc;
	memset(&w, 0, sizeof w);
	w.s = s;
	if (opt.max_records > 0) {
		tally_cursor cur = TALLY_CURSOR_INIT;
		/* tally_export's max 0 is "to the end". */
		size_t max = opt.max_records > SIZE_MAX
				     ? 0
				     : (size_t)opt.max_records;

		w.first = opt.max_records < MET_FIRST_RECORDS
				  ? (size_t)opt.max_records
				  : MET_FIRST_RECORDS;
		if ((rc = tally_export(s, &cur, max, met_take, &w)) !=
		    TALLY_OK) {
			met_walk_free(&w);
			return rc;
		}
	}

	o.fn = fn;
	o.ctx = ctx;
	o.prefix = opt.prefix;
	o.prefix_len = strlen(opt.prefix);
	o.rc = 0;
	o.len = 0;
	met_stats(&o, &st);
	if (opt.max_records > 0) {
		met_single(&o, "records_exported", "gauge",
			   "Records whose gauges this scrape shows.", w.n);
		/* A walk that ended before the cap left nothing out. */
		met_single(&o, "records_truncated", "gauge",
			   "Records left out by the scrape's max_records.",
			   w.n == opt.max_records && st.records > w.n
				   ? st.records - w.n
				   : 0);
		met_record_family(&o, &w, MET_USED);
		met_record_family(&o, &w, MET_HELD);
		met_record_family(&o, &w, MET_MAX);
		met_record_family(&o, &w, MET_END);
	}
	met_flush(&o);
	met_walk_free(&w);
	return o.rc;
}
