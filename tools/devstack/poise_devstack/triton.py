"""A real NVIDIA Triton Inference Server on 127.0.0.1, from the ``nvidia-pytriton`` wheel.

The wheel carries the ``tritonserver`` binary (the same server as the NGC image) and the Python
backend, whose per-Python-version stubs sit apart from the backend. :class:`TritonServer` builds a
backend folder the server accepts, points the stub at this interpreter's environment and serves a
model repository (``deploy/triton/models``) in explicit model-control mode, so that a test loads
only the models it needs. See shared/notes/TRITON.md for the facts this relies on.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import re
import sys
import sysconfig
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from poise_devstack.ports import LOCALHOST, free_ports, port_accepts
from poise_devstack.server import LocalServer
from poise_devstack.processes import ManagedProcess, StartupError

log = logging.getLogger(__name__)

_DEVSTACK = Path(__file__).resolve().parent.parent
REPO_ROOT = _DEVSTACK.parent.parent
DEFAULT_MODEL_REPOSITORY = REPO_ROOT / "deploy" / "triton" / "models"
_WHEEL_HINT = "install the PyPI package `nvidia-pytriton` (0.7.x) into this environment"
# glog's error lines ("E1126 06:12:00.123 ...") name the model that failed and why.
_ERROR_LINE = re.compile(r"^E\d{4} ")
_GLOG_PREFIX = re.compile(r"^E\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] ")
# A config.pbtxt that does not parse: protobuf says where ("22:5: Unknown enumeration value ...").
_PROTO_ERROR = re.compile(r"^\[libprotobuf ERROR [^\]]*\] ")
# Logged as errors on every start without a GPU; never the reason a start failed.
_HARMLESS = re.compile(r"CudaDriverHelper|NVML|DCGM|pinned memory|CUDA driver", re.IGNORECASE)
_SHM = Path("/dev/shm")
# Each model stub's shared-memory region starts this large, so that it never grows: under heavy load
# (16 interviews at once on 2 CPUs) regions grown from Triton's default 1 MiB crashed the 2.51 server
# twice of twice, and at this size the same runs went through twice (deploy/triton/README.md). Each
# region takes its whole size in /dev/shm from the start: 256 MiB a model instance.
SHM_REGION_BYTES = 256 * 2**20
# The Python backend's folder for packed environments: always /tmp/python_env_XXXXXX (not
# TMPDIR), made when the backend loads and removed only when a server stops cleanly.
_PYTHON_ENVS = "/tmp/python_env_*"


@dataclass(frozen=True)
class TritonInstall:
    """Where the wheel keeps the server, the Python backend and the stub for one Python version."""

    binary: Path
    python_backend: Path
    stub: Path

    @property
    def backend_files(self) -> tuple[Path, ...]:
        """The three files a ``<backend-directory>/python/`` folder must hold."""
        return (
            self.python_backend / "libtriton_python.so",
            self.python_backend / "triton_python_backend_utils.py",
            self.stub,
        )


def find_triton_install(python_version: str | None = None) -> TritonInstall:
    """Locate ``tritonserver``, the Python backend and the stub inside the installed pytriton.

    Args:
        python_version: ``"X.Y"`` of the stub; default this interpreter's. The stub must match the
            Python of the environment that runs the models.

    Raises:
        RuntimeError: pytriton is not installed, or a file is missing from it.
    """
    # find_spec locates the package without running its __init__ (which pulls in much of PyTriton).
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the pytriton package is not importable: {_WHEEL_HINT}")
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    install = TritonInstall(
        binary=root / "bin" / "tritonserver",
        python_backend=root / "backends" / "python",
        stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
    )
    missing = [str(p) for p in (install.binary, *install.backend_files) if not p.is_file()]
    if missing:
        raise RuntimeError(f"the Triton server in {root} is incomplete (missing {', '.join(missing)}): "
                           f"{_WHEEL_HINT}, built for Python {version}")
    return install


def import_model(model: str, repository: Path = DEFAULT_MODEL_REPOSITORY):
    """A Python-backend model's ``1/model.py`` as a module, outside a server (for tests).

    ``model.py`` imports ``triton_python_backend_utils``; that module comes from the Triton
    release that serves the model (the nvidia-pytriton wheel), so nothing stands in for Triton's.
    """
    if "triton_python_backend_utils" not in sys.modules:
        utils = find_triton_install().python_backend / "triton_python_backend_utils.py"
        spec = importlib.util.spec_from_file_location("triton_python_backend_utils", utils)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["triton_python_backend_utils"] = module
    spec = importlib.util.spec_from_file_location(f"poise_triton_model_{model}", Path(repository) / model / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _clean_error(line: str) -> str:
    """One glog error line without its prefix and quotes, cut at Triton's escaped traceback."""
    text = _PROTO_ERROR.sub("", _GLOG_PREFIX.sub("", line.rstrip()))
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    return text.split("\\n", 1)[0].strip()


