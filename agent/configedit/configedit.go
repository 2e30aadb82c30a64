// Package configedit writes the settings an installer passes — the control
// URL, the token audience and the labels — into an existing agent.yaml,
// keeping every other key and the comments, and checks the result with the
// agent's own loader (agent/config) before anyone writes it. `berth-agent
// service configure`, which the MSI runs, is its user.
package configedit

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/berthhq/berth/agent/config"
)

// MaxValue bounds each setting's length: an installer property is a line,
// not a document.
const MaxValue = 4096

// Settings are the values to write; an empty one leaves its key as it is.
type Settings struct {
	ControlURL string // control.url
	Audience   string // control.audience
	Labels     string // agent.labels, written k=v,k=v; replaces the whole map
}

// ParseLabels reads k=v,k=v. Every item needs a '=' and a key; a key given
// twice is refused rather than one value silently winning.
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, item := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		switch {
		case !ok:
			return nil, fmt.Errorf("labels: %q has no '='; write key=value pairs separated by commas, such as ring=canary,pool=build", item)
		case k == "":
			return nil, fmt.Errorf("labels: %q has an empty key", item)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("labels: the key %q is given twice", k)
		}
		out[k] = strings.TrimSpace(v)
	}
	return out, nil
}

// Apply returns the config data with s written in, checked by
// config.Parse (name is used in its messages). Empty data starts a new
// file. On any problem it returns an error and no data; config problems
// are config.Errors (exit code 2).
func Apply(name string, data []byte, s Settings) ([]byte, error) {
	for what, v := range map[string]string{"control URL": s.ControlURL, "audience": s.Audience, "labels": s.Labels} {
		if len(v) > MaxValue {
			return nil, config.Errors{{File: name, Msg: fmt.Sprintf("the %s is %d bytes long; at most %d are allowed", what, len(v), MaxValue)}}
		}
	}
	if _, err := config.Parse(name, data); err != nil {
		return nil, fmt.Errorf("the existing config is not valid; fix it first: %w", err)
	}
	doc, err := document(name, data)
	if err != nil {
		return nil, err
	}
	root := doc.Content[0]
	if s.ControlURL != "" {
		set(root, []string{"control", "url"}, scalar(s.ControlURL))
	}
	if s.Audience != "" {
		set(root, []string{"control", "audience"}, scalar(s.Audience))
	}
	if s.Labels != "" {
		labels, err := ParseLabels(s.Labels)
		if err != nil {
			return nil, config.Errors{{File: name, Key: "agent.labels", Msg: err.Error()}}
		}
		set(root, []string{"agent", "labels"}, labelsNode(labels))
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("write %s: %w", name, err)
	}
	out := b.Bytes()
	if _, err := config.Parse(name, out); err != nil {
		return nil, err
	}
	return out, nil
}

// document parses data into a YAML document whose root is a mapping.
func document(name string, data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map",
			HeadComment: "Berth agent configuration (docs/configuration.md); every key left out has its default."}}}
	}
	if doc.Content[0].Kind != yaml.MappingNode {
		return nil, config.Errors{{File: name, Msg: "the config is not a mapping of keys; configure edits YAML files only"}}
	}
	// An empty file written earlier reads back as a flow "{}"; what is
	// added to it should be block YAML, as people write it.
	doc.Content[0].Style &^= yaml.FlowStyle
	return &doc, nil
}

// set puts v at path under the mapping m, adding mappings on the way and
// replacing a null or a scalar in the way.
func set(m *yaml.Node, path []string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != path[0] {
			continue
		}
		if len(path) == 1 {
			v.HeadComment, v.LineComment = m.Content[i+1].HeadComment, m.Content[i+1].LineComment
			m.Content[i+1] = v
			return
		}
		if m.Content[i+1].Kind != yaml.MappingNode {
			m.Content[i+1] = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		}
		set(m.Content[i+1], path[1:], v)
		return
	}
	child := v
	if len(path) > 1 {
		child = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		set(child, path[1:], v)
	}
	m.Content = append(m.Content, scalar(path[0]), child)
}

func scalar(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func labelsNode(labels map[string]string) *yaml.Node {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, k := range keys {
		n.Content = append(n.Content, scalar(k), scalar(labels[k]))
	}
	return n
}
