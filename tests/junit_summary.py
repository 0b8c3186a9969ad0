"""Print the counts of JUnit XML reports, and fail when one is missing, has failures, or ran no test at all
(a run that selected nothing or skipped everything proves nothing). CI prints these for the cgroup v2 VM.

    python tests/junit_summary.py REPORT.xml [REPORT.xml ...]
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET


def counts(path: str) -> dict[str, int]:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    return {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}


def main(paths: list[str]) -> int:
    status = 0
    for path in paths:
        name = os.path.basename(path)
        if not os.path.exists(path):
            print(f"{name}: missing: the run wrote no report")
            status = 1
            continue
        c = counts(path)
        ran = c["tests"] - c["skipped"]
        passed = ran - c["failures"] - c["errors"]
        print(f"{name}: {c['tests']} tests: {passed} passed, {c['failures']} failed, {c['errors']} errors, "
              f"{c['skipped']} skipped")
        if ran <= 0:
            print(f"{name}: no test ran")
            status = 1
        if c["failures"] or c["errors"]:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]) if len(sys.argv) > 1 else 2)
