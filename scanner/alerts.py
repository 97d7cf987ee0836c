"""Alert rules over the run history, and their notifications: the log and a webhook.

A rule fires for a run when its condition holds for the run's value of the
metric. `above`/`below` compare with a threshold. `rise`/`fall` compare with
the value `runs` successful runs earlier and fire when the change is larger
than the given amount. Runs without a value for the metric (no new objects,
failed runs, a scan without a profile for `synthetic_share`) are left out of
the comparison, and a rule with too few earlier values does not fire.
"""

from __future__ import annotations

import json
import logging
import math
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from scanner.history import SUCCESSFUL_STATUSES
from scanner.monitor_config import AlertRule

logger = logging.getLogger(__name__)

WEBHOOK_RETRY_DELAY_S = 2.0


@dataclass(frozen=True)
class Alert:
    """A rule that fired for one run, with the values it compared."""

    monitor: str
    run_id: str
    rule: str
    metric: str
    condition: str
    threshold: float
    value: float
    baseline: float | None
    baseline_run_id: str | None
    message: str

    def payload(self, result_url: str | None) -> dict:
        """Return the webhook's JSON body for this alert."""
        return {"event": "corpus-scanner.alert", **asdict(self), "result_url": result_url}


def evaluate_rules(monitor: str, rules: list[AlertRule], earlier: list[dict], current: dict) -> list[Alert]:
    """Return the alerts that `rules` fire for the run `current`, given the `earlier` runs (oldest first)."""
    alerts = []
    for rule in rules:
        alert = _evaluate(monitor, rule, earlier, current)
        if alert is not None:
            alerts.append(alert)
    return alerts


def _evaluate(monitor: str, rule: AlertRule, earlier: list[dict], current: dict) -> Alert | None:
    value = metric_value(current, rule.metric)
    if value is None:
        return None
    baseline = baseline_run = None
    if rule.condition == "above":
        fired = value > rule.threshold
    elif rule.condition == "below":
        fired = value < rule.threshold
    else:
        with_values = [row for row in earlier if row["status"] in SUCCESSFUL_STATUSES]
        with_values = [row for row in with_values if metric_value(row, rule.metric) is not None]
        if len(with_values) < rule.runs:
            logger.debug("rule %s: %d earlier values, needs %d", rule.describe(), len(with_values), rule.runs)
            return None
        baseline_run = with_values[-rule.runs]
        baseline = metric_value(baseline_run, rule.metric)
        change = value - baseline
        fired = change > rule.threshold if rule.condition == "rise" else -change > rule.threshold
    if not fired:
        return None

    if baseline is None:
        message = f"{rule.metric} is {value:.4g}, {rule.condition} the threshold {rule.threshold:g}"
    else:
        message = (
            f"{rule.metric} is {value:.4g}, a {rule.condition} of {abs(value - baseline):.4g} from {baseline:.4g} "
            f"{rule.runs} runs earlier (run {baseline_run['run_id']}), more than {rule.threshold:g}"
        )
    return Alert(
        monitor=monitor,
        run_id=current["run_id"],
        rule=rule.describe(),
        metric=rule.metric,
        condition=rule.condition,
        threshold=rule.threshold,
        value=value,
        baseline=baseline,
        baseline_run_id=None if baseline_run is None else baseline_run["run_id"],
        message=message,
    )


def metric_value(row: dict, metric: str) -> float | None:
    """Return a run row's value of `metric` as a float, or None when the run has none."""
    if row.get("status") not in SUCCESSFUL_STATUSES:
        return None
    value = row.get(metric)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def send_webhook(url: str, alert: Alert, result_url: str | None, timeout: float, attempts: int) -> bool:
    """POST the alert as JSON to `url`; retry on connection errors, timeouts and 5xx responses.

    Returns True when the server responded with a 2xx status. Failures are logged with the
    URL's scheme and host only, because webhook paths often contain a token.
    """
    body = json.dumps(alert.payload(result_url)).encode("utf-8")
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "corpus-scanner-monitor"},
    )
    host = _host_of(url)
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                logger.info("webhook %s accepted alert %r (HTTP %d)", host, alert.rule, response.status)
                return True
        except urllib.error.HTTPError as error:
            logger.error("webhook %s rejected alert %r: HTTP %d (attempt %d of %d)", host, alert.rule, error.code, attempt, attempts)
            if error.code < 500:
                return False
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            logger.error("webhook %s failed for alert %r: %s (attempt %d of %d)", host, alert.rule, reason, attempt, attempts)
        if attempt < attempts:
            time.sleep(WEBHOOK_RETRY_DELAY_S * attempt)
    return False


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
