#!/usr/bin/env python3
"""Checks deploy/: every YAML document parses and has apiVersion/kind/
metadata.name, the DaemonSet has the mounts and settings vrouter needs, the
RBAC is read-only but for patching nodes, the conflist is JSON, the
ConfigMap carries the current vrouter-pool.sh, and the systemd unit has its
sections. Exit status 1 with one line per problem. Needs python3-yaml."""
import json
import pathlib
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent / "deploy"
problems = []


def need(cond, msg):
    if not cond:
        problems.append(msg)


docs = {}
for f in sorted(ROOT.glob("*.yaml")):
    try:
        loaded = [d for d in yaml.safe_load_all(f.read_text()) if d is not None]
    except yaml.YAMLError as e:
        problems.append(f"{f.name}: {e}")
        continue
    for d in loaded:
        for key in ("apiVersion", "kind"):
            need(isinstance(d, dict) and key in d, f"{f.name}: a document lacks {key}")
        if isinstance(d, dict):
            need("name" in d.get("metadata", {}), f"{f.name}: {d.get('kind')} lacks metadata.name")
            docs[d.get("kind")] = d

for kind in ("DaemonSet", "ConfigMap", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"):
    need(kind in docs, f"no {kind} in deploy/")

ds = docs.get("DaemonSet")
if ds:
    spec = ds["spec"]["template"]["spec"]
    need(spec.get("hostNetwork") is True, "DaemonSet: hostNetwork must be true")
    paths = {v["hostPath"]["path"] for v in spec.get("volumes", []) if "hostPath" in v}
    for p in ("/run/vrouter", "/sys/fs/bpf", "/dev/hugepages", "/opt/cni/bin", "/etc/cni/net.d", "/var/lib/vrouter"):
        need(p in paths, f"DaemonSet: no hostPath volume {p}")
    vols = {v["name"] for v in spec.get("volumes", [])}
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        for m in c.get("volumeMounts", []):
            need(m["name"] in vols, f"DaemonSet: {c['name']} mounts unknown volume {m['name']}")
    vr = [c for c in spec["containers"] if c["name"] == "vrouterd"]
    need(vr and vr[0].get("securityContext", {}).get("privileged") is True, "DaemonSet: vrouterd must be privileged")
    need(spec.get("initContainers"), "DaemonSet: no install init container")
    need(spec.get("serviceAccountName") == docs.get("ServiceAccount", {}).get("metadata", {}).get("name"),
         "DaemonSet: serviceAccountName is not the ServiceAccount")

role = docs.get("ClusterRole")
if role:
    for r in role["rules"]:
        extra = set(r["verbs"]) - {"get", "list", "watch"}
        need(not extra or (extra == {"patch"} and r["resources"] == ["nodes"]),
             f"ClusterRole: {r['resources']} has verbs {sorted(extra)} beyond read (only nodes may be patched)")
        need("secrets" not in r["resources"] and "*" not in r["resources"] and "*" not in r["verbs"],
             "ClusterRole: no secrets or wildcards")
    have = {res for r in role["rules"] for res in r["resources"]}
    for res in ("nodes", "pods", "namespaces", "services", "endpointslices", "networkpolicies"):
        need(res in have, f"ClusterRole: cannot read {res}")

cm = docs.get("ConfigMap")
if cm:
    for key in ("vrouterd.toml", "install.sh", "vrouter-pool.sh", "pool-size"):
        need(key in cm["data"], f"ConfigMap: no {key}")
    for key in ("install.sh", "vrouter-pool.sh"):
        r = subprocess.run(["sh", "-n"], input=cm["data"].get(key, ""), text=True, capture_output=True)
        need(r.returncode == 0, f"ConfigMap: {key} is not valid sh: {r.stderr.strip()}")
    need(cm["data"].get("vrouter-pool.sh") == (ROOT / "vrouter-pool.sh").read_text(),
         "ConfigMap: vrouter-pool.sh differs from deploy/vrouter-pool.sh")

try:
    conf = json.loads((ROOT / "10-vrouter.conflist").read_text())
    need(conf.get("cniVersion") == "1.0.0", "conflist: cniVersion is not 1.0.0")
    need(conf["plugins"][0]["type"] == "vrouter-cni", "conflist: first plugin is not vrouter-cni")
except (ValueError, KeyError, IndexError) as e:
    problems.append(f"10-vrouter.conflist: {e}")

unit = (ROOT / "vrouterd.service").read_text()
for sec in ("[Unit]", "[Service]", "[Install]", "ExecStart=/usr/local/bin/vrouterd"):
    need(sec in unit, f"vrouterd.service: no {sec}")

for p in problems:
    print(f"check-deploy: {p}")
if problems:
    sys.exit(1)
print(f"check-deploy: deploy/ is fine ({len(docs)} kinds)")
