package tally

import (
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

const sec = int64(time.Second)

// base: 2026-01-01 00:00:00 UTC, ns.
const base = int64(1767225600) * sec

func open(t testing.TB, o Options) *Store {
	t.Helper()
	s, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func manual(t testing.TB) *Store {
	return open(t, Options{ManualClock: true, Now: base, Events: 1024})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t testing.TB, err, target error, code int) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
	var te *Error
	if !errors.As(err, &te) || te.Code != code || te.Op == "" {
		t.Fatalf("error %#v, want code %d with an op", err, code)
	}
}

func TestVersionAndCodes(t *testing.T) {
	if !strings.HasPrefix(Version(), "0.") {
		t.Fatalf("version %q", Version())
	}
	for code, want := range map[int]error{
		CodeEInval: ErrInvalid, CodeENoEnt: ErrNotFound, CodeENoMem: ErrNoMem,
		CodeEOverflow: ErrOverflow, CodeEKey: ErrKey, CodeEPeriod: ErrPeriod,
		CodeESettled: ErrSettled, CodeClosed: ErrClosed,
	} {
		err := error(&Error{Op: "x", Code: code})
		if !errors.Is(err, want) {
			t.Errorf("code %d does not match %v", code, want)
		}
		if ResultName(code) == "" || Strerror(code) == "unknown result" {
			t.Errorf("code %d: no name or message", code)
		}
		for _, other := range []error{ErrInvalid, ErrNotFound, ErrKey, ErrClosed} {
			if other != want && errors.Is(err, other) {
				t.Errorf("code %d matches %v", code, other)
			}
		}
	}
	if ResultName(CodeLimited) != "LIMITED" || errors.Unwrap(&Error{Code: 12345}) != nil {
		t.Fatal("names")
	}
	if s := (&Error{Op: "budget_bump", Code: CodeENoEnt}).Error(); s != "tally: budget_bump: no such record" {
		t.Fatalf("message %q", s)
	}
}

func TestPeriods(t *testing.T) {
	for text, want := range map[string]Period{
		"1h30m": {Count: int64(90 * time.Minute), Unit: PeriodFixed},
		"500ms": {Count: int64(500 * time.Millisecond), Unit: PeriodFixed},
		"1w":    {Count: 1, Unit: PeriodWeek},
		"1Q":    {Count: 3, Unit: PeriodMonth},
		"":      {},
		"none":  {},
	} {
		p, err := ParsePeriod(text)
		must(t, err)
		if p != want {
			t.Errorf("%q: %+v, want %+v", text, p, want)
		}
	}
	if s := MustParsePeriod("90m").String(); s != "1h30m" {
		t.Errorf("String %q", s)
	}
	if Every(time.Minute).String() != "1m" || (Period{}).String() != "none" {
		t.Error("String")
	}
	if (Period{Count: -1, Unit: PeriodFixed}).String() != "invalid" {
		t.Error("invalid String")
	}
	for _, bad := range []string{"1Y6M", "0s", "-1h", "x", "1h\x00"} {
		_, err := ParsePeriod(bad)
		wantErr(t, err, ErrPeriod, CodeEPeriod)
	}
	defer func() {
		if recover() == nil {
			t.Error("MustParsePeriod did not panic")
		}
	}()
	MustParsePeriod("bad")
}

func TestOpenErrors(t *testing.T) {
	_, err := Open(Options{ExpectedRecords: -1})
	wantErr(t, err, ErrInvalid, CodeEInval)
	_, err = Open(Options{ExpectedRecords: 1 << 30})
	wantErr(t, err, ErrInvalid, CodeEInval)
	s := open(t, Options{})
	wantErr(t, s.SetNow(1), ErrInvalid, CodeEInval)
	wantErr(t, s.Advance(1), ErrInvalid, CodeEInval)
	if now := s.Now(); now < base {
		t.Fatalf("real clock %d", now)
	}
}

func TestBudget(t *testing.T) {
	s := manual(t)
	cfg := BudgetConfig{Max: 100, Period: MustParsePeriod("1h"), CalendarAligned: true}
	v, created, err := s.UpsertBudget("team", cfg)
	must(t, err)
	if !created || v.Config.Max != 100 || v.Usage != 0 || v.WindowStart != base ||
		v.WindowEnd != base+3600*sec || v.Version == 0 || v.Incarnation == 0 {
		t.Fatalf("upsert: %v %+v", created, v)
	}
	if !v.Config.Anchor.IsZero() && v.Config.Anchor.UnixNano() != base {
		t.Fatalf("anchor %v", v.Config.Anchor)
	}
	_, created, err = s.UpsertBudgetBytes([]byte("team"), cfg)
	must(t, err)
	if created {
		t.Fatal("second upsert created")
	}
	v, err = s.BumpBudget("team", 60)
	must(t, err)
	if v.Usage != 60 {
		t.Fatalf("bump: %+v", v)
	}
	v, ok, err := s.TryConsumeBudget("team", 41)
	must(t, err)
	if ok || v.Usage != 60 {
		t.Fatalf("try_consume 41: %v %+v", ok, v)
	}
	v, ok, err = s.TryConsumeBudgetBytes([]byte("team"), 40)
	must(t, err)
	if !ok || v.Usage != 100 {
		t.Fatalf("try_consume 40: %v %+v", ok, v)
	}
	v, limited, err := s.CheckBudget("team")
	must(t, err)
	if !limited || v.Usage != 100 {
		t.Fatalf("check: %v %+v", limited, v)
	}
	got, err := s.GetBudgetBytes([]byte("team"))
	must(t, err)
	if got.Usage != 100 || got.Version != v.Version {
		t.Fatalf("get: %+v", got)
	}
	// Reset: a stale version conflicts, the current one resets.
	v, ok, err = s.ResetBudget("team", got.Version-1)
	must(t, err)
	if ok || v.Usage != 100 {
		t.Fatalf("stale reset: %v %+v", ok, v)
	}
	v, ok, err = s.ResetBudgetBytes([]byte("team"), v.Version)
	must(t, err)
	if !ok || v.Usage != 0 {
		t.Fatalf("reset: %v %+v", ok, v)
	}
	// The window rolls at the next write after its end.
	must(t, s.Advance(time.Hour))
	_, limited, err = s.CheckBudgetBytes([]byte("team"))
	must(t, err)
	if limited {
		t.Fatal("check after roll")
	}
	v, err = s.BumpBudgetBytes([]byte("team"), 7)
	must(t, err)
	if v.Usage != 7 || v.WindowStart != base+3600*sec {
		t.Fatalf("bump after an hour: %+v", v)
	}
	v, err = s.RemoveBudget("team")
	must(t, err)
	if v.Usage != 7 {
		t.Fatalf("remove: %+v", v)
	}
	_, err = s.RemoveBudgetBytes([]byte("team"))
	wantErr(t, err, ErrNotFound, CodeENoEnt)
	// An explicit anchor, a prepaid budget, a NUL inside a key.
	anchor := time.Unix(0, base+5*sec)
	v, _, err = s.UpsertBudget("a\x00b", BudgetConfig{Max: 5, Anchor: anchor})
	must(t, err)
	if !v.Config.Anchor.Equal(anchor) || v.WindowEnd != Never {
		t.Fatalf("anchored: %+v", v)
	}
	if _, err = s.GetBudget("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a NUL key is not its prefix: %v", err)
	}
}

