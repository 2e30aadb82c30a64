package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// migrations are the schema's versions, applied in order, each once; the
// migrations table records which ran. Never edit one that shipped: append.
//
// The SQL is the subset SQLite and PostgreSQL share. {{C}} marks the text
// columns the store sorts and pages by: on PostgreSQL they get the "C"
// collation, so that ORDER BY and the cursors' comparisons are byte order on
// both, whatever the database's locale. A statement that starts {{PG}} runs
// on PostgreSQL only (a storage setting SQLite has no word for). Times are unix milliseconds and
// booleans 0/1 integers, the same on both.
var migrations = []string{
	// 1: hosts, their records, identities, tokens.
	`CREATE TABLE hosts (
		id TEXT{{C}} PRIMARY KEY,
		state TEXT{{C}} NOT NULL DEFAULT 'Initializing',
		engine_flavor TEXT NOT NULL DEFAULT '',
		engine_version TEXT{{C}} NOT NULL DEFAULT '',
		engine_active INTEGER NOT NULL DEFAULT 0,
		engine_healthy INTEGER NOT NULL DEFAULT 0,
		agent_version TEXT{{C}} NOT NULL DEFAULT '',
		os_build TEXT NOT NULL DEFAULT '',
		labels TEXT NOT NULL DEFAULT '{}',
		checks TEXT NOT NULL DEFAULT '[]',
		cache TEXT NOT NULL DEFAULT '{}',
		dropped_heartbeats BIGINT NOT NULL DEFAULT 0,
		dropped_events BIGINT NOT NULL DEFAULT 0,
		interval_ms BIGINT NOT NULL,
		first_seen_ms BIGINT NOT NULL,
		last_report_ms BIGINT NOT NULL,
		last_heartbeat_ms BIGINT NOT NULL DEFAULT 0,
		last_seq BIGINT NOT NULL DEFAULT 0
	);
	CREATE INDEX hosts_last_report ON hosts (last_report_ms);
	CREATE INDEX hosts_engine_version ON hosts (engine_version);
	CREATE INDEX hosts_agent_version ON hosts (agent_version);
	CREATE TABLE host_labels (
		host_id TEXT NOT NULL,
		key TEXT NOT NULL,
		value TEXT NOT NULL,
		PRIMARY KEY (host_id, key)
	);
	CREATE INDEX host_labels_key_value ON host_labels (key, value);
	CREATE TABLE history (
		host_id TEXT NOT NULL,
		seq BIGINT NOT NULL,
		time_ms BIGINT NOT NULL,
		received_ms BIGINT NOT NULL,
		state TEXT NOT NULL,
		body TEXT NOT NULL,
		PRIMARY KEY (host_id, seq)
	);
	CREATE TABLE events (
		host_id TEXT NOT NULL,
		seq BIGINT NOT NULL,
		time_ms BIGINT NOT NULL,
		received_ms BIGINT NOT NULL,
		kind TEXT NOT NULL,
		message TEXT NOT NULL,
		fields TEXT NOT NULL,
		PRIMARY KEY (host_id, seq)
	);
	CREATE TABLE identities (
		agent TEXT PRIMARY KEY,
		subject TEXT NOT NULL UNIQUE,
		bound_ms BIGINT NOT NULL
	);
	CREATE TABLE tokens (
		id TEXT PRIMARY KEY,
		hash TEXT NOT NULL UNIQUE,
		role TEXT NOT NULL,
		subject TEXT NOT NULL,
		created_ms BIGINT NOT NULL,
		revoked_ms BIGINT NOT NULL DEFAULT 0
	)`,
	// 2: the Entra object id behind a binding to an Azure resource, so
	// that a resource created again with a new identity can be told from
	// an identity writing as a second host.
	`ALTER TABLE identities ADD COLUMN object_id TEXT NOT NULL DEFAULT ''`,
	// 3: the web page's sign-in sessions, by the SHA-256 of their secret.
	`CREATE TABLE sessions (
		hash TEXT PRIMARY KEY,
		subject TEXT NOT NULL,
		token_id TEXT NOT NULL DEFAULT '',
		created_ms BIGINT NOT NULL,
		expires_ms BIGINT NOT NULL,
		revoked_ms BIGINT NOT NULL DEFAULT 0
	);
	CREATE INDEX sessions_expires ON sessions (expires_ms)`,
	// 4: retention. History keeps each heartbeat's state, not the whole
	// heartbeat: nothing read the body, and it was nine tenths of a row
	// (the host's latest heartbeat is whole in hosts). Records are pruned
	// by their time, hence its indexes; hosts count what they stored since
	// their last count (an upper bound of what is kept) and remember the
	// newest record pruned for its count, so that a late retry of one is a
	// duplicate, not a numbering gone back.
	//
	// Every report rewrote its host's row and, since last_report_ms was
	// indexed, added an entry to each of the four indexes of hosts. Without
	// that index, and with room left on each page, PostgreSQL rewrites the
	// row in place (a heap-only update) and touches no index: sorting by
	// last report, which only an operator asks for, scans instead.
	//
	// A label filter lists hosts by id: with the host id last in the label
	// index (in the order hosts sort by), a page is the first entries of
	// one index range, not a sort of every host that has the label.
	`ALTER TABLE history DROP COLUMN body;
	DROP INDEX hosts_last_report;
	{{PG}}ALTER TABLE hosts SET (fillfactor = 70);
	DROP INDEX host_labels_key_value;
	CREATE INDEX host_labels_key_value ON host_labels (key, value, host_id{{C}});
	CREATE INDEX history_time ON history (time_ms);
	CREATE INDEX events_time ON events (time_ms);
	ALTER TABLE hosts ADD COLUMN heartbeats BIGINT NOT NULL DEFAULT 0;
	ALTER TABLE hosts ADD COLUMN events BIGINT NOT NULL DEFAULT 0;
	ALTER TABLE hosts ADD COLUMN pruned_seq BIGINT NOT NULL DEFAULT 0;
	ALTER TABLE hosts ADD COLUMN pruned_time_ms BIGINT NOT NULL DEFAULT 0`,
	// 5: the revocations a serve replica reads every few seconds (see
	// RevokedSince), so that it can trust its cache of issued tokens for
	// longer than a host's report interval. Partial: of a million tokens
	// only the few revoked are in it.
	`CREATE INDEX tokens_revoked ON tokens (revoked_ms) WHERE revoked_ms <> 0`,
	// 6: rollouts and desired state. Hosts keep their platform (a
	// rollout's version must be signed for it) and the versions they
	// rejected, as JSON (a rollout counts a host that rejected its target
	// as failed). A rollout's members are one row each, with the hash that
	// orders them into waves. Every decision is a row numbered per
	// rollout, so that two replicas deciding the same step collide on the
	// key. desired_gen is one row that every transaction changing some
	// host's desired state bumps: its row lock orders those transactions,
	// so desired_changes' generations commit in order and a replica that
	// polls "gen > the last I saw" misses none.
	`ALTER TABLE hosts ADD COLUMN os TEXT NOT NULL DEFAULT '';
	ALTER TABLE hosts ADD COLUMN arch TEXT NOT NULL DEFAULT '';
	ALTER TABLE hosts ADD COLUMN rejected TEXT NOT NULL DEFAULT '[]';
	CREATE TABLE pins (
		host_id TEXT PRIMARY KEY,
		engine TEXT NOT NULL DEFAULT '',
		agent TEXT NOT NULL DEFAULT '',
		who TEXT NOT NULL,
		updated_ms BIGINT NOT NULL
	);
	CREATE TABLE rollouts (
		id TEXT{{C}} PRIMARY KEY,
		kind TEXT NOT NULL,
		flavor TEXT NOT NULL,
		version TEXT NOT NULL,
		spec TEXT NOT NULL,
		state TEXT NOT NULL,
		wave BIGINT NOT NULL,
		waves TEXT NOT NULL,
		created_by TEXT NOT NULL,
		created_ms BIGINT NOT NULL,
		updated_ms BIGINT NOT NULL,
		rev BIGINT NOT NULL
	);
	CREATE INDEX rollouts_state ON rollouts (state);
	CREATE TABLE rollout_hosts (
		rollout_id TEXT NOT NULL,
		host_id TEXT NOT NULL,
		hash TEXT NOT NULL,
		wave BIGINT NOT NULL,
		state TEXT NOT NULL,
		prev_flavor TEXT NOT NULL DEFAULT '',
		prev_version TEXT NOT NULL DEFAULT '',
		told_ms BIGINT NOT NULL DEFAULT 0,
		healthy_ms BIGINT NOT NULL DEFAULT 0,
		PRIMARY KEY (rollout_id, host_id)
	);
	CREATE INDEX rollout_hosts_host ON rollout_hosts (host_id);
	CREATE TABLE rollout_decisions (
		rollout_id TEXT NOT NULL,
		seq BIGINT NOT NULL,
		time_ms BIGINT NOT NULL,
		who TEXT NOT NULL,
		action TEXT NOT NULL,
		wave BIGINT NOT NULL,
		from_state TEXT NOT NULL,
		to_state TEXT NOT NULL,
		reason TEXT NOT NULL,
		PRIMARY KEY (rollout_id, seq)
	);
	CREATE TABLE rollout_samples (
		rollout_id TEXT NOT NULL,
		time_ms BIGINT NOT NULL,
		counts TEXT NOT NULL,
		PRIMARY KEY (rollout_id, time_ms)
	);
	CREATE TABLE desired_gen (
		id BIGINT PRIMARY KEY,
		gen BIGINT NOT NULL
	);
	INSERT INTO desired_gen (id, gen) VALUES (1, 0);
	CREATE TABLE desired_changes (
		gen BIGINT NOT NULL,
		host_id TEXT NOT NULL,
		time_ms BIGINT NOT NULL,
		PRIMARY KEY (gen, host_id)
	);
	CREATE INDEX desired_changes_time ON desired_changes (time_ms)`,
}

