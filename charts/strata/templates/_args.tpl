{{/*
Command-line arguments of the operator container (flags of `strata-operator run`; the
Lease namespace and identity come from POD_NAMESPACE and POD_NAME).
*/}}
{{- define "strata.operator.args" -}}
{{- $op := .Values.operator -}}
args:
  - run
  - --listen={{ printf "0.0.0.0:%v" $op.port }}
  {{- if $op.leaderElection.enabled }}
  - --lease-name={{ $op.leaderElection.leaseName }}
  {{- else }}
  - --no-leader-election
  {{- end }}
  {{- with $op.extraArgs }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/*
Command-line arguments of the dashboard container.
*/}}
{{- define "strata.dashboard.args" -}}
{{- $d := .Values.dashboard -}}
args:
  - --listen={{ printf "0.0.0.0:%v" $d.port }}
  {{- with $d.namespace }}
  - --namespace={{ . }}
  {{- end }}
  {{- with $d.extraArgs }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}
