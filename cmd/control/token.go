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
	"github.com/berthhq/berth/internal/cli"
	"github.com/berthhq/berth/internal/logging"
)

// issuedToken is the JSON form of token issue: the one time the secret is
// shown.
type issuedToken struct {
	store.Token
	Secret string `json:"token"`
}

// cmdToken is berth-control token issue|list|revoke, run on the control
// host against the store itself.
func cmdToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{errors.New("want issue, list or revoke")}
	}
	sub := args[0]
	fs := flag.NewFlagSet("token "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", server.DefaultConfig().DB, "the store: sqlite://PATH or postgres://USER@HOST/DB")
	output := fs.String("output", "text", "text or json")
	var agent, operator string
	switch sub {
	case "issue":
		fs.StringVar(&agent, "agent", "", "issue an agent token that writes the reports of agent `ID`")
		fs.StringVar(&operator, "operator", "", "issue an operator token for `NAME`")
	case "list", "revoke":
	default:
		return usageError{fmt.Errorf("unknown token command %q: want issue, list or revoke", sub)}
	}
	rest, err := cli.ParseInterspersed(fs, args[1:])
	if err != nil {
		return usageError{err}
	}
	if *output != "text" && *output != "json" {
		return usageError{fmt.Errorf("--output %q: want text or json", *output)}
	}
	if *db == "" {
		return usageError{errors.New("--db DSN is required: sqlite://PATH or postgres://USER@HOST/DB")}
	}
	var role store.Role
	var subject string
	switch sub {
	case "issue":
		if len(rest) != 0 {
			return usageError{fmt.Errorf("issue takes no arguments, got %q", rest)}
		}
		switch {
		case agent != "" && operator != "":
			return usageError{errors.New("give --agent ID or --operator NAME, not both")}
		case agent != "":
			role, subject = store.RoleAgent, agent
		case operator != "":
			role, subject = store.RoleOperator, operator
		default:
			return usageError{errors.New("give --agent ID or --operator NAME")}
		}
	case "list":
		if len(rest) != 0 {
			return usageError{fmt.Errorf("list takes no arguments, got %q", rest)}
		}
	case "revoke":
		if len(rest) != 1 {
			return usageError{errors.New("revoke takes the token ID (see token list)")}
		}
	}

	log, _ := logging.New(stderr, "text", logging.LevelFromEnv("warn"))
	st, err := store.Open(ctx, *db, store.Options{Logger: log})
	if err != nil {
		return err
	}
	defer st.Close()
	switch sub {
	case "issue":
		tok, secret, err := st.IssueToken(ctx, role, subject, time.Now())
		if err != nil {
			return err
		}
		if *output == "json" {
			return cli.PrintJSON(stdout, issuedToken{Token: tok, Secret: secret})
		}
		fmt.Fprintln(stdout, secret)
		fmt.Fprintf(stderr, "issued %s token %s for %s; it is shown only now: keep it secret (revoke it with: berth-control token revoke %s)\n", tok.Role, tok.ID, tok.Subject, tok.ID)
		return nil
	case "list":
		ts, err := st.Tokens(ctx)
		if err != nil {
			return err
		}
		if ts == nil {
			ts = []store.Token{}
		}
		if *output == "json" {
			return cli.PrintJSON(stdout, ts)
		}
		return writeTokens(stdout, ts)
	default: // revoke
		if err := st.RevokeToken(ctx, rest[0], time.Now()); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("no token %q: %w (see berth-control token list)", rest[0], err)
			}
			return err
		}
		if *output == "json" {
			return cli.PrintJSON(stdout, map[string]string{"revoked": rest[0]})
		}
		fmt.Fprintf(stdout, "revoked token %s\n", rest[0])
		return nil
	}
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
