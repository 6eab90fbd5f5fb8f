"""Look at a model's predictions on images, folders, a video or a webcam (upstream Mask2Former's flags).

    mask2former-rankseg-demo --config-file CONFIG (--input PATH|GLOB|DIR ... | --video-input FILE | --webcam)
                        [--output FILE_OR_DIR] [--confidence-threshold T] [--save-json] [--no-ranking-panel]
                        [--random-weights] [--opts KEY VALUE ...]

Without ``--output`` the results are shown in a window (needs an OpenCV build with GUI support). Image models
run on videos frame by frame; clip-level video models (``VideoMaskFormer``) run on the whole clip at once.
Exit status: 0 when every input was processed, 1 when some input could not be read (each is reported by name
and skipped), 2 for a bad command line, config or checkpoint.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..config import ConfigError, get_cfg
from ..config.arguments import demo_argument_parser
from ..data import MetadataCatalog
from ..data.detection_utils import ImageReadError, read_image
from ..engine import (
    CheckpointError,
    ModelUnavailableError,
    Predictor,
    VideoPredictor,
    check_model_available,
    is_video_config,
    warn_if_random_weights,
)
from ..modeling import validate_model_config
from ..utils.file_io import AtomicPath
from ..utils.logger import setup_logger
from ..utils.predictions import (
    encode_image,
    save_clip_predictions,
    save_predictions,
    write_bytes_atomic,
)
from ..utils.video_tracks import InstanceTracker
from ..utils.visualizer import (
    ClassPalette,
    clip_present_classes,
    draw_clip_frame,
    draw_predictions,
    summarize,
)

logger = logging.getLogger("mask2former_rankseg.demo")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
"""Files of a --input directory that are read (others are skipped with a warning); also the overlay formats."""
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov")
"""An --output with one of these suffixes is the output video file (else a directory)."""
VIDEO_CODEC = "mp4v"
VIDEO_SUFFIX = ".mp4"
DEFAULT_FPS = 30.0
WINDOW_NAME = "mask2former_rankseg demo"
ESC_KEY = 27
GLOB_CHARACTERS = "*?["

EXIT_OK, EXIT_INPUT_FAILED, EXIT_USAGE = 0, 1, 2


class DemoError(RuntimeError):
    """A problem with the command line or the environment (reported in one line, exit status 2)."""


def setup_cfg(args: argparse.Namespace):
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    validate_model_config(cfg)
    cfg.freeze()
    return cfg


# --------------------------------------------------------------------------------------------------
# inputs and outputs
# --------------------------------------------------------------------------------------------------
def expand_inputs(items: Sequence[str], failures: List[str]) -> List[Path]:
    """Image paths of ``--input`` items (files, directories, glob patterns), in order, without repeats.

    An item that names nothing is added to ``failures``; files in a directory without an image extension
    are skipped with a warning.
    """
    files: List[Path] = []
    for item in items:
        expanded = os.path.expanduser(item)
        if os.path.isdir(expanded):
            entries = sorted(p for p in Path(expanded).iterdir() if p.is_file())
            skipped = [p.name for p in entries if p.suffix.lower() not in IMAGE_EXTENSIONS]
            if skipped:
                logger.warning("Skipping %d file(s) of %s without an image extension: %s", len(skipped), expanded,
                               ", ".join(skipped))
            images = [p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS]
            if not images:
                failures.append(f"{item}: directory without image files")
            files.extend(images)
        elif any(c in item for c in GLOB_CHARACTERS) and not os.path.exists(expanded):
            matches = sorted(Path(p) for p in glob.glob(expanded) if os.path.isfile(p))
            if not matches:
                failures.append(f"{item}: no file matches this pattern")
            files.extend(matches)
        elif os.path.exists(expanded):
            files.append(Path(expanded))
        else:
            failures.append(f"{item}: no such file or directory")
    unique: Dict[Path, None] = {}
    for f in files:
        unique.setdefault(f, None)
    return list(unique)


class Outputs:
    """Where results go: ``--output`` as a file (one input, a known suffix) or a directory (created).

    Args:
        output: the ``--output`` value (None: show in a window instead).
        file_suffixes: suffixes that make ``output`` a file name rather than a directory.
        num_inputs: number of inputs that will be written.
    """

    def __init__(self, output: Optional[str], file_suffixes: Sequence[str], num_inputs: int):
        self.file: Optional[Path] = None
        self.dir: Optional[Path] = None
        self._stems: Dict[str, int] = {}
        if output is None:
            return
        path = Path(os.path.expanduser(output))
        if not path.is_dir() and path.suffix.lower() in file_suffixes:
            if num_inputs > 1:
                raise DemoError(f"--output {output} names a file but there are {num_inputs} inputs; give a "
                                "directory.")
            self.file, self.dir = path, path.parent
        else:
            self.dir = path
        if self.dir.exists() and not self.dir.is_dir():
            raise DemoError(f"--output {output}: {self.dir} exists and is not a directory.")
        if not self.dir.exists():
            logger.info("Creating the output directory %s", self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def show(self) -> bool:
        return self.dir is None

    def stem(self, source: Path) -> str:
        """A file stem for ``source`` that no earlier input of this run has used (``name``, ``name-1``...)."""
        if self.file is not None:
            return self.file.stem
        base = source.stem
        count = self._stems.get(base, 0)
        self._stems[base] = count + 1
        return base if count == 0 else f"{base}-{count}"

    def path(self, stem: str, suffix: str) -> Path:
        if self.file is not None:
            return self.file
        return self.dir / f"{stem}{suffix}"


class Window:
    """An OpenCV window; fails up front, with advice, when OpenCV has no GUI (opencv-python-headless)."""

    def __init__(self):
        try:
            cv2.namedWindow(WINDOW_NAME, cv2.WINDOW_NORMAL)
        except cv2.error as e:
            raise DemoError("Cannot open a window to show the results (this OpenCV has no GUI support, e.g. "
                            "opencv-python-headless); give --output FILE_OR_DIR to write them instead.") from e

    def show(self, image_rgb: np.ndarray, wait_ms: int) -> bool:
        """Show an image; False when the user pressed Esc."""
        cv2.imshow(WINDOW_NAME, image_rgb[:, :, ::-1])
        return cv2.waitKey(wait_ms) != ESC_KEY

    def close(self) -> None:
        cv2.destroyWindow(WINDOW_NAME)


class VideoSink:
    """Writes RGB frames to an mp4 (through a temporary file renamed at the end, so a failed run leaves no
    broken video; frames of odd height/width get one black row/column) and/or shows them."""

    def __init__(self, path: Optional[Path], fps: float, window: Optional[Window]):
        self.path, self.fps, self.window = path, fps, window
        self._writer: Optional[cv2.VideoWriter] = None
        self._output: Optional[AtomicPath] = None
        self.frames = 0

    def write(self, frame_rgb: np.ndarray) -> bool:
        """Add a frame; False when the user closed the window with Esc."""
        if self.path is not None:
            if self._writer is None:
                self._output = AtomicPath(self.path, suffix=f".partial{VIDEO_SUFFIX}")
                height, width = _even_sized(frame_rgb).shape[:2]
                self._writer = cv2.VideoWriter(str(self._output.tmp), cv2.VideoWriter_fourcc(*VIDEO_CODEC),
                                               self.fps, (width, height), True)
                if not self._writer.isOpened():
                    raise DemoError(f"Cannot write a {VIDEO_CODEC} video to {self.path}.")
            self._writer.write(_even_sized(frame_rgb)[:, :, ::-1].copy())
        self.frames += 1
        return self.window.show(frame_rgb, 1) if self.window is not None else True

    def close(self, keep: bool) -> None:
        """Finish the video (``keep``) or remove it."""
        if self._output is None:
            return
        if self._writer is not None:
            self._writer.release()
        if keep and self.frames:
            self._output.commit()
            logger.info("Wrote %s (%d frames)", self.path, self.frames)
        else:
            self._output.discard()


def _even_sized(frame: np.ndarray) -> np.ndarray:
    """``frame`` with a black row/column added where its height/width is odd (mp4 encoders need even sizes)."""
    height, width = frame.shape[:2]
    return np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)))


def open_webcam() -> cv2.VideoCapture:
    """The default camera (index 0)."""
    return cv2.VideoCapture(0)


def read_frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """BGR frames of an opened capture, until it ends."""
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield frame


def _capture_info(capture: cv2.VideoCapture) -> Tuple[float, Optional[int]]:
    fps = capture.get(cv2.CAP_PROP_FPS)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return (fps if fps and fps > 0 else DEFAULT_FPS), (count if count > 0 else None)


def _overlay_suffix(source: Path) -> str:
    return source.suffix.lower() if source.suffix.lower() in IMAGE_EXTENSIONS else ".png"


# --------------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------------
class Demo:
    """One run: the model, its palette, the options, and the list of failed inputs."""

    def __init__(self, cfg, args: argparse.Namespace):
        self.cfg = cfg
        self.args = args
        self.threshold = args.confidence_threshold
        dataset = cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else None
        metadata = MetadataCatalog.get(dataset) if dataset else None
        self.palette = ClassPalette.from_metadata(metadata, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)
        self.video_model = is_video_config(cfg)
        self.ranking_panel = not args.no_ranking_panel
        check_model_available(cfg)
        warn_if_random_weights(cfg, args.random_weights, "--random-weights")
        runner = VideoPredictor if self.video_model else Predictor
        self.predictor = runner(cfg, allow_random_weights=True)  # warned above, naming the demo's flag
        self.failures: List[str] = []

    # images ------------------------------------------------------------------------------------
    def run_images(self, files: Sequence[Path], failures: Sequence[str] = ()) -> None:
        """Run on ``files`` (from :func:`expand_inputs`); ``failures``: the inputs that expanded to nothing."""
        self.failures.extend(failures)
        for failure in self.failures:
            logger.error("%s", failure)
        if self.video_model:
            self._run_clip_of_images(files)
            return
        outputs = Outputs(self.args.output, IMAGE_EXTENSIONS, len(files))
        window = Window() if outputs.show else None
        for path in tqdm.tqdm(files, desc="images", unit="img", dynamic_ncols=True):
            image = self._read(path)
            if image is None:
                continue
            start = time.perf_counter()
            predictions = self.predictor(image, format="RGB")
            logger.info("%s: %s in %.2fs", path, summarize(predictions, self.threshold), time.perf_counter() - start)
            overlay = draw_predictions(image, predictions, self.palette, confidence_threshold=self.threshold,
                                       ranking_panel=self.ranking_panel)
            if window is not None:
                if not window.show(overlay, 0):
                    break
                continue
            stem = outputs.stem(path)
            _write_overlay(outputs.path(stem, _overlay_suffix(path)), overlay)
            if self.args.save_json:
                save_predictions(predictions, outputs.dir, stem, class_names=self.palette.names,
                                 confidence_threshold=self.threshold, source=str(path))

    def _read(self, path: Path) -> Optional[np.ndarray]:
        try:
            return read_image(path, format="RGB")
        except ImageReadError as e:
            logger.error("Skipping %s", e)
            self.failures.append(str(e))
            return None

    # videos ------------------------------------------------------------------------------------
    def run_video(self, source: str) -> None:
        path = os.path.expanduser(source)
        capture = cv2.VideoCapture(path) if os.path.isfile(path) else None
        if capture is None or not capture.isOpened():
            why = "not a readable video file" if capture is not None else "no such file"
            self.failures.append(f"Cannot read video {source}: {why}.")
            logger.error("%s", self.failures[-1])
            return
        stem = Path(source).stem
        outputs = Outputs(self.args.output, VIDEO_EXTENSIONS, 1)
        self._run_capture(capture, outputs, stem, source)

    def run_webcam(self) -> None:
        if self.video_model:
            raise DemoError("A clip-level video model needs the whole clip; it cannot run on a webcam stream. Use "
                            "--video-input.")
        capture = open_webcam()
        if not capture.isOpened():
            raise DemoError("Cannot open the webcam (camera 0).")
        outputs = Outputs(self.args.output, VIDEO_EXTENSIONS, 1)
        self._run_capture(capture, outputs, "webcam", "webcam")

    def _run_capture(self, capture: cv2.VideoCapture, outputs: Outputs, stem: str, source: str) -> None:
        fps, count = _capture_info(capture)
        window = Window() if outputs.show else None
        sink = VideoSink(None if outputs.show else outputs.path(stem, VIDEO_SUFFIX), fps, window)
        frames = tqdm.tqdm(read_frames(capture), desc=stem, unit="frame", total=count, dynamic_ncols=True)
        decoded, finished = 0, False
        try:
            if self.video_model:
                clip = [np.ascontiguousarray(f[:, :, ::-1]) for f in frames]
                decoded = len(clip)
                self._run_clip(clip, outputs, stem, [f"{stem}_{t:06d}" for t in range(len(clip))],
                               lambda t, overlay: sink.write(overlay))
            else:
                decoded = self._run_frames(frames, outputs, stem, sink)
            finished = True
        except KeyboardInterrupt:
            logger.warning("Interrupted; keeping the %d frames written so far.", sink.frames)
            decoded, finished = max(decoded, sink.frames), True
        finally:
            capture.release()
            sink.close(keep=finished)
            if window is not None:
                window.close()
        if decoded == 0:
            self.failures.append(f"Cannot read video {source}: no frame could be decoded.")
            logger.error("%s", self.failures[-1])

    def _run_frames(self, frames: Iterable[np.ndarray], outputs: Outputs, stem: str, sink: VideoSink) -> int:
        """Image model on a video: every frame on its own, instance colours kept by a tracker. Returns the number
        of frames read."""
        tracker = InstanceTracker()
        t = -1
        for t, frame_bgr in enumerate(frames):
            predictions = self.predictor(frame_bgr, format="BGR")
            frame = np.ascontiguousarray(frame_bgr[:, :, ::-1])
            overlay = draw_predictions(frame, predictions, self.palette, confidence_threshold=self.threshold,
                                       tracker=tracker, ranking_panel=self.ranking_panel)
            if self.args.save_json and not outputs.show:
                save_predictions(predictions, outputs.dir / f"{stem}_predictions", f"{stem}_{t:06d}",
                                 class_names=self.palette.names, confidence_threshold=self.threshold,
                                 source=f"{stem} frame {t}")
            if not sink.write(overlay):
                break
        return t + 1

    # clip-level video models -------------------------------------------------------------------
    def _run_clip_of_images(self, files: Sequence[Path]) -> None:
        """Video model on --input images: they are the frames of one clip, in order."""
        frames, names = [], []
        for path in tqdm.tqdm(files, desc="reading frames", unit="img", dynamic_ncols=True):
            image = self._read(path)
            if image is not None:
                frames.append(image)
                names.append(Path(path.name))
        if not frames:
            return
        outputs = Outputs(self.args.output, (), len(frames))
        window = Window() if outputs.show else None

        def write_frame(t: int, overlay: np.ndarray) -> bool:
            if window is not None:
                return window.show(overlay, 0)
            _write_overlay(outputs.path(outputs.stem(names[t]), _overlay_suffix(names[t])), overlay)
            return True

        self._run_clip(frames, outputs, "clip", [n.name for n in names], write_frame)

    def _run_clip(self, frames: List[np.ndarray], outputs: Outputs, stem: str, frame_names: Sequence[str],
                  write_frame: Callable[[int, np.ndarray], bool]) -> None:
        """One forward pass over all ``frames`` (RGB), then each frame drawn with the clip's tracks."""
        if not frames:
            return
        start = time.perf_counter()
        clip_output = self.predictor(frames, format="RGB")
        logger.info("%s: %d frames, %d tracks in %.2fs", stem, len(frames), len(clip_output.get("pred_scores", [])),
                    time.perf_counter() - start)
        present = clip_present_classes(clip_output, self.threshold)
        for t, frame in enumerate(tqdm.tqdm(frames, desc="drawing", unit="frame", dynamic_ncols=True)):
            overlay = draw_clip_frame(frame, clip_output, t, self.palette, confidence_threshold=self.threshold,
                                      present=present, ranking_panel=self.ranking_panel)
            if not write_frame(t, overlay):
                break
        if self.args.save_json and not outputs.show:
            save_clip_predictions(clip_output, outputs.dir, stem, class_names=self.palette.names,
                                  confidence_threshold=self.threshold, frame_names=frame_names)


