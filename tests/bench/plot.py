"""SVG plots of the benchmark results, made with the standard library.

One plot per network condition: a panel per workload and case, with one
horizontal bar per contender at the median and a whisker from the minimum
to the maximum over the repetitions.
"""

import math
from xml.sax.saxutils import escape

import report
import workloads

COLORS = {"csipfs": "#1f77b4", "curl": "#7f7f7f", "httpdirfs": "#ff7f0e",
          "rclone": "#2ca02c", "local": "#9467bd"}
WIDTH = 900
LEFT = 110
RIGHT = 90
BAR_HEIGHT = 16
BAR_GAP = 4
PANEL_TITLE = 22
AXIS_HEIGHT = 30
PANEL_GAP = 14
LEGEND_HEIGHT = 56
MAX_TICKS = 5


def _metric(workload):
    """Return (label, value of a record, scale) of a workload's panel."""
    if workload == "fio":
        return ("IOPS, higher is better",
                lambda r: r["extra"].get("iops"), 1.0)
    if workload == "memory":
        return ("daemon peak RSS in MiB, lower is better",
                lambda r: r["daemon_peak_rss_kib"], 1024.0)
    return "time in s, lower is better", lambda r: r["seconds"], 1.0


def _axis(value):
    """Return (tick step, axis end) for data up to value: a step of 1, 2,
    2.5 or 5 times a power of ten, and at most MAX_TICKS steps."""
    if value <= 0:
        return 1.0, 1.0
    rough = value / MAX_TICKS
    magnitude = 10 ** math.floor(math.log10(rough))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10)
                if rough <= m * magnitude)
    return step, step * math.ceil(value / step)


def _format(value):
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _panels(records, network):
    panels = []
    for workload, _, _, _ in workloads.WORKLOADS:
        label, value, scale = _metric(workload)
        for case in report.CASES[workload]:
            bars = []
            for contender in report.CONTENDER_ORDER:
                values = [value(r) for r in records
                          if r["ok"] and r["network"] == network
                          and r["workload"] == workload
                          and r["case"] == case
                          and r["contender"] == contender]
                values = [v / scale for v in values if v is not None]
                if values:
                    bars.append((contender, report.median(values),
                                 min(values), max(values)))
            if bars:
                panels.append((f"{workload}, {case}: {label}", bars))
    return panels


def _legend(panels):
    """Return the SVG elements of the colour legend of the contenders that
    appear in panels."""
    out = []
    x = LEFT
    contenders = [c for c in report.CONTENDER_ORDER
                  if any(b[0] == c for _, bars in panels for b in bars)]
    for contender in contenders:
        out.append(f'<rect x="{x}" y="32" width="12" height="12" '
                   f'fill="{COLORS[contender]}"/>')
        out.append(f'<text x="{x + 16}" y="42">{contender}</text>')
        x += 24 + 8 * len(contender)
    return out


def _bar(out, y, contender, values, axis_max, plot_width):
    """Append one contender's bar, whisker and value label at height y."""
    middle, low, high = values
    length = plot_width * middle / axis_max
    centre = y + BAR_HEIGHT / 2
    out.append(f'<text x="{LEFT - 6}" y="{centre + 4}" '
               f'text-anchor="end">{contender}</text>')
    out.append(f'<rect x="{LEFT}" y="{y}" width="{length:.1f}" '
               f'height="{BAR_HEIGHT}" fill="{COLORS[contender]}"/>')
    if high > low:
        x1 = LEFT + plot_width * low / axis_max
        x2 = LEFT + plot_width * high / axis_max
        out.append(f'<line x1="{x1:.1f}" y1="{centre}" x2="{x2:.1f}" '
                   f'y2="{centre}" stroke="black"/>')
        for end in (x1, x2):
            out.append(f'<line x1="{end:.1f}" y1="{centre - 4}" '
                       f'x2="{end:.1f}" y2="{centre + 4}" stroke="black"/>')
    text_x = LEFT + max(length, plot_width * high / axis_max) + 6
    out.append(f'<text x="{text_x:.1f}" y="{centre + 4}">'
               f'{_format(middle)}</text>')


def _panel(out, y, label, bars):
    """Append one panel with its title, bars and axis at height y, and
    return the height below it."""
    plot_width = WIDTH - LEFT - RIGHT
    out.append(f'<text x="{LEFT}" y="{y + 15}" '
               f'font-weight="bold">{escape(label)}</text>')
    y += PANEL_TITLE
    step, axis_max = _axis(max(b[3] for b in bars))
    top = y
    for contender, middle, low, high in bars:
        _bar(out, y, contender, (middle, low, high), axis_max, plot_width)
        y += BAR_HEIGHT + BAR_GAP

    out.append(f'<line x1="{LEFT}" y1="{top - 2}" x2="{LEFT}" y2="{y}" '
               f'stroke="black"/>')
    out.append(f'<line x1="{LEFT}" y1="{y}" x2="{LEFT + plot_width}" '
               f'y2="{y}" stroke="black"/>')
    ticks = round(axis_max / step)
    for tick in range(ticks + 1):
        tick_x = LEFT + plot_width * tick / ticks
        out.append(f'<line x1="{tick_x:.1f}" y1="{y}" x2="{tick_x:.1f}" '
                   f'y2="{y + 4}" stroke="black"/>')
        out.append(f'<text x="{tick_x:.1f}" y="{y + 16}" '
                   f'text-anchor="middle">{tick * step:g}</text>')
    return y + AXIS_HEIGHT + PANEL_GAP


def svg(records, network, title):
    """Return the SVG text of one network's plot, or None without data."""
    panels = _panels(records, network)
    if not panels:
        return None
    height = LEGEND_HEIGHT + sum(
        PANEL_TITLE + len(bars) * (BAR_HEIGHT + BAR_GAP) + AXIS_HEIGHT
        + PANEL_GAP for _, bars in panels)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
           f'height="{height}" viewBox="0 0 {WIDTH} {height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
           f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" '
           f'font-size="15" font-weight="bold">{escape(title)}</text>']
    out += _legend(panels)
    y = LEGEND_HEIGHT
    for label, bars in panels:
        y = _panel(out, y, label, bars)
    out.append("</svg>")
    return "\n".join(out) + "\n"
