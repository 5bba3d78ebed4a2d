package mock

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/llmgate/llmgate/internal/openai"
)

// words are the vocabulary of generated answers: common English words that
// are one token each in o200k_base and cl100k_base, with or without a leading
// space and capitalised or not, so an answer's length in tokens is exactly
// its number of words and full stops (TestWordsAreOneToken holds this).
var words = []string{
	"the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be", "at", "by",
	"this", "have", "from", "or", "one", "had", "not", "but", "what", "all", "were", "when", "we", "there",
	"can", "an", "your", "which", "their", "if", "do", "will", "each", "about", "how", "up", "out", "them",
	"then", "she", "many", "some", "so", "these", "would", "other", "into", "has", "more", "her", "two",
	"like", "see", "time", "could", "no", "make", "than", "first", "been", "its", "who", "now", "people",
	"my", "made", "over", "did", "down", "only", "way", "find", "use", "may", "water", "long", "little",
	"very", "after", "words", "called", "just", "where", "most", "know", "get", "through", "back", "much",
	"before", "go", "good", "new", "write", "our", "used", "me", "man", "too", "any", "day", "same", "right",
	"look", "think", "also", "around", "another", "come", "work", "three", "word", "must", "because",
	"does", "part", "even", "place", "well", "such", "here", "take", "why", "things", "help", "put",
	"years", "different", "away", "again", "off", "old", "number", "great", "tell", "men", "say", "small",
	"every", "found", "still", "between", "name", "should", "home", "big", "give", "air", "line", "set",
	"own", "under", "read", "last", "never", "us", "left", "end", "along", "while", "next", "sound",
	"below", "something", "thought", "both", "few", "those", "always", "show", "large", "often", "house",
	"world", "going", "want", "school", "important", "until", "form", "food", "keep", "children", "land",
	"side", "without", "boy", "once", "life", "sometimes", "four", "head", "above", "kind", "almost",
	"live", "page", "got", "earth", "need", "far", "hand", "high", "year", "mother", "light", "parts",
	"country", "father", "let", "night", "following", "picture", "being", "study", "second", "soon",
	"times", "story", "since", "white", "days", "ever", "paper", "hard", "near", "sentence", "better",
	"best", "during", "today", "others", "however", "sure", "means", "try", "young", "sun", "thing",
	"whole", "example", "change", "answer", "room", "sea", "against", "top", "learn", "point", "city",
	"play", "five", "using", "usually", "river", "open", "state", "book", "stop", "music", "green", "rain",
	"table", "market", "simple", "clear", "quiet", "bright", "early", "late", "warm", "cold", "fast", "slow",
}

// generate returns an answer of exactly length tokens, one string per token,
// determined by seed: sentences of 6 to 13 words, each capitalised and ended
// by a full stop. With stop set the answer ends with a full stop, as an
// answer the model finished does; otherwise it breaks off mid-sentence, as
// one cut by max_tokens does. Two full stops never touch (".." would be one
// token, not two).
func generate(seed uint64, length int, stop bool) []string {
	rng := mrand.New(mrand.NewPCG(seed, seed^0x6a09e667f3bcc909))
	out := make([]string, 0, length)
	inSentence, sentenceLen := 0, 6+rng.IntN(8)
	for len(out) < length {
		remaining := length - len(out)
		if stop && remaining == 1 {
			out = append(out, ".")
			break
		}
		// End the sentence, unless that would leave a lone word slot before
		// a final full stop that could not be filled without "..".
		if inSentence >= sentenceLen && !(stop && remaining == 2) {
			out = append(out, ".")
			inSentence, sentenceLen = 0, 6+rng.IntN(8)
			continue
		}
		w := words[rng.IntN(len(words))]
		if inSentence == 0 {
			w = strings.ToUpper(w[:1]) + w[1:]
		}
		if len(out) > 0 {
			w = " " + w
		}
		out = append(out, w)
		inSentence++
	}
	return out
}

// promptSeed hashes the messages, so that the same dialog gets the same answer.
func promptSeed(msgs []openai.Message) uint64 {
	h := fnv.New64a()
	for _, m := range msgs {
		h.Write([]byte(m.Role))
		h.Write([]byte{0})
		h.Write(m.Content)
		h.Write([]byte{0})
		h.Write([]byte(m.Name))
		h.Write([]byte{1})
	}
	return h.Sum64()
}

