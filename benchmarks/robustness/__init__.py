"""Robustness and false-positive benchmark: does the watermark survive theft, and never accuse
the innocent? Does MAP's authorization survive the same attacks?

Steps (every trained or attacked model is cached in the run directory, so a rerun only verifies):

1. train a source model on MNIST; ``embed`` an ownership watermark (library defaults of
   :class:`mapguard.watermark.EmbedConfig`, sizes reduced under ``--quick``);
2. attack the watermarked model with every kind of :mod:`mapguard.attacks` (several seeds where
   the attack is random) and verify each attacked copy with :func:`verification.verify.verify`
   in label-only and probability mode (the same path as ``mapguard verify``);
3. verify the watermarked model behind each query-time transform (JPEG, blur, noise, resize);
4. verify >= 20 independent models (other seeds, data sizes, domains and architectures);
5. summarise: detection rate (all attacks / attacks that keep clean accuracy within 5 points),
   false positives at several alpha, a ROC-style plot (TPR vs FPR as alpha varies);
6. authorization: ``protect`` a model with MAP (source MNIST, target MNIST-M), attack it, and
   report source and target accuracy after each attack (:mod:`benchmarks.authorization_attacks`).

    python -m benchmarks.robustness [--quick] [--run-dir runs/robustness] [--out results.json]
        [--md table.md] [--plot roc.png] [--embed-option KEY=VALUE ...] [--skip-auth]

``--quick`` (vgg_tiny, M = 19 null keys, 40 verification images, short attack budgets, few
seeds) takes a few minutes on 2 CPU cores once its models are cached; the default uses the
committed verification sizes (M = 99, 50 images), full attack budgets and 3 seeds.

The rooms: :mod:`.plan` (what is run), :mod:`.cache` (the models, made once), :mod:`.run` (the
verifications), :mod:`.stats` (rates and intervals), :mod:`.report` (tables, plot, JSON),
:mod:`.cli` (arguments and the walk).
"""
