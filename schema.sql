-- rbmigrate: ReasoningBank schema for Supabase / PostgreSQL + pgvector.
--
-- Safe to run any number of times (every statement is idempotent). Paste it into the
-- Supabase SQL editor, or let `rbmigrate bootstrap` apply it. Vectors are 384-d
-- (all-MiniLM-L6-v2); `rbmigrate bootstrap` renders the same file for another dimension
-- and schema. It keeps the upstream ReasoningBank tables and functions and adds:
--   * source_id / source_collection / source_hash / metadata, to prove and repeat migrations;
--   * rbmigrate_runs, rbmigrate_checkpoints, rbmigrate_changes (bookkeeping, service_role only);
--   * workspace isolation: authenticated users see only their JWT's app_metadata.workspace_id;
--   * search functions that return k rows under a workspace filter.

SET search_path = public, extensions;
SET client_min_messages = warning;

-- Supabase-compatible roles and auth.jwt() on plain PostgreSQL (no-ops on Supabase).
DO $compat$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        CREATE ROLE service_role NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'auth') THEN
        CREATE SCHEMA auth;
        CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS
        $jwt$ SELECT coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb $jwt$;
        GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
        GRANT EXECUTE ON FUNCTION auth.jwt() TO anon, authenticated, service_role;
    END IF;
END
$compat$;

CREATE SCHEMA IF NOT EXISTS extensions;
CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA extensions;
CREATE SCHEMA IF NOT EXISTS public;
GRANT USAGE ON SCHEMA extensions TO anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------
-- Tables (upstream columns first; ADD COLUMN IF NOT EXISTS upgrades an upstream schema)

CREATE TABLE IF NOT EXISTS public.reasoning_traces (
    id uuid PRIMARY KEY,
    task text NOT NULL,
    task_embedding vector(384),
    trajectory jsonb NOT NULL DEFAULT '[]'::jsonb,
    outcome text NOT NULL CHECK (outcome IN ('success', 'failure', 'partial')),
    metadata jsonb DEFAULT '{}'::jsonb,
    parent_trace_id uuid REFERENCES public.reasoning_traces(id) ON DELETE SET NULL,
    "timestamp" timestamptz NOT NULL DEFAULT now(),
    num_memories integer DEFAULT 0,
    workspace_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE public.reasoning_traces ADD COLUMN IF NOT EXISTS source_id text;
ALTER TABLE public.reasoning_traces ADD COLUMN IF NOT EXISTS source_hash text;

CREATE TABLE IF NOT EXISTS public.memory_items (
    id uuid PRIMARY KEY,
    trace_id uuid NOT NULL REFERENCES public.reasoning_traces(id) ON DELETE CASCADE,
    title text NOT NULL,
    description text,
    content text NOT NULL,
    content_embedding vector(384),
    error_context jsonb,
    pattern_tags text[] DEFAULT ARRAY[]::text[],
    difficulty_level text CHECK (difficulty_level IN ('simple', 'moderate', 'complex', 'expert')),
    domain_category text,
    parent_memory_id uuid REFERENCES public.memory_items(id) ON DELETE SET NULL,
    evolution_stage integer DEFAULT 0,
    workspace_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE public.memory_items ADD COLUMN IF NOT EXISTS source_id text;
ALTER TABLE public.memory_items ADD COLUMN IF NOT EXISTS source_collection text;
ALTER TABLE public.memory_items ADD COLUMN IF NOT EXISTS source_hash text;
ALTER TABLE public.memory_items ADD COLUMN IF NOT EXISTS metadata jsonb DEFAULT '{}'::jsonb;

CREATE TABLE IF NOT EXISTS public.rbmigrate_runs (
    run_id text PRIMARY KEY,
    command text NOT NULL,
    status text NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'interrupted', 'rolled_back')),
    source_fingerprint text,
    source jsonb DEFAULT '{}'::jsonb,
    target jsonb DEFAULT '{}'::jsonb,
    config jsonb DEFAULT '{}'::jsonb,
    counts jsonb DEFAULT '{}'::jsonb,
    phase text,
    rbmigrate_version text,
    deferred_indexes jsonb NOT NULL DEFAULT '[]'::jsonb,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

-- The REST transport holds a run with a lease renewed by every batch (an advisory lock cannot
-- outlive one HTTP request); the direct transport uses an advisory lock and leaves these NULL.
ALTER TABLE public.rbmigrate_runs ADD COLUMN IF NOT EXISTS lease_owner text;
ALTER TABLE public.rbmigrate_runs ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz;

CREATE INDEX IF NOT EXISTS idx_runs_fingerprint ON public.rbmigrate_runs(source_fingerprint, started_at DESC);

CREATE TABLE IF NOT EXISTS public.rbmigrate_checkpoints (
    run_id text NOT NULL REFERENCES public.rbmigrate_runs(run_id) ON DELETE CASCADE,
    collection text NOT NULL,
    position bigint NOT NULL DEFAULT 0,
    batches integer NOT NULL DEFAULT 0,
    done boolean NOT NULL DEFAULT false,
    counts jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, collection)
);

CREATE TABLE IF NOT EXISTS public.rbmigrate_changes (
    run_id text NOT NULL REFERENCES public.rbmigrate_runs(run_id) ON DELETE CASCADE,
    table_name text NOT NULL CHECK (table_name IN ('memory_items', 'reasoning_traces')),
    row_id uuid NOT NULL,
    action text NOT NULL CHECK (action IN ('insert', 'update', 'delete')),
    old_row jsonb,
    new_hash text,
    PRIMARY KEY (run_id, table_name, row_id)
);

-- ---------------------------------------------------------------------------------------
-- Indexes

