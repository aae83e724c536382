#!/usr/bin/env python3
"""Generates deploy/grafana/otpgate-dashboard.json (run from the repository root); edit this, not the JSON."""
import json
R = "$__rate_interval"
SEL = 'instance=~"$instance"'
panels = []
y = 0
pid = 1
def row(title):
    global y, pid
    panels.append({"type": "row", "title": title, "id": pid, "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
    pid += 1; y += 1
def ts(title, targets, x, w=12, h=8, unit="short", desc="", kind="timeseries", max_=None):
    global pid
    p = {"type": kind, "title": title, "id": pid, "description": desc,
         "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "gridPos": {"h": h, "w": w, "x": x, "y": y},
         "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
         "options": {"legend": {"displayMode": "table", "placement": "right", "calcs": ["mean", "lastNotNull"]}} if kind == "timeseries" else {},
         "targets": [{"refId": chr(65 + i), "expr": e, "legendFormat": l, "datasource": {"type": "prometheus", "uid": "${datasource}"}} for i, (e, l) in enumerate(targets)]}
    if max_ is not None:
        p["fieldConfig"]["defaults"]["max"] = max_
        p["fieldConfig"]["defaults"]["min"] = 0
    panels.append(p); pid += 1
def nextrow(h=8):
    global y; y += h

row("Requests")
ts("Request rate by route", [(f'sum by (route) (rate(otpgate_http_requests_total{{{SEL}}}[{R}]))', "{{route}}")], 0, unit="reqps")
ts("Latency by route (p50, p99)", [
    (f'histogram_quantile(0.5, sum by (route, le) (rate(otpgate_http_request_duration_seconds_bucket{{{SEL}}}[{R}])))', "p50 {{route}}"),
    (f'histogram_quantile(0.99, sum by (route, le) (rate(otpgate_http_request_duration_seconds_bucket{{{SEL}}}[{R}])))', "p99 {{route}}")], 12, unit="s")
nextrow()
ts("Responses by status class", [(f'sum by (status) (rate(otpgate_http_requests_total{{{SEL}}}[{R}]))', "{{status}}")], 0, unit="reqps")
ts("5xx ratio", [(f'sum(rate(otpgate_http_requests_total{{{SEL},status=~"5.."}}[{R}])) / clamp_min(sum(rate(otpgate_http_requests_total{{{SEL}}}[{R}])), 1e-9)', "5xx")], 12, unit="percentunit")
nextrow()
ts("Rate-limited requests by scope", [(f'sum by (scope) (rate(otpgate_rate_limited_total{{{SEL}}}[{R}]))', "{{scope}}")], 0, w=24, h=6, unit="reqps")
nextrow(6)

row("Verification funnel: sent → delivered → approved")
ts("Funnel", [
    (f'sum(rate(otpgate_verifications_started_total{{{SEL},outcome=~"created|resent"}}[{R}]))', "sent (created + resent)"),
    (f'sum(rate(otpgate_messages_total{{{SEL},outcome="accepted"}}[{R}]))', "accepted by a provider"),
    (f'sum(rate(otpgate_delivery_receipts_total{{{SEL},status="delivered"}}[{R}]))', "delivered (receipts)"),
    (f'sum(rate(otpgate_verification_checks_total{{{SEL},outcome="approved"}}[{R}]))', "approved")], 0, unit="ops",
    desc="Per second. Receipts arrive only from providers that send them; approvals have no channel or country label.")
ts("Conversion", [
    (f'sum(rate(otpgate_verification_checks_total{{{SEL},outcome="approved"}}[1h])) / clamp_min(sum(rate(otpgate_verifications_started_total{{{SEL},outcome="created"}}[1h])), 1e-9)', "approved / created (1h)"),
    (f'sum(rate(otpgate_delivery_receipts_total{{{SEL},status="delivered"}}[1h])) / clamp_min(sum(rate(otpgate_messages_total{{{SEL},outcome="accepted"}}[1h])), 1e-9)', "delivered / accepted (1h)")], 12, unit="percentunit", max_=1)
nextrow()
ts("Verifications started by channel and outcome", [(f'sum by (channel, outcome) (rate(otpgate_verifications_started_total{{{SEL}}}[{R}]))', "{{channel}} {{outcome}}")], 0, unit="ops")
ts("Checks by outcome", [(f'sum by (outcome) (rate(otpgate_verification_checks_total{{{SEL}}}[{R}]))', "{{outcome}}")], 12, unit="ops")
nextrow()
ts("Messages accepted by country code (top 10)", [(f'topk(10, sum by (country_code) (rate(otpgate_messages_total{{{SEL},outcome="accepted"}}[{R}])))', "+{{country_code}}")], 0, unit="ops")
ts("Provider failure ratio by country code", [(f'sum by (country_code) (rate(otpgate_messages_total{{{SEL},outcome=~"failed|refused"}}[{R}])) / clamp_min(sum by (country_code) (rate(otpgate_messages_total{{{SEL}}}[{R}])), 1e-9)', "+{{country_code}}")], 12, unit="percentunit", max_=1)
nextrow()
ts("Sends by country code vs yesterday (pumping)", [(f'topk(10, sum by (country_code) (rate(otpgate_messages_total{{{SEL},outcome="accepted"}}[1h])) / clamp_min(sum by (country_code) (rate(otpgate_messages_total{{{SEL},outcome="accepted"}}[1h] offset 1d)), 1e-9))', "+{{country_code}}")], 0, unit="x",
    desc="A calling code far above its level of the same hour yesterday is an SMS-pumping suspect (alert OtpgatePrefixSendSpike).")
ts("SMS segments by encoding", [(f'sum by (encoding) (rate(otpgate_message_segments_total{{{SEL}}}[{R}]))', "{{encoding}}")], 12, unit="ops")
nextrow()

row("Abuse protection (docs/abuse.md)")
ts("Abuse blocks started by country and rule", [(f'sum by (country, rule) (increase(otpgate_abuse_blocks_total{{{SEL}}}[1h]))', "{{country}} {{rule}}")], 0, unit="short",
    desc="Blocks started in the last hour: a prefix or country paused as suspected SMS pumping, or a daily cap reached. Each block counts once; GET /v1/usage lists the ones running per account.")
ts("Sends refused by abuse protection, by rule", [(f'sum by (outcome) (rate(otpgate_verifications_started_total{{{SEL},outcome=~"geo-permission|number-type|suspected-pumping|daily-message-cap"}}[{R}]))', "{{outcome}}")], 12, unit="ops",
    desc="Every refusal (nothing stored, sent or counted): geo permission and number type (422), pumping cool-downs and daily caps (429).")
nextrow()
ts("Conversion by country (approved / admitted, 1h, top 10 by sends)", [(f'sum by (country_code) (rate(otpgate_verification_approvals_total{{{SEL}}}[1h])) / clamp_min(sum by (country_code) (rate(otpgate_sends_admitted_total{{{SEL}}}[1h])), 1e-9) and on (country_code) topk(10, sum by (country_code) (rate(otpgate_sends_admitted_total{{{SEL}}}[1h])))', "{{country_code}}")], 0, unit="percentunit", max_=1,
    desc="Approvals per admitted send by destination country (ISO code; other: non-geographic or unknown). A country whose conversion falls while its sends rise is the pumping guard's signal; a block follows once a prefix or the country crosses its rules.")
ts("Sends admitted by country (top 10)", [(f'topk(10, sum by (country_code) (rate(otpgate_sends_admitted_total{{{SEL}}}[{R}])))', "{{country_code}}")], 12, unit="ops")
nextrow()

row("Channels (sms, whatsapp, call)")
ts("Provider attempts by channel and outcome", [(f'sum by (channel, outcome) (rate(otpgate_messages_total{{{SEL}}}[{R}]))', "{{channel}} {{outcome}}")], 0, w=8, unit="ops",
    desc="Every provider attempt by the channel it carried (alert OtpgateChannelFailing when one channel fails on every provider).")
ts("Provider latency by channel (p95)", [(f'histogram_quantile(0.95, sum by (channel, le) (rate(otpgate_provider_request_duration_seconds_bucket{{{SEL}}}[{R}])))', "p95 {{channel}}")], 8, w=8, unit="s",
    desc="Placing a call is a different API from sending a text: compare them apart.")
ts("Conversion by channel (approved / created, 1h)", [(f'sum by (channel) (rate(otpgate_verification_approvals_total{{{SEL}}}[1h])) / clamp_min(sum by (channel) (rate(otpgate_verifications_started_total{{{SEL},outcome="created"}}[1h])), 1e-9)', "{{channel}}")], 16, w=8, unit="percentunit", max_=1,
    desc="Approvals per verification created, by the channel its code went out on.")
nextrow()

row("Providers")
ts("Provider attempts by outcome", [(f'sum by (provider, outcome) (rate(otpgate_messages_total{{{SEL}}}[{R}]))', "{{provider}} {{outcome}}")], 0, unit="ops")
ts("Provider latency (p50, p95)", [
    (f'histogram_quantile(0.5, sum by (provider, le) (rate(otpgate_provider_request_duration_seconds_bucket{{{SEL}}}[{R}])))', "p50 {{provider}}"),
    (f'histogram_quantile(0.95, sum by (provider, le) (rate(otpgate_provider_request_duration_seconds_bucket{{{SEL}}}[{R}])))', "p95 {{provider}}")], 12, unit="s")
nextrow()
ts("Circuit breaker state (0 closed, 1 half-open, 2 open)", [(f'max by (provider) (otpgate_provider_breaker_state{{{SEL}}})', "{{provider}}")], 0, max_=2)
ts("Delivery receipts by provider and status", [(f'sum by (provider, status) (rate(otpgate_delivery_receipts_total{{{SEL}}}[{R}]))', "{{provider}} {{status}}")], 12, unit="ops")
nextrow()

row("Queue")
ts("Queue depth", [(f'sum by (instance) (otpgate_dispatch_queue_depth{{{SEL}}})', "{{instance}}")], 0, w=8)
ts("Oldest queued message", [(f'max by (instance) (otpgate_dispatch_oldest_message_age_seconds{{{SEL}}})', "{{instance}}")], 8, w=8, unit="s")
ts("Dead letters and redeliveries", [
    (f'sum(increase(otpgate_dead_letters_total{{{SEL}}}[{R}]))', "dead letters"),
    (f'sum(increase(otpgate_messages_redelivered_total{{{SEL}}}[{R}]))', "redelivered")], 16, w=8)
nextrow()

row("Store and caches")
ts("Store (Redis) errors by operation", [(f'sum by (operation) (rate(otpgate_store_errors_total{{{SEL}}}[{R}]))', "{{operation}}")], 0, w=8, unit="ops")
ts("Cache hit ratio", [(f'sum by (cache) (rate(otpgate_cache_lookups_total{{{SEL},result="hit"}}[{R}])) / clamp_min(sum by (cache) (rate(otpgate_cache_lookups_total{{{SEL}}}[{R}])), 1e-9)', "{{cache}}")], 8, w=8, unit="percentunit", max_=1)
ts("Invalidation link up / cache flushes", [
    (f'min by (instance) (otpgate_invalidation_link_up{{{SEL}}})', "link up {{instance}}"),
    (f'sum(increase(otpgate_cache_flushes_total{{{SEL}}}[{R}]))', "flushes")], 16, w=8)
nextrow()
ts("Instances up", [('up{job="otpgate"}', "{{instance}}")], 0, w=8, h=6)
ts("Login decisions", [(f'sum by (decision, reason) (rate(otpgate_login_decisions_total{{{SEL}}}[{R}]))', "{{decision}} {{reason}}")], 8, w=8, h=6, unit="ops")
ts("Trusted-device checks", [(f'sum by (result) (rate(otpgate_trusted_device_checks_total{{{SEL}}}[{R}]))', "{{result}}")], 16, w=8, h=6, unit="ops")

dashboard = {
    "title": "otpgate",
    "uid": "otpgate-overview",
    "description": "otpgate: requests, the verification funnel, providers, queue, store and caches. Metric names: src/metrics.rs.",
    "tags": ["otpgate", "2fa", "sms"],
    "timezone": "utc",
    "schemaVersion": 39,
    "version": 1,
    "editable": True,
    "refresh": "30s",
    "time": {"from": "now-6h", "to": "now"},
    "templating": {"list": [
        {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus", "current": {}, "hide": 0},
        {"name": "instance", "label": "Instance", "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "query": {"query": "label_values(otpgate_http_requests_total, instance)", "refId": "instance"},
         "definition": "label_values(otpgate_http_requests_total, instance)",
         "includeAll": True, "multi": True, "allValue": ".*", "current": {"text": "All", "value": "$__all"}, "refresh": 2, "hide": 0},
    ]},
    "annotations": {"list": []},
    "panels": panels,
}
open("deploy/grafana/otpgate-dashboard.json", "w").write(json.dumps(dashboard, indent=2) + "\n")
