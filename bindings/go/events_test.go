package tally

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRollEvents(t *testing.T) {
	s := manual(t)
	_, _, err := s.UpsertBudget("b\x00\xff", BudgetConfig{Max: 10, Period: MustParsePeriod("1s"), CalendarAligned: true})
	must(t, err)
	m := MustParsePeriod("1s")
	_, _, err = s.UpsertRateLimit("r", RateLimitConfig{Tokens: Limit{Period: m}, Requests: Limit{Period: m}, CalendarAligned: true})
	must(t, err)
	_, err = s.BumpBudgetBytes([]byte("b\x00\xff"), 4)
	must(t, err)
	_, err = s.BumpRateLimit("r", 7, 1)
	must(t, err)
	must(t, s.Advance(time.Second))
	_, err = s.BumpBudget("b\x00\xff", 1) // rolls inline
	must(t, err)
	if n, err := s.Sweep(); err != nil || n != 2 { // the rate limit's two counters
		t.Fatalf("sweep: %d %v", n, err)
	}
	v, err := s.GetBudget("b\x00\xff")
	must(t, err)
	_, _, err = s.ResetBudget("b\x00\xff", v.Version)
	must(t, err)
	ev := make([]Event, 2) // drained in two calls
	var all []Event
	for {
		n := s.Events(ev)
		all = append(all, ev[:n]...)
		if n < len(ev) {
			break
		}
	}
	if len(all) != 4 {
		t.Fatalf("%d events: %+v", len(all), all)
	}
	b := all[0]
	if b.Type != EventRoll || b.Kind != KindBudget || b.Key != "b\x00\xff" || b.Cause != RollInline ||
		b.UsageBefore != 4 || b.OldWindowStart != base || b.NewWindowStart != base+sec || b.Counter != CounterBudget {
		t.Fatalf("inline roll: %+v", b)
	}
	sort.Slice(all[1:3], func(i, j int) bool { return all[1+i].Counter < all[1+j].Counter })
	if r := all[1]; r.Kind != KindRateLimit || r.Key != "r" || r.Cause != RollSweep || r.Counter != CounterTokens || r.UsageBefore != 7 {
		t.Fatalf("sweep roll: %+v", r)
	}
	if r := all[2]; r.Counter != CounterRequests || r.UsageBefore != 1 {
		t.Fatalf("sweep roll: %+v", r)
	}
	if r := all[3]; r.Cause != RollReset || r.UsageBefore != 1 || r.Key != "b\x00\xff" {
		t.Fatalf("reset roll: %+v", r)
	}
	if c := s.EventCounts(); c.Rolls != 4 || c.DroppedRolls != 0 {
		t.Fatalf("counts %+v", c)
	}
	if s.Events(nil) != 0 || s.Events(ev) != 0 {
		t.Fatal("events left")
	}
}

func TestEventsDropped(t *testing.T) {
	s := open(t, Options{ManualClock: true, Now: base, Events: 2})
	_, _, err := s.UpsertBudget("k", BudgetConfig{Max: 10, Period: MustParsePeriod("1s")})
	must(t, err)
	for i := 0; i < 5; i++ {
		_, err = s.BumpBudget("k", 1)
		must(t, err)
		must(t, s.Advance(time.Second))
	}
	_, err = s.BumpBudget("k", 1)
	must(t, err)
	if c := s.EventCounts(); c.Rolls != 2 || c.DroppedRolls != 3 {
		t.Fatalf("counts %+v", c)
	}
	ev := make([]Event, 10)
	if n := s.Events(ev); n != 2 || ev[0].NewWindowStart != base+sec || ev[1].NewWindowStart != base+2*sec {
		t.Fatalf("kept the oldest two: %d %+v", n, ev[:n])
	}
	// No ring: no listener, no events, nothing counted.
	q := open(t, Options{ManualClock: true, Now: base})
	_, _, err = q.UpsertBudget("k", BudgetConfig{Max: 10, Period: MustParsePeriod("1s")})
	must(t, err)
	must(t, q.Advance(time.Second))
	_, err = q.BumpBudget("k", 1)
	must(t, err)
	if q.Events(ev) != 0 || q.EventCounts() != (EventCounts{}) {
		t.Fatal("events without a ring")
	}
}

