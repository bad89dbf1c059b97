"""Video in and out around the detector: sources, threaded capture, outputs, whole runs.

- Sources (:func:`open_source`, :mod:`.sources`): a camera index, a stream URL, a video
  file, an image or a folder of images. Cameras and streams are *live*: a capture thread
  keeps only the newest frame, so the analysis never builds a backlog.
- Outputs (:mod:`.outputs`): JSON Lines and CSV events (made from the detector's
  :class:`~multinet_emotion.emotions.Reading` s), an annotated video, a window, and the
  timeline plot.
- A whole run (:func:`run`, :mod:`.runner`): a source through the
  :class:`~multinet_emotion.runtime.detect.EmotionDetector` into the outputs, then a summary JSON
  (emotion shares per track).

The detector itself lives in :mod:`multinet_emotion.runtime.detect` (re-exported here for old
imports). Nothing here imports torch: only OpenCV, NumPy, ONNX Runtime and (for the plot)
matplotlib.
"""

from ..detect import EmotionDetector, PipelineConfig
from .outputs import (
    COLORS_BGR,
    COLORS_HEX,
    CSV_FIELDS,
    PLOT_SUFFIXES,
    Display,
    EventWriter,
    VideoSink,
    annotate,
    check_plot_path,
    event_to_row,
    face_event,
    frame_events,
    no_face_event,
    plot_timeline,
)
from .runner import RunConfig, RunReport, quiet_opencv, run
from .sources import (
    IMAGE_SUFFIXES,
    CaptureLike,
    Frame,
    ImageSource,
    LiveSource,
    MemoryCapture,
    Source,
    SourceConfig,
    VideoFileSource,
    open_source,
    read_image,
)

__all__ = [
    "COLORS_BGR", "COLORS_HEX", "CSV_FIELDS", "IMAGE_SUFFIXES", "PLOT_SUFFIXES", "CaptureLike",
    "Display", "EmotionDetector", "EventWriter", "Frame", "ImageSource", "LiveSource",
    "MemoryCapture", "PipelineConfig", "RunConfig", "RunReport", "Source", "SourceConfig",
    "VideoFileSource", "VideoSink", "annotate", "check_plot_path", "event_to_row", "face_event",
    "frame_events", "no_face_event", "open_source", "plot_timeline", "quiet_opencv",
    "read_image", "run",
]
