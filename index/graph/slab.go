package graph

// slab holds rows of a fixed width (one per slot) in chunks of slabRows
// rows. One slice grown by append would copy everything it holds at every
// step (Go grows large slices by a quarter: each vector copied about four
// times over the graph's life, most of an insert's memory traffic at 100k
// entries) and leave up to a quarter of it unused. A chunk, once full, never
// moves; only the first grows by append, so a small graph stays small.
type slab[T any] struct {
	width  int
	rows   int
	chunks [][]T // every chunk but the last holds slabRows rows
}

const (
	slabShift = 10
	slabRows  = 1 << slabShift
)

// row returns row i, which must be below rows.
func (b *slab[T]) row(i uint32) []T {
	c := b.chunks[i>>slabShift]
	j := int(i&(slabRows-1)) * b.width
	return c[j : j+b.width : j+b.width]
}

// add appends a zeroed row and returns it.
func (b *slab[T]) add() []T {
	if b.rows&(slabRows-1) == 0 && b.rows>>slabShift == len(b.chunks) {
		capacity := b.width // the first chunk grows from one row
		if b.rows > 0 {
			capacity = slabRows * b.width
		}
		b.chunks = append(b.chunks, make([]T, 0, capacity))
	}
	last := len(b.chunks) - 1
	b.chunks[last] = append(b.chunks[last], make([]T, b.width)...)
	b.rows++
	return b.row(uint32(b.rows - 1))
}

// truncate keeps the first n rows (n <= rows), freeing whole chunks past them.
func (b *slab[T]) truncate(n int) {
	keep := (n + slabRows - 1) >> slabShift
	clear(b.chunks[keep:])
	b.chunks = b.chunks[:keep]
	if keep > 0 {
		b.chunks[keep-1] = b.chunks[keep-1][:(n-(keep-1)*slabRows)*b.width]
	}
	b.rows = n
}
