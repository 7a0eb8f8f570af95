/*
 * The public header stands alone as strict C11: <tally.h> is included first,
 * before anything that could supply what it forgets to include. Built with
 * -std=c11 -Wall -Wextra -Wpedantic -Werror.
 *
 * The program then checks that the run-time version of the library it is
 * linked with (the shared library) matches the header's macros.
 */
#include <tally.h>

#include <stdio.h>
#include <string.h>

#define HEADER_STR_(x) #x
#define HEADER_STR(x) HEADER_STR_(x)
#define HEADER_VERSION_STRING                                                  \
	HEADER_STR(TALLY_VERSION_MAJOR)                                        \
	"." HEADER_STR(TALLY_VERSION_MINOR) "." HEADER_STR(TALLY_VERSION_PATCH)

/* Use a few types and initializers so they are checked too. */
static int
header_uses(void)
{
	tally_store_options options = TALLY_STORE_OPTIONS_INIT;
	tally_budget_config budget = TALLY_BUDGET_CONFIG_INIT;
	tally_period none = TALLY_PERIOD_NONE_INIT;
	tally_result ok = TALLY_OK;

	return (options.size == sizeof(options) && budget.max_limit == 0 &&
		none.unit == TALLY_PERIOD_NONE && ok == 0)
		       ? 0
		       : 1;
}

int
main(void)
{
	const char *runtime = tally_version_string();
	int failed = header_uses();

	printf("tally_version_string() = \"%s\", header = \"%s\", "
	       "tally_version() = 0x%06x, TALLY_VERSION_HEX = 0x%06x\n",
	       runtime ? runtime : "(null)", HEADER_VERSION_STRING,
	       tally_version(), (unsigned)TALLY_VERSION_HEX);
	if (runtime == NULL || strcmp(runtime, HEADER_VERSION_STRING) != 0)
		failed = 1;
	if (tally_version() != (unsigned)TALLY_VERSION_HEX)
		failed = 1;
	if (failed)
		fprintf(stderr, "header_c11: version or header check failed\n");
	return failed;
}
