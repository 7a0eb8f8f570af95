package tally

/*
#include "tally_go.h"
*/
import "C"

import (
	"math"
	"time"
)

// BudgetConfig is a tally_budget_config.
type BudgetConfig struct {
	// Max: usage >= Max blocks (>= 0; 0 always blocks).
	Max int64
	// Period of the windows; the zero Period never resets (prepaid).
	Period Period
	// Anchor of rolling windows; the zero Time is the record's creation
	// time (TALLY_ANCHOR_DEFAULT). In a view: the effective anchor.
	Anchor time.Time
	// UTCOffsetMinutes: local time = UTC + this (for calendar windows).
	UTCOffsetMinutes int32
	// CalendarAligned puts boundaries on the local calendar grid.
	CalendarAligned bool
}

// BudgetView is a tally_budget_view: one snapshot, copied.
type BudgetView struct {
	Config      BudgetConfig
	Usage       int64
	WindowStart int64 // ns
	WindowEnd   int64 // ns; Never: it never rolls
	Version     uint64
	Incarnation uint64
	Held        int64  // the live holds' amounts
	Holds       uint64 // how many holds are live
}

func anchorC(t time.Time) C.int64_t {
	if t.IsZero() {
		return C.int64_t(math.MinInt64)
	}
	return C.int64_t(t.UnixNano())
}

func anchorGo(a C.int64_t) time.Time {
	if a == math.MinInt64 {
		return time.Time{}
	}
	return time.Unix(0, int64(a)).UTC()
}

func (c *BudgetConfig) c() C.tally_budget_config {
	return C.tally_budget_config{
		size:               C.sizeof_tally_budget_config,
		max_limit:          C.int64_t(c.Max),
		period:             c.Period.c(),
		anchor:             anchorC(c.Anchor),
		utc_offset_minutes: C.int32_t(c.UTCOffsetMinutes),
		calendar_aligned:   C.bool(c.CalendarAligned),
	}
}

func goBudgetView(v *C.tally_budget_view) BudgetView {
	return BudgetView{
		Config: BudgetConfig{
			Max:              int64(v.config.max_limit),
			Period:           goPeriod(v.config.period),
			Anchor:           anchorGo(v.config.anchor),
			UTCOffsetMinutes: int32(v.config.utc_offset_minutes),
			CalendarAligned:  bool(v.config.calendar_aligned),
		},
		Usage:       int64(v.usage),
		WindowStart: int64(v.window_start),
		WindowEnd:   int64(v.window_end),
		Version:     uint64(v.version),
		Incarnation: uint64(v.incarnation),
		Held:        int64(v.held),
		Holds:       uint64(v.holds),
	}
}

// UpsertBudget creates the budget (created true) or replaces its config,
// keeping usage and window (tally_budget_upsert). Errors: ErrInvalid,
// ErrKey, ErrPeriod, ErrOverflow, ErrNoMem, ErrClosed.
func (s *Store) UpsertBudget(key string, cfg BudgetConfig) (BudgetView, bool, error) {
	k, n := strKey(key)
	return s.budgetUpsert(k, n, &cfg)
}

// UpsertBudgetBytes is UpsertBudget with a []byte key.
func (s *Store) UpsertBudgetBytes(key []byte, cfg BudgetConfig) (BudgetView, bool, error) {
	k, n := bytesKey(key)
	return s.budgetUpsert(k, n, &cfg)
}

func (s *Store) budgetUpsert(k *C.char, n C.size_t, cfg *BudgetConfig) (BudgetView, bool, error) {
	if !s.enter() {
		return BudgetView{}, false, closedErr("budget_upsert")
	}
	r := C.tgo_budget_upsert(s.h, k, n, cfg.c())
	s.leave()
	if r.rc < 0 {
		return BudgetView{}, false, codeErr("budget_upsert", r.rc)
	}
	return goBudgetView(&r.view), r.rc == C.TALLY_CREATED, nil
}

// GetBudget is tally_budget_get: the snapshot as stored (a due window is
// shown unrolled). Errors: ErrNotFound, ErrKey, ErrClosed.
func (s *Store) GetBudget(key string) (BudgetView, error) {
	k, n := strKey(key)
	return s.budgetGet(k, n)
}

// GetBudgetBytes is GetBudget with a []byte key.
func (s *Store) GetBudgetBytes(key []byte) (BudgetView, error) {
	k, n := bytesKey(key)
	return s.budgetGet(k, n)
}

func (s *Store) budgetGet(k *C.char, n C.size_t) (BudgetView, error) {
	if !s.enter() {
		return BudgetView{}, closedErr("budget_get")
	}
	r := C.tgo_budget_get(s.h, k, n)
	s.leave()
	if r.rc < 0 {
		return BudgetView{}, codeErr("budget_get", r.rc)
	}
	return goBudgetView(&r.view), nil
}

// BumpBudget adds amount (>= 0) after the fact, never refused
// (tally_budget_bump). Errors: ErrNotFound, ErrInvalid (amount < 0),
// ErrOverflow, ErrKey, ErrNoMem, ErrClosed.
func (s *Store) BumpBudget(key string, amount int64) (BudgetView, error) {
	k, n := strKey(key)
	return s.budgetBump(k, n, amount)
}

