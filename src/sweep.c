/*
 * Sweep: roll every due window in the store.
 *
 * The sweep walks the store with the iterator (iter.h) in chunks of
 * TALLY__ITER_CHUNK cells, each inside its own epoch section, and rolls
 * each due record through the same CAS loop as every other write, with a
 * transition that rolls what is due and nothing else. A CAS that fails
 * because a write (which rolls inline) got there first re-reads the record
 * and finds nothing due: the sweep's roll is a no-op, and two sweepers
 * produce one roll per window.
 *
 * No allocation happens inside a section: one successor per kind is
 * allocated before a chunk, and a chunk that meets a due record with no
 * successor ready ends there; the next one starts with that record. Roll
 * reports (with a copy of the key: the record may be recycled once the
 * section ends) are delivered after the section, so a slow listener never
 * holds back reclamation. Peak time inside one section: one chunk, a few
 * microseconds, not the whole walk.
 */
#include <string.h>

#include "engine.h"
#include "iter.h"

/* Records rolled per chunk at most: one successor per kind. */
#define SWEEP_REPORTS (TALLY__KIND_END - 1)

struct report {
	char key[TALLY_KEY_MAX + 1];
	size_t key_len;
	unsigned kind;
	uint64_t incarnation;
	uint64_t version;
	struct tally__rolls rolls;
};

TALLY_API int
tally_sweep(tally_store *s, tally_roll_fn *cb, void *ctx, size_t *rolled)
{
	struct tally__thread *t;
	struct tally__iter it;
	struct report rep[SWEEP_REPORTS];
	void *succ[TALLY__KIND_END] = {NULL};
	size_t count = 0;
	int64_t now;
	int rc;

	if (rolled != NULL)
		*rolled = 0;
	if (s == NULL)
		return TALLY_EINVAL;
	if ((rc = tally__thread_get(s, &t)) != TALLY_OK)
		return rc;
	now = tally__now(s);

	tally__iter_init(&it);
	while (!it.done) {
		struct tally__record *r;
		unsigned nrep = 0, need = 0;
		void *snap;

		if ((rc = tally__reserve(t, SWEEP_REPORTS)) != TALLY_OK)
			break;
		tally__section_begin(t);
		tally__iter_chunk(&it, TALLY__ITER_CHUNK);
		while ((r = tally__iter_next(s, &it, &snap)) != NULL) {
			const struct tally__kind *k = tally__kind_of(r->kind);
			struct report *p = &rep[nrep];
			struct tally__args args;
			bool installed;

			if (!k->due(snap, now))
				continue;
			if (succ[k->id] == NULL) {
				need = k->id;
				tally__iter_again(&it);
				break;
			}
			tally__args_init(&args, TALLY__OP_ROLL, now,
					 &s->hold_grain);
			(void)tally__cas_loop(s, t, &r, NULL, k, &args,
					      succ[k->id], &p->rolls,
					      &installed, &p->version);
			if (!installed)
				continue;
			succ[k->id] = NULL;
			p->kind = k->id;
			p->incarnation = r->incarnation;
			p->key_len = r->key_len;
			memcpy(p->key, r->key, p->key_len + 1);
			nrep++;
		}
		tally__section_end(t);

		for (unsigned i = 0; i < nrep; i++) {
			count += rep[i].rolls.n;
			tally__report(s, rep[i].key, rep[i].key_len,
				      rep[i].kind, rep[i].incarnation,
				      TALLY_ROLL_SWEEP, &rep[i].rolls,
				      rep[i].version, cb, ctx);
		}
		tally__maintain(t);
		if (need != 0 &&
		    (succ[need] = tally__snap_alloc(t, need)) == NULL) {
			rc = TALLY_ENOMEM;
			break;
		}
	}

	for (unsigned i = 1; i < TALLY__KIND_END; i++)
		if (succ[i] != NULL)
			tally__snap_free(t, succ[i], i);
	tally__maintain(t);
	if (rolled != NULL)
		*rolled = count;
	return rc;
}
