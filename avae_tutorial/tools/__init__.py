"""The package from the shell and on the bench: the command line (:mod:`.cli`, :mod:`.commands`),
benchmarks (:mod:`.bench`, :mod:`.bench_report`, :mod:`.bench_distributed`, :mod:`.measure`),
the seed's searches kept as baselines (:mod:`.baselines`), ONNX export for the book's web page
(:mod:`.export`) and counting reads of device values on the host (:mod:`.reads`)."""
