{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "hg-auth-sidecar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hg-auth-sidecar.fullname" -}}
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

{{- define "hg-auth-sidecar.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hg-auth-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hg-auth-sidecar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hg-auth-sidecar.labels" -}}
helm.sh/chart: {{ include "hg-auth-sidecar.chart" . }}
{{ include "hg-auth-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "hg-auth-sidecar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hg-auth-sidecar.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "hg-auth-sidecar.sidecarImage" -}}
{{- $img := .Values.sidecar.image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag | toString) }}
{{- end }}
{{- end }}

{{- define "hg-auth-sidecar.appImage" -}}
{{- $img := .Values.app.image }}
{{- $repo := required "app.image.repository is required: the image of the service the sidecar guards" $img.repository }}
{{- if $img.tag }}
{{- printf "%s:%s" $repo ($img.tag | toString) }}
{{- else }}
{{- $repo }}
{{- end }}
{{- end }}

{{- define "hg-auth-sidecar.upstreamUrl" -}}
{{- default (printf "http://127.0.0.1:%d" (int .Values.app.port)) .Values.sidecar.upstreamUrl }}
{{- end }}

{{/*
Whole CPUs of the sidecar: its CPU limit, or without one its request, rounded up (at least
1); empty when neither is set. Sizes UV_THREADPOOL_SIZE and BCRYPT_CONCURRENCY.
*/}}
{{- define "hg-auth-sidecar.cpus" -}}
{{- $res := .Values.sidecar.resources | default dict }}
{{- $cpu := dig "limits" "cpu" (dig "requests" "cpu" "" $res) $res | toString }}
{{- if $cpu }}
{{- if hasSuffix "m" $cpu }}
{{- div (add (trimSuffix "m" $cpu | int64) 999) 1000 | max 1 }}
{{- else }}
{{- ceil ($cpu | float64) | int64 | max 1 }}
{{- end }}
{{- end }}
{{- end }}

{{/* Seconds the app sleeps in its preStop: app.preStopSleepSeconds, or 5 s past the sidecar's. */}}
{{- define "hg-auth-sidecar.appPreStopSleep" -}}
{{- if kindIs "invalid" .Values.app.preStopSleepSeconds }}
{{- add (int64 .Values.sidecar.preStopSleepSeconds) 5 }}
{{- else }}
{{- int64 .Values.app.preStopSleepSeconds }}
{{- end }}
{{- end }}

{{/* PromQL label matchers of this release's series (prometheusRule.selector or job and namespace). */}}
{{- define "hg-auth-sidecar.ruleSelector" -}}
{{- default (printf "job=%q, namespace=%q" (include "hg-auth-sidecar.fullname" .) .Release.Namespace) .Values.prometheusRule.selector }}
{{- end }}

{{- define "hg-auth-sidecar.exposeOps" -}}
{{- if or .Values.service.exposeOps .Values.serviceMonitor.enabled }}true{{ end }}
{{- end }}