func TestExport(t *testing.T) {
	s := manual(t)
	want := map[string]int64{}
	for i := 0; i < 300; i++ {
		k := fmt.Sprintf("team-%03d", i)
		_, _, err := s.UpsertBudget(k, BudgetConfig{Max: 1000})
		must(t, err)
		_, err = s.BumpBudget(k, int64(i))
		must(t, err)
		want["b:"+k] = int64(i)
	}
	m := MustParsePeriod("1m")
	_, _, err := s.UpsertRateLimit("route", RateLimitConfig{Tokens: Limit{Period: m}, Requests: Limit{HasMax: true, Max: 5, Period: m}})
	must(t, err)
	_, err = s.BumpRateLimit("route", 11, 2)
	must(t, err)
	got := map[string]int64{}
	err = s.Export(func(r Record) error {
		switch r.Kind {
		case KindBudget:
			got["b:"+r.Key] = r.Budget.Usage
		case KindRateLimit:
			if r.Key != "route" || r.RateLimit.Tokens.Usage != 11 || r.RateLimit.Requests.Usage != 2 ||
				r.RateLimit.Config.Requests.Max != 5 {
				t.Errorf("rate limit record %+v", r)
			}
			got["r:"+r.Key] = 1
		}
		// The callback may call the store.
		if r.Kind == KindBudget {
			if _, err := s.BumpBudget(r.Key, 0); err != nil {
				t.Error(err)
			}
		}
		return nil
	})
	must(t, err)
	if len(got) != 301 || got["r:route"] != 1 {
		t.Fatalf("export saw %d records", len(got))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: %d, want %d", k, got[k], v)
		}
	}
	// An error stops the walk and comes back as it is.
	stop := errors.New("stop")
	n := 0
	err = s.Export(func(Record) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if err != stop || n != 3 {
		t.Fatalf("stop: %v after %d", err, n)
	}
	// A panic stops it and is raised again in the caller.
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Fatalf("recovered %v", p)
			}
		}()
		s.Export(func(Record) error { panic("boom") })
	}()
	wantErr(t, s.Export(nil), ErrInvalid, CodeEInval)
	// The store still works after all that.
	_, err = s.BumpBudget("team-000", 1)
	must(t, err)
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	w.n++
	return 0, io.ErrShortWrite
}

func TestWriteMetrics(t *testing.T) {
	s := manual(t)
	_, _, err := s.UpsertBudget("team", BudgetConfig{Max: 50, Period: MustParsePeriod("1h"), CalendarAligned: true})
	must(t, err)
	_, err = s.BumpBudget("team", 34)
	must(t, err)
	_, _, err = s.UpsertBudget("a%b\x00", BudgetConfig{Max: 1})
	must(t, err)
	var buf bytes.Buffer
	must(t, s.WriteMetrics(&buf, 100))
	text := buf.String()
	for _, line := range []string{
		"# TYPE tally_records gauge\n",
		"tally_records 2\n",
		`tally_used{kind="budget",key="team",counter="budget"} 34` + "\n",
		`tally_max{kind="budget",key="team",counter="budget"} 50` + "\n",
		`tally_window_end_seconds{kind="budget",key="team",counter="budget"} 1767229200.000000000` + "\n",
		`tally_used{kind="budget",key="a%25b%00",counter="budget"} 0` + "\n",
		"tally_records_exported 2\n",
	} {
		if !strings.Contains(text, line) {
			t.Errorf("metrics lack %q", line)
		}
	}
	buf.Reset()
	must(t, s.WriteMetrics(&buf, 0))
	if strings.Contains(buf.String(), "tally_used") || !strings.Contains(buf.String(), "tally_writes_total") {
		t.Fatalf("stats only:\n%s", buf.String())
	}
	w := &failWriter{}
	if err := s.WriteMetrics(w, 10); err != io.ErrShortWrite || w.n != 1 {
		t.Fatalf("writer error: %v after %d writes", err, w.n)
	}
	wantErr(t, s.WriteMetrics(nil, 0), ErrInvalid, CodeEInval)
}

