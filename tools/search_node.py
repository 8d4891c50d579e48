"""Run a real, local Elasticsearch node without Docker.

The node comes from Elasticsearch's own published artifact, the
``integ-test-zip`` distribution on Maven Central (see docs/elasticsearch.md
for why 8.19 and what the zip lacks). It runs on loopback, single-node, with
security off, under ``<data-dir>/es-<port>/`` (config, data, logs, pid file).
Elasticsearch refuses to run as root, so when we are root the node runs as
the unprivileged system user ``bicameral``, created on first use.

    python -m tools.search_node start --port 9250 --data-dir .data/test
    python -m tools.search_node status|logs|stop --port 9250 --data-dir .data/test

With ``--nodes N`` (N > 1) it runs a local cluster of N nodes instead, for
tests and the bench (see "A local cluster" in docs/elasticsearch.md):

    python -m tools.search_node start --nodes 3 --port 9270 --data-dir .data/cluster

Node ``i`` serves HTTP on ``port + i`` and talks to the others over its
transport port, ``port + i + 100`` (fixed rather than chosen by the node, because
every node must know every other's address before any of them starts); each
node keeps its own ``es-<http port>`` folder, so ``--port 9271`` alone still
finds, stops or reports the second node. All N are master-eligible data nodes,
so any one may stop and the other two keep a quorum.

Standard library only: this runs before anything else is set up.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_VERSION",
    "SearchNodeError",
    "cluster_status",
    "ensure_distribution",
    "ensure_running",
    "logs",
    "main",
    "node_folder",
    "start",
    "status",
    "stop",
]

DEFAULT_VERSION = "8.19.21"

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVICE_USER = "bicameral"
HEAP = "512m"
DEFAULT_JDK = Path("/usr/lib/jvm/java-17-openjdk-amd64")
_ARTIFACT = "org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"
_LOG_TAIL = 40
# A cluster node's transport port is its HTTP port plus this.
TRANSPORT_OFFSET = 100
# JVM options that start a cluster's nodes in about half the time on a busy 2-core
# machine (23-28 s against 44-49 s measured for 3 nodes): the client compiler only,
# and no touching every page of the heap up front. Steady-state speed suffers, so a
# cluster measured by the bench starts with --full-jit.
_QUICK_START = ["-XX:TieredStopAtLevel=1", "-XX:-AlwaysPreTouch"]

# Loopback only: never send these requests through an http_proxy from the environment.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SearchNodeError(RuntimeError):
    """The node could not be set up, started or stopped; the message says why."""


@dataclass(frozen=True)
class _Node:
    """Where one node (one HTTP port) keeps its files."""

    port: int
    url: str
    root: Path
    config: Path
    data: Path
    logs: Path
    tmp: Path
    pid_file: Path
    lock_file: Path
    output_file: Path  # what bin/elasticsearch printed
    log_file: Path  # the node's own log

    @classmethod
    def at(cls, port: int, data_dir: Path) -> _Node:
        root = node_folder(Path(data_dir).expanduser().resolve(), port)
        return cls(
            port=port,
            # 127.0.0.1 rather than localhost: the node does not listen on ::1.
            url=f"http://127.0.0.1:{port}",
            root=root,
            config=root / "config",
            data=root / "data",
            logs=root / "logs",
            tmp=root / "tmp",
            pid_file=root / "node.pid",
            lock_file=root / "start.lock",
            output_file=root / "logs" / "startup.out",
            log_file=root / "logs" / "bicameral.log",
        )


def _others_can_enter(path: Path) -> bool:
    """Whether a user that owns none of the folders can walk down to ``path``."""
    for folder in [path, *path.parents]:
        if folder.exists() and not folder.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def node_folder(data_dir: Path, port: int) -> Path:
    """The node's folder: ``<data_dir>/es-<port>``, unless root runs us from a folder
    the unprivileged node user cannot enter (a checkout under /root, say). Then it
    lives under /var/lib/bicameral, named after the data folder so that start, stop
    and status all find the same one."""
    root = data_dir / f"es-{port}"
    if os.geteuid() != 0 or _others_can_enter(data_dir):
        return root
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:12]
    return Path("/var/lib/bicameral/nodes") / digest / f"es-{port}"


# -- the distribution ---------------------------------------------------------


def _make_folder(path: Path) -> None:
    """mkdir -p; the folders it creates get 0755 whatever the umask, so that the
    unprivileged node user can reach what root prepared for it."""
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for folder in missing:
        folder.chmod(0o755)


def _cache_root() -> Path:
    if override := os.environ.get("BICAMERAL_CACHE_DIR"):
        return Path(override).expanduser().resolve()
    if os.geteuid() == 0:
        return Path("/var/cache/bicameral")
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "bicameral"


def _maven_zip(version: str) -> Path:
    """The zip in the local Maven repository, fetched with Maven the first time."""
    repo = Path.home() / ".m2" / "repository"
    artifact_dir = repo / "org/elasticsearch/distribution/integ-test-zip/elasticsearch" / version
    path = artifact_dir / f"elasticsearch-{version}.zip"
    if path.is_file():
        return path
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SearchNodeError(f"{path} is missing and Maven (mvn) is not installed to fetch it")
    print(f"Fetching Elasticsearch {version} with Maven ...", flush=True)
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "dependency:get",
            f"-Dartifact={_ARTIFACT.format(version=version)}",
            "-Dtransitive=false",
            f"-Dmaven.repo.local={repo}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not path.is_file():
        raise SearchNodeError(
            f"mvn could not fetch {_ARTIFACT.format(version=version)} "
            f"(exit {result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return path


def _check_sha1(path: Path) -> None:
    sha1_file = path.with_name(path.name + ".sha1")
    if not sha1_file.is_file():
        return
    expected = sha1_file.read_text().split()[0].strip().lower()
    digest = hashlib.sha1(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise SearchNodeError(f"{path} does not match its sha1 ({expected}); delete it and retry")


def _unzip(archive: Path, target: Path) -> None:
    """Extract keeping the executable bits, everything readable by every user.

    zipfile drops permissions; the node may run as another user than the one
    unpacking, so files get a+r (a+x where the owner had x) and folders 0755.
    """
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            extracted = Path(zf.extract(info, target))
            if info.is_dir():
                extracted.chmod(0o755)
            else:
                executable = (info.external_attr >> 16) & stat.S_IXUSR
                extracted.chmod(0o755 if executable else 0o644)


def ensure_distribution(version: str = DEFAULT_VERSION) -> Path:
    """Return the Elasticsearch home for ``version``, fetching and unpacking it once."""
    root = _cache_root()
    home = root / f"elasticsearch-{version}"
    if (home / "bin" / "elasticsearch").is_file():
        return home
    archive = _maven_zip(version)
    _check_sha1(archive)
    _make_folder(root)
    print(f"Unpacking {archive.name} into {home} ...", flush=True)
    staging = Path(tempfile.mkdtemp(prefix=f".elasticsearch-{version}.", dir=root))
    try:
        _unzip(archive, staging)
        try:
            # Atomic: a home is either complete or absent.
            (staging / f"elasticsearch-{version}").rename(home)
        except OSError:
            if not (home / "bin" / "elasticsearch").is_file():
                raise
            # Another process unpacked it first; theirs is as good as ours.
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return home


# -- processes and files ------------------------------------------------------


def _java_home() -> Path:
    for variable in ("ES_JAVA_HOME", "JAVA_HOME"):
        value = os.environ.get(variable)
        if value and (Path(value) / "bin" / "java").is_file():
            return Path(value)
    if (DEFAULT_JDK / "bin" / "java").is_file():
        return DEFAULT_JDK
    if java := shutil.which("java"):
        return Path(java).resolve().parents[1]
    raise SearchNodeError("no Java found: install a JDK (17 or newer) or set ES_JAVA_HOME")


def _service_account() -> tuple[int, int]:
    """uid and gid of the unprivileged user the node runs as when we are root."""
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        useradd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        result = subprocess.run(
            [*useradd, SERVICE_USER],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            entry = pwd.getpwnam(SERVICE_USER)  # a concurrent useradd may have won
        except KeyError:
            raise SearchNodeError(
                f"could not create the system user {SERVICE_USER!r}: {result.stderr.strip()}"
            ) from None
    return entry.pw_uid, entry.pw_gid


def _check_reachable(path: Path, uid: int, gid: int) -> None:
    """Fail early, and clearly, when ``uid`` cannot walk down to ``path``."""
    for folder in [path, *path.parents]:
        st = folder.stat()
        if st.st_uid == uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid == gid:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            raise SearchNodeError(
                f"user {SERVICE_USER!r} cannot enter {folder} (mode {stat.filemode(st.st_mode)}); "
                f"allow it (chmod o+x {folder}) or choose another data or cache folder"
            )


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.lchown(root, uid, gid)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.lstat(path).st_uid != uid:
                os.lchown(path, uid, gid)


def _is_node_process(pid: int) -> bool:
    """True when ``pid`` is a live (not zombie) Elasticsearch server process."""
    proc = Path("/proc") / str(pid)
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and b"org.elasticsearch" in cmdline


def _node_pid(node: _Node) -> int | None:
    """The pid from the pid file if that process is still our node."""
    try:
        pid = int(node.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_node_process(pid) else None


def _get_json(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    try:
        with _HTTP.open(url, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:
        error.close()  # it holds the connection open
        return None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    return body if isinstance(body, dict) else None


def _probe(url: str) -> str | None:
    """The version of the Elasticsearch node answering at ``url``, if one does.

    Not ``GET /``: that endpoint lives in the rest-root module, which the
    integ-test-zip does not ship (it answers 405).
    """
    found = _get_json(f"{url}/_nodes/_local?filter_path=nodes.*.version")
    nodes = found.get("nodes") if found else None
    if not isinstance(nodes, dict) or not nodes:
        return None
    version = next(iter(nodes.values())).get("version")
    return str(version) if version else None


def _health(url: str) -> str | None:
    health = _get_json(f"{url}/_cluster/health")
    return str(health["status"]) if health and "status" in health else None


def _tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a file, read from its end (logs can be large)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            position, chunk = f.tell(), b""
            while position > 0 and chunk.count(b"\n") <= lines:
                step = min(64 * 1024, position)
                position -= step
                f.seek(position)
                chunk = f.read(step) + chunk
    except OSError:
        return ""
    return b"\n".join(chunk.splitlines()[-lines:]).decode(errors="replace")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise starts of the same node (parallel test workers, two shells)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class _Cluster:
    """The nodes of one local cluster, by HTTP port.

    Named `bicameral` like a single node (Elasticsearch names its log file after
    the cluster, and `logs` looks for bicameral.log): a node joins only the nodes
    its seed hosts list, the transport ports of its own cluster, and a single
    node never looks for others."""

    ports: tuple[int, ...]
    quick_start: bool = True

    @property
    def seed_hosts(self) -> list[str]:
        return [f"127.0.0.1:{port + TRANSPORT_OFFSET}" for port in self.ports]

    @property
    def node_names(self) -> list[str]:
        return [f"bicameral-{port}" for port in self.ports]


def _settings(node: _Node, cluster: _Cluster | None = None) -> str:
    settings: dict[str, object] = {
        "cluster.name": "bicameral",
        "node.name": f"bicameral-{node.port}",
        "path.data": str(node.data),
        "path.logs": str(node.logs),
        "network.host": "127.0.0.1",
        "http.port": node.port,
        "transport.port": 0,  # any free port: a single node never dials its transport
        "discovery.type": "single-node",
        "xpack.security.enabled": False,
        # The shared disk may be fairly full; a test node must not go read-only over it.
        "cluster.routing.allocation.disk.threshold_enabled": False,
        "action.destructive_requires_name": False,
    }
    if cluster is not None:
        del settings["discovery.type"]
        settings |= {
            "transport.port": node.port + TRANSPORT_OFFSET,
            "discovery.seed_hosts": cluster.seed_hosts,
        }
        if not _joined(node):
            # Only until the cluster has formed once: a node that has joined one keeps
            # it in its data folder, and Elasticsearch warns about a stale list. Not
            # "until data/ has files": a first start that failed halfway leaves some,
            # and then the nodes would wait for a cluster no one may form.
            settings["cluster.initial_master_nodes"] = cluster.node_names
    lines = [f"{key}: {json.dumps(value)}" for key, value in settings.items()]
    return "# Written by tools/search_node.py on every start.\n" + "\n".join(lines) + "\n"


def _joined_marker(node: _Node) -> Path:
    """Written once the node has been seen in its formed, green cluster."""
    return node.root / "cluster.joined"


def _joined(node: _Node) -> bool:
    return _joined_marker(node).exists()


def _prepare(node: _Node, home: Path, cluster: _Cluster | None = None) -> None:
    settings = _settings(node, cluster)
    for folder in (node.root, node.data, node.logs, node.tmp):
        folder.mkdir(parents=True, exist_ok=True)
    if not node.config.exists():
        staging = node.root / "config.partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(home / "config", staging)
        staging.rename(node.config)
    (node.config / "elasticsearch.yml").write_text(settings)
    options = node.config / "jvm.options.d"
    options.mkdir(exist_ok=True)
    jvm = [f"-Xms{HEAP}", f"-Xmx{HEAP}"]
    if cluster is not None and cluster.quick_start:
        jvm += _QUICK_START
    (options / "bicameral.options").write_text("\n".join(jvm) + "\n")


def _launch(node: _Node, home: Path, java_home: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ES_JAVA_HOME": str(java_home),
        "ES_PATH_CONF": str(node.config),
        "ES_TMPDIR": str(node.tmp),
        "HOME": str(node.root),
    }
    env.pop("JAVA_HOME", None)  # the launcher warns about it; ES_JAVA_HOME wins anyway
    identity: dict[str, Any] = {}
    if os.geteuid() == 0:
        uid, gid = _service_account()
        for path in (home, java_home, node.root):
            _check_reachable(path, uid, gid)
        _chown_tree(node.root, uid, gid)
        identity = {"user": uid, "group": gid, "extra_groups": []}
    node.pid_file.unlink(missing_ok=True)
    with node.output_file.open("wb") as output:
        # -d: the launcher returns once the node has started (or failed) and the
        # node lives on in its own session, outliving whoever started it.
        return subprocess.Popen(
            [str(home / "bin" / "elasticsearch"), "-d", "-p", str(node.pid_file)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=node.logs,  # the JVM writes gc.log and crash files into its working folder
            env=env,
            start_new_session=True,
            **identity,
        )


def _failure(node: _Node, reason: str) -> SearchNodeError:
    return SearchNodeError(
        f"{reason}\n"
        f"--- output of bin/elasticsearch ({node.output_file}) ---\n"
        f"{_tail(node.output_file, _LOG_TAIL)}\n"
        f"--- last {_LOG_TAIL} lines of {node.log_file} ---\n"
        f"{_tail(node.log_file, _LOG_TAIL)}"
    )


def _terminate(pid: int, grace: float = 30.0) -> None:
    """SIGTERM, and SIGKILL if the node has not exited after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            raise SearchNodeError(f"not allowed to stop pid {pid} (another user's)") from None
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _is_node_process(pid):
                return
            time.sleep(0.2)
    raise SearchNodeError(f"pid {pid} is still alive after SIGKILL")


