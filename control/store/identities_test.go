package store

import (
	"errors"
	"testing"
	"time"
)

func TestDecideBinding(t *testing.T) {
	t0 := time.Date(2026, 3, 4, 5, 0, 0, 0, time.UTC)
	res := Binding{Agent: "vm-1", Subject: "azure:/subscriptions/s/resourcegroups/rg/providers/p/t/vm1", ObjectID: "oid-1", Issued: t0.Add(time.Hour), Formerly: "entra:oid-1"}
	row := func(agent, subject, oid string, bound time.Time) identityRow {
		return identityRow{Agent: agent, Subject: subject, ObjectID: oid, Bound: bound}
	}
	with := func(f func(*Binding)) Binding { b := res; f(&b); return b }
	for _, tt := range []struct {
		name    string
		b       Binding
		rows    []identityRow
		want    bindKind
		wantOld string // agent of the row changed
		wantErr string
	}{
		{"nothing bound", res, nil, bindInsert, "", ""},
		{"bound as asked", res, []identityRow{row("vm-1", res.Subject, "oid-1", t0)}, bindDone, "", ""},
		{"plain subject bound", Binding{Agent: "vm-1", Subject: "entra:x"}, []identityRow{row("vm-1", "entra:x", "", t0)}, bindDone, "", ""},
		{"identity re-enabled on the same VM", with(func(b *Binding) { b.ObjectID = "oid-2" }), []identityRow{row("vm-1", res.Subject, "oid-1", t0)}, bindRecord, "vm-1", ""},
		{"bound by object id before", res, []identityRow{row("vm-1", "entra:oid-1", "", t0)}, bindUpgrade, "vm-1", ""},
		{"agent bound to another resource", res, []identityRow{row("vm-1", "azure:/other", "oid-9", t0)}, 0, "", `agent "vm-1" is bound to another identity (azure:/other)`},
		{"agent bound to another object id", res, []identityRow{row("vm-1", "entra:oid-9", "", t0)}, 0, "", "bound to another identity"},
		{"resource bound to another agent, same identity", res, []identityRow{row("vm-0", res.Subject, "oid-1", t0)}, 0, "", `is bound to agent "vm-0", not "vm-1"`},
		{"resource recreated: new identity, newer token", with(func(b *Binding) { b.ObjectID = "oid-2" }), []identityRow{row("vm-0", res.Subject, "oid-1", t0)}, bindMove, "vm-0", ""},
		{"former identity's old token cannot move it back", with(func(b *Binding) { b.Issued = t0.Add(-time.Minute) }), []identityRow{row("vm-0", res.Subject, "oid-2", t0)}, 0, "", "is bound to agent"},
		{"binding without an object id never moves", with(func(b *Binding) { b.ObjectID = "oid-2" }), []identityRow{row("vm-0", res.Subject, "", t0)}, 0, "", "is bound to agent"},
		{"no object id asks for no move", with(func(b *Binding) { b.ObjectID = "" }), []identityRow{row("vm-0", res.Subject, "oid-1", t0)}, 0, "", "is bound to agent"},
		{"object id binding of another agent", res, []identityRow{row("vm-0", "entra:oid-1", "", t0)}, 0, "", `identity entra:oid-1 is bound to agent "vm-0"`},
		{"agent moves away from a recreated resource's old agent id, which is bound elsewhere", with(func(b *Binding) { b.ObjectID = "oid-2" }),
			[]identityRow{row("vm-1", "azure:/other", "oid-8", t0), row("vm-0", res.Subject, "oid-1", t0)}, 0, "", "is bound to agent"},
		{"upgrade while the resource is bound elsewhere", res, []identityRow{row("vm-1", "entra:oid-1", "", t0), row("vm-0", res.Subject, "oid-1", t0)}, 0, "", `is bound to agent "vm-0"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decideBinding(tt.b, tt.rows)
			switch {
			case tt.wantErr != "":
				if !errors.Is(err, ErrIdentityMismatch) || !contains(err, tt.wantErr) {
					t.Fatalf("decideBinding = %+v, %v; want ErrIdentityMismatch saying %q", got, err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("decideBinding: %v", err)
			case got.kind != tt.want || got.old.Agent != tt.wantOld:
				t.Errorf("decideBinding = %+v, want kind %d on %q", got, tt.want, tt.wantOld)
			}
		})
	}
}
