
from visa_lib._exports import lazy_exports

_NAMES = {
    "load_revos": "revos",
    "RevosSplit": "revos",
    "DatasetFormatError": "revos",
    "VideoFrames": "video",
    "SplitVideoFrames": "video",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
