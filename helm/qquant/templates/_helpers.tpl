{{/* Names: 63 characters at most (DNS label), "-" trimmed. */}}
{{- define "qquant.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "qquant.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The headless Service's name: the suffix is kept whole, the prefix shortened. */}}
{{- define "qquant.headlessName" -}}
{{- printf "%s-headless" (include "qquant.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "qquant.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "qquant.selectorLabels" -}}
app.kubernetes.io/name: {{ include "qquant.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "qquant.labels" -}}
helm.sh/chart: {{ include "qquant.chart" . }}
{{ include "qquant.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: inference
{{- end }}

{{- define "qquant.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "qquant.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "qquant.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* --device: explicit, else cuda on GPU pods and cpu elsewhere. */}}
{{- define "qquant.device" -}}
{{- if .Values.server.device }}
{{- .Values.server.device }}
{{- else if .Values.gpu.enabled }}
{{- "cuda" }}
{{- else }}
{{- "cpu" }}
{{- end }}
{{- end }}

{{/* Folder of the quantized checkpoint written by the init container (source: quantize).
     The parameters are in the name, so changing them on a persistent output quantizes anew. */}}
{{- define "qquant.quantizedDir" -}}
{{- $q := .Values.model.quantize }}
{{- printf "/models/qquant-%s-w%d-g%d" $q.method (int $q.bits) (int $q.groupSize) }}
{{- end }}

{{/* QQ_SERVE_MODEL for each model source; a source without its required value fails the render. */}}
{{- define "qquant.modelPath" -}}
{{- $m := .Values.model }}
{{- if eq $m.source "pvc" }}
{{- if not $m.pvc.claimName }}{{ fail "model.source=pvc needs model.pvc.claimName" }}{{ end }}
{{- trimSuffix "/" (printf "/models/%s" (trimPrefix "/" $m.pvc.path)) }}
{{- else if eq $m.source "hostPath" }}
{{- if not $m.hostPath.path }}{{ fail "model.source=hostPath needs model.hostPath.path" }}{{ end }}
{{- "/models" }}
{{- else if eq $m.source "image" }}
{{- if not $m.image.path }}{{ fail "model.source=image needs model.image.path" }}{{ end }}
{{- $m.image.path }}
{{- else if eq $m.source "quantize" }}
{{- include "qquant.quantizedDir" . }}
{{- else }}
{{- fail (printf "model.source must be pvc, hostPath, image or quantize, not %q" $m.source) }}
{{- end }}
{{- end }}

{{/* Pod grace period: at least the preStop sleep plus the drain; by default 10 s more for the exit. */}}
{{- define "qquant.terminationGracePeriodSeconds" -}}
{{- $floor := add (int .Values.server.preStopSleepSeconds) (int .Values.server.drainSeconds) }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $floor 10 }}
{{- else if lt (int .Values.terminationGracePeriodSeconds) (int $floor) }}
{{- fail (printf "terminationGracePeriodSeconds=%d is shorter than server.preStopSleepSeconds + server.drainSeconds = %d: Kubernetes would kill in-flight requests" (int .Values.terminationGracePeriodSeconds) (int $floor)) }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* Container resources with the GPU request and limit set from gpu.*.  Arg: dict "root" . "resources" R */}}
{{- define "qquant.resourcesWithGpu" -}}
{{- $root := .root }}
{{- $res := deepCopy (default dict .resources) }}
{{- if $root.Values.gpu.enabled }}
{{- /* merge() writes into its first argument and keeps its keys: a fresh dict for each. */}}
{{- $name := $root.Values.gpu.resourceName }}
{{- $count := int $root.Values.gpu.count }}
{{- $_ := set $res "limits" (merge (dict $name $count) (default dict $res.limits)) }}
{{- $_ := set $res "requests" (merge (dict $name $count) (default dict $res.requests)) }}
{{- end }}
{{- if $res }}
{{- toYaml $res }}
{{- else }}
{{- "{}" }}
{{- end }}
{{- end }}

{{/* Probe timings. Arg: the probes.<kind> dict. */}}
{{- define "qquant.probeTimings" -}}
periodSeconds: {{ int .periodSeconds }}
failureThreshold: {{ int .failureThreshold }}
timeoutSeconds: {{ int .timeoutSeconds }}
{{- end }}

{{/* Probe target: native gRPC health (plaintext) or, with in-server TLS, a TCP connect.
     Arg: dict "root" . "service" NAME */}}
{{- define "qquant.probeTarget" -}}
{{- if .root.Values.server.tls.enabled -}}
tcpSocket:
  port: grpc
{{- else -}}
grpc:
  port: {{ int .root.Values.server.port }}
  service: {{ .service | quote }}
{{- end }}
{{- end }}
