/*
 * Key hash. Keys are short strings (API key ids, team and model names), so
 * the hash reads eight bytes at a time, mixes each word with a multiply and a
 * fold of the 128-bit product, and finishes with a full avalanche so that
 * both the low bits (ck_hs bucket) and the high bits (ck_hs probe step) are
 * well distributed. The seed is per store, so bucket placement is not
 * predictable from outside the process.
 */
#include <string.h>

#include "hash.h"

#define TALLY__K0 0x9e3779b97f4a7c15ull
#define TALLY__K1 0xc2b2ae3d27d4eb4full
#define TALLY__K2 0x165667b19e3779f9ull

__extension__ typedef unsigned __int128 u128;

/* The mixing multiplies wrap modulo 2^64 on purpose (as base.h's). */
#if !defined(TALLY__WRAPS) && defined(__clang__)
#define TALLY__WRAPS __attribute__((no_sanitize("unsigned-integer-overflow")))
#elif !defined(TALLY__WRAPS)
#define TALLY__WRAPS
#endif

TALLY__WRAPS static inline uint64_t
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
read32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof v);
	return v;
}

/* A short key (1..7 bytes) as one word, without reading past its end:
 * two overlapping 4-byte reads, or three single bytes. The length is mixed
 * in separately, so overlaps cannot make two keys collide. */
static inline uint64_t
read_short(const unsigned char *p, size_t n)
{
	if (n >= 4)
		return read32(p) << 32 | read32(p + n - 4);
	return (uint64_t)p[0] << 16 | (uint64_t)p[n / 2] << 8 | p[n - 1];
}

TALLY__WRAPS uint64_t
tally__hash(const void *key, size_t len, uint64_t seed)
{
	const unsigned char *p = key;
	const unsigned char *end = p + len;
	uint64_t h = seed ^ fold_mul(len + TALLY__K2, TALLY__K0);

	if (len < 8) {
		if (len > 0)
			h = fold_mul(h ^ read_short(p, len), TALLY__K1);
	} else {
		while (end - p > 16) {
			h = fold_mul(h ^ read64(p) ^ TALLY__K1,
				     read64(p + 8) ^ TALLY__K0);
			p += 16;
		}
		/* The last 9..16 bytes as two words, the first one
		 * overlapping what was already mixed when needed. */
		if (end - p > 8)
			h = fold_mul(h ^ read64(p) ^ TALLY__K1,
				     read64(end - 8) ^ TALLY__K0);
		else
			h = fold_mul(h ^ read64(end - 8), TALLY__K1);
	}

	/* Final avalanche (xor-shift-multiply). */
	h ^= h >> 32;
	h *= TALLY__K2;
	h ^= h >> 29;
	h *= TALLY__K1;
	h ^= h >> 32;
	return h;
}

TALLY__WRAPS uint64_t
tally__hash_wide(const void *data, size_t len, uint64_t seed)
{
	const unsigned char *p = data;
	uint64_t a = seed ^ fold_mul(len + TALLY__K2, TALLY__K0);
	uint64_t b = seed ^ fold_mul(len + TALLY__K0, TALLY__K1);

	while (len > 32) {
		a = fold_mul(a ^ read64(p) ^ TALLY__K1,
			     read64(p + 8) ^ TALLY__K0);
		b = fold_mul(b ^ read64(p + 16) ^ TALLY__K0,
			     read64(p + 24) ^ TALLY__K1);
		p += 32;
		len -= 32;
	}
	/* The last 1..32 bytes (or all of a short input) and both lanes
	 * through the key hash, whose avalanche finishes the word. */
	return tally__hash(p, len, a ^ fold_mul(b, TALLY__K2));
}
