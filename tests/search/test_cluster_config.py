"""The cluster files, offline: cluster/gpu.yaml against Ray's own cluster-config schema, the
Dockerfile and .dockerignore, cluster/kuberay.yaml (a KubeRay RayJob whose entrypoint must be a
tune/search.py command line that the search accepts), and the job-submit examples of the README and
the docs/ pages."""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import json
import re
import shlex

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.docker import validate_docker_config
from ray.autoscaler._private.util import prepare_config, validate_config

from glintru.search import results
from glintru.search.plan import plan_search
from glintru.search.spaces import SPACES

from doc_pages import pages
from search_helpers import CLI, REPO

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli there
    import tomli as tomllib

CONFIG = REPO / "cluster" / "gpu.yaml"
KUBERAY = REPO / "cluster" / "kuberay.yaml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

# The custom resource that only the head node offers; the search's trial drivers ask for a share of
# it when they join a cluster, so that they never run on a preemptible GPU worker.
HEAD_RESOURCE = "glintru_head"


def _pin(name: str, requirements: list[str]) -> str:
    """The version that `name==X` pins in a list of requirements (extras ignored)."""
    for req in requirements:
        m = re.fullmatch(rf"\s*{re.escape(name)}(\[[^\]]*\])?\s*==\s*([\w.]+)\s*", req)
        if m:
            return m.group(2)
    raise AssertionError(f"{name} is not pinned with == in {requirements}")


TORCH_PIN = _pin("torch", PYPROJECT["project"]["dependencies"])
RAY_PIN = _pin("ray", PYPROJECT["project"]["optional-dependencies"]["tune"])


def _load_cli():
    spec = importlib.util.spec_from_file_location("glintru_tune_search_cli_for_cluster", CLI)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cli = _load_cli()


# -- cluster/gpu.yaml -----------------------------------------------------------------------------


def _load() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def _check(raw: dict) -> dict:
    prepared = prepare_config(copy.deepcopy(raw))
    validate_config(prepared)
    validate_docker_config(prepared)
    return prepared


