package graph

// Index is an approximate (or exact) nearest-neighbour index over unit vectors.
// Not safe for concurrent use: the owner serialises calls.
type Index interface {
	// Add inserts vec under id. An id already present (or deleted) is replaced:
	// implementations must tolerate re-adds without corrupting the graph.
	Add(id uint64, vec []float32)
	// Delete removes id; unknown ids are ignored.
	Delete(id uint64)
	// Search returns up to k nearest live entries to q, nearest first.
	Search(q []float32, k int) []Match
	// Len is the number of live entries.
	Len() int
	// Vector returns a copy of id's vector and whether id is live: the cache
	// ships entries to peers from it when it keeps no copy of its own.
	Vector(id uint64) ([]float32, bool)
}

// Match is one search result.
type Match struct {
	ID       uint64
	Distance float32 // cosine distance, 1 - cos(q, v); 0 is identical
}

// Distance is the cosine distance between two unit vectors.
func Distance(a, b []float32) float32 {
	return 1 - Dot(a, b)
}

// Dot is the dot product of two vectors of equal length. Only b[:len(a)] is
// used; that slicing panics if cap(b) < len(a).
//
// It is the graph's inner loop (most of the time of an insert or a search),
// so on amd64 CPUs with AVX2 and FMA it runs an assembly kernel; elsewhere
// dotGeneric. The kernels sum in different orders, so their results may
// differ in the last bits: a graph built on one CPU may differ from one built
// on another, though each build is still deterministic.
func Dot(a, b []float32) float32 {
	b = b[:len(a)]
	if useAVX2FMA {
		return dotAVX2FMA(a, b)
	}
	return dotGeneric(a, b)
}

// dotGeneric is the portable kernel. Four accumulators break the chain of
// dependent additions that a single sum would wait on.
func dotGeneric(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}
