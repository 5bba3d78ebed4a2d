// Package tokens counts tokens the way OpenAI models do, locally and offline,
// with the tiktoken vocabularies of github.com/tiktoken-go/tokenizer.
//
// It owns two things: the codecs (one per encoding, built on first use and
// shared by every caller of a Counter) and the counting rules (which encoding
// a model name uses, and OpenAI's rule for chat messages). It performs no I/O,
// knows nothing of HTTP, and holds no state beyond its codecs: a count depends
// only on the model name and the text.
//
// # Concurrency
//
// A Counter is safe for concurrent use. Each codec is built at most once, under
// a sync.Once; afterwards codecs are only read, and the tokenizer's Count is
// safe to call from many goroutines.
//
// # Cost and accuracy
//
// Counting is linear in the input: about 10 MB/s for prose, and no worse than
// about 3 MB/s for hostile input. The tokenizer alone is quadratic on long
// runs of whitespace that mix line breaks with other spaces (100 KB of
// "\n \n" takes seconds), because each token of such a run ends at a group of
// line breaks and finding it scans to the end of the run. So a Counter never
// hands the tokenizer a long run whole: it cuts runs longer than 64 bytes
// after a group of line breaks, and cuts text longer than 16 KB before a
// space that follows a non-space character or after a line break. No token of
// either encoding spans those cuts, so counts stay exact. Only text with
// neither a space nor a line break in 16 KB (one enormous word, or 16 KB of
// spaces) is cut between two runes, where the count may gain or lose a token
// per cut. The gateway settles every request to the backend's own usage
// anyway.
package tokens
