"""The fit loop: ``loop.fit`` drives the ``parts`` (network, optimiser step, loss, metric, data streams) through
the ``schedule`` (epochs or the budget clock), with ``callbacks`` (log, plot, checkpoints, CPU threads)."""
