// Package tally is the Go binding of tally, exact lock-free budget and
// rate-limit counters (libtally, include/tally.h), built with cgo against
// the installed library through pkg-config ("#cgo pkg-config: tally").
//
// A Store maps keys to budgets and rate limits. Every call is safe from any
// number of goroutines. Keys are strings or byte slices (the *Bytes
// methods) of 1 to 255 bytes, any bytes; they are passed to the library's
// _n calls as they are, without a C copy, and a call on an existing key
// allocates nothing on the Go heap.
//
// Results follow the C library: a normal outcome that is not an error
// (over the limit, a created record, a reset that lost a race) is a result
// (ok, limited, created bool; a Decision's Refused index); every error is a
// *Error that errors.Is matches against ErrInvalid, ErrNotFound, ErrNoMem,
// ErrOverflow, ErrKey, ErrPeriod, ErrSettled or ErrClosed.
//
// Time is int64 nanoseconds since the Unix epoch (UTC) in views and
// decisions, as in C; Never (math.MaxInt64) is a window that never ends.
//
// Close may be called at any time from any goroutine: the store stops
// taking calls (they return ErrClosed) and its memory is freed when the
// last call in flight returns. One caveat comes from the C library: a
// thread's exit touches every store it used, so a goroutine that called
// the store while locked to its OS thread (runtime.LockOSThread) must not
// exit still locked while the store is being freed.
//
// Rolls and hold expiries are delivered without calling Go from the
// library: with Options.Events > 0 a C listener copies each event into a
// bounded ring (one mutex, a copy of about 340 bytes), Store.Events drains
// it, and EventCounts says how many were delivered and dropped (ring full).
package tally
