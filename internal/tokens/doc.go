// Package tokens counts tokens the way OpenAI models do, locally and offline,
// with the tiktoken vocabularies of github.com/tiktoken-go/tokenizer.
//
// It owns three things: the encoders (one per encoding, built on first use
// and shared by every caller of a Counter), the counting rules (which
// encoding a model name uses, and OpenAI's rule for chat messages), and the
// fast counting path. It performs no I/O, knows nothing of HTTP, and holds no
// state beyond its encoders: a count depends only on the model name and the
// text. The encoders' immutable tables (ranks, hot tokens, character
// classes) are built once per process and shared by every Counter; each
// Counter has its own piece cache.
//
// # How it counts
//
// The tokenizer splits text with a regular expression, then byte-pair merges
// each piece. This package gives exactly the tokenizer's counts for
// o200k_base and cl100k_base (the tokenizer is the reference its tests
// compare with, piece by piece and count by count) but does the work
// differently:
//
//   - the split is hand-written, one function per encoding, equivalent to
//     the encoding's pattern as the tokenizer's compiled matcher runs it
//     (including its quirks: DEL matches nothing and is never counted, and
//     "\s*[\r\n]+" ends at the first group of line breaks of a run). It
//     reads runes in place with a class table, backtracks only where the
//     pattern would, and is linear in the text;
//   - a piece that is a token (most of them) costs one lookup in a rank
//     table built from the tokenizer's vocabulary, or, for the 32,768
//     lowest-ranked (most frequent) tokens of up to 15 bytes, in a 1 MB set
//     keyed by the token's own bytes: one cache line instead of the rank
//     table's slot and the token's bytes, which matters when the tables
//     have been evicted between requests (hot.go);
//   - other pieces are merged with the same ranks and the same rule (lowest
//     rank first, leftmost among equals), and their counts are kept in a
//     bounded cache, so a rare word repeated across prompts is merged once;
//   - CountChat keeps the counts of whole message texts other than the last
//     (system prompts, a conversation's earlier turns, which clients resend
//     with every request) in a bounded cache that compares the text itself,
//     so they are counted once.
//
// Counting allocates nothing, except for a piece or text new to a cache, text that
// is not valid UTF-8 (counted as the tokenizer does, each invalid byte as
// U+FFFD), and pieces longer than 96 bytes (scratch reused through a pool).
//
// The one bound on exactness: a single piece longer than 16 KB (one enormous
// word, or a whitespace run without line breaks) is merged in 16 KB parts,
// so that no request makes the gateway merge a whole body in one piece; its
// count may then differ from the tokenizer's by about a token per part.
// Ordinary text never has such pieces, and the gateway settles every request
// to the backend's own usage anyway.
// It runs at about 50 to 120 MB per second of CPU on ordinary prose, code and
// mixed scripts, 10 to 20 times the tokenizer alone (see BenchmarkCount).
//
// # Concurrency
//
// A Counter is safe for concurrent use. Each encoder and each shared table is
// built at most once, under a sync.Once, and is then only read, except for
// the two caches, whose slots are atomic pointers.
package tokens
