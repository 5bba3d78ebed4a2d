{{/* Names and labels. */}}
{{- define "llmgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "llmgate.gossipService" -}}
{{- printf "%s-gossip" (include "llmgate.fullname" .) -}}
{{- end -}}

{{- define "llmgate.secretName" -}}
{{- default (include "llmgate.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{- define "llmgate.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "llmgate.labels" -}}
{{ include "llmgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/*
The seeds: every pod's stable DNS name under the headless gossip Service.
A pod skips itself; any one that answers is enough to join.
*/}}
{{- define "llmgate.seeds" -}}
{{- $svc := include "llmgate.gossipService" . -}}
{{- $name := include "llmgate.fullname" . -}}
{{- $seeds := list -}}
{{- range $i := until (int .Values.replicas) -}}
{{- $seeds = append $seeds (printf "%s-%d.%s.%s.svc.cluster.local:%d" $name $i $svc $.Release.Namespace (int $.Values.gossipPort)) -}}
{{- end -}}
{{- toJson $seeds -}}
{{- end -}}

{{/* The pod's identity, for the ${POD_NAME} and ${POD_IP} of the config. */}}
{{- define "llmgate.env" -}}
- name: POD_NAME
  valueFrom:
    fieldRef: {fieldPath: metadata.name}
- name: POD_IP
  valueFrom:
    fieldRef: {fieldPath: status.podIP}
{{- end -}}

{{- define "llmgate.envFrom" -}}
- secretRef:
    name: {{ include "llmgate.secretName" . }}
{{- end -}}

{{- define "llmgate.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{- define "llmgate.mounts" -}}
- name: config
  mountPath: /etc/llmgate/llmgate.yaml
  subPath: llmgate.yaml
  readOnly: true
- name: data
  mountPath: /var/lib/llmgate
{{- if .Values.tls.secretName }}
- name: tls
  mountPath: /etc/llmgate/tls
  readOnly: true
{{- end }}
{{- if .Values.tls.clientCASecretName }}
- name: client-ca
  mountPath: /etc/llmgate/client-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "llmgate.scheme" -}}
{{- if .Values.tls.secretName -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}
