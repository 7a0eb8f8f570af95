/*
 * The engine's out-of-line parts (the CAS loop itself is in engine.h):
 * the loop for sweep and upsert, roll reports, and the structural writes.
 *
 * Structural writes (creating a record, removing one) serialize on the
 * map's write lock and run outside epoch sections: while the lock is held
 * no record can leave the map and the map cannot be replaced, so the
 * records they find stay valid, and every allocation they make (a record
 * cell, a grown or rebuilt map) happens outside sections.
 *
 * Creation. The new record's cell is filled while its snapshot pointer is
 * the tombstone, inserted into the map, and only then made live by a
 * release store of its first snapshot: a lookup that finds it before that
 * sees a record that is not live yet (ENOENT, the create has not happened),
 * and the iterator never sees a half-built record. Its first version is the
 * store's version floor, which every remove raises above the last version
 * of the record it removes, so versions never repeat for a key; its
 * incarnation is the store's next.
 */
#include <string.h>

#include "engine.h"

void
tally__view_out_old(const struct tally__kind *k, const void *snap,
		    uint64_t incarnation, void *view)
{
	uint64_t full[512 / sizeof(uint64_t)];
	size_t size;

	TALLY_ASSERT(k->view_size <= sizeof full);
	if (k->view_old != NULL) {
		k->view_old(snap, incarnation, view);
		return;
	}
	memcpy(&size, view, sizeof size);
	k->view(snap, incarnation, full);
	memcpy((char *)view + sizeof size, (char *)full + sizeof size,
	       size - sizeof size);
}

int
tally__cas_loop(tally_store *s, struct tally__thread *t,
		struct tally__record **rp, const struct tally__probe *probe,
		const struct tally__kind *k, struct tally__args *args,
		void *next, struct tally__rolls *rolls, bool *installed,
		uint64_t *version)
{
	return tally__cas_loop_inline(s, t, rp, probe, k, k->quick, args, next,
				      rolls, installed, version);
}

void
tally__report(tally_store *s, const char *key, size_t key_len, unsigned kind,
	      uint64_t incarnation, tally_roll_cause cause,
	      const struct tally__rolls *rolls, uint64_t version,
	      tally_roll_fn *extra, void *extra_ctx)
{
	/* The caller's key (a _n key) need not end in a NUL; the event's
	 * does. Rolls are rare: the copy costs nothing on the hot path. */
	char copy[TALLY_KEY_MAX + 1];

	memcpy(copy, key, key_len);
	copy[key_len] = '\0';
	if (rolls->exp.holds != 0 && s->on_expire != NULL) {
		tally_expiry ev;

		ev.size = sizeof ev;
		ev.key = copy;
		ev.key_len = key_len;
		ev.kind = kind;
		ev.holds = rolls->exp.holds;
		ev.amount[0] = rolls->exp.amount[0];
		ev.amount[1] =
			kind == TALLY_KIND_BUDGET ? 0 : rolls->exp.amount[1];
		ev.slot_end = rolls->exp.slot_end;
		ev.version = version;
		ev.incarnation = incarnation;
		s->on_expire(&ev, s->on_expire_ctx);
	}
	for (unsigned i = 0; i < rolls->n; i++) {
		const struct tally__roll_note *n = &rolls->note[i];
		tally_roll ev;

		ev.size = sizeof ev;
		ev.key = copy;
		ev.key_len = key_len;
		ev.kind = kind;
		ev.counter = n->counter;
		ev.cause = (uint32_t)cause;
		ev.usage_before = n->usage_before;
		ev.old_window_start = n->old_window_start;
		ev.new_window_start = n->new_window_start;
		ev.version = version;
		ev.incarnation = incarnation;
		if (s->on_roll != NULL)
			s->on_roll(&ev, s->on_roll_ctx);
		if (extra != NULL)
			extra(&ev, extra_ctx);
	}
}

/*
 * Creates the record of op's key with `next` as its first snapshot
 * (write_lock held, key absent). On TALLY_CREATED the view is filled and
 * next belongs to the record.
 */
