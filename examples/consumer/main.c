/*
 * A consumer of an installed tally: create a store, upsert a daily budget,
 * bump it up to its limit, check that it blocks, destroy the store.
 * Exits 0 when every step behaves as documented in tally.h.
 */
#include <tally.h>

#include <stdio.h>

static int failures;

static void
expect(int got, int want, const char *what)
{
	if (got != want) {
		fprintf(stderr, "consumer: %s: got %d (%s), want %d (%s)\n",
			what, got, tally_strerror(got), want,
			tally_strerror(want));
		failures++;
	}
}

int
main(void)
{
	tally_store *store = NULL;
	tally_budget_config config = TALLY_BUDGET_CONFIG_INIT;
	tally_budget_view view = TALLY_BUDGET_VIEW_INIT;
	int rc;

	if (tally_version() != TALLY_VERSION_HEX) {
		fprintf(stderr, "consumer: header 0x%06x, library 0x%06x\n",
			(unsigned)TALLY_VERSION_HEX, tally_version());
		return 1;
	}

	rc = tally_store_create(&store, NULL);
	expect(rc, TALLY_OK, "tally_store_create");
	if (rc != TALLY_OK)
		return 1;

	config.max_limit = 100;
	expect(tally_period_parse("1d", &config.period), TALLY_OK,
	       "tally_period_parse");
	expect(tally_budget_upsert(store, "team-a", &config, NULL),
	       TALLY_CREATED, "tally_budget_upsert");

	expect(tally_budget_bump(store, "team-a", 60, NULL), TALLY_OK,
	       "tally_budget_bump 60");
	expect(tally_budget_check(store, "team-a", NULL), TALLY_OK,
	       "tally_budget_check at 60");
	rc = tally_budget_bump(store, "team-a", 40, &view);
	expect(rc, TALLY_OK, "tally_budget_bump 40");
	if (rc == TALLY_OK && view.usage != 100) {
		fprintf(stderr, "consumer: usage %lld, want 100\n",
			(long long)view.usage);
		failures++;
	}
	expect(tally_budget_check(store, "team-a", NULL), TALLY_LIMITED,
	       "tally_budget_check at 100");
	expect(tally_budget_try_consume(store, "team-a", 1, NULL),
	       TALLY_LIMITED, "tally_budget_try_consume at 100");

	tally_store_destroy(store);

	if (failures == 0)
		printf("consumer: tally %s ok\n", tally_version_string());
	return failures == 0 ? 0 : 1;
}
