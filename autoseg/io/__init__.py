"""Image and dataset I/O with full geometry."""
from .images import Geometry, read_case_images, read_label, write_label, SUPPORTED_ENDINGS
from .dataset import DatasetInfo, load_dataset, verify_dataset

__all__ = ["Geometry", "read_case_images", "read_label", "write_label", "SUPPORTED_ENDINGS",
           "DatasetInfo", "load_dataset", "verify_dataset"]
