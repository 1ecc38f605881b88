{{- define "sloexporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sloexporter.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "sloexporter.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "sloexporter.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sloexporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sloexporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sloexporter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "sloexporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "sloexporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sloexporter.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sloexporter.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The serve config: values.config with the chart's listen address, in-cluster access, and
the top-level `namespaces` filled into every source that names none of its own.
*/}}
{{- define "sloexporter.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%d" (int .Values.service.port)) -}}
{{- $_ := set $cfg "cluster" (dict "mode" "in-cluster") -}}
{{- range $name, $src := $cfg.sources -}}
{{- if and (not $src.namespaces) $.Values.namespaces -}}
{{- $_ := set $src "namespaces" $.Values.namespaces -}}
{{- end -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
RBAC: what the enabled sources list and watch, as YAML {cluster: [rules], namespaced:
{ns: [rules]}}. Mirrors each source's `resources` in sloexporter/sources/*.py; a test
builds the exporter from the rendered config and compares.
*/}}
{{- define "sloexporter.rbacRules" -}}
{{- $cfg := include "sloexporter.config" . | fromYaml -}}
{{- $src := $cfg.sources -}}
{{- $grants := list -}}
{{- if $src.argocd.enabled -}}
{{- $grants = append $grants (dict "group" "argoproj.io" "resources" (list "applications") "namespaces" $src.argocd.namespaces) -}}
{{- end -}}
{{- if $src.backups.enabled -}}
{{- $grants = append $grants (dict "group" "batch" "resources" (list "cronjobs" "jobs") "namespaces" $src.backups.namespaces) -}}
{{- if $src.backups.velero -}}
{{- $grants = append $grants (dict "group" "velero.io" "resources" (list "backups" "schedules") "namespaces" $src.backups.namespaces) -}}
{{- end -}}
{{- end -}}
{{- if $src.certificates.enabled -}}
{{- if $src.certificates.cert_manager -}}
{{- $grants = append $grants (dict "group" "cert-manager.io" "resources" (list "certificates") "namespaces" $src.certificates.namespaces) -}}
{{- end -}}
{{- if $src.certificates.tls_secrets -}}
{{- $grants = append $grants (dict "group" "" "resources" (list "secrets") "namespaces" (default $src.certificates.namespaces $src.certificates.secret_namespaces)) -}}
{{- end -}}
{{- if $src.certificates.ingresses -}}
{{- $grants = append $grants (dict "group" "networking.k8s.io" "resources" (list "ingresses") "namespaces" $src.certificates.namespaces) -}}
{{- end -}}
{{- end -}}
{{- if $src.services.enabled -}}
{{- $grants = append $grants (dict "group" "" "resources" (list "services") "namespaces" $src.services.namespaces) -}}
{{- end -}}
{{- $cluster := list -}}
{{- $namespaced := dict -}}
{{- range $grants -}}
{{- /* list and watch are all an informer does: no get (for Secrets, get would only widen
     what a leaked token reads) */ -}}
{{- $rule := dict "apiGroups" (list .group) "resources" .resources "verbs" (list "list" "watch") -}}
{{- if .namespaces -}}
{{- range $ns := .namespaces -}}
{{- $_ := set $namespaced $ns (append (get $namespaced $ns | default list) $rule) -}}
{{- end -}}
{{- else -}}
{{- $cluster = append $cluster $rule -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "cluster" $cluster "namespaced" $namespaced) -}}
{{- end -}}

{{- define "sloexporter.args" -}}
- serve
- --config=/etc/sloexporter/config.yaml
- --log-level={{ .Values.logLevel }}
{{- include "sloexporter.controllerArgs" . }}
{{- end -}}

{{- /* serve --controller's options, one list item each */ -}}
{{- define "sloexporter.controllerArgs" -}}
{{- with .Values.controller }}{{ if .enabled }}
{{- if not .namespaces }}{{ fail "controller.namespaces: list the namespaces the controller may write to (write access is granted only there)" }}{{ end }}
- --controller
{{- range .namespaces }}
- --controller-namespace={{ . }}
{{- end }}
{{- range $k, $v := .ruleLabels }}
- --controller-rule-labels={{ $k }}={{ $v }}
{{- end }}
- --controller-resync={{ .resyncSeconds }}
- --lease-namespace={{ $.Release.Namespace }}
- --lease-name={{ include "sloexporter.fullname" $ }}-controller
- --lease-duration={{ .leaseDuration }}
{{- if .sloth }}
- --controller-sloth
{{- end }}
{{- if .pyrra }}
- --controller-pyrra
{{- end }}
{{- if .dashboards }}
- --controller-dashboards
- --controller-dashboard-label={{ $.Values.dashboards.label }}={{ $.Values.dashboards.labelValue }}
{{- end }}
{{- end }}{{ end }}
{{- end -}}
