"""The example PlaybookCatalogs: shape as in crates/salve-api/src/catalog.rs, parameter schemas
that are valid JSON Schema (Draft 2020-12) and tight enough that hostile params fail them, and
paramsFromLabels that turn real Alertmanager alerts into params the schema accepts."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from conftest import CATALOG_DIR, PLAYBOOKS, PLAYBOOK_FILES

FIXTURES = Path("/work/shared/fixtures/alertmanager")
if not FIXTURES.is_dir():  # CI puts shared/ next to the clone
    FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "alertmanager"

# CatalogEntry's serde names (camelCase) and bounds, from crates/salve-api/src/catalog.rs.
ENTRY_KEYS = {
    "name", "description", "risk", "playbook", "parameters", "match", "paramsFromLabels",
    "targetParam", "targetFromAlert", "timeoutSeconds", "cooldownSeconds", "maxAttempts",
    "cancelWindowSeconds", "approvalTimeoutSeconds", "verify", "serviceAccountName",
}
REQUIRED_ENTRY_KEYS = {"name", "description", "risk", "playbook", "parameters", "match"}
BOUNDS = {
    "timeoutSeconds": (10, 86400),
    "cooldownSeconds": (0, 86400),
    "maxAttempts": (1, 5),
    "cancelWindowSeconds": (0, 86400),
    "approvalTimeoutSeconds": (60, 604800),
}
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$")
PLAYBOOK_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*\.ya?ml$")
SA_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
TEMPLATE_PART = re.compile(r"\{\{\s*(labels|annotations)\.([A-Za-z_][A-Za-z0-9_]*)\s*(\|\s*host\s*)?\}\}")
OPERATORS = {"=", "!=", "=~", "!~"}
EXPECTED_RISK = {
    "failover_database": "high",
    "scale_deployment": "medium",
    "restart_service": "low",
    "rollout_restart": "low",
    "clear_disk_space": "low",
    "rotate_logs": "low",
}

# Params a correct decision would produce, per entry: each must validate.
EXAMPLES = {
    "restart_service": [
        {"target_host": "db-1", "service": "worker@0.service"},
        {"target_host": "app-2.example.com", "service": "api-0", "force": True},
    ],
    "clear_disk_space": [
        {"target_host": "web-3", "mountpoint": "/"},
        {"target_host": "10.0.0.7", "mountpoint": "/var/lib/docker", "min_free_gb": 5.5,
         "min_free_percent": 10, "max_age_days": 3, "journal_max_age_days": 14},
    ],
    "rotate_logs": [
        {"target_host": "web-3", "service": "nginx"},
        {"target_host": "web-3", "service": "php-fpm", "max_size_mb": 500, "keep": 0},
    ],
    "rollout_restart": [
        {"k8s_namespace": "shop", "deployment": "checkout"},
        {"k8s_namespace": "kube-system", "deployment": "coredns.v2", "wait_timeout": 600},
    ],
    "scale_deployment": [
        {"k8s_namespace": "shop", "deployment": "checkout", "replicas": 6},
        {"k8s_namespace": "shop", "deployment": "checkout", "replicas": 20, "wait_timeout": 30},
    ],
    "failover_database": [
        {"cluster_name": "orders", "primary_host": "pg-1"},
        {"cluster_name": "orders_eu-2", "primary_host": "pg-1.db", "replica_host": "pg-2.db", "max_lag_bytes": 0},
    ],
}

# Values no string param may accept: shell metacharacters, command substitution, traversal,
# host patterns, templates, option injection, empty and oversized.
HOSTILE_STRINGS = [
    "; rm -rf /",
    "$(id)",
    "`id`",
    "a|b",
    "a && b",
    "a b",
    "foo\nbar",
    "../../etc",
    "/tmp/../etc",
    "/var/./log",
    "{{ lookup('pipe', 'id') }}",
    "*",
    "web*",
    "a,b",
    "!db",
    "-rf",
    "",
    "x" * 600,
]


def load_catalogs():
    docs = []
    for path in sorted(CATALOG_DIR.glob("*.yaml")):
        with path.open() as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    docs.append((path.name, doc))
    return docs


CATALOGS = load_catalogs()
ENTRIES = [(fname, e) for fname, doc in CATALOGS for e in doc["spec"]["entries"]]
ENTRY_IDS = [e["name"] for _, e in ENTRIES]


def test_there_is_a_catalog_entry_for_every_playbook():
    used = {e["playbook"] for _, e in ENTRIES}
    assert used == set(PLAYBOOK_FILES)
    assert set(ENTRY_IDS) == set(EXAMPLES), "every entry needs example params in this test"


def test_entry_names_are_unique_across_catalogs():
    assert len(ENTRY_IDS) == len(set(ENTRY_IDS))


@pytest.mark.parametrize("fname,doc", CATALOGS, ids=[f for f, _ in CATALOGS])
def test_catalog_object_has_the_crd_shape(fname, doc):
    assert doc["apiVersion"] == "salve.dev/v1alpha1"
    assert doc["kind"] == "PlaybookCatalog"
    assert NAME_RE.match(doc["metadata"]["name"])
    assert set(doc["spec"]) == {"entries"}
    assert 1 <= len(doc["spec"]["entries"]) <= 200


@pytest.mark.parametrize("fname,entry", ENTRIES, ids=ENTRY_IDS)
def test_entry_fields_match_the_rust_types(fname, entry):
    assert set(entry) <= ENTRY_KEYS, f"unknown fields {set(entry) - ENTRY_KEYS}"
    assert REQUIRED_ENTRY_KEYS <= set(entry)
    assert NAME_RE.match(entry["name"]) and len(entry["name"]) <= 63
    assert 1 <= len(entry["description"]) <= 1024
    assert entry["risk"] == EXPECTED_RISK[entry["name"]]
    assert PLAYBOOK_RE.match(entry["playbook"]) and ".." not in entry["playbook"]
    assert (PLAYBOOKS / entry["playbook"]).is_file()
    for key, (lo, hi) in BOUNDS.items():
        if key in entry:
            assert isinstance(entry[key], int) and lo <= entry[key] <= hi, key
    if "verify" in entry:
        assert set(entry["verify"]) <= {"stabilizationSeconds"}
        assert 0 <= entry["verify"]["stabilizationSeconds"] <= 3600
    if "serviceAccountName" in entry:
        assert SA_RE.match(entry["serviceAccountName"])
    if "targetFromAlert" in entry:
        assert isinstance(entry["targetFromAlert"], bool)
    match = entry["match"]
    assert set(match) <= {"alertnames", "matchers"}
    assert match.get("alertnames"), "an entry must name the alerts it is for"
    for m in match.get("matchers", []):
        assert set(m) <= {"label", "operator", "value"} and m["operator"] in OPERATORS
        if m["operator"] in ("=~", "!~"):
            re.compile(f"^(?:{m['value']})$")


@pytest.mark.parametrize("fname,entry", ENTRIES, ids=ENTRY_IDS)
def test_parameters_are_a_strict_draft_2020_12_schema(fname, entry):
    schema = entry["parameters"]
    Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert set(schema["required"]) <= set(props)
    for name, prop in props.items():
        assert prop.get("description"), f"{name}: the LLM and humans need a description"
        assert prop["type"] in ("string", "integer", "number", "boolean"), name
        if prop["type"] == "string":
            assert prop["pattern"].startswith("^") and prop["pattern"].endswith("$"), name
            assert prop["maxLength"] <= 512, name
        if prop["type"] in ("integer", "number"):
            assert "minimum" in prop and "maximum" in prop, name
    if "targetParam" in entry:
        assert entry["targetParam"] in props
    for param, template in entry.get("paramsFromLabels", {}).items():
        assert param in props, f"paramsFromLabels fills unknown param {param}"
        assert TEMPLATE_PART.sub("", template) == "", f"bad template {template!r}"


@pytest.mark.parametrize("fname,entry", ENTRIES, ids=ENTRY_IDS)
def test_every_schema_param_is_validated_by_the_playbook_itself(fname, entry):
    """Defence in depth: the playbook's first play re-checks each param the schema allows."""
    playbook = yaml.safe_load((PLAYBOOKS / entry["playbook"]).read_text())
    validation = playbook[0]
    assert validation["name"] == "Validate parameters" and validation["hosts"] == "localhost"
    checked = json.dumps(validation["tasks"])
    for name in entry["parameters"]["properties"]:
        assert re.search(rf"\b{name}\b is (defined|string|integer|number|boolean)", checked), name