CREATE INDEX IF NOT EXISTS idx_traces_outcome ON public.reasoning_traces(outcome);
CREATE INDEX IF NOT EXISTS idx_traces_timestamp ON public.reasoning_traces("timestamp" DESC);
CREATE INDEX IF NOT EXISTS idx_traces_parent ON public.reasoning_traces(parent_trace_id) WHERE parent_trace_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_traces_workspace ON public.reasoning_traces(workspace_id) WHERE workspace_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_memories_trace ON public.memory_items(trace_id);
CREATE INDEX IF NOT EXISTS idx_memories_domain ON public.memory_items(domain_category) WHERE domain_category IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_memories_difficulty ON public.memory_items(difficulty_level) WHERE difficulty_level IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_memories_error ON public.memory_items((error_context IS NOT NULL)) WHERE error_context IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_memories_workspace ON public.memory_items(workspace_id) WHERE workspace_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_memories_parent ON public.memory_items(parent_memory_id) WHERE parent_memory_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS idx_memories_source ON public.memory_items(source_collection, source_id);
CREATE INDEX IF NOT EXISTS idx_changes_row ON public.rbmigrate_changes(table_name, row_id);
-- Built after the data on an initial load (rbmigrate drops and rebuilds them then).
CREATE INDEX IF NOT EXISTS idx_memories_tags ON public.memory_items USING gin(pattern_tags);
CREATE INDEX IF NOT EXISTS idx_traces_embedding ON public.reasoning_traces USING hnsw (task_embedding vector_cosine_ops);
CREATE INDEX IF NOT EXISTS idx_memories_embedding ON public.memory_items USING hnsw (content_embedding vector_cosine_ops);

-- ---------------------------------------------------------------------------------------
-- updated_at triggers

-- rbmigrate rollback restores rows exactly, updated_at included: it sets rbmigrate.restoring.
CREATE OR REPLACE FUNCTION public.update_updated_at_column()
RETURNS trigger LANGUAGE plpgsql SET search_path = public, extensions, pg_temp AS $$
BEGIN
    IF coalesce(current_setting('rbmigrate.restoring', true), '') <> 'on' THEN
        NEW.updated_at = now();
    END IF;
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS update_traces_updated_at ON public.reasoning_traces;
CREATE TRIGGER update_traces_updated_at BEFORE UPDATE ON public.reasoning_traces
    FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();
DROP TRIGGER IF EXISTS update_memories_updated_at ON public.memory_items;
CREATE TRIGGER update_memories_updated_at BEFORE UPDATE ON public.memory_items
    FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();

-- ---------------------------------------------------------------------------------------
-- Functions

CREATE OR REPLACE FUNCTION public.check_pgvector_enabled()
RETURNS boolean LANGUAGE sql STABLE SET search_path = public, extensions, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector');
$$;

-- What rbmigrate needs to know over REST: schema version, dimension, versions, the calling
-- role, and the objects of this schema (the same facts a direct connection reads from the
-- catalog), so `bootstrap` can check a schema it cannot create without a database password.
CREATE OR REPLACE FUNCTION public.rbmigrate_schema_info()
RETURNS jsonb LANGUAGE sql STABLE SET search_path = public, extensions, pg_temp AS $$
    WITH ns AS (
        SELECT p.pronamespace AS oid FROM pg_proc p
        WHERE p.oid = 'public.rbmigrate_schema_info()'::regprocedure
    )
    SELECT jsonb_build_object(
        'schema_version', 1,
        'schema', (SELECT nspname FROM pg_namespace WHERE oid = (SELECT oid FROM ns)),
        'dimension', (SELECT atttypmod FROM pg_attribute
                      WHERE attrelid = to_regclass('public.memory_items') AND attname = 'content_embedding'),
        'pgvector_version', (SELECT extversion FROM pg_extension WHERE extname = 'vector'),
        'pgvector_available', (SELECT default_version FROM pg_available_extensions WHERE name = 'vector'),
        'server_version', current_setting('server_version'),
        'role', current_user,
        'bypass_rls', (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user),
        'is_supabase', EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'supabase_admin'),
        'tables', (SELECT coalesce(jsonb_agg(jsonb_build_array(c.relname, c.relrowsecurity)), '[]')
                   FROM pg_class c WHERE c.relnamespace = (SELECT oid FROM ns) AND c.relkind IN ('r', 'p')),
        'columns', (SELECT coalesce(jsonb_agg(jsonb_build_array(c.relname, a.attname, t.typname, a.atttypmod)), '[]')
                    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type t ON t.oid = a.atttypid
                    WHERE c.relnamespace = (SELECT oid FROM ns) AND c.relkind IN ('r', 'p')
                      AND a.attnum > 0 AND NOT a.attisdropped),
        'indexes', (SELECT coalesce(jsonb_agg(indexname), '[]') FROM pg_indexes
                    WHERE schemaname = (SELECT nspname FROM pg_namespace WHERE oid = (SELECT oid FROM ns))),
        'functions', (SELECT coalesce(jsonb_agg(DISTINCT p.proname), '[]') FROM pg_proc p
                      WHERE p.pronamespace = (SELECT oid FROM ns)),
        'triggers', (SELECT coalesce(jsonb_agg(jsonb_build_array(t.tgname, c.relname)), '[]')
                     FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                     WHERE c.relnamespace = (SELECT oid FROM ns)),
        'policies', (SELECT coalesce(jsonb_agg(jsonb_build_array(policyname, tablename)), '[]') FROM pg_policies
                     WHERE schemaname = (SELECT nspname FROM pg_namespace WHERE oid = (SELECT oid FROM ns)))
    );
$$;

-- True when this pgvector can keep scanning an HNSW index until a filter is satisfied.
CREATE OR REPLACE FUNCTION public.rbmigrate_iterative_scan()
RETURNS boolean LANGUAGE sql STABLE SET search_path = public, extensions, pg_temp AS $$
    SELECT coalesce((SELECT string_to_array(split_part(extversion, '-', 1), '.')::int[] >= ARRAY[0, 8, 0]
                     FROM pg_extension WHERE extname = 'vector'), false);
$$;

