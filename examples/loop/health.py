#!/usr/bin/python3
"""Prints GET /coe/plan-health (a saved JSON file) as one line a tier: the shadow's agreement,
its confidence interval, the planned level and the alarm.

  health.py HEALTH.json
"""
import json
import sys

for name, m in json.load(open(sys.argv[1]))["models"].items():
    for t in m["tiers"]:
        print(f"{name} tier {t['tier']}: shadowed {t['shadowed']}, agreed {t['agreed']}, "
              f"agreement {t['agreement']:.3f} [{t['lower']:.3f}, {t['upper']:.3f}], "
              f"planned {t['expected']:.3f}, alarm {t['alarm']}")
    print(f"{name}: shadow runs cost ${m['cost']:.4f} (apart from the requests'), skipped {m['skipped']}")
