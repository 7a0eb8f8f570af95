package tally

/*
#include "tally_go.h"
*/
import "C"

import "unsafe"

// EventType tells a roll from a hold expiry.
type EventType uint32

const (
	EventRoll   EventType = 1 // TGO_EVENT_ROLL
	EventExpiry EventType = 2 // TGO_EVENT_EXPIRY
)

// RollCause is a tally_roll_cause.
type RollCause uint32

const (
	RollInline RollCause = 1 // TALLY_ROLL_INLINE: a write rolled a due window
	RollSweep  RollCause = 2 // TALLY_ROLL_SWEEP: Sweep rolled it
	RollReset  RollCause = 3 // TALLY_ROLL_RESET: an operator reset
)

// Event is a roll (tally_roll) or an expiry (tally_expiry), copied.
type Event struct {
	Type EventType
	Kind Kind
	Key  string
	// Roll: which counter, why, what the closed window held and the
	// windows' starts (ns).
	Counter        Counter
	Cause          RollCause
	UsageBefore    int64
	OldWindowStart int64
	NewWindowStart int64
	// Expiry: how many holds expired, their sum per counter (budget:
	// Amount[0]; rate limit: tokens, requests) and the slot's boundary.
	Holds   uint32
	Amount  [2]int64
	SlotEnd int64
	// Of the snapshot that installed the roll or dropped the holds.
	Version     uint64
	Incarnation uint64
}

// EventCounts are the events the listener saw since Open: put into the
// ring, and dropped because it was full (Options.Events too small, or
// Events not called often enough).
type EventCounts struct {
	Rolls, Expiries               uint64
	DroppedRolls, DroppedExpiries uint64
}

// eventChunk: events copied out of the C ring per cgo call.
const eventChunk = 64

// Events moves up to len(buf) pending events, oldest first, into buf and
// returns how many. The events were copied by a C listener on the thread
// whose write caused them (no Go code runs there); Events only drains that
// ring, under its mutex, a chunk at a time. Call it from any goroutine
// (e.g. a ticker loop); it returns 0 without Options.Events or once the
// store is closed.
func (s *Store) Events(buf []Event) int {
	if len(buf) == 0 || !s.enter() {
		return 0
	}
	defer s.leave()
	scratch := <-s.evbuf
	defer func() { s.evbuf <- scratch }()
	if scratch == nil {
		scratch = make([]C.tgo_event, eventChunk)
	}
	n := 0
	for n < len(buf) {
		want := len(buf) - n
		if want > len(scratch) {
			want = len(scratch)
		}
		got := int(C.tgo_events_drain(s.ctx, &scratch[0], C.size_t(want)))
		for i := 0; i < got; i++ {
			e := &scratch[i]
			buf[n+i] = Event{
				Type: EventType(e._type), Kind: Kind(e.kind),
				Key:     C.GoStringN((*C.char)(unsafe.Pointer(&e.key[0])), C.int(e.key_len)),
				Counter: Counter(e.counter), Cause: RollCause(e.cause),
				UsageBefore: int64(e.usage_before), OldWindowStart: int64(e.old_window_start),
				NewWindowStart: int64(e.new_window_start), Holds: uint32(e.holds),
				Amount:  [2]int64{int64(e.amount[0]), int64(e.amount[1])},
				SlotEnd: int64(e.slot_end), Version: uint64(e.version),
				Incarnation: uint64(e.incarnation),
			}
		}
		n += got
		if got < want {
			break
		}
	}
	return n
}

// EventCounts returns the listener's counts (zero once closed).
func (s *Store) EventCounts() EventCounts {
	if !s.enter() {
		return EventCounts{}
	}
	c := C.tgo_events_counts(s.ctx)
	s.leave()
	return EventCounts{Rolls: uint64(c.rolls), Expiries: uint64(c.expiries),
		DroppedRolls: uint64(c.dropped_rolls), DroppedExpiries: uint64(c.dropped_expiries)}
}
