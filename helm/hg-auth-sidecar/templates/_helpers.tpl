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
{{- if and .Values.sidecar.redis.sentinels .Values.sidecar.redis.clusterNodes }}
{{- fail "sidecar.redis.sentinels and sidecar.redis.clusterNodes: set one Redis topology, not both" }}
{{- end }}
{{- if and .Values.sidecar.nativeSidecar (semverCompare "<1.29.0-0" .Capabilities.KubeVersion.Version) }}
{{- fail (printf "sidecar.nativeSidecar needs Kubernetes 1.29 or later (this cluster: %s)" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- end }}

{{/*
How the sidecar and the migration Job reach PostgreSQL: DATABASE_URL (and
MIGRATE_DATABASE_URL when a key names it) from the Secret, and the pooler mode.
*/}}
{{- define "hg-auth-sidecar.databaseEnv" -}}
{{- $sec := .Values.secrets -}}
{{- $secretName := required "secrets.existingSecret is required: the name of a Secret holding DATABASE_URL (see docs/kubernetes.md)" $sec.existingSecret -}}
- name: DATABASE_POOLER
  value: {{ .Values.sidecar.databasePooler | quote }}
{{- if $sec.databaseUrlKey }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secretName }}
      key: {{ $sec.databaseUrlKey }}
{{- end }}
{{- if $sec.migrateDatabaseUrlKey }}
- name: MIGRATE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secretName }}
      key: {{ $sec.migrateDatabaseUrlKey }}
      optional: true
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
    - name: MIGRATE_ON_START
      value: {{ $s.migrateOnStart | toString | quote }}
    - name: TRUST_PROXY
      value: {{ $s.trustProxy | toString | quote }}
    - name: DB_POOL_SIZE
      value: {{ int $s.dbPoolSize | quote }}
    {{- include "hg-auth-sidecar.databaseEnv" . | nindent 4 }}
    {{- $sec := .Values.secrets }}
    {{- $secretName := $sec.existingSecret }}
    {{- with $s.redis.sentinels }}
    - name: REDIS_SENTINELS
      value: {{ join "," . | quote }}
    - name: REDIS_SENTINEL_NAME
      value: {{ required "sidecar.redis.sentinelName is required with sidecar.redis.sentinels" $s.redis.sentinelName | quote }}
    {{- end }}
    {{- with $s.redis.clusterNodes }}
    - name: REDIS_CLUSTER_NODES
      value: {{ join "," . | quote }}
    {{- end }}
    {{- if $s.redis.tls }}
    - name: REDIS_TLS
      value: "true"
    {{- end }}
    {{- if $s.redis.sentinelTls }}
    - name: REDIS_SENTINEL_TLS
      value: "true"
    {{- end }}
    {{- if $sec.redisUrlKey }}
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
          optional: true
    {{- end }}
    {{- if $sec.redisSentinelPasswordKey }}
    - name: REDIS_SENTINEL_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ $secretName }}
          key: {{ $sec.redisSentinelPasswordKey }}
          optional: true
    {{- end }}
    {{- if $sec.adminTokenKey }}
    - name: ADMIN_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ $secretName }}
          key: {{ $sec.adminTokenKey }}
          optional: true
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
    {{- with $s.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
