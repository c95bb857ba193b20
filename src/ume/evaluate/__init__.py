"""MMEB-V2-compatible evaluation: task registry, loaders, metrics, runner and reports."""
