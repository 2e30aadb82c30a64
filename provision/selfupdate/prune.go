package selfupdate

import (
	"context"
	"os"
	"path/filepath"
	"slices"
)

// keepStaged is how many staged versions stay on disk beyond the ones in
// use: enough to go back one or two without a download.
const keepStaged = 3

// prune removes the oldest staged versions beyond keepStaged, never the
// fresh, selected, good, on-probation or running one (a running exe cannot even
// be removed on Windows). A folder that cannot be removed now is kept
// recorded and tried again after the next staging.
func (s *Stager) prune(ctx context.Context, fresh string) {
	run, _, _ := LoadRunning(ctx, s.DB)
	var gone []string
	_, err := mutate(ctx, s.DB, func(st *State) error {
		gone = nil
		inUse := map[string]bool{st.Selected: true, st.Good: true, run.Version: true, fresh: true}
		if st.Trial != nil {
			inUse[st.Trial.Version] = true
		}
		var spare []string
		for v := range st.Staged {
			if !inUse[v] {
				spare = append(spare, v)
			}
		}
		slices.SortFunc(spare, func(a, b string) int { return st.Staged[b].At.Compare(st.Staged[a].At) })
		for _, v := range spare[min(len(spare), keepStaged):] {
			dir := filepath.Join(s.StateDir, AgentsDir, v)
			if err := os.RemoveAll(dir); err != nil {
				s.log().Warn("remove an old agent version; tried again later", "dir", dir, "err", err)
				continue
			}
			delete(st.Staged, v)
			gone = append(gone, v)
		}
		return nil
	})
	if err != nil {
		s.log().Warn("prune old agent versions", "err", err)
	} else if len(gone) > 0 {
		s.log().Info("old agent versions removed", "versions", gone, "kept", keepStaged)
	}
}
