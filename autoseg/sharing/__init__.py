"""Models people can share: model zips (export and safe import), nnU-Net v2 model import."""
