package tally

/*
#include "tally_go.h"
*/
import "C"

import "time"

// Counter names a counter (TALLY_COUNTER_*); rate-limit masks are sets of
// CounterTokens and CounterRequests.
type Counter uint32

const (
	CounterBudget   Counter = 0 // TALLY_COUNTER_BUDGET
	CounterTokens   Counter = 1 // TALLY_COUNTER_TOKENS
	CounterRequests Counter = 2 // TALLY_COUNTER_REQUESTS
	CounterBoth     Counter = 3 // TALLY_COUNTER_BOTH
	// ResetDueOnly (ResetRateLimit's counters) resets only due counters.
	ResetDueOnly Counter = 256 // TALLY_RESET_DUE_ONLY
)

// Algorithm of a rate-limit counter (TALLY_ALGORITHM_*).
type Algorithm uint32

const (
	// Fixed windows: a request of n passes iff used + held + n <= max.
	AlgorithmFixed Algorithm = 0 // TALLY_ALGORITHM_FIXED
	// Sliding: the sliding-window counter estimate (see tally.h).
	AlgorithmSliding Algorithm = 1 // TALLY_ALGORITHM_SLIDING
)

// Limit is one counter of a rate limit (tally_limit and its algorithm).
type Limit struct {
	HasMax    bool  // false: unlimited (counted, never blocks)
	Max       int64 // >= 0 when HasMax
	Period    Period
	Algorithm Algorithm
}

// RateLimitConfig is a tally_ratelimit_config.
type RateLimitConfig struct {
	Tokens   Limit
	Requests Limit
	// Anchor, UTCOffsetMinutes, CalendarAligned: as in BudgetConfig.
	Anchor           time.Time
	UTCOffsetMinutes int32
	CalendarAligned  bool
}

// CounterView is one counter of a RateLimitView.
type CounterView struct {
	Usage       int64
	WindowStart int64 // ns
	WindowEnd   int64 // ns; Never: it never rolls
	Held        int64 // live holds
	Previous    int64 // a sliding counter's previous window usage
}

// RateLimitView is a tally_ratelimit_view: one snapshot, copied.
type RateLimitView struct {
	Config      RateLimitConfig
	Tokens      CounterView
	Requests    CounterView
	Version     uint64
	Incarnation uint64
	Holds       uint64 // live holds
}

func (l *Limit) c() C.tally_limit {
	return C.tally_limit{has_max: C.bool(l.HasMax), max: C.int64_t(l.Max), period: l.Period.c()}
}

func goLimit(l *C.tally_limit, alg C.uint32_t) Limit {
	return Limit{HasMax: bool(l.has_max), Max: int64(l.max), Period: goPeriod(l.period),
		Algorithm: Algorithm(alg)}
}

func (c *RateLimitConfig) c() C.tally_ratelimit_config {
	return C.tally_ratelimit_config{
		size:               C.sizeof_tally_ratelimit_config,
		tokens:             c.Tokens.c(),
		requests:           c.Requests.c(),
		anchor:             anchorC(c.Anchor),
		utc_offset_minutes: C.int32_t(c.UTCOffsetMinutes),
		calendar_aligned:   C.bool(c.CalendarAligned),
		tokens_algorithm:   C.uint32_t(c.Tokens.Algorithm),
		requests_algorithm: C.uint32_t(c.Requests.Algorithm),
	}
}

func goRateLimitView(v *C.tally_ratelimit_view) RateLimitView {
	return RateLimitView{
		Config: RateLimitConfig{
			Tokens:           goLimit(&v.config.tokens, v.config.tokens_algorithm),
			Requests:         goLimit(&v.config.requests, v.config.requests_algorithm),
			Anchor:           anchorGo(v.config.anchor),
			UTCOffsetMinutes: int32(v.config.utc_offset_minutes),
			CalendarAligned:  bool(v.config.calendar_aligned),
		},
		Tokens: CounterView{Usage: int64(v.tokens.usage), WindowStart: int64(v.tokens.window_start),
			WindowEnd: int64(v.tokens.window_end), Held: int64(v.tokens_held),
			Previous: int64(v.tokens_previous)},
		Requests: CounterView{Usage: int64(v.requests.usage), WindowStart: int64(v.requests.window_start),
			WindowEnd: int64(v.requests.window_end), Held: int64(v.requests_held),
			Previous: int64(v.requests_previous)},
		Version:     uint64(v.version),
		Incarnation: uint64(v.incarnation),
		Holds:       uint64(v.holds),
	}
}

