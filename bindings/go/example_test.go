package tally_test

import (
	"fmt"
	"time"

	"tally.dev/tally"
)

func Example() {
	// 2026-01-01 00:00:00 UTC on a manual clock, so that the output is fixed.
	s, err := tally.Open(tally.Options{ManualClock: true, Now: 1767225600 * int64(time.Second)})
	if err != nil {
		panic(err)
	}
	defer s.Close()

	// $50 a month per team, in micro-dollars; 60 requests a minute per key.
	s.UpsertBudget("team-a", tally.BudgetConfig{Max: 50_000_000,
		Period: tally.MustParsePeriod("1M"), CalendarAligned: true})
	m := tally.MustParsePeriod("1m")
	s.UpsertRateLimit("key-1", tally.RateLimitConfig{
		Tokens:   tally.Limit{HasMax: true, Max: 100_000, Period: m},
		Requests: tally.Limit{HasMax: true, Max: 60, Period: m}})

	// Before the upstream call: hold the estimate on both, or on neither.
	hold, d, err := s.Admit([]tally.Charge{
		{Kind: tally.KindRateLimit, Key: "key-1", Tokens: 4000, Requests: 1},
		{Kind: tally.KindBudget, Key: "team-a", Amount: 30_000},
	}, tally.AdmitHold, 2*time.Minute)
	if err != nil {
		panic(err)
	}
	if !d.Allowed() { // a refusal is a result: answer 429 with its headers
		h, _ := tally.FormatHeaders(&d, nil, tally.HeadersRetryAfter)
		fmt.Print(h)
		return
	}
	// After the response: charge what it really cost.
	d, err = s.Settle(&hold, []tally.Cost{{Tokens: 3712, Requests: 1}, {Amount: 27_840}})
	if err != nil {
		panic(err)
	}
	v, _ := s.GetBudget("team-a")
	fmt.Println(v.Usage, v.Held, d.Limits[0].Counters[0].Remaining)
	// Output: 27840 0 96288
}
