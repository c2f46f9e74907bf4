{{/*
ClusterRole rules of the operator. Keep equal to `strata-operator rbac`.
*/}}
{{- define "strata.operator.rules" -}}
- apiGroups: ["strata.dev"]
  resources: ["storageservices"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["strata.dev"]
  resources: ["storageservices/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors", "prometheusrules"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
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
