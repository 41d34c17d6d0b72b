"""Training and the models it makes: :func:`~.train.fit` in three regimes (:mod:`.train`), several
processes with ``torchrun`` (:mod:`.distributed`), checkpoints (:mod:`.checkpoint`), the shipped
models (:mod:`.pretrained`), the recipes that reproduce them (:mod:`.reproduce`), evaluation
sweeps (:mod:`.evaluate`) and timing a device correctly (:mod:`.timing`)."""
