"""Shared pytest fixtures: ``tiny_run``, a complete tiny training run (2 generations x 2 members)."""

import os

import pytest


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished run on a tiny synthetic benchmark: returns its TrainConfig (``cfg.workdir``; its data: ``cfg.sources()[0].path``).

    Synthetic data (3 train / 2 validation videos of 30 frames at 32x32, 20 OOD images), then
    ``run.run`` with the 'tiny' model, 2 generations of 2 members, 1 epoch of 2 steps each; no
    evaluation or export (the tests of those call them on this run).
    """
    from emenet_tf import job
    from emenet_tf.config import TrainConfig
    from emenet_tf.data import synthetic

    root = tmp_path_factory.mktemp("tiny_run")
    data_dir = os.path.join(root, "data")
    synthetic.generate(
        data_dir, seed=0, train_videos=3, val_videos=2, frames_per_video=30, image_size=32, ood_images=20
    )
    cfg = TrainConfig(
        workdir=os.path.join(root, "run"),
        data="affwild2:" + str(data_dir),
        model="tiny",
        ensemble_size=2,
        generations=2,
        epochs=1,
        steps_per_epoch=2,
        batch_size=16,
        verbose=0,
    )
    result = job.run_job(cfg, evaluate=False, export=False)
    assert result["generations_complete"] == 2
    return cfg
