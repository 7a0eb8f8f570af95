package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"tally.dev/tally"
)

// Config is the gateway's limits. Money is in micro-dollars (µ$).
type Config struct {
	KeyRPM int64 // requests a minute per API key (sliding window)
	KeyTPM int64 // tokens a minute per API key (fixed window)
	// TeamBudgets is the monthly budget per team (calendar month, UTC);
	// a team not in it gets DefaultTeamBudget.
	TeamBudgets       map[string]int64
	DefaultTeamBudget int64
	// ModelTPM is the tokens a minute per model, over all keys; a model
	// not in it is refused with 404.
	ModelTPM map[string]int64
	// CostPerToken in µ$; DefaultEstimate is the estimate in tokens of a
	// request without x-estimate-tokens.
	CostPerToken    int64
	DefaultEstimate int64
	HoldTTL         time.Duration
}

// DefaultConfig is the built-in table.
func DefaultConfig() Config {
	return Config{
		KeyRPM: 60, KeyTPM: 100_000,
		TeamBudgets:       map[string]int64{"default": 50_000_000, "research": 200_000_000},
		DefaultTeamBudget: 50_000_000,
		ModelTPM:          map[string]int64{"default": 1_000_000, "small": 2_000_000, "large": 200_000},
		CostPerToken:      2,
		DefaultEstimate:   1000,
		HoldTTL:           2 * time.Minute,
	}
}

// maxTokens bounds estimates and reported usage, so that tokens times
// CostPerToken cannot overflow.
const maxTokens = 1 << 40

// The charges of one admission, in this order (Decision.Limits indexes).
const (
	limitKey   = 0 // rate limit: tokens and requests
	limitTeam  = 1 // budget: µ$
	limitModel = 2 // rate limit: tokens
)

// policies name the four counters in the RateLimit headers.
var policies = []tally.HeaderPolicy{
	{Name: "key-rpm", Limit: limitKey, Counter: tally.CounterRequests, Unit: tally.UnitRequests},
	{Name: "key-tpm", Limit: limitKey, Counter: tally.CounterTokens, Unit: tally.UnitTokens},
	{Name: "team-budget", Limit: limitTeam, Counter: tally.CounterBudget, Unit: tally.UnitOther},
	{Name: "model-tpm", Limit: limitModel, Counter: tally.CounterTokens, Unit: tally.UnitTokens},
}

// Gateway admits each request across its key, team and model limits,
// forwards it, and settles what the upstream reports it used.
type Gateway struct {
	store *tally.Store
	cfg   Config
	proxy *httputil.ReverseProxy
	Log   *log.Logger // nil: the standard logger
}

// admission travels in the forwarded request's context from ServeHTTP to
// ModifyResponse or ErrorHandler.
type admission struct {
	hold     tally.Hold
	decision tally.Decision
	estimate int64
	key      string
}

type ctxKey struct{}

// New returns a gateway in front of upstream. The store holds the records
// ("key:<api key>", "team:<team>", "model:<model>"), created on first use.
func New(store *tally.Store, cfg Config, upstream *url.URL) *Gateway {
	g := &Gateway{store: store, cfg: cfg}
	p := httputil.NewSingleHostReverseProxy(upstream)
	direct := p.Director
	p.Director = func(r *http.Request) {
		direct(r)
		r.Host = upstream.Host
		r.Header.Del("x-api-key") // the gateway's credential, not the upstream's
	}
	p.ModifyResponse = g.modifyResponse
	p.ErrorHandler = g.errorHandler
	g.proxy = p
	return g
}

func (g *Gateway) logf(format string, args ...any) {
	if g.Log != nil {
		g.Log.Printf(format, args...)
	} else {
		log.Printf(format, args...)
	}
}