DROP FUNCTION IF EXISTS public.search_similar_memories(vector, integer, text);
DROP FUNCTION IF EXISTS public.search_similar_memories(vector, integer, text, text);
DROP FUNCTION IF EXISTS public.search_similar_memories(vector, integer, text, text, boolean);
CREATE FUNCTION public.search_similar_memories(
    query_embedding vector(384),
    match_count integer DEFAULT 5,
    domain_filter text DEFAULT NULL,
    workspace_filter text DEFAULT NULL,
    exact boolean DEFAULT false
)
RETURNS TABLE (
    id uuid, trace_id uuid, title text, description text, content text, error_context jsonb,
    pattern_tags text[], difficulty_level text, domain_category text, parent_memory_id uuid,
    evolution_stage integer, distance double precision, similarity double precision,
    trace_outcome text, trace_timestamp timestamptz, workspace_id text, source_id text,
    source_collection text
)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = public, extensions, pg_temp AS $$
-- Returns exactly min(k, matching rows) rows. With a filter, an HNSW scan can stop before it
-- finds k matching rows; pgvector >= 0.8 keeps scanning (iterative scan), older versions
-- widen ef_search, and if the index still comes back short the search is done exactly.
DECLARE
    k integer := least(greatest(coalesce(match_count, 5), 0), 1000);
    filtered boolean := domain_filter IS NOT NULL OR workspace_filter IS NOT NULL;
    ids uuid[];
    matching bigint;
BEGIN
    IF k = 0 THEN
        RETURN;
    END IF;
    IF NOT exact THEN
        IF filtered THEN
            IF public.rbmigrate_iterative_scan() THEN
                PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);
            END IF;
            PERFORM set_config('hnsw.ef_search', greatest(40, least(1000, k * 10))::text, true);
        ELSE
            PERFORM set_config('hnsw.ef_search', greatest(40, least(1000, k * 2))::text, true);
        END IF;
        SELECT array_agg(s.id) INTO ids FROM (
            SELECT m.id FROM public.memory_items m
            WHERE m.content_embedding IS NOT NULL
              AND (domain_filter IS NULL OR m.domain_category = domain_filter)
              AND (workspace_filter IS NULL OR m.workspace_id = workspace_filter)
            ORDER BY m.content_embedding <=> query_embedding
            LIMIT k
        ) s;
        IF coalesce(cardinality(ids), 0) < k AND filtered THEN
            SELECT count(*) INTO matching FROM public.memory_items m
            WHERE m.content_embedding IS NOT NULL
              AND (domain_filter IS NULL OR m.domain_category = domain_filter)
              AND (workspace_filter IS NULL OR m.workspace_id = workspace_filter);
            IF matching > coalesce(cardinality(ids), 0) THEN
                exact := true;
            END IF;
        END IF;
        IF NOT exact THEN
            RETURN QUERY
            SELECT m.id, m.trace_id, m.title, m.description, m.content, m.error_context,
                   m.pattern_tags, m.difficulty_level, m.domain_category, m.parent_memory_id,
                   m.evolution_stage,
                   (m.content_embedding <=> query_embedding)::double precision,
                   (1 - (m.content_embedding <=> query_embedding))::double precision,
                   t.outcome, t."timestamp", m.workspace_id, m.source_id, m.source_collection
            FROM public.memory_items m
            LEFT JOIN public.reasoning_traces t ON t.id = m.trace_id
            WHERE m.id = ANY(ids)
            ORDER BY m.content_embedding <=> query_embedding, m.id;
            RETURN;
        END IF;
    END IF;
    -- exact: "+ 0" keeps the planner off the HNSW index, so every matching row is compared
    RETURN QUERY
    SELECT m.id, m.trace_id, m.title, m.description, m.content, m.error_context,
           m.pattern_tags, m.difficulty_level, m.domain_category, m.parent_memory_id,
           m.evolution_stage,
           (m.content_embedding <=> query_embedding)::double precision,
           (1 - (m.content_embedding <=> query_embedding))::double precision,
           t.outcome, t."timestamp", m.workspace_id, m.source_id, m.source_collection
    FROM public.memory_items m
    LEFT JOIN public.reasoning_traces t ON t.id = m.trace_id
    WHERE m.content_embedding IS NOT NULL
      AND (domain_filter IS NULL OR m.domain_category = domain_filter)
      AND (workspace_filter IS NULL OR m.workspace_id = workspace_filter)
    ORDER BY (m.content_embedding <=> query_embedding) + 0, m.id
    LIMIT k;
END;
$$;

DROP FUNCTION IF EXISTS public.search_similar_traces(vector, integer, text, text);
DROP FUNCTION IF EXISTS public.search_similar_traces(vector, integer, text, text, text, boolean);
CREATE FUNCTION public.search_similar_traces(
    query_embedding vector(384),
    match_count integer DEFAULT 5,
    outcome_filter text DEFAULT NULL,
    domain_filter text DEFAULT NULL,
    workspace_filter text DEFAULT NULL,
    exact boolean DEFAULT false
)
RETURNS TABLE (
    id uuid, task text, outcome text, "timestamp" timestamptz, distance double precision,
    similarity double precision, workspace_id text, num_memories integer
)
LANGUAGE plpgsql STABLE SECURITY INVOKER SET search_path = public, extensions, pg_temp AS $$
DECLARE
    k integer := least(greatest(coalesce(match_count, 5), 0), 1000);
    filtered boolean := outcome_filter IS NOT NULL OR workspace_filter IS NOT NULL;
    ids uuid[];
    matching bigint;
