"""The PostgREST-protocol test gateway, driven by the real supabase-py client.

Every answer is checked against the same question asked of PostgreSQL directly (as the
superuser), so a gateway that built the wrong SQL, lost a type or leaked a role between
pooled connections fails here. One database (the project's schema in `public` and in
`rb_alt`) serves the whole module; each test starts from empty tables.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import jwt
import numpy as np
import psycopg
import pytest
from postgrest.exceptions import APIError
from psycopg.types.json import Jsonb
from supabase import Client, create_client

from rbmigrate.target.schema import apply_schema
from tests.support.gateway import (
    ANON_KEY,
    SERVICE_ROLE_KEY,
    TEST_JWT_SECRET,
    Gateway,
    make_jwt,
)
from tests.support.stores import unit_vector

DIM = 384
WS_A, WS_B = "ws-a", "ws-b"
KEY_A = make_jwt(TEST_JWT_SECRET, "authenticated", WS_A)
KEY_B = make_jwt(TEST_JWT_SECRET, "authenticated", WS_B)
KEY_NO_WS = make_jwt(TEST_JWT_SECRET, "authenticated")
TRACES = {
    WS_A: "a0000000-0000-4000-8000-00000000000a",
    WS_B: "b0000000-0000-4000-8000-00000000000b",
    None: "c0000000-0000-4000-8000-00000000000c",
}
BASE_TIME = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
TRICKY = 'commas, "quotes" and (parens)'

HELPERS = """
CREATE FUNCTION public.gw_whoami() RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'user', current_user,
        'claims', nullif(current_setting('request.jwt.claims', true), '')::jsonb,
        'claim_role', current_setting('request.jwt.claim.role', true),
        'method', current_setting('request.method', true),
        'read_only', current_setting('transaction_read_only'))