// modelOf is the x-model header, else the segment after "models" in the
// path (/v1/models/<model>/...), else "default".
func modelOf(r *http.Request) string {
	if m := r.Header.Get("x-model"); m != "" {
		return m
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	for i := 0; i+1 < len(parts); i++ {
		if parts[i] == "models" && parts[i+1] != "" {
			return parts[i+1]
		}
	}
	return "default"
}

func writeJSON(w http.ResponseWriter, status int, body map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

// addHeaders adds the lines of tally.FormatHeaders to h.
func addHeaders(h http.Header, d *tally.Decision, fields tally.HeaderFields) error {
	text, err := tally.FormatHeaders(d, policies, fields)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(text, "\r\n") {
		if name, value, ok := strings.Cut(line, ": "); ok {
			h.Add(name, value)
		}
	}
	return nil
}

// ensure creates (or re-configures, keeping usage) the three records.
func (g *Gateway) ensure(key, team, model string) error {
	minute := tally.Every(time.Minute)
	if _, _, err := g.store.UpsertRateLimit("key:"+key, tally.RateLimitConfig{
		Tokens:   tally.Limit{HasMax: true, Max: g.cfg.KeyTPM, Period: minute},
		Requests: tally.Limit{HasMax: true, Max: g.cfg.KeyRPM, Period: minute, Algorithm: tally.AlgorithmSliding},
	}); err != nil {
		return err
	}
	budget, ok := g.cfg.TeamBudgets[team]
	if !ok {
		budget = g.cfg.DefaultTeamBudget
	}
	if _, _, err := g.store.UpsertBudget("team:"+team, tally.BudgetConfig{
		Max: budget, Period: tally.Period{Count: 1, Unit: tally.PeriodMonth}, CalendarAligned: true,
	}); err != nil {
		return err
	}
	_, _, err := g.store.UpsertRateLimit("model:"+model, tally.RateLimitConfig{
		Tokens:   tally.Limit{HasMax: true, Max: g.cfg.ModelTPM[model], Period: minute},
		Requests: tally.Limit{Period: minute}, // counted, unlimited
	})
	return err
}

// ServeHTTP admits, then forwards or refuses.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("x-api-key")
	if key == "" {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "missing x-api-key"})
		return
	}
	team := r.Header.Get("x-team")
	if team == "" {
		team = "default"
	}
	model := modelOf(r)
	if _, ok := g.cfg.ModelTPM[model]; !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "unknown model", "model": model})
		return
	}
	if len(key) > 200 || len(team) > 200 || len(model) > 200 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "key, team or model longer than 200 bytes"})
		return
	}
	estimate := g.cfg.DefaultEstimate
	if v := r.Header.Get("x-estimate-tokens"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > maxTokens {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "bad x-estimate-tokens"})
			return
		}
		estimate = n
	}
	charges := []tally.Charge{
		limitKey:   {Kind: tally.KindRateLimit, Key: "key:" + key, Tokens: estimate, Requests: 1},
		limitTeam:  {Kind: tally.KindBudget, Key: "team:" + team, Amount: estimate * g.cfg.CostPerToken},
		limitModel: {Kind: tally.KindRateLimit, Key: "model:" + model, Tokens: estimate},
	}
	var (
		hold tally.Hold
		d    tally.Decision
		err  error
	)
	// The records are created on first use: a missing one is ErrNotFound
	// (nothing held); create them and ask again.
	for try := 0; try < 3; try++ {
		hold, d, err = g.store.Admit(charges, tally.AdmitHold, g.cfg.HoldTTL)
		if !errors.Is(err, tally.ErrNotFound) {
			break
		}
		if err = g.ensure(key, team, model); err != nil {
			break
		}
	}
	if err != nil {
		g.logf("gateway: admit: %v", err)
		writeJSON(w, http.StatusInternalServerError, map[string]any{"error": "admission failed"})
		return
	}
	if !d.Allowed() {
		g.refuse(w, &d, charges)
		return
	}
	a := &admission{hold: hold, decision: d, estimate: estimate, key: key}
	g.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, a)))
}

