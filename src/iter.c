/*
 * The iterator: a cursor over the store's record cells.
 *
 * Why it walks cells and not the map. ck_hs is open addressing: a record
 * sits somewhere along its probe sequence, a grow or rebuild places every
 * record anew in a new array, and ck_hs_next_spmc skips any run of empty
 * slots in one call. A cursor into the map could neither resume after a
 * rebuild (Redis's dictScan relies on chaining, where a bucket index names
 * the same records in a table twice the size) nor bound the work of one
 * step. Records, though, never move: each lives in one cell of a slab
 * (store.c) from its creation to its removal, slabs are chained in the
 * order they were cut, and no slab is freed before the store. So the
 * cursor is (slab, cell): it stays valid across sections, across map
 * growth and across any number of creations and removals.
 *
 * Invariant. A cell is live (its snapshot pointer neither NULL nor the
 * tombstone) only between the creation that filled it (fields written,
 * then the pointer stored with release) and the remove that tombstoned it,
 * and it is filled again only after a grace period that began after that
 * remove. So a record whose live pointer this thread loaded inside its
 * section keeps its key, kind and incarnation until the section ends, and
 * its snapshot stays readable: the same rule as a map lookup.
 *
 * Coverage. A record live for the whole walk sits in a cell the cursor
 * reaches (cells are visited in order, the chain only grows at its end) and
 * is live when it is reached: returned exactly once. A record created
 * during the walk is returned if its cell lies ahead of the cursor, and
 * removed records are not returned after their removal.
 */
#include "iter.h"

struct tally__record *
tally__iter_next(tally_store *s, struct tally__iter *it, void **snap)
{
	if (it->done)
		return NULL;
	if (it->slab == NULL) {
		it->slab = tally__ptr_load((void **)&s->cslabs);
		it->next = 0;
		if (it->slab == NULL) {
			it->done = true;
			return NULL;
		}
	}
	while (it->left > 0) {
		struct tally__cslab *b = it->slab;
		struct tally__record *r;
		void *p;

		if (it->next == b->ncells) {
			struct tally__cslab *n =
				tally__ptr_load((void **)&b->next);

			if (n == NULL) {
				it->done = true;
				return NULL;
			}
			it->slab = n;
			it->next = 0;
			continue;
		}
		it->left--;
		r = (struct tally__record *)(void *)(b->cells +
						     (size_t)it->next *
							     b->cell_size);
		it->last = it->next++;
		p = tally__ptr_load(&r->snap);
		if (tally__live(s, p)) {
			*snap = p;
			return r;
		}
	}
	return NULL;
}