def test_gpu_yaml_validates_and_describes_the_intended_cluster():
    cfg = _check(_load())
    assert cfg["provider"]["type"] == "aws"
    nodes = cfg["available_node_types"]
    head, worker = nodes[cfg["head_node_type"]], nodes["gpu_worker"]
    assert head["resources"]["CPU"] == 0 and "GPU" not in head["resources"]
    assert worker["resources"]["GPU"] >= 1 and worker["min_workers"] == 0 < worker["max_workers"]
    assert worker["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    # the head is on-demand: no market options on it
    assert "InstanceMarketOptions" not in head["node_config"]
    assert cfg["file_mounts"]["~/glintru"] == "."
    assert "~/.ray/auth_token" in cfg["file_mounts"]
    starts = [c for c in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"] if "ray start" in c]
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token ray start" in c for c in starts)


def test_gpu_yaml_offers_the_head_resource_on_the_head_only():
    cfg = _check(_load())
    nodes = cfg["available_node_types"]
    head_type = cfg["head_node_type"]
    assert nodes[head_type]["resources"].get(HEAD_RESOURCE, 0) >= 1
    for name, node in nodes.items():
        if name != head_type:
            assert HEAD_RESOURCE not in node["resources"], f"{name} must not offer {HEAD_RESOURCE}"
    # the launcher hands a node type's resources to `ray start` itself (RAY_OVERRIDE_RESOURCES);
    # a --resources flag of our own would override them and could drift from this table
    for cmd in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]:
        assert "--resources" not in cmd


def test_gpu_yaml_nodes_start_from_the_image_without_installing():
    cfg = _check(_load())
    assert cfg["docker"]["image"] == _image()
    assert not cfg["docker"].get("head_image") and not cfg["docker"].get("worker_image")
    boot = (
        cfg["initialization_commands"]
        + cfg["setup_commands"]
        + cfg["head_setup_commands"]
        + cfg["worker_setup_commands"]
    )
    assert not any(re.search(r"\bpip\b|\bconda\b|apt-get", c) for c in boot), boot


@pytest.mark.parametrize(
    "breakage, error",
    [
        (lambda c: c.update(max_wokers=4), jsonschema.ValidationError),  # misspelt key
        (lambda c: c.update(max_workers="eight"), jsonschema.ValidationError),  # wrong type
        (lambda c: c.update(head_node_type="gpu_head"), ValueError),  # no such node type
        (lambda c: c["available_node_types"]["gpu_worker"].update(min_workers=20), ValueError),  # > max
        (lambda c: c["available_node_types"]["gpu_worker"].pop("node_config"), jsonschema.ValidationError),
        (lambda c: c["docker"].update(imgae="x"), jsonschema.ValidationError),  # misspelt docker key
        (lambda c: c["docker"].pop("container_name"), AssertionError),  # image without a container
    ],
)
def test_broken_copies_are_rejected(breakage, error):
    raw = _load()
    breakage(raw)
    with pytest.raises(error):
        _check(raw)


# -- Dockerfile -----------------------------------------------------------------------------------


def parse_dockerfile(text: str) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """(instruction, arguments) pairs with continuation lines joined and comments dropped, and the
    ARG defaults, substituted into every later instruction as `docker build` does."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    args: dict[str, str] = {}
    out = []
    for line in lines:
        op, _, rest = line.partition(" ")
        op = op.upper()
        rest = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), rest)
        if op == "ARG":
            name, sep, default = rest.strip().partition("=")
            args[name] = default.strip().strip('"') if sep else args.get(name, "")
        out.append((op, rest.strip()))
    return out, args


def dockerfile_problems(text: str) -> list[str]:
    """What keeps a Dockerfile from being a CUDA image of this package ([] when none)."""
    steps, args = parse_dockerfile(text)
    problems = []
    froms = [rest for op, rest in steps if op == "FROM"]
    if len(froms) != 1:
        return [f"expected one FROM, found {len(froms)}"]
    base = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)(?:\.\d+)?-(?:cudnn-)?runtime-ubuntu[\d.]+", froms[0])
    if not base:
        problems.append(f"base image {froms[0]!r} is not an nvidia/cuda runtime image")

    def first_run(pattern: str) -> int | None:
        return next((i for i, (op, rest) in enumerate(steps) if op == "RUN" and re.search(pattern, rest)), None)

    torch_at = first_run(r"torch==")
    if torch_at is None:
        problems.append("torch is not installed with a == pin")
    else:
        torch_run = steps[torch_at][1]
        pinned = re.search(r"torch==([\w.]+)", torch_run).group(1)
        if pinned != TORCH_PIN:
            problems.append(f"torch=={pinned} differs from pyproject.toml's torch=={TORCH_PIN}")
        index = re.search(r"--index-url\s+https://download\.pytorch\.org/whl/cu(\d+)", torch_run)
        if not index:
            problems.append("torch does not come from the PyTorch CUDA wheel index")
        elif base and index.group(1) != base.group(1) + base.group(2):
            problems.append(f"torch wheels for cu{index.group(1)} on a CUDA {base.group(1)}.{base.group(2)} base")

    package = r"pip install [\"']?\.\[([^\]]*)\]"
    install_at = first_run(package)
    if install_at is None:
        problems.append("the package is not installed (pip install .[...])")
    else:
        extras = set(re.search(package, steps[install_at][1]).group(1).split(","))
        if not {"tune", "analysis"} <= extras:
            problems.append(f"the package is installed with extras {sorted(extras)}, not tune and analysis")
        if torch_at is not None and install_at < torch_at:
            problems.append("the package is installed before the CUDA torch (pip would take PyPI's)")
        # what `pip install .` reads must be in the image by then
        copied = [rest.split()[:-1] for op, rest in steps[:install_at] if op in ("COPY", "ADD")]
        sources = {src.rstrip("/") for srcs in copied for src in srcs}
        for needed in ("pyproject.toml", "README.md", "glintru"):
            if needed not in sources and "." not in sources:
                problems.append(f"{needed} is not copied before the package is installed")

    python = args.get("PYTHON_VERSION")
    supported = {
        c.rsplit(":: ", 1)[1]
        for c in importlib.metadata.metadata("ray").get_all("Classifier")
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    if python not in supported:
        problems.append(
            f"Python {python} is not one Ray {importlib.metadata.version('ray')} supports "
            f"({', '.join(sorted(supported))})"
        )
    low = re.fullmatch(r">=\s*3\.(\d+)", PYPROJECT["project"]["requires-python"])
    if python and low and int(python.split(".")[1]) < int(low.group(1)):
        problems.append(f"Python {python} is below the package's requires-python")
    if python and not any(op == "RUN" and re.search(rf"python{re.escape(python)}(\s|$)", rest) for op, rest in steps):
        problems.append(f"Python {python} is never installed")
    return problems


def render_dockerfile(steps: list[tuple[str, str]]) -> str:
    """One line per instruction (ARG values already substituted): parses back to `steps`."""
    return "\n".join(f"{op} {rest}" for op, rest in steps)


def _swap_torch_and_package(text: str) -> str:
    steps, _ = parse_dockerfile(text)
    t = next(i for i, (op, rest) in enumerate(steps) if op == "RUN" and "torch==" in rest)
    p = next(i for i, (op, rest) in enumerate(steps) if op == "RUN" and ".[tune,analysis]" in rest)
    steps[t], steps[p] = steps[p], steps[t]
    return render_dockerfile(steps)


def test_dockerfile_is_a_cuda_image_of_this_package():
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


def test_dockerfile_leaves_the_checkout_where_the_rayjob_runs_it():
    steps, _ = parse_dockerfile(DOCKERFILE.read_text())
    workdirs = [rest for op, rest in steps if op == "WORKDIR"]
    assert workdirs, "no WORKDIR"
    last_copy = [rest for op, rest in steps if op == "COPY"][-1]
    assert last_copy.split() == [".", "."], "the whole checkout (tune/search.py) is not copied"
    assert _kuberay_script() == f"{workdirs[-1]}/tune/search.py"


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda t: re.sub(r"^FROM .*$", "FROM python:3.12-slim", t, flags=re.MULTILINE), "not an nvidia/cuda runtime"),
        (lambda t: t.replace("ARG TORCH_VERSION=" + TORCH_PIN, "ARG TORCH_VERSION=2.0.0"), "differs from pyproject"),
        (lambda t: t.replace("ARG TORCH_CUDA=cu128", "ARG TORCH_CUDA=cu118"), "on a CUDA 12.8 base"),
        (lambda t: t.replace("--index-url https://download.pytorch.org/whl/${TORCH_CUDA}", ""), "CUDA wheel index"),
        (lambda t: t.replace('".[tune,analysis]"', '".[tune]"'), "not tune and analysis"),
        (lambda t: t.replace("ARG PYTHON_VERSION=3.12", "ARG PYTHON_VERSION=3.8"), "not one Ray"),
        (lambda t: t.replace("COPY pyproject.toml README.md ./", "COPY pyproject.toml ./"), "README.md is not copied"),
        (_swap_torch_and_package, "before the CUDA torch"),
    ],
)
def test_dockerfile_checks_catch_a_wrong_image(edit, problem):
    text = DOCKERFILE.read_text()
    broken = edit(text)
    assert broken != text, "the edit no longer applies to the Dockerfile; update this test"
    found = dockerfile_problems(broken)
    assert any(problem in p for p in found), found


# -- .dockerignore --------------------------------------------------------------------------------


def _dockerignore_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern (Go filepath.Match plus `**`, rooted at the context) as a regex."""
    pattern = pattern.strip("/")
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        else:
            ch = pattern[i]
            out += "[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch)
            i += 1
    return re.compile(out + "$")


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether `docker build` leaves `path` (or a folder above it) out of the context."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for pat in patterns:
        negate = pat.startswith("!")
        rx = _dockerignore_regex(pat[1:] if negate else pat)
        if any(rx.match(p) for p in prefixes):
            excluded = not negate
    return excluded


def _dockerignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "data/synthetic/meta.json",
        "results/exp/trials.parquet",
        "runs/run1/metrics.json",
        "report/table.md",
        "glintru/__pycache__/train.cpython-312.pyc",
        "tests/search/__pycache__/x.pyc",
        "glintru.egg-info/PKG-INFO",
        "benchmarks/results/overhead.json",
        ".pytest_cache/v/cache/lastfailed",
        "runs/best.pt",
    ],
)
def test_dockerignore_keeps_environments_data_and_results_out(path):
    assert dockerignored(path, _dockerignore_patterns())


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "glintru/__init__.py",
        "glintru/search/runner.py",
        "tune/search.py",
        "analysis/report.py",
        "cluster/gpu.yaml",
    ],
)
def test_dockerignore_keeps_what_the_image_needs(path):
    assert not dockerignored(path, _dockerignore_patterns())


