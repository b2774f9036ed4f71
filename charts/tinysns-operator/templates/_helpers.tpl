{{/* Chart name, truncated to the 63 characters a label value may have. */}}
{{- define "tinysns-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, plus the chart name unless already in it. */}}
{{- define "tinysns-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "tinysns-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tinysns-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tinysns-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tinysns-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tinysns-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tinysns-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The permissions the operator uses, and no more: it reads SocialClusters and writes their
status, server-side-applies and deletes the children it owns, publishes Events, reads Pods.
*/}}
{{/* The namespace SocialClusters are watched in; empty for every namespace. */}}
{{- define "tinysns-operator.watchNamespace" -}}
{{- if .Values.watchAllNamespaces -}}
{{- else -}}
{{- default .Release.Namespace .Values.watchNamespace -}}
{{- end -}}
{{- end -}}

{{- define "tinysns-operator.rules" -}}
# patch: to remove the tinysns.io/switchover annotation once the switchover it asks for is done
- apiGroups: ["tinysns.io"]
  resources: ["socialclusters"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["tinysns.io"]
  resources: ["socialclusters/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["apps"]
  resources: ["statefulsets", "deployments"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "secrets", "configmaps"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Growing storage: the claims of a StatefulSet are patched to the new size (the StatefulSet
# is then recreated without its pods, for its immutable claim template).
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "patch"]
# NetworkPolicies of every role; the Ingress of the gateway (spec.gateway.ingress).
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies", "ingresses"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# A ServiceMonitor per SocialCluster, where the Prometheus Operator is installed.
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "create", "update", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Rolling updates: StatefulSets use OnDelete, and the operator deletes each outdated pod in
# turn (slaves first, the master after a planned switchover).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "delete"]
{{- end }}
