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

	/* Admission: hold an estimate on a second budget, settle the real
	 * cost, format the headers of a refusal. */
	{
		tally_charge charge = {TALLY_KIND_BUDGET,
				       0,
				       "team-b",
				       TALLY_KEY_STRLEN,
				       30,
				       0,
				       0};
		tally_cost actual = {45, 0, 0};
		tally_hold hold = TALLY_HOLD_INIT;
		tally_decision d = TALLY_DECISION_INIT;
		tally_header_policy policy = {"team-b", 0, TALLY_COUNTER_BUDGET,
					      TALLY_UNIT_OTHER};
		char headers[512];

		config.max_limit = 50;
		expect(tally_budget_upsert(store, "team-b", &config, NULL),
		       TALLY_CREATED, "tally_budget_upsert team-b");
		expect(tally_admit(store, &charge, 1, TALLY_ADMIT_HOLD,
				   INT64_C(60000000000), &hold, &d),
		       TALLY_OK, "tally_admit 30 of 50");
		expect(tally_admit(store, &charge, 1, TALLY_ADMIT_PEEK, 0, NULL,
				   &d),
		       TALLY_LIMITED, "tally_admit peek 30 more");
		expect(tally_settle(store, &hold, &actual, 1, &d), TALLY_OK,
		       "tally_settle 45");
		expect(tally_settle(store, &hold, &actual, 1, &d),
		       TALLY_ESETTLED, "tally_settle again");
		expect(tally_admit(store, &charge, 1, TALLY_ADMIT_PEEK, 0, NULL,
				   &d),
		       TALLY_LIMITED, "tally_admit peek after settle");
		if (tally_headers_format(&d, &policy, 1,
					 TALLY_HEADERS_IETF |
						 TALLY_HEADERS_RETRY_AFTER,
					 headers, sizeof headers) <= 0) {
			fprintf(stderr, "consumer: tally_headers_format\n");
			failures++;
		}
	}

	tally_store_destroy(store);

	if (failures == 0)
		printf("consumer: tally %s ok\n", tally_version_string());
	return failures == 0 ? 0 : 1;
}
