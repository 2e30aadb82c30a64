// Package repocheck holds tests of the repository itself: every package is
// documented, and the agent binary stays free of what only the control
// endpoint and the operator need.
package repocheck
