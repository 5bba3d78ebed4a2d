package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

const (
	releaseName = "llmgate"
	namespace   = "llmgate"
)

// valueSets are the configurations the chart is rendered with: the defaults
// and one that turns on everything optional.
var valueSets = []struct {
	name string
	vals map[string]any
}{
	{"defaults", nil},
	{"three nodes, ServiceMonitor, existing Secret, no persistence, hard anti-affinity", map[string]any{
		"replicas":        3,
		"serviceMonitor":  map[string]any{"enabled": true},
		"existingSecret":  "llmgate-secrets",
		"persistence":     map[string]any{"enabled": false},
		"podAntiAffinity": "hard",
	}},
	{"TLS from Secrets, admin client certificates, ServiceMonitor over https", map[string]any{
		"tls":            map[string]any{"secretName": "llmgate-tls", "clientCASecretName": "llmgate-client-ca"},
		"serviceMonitor": map[string]any{"enabled": true, "tlsConfig": map[string]any{"insecureSkipVerify": true}},
	}},
}

// chart lints the chart (strict: warnings fail), renders it for each value
// set, decodes every manifest strictly into its Kubernetes API type, checks
// the references between them, and runs config check on the rendered
// configuration with the environment a pod would have.
func (c *checker) chart(ctx context.Context) error {
	dir := filepath.Join(c.root, "deploy/helm/llmgate")
	schema, err := loadAPISchema(ctx)
	if err != nil {
		return fmt.Errorf("the Kubernetes OpenAPI schema: %w", err)
	}
	if err := schema.selfTest(); err != nil {
		return err
	}
	for _, vs := range valueSets {
		lint := action.NewLint()
		lint.Strict = true
		lint.Namespace = namespace
		res := lint.Run([]string{dir}, vs.vals)
		if len(res.Errors) > 0 {
			return fmt.Errorf("helm lint (%s): %w", vs.name, errors.Join(res.Errors...))
		}
		manifest, err := render(ctx, dir, vs.vals)
		if err != nil {
			return fmt.Errorf("helm template (%s): %w", vs.name, err)
		}
		objs, err := decodeStrict(manifest)
		if err != nil {
			return fmt.Errorf("schema (%s): %w", vs.name, err)
		}
		outside, err := schema.validate(manifest)
		if err != nil {
			return fmt.Errorf("OpenAPI schema of %s (%s): %w", kubernetesModule, vs.name, err)
		}
		r, err := crossCheck(objs)
		if err != nil {
			return fmt.Errorf("manifests (%s): %w", vs.name, err)
		}
		if err := c.checkRenderedConfig(ctx, r, vs.vals); err != nil {
			return fmt.Errorf("rendered configuration (%s): %w", vs.name, err)
		}
		fmt.Printf("     %s: %d objects (%d checked against the Kubernetes OpenAPI schema; by API types only: %s)\n",
			vs.name, len(objs), len(objs)-len(outside), strings.Join(outside, ", "))
	}
	return nil
}

// render is `helm template`: a client-only dry-run install.
func render(ctx context.Context, dir string, vals map[string]any) (string, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return "", err
	}
	inst := action.NewInstall(action.NewConfiguration())
	inst.DryRunStrategy = action.DryRunClient
	inst.ReleaseName = releaseName
	inst.Namespace = namespace
	inst.Replace = true
	if vals == nil {
		vals = map[string]any{}
	}
	rel, err := inst.RunWithContext(ctx, ch, vals)
	if err != nil {
		return "", err
	}
	r, ok := rel.(*release.Release)
	if !ok {
		return "", fmt.Errorf("unexpected release type %T", rel)
	}
	return r.Manifest, nil
}

// decodeStrict decodes each YAML document into its registered API type,
// refusing unknown and duplicate fields.
func decodeStrict(manifest string) ([]runtime.Object, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := monitoringv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	dec := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	rd := k8syaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	var objs []runtime.Object
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
		obj, gvk, err := dec.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", firstLine(doc), err)
		}
		if obj.GetObjectKind().GroupVersionKind().Empty() {
			return nil, fmt.Errorf("%s: no apiVersion/kind (%v)", firstLine(doc), gvk)
		}
		objs = append(objs, obj)
	}
	if len(objs) == 0 {
		return nil, errors.New("nothing rendered")
	}
	return objs, nil
}

func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out.Write(l)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

func firstLine(doc []byte) string {
	for _, l := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(l, "# Source:") {
			return strings.TrimPrefix(l, "# ")
		}
	}
	return "document"
}

