-- The shape of a ReasoningBank Supabase schema as the upstream project set it up before
-- rbmigrate: its tables and columns, a 384-d vector per row, and the policy that lets any
-- authenticated user see every workspace. Used to test that bootstrap upgrades it in place.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE reasoning_traces (
    id uuid PRIMARY KEY,
    task text NOT NULL,
    task_embedding vector(384),
    trajectory jsonb NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('success', 'failure', 'partial')),
    metadata jsonb DEFAULT '{}'::jsonb,
    parent_trace_id uuid REFERENCES reasoning_traces(id) ON DELETE SET NULL,
    "timestamp" timestamptz NOT NULL DEFAULT now(),
    num_memories integer DEFAULT 0,
    workspace_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE memory_items (
    id uuid PRIMARY KEY,
    trace_id uuid NOT NULL REFERENCES reasoning_traces(id) ON DELETE CASCADE,
    title text NOT NULL,
    description text,
    content text NOT NULL,
    content_embedding vector(384),
    error_context jsonb,
    pattern_tags text[] DEFAULT ARRAY[]::text[],
    difficulty_level text CHECK (difficulty_level IN ('simple', 'moderate', 'complex', 'expert')),
    domain_category text,
    parent_memory_id uuid REFERENCES memory_items(id) ON DELETE SET NULL,
    evolution_stage integer DEFAULT 0,
    workspace_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE reasoning_traces ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_items ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Allow all operations for authenticated users" ON reasoning_traces FOR ALL TO authenticated USING (true);
CREATE POLICY "Allow all operations for authenticated users" ON memory_items FOR ALL TO authenticated USING (true);
