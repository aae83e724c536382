"""Runs every `test_*` function of the `test_*.py` modules here (or those named on the command
line), each with the shared headless chromium. Prints PASS/FAIL per test, the folder with the
screenshots and gateway logs, and "N passed, N failed"; exits non-zero on any failure."""

import importlib
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402


def main(names):
    here = os.path.dirname(os.path.abspath(__file__))
    modules = sorted(name[:-3] for name in os.listdir(here) if name.startswith("test_") and name.endswith(".py"))
    browser = harness.Browser()
    passed = failed = 0
    try:
        for module_name in modules:
            module = importlib.import_module(module_name)
            for name in sorted(vars(module)):
                test = getattr(module, name)
                if not name.startswith("test_") or not callable(test):
                    continue
                if names and not any(wanted in name for wanted in names):
                    continue
                started = time.monotonic()
                try:
                    test(browser)
                except Exception:  # noqa: BLE001 - every failure is reported, then the next test runs
                    failed += 1
                    print(f"FAIL {module_name}.{name} ({time.monotonic() - started:.1f} s)")
                    traceback.print_exc()
                else:
                    passed += 1
                    print(f"PASS {module_name}.{name} ({time.monotonic() - started:.1f} s)")
    finally:
        browser.stop()
    print(f"screenshots and gateway logs: {harness.OUT}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
