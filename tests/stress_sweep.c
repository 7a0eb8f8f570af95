/*
 * Sweep at scale: 10^6 records, nothing due, one writer bumping 1,000 of
 * them while a sweeper walks the whole store again and again.
 *
 * The bounds. A grace period passes only when every thread has left the
 * epoch section it was in. A sweep that held one section for its whole
 * walk (the defect this guards against) held back every grace period for
 * that long: the writer's pending snapshots grew by every write of a walk,
 * about 500,000 per sweep on the 2-core machine this was measured on (a
 * walk of 10^6 records took ~45 ms at ~12 M writes/s; 266,000 to 685,000
 * peaks measured). A sweep in chunks leaves its section after each
 * TALLY__ITER_CHUNK cells (tens of microseconds), so grace periods keep
 * passing and the writer's pending stays near TALLY__PENDING_HIGH, where
 * it starts waiting for them. Only a sweeper preempted inside a chunk
 * holds them back longer, for as long as it waits for a core: peaks of
 * 10,000 to 42,000 were seen then, on a loaded machine.
 *
 * So the writer runs ROUNDS rounds and samples the store's pending count
 * every SAMPLE_EVERY writes. Every round must stay within PEAK_BOUND
 * (128 x TALLY__PENDING_HIGH, 131,072: a preemption of several
 * milliseconds inside one chunk, never a walk's worth). A sweep that holds
 * its section across chunks exceeds it in every round (the planted bug
 * sweep_one_section: 206,465 to 246,657 per round). The quietest round is
 * printed, not asserted: how far it stays under 4 x TALLY__PENDING_HIGH
 * depends on whether the scheduler preempted the sweeper inside a chunk
 * in every round (a loaded CI run saw 9,025), not on the library.
 *
 * Also checked: every write is counted (the sum of usage), every sweep
 * visits every record (the sweep's callback hears nothing: nothing is due;
 * then one sweep after the clock passes the windows' end rolls all 10^6),
 * and pending drains afterwards.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "support.h"
#include "thread.h" /* TALLY__PENDING_HIGH */

#define RECORDS 1000000
#define HOT 1000
#define ROUNDS 6
#define ROUND_WRITES 500000L
#define WRITES (ROUNDS * ROUND_WRITES)
#define SAMPLE_EVERY 256
#define PEAK_BOUND (128 * TALLY__PENDING_HIGH)

struct run {
	tally_store *store;
	int stop;                    /* atomic: the writer is done */
	long sweeps;                 /* sweeper: sweeps completed */
	size_t rolled;               /* sweeper: rolls (none expected) */
	int sweep_rc;                /* sweeper: first error */
	long written;                /* writer */
	int write_rc;                /* writer: first error */
	uint64_t round_peak[ROUNDS]; /* writer: highest pending sampled */
};

static void
key_of(char *buf, size_t size, long i)
{
	snprintf(buf, size, "sweep-stress-%08ld-0123456789", i);
}

static void *
sweeper_main(void *arg)
{
	struct run *r = arg;

	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		size_t n = 0;
		int rc = tally_sweep(r->store, NULL, NULL, &n);

		if (rc != TALLY_OK && r->sweep_rc == 0)
			r->sweep_rc = rc;
		r->rolled += n;
		r->sweeps++;
	}
	return NULL;
}

