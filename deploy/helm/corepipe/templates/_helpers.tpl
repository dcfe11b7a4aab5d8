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

{{/* The parts that talk to the queue, each as its own NATS user. */}}
{{- define "corepipe.natsRoles" -}}
agent analyzer api{{ if .Values.notifier.enabled }} notifier{{ end }}
{{- end -}}

{{/* The NATS permissions file of a role, in policies/. */}}
{{- define "corepipe.natsPermissions" -}}
{{- if or (eq . "api") (eq . "notifier") -}}
policies/nats-reader.json
{{- else -}}
policies/nats-{{ . }}.json
{{- end -}}
{{- end -}}

{{/* The Secret of a role's own credentials that the chart makes:
     include "corepipe.roleSecret" (list . "agent") */}}
{{- define "corepipe.roleSecret" -}}
{{ include "corepipe.fullname" (index . 0) }}-{{ index . 1 }}-credentials
{{- end -}}

{{/* The Secret of the NATS URL of a role, with its credentials: the
     chart's user of the bundled NATS, or a given Secret. Empty: no
     credentials, the URL is a flag. */}}
{{- define "corepipe.natsSecret" -}}
{{- $ctx := index . 0 -}}
{{- $role := index . 1 -}}
{{- $own := (index $ctx.Values.nats $role | default dict).existingSecret -}}
{{- if and $ctx.Values.nats.enabled $ctx.Values.nats.perRoleUsers -}}
{{ include "corepipe.roleSecret" . }}
{{- else if $own -}}
{{ $own }}
{{- else if and (not $ctx.Values.nats.enabled) $ctx.Values.nats.existingSecret -}}
{{ $ctx.Values.nats.existingSecret }}
{{- end -}}
{{- end -}}

{{/* --nats=URL, unless the URL holds credentials (then COREPIPE_NATS from a
     Secret, see corepipe.natsEnv): include "corepipe.natsArg" (list . "api") */}}
{{- define "corepipe.natsArg" -}}
{{- $ctx := index . 0 -}}
{{- if not (include "corepipe.natsSecret" .) -}}
{{- if $ctx.Values.nats.enabled -}}
- {{ printf "--nats=nats://%s-nats:4222" (include "corepipe.fullname" $ctx) | quote }}
{{ else -}}
- {{ printf "--nats=%s" (required "nats.url or nats.existingSecret is required without the bundled NATS (nats.enabled)" $ctx.Values.nats.url) | quote }}
{{ end -}}
{{- end -}}
- {{ printf "--nats-replicas=%d" (int (include "corepipe.natsReplicas" $ctx)) | quote }}
{{- end -}}

{{/* How many copies JetStream keeps of each stream and bucket: 3 on a
     bundled cluster of three or more, or nats.streamReplicas for your own
     NATS. */}}
{{- define "corepipe.natsReplicas" -}}
{{- if .Values.nats.enabled -}}
{{- if ge (int (.Values.nats.replicas | default 1)) 3 }}3{{ else }}1{{ end -}}
{{- else -}}
{{- .Values.nats.streamReplicas | default 1 -}}
{{- end -}}
{{- end -}}

{{- define "corepipe.natsEnv" -}}
{{- with include "corepipe.natsSecret" . -}}
- name: COREPIPE_NATS
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: url}
{{- end -}}
{{- end -}}

{{/* The Secret with a role's S3 keys: its own (given, or the chart's user
     of the bundled MinIO, or made from s3.<role>.accessKey), else the
     shared one. */}}
{{- define "corepipe.s3RoleSecret" -}}
{{- $ctx := index . 0 -}}
{{- $role := index . 1 -}}
{{- $own := index $ctx.Values.s3 $role | default dict -}}
{{- if $own.existingSecret -}}
{{ $own.existingSecret }}
{{- else if or $ctx.Values.minio.enabled $own.accessKey -}}
{{ include "corepipe.roleSecret" . }}
{{- else -}}
{{ include "corepipe.s3Secret" $ctx }}
{{- end -}}
{{- end -}}

{{/* The environment of a part that talks to the blob store and the queue:
     include "corepipe.storageEnv" (list . "analyzer") */}}
{{- define "corepipe.storageEnv" -}}
{{- $secret := include "corepipe.s3RoleSecret" . -}}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: AWS_ACCESS_KEY_ID}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: AWS_SECRET_ACCESS_KEY}
{{- with include "corepipe.natsEnv" . }}
{{ . }}
{{- end }}
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

{{/* "true" when the rules ConfigMap is rendered and mounted: owners rules,
or mentions for an enabled notifier; "" otherwise. */}}
{{- define "corepipe.rules" -}}
{{- if or .Values.api.owners (and .Values.notifier.enabled .Values.notifier.slack.mentions) -}}
true
{{- end -}}
{{- end -}}