{{/*
Refuses values that would deploy something broken: the kubelet's grace period must
cover the preStop sleep plus the sidecar's own drain, and a native sidecar needs 1.29+.
*/}}
{{- define "hg-auth-sidecar.validate" -}}
{{- $graceMs := mul (int64 .Values.terminationGracePeriodSeconds) 1000 }}
{{- $neededMs := add (int64 .Values.sidecar.shutdownGraceMs) (mul (int64 .Values.sidecar.preStopSleepSeconds) 1000) }}
{{- if le $graceMs $neededMs }}
{{- fail (printf "terminationGracePeriodSeconds (%d s) must exceed sidecar.preStopSleepSeconds + sidecar.shutdownGraceMs (%d ms)" (int64 .Values.terminationGracePeriodSeconds) $neededMs) }}
{{- end }}
{{- if eq .Values.app.name .Values.sidecar.name }}
{{- fail (printf "app.name and sidecar.name must differ (both are %q)" .Values.app.name) }}
{{- end }}
{{- if and .Values.sidecar.nativeSidecar (semverCompare "<1.29.0-0" .Capabilities.KubeVersion.Version) }}
{{- fail (printf "sidecar.nativeSidecar needs Kubernetes 1.29 or later (this cluster: %s)" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- $appSleep := include "hg-auth-sidecar.appPreStopSleep" . | int64 }}
{{- if and (not (hasKey (.Values.app.lifecycle | default dict) "preStop")) (ge $appSleep (int64 .Values.terminationGracePeriodSeconds)) }}
{{- fail (printf "terminationGracePeriodSeconds (%d s) must exceed the app's preStop sleep (%d s, app.preStopSleepSeconds)" (int64 .Values.terminationGracePeriodSeconds) $appSleep) }}
{{- end }}
{{- $pdb := .Values.podDisruptionBudget }}
{{- $replicas := int64 .Values.replicaCount }}
{{- if and $pdb.enabled (gt $replicas 0) }}
{{- $blocks := false }}
{{- if not (kindIs "invalid" $pdb.minAvailable) }}
{{- $min := toString $pdb.minAvailable }}
{{- $needed := $min | int64 }}
{{- if hasSuffix "%" $min }}
{{- /* The disruption controller rounds a percentage of minAvailable up. */}}
{{- $needed = div (add (mul $replicas (trimSuffix "%" $min | int64)) 99) 100 }}
{{- end }}
{{- $blocks = ge $needed $replicas }}
{{- else if not (kindIs "invalid" $pdb.maxUnavailable) }}
{{- $blocks = eq (toString $pdb.maxUnavailable | trimSuffix "%" | int64) 0 }}
{{- end }}
{{- if $blocks }}
{{- fail (printf "podDisruptionBudget lets no pod of %d go (minAvailable %v, maxUnavailable %v): every node drain would block. Raise replicaCount, or lower minAvailable / set maxUnavailable" $replicas $pdb.minAvailable $pdb.maxUnavailable) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The sidecar container. Ports are referenced by number, not name, in the Service, the
probes and the NetworkPolicy: before Kubernetes 1.32 a Service could not resolve a named
port of a native sidecar (kubernetes/kubernetes#127958).
*/}}
{{- define "hg-auth-sidecar.sidecarContainer" -}}
{{- $s := .Values.sidecar -}}
- name: {{ $s.name }}
  image: {{ include "hg-auth-sidecar.sidecarImage" . }}
  imagePullPolicy: {{ $s.image.pullPolicy }}
  {{- if $s.nativeSidecar }}
  restartPolicy: Always
  {{- end }}
  ports:
    - name: http
      containerPort: {{ int $s.ports.http }}
      protocol: TCP
    - name: ops
      containerPort: {{ int $s.ports.ops }}
      protocol: TCP
  env:
    - name: CONFIG_FILE
      value: /etc/hg-sidecar/config.yaml
    - name: PORT
      value: {{ int $s.ports.http | quote }}
    - name: OPS_PORT
      value: {{ int $s.ports.ops | quote }}
    - name: ADMIN_PORT
      value: {{ int $s.ports.admin | quote }}
    - name: UPSTREAM_URL
      value: {{ include "hg-auth-sidecar.upstreamUrl" . | quote }}
    - name: UPSTREAM_TIMEOUT_MS
      value: {{ int64 $s.upstreamTimeoutMs | quote }}
    - name: SHUTDOWN_GRACE_MS
      value: {{ int64 $s.shutdownGraceMs | quote }}
    - name: LOG_LEVEL
      value: {{ $s.logLevel | quote }}
    - name: REDIS_KEY_PREFIX
      value: {{ $s.redisKeyPrefix | quote }}
    {{- if ne $s.database.pooler "none" }}
    - name: DATABASE_POOLER
      value: {{ $s.database.pooler | quote }}
    {{- end }}
    {{- if $s.database.poolSize }}
    - name: DB_POOL_SIZE
      value: {{ int $s.database.poolSize | quote }}
    {{- end }}
    {{- $r := $s.redis }}
    {{- if and $r.sentinels $r.clusterNodes }}
    {{- fail "sidecar.redis.sentinels and sidecar.redis.clusterNodes are both set: one Redis topology at a time" }}
    {{- end }}
    {{- if and (not $r.sentinels) (or $r.sentinelTls .Values.secrets.redisSentinelPasswordKey) }}
    {{- fail "sidecar.redis.sentinelTls and secrets.redisSentinelPasswordKey apply to sentinels: set sidecar.redis.sentinels (and sentinelName) too" }}
    {{- end }}
    {{- if $r.sentinels }}
    - name: REDIS_SENTINELS
      value: {{ join "," $r.sentinels | quote }}
    - name: REDIS_SENTINEL_NAME
      value: {{ required "sidecar.redis.sentinelName is required with sidecar.redis.sentinels: the master group the sentinels monitor" $r.sentinelName | quote }}
    {{- end }}
    {{- if $r.clusterNodes }}
    - name: REDIS_CLUSTER_NODES
      value: {{ join "," $r.clusterNodes | quote }}
    {{- end }}
    {{- if $r.tls }}
    - name: REDIS_TLS
      value: "true"
    {{- end }}
    {{- if $r.sentinelTls }}
    - name: REDIS_SENTINEL_TLS
      value: "true"
    {{- end }}
    - name: MIGRATE_ON_START
      value: {{ $s.migrateOnStart | toString | quote }}
    - name: UPSTREAM_READINESS_CHECK
      value: {{ $s.upstreamReadinessCheck | toString | quote }}
    - name: TRUST_PROXY
      value: {{ $s.trustProxy | toString | quote }}
    {{- $extra := list }}
    {{- range $s.extraEnv }}
    {{- $extra = append $extra .name }}
    {{- end }}
    {{- $cpus := include "hg-auth-sidecar.cpus" . }}
    {{- if $cpus }}
    {{- /* libuv's pool and bcrypt's concurrency follow the container's CPU, not the node's cores. */}}
    {{- if not (has "UV_THREADPOOL_SIZE" $extra) }}
    - name: UV_THREADPOOL_SIZE
      value: {{ $cpus | quote }}
    {{- end }}
    {{- if not (has "BCRYPT_CONCURRENCY" $extra) }}
    - name: BCRYPT_CONCURRENCY
      value: {{ $cpus | quote }}
    {{- end }}
    {{- end }}
    {{- $sec := .Values.secrets }}
    {{- $secretName := required "secrets.existingSecret is required: the name of a Secret holding DATABASE_URL (see docs/kubernetes.md)" $sec.existingSecret }}
    {{- if $sec.databaseUrlKey }}
    - name: DATABASE_URL
      valueFrom:
        secretKeyRef:
          name: {{ $secretName }}
          key: {{ $sec.databaseUrlKey }}
    {{- end }}
    {{- if and $sec.redisUrlKey (not $r.sentinels) (not $r.clusterNodes) }}
    - name: REDIS_URL
      valueFrom:
        secretKeyRef:
          name: {{ $secretName }}
          key: {{ $sec.redisUrlKey }}
          optional: true
    {{- end }}
    {{- if $sec.redisPasswordKey }}
    - name: REDIS_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ $secretName }}
          key: {{ $sec.redisPasswordKey }}
    {{- end }}
    {{- if $sec.redisSentinelPasswordKey }}
    - name: REDIS_SENTINEL_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ $secretName }}
          key: {{ $sec.redisSentinelPasswordKey }}
    {{- end }}
    {{- if $sec.migrateDatabaseUrlKey }}
    - name: MIGRATE_DATABASE_URL
      valueFrom:
        secretKeyRef:
          name: {{ $secretName }}
          key: {{ $sec.migrateDatabaseUrlKey }}
    {{- end }}
    {{- if $sec.adminTokenKey }}
    - name: ADMIN_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ $secretName }}
          key: {{ $sec.adminTokenKey }}
          optional: true
    {{- end }}
    {{- $a := .Values.assertion }}
    {{- if $a.enabled }}
    - name: ASSERTION_ENABLED
      value: "true"
    - name: ASSERTION_AUDIENCE
      value: {{ required "assertion.audience is required when assertion.enabled is true: the aud claim the app checks" $a.audience | quote }}
    {{- if $a.existingSecret }}
    - name: ASSERTION_KEY_FILE
      value: {{ printf "/etc/hg-assertion/%s" $a.secretKey | quote }}
    {{- end }}
    {{- end }}
    {{- with $s.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  startupProbe:
    httpGet:
      path: /healthz
      port: {{ int $s.ports.ops }}
    {{- with $s.startupProbe }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: {{ int $s.ports.ops }}
    {{- with $s.livenessProbe }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: {{ int $s.ports.ops }}
    {{- with $s.readinessProbe }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if gt (int $s.preStopSleepSeconds) 0 }}
  lifecycle:
    preStop:
      exec:
        command: ["sleep", {{ int $s.preStopSleepSeconds | quote }}]
  {{- end }}
  {{- with $s.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $s.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: config
      mountPath: /etc/hg-sidecar
      readOnly: true
    - name: tmp
      mountPath: /tmp
    {{- if and .Values.assertion.enabled .Values.assertion.existingSecret }}
    - name: assertion-key
      mountPath: /etc/hg-assertion
      readOnly: true
    {{- end }}
{{- end }}