@pytest.mark.parametrize("fname,entry", ENTRIES, ids=ENTRY_IDS)
def test_example_params_validate(fname, entry):
    validator = Draft202012Validator(entry["parameters"])
    for params in EXAMPLES[entry["name"]]:
        errors = [e.message for e in validator.iter_errors(params)]
        assert not errors, f"{params}: {errors}"


def hostile_variants(entry):
    """(description, params) pairs: a valid example with one value made hostile."""
    schema = entry["parameters"]
    base = EXAMPLES[entry["name"]][0]
    full = {**base}
    for name, prop in schema["properties"].items():
        if name not in full:
            full[name] = {"string": "a", "integer": prop.get("minimum", 1), "number": 1, "boolean": False}[prop["type"]]
    out = []
    for name, prop in schema["properties"].items():
        if prop["type"] == "string":
            values = HOSTILE_STRINGS + [5, True, None, ["a"]]
        elif prop["type"] in ("integer", "number"):
            values = [prop["minimum"] - 1, prop["maximum"] + 1, str(prop["minimum"]), True, None, 10**12]
            if prop["type"] == "integer":
                values.append(prop["minimum"] + 0.5)
        else:
            values = ["true", 1, None, "yes"]
        for v in values:
            p = copy.deepcopy(base if name in base else full)
            p[name] = v
            out.append((f"{name}={v!r}"[:60], p))
    out.append(("extra ansible_connection", {**base, "ansible_connection": "local"}))
    out.append(("extra become", {**base, "ansible_become_user": "root"}))
    for name in schema["required"]:
        out.append((f"missing {name}", {k: v for k, v in base.items() if k != name}))
    return out


