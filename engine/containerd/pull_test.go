package containerd

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"unicode"
)

func TestRef(t *testing.T) {
	dg := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct{ in, want string }{
		{"busybox", "docker.io/library/busybox:latest"},
		{"busybox:1.36", "docker.io/library/busybox:1.36"},
		{"library/busybox", "docker.io/library/busybox:latest"},
		{"docker.io/busybox", "docker.io/library/busybox:latest"},
		{"index.docker.io/library/busybox:1", "docker.io/library/busybox:1"},
		{"registry-1.docker.io/team/app", "docker.io/team/app:latest"},
		{"team/app:v1", "docker.io/team/app:v1"},
		{"berth.azurecr.io/team/app:v1", "berth.azurecr.io/team/app:v1"},
		{"Registry.Example.COM:5000/a/b", "registry.example.com:5000/a/b:latest"},
		{"localhost/foo", "localhost/foo:latest"},
		{"localhost:5000/foo:bar", "localhost:5000/foo:bar"},
		{"127.0.0.1:5050/team/tools:v1", "127.0.0.1:5050/team/tools:v1"},
		{"busybox@" + dg, "docker.io/library/busybox@" + dg},
		{"busybox:1.36@" + dg, "docker.io/library/busybox:1.36@" + dg},
		{"mcr.microsoft.com/windows/nanoserver:ltsc2022", "mcr.microsoft.com/windows/nanoserver:ltsc2022"},
	} {
		got, err := Ref(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Ref(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	// Hostile or broken references never reach ctr.
	for _, in := range []string{
		"", " ", "-x", "--hosts-dir=/tmp", "--address", "-evil.com/x", "-", "--",
		"Busybox", "busybox:", "busybox:-tag", "busybox:" + strings.Repeat("t", 129),
		"busybox@sha256:short", "busybox@md5:" + strings.Repeat("a", 32),
		"busybox\n", "busy box", " busybox", "busybox\x00", "busybox\t-x",
		"a/../b", "../etc/passwd", "/busybox", "docker.io/", "registry:5000//x",
		"[::1]:5000/x", "busybox;id", "$(id)", "`id`", "busybox|id", "a/b c",
		"registry.io/" + strings.Repeat("a", 600), "x\u2028y", "ｂusybox",
	} {
		if got, err := Ref(in); err == nil {
			t.Errorf("Ref(%q) = %q; want an error", in, got)
		}
	}
}

func FuzzRef(f *testing.F) {
	for _, s := range []string{"busybox", "-x", "localhost:5000/a:b", "a/b@sha256:" + strings.Repeat("0", 64), "REG.io/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := Ref(in)
		if err != nil {
			return
		}
		if strings.HasPrefix(got, "-") || strings.IndexFunc(got, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r > unicode.MaxASCII }) >= 0 {
			t.Fatalf("Ref(%q) = %q: could be read as a flag or split", in, got)
		}
		if again, err := Ref(got); err != nil || again != got {
			t.Fatalf("not idempotent: %q → %q → %q, %v", in, got, again, err)
		}
	})
}

func TestCheckNamespace(t *testing.T) {
	for _, ns := range []string{"k8s.io", "default", "moby", "a_b-c.d", "A1"} {
		if err := CheckNamespace(ns); err != nil {
			t.Errorf("%q: %v", ns, err)
		}
	}
	for _, ns := range []string{"", "-x", "k8s..io", ".a", "a.", "a b", "a/b", "--namespace", strings.Repeat("a", 77)} {
		if CheckNamespace(ns) == nil {
			t.Errorf("%q accepted", ns)
		}
	}
}

func TestCtrPullerArgs(t *testing.T) {
	p := &CtrPuller{Address: "/run/c.sock", Namespace: "k8s.io", HostsDir: "/var/lib/berth/engines/containerd/config/certs.d"}
	got := p.Args("docker.io/library/busybox:latest")
	want := []string{"--address", "/run/c.sock", "--namespace", "k8s.io", "images", "pull", "--hosts-dir", p.HostsDir, "--", "docker.io/library/busybox:latest"}
	if !slices.Equal(got, want) {
		t.Errorf("args %q, want %q", got, want)
	}
	p.HostsDir = ""
	if got := p.Args("x"); slices.Contains(got, "--hosts-dir") {
		t.Errorf("args without a hosts dir: %q", got)
	}
}

// TestCtrOutput feeds ctr's progress table as ctr writes it off a
// terminal: redrawn every 100 ms after escapes that clear the lines.
func TestCtrOutput(t *testing.T) {
	var logs bytes.Buffer
	o := &ctrOutput{log: slog.New(slog.NewTextHandler(&logs, nil))}
	layer := "layer-sha256:" + strings.Repeat("1", 64)
	frames := []string{
		"docker.io/library/busybox:latest:\tresolving\t|--------------------------------------|\t\nelapsed: 0.1 s\ttotal:   0.0 B\t(0.0 B/s)\t\n",
		"\x1b[1A\x1b[2K\r\x1b[1A\x1b[2K\rdocker.io/library/busybox:latest:\tresolved\t|++++++++++++++++++++++++++++++++++++++|\t\n" +
			layer + ":\tdownloading\t|+++++++++-----------------------------|\t 512.0 KiB/2.1 MiB\t\nelapsed: 0.2 s\ttotal: 512.0 K\t(2.5 MiB/s)\t\n",
		"\x1b[1A\x1b[2K\r\x1b[1A\x1b[2K\r\x1b[1A\x1b[2K\rdocker.io/library/busybox:latest:\tresolved\t|++++++++++++++++++++++++++++++++++++++|\t\n" +
			layer + ":\tdownloading\t|+++++++++++++++++++-------------------|\t 1.0 MiB/2.1 MiB\t\nelapsed: 0.3 s\ttotal: 1.0 Mi\t(3.3 MiB/s)\t\n",
		"\x1b[1A\x1b[2K\r\x1b[1A\x1b[2K\r\x1b[1A\x1b[2K\rdocker.io/library/busybox:latest:\tresolved\t|++++++++++++++++++++++++++++++++++++++|\t\n" +
			layer + ":\tdone\t|++++++++++++++++++++++++++++++++++++++|\t\nelapsed: 0.4 s\ttotal: 0.0 B\t(0.0 B/s)\t\n",
		"unpacking linux/amd64 sha256:" + strings.Repeat("2", 64) + "...\ndone: 12.3ms",
	}
	for _, f := range frames {
		// Split the writes mid-line, as pipes do.
		half := len(f) / 2
		o.Write([]byte(f[:half]))
		o.Write([]byte(f[half:]))
	}
	o.flush()
	got := logs.String()
	for _, want := range []string{
		"item=docker.io/library/busybox:latest status=resolving",
		"item=docker.io/library/busybox:latest status=resolved",
		"item=" + layer + " status=downloading size=\"2.1 MiB\"",
		"item=" + layer + " status=done",
	} {
		if strings.Count(got, want) != 1 {
			t.Errorf("want one line with %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "\x1b") {
		t.Errorf("escapes reached the log:\n%s", got)
	}
}

func TestLineTail(t *testing.T) {
	tl := &lineTail{max: 2}
	tl.Write([]byte("one\ntwo\r\n\x1b[2Kctr: failed to resolve reference \"x\": not found\n\n"))
	tl.Write([]byte(strings.Repeat("y", 600)))
	tl.flush()
	got := tl.lines()
	if len(got) != 2 || got[0] != `ctr: failed to resolve reference "x": not found` || len(got[1]) > 510 {
		t.Errorf("tail %q", got)
	}
}
