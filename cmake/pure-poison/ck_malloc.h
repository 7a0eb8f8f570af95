/* The pure layer of tally (src/base.h) builds without Concurrency Kit and
 * without threads: this directory comes first on its include path. */
#error "a pure-layer file includes <ck_malloc.h>"