// rendered is one rendering, by kind.
type rendered struct {
	sts      *appsv1.StatefulSet
	services map[string]*corev1.Service
	configs  map[string]*corev1.ConfigMap
	secrets  map[string]*corev1.Secret
	pdb      *policyv1.PodDisruptionBudget
	monitor  *monitoringv1.ServiceMonitor
}

// tlsOn reports whether the rendered configuration turns TLS on.
func (r *rendered) tlsOn() bool {
	for _, cm := range r.configs {
		if strings.Contains(cm.Data["llmgate.yaml"], "cert_file:") {
			return true
		}
	}
	return false
}

// crossCheck checks what a schema cannot: that the objects refer to each
// other correctly and that the pods are what llmgate needs.
func crossCheck(objs []runtime.Object) (*rendered, error) {
	r := &rendered{services: map[string]*corev1.Service{}, configs: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for _, o := range objs {
		switch v := o.(type) {
		case *appsv1.StatefulSet:
			r.sts = v
		case *corev1.Service:
			r.services[v.Name] = v
		case *corev1.ConfigMap:
			r.configs[v.Name] = v
		case *corev1.Secret:
			r.secrets[v.Name] = v
		case *policyv1.PodDisruptionBudget:
			r.pdb = v
		case *monitoringv1.ServiceMonitor:
			r.monitor = v
		default:
			return nil, fmt.Errorf("unexpected object %T", o)
		}
		if errs := validation.IsDNS1123Subdomain(o.(interface{ GetName() string }).GetName()); len(errs) > 0 {
			return nil, fmt.Errorf("%T name: %s", o, strings.Join(errs, "; "))
		}
	}
	sts := r.sts
	if sts == nil {
		return nil, errors.New("no StatefulSet")
	}
	pod := sts.Spec.Template
	podLabels := labels.Set(pod.Labels)
	sel, err := metaSelector(sts.Spec.Selector.MatchLabels)
	if err != nil || !sel.Matches(podLabels) {
		return nil, fmt.Errorf("StatefulSet selector %v does not match its pod labels %v", sts.Spec.Selector.MatchLabels, pod.Labels)
	}
	gossip := r.services[sts.Spec.ServiceName]
	if gossip == nil || gossip.Spec.ClusterIP != corev1.ClusterIPNone || !gossip.Spec.PublishNotReadyAddresses {
		return nil, fmt.Errorf("StatefulSet serviceName %q must be a rendered headless Service publishing not-ready pods", sts.Spec.ServiceName)
	}
	ports := map[string]bool{}
	var main *corev1.Container
	for i := range pod.Spec.Containers {
		ct := &pod.Spec.Containers[i]
		if ct.Name == "llmgate" {
			main = ct
		}
		for _, p := range ct.Ports {
			ports[p.Name] = true
		}
	}
	if main == nil {
		return nil, errors.New("no container named llmgate")
	}
	if p := main.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
		return nil, errors.New("the liveness probe must GET /healthz")
	}
	if p := main.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
		return nil, errors.New("the readiness probe must GET /readyz")
	}
	for _, ct := range pod.Spec.Containers {
		for _, p := range []*corev1.Probe{ct.StartupProbe, ct.LivenessProbe, ct.ReadinessProbe} {
			if p != nil && p.HTTPGet != nil && (p.HTTPGet.Scheme == corev1.URISchemeHTTPS) != r.tlsOn() {
				return nil, fmt.Errorf("probe of %s uses %s while the config's TLS is %v", p.HTTPGet.Path, p.HTTPGet.Scheme, r.tlsOn())
			}
		}
	}
	sc := pod.Spec.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		return nil, errors.New("pods must run as non-root")
	}
	volumes := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = true
		if v.ConfigMap != nil && r.configs[v.ConfigMap.Name] == nil {
			return nil, fmt.Errorf("volume %s: ConfigMap %q is not rendered", v.Name, v.ConfigMap.Name)
		}
	}
	for _, t := range sts.Spec.VolumeClaimTemplates {
		volumes[t.Name] = true
	}
	for _, ct := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		if ct.Image == "" {
			return nil, fmt.Errorf("container %s has no image", ct.Name)
		}
		for _, m := range ct.VolumeMounts {
			if !volumes[m.Name] {
				return nil, fmt.Errorf("container %s mounts volume %q, which does not exist", ct.Name, m.Name)
			}
		}
	}
	if !volumes["data"] {
		return nil, errors.New("no data volume for /var/lib/llmgate")
	}
	for name, svc := range r.services {
		ssel, _ := metaSelector(svc.Spec.Selector)
		if len(svc.Spec.Selector) == 0 || !ssel.Matches(podLabels) {
			return nil, fmt.Errorf("Service %s does not select the pods", name)
		}
		for _, p := range svc.Spec.Ports {
			if tp := p.TargetPort.StrVal; tp != "" && !ports[tp] {
				return nil, fmt.Errorf("Service %s targets port %q, which no container declares", name, tp)
			}
		}
	}
	if r.pdb == nil {
		return nil, errors.New("no PodDisruptionBudget")
	}
	if psel, _ := metaSelector(r.pdb.Spec.Selector.MatchLabels); !psel.Matches(podLabels) {
		return nil, errors.New("the PodDisruptionBudget does not select the pods")
	}
	if m := r.monitor; m != nil {
		msel, _ := metaSelector(m.Spec.Selector.MatchLabels)
		found := false
		for _, svc := range r.services {
			if msel.Matches(labels.Set(svc.Labels)) {
				for _, p := range svc.Spec.Ports {
					found = found || (len(m.Spec.Endpoints) > 0 && p.Name == m.Spec.Endpoints[0].Port)
				}
			}
		}
		if !found {
			return nil, errors.New("the ServiceMonitor selects no Service with its endpoint's port")
		}
	}
	return r, nil
}

