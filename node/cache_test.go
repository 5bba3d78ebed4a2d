package node

import (
	"net/http"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/internal/openai"
)

func TestPartitionNamesNeverCollide(t *testing.T) {
	g := &Gateway{cacheCfg: config.Cache{VaryBy: []string{"consumer", "header:x-team"}}}
	name := func(team string, set bool) string {
		h := http.Header{}
		if set {
			h.Set("x-team", team)
		}
		return g.partition(&Call{Consumer: &Consumer{Name: "team-a"}, Header: h})
	}
	seen := map[string]string{}
	for _, tc := range []struct {
		label string
		team  string
		set   bool
	}{
		{"a/b", "a/b", true}, {"a%2Fb", "a%2Fb", true}, {"dash", "-", true}, {"missing", "", false}, {"plain", "blue", true},
	} {
		n := name(tc.team, tc.set)
		if other, dup := seen[n]; dup {
			t.Errorf("%s and %s share partition %q", tc.label, other, n)
		}
		seen[n] = tc.label
	}
	if got := name("blue", true); got != "team-a/blue" {
		t.Errorf("partition = %q, want team-a/blue (SPEC §6: vary_by values joined by /)", got)
	}
}

func TestPlanCache(t *testing.T) {
	g := &Gateway{cache: nopCache{}, cacheCfg: config.Cache{MaxMessageCount: 10, VaryBy: []string{"consumer"}, IgnoreSystemMessages: true}}
	plan := func(body string, h ...string) cachePlan {
		r, e := openai.ParseChat([]byte(body))
		if e != nil {
			t.Fatal(e)
		}
		hdr := http.Header{}
		for i := 0; i+1 < len(h); i += 2 {
			hdr.Set(h[i], h[i+1])
		}
		return g.planCache(&Call{Route: "gpt-4o", Body: []byte(body), Chat: r, Consumer: &Consumer{Name: "team-a"}, Header: hdr})
	}
	base := plan(`{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`)
	if base.state != cacheMiss || base.prompt != "hi" || base.space.Partition != "team-a" {
		t.Fatalf("base plan: %+v", base)
	}
	tests := []struct {
		name      string
		body      string
		state     string
		sameShape bool
		semantic  bool
		headers   []string
	}{
		{"ignored system message keeps the shape", `{"model":"gpt-4o","messages":[{"role":"system","content":"be verbose"},{"role":"user","content":"hi"}]}`, cacheMiss, true, true, nil},
		{"stream flag keeps the shape", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`, cacheMiss, true, true, nil},
		{"a temperature changes the shape", `{"model":"gpt-4o","temperature":0.8,"messages":[{"role":"user","content":"hi"}]}`, cacheMiss, false, true, nil},
		{"tools change the shape", `{"model":"gpt-4o","tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"hi"}]}`, cacheMiss, false, true, nil},
		{"another turn structure changes the shape", `{"model":"gpt-4o","messages":[{"role":"assistant","content":"hello"},{"role":"user","content":"hi"}]}`, cacheMiss, false, true, nil},
		{"tool results match exactly or not at all", `{"model":"gpt-4o","messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":null},{"role":"tool","content":"18C"}]}`, cacheMiss, false, false, nil},
		{"images are not cacheable", `{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, cacheBypass, false, false, nil},
		{"too many messages", `{"model":"gpt-4o","messages":[` + repeatMsg(11) + `]}`, cacheBypass, false, false, nil},
		{"client turned it off", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, cacheOff, false, false, []string{"x-llmgate-cache", "off"}},
		{"ttl 0 is not stored", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, cacheBypass, false, false, []string{"x-llmgate-cache-ttl", "0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := plan(tc.body, tc.headers...)
			if p.state != tc.state {
				t.Fatalf("state = %s, want %s", p.state, tc.state)
			}
			if p.state != cacheMiss {
				return
			}
			if same := p.space == base.space; same != tc.sameShape {
				t.Errorf("same space as the base = %v, want %v (%+v vs %+v)", same, tc.sameShape, p.space, base.space)
			}
			if semantic := p.prompt != ""; semantic != tc.semantic {
				t.Errorf("semantic tier = %v, want %v", semantic, tc.semantic)
			}
		})
	}
}

func repeatMsg(n int) string {
	s := ""
	for i := range n {
		if i > 0 {
			s += ","
		}
		s += `{"role":"user","content":"x"}`
	}
	return s
}

func TestContentFiltered(t *testing.T) {
	tests := []struct {
		body string
		want bool
	}{
		{`{"choices":[{"content_filter_results":{"hate":{"filtered":false}}}]}`, false},
		{`{"choices":[{"content_filter_results":{"hate":{"filtered": true,"severity":"high"}}}]}`, true},
		{`{"prompt_filter_results":[{"content_filter_results":{"jailbreak":{"filtered" :true}}}]}`, true},
		{`{"choices":[{"message":{"content":"the word \"filtered\" in an answer"}}]}`, false},
		{`{"choices":[]}`, false},
		{`{"a":{"filtered" : false},"b":"filtered","c":[{"filtered":false}]}`, false},
		{`{"a":{"filt\u0065red":true},"b":{"filtered":false}}`, true},
		{strings.Repeat("[", 33) + `{"filtered":false}` + strings.Repeat("]", 33), true}, // too deep to tell
	}
	for _, tc := range tests {
		if got := contentFiltered([]byte(tc.body)); got != tc.want {
			t.Errorf("contentFiltered(%s) = %v, want %v", tc.body, got, tc.want)
		}
	}
}

// nopCache stands in for a cache where only its presence matters.
type nopCache struct{ Cache }
