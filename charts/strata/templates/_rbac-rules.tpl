{{/*
The operator's RBAC rules, exactly as `strata-operator rbac` prints them
(files/operator-rbac-rules.yaml is that output, kept equal by the packaging tests).
Lease rules go to a Role in the release namespace; everything else to the ClusterRole.
*/}}
{{- define "strata.operator.clusterRules" -}}
{{- range (.Files.Get "files/operator-rbac-rules.yaml" | fromYamlArray) }}
{{- if not (has "coordination.k8s.io" .apiGroups) }}
- {{ toYaml . | indent 2 | trim }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "strata.operator.leaseRules" -}}
{{- range (.Files.Get "files/operator-rbac-rules.yaml" | fromYamlArray) }}
{{- if has "coordination.k8s.io" .apiGroups }}
- {{ toYaml . | indent 2 | trim }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
ClusterRole rules of the dashboard: read-only.
*/}}
{{- define "strata.dashboard.rules" -}}
- apiGroups: ["strata.dev"]
  resources: ["storageservices"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods", "events"]
  verbs: ["get", "list", "watch"]
{{- end -}}