def _abort(node: _Node, launcher: subprocess.Popen[bytes] | None) -> None:
    """Stop a start that failed, so the next attempt begins from nothing."""
    if launcher is not None and launcher.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)  # launcher and node share its session
        launcher.wait()
    if (pid := _node_pid(node)) is not None:
        _terminate(pid, grace=5.0)
    node.pid_file.unlink(missing_ok=True)


def _wait_ready(node: _Node, deadline: float, launcher: subprocess.Popen[bytes] | None) -> str:
    """Wait for yellow or green and return the version; fail fast when the node dies."""
    while True:
        if launcher is not None and launcher.poll() not in (None, 0):
            raise _failure(node, f"Elasticsearch failed to start (exit {launcher.returncode})")
        if _health(node.url) in ("yellow", "green") and (version := _probe(node.url)):
            return version
        launched = launcher is None or launcher.returncode == 0
        if launched and _node_pid(node) is None and _probe(node.url) is None:
            raise _failure(node, f"Elasticsearch on {node.url} stopped while starting")
        if time.monotonic() > deadline:
            raise _failure(node, f"Elasticsearch did not become ready on {node.url} in time")
        time.sleep(0.5)


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _describe(running: str, node: _Node) -> str:
    pid = _node_pid(node)
    where = f"pid {pid}, {node.root}" if pid else "not started from this data folder"
    return f"Elasticsearch {running} at {node.url} ({where})"