BEGIN
    IF k = 0 THEN
        RETURN;
    END IF;
    IF NOT exact THEN
        IF filtered AND public.rbmigrate_iterative_scan() THEN
            PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);
        END IF;
        PERFORM set_config('hnsw.ef_search', greatest(40, least(1000, k * (CASE WHEN filtered THEN 10 ELSE 2 END)))::text, true);
        SELECT array_agg(s.id) INTO ids FROM (
            SELECT t.id FROM public.reasoning_traces t
            WHERE t.task_embedding IS NOT NULL
              AND (outcome_filter IS NULL OR t.outcome = outcome_filter)
              AND (workspace_filter IS NULL OR t.workspace_id = workspace_filter)
            ORDER BY t.task_embedding <=> query_embedding
            LIMIT k
        ) s;
        IF coalesce(cardinality(ids), 0) < k AND filtered THEN
            SELECT count(*) INTO matching FROM public.reasoning_traces t
            WHERE t.task_embedding IS NOT NULL
              AND (outcome_filter IS NULL OR t.outcome = outcome_filter)
              AND (workspace_filter IS NULL OR t.workspace_id = workspace_filter);
            IF matching > coalesce(cardinality(ids), 0) THEN
                exact := true;
            END IF;
        END IF;
        IF NOT exact THEN
            RETURN QUERY
            SELECT t.id, t.task, t.outcome, t."timestamp",
                   (t.task_embedding <=> query_embedding)::double precision,
                   (1 - (t.task_embedding <=> query_embedding))::double precision,
                   t.workspace_id, t.num_memories
            FROM public.reasoning_traces t
            WHERE t.id = ANY(ids)
            ORDER BY t.task_embedding <=> query_embedding, t.id;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
    SELECT t.id, t.task, t.outcome, t."timestamp",
           (t.task_embedding <=> query_embedding)::double precision,
           (1 - (t.task_embedding <=> query_embedding))::double precision,
           t.workspace_id, t.num_memories
    FROM public.reasoning_traces t
    WHERE t.task_embedding IS NOT NULL
      AND (outcome_filter IS NULL OR t.outcome = outcome_filter)
      AND (workspace_filter IS NULL OR t.workspace_id = workspace_filter)
    ORDER BY (t.task_embedding <=> query_embedding) + 0, t.id
    LIMIT k;
END;
$$;

DROP FUNCTION IF EXISTS public.get_reasoning_bank_stats();
DROP FUNCTION IF EXISTS public.get_reasoning_bank_stats(text);
CREATE FUNCTION public.get_reasoning_bank_stats(workspace_filter text DEFAULT NULL)
RETURNS TABLE (
    total_traces bigint, success_traces bigint, failure_traces bigint, total_memories bigint,
    memories_with_errors bigint, success_rate double precision
)
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = public, extensions, pg_temp AS $$
    WITH t AS (
        SELECT count(*) AS total,
               count(*) FILTER (WHERE outcome = 'success') AS success,
               count(*) FILTER (WHERE outcome = 'failure') AS failure
        FROM public.reasoning_traces
        WHERE workspace_filter IS NULL OR workspace_id = workspace_filter
    ), m AS (
        SELECT count(*) AS total, count(*) FILTER (WHERE error_context IS NOT NULL) AS errors
        FROM public.memory_items
        WHERE workspace_filter IS NULL OR workspace_id = workspace_filter
    )
    SELECT t.total, t.success, t.failure, m.total, m.errors,
           CASE WHEN t.total > 0 THEN t.success::double precision / t.total * 100 ELSE 0.0 END
    FROM t, m;
$$;

-- ---------------------------------------------------------------------------------------
-- REST transport (service_role only). PostgREST runs each request in one transaction, but
-- it has no way to say "upsert these traces and memories, skip the unchanged ones, keep a
-- parent that does not exist yet out of the foreign key, log the old rows for rollback and
-- move the checkpoint, all at once", nor group counts, nor UPDATEs computed from a row's own
-- JSON. These small functions do exactly what the direct transport does in SQL over its
-- connection, so a run over REST is as atomic, resumable and reversible as a direct one.
-- All are SECURITY INVOKER: they run with the caller's rights (RLS and grants apply).

-- Hold a run: claimed unless another live process holds it or another run of the same
-- source (heartbeat younger than p_stale_seconds). Also the heartbeat (same owner: renewed).
-- p_takeover names a holder the caller knows is dead (same host, process gone).
CREATE OR REPLACE FUNCTION public.rbmigrate_claim_run(
    p_run_id text, p_owner text, p_stale_seconds integer DEFAULT 90, p_takeover text DEFAULT NULL
)
RETURNS jsonb LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = public, extensions, pg_temp AS $$
DECLARE
    fp text;
    other record;
BEGIN
    SELECT source_fingerprint INTO fp FROM public.rbmigrate_runs WHERE run_id = p_run_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % does not exist in this target', p_run_id USING ERRCODE = 'RBM03';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('rbmigrate.run:' || coalesce(fp, p_run_id)));
    SELECT r.run_id, r.lease_owner, extract(epoch FROM now() - r.heartbeat_at)::integer AS age
    INTO other FROM public.rbmigrate_runs r
    WHERE (r.run_id = p_run_id OR (fp IS NOT NULL AND r.source_fingerprint = fp AND r.status = 'running'))
      AND r.lease_owner IS NOT NULL AND r.lease_owner <> p_owner
      AND r.lease_owner IS DISTINCT FROM p_takeover
      AND r.heartbeat_at > now() - make_interval(secs => p_stale_seconds)
    ORDER BY r.heartbeat_at DESC LIMIT 1;
    IF FOUND THEN
        RETURN jsonb_build_object('claimed', false, 'run_id', other.run_id, 'owner', other.lease_owner,
                                  'age_s', other.age);
    END IF;
    UPDATE public.rbmigrate_runs SET lease_owner = p_owner, heartbeat_at = now(), updated_at = now()
    WHERE run_id = p_run_id;
    RETURN jsonb_build_object('claimed', true);
END;
$$;

