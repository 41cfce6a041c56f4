"""The sections of :class:`~torchwm.config.JEPAConfig`: plain values, each with its rules and a doc line."""

from __future__ import annotations

from dataclasses import dataclass

from torchwm.config.fields import opt

__all__ = ["DataConfig", "EnvConfig", "LoggingConfig", "ModelConfig", "PlanningConfig", "PretrainConfig",
           "TrainConfig"]


@dataclass
class EnvConfig:
    """Environment that trajectories are collected from and goals are posed in."""

    id: str = "dmc:reacher-easy"
    """environment id, ``dmc:<domain>-<task>`` (see ``torchwm.envs.registry.env_ids()``)"""
    action_repeat: int = opt(0, min=0)
    """times each action is repeated by the environment; 0 = the domain's default (4 for the domains with
    goals: point_mass, reacher, cartpole, pendulum, acrobot, ball_in_cup; others 1; see torchwm.envs.domains) (>= 0)"""
    camera: int = opt(-1, min=-1)
    """camera index to render; -1 = the domain's default camera (otherwise >= 0)"""
    goal_steps: int = opt(25, min=1)
    """rollout goals (reacher): the goal is the state this many env steps ahead on a random-action trajectory (>= 1)"""


@dataclass
class DataConfig:
    """Trajectory collection and loading."""

    path: str = ""
    """trajectory store directory; "" = derived automatically from the env and collection settings"""
    episodes: int = opt(200, min=1)
    """number of episodes to collect (>= 1)"""
    steps: int = opt(100, min=1)
    """env steps per collected episode (>= 1)"""
    policy: str = opt("random", choices=("random", "noise", "mixed"))
    """collection policy: "random" (i.i.d. uniform actions), "noise" (temporally correlated) or "mixed" (each
    episode one of the two, half and half)"""
    noise_beta: float = opt(0.8, min=0.0, lt=1.0)
    """temporal correlation of the "noise" policy (and the "mixed" policy's correlated episodes), in [0, 1); 0 = i.i.d."""
    workers: int = opt(2, min=1)
    """parallel collection processes (>= 1)"""
    heldout_fraction: float = opt(0.1, min=0.0, lt=1.0)
    """fraction of episodes held out for evaluation, in [0, 1)"""
    loader_workers: int = opt(0, min=0)
    """DataLoader worker processes (>= 0; 0 = load in the main process); training then uses the other cores'
    worth of threads (worth it when augmentation is costly, as for multi-view pretraining)"""


@dataclass
class ModelConfig:
    """Encoder architecture."""

    encoder: str = opt("vit", choices=("vit", "conv", "timm"))
    """spatial encoder: "vit" (patch transformer), "conv" (small CNN) or "timm" (see timm_model)"""
    timm_model: str = opt("", pattern=r"[^/\\:]*", allowed=(
        "a timm architecture name such as 'resnet18' (no 'hf-hub:' or 'timm/' Hub id, no path: torchwm builds "
        "timm architectures with random init and never downloads; load weights from a local file)",))
    """``timm.create_model`` name, e.g. "resnet18"; required (non-empty) when encoder is "timm"."""
    pretrained: str = ""
    """a pretraining run (or its model.pt) whose spatial encoder the world model starts from; "" = a new encoder"""
    freeze_encoder: bool = False
    """keep the spatial encoder's weights fixed: only the temporal encoder and the predictor train, and the
    variance/covariance terms apply to the temporal context (what trains) instead of the frame embeddings"""
    history: int = opt(3, min=1)
    """frames fused by the temporal encoder (>= 1), ``action_chunk`` agent steps apart"""
    action_chunk: int = opt(1, min=1)
    """agent steps (actions) per predictor step: the model sees frames this many steps apart and predicts the
    frame after a chunk of as many actions (LeWM / DINO-WM's frame skip). Training sequences and the predicted
    horizon count chunks; planning.horizon counts agent steps and must be a multiple of it, and
    planning.execute_steps should be one too (re-plan on chunk boundaries). 1 = every step"""
    conv_width: int = opt(32, min=1)
    """channels of the conv encoder's first layer; later layers use 2x, 4x, 8x (>= 1)"""
    conv_head: str = opt("flatten", choices=("flatten", "keypoints"))
    """conv encoder head: "flatten" (final map into a linear layer) or "keypoints" (spatial softmax:
    expected (x, y) of each channel, so body positions become linear features)"""
    keypoints: int = opt(64, min=1)
    """keypoint channels of the "keypoints" conv head (>= 1)"""
    temporal_hidden: int = opt(256, min=1)
    """hidden width of the recurrent temporal encoder (>= 1)"""
    predictor_hidden: int = opt(512, min=1)
    """hidden width of the action-conditioned predictor MLP (>= 1)"""
    predictor_depth: int = opt(2, min=1)
    """hidden layers of the predictor MLP (>= 1)"""


