package tally

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func admitSetup(t *testing.T) *Store {
	s := manual(t)
	_, _, err := s.UpsertBudget("team", BudgetConfig{Max: 100, Period: MustParsePeriod("1d"), CalendarAligned: true})
	must(t, err)
	m := MustParsePeriod("1m")
	_, _, err = s.UpsertRateLimit("key", RateLimitConfig{
		Tokens:   Limit{HasMax: true, Max: 1000, Period: m},
		Requests: Limit{HasMax: true, Max: 2, Period: m}, CalendarAligned: true})
	must(t, err)
	return s
}

func TestAdmitSettle(t *testing.T) {
	s := admitSetup(t)
	charges := []Charge{
		{Kind: KindRateLimit, Key: "key", Tokens: 400, Requests: 1},
		{Kind: KindBudget, KeyBytes: []byte("team"), Amount: 60},
	}
	h, d, err := s.Admit(charges, AdmitHold, time.Minute)
	must(t, err)
	if !d.Allowed() || d.Refused != -1 || d.Mask != 0 || len(d.Limits) != 2 || d.Now != base {
		t.Fatalf("admit: %+v", d)
	}
	if !h.Live() || h.Len() != 2 || h.Deadline() != base+int64(time.Minute) || h.Held(1) != [2]int64{60, 0} ||
		h.Held(0) != [2]int64{400, 1} || h.Held(2) != [2]int64{} {
		t.Fatalf("hold: state %v n %d deadline %d", h.State(), h.Len(), h.Deadline())
	}
	b := d.Limits[1]
	if b.Kind != KindBudget || b.Counters[0].Max != 100 || b.Counters[0].Held != 60 ||
		b.Counters[0].Remaining != 40 {
		t.Fatalf("budget report: %+v", b)
	}
	r := d.Limits[0].Counters
	if r[0].Counter != CounterTokens || r[0].Held != 400 || r[1].Counter != CounterRequests || r[1].Remaining != 1 {
		t.Fatalf("rate-limit report: %+v", r)
	}
	v, err := s.GetBudget("team")
	must(t, err)
	if v.Held != 60 || v.Holds != 1 || v.Usage != 0 {
		t.Fatalf("view with a hold: %+v", v)
	}
	// A refusal is a result: the budget has 40 left.
	h2, d2, err := s.Admit([]Charge{
		{Kind: KindRateLimit, Key: "key", Tokens: 1, Requests: 1},
		{Kind: KindBudget, Key: "team", Amount: 41},
	}, AdmitHold, time.Minute)
	must(t, err)
	if d2.Allowed() || d2.Refused != 1 || d2.Mask != 2 || h2.State() != HoldNone ||
		d2.Limits[1].Flags&FlagDenied == 0 || d2.Flags&FlagDenied == 0 {
		t.Fatalf("refusal: %+v", d2)
	}
	// Too big: can never pass.
	_, d3, err := s.Admit([]Charge{{Kind: KindBudget, Key: "team", Amount: 101}}, AdmitPeek, 0)
	must(t, err)
	if d3.Allowed() || d3.Limits[0].Counters[0].Flags&FlagTooBig == 0 ||
		d3.Limits[0].Counters[0].RetryAfter != RetryNever {
		t.Fatalf("too big: %+v", d3)
	}
	// A copy of the hold is plain data; settling it settles the one hold.
	copyOfH := h
	d, err = s.SettlePartial(&h, []Cost{{Tokens: 100}, {Amount: 50}})
	must(t, err)
	if h.Held(1) != [2]int64{10, 0} || d.Limits[1].Counters[0].Used != 50 {
		t.Fatalf("partial: %v %+v", h.Held(1), d.Limits[1])
	}
	d, err = s.Settle(&h, []Cost{{Tokens: 380, Requests: 1}, {Amount: 70}})
	must(t, err)
	if h.State() != HoldSettled {
		t.Fatalf("state %v after settle", h.State())
	}
	c := d.Limits[1].Counters[0]
	if c.Used != 120 || c.Held != 0 || c.Overdraft != 60 || c.Flags&FlagOverdraft == 0 {
		t.Fatalf("settle with an overdraft: %+v", c)
	}
	_, err = s.Settle(&h, []Cost{{}, {}})
	wantErr(t, err, ErrSettled, CodeESettled)
	_, err = s.Release(&h)
	wantErr(t, err, ErrSettled, CodeESettled)
	// The copy still says live; the library finds nothing held for it.
	d, err = s.Release(&copyOfH)
	must(t, err)
	if d.Limits[1].Flags&FlagGone == 0 {
		t.Fatalf("settled copy: %+v", d.Limits[1])
	}
	// Consume mode, and a release.
	_, d, err = s.Admit([]Charge{{Kind: KindRateLimit, Key: "key", Tokens: 1, Requests: 1}}, AdmitConsume, 0)
	must(t, err)
	if !d.Allowed() {
		t.Fatalf("consume: %+v", d)
	}
	rv, err := s.GetRateLimit("key")
	must(t, err)
	if rv.Requests.Usage != 2 || rv.Tokens.Usage != 481 {
		t.Fatalf("after consume: %+v", rv)
	}
	_, d, err = s.Admit([]Charge{{Kind: KindRateLimit, Key: "key", Requests: 1}}, AdmitPeek, 0)
	must(t, err)
	if d.Refused != 0 || d.Limits[0].Counters[1].RetryAfter != time.Minute {
		t.Fatalf("peek refused: %+v", d)
	}
	// Shadow charges never refuse.
	h, d, err = s.Admit([]Charge{{Kind: KindRateLimit, Key: "key", Requests: 1, Shadow: true}}, AdmitHold, time.Second)
	must(t, err)
	if !d.Allowed() || d.Limits[0].Flags&FlagShadowWouldDeny == 0 {
		t.Fatalf("shadow: %+v", d)
	}
	_, err = s.Release(&h)
	must(t, err)
}

