{{/* Names: <release>-corepipe, or the release name when it already says corepipe. */}}
{{- define "corepipe.fullname" -}}
{{- if contains "corepipe" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-corepipe" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "corepipe.labels" -}}
app.kubernetes.io/name: corepipe
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: include "corepipe.selector" (list . "api") */}}
{{- define "corepipe.selector" -}}
app.kubernetes.io/name: corepipe
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "corepipe.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "corepipe.agentImage" -}}
{{ .Values.image.agentRepository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "corepipe.blobURL" -}}
{{- if .Values.minio.enabled -}}
s3://{{ .Values.minio.bucket }}/?endpoint={{ include "corepipe.fullname" . }}-minio:9000&insecure=1
{{- else -}}
{{- required "s3.url is required without the bundled MinIO (minio.enabled)" .Values.s3.url -}}
{{- end -}}
{{- end -}}

{{- define "corepipe.s3Secret" -}}
{{- if and (not .Values.minio.enabled) .Values.s3.existingSecret -}}
{{ .Values.s3.existingSecret }}
{{- else -}}
{{ include "corepipe.fullname" . }}-s3
{{- end -}}
{{- end -}}

{{/* --nats=URL, unless the URL is a secret (then COREPIPE_NATS, see corepipe.natsEnv). */}}
{{- define "corepipe.natsArg" -}}
{{- if .Values.nats.enabled -}}
- {{ printf "--nats=nats://%s-nats:4222" (include "corepipe.fullname" .) | quote }}
{{- else if not .Values.nats.existingSecret -}}
- {{ printf "--nats=%s" (required "nats.url or nats.existingSecret is required without the bundled NATS (nats.enabled)" .Values.nats.url) | quote }}
{{- end -}}
{{- end -}}

{{/* The environment every part that talks to the blob store and queue gets. */}}
{{- define "corepipe.storageEnv" -}}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ include "corepipe.s3Secret" . }}, key: AWS_ACCESS_KEY_ID}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ include "corepipe.s3Secret" . }}, key: AWS_SECRET_ACCESS_KEY}
{{- with include "corepipe.natsEnv" . }}
{{ . }}
{{- end }}
{{- end -}}

{{- define "corepipe.natsEnv" -}}
{{- if and (not .Values.nats.enabled) .Values.nats.existingSecret -}}
- name: COREPIPE_NATS
  valueFrom:
    secretKeyRef: {name: {{ .Values.nats.existingSecret }}, key: url}
{{- end -}}
{{- end -}}

{{/* The security context of the non-root parts. */}}
{{- define "corepipe.restricted" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{- define "corepipe.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* A Secret value kept across upgrades: the live one, else generated. */}}
{{- define "corepipe.keep" -}}
{{- $ctx := index . 0 -}}
{{- $name := index . 1 -}}
{{- $key := index . 2 -}}
{{- $live := lookup "v1" "Secret" $ctx.Release.Namespace $name -}}
{{- if and $live (hasKey $live.data $key) -}}
{{- index $live.data $key | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end -}}
