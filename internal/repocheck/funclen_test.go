package repocheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// maxFuncLines is the longest a function may be, counted from its func
// keyword to its closing brace. A longer one decides several things at
// once; split it into steps that each decide one and can be tested with
// a table (issue 8, item 8).
const maxFuncLines = 80

// longFuncs returns "file:function:lines" for every function or method
// declared in f (parsed with fset, named file) that spans more than max
// lines. Methods are named Type.Method.
func longFuncs(fset *token.FileSet, file string, f *ast.File, max int) []string {
	var long []string
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			continue
		}
		n := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1
		if n > max {
			long = append(long, fmt.Sprintf("%s:%s:%d", file, funcName(fd), n))
		}
	}
	return long
}

// funcName is fd's name, with its receiver's type for a method.
func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	t := fd.Recv.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	switch x := t.(type) {
	case *ast.IndexExpr: // a generic type: T[K]
		t = x.X
	case *ast.IndexListExpr: // T[K, V]
		t = x.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return id.Name + "." + fd.Name.Name
	}
	return fd.Name.Name
}

// skipDir reports whether the walk of the repository skips the directory
// at path rel (slash-separated, from the root): what the go command
// ignores (testdata, names starting with . or _), installed node modules,
// and internal/testenv, whose harnesses start real components step by
// step and are test code in all but name.
func skipDir(rel string) bool {
	name := rel[strings.LastIndex(rel, "/")+1:]
	return rel != "." && (name == "testdata" || name == "node_modules" ||
		strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") ||
		rel == "internal/testenv")
}

func TestLongFuncs(t *testing.T) {
	body := func(lines int) string { return strings.Repeat("\t_ = 0\n", lines-2) }
	for _, c := range []struct {
		name string
		src  string
		want []string
	}{
		{"short function", "func f() {\n" + body(5) + "}\n", nil},
		{"at the limit", "func f() {\n" + body(10) + "}\n", nil},
		{"over the limit", "func f() {\n" + body(11) + "}\n", []string{"x.go:f:11"}},
		{"method", "type T struct{}\nfunc (t *T) m() {\n" + body(12) + "}\n", []string{"x.go:T.m:12"}},
		{"generic method", "type T[K any] struct{}\nfunc (T[K]) m() {\n" + body(11) + "}\n", []string{"x.go:T.m:11"}},
		{"generic method of two", "type T[K, V any] struct{}\nfunc (t *T[K, V]) m() {\n" + body(11) + "}\n", []string{"x.go:T.m:11"}},
		{"signature lines count", "func f(\n\ta int,\n) {\n" + body(9) + "}\n", []string{"x.go:f:11"}},
		{"each one named", "func f() {\n" + body(11) + "}\nfunc g() {}\nfunc h() {\n" + body(20) + "}\n",
			[]string{"x.go:f:11", "x.go:h:20"}},
		{"declaration without body", "func f()\n", nil},
		{"function literals are their function's", "var f = func() {\n" + body(20) + "}\n", nil},
	} {
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, "x.go", "package p\n"+c.src, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if diff := cmp.Diff(c.want, longFuncs(fset, "x.go", f, 10)); diff != "" {
			t.Errorf("%s: longFuncs (-want +got):\n%s", c.name, diff)
		}
	}
}

func TestSkipDir(t *testing.T) {
	for _, c := range []struct {
		rel  string
		want bool
	}{
		{".", false},
		{"control/store", false},
		{"internal/testenv", true},
		{"internal/testenv/azurite", false}, // not reached: its parent is skipped
		{"internal/testenvx", false},
		{"cmd/control/testdata", true},
		{"tools/azurite/node_modules", true},
		{".git", true},
		{"x/_old", true},
	} {
		if got := skipDir(c.rel); got != c.want {
			t.Errorf("skipDir(%q) = %v, want %v", c.rel, got, c.want)
		}
	}
}

// TestFunctionLength keeps every function outside tests (and
// internal/testenv) at most maxFuncLines long, on every platform.
func TestFunctionLength(t *testing.T) {
	const root = "../.."
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if skipDir(rel) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		for _, l := range longFuncs(fset, rel, f, maxFuncLines) {
			t.Errorf("%s: over %d lines; split it into steps that each decide one thing", l, maxFuncLines)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("read %d Go files: is %s the repository's root?", files, root)
	}
}