// migrateLock is the PostgreSQL advisory lock that keeps several serve
// replicas starting at once from migrating at once ("berth" in ASCII).
const migrateLock = 0x6265727468

// migrate brings the schema to the newest version in one transaction.
func migrate(ctx context.Context, db *sql.DB, d dialect) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if d == dialectPostgres {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrateLock)); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version BIGINT PRIMARY KEY,
		applied_ms BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	var have int64
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&have); err != nil {
		return fmt.Errorf("migrate: read version: %w", err)
	}
	if have > int64(len(migrations)) {
		return fmt.Errorf("migrate: the database's schema is version %d, newer than this berth-control knows (%d): upgrade berth-control", have, len(migrations))
	}
	for v := have + 1; v <= int64(len(migrations)); v++ {
		for _, stmt := range strings.Split(migrations[v-1], ";") {
			stmt = strings.TrimSpace(stmt)
			pgOnly := strings.HasPrefix(stmt, "{{PG}}")
			stmt = strings.TrimPrefix(stmt, "{{PG}}")
			if stmt == "" || (pgOnly && d != dialectPostgres) {
				continue
			}
			if _, err := tx.ExecContext(ctx, dialectSQL(d, stmt)); err != nil {
				return fmt.Errorf("migrate: version %d: %w", v, err)
			}
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)", v, time.Now().UnixMilli()); err != nil {
			return fmt.Errorf("migrate: record version %d: %w", v, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

func dialectSQL(d dialect, stmt string) string {
	c := ""
	if d == dialectPostgres {
		c = ` COLLATE "C"`
	}
	return strings.ReplaceAll(stmt, "{{C}}", c)
}
