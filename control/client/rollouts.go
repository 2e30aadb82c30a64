package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/berthhq/berth/control/wire"
)

// CreateRollout starts a rollout (POST /v1/rollouts). It is sent once,
// never retried.
func (c *Client) CreateRollout(ctx context.Context, spec wire.RolloutSpec) (wire.Rollout, error) {
	var r wire.Rollout
	err := c.send(ctx, request{method: http.MethodPost, path: wire.RolloutsPath, body: spec}, &r)
	return r, err
}

// Rollouts lists the rollouts, newest first.
func (c *Client) Rollouts(ctx context.Context) (wire.RolloutList, error) {
	var l wire.RolloutList
	err := c.get(ctx, wire.RolloutsPath, nil, &l)
	return l, err
}

// Rollout returns one rollout with its waves and history.
func (c *Client) Rollout(ctx context.Context, id string) (wire.Rollout, error) {
	var r wire.Rollout
	if id == "" {
		return r, errors.New("no rollout id given")
	}
	err := c.get(ctx, rolloutPath(id), nil, &r)
	return r, err
}

// PauseRollout, ResumeRollout and AbortRollout change a rollout's state,
// with an optional reason kept in its history. Each is sent once.
func (c *Client) PauseRollout(ctx context.Context, id, reason string) (wire.Rollout, error) {
	return c.rolloutAction(ctx, id, wire.ActionPause, reason)
}

// ResumeRollout: see PauseRollout.
func (c *Client) ResumeRollout(ctx context.Context, id, reason string) (wire.Rollout, error) {
	return c.rolloutAction(ctx, id, wire.ActionResume, reason)
}

// AbortRollout: see PauseRollout.
func (c *Client) AbortRollout(ctx context.Context, id, reason string) (wire.Rollout, error) {
	return c.rolloutAction(ctx, id, wire.ActionAbort, reason)
}

func (c *Client) rolloutAction(ctx context.Context, id, action, reason string) (wire.Rollout, error) {
	var r wire.Rollout
	if id == "" {
		return r, errors.New("no rollout id given")
	}
	err := c.send(ctx, request{method: http.MethodPost, path: rolloutPath(id) + "/" + action, body: wire.RolloutAction{Reason: reason}}, &r)
	return r, err
}

// Pin sets the members of p on host (PUT /v1/hosts/{id}/pin) and returns
// the host's pins after the change.
func (c *Client) Pin(ctx context.Context, host string, p wire.Pin) (wire.Pin, error) {
	var got wire.Pin
	if host == "" {
		return got, errors.New("no host id given")
	}
	err := c.send(ctx, request{method: http.MethodPut, path: pinPath(host), body: p, retry: true}, &got)
	return got, err
}

// Unpin removes host's pin of kind (engine or agent; "" removes both) and
// returns the host's pins after the change.
func (c *Client) Unpin(ctx context.Context, host, kind string) (wire.Pin, error) {
	var got wire.Pin
	if host == "" {
		return got, errors.New("no host id given")
	}
	var q url.Values
	if kind != "" {
		q = url.Values{"kind": {kind}}
	}
	err := c.call(ctx, http.MethodDelete, pinPath(host), q, &got)
	return got, err
}

func rolloutPath(id string) string { return wire.RolloutsPath + "/" + url.PathEscape(id) }

func pinPath(host string) string { return "/v1/hosts/" + url.PathEscape(host) + "/pin" }
