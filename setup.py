"""Build script for mask2former_rankseg (metadata lives in pyproject.toml).

The compiled extension ``mask2former_rankseg._C`` holds the multi-scale deformable attention kernels:
the CPU kernel always, the CUDA kernel when torch sees a GPU or ``FORCE_CUDA=1`` (architectures from
``TORCH_CUDA_ARCH_LIST``). It needs the installed torch at build time, so install with
``pip install --no-build-isolation -e .``. The package works without the extension (pure-PyTorch path).

Environment:
    FORCE_CUDA=1                        build the CUDA kernel without a visible GPU (needs nvcc).
    MASK2FORMER_RANKSEG_NO_EXTENSION=1  skip the extension.
    MASK2FORMER_RANKSEG_STRICT_BUILD=1  fail the install when the extension fails to build (implied by
                                        FORCE_CUDA=1); otherwise a failed build is reported and skipped.
"""

import logging
import os
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

logger = logging.getLogger("mask2former_rankseg.setup")
ROOT = Path(__file__).resolve().parent
CSRC = Path("mask2former_rankseg") / "ops" / "csrc"


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() not in ("", "0", "false", "no", "off")


def _cuda_home_hint() -> None:
    """Point torch at a full CUDA toolkit when ``nvcc`` on PATH is a wrapper outside it (e.g. /usr/local/bin/nvcc).

    torch guesses CUDA_HOME as the parent of nvcc's directory; when that holds no ``include/cuda_runtime.h``
    but /usr/local/cuda does, use the latter. An explicit CUDA_HOME or CUDA_PATH is left alone.
    """
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    nvcc = shutil.which("nvcc")
    guess = Path(nvcc).resolve().parent.parent if nvcc else None
    standard = Path("/usr/local/cuda")
    if (guess is not None and not (guess / "include" / "cuda_runtime.h").exists()
            and (standard / "include" / "cuda_runtime.h").exists()):
        os.environ["CUDA_HOME"] = str(standard)


def _extension_setup() -> dict:
    """``ext_modules`` and ``cmdclass`` for the kernels, or nothing when they cannot or should not build."""
    if _flag("MASK2FORMER_RANKSEG_NO_EXTENSION"):
        return {}
    _cuda_home_hint()
    try:
        import torch  # build-time only: torch may be missing when pip reads the metadata
        from torch.utils import cpp_extension
    except ImportError:
        logger.warning("torch is not importable at build time: building without the compiled kernels. "
                       "Install torch first, then `pip install --no-build-isolation -e .`.")
        return {}

    with_cuda = _flag("FORCE_CUDA") or (torch.cuda.is_available() and cpp_extension.CUDA_HOME is not None)
    sources = [CSRC / "bindings.cpp", CSRC / "ms_deform_attn" / "ms_deform_attn_checks.cpp",
               CSRC / "ms_deform_attn" / "ms_deform_attn_cpu.cpp"]
    # -fopenmp-simd: honour `#pragma omp simd` (vectorised channel loops) without the OpenMP runtime.
    compile_args = {"cxx": ["/O2"] if os.name == "nt" else ["-O3", "-fopenmp-simd"]}
    macros = []
    if with_cuda:
        sources.append(CSRC / "ms_deform_attn" / "ms_deform_attn_cuda.cu")
        macros.append(("WITH_CUDA", None))
        compile_args["nvcc"] = ["-O3", "--expt-relaxed-constexpr"]
        extension_class = cpp_extension.CUDAExtension
    else:
        extension_class = cpp_extension.CppExtension
    extension = extension_class(
        name="mask2former_rankseg._C",
        sources=[str(s) for s in sources],
        include_dirs=[str(ROOT / CSRC)],
        define_macros=macros,
        extra_compile_args=compile_args,
    )
    strict = _flag("MASK2FORMER_RANKSEG_STRICT_BUILD") or _flag("FORCE_CUDA")

    class OptionalBuildExtension(cpp_extension.BuildExtension):
        """Builds the kernels; unless strict, a failure leaves a working pure-PyTorch install."""

        def run(self):
            try:
                super().run()
            except Exception as e:  # no or unusable compiler, unsupported toolkit, compile error, ...
                if strict:
                    raise
                logger.warning("Could not build the compiled kernels (%s: %s). The package falls back to the "
                               "PyTorch path; set MASK2FORMER_RANKSEG_STRICT_BUILD=1 to see the failure.",
                               type(e).__name__, e)

        def get_outputs(self):  # only what was built, so that installers do not look for a missing library
            return [path for path in super().get_outputs() if os.path.exists(path)]

    return {"ext_modules": [extension], "cmdclass": {"build_ext": OptionalBuildExtension}}


class BuildPyWithConfigs(build_py):
    """``build_py`` that also copies the repository's ``configs/`` tree into the built package as
    ``mask2former_rankseg/configs/`` (the wheel's configs, found by name through ``config.shipped``); an editable
    install reads the repository's own tree instead."""

    def run(self):
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "mask2former_rankseg" / "configs"
        for source in sorted((ROOT / "configs").rglob("*.yaml")):
            destination = target / source.relative_to(ROOT / "configs")
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)


extension = _extension_setup()
setup(
    packages=find_packages(include=["mask2former_rankseg", "mask2former_rankseg.*"]),
    include_package_data=True,
    ext_modules=extension.get("ext_modules", []),
    cmdclass={"build_py": BuildPyWithConfigs, **extension.get("cmdclass", {})},
)
