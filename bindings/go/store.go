package tally

/*
#cgo pkg-config: tally
#cgo CFLAGS: -std=c11 -D_POSIX_C_SOURCE=200809L
#include "tally_go.h"
*/
import "C"

import (
	"math"
	"sync/atomic"
	"time"
	"unsafe"
)

// Never is the window end (and view time) of a window that never rolls.
const Never = math.MaxInt64

// Options configure a Store. The zero value is the library's defaults:
// the real clock, no events.
type Options struct {
	// ExpectedRecords pre-sizes the map (0: a small default).
	ExpectedRecords int
	// HashSeed of the map (0: derived per store).
	HashSeed uint64
	// HoldTTLMax is the longest TTL a hold may ask for (0: 10 minutes).
	HoldTTLMax time.Duration
	// Events is the capacity of the event ring (rolls and hold expiries,
	// see Store.Events); 0 installs no listener at all.
	Events int
	// ManualClock makes the store's clock a value set by SetNow (tests,
	// simulations, replays), starting at Now. It is read by C code
	// directly: no Go call per reading. Without it the store uses
	// CLOCK_REALTIME and the library's coarse clock.
	ManualClock bool
	Now         int64
}

// Store is a tally store. All methods are safe for concurrent use. Close
// it: a Store that is never closed keeps its C memory and one of the
// process's pthread keys (1,024 on glibc) until the process exits.
type Store struct {
	// state: the number of calls in flight, closedBit once Close has been
	// called, doneBit once the C store has been destroyed.
	state  int64
	p      *C.tally_store
	h      C.uintptr_t // p, for the wrappers: no cgo pointer check per call
	ctx    *C.tgo_ctx
	manual bool
	evbuf  chan []C.tgo_event // one drain buffer, reused
}

const (
	closedBit = int64(1) << 62
	doneBit   = int64(1) << 61
)

// Open creates a store (tally_store_create). Errors: ErrInvalid, ErrNoMem.
func Open(opts Options) (*Store, error) {
	if opts.ExpectedRecords < 0 || opts.Events < 0 || opts.HoldTTLMax < 0 {
		return nil, &Error{Op: "store_create", Code: CodeEInval}
	}
	res := C.tgo_open(C.tgo_open_args{
		expected_records: C.size_t(opts.ExpectedRecords),
		hash_seed:        C.uint64_t(opts.HashSeed),
		hold_ttl_max:     C.int64_t(opts.HoldTTLMax),
		event_capacity:   C.size_t(opts.Events),
		manual_clock:     C.bool(opts.ManualClock),
		now:              C.int64_t(opts.Now),
	})
	if res.rc != 0 {
		return nil, codeErr("store_create", res.rc)
	}
	s := &Store{p: res.ctx.store, h: C.uintptr_t(uintptr(unsafe.Pointer(res.ctx.store))), ctx: res.ctx, manual: opts.ManualClock,
		evbuf: make(chan []C.tgo_event, 1)}
	s.evbuf <- nil
	return s, nil
}

// enter admits a call unless the store is closed; every true is paired
// with one leave.
func (s *Store) enter() bool {
	if atomic.AddInt64(&s.state, 1)&closedBit != 0 {
		s.leave()
		return false
	}
	return true
}

func (s *Store) leave() {
	if atomic.AddInt64(&s.state, -1) == closedBit {
		s.destroy()
	}
}

// destroy frees the C store once: closed and no call in flight.
func (s *Store) destroy() {
	if atomic.CompareAndSwapInt64(&s.state, closedBit, closedBit|doneBit) {
		C.tgo_close(s.ctx)
	}
}

// Close closes the store: every later call returns ErrClosed, and the C
// store (tally_store_destroy) is freed as soon as no call is in flight,
// by Close itself or by the last call to return. Close never blocks, may
// run concurrently with any call and from an Export or WriteMetrics
// callback, and is idempotent (always nil).
func (s *Store) Close() error {
	for {
		old := atomic.LoadInt64(&s.state)
		if old&closedBit != 0 {
			return nil
		}
		if atomic.CompareAndSwapInt64(&s.state, old, old|closedBit) {
			s.destroy()
			return nil
		}
	}
}

func closedErr(op string) error { return &Error{Op: op, Code: CodeClosed} }

