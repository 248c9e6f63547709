{{/* The labels Helm's own objects carry on top of the manifests' (e2e/test_helm.py allows only these). */}}
{{- define "cardpool.releaseLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* What selects the operator's pods: the Deployment, its PodDisruptionBudget, the metrics Service. */}}
{{- define "cardpool.selectorLabels" -}}
app.kubernetes.io/name: cardpool
app.kubernetes.io/component: operator
{{- end }}

{{- define "cardpool.operatorLabels" -}}
{{ include "cardpool.selectorLabels" . }}
{{ include "cardpool.releaseLabels" . }}
{{- end }}

{{/* The operator's ServiceAccount, as manifests/operator/rbac.yaml names it. */}}
{{- define "cardpool.serviceAccount" -}}
cardpool-operator
{{- end }}

{{- define "cardpool.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
{{- end }}

{{/*
The objects of chart files that `python -m cardpool.api.crdgen` copies from crds/ and manifests/ (it fails
--check when a copy differs from its source, so the chart cannot drift from the kustomize install): each
moved to the release namespace and given the release's labels, and the annotations given.
  root: the chart context; glob: the files; replace: exact text to replace in them (each must occur);
  annotations: added to every object.
*/}}
{{- define "cardpool.fromFiles" -}}
{{- $root := .root -}}
{{- $files := $root.Files.Glob .glob -}}
{{- if not $files }}{{ fail (printf "no chart files match %s: run python -m cardpool.api.crdgen" .glob) }}{{ end -}}
{{- $replace := .replace | default (dict) -}}
{{- $found := dict -}}
{{- $labels := include "cardpool.releaseLabels" $root | fromYaml -}}
{{- range $path, $_ := $files }}
{{- $text := $root.Files.Get $path }}
{{- range $old, $new := $replace }}
{{- if contains $old $text }}{{ $_ := set $found $old true }}{{ end }}
{{- $text = replace $old $new $text }}
{{- end }}
{{- range $doc := regexSplit "(?m)^---[ \t]*$" $text -1 }}
{{- $obj := fromYaml $doc }}
{{- if hasKey $obj "Error" }}{{ fail (printf "%s: %s" $path $obj.Error) }}{{ end }}
{{- if $obj.kind }}
{{- $meta := $obj.metadata }}
{{- if $meta.namespace }}{{ $_ := set $meta "namespace" $root.Release.Namespace }}{{ end }}
{{- range $subject := $obj.subjects | default (list) }}
{{- if eq $subject.kind "ServiceAccount" }}{{ $_ := set $subject "namespace" $root.Release.Namespace }}{{ end }}
{{- end }}
{{- $_ := set $meta "labels" (merge ($meta.labels | default (dict)) $labels) }}
{{- with $.annotations }}{{ $_ := set $meta "annotations" (merge ($meta.annotations | default (dict)) .) }}{{ end }}
---
{{ toYaml $obj }}
{{- end }}
{{- end }}
{{- end }}
{{- range $old, $_ := $replace }}
{{- if not (hasKey $found $old) }}{{ fail (printf "%s: no file has %q to replace" $.glob $old) }}{{ end }}
{{- end }}
{{- end }}
