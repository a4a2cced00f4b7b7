"""Green-list watermark (Kirchenbauer et al., ICML 2023): scheme, logits processor, detector, keys."""

from watermark.detector import Detection, WatermarkDetector
from watermark.scheme import GreenListScheme

__all__ = ["Detection", "GreenListScheme", "WatermarkDetector"]
