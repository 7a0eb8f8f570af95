package tally

/*
#include "tally_go.h"
*/
import "C"

import "strconv"

// constantMismatches compares every exported constant with the C value it
// mirrors (the constants are written as numbers so that go doc shows
// them); TestConstants fails on any difference.
func constantMismatches() []string {
	var bad []string
	check := func(name string, goValue, cValue int64) {
		if goValue != cValue {
			bad = append(bad, name+": "+strconv.FormatInt(goValue, 10)+" != "+strconv.FormatInt(cValue, 10))
		}
	}
	check("CounterBudget", int64(CounterBudget), int64(C.TALLY_COUNTER_BUDGET))
	check("CounterTokens", int64(CounterTokens), int64(C.TALLY_COUNTER_TOKENS))
	check("CounterRequests", int64(CounterRequests), int64(C.TALLY_COUNTER_REQUESTS))
	check("CounterBoth", int64(CounterBoth), int64(C.TALLY_COUNTER_BOTH))
	check("ResetDueOnly", int64(ResetDueOnly), int64(C.TALLY_RESET_DUE_ONLY))
	check("AlgorithmFixed", int64(AlgorithmFixed), int64(C.TALLY_ALGORITHM_FIXED))
	check("AlgorithmSliding", int64(AlgorithmSliding), int64(C.TALLY_ALGORITHM_SLIDING))
	check("KindBudget", int64(KindBudget), int64(C.TALLY_KIND_BUDGET))
	check("KindRateLimit", int64(KindRateLimit), int64(C.TALLY_KIND_RATELIMIT))
	check("AdmitHold", int64(AdmitHold), int64(C.TALLY_ADMIT_HOLD))
	check("AdmitConsume", int64(AdmitConsume), int64(C.TALLY_ADMIT_CONSUME))
	check("AdmitPeek", int64(AdmitPeek), int64(C.TALLY_ADMIT_PEEK))
	check("FlagDenied", int64(FlagDenied), int64(C.TALLY_DECISION_DENIED))
	check("FlagTooBig", int64(FlagTooBig), int64(C.TALLY_DECISION_TOO_BIG))
	check("FlagOverdraft", int64(FlagOverdraft), int64(C.TALLY_DECISION_OVERDRAFT))
	check("FlagLate", int64(FlagLate), int64(C.TALLY_DECISION_LATE))
	check("FlagShadowWouldDeny", int64(FlagShadowWouldDeny), int64(C.TALLY_DECISION_SHADOW_WOULD_DENY))
	check("FlagReached", int64(FlagReached), int64(C.TALLY_DECISION_REACHED))
	check("FlagGone", int64(FlagGone), int64(C.TALLY_DECISION_GONE))
	check("FlagUnlimited", int64(FlagUnlimited), int64(C.TALLY_DECISION_UNLIMITED))
	check("FlagOverflow", int64(FlagOverflow), int64(C.TALLY_DECISION_OVERFLOW))
	check("FlagSliding", int64(FlagSliding), int64(C.TALLY_DECISION_SLIDING))
	check("HoldNone", int64(HoldNone), int64(C.TALLY_HOLD_NONE))
	check("HoldLive", int64(HoldLive), int64(C.TALLY_HOLD_LIVE))
	check("HoldSettled", int64(HoldSettled), int64(C.TALLY_HOLD_SETTLED))
	check("UnitOther", int64(UnitOther), int64(C.TALLY_UNIT_OTHER))
	check("UnitRequests", int64(UnitRequests), int64(C.TALLY_UNIT_REQUESTS))
	check("UnitConcurrentRequests", int64(UnitConcurrentRequests), int64(C.TALLY_UNIT_CONCURRENT_REQUESTS))
	check("UnitTokens", int64(UnitTokens), int64(C.TALLY_UNIT_TOKENS))
	check("HeadersIETF", int64(HeadersIETF), int64(C.TALLY_HEADERS_IETF))
	check("HeadersLegacy", int64(HeadersLegacy), int64(C.TALLY_HEADERS_LEGACY))
	check("HeadersLegacyEpoch", int64(HeadersLegacyEpoch), int64(C.TALLY_HEADERS_LEGACY_EPOCH))
	check("HeadersOpenAI", int64(HeadersOpenAI), int64(C.TALLY_HEADERS_OPENAI))
	check("HeadersRetryAfter", int64(HeadersRetryAfter), int64(C.TALLY_HEADERS_RETRY_AFTER))
	check("PeriodNone", int64(PeriodNone), int64(C.TALLY_PERIOD_NONE))
	check("PeriodFixed", int64(PeriodFixed), int64(C.TALLY_PERIOD_FIXED))
	check("PeriodWeek", int64(PeriodWeek), int64(C.TALLY_PERIOD_WEEK))
	check("PeriodMonth", int64(PeriodMonth), int64(C.TALLY_PERIOD_MONTH))
	check("EventRoll", int64(EventRoll), int64(C.TGO_EVENT_ROLL))
	check("EventExpiry", int64(EventExpiry), int64(C.TGO_EVENT_EXPIRY))
	check("RollInline", int64(RollInline), int64(C.TALLY_ROLL_INLINE))
	check("RollSweep", int64(RollSweep), int64(C.TALLY_ROLL_SWEEP))
	check("RollReset", int64(RollReset), int64(C.TALLY_ROLL_RESET))
	check("MaxCharges", int64(MaxCharges), int64(C.TALLY_ADMIT_MAX))
	check("RetryNever", int64(RetryNever), int64(C.TALLY_RETRY_NEVER))
	check("CodeOK", int64(CodeOK), int64(C.TALLY_OK))
	check("CodeLimited", int64(CodeLimited), int64(C.TALLY_LIMITED))
	check("CodeConflict", int64(CodeConflict), int64(C.TALLY_CONFLICT))
	check("CodeCreated", int64(CodeCreated), int64(C.TALLY_CREATED))
	check("CodeEInval", int64(CodeEInval), int64(C.TALLY_EINVAL))
	check("CodeENoEnt", int64(CodeENoEnt), int64(C.TALLY_ENOENT))
	check("CodeENoMem", int64(CodeENoMem), int64(C.TALLY_ENOMEM))
	check("CodeEOverflow", int64(CodeEOverflow), int64(C.TALLY_EOVERFLOW))
	check("CodeEKey", int64(CodeEKey), int64(C.TALLY_EKEY))
	check("CodeEPeriod", int64(CodeEPeriod), int64(C.TALLY_EPERIOD))
	check("CodeESettled", int64(CodeESettled), int64(C.TALLY_ESETTLED))
	check("Never", int64(Never), int64(C.INT64_MAX))
	return bad
}
