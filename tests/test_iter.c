/*
 * The iterator (src/iter.h): every record live for the whole walk is
 * returned exactly once, whatever happens between chunks (map growth,
 * creations and removals, cells recycled);
 * a chunk looks at no more cells than it was given; tally__iter_again
 * makes the next chunk start with the record it names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iter.h"
#include "support.h"

#define N 3000

struct walk {
	tally_store *s;
	struct tally__thread *t;
	struct tally__iter it;
	unsigned chunks;
};

static void
walk_init(struct walk *w, tally_store *s)
{
	memset(w, 0, sizeof *w);
	w->s = s;
	assert_int_equal(tally__thread_get(s, &w->t), TALLY_OK);
	tally__iter_init(&w->it);
}

/* One chunk of at most `cells` cells; the keys it returned go to seen[]
 * (their index, parsed from "k-NNNN"), counted. */
static unsigned
walk_chunk(struct walk *w, unsigned cells, unsigned *seen)
{
	struct tally__record *r;
	unsigned got = 0, left_before;
	void *snap;

	tally__section_begin(w->t);
	tally__iter_chunk(&w->it, cells);
	left_before = w->it.left;
	while ((r = tally__iter_next(w->s, &w->it, &snap)) != NULL) {
		unsigned idx = 0;

		assert_true(tally__live(w->s, snap));
		assert_int_equal(sscanf(r->key, "k-%u", &idx), 1);
		assert_true(idx < 2 * N);
		seen[idx]++;
		got++;
	}
	/* Never more cells than the chunk was given. */
	assert_true(left_before - w->it.left <= cells);
	tally__section_end(w->t);
	w->chunks++;
	return got;
}

static tally_store *
store_with(struct fake_clock *clock, struct test_alloc *a, size_t expected)
{
	tally_store_options o = test_options(clock, a);
	tally_store *s;

	o.expected_records = expected;
	assert_int_equal(tally_store_create(&s, &o), TALLY_OK);
	return s;
}

static void
create(tally_store *s, unsigned i)
{
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;
	char key[32];

	c.max_limit = 10;
	snprintf(key, sizeof key, "k-%04u", i);
	assert_int_equal(tally_budget_upsert(s, key, &c, NULL), TALLY_CREATED);
}

static void
remove_key(tally_store *s, unsigned i)
{
	char key[32];

	snprintf(key, sizeof key, "k-%04u", i);
	assert_int_equal(tally_budget_remove(s, key, NULL), TALLY_OK);
}

static void
test_empty_store(void **state)
{
	struct fake_clock clock = {T(2026, 1, 1, 0, 0, 0)};
	tally_store *s = store_with(&clock, NULL, 0);
	struct walk w;
	unsigned seen[1] = {0};

	(void)state;
	walk_init(&w, s);
	assert_int_equal(walk_chunk(&w, TALLY__ITER_CHUNK, seen), 0);
	assert_true(w.it.done);
	tally_store_destroy(s);
}

/* A quiet store: every record once, in chunks of every size. */
static void
test_every_record_once(void **state)
{
	struct fake_clock clock = {T(2026, 1, 1, 0, 0, 0)};
	struct test_alloc a = {0};
	tally_store *s = store_with(&clock, &a, 0);
	static const unsigned sizes[] = {1, 2, 7, 64, 256, 100000};

	(void)state;
	for (unsigned i = 0; i < N; i++)
		create(s, i);
	for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
		unsigned *seen = calloc(2 * N, sizeof *seen);
		struct walk w;
		unsigned total = 0;

		walk_init(&w, s);
		while (!w.it.done)
			total += walk_chunk(&w, sizes[z], seen);
		assert_int_equal(total, N);
		for (unsigned i = 0; i < N; i++)
			assert_int_equal(seen[i], 1);
		/* A chunk of c cells: at least cells/c chunks were needed. */
		assert_true((uint64_t)w.chunks * sizes[z] >= N);
		free(seen);
	}
	tally_store_destroy(s);
	assert_int_equal(a.live_blocks, 0);
}

