package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
)

// A database/sql driver over single pgx connections.
//
// pgx's own database/sql adapter (pgx/v5/stdlib) imports pgxpool, whose
// dependency (jackc/puddle) this module does not carry; database/sql pools
// the connections itself, so this small adapter is all the store needs, and
// it lets one SQL code path serve SQLite and PostgreSQL. It handles only
// the value types the store passes and reads (int64, float64, bool, string,
// []byte, time.Time and NULL, and []string and []int64 as arrays).

type pgConnector struct{ cfg *pgx.ConnConfig }

func (c *pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, c.cfg.Copy())
	if err != nil {
		return nil, err
	}
	return &pgConn{c: conn}, nil
}

func (c *pgConnector) Driver() driver.Driver { return pgDriver{} }

type pgDriver struct{}

func (pgDriver) Open(string) (driver.Conn, error) {
	return nil, errors.New("berth store postgres driver: open through the connector")
}

type pgConn struct{ c *pgx.Conn }

var (
	_ driver.Conn               = (*pgConn)(nil)
	_ driver.ConnBeginTx        = (*pgConn)(nil)
	_ driver.ExecerContext      = (*pgConn)(nil)
	_ driver.QueryerContext     = (*pgConn)(nil)
	_ driver.Pinger             = (*pgConn)(nil)
	_ driver.Validator          = (*pgConn)(nil)
	_ driver.SessionResetter    = (*pgConn)(nil)
	_ driver.ConnPrepareContext = (*pgConn)(nil)
	_ driver.NamedValueChecker  = (*pgConn)(nil)
)

// CheckNamedValue lets []string and []int64 through to pgx, which sends
// them as text[] and bigint[] (the group commit's column arrays); every
// other value gets database/sql's own conversion.
func (c *pgConn) CheckNamedValue(nv *driver.NamedValue) error {
	switch nv.Value.(type) {
	case []string, []int64:
		return nil
	}
	return driver.ErrSkip
}

func (c *pgConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

// PrepareContext returns a statement that runs the text each time: pgx
// prepares and caches it on the connection itself (QueryExecModeCacheStatement).
func (c *pgConn) PrepareContext(_ context.Context, query string) (driver.Stmt, error) {
	return &pgStmt{c: c, query: query}, nil
}

func (c *pgConn) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.c.Close(ctx)
}

func (c *pgConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *pgConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	stmt := "BEGIN"
	switch sql.IsolationLevel(opts.Isolation) {
	case sql.LevelDefault:
	case sql.LevelReadCommitted:
		stmt += " ISOLATION LEVEL READ COMMITTED"
	case sql.LevelRepeatableRead:
		stmt += " ISOLATION LEVEL REPEATABLE READ"
	case sql.LevelSerializable:
		stmt += " ISOLATION LEVEL SERIALIZABLE"
	default:
		return nil, fmt.Errorf("isolation level %d not supported", opts.Isolation)
	}
	if opts.ReadOnly {
		stmt += " READ ONLY"
	}
	if _, err := c.c.Exec(ctx, stmt); err != nil {
		return nil, err
	}
	return &pgTx{c: c}, nil
}

func (c *pgConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	tag, err := c.c.Exec(ctx, query, values(args)...)
	if err != nil {
		return nil, err
	}
	return driver.RowsAffected(tag.RowsAffected()), nil
}

func (c *pgConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	rows, err := c.c.Query(ctx, query, values(args)...)
	if err != nil {
		return nil, err
	}
	return &pgRows{r: rows}, nil
}

func (c *pgConn) Ping(ctx context.Context) error {
	if c.c.IsClosed() {
		return driver.ErrBadConn
	}
	return c.c.Ping(ctx)
}

// IsValid and ResetSession drop a connection pgx closed, for example after
// a context was cancelled mid-query.
func (c *pgConn) IsValid() bool { return !c.c.IsClosed() }

func (c *pgConn) ResetSession(context.Context) error {
	if c.c.IsClosed() {
		return driver.ErrBadConn
	}
	return nil
}

func values(args []driver.NamedValue) []any {
	v := make([]any, len(args))
	for i, a := range args {
		v[i] = a.Value
	}
	return v
}

type pgTx struct{ c *pgConn }

func (t *pgTx) Commit() error {
	ctx := context.Background()
	tag, err := t.c.c.Exec(ctx, "COMMIT")
	if err != nil {
		return err
	}
	// PostgreSQL answers COMMIT of a failed transaction with ROLLBACK, not
	// with an error: the caller must still hear that nothing was written.
	if tag.String() == "ROLLBACK" {
		return errors.New("commit: the transaction had failed and was rolled back")
	}
	return nil
}

func (t *pgTx) Rollback() error {
	_, err := t.c.c.Exec(context.Background(), "ROLLBACK")
	return err
}

type pgStmt struct {
	c     *pgConn
	query string
}

func (s *pgStmt) Close() error  { return nil }
func (s *pgStmt) NumInput() int { return -1 }

func (s *pgStmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.c.ExecContext(context.Background(), s.query, named(args))
}

func (s *pgStmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.c.QueryContext(context.Background(), s.query, named(args))
}

func (s *pgStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.c.ExecContext(ctx, s.query, args)
}

func (s *pgStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.c.QueryContext(ctx, s.query, args)
}

func named(args []driver.Value) []driver.NamedValue {
	n := make([]driver.NamedValue, len(args))
	for i, a := range args {
		n[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	return n
}

type pgRows struct {
	r    pgx.Rows
	cols []string
}

func (r *pgRows) Columns() []string {
	if r.cols == nil {
		fds := r.r.FieldDescriptions()
		r.cols = make([]string, len(fds))
		for i, fd := range fds {
			r.cols[i] = fd.Name
		}
	}
	return r.cols
}

func (r *pgRows) Close() error {
	r.r.Close()
	return r.r.Err()
}

func (r *pgRows) Next(dest []driver.Value) error {
	if !r.r.Next() {
		if err := r.r.Err(); err != nil {
			return err
		}
		return io.EOF
	}
	vals, err := r.r.Values()
	if err != nil {
		return err
	}
	for i := range dest {
		if i >= len(vals) {
			break
		}
		switch v := vals[i].(type) {
		case nil, int64, float64, bool, string, []byte, time.Time:
			dest[i] = v
		case int32:
			dest[i] = int64(v)
		case int16:
			dest[i] = int64(v)
		case float32:
			dest[i] = float64(v)
		case driver.Valuer:
			dv, err := v.Value()
			if err != nil {
				return fmt.Errorf("column %d: %w", i, err)
			}
			dest[i] = dv
		default:
			dest[i] = fmt.Sprint(v)
		}
	}
	return nil
}