@dataclass
class TrainConfig:
    """Optimisation of the world model: schedule, loss weights, target encoder, checkpoints."""

    steps: int = opt(0, min=0)
    """optimisation steps; 0 = ``epochs`` passes over the training sequences (>= 0)"""
    sequence_length: int = opt(0, min=0)
    """frames per training sequence; every window of history + predict_horizon frames inside it is
    trained on, so each encoded frame serves several predictions; 0 = history + predict_horizon (one window)"""
    warmup_steps: int = opt(100, min=0)
    """linear learning-rate warm-up steps before the cosine decay (>= 0)"""
    min_lr_ratio: float = opt(0.05, min=0.0, max=1.0)
    """final learning rate as a fraction of learning_rate, in [0, 1]"""
    weight_decay: float = opt(0.01, min=0.0)
    """AdamW weight decay on weight matrices (not on biases and norms) (>= 0)"""
    grad_clip: float = opt(1.0, min=0.0)
    """maximum global gradient norm; 0 = no clipping (>= 0)"""
    precision: str = opt("auto", choices=("auto", "fp32", "bf16"))
    """"auto": bf16 autocast on a CUDA device that supports it, fp32 elsewhere; "fp32"; "bf16" (CUDA only: on a
    CPU without bf16 units it runs hundreds of times slower than fp32, so it is refused there)"""
    compile: bool = opt(False)
    """``torch.compile`` the training step's model (first steps slower while it compiles)"""
    regularizer: str = opt("vicreg", choices=("vicreg", "sigreg"))
    """against collapse: "vicreg" (variance hinge + covariance, ``var_weight`` / ``cov_weight``) or "sigreg" (one term,
    ``sigreg_weight`` x SIGReg of the embeddings, LeWM-style)"""
    sigreg_weight: float = opt(0.1, min=0.0)
    """SIGReg's weight λ (>= 0); the statistic is scaled by the batch size as in LeJEPA/LeWM (eb_jepa's is not)"""
    sigreg_directions: int = opt(256, min=1)
    """random 1-D projections SIGReg tests per step (>= 1)"""
    sigreg_proj_dim: int = opt(0, min=0)
    """0: SIGReg on the embeddings the prediction loss measures; > 0: on a BatchNorm MLP projection of that width,
    which leaves the embeddings' scale free to shrink (cartpole: embedding std 0.065 against VICReg's 1.65)"""
    var_weight: float = opt(1.0, min=0.0)
    """weight of the VICReg variance (std hinge) term (>= 0; 0 = off)"""
    cov_weight: float = opt(0.04, min=0.0)
    """weight of the VICReg covariance term (>= 0; 0 = off)"""
    vicreg_within_sequence: bool = False
    """apply the VICReg terms to each frame's deviation from its training sequence's mean embedding: only
    what changes within an episode then counts, so content constant within one (a task marker, the
    background) cannot meet the variance term (see docs/world_model.md)"""
    within_sequence_std: float = opt(0.0, min=0.0)
    """with vicreg_within_sequence: 0 = one variance hinge, at std 1, on the within-sequence deviations; > 0 = two:
    at std 1 on the frame embeddings over the batch (which sets the embedding's scale, as without
    vicreg_within_sequence) and at this std on the within-sequence deviations, so every dimension follows something
    that moves (>= 0; not with model.freeze_encoder; see docs/world_model.md)"""
    window_motion_threshold: float = opt(0.0, min=0.0, max=1.0)
    """0 = off; > 0: ``within_sequence_std`` applies only where a training window sees less than this share of an
    episode's motion in the collected frames (:func:`~torchwm.data.statistics.window_motion_share`, over the first
    50 training episodes when training starts): a slow body, whose deviations within a window are small beside its
    range and which the one within-sequence hinge maps as a staircase (point_mass: 0.34). At or above it (reacher
    0.66, ball_in_cup 0.75) training keeps that one hinge (``within_sequence_std`` 0), which content fixed within
    an episode cannot meet (in [0, 1]; needs within_sequence_std > 0; see docs/world_model.md)"""
    slow_predict_horizon: int = opt(0, min=0)
    """0 = ``predict_horizon`` for every body; > 0: the horizon a slow body trains to, where
    ``window_motion_threshold`` finds one (a training window sees less than that share of an episode's motion).
    Trained as far ahead as the planner looks, cartpole's predictor predicts each of the plan's steps better and its
    plans reach more goals (56% -> 66%); a fast body keeps ``predict_horizon`` (ball_in_cup: 81% -> 59% at 5)
    (>= 0; needs window_motion_threshold > 0; see docs/world_model.md)"""
    smoothness_weight: float = opt(0.0, min=0.0)
    """weight of a slowness term: the mean squared change of the frame embedding between consecutive frames of a
    training sequence; beside the variance hinge it favours features that follow the pose smoothly over ones that
    jump (>= 0; 0 = off; too strong for a fast body and it squeezes what moves below the hinge: acrobot and reacher at 10;
    not with model.freeze_encoder; see docs/world_model.md)"""
    ema: bool = False
    """predict the embeddings of an EMA target encoder instead of stop-gradient online embeddings"""
    ema_momentum: float = opt(0.99, min=0.0, lt=1.0)
    """initial EMA momentum, raised to 1 by a cosine schedule over training, in [0, 1)"""
    eval_every: int = opt(500, min=1)
    """steps between held-out evaluations (prediction error per horizon step, probes) (>= 1)"""
    metrics_every: int = opt(100, min=1)
    """steps between collapse metrics (embedding std, effective rank) (>= 1)"""
    checkpoint_every: int = opt(500, min=1)
    """steps between checkpoints; one is always written at the end (>= 1)"""


