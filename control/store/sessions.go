package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/berthhq/berth/internal/clip"
)

// Session is a web page sign-in as stored: never its secret, only the
// secret's SHA-256, so that a copy of the database opens no session.
type Session struct {
	// Subject is who signed in: an issued operator token's subject or an
	// Entra principal's object id.
	Subject string
	// TokenID is the issued token the operator signed in with; revoking
	// it ends the session. "" for an Entra token, whose expiry the
	// session's does not outlive.
	TokenID string
	Created time.Time
	Expires time.Time
}

// sessionPrefix starts every session secret, so that one found in a log
// or a cookie jar says what it is.
const sessionPrefix = "berth_session_"

// maxSessionSecret bounds what LookupSession hashes.
const maxSessionSecret = 128

// CreateSession starts a session for subject (signed in with the issued
// token tokenID, or "") until expires, and returns its secret, the
// cookie's value: "berth_session_" and 43 base64url characters of 256
// random bits. Sessions that ended before now are deleted on the way.
func (s *Store) CreateSession(ctx context.Context, subject, tokenID string, now, expires time.Time) (string, error) {
	if subject == "" || !expires.After(now) {
		return "", fmt.Errorf("create session: subject %q, expiry %s: want a subject and an expiry after now", clip.String(subject, quoteLen), expires.UTC().Format(time.RFC3339))
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return "", fmt.Errorf("create session: %w", err)
	}
	secret := sessionPrefix + base64.RawURLEncoding.EncodeToString(key[:])
	if _, err := s.w.ExecContext(ctx, "DELETE FROM sessions WHERE expires_ms < $1", now.UnixMilli()); err != nil {
		return "", fmt.Errorf("create session: delete ended sessions: %w", err)
	}
	if _, err := s.w.ExecContext(ctx, "INSERT INTO sessions (hash, subject, token_id, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5)",
		tokenHash(secret), subject, tokenID, now.UnixMilli(), expires.UnixMilli()); err != nil {
		return "", fmt.Errorf("create session for %q: %w", clip.String(subject, quoteLen), err)
	}
	return secret, nil
}

// LookupSession finds the session whose secret this is, valid at now:
// ErrNotFound for a secret the store never issued, ErrExpired for one
// whose time is up, ErrRevoked for one that was ended or whose token was
// revoked.
func (s *Store) LookupSession(ctx context.Context, secret string, now time.Time) (Session, error) {
	if !strings.HasPrefix(secret, sessionPrefix) || len(secret) > maxSessionSecret {
		return Session{}, fmt.Errorf("session: %w", ErrNotFound)
	}
	var ses Session
	var created, expires, revoked, tokenRevoked int64
	err := s.r.QueryRowContext(ctx, `SELECT s.subject, s.token_id, s.created_ms, s.expires_ms, s.revoked_ms, COALESCE(t.revoked_ms, -1)
		FROM sessions s LEFT JOIN tokens t ON t.id = s.token_id WHERE s.hash = $1`, tokenHash(secret)).
		Scan(&ses.Subject, &ses.TokenID, &created, &expires, &revoked, &tokenRevoked)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, fmt.Errorf("session: %w", ErrNotFound)
	}
	if err != nil {
		return Session{}, fmt.Errorf("look up session: %w", err)
	}
	ses.Created, ses.Expires = msTime(created), msTime(expires)
	switch {
	case revoked != 0:
		return Session{}, fmt.Errorf("session of %q ended at %s: %w", clip.String(ses.Subject, quoteLen), msTime(revoked).Format(time.RFC3339), ErrRevoked)
	case ses.TokenID != "" && tokenRevoked != 0:
		// -1: the token is gone from the store; 0: it stands.
		return Session{}, fmt.Errorf("session of %q: its token %s was revoked: %w", clip.String(ses.Subject, quoteLen), ses.TokenID, ErrRevoked)
	case !now.Before(ses.Expires):
		return Session{}, fmt.Errorf("session of %q expired at %s: %w", clip.String(ses.Subject, quoteLen), ses.Expires.Format(time.RFC3339), ErrExpired)
	}
	return ses, nil
}

// RevokeSession ends the session whose secret this is, at now. Ending an
// unknown or ended session again is no error: signing out twice is fine.
func (s *Store) RevokeSession(ctx context.Context, secret string, now time.Time) error {
	if _, err := s.w.ExecContext(ctx, "UPDATE sessions SET revoked_ms = $1 WHERE hash = $2 AND revoked_ms = 0", now.UnixMilli(), tokenHash(secret)); err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}
