"""Print the README's settings table from the Settings model (so the two never drift)."""

from __future__ import annotations

from pydantic import BaseModel

from destatic.settings import Settings


def settings_table() -> str:
    """Markdown table: setting, environment variable, default, meaning."""
    lines = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for group, group_field in Settings.model_fields.items():
        model: type[BaseModel] = group_field.annotation  # type: ignore[assignment]
        for name, field in model.model_fields.items():
            default = field.default
            shown = "none" if default is None else str(default)
            env = f"DESTATIC_{group.upper()}__{name.upper()}"
            lines.append(f"| `{group}.{name}` | `{env}` | `{shown}` | {field.description} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_table())
