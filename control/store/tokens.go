package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/berthhq/berth/internal/clip"
)

// tokenPrefix starts every issued token, so that secret scanners and
// people can tell one.
const tokenPrefix = "berth_"

// IssueToken issues a token of role for subject (an agent id or an
// operator name). The secret, "berth_<id>_<43 base64url characters>", is
// returned this once; the store keeps only its SHA-256. The id in it (12
// hex digits) names the token to RevokeToken without the secret.
func (s *Store) IssueToken(ctx context.Context, role Role, subject string, now time.Time) (Token, string, error) {
	if role != RoleAgent && role != RoleOperator {
		return Token{}, "", fmt.Errorf("issue token: role %q: want %s or %s", clip.String(string(role), quoteLen), RoleAgent, RoleOperator)
	}
	if subject == "" || len(subject) > 256 {
		return Token{}, "", fmt.Errorf("issue token: subject %q: want 1 to 256 bytes", clip.String(subject, quoteLen))
	}
	for attempt := 0; attempt < 5; attempt++ {
		var idb [6]byte
		var key [32]byte
		if _, err := rand.Read(idb[:]); err != nil {
			return Token{}, "", fmt.Errorf("issue token: %w", err)
		}
		if _, err := rand.Read(key[:]); err != nil {
			return Token{}, "", fmt.Errorf("issue token: %w", err)
		}
		t := Token{ID: hex.EncodeToString(idb[:]), Role: role, Subject: subject, Created: msTime(now.UnixMilli())}
		secret := tokenPrefix + t.ID + "_" + base64.RawURLEncoding.EncodeToString(key[:])
		res, err := s.w.ExecContext(ctx, `INSERT INTO tokens (id, hash, role, subject, created_ms) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT DO NOTHING`, t.ID, tokenHash(secret), string(role), subject, now.UnixMilli())
		if err != nil {
			return Token{}, "", fmt.Errorf("issue token: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return Token{}, "", fmt.Errorf("issue token: %w", err)
		} else if n == 1 {
			return t, secret, nil
		}
		// The random id was taken (one in 2^48 per token): draw again.
	}
	return Token{}, "", errors.New("issue token: no free token id after 5 draws")
}

func tokenHash(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

const tokenCols = "id, hash, role, subject, created_ms, revoked_ms"

func scanToken(r scanner) (Token, string, error) {
	var t Token
	var hash, role string
	var created, revoked int64
	if err := r.Scan(&t.ID, &hash, &role, &t.Subject, &created, &revoked); err != nil {
		return Token{}, "", err
	}
	t.Role, t.Created = Role(role), msTime(created)
	if revoked != 0 {
		r := msTime(revoked)
		t.Revoked = &r
	}
	return t, hash, nil
}

// LookupToken finds the token whose secret this is: ErrNotFound for a
// secret the store did not issue, ErrRevoked (with the Token) for a revoked
// one.
func (s *Store) LookupToken(ctx context.Context, secret string) (Token, error) {
	rest, ok := strings.CutPrefix(secret, tokenPrefix)
	id, _, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 || len(id) != 12 {
		return Token{}, fmt.Errorf("token: %w", ErrNotFound)
	}
	t, hash, err := s.readToken(ctx, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, fmt.Errorf("token %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("token %s: %w", id, err)
	}
	want := tokenHash(secret)
	if subtle.ConstantTimeCompare([]byte(hash), []byte(want)) != 1 {
		// The id matches but the secret does not: as unknown as any other.
		return Token{}, fmt.Errorf("token %s: %w", id, ErrNotFound)
	}
	if t.Revoked != nil {
		return t, fmt.Errorf("token %s: %w", id, ErrRevoked)
	}
	return t, nil
}

// Tokens lists every issued token, revoked ones too, oldest first.
func (s *Store) Tokens(ctx context.Context) ([]Token, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+tokenCols+" FROM tokens ORDER BY created_ms, id")
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	ts := []Token{}
	for rows.Next() {
		t, _, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		ts = append(ts, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return ts, nil
}

// RevokeToken revokes the token with this id at now: ErrNotFound when there
// is none; revoking a revoked token again keeps its first revocation time.
func (s *Store) RevokeToken(ctx context.Context, id string, now time.Time) error {
	res, err := s.w.ExecContext(ctx, "UPDATE tokens SET revoked_ms = $1 WHERE id = $2 AND revoked_ms = 0", now.UnixMilli(), id)
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", clip.String(id, quoteLen), err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", clip.String(id, quoteLen), err)
	}
	if n == 1 {
		return nil
	}
	var one int64
	err = s.w.QueryRowContext(ctx, "SELECT 1 FROM tokens WHERE id = $1", id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("revoke token %s: %w", clip.String(id, quoteLen), ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", clip.String(id, quoteLen), err)
	}
	return nil
}

// RevokedSince returns the ids of the tokens revoked after sinceMs (unix
// milliseconds, as the revoking process's clock had it), so that a cache
// of tokens can drop them: one indexed query, however many tokens exist.
func (s *Store) RevokedSince(ctx context.Context, sinceMs int64) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT id FROM tokens WHERE revoked_ms <> 0 AND revoked_ms > $1", sinceMs)
	if err != nil {
		return nil, fmt.Errorf("read revoked tokens: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("read revoked tokens: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read revoked tokens: %w", err)
	}
	return ids, nil
}

// Token reads.
//
// A fleet's hosts present their tokens at the fleet's report rate, each
// one for the first time since the server started, or since the token
// cache let it go (see auth.IssuedCacheTTL). On PostgreSQL the lookups
// therefore go through one reader goroutine that takes every lookup
// waiting and reads their tokens in one query (id = ANY($1)): a round trip
// and an index probe each, not a query each. On SQLite, in process, a
// query costs no round trip and each lookup reads its own.

// tokenReq is one lookup waiting for the reader.
type tokenReq struct {
	id  string
	res chan tokenRes
}

type tokenRes struct {
	t    Token
	hash string
	err  error
}

// maxTokenGroup bounds the ids one query reads.
const maxTokenGroup = 512

// readToken reads the token with this id and its hash; sql.ErrNoRows
// when there is none.
func (s *Store) readToken(ctx context.Context, id string) (Token, string, error) {
	if s.d != dialectPostgres {
		return scanToken(s.r.QueryRowContext(ctx, "SELECT "+tokenCols+" FROM tokens WHERE id = $1", id))
	}
	req := tokenReq{id: id, res: make(chan tokenRes, 1)}
	select {
	case s.tokenQ <- req:
	case <-s.quit:
		return Token{}, "", ErrClosed
	case <-ctx.Done():
		return Token{}, "", ctx.Err()
	}
	select {
	case r := <-req.res:
		return r.t, r.hash, r.err
	case <-s.quit:
		return Token{}, "", ErrClosed
	case <-ctx.Done():
		return Token{}, "", ctx.Err()
	}
}

// tokenReader answers the lookups queued on PostgreSQL, all that wait
// in one query; Close stops it.
func (s *Store) tokenReader() {
	defer s.bg.Done()
	for {
		select {
		case r := <-s.tokenQ:
			s.readTokens(drain(s.tokenQ, []tokenReq{r}, maxTokenGroup))
		case <-s.quit:
			return
		}
	}
}

// tokenReadTimeout bounds one query of the reader, so that a database
// that hangs fails the lookups instead of queueing them for ever.
const tokenReadTimeout = 10 * time.Second

// readTokens reads the tokens of group and answers each request.
func (s *Store) readTokens(group []tokenReq) {
	ctx, cancel := context.WithTimeout(s.bgCtx, tokenReadTimeout)
	defer cancel()
	ids := make([]string, len(group))
	for i, r := range group {
		ids[i] = r.id
	}
	found, err := s.tokensByID(ctx, ids)
	for _, r := range group {
		res := tokenRes{err: err}
		if err == nil {
			f, ok := found[r.id]
			res = tokenRes{t: f.t, hash: f.hash}
			if !ok {
				res.err = sql.ErrNoRows
			}
		}
		r.res <- res
	}
}

// tokensByID reads the tokens of ids, by id.
func (s *Store) tokensByID(ctx context.Context, ids []string) (map[string]tokenRes, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+tokenCols+" FROM tokens WHERE id = ANY($1::text[])", ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	found := make(map[string]tokenRes, len(ids))
	for rows.Next() {
		t, hash, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		found[t.ID] = tokenRes{t: t, hash: hash}
	}
	return found, rows.Err()
}