static void *
writer_main(void *arg)
{
	struct run *r = arg;
	char hot[HOT][48];
	uint64_t x = 88172645463325252u;

	for (long i = 0; i < HOT; i++)
		key_of(hot[i], sizeof hot[i], i * (RECORDS / HOT));
	for (long i = 0; i < WRITES; i++) {
		int rc;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		rc = tally_budget_bump(r->store, hot[x % HOT], 1, NULL);
		if (rc != TALLY_OK) {
			r->write_rc = rc;
			break;
		}
		r->written++;
		if (i % SAMPLE_EVERY == 0) {
			tally_stats st = TALLY_STATS_INIT;
			uint64_t *peak = &r->round_peak[i / ROUND_WRITES];

			if ((rc = tally_store_stats(r->store, &st)) !=
			    TALLY_OK) {
				r->write_rc = rc;
				break;
			}
			if (st.pending > *peak)
				*peak = st.pending;
		}
	}
	__atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void
count_roll(const tally_roll *roll, void *ctx)
{
	(void)roll;
	(*(size_t *)ctx)++;
}

static void
test_sweeping_a_million_records(void **state)
{
	struct fake_clock clock = {T(2026, 1, 10, 0, 0, 0)};
	tally_store_options o = test_options(&clock, NULL);
	tally_budget_config c = TALLY_BUDGET_CONFIG_INIT;
	tally_stats st = TALLY_STATS_INIT;
	tally_stats after = TALLY_STATS_INIT;
	struct run r = {0};
	pthread_t sweeper, writer;
	size_t heard = 0, rolled = 0;
	int64_t total = 0;
	uint64_t quietest = UINT64_MAX, loudest = 0;
	char key[48];

	(void)state;
	o.expected_records = RECORDS;
	/* The production clock path: coarse readings decide. */
	o.coarse_clock = fake_clock_read;
	o.coarse_clock_ctx = &clock;
	assert_int_equal(tally_store_create(&r.store, &o), TALLY_OK);
	c.max_limit = INT64_MAX;
	c.period = P("1M");
	c.calendar_aligned = true;
	for (long i = 0; i < RECORDS; i++) {
		key_of(key, sizeof key, i);
		assert_int_equal(tally_budget_upsert(r.store, key, &c, NULL),
				 TALLY_CREATED);
	}

	pthread_create(&sweeper, NULL, sweeper_main, &r);
	pthread_create(&writer, NULL, writer_main, &r);
	pthread_join(writer, NULL);
	pthread_join(sweeper, NULL);
	assert_int_equal(tally_store_stats(r.store, &st), TALLY_OK);
	for (int i = 0; i < ROUNDS; i++) {
		if (r.round_peak[i] < quietest)
			quietest = r.round_peak[i];
		if (r.round_peak[i] > loudest)
			loudest = r.round_peak[i];
	}
	print_message(
		"%ld writes, %ld sweeps of %d records; pending sampled "
		"per round: quietest %llu (4 x PENDING_HIGH %llu), loudest %llu "
		"(bound %llu); peak per thread %llu\n",
		r.written, r.sweeps, RECORDS, (unsigned long long)quietest,
		(unsigned long long)(4 * TALLY__PENDING_HIGH),
		(unsigned long long)loudest, (unsigned long long)PEAK_BOUND,
		(unsigned long long)st.peak_pending);
	assert_int_equal(r.write_rc, TALLY_OK);
	assert_int_equal(r.sweep_rc, TALLY_OK);
	assert_int_equal(r.written, WRITES);
	assert_true(r.sweeps >= 1);
	assert_int_equal(r.rolled, 0);
	assert_true(loudest <= PEAK_BOUND);

	/* Every write counted. */
	for (long i = 0; i < HOT; i++) {
		tally_budget_view v = TALLY_BUDGET_VIEW_INIT;

		key_of(key, sizeof key, i * (RECORDS / HOT));
		assert_int_equal(tally_budget_get(r.store, key, &v), TALLY_OK);
		total += v.usage;
	}
	assert_int_equal(total, WRITES);

	/* Past the month's end one sweep rolls every record, each once. */
	fake_clock_set(&clock, T(2026, 2, 1, 0, 0, 1));
	assert_int_equal(tally_sweep(r.store, count_roll, &heard, &rolled),
			 TALLY_OK);
	assert_int_equal(rolled, RECORDS);
	assert_int_equal(heard, RECORDS);
	assert_int_equal(tally_sweep(r.store, count_roll, &heard, &rolled),
			 TALLY_OK);
	assert_int_equal(rolled, 0);
	assert_int_equal(tally_store_stats(r.store, &after), TALLY_OK);
	assert_int_equal(after.rolls, st.rolls + RECORDS);
	/* The sweep's own retirements drained as it went. */
	assert_true(after.pending <= PEAK_BOUND);
	tally_store_destroy(r.store);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sweeping_a_million_records),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
