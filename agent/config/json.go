package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// parseJSON reads JSON into the node tree the YAML parser would build, with
// lines and columns, so that both forms go through one decoder. The YAML
// parser is not used for JSON because it is not exactly a JSON parser (it
// refuses surrogate-pair escapes, and accepts trailing commas).
func parseJSON(name string, data []byte) (*yaml.Node, Errors) {
	p := &jsonParser{name: name, data: data, line: 1, col: 1}
	p.dec = json.NewDecoder(bytes.NewReader(data))
	p.dec.UseNumber()
	root, err := p.value(0)
	if err == nil {
		at := p.next()
		if _, terr := p.dec.Token(); !errors.Is(terr, io.EOF) {
			err = p.failAt(at, "not valid JSON: more data after the end of the top-level value")
		}
	}
	if err != nil {
		return nil, Errors{*err}
	}
	return root, nil
}

type jsonParser struct {
	name string
	dec  *json.Decoder
	data []byte
	// off is how far line and col have been counted; tokens only move
	// forward, so counting is linear in the size of the file.
	off, line, col int
}

// next returns the position of the next token.
func (p *jsonParser) next() position {
	off := int(p.dec.InputOffset())
	for off < len(p.data) && strings.IndexByte(" \t\r\n,:", p.data[off]) >= 0 {
		off++
	}
	return p.advance(off)
}

func (p *jsonParser) advance(off int) position {
	for p.off < off && p.off < len(p.data) {
		r, size := utf8.DecodeRune(p.data[p.off:])
		if r == '\n' {
			p.line, p.col = p.line+1, 1
		} else {
			p.col++
		}
		p.off += size
	}
	return position{p.line, p.col}
}

func (p *jsonParser) failAt(at position, format string, args ...any) *FieldError {
	return &FieldError{File: p.name, Line: at.line, Column: at.column, Msg: fmt.Sprintf(format, args...)}
}

func (p *jsonParser) syntax(err error) *FieldError {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return p.failAt(p.advance(max(int(se.Offset)-1, 0)), "not valid JSON: %v", err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return p.failAt(p.advance(len(p.data)), "not valid JSON: the file ends inside a value")
	}
	return p.failAt(p.next(), "not valid JSON: %v", err)
}

func (p *jsonParser) value(depth int) (*yaml.Node, *FieldError) {
	at := p.next()
	if depth > maxDepth {
		return nil, p.failAt(at, "values nest deeper than %d levels", maxDepth)
	}
	tok, err := p.dec.Token()
	if err != nil {
		return nil, p.syntax(err)
	}
	n := &yaml.Node{Kind: yaml.ScalarNode, Line: at.line, Column: at.column}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n.Kind, n.Tag = yaml.MappingNode, "!!map"
			for p.dec.More() {
				kat := p.next()
				ktok, err := p.dec.Token()
				if err != nil {
					return nil, p.syntax(err)
				}
				k, _ := ktok.(string) // the decoder only returns strings as keys
				key := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k,
					Style: yaml.DoubleQuotedStyle, Line: kat.line, Column: kat.column}
				v, ferr := p.value(depth + 1)
				if ferr != nil {
					return nil, ferr
				}
				n.Content = append(n.Content, key, v)
			}
		case '[':
			n.Kind, n.Tag = yaml.SequenceNode, "!!seq"
			for p.dec.More() {
				v, ferr := p.value(depth + 1)
				if ferr != nil {
					return nil, ferr
				}
				n.Content = append(n.Content, v)
			}
		default:
			return nil, p.failAt(at, "not valid JSON: unexpected %q", rune(t))
		}
		if _, err := p.dec.Token(); err != nil { // the closing } or ]
			return nil, p.syntax(err)
		}
	case string:
		n.Tag, n.Value, n.Style = "!!str", t, yaml.DoubleQuotedStyle
	case json.Number:
		n.Tag, n.Value = "!!int", t.String()
		if strings.ContainsAny(n.Value, ".eE") {
			n.Tag = "!!float"
		}
	case bool:
		n.Tag, n.Value = "!!bool", strconv.FormatBool(t)
	case nil:
		n.Tag, n.Value = "!!null", "null"
	}
	return n, nil
}
