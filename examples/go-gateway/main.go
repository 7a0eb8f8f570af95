// Command go-gateway is a small LLM gateway on tally: a reverse proxy that
// admits each request across its API key's, team's and model's limits
// (tally.Admit, one hold over all of them), forwards it, and settles what
// the upstream reports it used (x-usage-tokens). Without -upstream it
// starts the fake upstream of package fakeupstream on a free loopback port.
// See README.md.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"tally.dev/go-gateway/fakeupstream"
	"tally.dev/tally"
)

// table parses "name=value,name=value" into m (replacing it when not empty).
type table struct{ m *map[string]int64 }

func (t table) String() string {
	if t.m == nil {
		return ""
	}
	var parts []string
	for k, v := range *t.m {
		parts = append(parts, k+"="+strconv.FormatInt(v, 10))
	}
	return strings.Join(parts, ",")
}

func (t table) Set(s string) error {
	m := map[string]int64{}
	for _, item := range strings.Split(s, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(item), "=")
		n, err := strconv.ParseInt(value, 10, 64)
		if !ok || name == "" || err != nil || n < 0 {
			return fmt.Errorf("%q: want name=non-negative integer", item)
		}
		m[name] = n
	}
	*t.m = m
	return nil
}

func main() {
	cfg := DefaultConfig()
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	upstream := flag.String("upstream", "", "upstream base URL (default: start the fake upstream on a free loopback port)")
	flag.Int64Var(&cfg.KeyRPM, "key-rpm", cfg.KeyRPM, "requests a minute per API key (sliding window)")
	flag.Int64Var(&cfg.KeyTPM, "key-tpm", cfg.KeyTPM, "tokens a minute per API key")
	flag.Int64Var(&cfg.DefaultTeamBudget, "team-budget", cfg.DefaultTeamBudget, "monthly budget in µ$ of a team not in -teams")
	flag.Var(table{&cfg.TeamBudgets}, "teams", "monthly budgets in µ$ per team, name=µ$,...")
	flag.Var(table{&cfg.ModelTPM}, "models", "tokens a minute per model, name=tokens,... (other models: 404)")
	flag.Int64Var(&cfg.CostPerToken, "cost-per-token", cfg.CostPerToken, "cost of a token in µ$")
	flag.Int64Var(&cfg.DefaultEstimate, "estimate", cfg.DefaultEstimate, "estimate in tokens of a request without x-estimate-tokens")
	flag.DurationVar(&cfg.HoldTTL, "hold-ttl", cfg.HoldTTL, "TTL of an admission's hold (at most 10m)")
	flag.Parse()

	if *upstream == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		*upstream = "http://" + ln.Addr().String()
		go func() { log.Fatal(http.Serve(ln, fakeupstream.Handler{})) }()
		log.Printf("go-gateway: fake upstream on %s", *upstream)
	}
	u, err := url.Parse(*upstream)
	if err != nil || u.Scheme == "" || u.Host == "" {
		log.Fatalf("go-gateway: -upstream %q: want a URL like http://host:port", *upstream)
	}

	store, err := tally.Open(tally.Options{})
	if err != nil {
		log.Fatal(err)
	}
	// The store lives as long as the process (log.Fatal exits without Close).
	log.Printf("go-gateway: %v", cfg)
	log.Printf("go-gateway: listening on http://%s, forwarding to %s", *listen, u)
	log.Fatal(http.ListenAndServe(*listen, New(store, cfg, u)))
}
