{{/*
Names and labels.
*/}}
{{- define "tenantgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tenantgate.fullname" -}}
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

{{- define "tenantgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tenantgate.instanceLabels" -}}
app.kubernetes.io/name: {{ include "tenantgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The server pods only: the migration Job's pods must not count for the Service, PDB or spread. */}}
{{- define "tenantgate.selectorLabels" -}}
{{ include "tenantgate.instanceLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{/* The metrics Service's own labels, so the ServiceMonitor selects it and not the main Service. */}}
{{- define "tenantgate.metricsServiceLabels" -}}
{{ include "tenantgate.instanceLabels" . }}
app.kubernetes.io/component: metrics
{{- end }}

{{- define "tenantgate.metricsServiceName" -}}
{{- printf "%s-metrics" (include "tenantgate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tenantgate.labels" -}}
helm.sh/chart: {{ include "tenantgate.chart" . }}
{{ include "tenantgate.instanceLabels" . }}
app.kubernetes.io/version: {{ include "tenantgate.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tenantgate
{{- end }}

{{- define "tenantgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tenantgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tenantgate.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag | trunc 63 }}
{{- end }}

{{- define "tenantgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* A copy of the chart's Secret created as a hook, for the migration Job (see migrations-secret.yaml). */}}
{{- define "tenantgate.migrationsSecretName" -}}
{{- printf "%s-migrations" (include "tenantgate.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tenantgate.redisConfigured" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret }}true{{ end }}
{{- end }}

{{- define "tenantgate.terminationGracePeriodSeconds" -}}
{{- $s := .Values.shutdown }}
{{- if kindIs "invalid" $s.terminationGracePeriodSeconds }}
{{- add (int $s.preStopSleepSeconds) (int $s.graceSeconds) 15 }}
{{- else }}
{{- int $s.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
Secret data of the chart's own Secret: only the values given inline.
*/}}
{{- define "tenantgate.secretData" -}}
secret-key: {{ .Values.secretKey | b64enc | quote }}
admin-token: {{ .Values.adminToken | b64enc | quote }}
{{- with .Values.upstream.apiKey }}
upstream-api-key: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.database.url }}
{{ $.Values.database.existingSecretKey }}: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.redis.url }}
{{ $.Values.redis.existingSecretKey }}: {{ . | b64enc | quote }}
{{- end }}
{{- end }}

{{/*
Environment variables read from Secrets. Call with (dict "root" $ "chartSecret" NAME): NAME is the chart's Secret
for the server and its hook copy for the migration Job; user-supplied Secrets are referenced as they are.
*/}}
{{- define "tenantgate.secretEnv" -}}
{{- $v := .root.Values }}
{{- $app := default .chartSecret $v.existingSecret -}}
- name: TENANTGATE_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $app }}
      key: secret-key
- name: TENANTGATE_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $app }}
      key: admin-token
{{- if or $v.existingSecret $v.upstream.apiKey }}
- name: TENANTGATE_UPSTREAM_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $app }}
      key: upstream-api-key
      {{- if $v.existingSecret }}
      optional: true
      {{- end }}
{{- end }}
- name: TENANTGATE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ default $app $v.database.existingSecret }}
      key: {{ $v.database.existingSecretKey }}
{{- if include "tenantgate.redisConfigured" .root }}
- name: TENANTGATE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ default $app $v.redis.existingSecret }}
      key: {{ $v.redis.existingSecretKey }}
{{- end }}
{{- end }}

