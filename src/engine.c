/*
 * The engine: the one CAS loop every write goes through, the read path,
 * and the structural writes (create, remove).
 *
 * Every write is: load the record's snapshot pointer, compute the successor
 * with a pure transition (budget.c, ratelimit.c), CAS the pointer from the
 * loaded snapshot to the successor, and on failure go again with the
 * snapshot that won. The load and the CAS happen inside one epoch section,
 * so the loaded snapshot cannot be freed and recycled before the CAS: a
 * successful CAS proves that nothing was installed in between (no ABA).
 * Linearization point of a write: its successful CAS. Of a read: its load.
 *
 * The successor is allocated once, before the section, and refilled on
 * every retry; a transition that decides not to install (LIMITED,
 * CONFLICT, nothing due) hands it back to the per-thread cache. Allocation
 * and the reservation of room to retire the old snapshot both happen
 * before anything changes, so ENOMEM always means "nothing changed".
 *
 * Removal swaps the snapshot pointer to the store's tombstone with an
 * atomic exchange, under the map's write lock, before unlinking the record
 * from the map: a writer that loaded the last snapshot fails its CAS, and
 * one that loads the tombstone looks the key up again (it may have been
 * created anew) or reports ENOENT.
 *
 * Roll reports are collected by the transition and delivered after the CAS
 * and after the section ends, so a slow listener never delays reclamation.
 */
#include <string.h>

#include "internal.h"

static inline int
kind_step(unsigned kind, const void *old, void *next, struct tally__args *a,
	  struct tally__rolls *rolls, bool *install)
{
	if (kind == TALLY_KIND_BUDGET)
		return tally__budget_step(old, next, a, rolls, install);
	return tally__rl_step(old, next, a, rolls, install);
}

/* Runs a transition; if a coarse clock reading could not decide whether a
 * window is due, reads the exact clock and runs it again. */
static inline __attribute__((always_inline)) int
step(tally_store *s, unsigned kind, const void *old, void *next,
     struct tally__args *a, struct tally__rolls *rolls, bool *install)
{
	int rc;

	if (kind == TALLY_KIND_BUDGET)
		rc = tally__budget_quick(old, next, a, install);
	else
		rc = tally__rl_quick(old, next, a, install);
	if (rc != TALLY__QUICK_NO)
		return rc;
	rc = kind_step(kind, old, next, a, rolls, install);

	if (rc == TALLY__NEED_CLOCK) {
		a->now = tally__now(s);
		a->now_coarse = false;
		a->need_exact = false;
		rolls->n = 0;
		rc = kind_step(kind, old, next, a, rolls, install);
	}
	return rc;
}

static inline void
view_of(unsigned kind, const void *snap, void *view)
{
	if (view == NULL)
		return;
	if (kind == TALLY_KIND_BUDGET)
		tally__budget_view(snap, view);
	else
		tally__rl_view(snap, view);
}

static inline void
set_version(void *snap, uint64_t version)
{
	/* version is the first member of both snapshot structs. */
	memcpy(snap, &version, sizeof version);
}

static inline uint64_t
get_version(const void *snap)
{
	uint64_t v;

	memcpy(&v, snap, sizeof v);
	return v;
}

/* Sweeps report their own rolls (sweep.c); here a roll is a reset's or an
 * inline one. */
static tally_roll_cause
cause_of(enum tally__op_code op)
{
	return op == TALLY__OP_RESET ? TALLY_ROLL_RESET : TALLY_ROLL_INLINE;
}

