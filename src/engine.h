/*
 * The engine: the one CAS loop every write goes through, and the read path.
 *
 * Every write is: load the record's snapshot pointer, compute the successor
 * with a pure transition (a kind's quick path or step), CAS the pointer
 * from the loaded snapshot to the successor, and on failure go again with
 * the snapshot that won. The load and the CAS happen inside one epoch
 * section, so the loaded snapshot cannot be freed and recycled before the
 * CAS: a successful CAS proves that nothing was installed in between (no
 * ABA). Linearization point of a write: its successful CAS. Of a read: its
 * load.
 *
 * The loop is written once, here, as always-inline functions that take the
 * kind's quick path as a constant: api.c instantiates the write and read
 * paths once per kind, so the common case runs with no indirect call,
 * while the rare paths (a due window, a reset, an upsert) go through the
 * kind's row. engine.c has the same loop out of line for sweep and upsert.
 *
 * The successor is allocated once, before the section, and refilled on
 * every retry; a transition that decides not to install (LIMITED,
 * CONFLICT, nothing due) hands it back to the per-thread cache. Allocation
 * and the reservation of room to retire the old snapshot both happen
 * before anything changes, so ENOMEM always means "nothing changed".
 *
 * Removal (engine.c) swaps the snapshot pointer to the store's tombstone
 * with an atomic exchange, under the map's write lock, before unlinking the
 * record from the map: a writer that loaded the last snapshot fails its
 * CAS, and one that loads the tombstone looks the key up again (it may have
 * been created anew) or reports ENOENT.
 *
 * Roll reports are collected by the transition and delivered after the CAS
 * and after the section ends, so a slow listener never delays reclamation.
 */
#ifndef TALLY_ENGINE_H
#define TALLY_ENGINE_H

#include "lcache.h"

struct tally__op {
	tally_store *store;
	const char *key; /* validated, key_len bytes */
	size_t key_len;
	const struct tally__kind *kind;
	struct tally__args args;
	void *view; /* the kind's public view (size checked) or NULL */
};

static inline void
tally__op_init(struct tally__op *op, tally_store *store, const char *key,
	       size_t key_len, const struct tally__kind *kind,
	       enum tally__op_code code, void *view)
{
	op->store = store;
	op->key = key;
	op->key_len = key_len;
	op->kind = kind;
	tally__args_init(&op->args, code, 0, &store->hold_grain);
	op->view = view;
}

/* Fills a view of an older layout (engine.c). */
void tally__view_out_old(const struct tally__kind *k, const void *snap,
			 uint64_t incarnation, void *view);

/* Fills a view (may be NULL, else its size checked by the caller) from a
 * snapshot the caller may read; a view of an older layout gets the bytes
 * its size covers. */
static inline void
tally__view_out(const struct tally__kind *k, const void *snap,
		uint64_t incarnation, void *view)
{
	size_t size;

	if (view == NULL)
		return;
	memcpy(&size, view, sizeof size);
	if (TALLY__LIKELY(size >= k->view_size))
		k->view(snap, incarnation, view);
	else
		tally__view_out_old(k, snap, incarnation, view);
}

/* The kind's quick path; if it needs the exact clock (a sliding counter's
 * decision, with a coarse reading), reads it and asks again. */
static inline int
tally__quick_exact(tally_store *s, tally__quick_fn *quick, const void *old,
		   void *next, struct tally__args *a, bool *install)
{
	int rc = quick(old, next, a, install);

	if (TALLY__UNLIKELY(rc == TALLY__QUICK_NO && a->need_exact)) {
		a->now = tally__now(s);
		a->now_coarse = false;
		a->need_exact = false;
		rc = quick(old, next, a, install);
	}
	return rc;
}

/* The kind's step; if a coarse clock reading could not decide whether a
 * window is due, reads the exact clock and runs the step again. */
static inline int
tally__step_full(tally_store *s, const struct tally__kind *k, const void *old,
		 void *next, struct tally__args *a, struct tally__rolls *rolls,
		 bool *install)
{
	int rc = k->step(old, next, a, rolls, install);

	if (rc == TALLY__NEED_CLOCK) {
		a->now = tally__now(s);
		a->now_coarse = false;
		a->need_exact = false;
		tally__notes_clear(rolls);
		rc = k->step(old, next, a, rolls, install);
	}
	return rc;
}

/* Runs a transition: the quick path, then the full step. */
TALLY__HOT int
tally__step(tally_store *s, const struct tally__kind *k, tally__quick_fn *quick,
	    const void *old, void *next, struct tally__args *a,
	    struct tally__rolls *rolls, bool *install)
{
	int rc = tally__quick_exact(s, quick, old, next, a, install);

