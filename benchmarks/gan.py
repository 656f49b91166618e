"""GAN family: training speed per loss and mode, and mode coverage on the ring of 8 Gaussians.

(a) seconds per 1000 training steps of every loss in both training modes, on the Conv1D
    networks at spectrum size (``--n-pix`` pixels, batch ``--batch``, small widths; timed over
    ``--conv-steps`` steps after tracing, scaled to 1000) and on the dense toy networks of (b)
    (timed over the ring runs' steps after the first logging chunk, which holds the tracing);
(b) the ring of 8 Gaussians (radius 2, std 0.02; 20 000 points): for every loss and both
    modes, modes recovered (>= 20 of 2000 samples within 3 std of the mode) out of 8 and the
    high-quality share (samples within 3 std of any mode), one run per seed.

Every run uses the same settings (no per-loss tuning); prints markdown tables, writes nothing.

    python benchmarks/gan.py [--conv-steps 40] [--ring-steps 2000] [--seeds 0,1]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from _results import stamp

from spectraforge.training import configure_threads

configure_threads(2)

import tensorflow as tf

from spectraforge.generative.gan import (
    LOSSES,
    MODES,
    GANConfig,
    GANModel,
    GANTrainer,
    get_loss,
)
from spectraforge.generative.gan.nets import build_nets
from spectraforge.generative.gan.training import adam

RADIUS, STD = 2.0, 0.02
CENTRES = RADIUS * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1)
RING = {"architecture": "dense", "conditioning": "none", "g_widths": [128, 128, 128], "d_widths": [128, 128, 128],
        "latent_dim": 2, "batch_size": 128, "lr_g": 2e-4, "lr_d": 2e-4, "encoder_weight": 0.01, "log_every": 500,
        "standardise": False}
CONV = {"architecture": "conv", "conditioning": "projection", "g_widths": [32, 16, 8], "d_widths": [8, 16, 32],
        "latent_dim": 32, "label_dim": 8}


def ring(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (CENTRES[rng.integers(0, 8, n)] + rng.normal(0, STD, (n, 2))).astype(np.float32)


def coverage(S: np.ndarray, min_count: int = 20) -> tuple[int, float]:
    dist = np.linalg.norm(S[:, None, :] - CENTRES[None], axis=-1)
    good = dist.min(1) < 3 * STD
    counts = np.bincount(dist.argmin(1)[good], minlength=8)
    return int((counts >= min_count).sum()), float(good.mean())


def conv_seconds_per_1000(loss: str, mode: str, n_pix: int, batch: int, steps: int) -> float:
    cfg = GANConfig(loss=loss, mode=mode, batch_size=batch, **CONV)
    cfg.validate()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4 * batch, n_pix)).astype(np.float32)
    y = rng.integers(0, 4, 4 * batch).astype(np.int32)
    nets = build_nets(n_pix, cfg, seed=0)
    same = mode == "one_loss" and cfg.lr_g == cfg.lr_d
    trainer = GANTrainer(nets, get_loss(loss), mode=mode, penalty=cfg.resolved_penalty, gp_weight=cfg.gp_weight,
                         r1_weight=cfg.r1_weight, encoder_weight=cfg.encoder_weight, n_critic=cfg.n_critic,
                         opt_d=adam(cfg.lr_d, cfg.beta_1, cfg.beta_2), opt_g=adam(cfg.lr_g, cfg.beta_1, cfg.beta_2),
                         opt_one=adam(cfg.lr_d, cfg.beta_1, cfg.beta_2) if same else None)
    trainer.build_optimizers()
    loop = trainer.make_loop(X, y, batch, tf.random.Generator.from_seed(0))
    loop(tf.constant(2))  # trace and warm up
    t0 = time.perf_counter()
    out = loop(tf.constant(steps))
    float(out["d_loss"])
    return (time.perf_counter() - t0) / steps * 1000


def ring_run(loss: str, mode: str, steps: int, seed: int, X: np.ndarray) -> tuple[int, float, float]:
    cfg = GANConfig(loss=loss, mode=mode, steps=steps, **RING)
    model = GANModel(cfg).fit(X, np.zeros(len(X), np.int64), seed=seed)
    modes, quality = coverage(model.sample(np.zeros(2000, np.int64), seed=seed + 1000))
    timed = model.history[1:]
    per_1000 = sum(h["seconds"] for h in timed) / max(sum(RING["log_every"] for _ in timed), 1) * 1000
    return modes, quality, per_1000


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--losses", default=",".join(LOSSES), help="comma-separated names of LOSSES")
    ap.add_argument("--n-pix", type=int, default=2600)
    ap.add_argument("--batch", type=int, default=64, help="conv timing batch")
    ap.add_argument("--conv-steps", type=int, default=40, help="timed conv steps per variant (scaled to 1000)")
    ap.add_argument("--ring-steps", type=int, default=2000)
    ap.add_argument("--seeds", default="0,1", help="comma-separated seeds of the ring runs")
    ap.add_argument("--skip-conv", action="store_true")
    args = ap.parse_args(argv)
    losses = args.losses.split(",")
    unknown = [name for name in losses if name not in LOSSES]
    if unknown:
        ap.error(f"unknown loss(es) {', '.join(unknown)}; valid: {', '.join(LOSSES)}")
    if args.ring_steps < 2 * RING["log_every"]:
        ap.error(f"--ring-steps must be >= {2 * RING['log_every']} (the first {RING['log_every']} steps hold tracing)")
    seeds = [int(s) for s in args.seeds.split(",")]
    t_start = time.perf_counter()

    conv = {}
    if not args.skip_conv:
        for loss in losses:
            for mode in MODES:
                conv[loss, mode] = conv_seconds_per_1000(loss, mode, args.n_pix, args.batch, args.conv_steps)
                print(f"# conv {loss} {mode}: {conv[loss, mode]:.1f} s/1000 steps", file=sys.stderr, flush=True)

    X = ring(20000, seed=0)
    ringres = {}
    for loss in losses:
        for mode in MODES:
            ringres[loss, mode] = [ring_run(loss, mode, args.ring_steps, s, X) for s in seeds]
            print(f"# ring {loss} {mode}: {[r[:2] for r in ringres[loss, mode]]}", file=sys.stderr, flush=True)

    print(f"Run {stamp()}.")
    print(f"Command: `python benchmarks/gan.py {' '.join(argv if argv is not None else sys.argv[1:])}`; "
          f"total {time.perf_counter() - t_start:.0f} s.\n")
    print(f"(a) Seconds per 1000 training steps. Conv: {args.n_pix} pixels, batch {args.batch}, generator widths "
          f"{CONV['g_widths']}, discriminator widths {CONV['d_widths']}, latent {CONV['latent_dim']}, projection "
          f"discriminator, timed over {args.conv_steps} steps and scaled. Dense toy: the ring networks of (b), "
          f"timed over the ring runs after their first {RING['log_every']} steps (mean over seeds). "
          "Default penalties (wgan_gp: WGAN-GP λ=10; energy: R1 λ=1 and the encoder term).\n")
    print("| loss | conv alternating | conv one-loss | one-loss / alternating | dense alternating | dense one-loss |")
    print("|---|---|---|---|---|---|")
    for loss in losses:
        da = np.mean([r[2] for r in ringres[loss, "alternating"]])
        do = np.mean([r[2] for r in ringres[loss, "one_loss"]])
        if conv:
            ca, co = conv[loss, "alternating"], conv[loss, "one_loss"]
            cells = f"{ca:.1f} | {co:.1f} | {co / ca:.2f}"
        else:
            cells = "— | — | —"
        print(f"| {loss} | {cells} | {da:.2f} | {do:.2f} |")
    print()
    print(f"(b) Ring of 8 Gaussians (radius {RADIUS}, std {STD}), unconditional dense GAN: generator and "
          f"discriminator 3×128 LeakyReLU, latent 2, batch {RING['batch_size']}, {args.ring_steps} steps, Adam "
          f"lr 2e-4 (both players), β=(0.5, 0.999), n_critic 1, encoder weight {RING['encoder_weight']}; "
          f"2000 samples per run; seeds {', '.join(map(str, seeds))}. Modes: modes with >= 20 samples within "
          "3 std (per seed); HQ: share of samples within 3 std of a mode (per seed).\n")
    print("| loss | alternating: modes /8 | alternating: HQ share | one-loss: modes /8 | one-loss: HQ share |")
    print("|---|---|---|---|---|")
    for loss in losses:
        cells = []
        for mode in MODES:
            runs = ringres[loss, mode]
            cells.append(", ".join(str(r[0]) for r in runs))
            cells.append(", ".join(f"{r[1]:.2f}" for r in runs))
        print(f"| {loss} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
