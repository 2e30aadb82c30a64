package winhost

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// DISM exit codes Berth tells apart. On Windows an exit code is a DWORD;
// failures are HRESULTs such as 0x800F080C.
const (
	dismOK               = 0
	dismRebootRequired   = 3010 // ERROR_SUCCESS_REBOOT_REQUIRED
	dismRebootInitiated  = 1641 // ERROR_SUCCESS_REBOOT_INITIATED
	dismElevation        = 740  // ERROR_ELEVATION_REQUIRED
	dismUnknownFeature   = 0x800F080C
	dismSourceMissing    = 0x800F081F
	dismFeatureNotActive = 0x800F0922
)

// ErrDISM marks a DISM run that failed.
var ErrDISM = errors.New("dism failed")

// dismRunner runs dism.exe with args and returns its exit code and its
// combined output; err is for a DISM that could not be run at all.
type dismRunner func(ctx context.Context, args ...string) (exitCode uint32, output string, err error)

// featureInfoArgs are the arguments that print a feature's state. /English
// keeps the output parseable whatever the system language.
func featureInfoArgs(name string) []string {
	return []string{"/Online", "/English", "/Get-FeatureInfo", "/FeatureName:" + name}
}

// enableArgs enable features with their parents (/All) and never restart
// on their own (/NoRestart): the reboot is provision's call.
func enableArgs(names []string) []string {
	args := []string{"/Online", "/English", "/Enable-Feature"}
	for _, n := range names {
		args = append(args, "/FeatureName:"+n)
	}
	return append(args, "/All", "/NoRestart")
}

// featureState asks DISM for one feature's state.
func featureState(ctx context.Context, run dismRunner, name string) (FeatureState, error) {
	code, out, err := run(ctx, featureInfoArgs(name)...)
	if err != nil {
		return "", fmt.Errorf("get state of feature %s: %w", name, err)
	}
	if code != dismOK {
		return "", fmt.Errorf("get state of feature %s: %w", name, dismError(code, out))
	}
	st, err := parseFeatureInfo(out)
	if err != nil {
		return "", fmt.Errorf("get state of feature %s: %w", name, err)
	}
	return st, nil
}

// enableFeatures enables the named features that are not enabled yet. It
// reports whether a reboot is needed: one of them waits for a reboot
// already, or DISM says so.
func enableFeatures(ctx context.Context, run dismRunner, names []string) (rebootNeeded bool, err error) {
	var todo []string
	for _, n := range names {
		st, err := featureState(ctx, run, n)
		if err != nil {
			return false, err
		}
		switch st {
		case FeatureEnablePending:
			rebootNeeded = true
		case FeatureDisabled:
			todo = append(todo, n)
		}
	}
	if len(todo) == 0 {
		return rebootNeeded, nil
	}
	code, out, err := run(ctx, enableArgs(todo)...)
	if err != nil {
		return false, fmt.Errorf("enable features %s: %w", strings.Join(todo, ", "), err)
	}
	reboot, err := parseEnableResult(code, out)
	if err != nil {
		return false, fmt.Errorf("enable features %s: %w", strings.Join(todo, ", "), err)
	}
	return rebootNeeded || reboot, nil
}

// parseFeatureInfo reads the "State : …" line of `dism /Get-FeatureInfo`.
func parseFeatureInfo(out string) (FeatureState, error) {
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "State") {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.ToLower(v) {
		case "enabled":
			return FeatureEnabled, nil
		case "enable pending":
			return FeatureEnablePending, nil
		case "disabled", "disable pending", "disabled with payload removed":
			return FeatureDisabled, nil
		}
		return "", fmt.Errorf("%w: unknown feature state %q", ErrDISM, v)
	}
	return "", fmt.Errorf("%w: no feature state in its output: %s", ErrDISM, summarize(out))
}

// parseEnableResult reads the exit code of `dism /Enable-Feature`: 3010
// is success with a reboot to come.
func parseEnableResult(code uint32, out string) (rebootNeeded bool, err error) {
	switch code {
	case dismOK:
		// DISM says 0 when the features were enabled already and
		// sometimes still asks for a restart in its output.
		return strings.Contains(strings.ToLower(out), "restart windows to complete"), nil
	case dismRebootRequired, dismRebootInitiated:
		return true, nil
	}
	return false, dismError(code, out)
}

// dismError explains a failed DISM run from its exit code and output.
func dismError(code uint32, out string) error {
	hint := ""
	switch code {
	case dismElevation:
		hint = "DISM needs administrator rights; "
	case dismUnknownFeature:
		hint = "the feature is unknown on this Windows edition; "
	case dismSourceMissing:
		hint = "the feature's files are not on this host and no source was found; "
	case dismFeatureNotActive:
		hint = "the feature could not be enabled (for Hyper-V: does the VM size allow nested virtualization?); "
	}
	c := fmt.Sprint(code)
	if code > 0xFFFF {
		c = fmt.Sprintf("0x%08X", code) // an HRESULT
	}
	return fmt.Errorf("%w: exit code %s: %s%s", ErrDISM, c, hint, summarize(out))
}

// summarize keeps the lines of DISM's output that say something: the
// "Error:" line and the message that follows it, without the banner, the
// progress bar and the log file line.
func summarize(out string) string {
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "",
			strings.HasPrefix(line, "Deployment Image Servicing"),
			strings.HasPrefix(line, "Version:"),
			strings.HasPrefix(line, "Image Version:"),
			strings.HasPrefix(line, "Enabling feature"),
			strings.HasPrefix(line, "["),
			strings.HasPrefix(line, "The DISM log file"):
			continue
		}
		keep = append(keep, line)
	}
	s := strings.Join(keep, " ")
	if s == "" {
		return "no output"
	}
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return s
}
