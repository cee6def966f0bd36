{{/* Names, labels and the environment shared by the templates. */}}

{{- define "poise.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "poise.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "poise.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "poise.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The name of one component's objects: (dict "root" $ "component" "vision"). */}}
{{- define "poise.componentName" -}}
{{- printf "%s-%s" (include "poise.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "poise.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "poise.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Selector labels (never the chart version: selectors cannot change on upgrade). */}}
{{- define "poise.selectorLabels" -}}
app.kubernetes.io/name: {{ include "poise.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "poise.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "poise.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: poise
{{- end -}}

{{/* <registry>/poise-<component>:<tag>. */}}
{{- define "poise.image" -}}
{{- printf "%s/poise-%s:%s" .root.Values.image.registry .component (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}

{{/* POISE_BUS_URL: kafka://bootstrap?partitions=..&replication=..&retention_ms=..&media_retention_ms=..[&prefix=..]
(poise_common.bus.create_bus). */}}
{{- define "poise.busUrl" -}}
{{- $k := .Values.kafka -}}
{{- $url := printf "kafka://%s?partitions=%d&replication=%d&retention_ms=%d&media_retention_ms=%d" $k.bootstrapServers (int $k.partitions) (int $k.replication) (int64 $k.retentionMs) (int64 $k.mediaRetentionMs) -}}
{{- if $k.topicPrefix }}{{ $url = printf "%s&prefix=%s" $url $k.topicPrefix }}{{ end -}}
{{- $url -}}
{{- end -}}

{{/* The topic names with the prefix, as the services create them (poise_common.messages.Topics). */}}
{{- define "poise.topic" -}}
{{- printf "%s%s" .root.Values.kafka.topicPrefix .topic -}}
{{- end -}}

{{/*
Which secret setting each process reads (its `reads=[...]` in each service's __main__.py; "migrate" is
the migration Job). tests/deploy checks this table against the code.
*/}}
{{- define "poise.secretSettings" -}}
databaseUrl: {env: POISE_DATABASE_URL, readers: [gateway, fusion, migrate]}
invitationSecret: {env: POISE_INVITATION_SECRET, readers: [gateway]}
smtpPassword: {env: POISE_SMTP__PASSWORD, readers: [fusion]}
masterKeys: {env: POISE_MASTER_KEYS, readers: [gateway, fusion]}
{{- end -}}

{{/* env entries from existingSecret for one process: (dict "root" $ "component" "fusion"). */}}
{{- define "poise.secretEnv" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- range $key, $setting := fromYaml (include "poise.secretSettings" $root) }}
{{- $secretKey := get $root.Values.secrets.keys $key -}}
{{- if and $secretKey (has $component $setting.readers) }}
- name: {{ $setting.env }}
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.secrets.existingSecret }}
      key: {{ $secretKey }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Where a framework ConfigMap is mounted, when there is one. */}}
{{- define "poise.frameworksDir" -}}/etc/poise/frameworks{{- end -}}

{{- define "poise.frameworksConfigMap" -}}
{{- if .Values.frameworks.existingConfigMap -}}
{{- .Values.frameworks.existingConfigMap -}}
{{- else if .Values.frameworks.files -}}
{{- include "poise.componentName" (dict "root" . "component" "frameworks") -}}
{{- end -}}
{{- end -}}

{{/* Triton's gRPC address for the analysers. */}}
{{- define "poise.tritonUrl" -}}
{{- printf "triton://%s:%d" (include "poise.componentName" (dict "root" . "component" "triton")) (int .Values.triton.ports.grpc) -}}
{{- end -}}

{{/* The analysers: scaled on Kafka lag, each with its consumer group and topic (GROUP in each poise_<name>/service.py). */}}
{{- define "poise.analysers" -}}
vision: {group: vision, topic: media.frames}
audio: {group: audio, topic: media.audio}
nlp: {group: nlp, topic: transcripts}
{{- end -}}

{{/* prometheus.io annotations (a YAML map, maybe empty) for a pod whose metrics are on port .port. */}}
{{- define "poise.scrapeAnnotations" -}}
{{- if .root.Values.metrics.annotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: {{ .path | default "/metrics" | quote }}
{{- end -}}
{{- end -}}
