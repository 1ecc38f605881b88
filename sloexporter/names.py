"""Metric names and label conventions shared by the exporter and the SLO presets.

These names are the public contract in CONTRACT.md: the sources export them and the
presets in `sloexporter.sli` query them, so both import them from here.
"""

from __future__ import annotations

PREFIX = "sloexporter_"

#: the SLO detail dashboard; links to one SLO add ?var-service=S&var-slo=N
SLO_DETAIL_DASHBOARD_UID = "sloexporter-slo-detail"

# ArgoCD
ARGOCD_APP_INFO = "sloexporter_argocd_app_info"
ARGOCD_APP_SYNCED = "sloexporter_argocd_app_synced"
ARGOCD_APP_HEALTHY = "sloexporter_argocd_app_healthy"
ARGOCD_APP_SYNC_OPERATIONS = "sloexporter_argocd_app_sync_operations_total"
ARGOCD_APP_LAST_SYNCED = "sloexporter_argocd_app_last_synced_timestamp_seconds"
# Completed operation phases; the exporter initialises each to 0 so increase() sees the first.
ARGOCD_SYNC_PHASES = ("Succeeded", "Failed", "Error")
ARGOCD_SYNC_FAILED_PHASES = ("Failed", "Error")

# Backups
BACKUP_LAST_SUCCESS = "sloexporter_backup_last_success_timestamp_seconds"
BACKUP_LAST_ATTEMPT = "sloexporter_backup_last_attempt_timestamp_seconds"
BACKUP_EXPECTED_INTERVAL = "sloexporter_backup_expected_interval_seconds"
BACKUP_LAST_DURATION = "sloexporter_backup_last_duration_seconds"
BACKUP_RUNS = "sloexporter_backup_runs_total"
BACKUP_LABEL = "sloexporter.dev/backup"

# Certificates
CERT_NOT_AFTER = "sloexporter_certificate_not_after_timestamp_seconds"
CERT_NOT_BEFORE = "sloexporter_certificate_not_before_timestamp_seconds"
CERT_READY = "sloexporter_certificate_ready"
TLS_PROBE_SUCCESS = "sloexporter_tls_probe_success"
TLS_PROBE_DURATION = "sloexporter_tls_probe_duration_seconds"
# 1 per failing target, reason: hostname_mismatch, self_signed, unknown_ca, expired,
# expired_intermediate, expired_root, not_yet_valid, verify_failed, timeout, connection_refused,
# dns_error, connection_error, handshake_error, invalid_target (a discovered host that cannot
# be probed, e.g. a DNS label over 63 characters).
TLS_PROBE_FAILURE_INFO = "sloexporter_tls_probe_failure_info"

# HTTP probes (golden signals). `code` is the HTTP status, or "error" when no response came.
PROBE_REQUESTS = "sloexporter_probe_requests_total"
PROBE_DURATION = "sloexporter_probe_duration_seconds"
PROBE_ERROR_CODE = "error"
# 1 when the last probe got one of the target's expected status codes (default 2xx/3xx).
PROBE_SUCCESS = "sloexporter_probe_success"
# Annotations that opt a Service into HTTP probing (values are strings).
PROBE_ANNOTATION = "sloexporter.dev/probe"  # "true" to probe
PROBE_PATH_ANNOTATION = "sloexporter.dev/probe-path"  # default "/"
PROBE_PORT_ANNOTATION = "sloexporter.dev/probe-port"  # number or port name; default 1st
PROBE_SCHEME_ANNOTATION = "sloexporter.dev/probe-scheme"  # http (default) or https
PROBE_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)

# Self-monitoring
SOURCE_UP = "sloexporter_source_up"
WATCH_EVENTS = "sloexporter_watch_events_total"
WATCH_RESTARTS = "sloexporter_watch_restarts_total"
SOURCE_LAST_EVENT = "sloexporter_source_last_event_timestamp_seconds"
SKIPPED_OBJECTS = "sloexporter_skipped_objects_total"
# 1, labelled with version, python_version, python_implementation; process_* come beside it
BUILD_INFO = "sloexporter_build_info"
# Chunks of /metrics served gzip-compressed from the cache (hit) or compressed anew (miss).
GZIP_CHUNKS = "sloexporter_gzip_chunks_total"
PROCESS_PREFIX = "process_"

# The status service (serve --prometheus-url)
STATUS_REFRESH_QUERIES = "sloexporter_status_refresh_queries"
STATUS_QUERIES = "sloexporter_status_queries_total"
STATUS_REFRESHES = "sloexporter_status_refreshes_total"
STATUS_REFRESH_DURATION = "sloexporter_status_refresh_duration_seconds"
STATUS_UP = "sloexporter_status_up"
STATUS_LAST_SUCCESS = "sloexporter_status_last_success_timestamp_seconds"
STATUS_SLOS = "sloexporter_status_slos"

# The controller (serve --controller)
CONTROLLER_RECONCILES = "sloexporter_controller_reconciles_total"
CONTROLLER_RECONCILE_DURATION = "sloexporter_controller_reconcile_duration_seconds"
CONTROLLER_LEADER = "sloexporter_controller_leader"
CONTROLLER_RESOURCES = "sloexporter_controller_resources"