func TestBudgetErrors(t *testing.T) {
	s := manual(t)
	_, _, err := s.UpsertBudget("b", BudgetConfig{Max: -1})
	wantErr(t, err, ErrInvalid, CodeEInval)
	_, _, err = s.UpsertBudget("b", BudgetConfig{Max: 1, Period: Period{Count: 0, Unit: PeriodFixed}})
	wantErr(t, err, ErrPeriod, CodeEPeriod)
	_, _, err = s.UpsertBudget("b", BudgetConfig{Max: 1, UTCOffsetMinutes: 24 * 60})
	wantErr(t, err, ErrInvalid, CodeEInval)
	long := strings.Repeat("k", 256)
	for _, key := range []string{"", long} {
		_, _, err = s.UpsertBudget(key, BudgetConfig{Max: 1})
		wantErr(t, err, ErrKey, CodeEKey)
		_, err = s.GetBudget(key)
		wantErr(t, err, ErrKey, CodeEKey)
		_, err = s.BumpBudgetBytes([]byte(key), 1)
		wantErr(t, err, ErrKey, CodeEKey)
		_, _, err = s.CheckBudget(key)
		wantErr(t, err, ErrKey, CodeEKey)
		_, _, err = s.TryConsumeBudgetBytes([]byte(key), 1)
		wantErr(t, err, ErrKey, CodeEKey)
		_, _, err = s.ResetBudget(key, 1)
		wantErr(t, err, ErrKey, CodeEKey)
		_, err = s.RemoveBudgetBytes([]byte(key))
		wantErr(t, err, ErrKey, CodeEKey)
	}
	_, err = s.BumpBudgetBytes(nil, 1)
	wantErr(t, err, ErrKey, CodeEKey)
	_, err = s.BumpBudgetBytes(make([]byte, 0, 8), 1)
	wantErr(t, err, ErrKey, CodeEKey)
	_, err = s.GetBudget(strings.Repeat("k", 255))
	wantErr(t, err, ErrNotFound, CodeENoEnt)
	_, err = s.BumpBudget("none", 1)
	wantErr(t, err, ErrNotFound, CodeENoEnt)
	_, _, err = s.CheckBudget("none")
	wantErr(t, err, ErrNotFound, CodeENoEnt)
	_, _, err = s.TryConsumeBudget("none", 1)
	wantErr(t, err, ErrNotFound, CodeENoEnt)
	_, _, err = s.ResetBudget("none", 1)
	wantErr(t, err, ErrNotFound, CodeENoEnt)
	_, _, err = s.UpsertBudget("b", BudgetConfig{Max: 10})
	must(t, err)
	_, err = s.BumpBudget("b", -1)
	wantErr(t, err, ErrInvalid, CodeEInval)
	_, _, err = s.TryConsumeBudget("b", -1)
	wantErr(t, err, ErrInvalid, CodeEInval)
	_, err = s.BumpBudget("b", math.MaxInt64)
	must(t, err)
	_, err = s.BumpBudget("b", 1)
	wantErr(t, err, ErrOverflow, CodeEOverflow)
	// Over any max, a sum past INT64_MAX is LIMITED, not an error.
	_, ok, err := s.TryConsumeBudget("b", 1)
	if err != nil || ok {
		t.Fatalf("try_consume past INT64_MAX: %v %v", ok, err)
	}
}

