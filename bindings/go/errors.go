package tally

/*
#include "tally_go.h"
*/
import "C"

import "errors"

// Result codes of the C library (TALLY_* in tally.h). The positive ones are
// outcomes, never errors; the negative ones are carried by *Error.
const (
	CodeOK        = 0
	CodeLimited   = 1
	CodeConflict  = 2
	CodeCreated   = 3
	CodeEInval    = -22
	CodeENoEnt    = -2
	CodeENoMem    = -12
	CodeEOverflow = -75
	CodeEKey      = -1001
	CodeEPeriod   = -1002
	CodeESettled  = -1003
	// CodeClosed is the binding's own: the Store was closed.
	CodeClosed = -1 << 20
)

// Sentinel errors; test with errors.Is(err, tally.ErrNotFound).
var (
	ErrInvalid  = errors.New("tally: invalid argument")                         // TALLY_EINVAL
	ErrNotFound = errors.New("tally: no such record")                           // TALLY_ENOENT
	ErrNoMem    = errors.New("tally: out of memory")                            // TALLY_ENOMEM
	ErrOverflow = errors.New("tally: the sum would overflow int64")             // TALLY_EOVERFLOW
	ErrKey      = errors.New("tally: invalid key: must be 1 to 255 bytes")      // TALLY_EKEY
	ErrPeriod   = errors.New("tally: invalid period")                           // TALLY_EPERIOD
	ErrSettled  = errors.New("tally: the hold was already settled or released") // TALLY_ESETTLED
	ErrClosed   = errors.New("tally: the store is closed")                      // Store.Close
)

// Error is every error of the package: the call that failed (Op, such as
// "budget_bump") and the C result code. errors.Is(err, ErrX) matches the
// sentinel of its code; an unknown code matches none.
type Error struct {
	Op   string
	Code int
}

func (e *Error) Error() string {
	return "tally: " + e.Op + ": " + Strerror(e.Code)
}

// Unwrap returns the sentinel of the code (nil for an unknown code).
func (e *Error) Unwrap() error {
	switch e.Code {
	case CodeEInval:
		return ErrInvalid
	case CodeENoEnt:
		return ErrNotFound
	case CodeENoMem:
		return ErrNoMem
	case CodeEOverflow:
		return ErrOverflow
	case CodeEKey:
		return ErrKey
	case CodeEPeriod:
		return ErrPeriod
	case CodeESettled:
		return ErrSettled
	case CodeClosed:
		return ErrClosed
	}
	return nil
}

// Strerror is tally_strerror: the library's message for any code.
func Strerror(code int) string {
	if code == CodeClosed {
		return "the store is closed"
	}
	return C.GoString(C.tally_strerror(C.int(code)))
}

// ResultName is tally_result_name ("LIMITED", "EINVAL"), or "" if unknown.
func ResultName(code int) string {
	if code == CodeClosed {
		return "ECLOSED"
	}
	p := C.tally_result_name(C.int(code))
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

// Version is the run-time version of the library, "MAJOR.MINOR.PATCH".
func Version() string { return C.GoString(C.tally_version_string()) }

func codeErr(op string, rc C.int) error { return &Error{Op: op, Code: int(rc)} }