	if (rc != TALLY__QUICK_NO)
		return rc;
	return tally__step_full(s, k, old, next, a, rolls, install);
}

/*
 * Pauses after a failed CAS, doubling per failure up to the cap. A loser
 * that waits long enough lets the winner run a few writes in a row with the
 * record's lines in its cache; with one key and two threads, first waits
 * of 32, 64, 128, 256 and 512 pauses gave about 150, 128, 125, 122 and 128
 * ns per write (4 and 8: 215). The cost falls only on a thread that lost a
 * race, which on distinct keys is almost never.
 */
#define TALLY__BACKOFF_MIN 128
#define TALLY__BACKOFF_MAX 2048

/*
 * The CAS loop on one record, inside the caller's section. Returns the
 * transition's result; *installed tells whether `next` was published (then
 * it belongs to the record and the old snapshot has been retired). When the
 * record turns out removed, probe (may be NULL) finds its successor, and
 * *rp is updated to it.
 */
TALLY__HOT int
tally__cas_loop_inline(tally_store *s, struct tally__thread *t,
		       struct tally__record **rp,
		       const struct tally__probe *probe,
		       const struct tally__kind *k, tally__quick_fn *quick,
		       struct tally__args *args, void *next,
		       struct tally__rolls *rolls, bool *installed,
		       uint64_t *version)
{
	struct tally__record *r = *rp;
	unsigned backoff = TALLY__BACKOFF_MIN;

	*installed = false;
	for (;;) {
		void *old = tally__ptr_load(&r->snap);
		bool install = false;
		uint64_t v;
		int rc;

		if (old == &s->tombstone) {
			/* Removed; the key may already live again. */
			struct tally__record *again =
				probe != NULL ? tally__lookup(s, probe) : NULL;

			if (again != NULL && again != r) {
				*rp = r = again;
				continue;
			}
			return TALLY_ENOENT;
		}
		tally__notes_clear(rolls);
		rc = tally__step(s, k, quick, old, next, args, rolls, &install);
		if (rc < 0 || !install)
			return rc;
		v = tally__snap_version(old);
		if (TALLY__UNLIKELY(v == UINT64_MAX)) {
			/* Versions never wrap (tally.h, Versions). */
			tally__notes_clear(rolls);
			return TALLY_EOVERFLOW;
		}
		tally__snap_set_version(next, v + 1);
		if (tally__ptr_cas(&r->snap, old, next)) {
			*installed = true;
			*version = v + 1;
			tally__retire(t, old, k->snap_size,
				      tally__snap_type(k->id));
			tally__stat_add(&t->st.writes, 1);
			if (TALLY__UNLIKELY(tally__notes_any(rolls)))
				tally__stat_notes(t, rolls);
			return rc;
		}
		tally__stat_add(&t->st.cas_retries, 1);
		/* Contention on one record: back off (exponentially, capped)
		 * before loading again, so the winner's line settles. */
		for (unsigned i = 0; i < backoff; i++)
			ck_pr_stall();
		if (backoff < TALLY__BACKOFF_MAX)
			backoff = backoff * 2 + 1;
	}
}

/* The same loop out of line, through the kind's row (sweep, upsert). */
int tally__cas_loop(tally_store *s, struct tally__thread *t,
		    struct tally__record **rp, const struct tally__probe *probe,
		    const struct tally__kind *k, struct tally__args *args,
		    void *next, struct tally__rolls *rolls, bool *installed,
		    uint64_t *version);

/* Reports rolls to the listener and to an extra callback (sweep), and
 * expired holds to the expiry listener. */
void tally__report(tally_store *s, const char *key, size_t key_len,
		   unsigned kind, uint64_t incarnation, tally_roll_cause cause,
		   const struct tally__rolls *rolls, uint64_t version,
		   tally_roll_fn *extra, void *extra_ctx);

/* Sweeps report their own rolls (sweep.c); here a roll is a reset's or an
 * inline one. */
static inline tally_roll_cause
tally__cause_of(enum tally__op_code op)
{
	return op == TALLY__OP_RESET ? TALLY_ROLL_RESET : TALLY_ROLL_INLINE;
}

/*
 * Everything a write needs before it may change anything: the thread's
 * record, room to retire `slots` objects, the successor snapshot and the
 * probe. Any failure returns with nothing changed.
 */
TALLY__HOT int
tally__prepare(const struct tally__op *op, unsigned slots,
	       struct tally__thread **t, void **next,
	       struct tally__probe *probe)
{
	const struct tally__kind *k = op->kind;
	int rc;