func TestRateLimit(t *testing.T) {
	s := manual(t)
	cfg := RateLimitConfig{
		Tokens:          Limit{HasMax: true, Max: 1000, Period: MustParsePeriod("1m")},
		Requests:        Limit{HasMax: true, Max: 3, Period: MustParsePeriod("1m"), Algorithm: AlgorithmSliding},
		CalendarAligned: true,
	}
	v, created, err := s.UpsertRateLimit("route", cfg)
	must(t, err)
	if !created || v.Config.Requests.Algorithm != AlgorithmSliding ||
		v.Config.Tokens.Max != 1000 || v.Tokens.WindowEnd != base+60*sec {
		t.Fatalf("upsert: %+v", v)
	}
	_, created, err = s.UpsertRateLimitBytes([]byte("route"), cfg)
	must(t, err)
	if created {
		t.Fatal("created twice")
	}
	v, err = s.BumpRateLimit("route", 100, 1)
	must(t, err)
	if v.Tokens.Usage != 100 || v.Requests.Usage != 1 {
		t.Fatalf("bump: %+v", v)
	}
	v, ok, mask, err := s.TryConsumeRateLimit("route", 950, 1)
	must(t, err)
	if ok || mask != CounterTokens || v.Tokens.Usage != 100 {
		t.Fatalf("try_consume 950: %v %v %+v", ok, mask, v)
	}
	v, ok, mask, err = s.TryConsumeRateLimitBytes([]byte("route"), 900, 2)
	must(t, err)
	if !ok || mask != 0 || v.Tokens.Usage != 1000 || v.Requests.Usage != 3 {
		t.Fatalf("try_consume 900: %v %v %+v", ok, mask, v)
	}
	_, mask, err = s.CheckRateLimit("route")
	must(t, err)
	if mask != CounterBoth {
		t.Fatalf("check mask %v", mask)
	}
	_, mask, err = s.CheckRateLimitBytes([]byte("route"))
	must(t, err)
	if mask != CounterBoth {
		t.Fatalf("check mask %v", mask)
	}
	g, err := s.GetRateLimitBytes([]byte("route"))
	must(t, err)
	v, reset, ok, err := s.ResetRateLimit("route", g.Version+5, CounterTokens)
	must(t, err)
	if ok || reset != 0 {
		t.Fatalf("conflict: %v %v", ok, reset)
	}
	v, reset, ok, err = s.ResetRateLimitBytes([]byte("route"), v.Version, CounterTokens)
	must(t, err)
	if !ok || reset != CounterTokens || v.Tokens.Usage != 0 || v.Requests.Usage != 3 {
		t.Fatalf("reset: %v %v %+v", ok, reset, v)
	}
	_, reset, ok, err = s.ResetRateLimit("route", v.Version, CounterBoth|ResetDueOnly)
	must(t, err)
	if !ok || reset != 0 {
		t.Fatalf("due-only reset: %v %v", ok, reset)
	}
	// The next window: the sliding counter's previous window counts.
	must(t, s.Advance(time.Minute))
	v, err = s.BumpRateLimitBytes([]byte("route"), 0, 0)
	must(t, err)
	if v.Requests.Previous != 3 || v.Requests.Usage != 0 {
		t.Fatalf("rolled sliding: %+v", v.Requests)
	}
	_, ok, mask, err = s.TryConsumeRateLimit("route", 0, 1)
	must(t, err)
	if ok || mask != CounterRequests {
		t.Fatalf("sliding refuses at the window's start: %v %v", ok, mask)
	}
	v, err = s.RemoveRateLimit("route")
	must(t, err)
	if v.Requests.Previous != 3 {
		t.Fatalf("remove: %+v", v)
	}
	_, err = s.RemoveRateLimitBytes([]byte("route"))
	wantErr(t, err, ErrNotFound, CodeENoEnt)
}

