"""Training: what a step minimises, the Keras trainers, checkpoints and resume, one member.

objectives.py   LossSetup and the per-task losses of a batch (hard, soft, Dirichlet)
trainers.py     MultitaskTrainer, TemporalTrainer, the optimizer and the tf.distribute strategy
checkpoints.py  MemberState and EpochEnd: one checkpoint per epoch, validation scores, history
member.py       train_member: build, resume, fit, keep the best epoch, done.json
"""
