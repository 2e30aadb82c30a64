package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/berthhq/berth/internal/clip"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // registers database/sql driver "sqlite"
)

// Errors of Open, checked with errors.Is.
var (
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("store closed")
	// ErrBadDSN: the DSN names no store this package can open (no or an
	// unknown scheme, a bad path or connection string): a usage error, not
	// a failure of the database.
	ErrBadDSN = errors.New("bad store DSN")
	// ErrNoStore: Options.Existing was set and the DSN names no store yet.
	ErrNoStore = errors.New("no store there yet")
)

// Options tune a Store; the zero value is ready to use.
type Options struct {
	// Logger receives the store's warnings (a group commit that had to be
	// retried batch by batch, …); nil discards them.
	Logger *slog.Logger
	// MaxGroup bounds how many Ingest calls one transaction commits;
	// 0 means 256.
	MaxGroup int
	// MaxConns bounds the read connections on SQLite, and all connections
	// on PostgreSQL; 0 means 8.
	MaxConns int
	// BusyTimeout is how long a SQLite write waits for a lock another
	// process holds (berth-control token issue beside a running serve);
	// 0 means 5s.
	BusyTimeout time.Duration
	// Existing opens only a store that exists (a SQLite file, a PostgreSQL
	// database with the store's schema), else fails with ErrNoStore: the
	// token commands must not create an empty store beside the one serve
	// uses. Without it Open creates the store.
	Existing bool
	// Retention bounds the records kept per host; the zero value keeps
	// every record (berth-control serve passes DefaultRetention or
	// --retention).
	Retention Retention
	// PruneEvery is how often the store deletes records older than the
	// retention's ages, in the background; 0 means every minute, below 0
	// never (Prune is then the caller's).
	PruneEvery time.Duration
	// CountsMaxAge lets Counts answer from a copy up to this old, read
	// again in the background once older (see countsCache); 0 reads the
	// database every time.
	CountsMaxAge time.Duration
}

type dialect int

const (
	dialectSQLite dialect = iota
	dialectPostgres
)

// Store is the control endpoint's database. Its methods are safe for
// concurrent use; Ingest calls are committed together by one writer
// goroutine that Close stops.
type Store struct {
	d   dialect
	w   *sql.DB // writes; one connection on SQLite
	r   *sql.DB // reads; the same pool as w on PostgreSQL
	log *slog.Logger

	maxGroup int
	queue    chan *ingestReq
	quit     chan struct{}
	done     chan struct{}
	close    sync.Once

	// stmts are the writer's prepared statements on SQLite, by the head of
	// their insert.
	stmts map[string]*sql.Stmt

	// tokenQ queues token lookups for tokenReader, on PostgreSQL.
	tokenQ chan tokenReq

	// bound caches the bindings Bind read, agent → seenBinding, so that
	// a host's steady stream of reports needs no query.
	bound sync.Map

	// members caches the members of the rollouts this store last read or
	// wrote (see memberCache).
	members memberCache

	retention    Retention
	countsMaxAge time.Duration
	counts       countsCache
	// bg owns the background pruner; bgCtx ends when the store closes.
	bg     sync.WaitGroup
	bgCtx  context.Context
	bgStop context.CancelFunc
}

// Open opens the store that dsn names, creating or migrating its schema:
// "sqlite://PATH" (relative, or absolute as sqlite:///abs/path) or
// "postgres://…" / "postgresql://…" (a pgx connection string).
func Open(ctx context.Context, dsn string, o Options) (*Store, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxGroup <= 0 {
		o.MaxGroup = 256
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 8
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 5 * time.Second
	}
	s := &Store{
		log:          o.Logger.With("component", "store"),
		maxGroup:     o.MaxGroup,
		queue:        make(chan *ingestReq, o.MaxGroup*4),
		quit:         make(chan struct{}),
		done:         make(chan struct{}),
		retention:    o.Retention,
		countsMaxAge: o.CountsMaxAge,
	}
	scheme, rest, ok := strings.Cut(dsn, "://")
	if !ok {
		return nil, fmt.Errorf("open store: %w: database %q has no scheme: want sqlite://PATH or postgres://USER@HOST/DB", ErrBadDSN, clip.String(dsn, quoteLen))
	}
	var err error
	switch strings.ToLower(scheme) {
	case "sqlite":
		err = s.openSQLite(ctx, rest, o)
	case "postgres", "postgresql":
		err = s.openPostgres(ctx, dsn, o)
	default:
		// Only the scheme goes into the message: the rest may hold a password.
		return nil, fmt.Errorf("open store: %w: unsupported database scheme %q: want sqlite://PATH or postgres://USER@HOST/DB", ErrBadDSN, clip.String(scheme, quoteLen))
	}
	if err != nil {
		return nil, err
	}
	s.bgCtx, s.bgStop = context.WithCancel(context.Background())
	go s.writer()
	if s.d == dialectPostgres {
		s.tokenQ = make(chan tokenReq, maxTokenGroup)
		s.bg.Add(1)
		go s.tokenReader()
	}
	if every := o.PruneEvery; every >= 0 && (o.Retention.Heartbeats > 0 || o.Retention.Events > 0) {
		if every == 0 {
			every = time.Minute
		}
		s.bg.Add(1)
		go s.pruner(every)
	}
	return s, nil
}

