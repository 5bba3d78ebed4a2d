// Package embed owns the built-in `local` embedder of the semantic cache
// (SPEC §6): Go, offline, deterministic, no cgo. One loop has an AVX2
// twin in assembly on amd64 (the word vectors' weighted sum, addVec), held
// to the same bits as the Go loop by TestAddVecKernelIsGeneric.
//
// Local maps a text to a unit vector of Dim (384) float32s in two blocks:
//   - 284 dimensions of signed feature hashing: lower-cased words, word
//     bigrams, runs of symbols and operators ("+", "==", "$", "%"; not
//     sentence punctuation) and the character 3–5-grams of each space-padded word, each
//     distinct word counted with sublinear term frequency (1 + ln tf) and an
//     idf-like weight from its corpus frequency rank (SIF: rank/(rank+100),
//     so "the" weighs 0.01 and rare words 1);
//   - 100 dimensions of the SIF-weighted average of the words' GloVe 6B
//     vectors, from the 40,000 most frequent lower-case words, int8-quantised
//     in wordvec.bin (embedded; built by gen/main.go, licences in NOTICE).
//
// Each block is normalised, then weighted √0.75 : √0.25 (the word-vector
// block gets a quarter of the squared norm), so the dot product is a fixed
// mix of the two cosines. Weights were chosen on the labelled pairs of
// `bench cache` (internal/embed/quality): against the hashed block alone
// (NewHashed) the word vectors triple the paraphrase hit rate at 97 %
// precision. DefaultThreshold is the cosine-distance threshold chosen there
// for Local with the match guard (index/guard) on.
//
// Invariants: Embed is a pure function of its argument (the same vector on
// every platform and run); the vector has Dim entries and unit length, also
// for empty or punctuation-only text (a fixed basis vector); no NaN or Inf.
//
// Concurrency: a Local is immutable after construction and safe for
// concurrent use. Construction is cheap (the table is read in place from the
// embedded bytes), so callers may share one or make one per use. Embed
// allocates only the returned slice for texts of up to ~1 KB / 128 words.
package embed
