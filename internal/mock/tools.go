package mock

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"slices"
	"sort"
	"strings"
)

// toolCall is the function call the mock answers with when a request's tools
// ask for one.
type toolCall struct {
	ID        string
	Name      string
	Arguments string
}

// pickTool decides whether a request with tools and tool_choice gets a
// function call instead of text: when the choice forces one ("required" or a
// named function) or leaves it to the model ("auto", absent) and the dialog
// does not already end with a tool's result. Tools are in either wire shape:
// chat's {"type":"function","function":{"name","parameters"}} or the
// Responses API's {"type":"function","name","parameters"}.
func pickTool(tools, choice json.RawMessage, afterToolResult bool) (*toolCall, bool) {
	var list []struct {
		Type       string          `json:"type"`
		Name       string          `json:"name"`
		Parameters json.RawMessage `json:"parameters"`
		Function   *struct {
			Name       string          `json:"name"`
			Parameters json.RawMessage `json:"parameters"`
		} `json:"function"`
	}
	if json.Unmarshal(tools, &list) != nil || len(list) == 0 {
		return nil, false
	}
	type fn struct {
		name   string
		params json.RawMessage
	}
	var fns []fn
	for _, t := range list {
		switch {
		case t.Function != nil && t.Function.Name != "":
			fns = append(fns, fn{t.Function.Name, t.Function.Parameters})
		case t.Type == "function" && t.Name != "":
			fns = append(fns, fn{t.Name, t.Parameters})
		}
	}
	if len(fns) == 0 {
		return nil, false
	}
	pick := fns[0]
	choice = bytes.TrimSpace(choice)
	var mode string
	var named struct {
		Name     string `json:"name"`
		Function *struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	switch {
	case len(choice) == 0 || bytes.Equal(choice, []byte("null")):
		mode = "auto"
	case json.Unmarshal(choice, &mode) == nil:
	case json.Unmarshal(choice, &named) == nil:
		name := named.Name
		if named.Function != nil {
			name = named.Function.Name
		}
		i := slices.IndexFunc(fns, func(f fn) bool { return f.name == name })
		if i < 0 {
			return nil, false
		}
		pick, mode = fns[i], "required"
	}
	switch mode {
	case "required":
	case "auto":
		if afterToolResult {
			return nil, false
		}
	default:
		return nil, false
	}
	return &toolCall{ID: "call_" + rand.Text()[:24], Name: pick.name, Arguments: string(exampleJSON(pick.params, 0))}, true
}

// exampleJSON returns a value that satisfies a JSON schema's shape: objects
// with every property, strings, numbers, booleans, arrays of one item, the
// first enum value. It follows no $ref; depth bounds hostile nesting.
func exampleJSON(schema json.RawMessage, depth int) []byte {
	var s struct {
		Type       json.RawMessage            `json:"type"`
		Properties map[string]json.RawMessage `json:"properties"`
		Items      json.RawMessage            `json:"items"`
		Enum       []json.RawMessage          `json:"enum"`
	}
	if depth > 8 || json.Unmarshal(schema, &s) != nil {
		return []byte("{}")
	}
	if len(s.Enum) > 0 {
		return s.Enum[0]
	}
	var typ string
	if json.Unmarshal(s.Type, &typ) != nil {
		var types []string
		_ = json.Unmarshal(s.Type, &types)
		for _, t := range types {
			if t != "null" {
				typ = t
				break
			}
		}
	}
	if typ == "" && s.Properties != nil {
		typ = "object"
	}
	switch typ {
	case "string":
		return []byte(`"example"`)
	case "number":
		return []byte("1.5")
	case "integer":
		return []byte("3")
	case "boolean":
		return []byte("true")
	case "null":
		return []byte("null")
	case "array":
		if len(s.Items) == 0 {
			return []byte("[]")
		}
		return append(append([]byte("["), exampleJSON(s.Items, depth+1)...), ']')
	}
	keys := make([]string, 0, len(s.Properties))
	for k := range s.Properties {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(exampleJSON(s.Properties[k], depth+1))
	}
	b.WriteByte('}')
	return b.Bytes()
}

// jsonFormat reads a requested output format — chat's response_format or
// the Responses API's text.format — and returns the JSON the answer must
// be, built around text (the answer the mock would have given), or ok false
// for plain text.
func jsonFormat(format json.RawMessage, text string) (content string, ok bool) {
	var f struct {
		Type       string          `json:"type"`
		Schema     json.RawMessage `json:"schema"` // Responses: text.format.schema
		JSONSchema *struct {
			Schema json.RawMessage `json:"schema"`
		} `json:"json_schema"` // chat: response_format.json_schema.schema
	}
	if json.Unmarshal(format, &f) != nil {
		return "", false
	}
	switch f.Type {
	case "json_object":
		b, _ := json.Marshal(map[string]string{"answer": strings.TrimSpace(text)})
		return string(b), true
	case "json_schema":
		schema := f.Schema
		if f.JSONSchema != nil {
			schema = f.JSONSchema.Schema
		}
		return string(exampleJSON(schema, 0)), true
	}
	return "", false
}