def _start(port: int, data_dir: Path, version: str, timeout: float, *, quiet: bool) -> str:
    node = _Node.at(port, data_dir)
    _make_folder(node.root)
    with _locked(node.lock_file):
        running = _probe(node.url)
        if running is None and _node_pid(node) is not None:  # launched, not ready yet
            running = _wait_ready(node, time.monotonic() + timeout, None)
        if running is not None:
            if not quiet:
                print(f"Already running: {_describe(running, node)}", flush=True)
            if running != version:
                print(f"note: {node.url} runs {running}, not {version}", file=sys.stderr)
            return node.url
        if _port_taken(port):
            raise SearchNodeError(f"port {port} is taken by something that is not Elasticsearch")
        home = ensure_distribution(version)
        _prepare(node, home)
        began = time.monotonic()
        launcher = _launch(node, home, _java_home())
        try:
            running = _wait_ready(node, began + timeout, launcher)
            try:
                launcher.wait(timeout=30)  # with -d it exits once the node has started
            except subprocess.TimeoutExpired:
                raise _failure(node, "bin/elasticsearch -d did not return") from None
        except BaseException:
            _abort(node, launcher)
            raise
        elapsed = time.monotonic() - began
        print(f"Started {_describe(running, node)} in {elapsed:.1f}s", flush=True)
        return node.url