{{/*
Non-secret settings as environment variables: the ConfigMap's data, and literal env of the migration Job (which runs
before the ConfigMap exists on install).
*/}}
{{- define "tenantgate.configEnv" -}}
TENANTGATE_ENV: {{ .Values.environment | quote }}
TENANTGATE_LOG_LEVEL: {{ .Values.logLevel | quote }}
TENANTGATE_MIGRATE_ON_START: "false"
TENANTGATE_SPOOL_DIR: {{ .Values.spool.mountPath | quote }}
TENANTGATE_SHUTDOWN_GRACE_SECONDS: {{ .Values.shutdown.graceSeconds | int | quote }}
{{- /* The unauthenticated metrics listener must accept Prometheus from other pods, hence every interface. */}}
TENANTGATE_METRICS_PORT: {{ .Values.metricsPort | int | quote }}
TENANTGATE_METRICS_HOST: "0.0.0.0"
{{- include "tenantgate.limitsEnv" . }}
{{- with .Values.upstream.baseUrl }}
TENANTGATE_UPSTREAM_BASE_URL: {{ . | quote }}
{{- end }}
{{- if include "tenantgate.hasConfigFile" . }}
TENANTGATE_CONFIG_FILE: "/etc/tenantgate/config.yaml"
{{- end }}
OTEL_SERVICE_NAME: {{ default (include "tenantgate.fullname" .) .Values.otel.serviceName | quote }}
{{- with .Values.otel.endpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
OTEL_EXPORTER_OTLP_PROTOCOL: {{ $.Values.otel.protocol | quote }}
OTEL_TRACES_SAMPLER: {{ $.Values.otel.tracesSampler | quote }}
OTEL_TRACES_SAMPLER_ARG: {{ $.Values.otel.tracesSamplerArg | toString | quote }}
{{- end }}
{{- end }}

{{/*
Request and authentication limits. A limit set to null is left out, so the application's default applies.
*/}}
{{- define "tenantgate.limitsEnv" -}}
{{- $limits := .Values.limits | default dict }}
{{- $env := dict
  "TENANTGATE_MAX_REQUEST_BODY_BYTES" (list "http" "maxRequestBodyBytes")
  "TENANTGATE_MAX_ADMIN_BODY_BYTES" (list "http" "maxAdminBodyBytes")
  "TENANTGATE_HTTP_MAX_HEADER_BYTES" (list "http" "maxHeaderBytes")
  "TENANTGATE_HTTP_MAX_HEADERS" (list "http" "maxHeaders")
  "TENANTGATE_HTTP_HEADER_TIMEOUT_SECONDS" (list "http" "headerTimeoutSeconds")
  "TENANTGATE_HTTP_BODY_IDLE_TIMEOUT_SECONDS" (list "http" "bodyIdleTimeoutSeconds")
  "TENANTGATE_HTTP_BODY_TIMEOUT_SECONDS" (list "http" "bodyTimeoutSeconds")
  "TENANTGATE_HTTP_KEEPALIVE_TIMEOUT_SECONDS" (list "http" "keepaliveTimeoutSeconds")
  "TENANTGATE_HTTP_MAX_CONNECTIONS" (list "http" "maxConnections")
  "TENANTGATE_HTTP_MAX_CONNECTIONS_PER_SOURCE" (list "http" "maxConnectionsPerSource")
  "TENANTGATE_HTTP_MAX_PENDING_HEADER_BYTES" (list "http" "maxPendingHeaderBytes")
  "TENANTGATE_AUTH_FAILURES_PER_SOURCE_PER_MINUTE" (list "authFailures" "perSourcePerMinute")
  "TENANTGATE_AUTH_FAILURES_PER_MINUTE" (list "authFailures" "perMinute")
}}
{{- range $name, $path := $env }}
{{- $value := dig (index $path 0) (index $path 1) nil $limits }}
{{- if not (kindIs "invalid" $value) }}
{{- /* Values files give every number as a float: 33554432 would print as 3.3554432e+07. */}}
{{- if eq (float64 $value) (float64 (int64 $value)) }}
{{- $value = int64 $value }}
{{- end }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tenantgate.hasConfigFile" -}}
{{- if or .Values.configFile.content .Values.configFile.existingSecret }}true{{ end }}
{{- end }}

{{/* Downward-API env shared by server and Job: lets traces name the pod that produced them. */}}
{{- define "tenantgate.podEnv" -}}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- $attrs := list "k8s.pod.name=$(K8S_POD_NAME)" "k8s.namespace.name=$(K8S_NAMESPACE)" }}
{{- range $k, $v := .Values.otel.resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%v" $k $v) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
{{- end }}

{{/*
Refuse values that would deploy something broken or unsafe. Included once, from validate.yaml.
*/}}
{{- define "tenantgate.validate" -}}
{{- $v := .Values }}
{{- $scaled := or $v.autoscaling.enabled (gt (int $v.replicaCount) 1) (gt (int $v.workers) 1) }}
{{- if and $scaled (not (include "tenantgate.redisConfigured" .)) }}
{{- fail (printf "tenantgate: replicaCount=%d, workers=%d, autoscaling.enabled=%t but no Redis is configured. Without Redis, rate limits and quotas are kept in each process, so every replica or worker would grant the full limit. Set redis.url or redis.existingSecret, or run a single replica with one worker." (int $v.replicaCount) (int $v.workers) $v.autoscaling.enabled) }}
{{- end }}
{{- if $v.existingSecret }}
{{- range $name, $value := dict "secretKey" $v.secretKey "adminToken" $v.adminToken "upstream.apiKey" $v.upstream.apiKey "database.url" $v.database.url "redis.url" $v.redis.url }}
{{- if $value }}
{{- fail (printf "tenantgate: %s is set together with existingSecret %q; the chart creates no Secret then, so the value would be ignored. Put it in the existing Secret (or use database.existingSecret / redis.existingSecret)." $name $v.existingSecret) }}
{{- end }}
{{- end }}
{{- else }}
{{- if not $v.secretKey }}
{{- fail "tenantgate: secretKey is required (the HMAC key for API-key hashes; generate one with `openssl rand -hex 32` and keep it: changing it invalidates every API key), or set existingSecret." }}
{{- end }}
{{- if not $v.adminToken }}
{{- fail "tenantgate: adminToken is required, or set existingSecret." }}
{{- end }}
{{- if not (or $v.database.url $v.database.existingSecret) }}
{{- fail "tenantgate: no database configured. Set database.url, database.existingSecret or existingSecret." }}
{{- end }}
{{- end }}
{{- if and $v.database.url $v.database.existingSecret }}
{{- fail "tenantgate: set database.url or database.existingSecret, not both." }}
{{- end }}
{{- if and $v.redis.url $v.redis.existingSecret }}
{{- fail "tenantgate: set redis.url or redis.existingSecret, not both." }}
{{- end }}
{{- if eq (int $v.metricsPort) (int $v.containerPort) }}
{{- fail "tenantgate: metricsPort must differ from containerPort: the metrics listener is a separate, unauthenticated port." }}
{{- end }}
{{- if and $v.networkPolicy.enabled $v.serviceMonitor.enabled (not $v.networkPolicy.metricsFrom) }}
{{- fail "tenantgate: networkPolicy.enabled and serviceMonitor.enabled, but networkPolicy.metricsFrom is empty, so Prometheus could not reach metricsPort. List your Prometheus there (e.g. a namespaceSelector for its namespace)." }}
{{- end }}
{{- if and $v.configFile.content $v.configFile.existingSecret }}
{{- fail "tenantgate: set configFile.content or configFile.existingSecret, not both." }}
{{- end }}
{{- $minGrace := add (int $v.shutdown.preStopSleepSeconds) (int $v.shutdown.graceSeconds) }}
{{- if lt (int (include "tenantgate.terminationGracePeriodSeconds" .)) (int $minGrace) }}
{{- fail (printf "tenantgate: shutdown.terminationGracePeriodSeconds must be at least preStopSleepSeconds + graceSeconds (%d), or in-flight streams are killed." (int $minGrace)) }}
{{- end }}
{{- if $v.autoscaling.enabled }}
{{- if gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas) }}
{{- fail "tenantgate: autoscaling.minReplicas must not exceed autoscaling.maxReplicas." }}
{{- end }}
{{- end }}
{{- if $v.podDisruptionBudget.enabled }}
{{- $pdb := $v.podDisruptionBudget }}
{{- if and (kindIs "invalid" $pdb.minAvailable) (kindIs "invalid" $pdb.maxUnavailable) }}
{{- fail "tenantgate: podDisruptionBudget needs minAvailable or maxUnavailable." }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tenantgate.configFileVolume" -}}
{{- if .Values.configFile.existingSecret }}
- name: config-file
  secret:
    secretName: {{ .Values.configFile.existingSecret }}
    items:
      - key: config.yaml
        path: config.yaml
{{- else if .Values.configFile.content }}
- name: config-file
  configMap:
    name: {{ include "tenantgate.fullname" . }}
    items:
      - key: config.yaml
        path: config.yaml
{{- end }}
{{- end }}
