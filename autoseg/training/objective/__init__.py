"""What training optimises and watches: ``losses`` (Dice + cross-entropy, region losses, deep supervision, the
``LOSSES`` registry) and ``pseudo_dice`` (the per-epoch validation metric)."""