def test_dockerignore_matcher_follows_docker_rules():
    assert dockerignored("data/x", ["data"]) and not dockerignored("glintru/data/x.py", ["data"])
    assert dockerignored("a/b/__pycache__/c.pyc", ["**/__pycache__"])
    assert dockerignored("__pycache__/c.pyc", ["**/__pycache__"])
    assert not dockerignored("results/keep.md", ["results", "!results/keep.md"])


# -- cluster/kuberay.yaml -------------------------------------------------------------------------


def _kuberay() -> dict:
    docs = [d for d in yaml.safe_load_all(KUBERAY.read_text()) if d]
    assert len(docs) == 1, "cluster/kuberay.yaml holds one RayJob"
    return docs[0]


def _containers(pod_template: dict, init: bool = False) -> list[dict]:
    spec = pod_template["spec"]
    return spec["containers"] + (spec.get("initContainers", []) if init else [])


def _kuberay_script() -> str:
    return shlex.split(_kuberay()["spec"]["entrypoint"])[1]


def _image() -> str:
    """The image tag that the Dockerfile's build command names."""
    m = re.search(r"docker build -t (\S+) \.", DOCKERFILE.read_text())
    assert m, "the Dockerfile's header shows no `docker build -t IMAGE .`"
    return m.group(1)


