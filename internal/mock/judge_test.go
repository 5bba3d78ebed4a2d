package mock

import (
	"encoding/json"
	"testing"

	"github.com/llmgate/llmgate/internal/openai"
	"github.com/llmgate/llmgate/verify"
)

func TestMockJudge(t *testing.T) {
	msgs := func(a, b string) []openai.Message {
		s, _ := json.Marshal(verify.JudgeSystem)
		u, _ := json.Marshal(verify.JudgeUser(a, b))
		return []openai.Message{{Role: "system", Content: s}, {Role: "user", Content: u}}
	}
	tests := []struct {
		name, a, b, want string
	}{
		{"filler words differ: yes", "How do I rotate the key?", "How would I rotate the key", "yes"},
		{"a content word differs: no", "How do I rotate the key of my resource?", "How do I rotate the key of the resource?", "no"},
	}
	for _, tt := range tests {
		got, ok := judgeReply(msgs(tt.a, tt.b))
		if !ok || got != tt.want {
			t.Errorf("%s: %q %v, want %q", tt.name, got, ok, tt.want)
		}
	}
	if _, ok := judgeReply([]openai.Message{{Role: "user", Content: json.RawMessage(`"hi"`)}}); ok {
		t.Error("an ordinary chat was taken for a judge prompt")
	}
}
