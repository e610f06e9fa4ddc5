"""What every room of recpipe stands on: settings from the environment, logs, metrics.

Imports nothing of recpipe's own rooms (storage, tasks, webhook, the entry points)."""
