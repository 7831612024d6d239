# The image of every node of a glintru Ray cluster (cluster/gpu.yaml, cluster/kuberay.yaml): Python,
# the CUDA build of torch, Ray and this package with its search and analysis extras, so that GPU
# nodes start without installing anything.
#
#   docker build -t registry.example.com/glintru:0.1.0-cu128 .
#
# CUDA_VERSION and TORCH_CUDA go together (12.8 <-> cu128); the host needs an NVIDIA driver that
# supports that CUDA release. Ray needs the same Python and Ray versions on every node, which one
# image for all of them guarantees.
ARG CUDA_VERSION=12.8.1
FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu24.04

# Ubuntu 24.04's own Python; Ray 2.60 publishes wheels for 3.10 to 3.14.
ARG PYTHON_VERSION=3.12
# The torch release pinned by pyproject.toml, from the PyTorch index of CUDA_VERSION.
ARG TORCH_VERSION=2.13.0
ARG TORCH_CUDA=cu128

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# openssh-client and rsync: `ray up` syncs files into the container and the head's autoscaler
# reaches the workers over SSH from inside it; wget: KubeRay's health probes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python${PYTHON_VERSION} python${PYTHON_VERSION}-venv \
        ca-certificates openssh-client rsync wget \
    && rm -rf /var/lib/apt/lists/*

RUN python${PYTHON_VERSION} -m venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# torch first, from the CUDA index: the package's torch==TORCH_VERSION pin is then already met
# (2.13.0+cu128 satisfies ==2.13.0), so the next step keeps this build instead of PyPI's.
RUN pip install --upgrade pip \
    && pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/${TORCH_CUDA}

WORKDIR /opt/glintru

# The package and its dependencies, in a layer that changes only with the library code. boto3: the
# Ray autoscaler on a `ray up` head launches EC2 instances with it.
COPY pyproject.toml README.md ./
COPY glintru ./glintru
RUN pip install ".[tune,analysis]" boto3 \
    && python -c "import torch, ray, glintru; assert torch.__version__.startswith('${TORCH_VERSION}'), torch.__version__"

# The rest of the checkout: tune/search.py (a RayJob's entrypoint), analysis/, cluster/.
COPY . .

CMD ["bash"]