-- One batch: taken ids refused (RBM01, nothing written), old rows logged, traces and memories
-- merged as the direct transport merges them, checkpoint moved; a retried request whose
-- batch is committed already answers what is stored (replayed). The checkpoint's counts
-- arrive as if every memory sent were unchanged; the merge's outcome is added here.
CREATE OR REPLACE FUNCTION public.rbmigrate_merge_batch(
    p_run_id text, p_owner text, p_traces jsonb, p_memories jsonb, p_checkpoint jsonb
)
RETURNS jsonb LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = public, extensions, pg_temp
-- a batch is small, the tables may be huge: join through the primary keys, never by a
-- hash over a sequential scan (a growing table without statistics invites one per batch)
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    cp_collection text := p_checkpoint ->> 'collection';
    cp_batches integer := (p_checkpoint ->> 'batches')::integer;
    prev record;
    taken jsonb;
    trace_ids uuid[];
    memory_ids uuid[];
    ti bigint := 0;
    tu bigint := 0;
    mi bigint := 0;
    mu bigint := 0;
    counts jsonb := coalesce(p_checkpoint -> 'counts', '{}'::jsonb);
BEGIN
    PERFORM 1 FROM public.rbmigrate_runs WHERE run_id = p_run_id AND lease_owner = p_owner FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % is held by another process', p_run_id USING ERRCODE = 'RBM02';
    END IF;
    UPDATE public.rbmigrate_runs SET heartbeat_at = now(), updated_at = now() WHERE run_id = p_run_id;
    SELECT c.counts, c.batches INTO prev FROM public.rbmigrate_checkpoints c
    WHERE c.run_id = p_run_id AND c.collection = cp_collection;
    IF FOUND AND prev.batches >= cp_batches THEN
        RETURN jsonb_build_object('replayed', true, 'counts', prev.counts);
    END IF;

    SELECT jsonb_agg(jsonb_build_array(s.source_id, m.source_collection, m.source_id)) INTO taken
    FROM jsonb_to_recordset(p_memories) AS s(id uuid, source_id text, source_collection text)
    JOIN public.memory_items m ON m.id = s.id
    WHERE m.source_id IS NOT NULL
      AND (m.source_collection IS DISTINCT FROM s.source_collection OR m.source_id IS DISTINCT FROM s.source_id);
    IF taken IS NOT NULL THEN
        RAISE EXCEPTION 'target ids already belong to other records' USING ERRCODE = 'RBM01', DETAIL = taken::text;
    END IF;

    trace_ids := ARRAY(SELECT (e ->> 'id')::uuid FROM jsonb_array_elements(p_traces) e);
    INSERT INTO public.rbmigrate_changes (run_id, table_name, row_id, action, old_row, new_hash)
    SELECT p_run_id, 'reasoning_traces', t.id, 'update', to_jsonb(t), s.source_hash
    FROM jsonb_to_recordset(p_traces) AS s(id uuid, source_hash text, task_embedding text)
    JOIN public.reasoning_traces t ON t.id = s.id
    WHERE t.source_hash IS DISTINCT FROM s.source_hash
       OR (t.task_embedding IS NULL AND s.task_embedding IS NOT NULL)
    ON CONFLICT (run_id, table_name, row_id) DO NOTHING;
    WITH src AS (
        SELECT s.*, (s.parent_trace_id IS NULL OR s.parent_trace_id = ANY(trace_ids)
                     OR EXISTS (SELECT 1 FROM public.reasoning_traces p WHERE p.id = s.parent_trace_id)) AS parent_ok
        FROM jsonb_to_recordset(p_traces) AS s(
            id uuid, task text, task_embedding vector, trajectory jsonb, outcome text, metadata jsonb,
            parent_trace_id uuid, "timestamp" timestamptz, num_memories integer, workspace_id text,
            source_id text, source_hash text)
    ), up AS (
        INSERT INTO public.reasoning_traces AS t (id, task, task_embedding, trajectory, outcome, metadata,
            parent_trace_id, "timestamp", num_memories, workspace_id, source_id, source_hash)
        SELECT id, task, task_embedding, trajectory, outcome,
               CASE WHEN parent_ok THEN metadata
                    ELSE metadata || jsonb_build_object('unresolved_parent_trace_id', parent_trace_id::text) END,
               CASE WHEN parent_ok THEN parent_trace_id END,
               "timestamp", num_memories, workspace_id, source_id, source_hash
        FROM src
        ON CONFLICT (id) DO UPDATE SET
            task = excluded.task,
            task_embedding = CASE WHEN t.task IS NOT DISTINCT FROM excluded.task
                                  THEN coalesce(excluded.task_embedding, t.task_embedding)
                                  ELSE excluded.task_embedding END,
            trajectory = excluded.trajectory, outcome = excluded.outcome, metadata = excluded.metadata,
            parent_trace_id = excluded.parent_trace_id, "timestamp" = excluded."timestamp",
            num_memories = excluded.num_memories, workspace_id = excluded.workspace_id,
            source_id = excluded.source_id, source_hash = excluded.source_hash
        WHERE t.source_hash IS DISTINCT FROM excluded.source_hash
           OR (t.task_embedding IS NULL AND excluded.task_embedding IS NOT NULL)
        RETURNING t.id, t.source_hash, (t.xmax = 0) AS inserted
    ), logged AS (
        INSERT INTO public.rbmigrate_changes (run_id, table_name, row_id, action, new_hash)
        SELECT p_run_id, 'reasoning_traces', id, CASE WHEN inserted THEN 'insert' ELSE 'update' END, source_hash
        FROM up
        ON CONFLICT (run_id, table_name, row_id) DO UPDATE SET new_hash = excluded.new_hash
    )
    SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) INTO ti, tu FROM up;

    memory_ids := ARRAY(SELECT (e ->> 'id')::uuid FROM jsonb_array_elements(p_memories) e);
    INSERT INTO public.rbmigrate_changes (run_id, table_name, row_id, action, old_row, new_hash)
    SELECT p_run_id, 'memory_items', m.id, 'update', to_jsonb(m), s.source_hash
    FROM jsonb_to_recordset(p_memories) AS s(id uuid, source_hash text)
    JOIN public.memory_items m ON m.id = s.id
    WHERE m.source_hash IS DISTINCT FROM s.source_hash
    ON CONFLICT (run_id, table_name, row_id) DO NOTHING;
    WITH src AS (
        SELECT s.*, (s.parent_ref IS NULL OR s.parent_ref = ANY(memory_ids)
                     OR EXISTS (SELECT 1 FROM public.memory_items p WHERE p.id = s.parent_ref)) AS parent_ok
        FROM jsonb_to_recordset(p_memories) AS s(
            id uuid, trace_id uuid, title text, description text, content text, content_embedding vector,
            error_context jsonb, pattern_tags text[], difficulty_level text, domain_category text,
            parent_ref uuid, evolution_stage integer, workspace_id text, created_at timestamptz,
            source_id text, source_collection text, source_hash text, metadata jsonb)
    ), up AS (
        INSERT INTO public.memory_items AS m (id, trace_id, title, description, content, content_embedding,
            error_context, pattern_tags, difficulty_level, domain_category, parent_memory_id,
            evolution_stage, workspace_id, created_at, source_id, source_collection, source_hash, metadata)
        SELECT id, trace_id, title, description, content, content_embedding, error_context, pattern_tags,
               difficulty_level, domain_category, CASE WHEN parent_ok THEN parent_ref END,
               evolution_stage, workspace_id, created_at, source_id, source_collection, source_hash,
               CASE WHEN parent_ok THEN metadata
                    ELSE metadata || jsonb_build_object('unresolved_parent_memory_id', parent_ref::text) END
        FROM src
        ON CONFLICT (id) DO UPDATE SET
            trace_id = excluded.trace_id, title = excluded.title, description = excluded.description,
            content = excluded.content, content_embedding = excluded.content_embedding,
            error_context = excluded.error_context, pattern_tags = excluded.pattern_tags,
            difficulty_level = excluded.difficulty_level, domain_category = excluded.domain_category,
            parent_memory_id = excluded.parent_memory_id, evolution_stage = excluded.evolution_stage,
            workspace_id = excluded.workspace_id, created_at = excluded.created_at,
            source_id = excluded.source_id, source_collection = excluded.source_collection,
            source_hash = excluded.source_hash, metadata = excluded.metadata
        WHERE m.source_hash IS DISTINCT FROM excluded.source_hash
        RETURNING m.id, m.source_hash, (m.xmax = 0) AS inserted
    ), logged AS (
        INSERT INTO public.rbmigrate_changes (run_id, table_name, row_id, action, new_hash)
        SELECT p_run_id, 'memory_items', id, CASE WHEN inserted THEN 'insert' ELSE 'update' END, source_hash
        FROM up
        ON CONFLICT (run_id, table_name, row_id) DO UPDATE SET new_hash = excluded.new_hash
    )
    SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) INTO mi, mu FROM up;

    counts := counts || jsonb_build_object(
        'inserted', coalesce((counts ->> 'inserted')::bigint, 0) + mi,
        'updated', coalesce((counts ->> 'updated')::bigint, 0) + mu,
        'unchanged', coalesce((counts ->> 'unchanged')::bigint, 0) - mi - mu,
        'traces_inserted', coalesce((counts ->> 'traces_inserted')::bigint, 0) + ti,
        'traces_updated', coalesce((counts ->> 'traces_updated')::bigint, 0) + tu);
    INSERT INTO public.rbmigrate_checkpoints (run_id, collection, position, batches, done, counts, updated_at)
    VALUES (p_run_id, cp_collection, (p_checkpoint ->> 'position')::bigint, cp_batches,
            coalesce((p_checkpoint ->> 'done')::boolean, false), counts, now())
    ON CONFLICT (run_id, collection) DO UPDATE SET position = excluded.position,
        batches = excluded.batches, done = excluded.done, counts = excluded.counts, updated_at = now();
    RETURN jsonb_build_object('replayed', false, 'traces_inserted', ti, 'traces_updated', tu,
                              'memories_inserted', mi, 'memories_updated', mu);
