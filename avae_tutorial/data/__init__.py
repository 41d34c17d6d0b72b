"""Data in: MNIST on a padded canvas and its seeded perturbations (:mod:`.mnist`), a reader's own
images from a folder or an array file (:mod:`.images`), letters drawn offline (:mod:`.letters`),
and aligning a folder chunk by chunk, resumable (:mod:`.poses`)."""
