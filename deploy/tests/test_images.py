"""Image names and tags come from one place, images/images.env (registry) plus the
workspace version in Cargo.toml, and everything that names an image agrees with it: the
operator's default server image (as the generated CRDs carry it), the chart's values and
appVersion, the kustomize base, the Containerfile's targets and user."""

from __future__ import annotations

import re
import shlex
import tomllib

import yaml

import strata_pkg as p

IMAGES_ENV = p.ROOT / "images" / "images.env"
CONTAINERFILE = p.ROOT / "images" / "Containerfile"


def images_env() -> dict[str, str]:
    env = {}
    for line in IMAGES_ENV.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        env[key] = " ".join(shlex.split(value))
    return env


def workspace_version() -> str:
    with open(p.ROOT / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["workspace"]["package"]["version"]


def registry() -> str:
    return images_env()["STRATA_DEFAULT_REGISTRY"]


def image(name: str) -> str:
    return f"{registry()}/{name}:{workspace_version()}"


def test_images_env_names_the_three_images():
    assert images_env()["STRATA_IMAGES"].split() == [
        "strata-server", "strata-operator", "strata-dashboard"]
    assert re.fullmatch(r"[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*", registry())


def test_chart_app_version_is_the_workspace_version():
    chart = yaml.safe_load((p.CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == workspace_version()


def test_chart_values_pull_the_images_of_images_env():
    values = yaml.safe_load((p.CHART / "values.yaml").read_text())
    for component in ("operator", "dashboard"):
        img = values[component]["image"]
        assert img["repository"] == f"{registry()}/strata-{component}"
        # An empty tag means the chart's appVersion, i.e. the workspace version.
        assert img["tag"] == ""
    uid = int(images_env()["STRATA_IMAGE_UID"])
    assert values["podSecurityContext"]["runAsUser"] == uid
    assert values["podSecurityContext"]["runAsGroup"] == uid


def test_operator_default_server_image_is_the_server_image():
    # The CRD copies are `strata-operator crd` output (test_sync checks they are current),
    # so their default is the operator's DEFAULT_IMAGE.
    for path in (p.CHART_CRD, p.BASE_CRD):
        crd = next(d for d in yaml.safe_load_all(path.read_text()) if d)
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        default = schema["properties"]["spec"]["properties"]["image"]["default"]
        assert default == image("strata-server"), path


def deployment_image(path, name: str) -> str:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container["image"]


def test_kustomize_base_runs_the_images_of_images_env():
    assert deployment_image(p.BASE / "operator.yaml", "strata-operator") == image("strata-operator")
    assert deployment_image(p.BASE / "dashboard.yaml", "strata-dashboard") == image("strata-dashboard")


def test_containerfile_has_one_target_per_image_running_as_the_fixed_user():
    text = CONTAINERFILE.read_text()
    targets = re.findall(r"^FROM scratch AS (\S+)$", text, re.M)
    assert targets == images_env()["STRATA_IMAGES"].split()
    uid = images_env()["STRATA_IMAGE_UID"]
    assert re.findall(r"^USER (\S+)$", text, re.M) == [f"{uid}:{uid}"] * len(targets)
    for name in targets:
        assert f'ENTRYPOINT ["/usr/local/bin/{name}"]' in text
    # Nothing is pulled: every stage starts from scratch.
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["scratch"] * len(targets)
