"""Remote servers the person added (Models > Add server…): OpenAI-compatible servers whose models the
window uses like its own, and the names those models go by here, "gpt2-xl @ http://gpu-box:8000/v1"."""

from __future__ import annotations

SEP = " @ "


def remote_name(model: str, url: str) -> str:
    return f"{model}{SEP}{url}"


def parse_remote(name: str | None) -> tuple[str, str] | None:
    """(model, server address) for a remote model's name; None for a local one."""
    if not name or SEP not in name:
        return None
    model, _, url = name.rpartition(SEP)
    return (model, url) if url.startswith(("http://", "https://")) and model else None


def clean_servers(value) -> dict[str, dict]:
    """The `servers` setting as it should be, {address: {"key": str, "models": [id, ...]}}; anything else dropped."""
    if not isinstance(value, dict):
        return {}
    out = {}
    for url, entry in value.items():
        if not isinstance(url, str) or not url.startswith(("http://", "https://")) or not isinstance(entry, dict):
            continue
        key = entry.get("key") if isinstance(entry.get("key"), str) else ""
        models = [m for m in entry.get("models", []) if isinstance(m, str)] if isinstance(entry.get("models"), list) else []
        out[url] = {"key": key, "models": models}
    return out
