package graph

import (
	"slices"
)

// Flat is exact search by scanning every vector: the ground truth for recall,
// and fast enough for small partitions.
type Flat struct {
	pos  map[uint64]int // id → index in ids/vecs
	ids  []uint64
	vecs [][]float32
}

// NewFlat returns an empty exact index.
func NewFlat() *Flat { return &Flat{pos: map[uint64]int{}} }

// Add implements Index.
func (f *Flat) Add(id uint64, vec []float32) {
	v := slices.Clone(vec)
	if i, ok := f.pos[id]; ok {
		f.vecs[i] = v
		return
	}
	f.pos[id] = len(f.ids)
	f.ids = append(f.ids, id)
	f.vecs = append(f.vecs, v)
}

// Delete implements Index.
func (f *Flat) Delete(id uint64) {
	i, ok := f.pos[id]
	if !ok {
		return
	}
	last := len(f.ids) - 1
	f.ids[i], f.vecs[i] = f.ids[last], f.vecs[last]
	f.pos[f.ids[i]] = i
	f.ids, f.vecs = f.ids[:last], f.vecs[:last]
	delete(f.pos, id)
}

// Vector implements Index.
func (f *Flat) Vector(id uint64) ([]float32, bool) {
	i, ok := f.pos[id]
	if !ok {
		return nil, false
	}
	return slices.Clone(f.vecs[i]), true
}

// Search implements Index.
func (f *Flat) Search(q []float32, k int) []Match {
	if k <= 0 || len(f.ids) == 0 {
		return nil
	}
	out := make([]Match, 0, k+1)
	for i, v := range f.vecs {
		d := Distance(q, v)
		if len(out) == k && d >= out[k-1].Distance {
			continue
		}
		at, _ := slices.BinarySearchFunc(out, d, func(m Match, d float32) int {
			switch {
			case m.Distance < d:
				return -1
			case m.Distance > d:
				return 1
			}
			return 0
		})
		out = slices.Insert(out, at, Match{ID: f.ids[i], Distance: d})
		if len(out) > k {
			out = out[:k]
		}
	}
	return out
}

// Len implements Index.
func (f *Flat) Len() int { return len(f.ids) }
