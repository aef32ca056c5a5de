{{/* The chart's name, at most 63 characters. */}}
{{- define "iot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name; a role suffix ("-processors") must still fit in 63 characters. */}}
{{- define "iot.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "iot.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "iot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: iot-pipeline
{{- end -}}

{{/* Selector labels of one role; call with (dict "root" $ "role" "api"). */}}
{{- define "iot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "iot.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "iot.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "iot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "iot.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Where the Kafka CA bundle is mounted (KAFKA_TLS_CA_FILE). */}}
{{- define "iot.kafkaCaDir" -}}/etc/iot-pipeline/kafka-ca{{- end -}}

{{/*
Rules JSON Schema cannot express (they relate two values); rendering fails with the reason.
*/}}
{{- define "iot.validate" -}}
{{- $partitions := int .Values.kafka.partitions -}}
{{- if and .Values.processors.enabled (not .Values.keda.enabled) (gt (int .Values.processors.replicas) $partitions) -}}
{{- fail (printf "processors.replicas (%d) exceeds kafka.partitions (%d): a consumer group gives each partition to one member, so the extra processors would idle" (int .Values.processors.replicas) $partitions) -}}
{{- end -}}
{{- if and .Values.sensors.enabled (gt (int .Values.sensors.replicas) $partitions) -}}
{{- fail (printf "sensors.replicas (%d) exceeds kafka.partitions (%d): the sensors processes share the fleet registry's partitions, so the extra ones would idle" (int .Values.sensors.replicas) $partitions) -}}
{{- end -}}
{{- if and .Values.keda.enabled (gt (int .Values.keda.maxReplicas) $partitions) -}}
{{- fail (printf "keda.maxReplicas (%d) exceeds kafka.partitions (%d): processors beyond the partition count would idle" (int .Values.keda.maxReplicas) $partitions) -}}
{{- end -}}
{{- if and .Values.keda.enabled (gt (int .Values.keda.minReplicas) (int .Values.keda.maxReplicas)) -}}
{{- fail (printf "keda.minReplicas (%d) exceeds keda.maxReplicas (%d)" (int .Values.keda.minReplicas) (int .Values.keda.maxReplicas)) -}}
{{- end -}}
{{- if and .Values.kafka.sasl.mechanism (not .Values.kafka.sasl.secretName) -}}
{{- fail "kafka.sasl.secretName is required with kafka.sasl.mechanism: the Secret holding the SASL username and password" -}}
{{- end -}}
{{- if and .Values.kafka.tls.caSecretName (not .Values.kafka.tls.enabled) -}}
{{- fail "kafka.tls.caSecretName needs kafka.tls.enabled=true" -}}
{{- end -}}
{{- end -}}

{{/* The Kafka scaler's SASL mode for the app's mechanism. */}}
{{- define "iot.kedaSasl" -}}
{{- $modes := dict "scram-sha-256" "scram_sha256" "scram-sha-512" "scram_sha512" "plain" "plaintext" -}}
{{- get $modes .Values.kafka.sasl.mechanism -}}
{{- end -}}
