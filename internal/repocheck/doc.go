// Package repocheck holds tests of the repository itself: every package is
// documented; the agent binary stays free of what only the control endpoint
// and the operator need; control/client and control/web link no SQL driver;
// only cmd/agent imports the composition root and only the agent's own
// packages see its whole config schema; nothing in internal/ imports a
// package above it; no code outside engine/ branches on a flavor's
// name; and no function outside tests (and internal/testenv) is over 80
// lines. docs/architecture.md draws the arrows these tests keep.
package repocheck
