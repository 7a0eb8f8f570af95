/*
 * The per-thread lookup cache (struct in thread.h).
 *
 * Invariant: an entry is used only inside an epoch section, and only while
 * its record cannot have been recycled since the entry was filled. Every
 * remove bumps the removal count of its record's stripe (a full barrier)
 * after it unlinks the record and before it retires it. A lookup reads the
 * stripe's count inside its section; an entry filled under an older count
 * is ignored. So if the count a lookup reads equals the entry's, no record
 * of that stripe was retired before the lookup's section began (the count
 * would have moved first), and a record retired later cannot be freed, let
 * alone recycled, before the section ends: the entry's record is either
 * still live or a tombstone the CAS loop handles. The count an entry keeps
 * is the one read before the map lookup that filled it, so a remove that
 * races with the fill invalidates it too. A remove invalidates only its
 * stripe, 1/256 of each thread's cache; a hit saves the ck_hs probe, the
 * costliest part of a lookup.
 */
#ifndef TALLY_LCACHE_H
#define TALLY_LCACHE_H

#include "store.h"

static inline unsigned
tally__lcache_stripe(unsigned long hash)
{
	return (unsigned)(hash & (TALLY__LCACHE_STRIPES - 1));
}

static inline bool
tally__lcache_match(const struct tally__lcache_ent *e,
		    const struct tally__probe *p, unsigned gen)
{
	const struct tally__record *r = e->r;

	return r != NULL && e->gen == gen && e->hash == (uint32_t)p->hash &&
	       tally__record_matches(r, p);
}

/* Outside a section: a hint only. The entry may name a record that is
 * being recycled; a prefetch never faults and reads nothing. */
static inline void
tally__lcache_prefetch(struct tally__thread *t, const struct tally__probe *p)
{
	struct tally__lcache_ent *set =
		t->lcache[p->hash & (TALLY__LCACHE_SETS - 1)];

	if (set[0].hash == (uint32_t)p->hash)
		tally__prefetch_w(set[0].r);
}

/* Map lookup through the thread's cache; inside an epoch section. */
TALLY__HOT struct tally__record *
tally__lookup_cached(tally_store *s, struct tally__thread *t,
		     const struct tally__probe *p)
{
	unsigned gen =
		tally__load_uint(&s->lc_gen[tally__lcache_stripe(p->hash)]);
	struct tally__lcache_ent *set =
		t->lcache[p->hash & (TALLY__LCACHE_SETS - 1)];
	struct tally__record *r;

	if (tally__lcache_match(&set[0], p, gen))
		return set[0].r;
	if (tally__lcache_match(&set[1], p, gen))
		return set[1].r;
	r = tally__lookup(s, p);
	if (r != NULL) {
		/* The newest entry in way 0, the one before it in way 1. */
		set[1] = set[0];
		set[0].r = r;
		set[0].hash = (uint32_t)p->hash;
		set[0].gen = gen;
	}
	return r;
}

/*
 * The record at address `want` whose hash is `hash`, if it is in the map
 * (a hold handle's record), through the thread's cache; inside an epoch
 * section. `want` is only compared, never dereferenced: it may be stale.
 */
static inline struct tally__record *
tally__lookup_ptr_cached(tally_store *s, struct tally__thread *t,
			 uintptr_t want, unsigned long hash)
{
	unsigned gen = tally__load_uint(&s->lc_gen[tally__lcache_stripe(hash)]);
	struct tally__lcache_ent *set =
		t->lcache[hash & (TALLY__LCACHE_SETS - 1)];
	struct tally__ptr_probe pp;
	struct tally__record *r;

	for (unsigned w = 0; w < 2; w++)
		if ((uintptr_t)set[w].r == want && want != 0 &&
		    set[w].gen == gen && set[w].hash == (uint32_t)hash)
			return set[w].r;
	pp.tag = &tally__ptr_probe_tag;
	pp.record = want;
	r = ck_hs_get(&s->hs, hash, &pp);
	if (r != NULL)
		tally__tsan_acquire(r);
	return r;
}

/* A remove's invalidation of r's stripe, before r is retired. */
static inline void
tally__lcache_invalidate(tally_store *s, const struct tally__record *r)
{
	tally__inc_uint_full(&s->lc_gen[tally__lcache_stripe(r->hash)]);
}

#endif /* TALLY_LCACHE_H */
