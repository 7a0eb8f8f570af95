/*
 * Records, keys and lookup probes (no ck: the map itself is in store.h).
 *
 * A record never changes after it is published, except its snapshot
 * pointer. Records live in cells of per-store slabs (store.c): a cell is
 * recycled for another record only after a grace period, so a thread that
 * found a record inside its epoch section may read its key and CAS its
 * pointer until the section ends.
 *
 * `snap` comes first: the map's compare callback tells a lookup probe from
 * a record by the first pointer-sized field (see store.c). It is the
 * store's tombstone while the record is not live (removed, or being
 * created: it is set before the record enters the map), and NULL in a
 * cell never used; a record found through the map or a valid lookup-cache
 * entry is never NULL, so the engine tests for the tombstone alone.
 */
#ifndef TALLY_RECORD_H
#define TALLY_RECORD_H

#include "base.h"
#include "hash.h"

struct tally__record {
	void *snap; /* atomic */
	union {
		unsigned long hash;              /* live: memoized */
		struct tally__record *free_next; /* in a free list */
	};
	uint64_t incarnation;
	uint8_t kind;
	uint8_t key_len;
	char key[]; /* key_len bytes and a NUL */
};

/* Bytes a record with a key of len bytes uses: a 26-byte header, the key
 * and a NUL (a 36-byte key: 63 bytes, one 64-byte cell). */
static inline size_t
tally__record_size(size_t len)
{
	return offsetof(struct tally__record, key) + len + 1;
}

/* Cells come in sizes of 16-byte steps, from 32 to 288 bytes. */
#define TALLY__CELL_GRAIN 16u
#define TALLY__CELL_MIN 32u
#define TALLY__CELL_CLASSES                                                    \
	((((unsigned)offsetof(struct tally__record, key) + TALLY_KEY_MAX + 1 + \
	   TALLY__CELL_GRAIN - 1) /                                            \
	  TALLY__CELL_GRAIN) -                                                 \
	 TALLY__CELL_MIN / TALLY__CELL_GRAIN + 1)

static inline unsigned
tally__cell_class(size_t key_len)
{
	size_t need = tally__record_size(key_len);

	if (need < TALLY__CELL_MIN)
		need = TALLY__CELL_MIN;
	return (unsigned)((need + TALLY__CELL_GRAIN - 1) / TALLY__CELL_GRAIN -
			  TALLY__CELL_MIN / TALLY__CELL_GRAIN);
}

static inline size_t
tally__cell_size(unsigned cls)
{
	return TALLY__CELL_MIN + (size_t)cls * TALLY__CELL_GRAIN;
}

struct tally__probe {
	const void *tag; /* &tally__probe_tag */
	unsigned long hash;
	const char *key;
	uint8_t kind;
	uint8_t key_len;
};

/* Validates a key of len bytes: TALLY_OK, TALLY_EINVAL (NULL) or
 * TALLY_EKEY (empty or too long). */
static inline int
tally__key_check_n(const char *key, size_t len)
{
	if (key == NULL)
		return TALLY_EINVAL;
	if (len == 0 || len > TALLY_KEY_MAX)
		return TALLY_EKEY;
	return TALLY_OK;
}

/* Validates and measures a NUL-terminated key. */
static inline int
tally__key_check(const char *key, size_t *len)
{
	const char *nul;

	if (key == NULL)
		return TALLY_EINVAL;
	/* memchr stops at the first match (C11 7.24.5.1): it never reads
	 * past the key's terminator. */
	nul = memchr(key, '\0', TALLY_KEY_MAX + 1);
	if (nul == NULL || nul == key)
		return TALLY_EKEY;
	*len = (size_t)(nul - key);
	return TALLY_OK;
}

/* Tells a lookup probe from a record in the map's compare callback. */
extern const char tally__probe_tag;

/* A probe that matches one record by its address (hold handles): the
 * compare callback never dereferences `record`. */
extern const char tally__ptr_probe_tag;

struct tally__ptr_probe {
	const void *tag;  /* &tally__ptr_probe_tag */
	uintptr_t record; /* an address, only compared */
};

static inline unsigned long
tally__key_hash(const char *key, size_t len, unsigned kind, uint64_t seed)
{
	return (unsigned long)tally__hash(key, len, seed ^ kind);
}

static inline void
tally__probe_init(struct tally__probe *p, uint64_t seed, const char *key,
		  size_t len, unsigned kind)
{
	p->tag = &tally__probe_tag;
	p->key = key;
	p->kind = (uint8_t)kind;
	p->key_len = (uint8_t)len;
	p->hash = tally__key_hash(key, len, kind, seed);
}

/* Whether two keys of n bytes (1..TALLY_KEY_MAX) are equal: eight bytes
 * at a time, the last word overlapping, without a call to memcmp. */
static inline bool
tally__key_eq(const char *a, const char *b, size_t n)
{
	uint64_t x, y;
	uint32_t u, v;
	size_t i;

	if (n >= 8) {
		for (i = 0; i + 8 < n; i += 8) {
			memcpy(&x, a + i, 8);
			memcpy(&y, b + i, 8);
			if (x != y)
				return false;
		}
		memcpy(&x, a + n - 8, 8);
		memcpy(&y, b + n - 8, 8);
		return x == y;
	}
	if (n >= 4) {
		memcpy(&u, a, 4);
		memcpy(&v, b, 4);
		if (u != v)
			return false;
		memcpy(&u, a + n - 4, 4);
		memcpy(&v, b + n - 4, 4);
		return u == v;
	}
	for (i = 0; i < n; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

static inline bool
tally__record_matches(const struct tally__record *r,
		      const struct tally__probe *p)
{
	return r->kind == p->kind && r->key_len == p->key_len &&
	       tally__key_eq(r->key, p->key, p->key_len);
}

#endif /* TALLY_RECORD_H */