static int
create_locked(struct tally__op *op, struct tally__thread *t,
	      const struct tally__probe *probe, void *next)
{
	tally_store *s = op->store;
	const struct tally__kind *k = op->kind;
	unsigned cls = tally__cell_class(op->key_len);
	struct tally__record *r;
	int rc;

	if (s->next_incarnation == UINT64_MAX)
		return TALLY_EOVERFLOW;
	if ((r = tally__cell_alloc(s, cls)) == NULL)
		return TALLY_ENOMEM;
	/* An atomic store: iterators read the pointer of every cell. */
	tally__ptr_store(&r->snap, &s->tombstone);
	r->hash = probe->hash;
	r->incarnation = s->next_incarnation;
	r->kind = k->id;
	r->key_len = (uint8_t)op->key_len;
	memcpy(r->key, op->key, op->key_len);
	r->key[op->key_len] = '\0';
	k->init(next, op->args.config, op->args.now);
	tally__snap_set_version(next, s->version_floor);

	if ((rc = tally__map_insert(s, t, r)) != TALLY_OK) {
		/* Never in the map, never live: the cell may be reused. */
		r->free_next = s->cell_spare[cls];
		s->cell_spare[cls] = r;
		return rc;
	}
	s->next_incarnation++;
	/* next is still ours: nobody else can reach it before the store. */
	tally__view_out(k, next, r->incarnation, op->view);
	tally__ptr_store(&r->snap, next);
	return TALLY_CREATED;
}

int
tally__upsert(struct tally__op *op)
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

	/* The old snapshot, or an old map when the insert grows it. */
	if ((rc = tally__prepare(op, 3, &t, &next, &probe)) != TALLY_OK)
		return rc;
	tally__notes_clear(&rolls);
	op->args.now = tally__now(s);

	for (;;) {
		/* Replace the config of the record if there is one. */
		tally__section_begin(t);
		r = tally__lookup(s, &probe);
		rc = TALLY_ENOENT;
		if (r != NULL) {
			rc = tally__cas_loop(s, t, &r, &probe, k, &op->args,
					     next, &rolls, &installed,
					     &version);
			incarnation = r->incarnation;
			if (rc >= 0)
				tally__view_out(k, next, incarnation, op->view);
		}
		tally__section_end(t);
		if (rc != TALLY_ENOENT)
			break;

		/* None (or removed under us): create it. */
		pthread_mutex_lock(&s->write_lock);
		if (tally__lookup(s, &probe) != NULL) {
			/* Created concurrently: replace its config instead. */
			pthread_mutex_unlock(&s->write_lock);
			continue;
		}
		tally__notes_clear(&rolls);
		rc = create_locked(op, t, &probe, next);
		pthread_mutex_unlock(&s->write_lock);
		installed = rc == TALLY_CREATED;
		break;
	}

	if (!installed)
		tally__snap_free(t, next, k->id);
	else if (tally__notes_any(&rolls))
		tally__report(s, op->key, op->key_len, k->id, incarnation,
			      TALLY_ROLL_INLINE, &rolls, version, NULL, NULL);
	tally__maintain(t);
	return rc;
}

int
tally__remove(struct tally__op *op)
{
	tally_store *s = op->store;
	const struct tally__kind *k = op->kind;
	struct tally__thread *t;
	struct tally__probe probe;
	struct tally__record *r;
	int rc;

	if ((rc = tally__thread_get(s, &t)) != TALLY_OK)
		return rc;
	/* The last snapshot, the record, and a map if removal rebuilds it. */
	if ((rc = tally__reserve(t, 3)) != TALLY_OK)
		return rc;
	tally__probe_init(&probe, s->seed, op->key, op->key_len, k->id);

	pthread_mutex_lock(&s->write_lock);
	r = tally__lookup(s, &probe);
	if (r == NULL) {
		rc = TALLY_ENOENT;
	} else {
		/* Ours from here: nobody else can retire it. */
		void *last = tally__ptr_fas(&r->snap, &s->tombstone);
		uint64_t v = tally__snap_version(last);

		TALLY_ASSERT(tally__live(s, last));
		tally__map_remove(s, t, r);
		/* Before r is retired: lookup caches must drop it. A full
		 * barrier, which also orders the unlinking before the epoch
		 * read of the retirements below. */
		tally__lcache_invalidate(s, r);
		if (v >= s->version_floor)
			s->version_floor = v == UINT64_MAX ? v : v + 1;
		tally__view_out(k, last, r->incarnation, op->view);
		tally__retire(t, last, k->snap_size, tally__snap_type(k->id));
		tally__retire(t, r, tally__record_size(r->key_len),
			      TALLY__OBJ_RECORD);
		rc = TALLY_OK;
	}
	pthread_mutex_unlock(&s->write_lock);
	tally__maintain(t);
	return rc;
}
