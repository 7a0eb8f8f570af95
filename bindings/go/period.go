package tally

/*
#include "tally_go.h"
*/
import "C"

import (
	"time"
	"unsafe"
)

// PeriodUnit is a tally_period_unit.
type PeriodUnit int32

const (
	PeriodNone  PeriodUnit = 0 // TALLY_PERIOD_NONE: no period: never resets
	PeriodFixed PeriodUnit = 1 // TALLY_PERIOD_FIXED: Count nanoseconds
	PeriodWeek  PeriodUnit = 2 // TALLY_PERIOD_WEEK: Count weeks
	PeriodMonth PeriodUnit = 3 // TALLY_PERIOD_MONTH: Count calendar months
)

// Period is a window length (tally_period). The zero value is no period.
type Period struct {
	Count int64
	Unit  PeriodUnit
}

// Every returns the fixed period d (d > 0).
func Every(d time.Duration) Period { return Period{Count: int64(d), Unit: PeriodFixed} }

// ParsePeriod parses "30s", "5m", "1h30m", "500ms", "1d", "1w", "1M", "1Q",
// "1Y", "" or "none" with tally_period_parse (m is minutes, M months).
// Errors: ErrPeriod.
func ParsePeriod(text string) (Period, error) {
	b := make([]byte, len(text)+1)
	copy(b, text)
	for _, c := range b[:len(text)] {
		if c == 0 {
			return Period{}, &Error{Op: "period_parse", Code: CodeEPeriod}
		}
	}
	var p C.tally_period
	if rc := C.tally_period_parse((*C.char)(unsafe.Pointer(&b[0])), &p); rc != 0 {
		return Period{}, codeErr("period_parse", rc)
	}
	return Period{Count: int64(p.count), Unit: PeriodUnit(p.unit)}, nil
}

// MustParsePeriod is ParsePeriod that panics on an error.
func MustParsePeriod(text string) Period {
	p, err := ParsePeriod(text)
	if err != nil {
		panic(err)
	}
	return p
}

// String formats the period canonically ("1h30m", "1w", "3M", "none");
// an invalid period formats as "invalid".
func (p Period) String() string {
	var buf [C.TALLY_PERIOD_FORMAT_MAX]C.char
	cp := p.c()
	n := C.tally_period_format(&cp, &buf[0], C.size_t(len(buf)))
	if n < 0 {
		return "invalid"
	}
	return C.GoStringN(&buf[0], n)
}

func (p Period) c() C.tally_period {
	return C.tally_period{count: C.int64_t(p.Count), unit: C.int32_t(p.Unit)}
}

func goPeriod(p C.tally_period) Period {
	return Period{Count: int64(p.count), Unit: PeriodUnit(p.unit)}
}