func (s *Store) openSQLite(ctx context.Context, path string, o Options) error {
	s.d = dialectSQLite
	switch {
	case path == "":
		return fmt.Errorf("open store: %w: sqlite:// needs a file path, as in sqlite://berth.db or sqlite:///var/lib/berth/control.db", ErrBadDSN)
	case strings.ContainsAny(path, "?#"):
		return fmt.Errorf("open store: %w: sqlite path %q: options after ? are not supported; the store sets its own", ErrBadDSN, clip.String(path, quoteLen))
	case path == ":memory:" || strings.HasPrefix(path, "file:"):
		return fmt.Errorf("open store: %w: sqlite path %q: want a file path (the store opens several connections, which an in-memory database cannot share)", ErrBadDSN, clip.String(path, quoteLen))
	}
	if o.Existing {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("open store: sqlite %s: %w", path, ErrNoStore)
		}
	}
	// The default database (and a new deployment's) sits in a folder that
	// may not exist yet.
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("open store: create the folder of %s: %w", path, err)
	}
	if err := s.ownerOnly(path); err != nil {
		return err
	}
	busy := o.BusyTimeout.Milliseconds()
	// One writer connection: SQLite has one writer at a time anyway, and
	// group commit makes that writer's transactions large. BEGIN IMMEDIATE
	// takes the write lock up front, so a transaction never fails half way
	// trying to upgrade a read lock. WAL lets readers run beside it;
	// synchronous=NORMAL in WAL mode loses no committed data on a process
	// crash, only possibly the last transactions on power loss.
	w, err := sql.Open("sqlite", fmt.Sprintf("%s?_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_txlock=immediate", path, busy))
	if err != nil {
		return fmt.Errorf("open store: sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := migrate(ctx, w, dialectSQLite); err != nil {
		w.Close()
		return fmt.Errorf("open store: sqlite %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", fmt.Sprintf("%s?_pragma=busy_timeout(%d)&_pragma=query_only(1)", path, busy))
	if err != nil {
		w.Close()
		return fmt.Errorf("open store: sqlite %s: %w", path, err)
	}
	r.SetMaxOpenConns(o.MaxConns)
	r.SetMaxIdleConns(o.MaxConns)
	if err := r.PingContext(ctx); err != nil {
		w.Close()
		r.Close()
		return fmt.Errorf("open store: sqlite %s: %w", path, err)
	}
	s.w, s.r = w, r
	if err := s.prepareInserts(ctx); err != nil {
		w.Close()
		r.Close()
		return fmt.Errorf("open store: sqlite %s: %w", path, err)
	}
	return nil
}

// sqliteFileMode is the mode of the store's files: they hold every host's
// reports and the hashes of tokens and sessions, for the server's user
// alone.
const sqliteFileMode = 0o600

// ownerOnly creates the database file with sqliteFileMode before SQLite
// opens it, and narrows an existing one and its -wal and -shm files
// (from a version that let the umask decide). SQLite gives the -wal and
// -shm files it creates the database file's mode, so they follow.
func (s *Store) ownerOnly(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, sqliteFileMode)
	switch {
	case err == nil:
		if err := f.Close(); err != nil {
			return fmt.Errorf("open store: create %s: %w", path, err)
		}
		return nil
	case !errors.Is(err, fs.ErrExist):
		return fmt.Errorf("open store: create %s: %w", path, err)
	case runtime.GOOS == "windows":
		// Mode bits are only the read-only flag there; the folder's ACL
		// decides who reads the files.
		return nil
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) && p != path {
			continue
		}
		if err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&^sqliteFileMode == 0 {
			continue
		}
		if err := os.Chmod(p, sqliteFileMode); err != nil {
			return fmt.Errorf("open store: %s is readable by others (mode %v) and cannot be narrowed to %v: %w", p, fi.Mode().Perm(), fs.FileMode(sqliteFileMode), err)
		}
		s.log.Warn("narrowed the store's file to its owner", "file", p, "was", fi.Mode().Perm().String(), "now", fs.FileMode(sqliteFileMode).String())
	}
	return nil
}

func (s *Store) openPostgres(ctx context.Context, dsn string, o Options) error {
	s.d = dialectPostgres
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors redact the password.
		return fmt.Errorf("open store: postgres: %w: %w", ErrBadDSN, err)
	}
	// Every statement is prepared once per connection and run from then on
	// in one round trip with binary parameters: the store's statements are
	// fixed text (a group commit sends its rows as one array per column), so
	// PostgreSQL no longer parses and plans each one, nor parses the
	// arrays' text, which cost it more than the writing at a fleet's rate.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeCacheStatement
	db := sql.OpenDB(&pgConnector{cfg: cfg})
	db.SetMaxOpenConns(o.MaxConns)
	db.SetMaxIdleConns(o.MaxConns)
	db.SetConnMaxLifetime(30 * time.Minute)
	where := fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
	if o.Existing {
		var table sql.NullString
		if err := db.QueryRowContext(ctx, "SELECT to_regclass('schema_migrations')::text").Scan(&table); err != nil {
			db.Close()
			return fmt.Errorf("open store: postgres %s: %w", where, err)
		}
		if !table.Valid {
			db.Close()
			return fmt.Errorf("open store: postgres %s: %w (the database has no store schema)", where, ErrNoStore)
		}
	}
	if err := migrate(ctx, db, dialectPostgres); err != nil {
		db.Close()
		return fmt.Errorf("open store: postgres %s: %w", where, err)
	}
	s.w, s.r = db, db
	return nil
}

// Close stops the writer, answering queued Ingest calls with ErrClosed, and
// closes the database.
func (s *Store) Close() error {
	var err error
	s.close.Do(func() {
		close(s.quit)
		s.counts.close()
		s.bgStop()
		s.bg.Wait()
		<-s.done
		err = s.w.Close()
		if s.r != s.w {
			err = errors.Join(err, s.r.Close())
		}
	})
	return err
}

// Ping checks that the database answers, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	select {
	case <-s.quit:
		return ErrClosed
	default:
	}
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	var one int64
	if err := s.r.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	return nil
}

// quoteLen is how much of a value an error message quotes.
const quoteLen = 80
