package testenv

import (
	"fmt"
	"os"
	"strconv"
	"testing"
)

// SoakEnv names the environment variable that sets how many rounds a
// fault-injection test runs (`make soak` sets it to 200); unset, each test
// runs its own default, sized for CI.
const SoakEnv = "BERTH_SOAK_ROUNDS"

// SoakRounds returns $BERTH_SOAK_ROUNDS, else def. A value that is not a
// positive number fails the test: a soak that silently ran the default
// would report a tally it did not earn.
func SoakRounds(t testing.TB, def int) int {
	t.Helper()
	n, err := soakRounds(os.Getenv(SoakEnv), def)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func soakRounds(v string, def int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive number of rounds", SoakEnv, v)
	}
	return n, nil
}
