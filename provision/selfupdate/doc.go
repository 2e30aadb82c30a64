// Package selfupdate is the agent updating itself, on WALinuxAgent's
// process model: the service runs the installed binary as a stable
// launcher (Launcher), which starts the selected verified agent version
// kept under <stateDir>/agents/<version>/ as a supervised child, gates a
// new version on its health, blacklists a version that crashes at start,
// crash-loops or never turns healthy, and falls back to the previous good
// one, else to itself. The daemon side (Updater, Stage) downloads a
// version from the signed release metadata, unpacks it beside the others
// and selects it; the launcher notices and switches. No running binary is
// ever replaced, on Windows or Linux.
//
// What the launcher and the agents agree on lives in agent.db (bucket
// "selfupdate"): the selection, the last good version, the staged
// binaries' hashes, the blacklist and what runs now. See
// docs/self-update.md.
package selfupdate
