"""The serving bundle of a campaign: its per-concept adapters and guard.json, made once and reused.

    bundle = prepare_bundle("runs/toy", spec)            # <storage_path>/exports/<campaign>-step<k>-lora-per-concept
    bundle = prepare_bundle("runs/toy", spec, adapters=Path("my/export"))   # an export made earlier

The adapters are `erase export --format lora --per-concept`'s (orchestrator/outputs/adapters.py); an existing
export is reused when its adapters.json carries exactly the committed deltas, and made at the default place
otherwise. guard.json (erasecore/serving.py) is written beside adapters.json from the journal each time, so it
always matches the commits it names.
"""
from __future__ import annotations

import json
from pathlib import Path

from erasecore.errors import ConfigError
from erasecore.serving import write_guard_spec
from orchestrator.guard import committed, guard_spec
from orchestrator.manifest import Manifest
from orchestrator.outputs.adapters import LISTING
from orchestrator.outputs.export import default_out, export_campaign, plan_export
from orchestrator.spec import CampaignSpec


def prepare_bundle(storage_path: str | Path, spec: CampaignSpec, adapters: Path | None = None) -> Path:
    """The directory of the campaign's per-concept adapters, with guard.json written in it."""
    manifest = Manifest.open(storage_path)
    committed(manifest)   # nothing committed: one line before anything is exported
    if adapters is not None:
        if not (Path(adapters) / LISTING).is_file():
            raise ConfigError(f"--adapters {adapters}: no {LISTING} there (erase export --format lora --per-concept)")
        bundle = Path(adapters)
    else:
        bundle = default_out(storage_path, "lora-per-concept", plan_export(storage_path))
        if not (bundle / LISTING).is_file():
            export_campaign(storage_path, "lora", out=bundle, per_concept=True)
    listing = json.loads((bundle / LISTING).read_text(encoding="utf-8"))["adapters"]
    write_guard_spec(bundle, guard_spec(manifest, spec, listing))
    return bundle