def _wait_launched(launched: dict[_Node, subprocess.Popen[bytes] | None], deadline: float) -> None:
    """Wait until every node launched (None: launched by an earlier call) answers
    HTTP and its launcher has returned; fail fast, with its logs, when one dies.

    Not yellow or green per node, as a single node waits for: a cluster node has
    no health to report until enough of the others have joined to elect a master.
    """
    pending = dict(launched)
    while pending:
        for node, launcher in list(pending.items()):
            code = None if launcher is None else launcher.poll()
            if code not in (None, 0):
                raise _failure(node, f"Elasticsearch failed to start (exit {code})")
            answers = _probe(node.url) is not None
            if answers and (launcher is None or code == 0):
                del pending[node]
            elif (launcher is None or code == 0) and not answers and _node_pid(node) is None:
                raise _failure(node, f"Elasticsearch on {node.url} stopped while starting")
        if pending and time.monotonic() > deadline:
            node = next(iter(pending))
            raise _failure(node, f"Elasticsearch did not start on {node.url} in time")
        if pending:
            time.sleep(0.5)


def _wait_green(nodes: list[_Node], deadline: float) -> dict[str, Any]:
    """Wait until the cluster has all of ``nodes`` and is green; its health.

    Green, not yellow: with one node just (re)started, yellow means some replica
    is still copying to it, and a caller that stops another node next would lose
    the only copy of a shard.
    """
    health: dict[str, Any] | None = None
    while True:
        for node in nodes:
            health = _get_json(f"{node.url}/_cluster/health")
            if health is not None:
                break
        if health and health.get("number_of_nodes") == len(nodes) and health["status"] == "green":
            return health
        if time.monotonic() > deadline:
            raise _failure(
                nodes[0],
                f"the cluster did not have {len(nodes)} nodes and green health in time "
                f"(last health: {health})",
            )
        time.sleep(0.5)


