/*
 * Snapshots and their transitions: the interface every kind implements
 * (pure layer).
 *
 * A snapshot is immutable once published. Every snapshot struct begins with
 * `uint64_t version`, the only field the engine reads or writes itself.
 * A transition reads old, writes next (a different buffer), returns a
 * result code and sets *install when next must be installed by CAS. It has
 * no side effects, so every rule is unit-tested without threads.
 *
 * Kinds. A kind (budget, rate limit) is a row of the kind table
 * (kinds.c): a struct tally__kind of the sizes and functions the generic
 * code needs (engine, sweep, reclamation, views). A new kind is one file
 * pair that defines its snapshot, its transitions and its row (in its
 * header, as a static const, so hot paths fold its fields), plus the row's
 * entry in the table (and its public calls in api.c).
 */
#ifndef TALLY_SNAP_H
#define TALLY_SNAP_H

#include "base.h"
#include "clock.h"

enum tally__op_code {
	TALLY__OP_GET = 1,
	TALLY__OP_CHECK,
	TALLY__OP_BUMP,
	TALLY__OP_TRY,
	TALLY__OP_RESET,
	TALLY__OP_ROLL, /* sweep: roll what is due, nothing else */
	TALLY__OP_UPSERT,
	/* Admission (admit.c): read-only test, hold, settle, partial charge. */
	TALLY__OP_PEEK,
	TALLY__OP_HOLD,
	TALLY__OP_SETTLE,
	TALLY__OP_PARTIAL
};

/*
 * A store's hold grain G (hold.h) with what divides by it without a
 * division instruction: slot numbers are times divided by G, on every
 * hold, settle and report, and a 64-bit idiv costs tens of cycles.
 * floor(n / G) = (n * magic) >> shift for 0 <= n < 2^63, with
 * magic = ceil(2^shift / G) and shift = 63 + ceil(log2 G) (Granlund and
 * Montgomery, "Division by invariant integers using multiplication",
 * 1994, theorem 4.2 with N = 63: magic * G - 2^shift < G <= 2^(shift-63)).
 * slot_max: the largest slot number a hold may take (hold.c).
 */
struct tally__grain {
	int64_t g;
	uint64_t magic;
	unsigned shift;
	int64_t slot_max;
};

struct tally__args {
	enum tally__op_code op;
	int64_t now;
	bool now_coarse;   /* now is a coarse reading (see tally__is_due) */
	bool need_exact;   /* set by a transition that needs the exact clock */
	int64_t amount[2]; /* budget: [0]; rate limit: tokens, requests */
	uint64_t observed_version; /* reset */
	unsigned counters;         /* reset mask (rate limit) */
	unsigned out_mask;         /* limited / reset mask (rate limit) */
	const void *config;        /* upsert: validated, full-size config */
	/* Holds (hold.h). grain: the store's slot length and its divider. */
	const struct tally__grain *grain;
	int64_t ttl;            /* hold: ns, 1 .. the store's maximum */
	int64_t slot;           /* hold (out), settle and partial (in) */
	int64_t held_amount[2]; /* settle, partial: what the hold holds */
	int64_t actual[2];      /* settle, partial: what to charge */
	int64_t moved[2];       /* settle, partial (out): left held */
	/* Settle, partial (out, set by the step whatever a->report): the
	 * flags LATE, OVERDRAFT and OVERFLOW of any counter, and each
	 * counter's overdraft, as the report would show them. */
	unsigned settle_flags;
	int64_t overdraft[2];
	bool shadow; /* peek, hold, try, bump: never refuses */
	/* Peek, hold, try, bump, settle, partial: filled when not NULL. */
	tally_limit_report *report;
};

/*
 * Sets every field an operation may read, without a memset: the args are
 * on every hot path, and a memset of their size compiles to a `rep stos`
 * that costs more than the rest of a check. The hold fields (ttl, slot,
 * held_amount, actual, moved) are read only by HOLD, SETTLE and PARTIAL,
 * whose callers (admit.c) set them.
 */
static inline void
tally__args_init(struct tally__args *a, enum tally__op_code op, int64_t now,
		 const struct tally__grain *grain)
{
	a->op = op;
	a->now = now;
	a->now_coarse = false;
	a->need_exact = false;
	a->amount[0] = a->amount[1] = 0;
	a->observed_version = 0;
	a->counters = 0;
	a->out_mask = 0;
	a->config = NULL;
	a->grain = grain;
	a->shadow = false;
	a->report = NULL;
}

/* A roll computed by a transition, reported after its CAS succeeds. */
struct tally__roll_note {
	unsigned counter;
	int64_t usage_before;
	int64_t old_window_start;
	int64_t new_window_start;
};

#define TALLY__ROLLS_MAX 2 /* counters per record */

/* Holds that expired in one transition (hold.h), summed over the slots
 * it dropped. */
struct tally__expiry_note {
	uint32_t holds;
	int64_t amount[2];
	int64_t slot_end; /* the boundary of the latest slot dropped */
};