# Docker's reference grammar (distribution/reference), reduced to name:tag
_IMAGE_REF = re.compile(
    r"(?:(?:[a-zA-Z0-9-]+\.)+[a-zA-Z0-9-]+(?::\d+)?/|localhost(?::\d+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r":[\w][\w.-]{0,127}"
)


def test_image_name_is_a_valid_reference_tagged_with_the_version_and_cuda():
    image = _image()
    assert _IMAGE_REF.fullmatch(image), image
    _, args = parse_dockerfile(DOCKERFILE.read_text())
    assert image.rsplit(":", 1)[1] == f"{PYPROJECT['project']['version']}-{args['TORCH_CUDA']}"


def test_kuberay_manifest_is_a_rayjob_that_cleans_up():
    job = _kuberay()
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec.get("submissionMode", "K8sJobMode") in ("K8sJobMode", "HTTPMode", "SidecarMode")
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == RAY_PIN
    assert cluster["authOptions"]["mode"] == "token"
    assert cluster["enableInTreeAutoscaling"] is True


def test_kuberay_every_ray_container_runs_the_glintru_image():
    cluster = _kuberay()["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]
    images = {c["image"] for pod in pods for c in _containers(pod, init=True)}
    assert images == {_image()} == {_check(_load())["docker"]["image"]}


def _gpus(container: dict) -> int:
    limits = container.get("resources", {}).get("limits", {})
    return int(limits.get("nvidia.com/gpu", 0))


def _start_resources(group: dict) -> dict:
    """The custom resources of a group's `ray start --resources=...`, read as the shell reads them."""
    value = group.get("rayStartParams", {}).get("resources")
    if value is None:
        return {}
    (arg,) = shlex.split(value)
    return json.loads(arg)


def test_kuberay_head_carries_the_head_resource_and_no_gpu():
    cluster = _kuberay()["spec"]["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    amount = _start_resources(head).get(HEAD_RESOURCE, 0)
    assert amount >= 1
    # the same amount as on a `ray up` cluster
    gpu_yaml = _check(_load())
    assert amount == gpu_yaml["available_node_types"][gpu_yaml["head_node_type"]]["resources"][HEAD_RESOURCE]
    assert all(_gpus(c) == 0 for c in _containers(head["template"]))


def test_kuberay_gpu_workers_request_gpus_and_not_the_head_resource():
    groups = _kuberay()["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert groups
    for group in groups:
        assert HEAD_RESOURCE not in _start_resources(group)
        assert 0 <= group.get("minReplicas", 0) <= group["maxReplicas"]
        assert group.get("minReplicas", 0) <= group.get("replicas", 0) <= group["maxReplicas"]
        (ray_container,) = [c for c in _containers(group["template"]) if c["name"].startswith("ray")]
        assert _gpus(ray_container) >= 1
        resources = ray_container["resources"]
        # Kubernetes takes extended resources (GPUs) only with requests equal to limits
        if "nvidia.com/gpu" in resources.get("requests", {}):
            assert str(resources["requests"]["nvidia.com/gpu"]) == str(resources["limits"]["nvidia.com/gpu"])


def _entrypoint_args():
    argv = shlex.split(_kuberay()["spec"]["entrypoint"])
    assert argv[0] in ("python", "python3") and argv[1].endswith("tune/search.py"), argv[:2]
    try:
        return cli.build_parser().parse_args(argv[2:])
    except SystemExit as e:  # argparse reports the error on stderr and exits
        raise AssertionError(f"tune/search.py rejects the RayJob entrypoint {argv[2:]}") from e


def test_kuberay_entrypoint_is_a_cluster_search_command_line():
    args = _entrypoint_args()
    settings = cli.settings_from_args(args)
    assert settings.space in SPACES
    assert settings.address == "auto"  # the job's driver runs on the head: join its cluster
    assert not settings.resume
    assert re.match(r"(s3|gs)://[^/]+/", settings.storage), "results must go to cloud storage"
    assert settings.gpus_per_trial and settings.gpus_per_trial > 0

    # the trials the search runs at once fit the GPUs the worker groups can reach
    groups = _kuberay()["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    gpu_slots = sum(g["maxReplicas"] * _gpus(c) for g in groups for c in _containers(g["template"]))
    per_pod = max(_gpus(c) for g in groups for c in _containers(g["template"]))
    assert settings.gpus_per_trial * settings.workers_per_trial <= per_pod
    if settings.max_concurrent is not None:
        assert settings.max_concurrent * settings.gpus_per_trial <= gpu_slots


def test_kuberay_entrypoint_data_is_on_the_head():
    job = _kuberay()
    data = _entrypoint_args().data
    head_pod = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
    (head,) = [c for c in _containers(head_pod) if c["name"] == "ray-head"]
    mounts = {m["name"]: m["mountPath"] for m in head.get("volumeMounts", [])}
    volume = next((name for name, path in mounts.items() if data.startswith(path.rstrip("/") + "/")), None)
    assert volume, f"--data {data} is on no volume of the head container ({mounts})"
    # an init container fills that volume with the dataset before Ray starts
    fillers = [
        c
        for c in head_pod["spec"].get("initContainers", [])
        if any(m["name"] == volume for m in c.get("volumeMounts", []))
        and data in " ".join(c.get("command", []) + c.get("args", []))
    ]
    assert fillers, f"nothing writes {data} into volume {volume!r}"


def test_kuberay_entrypoint_passes_the_search_preflight(tiny_data, monkeypatch):
    """The runner's own checks (space, data, resources, storage) accept the entrypoint; only the
    dataset is swapped for a local one, and the bucket is not contacted."""
    args = _entrypoint_args()
    args.data = str(tiny_data)
    monkeypatch.setattr(results, "exists", lambda location: False)
    plan = plan_search(cli.settings_from_args(args))
    assert plan.exp_dir.startswith(args.storage.rstrip("/") + "/")


# -- job-submit examples (README and docs/, cluster/gpu.yaml) -------------------------------------


def _commands(lines: list[str]) -> list[str]:
    """Shell commands of a code block, continuation lines joined."""
    out, current = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
        else:
            out.append(current + line)
            current = ""
    return [c.strip() for c in out if c.strip()]


def _docs_commands() -> list[str]:
    """The code-block commands of README.md and every docs/*.md page."""
    return [
        command
        for text in pages().values()
        for command in _commands([line[4:] for line in text.splitlines() if line.startswith("    ")])
    ]


def _gpu_yaml_comment_commands() -> list[str]:
    header = []
    for line in CONFIG.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    return _commands([line[2:].lstrip() for line in header if line.startswith("#   ")])


def _submitted_search(command: str) -> list[str] | None:
    """The tune/search.py arguments of a `ray job submit` command, as the head's shell sees them
    (None for another command); fails on a word that the laptop's shell would tilde-expand."""
    words = shlex.split(command, comments=True)
    at = next((i for i in range(len(words) - 2) if words[i : i + 3] == ["ray", "job", "submit"]), None)
    if at is None:
        return None
    entry = words[words.index("--", at) + 1 :]
    for word in entry:
        assert not re.match(r"~|[A-Za-z_]\w*=~", word), (
            f"{word!r} is expanded on the laptop, not on the head: quote it ({command})"
        )
    # `bash -c 'cd ... && python tune/search.py ...'` runs its script in the head's shell
    if entry[:2] == ["bash", "-c"]:
        entry = shlex.split(entry[2].split("&&")[-1])
    i = next(i for i, w in enumerate(entry) if w.endswith("tune/search.py"))
    return entry[i + 1 :]


@pytest.mark.parametrize("source", ["docs", "cluster/gpu.yaml"])
def test_job_submit_examples_expand_paths_on_the_head_and_parse(source):
    commands = _docs_commands() if source == "docs" else _gpu_yaml_comment_commands()
    submits = [c for c in commands if re.search(r"\bray job submit\b", c)]
    assert submits, f"no `ray job submit` example in {source}"
    for command in submits:
        argv = _submitted_search(command)
        assert argv is not None
        try:
            args = cli.build_parser().parse_args(argv)
        except SystemExit as e:
            raise AssertionError(f"tune/search.py rejects {argv} ({source})") from e
        assert args.address == "auto" and re.match(r"(s3|gs)://", args.storage)


def test_job_submit_check_catches_a_laptop_expanded_tilde():
    search = "python tune/search.py --space glintru --data ~/glintru/data/synthetic --address auto"
    with pytest.raises(AssertionError, match="expanded on the laptop"):
        _submitted_search(f"ray job submit --address http://127.0.0.1:8265 -- {search}")
    argv = _submitted_search(f"ray job submit --address http://127.0.0.1:8265 -- bash -c 'cd ~ && {search}'")
    assert argv[argv.index("--data") + 1] == "~/glintru/data/synthetic"  # left to the head's shell
