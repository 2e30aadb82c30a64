package store

import (
	"context"
	"fmt"

	"github.com/berthhq/berth/internal/clip"

	"github.com/berthhq/berth/control/wire"
)

// Forget resets host id: its row and labels are deleted, so that its next
// records are taken whatever their numbers (an agent whose numbering went
// back, or a host wedged by a stolen token). Its heartbeats and events are
// deleted too when dropHistory, and otherwise kept: listed again under the
// host once it reports, by sequence number, and pruned by age as ever. Its
// tokens and identity binding are untouched. A host with neither a row nor
// (with dropHistory) records is ErrNotFound.
func (s *Store) Forget(ctx context.Context, id string, dropHistory bool) (wire.Forgotten, error) {
	f := wire.Forgotten{ID: id, HistoryDropped: dropHistory}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return f, fmt.Errorf("forget host %q: %w", clip.String(id, quoteLen), err)
	}
	defer tx.Rollback()
	// On PostgreSQL the row lock makes a group commit of another replica
	// that holds the host wait, then find the row gone and start anew.
	lock := "SELECT id FROM hosts WHERE id = $1"
	if s.d == dialectPostgres {
		lock += " FOR UPDATE"
	}
	rows, err := tx.QueryContext(ctx, lock, id)
	if err != nil {
		return f, fmt.Errorf("forget host %q: %w", clip.String(id, quoteLen), err)
	}
	exists := rows.Next()
	if err := rows.Close(); err != nil {
		return f, fmt.Errorf("forget host %q: %w", clip.String(id, quoteLen), err)
	}
	type step struct {
		q string
		n *int64 // the rows it deleted, when counted
	}
	steps := []step{
		{"DELETE FROM host_labels WHERE host_id = $1", nil},
		{"DELETE FROM hosts WHERE id = $1", nil},
	}
	if dropHistory {
		steps = append(steps, step{"DELETE FROM history WHERE host_id = $1", &f.Heartbeats},
			step{"DELETE FROM events WHERE host_id = $1", &f.Events})
	}
	for _, st := range steps {
		res, err := tx.ExecContext(ctx, st.q, id)
		if err != nil {
			return f, fmt.Errorf("forget host %q: %w", clip.String(id, quoteLen), err)
		}
		if st.n != nil {
			if *st.n, err = res.RowsAffected(); err != nil {
				return f, fmt.Errorf("forget host %q: %w", clip.String(id, quoteLen), err)
			}
		}
	}
	if !exists && f.Heartbeats+f.Events == 0 {
		return f, fmt.Errorf("host %q: %w", clip.String(id, quoteLen), ErrNotFound)
	}
	if err := tx.Commit(); err != nil {
		return f, fmt.Errorf("forget host %q: commit: %w", clip.String(id, quoteLen), err)
	}
	return f, nil
}
