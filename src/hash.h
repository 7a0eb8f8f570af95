/*
 * The key hash (hash.c). Pure; bench/ shares it so that its baselines hash
 * exactly as tally does.
 */
#ifndef TALLY_HASH_H
#define TALLY_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t tally__hash(const void *key, size_t len, uint64_t seed);

#endif /* TALLY_HASH_H */
