package tally

import (
	"testing"
	"time"
)

// Benchmarks (not run in CI): go test -run=XXX -bench=. -benchmem

func benchStore(b *testing.B) *Store {
	s := open(b, Options{})
	_, _, err := s.UpsertBudget("team-a", BudgetConfig{Max: 1 << 62, Period: MustParsePeriod("1h")})
	must(b, err)
	m := MustParsePeriod("1m")
	_, _, err = s.UpsertRateLimit("key-a", RateLimitConfig{
		Tokens:   Limit{HasMax: true, Max: 1 << 62, Period: m},
		Requests: Limit{HasMax: true, Max: 1 << 62, Period: m}})
	must(b, err)
	return s
}

func BenchmarkBump(b *testing.B) {
	s := benchStore(b)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := s.BumpBudget("team-a", 1); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBumpParallel(b *testing.B) {
	s := benchStore(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.BumpBudget("team-a", 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkTryConsume(b *testing.B) {
	s := benchStore(b)
	key := []byte("key-a")
	b.ReportAllocs()
	b.Run("budget", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, ok, err := s.TryConsumeBudget("team-a", 1); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("ratelimit-bytes", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, ok, _, err := s.TryConsumeRateLimitBytes(key, 1, 1); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})
}

func BenchmarkCheck(b *testing.B) {
	s := benchStore(b)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, limited, err := s.CheckBudget("team-a"); err != nil || limited {
			b.Fatal(limited, err)
		}
	}
}

func BenchmarkAdmitSettle(b *testing.B) {
	s := benchStore(b)
	charges := []Charge{
		{Kind: KindRateLimit, Key: "key-a", Tokens: 4000, Requests: 1},
		{Kind: KindBudget, Key: "team-a", Amount: 30000},
	}
	costs := []Cost{{Tokens: 3712, Requests: 1}, {Amount: 27840}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		h, d, err := s.Admit(charges, AdmitHold, time.Minute)
		if err != nil || !d.Allowed() {
			b.Fatal(err, d)
		}
		if _, err := s.Settle(&h, costs); err != nil {
			b.Fatal(err)
		}
	}
}

// The cost of the binding itself: an empty cgo call, for comparison.
func BenchmarkEmptyCgoCall(b *testing.B) {
	for i := 0; i < b.N; i++ {
		cgoNop()
	}
}