def repository_models(model_repository: Path) -> list[str]:
    """Names of the models in a repository: folders that hold a ``config.pbtxt``."""
    return sorted(p.parent.name for p in Path(model_repository).glob("*/config.pbtxt"))


class TritonServer(LocalServer):
    """One ``tritonserver`` process serving a model repository's Python-backend models.

    Ports and the work folder are fixed by the first :meth:`start`, so :meth:`restart` brings the
    server back where clients expect it.

    Args:
        model_repository: folder of ``<model>/config.pbtxt`` + ``<model>/<version>/model.py``.
        models: the models to load (explicit model-control mode); default every model in the
            repository.
        http_port, grpc_port, metrics_port: default free ports on 127.0.0.1.
        work_dir: holds the backend folder and ``tritonserver.log``; default a new temporary folder,
            removed by :meth:`close` (and on leaving the ``with`` block). A given folder is kept.
        startup_timeout: seconds :meth:`start` waits for the server and every model to be ready.
        exit_timeout: seconds Triton waits on SIGTERM for in-flight requests and open sequences
            (``--exit-timeout-secs``; Triton's default 30 s would make every test teardown with an
            unfinished sequence wait that long).
        extra_args: more ``tritonserver`` flags (e.g. ``--log-verbose=1``).

    The models run in this interpreter's environment: the stub finds it through ``PATH`` and must
    load this interpreter's libpython, so ``poise_common``, MediaPipe and faster-whisper have to be
    installed here.
    """

    kind = "tritonserver"
    stop_timeout = 30.0

    def __init__(
        self,
        model_repository: Path = DEFAULT_MODEL_REPOSITORY,
        *,
        models: Sequence[str] | None = None,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        work_dir: Path | None = None,
        startup_timeout: float = 120.0,
        exit_timeout: int = 5,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        self.models = list(models) if models is not None else None
        self._http_port = http_port
        self._grpc_port = grpc_port
        self._metrics_port = metrics_port
        self._owns_work_dir = work_dir is None
        self._work_dir = Path(work_dir) if work_dir is not None else None
        self.startup_timeout = startup_timeout
        self.exit_timeout = exit_timeout
        self.extra_args = list(extra_args)
        # Shared-memory regions of this server's stubs carry this prefix, so that after a kill
        # the regions it leaves in /dev/shm can be removed without touching another server's.
        self._shm_prefix = f"poise_triton_{uuid.uuid4().hex[:12]}_"
        self._process: ManagedProcess | None = None
        self._python_envs: set[str] = set()  # the backend's folders this server made

    # -- properties ------------------------------------------------------------------------------

    @property
    def grpc_url(self) -> str:
        """``127.0.0.1:PORT`` for ``tritonclient.grpc``."""
        return f"{LOCALHOST}:{self._require_port(self._grpc_port)}"

    @property
    def http_url(self) -> str:
        """``127.0.0.1:PORT`` for ``tritonclient.http`` (add ``http://`` for plain HTTP clients)."""
        return f"{LOCALHOST}:{self._require_port(self._http_port)}"

    @property
    def metrics_url(self) -> str:
        """The Prometheus endpoint, ``http://127.0.0.1:PORT/metrics``."""
        return f"http://{LOCALHOST}:{self._require_port(self._metrics_port)}/metrics"

    @property
    def log_path(self) -> Path:
        """The server's stdout and stderr (the models' stubs log there too)."""
        return self._require_work_dir() / "tritonserver.log"

    @property
    def loaded_models(self) -> list[str]:
        """The models this server loads at start."""
        return self.models if self.models is not None else repository_models(self.model_repository)

    def metrics_text(self) -> str:
        """The Prometheus text of the metrics endpoint."""
        response = httpx.get(self.metrics_url, timeout=5.0)
        response.raise_for_status()
        return response.text

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> TritonServer:
        """Start the server and wait until it and every model answer ready.

        Raises:
            RuntimeError: the wheel, the repository or a requested model is missing.
            StartupError: the server exited (a model failed to load: the message names it and
                gives Triton's reason) or was not ready in ``startup_timeout`` s. Nothing is left
                running.
        """
        if self.is_running():
            return self
        install = find_triton_install()
        models = self.loaded_models
        self._check_repository(models)
        work = self._prepare_work_dir()
        backends = self._build_backend_dir(install, work)
        self._pick_ports()
        for port in (self._http_port, self._grpc_port, self._metrics_port):
            assert port is not None
            if port_accepts(LOCALHOST, port):
                raise StartupError(f"port {port} on {LOCALHOST} is taken by another process; "
                                   "tritonserver cannot listen on it")
        args = [
            str(install.binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends}",
            "--disable-auto-complete-config",
            "--exit-on-error=true",
            f"--http-address={LOCALHOST}", f"--http-port={self._http_port}",
            f"--grpc-address={LOCALHOST}", f"--grpc-port={self._grpc_port}",
            f"--metrics-address={LOCALHOST}", f"--metrics-port={self._metrics_port}",
            "--model-control-mode=explicit",
            *(f"--load-model={m}" for m in models),
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            f"--backend-config=python,shm-default-byte-size={SHM_REGION_BYTES}",
            f"--exit-timeout-secs={self.exit_timeout}",
            *self.extra_args,
        ]
        envs_before = set(glob.glob(_PYTHON_ENVS))
        self._process = ManagedProcess(
            args,
            log_path=self.log_path,
            env=self._environment(),
            cwd=work,
            name=f"tritonserver@{self._grpc_port}",
            # Only the server: it stops its model stubs itself (finalize() runs); a group-wide
            # SIGTERM would kill the stubs under it. Leftovers get SIGKILL afterwards anyway.
            signal_group=False,
        )
        self._process.start()
        try:
            self._process.wait_until(self._ready, self.startup_timeout,
                                     f"ready with models {', '.join(models) or '(none)'}", interval=0.2)
        except StartupError as exc:
            self._process.kill()
            self._remove_shm()
            raise StartupError(self._explain(str(exc))) from None
        except BaseException:
            self._process.kill()
            self._remove_shm()
            raise
        # Ready means the backend has loaded: a folder that appeared since the launch is this server's.
        self._python_envs |= set(glob.glob(_PYTHON_ENVS)) - envs_before
        log.info("tritonserver ready on grpc %s (pid %s) with %s", self.grpc_url, self.pid, models)
        return self

    def _after_stop(self) -> None:
        self._remove_shm()
        self._remove_python_envs()

    # -- internals -------------------------------------------------------------------------------

    def _require_port(self, port: int | None) -> int:
        if port is None:
            raise RuntimeError("the server has no ports yet: call start() first")
        return port

    def _require_work_dir(self) -> Path:
        if self._work_dir is None:
            raise RuntimeError("the server has no folder yet: call start() first")
        return self._work_dir

    def _check_repository(self, models: Sequence[str]) -> None:
        if not self.model_repository.is_dir():
            raise RuntimeError(f"model repository {self.model_repository} does not exist")
        missing = [m for m in models if not (self.model_repository / m / "config.pbtxt").is_file()]
        if missing:
            present = ", ".join(repository_models(self.model_repository)) or "none"
            raise RuntimeError(f"model repository {self.model_repository} has no {', '.join(missing)} "
                               f"(models there: {present})")

    def _prepare_work_dir(self) -> Path:
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="poise-triton-"))
        self._work_dir.mkdir(parents=True, exist_ok=True)
        return self._work_dir

    @staticmethod
    def _build_backend_dir(install: TritonInstall, work: Path) -> Path:
        """``<work>/backends/python/`` with links to the backend library, its utils and the stub."""
        backends = work / "backends"
        python = backends / "python"
        python.mkdir(parents=True, exist_ok=True)
        for source in install.backend_files:
            link = python / source.name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(source)
        return backends

    def _pick_ports(self) -> None:
        if None in (self._http_port, self._grpc_port, self._metrics_port):
            picked = iter(free_ports(3))
            self._http_port = self._http_port or next(picked)
            self._grpc_port = self._grpc_port or next(picked)
            self._metrics_port = self._metrics_port or next(picked)

    @staticmethod
    def _environment() -> dict[str, str]:
        # The stub links libpython dynamically: without this interpreter's LIBDIR first, Debian's
        # older libpython3.11 is loaded and threading breaks inside the models.
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        # The stub ignores PYTHONPATH and takes its environment from the first python3 on PATH.
        scripts = sysconfig.get_path("scripts") or str(Path(sys.prefix) / "bin")

        def prepend(first: str, rest: str | None) -> str:
            return os.pathsep.join(p for p in (first, rest or "") if p)

        return {
            "LD_LIBRARY_PATH": prepend(libdir, os.environ.get("LD_LIBRARY_PATH")),
            "PATH": prepend(scripts, os.environ.get("PATH")),
        }

    def _ready(self) -> bool:
        base = f"http://{self.http_url}"
        try:
            if httpx.get(f"{base}/v2/health/ready", timeout=2.0).status_code != 200:
                return False
            return all(httpx.get(f"{base}/v2/models/{m}/ready", timeout=2.0).status_code == 200
                       for m in self.loaded_models)
        except httpx.HTTPError:
            return False

    def _explain(self, message: str) -> str:
        """Put Triton's own reason (which model failed, and why) above the log tail."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                errors = [_clean_error(line) for line in handle
                          if _ERROR_LINE.match(line) and not _HARMLESS.search(line)
                          or _PROTO_ERROR.match(line)]
        except FileNotFoundError:
            errors = []
        if not errors:
            return message
        # Prefer the line that names a model ("failed to load 'x' ...", "Poll failed for model
        # directory 'x' ...") over the bare exception line the backend logs before it.
        named = [e for e in errors if any(f"'{m}'" in e for m in self.loaded_models)]
        headline = (named or errors)[0]
        details = [e for e in errors if e != headline][:10]
        return "\n".join([f"tritonserver could not start: {headline}", *details, message])

    def _remove_python_envs(self) -> None:
        # A server that stopped cleanly removed its folder; one killed or crashed left it behind.
        # Only empty folders go (nothing here packs environments). The folder's name is the
        # backend's, not ours to choose: another program's server started in the same seconds
        # could have its folder counted here, and would then find it gone when it stops.
        for folder in self._python_envs:
            try:
                os.rmdir(folder)
            except OSError:
                pass  # gone already (a clean stop), or not empty: not ours to empty
        self._python_envs.clear()

    def _remove_shm(self) -> None:
        # Triton unlinks its regions on a clean stop; after SIGKILL they would stay in /dev/shm.
        for region in _SHM.glob(f"{self._shm_prefix}*"):
            try:
                region.unlink()
            except OSError:
                pass