/*
 * Between chunks: the map grows (3,000 new keys double it), records are
 * created (new keys, and keys removed before, in recycled cells) and
 * removed. Records that are
 * live for the whole walk ("stayers", even indexes) come exactly once;
 * records removed during the walk, or created during it, at most once.
 */
static void
test_walk_survives_growth_and_churn(void **state)
{
	struct fake_clock clock = {T(2026, 1, 1, 0, 0, 0)};
	struct test_alloc a = {0};
	tally_store *s = store_with(&clock, &a, 0);
	unsigned *seen = calloc(2 * N, sizeof *seen);
	bool *live = calloc(2 * N, sizeof *live);
	struct walk w;
	unsigned next_new = N, step = 0;
	tally_stats st = TALLY_STATS_INIT;

	(void)state;
	/* Odd indexes come and go: they leave free cells behind. */
	for (unsigned i = 0; i < N; i++) {
		create(s, i);
		live[i] = true;
	}
	for (unsigned i = 1; i < N; i += 4) {
		remove_key(s, i);
		live[i] = false;
	}
	walk_init(&w, s);
	while (!w.it.done) {
		(void)walk_chunk(&w, 16, seen);
		step++;
		/* Churn among the odd ones and brand-new keys. */
		for (unsigned j = 0; j < 8; j++) {
			unsigned i = (step * 8 + j) * 2 + 1;

			if (i >= N)
				break;
			if (live[i])
				remove_key(s, i);
			else
				create(s, i);
			live[i] = !live[i];
		}
		if (next_new < 2 * N) {
			/* Enough new keys to grow the map several times. */
			for (unsigned j = 0; j < 4 && next_new < 2 * N; j++) {
				create(s, next_new);
				live[next_new++] = true;
			}
		}
		/* Reclamation runs, so removed cells get recycled. */
		for (int k = 0; k < 8; k++)
			assert_int_equal(
				tally_budget_bump(s, "k-0000", 1, NULL),
				TALLY_OK);
	}
	for (unsigned i = 0; i < 2 * N; i++) {
		if (i < N && i % 2 == 0)
			assert_int_equal(seen[i], 1); /* a stayer */
		else
			assert_true(seen[i] <= 1);
	}
	assert_int_equal(tally_store_stats(s, &st), TALLY_OK);
	/* The map grew from its default size, and cells were recycled. */
	assert_true(st.records > N);
	tally_store_destroy(s);
	assert_int_equal(a.live_blocks, 0);
	free(seen);
	free(live);
}

/* tally__iter_again: the next chunk starts with the record named last. */
static void
test_again_revisits_the_last_record(void **state)
{
	struct fake_clock clock = {T(2026, 1, 1, 0, 0, 0)};
	tally_store *s = store_with(&clock, NULL, 0);
	struct walk w;
	unsigned seen[100] = {0};
	unsigned total = 0, agains = 0;
	int refused = -1; /* the record the last chunk refused */

	(void)state;
	for (unsigned i = 0; i < 100; i++)
		create(s, i);
	walk_init(&w, s);
	while (!w.it.done) {
		struct tally__record *r;
		void *snap;
		bool first = true;

		tally__section_begin(w.t);
		tally__iter_chunk(&w.it, TALLY__ITER_CHUNK);
		while ((r = tally__iter_next(s, &w.it, &snap)) != NULL) {
			unsigned idx = 0;

			assert_int_equal(sscanf(r->key, "k-%u", &idx), 1);
			assert_true(idx < 100);
			if (first && refused >= 0)
				assert_int_equal(idx, (unsigned)refused);
			first = false;
			if (idx % 10 == 3 && (int)idx != refused) {
				/* Refuse it once: it must come back first. */
				refused = (int)idx;
				agains++;
				tally__iter_again(&w.it);
				break;
			}
			seen[idx]++;
			total++;
		}
		tally__section_end(w.t);
	}
	assert_int_equal(total, 100);
	assert_int_equal(agains, 10);
	for (unsigned i = 0; i < 100; i++)
		assert_int_equal(seen[i], 1);
	tally_store_destroy(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_store),
		cmocka_unit_test(test_every_record_once),
		cmocka_unit_test(test_walk_survives_growth_and_churn),
		cmocka_unit_test(test_again_revisits_the_last_record),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
