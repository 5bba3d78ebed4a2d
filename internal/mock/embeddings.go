package mock

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
	"unicode"

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
	for i, text := range texts {
		v := embed(text, dims)
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

// embed returns a deterministic unit vector of dims dimensions for text by
// feature hashing: each lower-cased word (weight 1) and each character
// trigram of the space-padded word (weight 0.5) adds its weight, with a sign,
// to the dimension its hash selects. Texts that share words and spellings
// point in similar directions. Text without words gets a fixed unit vector.
func embed(text string, dims int) []float32 {
	acc := make([]float64, dims)
	fields := strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsNumber(r)
	})
	var runes []rune
	for _, word := range fields {
		addFeature(acc, 'w', word, 1)
		runes = append(runes[:0], ' ')
		runes = append(runes, []rune(word)...)
		runes = append(runes, ' ')
		for i := 0; i+3 <= len(runes); i++ {
			addFeature(acc, 'c', string(runes[i:i+3]), 0.5)
		}
	}
	var norm float64
	for _, x := range acc {
		norm += x * x
	}
	v := make([]float32, dims)
	if norm == 0 {
		v[0] = 1
		return v
	}
	norm = math.Sqrt(norm)
	for i, x := range acc {
		v[i] = float32(x / norm)
	}
	return v
}

// addFeature adds weight to the dimension feature hashes to, with the sign of
// the hash's top bit (signed hashing keeps collisions from only adding up).
func addFeature(acc []float64, kind byte, feature string, weight float64) {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	h = (h ^ uint64(kind)) * prime
	for i := 0; i < len(feature); i++ {
		h = (h ^ uint64(feature[i])) * prime
	}
	if h>>63 == 1 {
		weight = -weight
	}
	acc[h%uint64(len(acc))] += weight
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
