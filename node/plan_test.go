package node

import (
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/index"
	"github.com/llmgate/llmgate/index/guard"
	"github.com/llmgate/llmgate/internal/config"
	"github.com/llmgate/llmgate/internal/openai"
)

// keysByDecoding is how planCache keyed a call before it read the body once:
// the top-level members decoded into a map, the shape marshalled and hashed,
// and the body canonicalised again for the exact key. The keys must stay
// the same, or every stored and replicated entry would become unreachable.
func keysByDecoding(g *Gateway, call *Call) (shape string, exact [32]byte, ok bool) {
	msgs, temperature, ok := wireOf(call).dialog(call)
	if !ok {
		return "", exact, false
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(call.Body, &top) != nil {
		return "", exact, false
	}
	sh := map[string]any{}
	for k, v := range top {
		if !answerNeutral(k) {
			sh[k] = v
		}
	}
	if temperature != nil {
		sh["temperature"] = temperatureBucket(*temperature)
	}
	if call.Op != openai.OpChat {
		sh["·op"] = call.Op.String()
	}
	d, ok := retainedDialog(msgs)
	if !ok {
		return "", exact, false
	}
	sh["·roles"] = d.roles
	if !g.cacheCfg.IgnoreSystemMessages {
		sh["·system"] = d.system
	}
	sj, err := json.Marshal(sh)
	if err != nil {
		return "", exact, false
	}
	h, err := index.CanonicalHash(index.Space{}, sj)
	if err != nil {
		return "", exact, false
	}
	space := index.Space{Partition: g.partition(call), Route: call.Route, Shape: hex.EncodeToString(h[:8])}
	exact, err = index.CanonicalHash(space, call.Body)
	return space.Shape, exact, err == nil
}

var planSeeds = []string{
	`{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`,
	`{"model":"gpt-4o","temperature":0.8,"top_p":1,"messages":[{"role":"user","content":"hi <b> & \u2028"}],"stream":true,"user":"u"}`,
	`{"messages":[{"role":"user","content":"x"}],"model":"m","tools":[{"type":"function","function":{"name":"f","parameters":{"b":1,"a":[1.50,2e3]}}}],"tool_choice":"auto"}`,
	`{"model":"m","messages":[{"role":"user","content":"x"}],"seed":1,"seed":2,"s\u0065ed":3}`,
	`{"model":"m","messages":[{"role":"user","content":"x"}],"·roles":["forged"],"temperature":"0","·system":null}`,
	`{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"\ud800","strict":true}}}`,
	"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"k\xff\":\"v\xfe\",\"\\ud800\":1,\"\\ufffd\":2}",
	`{"model":"m","messages":[{"role":"developer","content":"sys"},{"role":"user","name":"bob","content":"x"},{"role":"assistant","content":"y"},{"role":"user","content":[{"type":"text","text":"z"}]}],"max_tokens":5,"metadata":{"a":"b"}}`,
	`{"model":"m","messages":[{"role":"user","content":"x"}],"logit_bias":{"50256":-100,"1":5},"stop":["\n","END"],"n":2}`,
}

func checkPlanKeys(t *testing.T, g *Gateway, body []byte) {
	t.Helper()
	r, e := openai.ParseChat(body)
	if e != nil {
		return
	}
	call := &Call{Op: openai.OpChat, Route: "gpt-4o", Body: body, Chat: r, Consumer: &Consumer{Name: "team-a"}, Header: http.Header{}}
	cp := g.planCache(call)
	shape, exact, ok := keysByDecoding(g, call)
	if ok != (cp.state == cacheMiss) {
		if len(r.Messages) > g.cacheCfg.MaxMessageCount {
			return
		}
		t.Fatalf("plan state %s, decoding ok %v, for %s", cp.state, ok, body)
	}
	if ok && (cp.space.Shape != shape || cp.exact != exact) {
		t.Fatalf("keys of %s changed: shape %s (was %s), exact %x (was %x)", body, cp.space.Shape, shape, cp.exact[:8], exact[:8])
	}
}

func planGateways() []*Gateway {
	return []*Gateway{
		{cache: nopCache{}, cacheCfg: config.Cache{MaxMessageCount: 50, VaryBy: []string{"consumer"}}},
		{cache: nopCache{}, cacheCfg: config.Cache{MaxMessageCount: 50, IgnoreSystemMessages: true}},
	}
}

func TestPlanKeysAreTheDecodedOnes(t *testing.T) {
	for _, g := range planGateways() {
		for _, s := range planSeeds {
			checkPlanKeys(t, g, []byte(s))
		}
	}
}

func FuzzPlanKeysAreTheDecodedOnes(f *testing.F) {
	for _, s := range planSeeds {
		f.Add([]byte(s))
	}
	gs := planGateways()
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, g := range gs {
			checkPlanKeys(t, g, body)
		}
	})
}

// BenchmarkPlanCache is planCache of one request of `llmgate bench
// overhead --features cache-miss`.
func BenchmarkPlanCache(b *testing.B) {
	g := planGateways()[0]
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":` + strconv.Quote(missPrompt(12345)) + `}],"max_tokens":16}`)
	r, e := openai.ParseChat(body)
	if e != nil {
		b.Fatal(e)
	}
	call := &Call{Op: openai.OpChat, Route: "gpt-4o", Body: body, Chat: r, Consumer: &Consumer{Name: "team-a"}, Header: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		if cp := g.planCache(call); cp.state != cacheMiss {
			b.Fatal(cp.state)
		}
	}
}

// TestRetainedDialogJoinsTheTurns checks the dialog text the normalised
// key, the embedding and the guard read: the non-system contents joined by
// the turn separator, one turn alone being its own text.
func TestRetainedDialogJoinsTheTurns(t *testing.T) {
	msg := func(role, text string) openai.Message {
		return openai.Message{Role: role, Content: json.RawMessage(strconv.Quote(text))}
	}
	for _, c := range []struct {
		name  string
		msgs  []openai.Message
		turns []string
	}{
		{"no turn", []openai.Message{msg("system", "s")}, nil},
		{"one turn", []openai.Message{msg("user", "hi there")}, []string{"hi there"}},
		{"one turn after a system message", []openai.Message{msg("system", "s"), msg("user", "q")}, []string{"q"}},
		{"two turns", []openai.Message{msg("user", "a"), msg("assistant", "b")}, []string{"a", "b"}},
		{"three turns around system messages", []openai.Message{msg("developer", "d"), msg("user", "a"), msg("system", "s"), msg("assistant", "b"), msg("user", "c")}, []string{"a", "b", "c"}},
		{"empty turns", []openai.Message{msg("user", ""), msg("assistant", ""), msg("user", "x")}, []string{"", "", "x"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, ok := retainedDialog(c.msgs)
			if !ok {
				t.Fatal("not retained")
			}
			if want := strings.Join(c.turns, guard.TurnSeparator); d.text != want {
				t.Fatalf("text %q, want %q", d.text, want)
			}
			if len(d.roles) != len(c.turns) {
				t.Fatalf("roles %q for %d turns", d.roles, len(c.turns))
			}
		})
	}
}
