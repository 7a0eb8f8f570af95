/*
 * The kind table: one row per kind of record, indexed by its tally_kind
 * value (the byte every record carries). Generic code (engine, sweep,
 * reclamation) reaches a kind only through its row. Pure.
 */
#include "budget.h"
#include "ratelimit.h"

const struct tally__kind *const tally__kinds[TALLY__KIND_END] = {
	[TALLY_KIND_BUDGET] = &tally__kind_budget,
	[TALLY_KIND_RATELIMIT] = &tally__kind_ratelimit,
};
