/*
 * A cursor over every record of a store that does a bounded amount of work
 * per epoch section (iter.c). Sweep walks the store with it; export,
 * metrics and fleet sync are meant to.
 *
 * Use:
 *
 *	struct tally__iter it;
 *
 *	tally__iter_init(&it);
 *	while (!it.done) {
 *		tally__section_begin(t);
 *		tally__iter_chunk(&it, TALLY__ITER_CHUNK);
 *		while ((r = tally__iter_next(s, &it, &snap)) != NULL)
 *			... r and snap are safe until the section ends ...
 *		tally__section_end(t);
 *		... deliver what the chunk found, outside the section ...
 *	}
 *
 * Guarantees: every record live for the whole walk is returned exactly
 * once; a record created or removed during it is returned at most once;
 * the cursor needs no lock, survives map growth and rebuilds (it does not
 * walk the map), and holds nothing across sections but a pointer to a
 * slab, which lives as long as the store. A chunk looks at most `cells`
 * cells, live or not.
 */
#ifndef TALLY_ITER_H
#define TALLY_ITER_H

#include "store.h"

/* Cells per chunk: 256 cells of 64 bytes are 16 KiB of sequential reads,
 * a few microseconds inside one section. */
#define TALLY__ITER_CHUNK 256u

struct tally__iter {
	struct tally__cslab *slab; /* NULL: not started */
	uint32_t next;             /* the next cell of slab to look at */
	uint32_t last;             /* the cell of the last record returned */
	unsigned left;             /* cells this chunk may still look at */
	bool done;
};

static inline void
tally__iter_init(struct tally__iter *it)
{
	memset(it, 0, sizeof *it);
}

/* Starts a chunk of at most `cells` cells; inside a section. */
static inline void
tally__iter_chunk(struct tally__iter *it, unsigned cells)
{
	it->left = cells;
}

/* Inside a section: the next live record and its snapshot, or NULL at the
 * end of the chunk or of the walk (then it->done). */
struct tally__record *tally__iter_next(tally_store *s, struct tally__iter *it,
				       void **snap);

/* Ends the chunk so that the next one starts with the record last
 * returned (which this chunk could not handle). */
static inline void
tally__iter_again(struct tally__iter *it)
{
	it->next = it->last;
	it->left = 0;
}

#endif /* TALLY_ITER_H */
