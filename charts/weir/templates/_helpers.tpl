{{/* The chart name, for labels. */}}
{{- define "weir.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every object name: the release name, plus "-weir" unless it has it. */}}
{{- define "weir.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels that select weir's pods; never change across upgrades. */}}
{{- define "weir.selectorLabels" -}}
app.kubernetes.io/name: {{ include "weir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "weir.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "weir.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: weir
{{- end -}}

{{- define "weir.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "weir.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "weir.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The Secret holding the affinity key (created by the chart or given). */}}
{{- define "weir.affinitySecretName" -}}
{{- if .Values.affinityKey.create -}}
{{- printf "%s-affinity-key" (include "weir.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- required "affinityKey.existingSecret is required when affinityKey.create is false" .Values.affinityKey.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* The pod's terminationGracePeriodSeconds: long enough for the preStop sleep and the drain. */}}
{{- define "weir.terminationGrace" -}}
{{- if gt (int .Values.terminationGracePeriodSeconds) 0 -}}
{{- .Values.terminationGracePeriodSeconds -}}
{{- else -}}
{{- add .Values.preStopSleepSeconds .Values.shutdownGraceSeconds 5 -}}
{{- end -}}
{{- end -}}

{{/* The rules weir needs where it watches (a ClusterRole, or a Role per watched namespace). */}}
{{- define "weir.watchRules" -}}
# The pools weir serves.
- apiGroups: ["weir.dev"]
  resources: ["loadbalancerpools"]
  verbs: ["get", "list", "watch"]
# Pool status, written by the Lease holder (server-side apply on the status subresource).
- apiGroups: ["weir.dev"]
  resources: ["loadbalancerpools/status"]
  verbs: ["update", "patch"]
# The Services pools name, and their EndpointSlices: the pod addresses weir balances over.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
# TLS certificates of pools (spec.tls.secretName). weir lists and watches only Secrets of type
# kubernetes.io/tls (a field selector), but RBAC cannot express that: this grants read on every
# Secret where weir watches. Limit it with watchNamespaces (namespaced RBAC).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
# Warning and Normal events on pools (events.k8s.io/v1; core v1 for older clients).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# Gateway API, where its CRDs are installed (weir asks discovery first and watches only what
# the cluster serves): the Gateways and routes weir serves, the grants that let routes refer
# across namespaces, and the status the Lease holder writes.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gateways", "httproutes", "grpcroutes", "referencegrants"]
  verbs: ["get", "list", "watch"]
# (get: a route's status is read before it is written, to keep other controllers' entries.)
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gateways/status", "httproutes/status", "grpcroutes/status"]
  verbs: ["get", "update", "patch"]
# Kubernetes Ingress: the Ingresses of weir's class, and their status.loadBalancer (Lease holder).
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses/status"]
  verbs: ["get", "update", "patch"]
{{- end -}}

{{/* The rules on cluster-wide kinds: in the ClusterRole, or a ClusterRole of their own with
watchNamespaces (they have no namespace to put a Role in). */}}
{{- define "weir.clusterRules" -}}
# GatewayClasses weir implements, and their status.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gatewayclasses"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gatewayclasses/status"]
  verbs: ["get", "update", "patch"]
# Namespaces, for their labels: listeners may take routes from namespaces by label selector.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
# IngressClasses: which class is weir's, and whether it is the default.
- apiGroups: ["networking.k8s.io"]
  resources: ["ingressclasses"]
  verbs: ["get", "list", "watch"]
{{- end -}}
