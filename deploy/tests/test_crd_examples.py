"""The CRD copies equal `strata-operator crd`, and every example StorageService is
accepted by the generated schema (structure + CEL rules), while broken ones are not."""

from __future__ import annotations

import copy

import pytest
import yaml

import crd_validate
import strata_pkg as p

EXAMPLES = sorted(p.EXAMPLES.glob("*.yaml"))


@pytest.fixture(scope="module")
def generated_crd_text() -> str:
    binary = p.operator_bin()
    if not binary.is_file():
        raise AssertionError(
            f"strata-operator binary not found at {binary}: build it "
            "(cargo build -p strata-operator) or set STRATA_OPERATOR_BIN")
    return p.run([str(binary), "crd"])


@pytest.fixture(scope="module")
def crd(generated_crd_text) -> dict:
    docs = p.load_all(generated_crd_text)
    assert len(docs) == 1
    return docs[0]


@pytest.mark.parametrize("copy_path", [p.CHART_CRD, p.BASE_CRD], ids=["chart", "kustomize-base"])
def test_crd_copy_equals_generated(copy_path, generated_crd_text):
    assert copy_path.read_text() == generated_crd_text, (
        f"{copy_path.relative_to(p.ROOT)} is stale: run `python3 deploy/tests/sync.py --crd`")


def test_crd_contract(crd):
    """DESIGN §3: group, version, namespaced, status + scale subresources, printer columns."""
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "storageservices.strata.dev"
    assert spec["group"] == "strata.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "StorageService"
    assert spec["names"]["plural"] == "storageservices"
    version = [v for v in spec["versions"] if v["name"] == "v1alpha1"][0]
    assert version["served"] and version["storage"]
    assert "status" in version["subresources"]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    columns = {c["name"] for c in version.get("additionalPrinterColumns", [])}
    assert {"Ready", "Replicas", "Age"} <= columns


def test_examples_exist():
    names = {e.stem for e in EXAMPLES}
    assert {"minimal-filesystem", "autoscaled", "monitoring", "fault-drill"} <= names


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_example_is_valid(example, crd):
    docs = p.load_all(example.read_text())
    assert docs
    for obj in docs:
        problems = crd_validate.validate(crd, obj)
        assert problems == [], "\n".join(map(str, problems))


def test_notes_example_is_valid(crd):
    """The StorageService NOTES.txt tells users to apply is valid too."""
    import textwrap
    out = p.run([p.tool("helm"), "install", p.RELEASE, str(p.CHART), "--namespace", p.NAMESPACE,
                 "--dry-run=client"])
    notes = out.split("NOTES:", 1)[1]
    body = notes.split("<<'YAML' | kubectl apply -f -\n", 1)[1].split("\n     YAML", 1)[0]
    obj = yaml.safe_load(textwrap.dedent(body))
    assert obj["kind"] == "StorageService"
    problems = crd_validate.validate(crd, obj)
    assert problems == [], "\n".join(map(str, problems))


BIGTABLE = {"projectId": "p", "instanceName": "i", "tableName": "t"}
S3 = {"endpoint": "http://minio:9000", "bucket": "strata"}


def test_shared_backends_scale_out(crd):
    """bigtable, s3compatible and tiered accept many replicas and autoscaling."""
    for storage in ({"type": "bigtable", "bigtable": BIGTABLE},
                    {"type": "s3compatible", "s3compatible": S3},
                    {"type": "tiered", "bigtable": BIGTABLE, "s3compatible": S3}):
        obj = broken(lambda s: s.update(storage=storage, replicas=5, autoscaling={
            "minReplicas": 2, "maxReplicas": 9, "targetCPUUtilizationPercentage": 60}))
        problems = crd_validate.validate(crd, obj)
        assert problems == [], (storage["type"], problems)


def test_single_node_message_says_what_to_do(crd):
    problems = crd_validate.validate(crd, broken(lambda s: s.update(replicas=3)))
    assert any("use a shared backend" in pr.message and "tiered" in pr.message
               for pr in problems), problems


def minimal() -> dict:
    return yaml.safe_load((p.EXAMPLES / "minimal-filesystem.yaml").read_text())


def broken(mutate) -> dict:
    obj = copy.deepcopy(minimal())
    mutate(obj["spec"])
    return obj


