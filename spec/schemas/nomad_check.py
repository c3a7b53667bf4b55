#!/usr/bin/python3
"""Offline check of a Nomad job in the HTTP API's JSON shape ({"Job": {...}}): the JSON
Schema nomad_job.schema.json beside this file (Debian's python3-jsonschema), then the
rules of Nomad's own job validation that the fields we emit depend on (nomad/structs:
RestartPolicy.Validate, port labels, volume mounts).

  nomad_check.py FILE
  nomad_check.py --each FILE...

Prints one line per problem and exits 1, or "ok" and exits 0; exit 2: it cannot run.
--each checks every file on its own, each answer after a line "== FILE CODE"."""
import json
import os
import sys

try:
    import jsonschema
except ImportError as e:
    print("missing: %s (install python3-jsonschema)" % e)
    sys.exit(2)

SECOND = 10**9
RESTART_MIN_INTERVAL = 5 * SECOND  # structs.RestartPolicyMinInterval

errors = []


def fail(path, msg):
    errors.append("%s: %s" % (path, msg))


def restart_rules(rp, path):
    if rp is None:
        return
    attempts, mode = rp.get("Attempts", 0), rp.get("Mode", "fail")
    if attempts == 0 and mode != "fail":
        fail(path, "restart policy with 0 attempts and mode %r is ambiguous (Nomad refuses it)" % mode)
    interval, delay = rp.get("Interval", 0), rp.get("Delay", 0)
    if interval < RESTART_MIN_INTERVAL:
        fail(path + "/Interval", "below Nomad's minimum of 5 s")
    if attempts * delay > interval:
        fail(path, "Nomad cannot restart %d times in an interval of %d ns with a delay of %d ns" % (attempts, interval, delay))


def group_rules(g, path):
    labels = set()
    for n in g.get("Networks") or []:
        for p in (n.get("DynamicPorts") or []) + (n.get("ReservedPorts") or []):
            if p["Label"] in labels:
                fail(path + "/Networks", "port label %r twice" % p["Label"])
            labels.add(p["Label"])
    restart_rules(g.get("RestartPolicy"), path + "/RestartPolicy")
    services = list(g.get("Services") or [])
    names = set()
    for t in g.get("Tasks") or []:
        tpath = "%s/Tasks/%s" % (path, t.get("Name"))
        if t.get("Name") in names:
            fail(tpath, "task name twice")
        names.add(t.get("Name"))
        restart_rules(t.get("RestartPolicy"), tpath + "/RestartPolicy")
        for label in (t.get("Config") or {}).get("ports") or []:
            if label not in labels:
                fail(tpath + "/Config/ports", "names no port of the group's network: %r" % label)
        for m in t.get("VolumeMounts") or []:
            if m.get("Volume") not in (g.get("Volumes") or {}):
                fail(tpath + "/VolumeMounts", "names no volume of the group: %r" % m.get("Volume"))
        services += t.get("Services") or []
    for s in services:
        spath = "%s/Services/%s" % (path, s.get("Name"))
        if s.get("PortLabel") and s["PortLabel"] not in labels:
            fail(spath + "/PortLabel", "names no port of the group's network: %r" % s["PortLabel"])
        for c in s.get("Checks") or []:
            if c.get("Type") == "http" and not str(c.get("Path", "")).startswith("/"):
                fail(spath + "/Checks", "an http check needs a Path starting with /")
            if c.get("PortLabel") and c["PortLabel"] not in labels:
                fail(spath + "/Checks/PortLabel", "names no port of the group's network: %r" % c["PortLabel"])
    for name, v in (g.get("Volumes") or {}).items():
        if v.get("Name", name) != name:
            fail("%s/Volumes/%s" % (path, name), "Name differs from its key")


def check_file(path, schema):
    """The problems of one file as lines, and the exit code they make."""
    errors.clear()
    with open(path, encoding="utf-8") as f:
        try:
            doc = json.load(f)
        except ValueError as e:
            return 1, ["not JSON: %s" % e]
    validator = jsonschema.Draft7Validator(schema)
    for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        fail("/" + "/".join(str(p) for p in e.absolute_path), e.message)
    if not errors:
        for i, g in enumerate(doc["Job"]["TaskGroups"]):
            group_rules(g, "/Job/TaskGroups/%d" % i)
    if errors:
        return 1, list(errors)
    return 0, ["ok"]


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "nomad_job.schema.json"), encoding="utf-8") as f:
        schema = json.load(f)
    if sys.argv[1] == "--each":
        for path in sys.argv[2:]:
            code, lines = check_file(path, schema)
            print("== %s %d" % (path, code))
            print("\n".join(lines))
        return
    code, lines = check_file(sys.argv[1], schema)
    print("\n".join(lines))
    sys.exit(code)


main()
