#!/usr/bin/python3
"""Offline check of Kubernetes manifests (YAML documents, or a JSON List) against the
API's schema as Debian's python3-kubernetes carries it: its models are generated from
the Kubernetes OpenAPI spec (openapi_types, attribute_map, required fields). On top, the
enums of the API reference that the generated client does not check, and the rules of
the API server's validation that the fields we emit depend on.

  k8s_check.py FILE [--dump]
  k8s_check.py --each FILE...

Prints one line per problem and exits 1, or "ok N" and exits 0; --dump prints the
documents as canonical JSON instead (so a test can compare the YAML and the JSON).
--each checks every file on its own, each answer after a line "== FILE CODE" (one
start-up for many files: the import of the models is the slow part).
Exit 2: the checker itself cannot run (a module is missing)."""
import json
import re
import sys

try:
    import yaml
    from kubernetes import client
except ImportError as e:  # the spec skips, saying why
    print("missing: %s (install python3-yaml and python3-kubernetes)" % e)
    sys.exit(2)

KINDS = {
    ("apps/v1", "Deployment"): "V1Deployment",
    ("v1", "Service"): "V1Service",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
    ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
}

# Enums of the API reference (v1.22+), by model and field.
ENUMS = {
    ("V1Container", "image_pull_policy"): {"Always", "IfNotPresent", "Never"},
    ("V1ContainerPort", "protocol"): {"TCP", "UDP", "SCTP"},
    ("V1ServicePort", "protocol"): {"TCP", "UDP", "SCTP"},
    ("V1PodSpec", "restart_policy"): {"Always", "OnFailure", "Never"},
    ("V1SeccompProfile", "type"): {"RuntimeDefault", "Localhost", "Unconfined"},
    ("V1PodSecurityContext", "fs_group_change_policy"): {"OnRootMismatch", "Always"},
    ("V1HTTPGetAction", "scheme"): {"HTTP", "HTTPS"},
    ("V1DeploymentStrategy", "type"): {"Recreate", "RollingUpdate"},
    ("V1ServiceSpec", "type"): {"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"},
    ("V1NetworkPolicySpec", "policy_types"): {"Ingress", "Egress"},
    ("V1PersistentVolumeClaimSpec", "access_modes"): {"ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"},
    ("V1EmptyDirVolumeSource", "medium"): {"", "Memory"},
}

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
QUANTITY = re.compile(r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")
SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
          "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}

errors = []


def fail(path, msg):
    errors.append("%s: %s" % (path or "/", msg))


def walk(v, t, path):
    """Checks v against the client's type string t: every key known, every type right."""
    if t in ("str", "datetime", "date"):
        if not isinstance(v, str):
            fail(path, "want a string, got %r" % (v,))
    elif t == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            fail(path, "want an integer, got %r" % (v,))
    elif t == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            fail(path, "want a number, got %r" % (v,))
    elif t == "bool":
        if not isinstance(v, bool):
            fail(path, "want a boolean, got %r" % (v,))
    elif t == "object":
        pass  # IntOrString, Quantity and the like: checked by the rules below
    elif t.startswith("list["):
        if not isinstance(v, list):
            fail(path, "want a list, got %r" % (v,))
            return
        for i, x in enumerate(v):
            walk(x, t[5:-1], "%s/%d" % (path, i))
    elif t.startswith("dict("):
        if not isinstance(v, dict):
            fail(path, "want an object, got %r" % (v,))
            return
        inner = re.match(r"dict\(([^,]*), (.*)\)$", t).group(2)
        for k, x in v.items():
            walk(x, inner, "%s/%s" % (path, k))
    else:
        model = getattr(client, t)
        if not isinstance(v, dict):
            fail(path, "want an object (%s), got %r" % (t, v))
            return
        by_json = {j: a for a, j in model.attribute_map.items()}
        for k, x in v.items():
            if k not in by_json:
                fail(path, "unknown field %r of %s" % (k, t))
                continue
            attr = by_json[k]
            allowed = ENUMS.get((t, attr))
            if allowed is not None:
                for item in (x if isinstance(x, list) else [x]):
                    if item not in allowed:
                        fail("%s/%s" % (path, k), "%r is not one of %s" % (item, sorted(allowed)))
            walk(x, model.openapi_types[attr], "%s/%s" % (path, k))


def required(doc, model, path):
    """The generated models refuse a missing required field (client_side_validation)."""
    api = client.ApiClient()
    try:
        api._ApiClient__deserialize(doc, model)
    except (ValueError, TypeError, AttributeError) as e:
        fail(path, "%s: %s" % (model, e))


def quantity(q, path):
    m = QUANTITY.match(str(q)) if isinstance(q, str) else None
    if not m:
        fail(path, "%r is not a quantity" % (q,))
        return None
    suffix = m.group(3) or ""
    if suffix[:1] in ("e", "E"):
        return float(q)
    return float(m.group(1)) * SUFFIX[suffix]


def meta_rules(doc, path, service):
    md = doc.get("metadata") or {}
    name = md.get("name", "")
    rule = DNS1035_LABEL if service else DNS1123_SUBDOMAIN
    if not rule.match(name) or len(name) > (63 if service else 253):
        fail(path + "/metadata/name", "%r is not a valid name" % name)
    ns = md.get("namespace")
    if ns is not None and (not DNS1123_LABEL.match(ns) or len(ns) > 63):
        fail(path + "/metadata/namespace", "%r is not a namespace" % ns)
    for where in ("labels",):
        for k, v in (md.get(where) or {}).items():
            label_rules(k, v, "%s/metadata/%s" % (path, where))


def label_rules(k, v, path):
    name = k.split("/", 1)[-1]
    prefix = k.split("/", 1)[0] if "/" in k else None
    if not LABEL_NAME.match(name) or len(name) > 63 or (prefix is not None and not DNS1123_SUBDOMAIN.match(prefix)):
        fail(path, "%r is not a label key" % k)
    if not isinstance(v, str) or not LABEL_VALUE.match(v) or len(v) > 63:
        fail(path + "/" + k, "%r is not a label value" % (v,))


def probe_rules(probe, ports, path, liveness):
    if probe is None:
        return
    for f in ("periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold"):
        if f in probe and (not isinstance(probe[f], int) or probe[f] < 1):
            fail("%s/%s" % (path, f), "must be at least 1")
    if liveness and probe.get("successThreshold", 1) != 1:
        fail(path + "/successThreshold", "must be 1 for liveness and startup probes")
    port = (probe.get("httpGet") or {}).get("port")
    if isinstance(port, str):
        if port not in ports:
            fail(path + "/httpGet/port", "names no port of the container: %r" % port)
    elif isinstance(port, int):
        if not 1 <= port <= 65535:
            fail(path + "/httpGet/port", "out of range")
    else:
        fail(path + "/httpGet/port", "missing")
    if not str((probe.get("httpGet") or {}).get("path", "/")).startswith("/"):
        fail(path + "/httpGet/path", "must start with /")


def pod_rules(spec, path, deployment):
    volumes = {}
    for i, vol in enumerate(spec.get("volumes") or []):
        name = vol.get("name", "")
        if not DNS1123_LABEL.match(name) or name in volumes:
            fail("%s/volumes/%d/name" % (path, i), "%r is not a unique DNS label" % name)
        sources = [k for k in vol if k != "name"]
        if len(sources) != 1:
            fail("%s/volumes/%d" % (path, i), "needs exactly one volume source, has %s" % sources)
        volumes[name] = vol
    if deployment and spec.get("restartPolicy", "Always") != "Always":
        fail(path + "/restartPolicy", "a Deployment's pods only take Always")
    pod_sc = spec.get("securityContext") or {}
    names = set()
    for i, c in enumerate(spec.get("containers") or []):
        cpath = "%s/containers/%d" % (path, i)
        name = c.get("name", "")
        if not DNS1123_LABEL.match(name) or name in names:
            fail(cpath + "/name", "%r is not a unique DNS label" % name)
        names.add(name)
        if not c.get("image"):
            fail(cpath + "/image", "required")
        ports = {}
        for j, p in enumerate(c.get("ports") or []):
            if not 1 <= p.get("containerPort", 0) <= 65535:
                fail("%s/ports/%d/containerPort" % (cpath, j), "out of range")
            pname = p.get("name")
            if pname is not None:
                if not IANA_SVC_NAME.match(pname) or len(pname) > 15 or not re.search("[a-z]", pname):
                    fail("%s/ports/%d/name" % (cpath, j), "%r is not an IANA service name" % pname)
                ports[pname] = p
        probe_rules(c.get("readinessProbe"), ports, cpath + "/readinessProbe", False)
        probe_rules(c.get("livenessProbe"), ports, cpath + "/livenessProbe", True)
        probe_rules(c.get("startupProbe"), ports, cpath + "/startupProbe", True)
        for j, m in enumerate(c.get("volumeMounts") or []):
            if m.get("name") not in volumes:
                fail("%s/volumeMounts/%d/name" % (cpath, j), "names no volume: %r" % m.get("name"))
            if not str(m.get("mountPath", "")).startswith("/"):
                fail("%s/volumeMounts/%d/mountPath" % (cpath, j), "must be absolute")
        res = c.get("resources") or {}
        for kind in ("limits", "requests"):
            for k, q in (res.get(kind) or {}).items():
                quantity(q, "%s/resources/%s/%s" % (cpath, kind, k))
        for k, q in (res.get("requests") or {}).items():
            lim = (res.get("limits") or {}).get(k)
            if lim is not None and (quantity(q, "") or 0) > (quantity(lim, "") or 0):
                fail("%s/resources/requests/%s" % (cpath, k), "above the limit")
        sc = dict(pod_sc)
        sc.update(c.get("securityContext") or {})
        if sc.get("runAsNonRoot") and sc.get("runAsUser") == 0:
            fail(cpath + "/securityContext", "runAsNonRoot with runAsUser 0: the kubelet refuses to start it")
        if sc.get("privileged") and sc.get("allowPrivilegeEscalation") is False:
            fail(cpath + "/securityContext", "allowPrivilegeEscalation false with privileged")
    if not names:
        fail(path + "/containers", "at least one container")
    for i, vol in enumerate(spec.get("volumes") or []):
        size = (vol.get("emptyDir") or {}).get("sizeLimit")
        if size is not None:
            quantity(size, "%s/volumes/%d/emptyDir/sizeLimit" % (path, i))


def check(doc, path):
    if not isinstance(doc, dict):
        fail(path, "a document must be an object")
        return
    key = (doc.get("apiVersion"), doc.get("kind"))
    model = KINDS.get(key)
    if model is None:
        fail(path, "unknown apiVersion/kind %r" % (key,))
        return
    walk(doc, model, path)
    required(doc, model, path)
    meta_rules(doc, path, key[1] == "Service")
    spec = doc.get("spec") or {}
    if key[1] == "Deployment":
        template = spec.get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        for k, v in labels.items():
            label_rules(k, v, path + "/spec/template/metadata/labels")
        match = (spec.get("selector") or {}).get("matchLabels") or {}
        if not match:
            fail(path + "/spec/selector", "empty selector")
        for k, v in match.items():
            if labels.get(k) != v:
                fail(path + "/spec/selector", "selector does not match the template's labels (%s)" % k)
        if spec.get("replicas", 1) < 0:
            fail(path + "/spec/replicas", "negative")
        pod_rules(template.get("spec") or {}, path + "/spec/template/spec", True)
    elif key[1] == "Service":
        for i, p in enumerate(spec.get("ports") or []):
            if not 1 <= p.get("port", 0) <= 65535:
                fail("%s/spec/ports/%d/port" % (path, i), "out of range")
            tp = p.get("targetPort")
            if isinstance(tp, str) and (not IANA_SVC_NAME.match(tp) or len(tp) > 15):
                fail("%s/spec/ports/%d/targetPort" % (path, i), "%r is not an IANA service name" % tp)
        if len(spec.get("ports") or []) > 1 and any("name" not in p for p in spec["ports"]):
            fail(path + "/spec/ports", "every port needs a name when there are several")
    elif key[1] == "PersistentVolumeClaim":
        quantity(((spec.get("resources") or {}).get("requests") or {}).get("storage"),
                 path + "/spec/resources/requests/storage")


def across(docs):
    """What makes the documents one program: the Service and the NetworkPolicy select
    the Deployment's pods, and a claim the pods mount is among the documents."""
    pods = [d for d in docs if d.get("kind") == "Deployment"]
    labels = {}
    claims = set()
    for d in pods:
        tmpl = d.get("spec", {}).get("template", {})
        labels.update(tmpl.get("metadata", {}).get("labels") or {})
        for v in tmpl.get("spec", {}).get("volumes") or []:
            if "persistentVolumeClaim" in v:
                claims.add(v["persistentVolumeClaim"].get("claimName"))
    for i, d in enumerate(docs):
        sel = None
        if d.get("kind") == "Service":
            sel = d.get("spec", {}).get("selector") or {}
        elif d.get("kind") == "NetworkPolicy":
            sel = (d.get("spec", {}).get("podSelector") or {}).get("matchLabels") or {}
        if sel is not None and (not sel or any(labels.get(k) != v for k, v in sel.items())):
            fail("/%d" % i, "%s selects none of the Deployment's pods" % d.get("kind"))
    names = {d.get("metadata", {}).get("name") for d in docs if d.get("kind") == "PersistentVolumeClaim"}
    for c in claims - names:
        fail("/", "the pods mount the claim %r, which no document makes" % c)


def check_file(path, dump=False):
    """The problems of one file as lines, and the exit code they make."""
    errors.clear()
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        return 1, ["not YAML: %s" % e]
    if len(docs) == 1 and isinstance(docs[0], dict) and docs[0].get("kind") == "List":
        docs = docs[0].get("items") or []
    if dump:
        return 0, [json.dumps(docs, sort_keys=True)]
    for i, d in enumerate(docs):
        check(d, "/%d" % i)
    if not errors:
        across(docs)
    if errors:
        return 1, list(errors)
    return 0, ["ok %d" % len(docs)]


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    if sys.argv[1] == "--each":
        for path in sys.argv[2:]:
            code, lines = check_file(path)
            print("== %s %d" % (path, code))
            print("\n".join(lines))
        return
    code, lines = check_file(sys.argv[1], "--dump" in sys.argv)
    print("\n".join(lines))
    sys.exit(code)


main()