@pytest.mark.parametrize("fname,entry", ENTRIES, ids=ENTRY_IDS)
def test_hostile_params_are_rejected_by_the_schema(fname, entry):
    validator = Draft202012Validator(entry["parameters"])
    accepted = [desc for desc, params in hostile_variants(entry) if validator.is_valid(params)]
    assert not accepted, f"{entry['name']} schema accepts hostile params: {accepted}"


# ---- paramsFromLabels against real Alertmanager traffic


def host(value: str) -> str:
    """The `| host` filter: the host of an instance label (scheme, credentials, path, port gone)."""
    v = value.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    if v.startswith("["):
        return v[1:].split("]", 1)[0]
    return v.rsplit(":", 1)[0] if v.count(":") == 1 else v


def render(template: str, alert: dict):
    missing = False

    def sub(m):
        nonlocal missing
        value = alert.get(m.group(1), {}).get(m.group(2))
        if value is None:
            missing = True
            return ""
        return host(value) if m.group(3) else value

    out = TEMPLATE_PART.sub(sub, template)
    return None if missing else out


def selects(entry, labels: dict) -> bool:
    m = entry["match"]
    if m.get("alertnames") and labels.get("alertname") not in m["alertnames"]:
        return False
    for mt in m.get("matchers", []):
        v = labels.get(mt["label"], "")
        ok = {
            "=": lambda: v == mt["value"],
            "!=": lambda: v != mt["value"],
            "=~": lambda: re.fullmatch(mt["value"], v) is not None,
            "!~": lambda: re.fullmatch(mt["value"], v) is None,
        }[mt["operator"]]()
        if not ok:
            return False
    return True


