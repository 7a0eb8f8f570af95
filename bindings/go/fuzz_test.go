package tally

import (
	"errors"
	"testing"
	"time"
)

// A tiny model of budgets with 1 s calendar windows on a manual clock.
type modelBudget struct {
	exists      bool
	max         int64
	usage       int64 // as stored
	windowStart int64 // as stored
}

const fuzzPeriod = sec

var fuzzKeys = []string{"a", "b", "k\x00z", "\xff\xfe"}

// FuzzOps decodes the input into calls on a store (3 bytes a call: the
// operation, the key, an amount) and checks each result against the model:
// try_consume never takes past the max, check and get show what the model
// says, and at the end every unit applied is in some roll event's
// usage_before, a record's usage or a removed record's last usage.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 0, 10, 1, 0, 4, 2, 0, 7, 2, 0, 6, 3, 0, 0, 4, 0, 0})
	f.Add([]byte{0, 1, 5, 1, 1, 9, 6, 0, 100, 2, 1, 3, 9, 0, 0, 4, 1, 0, 5, 1, 0})
	f.Add([]byte{0, 2, 50, 7, 2, 30, 7, 2, 90, 6, 0, 120, 8, 2, 0, 3, 2, 0})
	f.Add([]byte{0, 3, 1, 10, 3, 0, 11, 0, 0, 2, 3, 2, 5, 3, 0, 0, 3, 200, 2, 3, 200})
	f.Add([]byte{0, 0, 255, 0, 1, 255, 6, 0, 99, 1, 0, 1, 1, 1, 2, 6, 0, 101, 9, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 3000 {
			data = data[:3000]
		}
		s, err := Open(Options{ManualClock: true, Now: base, Events: 8192})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		now := base
		model := make([]modelBudget, len(fuzzKeys))
		applied := map[string]int64{}
		removed := map[string]int64{}
		due := func(m *modelBudget) bool { return now >= m.windowStart+fuzzPeriod }
		roll := func(m *modelBudget) {
			m.usage = 0
			m.windowStart = now - now%fuzzPeriod
		}
		eff := func(m *modelBudget) int64 {
			if due(m) {
				return 0
			}
			return m.usage
		}
		for i := 0; i+3 <= len(data); i += 3 {
			op, ki, amount := data[i]%12, int(data[i+1])%len(fuzzKeys), int64(data[i+2])
			key := fuzzKeys[ki]
			bytesForm := data[i+1]&0x80 != 0
			m := &model[ki]
			switch op {
			case 0: // upsert
				v, created, err := s.UpsertBudget(key, BudgetConfig{Max: amount * 2, Period: Period{Count: fuzzPeriod, Unit: PeriodFixed}, CalendarAligned: true})
				if err != nil {
					t.Fatalf("upsert: %v", err)
				}
				if created != !m.exists {
					t.Fatalf("upsert %q: created %v, model exists %v", key, created, m.exists)
				}
				if !m.exists {
					*m = modelBudget{exists: true}
					roll(m)
				}
				m.max = amount * 2
				if v.Usage != m.usage || v.WindowStart != m.windowStart || v.Config.Max != m.max {
					t.Fatalf("upsert view %+v, model %+v", v, *m)
				}
			case 1: // bump
				var v BudgetView
				if bytesForm {
					v, err = s.BumpBudgetBytes([]byte(key), amount)
				} else {
					v, err = s.BumpBudget(key, amount)
				}
				if !m.exists {
					if !errors.Is(err, ErrNotFound) {
						t.Fatalf("bump of a missing record: %v", err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("bump: %v", err)
				}
				if due(m) {
					roll(m)
				}
				m.usage += amount
				applied[key] += amount
				if v.Usage != m.usage || v.WindowStart != m.windowStart {
					t.Fatalf("bump view %+v, model %+v", v, *m)
				}
			case 2: // try_consume
				var v BudgetView
				var ok bool
				if bytesForm {
					v, ok, err = s.TryConsumeBudgetBytes([]byte(key), amount)
				} else {
					v, ok, err = s.TryConsumeBudget(key, amount)
				}
				if !m.exists {
					if !errors.Is(err, ErrNotFound) {
						t.Fatalf("try_consume of a missing record: %v", err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("try_consume: %v", err)
				}
				want := eff(m)+amount <= m.max
				if ok != want {
					t.Fatalf("try_consume %d: ok %v, model usage %d max %d", amount, ok, eff(m), m.max)
				}
				if ok {
					if due(m) {
						roll(m)
					}
					m.usage += amount
					applied[key] += amount
				}
				if v.Usage != eff(m) || v.Usage > m.max && ok {
					t.Fatalf("try_consume view %+v, model %+v", v, *m)
				}
			case 3: // check
				v, limited, err := s.CheckBudget(key)
				if !m.exists {
					if !errors.Is(err, ErrNotFound) {
						t.Fatalf("check of a missing record: %v", err)
					}
					continue
				}
				if err != nil || limited != (eff(m) >= m.max) || v.Usage != eff(m) {
					t.Fatalf("check: %v %v %+v, model %+v", err, limited, v, *m)
				}
			case 4: // get
				v, err := s.GetBudgetBytes([]byte(key))
				if !m.exists {
					if !errors.Is(err, ErrNotFound) {
						t.Fatalf("get of a missing record: %v", err)
					}
					continue
				}
				if err != nil || v.Usage != m.usage || v.WindowStart != m.windowStart || v.Held != 0 {
					t.Fatalf("get: %v %+v, model %+v", err, v, *m)
				}
			case 5: // remove
				v, err := s.RemoveBudget(key)
				if !m.exists {
					if !errors.Is(err, ErrNotFound) {
						t.Fatalf("remove of a missing record: %v", err)
					}
					continue
				}
				if err != nil || v.Usage != m.usage {
					t.Fatalf("remove: %v %+v, model %+v", err, v, *m)
				}
				removed[key] += m.usage
				*m = modelBudget{}
			case 6: // the clock moves on
				now += amount * int64(10*time.Millisecond)
				if err := s.SetNow(now); err != nil {
					t.Fatal(err)
				}
			case 7: // admit a hold of amount, settle half of it
				h, d, err := s.Admit([]Charge{{Kind: KindBudget, Key: key, Amount: amount}}, AdmitHold, time.Second)
				if !m.exists {
					if !errors.Is(err, ErrNotFound) || d.Refused != 0 || d.Limits[0].Flags&FlagGone == 0 {
						t.Fatalf("admit of a missing record: %v %+v", err, d)
					}
					continue
				}
				if err != nil {
					t.Fatalf("admit: %v", err)
				}
				if d.Allowed() != (eff(m)+amount <= m.max) || h.Live() != d.Allowed() {
					t.Fatalf("admit %d: %+v, model usage %d max %d", amount, d, eff(m), m.max)
				}
				if !d.Allowed() {
					continue
				}
				if c := d.Limits[0].Counters[0]; c.Held != amount || c.Used != eff(m) || c.Remaining != m.max-eff(m)-amount {
					t.Fatalf("admit report %+v, model %+v", c, *m)
				}
				d, err = s.Settle(&h, []Cost{{Amount: amount / 2}})
				if err != nil || h.Live() {
					t.Fatalf("settle: %v", err)
				}
				if due(m) {
					roll(m)
				}
				m.usage += amount / 2
				applied[key] += amount / 2
				if c := d.Limits[0].Counters[0]; c.Used != m.usage || c.Held != 0 {
					t.Fatalf("settle report %+v, model %+v", c, *m)
				}
			case 8: // operator reset at the current version
				v, err := s.GetBudget(key)
				if !m.exists {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if amount&1 == 1 { // a stale version conflicts
					_, ok, err := s.ResetBudget(key, v.Version+1)
					if err != nil || ok {
						t.Fatalf("stale reset: %v %v", ok, err)
					}
					continue
				}
				_, ok, err := s.ResetBudget(key, v.Version)
				if err != nil || !ok {
					t.Fatalf("reset: %v %v", ok, err)
				}
				roll(m)
			case 9: // sweep
				n, err := s.Sweep()
				want := 0
				for j := range model {
					if model[j].exists && due(&model[j]) {
						roll(&model[j])
						want++
					}
				}
				if err != nil || n != want {
					t.Fatalf("sweep rolled %d, model %d (%v)", n, want, err)
				}
			case 10: // bad arguments change nothing
				_, err := s.BumpBudget(key, -1-amount)
				if m.exists && !errors.Is(err, ErrInvalid) || !m.exists && err == nil {
					t.Fatalf("negative bump: %v", err)
				}
				_, _, err = s.TryConsumeBudgetBytes(nil, amount)
				if !errors.Is(err, ErrKey) {
					t.Fatalf("empty key: %v", err)
				}
			case 11: // peek changes nothing
				_, d, err := s.Admit([]Charge{{Kind: KindBudget, KeyBytes: []byte(key), Amount: amount}}, AdmitPeek, 0)
				if !m.exists {
					if !errors.Is(err, ErrNotFound) {
						t.Fatalf("peek of a missing record: %v", err)
					}
					continue
				}
				if err != nil || d.Allowed() != (eff(m)+amount <= m.max) {
					t.Fatalf("peek %d: %v %+v, model %+v", amount, err, d, *m)
				}
			}
		}
		// Conservation, from the roll events.
		rolled := map[string]int64{}
		buf := make([]Event, 128)
		for n := s.Events(buf); n > 0; n = s.Events(buf) {
			for _, e := range buf[:n] {
				if e.Type == EventRoll {
					rolled[e.Key] += e.UsageBefore
				}
			}
		}
		if c := s.EventCounts(); c.DroppedRolls != 0 {
			t.Fatalf("dropped %+v", c)
		}
		for ki, key := range fuzzKeys {
			if got := rolled[key] + model[ki].usage + removed[key]; got != applied[key] {
				t.Fatalf("%q: rolled %d + usage %d + removed %d != applied %d",
					key, rolled[key], model[ki].usage, removed[key], applied[key])
			}
		}
	})
}