def _cluster_nodes(port: int, data_dir: Path, count: int) -> list[_Node]:
    return [_Node.at(port + i, data_dir) for i in range(count)]


def _start_cluster(
    port: int, data_dir: Path, count: int, version: str, timeout: float, quick_start: bool
) -> str:
    cluster = _Cluster(tuple(range(port, port + count)), quick_start)
    nodes = _cluster_nodes(port, data_dir, count)
    with contextlib.ExitStack() as locks:
        for node in nodes:  # in port order, so two starts never wait on each other
            _make_folder(node.root)
            locks.enter_context(_locked(node.lock_file))
        began = time.monotonic()
        launched: dict[_Node, subprocess.Popen[bytes] | None] = {}
        missing: list[_Node] = []
        for node in nodes:
            if _probe(node.url) is not None:
                continue
            if _node_pid(node) is not None:  # launched before, not answering yet
                launched[node] = None
                continue
            for taken in (node.port, node.port + TRANSPORT_OFFSET):
                if _port_taken(taken):
                    raise SearchNodeError(
                        f"port {taken} (of {node.url}) is taken by something that is not "
                        "this cluster's node"
                    )
            missing.append(node)
        try:
            if missing:
                home, java_home = ensure_distribution(version), _java_home()
                # All at once: none of them can elect a master alone.
                for node in missing:
                    _prepare(node, home, cluster)
                    launched[node] = _launch(node, home, java_home)
            _wait_launched(launched, began + timeout)
            health = _wait_green(nodes, began + timeout)
            for node in nodes:
                _joined_marker(node).touch()
        except BaseException:
            for node, launcher in launched.items():
                if launcher is not None:
                    _abort(node, launcher)
            raise
        for node in nodes:
            version_running = _probe(node.url)
            print(
                f"{'Started' if node in missing else 'Already running'}: "
                f"{_describe(version_running or '?', node)}",
                flush=True,
            )
        urls = ",".join(node.url for node in nodes)
        print(
            f"Cluster of {health['number_of_nodes']} nodes, {health['status']}, "
            f"ready in {time.monotonic() - began:.1f}s\nELASTICSEARCH_URL={urls}",
            flush=True,
        )
        return urls


