"""A Python environment that sees only the packages the GPU machine has, for dry runs of its scripts here.

    python benchmarks/device_like_python.py /tmp/devlike [SITE_PACKAGES...]   # then /tmp/devlike/bin/python

The GPU machine (benchmarks/gpu_head_to_head.sh) has no network and lacks SimpleITK, nibabel, nnU-Net and
others, which this machine has: a dry run with this machine's python would not notice a package missing from
.gpu/. This makes a venv without system site-packages and links into it, from this interpreter's site-packages,
only the distributions named in DEVICE_PACKAGES (the GPU image's list as last read, 2026-11-17), so an import of
anything else fails as it would there. Versions are this machine's (torch is the CPU build here). Listed
packages this interpreter lacks (tqdm, say) are taken from the further site-packages folders given, if any
(e.g. /tmp/nnunet_venv/lib/python3.11/site-packages), the same way: only listed ones.
"""
from __future__ import annotations

import importlib.metadata as md
import re
import sys
import venv
from pathlib import Path

DEVICE_PACKAGES = set("""
    absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
    charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
    cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
    flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
    huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
    jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
    llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
    multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
    nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
    nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
    nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
    opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec
    patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
    py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
    pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
    scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools
    shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server
    tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
    torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3
    uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> None:
    dest = Path(sys.argv[1]).resolve()
    venv.create(dest, with_pip=False, system_site_packages=False, clear=True)
    links = dest / "device_site"
    links.mkdir()
    linked: list[str] = []
    extra = [md.distributions(path=[p]) for p in sys.argv[2:]]
    for dist in [d for dists in [md.distributions()] + extra for d in dists]:
        name = norm(dist.metadata["Name"])
        if name not in DEVICE_PACKAGES or name in linked:
            continue
        base = Path(dist.locate_file(""))
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] != ".."}:
            if (base / top).exists() and not (links / top).exists():
                (links / top).symlink_to(base / top)
        linked.append(name)
    site = next((dest / "lib").glob("python3*")) / "site-packages"
    (site / "device.pth").write_text(f"{links}\n")
    print(f"{dest}/bin/python: {len(linked)} of this machine's distributions that the GPU machine has")


if __name__ == "__main__":
    main()
