"""The configuration's sections: one dataclass per section, the root :class:`Config`, and the ViT size table."""

from __future__ import annotations

from dataclasses import dataclass, field


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names the key."""


@dataclass
class ModelConfig:
    size: str = "base"  # tiny | small | base | large | huge (ViT widths and depths)
    img_size: int = 224  # input height = width
    num_frames: int = 16  # frames per clip
    patch_size: int = 16  # spatial patch
    tubelet_size: int = 2  # frames per tubelet token
    pos_embed: str = (
        "sincos"  # sincos: fixed 1-D table (VideoMAE) | separable: learned space + time (SpatioTemporalMAE)
    )
    embed_dim: int = 384  # width of g_u / g_f and of the decoder
    decoder_depth: int = 4
    decoder_heads: int = 6
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path: float = 0.0  # stochastic depth of the encoders
    grad_checkpointing: bool = False  # recompute encoder blocks in backward to save memory
    # sdpa: PyTorch's fused attention (cuDNN on Hopper) | fa4: the decoder's attention through FlashAttention-4's
    # kernels (CUDA, bf16; pip install 'crossvideomae[fa4]'; ~1.6x faster there, see docs/PERFORMANCE.md)
    decoder_attention: str = "sdpa"
    # none: the contrastive terms compare pooled g_u / g_f embeddings directly (the paper) | mlp: through a
    # SimCLR-style head (Linear-GELU-Linear) per branch, so their invariances land on the head, not on g_u
    contrastive_head: str = "none"
    # Explicit overrides of the size table (0 = take from `size`).
    width: int = 0
    depth: int = 0
    heads: int = 0


@dataclass
class MaskConfig:
    video_ratio: float = 0.95  # share of hidden tubelet tokens, per view
    image_ratio: float = 0.90  # share of hidden image patches
    video_type: str = "random"  # random | tube | frame
    image_type: str = "random"  # random (the only type that makes sense for one image)


@dataclass
class LossConfig:
    tau: float = 0.1  # NT-Xent temperature
    lambda_c: float = 1.0  # weight of L_intra + L_cross
    lambda_rl: float = 1.0  # weight of the reconstruction loss
    lambda_mse: float = 1.0  # weight of the decoder-embedding MSE between views
    intra: bool = True  # L_intra on/off
    cross: bool = True  # L_cross on/off
    video_level: bool = True  # video-level contrastive terms on/off
    frame_level: bool = True  # frame-level contrastive terms on/off
    rl: bool = True  # reconstruction term on/off
    mse: bool = True  # decoder-embedding MSE on/off
    norm_pix: str = "patch"  # patch (MAE) | channel (VideoMAE per-channel) | none
    global_negatives: bool = True  # under DDP, negatives from the whole global batch


@dataclass
class DataConfig:
    # files: videos from data.train_list / data.frame_shards | synthetic: two random batches made on the device
    # and reused (bench's inputs; for timing pretrain against bench, docs/PERFORMANCE.md)
    source: str = "files"
    train_list: str = ""  # list file (`path label`), class-per-folder root, or presampled index
    val_list: str = ""
    root: str = ""  # prefix for relative paths in list files
    frame_stride: int = 4  # 4 for Kinetics, 2 for SSv2
    short_side: int = 256  # view-1 short-side scale before the crop
    crop_scale: tuple[float, float] = (0.4, 1.0)  # RandomResizedCrop area range of the video views
    image_crop_scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop area range of the image input
    flip: bool = True  # horizontal flips (off for SSv2-like data: direction is the label)
    num_sampled_frames: int = 1  # n frames per clip for the image branch
    frame_strategy: str = "random"  # random | first | middle
    presampled: str = ""  # index of a pre-sampled frame dataset (crossvideomae sample-frames)
    image_source: str = ""  # optional folder of unrelated images for the image branch
    repeated_sampling: int = 1  # clips (and views) drawn per decoded video
    # cpu: loader workers decode and augment | device: workers only decode, the training step augments the
    # uint8 batch on the model's device (crossvideomae.data.device_augment; docs/DATA.md)
    augment: str = "cpu"
    # with data.augment=device on a GPU: view 2's per-pixel colour ops and the outputs' flip / normalisation as
    # compiled kernels (torch.compile), one fused kernel each instead of chains of float32 intermediates; within
    # one grey level of torchvision. Off by default: its speed on a GPU is not measured yet (docs/DATA.md)
    augment_compile: bool = False
    frame_shards: str = ""  # a frame-shard index.csv (sample-frames --shards), read instead of train_list
    # worker: shard JPEGs decoded in the loader workers | device: handed over as bytes and decoded in batches on
    # the training device (nvjpeg on CUDA; needs data.augment=device)
    shard_decode: str = "worker"
    # copy the next batch to the device and run its device augmentation on a side CUDA stream while the current
    # step runs (crossvideomae.engine.prefetch); false: each batch when its step starts
    prefetch: bool = True
    # with prefetch: prepare it on a thread of its own, so the host launches the step meanwhile (measured: no
    # shorter step, the preparation holds the GIL; docs/PERFORMANCE.md)
    prefetch_thread: bool = False
    # none | memory: decode every video once when the dataset is built and keep its frames in RAM
    # (crossvideomae.data.cache; for sets that fit, e.g. the learning benchmark's 0.8 GB)
    cache: str = "none"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    batch_size: int = 32  # per process
    num_workers: int = 8
    backend: str = "pyav"  # pyav | torchcodec
    decode_threads: int = (
        1  # FFmpeg threads per open file (0 = one per core); workers already run in parallel
    )
    max_bad_fraction: float = 0.01  # stop when more than this share of videos failed to decode


@dataclass
class AugConfig:
    randaugment: str = "rand-m9-n2-mstd0.5"  # timm RandAugment spec for view 2 ("" = off)
    color_jitter: float = 0.4  # view-2 brightness/contrast/saturation strength (0 = off)
    hue: float = 0.0  # view-2 hue jitter, a shift of up to this share of the colour circle (0 = off, <= 0.5)
    random_erasing: float = 0.25  # view-2 erasing probability
    temporal_downsample: float = 0.5  # probability of view-2 temporal down-sampling by 2
    mixup: float = 0.0  # mixup alpha for view 2 (0 = off)
    cutmix: float = 0.0  # cutmix alpha for view 2 (0 = off)
    # each view's foreground (this share of its pixels, those that change most over the clip) on another clip's
    # background (FAME): the views and the sampled frames no longer share a background (0 = off)
    background_merge: float = 0.0


@dataclass
class OptimConfig:
    base_lr: float = 1.5e-4  # lr for a global batch of 256; scaled linearly
    lr: float = 0.0  # absolute lr; 0 = base_lr * global_batch / 256
    min_lr: float = 0.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_epochs: float = 40.0
    clip_grad: float = 0.0  # max gradient norm (0 = off)
    accum_steps: int = 1  # gradient accumulation


@dataclass
class TrainConfig:
    epochs: int = 800
    steps_per_epoch: int = 0  # at most this many steps per epoch (an epoch is one pass at most); 0 = one pass
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "bf16"  # bf16 (autocast on CUDA; fp32 on CPU) | fp32
    compile: bool = False  # torch.compile the training step
    compile_loss: bool = True  # with compile, on one process: loss and model as one graph (false: model only)
    cuda_graphs: bool = False  # replay the compiled step as CUDA graphs (CUDA, compile_loss, one process)
    seed: int = 0
    log_every: int = 10  # steps between metrics.jsonl lines
    ckpt_every: int = 1  # epochs between checkpoints
    ckpt_every_steps: int = 0  # also overwrite checkpoint-last.pth every N optimiser steps (0 = off)
    keep_checkpoints: int = 2  # newest epoch checkpoints kept on disk
    viz_every: int = 0  # epochs between reconstruction pictures (0 = only at the end)
    max_bad_steps: int = 5  # consecutive non-finite steps before the run stops
    freeze_image: bool = False  # keep the image branch fixed


@dataclass
class InitConfig:
    video: str = ""  # checkpoint for the video encoder (ours, VideoMAE, SpatioTemporalMAE, HF)
    image: str = ""  # checkpoint for the image encoder (ours, MAE, HF ViTMAE, timm)
    model: str = ""  # a full CrossVideoMAE checkpoint of ours
    allow_partial: bool = False  # accept files that fill only part of the model (the rest: random init)


@dataclass
class EvalConfig:
    checkpoint: str = ""  # encoder to evaluate (ours or any supported format); "" = random init (train.seed)
    encoder: str = "video"  # video (clips) | image (the image encoder on an ImageFolder tree in data.*_list)
    label: str = "label"  # which label to evaluate: label (motion/action) | kind (synthetic object kind)
    epochs: int = 100  # linear-probe and fine-tuning epochs
    lr: float = 0.1  # linear probe SGD lr (momentum 0.9, no weight decay)
    warmup_epochs: float = 10.0  # linear probe warm-up
    batch_size: int = 64  # linear probe batch, and the batch of feature extraction and testing
    num_clips: int = 2  # temporal clips of the multi-view test
    num_crops: int = 3  # spatial crops of the multi-view test
    ks: tuple[int, ...] = (1, 5, 10, 20)  # retrieval R@k
    split: int = 1  # UCF101 / HMDB51 split 1-3: replaces "{split}" in data.train_list / data.val_list
    # Fine-tuning recipe (paper supp. Table 3). `finetune` trains with these in place of optim.base_lr,
    # optim.betas, optim.weight_decay, optim.warmup_epochs and model.drop_path.
    ft_base_lr: float = 1.0e-3  # AdamW lr for a global batch of 256, scaled linearly
    ft_betas: tuple[float, float] = (0.9, 0.999)
    ft_weight_decay: float = 0.05
    ft_warmup_epochs: float = 5.0
    ft_layer_decay: float = 0.75  # layer-wise lr decay (BEiT / MAE)
    ft_drop_path: float = 0.1
    # what the fine-tuned classifier's linear head reads. mean: the mean of the tokens (the paper's, VideoMAE's)
    # | attentive: a learned query over all tokens (the attentive probe's pooling, timm AttentionPoolLatent)
    ft_pool: str = "mean"
    # LP-FT (Kumar et al., 2022): an attentive probe that `readout` trained on this encoder's frozen tokens
    # (its attentive_probe-pretrained-label.safetensors) initialises the pooling and head, so that fine-tuning
    # starts from the probe's accuracy instead of a random head; needs ft_pool=attentive
    ft_head_init: str = ""
    label_smoothing: float = 0.1
    mixup: float = 0.8  # mixup alpha (0 = off)
    cutmix: float = 1.0  # cutmix alpha (0 = off)
    randaugment: str = "rand-m9-n2-mstd0.5"  # timm RandAugment spec of fine-tuning ("" = off)
    random_erasing: float = 0.25  # probability
    repeated_aug: int = 2  # augmented clips drawn per video and step (VideoMAE's num_sample)
    dropout: float = 0.0  # before the classification head
    num_classes: int = 0  # 0 = from the data
    # Frozen-encoder protocols. kNN compares features centred by the train set's mean, then L2-normalised.
    knn_center: bool = True
    probe: str = "linear"  # linprobe: linear (BatchNorm + linear on mean-pooled features) | attentive
    # Attentive probe: a learned query cross-attends over all tokens of the frozen encoder (timm's
    # AttentionPoolLatent, as V-JEPA / VideoMAE v2 evaluate frozen encoders) + linear head; AdamW, cosine.
    attn_epochs: int = 30
    attn_lr: float = 1.0e-3
    attn_weight_decay: float = 0.05
    attn_batch_size: int = 128


@dataclass
class SynthConfig:
    num_train: int = 200
    num_val: int = 100
    num_frames: int = 32  # frames per generated video
    size: int = 64  # frame height = width
    fps: int = 16
    num_objects: int = 1  # objects per video (all move the same way)
    backgrounds: int = 0  # 0 = a new background per video; N = drawn from a pool of N shared backgrounds
    colours: int = 0  # object colours drawn from: 0 = all 8; N = the first N (1-8)
    camera_jitter: int = 0  # hand-held camera: the whole frame shifts by up to this many pixels per frame
    noise: float = 0.0  # sensor noise: std of Gaussian noise on every pixel of every frame (0-255 scale)
    seed: int = 0


@dataclass
class AdaptConfig:
    updates_per_batch: int = 20  # K gradient updates on every batch of target data
    num_batches: int = 0  # 0 = one pass over the target data


@dataclass
class DistConfig:
    backend: str = "auto"  # auto (nccl on CUDA, gloo on CPU) | nccl | gloo
    fsdp: bool = False  # fully-sharded data parallel instead of DDP


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    init: InitConfig = field(default_factory=InitConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    dist: DistConfig = field(default_factory=DistConfig)

    def validate(self) -> Config:
        """Check ranges and cross-field rules; raise :class:`ConfigError` naming the first bad key."""
        from .validation import check

        check(self)
        return self


# width, depth, heads of the usual ViT sizes
VIT_SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "huge": (1280, 32, 16),
}


def vit_dims(m: ModelConfig) -> tuple[int, int, int]:
    """(width, depth, heads) of the encoders: the size table, with explicit overrides on top."""
    width, depth, heads = VIT_SIZES[m.size]
    return m.width or width, m.depth or depth, m.heads or heads
