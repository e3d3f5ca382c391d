"""The composition root: settings, the local stack, the ``shoal`` CLI, jobs, deploy files."""