// Exact conservation under concurrency, with the real clock and 1 ms
// windows that roll all the time: for every record, the usage_before of
// every roll event plus the final usage equals every unit applied.
func TestConservation(t *testing.T) {
	s := open(t, Options{Events: 1 << 16})
	keys := []string{"k0", "k1", "k2"}
	for _, k := range keys {
		_, _, err := s.UpsertBudget(k, BudgetConfig{Max: 50, Period: MustParsePeriod("1ms")})
		must(t, err)
		_, _, err = s.UpsertRateLimit(k, RateLimitConfig{
			Tokens:   Limit{HasMax: true, Max: 40, Period: MustParsePeriod("2ms")},
			Requests: Limit{HasMax: true, Max: 7, Period: MustParsePeriod("1ms")}})
		must(t, err)
	}
	type total struct{ budget, tokens, requests int64 }
	applied := make([]total, len(keys))
	var refused int64
	rolled := map[string]*total{}
	for _, k := range keys {
		rolled[k] = &total{}
	}
	var mu sync.Mutex
	collect := func(ev []Event) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range ev {
			if e.Type != EventRoll {
				continue
			}
			r := rolled[e.Key]
			switch {
			case e.Kind == KindBudget:
				r.budget += e.UsageBefore
			case e.Counter == CounterTokens:
				r.tokens += e.UsageBefore
			default:
				r.requests += e.UsageBefore
			}
		}
	}
	done := make(chan struct{})
	drained := make(chan struct{})
	go func() { // the event poller
		defer close(drained)
		buf := make([]Event, 256)
		for {
			n := s.Events(buf)
			collect(buf[:n])
			select {
			case <-done:
				return
			default:
			}
			if n == 0 {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	var wg sync.WaitGroup
	const goroutines, ops = 8, 20000
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			mine := make([]total, len(keys))
			for i := 0; i < ops; i++ {
				ki := (g + i) % len(keys)
				k := keys[ki]
				a := int64(i%5 + 1)
				switch i % 4 {
				case 0:
					_, err := s.BumpBudget(k, a)
					if err != nil {
						t.Error(err)
						return
					}
					mine[ki].budget += a
				case 1:
					_, ok, err := s.TryConsumeBudgetBytes([]byte(k), a)
					if err != nil {
						t.Error(err)
						return
					}
					if ok {
						mine[ki].budget += a
					} else {
						atomic.AddInt64(&refused, 1)
					}
				case 2:
					_, err := s.BumpRateLimit(k, a, 1)
					if err != nil {
						t.Error(err)
						return
					}
					mine[ki].tokens += a
					mine[ki].requests++
				case 3:
					_, ok, _, err := s.TryConsumeRateLimit(k, a, 1)
					if err != nil {
						t.Error(err)
						return
					}
					if ok {
						mine[ki].tokens += a
						mine[ki].requests++
					}
				}
			}
			mu.Lock()
			for i := range mine {
				applied[i].budget += mine[i].budget
				applied[i].tokens += mine[i].tokens
				applied[i].requests += mine[i].requests
			}
			mu.Unlock()
		}(g)
	}
	wg.Wait()
	close(done)
	<-drained
	buf := make([]Event, 256)
	for n := s.Events(buf); n > 0; n = s.Events(buf) {
		collect(buf[:n])
	}
	if c := s.EventCounts(); c.DroppedRolls != 0 || c.Rolls == 0 {
		t.Fatalf("event counts %+v", c)
	}
	for i, k := range keys {
		b, err := s.GetBudget(k)
		must(t, err)
		r, err := s.GetRateLimit(k)
		must(t, err)
		got := total{rolled[k].budget + b.Usage, rolled[k].tokens + r.Tokens.Usage, rolled[k].requests + r.Requests.Usage}
		if got != applied[i] {
			t.Errorf("%s: rolled + usage %+v, applied %+v", k, got, applied[i])
		}
	}
	t.Logf("rolls %d, refused budget try_consumes %d", s.EventCounts().Rolls, refused)
}
