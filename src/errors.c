/* Result codes and version: generated from the one table in tally.h. */
#include "tally.h"

#define TALLY__STR2(x) #x
#define TALLY__STR(x) TALLY__STR2(x)

TALLY_API unsigned
tally_version(void)
{
	return TALLY_VERSION_HEX;
}

TALLY_API const char *
tally_version_string(void)
{
	return TALLY__STR(TALLY_VERSION_MAJOR) "." TALLY__STR(
		TALLY_VERSION_MINOR) "." TALLY__STR(TALLY_VERSION_PATCH);
}

TALLY_API const char *
tally_strerror(int rc)
{
	switch (rc) {
#define TALLY__MSG(name, value, msg)                                           \
	case (value):                                                          \
		return (msg);
		TALLY_RESULT_MAP(TALLY__MSG)
#undef TALLY__MSG
	default:
		return "unknown result";
	}
}

TALLY_API const char *
tally_result_name(int rc)
{
	switch (rc) {
#define TALLY__NAME(name, value, msg)                                          \
	case (value):                                                          \
		return #name;
		TALLY_RESULT_MAP(TALLY__NAME)
#undef TALLY__NAME
	default:
		return NULL;
	}
}