// Wire shapes of the chat answers.
type (
	chatCompletion struct {
		ID      string       `json:"id"`
		Object  string       `json:"object"`
		Created int64        `json:"created"`
		Model   string       `json:"model"`
		Choices []chatChoice `json:"choices"`
		Usage   chatUsage    `json:"usage"`
	}
	chatChoice struct {
		Index        int         `json:"index"`
		Message      chatMessage `json:"message"`
		Logprobs     *struct{}   `json:"logprobs"`
		FinishReason string      `json:"finish_reason"`
	}
	chatMessage struct {
		Role      string         `json:"role"`
		Content   *string        `json:"content"`
		ToolCalls []chatToolCall `json:"tool_calls,omitempty"`
	}
	chatToolCall struct {
		Index    *int   `json:"index,omitempty"` // stream deltas only
		ID       string `json:"id,omitempty"`
		Type     string `json:"type,omitempty"`
		Function struct {
			Name      string `json:"name,omitempty"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	}
	chatUsage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	}
	chatChunk struct {
		ID      string        `json:"id"`
		Object  string        `json:"object"`
		Created int64         `json:"created"`
		Model   string        `json:"model"`
		Choices []chunkChoice `json:"choices"`
		Usage   *chatUsage    `json:"usage,omitempty"`
	}
	chunkChoice struct {
		Index        int        `json:"index"`
		Delta        chunkDelta `json:"delta"`
		Logprobs     *struct{}  `json:"logprobs"`
		FinishReason *string    `json:"finish_reason"`
	}
	chunkDelta struct {
		Role      string         `json:"role,omitempty"`
		Content   *string        `json:"content,omitempty"`
		ToolCalls []chatToolCall `json:"tool_calls,omitempty"`
	}
)

// answer is a chat answer before it is written.
type answer struct {
	id      string
	created int64
	model   string
	choices [][]string // tokens of each choice
	finish  string
	usage   chatUsage
	tool    *toolCall // set: every choice is this function call, no text
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	c, ok := decodeCall(w, r, openai.ParseChat, func(q *openai.ChatRequest) string { return q.Model })
	if !ok {
		return
	}
	rt, req, model := c.rt, c.req, c.model
	length, finish := DefaultCompletionTokens, "stop"
	if a := req.CompletionAllowance(); a > 0 {
		if a > MaxCompletionTokens {
			param := "max_tokens"
			if req.MaxCompletionTokens != nil {
				param = "max_completion_tokens"
			}
			openai.BadRequest(param, fmt.Sprintf("%s is too large: %d. This model supports at most %d completion tokens.",
				param, a, MaxCompletionTokens)).Write(w)
			return
		}
		length, finish = int(a), "length"
	}
	n := 1
	if req.N != nil {
		n = int(*req.N)
	}

	prompt := s.counter.CountChat(model, req.Messages)
	if !s.admit(w, rt, "ChatCompletions_Create", model, int64(prompt+n*length)) {
		return
	}

	ans := answer{
		id:      "chatcmpl-" + rand.Text(),
		created: s.now().Unix(),
		model:   model,
		choices: make([][]string, n),
		finish:  finish,
	}
	seed := promptSeed(req.Messages)
	for i := range ans.choices {
		ans.choices[i] = generate(seed+uint64(i)*0x9e3779b97f4a7c15, length, finish == "stop")
	}
	// Each generated piece is one token (TestGenerateIsExactLength): no
	// need to run the tokenizer over the answers.
	completion := n * length
	var extra struct {
		ToolChoice json.RawMessage `json:"tool_choice"`
	}
	_ = json.Unmarshal(c.body, &extra)
	last := req.Messages[len(req.Messages)-1].Role
	if tc, ok := pickTool(req.Tools, extra.ToolChoice, last == "tool" || last == "function"); ok {
		ans.tool, ans.finish = tc, "tool_calls"
		completion = n * s.counter.Count(model, tc.Name+tc.Arguments)
	} else if content, ok := jsonFormat(req.ResponseFormat, strings.Join(ans.choices[0], "")); ok {
		for i := range ans.choices {
			ans.choices[i] = textPieces(content)
		}
		ans.finish = "stop"
		completion = n * s.counter.Count(model, content)
	} else if verdict, ok := judgeReply(req.Messages); ok { // the cache's judge (judge.go)
		for i := range ans.choices {
			ans.choices[i] = textPieces(verdict)
		}
		ans.finish = "stop"
		completion = n * s.counter.Count(model, verdict)
	}
	ans.usage = chatUsage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}

	if req.Stream {
		s.stream(w, r, &ans, req.StreamOptions != nil && req.StreamOptions.IncludeUsage)
		return
	}
	// A non-streaming answer arrives when its last token would have.
	if !sleep(r.Context(), time.Duration(s.latency.Load())+s.tokenDelay(n*length-1)) {
		return
	}
	out := chatCompletion{
		ID: ans.id, Object: "chat.completion", Created: ans.created, Model: ans.model,
		Choices: make([]chatChoice, n), Usage: ans.usage,
	}
	for i, toks := range ans.choices {
		msg := chatMessage{Role: "assistant"}
		if ans.tool != nil {
			tc := chatToolCall{ID: ans.tool.ID, Type: "function"}
			tc.Function.Name, tc.Function.Arguments = ans.tool.Name, ans.tool.Arguments
			msg.ToolCalls = []chatToolCall{tc}
		} else {
			text := strings.Join(toks, "")
			msg.Content = &text
		}
		out.Choices[i] = chatChoice{Index: i, Message: msg, FinishReason: ans.finish}
	}
	writeJSON(w, out)
}

// tokenDelay is how long generating k tokens after the first takes.
func (s *Server) tokenDelay(k int) time.Duration {
	if s.tokenRate <= 0 || k <= 0 {
		return 0
	}
	return time.Duration(float64(k) / s.tokenRate * float64(time.Second))
}

// stream writes ans as Server-Sent Events: per choice a role chunk, one chunk
// per token and a chunk with the finish reason; then the usage chunk if asked
// for; then [DONE]. Tokens are paced at the token rate after the latency.
// It returns as soon as the client goes away.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, ans *answer, includeUsage bool) {
	ctx := r.Context()
	if !sleep(ctx, time.Duration(s.latency.Load())) {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)

	var buf []byte
	events := 0
	send := func(c chatChunk) bool {
		s.cut(events)
		events++
		payload, err := json.Marshal(c)
		if err != nil {
			return false
		}
		buf = openai.WriteDataEvent(buf[:0], payload)
		if _, err := w.Write(buf); err != nil {
			return false
		}
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		return ctx.Err() == nil
	}
	chunk := func(choice int, delta chunkDelta, finish *string) chatChunk {
		return chatChunk{
			ID: ans.id, Object: "chat.completion.chunk", Created: ans.created, Model: ans.model,
			Choices: []chunkChoice{{Index: choice, Delta: delta, FinishReason: finish}},
		}
	}

	start := time.Now()
	sent := 0 // tokens sent so far, for pacing
	for i, toks := range ans.choices {
		if ans.tool != nil {
			// A function call streams as its head (id, name), then its arguments.
			idx := 0
			head := chatToolCall{Index: &idx, ID: ans.tool.ID, Type: "function"}
			head.Function.Name = ans.tool.Name
			args := chatToolCall{Index: &idx}
			args.Function.Arguments = ans.tool.Arguments
			if !send(chunk(i, chunkDelta{Role: "assistant", ToolCalls: []chatToolCall{head}}, nil)) ||
				!send(chunk(i, chunkDelta{ToolCalls: []chatToolCall{args}}, nil)) ||
				!send(chunk(i, chunkDelta{}, &ans.finish)) {
				return
			}
			continue
		}
		empty := ""
		if !send(chunk(i, chunkDelta{Role: "assistant", Content: &empty}, nil)) {
			return
		}
		for _, tok := range toks {
			if sent > 0 && !sleep(ctx, time.Until(start.Add(s.tokenDelay(sent)))) {
				return
			}
			if !send(chunk(i, chunkDelta{Content: &tok}, nil)) {
				return
			}
			sent++
		}
		if !send(chunk(i, chunkDelta{}, &ans.finish)) {
			return
		}
	}
	if includeUsage {
		u := ans.usage
		if !send(chatChunk{
			ID: ans.id, Object: "chat.completion.chunk", Created: ans.created, Model: ans.model,
			Choices: []chunkChoice{}, Usage: &u,
		}) {
			return
		}
	}
	s.cut(events)
	if _, err := w.Write([]byte("data: [DONE]\n\n")); err != nil {
		return
	}
	_ = rc.Flush()
}

// textPieces cuts text (a JSON answer) into stream-sized pieces.
func textPieces(text string) []string {
	var out []string
	for len(text) > 12 {
		out = append(out, text[:12])
		text = text[12:]
	}
	if text != "" {
		out = append(out, text)
	}
	return out
}
