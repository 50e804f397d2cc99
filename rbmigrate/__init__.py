"""rbmigrate: move a ReasoningBank memory store from ChromaDB to Supabase and prove it."""

__version__ = "0.1.0"