# -- the public face -----------------------------------------------------------


def start(
    *,
    port: int = 9200,
    data_dir: Path,
    version: str = DEFAULT_VERSION,
    timeout: float = 120.0,
    nodes: int = 1,
    quick_start: bool = True,
) -> str:
    """Start a node on 127.0.0.1:``port`` unless one runs there; return its URL.

    With ``nodes`` above 1, a cluster on ports ``port`` .. ``port + nodes - 1``:
    starts whichever of its nodes is not running (none, when all are: idempotent),
    waits until all have joined and the cluster is green, and returns their URLs
    joined by commas, as ELASTICSEARCH_URL takes them. ``quick_start`` (clusters
    only) trades the nodes' peak speed for a faster start (see _QUICK_START)."""
    if nodes < 1:
        raise SearchNodeError(f"--nodes {nodes}: a cluster has at least one node")
    if nodes == 1:
        return _start(port, data_dir, version, timeout, quiet=False)
    return _start_cluster(port, data_dir, nodes, version, timeout, quick_start)


def ensure_running(port: int, data_dir: Path) -> str:
    """:func:`start`, silent when the node is already up; for the test suite."""
    return _start(port, data_dir, DEFAULT_VERSION, 120.0, quiet=True)


def stop(port: int, data_dir: Path, nodes: int = 1) -> bool:
    """Stop the node started from ``data_dir`` on ``port`` (and the ``nodes - 1``
    above it, for a cluster); True if one was running."""
    if nodes > 1:
        # Each its own stop: one node that will not stop leaves the others stopped.
        stopped = [_stop(node) for node in _cluster_nodes(port, data_dir, nodes)]
        return any(stopped)
    return _stop(_Node.at(port, data_dir))


def _stop(node: _Node) -> bool:
    with contextlib.ExitStack() as stack:
        if node.root.is_dir():  # wait for a start in progress rather than race it
            stack.enter_context(_locked(node.lock_file))
        pid = _node_pid(node)
        if pid is None:
            node.pid_file.unlink(missing_ok=True)
            if _probe(node.url):
                print(f"A node answers on {node.url} but was not started from {node.root}.")
            else:
                print(f"No node running on {node.url}.")
            return False
        _terminate(pid)
        node.pid_file.unlink(missing_ok=True)
    print(f"Stopped Elasticsearch on {node.url} (pid {pid}).")
    return True


def status(port: int, data_dir: Path) -> dict[str, Any]:
    """running, pid, url, version and health of the node on ``port``."""
    node = _Node.at(port, data_dir)
    version = _probe(node.url)
    return {
        "running": version is not None,
        "pid": _node_pid(node),
        "url": node.url,
        "version": version,
        "health": _health(node.url) if version else None,
        "folder": str(node.root),
        "log": str(node.log_file),
    }


