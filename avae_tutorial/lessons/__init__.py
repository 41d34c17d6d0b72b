"""What the book's chapters use to tell the story: figures (:mod:`.plotting`, :mod:`.landscape`,
:mod:`.orientation_plots`), circular statistics of learned orientations (:mod:`.histograms`), the
live explorer (:mod:`.widgets`), latent codes by class (:mod:`.latent`), clustering accuracy and
the recovered turn (:mod:`.latent_stats`, :mod:`.latent_plots`), memory per layer
(:mod:`.layer_memory`), the paper's table beside ours (:mod:`.paper`) and every chapter's first
cell (:mod:`.notebook`)."""