func TestRateLimitErrors(t *testing.T) {
	s := manual(t)
	_, _, err := s.UpsertRateLimit("r", RateLimitConfig{})
	wantErr(t, err, ErrPeriod, CodeEPeriod)
	m := MustParsePeriod("1m")
	_, _, err = s.UpsertRateLimit("r", RateLimitConfig{
		Tokens: Limit{HasMax: true, Max: -1, Period: m}, Requests: Limit{Period: m}})
	wantErr(t, err, ErrInvalid, CodeEInval)
	_, _, err = s.UpsertRateLimit("r", RateLimitConfig{
		Tokens: Limit{Period: m, Algorithm: 7}, Requests: Limit{Period: m}})
	wantErr(t, err, ErrInvalid, CodeEInval)
	_, _, err = s.UpsertRateLimit("r", RateLimitConfig{
		Tokens: Limit{Period: MustParsePeriod("1M"), Algorithm: AlgorithmSliding}, Requests: Limit{Period: m}})
	wantErr(t, err, ErrPeriod, CodeEPeriod)
	for _, key := range []string{"", strings.Repeat("r", 256)} {
		_, _, err = s.UpsertRateLimitBytes([]byte(key), RateLimitConfig{Tokens: Limit{Period: m}, Requests: Limit{Period: m}})
		wantErr(t, err, ErrKey, CodeEKey)
		_, err = s.GetRateLimit(key)
		wantErr(t, err, ErrKey, CodeEKey)
		_, err = s.BumpRateLimit(key, 1, 1)
		wantErr(t, err, ErrKey, CodeEKey)
		_, _, err = s.CheckRateLimitBytes([]byte(key))
		wantErr(t, err, ErrKey, CodeEKey)
		_, _, _, err = s.TryConsumeRateLimit(key, 1, 1)
		wantErr(t, err, ErrKey, CodeEKey)
		_, _, _, err = s.ResetRateLimit(key, 1, CounterBoth)
		wantErr(t, err, ErrKey, CodeEKey)
		_, err = s.RemoveRateLimit(key)
		wantErr(t, err, ErrKey, CodeEKey)
	}
	_, err = s.GetRateLimit("none")
	wantErr(t, err, ErrNotFound, CodeENoEnt)
	_, err = s.BumpRateLimitBytes([]byte("none"), 1, 1)
	wantErr(t, err, ErrNotFound, CodeENoEnt)
	_, _, err = s.CheckRateLimit("none")
	wantErr(t, err, ErrNotFound, CodeENoEnt)
	_, _, _, err = s.TryConsumeRateLimitBytes([]byte("none"), 1, 1)
	wantErr(t, err, ErrNotFound, CodeENoEnt)
	_, _, _, err = s.ResetRateLimitBytes([]byte("none"), 1, CounterBoth)
	wantErr(t, err, ErrNotFound, CodeENoEnt)
	// A budget and a rate limit of one key are two records.
	_, _, err = s.UpsertBudget("r", BudgetConfig{Max: 1})
	must(t, err)
	_, err = s.GetRateLimit("r")
	wantErr(t, err, ErrNotFound, CodeENoEnt)
	_, _, err = s.UpsertRateLimit("r", RateLimitConfig{Tokens: Limit{Period: m}, Requests: Limit{HasMax: true, Max: 2, Period: m}})
	must(t, err)
	_, err = s.BumpRateLimit("r", -1, 0)
	wantErr(t, err, ErrInvalid, CodeEInval)
	_, _, _, err = s.TryConsumeRateLimit("r", 0, -1)
	wantErr(t, err, ErrInvalid, CodeEInval)
	_, _, _, err = s.ResetRateLimit("r", 1, 0)
	wantErr(t, err, ErrInvalid, CodeEInval)
	_, err = s.BumpRateLimit("r", math.MaxInt64, 0)
	must(t, err)
	// Past INT64_MAX on a counter without a max: EOVERFLOW.
	_, _, _, err = s.TryConsumeRateLimit("r", 1, 0)
	wantErr(t, err, ErrOverflow, CodeEOverflow)
	_, err = s.BumpRateLimit("r", 1, 0)
	wantErr(t, err, ErrOverflow, CodeEOverflow)
}