BROKEN = {
    "unknown field": lambda s: s.update(replica=3),
    "unknown storage type": lambda s: s["storage"].update(type="floppy"),
    "negative replicas": lambda s: s.update(replicas=-1),
    "bad duration": lambda s: s.update(limits={"queueDepth": 1, "queueTimeout": "soon"}),
    "bulkPercent over 100": lambda s: s.update(limits={"bulkPercent": 150}),
    "bad upload age": lambda s: s.update(limits={"uploadMaxAge": "a day"}),
    "header limit below 8192": lambda s: s.update(limits={"maxHeaderBytes": 1024}),
    # CEL rules
    "queue without timeout": lambda s: s.update(limits={"queueDepth": 5}),
    "delay prefix without delay": lambda s: s.update(faults={"delayKeyPrefix": "slow/"}),
    "autoscaling min above max": lambda s: s.update(
        autoscaling={"minReplicas": 5, "maxReplicas": 2, "targetCPUUtilizationPercentage": 50}),
    "autoscaling without target": lambda s: s.update(autoscaling={"minReplicas": 1, "maxReplicas": 2}),
    "pdb above replicas": lambda s: s.update(replicas=1, podDisruptionBudget={"minAvailable": 2}),
    "pdb with both fields": lambda s: s.update(podDisruptionBudget={"minAvailable": 1, "maxUnavailable": 1}),
    "filesystem settings on memory": lambda s: s.update(storage={"type": "memory", "filesystem": {}}),
    # single-node backends run one pod; shared ones need their settings
    "filesystem with two replicas": lambda s: s.update(replicas=2),
    "memory autoscaled": lambda s: s.update(
        storage={"type": "memory"},
        autoscaling={"minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50}),
    "bigtable without settings": lambda s: s.update(storage={"type": "bigtable"}),
    "s3compatible without settings": lambda s: s.update(storage={"type": "s3compatible"}),
    "tiered without s3": lambda s: s.update(storage={"type": "tiered", "bigtable": BIGTABLE}),
    "bigtable settings on filesystem": lambda s: s.update(
        storage={"type": "filesystem", "bigtable": BIGTABLE}),
    "s3 settings on memory": lambda s: s.update(storage={"type": "memory", "s3compatible": S3}),
    "s3 endpoint without scheme": lambda s: s.update(
        storage={"type": "s3compatible", "s3compatible": {**S3, "endpoint": "minio:9000"}}),
    # credentials only by Secret reference: inline keys are unknown fields
    "inline s3 keys": lambda s: s.update(storage={"type": "s3compatible", "s3compatible": {
        **S3, "accessKeyId": "AKIA", "secretAccessKey": "hunter2"}}),
    "inline google key": lambda s: s.update(storage={"type": "bigtable", "bigtable": {
        **BIGTABLE, "credentials": "{}"}}),
    # access control must be stated; keys only by Secret reference
    "auth not stated": lambda s: s.pop("auth"),
    "enforce without keys": lambda s: s.update(auth={"enforce": True}),
    "enforce by default without keys": lambda s: s.update(auth={}),
    "inline verification key": lambda s: s.update(auth={"keys": {"relay": {
        "secretName": "relay-keys", "pem": "-----BEGIN PUBLIC KEY-----"}}}),
    "key without secret": lambda s: s.update(auth={"keys": {"relay": {"keyFiles": ["a.pem"]}}}),
    "bad permission": lambda s: s.update(auth={"keys": {"relay": {
        "secretName": "relay-keys", "maxPermissions": ["object.admin"]}}}),
    "network policy admitting nobody": lambda s: s.update(networkPolicy={"clients": []}),
    "network policy peer selecting nothing": lambda s: s.update(networkPolicy={"clients": [{}]}),
    "network policy with an ip block": lambda s: s.update(networkPolicy={"clients": [
        {"ipBlock": {"cidr": "0.0.0.0/0"}}]}),
    "scope that is not a pair": lambda s: s.update(rateLimits={"throughput": {
        "globalRps": 10, "rules": [{"rps": 1, "scopes": [["org"]]}]}}),
}


def test_auth_message_says_what_to_write(crd):
    problems = crd_validate.validate(crd, broken(lambda s: s.pop("auth")))
    assert any("`auth: {enforce: false}`" in pr.message for pr in problems), problems


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_storage_service_is_rejected(name, crd):
    problems = crd_validate.validate(crd, broken(BROKEN[name]))
    assert problems, f"{name}: accepted"
    assert not any("could not be evaluated" in pr.message for pr in problems), problems


def test_every_cel_rule_is_exercised(crd):
    """Each CEL rule of the CRD fails for at least one broken object above, so a rule
    the offline evaluator silently passes would show up here."""
    schema = crd_validate.served_schema(crd)
    rules = []

    def walk(node):
        if isinstance(node, dict):
            rules.extend(v["rule"] for v in node.get("x-kubernetes-validations", []))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    messages = {v["message"] for v in _all_validations(schema)}
    failed = set()
    for mutate in BROKEN.values():
        for pr in crd_validate.validate(crd, broken(mutate)):
            failed.add(pr.message)
    assert rules, "the CRD has no CEL rules"
    assert messages <= failed, f"CEL rules never exercised: {messages - failed}"


def _all_validations(node):
    if isinstance(node, dict):
        yield from node.get("x-kubernetes-validations", [])
        for v in node.values():
            yield from _all_validations(v)
    elif isinstance(node, list):
        for v in node:
            yield from _all_validations(v)
