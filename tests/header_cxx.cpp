// The public header stands alone as C++11: <tally.h> is included first and
// alone, built with -std=c++11 -Wall -Wextra -Wpedantic -Werror. Compiled,
// never linked or run.
#include <tally.h>

static_assert(TALLY_VERSION_HEX >= 0, "version macros usable in C++");

extern "C++" int tally_header_cxx_uses(void);

int
tally_header_cxx_uses(void)
{
	tally_store_options options = TALLY_STORE_OPTIONS_INIT;
	tally_budget_config budget = TALLY_BUDGET_CONFIG_INIT;
	tally_ratelimit_config limit = tally_ratelimit_config();
	tally_period none = TALLY_PERIOD_NONE_INIT;
	int (*create)(tally_store **, const tally_store_options *) =
		&tally_store_create;
	const char *(*message)(int) = &tally_strerror;

	(void)limit;
	return (options.size == sizeof(options) && budget.max_limit == 0 &&
		none.unit == TALLY_PERIOD_NONE && create != nullptr &&
		message != nullptr)
		       ? 0
		       : 1;
}
