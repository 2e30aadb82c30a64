package statedb

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const ps = 4096

// file builds a bbolt-shaped file of pages pages: two metas (the second
// with txid+1 unless torn), a freelist page, a leaf root.
type file struct {
	pages                       int
	pageSize                    uint32
	root, freelist, hwm         uint64
	flType                      uint16 // the freelist page's flags
	flCount                     uint16
	flBig                       uint64 // the first id when flCount is 0xFFFF
	flOverflow                  uint32
	tornMeta0, tornMeta1, badV1 bool
}

func (f file) bytes() []byte {
	b := make([]byte, f.pages*ps)
	for i, torn := range []bool{f.tornMeta0, f.tornMeta1} {
		p := b[i*ps:]
		le := binary.LittleEndian
		le.PutUint64(p, uint64(i))
		le.PutUint16(p[8:], 0x04) // meta
		m := p[pageHeader:]
		le.PutUint32(m, metaMagic)
		le.PutUint32(m[4:], metaVersion)
		le.PutUint32(m[8:], f.pageSize)
		le.PutUint64(m[metaRoot:], f.root)
		le.PutUint64(m[metaFreelist:], f.freelist)
		le.PutUint64(m[metaHighWater:], f.hwm)
		le.PutUint64(m[metaTxid:], uint64(10+i))
		h := fnv.New64a()
		h.Write(m[:metaSumAt])
		le.PutUint64(m[metaSumAt:], h.Sum64())
		if torn {
			m[3] ^= 0xff
		}
	}
	if fl := int(f.freelist); fl >= 2 && fl < f.pages {
		p := b[fl*ps:]
		le := binary.LittleEndian
		le.PutUint64(p, f.freelist)
		le.PutUint16(p[8:], f.flType)
		le.PutUint16(p[10:], f.flCount)
		le.PutUint32(p[12:], f.flOverflow)
		le.PutUint64(p[16:], f.flBig)
	}
	return b
}

func sound() file {
	return file{pages: 4, pageSize: ps, root: 3, freelist: 2, hwm: 4, flType: freelistFlag, flCount: 3}
}

func TestPreflight(t *testing.T) {
	tests := []struct {
		name string
		f    func(*file)
		cut  int // bytes cut off the end
		want string
	}{
		{name: "sound"},
		{name: "torn first meta", f: func(f *file) { f.tornMeta0 = true }},
		{name: "torn second meta", f: func(f *file) { f.tornMeta1 = true }},
		{name: "both metas torn: left to bbolt", f: func(f *file) { f.tornMeta0, f.tornMeta1 = true, true }},
		{name: "truncated", cut: ps, want: "truncated?"},
		{name: "truncated by a byte", cut: 1, want: "truncated?"},
		{name: "high water mark past the end", f: func(f *file) { f.hwm = 1 << 40 }, want: "truncated?"},
		{name: "page size not a power of two", f: func(f *file) { f.pageSize = 3000 }, want: "page size 3000"},
		{name: "page size tiny", f: func(f *file) { f.pageSize = 512 }, want: "page size 512"},
		{name: "root in a meta page", f: func(f *file) { f.root = 1 }, want: "root page 1"},
		{name: "root past the pages", f: func(f *file) { f.root = 4 }, want: "root page 4"},
		{name: "no freelist", f: func(f *file) { f.freelist = noFreelist }, want: "freelist page"},
		{name: "freelist past the pages", f: func(f *file) { f.freelist = 1 << 50 }, want: "freelist page"},
		{name: "freelist not a freelist", f: func(f *file) { f.flType = 0x02 }, want: "of type 0x2"},
		{name: "freelist overflows", f: func(f *file) { f.flOverflow = 5 }, want: "overflows"},
		{name: "freelist claims too many ids", f: func(f *file) { f.flCount = 600 }, want: "claims 600 ids"},
		{name: "freelist's big count too big", f: func(f *file) { f.flCount, f.flBig = bigFreelist, 1<<60 }, want: "claims"},
		{name: "freelist's big count fits", f: func(f *file) { f.flCount, f.flBig = bigFreelist, 100 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := sound()
			if tc.f != nil {
				tc.f(&f)
			}
			b := f.bytes()
			b = b[:len(b)-tc.cut]
			err := preflight(bytes.NewReader(b), int64(len(b)))
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("preflight = %v; want nil", err)
			case tc.want != "" && (!errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("preflight = %v; want ErrDamaged saying %q", err, tc.want)
			}
		})
	}
	if err := preflight(bytes.NewReader(nil), 0); err != nil {
		t.Errorf("preflight of an empty file = %v", err)
	}
}

func TestParseMetas(t *testing.T) {
	for _, tc := range []struct {
		name     string
		f        func(*file)
		ok0, ok1 bool
	}{
		{"both", nil, true, true},
		{"first torn", func(f *file) { f.tornMeta0 = true }, false, true},
		{"second torn", func(f *file) { f.tornMeta1 = true }, true, false},
		{"both torn", func(f *file) { f.tornMeta0, f.tornMeta1 = true, true }, false, false},
	} {
		f := sound()
		if tc.f != nil {
			tc.f(&f)
		}
		_, m1, ok0, ok1 := parseMetas(f.bytes())
		if ok0 != tc.ok0 || ok1 != tc.ok1 || (ok1 && m1.txid != 11) {
			t.Errorf("%s: parseMetas = %v, %v (%+v); want %v, %v", tc.name, ok0, ok1, m1, tc.ok0, tc.ok1)
		}
	}
}

// FuzzOpen opens whatever bytes as agent.db: the process must survive
// (bbolt's panics and faults recovered), and the database must work after.
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	for _, fl := range []file{sound(), {pages: 4, pageSize: ps, root: 3, freelist: 2, hwm: 4, flType: freelistFlag, flCount: bigFreelist, flBig: 2}} {
		f.Add(fl.bytes())
	}
	good := filepath.Join(dir, "good.db")
	db, err := Open(good)
	if err != nil {
		f.Fatal(err)
	}
	for i := range 50 {
		if err := db.Put(context.Background(), "b", strings.Repeat("k", i+1), strings.Repeat("v", 300)); err != nil {
			f.Fatal(err)
		}
	}
	if b, err := os.ReadFile(good); err == nil {
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte("random bytes"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		path := filepath.Join(t.TempDir(), "agent.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		db, err := OpenWith(ctx, path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Put(ctx, "b", "k", 1); err != nil {
			t.Fatalf("Put after opening fuzzed bytes: %v", err)
		}
		var v int
		if found, err := db.Get(ctx, "b", "k", &v); err != nil || !found || v != 1 {
			t.Fatalf("Get = %v, %v, %d", found, err, v)
		}
	})
}
