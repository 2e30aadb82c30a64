package cli

import (
	"encoding"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"
)

// PrintJSON writes v as indented JSON, the --output json form of every
// command. Nil slices print as [] and nil maps as {}: a consumer iterating
// over "no hosts" should not have to special-case null.
func PrintJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if v == nil {
		return enc.Encode(nil)
	}
	return enc.Encode(emptyNotNull(reflect.ValueOf(v), 0).Interface())
}

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
)

// maxDepth stops emptyNotNull on self-referencing values, which
// encoding/json then reports.
const maxDepth = 64

// emptyNotNull returns a copy of v with every nil slice and map it reaches
// through exported fields, pointers, interfaces, slices and maps made empty.
// It copies rather than mutates: the caller's value stays as it was. Types
// that marshal themselves and byte slices (JSON strings) are left alone.
func emptyNotNull(v reflect.Value, depth int) reflect.Value {
	if !v.IsValid() || depth > maxDepth {
		return v
	}
	t := v.Type()
	if t.Implements(jsonMarshaler) || t.Implements(textMarshaler) ||
		reflect.PointerTo(t).Implements(jsonMarshaler) || reflect.PointerTo(t).Implements(textMarshaler) {
		return v
	}
	switch t.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		p := reflect.New(t.Elem())
		p.Elem().Set(emptyNotNull(v.Elem(), depth+1))
		return p
	case reflect.Interface:
		if v.IsNil() {
			return v
		}
		out := reflect.New(t).Elem()
		out.Set(emptyNotNull(v.Elem(), depth+1))
		return out
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return v
		}
		out := reflect.MakeSlice(t, v.Len(), v.Len())
		for i := range v.Len() {
			out.Index(i).Set(emptyNotNull(v.Index(i), depth+1))
		}
		return out
	case reflect.Map:
		out := reflect.MakeMapWithSize(t, v.Len())
		for it := v.MapRange(); it.Next(); {
			out.SetMapIndex(it.Key(), emptyNotNull(it.Value(), depth+1))
		}
		return out
	case reflect.Struct:
		out := reflect.New(t).Elem()
		out.Set(v)
		for i := range t.NumField() {
			f := t.Field(i)
			// omitzero drops a nil slice but would print an empty one.
			if !f.IsExported() || strings.Contains(f.Tag.Get("json"), ",omitzero") {
				continue
			}
			out.Field(i).Set(emptyNotNull(v.Field(i), depth+1))
		}
		return out
	}
	return v
}

// Duration is a time.Duration that JSON and text show as "10s", not as
// nanoseconds.
type Duration time.Duration

// String is time.Duration's form.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the duration as "1m30s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, err)
	}
	*d = Duration(v)
	return nil
}
