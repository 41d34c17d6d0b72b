"""Training and the models it makes: :func:`~.train.fit` in three regimes (:mod:`.train`), several
processes with ``torchrun`` (:mod:`.distributed`), checkpoints (:mod:`.checkpoint`), the shipped
models (:mod:`.pretrained`), the recipes that reproduce them (:mod:`.reproduce`), evaluation
sweeps (:mod:`.evaluate`), timing a device correctly (:mod:`.timing`), and for chapter 6 the
amortized peer (:mod:`.peer`, :mod:`.peer_fit`), the importance-weighted bound (:mod:`.bounds`),
codes at the pose found (:mod:`.codes`) and embeddings of a folder (:mod:`.embed`)."""
