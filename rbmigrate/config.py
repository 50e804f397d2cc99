"""Configuration: dataclasses read from TOML, environment and flags, in that rising order.

Precedence is flags > environment > file > defaults (DESIGN §6). Secrets are kept as
`env:NAME` references wherever they came from the environment, resolved only when used,
written back only as references, and masked in every view a person or a file sees
(`redacted()`).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tomli_w

from rbmigrate.errors import ConfigError

DEFAULT_CONFIG_NAME = "rbmigrate.toml"
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MAX_PAGE = 5000
IDENTIFIER_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
ENV_REF_RE = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$")


def _f(default: Any, doc: str, *, secret: bool = False, env: str | None = None) -> Any:
    meta = {"doc": doc, "secret": secret, "env": env}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class SourceConfig:
    chroma_path: str = _f(
        "", "Chroma persistent directory (the ReasoningBank server's chroma_data)."
    )
    chroma_url: str = _f(
        "", "Chroma server URL, e.g. http://127.0.0.1:8000 (instead of chroma_path)."
    )
    chroma_token: str = _f("", "Token for a Chroma server with auth; use env:NAME.", secret=True)
    chroma_tenant: str = _f("default_tenant", "Chroma tenant (server sources).")
    chroma_database: str = _f("default_database", "Chroma database (server sources).")
    collections: list[str] = _f([], "Collections to migrate; empty means every ReasoningBank one.")
    workspaces: list[str] = _f([], "Workspace ids to migrate; empty means all. Others are skipped.")
    timezone: str = _f("UTC", "Time zone that naive source timestamps were written in.")
    traces_json: str = _f(
        "", "Legacy traces.json; empty means <chroma_path>/traces.json if present."
    )
    reader: str = _f("auto", "auto | native | chromadb: how a persistent snapshot is read.")


@dataclass
class TargetConfig:
    db_url: str = _f(
        "embedded",
        "embedded | embedded:DIR | postgresql://... (direct or session pooler); use env:NAME.",
        secret=True,
        env="SUPABASE_DB_URL",
    )
    supabase_url: str = _f("", "Supabase project URL, for the REST transport.", env="SUPABASE_URL")
    supabase_key: str = _f(
        "", "Supabase service-role key; use env:NAME.", secret=True, env="SUPABASE_KEY"
    )
    schema: str = _f("public", "PostgreSQL schema that holds the ReasoningBank tables.")
    dimension: int = _f(0, "Vector dimension of the target; 0 means the source collection's.")


@dataclass
class MigrationConfig:
    batch_size: int = _f(2000, "Records per batch (1..5000): one COPY + merge + checkpoint each.")
    max_rejects: int = _f(
        0, "Rejected records tolerated before the run exits 1; -1 means no limit."
    )
    delete_missing: bool = _f(False, "Delete target rows whose source record no longer exists.")
    outcome_map: dict[str, str] = _f({}, 'Translate outcome values, e.g. { ok = "success" }.')
    reembed_missing: bool = _f(True, "Re-embed records that have no embedding (needs the model).")
    keep_snapshot: bool = _f(False, "Keep the source snapshot in the run directory after the run.")


@dataclass
class EmbeddingConfig:
    model: str = _f(DEFAULT_MODEL, "sentence-transformers model name or local path.")
    device: str = _f("cpu", "Torch device for the model.")
    encode_batch_size: int = _f(64, "Texts per encode call.")
    processes: int = _f(
        0,
        "Model processes that encode trace tasks side by side, one torch thread each on a "
        "machine with as many cores; 0: one per core, at most 4 (each holds about 500 MB).",
    )


@dataclass
class RunConfig:
    data_dir: str = _f(
        "", "Where runs and the embedded database live; empty: ~/.local/share/rbmigrate."
    )


SECTIONS: dict[str, type] = {
    "source": SourceConfig,
    "target": TargetConfig,
    "migration": MigrationConfig,
    "embedding": EmbeddingConfig,
    "run": RunConfig,
}


@dataclass
class Config:
    source: SourceConfig = field(default_factory=SourceConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    migration: MigrationConfig = field(default_factory=MigrationConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    run: RunConfig = field(default_factory=RunConfig)
    path: str | None = None
    # "section.key" of every value a file, the environment or a flag set (not the defaults):
    # a default db_url must not win over a supabase_url the user did give
    explicit: set[str] = field(default_factory=set, compare=False, repr=False)

    # --- derived views -------------------------------------------------------------
    def data_dir(self) -> Path:
        if self.run.data_dir:
            return Path(self.run.data_dir).expanduser()
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(base) / "rbmigrate"

    def source_location(self) -> str:
        return self.source.chroma_url or self.source.chroma_path

    def uses_rest(self) -> bool:
        """The REST transport: a supabase_url, and no db_url given (empty, or the default)."""
        t = self.target
        return bool(t.supabase_url) and (not t.db_url or "target.db_url" not in self.explicit)

    def redacted(self) -> dict[str, Any]:
        """The config as a dict with every secret masked; the only view logs and reports use."""
        out: dict[str, Any] = {}
        for name, section_type in SECTIONS.items():
            section = getattr(self, name)
            values: dict[str, Any] = {}
            for f in fields(section_type):
                value = getattr(section, f.name)
                if f.metadata.get("secret") and isinstance(value, str):
                    value = redact_secret(value)
                values[f.name] = value
            out[name] = values
        return out

    def to_toml(self) -> str:
        """TOML for a config file: secrets only ever as env:NAME references."""
        doc: dict[str, Any] = {}
        for name, section_type in SECTIONS.items():
            section = getattr(self, name)
            values: dict[str, Any] = {}
            for f in fields(section_type):
                value = getattr(section, f.name)
                if f.metadata.get("secret") and isinstance(value, str):
                    value = secret_for_file(value, f.metadata.get("env") or _env_name(f.name))
                if name == "target" and f.name == "db_url" and self.uses_rest():
                    value = ""  # keep the REST choice when the file is read back
                values[f.name] = value
            doc[name] = values
        return tomli_w.dumps(doc)


# ------------------------------------------------------------------------------------
# secrets


def is_env_ref(value: str) -> bool:
    return bool(ENV_REF_RE.match(value))


def resolve_secret(value: str, what: str = "setting") -> str:
    """Turn `env:NAME` into the variable's value; literal values pass through."""
    m = ENV_REF_RE.match(value)
    if not m:
        return value
    name = m.group(1)
    if name not in os.environ:
        raise ConfigError(
            f"{what} refers to the environment variable {name}, which is not set.",
            hint=f"export {name}=... or change {what} in the config file.",
        )
    return os.environ[name]


