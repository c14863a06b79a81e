#!/usr/bin/env python3
"""What the test suite needs beyond Kafka and FerretDB, installed when missing: Chromium (the
dashboard is rendered in a headless browser) and promtool (the metrics and the Prometheus and
Grafana files are checked by Prometheus's own tool).

As root on Debian/Ubuntu they are installed with apt-get (once; the packages stay installed).
Anywhere else it says what to install and exits 0: the tests that need them then skip, and a CI
run (`CI=true`) fails on any skip (tests/conftest.py), so a check that cannot run never passes
silently. Standard library only."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

# command → Debian package providing it
TOOLS = {"chromium": "chromium", "promtool": "prometheus"}


def missing() -> dict[str, str]:
    found = {"chromium": shutil.which("chromium") or shutil.which("chromium-browser"),
             "promtool": shutil.which("promtool")}
    return {tool: TOOLS[tool] for tool, path in found.items() if path is None}


def install(packages: list[str]) -> bool:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"testtools: installing {', '.join(packages)} from Debian (once)", flush=True)
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]):
        done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            print(f"testtools: {' '.join(command)} failed: {done.stderr.strip()[-500:]}", file=sys.stderr)
            return False
    return True


def main() -> int:
    need = missing()
    if not need:
        return 0
    packages = sorted(set(need.values()))
    if install(packages) and not missing():
        return 0
    print(f"testtools: {', '.join(sorted(missing()))} missing: the tests needing them will skip "
          f"(install the Debian packages {' '.join(packages)}, or their equivalents)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