// BumpBudgetBytes is BumpBudget with a []byte key.
func (s *Store) BumpBudgetBytes(key []byte, amount int64) (BudgetView, error) {
	k, n := bytesKey(key)
	return s.budgetBump(k, n, amount)
}

func (s *Store) budgetBump(k *C.char, n C.size_t, amount int64) (BudgetView, error) {
	if !s.enter() {
		return BudgetView{}, closedErr("budget_bump")
	}
	r := C.tgo_budget_bump(s.h, k, n, C.int64_t(amount))
	s.leave()
	if r.rc < 0 {
		return BudgetView{}, codeErr("budget_bump", r.rc)
	}
	return goBudgetView(&r.view), nil
}

// CheckBudget asks whether a request may pass now: limited is
// usage + held >= max (tally_budget_check; reads only). The view is the
// effective state. Errors: ErrNotFound, ErrKey, ErrClosed.
func (s *Store) CheckBudget(key string) (BudgetView, bool, error) {
	k, n := strKey(key)
	return s.budgetCheck(k, n)
}

// CheckBudgetBytes is CheckBudget with a []byte key.
func (s *Store) CheckBudgetBytes(key []byte) (BudgetView, bool, error) {
	k, n := bytesKey(key)
	return s.budgetCheck(k, n)
}

func (s *Store) budgetCheck(k *C.char, n C.size_t) (BudgetView, bool, error) {
	if !s.enter() {
		return BudgetView{}, false, closedErr("budget_check")
	}
	r := C.tgo_budget_check(s.h, k, n)
	s.leave()
	if r.rc < 0 {
		return BudgetView{}, false, codeErr("budget_check", r.rc)
	}
	return goBudgetView(&r.view), r.rc == C.TALLY_LIMITED, nil
}

// TryConsumeBudget takes amount (>= 0) only if usage + held + amount <=
// max: ok false (TALLY_LIMITED) took nothing (tally_budget_try_consume).
// Errors: ErrNotFound, ErrInvalid, ErrOverflow, ErrKey, ErrNoMem,
// ErrClosed.
func (s *Store) TryConsumeBudget(key string, amount int64) (BudgetView, bool, error) {
	k, n := strKey(key)
	return s.budgetTryConsume(k, n, amount)
}

// TryConsumeBudgetBytes is TryConsumeBudget with a []byte key.
func (s *Store) TryConsumeBudgetBytes(key []byte, amount int64) (BudgetView, bool, error) {
	k, n := bytesKey(key)
	return s.budgetTryConsume(k, n, amount)
}

func (s *Store) budgetTryConsume(k *C.char, n C.size_t, amount int64) (BudgetView, bool, error) {
	if !s.enter() {
		return BudgetView{}, false, closedErr("budget_try_consume")
	}
	r := C.tgo_budget_try_consume(s.h, k, n, C.int64_t(amount))
	s.leave()
	if r.rc < 0 {
		return BudgetView{}, false, codeErr("budget_try_consume", r.rc)
	}
	return goBudgetView(&r.view), r.rc == C.TALLY_OK, nil
}

// ResetBudget zeroes usage if the record still has version observed
// (tally_budget_reset): ok false is TALLY_CONFLICT (nothing changed; the
// view is the current snapshot, whose version a retry may pass).
// Errors: ErrNotFound, ErrOverflow, ErrKey, ErrNoMem, ErrClosed.
func (s *Store) ResetBudget(key string, observed uint64) (BudgetView, bool, error) {
	k, n := strKey(key)
	return s.budgetReset(k, n, observed)
}

// ResetBudgetBytes is ResetBudget with a []byte key.
func (s *Store) ResetBudgetBytes(key []byte, observed uint64) (BudgetView, bool, error) {
	k, n := bytesKey(key)
	return s.budgetReset(k, n, observed)
}

func (s *Store) budgetReset(k *C.char, n C.size_t, observed uint64) (BudgetView, bool, error) {
	if !s.enter() {
		return BudgetView{}, false, closedErr("budget_reset")
	}
	r := C.tgo_budget_reset(s.h, k, n, C.uint64_t(observed))
	s.leave()
	if r.rc < 0 {
		return BudgetView{}, false, codeErr("budget_reset", r.rc)
	}
	return goBudgetView(&r.view), r.rc == C.TALLY_OK, nil
}

// RemoveBudget deletes the budget and returns its last snapshot
// (tally_budget_remove). Errors: ErrNotFound, ErrKey, ErrNoMem, ErrClosed.
func (s *Store) RemoveBudget(key string) (BudgetView, error) {
	k, n := strKey(key)
	return s.budgetRemove(k, n)
}

// RemoveBudgetBytes is RemoveBudget with a []byte key.
func (s *Store) RemoveBudgetBytes(key []byte) (BudgetView, error) {
	k, n := bytesKey(key)
	return s.budgetRemove(k, n)
}

func (s *Store) budgetRemove(k *C.char, n C.size_t) (BudgetView, error) {
	if !s.enter() {
		return BudgetView{}, closedErr("budget_remove")
	}
	r := C.tgo_budget_remove(s.h, k, n)
	s.leave()
	if r.rc < 0 {
		return BudgetView{}, codeErr("budget_remove", r.rc)
	}
	return goBudgetView(&r.view), nil
}
