/*
 * Export: every record of a store, one snapshot each, without stopping it.
 *
 * The walk is the iterator's (iter.h): a cursor over record cells, which
 * survives map growth, rebuilds and churn. Each record is copied (key,
 * kind, incarnation, the view of the snapshot loaded once) inside its own
 * epoch section, which looks at no more than TALLY__ITER_CHUNK cells, and
 * handed to the caller's function after the section ends: the callback
 * may take as long as it likes, or call the store, and reclamation waits
 * for one record at most, never for the walk.
 *
 * The public cursor holds the iterator's two words (the slab and the next
 * cell in it) and the store's id. A slab lives as long as its store, but
 * the caller owns the cursor's bytes: before it is used, the slab must be
 * one of this store's (found on its chain, which only grows) and the cell
 * index within it, so a changed cursor is TALLY_EINVAL, never a wild read.
 */
#include <string.h>

#include "engine.h"
#include "iter.h"

/* The cursor's position as an iterator, or false if it is not one of s's. */
static bool
cursor_in(tally_store *s, const tally_cursor *c, struct tally__iter *it)
{
	struct tally__cslab *b;

	tally__iter_init(it);
	if (c->store != 0 && c->store != s->store_id)
		return false;
	if (c->at[0] == 0) {
		/* Not started, or the end of a store that had no cell. */
		it->done = c->done;
		return c->at[1] == 0;
	}
	for (b = tally__ptr_load((void **)&s->cslabs); b != NULL;
	     b = tally__ptr_load((void **)&b->next))
		if ((uintptr_t)b == c->at[0])
			break;
	if (b == NULL || c->at[1] > b->ncells)
		return false;
	it->slab = b;
	it->next = (uint32_t)c->at[1];
	it->done = c->done;
	return true;
}

static void
cursor_out(tally_store *s, const struct tally__iter *it, tally_cursor *c)
{
	c->store = s->store_id;
	c->at[0] = (uintptr_t)it->slab;
	c->at[1] = it->slab != NULL ? it->next : 0;
	c->done = it->done;
}

TALLY_API int
tally_export(tally_store *s, tally_cursor *cursor, size_t max,
	     tally_record_fn *fn, void *ctx)
{
	char key[TALLY_KEY_MAX + 1];
	struct tally__thread *t;
	struct tally__iter it;
	tally_record rec;
	size_t given = 0;
	int rc;

	if (s == NULL || cursor == NULL || fn == NULL ||
	    !cursor_in(s, cursor, &it))
		return TALLY_EINVAL;
	if ((rc = tally__thread_get(s, &t)) != TALLY_OK)
		return rc;
	while (!it.done && (max == 0 || given < max)) {
		const struct tally__kind *k;
		struct tally__record *r;
		void *snap;

		memset(&rec, 0, sizeof rec);
		rec.size = sizeof rec;
		rec.budget.size = sizeof rec.budget;
		rec.ratelimit.size = sizeof rec.ratelimit;
		tally__section_begin(t);
		tally__iter_chunk(&it, TALLY__ITER_CHUNK);
		r = tally__iter_next(s, &it, &snap);
		if (r != NULL) {
			k = tally__kind_of(r->kind);
			rec.kind = k->id;
			rec.key_len = r->key_len;
			memcpy(key, r->key, (size_t)r->key_len + 1);
			k->view(snap, r->incarnation,
				k->id == TALLY_KIND_BUDGET
					? (void *)&rec.budget
					: (void *)&rec.ratelimit);
		}
		tally__section_end(t);
		if (r == NULL)
			continue; /* a chunk of dead cells, or the end */
		/* Past this record before fn runs: fn's stop keeps it given. */
		cursor_out(s, &it, cursor);
		rec.key = key;
		given++;
		if ((rc = fn(ctx, &rec)) != 0) {
			tally__maintain(t);
			return rc;
		}
	}
	cursor_out(s, &it, cursor);
	tally__maintain(t);
	return TALLY_OK;
}
