"""JUnit XML: one <testsuite> per target x device, one <testcase> per gate. A failed gate is a
<failure>, a measurement that could not be taken an <error> (never a pass), a skipped gate <skipped>."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from edgeship.reports.terminal import fmt_value
from edgeship.status import Status


def _message(g: dict) -> str:
    if g["value"] is None and g["limit"] is None:
        return g["detail"] or g["status"]
    core = f"{g['gate']}: {fmt_value(g['value'], g['unit'])} (limit {g['op'] or ''} {fmt_value(g['limit'], g['unit'])})"
    return core + (f" — {g['detail']}" if g["detail"] else "")


def render(report: dict) -> str:
    suites: dict[tuple, list[dict]] = {}
    for g in report["gates"]:
        suites.setdefault((g["target"], g["device"]), []).append(g)
    s = report["summary"]
    root = ET.Element("testsuites", name="edgeship check", tests=str(s["total"]), failures=str(s["fail"]),
                      errors=str(s["not_measured"]), skipped=str(s["skipped"]), time=f"{report['duration_s']:.2f}")
    for (target, device), gates in suites.items():
        suite = ET.SubElement(
            root, "testsuite", name=f"{target}@{device}", tests=str(len(gates)),
            failures=str(sum(g["status"] == Status.FAIL for g in gates)),
            errors=str(sum(g["status"] == Status.NOT_MEASURED for g in gates)),
            skipped=str(sum(g["status"] == Status.SKIPPED for g in gates)))
        for g in gates:
            name = g["gate"] + (f" ({g['metric']})" if g.get("metric") else "")
            case = ET.SubElement(suite, "testcase", name=name, classname=f"edgeship.{target}.{device}",
                                 time="0")
            if g["status"] == Status.FAIL:
                ET.SubElement(case, "failure", message=_message(g), type=g["gate"]).text = _message(g)
            elif g["status"] == Status.NOT_MEASURED:
                ET.SubElement(case, "error", message=f"not measured: {g['detail']}", type="not_measured")
            elif g["status"] == Status.SKIPPED:
                ET.SubElement(case, "skipped", message=g["detail"] or "skipped")
            elif g["detail"]:
                ET.SubElement(case, "system-out").text = _message(g)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
