{{/*
Command-line arguments of the operator container (flags of `strata-operator run`).
*/}}
{{- define "strata.operator.args" -}}
{{- $op := .Values.operator -}}
args:
  - run
  - --listen={{ printf "0.0.0.0:%v" $op.port }}
  {{- if $op.leaderElection.enabled }}
  - --leader-election
  - --lease-name={{ $op.leaderElection.leaseName }}
  - --lease-namespace={{ .Release.Namespace }}
  - --lease-duration={{ $op.leaderElection.leaseDuration }}
  - --renew-deadline={{ $op.leaderElection.renewDeadline }}
  {{- end }}
  {{- with $op.serverImage }}
  - --default-server-image={{ . }}
  {{- end }}
  {{- range $op.watchNamespaces }}
  - --namespace={{ . }}
  {{- end }}
  - --log-format={{ $op.logFormat }}
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