func TestAdmitErrors(t *testing.T) {
	s := admitSetup(t)
	_, d, err := s.Admit([]Charge{{Kind: KindBudget, Key: "team", Amount: 1},
		{Kind: KindBudget, Key: "gone", Amount: 1}}, AdmitHold, time.Second)
	wantErr(t, err, ErrNotFound, CodeENoEnt)
	if d.Refused != 1 || d.Limits[1].Flags&FlagGone == 0 {
		t.Fatalf("missing record: %+v", d)
	}
	for name, c := range map[string][]Charge{
		"none":      nil,
		"negative":  {{Kind: KindBudget, Key: "team", Amount: -1}},
		"kind":      {{Kind: 9, Key: "team", Amount: 1}},
		"unused":    {{Kind: KindBudget, Key: "team", Tokens: 1}},
		"duplicate": {{Kind: KindBudget, Key: "team"}, {Kind: KindBudget, KeyBytes: []byte("team")}},
		"too many":  make([]Charge, MaxCharges+1),
	} {
		_, _, err = s.Admit(c, AdmitHold, time.Second)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, key := range []string{"", strings.Repeat("x", 256)} {
		_, _, err = s.Admit([]Charge{{Kind: KindBudget, Key: key, Amount: 1}}, AdmitPeek, 0)
		wantErr(t, err, ErrKey, CodeEKey)
		_, _, err = s.Admit([]Charge{{Kind: KindBudget, KeyBytes: []byte(key), Amount: 1}}, AdmitPeek, 0)
		wantErr(t, err, ErrKey, CodeEKey)
	}
	one := []Charge{{Kind: KindBudget, Key: "team", Amount: 1}}
	_, _, err = s.Admit(one, AdmitHold, 0)
	wantErr(t, err, ErrInvalid, CodeEInval)
	_, _, err = s.Admit(one, AdmitHold, 11*time.Minute)
	wantErr(t, err, ErrInvalid, CodeEInval)
	_, _, err = s.Admit(one, AdmitPeek, time.Second)
	wantErr(t, err, ErrInvalid, CodeEInval)
	_, _, err = s.Admit(one, 42, 0)
	wantErr(t, err, ErrInvalid, CodeEInval)
	var zero Hold
	_, err = s.Settle(&zero, nil)
	wantErr(t, err, ErrInvalid, CodeEInval)
	_, err = s.Settle(nil, nil)
	wantErr(t, err, ErrInvalid, CodeEInval)
	h, _, err := s.Admit(one, AdmitHold, time.Second)
	must(t, err)
	_, err = s.Settle(&h, []Cost{{}, {}})
	wantErr(t, err, ErrInvalid, CodeEInval)
	_, err = s.Settle(&h, []Cost{{Amount: -1}})
	wantErr(t, err, ErrInvalid, CodeEInval)
	_, err = s.SettlePartial(&h, make([]Cost, MaxCharges+1))
	wantErr(t, err, ErrInvalid, CodeEInval)
	// A hold of another store.
	other := admitSetup(t)
	_, err = other.Settle(&h, []Cost{{Amount: 1}})
	wantErr(t, err, ErrInvalid, CodeEInval)
	// A changed hold.
	bad := h
	bad.raw.check++
	_, err = s.Release(&bad)
	wantErr(t, err, ErrInvalid, CodeEInval)
	_, err = s.Release(&h)
	must(t, err)
}

// A hold that expires: the next write drops it and the expiry event
// arrives; a settle after that is LATE and charges in full.
func TestHoldExpiry(t *testing.T) {
	s := admitSetup(t)
	h, _, err := s.Admit([]Charge{{Kind: KindBudget, Key: "team", Amount: 30}}, AdmitHold, time.Second)
	must(t, err)
	must(t, s.Advance(5*time.Minute))
	_, err = s.BumpBudget("team", 0)
	must(t, err)
	ev := make([]Event, 8)
	n := s.Events(ev)
	if n != 1 || ev[0].Type != EventExpiry || ev[0].Key != "team" || ev[0].Kind != KindBudget ||
		ev[0].Holds != 1 || ev[0].Amount != [2]int64{30, 0} || ev[0].SlotEnd == 0 {
		t.Fatalf("expiry events %d: %+v", n, ev[:n])
	}
	d, err := s.Settle(&h, []Cost{{Amount: 25}})
	must(t, err)
	if c := d.Limits[0].Counters[0]; c.Flags&FlagLate == 0 || c.Used != 25 || c.Held != 0 {
		t.Fatalf("late settle: %+v", c)
	}
	if c := s.EventCounts(); c.Expiries != 1 || c.DroppedExpiries != 0 {
		t.Fatalf("counts %+v", c)
	}
}

// The worked example of tests/test_headers.c, through a real store: 100
// requests per minute, 40 used at 12:00:15.250, then refused at
// 12:00:50.100 with 100 used.
func TestFormatHeaders(t *testing.T) {
	noon := int64(1796299200) * sec // 2026-12-03 12:00:00 UTC
	s := open(t, Options{ManualClock: true, Now: noon})
	m := MustParsePeriod("1m")
	_, _, err := s.UpsertRateLimit("key-rpm", RateLimitConfig{
		Tokens:          Limit{Period: m},
		Requests:        Limit{HasMax: true, Max: 100, Period: m},
		CalendarAligned: true})
	must(t, err)
	_, err = s.BumpRateLimit("key-rpm", 0, 39)
	must(t, err)
	must(t, s.SetNow(noon+15*sec+250*int64(time.Millisecond)))
	one := []Charge{{Kind: KindRateLimit, Key: "key-rpm", Requests: 1}}
	_, d, err := s.Admit(one, AdmitConsume, 0)
	must(t, err)
	pol := []HeaderPolicy{{Name: "key-rpm", Limit: 0, Counter: CounterRequests, Unit: UnitRequests}}
	got, err := FormatHeaders(&d, pol, HeadersIETF|HeadersRetryAfter)
	must(t, err)
	want := "RateLimit-Policy: \"key-rpm\";q=100;qu=\"requests\";w=60\r\n" +
		"RateLimit: \"key-rpm\";r=60;t=45\r\n"
	if got != want {
		t.Fatalf("headers:\n%q\nwant\n%q", got, want)
	}
	_, err = s.BumpRateLimit("key-rpm", 0, 60)
	must(t, err)
	must(t, s.SetNow(noon+50*sec+100*int64(time.Millisecond)))
	_, d, err = s.Admit(one, AdmitPeek, 0)
	must(t, err)
	if d.Allowed() {
		t.Fatal("not refused")
	}
	got, err = FormatHeaders(&d, pol, HeadersIETF|HeadersRetryAfter|HeadersLegacy|HeadersOpenAI)
	must(t, err)
	want = "RateLimit-Policy: \"key-rpm\";q=100;qu=\"requests\";w=60\r\n" +
		"RateLimit: \"key-rpm\";r=0;t=10\r\n" +
		"Retry-After: 10\r\n" +
		"X-RateLimit-Limit: 100\r\n" +
		"X-RateLimit-Remaining: 0\r\n" +
		"X-RateLimit-Reset: 10\r\n" +
		"x-ratelimit-limit-requests: 100\r\n" +
		"x-ratelimit-remaining-requests: 0\r\n" +
		"x-ratelimit-reset-requests: 10s\r\n"
	if got != want {
		t.Fatalf("refused headers:\n%q\nwant\n%q", got, want)
	}
	// Many policies (past the C side's stack array) and a long text.
	many := make([]HeaderPolicy, 40)
	for i := range many {
		many[i] = HeaderPolicy{Name: strings.Repeat("p", 30), Counter: CounterRequests, Unit: UnitRequests}
	}
	got, err = FormatHeaders(&d, many, HeadersIETF)
	must(t, err)
	if len(got) < 40*30*2 || !strings.HasPrefix(got, "RateLimit-Policy: \"ppp") {
		t.Fatalf("long headers: %d bytes", len(got))
	}
	for _, bad := range [][]HeaderPolicy{
		{{Name: "a\x00b", Counter: CounterRequests}},
		{{Name: "é", Counter: CounterRequests}},
		{{Name: "x", Limit: 1, Counter: CounterRequests}},
		{{Name: "x", Limit: -1}},
		{{Name: "x", Counter: CounterRequests, Unit: 99}},
	} {
		_, err = FormatHeaders(&d, bad, HeadersIETF)
		wantErr(t, err, ErrInvalid, CodeEInval)
	}
	_, err = FormatHeaders(&d, pol, 1<<20)
	wantErr(t, err, ErrInvalid, CodeEInval)
	_, err = FormatHeaders(nil, pol, HeadersIETF)
	wantErr(t, err, ErrInvalid, CodeEInval)
	_, err = FormatHeaders(&Decision{Limits: make([]LimitReport, MaxCharges+1)}, nil, HeadersIETF)
	wantErr(t, err, ErrInvalid, CodeEInval)
	empty, err := FormatHeaders(&d, nil, HeadersIETF)
	must(t, err)
	if empty != "" {
		t.Fatalf("no policies: %q", empty)
	}
}
