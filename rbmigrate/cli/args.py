"""Command-line grammar (DESIGN §6): global options work before or after the command."""

from __future__ import annotations

import argparse
from typing import Any

COMMANDS = (
    "plan",
    "migrate",
    "verify",
    "compare",
    "bootstrap",
    "rollback",
    "demo",
    "init",
    "doctor",
)

DESCRIPTION = """\
Move a ReasoningBank memory store from ChromaDB into Supabase (PostgreSQL + pgvector)
and prove that nothing was lost.

  rbmigrate                      full-screen wizard
  rbmigrate --headless           bootstrap if needed -> plan -> migrate -> verify
  rbmigrate --headless COMMAND   one step: plan | migrate | verify | compare QUERY |
                                 bootstrap | rollback RUN_ID | demo | init | doctor
"""

EPILOG = """\
exit codes: 0 ok · 1 verification mismatch or rejects above max_rejects · 2 usage or config
error · 3 cannot connect or authenticate · 4 schema missing or incompatible · 130 interrupted
(resumable). Configuration: flags > environment > --config file > defaults; see
config.example.toml.
"""


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    d: Any = argparse.SUPPRESS if suppress else None
    g = parser.add_argument_group("source and target")
    g.add_argument(
        "--config", metavar="FILE", default=d, help="TOML config file (default ./rbmigrate.toml)"
    )
    g.add_argument(
        "--headless", action="store_true", default=d or False, help="no wizard: run and print"
    )
    g.add_argument("--chroma-path", metavar="DIR", default=d, help="Chroma persistent directory")
    g.add_argument(
        "--chroma-url", metavar="URL", default=d, help="Chroma server, e.g. http://127.0.0.1:8000"
    )
    g.add_argument(
        "--collection",
        metavar="NAME",
        action="append",
        default=d,
        help="collection to migrate (repeatable; default: every ReasoningBank collection)",
    )
    g.add_argument(
        "--db-url",
        metavar="URL",
        default=d,
        help="postgresql://... | embedded | embedded:DIR | env:NAME (default embedded)",
    )
    g.add_argument("--supabase-url", metavar="URL", default=d, help="Supabase project URL (REST)")
    g.add_argument(
        "--supabase-key-env",
        metavar="VAR",
        default=d,
        help="environment variable holding the Supabase service-role key",
    )
    g.add_argument("--schema", metavar="NAME", default=d, help="target schema (default public)")
    g.add_argument(
        "--workspace",
        metavar="ID",
        action="append",
        default=d,
        help="workspace to migrate (repeatable; '' selects records without one)",
    )
    g.add_argument(
        "--reader",
        choices=("auto", "native", "chromadb"),
        default=d,
        help="how a snapshot is read (default auto)",
    )
    g.add_argument(
        "--data-dir", metavar="DIR", default=d, help="run directories and embedded database"
    )
    r = parser.add_argument_group("run")
    r.add_argument(
        "--batch-size", metavar="N", type=int, default=d, help="records per batch (1..5000)"
    )
    r.add_argument(
        "--max-rejects", metavar="N", type=int, default=d, help="rejects tolerated (-1: any)"
    )
    r.add_argument("--report", metavar="FILE", default=d, help="also write the JSON report here")
    r.add_argument("--rejects", metavar="FILE", default=d, help="also write rejected records here")
    r.add_argument(
        "--json", action="store_true", default=d or False, help="print the report as JSON"
    )
    r.add_argument("--yes", action="store_true", default=d or False, help="never prompt")
    r.add_argument(
        "--resume",
        metavar="RUN_ID",
        nargs="?",
        const="latest",
        default=d,
        help="continue an interrupted run (the latest one without RUN_ID)",
    )
    r.add_argument(
        "--keep-snapshot",
        action="store_true",
        default=d or False,
        help="keep the source snapshot in the run directory",
    )
    r.add_argument(
        "--delete-missing",
        action="store_true",
        default=d or False,
        help="delete target rows whose source record is gone",
    )
    r.add_argument(
        "--retry-rejects", metavar="FILE", default=d, help="migrate: replay a rejects.jsonl"
    )
    r.add_argument(
        "--deep", action="store_true", default=d or False, help="verify: compare vectors too"
    )
    r.add_argument("--run-id", metavar="ID", default=d, help=argparse.SUPPRESS)
    c = parser.add_argument_group("compare, demo, bootstrap, init")
    c.add_argument(
        "-k",
        "--k",
        "--top-k",
        dest="top_k",
        metavar="K",
        type=int,
        default=d,
        help="compare: results per side",
    )
    c.add_argument("--parity", metavar="N", type=int, default=d, help="compare: N sampled queries")
    c.add_argument(
        "--domain", metavar="NAME", default=d, help="compare: only memories of this domain_category"
    )
    c.add_argument("--exact", action="store_true", default=d or False, help="compare: exact search")
    c.add_argument(
        "--records", metavar="N", type=int, default=d, help="demo: records to write (default 500)"
    )
    c.add_argument("--seed", metavar="N", type=int, default=d, help="demo: random seed")
    c.add_argument(
        "--space",
        choices=("l2", "ip", "cosine"),
        default=d,
        help="demo: the collection's distance space (default l2, as upstream)",
    )
    c.add_argument(
        "--embeddings",
        choices=("real", "random"),
        default=d,
        help="demo: real all-MiniLM-L6-v2 vectors (default) or random ones",
    )
    c.add_argument(
        "--print-sql",
        action="store_true",
        default=d or False,
        help="bootstrap: print the rendered schema.sql and exit",
    )
    c.add_argument(
        "--check",
        action="store_true",
        default=d or False,
        help="bootstrap: report what exists and what would be created, change nothing",
    )
    c.add_argument(
        "--force",
        action="store_true",
        default=d or False,
        help="init/demo: replace an existing file or demo store",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rbmigrate",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    _common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    helps = {
        "plan": "dry run: what would happen to every record (writes nothing)",
        "migrate": "copy the source into the target (resumable), then verify",
        "verify": "compare source and target counts and hashes",
        "compare": "run one query on both sides and show the results side by side",
        "bootstrap": "create or check the target schema",
        "rollback": "undo what a run inserted and updated",
        "demo": "write a realistic demo store to try rbmigrate on",
        "init": "write a starter config file",
        "doctor": "check everything a migration needs before it starts",
    }
    for name in COMMANDS:
        p = sub.add_parser(
            name,
            help=helps[name],
            description=helps[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name == "compare":
            p.add_argument("query", nargs="?", help="query text")
        if name == "rollback":
            p.add_argument("target_run", metavar="RUN_ID", help="the run to undo")
        _common(p, suppress=True)
    return parser


def overrides(ns: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Flags as config overrides (None means: not given)."""

    def g(name: str) -> Any:
        return getattr(ns, name, None)

    key_env = g("supabase_key_env")
    return {
        "source": {
            "chroma_path": g("chroma_path"),
            "chroma_url": g("chroma_url"),
            "collections": g("collection"),
            "workspaces": g("workspace"),
            "reader": g("reader"),
        },
        "target": {
            "db_url": g("db_url"),
            "supabase_url": g("supabase_url"),
            "supabase_key": f"env:{key_env}" if key_env else None,
            "schema": g("schema"),
        },
        "migration": {
            "batch_size": g("batch_size"),
            "max_rejects": g("max_rejects"),
            "delete_missing": True if g("delete_missing") else None,
            "keep_snapshot": True if g("keep_snapshot") else None,
        },
        "run": {"data_dir": g("data_dir")},
    }
