"""The operator console and the HTTP API (`recpipe console`)."""
