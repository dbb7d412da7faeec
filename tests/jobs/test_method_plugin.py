"""Methods are plugins: the catalog reads the entry-point group concept_erase.methods, the shipped nine included.

A third-party method is a distribution that declares an entry point naming a MethodEntry (pure data, its worker
a "module:function" string). The tests lay one out in a temporary directory (a module and its `.dist-info`
with METADATA and entry_points.txt: what `pip install` would leave, and what importlib.metadata finds on
sys.path) and use it in a subprocess, so this process's catalog, cached on first use, never sees it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

from erasecore import catalog

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("uce", "esd-x", "esd-u", "fmn", "ca", "lora", "rece", "spm", "mace", "speed")

# The plugin's catalog entry: pure (no torch), as the orchestrator reads it at config time.
ENTRY = '''
import dataclasses

from erasecore.catalog import MethodEntry, Param

SCALE_KV = MethodEntry(
    "scale-kv", "scale_kv.worker:erase",
    "Scale the first cross-attention K projection: K' = (1 - amount) K (a third-party test method)",
    (Param("amount", float, 0.1, "the share of the K projection removed", positive=True),),
    strength="amount", closed_form=True, graph_forwards=0)

# What the broken distribution points at.
NOT_AN_ENTRY = {"name": "not-an-entry"}
FAKE_UCE = dataclasses.replace(SCALE_KV, name="uce")
BAD_WORKER = dataclasses.replace(SCALE_KV, name="bad-worker", entry="scale_kv.nowhere:erase")
'''
# Its worker: erase(pipe, inputs) -> MethodOutput, a dense difference, as the shipped closed forms return.
WORKER = '''
from jobs.methods.interface import MethodOutput
from jobs.models.targets import cross_attention_modules, denoiser


def erase(pipe, inputs):
    comp, net = denoiser(pipe)
    name, attention = sorted(cross_attention_modules(net).items())[0]
    weight = attention.to_k.weight.detach()
    change = -inputs.hparams["amount"] * weight
    return MethodOutput("dense", {f"{comp}.{name}.to_k.weight": change.clone()}, stats={"scaled": 1.0})
'''
BROKEN = {   # entry point -> what is wrong with it
    "ghost": "no_such_module:GHOST",          # its module does not import
    "not-an-entry": "scale_kv:NOT_AN_ENTRY",  # not a MethodEntry
    "uce": "scale_kv:FAKE_UCE",               # claims a shipped method's name
    "bad-worker": "scale_kv:BAD_WORKER",      # loads, but its worker module does not exist
}


def _distribution(site: Path, name: str, entries: dict[str, str]) -> None:
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entries.items())
    (info / "entry_points.txt").write_text(f"[{catalog.GROUP}]\n{lines}")


def _site(tmp_path: Path, broken: bool = False) -> Path:
    site = tmp_path / "site"
    (site / "scale_kv").mkdir(parents=True)
    (site / "scale_kv" / "__init__.py").write_text(ENTRY)
    (site / "scale_kv" / "worker.py").write_text(WORKER)
    _distribution(site, "scale-kv", {"scale-kv": "scale_kv:SCALE_KV"})
    if broken:
        _distribution(site, "broken-methods", BROKEN)
    return site


def _run(site: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_the_entry_point_group_names_exactly_the_shipped_methods():
    own = [ep for ep in entry_points(group=catalog.GROUP) if ep.dist and ep.dist.name == catalog.DISTRIBUTION]
    assert sorted(ep.name for ep in own) == sorted(SHIPPED)
    for ep in own:   # each resolves to the catalog's own entry object
        assert ep.load() is catalog.get(ep.name) and ep.value.startswith("erasecore.catalog:")
    assert catalog.METHOD_NAMES == SHIPPED == tuple(m.name for m in catalog.SHIPPED)
    assert catalog.METHODS == catalog.SHIPPED and list(catalog.CATALOG) == list(SHIPPED)


def test_missing_shipped_entry_points_fall_back_to_the_built_in_entries_with_one_warning(monkeypatch, caplog):
    # An install whose metadata predates the entry points (reinstall: pip install -e .) keeps working.
    monkeypatch.setattr(catalog, "entry_points", lambda group: [])
    catalog._load.cache_clear()
    try:
        assert catalog.METHOD_NAMES == SHIPPED and catalog.get("uce") is catalog.UCE
    finally:
        monkeypatch.undo()
        catalog._load.cache_clear()
    expected = (f"warning: the entry-point group {catalog.GROUP} lacks the shipped method(s) {', '.join(SHIPPED)} "
                f"(the installed metadata of {catalog.DISTRIBUTION} predates them): using the built-in entries; "
                f"reinstall (pip install -e .)")
    assert [r.getMessage() for r in caplog.records if "lacks the shipped" in r.getMessage()] == [expected]
    assert catalog.METHOD_NAMES == SHIPPED


def test_a_third_party_method_is_listed_settled_by_preflight_and_runs_a_step(tmp_path):
    site = _site(tmp_path)
    proc = _run(site, """
        import json, sys
        from erasecore import catalog
        from orchestrator.campaign import RunAttempt, step_request
        from orchestrator.preflight import preflight
        from orchestrator.spec import load_spec

        root, storage = sys.argv[1], sys.argv[2]
        names = catalog.METHOD_NAMES
        torch_before = "torch" in sys.modules
        spec = load_spec(f"{root}/configs/campaigns/toy.yaml",
                         ["method=scale-kv", "ladder=[]", "search.candidates=[]", "hparams.scale-kv.amount=0.2",
                          f"storage_path={storage}"])
        settled = preflight(spec)
        request = step_request(RunAttempt(1, "star", 1, "scale-kv", settled.hparams["scale-kv"], (), ()), settled)

        from jobs.deltas.delta import load_delta
        from jobs.models.loader import load_pipeline
        from jobs.step import run_erase
        ref = run_erase(request, log=lambda *a: None)
        tensors, meta = load_delta(ref.path, ref.sha256)
        base = dict(load_pipeline("toyworld").unet.named_parameters())
        (key, change), = tensors.items()
        weight = base[key.removeprefix("unet.")].detach()
        print(json.dumps({"names": names, "torch_before": torch_before, "hparams": settled.hparams,
                          "method": meta.method, "config": meta.config, "key": key,
                          "error": float((change + 0.2 * weight).abs().max()), "norm": float(change.norm())}))
    """, str(ROOT), str(tmp_path / "runs"))
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["names"] == [*SHIPPED, "scale-kv"]            # the shipped order first, then the plugin
    assert not got["torch_before"]                             # reading the catalog imported no torch
    assert got["hparams"] == {"scale-kv": {"amount": 0.2}}     # preflight settled it over the plugin's defaults
    assert got["method"] == "scale-kv" and got["config"] == {"amount": 0.2}   # the delta's header names it
    assert ".attn2.to_k.weight" in got["key"] and got["error"] < 1e-6 and got["norm"] > 0
    assert not [line for line in proc.stderr.splitlines() if line.startswith("warning:")], proc.stderr


def test_broken_plugins_are_one_line_each_and_spare_the_shipped_methods_and_the_good_plugin(tmp_path):
    site = _site(tmp_path, broken=True)
    proc = _run(site, """
        import json
        from erasecore import catalog
        from erasecore.errors import ConfigError, MethodPluginError
        from orchestrator.spec import load_spec

        out = {"names": catalog.METHOD_NAMES, "uce": catalog.get("uce") is catalog.UCE}
        for name in ("ghost", "not-an-entry"):
            try:
                catalog.get(name)
            except MethodPluginError as e:
                out[name] = str(e)
        try:   # a campaign naming a skipped plugin is refused at config time, after the warning line
            load_spec(None, ["name=c", "concepts=[star]", "method=ghost"])
        except ConfigError as e:
            out["campaign"] = str(e)
        from jobs.methods import registry
        try:
            registry.implementation(catalog.get("bad-worker"))
        except MethodPluginError as e:
            out["bad-worker"] = str(e)
        print(json.dumps(out))
    """)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["names"] == [*SHIPPED, "bad-worker", "scale-kv"] and got["uce"]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3 and "Traceback" not in proc.stderr, proc.stderr   # ghost, not-an-entry, uce
    for name, why in (("ghost", "ModuleNotFoundError"), ("not-an-entry", "not an erasecore.catalog"),
                      ("uce", "the name is a shipped method's")):
        line, = (w for w in warnings if f"method plugin {name!r}" in w)
        assert "distribution broken-methods" in line and BROKEN[name] in line and why in line, line
    assert "distribution broken-methods" in got["ghost"] and "no_such_module" in got["ghost"]
    assert "MethodEntry" in got["not-an-entry"]
    assert "unknown method 'ghost'" in got["campaign"]
    assert got["bad-worker"].startswith("method 'bad-worker': its worker 'scale_kv.nowhere:erase' cannot be imported")