END;
$$;

-- Target rows per workspace of one collection (PostgREST has no GROUP BY without aggregates,
-- which Supabase turns off by default).
CREATE OR REPLACE FUNCTION public.rbmigrate_memory_counts(p_collection text)
RETURNS TABLE (workspace_id text, n bigint)
LANGUAGE sql STABLE SECURITY INVOKER SET search_path = public, extensions, pg_temp AS $$
    SELECT m.workspace_id, count(*) FROM public.memory_items m
    WHERE m.source_collection = p_collection GROUP BY m.workspace_id;
$$;

-- Link memories and traces whose parent arrived later; returns the memories still unlinked.
CREATE OR REPLACE FUNCTION public.rbmigrate_resolve_parents(p_collections text[])
RETURNS bigint LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = public, extensions, pg_temp AS $$
DECLARE
    left_over bigint;
BEGIN
    UPDATE public.memory_items m
    SET parent_memory_id = (m.metadata ->> 'unresolved_parent_memory_id')::uuid,
        metadata = m.metadata - 'unresolved_parent_memory_id'
    WHERE m.metadata ? 'unresolved_parent_memory_id' AND m.source_collection = ANY(p_collections)
      AND EXISTS (SELECT 1 FROM public.memory_items p
                  WHERE p.id = (m.metadata ->> 'unresolved_parent_memory_id')::uuid);
    UPDATE public.reasoning_traces t
    SET parent_trace_id = (t.metadata ->> 'unresolved_parent_trace_id')::uuid,
        metadata = t.metadata - 'unresolved_parent_trace_id'
    WHERE t.metadata ? 'unresolved_parent_trace_id'
      AND EXISTS (SELECT 1 FROM public.reasoning_traces p
                  WHERE p.id = (t.metadata ->> 'unresolved_parent_trace_id')::uuid);
    SELECT count(*) INTO left_over FROM public.memory_items
    WHERE metadata ? 'unresolved_parent_memory_id' AND source_collection = ANY(p_collections);
    RETURN left_over;
