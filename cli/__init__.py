"""The `radmatch` command. Each subcommand parses its options and calls one function that tests call too;
heavy imports happen inside the subcommand so that `radmatch --help` stays instant."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from app.core.allocator import limit_heap_growth
from training.config import add_config_options, overrides_from


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    limit_heap_growth()  # before the model and the first images are loaded
    return args.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radmatch", description=__doc__.split(".")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="generate a phantom knee cohort")
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--subjects", type=int, required=True, help="number of people")
    synth.add_argument("--seed", type=int, default=0, help="cohort seed (people differ per seed)")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    synth.add_argument("--no-dicom", action="store_true", help="write PNG only")
    synth.set_defaults(run=_synth)

    train = commands.add_parser(
        "train", help="train the embedder (AdaTriplet with AutoMargin by default)"
    )
    _add_cohort_options(train, split="its people outside the test split")
    train.add_argument("--preset", default="cpu", help="paper, cpu or smoke (default: cpu)")
    train.add_argument("--config", type=Path, help="TOML file of options over the preset")
    train.add_argument("--out", type=Path, required=True, help="run folder: checkpoint.pt, last.pt")
    train.add_argument(
        "--no-resume", action="store_true", help="start over even if the folder holds a run"
    )
    add_config_options(train)
    train.set_defaults(run=_train)

    evaluate = commands.add_parser(
        "evaluate", help="match follow-up visits against baselines, by time since baseline"
    )
    _add_cohort_options(evaluate, split="its test split")
    embedder = evaluate.add_mutually_exclusive_group(required=True)
    embedder.add_argument("--checkpoint", type=Path, help="a trained embedder (radmatch train)")
    embedder.add_argument(
        "--embedder",
        choices=["raw-pixels", "untrained-resnet18"],
        help="a reference embedder that learns nothing",
    )
    evaluate.add_argument(
        "--input-size", type=int, default=128, help="input side in px of --embedder"
    )
    evaluate.add_argument("--device", default="cpu", help="torch device for --checkpoint")
    evaluate.add_argument(
        "--out", type=Path, default=None, help="write metrics.json, metrics.md, evaluation.png"
    )
    evaluate.set_defaults(run=_evaluate)

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

    db = commands.add_parser("db", help="the case database's schema").add_subparsers(
        dest="db_command", required=True
    )
    upgrade = db.add_parser("upgrade", help="migrate to the newest schema (or --revision)")
    upgrade.add_argument("--revision", default="head")
    upgrade.set_defaults(run=_db_upgrade)
    downgrade = db.add_parser("downgrade", help="migrate back to --revision (base: empty)")
    downgrade.add_argument("--revision", required=True)
    downgrade.set_defaults(run=_db_downgrade)

    keys = commands.add_parser("keys", help="API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create a key; it is printed once, as the last line")
    create.add_argument("--role", choices=["examiner", "admin"], required=True)
    create.add_argument("--name", required=True, help="whose key it is")
    create.set_defaults(run=_keys_create)
    keys.add_parser("list", help="list keys (never the keys themselves)").set_defaults(
        run=_keys_list
    )
    revoke = keys.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(run=_keys_revoke)

    audit = commands.add_parser("audit", help="evidence integrity").add_subparsers(
        dest="audit_command", required=True
    )
    verify = audit.add_parser(
        "verify",
        help="check the audit log's hash chain and every stored original; exit 1 on a problem",
    )
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(run=_audit_verify)

    ingest = commands.add_parser(
        "ingest", help="bulk-load a cohort's people and images into the case database (resumable)"
    )
    _add_cohort_options(ingest, split="its test split")
    ingest.add_argument(
        "--baseline-only", action="store_true", help="only each person's first visit (a gallery)"
    )
    ingest.set_defaults(run=_ingest)

    search = commands.add_parser(
        "search", help="search a running service with a radiograph; prints the ranked people"
    )
    search.add_argument("file", type=Path, help="the unknown person's radiograph")
    search.add_argument("--k", type=int, default=10, help="how many people (default 10)")
    search.add_argument("--url", default="http://127.0.0.1:8000", help="the service")
    search.add_argument("--pixel-spacing-mm", type=float, help="when the file does not say")
    search.set_defaults(run=_search)

    demo = commands.add_parser(
        "demo", help="phantom cohorts, a trained model, a gallery, and the service with a worker"
    )
    demo.add_argument("--data-dir", type=Path, default=Path("data/demo"), help="kept and reused")
    demo.add_argument("--preset", default="cpu", help="training preset (default: cpu)")
    demo.add_argument("--train-subjects", type=int, default=100, help="people to train on")
    demo.add_argument("--gallery-subjects", type=int, default=40, help="known people")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.set_defaults(run=_demo)
    return parser


def _add_cohort_options(parser: argparse.ArgumentParser, split: str) -> None:
    cohort = parser.add_mutually_exclusive_group(required=True)
    cohort.add_argument("--manifest", type=Path, help="knee manifest (phantom or OAI-style)")
    cohort.add_argument(
        "--chestxray14", type=Path, metavar="ROOT", help=f"NIH ChestX-ray14 release: {split}"
    )


def _synth(args: argparse.Namespace) -> int:
    from training.phantom.cohort import CohortSpec, synthesize

    spec = CohortSpec(out=args.out, subjects=args.subjects, seed=args.seed, dicom=not args.no_dicom)
    try:
        manifest = synthesize(spec, workers=args.workers)
    except ValueError as error:
        raise SystemExit(f"radmatch synth: {error}") from None
    print(manifest)
    return 0


def _train(args: argparse.Namespace) -> int:
    from training.config import resolve_config
    from training.train import train

    try:
        config = resolve_config(args.preset, args.config, overrides_from(args))
        cohort = args.manifest or args.chestxray14
        checkpoint = train(config, cohort, args.out, resume=not args.no_resume)
    except (ValueError, OSError) as error:  # bad options, manifest or data: say which
        raise SystemExit(f"radmatch train: {error}") from None
    print(checkpoint)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from model.checkpoint import CheckpointError
    from training.cohorts import CohortFormatError, read_cohort
    from training.embedders import baseline_embedder, checkpoint_embedder
    from training.protocol import evaluate_by_interval, metrics_table
    from training.report import verification_table, write_figure

    try:
        records, _ = read_cohort(args.manifest or args.chestxray14)
    except (CohortFormatError, OSError) as error:
        raise SystemExit(f"radmatch evaluate: {error}") from None
    if args.chestxray14 is not None:  # the paper evaluates on the official split's held-out people
        records = [r for r in records if r.split == "test"]
    try:
        if args.checkpoint is not None:
            embed = checkpoint_embedder(args.checkpoint, args.device)
        else:
            embed = baseline_embedder(args.embedder, args.input_size)
    except (CheckpointError, OSError) as error:
        raise SystemExit(f"radmatch evaluate: {error}") from None
    report = evaluate_by_interval(records, embed)
    tables = metrics_table(report) + "\n\n" + verification_table(report["verification"])
    print(tables)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "metrics.md").write_text(tables + "\n")
        write_figure(args.out / "evaluation.png", report)
    return 0


def _settings():
    from app.core.config import Settings

    return Settings()


def _open_service(command: str, with_index: bool, with_model: bool = True):
    from app.serving.service import Service, StartupError
    from app.storage.database import SchemaOutOfDate

    try:
        return Service.open(_settings(), with_index=with_index, with_model=with_model)
    except (SchemaOutOfDate, StartupError) as error:
        raise SystemExit(f"radmatch {command}: {error}") from None


def _log_to_stderr() -> None:
    import logging

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _serve(args: argparse.Namespace) -> int:
    import threading

    import uvicorn

    from app.jobs.worker import Worker
    from app.main import create_app

    _log_to_stderr()
    service = _open_service("serve", with_index=True)
    stop = threading.Event()
    if args.worker:
        threading.Thread(
            target=Worker(service).run, args=(stop,), name="worker", daemon=True
        ).start()
    try:
        uvicorn.run(create_app(service), host=args.host, port=args.port)
    finally:
        stop.set()
    return 0


def _worker(args: argparse.Namespace) -> int:
    import signal
    import threading

    from app.jobs.worker import Worker

    _log_to_stderr()
    service = _open_service("worker", with_index=False, with_model=False)
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


def _db_upgrade(args: argparse.Namespace) -> int:
    from app.storage.database import upgrade

    settings = _settings()
    upgrade(settings.sqlalchemy_url, args.revision)
    print(f"database at revision {args.revision}")
    return 0


def _db_downgrade(args: argparse.Namespace) -> int:
    from app.storage.database import downgrade

    downgrade(_settings().sqlalchemy_url, args.revision)
    print(f"database at revision {args.revision}")
    return 0


def _database_sessions(command: str):
    from app.storage.database import SchemaOutOfDate, check_schema, make_engine, session_factory

    engine = make_engine(_settings().sqlalchemy_url)
    try:
        check_schema(engine)
    except SchemaOutOfDate as error:
        raise SystemExit(f"radmatch {command}: {error}") from None
    return session_factory(engine)


def _keys_create(args: argparse.Namespace) -> int:
    from app.access.keys import create_key

    with _database_sessions("keys create").begin() as session:
        row, key = create_key(session, args.name, args.role)
    print(f"created {row.role} key {row.id} for {row.name!r}; it is shown only now:")
    print(key)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from app.storage.tables import ApiKey

    with _database_sessions("keys list")() as session:
        for row in session.scalars(select(ApiKey).order_by(ApiKey.id)):
            state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
            print(f"{row.id}\t{row.role}\t{row.name}\t{state}")
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from app.access.keys import revoke_key

    with _database_sessions("keys revoke").begin() as session:
        try:
            row = revoke_key(session, args.id)
        except LookupError as error:
            raise SystemExit(f"radmatch keys revoke: {error}") from None
    print(f"revoked key {row.id} ({row.name!r})")
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from app.audit.chain import verify
    from app.storage.originals import OriginalStore

    sessions = _database_sessions("audit verify")
    result = verify(sessions, OriginalStore(_settings().originals_dir))
    print(json.dumps(result.as_dict(), indent=2) if args.json else result.summary())
    return 0 if result.ok else 1


def _ingest(args: argparse.Namespace) -> int:
    from app.gallery.bulk import ingest_records
    from training.cohorts import CohortFormatError, read_cohort
    from training.protocol import split_gallery_queries

    try:
        records, _ = read_cohort(args.manifest or args.chestxray14)
    except (CohortFormatError, OSError) as error:
        raise SystemExit(f"radmatch ingest: {error}") from None
    if args.chestxray14 is not None:
        records = [r for r in records if r.split == "test"]
    if args.baseline_only:
        gallery, _ = split_gallery_queries(records)
        records = [records[i] for i in gallery]
    from app.core.errors import ClientError

    service = _open_service("ingest", with_index=False)
    try:
        summary = ingest_records(service, records)
    except ClientError as error:
        raise SystemExit(f"radmatch ingest: {error.message}") from None
    finally:
        service.close()
    print(
        f"{summary.people_added} people and {summary.images_added} images added; "
        f"{summary.images_already_stored} images were already stored"
    )
    return 0


def _search(args: argparse.Namespace) -> int:
    import os

    import httpx

    key = os.environ.get("RADMATCH_API_KEY")
    if not key:
        raise SystemExit(
            "radmatch search: set RADMATCH_API_KEY to an API key (radmatch keys create)"
        )
    form = {"k": args.k}
    if args.pixel_spacing_mm is not None:
        form["pixel_spacing_mm"] = args.pixel_spacing_mm
    try:
        with args.file.open("rb") as file:
            response = httpx.post(
                f"{args.url.rstrip('/')}/api/v1/search",
                headers={"X-API-Key": key},
                files={"file": (args.file.name, file)},
                data=form,
                timeout=120,
            )
    except (OSError, httpx.HTTPError) as error:
        raise SystemExit(f"radmatch search: {error}") from None
    if response.status_code != 200:
        detail = response.json().get("detail", response.text) if response.content else ""
        raise SystemExit(f"radmatch search: {response.status_code}: {detail}")
    print_ranking(response.json())
    return 0


def print_ranking(answer: dict) -> None:
    """A search's ranked people, as a table for a terminal."""
    print(
        f"search {answer['search_id']}: model version {answer['model_version']['id']}, "
        f"{answer['index_size']} images"
    )
    print("rank  similarity  distance  person (external reference)")
    for c in answer["candidates"]:
        print(
            f"{c['rank']:>4}  {c['similarity']:>10.4f}  {c['distance']:>8.4f}  "
            f"{c['person_id']} ({c['external_ref']})"
        )


def _demo(args: argparse.Namespace) -> int:
    from cli.demo import DemoPlan, run_demo

    plan = DemoPlan(
        args.data_dir, args.preset, args.train_subjects, args.gallery_subjects, args.host, args.port
    )
    return run_demo(plan)