// UpsertRateLimit creates the rate limit (created true) or replaces its
// config (tally_ratelimit_upsert). Every counter needs a period. Errors:
// ErrInvalid, ErrPeriod, ErrOverflow, ErrKey, ErrNoMem, ErrClosed.
func (s *Store) UpsertRateLimit(key string, cfg RateLimitConfig) (RateLimitView, bool, error) {
	k, n := strKey(key)
	return s.rlUpsert(k, n, &cfg)
}

// UpsertRateLimitBytes is UpsertRateLimit with a []byte key.
func (s *Store) UpsertRateLimitBytes(key []byte, cfg RateLimitConfig) (RateLimitView, bool, error) {
	k, n := bytesKey(key)
	return s.rlUpsert(k, n, &cfg)
}

func (s *Store) rlUpsert(k *C.char, n C.size_t, cfg *RateLimitConfig) (RateLimitView, bool, error) {
	if !s.enter() {
		return RateLimitView{}, false, closedErr("ratelimit_upsert")
	}
	r := C.tgo_rl_upsert(s.h, k, n, cfg.c())
	s.leave()
	if r.rc < 0 {
		return RateLimitView{}, false, codeErr("ratelimit_upsert", r.rc)
	}
	return goRateLimitView(&r.view), r.rc == C.TALLY_CREATED, nil
}

// GetRateLimit is tally_ratelimit_get (the snapshot as stored). Errors:
// ErrNotFound, ErrKey, ErrClosed.
func (s *Store) GetRateLimit(key string) (RateLimitView, error) {
	k, n := strKey(key)
	return s.rlGet(k, n)
}

// GetRateLimitBytes is GetRateLimit with a []byte key.
func (s *Store) GetRateLimitBytes(key []byte) (RateLimitView, error) {
	k, n := bytesKey(key)
	return s.rlGet(k, n)
}

func (s *Store) rlGet(k *C.char, n C.size_t) (RateLimitView, error) {
	if !s.enter() {
		return RateLimitView{}, closedErr("ratelimit_get")
	}
	r := C.tgo_rl_get(s.h, k, n)
	s.leave()
	if r.rc < 0 {
		return RateLimitView{}, codeErr("ratelimit_get", r.rc)
	}
	return goRateLimitView(&r.view), nil
}

// BumpRateLimit adds tokens and requests (each >= 0) in one CAS, never
// refused (tally_ratelimit_bump). Errors: ErrNotFound, ErrInvalid,
// ErrOverflow, ErrKey, ErrNoMem, ErrClosed.
func (s *Store) BumpRateLimit(key string, tokens, requests int64) (RateLimitView, error) {
	k, n := strKey(key)
	return s.rlBump(k, n, tokens, requests)
}

// BumpRateLimitBytes is BumpRateLimit with a []byte key.
func (s *Store) BumpRateLimitBytes(key []byte, tokens, requests int64) (RateLimitView, error) {
	k, n := bytesKey(key)
	return s.rlBump(k, n, tokens, requests)
}

func (s *Store) rlBump(k *C.char, n C.size_t, tokens, requests int64) (RateLimitView, error) {
	if !s.enter() {
		return RateLimitView{}, closedErr("ratelimit_bump")
	}
	r := C.tgo_rl_bump(s.h, k, n, C.int64_t(tokens), C.int64_t(requests))
	s.leave()
	if r.rc < 0 {
		return RateLimitView{}, codeErr("ratelimit_bump", r.rc)
	}
	return goRateLimitView(&r.view), nil
}

// CheckRateLimit returns the mask of counters that block now (0: a request
// may pass; tally_ratelimit_check, reads only). Errors: ErrNotFound,
// ErrKey, ErrClosed.
func (s *Store) CheckRateLimit(key string) (RateLimitView, Counter, error) {
	k, n := strKey(key)
	return s.rlCheck(k, n)
}

// CheckRateLimitBytes is CheckRateLimit with a []byte key.
func (s *Store) CheckRateLimitBytes(key []byte) (RateLimitView, Counter, error) {
	k, n := bytesKey(key)
	return s.rlCheck(k, n)
}

