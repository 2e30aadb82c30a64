// Package azurite starts Azurite's blob service (the Azure Storage
// emulator) for one test, on a free loopback port with a fresh data folder.
package azurite

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/berthhq/berth/internal/testenv"
	"github.com/berthhq/berth/internal/testenv/secretlog"
)

// Azurite's well-known development account; every Azurite instance accepts
// it, and it is public, so it is no secret.
const (
	Account = "devstoreaccount1"
	Key     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Server is a running Azurite blob service, private to one test.
type Server struct {
	// Addr is the loopback host:port the blob service listens on.
	Addr string
	// Account and Key are the account's name and shared key.
	Account string
	Key     string
	// Dir is the folder Azurite stores its data in.
	Dir string
}

// Start starts Azurite's blob service on a free loopback port with a
// fresh data folder, waits until it answers, and stops it when the test
// ends. Azurite comes from tools/azurite (scripts/install-azurite.sh); when
// it or Node.js is missing the test is skipped, or failed under CI=true.
// With -short (unit tests only) the test is skipped.
//
// It runs node on azurite's blob entry point (the script behind
// node_modules/.bin/azurite-blob), which works on Windows too.
func Start(t testing.TB) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("Azurite is a real component: skipped with -short")
	}
	node := testenv.NeedBinary(t, "node")
	main := filepath.Join(testenv.RepoRoot(t), "tools", "azurite", "node_modules", "azurite", "dist", "src", "blob", "main.js")
	if _, err := os.Stat(main); err != nil {
		testenv.Need(t, "azurite", fmt.Errorf("%w (run scripts/install-azurite.sh)", err))
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		a, err := start(t, node, main)
		if err == nil {
			return a
		}
		lastErr = err // most likely the free port was taken meanwhile
	}
	t.Fatalf("start azurite: %v", lastErr)
	return nil
}

func start(t testing.TB, node, main string) (*Server, error) {
	addr := testenv.FreePort(t)
	host, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	cmd := exec.Command(node, main,
		"--blobHost", host, "--blobPort", port,
		"--location", dir,
		"--disableTelemetry", "--skipApiVersionCheck", "--silent")
	cmd.Dir = dir
	out := &testenv.Buffer{Max: 64 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", main, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	a := &Server{Addr: addr, Account: Account, Key: Key, Dir: dir}
	// Public, yet a key all the same: the agent must not log it.
	secretlog.For(t).Secret("storage account key", Key)
	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case err := <-exited:
			exited <- err
			return nil, fmt.Errorf("azurite exited early (%v): %s", err, out.String())
		default:
		}
		// Any HTTP answer (403 without credentials) means it serves.
		resp, err := client.Get(a.ServiceURL() + "?comp=list")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("azurite did not answer on %s within 60s: %v: %s", addr, err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(stop)
	return a, nil
}

// ServiceURL returns the account's blob endpoint in the emulator's path
// form, http://127.0.0.1:PORT/devstoreaccount1.
func (a *Server) ServiceURL() string { return "http://" + a.Addr + "/" + a.Account }

// ContainerURL returns the URL of container name (which need not exist yet).
func (a *Server) ContainerURL(name string) string { return a.ServiceURL() + "/" + name }

// KeyFile writes the account key to a file private to the test and returns
// its path, for `auth: shared-key` with keyFile.
func (a *Server) KeyFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "azurite.key")
	if err := os.WriteFile(p, []byte(a.Key+"\n"), 0o600); err != nil {
		t.Fatalf("write azurite key file: %v", err)
	}
	return p
}

// SAS returns a service SAS token (a query string without the leading '?')
// for container, valid for an hour. perms are the container permission
// letters in Azure's order, e.g. "racwdl" (read, add, create, write,
// delete, list) or "rl" for read-only.
func (a *Server) SAS(t testing.TB, container, perms string) string {
	t.Helper()
	cred, err := service.NewSharedKeyCredential(a.Account, a.Key)
	if err != nil {
		t.Fatalf("azurite SAS: %v", err)
	}
	p, err := containerPermissions(perms)
	if err != nil {
		t.Fatalf("azurite SAS: %v", err)
	}
	qp, err := sas.BlobSignatureValues{
		Protocol:      sas.ProtocolHTTPSandHTTP,
		StartTime:     time.Now().Add(-5 * time.Minute).UTC(),
		ExpiryTime:    time.Now().Add(time.Hour).UTC(),
		Permissions:   p.String(),
		ContainerName: container,
	}.SignWithSharedKey(cred)
	if err != nil {
		t.Fatalf("azurite SAS: %v", err)
	}
	secretlog.For(t).Secret("SAS token", qp.Encode())
	secretlog.For(t).Secret("SAS signature", qp.Signature())
	return qp.Encode()
}

// SASFile writes SAS(t, container, perms) to a file private to the test and
// returns its path, for `auth: sas` with sasFile.
func (a *Server) SASFile(t testing.TB, container, perms string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "azurite.sas")
	if err := os.WriteFile(p, []byte(a.SAS(t, container, perms)+"\n"), 0o600); err != nil {
		t.Fatalf("write azurite SAS file: %v", err)
	}
	return p
}

func containerPermissions(s string) (*sas.ContainerPermissions, error) {
	p := &sas.ContainerPermissions{}
	for _, r := range s {
		switch r {
		case 'r':
			p.Read = true
		case 'a':
			p.Add = true
		case 'c':
			p.Create = true
		case 'w':
			p.Write = true
		case 'd':
			p.Delete = true
		case 'l':
			p.List = true
		default:
			return nil, errors.New("unknown container permission " + string(r) + " (want letters of racwdl)")
		}
	}
	return p, nil
}
