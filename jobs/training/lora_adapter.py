"""A peft LoRA adapter on the denoiser for methods whose artifact is LoRA factors (trained through lora_finetune.py).

The adapter is switchable: with it disabled the network is the frozen model, so targets need no
frozen copy. `factors` turns the trained adapter weights into delta keys; `detach` removes the
wrappers so the pipeline is left as it was.
"""
from __future__ import annotations

import torch

ADAPTER = "erase"


def attach(net, rank: int, alpha: float, targets: list[str], init="gaussian") -> dict[str, torch.nn.Parameter]:
    """Add the adapter on the `targets` modules (peft's suffix rule); returns its parameters by name."""
    from peft import LoraConfig

    net.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=init, target_modules=list(targets)),
                    adapter_name=ADAPTER)
    return {n: p for n, p in net.named_parameters() if ".lora_" in n}


def detach(net) -> None:
    """Remove the peft wrappers: the network is as it was before attach."""
    net.unload_lora()


def factors(trained: dict[str, torch.Tensor], component: str) -> dict[str, torch.Tensor]:
    """LoRA A/B weights under delta keys: '<component>.<module>.lora_A.weight'."""
    out = {}
    for name, value in trained.items():
        module, _, rest = name.partition(".lora_")
        out[f"{component}.{module}.lora_{rest.split('.')[0]}.weight"] = value
    return out
