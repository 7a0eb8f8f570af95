package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"tally.dev/go-gateway/fakeupstream"
	"tally.dev/tally"
)

// testGateway runs the fake upstream and the gateway on httptest servers,
// over a store on a manual clock (2026-01-01 00:00 UTC) so that no window
// rolls during a test.
type testGateway struct {
	store    *tally.Store
	upstream *httptest.Server
	gateway  *httptest.Server
}

func newTestGateway(t *testing.T, cfg Config) *testGateway {
	t.Helper()
	s, err := tally.Open(tally.Options{ManualClock: true, Now: 1767225600 * int64(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(fakeupstream.Handler{})
	u, _ := url.Parse(up.URL)
	g := New(s, cfg, u)
	g.Log = log.New(io.Discard, "", 0)
	gw := httptest.NewServer(g)
	t.Cleanup(func() {
		gw.Close()
		up.Close()
		s.Close()
	})
	return &testGateway{store: s, upstream: up, gateway: gw}
}

type result struct {
	status int
	header http.Header
	body   map[string]any
}

func (tg *testGateway) do(t *testing.T, path string, headers ...string) result {
	t.Helper()
	req, err := http.NewRequest("POST", tg.gateway.URL+path, strings.NewReader("{}"))
	if err != nil {
		t.Error(err)
		return result{}
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return result{}
	}
	defer resp.Body.Close()
	r := result{status: resp.StatusCode, header: resp.Header}
	if err := json.NewDecoder(resp.Body).Decode(&r.body); err != nil {
		t.Errorf("%s: body: %v", path, err)
	}
	return r
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.KeyRPM = 5
	return cfg
}

func checkRateLimitHeaders(t *testing.T, r result, policy string) {
	t.Helper()
	if p := r.header.Get("RateLimit-Policy"); !strings.Contains(p, `"`+policy+`";q=`) {
		t.Errorf("RateLimit-Policy %q: no %s", p, policy)
	}
	if l := r.header.Get("RateLimit"); !strings.Contains(l, `"`+policy+`";r=`) {
		t.Errorf("RateLimit %q: no %s", l, policy)
	}
}

func checkRetryAfter(t *testing.T, r result) {
	t.Helper()
	ra, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || ra < 1 {
		t.Errorf("Retry-After %q: want an integer >= 1", r.header.Get("Retry-After"))
	}
}

func budgetOf(t *testing.T, s *tally.Store, team string) tally.BudgetView {
	t.Helper()
	v, err := s.GetBudget("team:" + team)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func rateOf(t *testing.T, s *tally.Store, key string) tally.RateLimitView {
	t.Helper()
	v, err := s.GetRateLimit(key)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMissingKey(t *testing.T) {
	tg := newTestGateway(t, testConfig())
	if r := tg.do(t, "/v1/chat"); r.status != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", r.status)
	}
	if _, err := tg.store.GetBudget("team:default"); err == nil {
		t.Error("a refused request without a key created records")
	}
}

func TestUnknownModel(t *testing.T) {
	tg := newTestGateway(t, testConfig())
	if r := tg.do(t, "/v1/models/nope/chat", "x-api-key", "k"); r.status != http.StatusNotFound {
		t.Fatalf("status %d, want 404", r.status)
	}
	if r := tg.do(t, "/v1/models/large/chat", "x-api-key", "k"); r.status != http.StatusOK {
		t.Fatalf("status %d, want 200", r.status)
	}
	if v := rateOf(t, tg.store, "model:large"); v.Tokens.Usage != fakeupstream.DefaultUsage {
		t.Errorf("model:large tokens %d, want %d", v.Tokens.Usage, fakeupstream.DefaultUsage)
	}
}

func TestKeyRateLimit(t *testing.T) {
	tg := newTestGateway(t, testConfig())
	for i := 0; i < 8; i++ {
		r := tg.do(t, "/v1/chat", "x-api-key", "k1")
		if i < 5 {
			if r.status != http.StatusOK {
				t.Fatalf("request %d: status %d, want 200", i, r.status)
			}
			checkRateLimitHeaders(t, r, "key-rpm")
			checkRateLimitHeaders(t, r, "team-budget")
			want := `"key-rpm";r=` + strconv.Itoa(4-i) + ";"
			if l := r.header.Get("RateLimit"); !strings.Contains(l, want) {
				t.Errorf("request %d: RateLimit %q, want %s", i, l, want)
			}
			continue
		}
		if r.status != http.StatusTooManyRequests {
			t.Fatalf("request %d: status %d, want 429", i, r.status)
		}
		checkRetryAfter(t, r)
		checkRateLimitHeaders(t, r, "key-rpm")
		if r.body["error"] != "rate_limited" || r.body["policy"] != "key-rpm" || r.body["limit"] != "key:k1" {
			t.Errorf("request %d: body %v", i, r.body)
		}
	}
	// Another key has its own limit.
	if r := tg.do(t, "/v1/chat", "x-api-key", "k2"); r.status != http.StatusOK {
		t.Errorf("k2: status %d, want 200", r.status)
	}
}

func TestBudgetRefused(t *testing.T) {
	cfg := testConfig()
	cfg.TeamBudgets = map[string]int64{"small": 5000} // µ$: 2,500 tokens at 2 µ$
	tg := newTestGateway(t, cfg)
	h := []string{"x-api-key", "k", "x-team", "small", "x-fake-usage", "1000"}
	for i := 0; i < 2; i++ { // holds 2,000 µ$, settles 2,000
		if r := tg.do(t, "/v1/chat", h...); r.status != http.StatusOK {
			t.Fatalf("request %d: status %d, want 200", i, r.status)
		}
	}
	r := tg.do(t, "/v1/chat", h...) // 4,000 + 2,000 > 5,000
	if r.status != http.StatusPaymentRequired {
		t.Fatalf("status %d, want 402", r.status)
	}
	checkRetryAfter(t, r)
	checkRateLimitHeaders(t, r, "team-budget")
	if r.body["error"] != "budget_exhausted" || r.body["policy"] != "team-budget" || r.body["limit"] != "team:small" {
		t.Errorf("body %v", r.body)
	}
	if v := budgetOf(t, tg.store, "small"); v.Usage != 4000 || v.Held != 0 {
		t.Errorf("usage %d held %d, want 4000 0", v.Usage, v.Held)
	}
	// A smaller estimate still fits.
	if r := tg.do(t, "/v1/chat", append(h, "x-estimate-tokens", "400")...); r.status != http.StatusOK {
		t.Errorf("small estimate: status %d, want 200", r.status)
	}
}

func TestSettleExact(t *testing.T) {
	cfg := testConfig()
	cfg.KeyRPM = 100
	tg := newTestGateway(t, cfg)
	var sum int64
	const n = 20
	for i := 0; i < n; i++ {
		usage := int64(i*i*37 + 5) // under and over the estimate of 1,000
		sum += usage
		r := tg.do(t, "/v1/models/small/chat", "x-api-key", "k", "x-team", "research",
			"x-fake-usage", strconv.FormatInt(usage, 10))
		if r.status != http.StatusOK {
			t.Fatalf("request %d: status %d, want 200", i, r.status)
		}
	}
	v := budgetOf(t, tg.store, "research")
	if v.Usage != sum*cfg.CostPerToken || v.Held != 0 || v.Holds != 0 {
		t.Errorf("team usage %d held %d holds %d, want %d 0 0", v.Usage, v.Held, v.Holds, sum*cfg.CostPerToken)
	}
	k := rateOf(t, tg.store, "key:k")
	if k.Tokens.Usage != sum || k.Requests.Usage != n || k.Tokens.Held != 0 || k.Requests.Held != 0 {
		t.Errorf("key tokens %d requests %d held %d/%d, want %d %d 0/0",
			k.Tokens.Usage, k.Requests.Usage, k.Tokens.Held, k.Requests.Held, sum, n)
	}
	if m := rateOf(t, tg.store, "model:small"); m.Tokens.Usage != sum || m.Tokens.Held != 0 {
		t.Errorf("model tokens %d held %d, want %d 0", m.Tokens.Usage, m.Tokens.Held, sum)
	}
}

func TestMissingUsageChargesEstimate(t *testing.T) {
	tg := newTestGateway(t, testConfig())
	for _, usage := range []string{"none", "lots", "-3"} {
		r := tg.do(t, "/v1/chat", "x-api-key", "k", "x-estimate-tokens", "300", "x-fake-usage", usage)
		if r.status != http.StatusOK {
			t.Fatalf("usage %q: status %d, want 200", usage, r.status)
		}
	}
	if v := budgetOf(t, tg.store, "default"); v.Usage != 3*300*2 || v.Held != 0 {
		t.Errorf("usage %d held %d, want %d 0", v.Usage, v.Held, 3*300*2)
	}
}

func TestUpstreamErrorReleases(t *testing.T) {
	tg := newTestGateway(t, testConfig())
	check := func(what string) {
		t.Helper()
		if v := budgetOf(t, tg.store, "default"); v.Usage != 0 || v.Held != 0 || v.Holds != 0 {
			t.Errorf("%s: team usage %d held %d holds %d, want 0 0 0", what, v.Usage, v.Held, v.Holds)
		}
		k := rateOf(t, tg.store, "key:k")
		if k.Tokens.Usage != 0 || k.Requests.Usage != 0 || k.Tokens.Held != 0 || k.Requests.Held != 0 || k.Holds != 0 {
			t.Errorf("%s: key %+v %+v holds %d, want all 0", what, k.Tokens, k.Requests, k.Holds)
		}
	}
	// The upstream answers 502 without a usage header.
	if r := tg.do(t, "/v1/chat", "x-api-key", "k", "x-fake-fail", "1"); r.status != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", r.status)
	}
	check("502")
	// The upstream is gone: ErrorHandler.
	tg.upstream.Close()
	if r := tg.do(t, "/v1/chat", "x-api-key", "k"); r.status != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", r.status)
	}
	check("unreachable")
}

func TestConcurrentExact(t *testing.T) {
	cfg := testConfig()
	cfg.KeyRPM = 37
	tg := newTestGateway(t, cfg)
	const workers, each = 16, 10
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				r := tg.do(t, "/v1/chat", "x-api-key", "shared", "x-fake-usage", "10")
				mu.Lock()
				counts[r.status]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if counts[http.StatusOK] != 37 || counts[http.StatusTooManyRequests] != workers*each-37 {
		t.Fatalf("statuses %v, want 37 x 200 and %d x 429", counts, workers*each-37)
	}
	k := rateOf(t, tg.store, "key:shared")
	if k.Requests.Usage != 37 || k.Tokens.Usage != 370 || k.Requests.Held != 0 || k.Tokens.Held != 0 {
		t.Errorf("key requests %d tokens %d held %d/%d, want 37 370 0/0",
			k.Requests.Usage, k.Tokens.Usage, k.Requests.Held, k.Tokens.Held)
	}
	if v := budgetOf(t, tg.store, "default"); v.Usage != 370*cfg.CostPerToken || v.Held != 0 {
		t.Errorf("team usage %d held %d, want %d 0", v.Usage, v.Held, 370*cfg.CostPerToken)
	}
}