void
tally__report(tally_store *s, const char *key, size_t key_len, unsigned kind,
	      tally_roll_cause cause, const struct tally__rolls *rolls,
	      uint64_t version, tally_roll_fn *extra, void *extra_ctx)
{
	for (unsigned i = 0; i < rolls->n; i++) {
		const struct tally__roll_note *n = &rolls->note[i];
		tally_roll ev;

		ev.key = key;
		ev.key_len = key_len;
		ev.kind = (tally_kind)kind;
		ev.counter = n->counter;
		ev.cause = cause;
		ev.usage_before = n->usage_before;
		ev.old_window_start = n->old_window_start;
		ev.new_window_start = n->new_window_start;
		ev.version = version;
		if (s->on_roll != NULL)
			s->on_roll(&ev, s->on_roll_ctx);
		if (extra != NULL)
			extra(&ev, extra_ctx);
	}
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
 * record turns out removed, probe (may be NULL) finds its successor.
 */
static inline __attribute__((always_inline)) int
cas_loop(tally_store *s, struct tally__thread *t, struct tally__record **rp,
	 const struct tally__probe *probe, unsigned kind,
	 struct tally__args *args, void *next, struct tally__rolls *rolls,
	 bool *installed, uint64_t *version)
{
	struct tally__record *r = *rp;
	enum tally__obj_type type = tally__snap_type(kind);
#if defined(TALLY_MUTATE_READ_OUTSIDE_CAS)
	/* Planted bug (tests/mutation): the successor is computed from a
	 * snapshot read once, outside the loop. */
	void *base = tally__snap_load(&r->snap);
#endif

	unsigned backoff = TALLY__BACKOFF_MIN;

	*installed = false;
	for (;;) {
		void *old = tally__snap_load(&r->snap);
		bool install = false;
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
		rolls->n = 0;
#if defined(TALLY_MUTATE_READ_OUTSIDE_CAS)
		rc = step(s, kind, base != &s->tombstone ? base : old, next,
			  args, rolls, &install);
#else
		rc = step(s, kind, old, next, args, rolls, &install);
#endif
		if (rc < 0 || !install)
			return rc;
		set_version(next, get_version(old) + 1);
		if (tally__snap_cas(&r->snap, old, next)) {
			*installed = true;
			*version = get_version(next);
			tally__retire(t, old, tally__snap_size(type), type);
			tally__stat_add(&t->st.writes, 1);
			if (rolls->n != 0)
				tally__stat_add(&t->st.rolls, rolls->n);
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

int
tally__cas_loop(tally_store *s, struct tally__thread *t,
		struct tally__record **rp, const struct tally__probe *probe,
		unsigned kind, struct tally__args *args, void *next,
		struct tally__rolls *rolls, bool *installed, uint64_t *version)
{
	return cas_loop(s, t, rp, probe, kind, args, next, rolls, installed,
			version);
}

/*
 * Everything a write needs before it may change anything: a valid key, the
 * thread's record, room to retire `slots` objects and the successor
 * snapshot. Any failure here returns with nothing changed.
 */
static inline __attribute__((always_inline)) int
prepare(struct tally__op *op, unsigned slots, struct tally__thread **t,
	void **next, size_t *len, struct tally__probe *probe)
{
	int rc;

	if ((rc = tally__key_check(op->key, len)) != TALLY_OK)
		return rc;
	if ((rc = tally__thread_get(op->store, t)) != TALLY_OK)
		return rc;
	if ((rc = tally__reserve(*t, slots)) != TALLY_OK)
		return rc;
	if ((*next = tally__snap_alloc(*t, tally__snap_type(op->kind))) == NULL)
		return TALLY_ENOMEM;
	tally__probe_init(op->store, probe, op->key, *len, op->kind);
	return TALLY_OK;
}

int
tally__write(struct tally__op *op)
{
	tally_store *s = op->store;
	struct tally__thread *t;
	struct tally__probe probe;
	struct tally__record *r;
	struct tally__rolls rolls;
	enum tally__obj_type type = tally__snap_type(op->kind);
	bool installed = false;
	uint64_t version = 0;
	size_t len;
	void *next;
	int rc;

	if ((rc = prepare(op, 1, &t, &next, &len, &probe)) != TALLY_OK)
		return rc;
	/* Start fetching, for writing, the lines this write will change: the
	 * successor and (the likely) record. Under contention both are held
	 * by another core; their transfers then overlap each other and the
	 * clock read instead of following one another. */
	tally__prefetch_w(next);
	tally__lcache_prefetch(t, &probe);
	rolls.n = 0; /* notes are filled only when n grows */
	tally__now_for(s, &op->args);

	tally__section_begin(t);
	r = tally__lookup_cached(s, t, &probe);
	if (r == NULL)
		rc = TALLY_ENOENT;
	else
		rc = cas_loop(s, t, &r, &probe, op->kind, &op->args, next,
			      &rolls, &installed, &version);
	if (rc >= 0)
		view_of(op->kind, next, op->view);
	tally__section_end(t);

	if (!installed)
		tally__snap_free(t, next, type);
	else if (rolls.n != 0)
		tally__report(s, op->key, len, op->kind, cause_of(op->args.op),
			      &rolls, version, NULL, NULL);
	tally__maintain(t);
	return rc;
}

int
tally__read(struct tally__op *op)
{
	tally_store *s = op->store;
	struct tally__thread *t;
	struct tally__probe probe;
	struct tally__record *r;
	struct tally__rolls rolls;
	union tally__any_snap buf;
	bool install = false;
	size_t len;
	int rc;

	if ((rc = tally__key_check(op->key, &len)) != TALLY_OK)
		return rc;
	if ((rc = tally__thread_get(s, &t)) != TALLY_OK)
		return rc;
	/* get shows the snapshot as stored: it needs no clock. */
	if (op->args.op != TALLY__OP_GET)
		tally__now_for(s, &op->args);
	tally__probe_init(s, &probe, op->key, len, op->kind);

	tally__section_begin(t);
	r = tally__lookup_cached(s, t, &probe);
	rc = TALLY_ENOENT;
	while (r != NULL) {
		void *old = tally__snap_load(&r->snap);

		if (old == &s->tombstone) {
			struct tally__record *again = tally__lookup(s, &probe);

			r = again != r ? again : NULL;
			continue;
		}
		rolls.n = 0;
#if defined(TALLY_MUTATE_STALE_GET)
		/* Planted bug (tests/mutation): get serves the copy it made
		 * the last time this thread read this record. */
		if (op->args.op == TALLY__OP_GET && t->mutant_rec == r) {
			memcpy(&buf, &t->mutant_copy, sizeof buf);
			rc = TALLY_OK;
		} else {
			rc = step(s, op->kind, old, &buf, &op->args, &rolls,
				  &install);
			t->mutant_rec = r;
			memcpy(&t->mutant_copy, &buf, sizeof buf);
		}
#else
		rc = step(s, op->kind, old, &buf, &op->args, &rolls, &install);
#endif
		TALLY_ASSERT(!install);
		if (rc >= 0)
			view_of(op->kind, &buf, op->view);
		break;
	}
	tally__section_end(t);
	return rc;
}

int
tally__upsert(struct tally__op *op)
{
	tally_store *s = op->store;
	struct tally__thread *t;
	struct tally__probe probe;
	struct tally__record *r, *fresh = NULL;
	struct tally__rolls rolls;
	enum tally__obj_type type = tally__snap_type(op->kind);
	bool installed = false;
	uint64_t version = 0;
	size_t len, rec_size;
	void *next;
	int rc;

	/* Old snapshot, or up to two old maps when the insert grows it. */
	if ((rc = prepare(op, 3, &t, &next, &len, &probe)) != TALLY_OK)
		return rc;
	rolls.n = 0;
	op->args.now = tally__now(s);
	rec_size = tally__record_size(len);

	tally__section_begin(t);
	for (;;) {
		r = tally__lookup(s, &probe);
		if (r != NULL) {
			rc = tally__cas_loop(s, t, &r, &probe, op->kind,
					     &op->args, next, &rolls,
					     &installed, &version);
			if (rc != TALLY_ENOENT)
				break;
			/* Removed under us: create it. */
		}
		if (fresh == NULL) {
			fresh = tally__malloc(s, rec_size);
			if (fresh == NULL) {
				rc = TALLY_ENOMEM;
				break;
			}
			fresh->hash = probe.hash;
			fresh->kind = (uint8_t)op->kind;
			fresh->key_len = (uint8_t)len;
			memcpy(fresh->key, op->key, len);
			fresh->key[len] = '\0';
		}
		if (op->kind == TALLY_KIND_BUDGET)
			tally__budget_init(next, op->args.config, op->args.now);
		else
			tally__rl_init(next, op->args.config, op->args.now);
		fresh->snap = next;

		pthread_mutex_lock(&s->write_lock);
		if (tally__lookup(s, &probe) != NULL) {
			/* Created concurrently: replace its config instead. */
			pthread_mutex_unlock(&s->write_lock);
			continue;
		}
		version = s->next_generation++ << 32;
		set_version(next, version);
		rc = tally__map_insert(s, t, fresh);
		pthread_mutex_unlock(&s->write_lock);
		if (rc == TALLY_OK) {
			installed = true;
			fresh = NULL;
			rc = TALLY_CREATED;
		}
		break;
	}
	if (rc >= 0)
		view_of(op->kind, next, op->view);
	tally__section_end(t);

	if (fresh != NULL)
		tally__free(s, fresh, rec_size);
	if (!installed)
		tally__snap_free(t, next, type);
	else if (rolls.n != 0)
		tally__report(s, op->key, len, op->kind, TALLY_ROLL_INLINE,
			      &rolls, version, NULL, NULL);
	tally__maintain(t);
	return rc;
}

int
tally__remove(struct tally__op *op)
{
	tally_store *s = op->store;
	struct tally__thread *t;
	struct tally__probe probe;
	struct tally__record *r;
	enum tally__obj_type type = tally__snap_type(op->kind);
	size_t len;
	int rc;

	if ((rc = tally__key_check(op->key, &len)) != TALLY_OK)
		return rc;
	if ((rc = tally__thread_get(s, &t)) != TALLY_OK)
		return rc;
	/* The last snapshot, the record, and a map if removal rebuilds it. */
	if ((rc = tally__reserve(t, 3)) != TALLY_OK)
		return rc;
	tally__probe_init(s, &probe, op->key, len, op->kind);

	tally__section_begin(t);
	pthread_mutex_lock(&s->write_lock);
	r = tally__lookup(s, &probe);
	if (r == NULL) {
		rc = TALLY_ENOENT;
	} else {
		void *last = tally__snap_fas(&r->snap, &s->tombstone);

		TALLY_ASSERT(last != &s->tombstone);
		tally__map_remove(s, t, r);
		/* Before r is retired: lookup caches must drop it (see
		 * tally__lookup_cached). */
		tally__inc_uint_full(&s->removals);
		view_of(op->kind, last, op->view);
		tally__retire(t, last, tally__snap_size(type), type);
		tally__retire(t, r, tally__record_size(r->key_len),
			      TALLY__OBJ_RECORD);
		rc = TALLY_OK;
	}
	pthread_mutex_unlock(&s->write_lock);
	tally__section_end(t);
	tally__maintain(t);
	return rc;
}
