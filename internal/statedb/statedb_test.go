package statedb

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
)

type rec struct {
	N    int
	Name string
}

func TestPutGetDelete(t *testing.T) {
	ctx := context.Background()
	db, err := Open(filepath.Join(t.TempDir(), "sub", "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	var got rec
	if found, err := db.Get(ctx, "b", "k", &got); err != nil || found {
		t.Fatalf("Get on a missing file = %v, %v; want not found", found, err)
	}
	if err := db.Put(ctx, "b", "k", rec{1, "one"}); err != nil {
		t.Fatal(err)
	}
	if found, err := db.Get(ctx, "b", "k", &got); err != nil || !found || got != (rec{1, "one"}) {
		t.Fatalf("Get = %v, %v, %+v", found, err, got)
	}
	if err := db.Delete(ctx, "b", "k"); err != nil {
		t.Fatal(err)
	}
	if found, _ := db.Get(ctx, "b", "k", &got); found {
		t.Fatal("record still there after Delete")
	}
}

// Many writers that each open and close the file must all land: this is how
// the daemon and one-shot commands share agent.db.
func TestConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	db, err := Open(filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := db.Put(ctx, "b", string(rune('a'+i)), rec{N: i}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i := range 20 {
		var got rec
		if found, err := db.Get(ctx, "b", string(rune('a'+i)), &got); err != nil || !found || got.N != i {
			t.Fatalf("record %d: %v %v %+v", i, found, err, got)
		}
	}
}
