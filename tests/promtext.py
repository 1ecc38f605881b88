"""Read exposition text back with prometheus_client's parser, so tests check real output."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: bytes | str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample as {(name, labels): value}; parsing fails on malformed exposition."""
    if isinstance(text, bytes):
        text = text.decode()
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def value(text: bytes | str, metric: str, /, **labels: str) -> float | None:
    """The value of the one series with exactly these labels, or None when absent."""
    return samples(text).get((metric, frozenset(labels.items())))


def series(text: bytes | str, metric: str, /, **labels: str) -> list[dict[str, str]]:
    """Label sets of every series of `metric` whose labels include `labels`."""
    return [dict(lbls) for (n, lbls), _ in samples(text).items()
            if n == metric and set(labels.items()) <= set(lbls)]
