"""One source of settings for every way a run starts: a YAML file in the data root.

Runs start from the web UI, the landing sensor, the retraining schedule, automation, ``dagster asset
materialize``, ``dg launch`` and ``rec-pipeline demo``. Run config reaches only the run it is given to, so a
setting given once (a lower k, offline CNN weights, smaller models) used to be lost on the next sensor launch.
Every asset therefore resolves its settings per category, in this order (later wins):

1. the defaults written on the asset's ``Config`` class (the one place a setting is defined and documented);
2. ``ops: <asset>: config:`` in ``<data root>/settings.yaml`` (or ``$REC_PIPELINE_SETTINGS``);
3. ``categories: <Category>: ops: <asset>: config:`` in the same file, for one category only;
4. whatever the run's own config sets explicitly (launchpad, ``--config`` file, a job's ``config=``).

The file has the shape of Dagster run config, so a ``--config`` file and the settings file read alike. A
``preset:`` names a shipped settings file (``rec_pipeline/presets/<name>.yaml``, e.g. the protocols of the
projects rec_pipeline grew from) that applies below the file's own values::

    preset: seed001
    ops:
      word2vec_model: {config: {vector_size: 32}}
    categories:
      Appliances:
        ops:
          interactions: {config: {k: 2}}

This module knows nothing of Dagster: it loads, validates and merges plain mappings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SETTINGS_FILE_NAME = "settings.yaml"
SETTINGS_ENV = "REC_PIPELINE_SETTINGS"

Source = str  # "default", "settings file", "settings file (category)", "run config"


class SettingsError(ValueError):
    """The settings file cannot be used; the message names the file and the offending key."""


@dataclass(frozen=True)
class Settings:
    """The parsed settings file: per-asset config, and per-category overrides of it."""

    path: Path | None = None
    ops: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    preset: str | None = None
    categories: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)

    def for_op(self, op: str, category: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """(file-wide values, category values) given for ``op``."""
        file_wide = dict(self.ops.get(op, {}))
        per_category = dict(self.categories.get(category, {}).get(op, {})) if category else {}
        return file_wide, per_category

    def ops_named(self) -> set[str]:
        return set(self.ops) | {op for ops in self.categories.values() for op in ops}


def settings_path(data_root: Path) -> Path:
    """``$REC_PIPELINE_SETTINGS`` when set, else ``<data root>/settings.yaml``."""
    explicit = os.environ.get(SETTINGS_ENV)
    return Path(explicit).expanduser().resolve() if explicit else data_root / SETTINGS_FILE_NAME


def _op_block(block: Any, where: str, path: Path) -> dict[str, dict[str, Any]]:
    if block is None:
        return {}
    if not isinstance(block, Mapping):
        raise SettingsError(f"{path}: `{where}` must be a mapping of asset names, got {type(block).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for op, entry in block.items():
        if entry is None:
            continue
        if not isinstance(entry, Mapping) or set(entry) - {"config"}:
            raise SettingsError(
                f"{path}: `{where}.{op}` must hold only `config: {{...}}` (the shape of Dagster run config)"
            )
        config = entry.get("config") or {}
        if not isinstance(config, Mapping):
            raise SettingsError(f"{path}: `{where}.{op}.config` must be a mapping of setting names to values")
        out[str(op)] = dict(config)
    return out


def parse_settings(document: Any, path: Path) -> Settings:
    """Validate the document's shape (not the setting names: those belong to each asset's Config)."""
    if document is None:
        return Settings(path=path)
    if not isinstance(document, Mapping):
        raise SettingsError(
            f"{path}: expected a mapping with `ops:` and/or `categories:`, got {type(document).__name__}"
        )
    unknown = set(document) - {"ops", "categories", "preset"}
    if unknown:
        raise SettingsError(f"{path}: unknown top-level keys {sorted(unknown)}; allowed: preset, ops, categories")
    categories_block = document.get("categories") or {}
    if not isinstance(categories_block, Mapping):
        raise SettingsError(f"{path}: `categories` must map category names to `ops:` blocks")
    categories: dict[str, dict[str, dict[str, Any]]] = {}
    for category, block in categories_block.items():
        if block is None:
            continue
        if not isinstance(block, Mapping) or set(block) - {"ops"}:
            raise SettingsError(f"{path}: `categories.{category}` must hold only an `ops:` block")
        categories[str(category)] = _op_block(block.get("ops"), f"categories.{category}.ops", path)
    ops = _op_block(document.get("ops"), "ops", path)
    preset = document.get("preset")
    if preset is not None:
        base = load_preset(str(preset), path)
        ops = {op: {**base.ops.get(op, {}), **ops.get(op, {})} for op in set(base.ops) | set(ops)}
        categories = {
            c: {
                op: {**base.categories.get(c, {}).get(op, {}), **categories.get(c, {}).get(op, {})}
                for op in set(base.categories.get(c, {})) | set(categories.get(c, {}))
            }
            for c in set(base.categories) | set(categories)
        }
    return Settings(path=path, ops=ops, categories=categories, preset=str(preset) if preset is not None else None)


PRESETS_DIR = Path(__file__).resolve().parent / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_preset(name: str, referenced_from: Path | None = None) -> Settings:
    """A shipped settings file by name; an unknown name is refused with the list of known ones."""
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file() or "/" in name:
        where = f"{referenced_from}: " if referenced_from else ""
        raise SettingsError(f"{where}unknown preset {name!r}; presets: {', '.join(preset_names()) or 'none'}")
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(document, Mapping) and "preset" in document:
        raise SettingsError(f"{path}: a preset cannot name another preset")
    return parse_settings(document, path)


def load_settings(path: Path) -> Settings:
    """Read the settings file; a missing file means built-in defaults (an empty ``Settings``)."""
    if not path.exists():
        return Settings(path=None)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from exc
    return parse_settings(document, path)


def merge_config(
    defaults: Mapping[str, Any],
    settings: Settings,
    op: str,
    category: str | None,
    explicit: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Source]]:
    """The effective values for one asset and category, and where each non-default value came from.

    Raises SettingsError for a name the asset does not have, so a typo in the file is never silently ignored.
    """
    file_wide, per_category = settings.for_op(op, category)
    merged = dict(defaults)
    sources: dict[str, Source] = {}
    layers = (("settings file", file_wide), (f"settings file ({category})", per_category), ("run config", explicit))
    for source, layer in layers:
        for name, value in layer.items():
            if name not in defaults:
                where = f"{settings.path}" if source.startswith("settings") else "run config"
                raise SettingsError(
                    f"{where}: `{op}` has no setting {name!r}; its settings are: {', '.join(sorted(defaults))}"
                )
            merged[name] = value
            if value != defaults[name] or source == "run config":
                sources[name] = source
            else:
                sources.pop(name, None)
    return merged, sources


def dump_settings(document: Mapping[str, Any]) -> str:
    """YAML text for a settings document (used by ``rec-pipeline demo`` to write the demo's settings)."""
    return yaml.safe_dump(dict(document), sort_keys=False, default_flow_style=False)