	if ((rc = tally__thread_get(op->store, t)) != TALLY_OK)
		return rc;
	if ((rc = tally__reserve(*t, slots)) != TALLY_OK)
		return rc;
	if ((*next = tally__snap_alloc(*t, k->id)) == NULL)
		return TALLY_ENOMEM;
	tally__probe_init(probe, op->store->seed, op->key, op->key_len, k->id);
	return TALLY_OK;
}

/*
 * A write (bump, try_consume, reset) of the kind whose quick path is
 * `quick`; code is op->args.op, a constant where this is inlined (the
 * compiler cannot see that op->args keeps it across the calls below). The
 * key is valid. Everything that may fail is done before anything changes.
 */
TALLY__HOT int
tally__write_inline(struct tally__op *op, enum tally__op_code code,
		    tally__quick_fn *quick)
{
	tally_store *s = op->store;
	const struct tally__kind *k = op->kind;
	struct tally__thread *t;
	struct tally__probe probe;
	struct tally__record *r;
	struct tally__rolls rolls;
	bool installed = false;
	uint64_t version = 0, incarnation = 0;
	void *next;
	int rc;

	if ((rc = tally__prepare(op, 1, &t, &next, &probe)) != TALLY_OK)
		return rc;
	/* Start fetching, for writing, the lines this write will change: the
	 * successor and (the likely) record. Under contention both are held
	 * by another core; their transfers then overlap each other and the
	 * clock read instead of following one another. */
	tally__prefetch_w(next);
	tally__lcache_prefetch(t, &probe);
	tally__notes_clear(&rolls); /* notes are filled only as n grows */
	tally__now_for(s, &op->args, code);

	tally__section_begin(t);
	r = tally__lookup_cached(s, t, &probe);
	if (r == NULL) {
		rc = TALLY_ENOENT;
	} else {
		rc = tally__cas_loop_inline(s, t, &r, &probe, k, quick,
					    &op->args, next, &rolls, &installed,
					    &version);
		incarnation = r->incarnation;
		if (rc >= 0)
			tally__view_out(k, next, incarnation, op->view);
	}
	tally__section_end(t);

	if (!installed)
		tally__snap_free(t, next, k->id);
	else if (tally__notes_any(&rolls))
		tally__report(s, op->key, op->key_len, k->id, incarnation,
			      tally__cause_of(code), &rolls, version, NULL,
			      NULL);
	tally__maintain(t);
	return rc;
}

/* A read (get, check) of the kind whose quick path is `quick`; code as
 * for tally__write_inline. */
TALLY__HOT int
tally__read_inline(struct tally__op *op, enum tally__op_code code,
		   tally__quick_fn *quick)
{
	tally_store *s = op->store;
	const struct tally__kind *k = op->kind;
	struct tally__thread *t;
	struct tally__probe probe;
	struct tally__record *r;
	struct tally__rolls rolls;
	uint64_t buf[TALLY__SNAP_MAX / sizeof(uint64_t)];
	bool install = false;
	int rc;

	if ((rc = tally__thread_get(s, &t)) != TALLY_OK)
		return rc;
	/* get shows the snapshot as stored: it needs no clock. */
	if (code != TALLY__OP_GET)
		tally__now_for(s, &op->args, code);
	tally__probe_init(&probe, s->seed, op->key, op->key_len, k->id);

	tally__section_begin(t);
	r = tally__lookup_cached(s, t, &probe);
	rc = TALLY_ENOENT;
	while (r != NULL) {
		void *old = tally__ptr_load(&r->snap);

		if (old == &s->tombstone) {
			struct tally__record *again = tally__lookup(s, &probe);

			r = again != r ? again : NULL;
			continue;
		}
		if (code == TALLY__OP_GET) {
			/* The snapshot as stored. */
			tally__view_out(k, old, r->incarnation, op->view);
			rc = TALLY_OK;
			break;
		}
		/* The quick path's check leaves buf alone: it answers from
		 * old, which is then what the view shows. */
		rc = tally__quick_exact(s, quick, old, buf, &op->args,
					&install);
		if (rc != TALLY__QUICK_NO) {
			if (rc >= 0)
				tally__view_out(k, old, r->incarnation,
						op->view);
			break;
		}
		tally__notes_clear(&rolls);
		rc = tally__step_full(s, k, old, buf, &op->args, &rolls,
				      &install);
		TALLY_ASSERT(!install);
		if (rc >= 0)
			tally__view_out(k, buf, r->incarnation, op->view);
		break;
	}
	tally__section_end(t);
	return rc;
}

/* Create or replace (engine.c). */
int tally__upsert(struct tally__op *op);
/* Remove (engine.c). */
int tally__remove(struct tally__op *op);

#endif /* TALLY_ENGINE_H */
