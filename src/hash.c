/*
 * Key hash. Keys are short strings (API key ids, team and model names), so
 * the hash reads eight bytes at a time, mixes each word with a multiply and a
 * fold of the 128-bit product, and finishes with a full avalanche so that
 * both the low bits (ck_hs bucket) and the high bits (ck_hs probe step) are
 * well distributed. The seed is per store, so bucket placement is not
 * predictable from outside the process.
 */
#include <string.h>

#include "internal.h"

#define TALLY__K0 0x9e3779b97f4a7c15ull
#define TALLY__K1 0xc2b2ae3d27d4eb4full
#define TALLY__K2 0x165667b19e3779f9ull

__extension__ typedef unsigned __int128 u128;

static inline uint64_t
fold_mul(uint64_t a, uint64_t b)
{
	u128 p = (u128)a * b;

	return (uint64_t)p ^ (uint64_t)(p >> 64);
}

static inline uint64_t
read64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof v);
	return v;
}

static inline uint64_t
read_tail(const unsigned char *p, size_t n)
{
	uint64_t v = 0;

	/* n in 1..7: assemble little-endian without reading past the end. */
	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

uint64_t
tally__hash(const void *key, size_t len, uint64_t seed)
{
	const unsigned char *p = key;
	uint64_t h = seed ^ fold_mul(len + TALLY__K2, TALLY__K0);

	while (len >= 16) {
		h = fold_mul(h ^ read64(p) ^ TALLY__K1,
			     read64(p + 8) ^ TALLY__K0);
		p += 16;
		len -= 16;
	}
	if (len >= 8) {
		h = fold_mul(h ^ read64(p), TALLY__K1);
		p += 8;
		len -= 8;
	}
	if (len > 0)
		h = fold_mul(h ^ read_tail(p, len), TALLY__K0);

	/* Final avalanche (xor-shift-multiply). */
	h ^= h >> 32;
	h *= TALLY__K2;
	h ^= h >> 29;
	h *= TALLY__K1;
	h ^= h >> 32;
	return h;
}
