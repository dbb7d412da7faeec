"""The toy pipeline's components, built with fresh weights (StableDiffusionPipeline layout)."""
from __future__ import annotations

from dataclasses import dataclass

from jobs.toyworld.tokenizer import MAX_LENGTH


@dataclass(frozen=True)
class ToyArchitecture:
    text_width: int = 64
    text_layers: int = 2
    unet_channels: tuple[int, int] = (64, 128)
    attention_head_dim: int = 8
    vae_channels: tuple[int, int, int] = (32, 64, 64)
    latent_channels: int = 4


def build_text_encoder(arch: ToyArchitecture, vocab_size: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(vocab_size=vocab_size, hidden_size=arch.text_width,
                         intermediate_size=arch.text_width * 2, num_hidden_layers=arch.text_layers,
                         num_attention_heads=4, max_position_embeddings=MAX_LENGTH,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1, projection_dim=arch.text_width)
    return CLIPTextModel(cfg)


def build_unet(arch: ToyArchitecture):
    """Cross-attention at 8x8 and 4x4 latents only: attention at pixel scale is ~45x slower."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8, in_channels=arch.latent_channels, out_channels=arch.latent_channels,
        block_out_channels=arch.unet_channels, layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=arch.text_width, attention_head_dim=arch.attention_head_dim,
        norm_num_groups=16)


def build_vae(arch: ToyArchitecture):
    """Three blocks: 32x32 pixels -> 8x8 latents."""
    from diffusers import AutoencoderKL

    n = len(arch.vae_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=arch.latent_channels,
                         block_out_channels=arch.vae_channels, layers_per_block=1,
                         down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, norm_num_groups=16, sample_size=32)


def build_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                         prediction_type="epsilon")
