#!/usr/bin/env python3
"""Draw the pgcached Grafana dashboard from a Prometheus, without Grafana.

Runs every query of grafana/dashboards/pgcached.json over the last few minutes through
Prometheus's /api/v1/query_range and draws each panel (same title, same legend, same layout
order) into one PNG. Used for the README's picture; needs matplotlib.

    python3 grafana/render.py --prometheus http://127.0.0.1:9090 --minutes 10 --out docs/dashboard.png
"""

import argparse
import json
import math
import pathlib
import re
import time
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DASHBOARD = pathlib.Path(__file__).resolve().parent / "dashboards" / "pgcached.json"


def query_range(prometheus, expr, start, end, step):
    params = urllib.parse.urlencode(
        {"query": expr, "start": start, "end": end, "step": step}
    )
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=30) as r:
        answer = json.load(r)
    if answer.get("status") != "success":
        raise RuntimeError(f"{expr}: {answer}")
    return answer["data"]["result"]


def legend(template, labels):
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template or "")
    return text.strip() or ",".join(f"{k}={v}" for k, v in labels.items()) or "value"


def scale(unit, values):
    """Values and an axis label for Grafana's unit names."""
    if unit == "percentunit":
        return [v * 100 for v in values], "%"
    if unit == "s":
        biggest = max((abs(v) for v in values if math.isfinite(v)), default=0)
        if biggest < 0.01:
            return [v * 1e6 for v in values], "µs"
        if biggest < 1:
            return [v * 1e3 for v in values], "ms"
        return values, "s"
    if unit in ("bytes", "Bps"):
        return [v / 1024 for v in values], "KiB" if unit == "bytes" else "KiB/s"
    if unit in ("reqps", "ops"):
        return values, "/s"
    return values, ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--out", default="docs/dashboard.png")
    parser.add_argument("--rate-interval", default="30s")
    parser.add_argument("--instance", default=".*", help="regex for the dashboard's instance selector")
    args = parser.parse_args()

    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    end = time.time()
    start = end - args.minutes * 60
    step = max(1, int(args.minutes * 60 / 240))

    columns = 4
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 5, rows * 2.8))
    figure.suptitle(
        f"The {dashboard['title']} Grafana dashboard's queries, last {args.minutes:.1f} minutes, "
        "drawn from Prometheus",
        fontsize=14,
    )
    for axis, panel in zip(axes.flat, panels):
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        axis.set_title(panel["title"], fontsize=10)
        axis.tick_params(labelsize=7)
        drawn = 0
        for target in panel["targets"]:
            expr = (
                target["expr"]
                .replace("$__rate_interval", args.rate_interval)
                .replace("$instance", args.instance)
            )
            for series in query_range(args.prometheus, expr, start, end, step):
                times = [float(t) - end for t, _ in series["values"]]
                values = [float(v) for _, v in series["values"]]
                values, axis_unit = scale(unit, values)
                axis.plot([t / 60 for t in times], values, linewidth=1,
                          label=legend(target.get("legendFormat"), series["metric"]))
                axis.set_ylabel(axis_unit, fontsize=7)
                drawn += 1
        axis.set_xlabel("minutes ago", fontsize=7)
        axis.grid(alpha=0.3)
        if drawn:
            axis.legend(fontsize=6, loc="upper left")
        else:
            axis.text(0.5, 0.5, "no data", ha="center", va="center", transform=axis.transAxes)
    for axis in list(axes.flat)[len(panels):]:
        axis.axis("off")
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=80)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
