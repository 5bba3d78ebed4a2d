package mock

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/llmgate/llmgate/internal/embed"
	"github.com/llmgate/llmgate/internal/openai"
)

// embeddingOptions are the embeddings request fields openai.EmbeddingsRequest
// does not read.
type embeddingOptions struct {
	Dimensions     *int   `json:"dimensions"`
	EncodingFormat string `json:"encoding_format"`
}

type (
	embeddingList struct {
		Object string          `json:"object"`
		Data   []embeddingItem `json:"data"`
		Model  string          `json:"model"`
		Usage  embeddingUsage  `json:"usage"`
	}
	embeddingItem struct {
		Object    string `json:"object"`
		Index     int    `json:"index"`
		Embedding any    `json:"embedding"` // []float32, or a base64 string
	}
	embeddingUsage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	}
)

func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request) {
	c, ok := decodeCall(w, r, openai.ParseEmbeddings, func(q *openai.EmbeddingsRequest) string { return q.Model })
	if !ok {
		return
	}
	rt, body, req, model := c.rt, c.body, c.req, c.model
	var opts embeddingOptions
	if err := json.Unmarshal(body, &opts); err != nil {
		openai.BadRequest("", "Invalid embeddings options: "+err.Error()).Write(w)
		return
	}
	dims := DefaultDimensions
	if opts.Dimensions != nil {
		dims = *opts.Dimensions
		if dims < 1 || dims > MaxDimensions {
			openai.BadRequest("dimensions", fmt.Sprintf("'dimensions' must be between 1 and %d.", MaxDimensions)).Write(w)
			return
		}
	}
	switch opts.EncodingFormat {
	case "", "float", "base64":
	default:
		openai.BadRequest("encoding_format", "'encoding_format' must be 'float' or 'base64'.").Write(w)
		return
	}

	texts := embeddingTexts(req.Inputs)
	prompt := 0
	for i, in := range req.Inputs {
		if in.Tokens != nil {
			prompt += len(in.Tokens)
		} else {
			prompt += s.counter.Count(model, texts[i])
		}
	}
	if !s.admit(w, rt, "Embeddings_Create", model, int64(prompt)) {
		return
	}

	out := embeddingList{Object: "list", Data: make([]embeddingItem, len(texts)), Model: model,
		Usage: embeddingUsage{PromptTokens: prompt, TotalTokens: prompt}}
	local := embed.NewLocal() // cheap: it reads the embedded table in place
	for i, text := range texts {
		v := embedText(local, text, dims)
		item := embeddingItem{Object: "embedding", Index: i, Embedding: v}
		if opts.EncodingFormat == "base64" {
			item.Embedding = encodeBase64(v)
		}
		out.Data[i] = item
	}
	if !sleep(r.Context(), time.Duration(s.latency.Load())) {
		return
	}
	writeJSON(w, out)
}

// embeddingTexts returns the text to embed for each input: the string
// itself, or for a pre-tokenized input its token array as JSON, so equal
// token arrays embed equally.
func embeddingTexts(inputs []openai.EmbeddingInput) []string {
	texts := make([]string, len(inputs))
	for i, in := range inputs {
		if in.Tokens == nil {
			texts[i] = in.Text
			continue
		}
		b, _ := json.Marshal(in.Tokens)
		texts[i] = "\x00tokens:" + string(b)
	}
	return texts
}

// embedText returns the embedding of text by the gateway's built-in local
// embedder (package embed), dims long: the first dims of its embed.Dim
// values renormalised to unit length when dims is smaller, all of them when
// dims is larger. Texts that share words, spellings or meaning point in
// similar directions; text without words gets a fixed unit vector.
func embedText(local *embed.Local, text string, dims int) []float32 {
	v := local.Embed(text)
	if dims >= len(v) {
		return v
	}
	v = v[:dims]
	var norm float64
	for _, x := range v {
		norm += float64(x) * float64(x)
	}
	if norm == 0 {
		v[0] = 1
		return v
	}
	scale := 1 / math.Sqrt(norm)
	for i, x := range v {
		v[i] = float32(float64(x) * scale)
	}
	return v
}

// encodeBase64 is the OpenAI base64 encoding of an embedding: the
// little-endian float32 values, base64-encoded.
func encodeBase64(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(b)
}
