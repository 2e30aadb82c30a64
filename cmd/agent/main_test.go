package main

import (
	"os"
	"testing"

	"github.com/berthhq/berth/internal/testenv"

	"github.com/rogpeppe/go-internal/testscript"
)

// asAgent makes the test binary act as berth-agent, so that end-to-end
// tests run the real command line in a child process they can kill.
const asAgent = "BERTH_TEST_AS_AGENT"

func TestMain(m *testing.M) {
	if os.Getenv(asAgent) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	testscript.Main(m, map[string]func(){
		"berth-agent": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs the CLI contracts in testdata/script.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:       "testdata/script",
		Condition: scriptCondition,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// status N PROGRAM [ARGS…]: exec, wanting exit status N.
			"status": testenv.StatusCmd,
			// expandenv FILE: replace $VARS in FILE with the script's
			// environment, for configs that need absolute paths.
			"expandenv": func(ts *testscript.TestScript, neg bool, args []string) {
				for _, f := range args {
					p := ts.MkAbs(f)
					ts.Check(os.WriteFile(p, []byte(os.Expand(ts.ReadFile(f), ts.Getenv)), 0o644))
				}
			},
		},
	})
}
