package status

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestHistoryGood(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "history_good.json"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseHistory(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Jobs) != 2 || h.Jobs[0].State != stateFailed || h.Jobs[1].File != "dQw4w9WgXcQ-best.mp4" {
		t.Errorf("parsed %+v", h)
	}
}

// TestHistoryHostile: each sample is an honest history with one hostile
// change, named by its file.
func TestHistoryHostile(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "hostile", "history", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatal("no samples", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if h, err := parseHistory(data); err == nil {
				t.Errorf("accepted: %+v", h)
			}
		})
	}
}

func FuzzParseHistory(f *testing.F) {
	if data, err := os.ReadFile(filepath.Join("testdata", "history_good.json")); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"v":1,"jobs":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := parseHistory(data)
		if err != nil {
			return
		}
		if len(h.Jobs) > historyLen {
			t.Fatalf("%d jobs", len(h.Jobs))
		}
		for _, e := range h.Jobs {
			if err := e.validate(); err != nil {
				t.Fatalf("accepted an invalid entry: %v", err)
			}
		}
	})
}

// TestHistoryMatchesCourier holds the history format read here to the
// one the courier writes (internal/courier/history.go): the same JSON
// fields of the same types, the same bounds, the same states. When the
// courier's format changes, this fails until this package follows.
func TestHistoryMatchesCourier(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join("..", "courier", "history.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	structs := map[string]string{}   // type name: its fields, as "json-tag type" lines
	consts := map[string]ast.Expr{}  // name: value
	stateConsts := map[string]bool{} // the values of the courier's jobState constants
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok {
			continue
		}
		for _, s := range g.Specs {
			switch s := s.(type) {
			case *ast.TypeSpec:
				if st, ok := s.Type.(*ast.StructType); ok {
					structs[s.Name.Name] = astFields(t, st)
				}
			case *ast.ValueSpec:
				for i, n := range s.Names {
					if i < len(s.Values) {
						consts[n.Name] = s.Values[i]
						if id, ok := s.Type.(*ast.Ident); ok && id.Name == "jobState" {
							if lit, ok := s.Values[i].(*ast.BasicLit); ok {
								v, _ := strconv.Unquote(lit.Value)
								stateConsts[v] = true
							}
						}
					}
				}
			}
		}
	}
	for name, ours := range map[string]reflect.Type{"history": reflect.TypeOf(history{}), "historyEntry": reflect.TypeOf(historyEntry{})} {
		if got, want := reflectFields(ours), structs[name]; got != want {
			t.Errorf("type %s: ours\n%s\nthe courier's\n%s", name, got, want)
		}
	}
	if !reflect.DeepEqual(stateConsts, historyStates) {
		t.Errorf("states: ours %v, the courier's %v", historyStates, stateConsts)
	}
	for name, want := range map[string]string{"historyLen": strconv.Itoa(historyLen), "maxHistorySize": "32 << 10"} {
		e, ok := consts[name]
		if !ok {
			t.Errorf("the courier has no constant %s", name)
			continue
		}
		if got := exprString(e); got != want {
			t.Errorf("%s: the courier's %s, ours %s", name, got, want)
		}
	}
	if maxHistorySize != 32<<10 {
		t.Errorf("maxHistorySize = %d", maxHistorySize)
	}
}

func astFields(t *testing.T, st *ast.StructType) string {
	var b strings.Builder
	for _, f := range st.Fields.List {
		tag := ""
		if f.Tag != nil {
			s, _ := strconv.Unquote(f.Tag.Value)
			tag = reflect.StructTag(s).Get("json")
		}
		typ := exprString(f.Type)
		if typ == "jobState" {
			typ = "string"
		}
		for range f.Names {
			b.WriteString(tag + " " + typ + "\n")
		}
	}
	return b.String()
}

func reflectFields(typ reflect.Type) string {
	var b strings.Builder
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		name := f.Type.String()
		switch name {
		case "status.Format", "job.Format":
			name = "job.Format"
		case "[]status.historyEntry":
			name = "[]historyEntry"
		}
		b.WriteString(f.Tag.Get("json") + " " + name + "\n")
	}
	return b.String()
}

func exprString(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return exprString(e.X) + "." + e.Sel.Name
	case *ast.ArrayType:
		return "[]" + exprString(e.Elt)
	case *ast.BasicLit:
		return e.Value
	case *ast.BinaryExpr:
		return exprString(e.X) + " " + e.Op.String() + " " + exprString(e.Y)
	}
	return "?"
}
