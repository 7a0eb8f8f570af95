/*
 * The key hash (hash.c). Pure; bench/ shares it so that its baselines hash
 * exactly as tally does.
 */
#ifndef TALLY_HASH_H
#define TALLY_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t tally__hash(const void *key, size_t len, uint64_t seed);

/* The same kind of hash for longer data (hold handles: hundreds of
 * bytes), in two independent lanes of 16 bytes, so that the multiplies
 * overlap instead of waiting on each other. Not the key hash. */
uint64_t tally__hash_wide(const void *data, size_t len, uint64_t seed);

#endif /* TALLY_HASH_H */