// SetNow sets the manual clock (Options.ManualClock), ns since the epoch.
// It never moves the store's windows back (the library ignores time going
// backwards). Errors: ErrInvalid without a manual clock, ErrClosed.
func (s *Store) SetNow(now int64) error {
	if !s.manual {
		return &Error{Op: "set_now", Code: CodeEInval}
	}
	if !s.enter() {
		return closedErr("set_now")
	}
	C.tgo_set_now(s.ctx, C.int64_t(now))
	s.leave()
	return nil
}

// Advance moves the manual clock forward by d.
func (s *Store) Advance(d time.Duration) error {
	if !s.manual {
		return &Error{Op: "set_now", Code: CodeEInval}
	}
	if !s.enter() {
		return closedErr("set_now")
	}
	atomic.AddInt64((*int64)(unsafe.Pointer(&s.ctx.now)), int64(d))
	s.leave()
	return nil
}

// Now is the store's clock: the manual clock (0 once the store is
// closed), or CLOCK_REALTIME.
func (s *Store) Now() int64 {
	if !s.manual {
		return int64(C.tgo_now(nil))
	}
	if !s.enter() {
		return 0
	}
	now := atomic.LoadInt64((*int64)(unsafe.Pointer(&s.ctx.now)))
	s.leave()
	return now
}

// Stats are tally_stats: counters summed over all threads (see tally.h).
type Stats struct {
	Records, Threads, ThreadsActive            uint64
	Writes, CASRetries, Rolls, Retired, Freed  uint64
	Pending, PeakPending                       uint64
	Admitted, RefusedLimit, RefusedTooBig      uint64
	RefusedRace, RefusedMissing, Compensations uint64
	Holds, Settles, Releases, Partials         uint64
	LateSettles, OverdraftUnits, ExpiredHolds  uint64
	ExpiredUnits, ShadowWouldDeny              uint64
}

// Stats is tally_store_stats.
func (s *Store) Stats() (Stats, error) {
	if !s.enter() {
		return Stats{}, closedErr("store_stats")
	}
	defer s.leave()
	st := C.tally_stats{size: C.sizeof_tally_stats}
	if rc := C.tally_store_stats(s.p, &st); rc != 0 {
		return Stats{}, codeErr("store_stats", rc)
	}
	return Stats{
		Records: uint64(st.records), Threads: uint64(st.threads),
		ThreadsActive: uint64(st.threads_active), Writes: uint64(st.writes),
		CASRetries: uint64(st.cas_retries), Rolls: uint64(st.rolls),
		Retired: uint64(st.retired), Freed: uint64(st.freed),
		Pending: uint64(st.pending), PeakPending: uint64(st.peak_pending),
		Admitted: uint64(st.admitted), RefusedLimit: uint64(st.refused_limit),
		RefusedTooBig: uint64(st.refused_too_big), RefusedRace: uint64(st.refused_race),
		RefusedMissing: uint64(st.refused_missing), Compensations: uint64(st.compensations),
		Holds: uint64(st.holds), Settles: uint64(st.settles), Releases: uint64(st.releases),
		Partials: uint64(st.partials), LateSettles: uint64(st.late_settles),
		OverdraftUnits: uint64(st.overdraft_units), ExpiredHolds: uint64(st.expired_holds),
		ExpiredUnits: uint64(st.expired_units), ShadowWouldDeny: uint64(st.shadow_would_deny),
	}, nil
}

// Sweep rolls every due window of the store (tally_sweep) and returns how
// many rolls it installed; each is also an event (Options.Events).
func (s *Store) Sweep() (int, error) {
	if !s.enter() {
		return 0, closedErr("sweep")
	}
	defer s.leave()
	var rolled C.size_t
	if rc := C.tally_sweep(s.p, nil, nil, &rolled); rc != 0 {
		return int(rolled), codeErr("sweep", rc)
	}
	return int(rolled), nil
}

// Keys: the Go bytes themselves go to the _n calls. The pointed-to memory
// holds no Go pointer (cgo's rule), the library reads only len bytes and
// keeps nothing (it copies the key). An empty key is passed as NULL, which
// the C side turns into "" so that the library answers TALLY_EKEY.

func strKey(k string) (*C.char, C.size_t) {
	// The first word of a string header is its data pointer
	// (unsafe.StringData is Go 1.20).
	return (*C.char)(*(*unsafe.Pointer)(unsafe.Pointer(&k))), C.size_t(len(k))
}

func bytesKey(k []byte) (*C.char, C.size_t) {
	if len(k) == 0 {
		return nil, 0
	}
	return (*C.char)(unsafe.Pointer(&k[0])), C.size_t(len(k))
}
