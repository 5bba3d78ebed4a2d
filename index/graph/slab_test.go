package graph

import "testing"

// TestSlabKeepsRowsAcrossChunks: rows written stay as written while the slab
// grows past several chunks (full chunks never move), and truncating keeps
// the first rows and lets the slab grow again.
func TestSlabKeepsRowsAcrossChunks(t *testing.T) {
	b := slab[int32]{width: 3}
	const n = 3*slabRows + 17
	first := b.add()
	for i := range n {
		if i > 0 {
			b.add()
		}
		row := b.row(uint32(i))
		row[0], row[1], row[2] = int32(i), int32(-i), 7
	}
	check := func(rows int) {
		t.Helper()
		if b.rows != rows {
			t.Fatalf("rows = %d, want %d", b.rows, rows)
		}
		for i := range rows {
			if r := b.row(uint32(i)); r[0] != int32(i) || r[1] != int32(-i) || r[2] != 7 || len(r) != 3 || cap(r) != 3 {
				t.Fatalf("row %d = %v (cap %d)", i, r, cap(r))
			}
		}
	}
	check(n)
	if len(b.chunks) != 4 {
		t.Fatalf("%d rows in %d chunks, want 4", n, len(b.chunks))
	}
	if b.row(slabRows)[0] = 99; b.row(slabRows)[0] != 99 || first[0] != 0 {
		t.Fatal("rows share memory")
	}
	b.row(slabRows)[0] = slabRows
	for _, keep := range []int{2*slabRows + 5, slabRows, 1} {
		b.truncate(keep)
		check(keep)
		if want := (keep + slabRows - 1) / slabRows; len(b.chunks) != want {
			t.Fatalf("after truncate(%d): %d chunks, want %d", keep, len(b.chunks), want)
		}
	}
	for i := 1; i < slabRows+2; i++ {
		if r := b.add(); r[0] != 0 || r[1] != 0 || r[2] != 0 {
			t.Fatalf("added row %d is not zero: %v", i, r)
		}
		b.row(uint32(i))[0], b.row(uint32(i))[1], b.row(uint32(i))[2] = int32(i), int32(-i), 7
	}
	check(slabRows + 2)
}
