{{/* Chart name, truncated to leave room for suffixes like "-operator". */}}
{{- define "salve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" }}
{{- end }}

{{/* Resource-name prefix: the release name, plus the chart name unless it already has it. */}}
{{- define "salve.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "salve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "salve.labels" -}}
helm.sh/chart: {{ include "salve.chart" . }}
app.kubernetes.io/name: {{ include "salve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: salve
{{- end }}

{{/* Selector labels of one component: include "salve.selectorLabels" (list . "operator") */}}
{{- define "salve.selectorLabels" -}}
{{- $ctx := index . 0 }}
app.kubernetes.io/name: {{ include "salve.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "salve.componentLabels" -}}
{{ include "salve.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "salve.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Where Incidents, catalogs, Jobs and the runner's Secrets live. */}}
{{- define "salve.incidentNamespace" -}}
{{- default .Release.Namespace .Values.incidentNamespace }}
{{- end }}

{{- define "salve.operatorName" -}}{{ include "salve.fullname" . }}-operator{{- end }}
{{- define "salve.webhookName" -}}{{ include "salve.fullname" . }}-webhook{{- end }}
{{- define "salve.approvalsName" -}}{{ include "salve.fullname" . }}-approvals{{- end }}
{{- define "salve.leaseName" -}}{{ include "salve.fullname" . }}-operator{{- end }}

{{- define "salve.runnerServiceAccount" -}}
{{- default (printf "%s-runner" (include "salve.fullname" .)) .Values.runner.serviceAccount.name }}
{{- end }}

{{- define "salve.webhookTokenSecret" -}}
{{- default (printf "%s-webhook-token" (include "salve.fullname" .)) .Values.webhook.token.existingSecret }}
{{- end }}

{{/* Pod and container security: non-root, read-only root, no capabilities, RuntimeDefault. */}}
{{- define "salve.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "salve.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Default affinity: spread replicas of one component over nodes, if there are several. */}}
{{- define "salve.spread" -}}
{{- $ctx := index . 0 }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "salve.selectorLabels" . | nindent 12 }}
{{- end }}

{{/* Cross-field checks JSON Schema cannot phrase clearly. */}}
{{- define "salve.validate" -}}
{{- $ns := include "salve.incidentNamespace" . }}
{{- with .Values.operator.watchNamespace }}
{{- if ne . $ns }}
{{- fail (printf "operator.watchNamespace=%q must be empty (all namespaces) or equal to the incident namespace %q: the operator would never see the Incidents the webhook creates" . $ns) }}
{{- end }}
{{- end }}
{{- if and (gt (int .Values.operator.replicas) 1) (not .Values.operator.leaderElection.enabled) }}
{{- fail (printf "operator.replicas=%d needs operator.leaderElection.enabled=true: several active operators would race on the same Incidents" (int .Values.operator.replicas)) }}
{{- end }}
{{- if and .Values.operator.escalateToAlertmanager (not .Values.operator.alertmanagerUrl) }}
{{- fail "operator.escalateToAlertmanager=true needs operator.alertmanagerUrl" }}
{{- end }}
{{- if and .Values.operator.llm.apiKey.secretName (not .Values.operator.llm.baseUrl) }}
{{- fail "operator.llm.apiKey.secretName is set but operator.llm.baseUrl is empty: set the OpenAI-compatible base URL too" }}
{{- end }}
{{- end }}
