"""``cluster:`` terms of the history search: which clusters' history it covers.

The history file holds the tasks of every cluster its consoles watched (each row keyed by
the broker's identity without credentials).  A search covers the console's own cluster
unless it says otherwise: ``cluster:all`` every cluster, ``cluster:legacy`` the rows kept
from before the history knew clusters, ``cluster:TEXT`` the clusters whose identity holds
TEXT (``cluster:6380``, ``cluster:/2``).  Pure Python: the store resolves the scope.
"""

from __future__ import annotations

#: The scope of a search without a ``cluster:`` term: the console's own cluster.
THIS_CLUSTER = ""
ALL_CLUSTERS = "all"


def split_cluster_term(text: str) -> tuple[str, str, list[str]]:
    """Take ``cluster:`` out of ``text``; returns ``(rest, scope, errors)``.

    ``scope`` is :data:`THIS_CLUSTER` (``""``), :data:`ALL_CLUSTERS` or the text to match;
    ``cluster:`` with no value is ignored (the operator is still typing); two different
    values are an error.
    """
    rest: list[str] = []
    scopes: list[str] = []
    for term in text.split():
        key, colon, value = term.partition(":")
        if colon and key.lower() == "cluster":
            value = value.strip().lower()
            if not value:
                continue  # the operator is still typing
            value = {"*": ALL_CLUSTERS, "this": THIS_CLUSTER}.get(value, value)
            if value not in scopes:
                scopes.append(value)
            continue
        rest.append(term)
    errors = []
    if len(scopes) > 1:
        errors.append(
            f"one cluster: term at a time (got {', '.join(repr(s or 'this') for s in scopes)})"
        )
    return " ".join(rest), scopes[0] if scopes else THIS_CLUSTER, errors


def describe_scope(scope: str, this: str) -> str:
    """``cluster redis://h:6379/0`` / ``every cluster`` / ``clusters matching '6380'``."""
    if scope == THIS_CLUSTER:
        return f"cluster {this}"
    if scope == ALL_CLUSTERS:
        return "every cluster"
    return f"clusters matching {scope!r}"
