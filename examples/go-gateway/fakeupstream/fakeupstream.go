// Package fakeupstream is a stand-in for an LLM API behind the gateway: it
// answers every request itself and reports how many tokens it "used" in
// the x-usage-tokens response header, as a metered upstream would.
//
// Request headers that steer it:
//
//	x-fake-usage: N     report N tokens (default DefaultUsage); "none"
//	                    sends no x-usage-tokens header at all
//	x-fake-fail: 1      answer 502 Bad Gateway with no usage header
package fakeupstream

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// DefaultUsage is the usage reported without an x-fake-usage header.
const DefaultUsage = 500

// UsageHeader is the response header carrying the tokens used.
const UsageHeader = "x-usage-tokens"

// Handler is the fake upstream.
type Handler struct{}

// ServeHTTP answers 200 with x-usage-tokens and a small JSON body, or 502
// when asked.
func (Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("x-fake-fail") == "1" {
		w.WriteHeader(http.StatusBadGateway)
		json.NewEncoder(w).Encode(map[string]string{"error": "fake upstream failure"})
		return
	}
	usage := strconv.Itoa(DefaultUsage)
	if v := r.Header.Get("x-fake-usage"); v != "" {
		usage = v
	}
	if usage != "none" {
		w.Header().Set(UsageHeader, usage)
	}
	w.WriteHeader(http.StatusOK)
	json.NewEncoder(w).Encode(map[string]string{
		"upstream": "fake", "method": r.Method, "path": r.URL.Path,
		"model": r.Header.Get("x-model"), "usage_tokens": usage,
	})
}