_DSN_PASSWORD = re.compile(
    r"^(?P<head>[a-z][a-z0-9+.-]*://[^:/@]*:)(?P<pw>[^@]*)(?P<tail>@.*)$", re.I
)


def mask_dsn(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db."""
    m = _DSN_PASSWORD.match(url)
    if m and m.group("pw"):
        return f"{m.group('head')}***{m.group('tail')}"
    url = re.sub(r"(?i)(password=)[^&\s]*", r"\1***", url)
    return url


def redact_secret(value: str) -> str:
    if not value or is_env_ref(value):
        return value
    if "://" in value or value.startswith("embedded"):
        return mask_dsn(value)
    return "***"


def dsn_has_password(value: str) -> bool:
    m = _DSN_PASSWORD.match(value)
    return bool((m and m.group("pw")) or re.search(r"(?i)password=", value))


def secret_for_file(value: str, env_name: str) -> str:
    """What a written config holds for a secret: never the secret itself."""
    if not value or is_env_ref(value):
        return value
    if value.startswith("embedded") or ("://" in value and not dsn_has_password(value)):
        return value
    return f"env:{env_name}"


def _env_name(key: str) -> str:
    return f"RBMIGRATE_{key.upper()}"


# ------------------------------------------------------------------------------------
# loading


def _locate_line(text: str, section: str, key: str | None) -> int | None:
    """Best-effort line number of `key` inside `[section]` (tomllib gives none)."""
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.match(r"^\[\s*([^\]]+?)\s*\]", stripped)
        if header:
            current = header.group(1)
            if key is None and current == section:
                return number
            continue
        if (
            key is not None
            and current == section
            and re.match(rf"^\"?{re.escape(key)}\"?\s*=", stripped)
        ):
            return number
    return None


def _where(path: str, text: str, section: str, key: str | None) -> str:
    line = _locate_line(text, section, key)
    return f"{path} line {line}" if line else path


def _type_name(tp: Any) -> str:
    return {str: "a string", int: "an integer", bool: "true or false"}.get(
        tp, "a list of strings" if "list" in str(tp) else "a table of strings"
    )


def _check_type(value: Any, tp: Any) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if "list" in str(tp):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if "dict" in str(tp):
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    return False


def apply_mapping(cfg: Config, data: dict[str, Any], *, origin: str, text: str = "") -> None:
    """Apply a {section: {key: value}} mapping with key and type checks."""
    for section_name, values in data.items():
        if section_name not in SECTIONS:
            near = difflib.get_close_matches(section_name, SECTIONS, n=1)
            raise ConfigError(
                f"{_where(origin, text, section_name, None)}: unknown section [{section_name}].",
                hint=f"did you mean [{near[0]}]?"
                if near
                else f"known sections: {', '.join(SECTIONS)}",
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: [{section_name}] must be a table.")
        section_type = SECTIONS[section_name]
        hints = get_type_hints(section_type)
        section = getattr(cfg, section_name)
        for key, value in values.items():
            if key not in hints:
                near = difflib.get_close_matches(key, hints, n=1)
                raise ConfigError(
                    f"{_where(origin, text, section_name, key)}: unknown key '{key}' in [{section_name}].",
                    hint=f"did you mean '{near[0]}'?"
                    if near
                    else "see config.example.toml for every key.",
                )
            if not _check_type(value, hints[key]):
                raise ConfigError(
                    f"{_where(origin, text, section_name, key)}: [{section_name}] {key} must be "
                    f"{_type_name(hints[key])}, got {type(value).__name__} {value!r}.",
                )
            setattr(section, key, value)
            cfg.explicit.add(f"{section_name}.{key}")


def load_file(path: str | Path, cfg: Config | None = None) -> Config:
    cfg = cfg or Config()
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {p} does not exist.", hint="rbmigrate init writes one."
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}.") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}.") from None
    apply_mapping(cfg, data, origin=str(p), text=text)
    cfg.path = str(p)
    return cfg


def _parse_env_value(raw: str, tp: Any, name: str) -> Any:
    if tp is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"environment variable {name} must be true or false, got {raw!r}.")
    if tp is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(
                f"environment variable {name} must be an integer, got {raw!r}."
            ) from None
    if "list" in str(tp):
        return [part.strip() for part in raw.split(",") if part.strip()]
    if "dict" in str(tp):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise ConfigError(f"environment variable {name} must be a JSON object.") from None
        if not isinstance(value, dict):
            raise ConfigError(f"environment variable {name} must be a JSON object.")
        return {str(k): str(v) for k, v in value.items()}
    return raw


def apply_environment(cfg: Config, environ: dict[str, str] | None = None) -> None:
    """SUPABASE_URL / SUPABASE_KEY / SUPABASE_DB_URL and RBMIGRATE_<KEY> override the file.

    A secret taken from the environment is stored as its env:NAME reference, so it is never
    copied into the config, a report or a screen.
    """
    env = os.environ if environ is None else environ
    for section_name, section_type in SECTIONS.items():
        section = getattr(cfg, section_name)
        hints = get_type_hints(section_type)
        for f in fields(section_type):
            for name in (_env_name(f.name), f.metadata.get("env")):
                if not name or name not in env:
                    continue
                if f.metadata.get("secret"):
                    value: Any = f"env:{name}"
                else:
                    value = _parse_env_value(env[name], hints[f.name], name)
                setattr(section, f.name, value)
                cfg.explicit.add(f"{section_name}.{f.name}")
                break


def validate(cfg: Config) -> None:
    """Checks that need more than a type: ranges, choices, combinations."""
    where = cfg.path or "configuration"
    s, t, m = cfg.source, cfg.target, cfg.migration
    if s.chroma_path and s.chroma_url:
        raise ConfigError(
            f"{where}: both chroma_path and chroma_url are set.",
            hint="use --chroma-path for a directory or --chroma-url for a Chroma server, not both.",
        )
    if s.chroma_url and not re.match(r"^https?://[^/\s]+", s.chroma_url):
        raise ConfigError(f"{where}: chroma_url {s.chroma_url!r} is not an http(s) URL.")
    if s.reader not in ("auto", "native", "chromadb"):
        raise ConfigError(
            f"{where}: [source] reader must be auto, native or chromadb, not {s.reader!r}."
        )
    try:
        ZoneInfo(s.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{where}: [source] timezone {s.timezone!r} is not a known time zone.",
            hint="use an IANA name such as UTC or Europe/Berlin.",
        ) from None
    if not 1 <= m.batch_size <= MAX_PAGE:
        raise ConfigError(
            f"{where}: [migration] batch_size must be between 1 and {MAX_PAGE}, not {m.batch_size}."
        )
    if m.max_rejects < -1:
        raise ConfigError(f"{where}: [migration] max_rejects must be -1 (no limit) or more.")
    bad = {k: v for k, v in m.outcome_map.items() if v not in ("success", "failure", "partial")}
    if bad:
        raise ConfigError(
            f"{where}: [migration] outcome_map must map to success, failure or partial; got {bad}."
        )
    if not IDENTIFIER_RE.match(t.schema):
        raise ConfigError(
            f"{where}: [target] schema {t.schema!r} is not a plain lower-case SQL identifier.",
            hint="use letters, digits and underscores, starting with a letter (e.g. public).",
        )
    if not 0 <= t.dimension <= 16000:
        raise ConfigError(
            f"{where}: [target] dimension must be between 1 and 16000 (or 0 for automatic)."
        )
    db = t.db_url
    if db and not (
        db == "embedded"
        or db.startswith("embedded:")
        or is_env_ref(db)
        or re.match(r"^postgres(ql)?://", db)
    ):
        raise ConfigError(
            f"{where}: [target] db_url must be embedded, embedded:DIR, postgresql://... or env:NAME; "
            f"got {redact_secret(db)!r}.",
        )
    if t.supabase_url and not re.match(r"^https?://[^/\s]+", t.supabase_url):
        raise ConfigError(
            f"{where}: [target] supabase_url {t.supabase_url!r} is not an http(s) URL."
        )
    if cfg.embedding.encode_batch_size < 1:
        raise ConfigError(f"{where}: [embedding] encode_batch_size must be at least 1.")
    if cfg.embedding.processes < 0:
        raise ConfigError(
            f"{where}: [embedding] processes must be 0 (one per core) or more; "
            f"got {cfg.embedding.processes}."
        )


def load(
    path: str | Path | None = None,
    *,
    overrides: dict[str, dict[str, Any]] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Defaults, then the file, then the environment, then flags (as overrides)."""
    cfg = Config()
    env = os.environ if environ is None else environ
    if path is None:
        path = env.get("RBMIGRATE_CONFIG") or None
    if path is None and Path(DEFAULT_CONFIG_NAME).is_file():
        path = DEFAULT_CONFIG_NAME
    if path is not None:
        load_file(path, cfg)
    apply_environment(cfg, dict(env))
    if overrides:
        clean = {
            s: {k: v for k, v in vals.items() if v is not None} for s, vals in overrides.items()
        }
        apply_mapping(cfg, {s: v for s, v in clean.items() if v}, origin="command line")
        # a flag for one kind of source replaces the other kind from lower layers
        src = clean.get("source", {})
        if src.get("chroma_path"):
            cfg.source.chroma_url = "" if "chroma_url" not in src else cfg.source.chroma_url
        if src.get("chroma_url"):
            cfg.source.chroma_path = "" if "chroma_path" not in src else cfg.source.chroma_path
    validate(cfg)
    return cfg


def write_private(path: str | Path, text: str, *, overwrite: bool = False) -> Path:
    """Write a file readable by its owner only (mode 0600), created that way from the start."""
    p = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(p, flags, 0o600)
    except FileExistsError:
        raise ConfigError(f"{p} already exists.", hint="pass --force to replace it.") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(p, 0o600)
    return p


def starter_toml(cfg: Config) -> str:
    header = (
        "# rbmigrate configuration (written by `rbmigrate init`).\n"
        "# Every key is documented in config.example.toml. Secrets are env:NAME references:\n"
        "# set the variable in your environment; never paste a key or password here.\n\n"
    )
    return header + cfg.to_toml()


def secret_variables(cfg: Config) -> list[str]:
    """Environment variables a written config will expect to be set."""
    names: list[str] = []
    for name, section_type in SECTIONS.items():
        section = getattr(cfg, name)
        for f in fields(section_type):
            value = getattr(section, f.name)
            if f.metadata.get("secret") and isinstance(value, str) and value:
                written = secret_for_file(value, f.metadata.get("env") or _env_name(f.name))
                m = ENV_REF_RE.match(written)
                if m:
                    names.append(m.group(1))
    return names


def documented_keys() -> dict[str, list[str]]:
    return {name: [f.name for f in fields(tp)] for name, tp in SECTIONS.items()}