@dataclass
class PlanningConfig:
    """Latent-space planning toward a goal image."""

    planner: str = opt("cem", choices=("cem", "mppi"))
    """optimiser over action sequences: "cem" (cross-entropy method) or "mppi" (path integral)."""
    samples: int = opt(300, min=1)
    """action sequences sampled per iteration (>= 1)"""
    elites: int = opt(30, min=1)
    """best sequences kept per iteration (>= 1 and <= samples)"""
    iterations: int = opt(10, min=1)
    """optimisation iterations per planning step (>= 1)"""
    horizon: int = opt(5, min=1)
    """planned actions per sequence (>= 1; a multiple of model.action_chunk, the model predicting one frame per
    chunk)"""
    init_std: float = opt(1.0, gt=0.0)
    """initial standard deviation of the action distribution, in normalised action units (> 0)"""
    temperature: float = opt(0.5, gt=0.0)
    """MPPI softmax temperature over costs (> 0)"""
    cost: str = opt("l2", choices=("l2", "l1", "cosine"))
    """distance between predicted and goal embeddings: "l2", "l1" or "cosine" (1 - cosine similarity)."""
    cost_steps: str = opt("final", choices=("final", "all", "min"))
    """embeddings compared to the goal: "final" (last predicted step), "all" (weighted mean over the horizon,
    later steps weighted more) or "min" (the closest predicted step: reach the goal at some step, as a
    success "at any step" asks, without holding it)"""
    whiten: bool = False
    """measure the cost in the model's step whitening: the embedding mapped so that a typical one-step change has
    unit length in every direction (fitted on the training episodes after training), so that no direction of the
    embedding outweighs another in the distance to the goal"""
    execute_steps: int = opt(1, min=1)
    """planned actions executed before replanning (>= 1 and <= horizon)"""
    episode_steps: int = opt(0, min=0)
    """step budget of one goal-reaching episode (>= 1); 0: the domain's (50; point_mass 100, see docs/goals.md)"""
    eval_episodes: int = opt(100, min=1)
    """goal-reaching episodes per evaluation (>= 1)"""
    parallel: int = opt(16, min=1)
    """evaluation episodes run side by side, planned in one batch (>= 1)"""
    videos: int = opt(3, min=0)
    """evaluation episodes saved as GIF (observation beside goal) and logged to TensorBoard (>= 0)"""