func metaSelector(m map[string]string) (labels.Selector, error) {
	if len(m) == 0 {
		return labels.Nothing(), errors.New("empty selector")
	}
	return labels.SelectorFromSet(m), nil
}

// checkRenderedConfig runs config check on the ConfigMap's llmgate.yaml with
// pod 0's environment: its name and IP from the downward API, the Secret's
// values (or sample ones for an existing Secret the chart does not render).
func (c *checker) checkRenderedConfig(ctx context.Context, r *rendered, vals map[string]any) error {
	cm := r.configs[r.sts.Spec.Template.Spec.Volumes[0].ConfigMap.Name]
	if cm == nil || cm.Data["llmgate.yaml"] == "" {
		return errors.New("the ConfigMap has no llmgate.yaml")
	}
	env := map[string]string{"POD_NAME": r.sts.Name + "-0", "POD_IP": "10.244.0.10"}
	for _, ct := range r.sts.Spec.Template.Spec.Containers {
		for _, ef := range ct.EnvFrom {
			if ef.SecretRef == nil {
				continue
			}
			s := r.secrets[ef.SecretRef.Name]
			if s == nil {
				if vals["existingSecret"] != ef.SecretRef.Name {
					return fmt.Errorf("envFrom names Secret %q, which is neither rendered nor existingSecret", ef.SecretRef.Name)
				}
				continue // sampleEnv stands in for it
			}
			for k, v := range s.Data {
				env[k] = string(v)
			}
			if key, err := base64.StdEncoding.DecodeString(env["LLMGATE_GOSSIP_KEY"]); err != nil || len(key) != 32 {
				return fmt.Errorf("the generated gossip key is not base64 of 32 bytes (%d, %v)", len(key), err)
			}
		}
	}
	dir, err := os.MkdirTemp("", "llmgate-chart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The TLS files the configuration names are where the pod mounts its
	// Secrets; here they are generated in dir, and the paths follow.
	text := cm.Data["llmgate.yaml"]
	if r.tlsOn() {
		mounted := map[string]bool{}
		for _, m := range r.sts.Spec.Template.Spec.Containers[0].VolumeMounts {
			mounted[m.MountPath] = true
		}
		for _, d := range []string{"/etc/llmgate/tls/", "/etc/llmgate/client-ca/"} {
			if strings.Contains(text, d) && !mounted[strings.TrimSuffix(d, "/")] {
				return fmt.Errorf("the configuration names files under %s, which the pod does not mount", d)
			}
		}
		if err := writeTLSFiles(dir); err != nil {
			return err
		}
		text = strings.ReplaceAll(text, "/etc/llmgate/", dir+"/")
	}
	path := filepath.Join(dir, "llmgate.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return err
	}
	out, err := c.configCheck(ctx, path, env)
	if err != nil {
		return err
	}
	if want := "ok (node " + env["POD_NAME"] + ","; !strings.Contains(out, want) {
		return fmt.Errorf("config check did not take the node name from POD_NAME: %s", out)
	}
	return nil
}