struct tally__rolls {
	unsigned n;
	struct tally__roll_note note[TALLY__ROLLS_MAX];
	struct tally__expiry_note exp; /* exp.holds == 0: none */
};

/* Whether a transition's notes have anything to report. */
static inline bool
tally__notes_any(const struct tally__rolls *r)
{
	return r->n != 0 || r->exp.holds != 0;
}

/* Forgets a transition's notes (a retry, a refusal). The expiry note's
 * other fields are written when its count first grows (hold.c). */
static inline void
tally__notes_clear(struct tally__rolls *r)
{
	r->n = 0;
	r->exp.holds = 0;
}

/* A transition's answer when args->now is coarse and a window might be due:
 * the engine reads the exact clock and runs the transition again. */
#define TALLY__NEED_CLOCK 1000

/* A quick path's answer when the full transition must decide. */
#define TALLY__QUICK_NO 1001

/* Whether a window ending at end is due at a->now. A coarse reading that
 * cannot decide sets a->need_exact (and answers "not due"). */
static inline bool
tally__is_due(struct tally__args *a, int64_t end)
{
	if (!a->now_coarse)
		return tally__window_due(a->now, end);
	if (tally__coarse_not_due(a->now, end))
		return false;
	a->need_exact = true;
	return false;
}

/* Whether a window ending at end is certainly not due at a->now: what
 * tally__is_due returns false for without asking for the exact clock. */
static inline bool
tally__surely_not_due(const struct tally__args *a, int64_t end)
{
	if (!a->now_coarse)
		return !tally__window_due(a->now, end);
	return tally__coarse_not_due(a->now, end);
}

static inline uint64_t
tally__snap_version(const void *snap)
{
	uint64_t v;

	memcpy(&v, snap, sizeof v);
	return v;
}

static inline void
tally__snap_set_version(void *snap, uint64_t version)
{
	memcpy(snap, &version, sizeof version);
}

/* ------------------------------------------------------------------------ */
/* The kind table                                                           */
/* ------------------------------------------------------------------------ */

typedef int tally__quick_fn(const void *old, void *next, struct tally__args *a,
			    bool *install);
typedef int tally__step_fn(const void *old, void *next, struct tally__args *a,
			   struct tally__rolls *rolls, bool *install);

struct tally__kind {
	const char *name;
	uint8_t id;           /* tally_kind value: the record's kind byte */
	uint16_t snap_size;   /* bytes of a snapshot */
	uint16_t config_size; /* sizeof the public config (current layout) */
	uint16_t config_v1;   /* smallest config->size accepted */
	uint16_t view_size;   /* sizeof the public view (current layout) */
	uint16_t view_v1;     /* smallest view->size accepted */
	/* TALLY_OK or the error a full-size config gets. */
	int (*validate)(const void *config);
	/* The first snapshot of a record created at now (version 0). */
	void (*init)(void *snap, const void *config, int64_t now);
	/* The common cases of check, bump and try_consume, answered exactly
	 * as step would, or TALLY__QUICK_NO. The hot paths (api.c) call the
	 * kind's quick path directly, not through this pointer. */
	tally__quick_fn *quick;
	tally__step_fn *step;
	/* Fills a full-size public view (all but its size field). */
	void (*view)(const void *snap, uint64_t incarnation, void *view);
	/* Fills a view of an older layout (size view_v1 .. view_size - 1)
	 * where that is not a prefix of the current one; NULL: it is. */
	void (*view_old)(const void *snap, uint64_t incarnation, void *view);
	/* Whether a window or a hold slot of snap is due at now (sweep). */
	bool (*due)(const void *snap, int64_t now);
	/* Fills rep->c[] and rep->flags from snap (a transition's result)
	 * for a request of a's amounts (settle, partial: the hold's). */
	void (*report)(const void *snap, const struct tally__args *a,
		       tally_limit_report *rep);
	/* Admission's read-only pass when no report is wanted: the result
	 * of a PEEK step for a (TALLY_OK, TALLY_LIMITED or the placement's
	 * error), answered from old without a copy, or TALLY__QUICK_NO where
	 * a window or hold slot may be due (then the step answers).
	 * test_hold checks agreement with the step on random states. */
	int (*fits)(const void *old, const struct tally__args *a);
};

/* Kind ids run from 1 to TALLY__KIND_END - 1; tally__kinds[0] is NULL. */
#define TALLY__KIND_END 3
extern const struct tally__kind *const tally__kinds[TALLY__KIND_END];

/* The largest snapshot of any kind: read paths copy into a buffer this big
 * (each kind file checks its snapshot against it). */
#define TALLY__SNAP_MAX 256

static inline const struct tally__kind *
tally__kind_of(unsigned id)
{
	TALLY_ASSERT(id > 0 && id < TALLY__KIND_END);
	return tally__kinds[id];
}

#endif /* TALLY_SNAP_H */