def cluster_status(port: int, data_dir: Path, nodes: int) -> dict[str, Any]:
    """:func:`status` of each of the cluster's nodes, and the cluster's health as
    the first node that answers sees it (None: no node answers, or none has a master)."""
    states = [status(node.port, data_dir) for node in _cluster_nodes(port, data_dir, nodes)]
    health = None
    for state in states:
        if state["running"] and (health := _get_json(f"{state['url']}/_cluster/health")):
            break
    return {
        "running": all(state["running"] for state in states),
        "health": health.get("status") if health else None,
        "number_of_nodes": health.get("number_of_nodes") if health else None,
        "nodes": states,
    }


def logs(port: int, data_dir: Path, lines: int = 100, nodes: int = 1) -> str:
    """The last ``lines`` lines of the node's log (or of its launcher's output);
    for a cluster, each node's in turn under a heading."""
    if nodes > 1:
        return "\n".join(
            f"=== {node.url} ({node.log_file}) ===\n{logs(node.port, data_dir, lines)}"
            for node in _cluster_nodes(port, data_dir, nodes)
        )
    node = _Node.at(port, data_dir)
    return _tail(node.log_file, lines) or _tail(node.output_file, lines)


def main(argv: list[str] | None = None, prog: str = "bicameral search-node") -> int:
    """``search-node start|stop|status|logs``; status exits 3 when no node runs.

    `prog` is how the caller was invoked, so that usage and --help name a command that works."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("SEARCH_NODE_PORT", "9200")),
        help="HTTP port on 127.0.0.1 (env SEARCH_NODE_PORT, default 9200)",
    )
    common.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("DATA_DIR") or REPO_ROOT / ".data"),
        help="folder holding es-<port>/ (env DATA_DIR, default <repo>/.data)",
    )
    common.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="nodes in a local cluster on ports PORT..PORT+NODES-1 (default 1: one node)",
    )
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a local Elasticsearch node for development and tests.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    begin = commands.add_parser("start", parents=[common], help="start the node (idempotent)")
    begin.add_argument("--version", default=DEFAULT_VERSION, help="Elasticsearch version")
    begin.add_argument(
        "--full-jit",
        action="store_true",
        help="start a cluster's nodes with the JVM's usual options (slower start, full speed)",
    )
    begin.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait for it (default 120, 240 for a cluster)",
    )
    commands.add_parser("stop", parents=[common], help="stop the node")
    commands.add_parser("status", parents=[common], help="show the node's state")
    tail = commands.add_parser("logs", parents=[common], help="print the end of the node's log")
    tail.add_argument("--lines", type=int, default=100)
    args = parser.parse_args(argv)

    try:
        if args.command == "start":
            timeout = args.timeout or (120.0 if args.nodes == 1 else 240.0)
            start(
                port=args.port,
                data_dir=args.data_dir,
                version=args.version,
                timeout=timeout,
                nodes=args.nodes,
                quick_start=not args.full_jit,
            )
        elif args.command == "stop":
            stop(args.port, args.data_dir, args.nodes)
        elif args.command == "status":
            if args.nodes > 1:
                cluster = cluster_status(args.port, args.data_dir, args.nodes)
                for state in cluster["nodes"]:
                    _print_status(state)
                    print()
                joined = cluster["number_of_nodes"]
                print(f"cluster  {cluster['health'] or '-'}, {joined or 'no'} nodes joined")
                return 0 if cluster["running"] else 3
            state = status(args.port, args.data_dir)
            _print_status(state)
            return 0 if state["running"] else 3
        else:
            print(logs(args.port, args.data_dir, args.lines, args.nodes))
    except SearchNodeError as error:
        print(f"search-node: {error}", file=sys.stderr)
        return 1
    return 0


def _print_status(state: dict[str, Any]) -> None:
    for key, value in state.items():
        print(f"{key:8} {'-' if value is None else value}")


if __name__ == "__main__":
    raise SystemExit(main(prog="python -m tools.search_node"))
