"""Campaign spec: schema + YAML + overrides, and one clear ConfigError line for every user mistake."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from jobs.toyworld.world import UnknownConceptError as ToyUnknownConceptError
from erasecore.errors import CampaignError, ConfigError, UnknownConceptError
from orchestrator.preflight import preflight
from orchestrator.spec import STOP_KEYS, CampaignSpec, Search, load_spec, resolved_yaml, spec_hash

REPO = Path(__file__).resolve().parents[2]
CAMPAIGNS = sorted((REPO / "configs" / "campaigns").glob("*.yaml"))
MINIMAL = "name: demo\nconcepts: [star, square]\n"


@pytest.fixture
def campaign_file(tmp_path):
    def write(text: str = MINIMAL) -> str:
        path = tmp_path / "campaign.yaml"
        path.write_text(text)
        return str(path)
    return write


def test_minimal_file_gets_schema_defaults(campaign_file):
    spec = load_spec(campaign_file(), [])
    assert isinstance(spec, CampaignSpec)
    assert spec.concepts == ["star", "square"]
    assert (spec.model, spec.method, spec.ladder) == ("toyworld", "uce", ["esd-x", "esd-u"])
    assert spec.storage_path == "runs/demo"   # the ${name} interpolation is resolved
    assert spec.gate.min_forgetting == 0.9 and spec.retry.on_exhausted == "skip"
    assert spec.validation.seeds == 2


def test_spec_is_frozen_plain_dataclasses(campaign_file):
    spec = load_spec(campaign_file(), [])
    assert type(spec.concepts) is list and type(spec.hparams) is dict   # not omegaconf containers
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seed = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.gate.min_retain = 0.1


def test_overrides_win_over_the_file(campaign_file):
    spec = load_spec(campaign_file(), ["gate.min_forgetting=0.5", "concepts=[circle]",
                                       "hparams.uce.erase_scale=2.5", "storage_path=/tmp/x"])
    assert spec.gate.min_forgetting == 0.5
    assert spec.concepts == ["circle"]
    assert spec.hparams == {"uce": {"erase_scale": 2.5}}
    assert spec.storage_path == "/tmp/x"


def test_one_check_rule_is_set_and_the_others_keep_the_point_rule(campaign_file):
    spec = load_spec(campaign_file(), ["gate.rules.retain=certified"])
    assert spec.gate.rules == {"forgetting": "point", "retain": "certified", "leakage": "point", "drift": "point",
                               "cumulative": "point", "attack": "point"}


def test_no_file_only_overrides():
    spec = load_spec(None, ["name=solo", "concepts=[heart]"])
    assert (spec.name, spec.concepts, spec.storage_path) == ("solo", ["heart"], "runs/solo")


def test_real_model_skips_toy_concept_check(campaign_file):
    spec = load_spec(campaign_file(), ["model=CompVis/stable-diffusion-v1-4", "concepts=[car, van gogh]"])
    assert spec.concepts == ["car", "van gogh"]


BAD = [  # (file text or None for a missing file, overrides, words the one line must contain)
    (None, [], ["not found"]),
    ("name: demo\nconcepts: [star\n", [], ["YAML syntax error", ":3:"]),
    ("- star\n", [], ["must be a mapping"]),
    (MINIMAL + "colour: red\n", [], ["unknown key 'colour'", "concepts"]),
    (MINIMAL, ["gate.min_forget=0.5"], ["unknown key 'gate.min_forget'", "min_forgetting"]),
    (MINIMAL, ["seed=abc"], ["'seed'", "an integer"]),
    (MINIMAL, ["gate.max_drift=high"], ["'gate.max_drift'", "a number"]),
    (MINIMAL, ["gate.max_drift=1.5"], ["gate.max_drift must be between 0 and 1"]),
    (MINIMAL, ["gate.rules.retain=maybe"], ["gate.rules.retain must be one of point, certified"]),
    (MINIMAL, ["gate.rules.kl=point"], ["gate.rules: unknown check 'kl'", "drift"]),
    (MINIMAL, ["concepts=star"], ["'concepts'", "a list of strings"]),
    (MINIMAL, ["hparams.uce=3"], ["'hparams.uce'", "a mapping"]),
    (MINIMAL + "gate: 5\n", [], ["key 'gate' must be a mapping with keys", "min_forgetting"]),
    (MINIMAL, ["retry=3"], ["key 'retry' must be a mapping with keys", "on_exhausted"]),
    (MINIMAL, ["method=magic"], ["unknown method 'magic'", "uce, esd-x, esd-u"]),
    (MINIMAL, ["ladder=[esd-x,magic]"], ["ladder[1]", "unknown method 'magic'"]),
    (MINIMAL, ["hparams.magic.x=1"], ["hparams.magic", "unknown method"]),
    (MINIMAL, ["concepts=[]"], ["concepts is empty"]),
    (MINIMAL, ["concepts=[star,square,star]"], ["duplicate concepts: star"]),
    (MINIMAL, ["preserve=[square]"], ["both erased and preserved: square"]),
    (MINIMAL, ["retry.on_exhausted=retry"], ["retry.on_exhausted", "skip, halt", "'retry'"]),
    (MINIMAL, ["retry.max_attempts=0"], ["retry.max_attempts must be >= 1"]),
    (MINIMAL, ["tracking.mode=cloud"], ["tracking.mode", "offline, online, disabled"]),
    (MINIMAL, ["gate.min_retain=1.5"], ["gate.min_retain must be between 0 and 1"]),
    (MINIMAL, ["name=my campaign"], ["name 'my campaign'"]),
    (MINIMAL, ["storage_path=${nowhere}"], ["'storage_path'", "interpolation"]),
    (MINIMAL, ["retry.max_attempts"], ["not of the form key=value"]),
    (MINIMAL, ["resources.frozen_precision=half"], ["resources.frozen_precision must be one of", "'half'"]),
    (MINIMAL, ["model_source=cloud"], ["model_source must be one of local, workers", "'cloud'"]),
    (MINIMAL, ["concepts=[star,"], ["cannot parse override"]),
    ("concepts: [star]\n", [], ["missing required key 'name'"]),
    ("name: demo\n", [], ["missing required key 'concepts'"]),
]


@pytest.mark.parametrize("text,overrides,words", BAD, ids=[" ".join(c[1]) or (c[0] or "missing")[:24] for c in BAD])
def test_user_mistakes_are_one_clear_line(campaign_file, tmp_path, text, overrides, words):
    path = campaign_file(text) if text is not None else str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as err:
        load_spec(path, overrides)
    message = str(err.value)
    assert "\n" not in message and message.strip() == message
    for word in words:
        assert word in message


def test_unreadable_file_is_one_line(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="cannot read campaign file"):
        load_spec(str(path), [])


def test_unknown_toy_concept_lists_the_known_ones(campaign_file):
    with pytest.raises(UnknownConceptError) as err:
        preflight(load_spec(campaign_file(), ["concepts=[star,unicorn]"]), run=False)
    assert "'unicorn'" in str(err.value) and "diamond" in str(err.value) and "\n" not in str(err.value)
    # One except clause catches it in the CLI; the toy world's own type still matches.
    assert isinstance(err.value, CampaignError) and isinstance(err.value, ToyUnknownConceptError)


def test_unknown_preserve_concept_is_refused(campaign_file):
    with pytest.raises(UnknownConceptError, match="'ghost'"):
        preflight(load_spec(campaign_file(), ["preserve=[ghost]"]), run=False)


def test_resolved_yaml_round_trips(campaign_file, tmp_path):
    spec = load_spec(campaign_file(), ["hparams.esd-x.eta=2.0", "retry.on_exhausted=halt"])
    snapshot = tmp_path / "snapshot.yaml"
    snapshot.write_text(resolved_yaml(spec))
    again = load_spec(str(snapshot), [])
    assert again == spec
    assert spec_hash(again) == spec_hash(spec)


def test_spec_hash_tracks_results_not_operations(campaign_file):
    base = spec_hash(load_spec(campaign_file(), []))
    assert len(base) == 64
    assert spec_hash(load_spec(campaign_file(), ["concepts=[square,star]"])) != base
    assert spec_hash(load_spec(campaign_file(), ["gate.min_retain=0.9"])) != base
    # Where and how it runs may change on resume without invalidating the journal.
    for op in ["tracking.mode=disabled", "resources.gpus_per_step=1", "storage_path=/elsewhere"]:
        assert spec_hash(load_spec(campaign_file(), [op])) == base


# configs/campaigns/toy.yaml's hash, without its search, as every journal of it records it: a new field must hash
# only when set.
TOY_HASH = "fd45251f483d99918e93d513ca94c9367e3ce0fef4de4af28096e0183713f1ee"


def test_a_snapshot_spelling_the_thresholds_in_its_validation_section_loads_with_its_hash(tmp_path):
    spec = dataclasses.replace(load_spec(str(REPO / "configs" / "campaigns" / "toy.yaml"), []), search=Search())
    assert spec_hash(spec) == TOY_HASH
    stops = "".join(f"  {k}: {v}\n" for k, v in STOP_KEYS.items())
    snapshot = tmp_path / "spec.yaml"
    snapshot.write_text(resolved_yaml(spec).replace("validation:\n", "validation:\n" + stops, 1))
    assert "stop_retain: 0.95" in snapshot.read_text()
    assert load_spec(str(snapshot), []) == spec and spec_hash(load_spec(str(snapshot), [])) == TOY_HASH


def test_the_thresholds_are_set_in_the_gate_section_only(campaign_file):
    with pytest.raises(ConfigError, match="validation.limits is set from the gate section"):
        load_spec(campaign_file(), ["validation.limits.min_retain=0.5"])


@pytest.mark.parametrize("path", CAMPAIGNS, ids=[p.name for p in CAMPAIGNS])
def test_every_shipped_campaign_loads(path):
    spec = load_spec(str(path), [])
    assert spec.concepts
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert path.read_text().startswith("#") and any("erase " in line for line in header)   # how to run it


def test_shipped_campaigns_exist():
    names = {p.name for p in CAMPAIGNS}
    assert {"toy.yaml", "sd14-objects.yaml"} <= names


def test_toy_campaign_is_the_documented_default():
    spec = load_spec(str(REPO / "configs/campaigns/toy.yaml"), [])
    assert (spec.name, spec.model, spec.method, spec.storage_path) == ("toy", "toyworld", "uce", "runs/toy")
    assert spec.ladder == ["esd-x", "esd-u"] and spec.validation.seeds == 2
    assert "square" in spec.concepts and "round" in spec.concepts   # a close neighbour, a superclass


@pytest.mark.parametrize("override, words", [
    ("hparams.uce.no_such_knob=1", ["hparams.uce", "no_such_knob", "erase_scale"]),
    ("hparams.esd-x.steps=ten", ["hparams.esd-x.steps", "an integer"]),
    ("hparams.lora.retain_target=nothing", ["hparams.lora.retain_target", "frozen, noise"]),
    ("hparams.ca.lr=0", ["hparams.ca.lr", "> 0"]),
    ("hparams.fmn.mixed_precision=fp8", ["hparams.fmn.mixed_precision", "no, fp16, bf16"]),
])
def test_a_mistyped_hyperparameter_is_refused_before_anything_runs(campaign_file, override, words):
    from erasecore.errors import MethodConfigError

    with pytest.raises(MethodConfigError) as err:
        preflight(load_spec(campaign_file(), [override]), run=False)
    for word in words:
        assert word in str(err.value)
    assert "\n" not in str(err.value)


def test_the_catalog_resolves_what_the_methods_ran_with_before_it_existed():
    """The defaults the method files held (the toy campaign's deltas keep their sha256 only if these hold)."""
    from erasecore import catalog

    # "rows", "anchor" and "variant" name the behaviour the files had (the published variants switch them).
    assert catalog.get("uce").resolve({}) == {"lam": 0.5, "erase_scale": 1.0, "preserve_scale": 1.0,
                                              "projections": ["to_k", "to_v"], "rows": "from_concept",
                                              "variant": "tuned"}
    off = {"drift_l2": 0.0, "drift_l1": 0.0}   # the pull toward the base weights, off (jobs/training/drift_penalty.py)
    esd = {"eta": 1.0, "steps": 150, "lr": 5e-4, "batch": 16, "preserve_weight": 1.0, "grad_accum": 1,
           "mixed_precision": "no", "anchor": "without_concept", "variant": "tuned", **off}
    assert catalog.get("esd-x").resolve({}) == esd
    assert catalog.get("esd-u").resolve({}) == {**esd, "lr": 1e-3}
    assert catalog.get("fmn").resolve({}) == {"steps": 35, "lr": 2e-3, "batch": 8, "grad_accum": 1,
                                              "mixed_precision": "no", **off}
    assert catalog.get("ca").resolve({"steps": 10}) == {"steps": 10, "lr": 2e-3, "batch": 16, "preserve_weight": 1.0,
                                                        "grad_accum": 1, "mixed_precision": "no", **off}
    assert catalog.get("lora").resolve({}) == {"rank": 8, "alpha": 16, "steps": 200, "lr": 1e-3, "batch": 16,
                                               "suppress_weight": 1.0, "retain_target": "frozen",
                                               "target_modules": ["to_q", "to_k", "to_v"], "grad_accum": 1,
                                               "mixed_precision": "no", **off}


def test_model_source_says_where_a_hub_ids_weights_come_from(tmp_path, monkeypatch):
    from erasecore.errors import ModelNotCachedError

    sd14 = str(REPO / "configs" / "campaigns" / "sd14-nudity.yaml")
    at = [f"storage_path={tmp_path / 'runs'}"]
    assert load_spec(sd14, at).model_source == "local"
    # Operational: a journal resumes with the workers fetching the model instead.
    assert spec_hash(load_spec(sd14, [*at, "model_source=workers"])) == spec_hash(load_spec(sd14, at))
    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    with pytest.raises(ModelNotCachedError, match=r"'CompVis/stable-diffusion-v1-4' is not in the local Hugging "
                                                  r"Face cache \(.*hub\); download it first .*model_source: workers"):
        preflight(load_spec(sd14, at))
    assert preflight(load_spec(sd14, [*at, "model_source=workers"])).spec.model_source == "workers"
    # In the cache (refs/main names the snapshot): configs alone are refused for a run, the weights pass.
    repo = hub / "models--CompVis--stable-diffusion-v1-4"
    snapshot = repo / "snapshots" / "abc123"
    (snapshot / "unet").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (snapshot / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline", '
                                               '"unet": ["diffusers", "UNet2DConditionModel"], '
                                               '"safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"]}')
    (snapshot / "unet" / "config.json").write_text("{}")
    with pytest.raises(ModelNotCachedError, match="without the weights of unet"):
        preflight(load_spec(sd14, at))
    (snapshot / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    assert preflight(load_spec(sd14, at)).family == "sd"
