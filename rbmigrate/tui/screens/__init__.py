"""The wizard's screens: one per step (Connect, Schema, Plan, Migrate, Compare) and modals."""
