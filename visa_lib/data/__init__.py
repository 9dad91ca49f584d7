
from visa_lib._exports import lazy_exports

_NAMES = {
    "load_revos": "revos",
    "RevosSplit": "revos",
    "DatasetFormatError": "revos",
    "VideoFrames": "video",
    "SplitVideoFrames": "video",
    "load_mevis": "formats",
    "load_lvvis": "formats",
    "load_refytvos": "formats",
    "load_davis17": "formats",
    "ReasonSegDataset": "image_datasets",
    "ReferSegDataset": "image_datasets",
    "InstructionDataset": "instruction",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
