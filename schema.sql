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

-- What rbmigrate needs to know over REST: schema version, dimension, pgvector version.
CREATE OR REPLACE FUNCTION public.rbmigrate_schema_info()
RETURNS jsonb LANGUAGE sql STABLE SET search_path = public, extensions, pg_temp AS $$
    SELECT jsonb_build_object(
        'schema_version', 1,
        'dimension', (SELECT atttypmod FROM pg_attribute
                      WHERE attrelid = 'public.memory_items'::regclass AND attname = 'content_embedding'),
        'pgvector_version', (SELECT extversion FROM pg_extension WHERE extname = 'vector'),
        'server_version', current_setting('server_version')
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

COMMENT ON TABLE public.reasoning_traces IS 'ReasoningBank traces with task embeddings (rbmigrate schema v1)';
COMMENT ON TABLE public.memory_items IS 'ReasoningBank memory items with content embeddings (rbmigrate schema v1)';