func (s *Store) rlCheck(k *C.char, n C.size_t) (RateLimitView, Counter, error) {
	if !s.enter() {
		return RateLimitView{}, 0, closedErr("ratelimit_check")
	}
	r := C.tgo_rl_check(s.h, k, n)
	s.leave()
	if r.rc < 0 {
		return RateLimitView{}, 0, codeErr("ratelimit_check", r.rc)
	}
	return goRateLimitView(&r.view), Counter(r.mask), nil
}

// TryConsumeRateLimit takes tokens and requests only if both fit: ok
// false (TALLY_LIMITED) took nothing and limited is the mask of the
// counters that did not fit (tally_ratelimit_try_consume). Errors:
// ErrNotFound, ErrInvalid, ErrOverflow, ErrKey, ErrNoMem, ErrClosed.
func (s *Store) TryConsumeRateLimit(key string, tokens, requests int64) (RateLimitView, bool, Counter, error) {
	k, n := strKey(key)
	return s.rlTryConsume(k, n, tokens, requests)
}

// TryConsumeRateLimitBytes is TryConsumeRateLimit with a []byte key.
func (s *Store) TryConsumeRateLimitBytes(key []byte, tokens, requests int64) (RateLimitView, bool, Counter, error) {
	k, n := bytesKey(key)
	return s.rlTryConsume(k, n, tokens, requests)
}

func (s *Store) rlTryConsume(k *C.char, n C.size_t, tokens, requests int64) (RateLimitView, bool, Counter, error) {
	if !s.enter() {
		return RateLimitView{}, false, 0, closedErr("ratelimit_try_consume")
	}
	r := C.tgo_rl_try_consume(s.h, k, n, C.int64_t(tokens), C.int64_t(requests))
	s.leave()
	if r.rc < 0 {
		return RateLimitView{}, false, 0, codeErr("ratelimit_try_consume", r.rc)
	}
	return goRateLimitView(&r.view), r.rc == C.TALLY_OK, Counter(r.mask), nil
}

// ResetRateLimit resets the counters in mask (CounterTokens,
// CounterRequests, optionally | ResetDueOnly) if the record still has
// version observed (tally_ratelimit_reset): reset is the mask of counters
// that were reset; ok false is TALLY_CONFLICT (nothing changed; the view
// is the current snapshot). Errors: ErrNotFound, ErrInvalid (empty or
// unknown mask), ErrOverflow, ErrKey, ErrNoMem, ErrClosed.
func (s *Store) ResetRateLimit(key string, observed uint64, mask Counter) (RateLimitView, Counter, bool, error) {
	k, n := strKey(key)
	return s.rlReset(k, n, observed, mask)
}

// ResetRateLimitBytes is ResetRateLimit with a []byte key.
func (s *Store) ResetRateLimitBytes(key []byte, observed uint64, mask Counter) (RateLimitView, Counter, bool, error) {
	k, n := bytesKey(key)
	return s.rlReset(k, n, observed, mask)
}

func (s *Store) rlReset(k *C.char, n C.size_t, observed uint64, mask Counter) (RateLimitView, Counter, bool, error) {
	if !s.enter() {
		return RateLimitView{}, 0, false, closedErr("ratelimit_reset")
	}
	r := C.tgo_rl_reset(s.h, k, n, C.uint64_t(observed), C.unsigned(mask))
	s.leave()
	if r.rc < 0 {
		return RateLimitView{}, 0, false, codeErr("ratelimit_reset", r.rc)
	}
	return goRateLimitView(&r.view), Counter(r.mask), r.rc == C.TALLY_OK, nil
}

// RemoveRateLimit deletes the rate limit and returns its last snapshot
// (tally_ratelimit_remove). Errors: ErrNotFound, ErrKey, ErrNoMem,
// ErrClosed.
func (s *Store) RemoveRateLimit(key string) (RateLimitView, error) {
	k, n := strKey(key)
	return s.rlRemove(k, n)
}

// RemoveRateLimitBytes is RemoveRateLimit with a []byte key.
func (s *Store) RemoveRateLimitBytes(key []byte) (RateLimitView, error) {
	k, n := bytesKey(key)
	return s.rlRemove(k, n)
}

func (s *Store) rlRemove(k *C.char, n C.size_t) (RateLimitView, error) {
	if !s.enter() {
		return RateLimitView{}, closedErr("ratelimit_remove")
	}
	r := C.tgo_rl_remove(s.h, k, n)
	s.leave()
	if r.rc < 0 {
		return RateLimitView{}, codeErr("ratelimit_remove", r.rc)
	}
	return goRateLimitView(&r.view), nil
}
