"""The full-screen wizard: Textual screens that drive the headless engine.

Everything that knows about Textual or rich lives here; the engine only sees an event sink
and a RunControl (DESIGN §1).
"""