// refuse answers 402 (the team budget) or 429 (a rate limit) with the
// RateLimit headers, Retry-After and a JSON body naming the limit.
func (g *Gateway) refuse(w http.ResponseWriter, d *tally.Decision, charges []tally.Charge) {
	if err := addHeaders(w.Header(), d, tally.HeadersIETF|tally.HeadersRetryAfter); err != nil {
		g.logf("gateway: headers: %v", err)
	}
	l := &d.Limits[d.Refused]
	status, reason := http.StatusTooManyRequests, "rate_limited"
	if l.Kind == tally.KindBudget {
		status, reason = http.StatusPaymentRequired, "budget_exhausted"
	}
	policy := ""
	var c *tally.CounterReport
	for i := range policies {
		p := &policies[i]
		j := 0
		if p.Counter == tally.CounterRequests {
			j = 1
		}
		if p.Limit == d.Refused && l.Counters[j].Flags&tally.FlagDenied != 0 {
			policy, c = p.Name, &l.Counters[j]
			break
		}
	}
	body := map[string]any{"error": reason, "limit": charges[d.Refused].Key, "policy": policy}
	if c != nil {
		body["max"], body["used"], body["held"] = c.Max, c.Used, c.Held
		if c.Flags&tally.FlagTooBig != 0 {
			body["too_big"] = true // can never pass: no Retry-After
		} else {
			body["retry_after_ms"] = c.RetryAfter.Milliseconds()
		}
	}
	writeJSON(w, status, body)
}

// usageOf is the upstream's x-usage-tokens as a count, or false when it is
// missing, not a decimal integer, negative or above maxTokens.
func usageOf(resp *http.Response) (int64, bool) {
	v := resp.Header.Get("x-usage-tokens")
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 || n > maxTokens {
		return 0, false
	}
	return n, true
}

// modifyResponse settles the hold and adds the admission's headers. The
// rule:
//   - a valid x-usage-tokens: settle that many tokens (and its cost, and
//     the one request) whatever the status;
//   - no valid header and a status >= 500: release (the upstream failed;
//     nothing is charged, not even the request);
//   - no valid header and a status < 500: settle the estimate, as the
//     upstream answered and may have done the work.
func (g *Gateway) modifyResponse(resp *http.Response) error {
	a, _ := resp.Request.Context().Value(ctxKey{}).(*admission)
	if a == nil {
		return nil
	}
	tokens, ok := usageOf(resp)
	switch {
	case ok:
		g.settle(a, tokens)
	case resp.StatusCode >= 500:
		g.release(a)
	default:
		g.logf("gateway: key %q: no valid x-usage-tokens (status %d): charging the estimate %d",
			a.key, resp.StatusCode, a.estimate)
		g.settle(a, a.estimate)
	}
	if err := addHeaders(resp.Header, &a.decision, tally.HeadersIETF); err != nil {
		g.logf("gateway: headers: %v", err)
	}
	return nil
}

// errorHandler: the upstream could not be reached or its response not
// read: release, answer 502.
func (g *Gateway) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	if a, _ := r.Context().Value(ctxKey{}).(*admission); a != nil {
		g.release(a)
	}
	g.logf("gateway: upstream: %v", err)
	writeJSON(w, http.StatusBadGateway, map[string]any{"error": "upstream unavailable"})
}

func (g *Gateway) settle(a *admission, tokens int64) {
	_, err := g.store.Settle(&a.hold, []tally.Cost{
		limitKey:   {Tokens: tokens, Requests: 1},
		limitTeam:  {Amount: tokens * g.cfg.CostPerToken},
		limitModel: {Tokens: tokens},
	})
	if err != nil {
		g.logf("gateway: settle: %v", err)
	}
}

func (g *Gateway) release(a *admission) {
	if _, err := g.store.Release(&a.hold); err != nil {
		g.logf("gateway: release: %v", err)
	}
}

// String describes the limits, for the startup log.
func (c Config) String() string {
	return fmt.Sprintf("key %d req/min (sliding) and %d tokens/min, team budgets %v µ$/month (default %d), "+
		"model tokens/min %v, %d µ$/token, estimate %d tokens, hold TTL %v",
		c.KeyRPM, c.KeyTPM, c.TeamBudgets, c.DefaultTeamBudget, c.ModelTPM, c.CostPerToken,
		c.DefaultEstimate, c.HoldTTL)
}