@dataclass
class PretrainConfig:
    """Pretraining of the spatial encoder (every dataset but "trajectories"): the objective and its settings."""

    method: str = opt("ijepa", choices=("ijepa", "sigreg", "vjepa"))
    """objective: "ijepa" (predict masked image blocks; a ViT from the top-level sizes), "sigreg" (multi-view
    SIGReg, LeJEPA-style: views predict the global views' embedding; any model.encoder) on images, or "vjepa"
    (predict masked tubes and the future of clips; a ViT with tubelet patches) on clips"""
    mask: str = opt("multiblock", choices=("multiblock", "random", "block"))
    """masking: "multiblock" (I-JEPA: target blocks + one context block), "random" (mask_ratio of the
    patches are targets) or "block" (one target block)"""
    num_targets: int = opt(4, min=1)
    """target blocks per image for "multiblock" (>= 1)"""
    target_scale_min: float = opt(0.15, gt=0.0, max=1.0)
    """smallest target block, as a fraction of the patches, in (0, 1]"""
    target_scale_max: float = opt(0.2, gt=0.0, max=1.0)
    """largest target block, as a fraction of the patches, in (0, 1] (>= target_scale_min)"""
    target_aspect_min: float = opt(0.75, gt=0.0)
    """smallest height/width ratio of a target block (> 0)"""
    target_aspect_max: float = opt(1.5, gt=0.0)
    """largest height/width ratio of a target block (> 0, >= target_aspect_min)"""
    context_scale_min: float = opt(0.85, gt=0.0, max=1.0)
    """smallest context block before the targets are removed, as a fraction of the patches, in (0, 1]"""
    context_scale_max: float = opt(1.0, gt=0.0, max=1.0)
    """largest context block, in (0, 1] (>= context_scale_min)"""
    min_keep: int = opt(4, min=1)
    """fewest context patches an image may keep (>= 1)"""
    predictor_dim: int = opt(96, min=1)
    """width of the narrow ViT predictor (>= 1, divisible by predictor_heads)"""
    predictor_depth: int = opt(4, min=1)
    """transformer blocks in the predictor (>= 1)"""
    predictor_heads: int = opt(3, min=1)
    """attention heads in the predictor (>= 1)"""
    ema_start: float = opt(0.996, min=0.0, max=1.0)
    """EMA momentum of the target encoder at the start, raised to ema_end by a cosine schedule, in [0, 1]"""
    ema_end: float = opt(1.0, min=0.0, max=1.0)
    """EMA momentum at the end of training, in [0, 1]"""
    var_weight: float = opt(0.0, min=0.0)
    """VICReg variance weight on the images' pooled context embeddings (>= 0; 0 = plain I-JEPA)"""
    cov_weight: float = opt(0.0, min=0.0)
    """VICReg covariance weight on the pooled context embeddings (>= 0; 0 = plain I-JEPA)"""
    weight_decay_end: float = opt(0.4, min=0.0)
    """weight decay at the end of training; it rises from train.weight_decay by a cosine schedule (>= 0)"""
    crop_scale_min: float = opt(0.3, gt=0.0, max=1.0)
    """smallest random-resized-crop area, as a fraction of the image, in (0, 1]; sigreg: of its global views"""
    global_views: int = opt(2, min=1)
    """sigreg: views of each image whose mean embedding every view predicts (>= 1)"""
    local_views: int = opt(4, min=0)
    """sigreg: smaller crops of each image, also predicting the global views' embedding (>= 0)"""
    local_crop_scale_min: float = opt(0.05, gt=0.0, max=1.0)
    """sigreg: smallest local crop, as a fraction of the image (local crops reach crop_scale_min), in (0, 1]"""
    color_jitter: float = opt(0.8, min=0.0, max=1.0)
    """sigreg: strength s of the colour jitter (brightness, contrast, saturation s, hue s/4; LeJEPA's 0.8), in [0, 1]"""
    geometric_augment: bool = True
    """sigreg: views are random resized crops and flips; false: only colour jitter, grayscale and blur, so
    every view keeps where things are (for encoders that plan)"""
    sigreg_weight: float = opt(0.05, open_interval=(0, 1))
    """sigreg: lambda of LeJEPA: loss = (1 - lambda) * prediction + lambda * SIGReg, in (0, 1)"""
    sigreg_directions: int = opt(256, min=1)
    """sigreg: random 1-D projections the SIGReg statistic averages over (>= 1)"""
    projector_dim: int = opt(64, min=1)
    """sigreg: width of the BatchNorm MLP projector's output, where the loss applies (>= 1)"""
    projector_hidden: int = opt(512, min=1)
    """sigreg: hidden width of the projector's two hidden layers (>= 1)"""
    clip_frames: int = opt(8, min=2)
    """vjepa: frames per clip (>= 2, a multiple of tubelet)"""
    frame_stride: int = opt(1, min=1)
    """vjepa: steps between consecutive frames of a clip (>= 1)"""
    tubelet: int = opt(2, min=1)
    """vjepa: frames per patch token (>= 1)"""
    short_blocks: int = opt(8, min=0)
    """vjepa: short-range mask: tubes (through all frames) per clip, whose union is predicted (0 = off)"""
    short_scale: float = opt(0.15, gt=0.0, max=1.0)
    """vjepa: spatial area of one short-range tube, as a fraction of the frame, in (0, 1]"""
    long_blocks: int = opt(2, min=0)
    """vjepa: long-range mask: tubes per clip (0 = off)"""
    long_scale: float = opt(0.7, gt=0.0, max=1.0)
    """vjepa: spatial area of one long-range tube, in (0, 1]"""
    future_frames: int = opt(2, min=0)
    """vjepa: temporal mask: the last frames of each clip are predicted from the others (a multiple of
    tubelet, fewer than clip_frames; 0 = off)"""
    val_folder: str = "val"
    """labelled sub-folder of root_path for the linear-probe / k-NN evaluation ("" or missing: no evaluation);
    dataset "episodes" probes the physics state on held-out episodes instead"""
    knn_k: int = opt(20, min=1)
    """neighbours of the k-NN evaluation (>= 1)"""


@dataclass
class LoggingConfig:
    """Where and how often to log."""

    run_dir: str = opt("runs/default", nonempty=True)
    """directory for checkpoints, the saved config and logs (non-empty)"""
    tensorboard: bool = True
    """write TensorBoard event files to run_dir"""
    log_every: int = opt(50, min=1)
    """training steps between log lines (>= 1)"""
    progress: bool = True
    """show progress bars"""
