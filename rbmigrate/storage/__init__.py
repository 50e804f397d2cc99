"""Storage backends for a ReasoningBank server: Chroma, Supabase, and dual-write."""