def fixture_alerts():
    alerts = []
    for f in sorted(FIXTURES.glob("webhook-*.json")):
        for a in json.loads(f.read_text())["alerts"]:
            alerts.append(a)
    # Standard alerts not in the captured traffic, with the labels their exporters/mixins set.
    alerts += [
        {"labels": {"alertname": "NodeFilesystemAlmostOutOfSpace", "instance": "web-3:9100", "mountpoint": "/var",
                    "fstype": "ext4", "device": "/dev/sda2", "job": "node"}, "annotations": {}},
        {"labels": {"alertname": "NodeFilesystemAlmostOutOfSpace", "instance": "web-3:9100", "mountpoint": "/run",
                    "fstype": "tmpfs", "device": "tmpfs", "job": "node"}, "annotations": {}},
        {"labels": {"alertname": "NodeSystemdServiceFailed", "instance": "app-1.example.com:9100",
                    "name": "nginx.service", "state": "failed"}, "annotations": {}},
        {"labels": {"alertname": "KubeDeploymentReplicasMismatch", "namespace": "shop", "deployment": "checkout",
                    "job": "kube-state-metrics"}, "annotations": {}},
        {"labels": {"alertname": "KubeHpaMaxedOut", "namespace": "shop", "horizontalpodautoscaler": "checkout",
                    "job": "kube-state-metrics"}, "annotations": {}},
        {"labels": {"alertname": "PostgresqlDown", "instance": "pg-1:9187", "cluster": "orders",
                    "job": "postgres"}, "annotations": {}},
    ]
    return alerts


def test_standard_alerts_select_the_expected_entries():
    def candidates(labels):
        return sorted(e["name"] for _, e in ENTRIES if selects(e, labels))

    got = {a["labels"]["alertname"] + ":" + a["labels"].get("mountpoint", a["labels"].get("fstype", "")): candidates(a["labels"])
           for a in fixture_alerts()}
    assert got["SystemdUnitFailed:"] == ["restart_service"]
    assert got["NodeSystemdServiceFailed:"] == ["restart_service"]
    assert got["NodeFilesystemSpaceFillingUp:/"] == ["clear_disk_space", "rotate_logs"]
    assert got["NodeFilesystemAlmostOutOfSpace:/run"] == []  # tmpfs: cleaning cannot help
    assert got["KubePodCrashLooping:"] == ["rollout_restart"]
    assert got["KubeDeploymentReplicasMismatch:"] == ["rollout_restart"]
    assert got["KubeHpaMaxedOut:"] == ["scale_deployment"]
    assert got["PostgresqlDown:"] == ["failover_database"]
    assert got["HostOutOfMemory:"] == []


def test_params_from_labels_of_real_alerts_validate():
    rendered = 0
    for alert in fixture_alerts():
        for _, entry in ENTRIES:
            if not selects(entry, alert["labels"]) or not entry.get("paramsFromLabels"):
                continue
            params = {k: render(t, alert) for k, t in entry["paramsFromLabels"].items()}
            if any(v is None for v in params.values()):
                continue  # a label is missing: salve asks the LLM instead
            errors = [e.message for e in Draft202012Validator(entry["parameters"]).iter_errors(params)]
            required_filled = set(entry["parameters"]["required"]) <= set(params)
            assert not errors or not required_filled, f"{entry['name']} from {alert['labels']}: {errors}"
            rendered += 1
    assert rendered >= 8


def test_the_fast_path_fills_every_required_param_for_the_obvious_alerts():
    by_name = {e["name"]: e for _, e in ENTRIES}
    cases = [
        ("restart_service", {"alertname": "SystemdUnitFailed", "instance": "db-1:9100", "name": "worker@0.service"},
         {"target_host": "db-1", "service": "worker@0.service"}),
        ("clear_disk_space", {"alertname": "NodeFilesystemSpaceFillingUp", "instance": "web-3:9100", "mountpoint": "/",
                              "fstype": "ext4"}, {"target_host": "web-3", "mountpoint": "/"}),
        ("rollout_restart", {"alertname": "KubeDeploymentReplicasMismatch", "namespace": "shop", "deployment": "checkout"},
         {"k8s_namespace": "shop", "deployment": "checkout"}),
        ("failover_database", {"alertname": "PostgresqlDown", "instance": "pg-1:9187", "cluster": "orders"},
         {"cluster_name": "orders", "primary_host": "pg-1"}),
    ]
    for name, labels, want in cases:
        entry = by_name[name]
        params = {k: render(t, {"labels": labels}) for k, t in entry["paramsFromLabels"].items()}
        assert params == want
        assert set(entry["parameters"]["required"]) <= set(params)
        assert Draft202012Validator(entry["parameters"]).is_valid(params)
