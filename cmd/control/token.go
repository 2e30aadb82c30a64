package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/berthhq/berth/control/server"
	"github.com/berthhq/berth/control/store"
	"github.com/berthhq/berth/control/wire"
	"github.com/berthhq/berth/internal/cli"
)

// issuedToken is the JSON form of token issue: the one time the secret is
// shown.
type issuedToken struct {
	store.Token
	Secret string `json:"token"`
}

// tokenCommand is berth-control token issue|list|revoke, run on the
// control host against the store itself. The store must exist: only serve
// creates one, so a mistyped or forgotten --db cannot leave an empty store
// that serve never reads.
func tokenCommand() *cli.Command {
	var db, agent, operator string
	return &cli.Command{
		Name:    "token",
		Summary: "issue, list and revoke the tokens of agents and operators (on the control host)",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&db, "db", server.DefaultConfig().DB, "the store serve created: sqlite://PATH or postgres://USER@HOST/DB")
		},
		Commands: []*cli.Command{
			{Name: "issue", Summary: "issue a token and print it (shown only this once)",
				Flags: func(fs *flag.FlagSet) {
					fs.StringVar(&agent, "agent", "", "issue an agent token that writes the reports of agent `ID`")
					fs.StringVar(&operator, "operator", "", "issue an operator token for `NAME`")
				},
				Run: func(ctx context.Context, in *cli.Invocation) error {
					role, subject, err := tokenSubject(agent, operator)
					if err != nil {
						return cli.Usage(err)
					}
					st, err := openExisting(ctx, db, in)
					if err != nil {
						return err
					}
					defer st.Close()
					tok, secret, err := st.IssueToken(ctx, role, subject, time.Now())
					if err != nil {
						return err
					}
					if in.Output == cli.JSON {
						return in.JSON(issuedToken{Token: tok, Secret: secret})
					}
					fmt.Fprintln(in.Stdout, secret)
					fmt.Fprintf(in.Stderr, "issued %s token %s for %s; it is shown only now: keep it secret (revoke it with: berth-control token revoke %s)\n", tok.Role, tok.ID, tok.Subject, tok.ID)
					return nil
				}},
			{Name: "list", Summary: "list the issued tokens (never their secrets)",
				Run: func(ctx context.Context, in *cli.Invocation) error {
					st, err := openExisting(ctx, db, in)
					if err != nil {
						return err
					}
					defer st.Close()
					ts, err := st.Tokens(ctx)
					if err != nil {
						return err
					}
					return in.Print(ts, func(w io.Writer) error { return writeTokens(w, ts) })
				}},
			{Name: "revoke", Args: "ID", ArgsDoc: "the token ID (see token list)", Summary: "revoke a token",
				Run: func(ctx context.Context, in *cli.Invocation) error {
					st, err := openExisting(ctx, db, in)
					if err != nil {
						return err
					}
					defer st.Close()
					id := in.Args[0]
					if err := st.RevokeToken(ctx, id, time.Now()); err != nil {
						if errors.Is(err, store.ErrNotFound) {
							return fmt.Errorf("no token %q: %w (see berth-control token list)", id, err)
						}
						return err
					}
					return in.Print(map[string]string{"revoked": id}, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "revoked token %s\n", id)
						return err
					})
				}},
		},
	}
}

// tokenSubject is what token issue's flags ask for: an agent token for an
// id a report can carry, or an operator token.
func tokenSubject(agent, operator string) (store.Role, string, error) {
	switch {
	case agent != "" && operator != "":
		return "", "", errors.New("give --agent ID or --operator NAME, not both")
	case agent != "":
		if err := wire.CheckAgentID(agent); err != nil {
			return "", "", fmt.Errorf("--agent: %w: its reports would be refused", err)
		}
		return store.RoleAgent, agent, nil
	case operator != "":
		return store.RoleOperator, operator, nil
	}
	return "", "", errors.New("give --agent ID or --operator NAME")
}

// openExisting opens the store dsn names, which serve must have created.
// A missing store and a bad DSN are usage errors (exit 2): the operator
// fixes them with --db or by starting serve, not by retrying.
func openExisting(ctx context.Context, dsn string, in *cli.Invocation) (*store.Store, error) {
	if dsn == "" {
		return nil, cli.Usagef("--db DSN is required: sqlite://PATH or postgres://USER@HOST/DB")
	}
	st, err := store.Open(ctx, dsn, store.Options{Logger: in.Log, Existing: true})
	switch {
	case errors.Is(err, store.ErrNoStore):
		return nil, cli.Usagef("no store at %s: start berth-control serve with this --db first (it creates the store), or pass the --db it uses", server.RedactDSN(dsn))
	case errors.Is(err, store.ErrBadDSN):
		return nil, cli.Usage(err)
	}
	return st, err
}

// writeTokens writes issued tokens as a table, never their secrets (the
// store does not have them).
func writeTokens(w io.Writer, ts []store.Token) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tSUBJECT\tCREATED\tREVOKED")
	for _, t := range ts {
		revoked := "-"
		if t.Revoked != nil {
			revoked = t.Revoked.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Role, t.Subject, t.Created.UTC().Format(time.RFC3339), revoked)
	}
	return tw.Flush()
}