def check_inputs(args: argparse.Namespace) -> Tuple[List[Path], List[str]]:
    """Checked before the model is loaded: the images of ``--input`` and the items that gave none (or a missing
    ``--video-input`` file). Nothing to run on (no image, no video file) means no model is loaded at all."""
    failures: List[str] = []
    if args.input:
        return expand_inputs(args.input, failures), failures
    if args.video_input and not os.path.isfile(os.path.expanduser(args.video_input)):
        failures.append(f"Cannot read video {args.video_input}: no such file.")
    return [], failures


def _write_overlay(path: Path, overlay_rgb: np.ndarray) -> None:
    write_bytes_atomic(path, encode_image(overlay_rgb, path.suffix))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the demo; returns the exit status (0 all inputs done, 1 some input failed, 2 usage error)."""
    parser = demo_argument_parser()
    return run(parser, parser.parse_args(argv))


def run(parser, args: argparse.Namespace) -> int:
    """The demo for parsed ``args`` (``parser`` reports usage errors)."""
    if args.save_json and not args.output:
        parser.error("--save-json writes files next to the visualizations: give --output FILE_OR_DIR too.")
    package_logger = setup_logger(name="mask2former_rankseg")
    logger.info("Arguments: %s", args)
    with logging_redirect_tqdm(loggers=[package_logger]):  # log lines above the progress bars, not through them
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        cfg = setup_cfg(args)
        files, failures = check_inputs(args)  # before the model is built and loaded
        if failures and not files and not args.webcam:
            print(f"error: nothing to run on; {len(failures)} input(s) failed:\n  " + "\n  ".join(failures),
                  file=sys.stderr)
            return EXIT_INPUT_FAILED
        demo = Demo(cfg, args)
        if args.input:
            demo.run_images(files, failures)
        elif args.video_input:
            demo.run_video(args.video_input)
        else:
            demo.run_webcam()
    except (DemoError, CheckpointError, ModelUnavailableError, FileNotFoundError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if demo.failures:
        print(f"error: {len(demo.failures)} input(s) failed:\n  " + "\n  ".join(demo.failures), file=sys.stderr)
        return EXIT_INPUT_FAILED
    return EXIT_OK

