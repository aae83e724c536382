"""The dashboard and the alert rules use only metric names that src/metrics.rs defines.

A renamed metric would otherwise leave an empty panel or an alert that can never fire.
"""

import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFINED = set(re.findall(r'"(otpgate_[a-z0-9_]+)"', (ROOT / "src/metrics.rs").read_text()))
SUFFIXES = ("_bucket", "_sum", "_count")


def used_names(text):
    names = set()
    for name in re.findall(r"\botpgate_[a-z0-9_]+", text):
        for suffix in SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] in DEFINED:
                name = name[: -len(suffix)]
        names.add(name)
    return names


def main():
    dashboard_path = ROOT / "deploy/grafana/otpgate-dashboard.json"
    dashboard = json.loads(dashboard_path.read_text())
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    assert exprs, "the dashboard has no queries"
    problems = []
    for source, text in [
        ("dashboard", "\n".join(exprs)),
        ("alerts", (ROOT / "deploy/prometheus/alerts.yml").read_text()),
    ]:
        unknown = sorted(used_names(text) - DEFINED)
        if unknown:
            problems.append(f"{source} uses metrics src/metrics.rs does not define: {unknown}")
    ids = [panel["id"] for panel in dashboard["panels"]]
    if len(ids) != len(set(ids)):
        problems.append("panel ids repeat")
    for problem in problems:
        print(problem)
    used = used_names("\n".join(exprs))
    print(f"{len(exprs)} queries, {len(used)} metrics, all defined in src/metrics.rs" if not problems else "")
    print(f"dashboard: {0 if problems else 1} passed, {1 if problems else 0} failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
