"""coexec: CPU/GPU co-execution planning and runtime (see the project issues)."""