$$;
CREATE FUNCTION public.gw_raise(msg text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING MESSAGE = msg, HINT = 'raised on purpose';
END
$$;
CREATE SEQUENCE public.gw_seq;
GRANT USAGE ON SEQUENCE public.gw_seq TO service_role;
CREATE FUNCTION public.gw_bump() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT nextval('public.gw_seq')
$$;
"""


# ---------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def rest_db(pg: Any) -> Iterator[str]:
    name = f"gw_{uuid.uuid4().hex[:12]}"
    pg.create_database(name)
    url = pg.url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        apply_schema(conn, "public", DIM)
        apply_schema(conn, "rb_alt", DIM)
        conn.execute(HELPERS)
    yield url
    pg.drop_database(name)


@pytest.fixture(scope="module")
def gateway(rest_db: str) -> Iterator[Gateway]:
    with Gateway(rest_db, TEST_JWT_SECRET, schema=("public", "rb_alt")) as gw:
        yield gw


@pytest.fixture
def db(rest_db: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(rest_db, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE public.memory_items, public.reasoning_traces, public.rbmigrate_runs, "
            "public.rbmigrate_checkpoints, public.rbmigrate_changes, rb_alt.memory_items, "
            "rb_alt.reasoning_traces CASCADE"
        )
        yield conn


@pytest.fixture
def gw(gateway: Gateway, db: psycopg.Connection[Any]) -> Iterator[Gateway]:
    gateway.reset()
    yield gateway
    assert not gateway.errors, gateway.errors


@pytest.fixture(scope="module")
def clients(gateway: Gateway) -> Iterator[Callable[[str], Client]]:
    made: dict[str, Client] = {}

    def client(key: str) -> Client:
        if key not in made:
            made[key] = create_client(gateway.url, key)
        return made[key]

    yield client
    for c in made.values():
        c.postgrest.aclose()


@pytest.fixture
def service(gw: Gateway, clients: Callable[[str], Client]) -> Client:
    return clients(SERVICE_ROLE_KEY)


def raw(
    gw: Gateway,
    method: str,
    path: str,
    *,
    key: str | None = SERVICE_ROLE_KEY,
    headers: dict[str, str] | None = None,
    **kw: Any,
) -> httpx.Response:
    h = {"apikey": key, "Authorization": f"Bearer {key}"} if key else {}
    h.update(headers or {})
    return httpx.request(method, gw.rest_url + path, headers=h, timeout=30, **kw)


def vec_text(v: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


def seed(db: psycopg.Connection[Any], n: int = 24) -> list[dict[str, Any]]:
    """Three traces (A, B, no workspace) and n memory items spread over them."""
    outcomes = {WS_A: "success", WS_B: "failure", None: "partial"}
    with db.cursor() as cur:
        cur.executemany(
            'INSERT INTO reasoning_traces (id, task, outcome, workspace_id, "timestamp") '
            "VALUES (%s, %s, %s, %s, %s)",
            [(tid, f"task {ws}", outcomes[ws], ws, BASE_TIME) for ws, tid in TRACES.items()],
        )
        items = []
        for i in range(n):
            ws = [WS_A, WS_B, None][i % 3]
            items.append(
                {
                    "id": str(uuid.UUID(int=i + 1, version=4)),
                    "trace_id": TRACES[ws],
                    "title": f"title-{i:02d}",
                    "description": None if i % 6 == 0 else (TRICKY if i == 7 else f"d{i}"),
                    "content": f"content {i}",
                    "embedding": unit_vector(f"seed-{i}"),
                    "error_context": {"e": i} if i % 4 == 0 else None,
                    "pattern_tags": [f"t{i % 3}", "common"],
                    "difficulty_level": ["simple", "moderate", "complex", "expert", None][i % 5],
                    "domain_category": ["alpha", "beta", None, "gamma"][i % 4],
                    "evolution_stage": i % 5,
                    "workspace_id": ws,
                    "created_at": BASE_TIME + timedelta(hours=i),
                    "source_collection": "col",
                    "source_id": f"s{i:02d}",
                }
            )
        cur.executemany(
            "INSERT INTO memory_items (id, trace_id, title, description, content, "
            "content_embedding, error_context, pattern_tags, difficulty_level, domain_category, "
            "evolution_stage, workspace_id, created_at, source_collection, source_id) VALUES "
            "(%s, %s, %s, %s, %s, %s::extensions.vector, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    it["id"],
                    it["trace_id"],
                    it["title"],
                    it["description"],
                    it["content"],
                    vec_text(it["embedding"]),
                    Jsonb(it["error_context"]) if it["error_context"] is not None else None,
                    it["pattern_tags"],
                    it["difficulty_level"],
                    it["domain_category"],
                    it["evolution_stage"],
                    it["workspace_id"],
                    it["created_at"],
                    it["source_collection"],
                    it["source_id"],
                )
                for it in items
            ],
        )
    return items


def sql_ids(
    db: psycopg.Connection[Any], where: str = "true", params: Any = (), order: str = "id"
) -> list[str]:
    rows = db.execute(f"SELECT id::text FROM memory_items WHERE {where} ORDER BY {order}", params)
    return [r[0] for r in rows]


def ids_of(rows: list[Any]) -> list[str]:
    return [r["id"] for r in rows]


# ---------------------------------------------------------------------------------------
# keys


def test_keys_are_hs256_jwts_with_a_role_claim() -> None:
    for key, role in ((ANON_KEY, "anon"), (SERVICE_ROLE_KEY, "service_role")):
        assert jwt.get_unverified_header(key)["alg"] == "HS256"
        claims = jwt.decode(key, TEST_JWT_SECRET, algorithms=["HS256"])
        assert claims["role"] == role and claims["exp"] > time.time()
    claims = jwt.decode(KEY_A, TEST_JWT_SECRET, algorithms=["HS256"], audience="authenticated")
    assert claims["app_metadata"] == {"workspace_id": WS_A}
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(ANON_KEY, "another-secret-of-at-least-32-bytes!!", algorithms=["HS256"])


# ---------------------------------------------------------------------------------------
# reads


def test_filters_agree_with_postgresql(gw: Gateway, db: Any, service: Client) -> None:
    items = seed(db)
    some = [items[1]["id"], items[4]["id"], items[9]["id"]]
    cutoff = (BASE_TIME + timedelta(hours=15)).astimezone(timezone(timedelta(hours=2)))

    def q() -> Any:
        return service.table("memory_items").select("id")

    cases: list[tuple[Any, str, tuple[Any, ...]]] = [
        (q().eq("domain_category", "alpha"), "domain_category = 'alpha'", ()),
        (q().neq("domain_category", "alpha"), "domain_category <> 'alpha'", ()),
        (q().gt("evolution_stage", 2), "evolution_stage > 2", ()),
        (q().gte("evolution_stage", 2), "evolution_stage >= 2", ()),
        (q().lt("evolution_stage", 2), "evolution_stage < 2", ()),
        (q().lte("evolution_stage", 2), "evolution_stage <= 2", ()),
        (
            q().in_("difficulty_level", ["simple", "expert"]),
            "difficulty_level IN ('simple', 'expert')",
            (),
        ),
        (q().in_("id", some), "id = ANY(%s::uuid[])", (some,)),
        (q().in_("description", [TRICKY, "d8"]), "description IN (%s, 'd8')", (TRICKY,)),
        (q().eq("description", TRICKY), "description = %s", (TRICKY,)),
        (q().is_("description", None), "description IS NULL", ()),
        (q().not_.is_("domain_category", None), "domain_category IS NOT NULL", ()),
        (q().like("title", "title-1%"), "title LIKE 'title-1%%'", ()),
        (q().like("title", "title-1*"), "title LIKE 'title-1%%'", ()),
        (q().ilike("title", "TITLE-2%"), "title ILIKE 'TITLE-2%%'", ()),
        (q().not_.like("title", "title-0%"), "title NOT LIKE 'title-0%%'", ()),
        (q().contains("pattern_tags", ["t1"]), "pattern_tags @> ARRAY['t1']", ()),
        (q().gt("created_at", cutoff.isoformat()), "created_at > %s", (cutoff,)),
        (q().is_("error_context", None), "error_context IS NULL", ()),
        (
            q().or_("evolution_stage.eq.0,and(domain_category.eq.beta,evolution_stage.gt.2)"),
            "(evolution_stage = 0 OR (domain_category = 'beta' AND evolution_stage > 2))",
            (),
        ),
        (
            q().eq("workspace_id", WS_A).gte("evolution_stage", 1).lt("evolution_stage", 4),
            "workspace_id = 'ws-a' AND evolution_stage >= 1 AND evolution_stage < 4",
            (),
        ),
    ]
    total = len(items)
    for builder, where, params in cases:
        expected = sql_ids(db, where, params)
        assert 0 < len(expected) < total, where  # every case must select something, not all
        got = builder.execute().data
        assert sorted(ids_of(got)) == expected, where


def test_order_paging_select_and_single(gw: Gateway, db: Any, service: Client) -> None:
    items = seed(db)
    t = service.table("memory_items")
    got = (
        t.select("id")
        .order("domain_category", desc=True, nullsfirst=False)
        .order("evolution_stage")
        .order("id")
        .execute()
        .data
    )
    assert ids_of(got) == sql_ids(
        db, order="domain_category DESC NULLS LAST, evolution_stage ASC, id ASC"
    )
    got = (
        t.select("id")
        .order("domain_category", nullsfirst=True)
        .order("evolution_stage", desc=True)
        .order("id")
        .execute()
        .data
    )
    first = sql_ids(db, order="domain_category ASC NULLS FIRST, evolution_stage DESC, id")
    assert ids_of(got) == first and first != sql_ids(db, order="domain_category, id")
    by_title = sql_ids(db, order="title")
    assert ids_of(t.select("id").order("title").limit(5).offset(3).execute().data) == by_title[3:8]
    assert ids_of(t.select("id").order("title").range(4, 9).execute().data) == by_title[4:10]

    row = t.select("ident:id,stage:evolution_stage::text,title").eq("source_id", "s03").execute()
    assert row.data == [{"ident": items[3]["id"], "stage": "3", "title": "title-03"}]
    one = t.select("title").eq("source_id", "s05").single().execute()
    assert one.data == {"title": "title-05"}
    assert t.select("id").eq("source_id", "nope").maybe_single().execute() is None
    with pytest.raises(APIError) as err:
        t.select("id").eq("domain_category", "alpha").single().execute()
    assert err.value.code == "PGRST116"


def test_paging_beyond_max_rows(gw: Gateway, db: Any, service: Client, rest_db: str) -> None:
    seed(db, 0)
    db.execute(
        "INSERT INTO memory_items (id, trace_id, title, content, workspace_id) "
        "SELECT gen_random_uuid(), %s, 'p' || g, 'c', %s FROM generate_series(1, 2500) g",
        (TRACES[WS_A], WS_A),
    )
    every = sql_ids(db)
    t = service.table("memory_items")
    first = t.select("id", count="exact").execute()
    assert len(first.data) == 1000 and first.count == 2500
    resp = raw(gw, "GET", "/memory_items?select=id&order=id", headers={"Prefer": "count=exact"})
    assert resp.status_code == 206 and resp.headers["content-range"] == "0-999/2500"
    assert ids_of(resp.json()) == every[:1000]

    pages: list[str] = []
    for start in range(0, 3000, 1000):
        pages += ids_of(t.select("id").order("id").range(start, start + 999).execute().data)
    assert pages == every
    assert len(t.select("id").range(0, 1499).execute().data) == 1000  # capped by max_rows

    resp = raw(gw, "GET", "/memory_items?select=id&order=id", headers={"Range": "2490-2499"})
    assert resp.status_code == 200 and resp.headers["content-range"] == "2490-2499/*"
    assert ids_of(resp.json()) == every[2490:2500]
    resp = raw(
        gw, "GET", "/memory_items?select=id&order=id&limit=10&offset=5", headers={"Range": "0-99"}
    )
    assert ids_of(resp.json()) == every[5:15] and resp.headers["content-range"] == "5-14/*"

    with pytest.raises(APIError) as err:
        t.select("id", count="exact").order("id").range(3000, 3009).execute()
    assert err.value.code == "PGRST103"
    assert t.select("id").order("id").range(3000, 3009).execute().data == []

    head = t.select("*", count="exact", head=True).execute()
    assert head.count == 2500 and head.data == []
    assert gw.requests[-1] == ("HEAD", "/rest/v1/memory_items")
    assert t.select("id", count="exact").eq("title", "p77").execute().count == 1

    with Gateway(rest_db, max_rows=7) as small, Gateway(rest_db, max_rows=None) as unlimited:
        assert (
            len(
                create_client(small.url, SERVICE_ROLE_KEY)
                .table("memory_items")
                .select("id")
                .execute()
                .data
            )
            == 7
        )
        everything = (
            create_client(unlimited.url, SERVICE_ROLE_KEY)
            .table("memory_items")
            .select("id")
            .order("id")
            .execute()
        )
        assert ids_of(everything.data) == every


# ---------------------------------------------------------------------------------------
# writes


def _batch(n: int, title: str = "T") -> list[dict[str, Any]]:
    return [
        {
            "id": str(uuid.UUID(int=1000 + i, version=4)),
            "trace_id": TRACES[WS_A],
            "title": f"{title}{i}",
            "content": f"content {i}",
            "content_embedding": [float(x) for x in unit_vector(f"batch-{i}")],
            "pattern_tags": ["x", f"n{i}"],
            "metadata": {"i": i, "nested": {"ok": True}},
            "workspace_id": WS_A,
            "source_collection": "col",
            "source_id": f"src-{i}",
        }
        for i in range(n)
    ]


def _snapshot(db: Any) -> list[Any]:
    return [
        r[0]
        for r in db.execute(
            "SELECT (to_jsonb(m) - 'updated_at')::text FROM memory_items m ORDER BY id"
        )
    ]


def test_upsert_on_conflict_is_idempotent(gw: Gateway, db: Any, service: Client) -> None:
    trace = {"id": TRACES[WS_A], "task": "t", "outcome": "success", "workspace_id": WS_A}
    for _ in range(2):
        service.table("reasoning_traces").upsert(trace, on_conflict="id").execute()
    assert db.execute("SELECT count(*) FROM reasoning_traces").fetchone()[0] == 1

    batch = _batch(40)
    t = service.table("memory_items")
    first = t.upsert(batch, on_conflict="source_collection,source_id").execute()
    before = _snapshot(db)
    second = t.upsert(batch, on_conflict="source_collection,source_id").execute()
    assert len(before) == 40 and _snapshot(db) == before
    assert ids_of(first.data) == ids_of(second.data) == [b["id"] for b in batch]

    changed = [dict(b, title="changed") if i < 3 else b for i, b in enumerate(batch)]
    t.upsert(changed, on_conflict="source_collection,source_id").execute()
    titles = [r[0] for r in db.execute("SELECT title FROM memory_items ORDER BY id")]
    assert titles == ["changed"] * 3 + [b["title"] for b in batch[3:]]

    stamps = db.execute("SELECT array_agg(updated_at ORDER BY id) FROM memory_items").fetchone()[0]
    extra = _batch(41)[40]
    ignored = [dict(b, title="ignored") for b in batch] + [extra]
    res = t.upsert(
        ignored, on_conflict="source_collection,source_id", ignore_duplicates=True
    ).execute()
    assert ids_of(res.data) == [extra["id"]]  # only the new row is inserted and returned
    assert (
        db.execute("SELECT count(*) FROM memory_items WHERE title = 'ignored'").fetchone()[0] == 0
    )
    after = db.execute(
        "SELECT array_agg(updated_at ORDER BY id) FROM memory_items WHERE id <> %s", (extra["id"],)
    ).fetchone()[0]
    assert after == stamps

    minimal = t.upsert(
        batch, on_conflict="source_collection,source_id", returning="minimal", count="exact"
    ).execute()
    assert minimal.data == [] and minimal.count == 40
    assert db.execute("SELECT count(*) FROM memory_items").fetchone()[0] == 41

    dup = raw(gw, "POST", "/memory_items", json=batch[0])
    assert dup.status_code == 409 and dup.json()["code"] == "23505"


def test_values_round_trip_exactly(gw: Gateway, db: Any, service: Client) -> None:
    seed(db, 0)
    v1, v2 = unit_vector("round-1"), unit_vector("round-2")
    tags = ["comma, inside", 'quote " inside', "{braces}", "", "ünïcødé", "NULL"]
    meta = {"nested": {"list": [1, 2.5, None, True], "s": 'x"y'}, "big": 12345678901234567}
    rows = [
        {
            "id": str(uuid.uuid4()),
            "trace_id": TRACES[WS_A],
            "title": "json array vector",
            "content": "c",
            "content_embedding": [float(x) for x in v1],
            "pattern_tags": tags,
            "metadata": meta,
            "error_context": {"trace": ["a", "b"]},
            "created_at": "2025-03-01T12:00:00+02:00",
            "evolution_stage": 7,
            "workspace_id": WS_A,
        },
        {
            "id": str(uuid.uuid4()),
            "trace_id": TRACES[WS_A],
            "title": "string vector",
            "content": "c",
            "content_embedding": vec_text(v2),
            "pattern_tags": [],
            "metadata": {},
            "error_context": None,
            "created_at": "2025-03-01T10:00:00Z",
            "evolution_stage": 0,
            "workspace_id": WS_A,
        },
    ]
    inserted = service.table("memory_items").insert(rows).execute().data
    read = service.table("memory_items").select("*").order("title").execute().data
    assert sorted(inserted, key=lambda r: r["title"]) == read
    first = next(r for r in read if r["title"] == "json array vector")
    second = next(r for r in read if r["title"] == "string vector")
    for got, want in ((first, v1), (second, v2)):
        assert isinstance(got["content_embedding"], str)
        back = np.array(json.loads(got["content_embedding"]), dtype=np.float32)
        assert back.shape == (DIM,) and np.array_equal(back, want)
    in_db = dict(
        db.execute(
            "SELECT title, content_embedding::text FROM memory_items WHERE content_embedding IS NOT NULL"
        ).fetchall()
    )
    assert in_db == {
        "json array vector": first["content_embedding"],
        "string vector": second["content_embedding"],
    }
    stored = db.execute(
        "SELECT content_embedding::real[] FROM memory_items WHERE id = %s", (rows[0]["id"],)
    ).fetchone()[0]
    assert np.array_equal(np.array(stored, dtype=np.float32), v1)
    assert first["id"] == rows[0]["id"] and uuid.UUID(first["id"])
    assert first["pattern_tags"] == tags and second["pattern_tags"] == []
    assert first["metadata"] == meta and first["error_context"] == {"trace": ["a", "b"]}
    assert second["error_context"] is None
    assert datetime.fromisoformat(first["created_at"]) == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert first["evolution_stage"] == 7 and isinstance(first["evolution_stage"], int)

    short = dict(rows[0], id=str(uuid.uuid4()), content_embedding=[0.1, 0.2, 0.3])
    bad = raw(gw, "POST", "/memory_items", json=short)
    assert bad.status_code == 400 and "384" in bad.json()["message"]


def test_insert_variants_update_and_delete(gw: Gateway, db: Any, service: Client) -> None:
    items = seed(db)
    t = service.table("memory_items")
    base = {"trace_id": TRACES[WS_A], "content": "c", "workspace_id": WS_A}
    with_tags = dict(base, id=str(uuid.uuid4()), title="has tags", pattern_tags=["a"])
    without = dict(base, id=str(uuid.uuid4()), title="no tags")
    t.insert([with_tags, without]).execute()  # missing keys become NULL (default_to_null)
    t.insert(
        [dict(with_tags, id=str(uuid.uuid4())), dict(without, id=str(uuid.uuid4()))],
        default_to_null=False,
    ).execute()  # Prefer: missing=default
    tags = db.execute(
        "SELECT pattern_tags FROM memory_items WHERE title = 'no tags' ORDER BY pattern_tags NULLS FIRST"
    ).fetchall()
    assert tags == [(None,), ([],)]
    mixed = raw(gw, "POST", "/memory_items", json=[with_tags, without])  # no columns= param
    assert mixed.status_code == 400 and mixed.json()["code"] == "PGRST102"
    with pytest.raises(APIError) as err:
        t.insert(dict(base, id=str(uuid.uuid4()), title="x", nope=1)).execute()
    assert err.value.code == "PGRST204"

    target = items[3]
    before = db.execute(
        "SELECT updated_at FROM memory_items WHERE id = %s", (target["id"],)
    ).fetchone()[0]
    res = t.update({"title": "renamed", "evolution_stage": 42}).eq("id", target["id"]).execute()
    assert [(r["id"], r["title"], r["evolution_stage"]) for r in res.data] == [
        (target["id"], "renamed", 42)
    ]
    title, after = db.execute(
        "SELECT title, updated_at FROM memory_items WHERE id = %s", (target["id"],)
    ).fetchone()
    assert title == "renamed" and after > before

    alpha = sql_ids(db, "domain_category = 'alpha'")
    counted = (
        t.update({"difficulty_level": "expert"}, count="exact")
        .eq("domain_category", "alpha")
        .execute()
    )
    assert counted.count == len(alpha) and sorted(ids_of(counted.data)) == alpha
    assert sql_ids(db, "domain_category = 'alpha' AND difficulty_level <> 'expert'") == []

    doomed = [items[0]["id"], items[1]["id"]]
    gone = t.delete().in_("id", doomed).execute()
    assert sorted(ids_of(gone.data)) == sorted(doomed)
    assert sql_ids(db, "id = ANY(%s::uuid[])", (doomed,)) == []
    quiet = t.delete(returning="minimal").eq("id", items[2]["id"]).execute()
    assert quiet.data == [] and sql_ids(db, "id = %s", (items[2]["id"],)) == []
    assert gw.log[-1].status == 204

    everything = raw(gw, "DELETE", "/memory_items")  # Supabase's pg-safeupdate
    assert everything.status_code == 400 and everything.json()["code"] == "21000"
    assert db.execute("SELECT count(*) FROM memory_items").fetchone()[0] > 0


# ---------------------------------------------------------------------------------------
# rpc


def test_rpc_search_similar_memories(
    gw: Gateway, db: Any, service: Client, clients: Callable[[str], Client]
) -> None:
    seed(db)
    q = unit_vector("query")
    qv = [float(x) for x in q]
    cases: list[dict[str, Any]] = [
        {"match_count": 5},
        {"match_count": 5, "domain_filter": "alpha"},
        {"match_count": 3, "workspace_filter": WS_A},
        {"match_count": 4, "workspace_filter": WS_B, "exact": True},
        {"match_count": 100},
    ]
    for args in cases:
        res = service.rpc("search_similar_memories", {"query_embedding": qv, **args}).execute()
        want = db.execute(
            "SELECT id::text, distance, similarity, trace_outcome FROM "
            "search_similar_memories(%s::extensions.vector, %s, %s, %s, %s)",
            (
                vec_text(q),
                args["match_count"],
                args.get("domain_filter"),
                args.get("workspace_filter"),
                args.get("exact", False),
            ),
        ).fetchall()
        assert len(want) > 1
        got = [(r["id"], r["distance"], r["similarity"], r["trace_outcome"]) for r in res.data]
        assert got == [tuple(w) for w in want], args  # same rows, order and doubles
    as_string = service.rpc(
        "search_similar_memories", {"query_embedding": vec_text(q), "match_count": 5}
    ).execute()
    assert ids_of(as_string.data) == ids_of(
        service.rpc("search_similar_memories", {"query_embedding": qv, "match_count": 5})
        .execute()
        .data
    )
    counted = service.rpc(
        "search_similar_memories", {"query_embedding": qv, "match_count": 6}, count="exact"
    ).execute()
    assert counted.count == 6 and len(counted.data) == 6

    mine = (
        clients(KEY_A)
        .rpc("search_similar_memories", {"query_embedding": qv, "match_count": 100})
        .execute()
        .data
    )
    assert {r["workspace_id"] for r in mine} == {WS_A}
    assert sorted(ids_of(mine)) == sql_ids(db, "workspace_id = %s", (WS_A,))
    assert [r["distance"] for r in mine] == sorted(r["distance"] for r in mine)
    assert (
        clients(ANON_KEY).rpc("search_similar_memories", {"query_embedding": qv}).execute().data
        == []
    )

    with pytest.raises(APIError) as err:
        service.rpc("search_similar_memories", {"query_vector": qv}).execute()
    assert err.value.code == "PGRST202"


def test_rpc_stats_scalars_and_access_mode(
    gw: Gateway, db: Any, service: Client, clients: Callable[[str], Client]
) -> None:
    seed(db)
    cols = "total_traces, success_traces, failure_traces, total_memories, memories_with_errors, success_rate"

    def want(ws: str | None) -> list[dict[str, Any]]:
        cur = db.execute(f"SELECT {cols} FROM get_reasoning_bank_stats(%s)", (ws,))
        names = [d.name for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    assert service.rpc("get_reasoning_bank_stats", {}).execute().data == want(None)
    assert want(None)[0]["total_memories"] == 24 and want(None)[0]["total_traces"] == 3
    for get in (False, True):
        res = service.rpc("get_reasoning_bank_stats", {"workspace_filter": WS_A}, get=get).execute()
        assert res.data == want(WS_A) and res.data[0]["total_memories"] == 8
    anon = clients(ANON_KEY).rpc("get_reasoning_bank_stats", {}).execute().data
    assert anon[0]["total_memories"] == 0 and anon[0]["total_traces"] == 0

    info = service.rpc("rbmigrate_schema_info", {}).execute().data
    version = db.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[
        0
    ]
    assert info["dimension"] == DIM and info["schema_version"] == 1
    assert info["pgvector_version"] == version
    assert service.rpc("check_pgvector_enabled", {}).execute().data is True

    who = service.rpc("gw_whoami", {}).execute().data
    assert who["read_only"] == "on" and who["method"] == "POST"  # stable function: read only
    assert service.rpc("gw_bump", {}).execute().data == 1  # volatile: read write
    resp = raw(gw, "GET", "/rpc/gw_bump")  # GET is always read only, as PostgREST
    assert resp.status_code == 405 and resp.json()["code"] == "25006"
    raised = raw(gw, "POST", "/rpc/gw_raise", json={"msg": "boom"})
    assert raised.status_code == 400
    assert raised.json() == {
        "code": "P0001",
        "message": "boom",
        "details": None,
        "hint": "raised on purpose",
    }
    listed = raw(gw, "POST", "/rpc/get_reasoning_bank_stats", json=[{"workspace_filter": WS_A}])
    assert listed.status_code == 400 and listed.json()["code"] == "PGRST102"
    void = raw(gw, "POST", "/rpc/gw_raise", json={})  # required argument missing
    assert void.status_code == 404 and void.json()["code"] == "PGRST202"


# ---------------------------------------------------------------------------------------
# auth and RLS


def test_roles_and_workspace_isolation(
    gw: Gateway, db: Any, clients: Callable[[str], Client]
) -> None:
    seed(db)
    every = sql_ids(db)
    in_a, in_b = (
        sql_ids(db, "workspace_id = %s", (WS_A,)),
        sql_ids(db, "workspace_id = %s", (WS_B,)),
    )
    assert in_a and in_b and len(in_a) + len(in_b) < len(every)

    def visible(key: str) -> list[str]:
        res = clients(key).table("memory_items").select("id", count="exact").order("id").execute()
        assert res.count == len(res.data)
        return ids_of(res.data)

    assert visible(ANON_KEY) == []
    assert visible(KEY_A) == in_a
    assert visible(KEY_B) == in_b
    assert visible(KEY_NO_WS) == []
    assert visible(SERVICE_ROLE_KEY) == every

    for key, role in (
        (ANON_KEY, "anon"),
        (KEY_A, "authenticated"),
        (SERVICE_ROLE_KEY, "service_role"),
    ):
        who = clients(key).rpc("gw_whoami", {}).execute().data
        claims = jwt.decode(
            key, TEST_JWT_SECRET, algorithms=["HS256"], options={"verify_aud": False}
        )
        assert who["user"] == role and who["claim_role"] == role and who["claims"] == claims

    new_row = {"trace_id": TRACES[WS_A], "title": "t", "content": "c"}
    a = clients(KEY_A).table("memory_items")
    with pytest.raises(APIError) as err:
        a.insert(dict(new_row, id=str(uuid.uuid4()), workspace_id=WS_B)).execute()
    assert err.value.code == "42501"
    forbidden = raw(
        gw,
        "POST",
        "/memory_items",
        key=KEY_A,
        json=dict(new_row, id=str(uuid.uuid4()), workspace_id=WS_B),
    )
    assert forbidden.status_code == 403
    own = dict(new_row, id=str(uuid.uuid4()), workspace_id=WS_A)
    assert ids_of(a.insert(own, returning="representation").execute().data) == [own["id"]]
    assert own["id"] not in visible(KEY_B)

    anon = raw(gw, "POST", "/memory_items", key=ANON_KEY, json=dict(new_row, id=str(uuid.uuid4())))
    assert anon.status_code == 401 and anon.json()["code"] == "42501"
    assert anon.headers["www-authenticate"].startswith("Bearer")
    runs = raw(gw, "GET", "/rbmigrate_runs", key=KEY_A)
    assert runs.status_code == 403 and runs.json()["code"] == "42501"

    theirs = in_b[0]
    assert a.update({"title": "hijacked"}).eq("id", theirs).execute().data == []
    assert a.delete().eq("id", theirs).execute().data == []
    assert (
        db.execute("SELECT title FROM memory_items WHERE id = %s", (theirs,)).fetchone()[0]
        != "hijacked"
    )
    assert sql_ids(db, "id = %s", (theirs,)) == [theirs]


def test_bad_tokens_and_header_precedence(
    gw: Gateway, db: Any, clients: Callable[[str], Client]
) -> None:
    seed(db, 6)
    forged = make_jwt("a-different-secret-that-is-32-bytes-long", "service_role")
    expired = make_jwt(TEST_JWT_SECRET, "service_role", exp=int(time.time()) - 3600)
    unsigned = jwt.encode({"role": "service_role"}, key=None, algorithm="none")
    for token, message in (
        (forged, "JWSError JWSInvalidSignature"),
        (expired, "JWT expired"),
        ("not-a-jwt", None),
        (unsigned, None),
    ):
        resp = raw(gw, "GET", "/memory_items", key=token)
        assert resp.status_code == 401 and resp.json()["code"] == "PGRST301", token
        assert resp.headers["www-authenticate"].startswith("Bearer error=")
        if message:
            assert resp.json()["message"] == message
    with pytest.raises(APIError) as err:
        clients(expired).table("memory_items").select("id").execute()
    assert err.value.code == "PGRST301"

    def count(headers: dict[str, str]) -> int:
        resp = raw(gw, "GET", "/memory_items?select=id", key=None, headers=headers)
        assert resp.status_code == 200
        return len(resp.json())

    assert count({"apikey": SERVICE_ROLE_KEY}) == 6
    assert count({"apikey": SERVICE_ROLE_KEY, "Authorization": f"Bearer {ANON_KEY}"}) == 0
    assert count({"apikey": ANON_KEY, "Authorization": f"Bearer {SERVICE_ROLE_KEY}"}) == 6
    assert count({}) == 0
    assert [e.role for e in gw.log[-4:]] == ["service_role", "anon", "service_role", "anon"]


# ---------------------------------------------------------------------------------------
# errors, schemas, faults, concurrency


def test_error_mapping(gw: Gateway, db: Any, service: Client) -> None:
    items = seed(db, 3)
    row = {"id": str(uuid.uuid4()), "trace_id": TRACES[WS_A], "title": "t", "content": "c"}

    def check(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
        body = resp.json()
        assert (resp.status_code, body["code"]) == (status, code), body
        assert set(body) == {"code", "message", "details", "hint"}
        return dict(body)

    check(raw(gw, "POST", "/memory_items", json=dict(row, id=items[0]["id"])), 409, "23505")
    check(
        raw(gw, "POST", "/memory_items", json=dict(row, trace_id=str(uuid.uuid4()))), 409, "23503"
    )
    unknown = check(raw(gw, "GET", "/memory_item"), 404, "PGRST205")
    assert unknown["hint"] == "Perhaps you meant the table 'public.memory_items'"
    check(raw(gw, "POST", "/rpc/no_such_function", json={}), 404, "PGRST202")
    check(raw(gw, "GET", "/memory_items?id=eq.not-a-uuid"), 400, "22P02")
    check(
        raw(gw, "POST", "/memory_items", json={k: v for k, v in row.items() if k != "title"}),
        400,
        "23502",
    )
    check(
        raw(gw, "POST", "/memory_items", json=dict(row, difficulty_level="impossible")),
        400,
        "23514",
    )
    check(raw(gw, "GET", "/memory_items?id=eqx.1"), 400, "PGRST100")
    check(raw(gw, "GET", "/memory_items?order=title.sideways"), 400, "PGRST100")
    check(raw(gw, "GET", "/memory_items?or=(title.eq.a"), 400, "PGRST100")
    check(raw(gw, "GET", "/memory_items?select=nope"), 400, "42703")
    check(raw(gw, "GET", "/memory_items?limit=-1"), 400, "PGRST100")
    check(
        raw(
            gw,
            "POST",
            "/memory_items",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        ),
        400,
        "PGRST102",
    )
    check(raw(gw, "GET", "/memory_items", headers={"Accept-Profile": "secret"}), 406, "PGRST106")
    check(raw(gw, "GET", "/memory_items?select=*,reasoning_traces(*)"), 501, "GW501")
    with pytest.raises(APIError) as err:
        service.table("memory_items").insert(dict(row, id=items[1]["id"])).execute()
    assert err.value.code == "23505"
    with pytest.raises(APIError) as err:
        service.table("nope").select("*").execute()
    assert err.value.code == "PGRST205"
    assert db.execute("SELECT count(*) FROM memory_items").fetchone()[0] == 3


def test_profiles_choose_the_schema(gw: Gateway, db: Any, service: Client) -> None:
    alt = service.schema("rb_alt")
    trace = {"id": str(uuid.uuid4()), "task": "alt", "outcome": "failure"}
    alt.table("reasoning_traces").insert(trace).execute()
    assert db.execute("SELECT count(*) FROM rb_alt.reasoning_traces").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM public.reasoning_traces").fetchone()[0] == 0
    assert ids_of(alt.table("reasoning_traces").select("id").execute().data) == [trace["id"]]
    assert service.table("reasoning_traces").select("id").execute().data == []
    stats = alt.rpc("get_reasoning_bank_stats", {}).execute().data
    assert stats[0]["failure_traces"] == 1
    with pytest.raises(APIError) as err:
        service.schema("nope").table("reasoning_traces").select("id").execute()
    assert err.value.code == "PGRST106"


def test_fault_injection(gw: Gateway, db: Any, service: Client) -> None:
    seed(db, 4)
    gw.fail_next(1, status=503)
    res = service.table("memory_items").select("id").execute()  # postgrest-py retries a GET on 503
    assert len(res.data) == 4
    assert gw.requests == [("GET", "/rest/v1/memory_items")] * 2
    assert [e.status for e in gw.log] == [503, 200]

    gw.fail_next(1, status=503)
    row = {"id": str(uuid.uuid4()), "trace_id": TRACES[WS_A], "title": "t", "content": "c"}
    with pytest.raises(APIError) as err:  # a POST is not retried
        service.table("memory_items").insert(row).execute()
    assert err.value.code == "PGRST000"
    assert sql_ids(db, "id = %s", (row["id"],)) == []
    service.table("memory_items").insert(row).execute()
    assert sql_ids(db, "id = %s", (row["id"],)) == [row["id"]]

    gw.drop_next(1)
    with pytest.raises(httpx.RemoteProtocolError):
        raw(gw, "GET", "/memory_items")
    assert raw(gw, "GET", "/memory_items").status_code == 200


def test_concurrent_requests_keep_roles_apart(
    gw: Gateway, db: Any, clients: Callable[[str], Client]
) -> None:
    seed(db)
    expected = {
        ANON_KEY: ("anon", 0),
        KEY_A: ("authenticated", len(sql_ids(db, "workspace_id = %s", (WS_A,)))),
        KEY_B: ("authenticated", len(sql_ids(db, "workspace_id = %s", (WS_B,)))),
        SERVICE_ROLE_KEY: ("service_role", 24),
    }
    keys = list(expected)
    for k in keys:
        clients(k)

    def worker(i: int) -> int:
        done = 0
        for j in range(10):
            key = keys[(i + j) % len(keys)]
            role, n = expected[key]
            res = clients(key).table("memory_items").select("id", count="exact").execute()
            assert (res.count, len(res.data)) == (n, n)
            who = clients(key).rpc("gw_whoami", {}).execute().data
            assert who["user"] == role and who["claims"]["role"] == role
            done += 1
        return done

    with ThreadPoolExecutor(6) as pool:
        assert sum(pool.map(worker, range(6))) == 60


# ---------------------------------------------------------------------------------------
# isolation holes the gateway tests found in schema.sql, now closed


def test_anon_cannot_call_rbmigrate_schema_info(
    gw: Gateway, clients: Callable[[str], Client]
) -> None:
    with pytest.raises(APIError) as err:
        clients(ANON_KEY).rpc("rbmigrate_schema_info", {}).execute()
    assert err.value.code == "42501"


def test_memory_cannot_point_at_another_workspaces_trace(
    gw: Gateway, db: Any, clients: Callable[[str], Client]
) -> None:
    seed(db, 0)
    row = {"id": str(uuid.uuid4()), "trace_id": TRACES[WS_B], "title": "t", "content": "c"}
    with pytest.raises(APIError) as err:
        clients(KEY_A).table("memory_items").insert(dict(row, workspace_id=WS_A)).execute()
    assert err.value.code == "42501"
