/*
 * The libFuzzer entry point every harness in tests/fuzz defines; replay.c
 * calls it for each stored input in ordinary test builds.
 */
#ifndef TALLY_TEST_FUZZ_H
#define TALLY_TEST_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif /* TALLY_TEST_FUZZ_H */
