{{/* Names: <release>-<chart> unless overridden, cut to 63 characters (DNS label). */}}
{{- define "hello-stack.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hello-stack.fullname" -}}
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

{{/* <fullname>-<component>, cut so the whole stays a DNS label. */}}
{{- define "hello-stack.component" -}}
{{- printf "%s-%s" (include "hello-stack.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-") .component }}
{{- end }}

{{- define "hello-stack.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: {{ include "hello-stack.name" .root }}
{{- if .root.Chart.AppVersion }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{- end }}
{{ include "hello-stack.selectorLabels" . }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "hello-stack.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hello-stack.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "hello-stack.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hello-stack.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "hello-stack.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag | toString) }}
{{- end }}

{{/* Pod-level hardening shared by every pod. */}}
{{- define "hello-stack.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level hardening shared by every container. */}}
{{- define "hello-stack.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Seconds in a hello/sidecar duration ("500ms", "3s", "2m"); fails the render on anything else.
Used to check terminationGracePeriodSeconds against the drain settings.
*/}}
{{- define "hello-stack.durationSeconds" -}}
{{- $d := toString . -}}
{{- if regexMatch "^[0-9]+ms$" $d -}}
{{- divf (trimSuffix "ms" $d | float64) 1000.0 -}}
{{- else if regexMatch "^[0-9]+s$" $d -}}
{{- trimSuffix "s" $d | float64 -}}
{{- else if regexMatch "^[0-9]+m$" $d -}}
{{- mulf (trimSuffix "m" $d | float64) 60.0 -}}
{{- else -}}
{{- fail (printf "duration %q: expected a whole number with ms, s or m" $d) -}}
{{- end -}}
{{- end }}

{{/* The sidecar container: a native sidecar in hello pods or the container of its Deployment. */}}
{{- define "hello-stack.sidecarContainer" -}}
- name: sidecar
  image: {{ include "hello-stack.image" (dict "root" .root "image" .root.Values.sidecar.image) }}
  imagePullPolicy: {{ .root.Values.sidecar.image.pullPolicy }}
  {{- if .native }}
  # Native sidecar: starts before hello, stops after it (so it logs the drain), restarts alone.
  restartPolicy: Always
  {{- end }}
  env:
    - name: SIDECAR_TARGET
      value: {{ .target | quote }}
    - name: SIDECAR_INTERVAL
      value: {{ .root.Values.sidecar.interval | quote }}
    - name: SIDECAR_WINDOW
      value: {{ .root.Values.sidecar.window | quote }}
    - name: SIDECAR_FAIL_AFTER
      value: {{ .root.Values.sidecar.failAfter | quote }}
    - name: SIDECAR_RECOVER_AFTER
      value: {{ .root.Values.sidecar.recoverAfter | quote }}
    - name: SIDECAR_LOG_FORMAT
      value: {{ .root.Values.sidecar.logFormat | quote }}
    - name: SIDECAR_METRICS_LISTEN
      value: {{ printf ":%v" .root.Values.sidecar.metricsPort | quote }}
    {{- with .root.Values.sidecar.probes }}
    - name: SIDECAR_PROBES
      value: {{ join "," . | quote }}
    {{- end }}
    {{- with .root.Values.sidecar.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: sidecar-metrics
      containerPort: {{ .root.Values.sidecar.metricsPort }}
      protocol: TCP
  # Its own metrics server answering proves the loop is turning.
  livenessProbe:
    httpGet:
      path: /metrics
      port: sidecar-metrics
    periodSeconds: 20
    timeoutSeconds: 2
    failureThreshold: 3
  resources:
    {{- toYaml .root.Values.sidecar.resources | nindent 4 }}
  securityContext:
    {{- include "hello-stack.containerSecurityContext" (dict "uid" 65532) | nindent 4 }}
{{- end }}
