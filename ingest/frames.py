"""One analysed video frame and where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Frame:
    camera_id: str
    index: int  # position in the stream, counting every decoded frame
    position_s: float  # seconds since the stream started
    captured_at: datetime  # wall-clock time the frame stands for
    image: npt.NDArray[np.uint8]  # BGR, (H, W, 3)


class SourceError(Exception):
    """A video source could not be opened or read."""
