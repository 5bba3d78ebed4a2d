package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	openapiv2 "github.com/google/gnostic-models/openapiv2"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/kube-openapi/pkg/util/proto"
	"k8s.io/kube-openapi/pkg/util/proto/validation"
	"sigs.k8s.io/yaml"
)

// kubernetesModule is the Kubernetes release whose published OpenAPI
// document (api/openapi-spec/swagger.json, the one kubectl and kubeconform's
// schemas are made from) the rendered manifests are validated against: the
// release of the k8s.io/api types in go.mod (v0.37.x is Kubernetes 1.37.x).
// It comes through the Go module proxy, like every other dependency; no
// schema is fetched from anywhere else.
const kubernetesModule = "k8s.io/kubernetes@v1.37.2"

// apiSchema is the Kubernetes OpenAPI document, indexed by group, version
// and kind.
type apiSchema struct {
	models proto.Models
	byGVK  map[string]string // "apps/v1, Kind=StatefulSet" -> model name
}

// loadAPISchema downloads (or finds in the module cache) the Kubernetes
// module and parses its OpenAPI document.
func loadAPISchema(ctx context.Context) (*apiSchema, error) {
	tmp, err := os.MkdirTemp("", "deploy-check-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	// Outside any module: download only, nothing is added to a go.mod.
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", kubernetesModule)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GO111MODULE=on")
	out, err := cmd.Output()
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); jerr != nil || mod.Error != "" || err != nil {
		return nil, fmt.Errorf("go mod download %s: %v %s %s", kubernetesModule, err, mod.Error, bytes.TrimSpace(out))
	}
	data, err := os.ReadFile(filepath.Join(mod.Dir, "api", "openapi-spec", "swagger.json"))
	if err != nil {
		return nil, err
	}
	doc, err := openapiv2.ParseDocument(data)
	if err != nil {
		return nil, fmt.Errorf("parsing the Kubernetes OpenAPI document: %w", err)
	}
	models, err := proto.NewOpenAPIData(doc)
	if err != nil {
		return nil, fmt.Errorf("reading the Kubernetes OpenAPI models: %w", err)
	}
	s := &apiSchema{models: models, byGVK: map[string]string{}}
	for _, name := range models.ListModels() {
		list, _ := models.LookupModel(name).GetExtensions()["x-kubernetes-group-version-kind"].([]any)
		for _, item := range list {
			var g, v, k string
			switch m := item.(type) {
			case map[any]any:
				g, v, k = fmt.Sprint(m["group"]), fmt.Sprint(m["version"]), fmt.Sprint(m["kind"])
			case map[string]any:
				g, v, k = fmt.Sprint(m["group"]), fmt.Sprint(m["version"]), fmt.Sprint(m["kind"])
			default:
				continue
			}
			s.byGVK[gvkKey(g, v, k)] = name
		}
	}
	if len(s.byGVK) < 100 {
		return nil, fmt.Errorf("the Kubernetes OpenAPI document names only %d kinds", len(s.byGVK))
	}
	return s, nil
}

func gvkKey(group, version, kind string) string {
	if group == "" {
		return version + ", Kind=" + kind
	}
	return group + "/" + version + ", Kind=" + kind
}

// validate checks every document of manifest against its kind's schema:
// unknown fields, missing required fields and wrong types are errors, as
// kubectl's client-side validation reports them. Kinds the document does
// not define (custom resources such as the ServiceMonitor) are returned:
// they are checked by strict decoding only.
func (s *apiSchema) validate(manifest string) (outside []string, err error) {
	rd := k8syaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	var errs []error
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return nil, fmt.Errorf("%s: %w", firstLine(doc), err)
		}
		apiVersion, _ := obj["apiVersion"].(string)
		kind, _ := obj["kind"].(string)
		key := kind
		if apiVersion != "" {
			key = apiVersion + ", Kind=" + kind
		}
		name, ok := s.byGVK[key]
		if !ok {
			outside = append(outside, key)
			continue
		}
		for _, e := range validation.ValidateModel(obj, s.models.LookupModel(name), kind) {
			errs = append(errs, fmt.Errorf("%s: %w", firstLine(doc), e))
		}
	}
	return outside, errors.Join(errs...)
}

// selfTest makes sure the validator refuses what it must: a StatefulSet
// without its required selector and with a misspelled container field. A
// validator that accepted everything would pass every chart.
func (s *apiSchema) selfTest() error {
	bad := `# Source: self-test
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: x}
spec:
  serviceName: x
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
        - name: c
          image: i
          imagePullPolic: Always
`
	_, err := s.validate(bad)
	if err == nil || !strings.Contains(err.Error(), "selector") || !strings.Contains(err.Error(), "imagePullPolic") {
		return fmt.Errorf("the schema check accepts a StatefulSet without selector and with an unknown container field (got %v)", err)
	}
	return nil
}
