package tally

import (
	"testing"
)

// The request path allocates nothing: keys go to C as they are (no C
// string, no Go copy) and views come back by value.
func TestZeroAllocs(t *testing.T) {
	s := manual(t)
	_, _, err := s.UpsertBudget("team-a", BudgetConfig{Max: 1 << 60, Period: MustParsePeriod("1h")})
	must(t, err)
	m := MustParsePeriod("1m")
	_, _, err = s.UpsertRateLimit("route-a", RateLimitConfig{
		Tokens:   Limit{HasMax: true, Max: 1 << 60, Period: m},
		Requests: Limit{HasMax: true, Max: 1 << 60, Period: m}})
	must(t, err)
	key := string([]byte("team-a")) // a heap string, as from a request
	bkey := []byte("team-a")
	rkey := []byte("route-a")
	for name, fn := range map[string]func(){
		"BumpBudget":               func() { s.BumpBudget(key, 1) },
		"BumpBudgetBytes":          func() { s.BumpBudgetBytes(bkey, 1) },
		"TryConsumeBudget":         func() { s.TryConsumeBudget("team-a", 1) },
		"TryConsumeBudgetBytes":    func() { s.TryConsumeBudgetBytes(bkey, 1) },
		"CheckBudget":              func() { s.CheckBudget(key) },
		"GetBudget":                func() { s.GetBudget(key) },
		"BumpRateLimit":            func() { s.BumpRateLimit("route-a", 1, 1) },
		"TryConsumeRateLimit":      func() { s.TryConsumeRateLimit("route-a", 1, 1) },
		"TryConsumeRateLimitBytes": func() { s.TryConsumeRateLimitBytes(rkey, 1, 1) },
		"CheckRateLimitBytes":      func() { s.CheckRateLimitBytes(rkey) },
	} {
		fn() // the thread's first call registers it with the store
		if n := testing.AllocsPerRun(1000, fn); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", name, n)
		}
	}
}