END;
$$;

-- Delete memories whose source record is gone, their old rows logged for rollback first.
CREATE OR REPLACE FUNCTION public.rbmigrate_delete_memories(p_run_id text, p_ids uuid[])
RETURNS bigint LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = public, extensions, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO public.rbmigrate_changes (run_id, table_name, row_id, action, old_row)
    SELECT p_run_id, 'memory_items', m.id, 'delete', to_jsonb(m) FROM public.memory_items m
    WHERE m.id = ANY(p_ids)
    ON CONFLICT (run_id, table_name, row_id) DO NOTHING;
    DELETE FROM public.memory_items m WHERE m.id = ANY(p_ids);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

-- Undo a run from its change log, as `rbmigrate rollback` does over a direct connection:
-- refuse (RBM04, naming rows) when a later run or a writer changed them since; else remove
-- what it inserted, restore what it updated or deleted (updated_at included), in one go.
CREATE OR REPLACE FUNCTION public.rbmigrate_rollback_run(p_run_id text)
RETURNS jsonb LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = public, extensions, pg_temp AS $$
DECLARE
    st text;
    tbl text;
    cols text;
    n bigint;
    r record;
    problems text[] := ARRAY[]::text[];
    result jsonb := '{"deleted": {}, "restored": {}, "reinserted": {}}'::jsonb;
BEGIN
    SELECT status INTO st FROM public.rbmigrate_runs WHERE run_id = p_run_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % does not exist in this target', p_run_id USING ERRCODE = 'RBM03';
    END IF;
    IF st = 'rolled_back' THEN
        RAISE EXCEPTION 'run % was rolled back already', p_run_id USING ERRCODE = 'RBM05';
    END IF;
    FOREACH tbl IN ARRAY ARRAY['memory_items', 'reasoning_traces'] LOOP
        FOR r IN EXECUTE format(
            'SELECT c.row_id, c.action FROM public.rbmigrate_changes c LEFT JOIN public.%I x ON x.id = c.row_id'
            ' WHERE c.run_id = $1 AND c.table_name = $2 AND c.action IN (''insert'', ''update'')'
            ' AND (x.id IS NULL OR x.source_hash IS DISTINCT FROM c.new_hash) LIMIT 5', tbl)
            USING p_run_id, tbl LOOP
            problems := problems || format('%s %s (%sd by this run) was changed or removed since',
                                           tbl, r.row_id, r.action);
        END LOOP;
        FOR r IN
            SELECT c.row_id, l.run_id FROM public.rbmigrate_changes c
            JOIN public.rbmigrate_changes l ON l.table_name = c.table_name AND l.row_id = c.row_id
            JOIN public.rbmigrate_runs lr ON lr.run_id = l.run_id
            JOIN public.rbmigrate_runs cr ON cr.run_id = c.run_id
            WHERE c.run_id = p_run_id AND c.table_name = tbl AND l.run_id <> c.run_id
              AND lr.started_at > cr.started_at AND lr.status <> 'rolled_back' LIMIT 5
        LOOP
            problems := problems || format('%s %s was touched again by the later run %s', tbl, r.row_id, r.run_id);
        END LOOP;
    END LOOP;
    FOR r IN
        SELECT m.id FROM public.rbmigrate_changes c JOIN public.memory_items m ON m.trace_id = c.row_id
        WHERE c.run_id = p_run_id AND c.table_name = 'reasoning_traces' AND c.action = 'insert'
          AND NOT EXISTS (SELECT 1 FROM public.rbmigrate_changes x WHERE x.run_id = c.run_id
                          AND x.table_name = 'memory_items' AND x.row_id = m.id AND x.action = 'insert')
        LIMIT 5
    LOOP
        problems := problems || format('memory_items %s was added since to a trace this run created', r.id);
    END LOOP;
    IF cardinality(problems) > 0 THEN
        RAISE EXCEPTION 'run % cannot be rolled back: %', p_run_id, array_to_string(problems, '; ')
            USING ERRCODE = 'RBM04';
    END IF;
    PERFORM set_config('rbmigrate.restoring', 'on', true);
    FOREACH tbl IN ARRAY ARRAY['memory_items', 'reasoning_traces'] LOOP  -- memories point at traces
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
        FROM pg_attribute a WHERE a.attrelid = format('public.%I', tbl)::regclass
          AND a.attnum > 0 AND NOT a.attisdropped;
        EXECUTE format('DELETE FROM public.%I x USING public.rbmigrate_changes c WHERE c.run_id = $1'
                       ' AND c.table_name = $2 AND c.action = ''insert'' AND x.id = c.row_id', tbl)
            USING p_run_id, tbl;
        GET DIAGNOSTICS n = ROW_COUNT;
        result := jsonb_set(result, ARRAY['deleted', tbl], to_jsonb(n));
        EXECUTE format('UPDATE public.%1$I x SET (%2$s) = (SELECT %2$s FROM jsonb_populate_record(NULL::public.%1$I, c.old_row))'
                       ' FROM public.rbmigrate_changes c WHERE c.run_id = $1 AND c.table_name = $2'
                       ' AND c.action = ''update'' AND x.id = c.row_id', tbl, cols)
            USING p_run_id, tbl;
        GET DIAGNOSTICS n = ROW_COUNT;
        result := jsonb_set(result, ARRAY['restored', tbl], to_jsonb(n));
        EXECUTE format('INSERT INTO public.%1$I (%2$s) SELECT %2$s FROM public.rbmigrate_changes c,'
                       ' jsonb_populate_record(NULL::public.%1$I, c.old_row) r'
                       ' WHERE c.run_id = $1 AND c.table_name = $2 AND c.action = ''delete''', tbl, cols)
            USING p_run_id, tbl;
        GET DIAGNOSTICS n = ROW_COUNT;
        result := jsonb_set(result, ARRAY['reinserted', tbl], to_jsonb(n));
    END LOOP;
    UPDATE public.rbmigrate_runs SET status = 'rolled_back', updated_at = now(), lease_owner = NULL
    WHERE run_id = p_run_id;
    RETURN result;
