package tally

/*
#include "tally_go.h"
*/
import "C"

import (
	"math"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Kind of a record (TALLY_KIND_*).
type Kind uint32

const (
	KindBudget    Kind = 1 // TALLY_KIND_BUDGET
	KindRateLimit Kind = 2 // TALLY_KIND_RATELIMIT
)

func (k Kind) String() string {
	switch k {
	case KindBudget:
		return "budget"
	case KindRateLimit:
		return "ratelimit"
	}
	return "kind(?)"
}

// AdmitMode of Admit (TALLY_ADMIT_*).
type AdmitMode uint32

const (
	// AdmitHold holds every estimate until Settle or Release.
	AdmitHold AdmitMode = 1 // TALLY_ADMIT_HOLD
	// AdmitConsume takes every amount as used now (try_consume of several).
	AdmitConsume AdmitMode = 2 // TALLY_ADMIT_CONSUME
	// AdmitPeek answers as AdmitHold would now and changes nothing.
	AdmitPeek AdmitMode = 3 // TALLY_ADMIT_PEEK
)

// MaxCharges is the most charges one Admit takes (TALLY_ADMIT_MAX).
const MaxCharges = 16 // TALLY_ADMIT_MAX

// Charge is one limit of an admission (tally_charge): a budget uses Amount,
// a rate limit Tokens and Requests (the unused ones must be 0).
type Charge struct {
	Kind Kind
	// Key names the record; KeyBytes, when not nil, is used instead.
	Key      string
	KeyBytes []byte
	// Shadow: held and reported, never refuses (TALLY_CHARGE_SHADOW).
	Shadow                   bool
	Amount, Tokens, Requests int64
}

// Cost is what one limit of a hold really cost (tally_cost), or a
// partial charge.
type Cost struct {
	Amount, Tokens, Requests int64
}

// DecisionFlags are TALLY_DECISION_* bits.
type DecisionFlags uint32

const (
	FlagDenied          DecisionFlags = 1   // TALLY_DECISION_DENIED
	FlagTooBig          DecisionFlags = 2   // TALLY_DECISION_TOO_BIG
	FlagOverdraft       DecisionFlags = 4   // TALLY_DECISION_OVERDRAFT
	FlagLate            DecisionFlags = 8   // TALLY_DECISION_LATE
	FlagShadowWouldDeny DecisionFlags = 16  // TALLY_DECISION_SHADOW_WOULD_DENY
	FlagReached         DecisionFlags = 32  // TALLY_DECISION_REACHED
	FlagGone            DecisionFlags = 64  // TALLY_DECISION_GONE
	FlagUnlimited       DecisionFlags = 128 // TALLY_DECISION_UNLIMITED
	FlagOverflow        DecisionFlags = 256 // TALLY_DECISION_OVERFLOW
	FlagSliding         DecisionFlags = 512 // TALLY_DECISION_SLIDING
)

// RetryNever is a RetryAfter of a request that can never pass.
const RetryNever = time.Duration(math.MaxInt64) // TALLY_RETRY_NEVER

// CounterReport is one counter of a limit as a call left (or found) it.
type CounterReport struct {
	Counter     Counter
	Flags       DecisionFlags
	Max         int64 // 0 when FlagUnlimited
	Used        int64
	Held        int64
	Remaining   int64 // max - used - held, at least 0
	WindowStart int64 // ns
	WindowEnd   int64 // ns: the reset time; Never
	// RetryAfter: until a request of this size could pass; 0 if it
	// passes now; RetryNever if it never can.
	RetryAfter time.Duration
	Overdraft  int64 // settle, partial: units beyond what was held
}

// LimitReport is one limit of a decision: a budget's counter is
// Counters[0]; a rate limit's Counters[0] tokens, Counters[1] requests.
type LimitReport struct {
	Kind        Kind // 0 if the call did not reach it
	Flags       DecisionFlags
	Counters    [2]CounterReport
	Version     uint64
	Incarnation uint64
}

// Decision is a tally_decision: one report per charge, in order.
type Decision struct {
	Now     int64 // the call's time
	Refused int   // index of the first refusing limit, or -1
	Mask    uint32
	Flags   DecisionFlags // union of every limit's flags
	Limits  []LimitReport
}

// Allowed reports whether no limit refused.
func (d *Decision) Allowed() bool { return d.Refused < 0 }

// HoldState is TALLY_HOLD_*.
type HoldState uint32

const (
	HoldNone    HoldState = 0 // TALLY_HOLD_NONE
	HoldLive    HoldState = 1 // TALLY_HOLD_LIVE
	HoldSettled HoldState = 2 // TALLY_HOLD_SETTLED
)

// Hold is a hold handle (the C tally_hold's bytes): plain data, copyable,
// settled from any goroutine, minutes later. The zero Hold was never
// taken. Two copies are two handles to the library: settle one of them.
type Hold struct {
	raw C.tally_hold
}

// State of the hold.
func (h *Hold) State() HoldState { return HoldState(h.raw.state) }

// Live reports whether the hold is held (settle or release it).
func (h *Hold) Live() bool { return h.State() == HoldLive }

// Len is the number of records the hold holds.
func (h *Hold) Len() int { return int(h.raw.n) }

// Deadline is now + ttl at admission, ns.
func (h *Hold) Deadline() int64 { return int64(h.raw.deadline) }

// Held is what part i still holds: a budget's amount in [0]; a rate
// limit's tokens [0] and requests [1].
func (h *Hold) Held(i int) [2]int64 {
	if i < 0 || i >= h.Len() {
		return [2]int64{}
	}
	p := &h.raw.part[i]
	return [2]int64{int64(p.amount[0]), int64(p.amount[1])}
}

// The admission calls run on a pooled block of pointer-free Go memory
// holding the C charges, key bytes, hold and decision, so that one pointer
// goes to C and nothing escapes per call.
var admitPool = sync.Pool{New: func() any { return new(C.tgo_admit_buf) }}

func goDecision(d *C.tally_decision) Decision {
	n := int(d.n)
	if n > MaxCharges {
		n = MaxCharges
	}
	out := Decision{Now: int64(d.now), Refused: int(d.refused), Mask: uint32(d.mask),
		Flags: DecisionFlags(d.flags), Limits: make([]LimitReport, n)}
	for i := 0; i < n; i++ {
		l := &d.limit[i]
		r := &out.Limits[i]
		r.Kind = Kind(l.kind)
		r.Flags = DecisionFlags(l.flags)
		r.Version = uint64(l.version)
		r.Incarnation = uint64(l.incarnation)
		for j := 0; j < 2; j++ {
			c := &l.c[j]
			r.Counters[j] = CounterReport{
				Counter: Counter(c.counter), Flags: DecisionFlags(c.flags),
				Max: int64(c.max), Used: int64(c.used), Held: int64(c.held),
				Remaining: int64(c.remaining), WindowStart: int64(c.window_start),
				WindowEnd: int64(c.window_end), RetryAfter: time.Duration(c.retry_after),
				Overdraft: int64(c.overdraft),
			}
		}
	}
	return out
}

func cDecision(d *Decision, out *C.tally_decision) bool {
	if len(d.Limits) > MaxCharges {
		return false
	}
	*out = C.tally_decision{size: C.sizeof_tally_decision, now: C.int64_t(d.Now),
		refused: C.int32_t(d.Refused), n: C.uint32_t(len(d.Limits)),
		mask: C.uint32_t(d.Mask), flags: C.uint32_t(d.Flags)}
	for i := range d.Limits {
		r := &d.Limits[i]
		l := &out.limit[i]
		l.kind = C.uint32_t(r.Kind)
		l.flags = C.uint32_t(r.Flags)
		l.version = C.uint64_t(r.Version)
		l.incarnation = C.uint64_t(r.Incarnation)
		for j := 0; j < 2; j++ {
			c := &r.Counters[j]
			l.c[j] = C.tally_counter_report{
				counter: C.uint32_t(c.Counter), flags: C.uint32_t(c.Flags),
				max: C.int64_t(c.Max), used: C.int64_t(c.Used), held: C.int64_t(c.Held),
				remaining: C.int64_t(c.Remaining), window_start: C.int64_t(c.WindowStart),
				window_end: C.int64_t(c.WindowEnd), retry_after: C.int64_t(c.RetryAfter),
				overdraft: C.int64_t(c.Overdraft),
			}
		}
	}
	return true
}

// Admit admits a request across 1 to MaxCharges limits, all or nothing
// (tally_admit). A refusal is a result, not an error: the Decision has
// Refused >= 0 (the first refusing limit) and Mask (all that would), and
// nothing changed. With AdmitHold and an allowed decision the Hold is
// live (ttl: 1 ns to Options.HoldTTLMax); with AdmitConsume and AdmitPeek
// ttl must be 0 and the Hold is the zero Hold. Errors: ErrNotFound (a
// charge's record is missing; the Decision names it, FlagGone),
// ErrInvalid, ErrKey, ErrNoMem, ErrOverflow, ErrClosed.
func (s *Store) Admit(charges []Charge, mode AdmitMode, ttl time.Duration) (Hold, Decision, error) {
	if len(charges) > MaxCharges {
		return Hold{}, Decision{Refused: -1}, &Error{Op: "admit", Code: CodeEInval}
	}
	b := admitPool.Get().(*C.tgo_admit_buf)
	defer admitPool.Put(b)
	keys := (*[MaxCharges * C.TGO_KEY_MAX]byte)(unsafe.Pointer(&b.keys[0]))
	off := 0
	for i := range charges {
		c := &charges[i]
		var n int
		if c.KeyBytes != nil {
			if len(c.KeyBytes) > C.TGO_KEY_MAX {
				return Hold{}, Decision{Refused: -1}, &Error{Op: "admit", Code: CodeEKey}
			}
			n = copy(keys[off:], c.KeyBytes)
		} else {
			if len(c.Key) > C.TGO_KEY_MAX {
				return Hold{}, Decision{Refused: -1}, &Error{Op: "admit", Code: CodeEKey}
			}
			n = copy(keys[off:], c.Key)
		}
		var flags C.uint32_t
		if c.Shadow {
			flags = C.TALLY_CHARGE_SHADOW
		}
		b.charges[i] = C.tgo_charge{kind: C.uint32_t(c.Kind), flags: flags,
			key_off: C.uint32_t(off), key_len: C.uint32_t(n),
			amount: C.int64_t(c.Amount), tokens: C.int64_t(c.Tokens),
			requests: C.int64_t(c.Requests)}
		off += n
	}
	if !s.enter() {
		return Hold{}, Decision{Refused: -1}, closedErr("admit")
	}
	rc := C.tgo_admit(s.h, b, C.size_t(len(charges)), C.uint32_t(mode), C.int64_t(ttl))
	s.leave()
	var h Hold
	var d Decision
	switch {
	case rc == C.TALLY_OK || rc == C.TALLY_LIMITED || rc == C.TALLY_ENOENT:
		d = goDecision(&b.decision)
	default:
		d = Decision{Refused: -1}
	}
	if rc == C.TALLY_OK && mode == AdmitHold {
		h.raw = b.hold
	}
	if rc < 0 {
		return h, d, codeErr("admit", rc)
	}
	return h, d, nil
}

func (s *Store) settle(op string, cop C.int, h *Hold, costs []Cost) (Decision, error) {
	if h == nil || len(costs) > MaxCharges {
		return Decision{Refused: -1}, &Error{Op: op, Code: CodeEInval}
	}
	b := admitPool.Get().(*C.tgo_admit_buf)
	defer admitPool.Put(b)
	b.hold = h.raw
	for i, c := range costs {
		b.costs[i] = C.tally_cost{amount: C.int64_t(c.Amount), tokens: C.int64_t(c.Tokens),
			requests: C.int64_t(c.Requests)}
	}
	if !s.enter() {
		return Decision{Refused: -1}, closedErr(op)
	}
	rc := C.tgo_settle(s.h, b, C.size_t(len(costs)), cop)
	s.leave()
	h.raw = b.hold
	if rc < 0 {
		return Decision{Refused: -1}, codeErr(op, rc)
	}
	return goDecision(&b.decision), nil
}

// Settle charges what the request really cost, one Cost per charge, and
// marks the hold settled (tally_settle). Never refused: an overdraft is
// charged and flagged; an expired hold is charged in full (FlagLate); a
// removed record is FlagGone. Errors: ErrSettled (nothing changed),
// ErrInvalid (a hold never taken, changed or of another store, a wrong
// number of costs, a negative cost), ErrNoMem, ErrClosed.
func (s *Store) Settle(h *Hold, costs []Cost) (Decision, error) {
	return s.settle("settle", C.TGO_SETTLE, h, costs)
}

// Release is a Settle of 0 everywhere (upstream error, cancel).
func (s *Store) Release(h *Hold) (Decision, error) {
	return s.settle("release", C.TGO_RELEASE, h, nil)
}

// SettlePartial charges amounts now and keeps the hold live (streaming):
// a report flagged FlagReached says used + held >= max after the charge
// (tally_settle_partial). Errors as Settle's.
func (s *Store) SettlePartial(h *Hold, amounts []Cost) (Decision, error) {
	return s.settle("settle_partial", C.TGO_PARTIAL, h, amounts)
}

// Unit of a header policy (TALLY_UNIT_*).
type Unit uint32

const (
	UnitOther              Unit = 0 // TALLY_UNIT_OTHER
	UnitRequests           Unit = 1 // TALLY_UNIT_REQUESTS
	UnitConcurrentRequests Unit = 2 // TALLY_UNIT_CONCURRENT_REQUESTS
	UnitTokens             Unit = 3 // TALLY_UNIT_TOKENS
)

// HeaderFields select header families (TALLY_HEADERS_*).
type HeaderFields uint32

const (
	HeadersIETF        HeaderFields = 1  // TALLY_HEADERS_IETF
	HeadersLegacy      HeaderFields = 2  // TALLY_HEADERS_LEGACY
	HeadersLegacyEpoch HeaderFields = 4  // TALLY_HEADERS_LEGACY_EPOCH
	HeadersOpenAI      HeaderFields = 8  // TALLY_HEADERS_OPENAI
	HeadersRetryAfter  HeaderFields = 16 // TALLY_HEADERS_RETRY_AFTER
)

// HeaderPolicy names one counter of one limit of a decision.
type HeaderPolicy struct {
	Name    string // printable ASCII
	Limit   int    // index into Decision.Limits
	Counter Counter
	Unit    Unit
}

// FormatHeaders writes the header fields of a decision, one
// "Name: value\r\n" line each (tally_headers_format). Errors: ErrInvalid,
// ErrOverflow.
func FormatHeaders(d *Decision, policies []HeaderPolicy, fields HeaderFields) (string, error) {
	cd := new(C.tally_decision)
	if d == nil || !cDecision(d, cd) {
		return "", &Error{Op: "headers_format", Code: CodeEInval}
	}
	size := 0
	for i := range policies {
		if strings.IndexByte(policies[i].Name, 0) >= 0 || policies[i].Limit < 0 {
			return "", &Error{Op: "headers_format", Code: CodeEInval}
		}
		size += len(policies[i].Name) + 1
	}
	names := make([]byte, size+1)
	pol := make([]C.tgo_policy, len(policies)+1)
	off := 0
	for i := range policies {
		p := &policies[i]
		pol[i] = C.tgo_policy{name_off: C.uint32_t(off), limit: C.uint32_t(p.Limit),
			counter: C.uint32_t(p.Counter), unit: C.uint32_t(p.Unit)}
		off += copy(names[off:], p.Name) + 1
	}
	buf := make([]byte, 512)
	for {
		n := C.tgo_headers(cd, &pol[0], C.size_t(len(policies)),
			(*C.char)(unsafe.Pointer(&names[0])), C.uint32_t(fields),
			(*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
		if n < 0 {
			return "", codeErr("headers_format", n)
		}
		if int(n) < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, int(n)+1)
	}
}
