"""Image and dataset I/O with full geometry."""
from .dataset import DatasetInfo, load_dataset, verify_dataset
from .images import SUPPORTED_ENDINGS, Geometry, read_case_images, read_label, write_label

__all__ = ["Geometry", "read_case_images", "read_label", "write_label", "SUPPORTED_ENDINGS",
           "DatasetInfo", "load_dataset", "verify_dataset"]
