"""Pure Python, no Textual and no network: task states, the cluster model, the query
language, formatting, safe text and redaction."""