END;
$$;

-- ---------------------------------------------------------------------------------------
-- Workspace isolation: RLS on every table, explicit grants, (select auth.jwt()) policies.

ALTER TABLE public.reasoning_traces ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.memory_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.rbmigrate_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.rbmigrate_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.rbmigrate_changes ENABLE ROW LEVEL SECURITY;

-- the upstream policies let every authenticated user read every workspace: remove them
DROP POLICY IF EXISTS "Allow all operations for authenticated users" ON public.reasoning_traces;
DROP POLICY IF EXISTS "Allow all operations for authenticated users" ON public.memory_items;
DROP POLICY IF EXISTS "Service role has full access to traces" ON public.reasoning_traces;
DROP POLICY IF EXISTS "Service role has full access to memories" ON public.memory_items;

DROP POLICY IF EXISTS rbm_service_all ON public.reasoning_traces;
CREATE POLICY rbm_service_all ON public.reasoning_traces FOR ALL TO service_role USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS rbm_workspace_member ON public.reasoning_traces;
CREATE POLICY rbm_workspace_member ON public.reasoning_traces FOR ALL TO authenticated
    USING (workspace_id = ((SELECT auth.jwt()) -> 'app_metadata' ->> 'workspace_id'))
    WITH CHECK (workspace_id = ((SELECT auth.jwt()) -> 'app_metadata' ->> 'workspace_id'));

DROP POLICY IF EXISTS rbm_service_all ON public.memory_items;
CREATE POLICY rbm_service_all ON public.memory_items FOR ALL TO service_role USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS rbm_workspace_member ON public.memory_items;
-- WITH CHECK also requires the trace to be one this user can see: the foreign key is checked
-- without RLS, so otherwise a member of A could attach memories to B's traces (and learn
-- which trace ids B has, and lose them when B deletes the trace).
CREATE POLICY rbm_workspace_member ON public.memory_items FOR ALL TO authenticated
    USING (workspace_id = ((SELECT auth.jwt()) -> 'app_metadata' ->> 'workspace_id'))
    WITH CHECK (
        workspace_id = ((SELECT auth.jwt()) -> 'app_metadata' ->> 'workspace_id')
        AND EXISTS (SELECT 1 FROM public.reasoning_traces t WHERE t.id = trace_id)
    );

DROP POLICY IF EXISTS rbm_service_all ON public.rbmigrate_runs;
CREATE POLICY rbm_service_all ON public.rbmigrate_runs FOR ALL TO service_role USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS rbm_service_all ON public.rbmigrate_checkpoints;
CREATE POLICY rbm_service_all ON public.rbmigrate_checkpoints FOR ALL TO service_role USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS rbm_service_all ON public.rbmigrate_changes;
CREATE POLICY rbm_service_all ON public.rbmigrate_changes FOR ALL TO service_role USING (true) WITH CHECK (true);

GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
REVOKE ALL ON public.reasoning_traces, public.memory_items FROM anon, authenticated;
GRANT SELECT ON public.reasoning_traces, public.memory_items TO anon;  -- RLS: anon matches no policy, sees no row
GRANT SELECT, INSERT, UPDATE, DELETE ON public.reasoning_traces, public.memory_items TO authenticated;
GRANT ALL ON public.reasoning_traces, public.memory_items TO service_role;
REVOKE ALL ON public.rbmigrate_runs, public.rbmigrate_checkpoints, public.rbmigrate_changes FROM anon, authenticated;
GRANT ALL ON public.rbmigrate_runs, public.rbmigrate_checkpoints, public.rbmigrate_changes TO service_role;

REVOKE ALL ON FUNCTION public.search_similar_memories(vector, integer, text, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.search_similar_traces(vector, integer, text, text, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.get_reasoning_bank_stats(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.search_similar_memories(vector, integer, text, text, boolean) TO anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.search_similar_traces(vector, integer, text, text, text, boolean) TO anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.get_reasoning_bank_stats(text) TO anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.check_pgvector_enabled() TO anon, authenticated, service_role;
-- new functions are executable by PUBLIC (and, on Supabase, granted to anon by default)
REVOKE ALL ON FUNCTION public.rbmigrate_schema_info() FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.rbmigrate_schema_info() TO authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.rbmigrate_iterative_scan() TO anon, authenticated, service_role;

-- the REST transport's functions: service_role only
REVOKE ALL ON FUNCTION public.rbmigrate_claim_run(text, text, integer, text) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.rbmigrate_merge_batch(text, text, jsonb, jsonb, jsonb) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.rbmigrate_memory_counts(text) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.rbmigrate_resolve_parents(text[]) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.rbmigrate_delete_memories(text, uuid[]) FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.rbmigrate_rollback_run(text) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.rbmigrate_claim_run(text, text, integer, text) TO service_role;
GRANT EXECUTE ON FUNCTION public.rbmigrate_merge_batch(text, text, jsonb, jsonb, jsonb) TO service_role;
GRANT EXECUTE ON FUNCTION public.rbmigrate_memory_counts(text) TO service_role;
GRANT EXECUTE ON FUNCTION public.rbmigrate_resolve_parents(text[]) TO service_role;
GRANT EXECUTE ON FUNCTION public.rbmigrate_delete_memories(text, uuid[]) TO service_role;
GRANT EXECUTE ON FUNCTION public.rbmigrate_rollback_run(text) TO service_role;

COMMENT ON TABLE public.reasoning_traces IS 'ReasoningBank traces with task embeddings (rbmigrate schema v1)';
COMMENT ON TABLE public.memory_items IS 'ReasoningBank memory items with content embeddings (rbmigrate schema v1)';
