"""`radmatch serve`, `worker` and `health`: the matching service, its job worker, and whether it is
ready."""

from __future__ import annotations

import argparse

from cli.common import Subcommands, load_settings, log_to_stderr, open_service


def add_commands(commands: Subcommands) -> None:
    serve = commands.add_parser("serve", help="run the matching service (configured by RADMATCH_*)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--worker", action="store_true", help="also run a job worker in this process"
    )
    serve.set_defaults(run=_serve)

    worker = commands.add_parser(
        "worker", help="run jobs: index rebuilds, model activation, retraining"
    )
    worker.add_argument("--once", action="store_true", help="stop when the queue is empty")
    worker.set_defaults(run=_worker)

    health = commands.add_parser(
        "health", help="exit 0 when the service at --url is ready (for container health checks)"
    )
    health.add_argument("--url", default="http://127.0.0.1:8000", help="the service")
    health.set_defaults(run=_health)


def _serve(args: argparse.Namespace) -> int:
    import threading

    import uvicorn

    from app.audit.signing import SigningKeyError
    from app.jobs.worker import Worker
    from app.main import create_app

    log_to_stderr()
    service = open_service("serve", load_settings(), with_index=True)
    try:
        app = create_app(service)
    except SigningKeyError as error:
        service.close()
        raise SystemExit(f"radmatch serve: {error}") from None
    stop = threading.Event()
    if args.worker:
        threading.Thread(
            target=Worker(service).run, args=(stop,), name="worker", daemon=True
        ).start()
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_config=_log_config())
    finally:
        stop.set()
    return 0


def _log_config() -> dict:
    """uvicorn's logging, with keys kept out of its access log (app.access.log_redaction)."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_keys"] = {
        "()": "app.access.log_redaction.RedactAccessLog"
    }
    config["loggers"]["uvicorn.access"]["filters"] = ["redact_keys"]
    return config


def _worker(args: argparse.Namespace) -> int:
    import signal
    import threading

    from app.jobs.worker import Worker

    log_to_stderr()
    service = open_service("worker", load_settings(), with_index=False, with_model=False)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # finish the current job, then exit
    try:
        Worker(service).run(stop, once=args.once)
    except KeyboardInterrupt:
        pass
    finally:
        service.close()
    return 0


def _health(args: argparse.Namespace) -> int:
    import httpx

    try:
        response = httpx.get(f"{args.url.rstrip('/')}/readyz", timeout=10)
    except httpx.HTTPError as error:
        raise SystemExit(f"radmatch health: {args.url} does not answer: {error}") from None
    if response.status_code != 200:
        raise SystemExit(f"radmatch health: not ready: {response.text}")
    print("ready")
    return 0
