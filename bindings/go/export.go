package tally

/*
#include "tally_go.h"
*/
import "C"

import (
	"io"
	"runtime/cgo"
	"unsafe"
)

// Record is one record as an export saw it: its key, its kind and the
// view of one snapshot (as a get shows it). Only the view of its kind is
// filled.
type Record struct {
	Kind      Kind
	Key       string
	Budget    BudgetView
	RateLimit RateLimitView
}

// cStop: the C walk was stopped by the Go side (fn's error or a panic).
const cStop = 1 << 20

type exportState struct {
	fn       func(Record) error
	w        io.Writer
	err      error
	pan      any
	hasPanic bool
}

//export goTallyRecord
func goTallyRecord(h C.uintptr_t, r *C.tally_record) (rc C.int) {
	st := cgo.Handle(h).Value().(*exportState)
	defer func() {
		if p := recover(); p != nil {
			st.pan, st.hasPanic = p, true
			rc = cStop
		}
	}()
	rec := Record{Kind: Kind(r.kind), Key: C.GoStringN(r.key, C.int(r.key_len))}
	if rec.Kind == KindBudget {
		rec.Budget = goBudgetView(&r.budget)
	} else {
		rec.RateLimit = goRateLimitView(&r.ratelimit)
	}
	if err := st.fn(rec); err != nil {
		st.err = err
		return cStop
	}
	return 0
}

//export goTallyWrite
func goTallyWrite(h C.uintptr_t, data *C.char, n C.size_t) (rc C.int) {
	st := cgo.Handle(h).Value().(*exportState)
	defer func() {
		if p := recover(); p != nil {
			st.pan, st.hasPanic = p, true
			rc = cStop
		}
	}()
	// io.Writer must not retain p: the C chunk is valid during the call.
	if _, err := st.w.Write(unsafe.Slice((*byte)(unsafe.Pointer(data)), int(n))); err != nil {
		st.err = err
		return cStop
	}
	return 0
}

func (s *Store) walk(op string, st *exportState, run func(C.uintptr_t) C.int) error {
	if !s.enter() {
		return closedErr(op)
	}
	h := cgo.NewHandle(st)
	rc := run(C.uintptr_t(h))
	h.Delete()
	s.leave()
	if st.hasPanic {
		panic(st.pan)
	}
	if rc == cStop && (st.err != nil) {
		return st.err
	}
	if rc != 0 {
		return codeErr(op, rc)
	}
	return nil
}

// Export hands every record of the store to fn (tally_export, walked to
// the end): every record live for the whole walk once, one created or
// removed during it at most once, each from one snapshot; writers never
// wait. fn runs on the calling goroutine and may call the store (Close
// included). An error from fn stops the walk and is returned; a panic in
// fn stops it and is re-raised here. Errors: fn's, ErrNoMem, ErrClosed.
func (s *Store) Export(fn func(Record) error) error {
	if fn == nil {
		return &Error{Op: "export", Code: CodeEInval}
	}
	return s.walk("export", &exportState{fn: fn}, func(h C.uintptr_t) C.int {
		return C.tgo_export(s.p, h)
	})
}

// WriteMetrics writes the store's stats and gauges of up to maxRecords
// records (0: none) in the Prometheus text format 0.0.4 to w, in chunks of
// at most 4 KiB (tally_metrics_write). w's error stops it and is returned.
// Errors: w's, ErrNoMem, ErrClosed.
func (s *Store) WriteMetrics(w io.Writer, maxRecords uint64) error {
	if w == nil {
		return &Error{Op: "metrics_write", Code: CodeEInval}
	}
	return s.walk("metrics_write", &exportState{w: w}, func(h C.uintptr_t) C.int {
		return C.tgo_metrics(s.p, h, C.uint64_t(maxRecords))
	})
}
