"""autoseg: self-configuring medical image segmentation in the nnU-Net tradition."""

__version__ = "0.1.0"
