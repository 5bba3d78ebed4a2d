package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads, expands and decodes the file at path. The caller applies
// command-line overrides, then ApplyDefaults and Validate.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cfg, err := Parse(data, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML text. lookupEnv resolves ${NAME} references; an unset
// name expands to the empty string. Defaults and validation are left to the
// caller, since command-line flags may still override fields.
func Parse(data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	// ${NAME} is not valid YAML inside flow collections ("keys: [${KEY}]"), and
	// a secret pasted into the text could break the syntax. So references become
	// plain-scalar placeholders first and are expanded in the parsed scalars.
	data = envRef.ReplaceAll(data, []byte(envMark+"$1"+envMark))
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file is empty")
		}
		return nil, fmt.Errorf("parsing YAML: %w", err)
	}
	var cfg Config
	if len(root.Content) > 0 {
		if err := checkKeys(root.Content[0], reflect.TypeOf(cfg), ""); err != nil {
			return nil, err
		}
		expandEnv(&root, lookupEnv)
		if err := root.Decode(&cfg); err != nil {
			return nil, fmt.Errorf("decoding: %w", err)
		}
	}
	return &cfg, nil
}

var (
	envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
	// envMark brackets a placeholder; "·" cannot occur in a variable name.
	envMark      = "·llmgate·env·"
	envRefMarked = regexp.MustCompile(envMark + `([A-Za-z_][A-Za-z0-9_]*)` + envMark)
)

// expandEnv replaces ${NAME} in every scalar. A plain (unquoted) scalar is
// re-resolved afterwards so `tpm: ${TPM}` still decodes as a number.
func expandEnv(n *yaml.Node, lookupEnv func(string) (string, bool)) {
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, envMark) {
		n.Value = envRefMarked.ReplaceAllStringFunc(n.Value, func(ref string) string {
			v, _ := lookupEnv(ref[len(envMark) : len(ref)-len(envMark)])
			return v
		})
		if n.Style == 0 {
			n.Tag = ""
		}
	}
	for _, c := range n.Content {
		expandEnv(c, lookupEnv)
	}
}

// checkKeys walks the document against the Go type and rejects any mapping key
// the type does not have, naming the key's path and line.
func checkKeys(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil // type errors are reported by the decoder, with their line
		}
		if t.PkgPath() == "time" {
			return nil
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			fields[name] = f.Type
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				return fmt.Errorf("line %d: unknown key %q%s", k.Line, join(path, k.Value), knownKeys(fields))
			}
			if err := checkKeys(v, ft, join(path, k.Value)); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkKeys(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value)); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return nil
		}
		for i, c := range n.Content {
			if err := checkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func knownKeys(fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	if len(names) == 0 {
		return ""
	}
	slices.Sort(names)
	return " (known keys: " + strings.Join(names, ", ") + ")"
}

// UnsetRefs returns the ${NAME} references in data that lookupEnv cannot
// resolve, sorted and without repeats. They expand to the empty string, which
// is valid for some keys (an unset consumer key is unusable, an empty
// admin_token opens admin to loopback only), so a checker reports them rather
// than failing.
func UnsetRefs(data []byte, lookupEnv func(string) (string, bool)) []string {
	var out []string
	for _, m := range envRef.FindAllSubmatch(data, -1) {
		name := string(m[1])
		if _, ok := lookupEnv(name); !ok && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
