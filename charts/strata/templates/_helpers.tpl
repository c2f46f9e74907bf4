{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "strata.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Object-name prefix: "<release>-<chart>", or the release name when it already holds the
chart name. Truncated so that suffixes like "-dashboard" still fit in 63 characters.
*/}}
{{- define "strata.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "strata.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels on every object. Call with (dict "ctx" $ "component" "operator").
*/}}
{{- define "strata.labels" -}}
{{ include "strata.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: strata
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ include "strata.chart" .ctx }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Selector labels (immutable once a Deployment exists: never add to these).
*/}}
{{- define "strata.selectorLabels" -}}
app.kubernetes.io/name: {{ include "strata.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{- define "strata.operator.fullname" -}}
{{- printf "%s-operator" (include "strata.fullname" .) -}}
{{- end -}}

{{- define "strata.dashboard.fullname" -}}
{{- printf "%s-dashboard" (include "strata.fullname" .) -}}
{{- end -}}

{{- define "strata.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "strata.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "strata.dashboard.serviceAccountName" -}}
{{- if .Values.dashboard.serviceAccount.create -}}
{{- default (include "strata.dashboard.fullname" .) .Values.dashboard.serviceAccount.name -}}
{{- else -}}
{{- required "dashboard.serviceAccount.name is required when dashboard.serviceAccount.create is false" .Values.dashboard.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Container image reference. Call with (dict "image" .Values.operator.image "ctx" $).
*/}}
{{- define "strata.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}