func TestStatsAndSweep(t *testing.T) {
	s := manual(t)
	_, _, err := s.UpsertBudget("a", BudgetConfig{Max: 10, Period: MustParsePeriod("1s")})
	must(t, err)
	_, err = s.BumpBudget("a", 3)
	must(t, err)
	must(t, s.Advance(time.Second))
	n, err := s.Sweep()
	must(t, err)
	if n != 1 {
		t.Fatalf("sweep rolled %d", n)
	}
	st, err := s.Stats()
	must(t, err)
	if st.Records != 1 || st.Rolls != 1 || st.Writes < 2 || st.Threads == 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestClose(t *testing.T) {
	s, err := Open(Options{ManualClock: true, Now: base, Events: 8})
	must(t, err)
	_, _, err = s.UpsertBudget("a", BudgetConfig{Max: 1})
	must(t, err)
	must(t, s.Close())
	must(t, s.Close())
	check := func(err error) {
		t.Helper()
		wantErr(t, err, ErrClosed, CodeClosed)
	}
	_, _, err = s.UpsertBudget("a", BudgetConfig{})
	check(err)
	_, err = s.GetBudget("a")
	check(err)
	_, err = s.BumpBudgetBytes([]byte("a"), 1)
	check(err)
	_, _, err = s.CheckBudget("a")
	check(err)
	_, _, err = s.TryConsumeBudget("a", 1)
	check(err)
	_, _, err = s.ResetBudget("a", 1)
	check(err)
	_, err = s.RemoveBudget("a")
	check(err)
	_, _, err = s.UpsertRateLimit("a", RateLimitConfig{})
	check(err)
	_, err = s.GetRateLimit("a")
	check(err)
	_, err = s.BumpRateLimit("a", 1, 1)
	check(err)
	_, _, err = s.CheckRateLimit("a")
	check(err)
	_, _, _, err = s.TryConsumeRateLimit("a", 1, 1)
	check(err)
	_, _, _, err = s.ResetRateLimit("a", 1, CounterBoth)
	check(err)
	_, err = s.RemoveRateLimit("a")
	check(err)
	_, _, err = s.Admit([]Charge{{Kind: KindBudget, Key: "a", Amount: 1}}, AdmitPeek, 0)
	check(err)
	var h Hold
	_, err = s.Settle(&h, nil)
	check(err)
	_, err = s.Release(&h)
	check(err)
	_, err = s.SettlePartial(&h, nil)
	check(err)
	check(s.Export(func(Record) error { return nil }))
	check(s.WriteMetrics(&strings.Builder{}, 0))
	_, err = s.Stats()
	check(err)
	_, err = s.Sweep()
	check(err)
	check(s.SetNow(1))
	check(s.Advance(1))
	if s.Now() != 0 || s.Events(make([]Event, 4)) != 0 || s.EventCounts() != (EventCounts{}) {
		t.Fatal("closed store answered")
	}
}

// Close while goroutines hammer the store: every call either works or
// says ErrClosed, and the C store is freed once, after the last call.
func TestCloseConcurrent(t *testing.T) {
	for round := 0; round < 20; round++ {
		s, err := Open(Options{Events: 16})
		must(t, err)
		_, _, err = s.UpsertBudget("k", BudgetConfig{Max: 1 << 40, Period: MustParsePeriod("1ms")})
		must(t, err)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				buf := make([]Event, 4)
				for i := 0; ; i++ {
					_, err := s.BumpBudget("k", 1)
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
					if i%16 == 0 {
						s.Events(buf)
					}
				}
			}()
		}
		close(start)
		time.Sleep(time.Millisecond)
		must(t, s.Close())
		wg.Wait()
		if st := s.state; st != closedBit|doneBit {
			t.Fatalf("state %x after close", st)
		}
	}
}

// Close from inside an Export callback: later calls there are ErrClosed,
// the walk ends, and the store is freed when Export returns.
func TestCloseInsideExport(t *testing.T) {
	s, err := Open(Options{})
	must(t, err)
	for _, k := range []string{"a", "b", "c"} {
		_, _, err = s.UpsertBudget(k, BudgetConfig{Max: 1})
		must(t, err)
	}
	seen := 0
	err = s.Export(func(r Record) error {
		seen++
		if seen == 1 {
			must(t, s.Close())
			if s.state&doneBit != 0 {
				t.Error("destroyed under a running export")
			}
		}
		_, err := s.GetBudget(r.Key)
		if !errors.Is(err, ErrClosed) {
			t.Errorf("get inside export after close: %v", err)
		}
		return nil
	})
	must(t, err)
	if seen != 3 || s.state != closedBit|doneBit {
		t.Fatalf("seen %d, state %x", seen, s.state)
	}
}

func TestConstants(t *testing.T) {
	if bad := constantMismatches(); len(bad) != 0 {
		t.Fatalf("constants differ from tally.h: %v", bad)
	}
}
